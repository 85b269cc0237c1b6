//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert` options, over rustls.
//!
//! tokio-postgres parses only `sslmode=disable|prefer|require` and rejects `sslrootcert`, so
//! [`split_tls_options`] takes both options out of the URL (or `key=value` string) and hands
//! tokio-postgres `require` for the verifying modes. The connector then checks certificates
//! as the mode requires, like libpq does:
//!
//! | `sslmode` | encrypted | certificate checked |
//! | --- | --- | --- |
//! | `disable` | no | no |
//! | `prefer` (default) | when the server supports it | no |
//! | `require` | yes | no, unless `sslrootcert` is given: then as `verify-ca` |
//! | `verify-ca` | yes | chain to a trusted root |
//! | `verify-full` | yes | chain, and the host name (or IP address) in the URL |
//!
//! Trusted roots come from the PEM file `sslrootcert` names, else from the system's store
//! (`sslrootcert=system` selects it explicitly). libpq instead reads `~/.postgresql/root.crt`
//! by default. The crypto provider is aws-lc-rs, which reqwest's rustls already links.
//!
//! NOTE: sessions carry no `tls-server-end-point` channel binding, so SCRAM authentication
//! uses `SCRAM-SHA-256`, not the `-PLUS` variant.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode` values that this store supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(format!(
                "sslmode `{other}` is not supported; use disable, prefer, require, verify-ca or verify-full"
            )),
        }
    }

    /// Returns the value tokio-postgres gets. It only decides whether to encrypt; the connector
    /// verifies.
    fn for_tokio_postgres(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// The TLS options of a database URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TlsOptions {
    /// `None` when the URL leaves `sslmode` out, which means `prefer`.
    pub(crate) mode: Option<SslMode>,
    /// The `sslrootcert` path, or `system`.
    pub(crate) root_cert: Option<String>,
}

/// Splits `url` into the text tokio-postgres parses and the TLS options it cannot parse.
pub(crate) fn split_tls_options(url: &str) -> Result<(String, TlsOptions), String> {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let (kept, options) = match is_url {
        true => split_url_query(url)?,
        false => split_key_values(url)?,
    };

    let mut tls = TlsOptions::default();
    for (key, value) in options {
        match key.as_str() {
            "sslmode" => tls.mode = Some(SslMode::parse(&value)?),
            _ => tls.root_cert = Some(value),
        }
    }
    let Some(mode) = tls.mode else {
        return Ok((kept, tls));
    };
    let joined = match (is_url, kept.contains('?')) {
        (true, true) => format!("{kept}&sslmode={}", mode.for_tokio_postgres()),
        (true, false) => format!("{kept}?sslmode={}", mode.for_tokio_postgres()),
        (false, _) => format!("{kept} sslmode={}", mode.for_tokio_postgres()),
    };
    Ok((joined, tls))
}

fn is_tls_option(key: &str) -> bool {
    matches!(key, "sslmode" | "sslrootcert")
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query string.
fn split_url_query(url: &str) -> Result<(String, Vec<(String, String)>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut options = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)?;
        match is_tls_option(&key) {
            true => options.push((key, percent_decode(value)?)),
            false => kept.push(pair),
        }
    }
    let text = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    Ok((text, options))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = (byte == b'%').then(|| text.get(index + 1..index + 3)).flatten();
        match escaped.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
            Some(value) => {
                decoded.push(value);
                index += 3;
            }
            None => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).map_err(|_| "a query parameter of the URL is not UTF-8 after decoding".to_owned())
}

/// Takes `sslmode` and `sslrootcert` out of a `key=value` connection string, keeping the
/// other pairs as written. Values may be quoted with `'` and use `\` escapes, as in libpq.
fn split_key_values(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut kept: Vec<&str> = Vec::new();
    let mut options = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (key, after_key) = rest.split_once('=').ok_or_else(|| format!("expected key=value near `{rest}`"))?;
        let key = key.trim();
        let value_text = after_key.trim_start();
        let (value, remaining) = read_value(value_text)?;
        let pair_len = rest.len() - remaining.len();
        match is_tls_option(key) {
            true => options.push((key.to_owned(), value)),
            false => kept.push(rest[..pair_len].trim_end()),
        }
        rest = remaining.trim_start();
    }
    Ok((kept.join(" "), options))
}

