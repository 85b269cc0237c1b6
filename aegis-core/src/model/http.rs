//! The HTTP clients that model clients send provider requests through.
//!
//! Every built-in model client takes its `reqwest::Client` from the registry, so runs share
//! connections instead of opening one per call. One client is not enough at scale, though,
//! because of how HTTP/2 pools. A hosted provider reached over HTTPS negotiates HTTP/2, and
//! the client then keeps a single connection per host and sends every request on it. The
//! provider caps the requests in flight on one connection with its
//! `SETTINGS_MAX_CONCURRENT_STREAMS`. RFC 9113 recommends no less than 100, and hyper-based
//! servers default to 200. Requests past the cap wait in the client's queue rather than open a
//! second connection, so five thousand runs in flight would make a few hundred calls at a
//! time, whatever the provider could take.
//!
//! [`ProviderHttp`] therefore keeps several clients, each with its own pool, and hands them
//! out in turn, one per model client built (that is, per run). With `pools` clients the cap
//! becomes `pools` times the provider's. Over HTTP/1.1 the split changes little: each pool
//! opens the connections its requests need, and idle ones are reused within the pool.
//!
//! [`ProviderHttpVersion::Http2`] speaks HTTP/2 to `http://` providers as well, without the
//! upgrade dance (prior knowledge). That is for providers behind an HTTP/2 gateway on a
//! private network, and for measuring: one HTTP/2 connection carries many calls for a
//! fraction of the memory of as many HTTP/1.1 connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The HTTP version model clients speak to providers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderHttpVersion {
    /// HTTP/1.1 to `http://` URLs; on `https://` URLs, HTTP/2 when the provider offers it.
    #[default]
    Negotiated,
    /// HTTP/2 on every URL, including `http://` ones (prior knowledge). A provider that does
    /// not speak HTTP/2 fails every call.
    Http2,
}

/// Settings of the clients in a [`ProviderHttp`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProviderHttpConfig {
    /// The HTTP version spoken to providers.
    pub version: ProviderHttpVersion,
    /// Connection pools to spread runs over, at least 1. Over HTTP/2 each pool keeps one
    /// connection per provider host.
    pub pools: usize,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// How long an unused connection stays open for reuse.
    pub pool_idle_timeout: Duration,
}

/// Pools by default. Eight HTTP/2 connections to a server that allows 200 streams each carry
/// 1,600 calls at once.
pub const DEFAULT_PROVIDER_POOLS: usize = 8;

impl Default for ProviderHttpConfig {
    fn default() -> ProviderHttpConfig {
        ProviderHttpConfig {
            version: ProviderHttpVersion::Negotiated,
            pools: DEFAULT_PROVIDER_POOLS,
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
        }
    }
}

/// HTTP clients for provider calls, handed out in turn. Clones share the clients.
///
/// The first client is built at once, so a bad configuration fails at start-up. The others
/// are built on first use: each costs about 100 KiB and a few milliseconds, because it loads
/// the system's root certificates, and a server with many pools but few runs needs few.
#[derive(Clone, Debug)]
pub struct ProviderHttp {
    first: reqwest::Client,
    /// The other pools' clients, built on first use. Empty with one pool.
    rest: Arc<[OnceLock<reqwest::Client>]>,
    config: Option<Arc<ProviderHttpConfig>>,
    next: Arc<AtomicUsize>,
}

impl ProviderHttp {
    /// Builds the first client that `config` describes; the other pools follow on first use.
    pub fn new(config: &ProviderHttpConfig) -> Result<ProviderHttp, reqwest::Error> {
        let first = build_client(config)?;
        let rest = (1..config.pools.max(1)).map(|_| OnceLock::new()).collect();
        Ok(ProviderHttp { first, rest, config: Some(Arc::new(config.clone())), next: Arc::new(AtomicUsize::new(0)) })
    }

    /// Wraps one client built by the caller; every model client then shares its pool.
    pub fn from_client(client: reqwest::Client) -> ProviderHttp {
        ProviderHttp { first: client, rest: Arc::from([]), config: None, next: Arc::new(AtomicUsize::new(0)) }
    }

    /// Returns the next client in turn.
    pub fn next_client(&self) -> &reqwest::Client {
        // Relaxed is enough: the counter only spreads load, and any interleaving of two
        // callers still gives each some client.
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.pools();
        let (Some(slot), Some(config)) = (index.checked_sub(1).and_then(|index| self.rest.get(index)), &self.config)
        else {
            return &self.first;
        };
        if let Some(client) = slot.get() {
            return client;
        }
        // NOTE: this build blocks the calling task for a few milliseconds, once per pool. A
        // shared TLS configuration would make it cheap enough not to matter.
        match build_client(config) {
            Ok(client) => slot.get_or_init(|| client),
            Err(error) => {
                // The first client was built from the same settings, so this is not expected;
                // the call still goes out, on the first pool.
                tracing::warn!(%error, pool = index, "building an HTTP client for model calls failed");
                &self.first
            }
        }
    }

    /// Returns how many clients, and so pools, there are.
    pub fn pools(&self) -> usize {
        self.rest.len() + 1
    }
}

fn build_client(config: &ProviderHttpConfig) -> Result<reqwest::Client, reqwest::Error> {
    let builder =
        reqwest::Client::builder().connect_timeout(config.connect_timeout).pool_idle_timeout(config.pool_idle_timeout);
    let builder = match config.version {
        ProviderHttpVersion::Negotiated => builder,
        ProviderHttpVersion::Http2 => builder.http2_prior_knowledge(),
    };
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_rotate_in_turn() {
        let config = ProviderHttpConfig { pools: 3, ..ProviderHttpConfig::default() };
        let http = ProviderHttp::new(&config).unwrap();
        let handed: Vec<*const reqwest::Client> = (0..6).map(|_| std::ptr::from_ref(http.next_client())).collect();
        assert_eq!(handed[0], std::ptr::from_ref(&http.first));
        assert_ne!(handed[0], handed[1]);
        assert_ne!(handed[1], handed[2]);
        assert_ne!(handed[0], handed[2]);
        assert_eq!(handed[..3], handed[3..], "the fourth call starts the turn again");
    }

    #[test]
    fn other_pools_are_built_on_first_use() {
        let config = ProviderHttpConfig { pools: 3, ..ProviderHttpConfig::default() };
        let http = ProviderHttp::new(&config).unwrap();
        assert!(http.rest.iter().all(|slot| slot.get().is_none()));
        http.next_client();
        http.next_client();
        assert!(http.rest[0].get().is_some());
        assert!(http.rest[1].get().is_none());
    }

    #[test]
    fn zero_pools_become_one() {
        let config = ProviderHttpConfig { pools: 0, ..ProviderHttpConfig::default() };
        assert_eq!(ProviderHttp::new(&config).unwrap().pools(), 1);
    }
}
