//! TLS for the simulator: a fresh CA and a server certificate for `127.0.0.1`/`localhost` on every start, and the
//! rustls server configuration on the ring provider (aws-lc-rs is kept out of the build: it is slow to compile).

use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The PEM material of one start: the CA clients must trust, and the server's certificate and key.
pub(crate) struct Certs {
    pub(crate) ca_pem: String,
    pub(crate) server_cert_pem: String,
    pub(crate) server_key_pem: String,
}

/// Makes ring the process-wide rustls provider. Idempotent: a provider installed earlier (by another
/// simulator in the same test process, or by the host program) is kept.
pub(crate) fn install_ring_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(crate) fn generate() -> anyhow::Result<Certs> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "repave-sim test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    // rcgen turns SAN strings that parse as IP addresses into IP SANs.
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    params.distinguished_name.push(DnType::CommonName, "repave-sim");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(Certs { ca_pem: ca.pem(), server_cert_pem: cert.pem(), server_key_pem: key.serialize_pem() })
}

/// A rustls server config for the generated certificate, HTTP/1.1 only (the server speaks nothing else).
pub(crate) fn server_config(certs: &Certs) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = vec![CertificateDer::from_pem_slice(certs.server_cert_pem.as_bytes())?];
    let key = PrivateKeyDer::from_pem_slice(certs.server_key_pem.as_bytes())?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("building the TLS server config")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