/// Reads one value (quoted or bare) and returns it with the text after it.
fn read_value(text: &str) -> Result<(String, &str), String> {
    let quoted = text.starts_with('\'');
    let mut value = String::new();
    let mut chars = text.char_indices().skip(usize::from(quoted));
    while let Some((index, character)) = chars.next() {
        match character {
            '\\' => match chars.next() {
                Some((_, escaped)) => value.push(escaped),
                None => return Err("a connection string value ends with a lone backslash".to_owned()),
            },
            '\'' if quoted => return Ok((value, &text[index + 1..])),
            character if !quoted && character.is_whitespace() => return Ok((value, &text[index..])),
            character => value.push(character),
        }
    }
    match quoted {
        true => Err("a quoted connection string value has no closing quote".to_owned()),
        false => Ok((value, "")),
    }
}

/// Builds the connector for `options`. Reading the root certificates fails for a file that
/// cannot be read or contains no certificate.
pub(crate) fn connector(options: &TlsOptions) -> Result<RustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mode = options.mode.unwrap_or(SslMode::Prefer);
    let root_file = options.root_cert.as_deref().filter(|path| *path != "system");
    let mode = match (mode, root_file) {
        (SslMode::Require, Some(_)) => SslMode::VerifyCa,
        (mode, _) => mode,
    };

    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(AcceptAnyCertificate { provider: Arc::clone(&provider) })
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(root_store(root_file)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|error| format!("building the certificate verifier failed: {error}"))?;
            match mode {
                SslMode::VerifyCa => Arc::new(IgnoreHostName { inner: webpki }),
                _ => webpki,
            }
        }
    };

    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("configuring TLS failed: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(RustlsConnect { config: Arc::new(config) })
}

/// Loads the roots from a PEM file, or the system's roots for `None`.
fn root_store(file: Option<&str>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let Some(file) = file else {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "reading a system root certificate failed");
        }
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            return Err("no system root certificates were found; give sslrootcert=/path/to/root.crt".to_owned());
        }
        return Ok(roots);
    };

    let path = PathBuf::from(file);
    let certificates = CertificateDer::pem_file_iter(&path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("reading sslrootcert {} failed: {error}", path.display()))?;
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(format!("sslrootcert {} contains no usable PEM certificate", path.display()));
    }
    Ok(roots)
}

/// Accepts every server certificate (`prefer`, `require`), while still checking that the
/// server has the certificate's private key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies the chain but not the host name (`verify-ca`). rustls checks the name only after
/// the chain succeeded, so a name error means the chain is trusted.
#[derive(Debug)]
struct IgnoreHostName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// tokio-postgres's TLS connector over rustls.
#[derive(Clone)]
pub(crate) struct RustlsConnect {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnector;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnector, Self::Error> {
        let server_name = ServerName::try_from(domain.to_owned())?;
        Ok(RustlsConnector { config: Arc::clone(&self.config), server_name })
    }
}

/// The TLS handshake with one server.
pub(crate) struct RustlsConnector {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { connector.connect(self.server_name, stream).await.map(RustlsStream) })
    }
}

/// An encrypted connection to PostgreSQL.
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, context: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(context, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, context: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(context, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(context)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn split(url: &str) -> (String, TlsOptions) {
        split_tls_options(url).unwrap()
    }

    #[test]
    fn url_options_are_taken_out() {
        let (kept, tls) = split("postgres://u@h/db?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!(kept, "postgres://u@h/db?application_name=x&sslmode=require");
        assert_eq!(tls.mode, Some(SslMode::VerifyFull));
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/ca.pem"));

        let (kept, tls) = split("postgres://u@h/db?sslmode=disable");
        assert_eq!(kept, "postgres://u@h/db?sslmode=disable");
        assert_eq!(tls.mode, Some(SslMode::Disable));

        let (kept, tls) = split("postgresql://u@h/db");
        assert_eq!(kept, "postgresql://u@h/db");
        assert_eq!(tls, TlsOptions::default());
    }

    #[test]
    fn key_value_options_are_taken_out() {
        let (kept, tls) = split("host=h user=u sslmode = verify-ca sslrootcert='/my certs/ca.pem' password='a\\'b c'");
        assert_eq!(kept, "host=h user=u password='a\\'b c' sslmode=require");
        assert_eq!(tls.mode, Some(SslMode::VerifyCa));
        assert_eq!(tls.root_cert.as_deref(), Some("/my certs/ca.pem"));
        let parsed: tokio_postgres::Config = kept.parse().unwrap();
        assert_eq!(parsed.get_password(), Some(&b"a'b c"[..]));
    }

    #[test]
    fn unknown_mode_is_rejected() {
        let error = split_tls_options("postgres://u@h/db?sslmode=allow").unwrap_err();
        assert!(error.contains("sslmode `allow` is not supported"), "{error}");
    }

    #[test]
    fn unreadable_root_file_is_rejected() {
        let options = TlsOptions { mode: Some(SslMode::VerifyFull), root_cert: Some("/nonexistent/ca.pem".to_owned()) };
        let error = connector(&options).err().unwrap();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }
}
