//! The allow-list of hosts that model clients may call.
//!
//! A team component names the URL its model client calls (`base_url`, `azure_endpoint`,
//! `host`), so without a check anyone who can create a team could make the server send
//! requests to any host its network reaches. The registry therefore rejects a model client
//! whose URL's host is not allowed, both when a team is validated and when a run builds it.
//!
//! Allowed by default: loopback (`127.0.0.0/8`, `::1`, `localhost`), the providers' default
//! hosts (`api.openai.com`, `api.anthropic.com`; Ollama's default is `localhost`) and the hosts
//! of `OPENAI_BASE_URL`, `AZURE_OPENAI_ENDPOINT`, `ANTHROPIC_BASE_URL` and `OLLAMA_HOST`. An
//! operator adds more with [`AllowedModelHosts::allow`]. A pattern is a host name or IP
//! address, optionally with a port (`host:port`, `[::1]:port`), and matches case-insensitively.
//! A pattern without a port allows every port. A leading `*.` allows every subdomain at any
//! depth (`*.openai.azure.com` allows `a.openai.azure.com` and `a.b.openai.azure.com`, not
//! `openai.azure.com`). A pattern of `*` alone allows every host.

use std::fmt;
use std::net::IpAddr;

use reqwest::Url;

use crate::model::env::{ANTHROPIC_DEFAULT_BASE_URL, OPENAI_DEFAULT_BASE_URL, ProviderEnv};

/// An operator's pattern that does not parse, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("invalid model host pattern `{pattern}`: {reason}")]
pub struct InvalidHostPattern {
    /// The pattern as given.
    pub pattern: String,
    /// The reason it was rejected.
    pub reason: String,
}

/// One allowed host: which names or addresses it matches, and on which port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPattern {
    host: HostMatch,
    /// `None` allows every port.
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostMatch {
    /// Every host (`*`).
    Any,
    /// A lower-case domain name without a trailing dot.
    Domain(String),
    /// Subdomains of a lower-case domain (`*.` followed by the domain).
    Subdomains(String),
    /// One IP address.
    Ip(IpAddr),
}

/// The host of a URL: a lower-case domain name without a trailing dot, or an IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    Domain(String),
    Ip(IpAddr),
}

impl Host {
    /// Returns the host of a parsed URL, `None` for a URL without one.
    fn of(url: &Url) -> Option<Host> {
        let text = url.host_str()?;
        let unbracketed = text.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).unwrap_or(text);
        Some(match unbracketed.parse::<IpAddr>() {
            Ok(address) => Host::Ip(address),
            Err(_) => Host::Domain(normalise_domain(text)),
        })
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(name) => f.write_str(name),
            Host::Ip(IpAddr::V6(address)) => write!(f, "[{address}]"),
            Host::Ip(address) => write!(f, "{address}"),
        }
    }
}

impl HostPattern {
    fn matches(&self, host: &Host, port: Option<u16>) -> bool {
        if self.port.is_some() && self.port != port {
            return false;
        }
        match (&self.host, host) {
            (HostMatch::Any, _) => true,
            (HostMatch::Domain(domain), Host::Domain(name)) => name == domain,
            (HostMatch::Subdomains(domain), Host::Domain(name)) => {
                name.strip_suffix(domain.as_str()).is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.'))
            }
            (HostMatch::Ip(ip), Host::Ip(address)) => ip == address,
            _ => false,
        }
    }
}

/// The hosts model clients may call: the defaults the module docs list plus the operator's
/// patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AllowedModelHosts {
    patterns: Vec<HostPattern>,
}

/// A URL whose host is not allowed, or that has no host at all.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostNotAllowed {
    /// The host (with its port when the URL names one), or the reason the URL has none.
    pub host: String,
}

impl fmt::Display for HostNotAllowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model host `{}` is not on the server's allow-list of model hosts", self.host)
    }
}

