//! TLS trust for every client: which certificates are trusted, how a server's certificate is
//! verified, and what a rejected handshake is explained as.
//!
//! Why repave builds its own rustls configuration instead of reqwest's: a server certificate made by
//! `openssl req -x509` is its own CA (`basicConstraints CA:TRUE`), and webpki refuses any CA
//! certificate as an end entity (`CaUsedAsEndEntity`), even when the user pasted exactly that
//! certificate into `ca_cert`. Go (the peer resource), curl and Python accept it. [`Verifier`] wraps
//! webpki's verifier and accepts such a certificate only when it is byte for byte one of the `ca_cert`
//! certificates, still checking the host name and the validity period. Everything else is webpki's
//! verdict unchanged.

use anyhow::{Context, Result, bail};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Who is trusted, as the user configured it.
pub(crate) struct Trust<'a> {
    /// `ca_cert` (PEM), on top of the system store.
    pub ca_cert: Option<&'a str>,
    pub insecure_skip_tls_verify: bool,
    /// The system store: a directory of PEM files, or what `SSL_CERT_FILE`/`SSL_CERT_DIR` name.
    pub system_ca_dir: &'a Path,
    pub ssl_cert_file: Option<&'a str>,
    pub ssl_cert_dir: Option<&'a str>,
}

/// The rustls client configuration reqwest is handed: the system store plus `ca_cert`, verified by
/// [`Verifier`] (or by nothing, with `insecure_skip_tls_verify`), HTTP/1.1 only.
pub(crate) fn client_config(trust: &Trust<'_>) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pinned = match trust.ca_cert {
        Some(pem) => parse_ca_cert(pem)?,
        None => Vec::new(),
    };
    let mut roots = RootCertStore::empty();
    if !trust.insecure_skip_tls_verify {
        roots.add_parsable_certificates(system_roots(trust));
        for der in &pinned {
            // One webpki cannot use as an anchor may still be a server's own certificate, pinned.
            let _ = roots.add(der.clone());
        }
    }
    let verifier = Arc::new(Verifier::new(roots, pinned, trust.insecure_skip_tls_verify, Arc::clone(&provider))?);
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Every certificate in `ca_cert`, in order; the error says what a valid value looks like.
fn parse_ca_cert(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("`ca_cert` is not valid PEM ({e})"))?;
    if certs.is_empty() {
        bail!("`ca_cert` contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)");
    }
    Ok(certs)
}

