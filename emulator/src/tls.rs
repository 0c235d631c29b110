//! The emulator's certificate authority and its server certificate.
//!
//! A fresh CA is generated at every start (rcgen, aws-lc-rs). The server certificate it signs
//! covers the real host names of every emulated service (wildcards for per-vault and
//! per-account hosts) plus `localhost` and `127.0.0.1`, so clients keep full certificate
//! validation and only add the CA to their trusted roots.
//!
//! The same CA also signs a second leaf, for `localhost` and `127.0.0.1` only, that the
//! emulator hands to the Azurite it proxies storage calls to ([`crate::azurite`]): the
//! emulator's proxy then trusts Azurite by the one CA it already has.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Host names the server certificate is valid for.
pub const SERVED_NAMES: &[&str] = &[
    "*.vault.azure.net",
    "management.azure.com",
    "*.openai.azure.com",
    "*.cognitiveservices.azure.com",
    "*.services.ai.azure.com",
    "*.blob.core.windows.net",
    "localhost",
    "127.0.0.1",
];

/// Failure to build the certificates or the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the emulator's certificates failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("building the TLS server configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Host names of the leaf the emulator gives the storage emulator it proxies to.
pub const UPSTREAM_NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// The generated CA (its PEM, for clients), the server-side TLS configuration, and a leaf
/// certificate with its key for the local storage emulator ([`UPSTREAM_NAMES`]).
pub struct Pki {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
    /// PEM of a certificate for [`UPSTREAM_NAMES`], signed by the CA.
    pub upstream_cert_pem: String,
    /// PEM (PKCS#8) of that certificate's private key.
    pub upstream_key_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

impl Pki {
    /// Generates a CA and a server certificate for [`SERVED_NAMES`].
    pub fn generate() -> Result<Self, TlsError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "keyflip emulator CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params =
            CertificateParams::new(SERVED_NAMES.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "keyflip emulator");
        let leaf = leaf_params.signed_by(&leaf_key, &ca)?;

        let upstream_key = KeyPair::generate()?;
        let mut upstream_params =
            CertificateParams::new(UPSTREAM_NAMES.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        upstream_params
            .distinguished_name
            .push(DnType::CommonName, "keyflip emulator storage upstream");
        let upstream = upstream_params.signed_by(&upstream_key, &ca)?;

        let chain = vec![
            CertificateDer::from(leaf.der().to_vec()),
            CertificateDer::from(ca.der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: ca.pem(),
            server_config: Arc::new(config),
            upstream_cert_pem: upstream.pem(),
            upstream_key_pem: upstream_key.serialize_pem(),
        })
    }
}