impl AllowedModelHosts {
    /// Returns the default allow-list for `env`: loopback, the providers' default hosts and
    /// the hosts of the environment's provider URLs.
    pub fn from_env(env: &ProviderEnv) -> AllowedModelHosts {
        let mut patterns = vec![
            HostPattern { host: HostMatch::Domain("localhost".to_owned()), port: None },
            HostPattern { host: HostMatch::Ip(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)), port: None },
        ];
        let urls = [
            Some(OPENAI_DEFAULT_BASE_URL),
            Some(ANTHROPIC_DEFAULT_BASE_URL),
            env.openai_base_url.as_deref(),
            env.azure_openai_endpoint.as_deref(),
            env.anthropic_base_url.as_deref(),
            env.ollama_host.as_deref(),
        ];
        // An environment URL that does not parse allows nothing; the client built from it
        // reports the bad URL.
        patterns.extend(urls.into_iter().flatten().filter_map(pattern_of_url));
        AllowedModelHosts { patterns }
    }

    /// Adds an operator's pattern, such as `models.internal`, `10.0.0.7:8000` or
    /// `*.openai.azure.com`.
    pub fn allow(&mut self, pattern: &str) -> Result<(), InvalidHostPattern> {
        self.patterns.push(parse_pattern(pattern)?);
        Ok(())
    }

    /// Checks the host of `url`. Loopback addresses (all of `127.0.0.0/8` and `::1`) are
    /// always allowed.
    pub fn check(&self, url: &str) -> Result<(), HostNotAllowed> {
        let without_host = || HostNotAllowed { host: "(a URL without a host)".to_owned() };
        let parsed = parse_url(url).ok_or_else(without_host)?;
        let host = Host::of(&parsed).ok_or_else(without_host)?;
        let port = parsed.port_or_known_default();
        let is_loopback = matches!(host, Host::Ip(address) if address.is_loopback());
        if is_loopback || self.patterns.iter().any(|pattern| pattern.matches(&host, port)) {
            return Ok(());
        }
        let host = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        Err(HostNotAllowed { host })
    }
}

/// Parses `url`, adding `http://` when it has no scheme (as `OLLAMA_HOST` may).
fn parse_url(url: &str) -> Option<Url> {
    let url = url.trim();
    match url.contains("://") {
        true => Url::parse(url).ok(),
        false => Url::parse(&format!("http://{url}")).ok(),
    }
}

/// Allows the host of an environment URL on every port.
fn pattern_of_url(url: &str) -> Option<HostPattern> {
    let host = match Host::of(&parse_url(url)?)? {
        Host::Domain(name) => HostMatch::Domain(name),
        Host::Ip(address) => HostMatch::Ip(address),
    };
    Some(HostPattern { host, port: None })
}

/// Parses an operator's pattern as the module docs describe.
fn parse_pattern(pattern: &str) -> Result<HostPattern, InvalidHostPattern> {
    let invalid = |reason: &str| InvalidHostPattern { pattern: pattern.to_owned(), reason: reason.to_owned() };
    let text = pattern.trim();
    if text.is_empty() {
        return Err(invalid("the pattern is empty; give a host such as models.internal or *.openai.azure.com"));
    }
    if text == "*" {
        return Ok(HostPattern { host: HostMatch::Any, port: None });
    }
    if text.contains('/') {
        return Err(invalid("give a host, not a URL: leave out the scheme and the path"));
    }
    // A bare IPv6 address has colons that are not a port separator.
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(HostPattern { host: HostMatch::Ip(address), port: None });
    }

    let (wildcard, rest) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if rest.contains('*') {
        return Err(invalid("a wildcard is only allowed as a leading `*.`, such as *.openai.azure.com"));
    }
    let parsed = Url::parse(&format!("http://{rest}")).map_err(|error| invalid(&error.to_string()))?;
    let extra = parsed.path() != "/" || parsed.query().is_some() || !parsed.username().is_empty();
    if extra {
        return Err(invalid("give a host with an optional port, such as models.internal:8000"));
    }
    let host = match (Host::of(&parsed), wildcard) {
        (Some(Host::Domain(name)), true) => HostMatch::Subdomains(name),
        (Some(Host::Domain(name)), false) => HostMatch::Domain(name),
        (Some(Host::Ip(address)), false) => HostMatch::Ip(address),
        (Some(Host::Ip(_)), true) => {
            return Err(invalid("a wildcard needs a domain name after `*.`, not an IP address"));
        }
        (None, _) => return Err(invalid("the pattern has no host")),
    };
    Ok(HostPattern { host, port: parsed.port() })
}