/// Certificates from the system store. Concourse bind-mounts the worker's certificate directory at
/// /etc/ssl/certs, so it is read at run time: every file in it — the Debian-style bundle, the `openssl
/// rehash` links, and loose PEM files dropped there (corporate CAs) — each file once. As for OpenSSL,
/// `SSL_CERT_FILE` and `SSL_CERT_DIR` (colon-separated) replace that directory when either is set;
/// they are read from the injected `env`, never the process environment (`rustls-native-certs`'
/// own `load_native_certs` would read the latter). Unreadable files and certificates rustls cannot
/// use are skipped rather than failing every request (`add_parsable_certificates`).
fn system_roots(trust: &Trust<'_>) -> Vec<CertificateDer<'static>> {
    let file = trust.ssl_cert_file.filter(|v| !v.is_empty()).map(Path::new);
    let mut dirs: Vec<&Path> =
        trust.ssl_cert_dir.filter(|v| !v.is_empty()).into_iter().flat_map(|v| v.split(':')).map(Path::new).collect();
    if file.is_none() && dirs.is_empty() {
        dirs.push(trust.system_ca_dir);
    }
    let mut found = rustls_native_certs::load_certs_from_paths(file, None).certs;
    for dir in dirs {
        found.extend(rustls_native_certs::load_certs_from_paths(None, Some(dir)).certs);
    }
    found
}

/// webpki's verdict, except that a server certificate byte for byte equal to one of the `ca_cert`
/// certificates is accepted although it is a CA (or its own issuer), once its host name and
/// validity period check out; with `insecure_skip_tls_verify`, no verdict at all. Either way the
/// handshake signature is checked, which proves the server holds the key of the certificate it sent.
#[derive(Debug)]
struct Verifier {
    /// `None` when nothing at all is trusted (an empty system store and no `ca_cert`).
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    insecure: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Verifier {
    fn new(
        roots: RootCertStore,
        pinned: Vec<CertificateDer<'static>>,
        insecure: bool,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self> {
        let algorithms = provider.signature_verification_algorithms;
        let webpki = match roots.is_empty() {
            true => None,
            false => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .context("setting up TLS certificate verification")?,
            ),
        };
        Ok(Verifier { webpki, pinned, insecure, algorithms })
    }

    /// The checks webpki would have made of a trusted self-signed certificate: its names, its dates.
    fn verify_pinned(&self, cert: &CertificateDer<'_>, name: &ServerName<'_>, now: UnixTime) -> Result<(), TlsError> {
        let parsed = webpki::EndEntityCert::try_from(cert).map_err(|_| CertificateError::BadEncoding)?;
        parsed.verify_is_valid_for_subject_name(name).map_err(|e| match e {
            webpki::Error::CertNotValidForName(context) => {
                CertificateError::NotValidForNameContext { expected: context.expected, presented: context.presented }
            }
            _ => CertificateError::NotValidForName,
        })?;
        let (_, x509) =
            x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| CertificateError::BadEncoding)?;
        let validity = x509.validity();
        let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
        let seconds = |t: i64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.max(0) as u64));
        let time = now.as_secs() as i64;
        if time < not_before {
            return Err(CertificateError::NotValidYetContext { time: now, not_before: seconds(not_before) }.into());
        }
        if time > not_after {
            return Err(CertificateError::ExpiredContext { time: now, not_after: seconds(not_after) }.into());
        }
        Ok(())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        let verdict = match &self.webpki {
            Some(webpki) => webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            None => Err(CertificateError::UnknownIssuer.into()),
        };
        let pinned = self.pinned.iter().any(|pinned| pinned.as_ref() == end_entity.as_ref());
        match verdict {
            Err(TlsError::InvalidCertificate(problem)) if pinned && is_own_issuer_refusal(&problem) => {
                self.verify_pinned(end_entity, server_name, now).map(|()| ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// webpki's refusals of a self-signed certificate that is its own CA: it is a CA (`CaUsedAsEndEntity`,
/// which rustls passes on as an `Other` error), or nothing trusted signed it.
fn is_own_issuer_refusal(problem: &CertificateError) -> bool {
    matches!(problem, CertificateError::UnknownIssuer)
        || matches!(webpki_cause(problem), Some(webpki::Error::CaUsedAsEndEntity))
}

/// The webpki error rustls wrapped in `CertificateError::Other`, for the refusals it has no variant for.
fn webpki_cause(problem: &CertificateError) -> Option<&webpki::Error> {
    match problem {
        CertificateError::Other(other) => other.0.downcast_ref::<webpki::Error>(),
        _ => None,
    }
}

/// The TLS error rustls raised somewhere among `error`'s causes. The TLS stack hands it up wrapped
/// in an `io::Error`, whose `source()` skips to the wrapped error's own source, so the payload of
/// every `io::Error` on the way is looked at as well.
pub(crate) fn tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a TlsError> {
    let mut next = Some(error);
    while let Some(cause) = next {
        if let Some(found) = cause.downcast_ref::<TlsError>() {
            return Some(found);
        }
        let wrapped = cause.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
        if let Some(found) = wrapped.and_then(|inner| tls_error(inner)) {
            return Some(found);
        }
        next = cause.source();
    }
    None
}

/// What went wrong in a TLS handshake and what fixes it, in the user's terms.
pub(crate) fn explain(error: &TlsError) -> String {
    match error {
        TlsError::InvalidCertificate(problem) => explain_certificate(problem),
        TlsError::InvalidMessage(_) => "the server did not answer in TLS: is this an `https://` URL for a port that \
             speaks plain HTTP (or another protocol)? Use the scheme and port the server really serves"
            .into(),
        TlsError::AlertReceived(alert) => format!(
            "the server ended the TLS handshake with the alert `{alert:?}`: it refused this client (a server that \
             requires a client certificate, or accepts only protocol versions or ciphers repave does not offer, \
             answers like this)"
        ),
        TlsError::PeerIncompatible(why) => format!(
            "the server's TLS is incompatible with repave's ({why:?}): repave speaks TLS 1.2 and 1.3 with current \
             ciphers only"
        ),
        TlsError::NoCertificatesPresented => "the server presented no TLS certificate".into(),
        other => format!("the TLS handshake failed: {other}"),
    }
}

fn explain_certificate(problem: &CertificateError) -> String {
    use CertificateError as E;
    match problem {
        E::NotValidForNameContext { expected, presented } => format!(
            "the server's TLS certificate is not valid for `{}`: it names {}; use a URL with one of those names, or \
             have the certificate reissued for this one",
            expected.to_str(),
            if presented.is_empty() { "no host names at all".to_string() } else { names(presented) }
        ),
        E::NotValidForName => {
            "the server's TLS certificate is not valid for this host name: use the URL with a name the certificate \
             was issued for"
                .into()
        }
        E::ExpiredContext { time, not_after } => format!(
            "the server's TLS certificate expired at {} (this machine's clock says {}): renew it, or check the clock",
            when(*not_after),
            when(*time)
        ),
        E::NotValidYetContext { time, not_before } => format!(
            "the server's TLS certificate is not valid before {} (this machine's clock says {}): check the clock",
            when(*not_before),
            when(*time)
        ),
        E::Expired | E::NotValidYet => {
            "the server's TLS certificate is outside its validity period (expired, or not valid yet): renew it, or \
             check this machine's clock"
                .into()
        }
        E::UnknownIssuer => {
            "the server's TLS certificate is not trusted: it was not signed by a CA in the system store or in \
             `ca_cert`; set `ca_cert` in source to the PEM of the CA that signed it (for a self-signed server, its \
             own certificate; only for testing, `insecure_skip_tls_verify: true`)"
                .into()
        }
        _ if matches!(webpki_cause(problem), Some(webpki::Error::CaUsedAsEndEntity)) => {
            "the server presents a CA certificate (basicConstraints CA:TRUE) as its own; repave accepts that only when \
             `ca_cert` holds exactly that certificate: set `ca_cert` to the server's own certificate"
                .into()
        }
        E::BadSignature => {
            "a signature in the server's certificate chain does not verify: the chain is corrupt, or was not issued \
             by the CA it names"
                .into()
        }
        #[allow(deprecated)] // rustls still raises the old variant for some algorithms
        E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext { .. }
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "the server's certificate is signed with an algorithm repave does not accept (such as SHA-1 or MD5): \
             have it reissued"
                .into()
        }
        E::InvalidPurpose | E::InvalidPurposeContext { .. } => {
            "the server's certificate was not issued for TLS servers (its extended key usage excludes it)".into()
        }
        E::Revoked => "the server's TLS certificate has been revoked".into(),
        E::BadEncoding => "the server's TLS certificate is not a well-formed X.509 certificate".into(),
        other => format!("the server's TLS certificate was rejected: {other:?}"),
    }
}

/// The names webpki lists (`DnsName("a.example")`, `IpAddress(10.0.0.1)`) as a person writes them.
fn names(presented: &[String]) -> String {
    let plain = |name: &String| {
        let inner = name.split_once('(').and_then(|(_, rest)| rest.strip_suffix(')')).unwrap_or(name);
        inner.trim_matches('"').to_string()
    };
    presented.iter().map(plain).collect::<Vec<_>>().join(", ")
}

/// A certificate time as RFC 3339 (UTC).
fn when(time: UnixTime) -> String {
    jiff::Timestamp::from_second(time.as_secs() as i64)
        .map_or_else(|_| format!("{}s", time.as_secs()), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_errors_are_found_by_type_not_by_text() {
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            TlsError::InvalidCertificate(CertificateError::Expired),
        );
        assert_eq!(tls_error(&wrapped), Some(&TlsError::InvalidCertificate(CertificateError::Expired)));
        assert_eq!(tls_error(&std::io::Error::other("certificate UnknownIssuer")), None);
    }

    #[test]
    fn explanations_name_the_problem_and_the_fix() {
        let cert = |p| TlsError::InvalidCertificate(p);
        assert!(explain(&cert(CertificateError::Expired)).contains("validity period"));
        assert!(explain(&cert(CertificateError::UnknownIssuer)).contains("set `ca_cert`"));
        let ca = CertificateError::Other(rustls::OtherError(Arc::new(webpki::Error::CaUsedAsEndEntity)));
        assert!(is_own_issuer_refusal(&ca) && is_own_issuer_refusal(&CertificateError::UnknownIssuer));
        assert!(explain(&cert(ca)).contains("CA:TRUE"));
        let name = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("api.example.com").unwrap(),
            presented: vec!["DnsName(\"localhost\")".into(), "IpAddress(10.0.0.1)".into()],
        };
        let text = explain(&cert(name));
        assert!(text.contains("`api.example.com`: it names localhost, 10.0.0.1;"), "{text}");
        let expired = CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_700_000_000)),
        };
        assert!(explain(&cert(expired)).contains("expired at 2023-11-14T22:13:20Z"));
    }

    #[test]
    fn bad_ca_cert_is_named() {
        assert!(parse_ca_cert("not a pem").unwrap_err().to_string().contains("no PEM certificate"));
    }
}