fn normalise_domain(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn allowed(patterns: &[&str]) -> AllowedModelHosts {
        let mut hosts = AllowedModelHosts::from_env(&ProviderEnv::default());
        for pattern in patterns {
            hosts.allow(pattern).unwrap();
        }
        hosts
    }

    #[test]
    fn defaults_allow_loopback_and_providers() {
        let hosts = allowed(&[]);
        for url in [
            "http://127.0.0.1:9/v1",
            "http://127.5.6.7/v1",
            "http://[::1]:8080",
            "http://localhost:11434",
            "http://LOCALHOST.:1",
            "https://api.openai.com/v1",
            "https://API.Anthropic.com",
            "127.0.0.1:11434",
        ] {
            assert_eq!(hosts.check(url), Ok(()), "{url}");
        }
        for url in ["https://evil.example/v1", "http://10.0.0.1/v1", "http://[fd00::1]/", "https://openai.com/v1"] {
            assert!(hosts.check(url).is_err(), "{url}");
        }
    }

    #[test]
    fn environment_hosts_are_allowed() {
        let env = ProviderEnv {
            openai_base_url: Some("http://models.internal:8000/v1".to_owned()),
            azure_openai_endpoint: Some("https://mine.openai.azure.com".to_owned()),
            anthropic_base_url: Some("https://proxy.example".to_owned()),
            ollama_host: Some("gpu-box:11434".to_owned()),
            ..ProviderEnv::default()
        };
        let hosts = AllowedModelHosts::from_env(&env);
        for url in [
            "http://models.internal:9000/v1",
            "https://mine.openai.azure.com/openai",
            "https://proxy.example/v1/messages",
            "http://gpu-box:11434/api/chat",
        ] {
            assert_eq!(hosts.check(url), Ok(()), "{url}");
        }
        assert!(hosts.check("https://other.openai.azure.com").is_err());
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let hosts = allowed(&["*.openai.azure.com"]);
        assert_eq!(hosts.check("https://a.openai.azure.com/openai"), Ok(()));
        assert_eq!(hosts.check("https://a.b.OPENAI.azure.com"), Ok(()));
        assert!(hosts.check("https://openai.azure.com").is_err(), "the apex is not a subdomain");
        assert!(hosts.check("https://evilopenai.azure.com").is_err(), "a suffix match needs a dot");
        assert!(hosts.check("https://openai.azure.com.evil.example").is_err());
    }

    #[test]
    fn ports_restrict_when_given() {
        let hosts = allowed(&["models.internal:8000", "gpu.internal"]);
        assert_eq!(hosts.check("http://models.internal:8000/v1"), Ok(()));
        assert!(hosts.check("http://models.internal:8001/v1").is_err());
        assert!(hosts.check("http://models.internal/v1").is_err(), "port 80 is not 8000");
        assert_eq!(hosts.check("http://gpu.internal:1234"), Ok(()));
        assert_eq!(hosts.check("https://gpu.internal"), Ok(()));
    }

    #[test]
    fn ip_patterns_match_addresses() {
        let hosts = allowed(&["10.0.0.7", "fd00::1", "[fd00::2]:8443"]);
        assert_eq!(hosts.check("http://10.0.0.7:8000/v1"), Ok(()));
        assert!(hosts.check("http://10.0.0.8/v1").is_err());
        assert_eq!(hosts.check("http://[fd00::1]:80/"), Ok(()));
        assert_eq!(hosts.check("https://[FD00:0::2]:8443/"), Ok(()));
        assert!(hosts.check("https://[fd00::2]:443/").is_err());
    }

    #[test]
    fn star_allows_every_host() {
        let hosts = allowed(&["*"]);
        assert_eq!(hosts.check("https://anything.example/v1"), Ok(()));
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        let mut hosts = allowed(&[]);
        for pattern in ["", "https://models.internal/v1", "a.*.example", "*.10.0.0.1", "host:notaport", "*.", "x y"] {
            assert!(hosts.allow(pattern).is_err(), "{pattern:?}");
        }
    }

    #[test]
    fn rejection_names_host_and_port() {
        let error = allowed(&[]).check("https://user:pass@evil.example:8443/v1?key=secret").unwrap_err();
        assert_eq!(error.host, "evil.example:8443");
        assert!(!error.to_string().contains("secret"));
    }
}
