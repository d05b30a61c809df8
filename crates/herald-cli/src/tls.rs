//! Inbound TLS: the API's certificate chain and private key (`server.tls_cert`,
//! `server.tls_key`), read and checked once while the configuration is parsed, so that
//! `check-config` reports a broken or mismatched pair and `serve` never starts with one.
//!
//! rustls with the `ring` provider (as every other TLS user in the tree), TLS 1.2 and
//! 1.3, ALPN `http/1.1` only. The pair is not reloaded while herald runs: a renewed
//! certificate takes a restart. No message or `Debug` output shows the key.

use std::fmt;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The only application protocol the API speaks.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A certificate chain and its private key, checked, ready to serve TLS.
#[derive(Clone)]
pub struct TlsIdentity {
    /// Where the chain came from, in words (`the contents of `/etc/herald/tls.crt``).
    pub cert_source: String,
    /// Where the key came from, in words.
    pub key_source: String,
    /// The chain as DER, the server's own certificate first (compared by `PartialEq`).
    chain: Vec<CertificateDer<'static>>,
    /// The rustls configuration the listener hands every connection.
    server_config: Arc<rustls::ServerConfig>,
}

/// What is wrong with a certificate/key pair, and which of the two keys to point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsProblem {
    /// The certificate chain is unusable.
    Cert(String),
    /// The private key is unusable, or does not belong to the certificate.
    Key(String),
}

impl TlsIdentity {
    /// Parses the PEM `cert` chain and PEM `key` (PKCS#8, PKCS#1 RSA or SEC1 EC) and
    /// checks that the key belongs to the first certificate; `*_source` describe where
    /// each came from, for messages.
    ///
    /// # Errors
    /// Every problem found (the chain and the key are checked each on its own first),
    /// as a predicate of the value (`holds no certificate; ...`), never quoting the key.
    pub fn new(
        cert_source: &str,
        cert: &str,
        key_source: &str,
        key: &str,
    ) -> Result<TlsIdentity, Vec<TlsProblem>> {
        let (chain, private_key) = match (certificates(cert), private_key(key)) {
            (Ok(chain), Ok(private_key)) => (chain, private_key),
            (chain, private_key) => {
                let cert_problem = chain.err().map(TlsProblem::Cert);
                let key_problem = private_key.err().map(TlsProblem::Key);
                return Err(cert_problem.into_iter().chain(key_problem).collect());
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| vec![TlsProblem::Cert(format!("cannot set up TLS: {e}"))])?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), private_key)
            .map_err(|e| vec![pair_problem(&e)])?;
        server_config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok(TlsIdentity {
            cert_source: cert_source.to_owned(),
            key_source: key_source.to_owned(),
            chain,
            server_config: Arc::new(server_config),
        })
    }

    /// The rustls configuration for accepting connections.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.server_config)
    }
}

/// Never shows the key; the chain only by count.
impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert", &self.cert_source)
            .field("certificates", &self.chain.len())
            .field("key", &self.key_source)
            .finish_non_exhaustive()
    }
}

/// Two identities are the same when they name the same sources and hold the same chain
/// (a key that matches the chain is the chain's key).
impl PartialEq for TlsIdentity {
    fn eq(&self, other: &TlsIdentity) -> bool {
        self.cert_source == other.cert_source
            && self.key_source == other.key_source
            && self.chain == other.chain
    }
}

impl Eq for TlsIdentity {}

/// The hint every certificate problem ends with.
const CERT_HINT: &str = "give the server's certificate, then any intermediates, in PEM \
                         (-----BEGIN CERTIFICATE-----), e.g. tls_cert = \"file:/etc/herald/tls.crt\"";

/// The hint every key problem ends with.
const KEY_HINT: &str = "give the certificate's private key in PEM (PKCS#8 -----BEGIN PRIVATE \
                        KEY-----, RSA or EC), unencrypted, e.g. tls_key = \"file:/etc/herald/tls.key\"";

/// Every certificate in `pem`, in order.
fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not readable as PEM ({}); {CERT_HINT}", pem_error(&e)))?;
    if chain.is_empty() {
        let what = if private_key(pem).is_ok() {
            "holds a private key, not a certificate (are tls_cert and tls_key swapped?)"
        } else {
            "holds no certificate"
        };
        return Err(format!("{what}; {CERT_HINT}"));
    }
    Ok(chain)
}

/// The first private key in `pem`.
fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let what = if pem.contains("ENCRYPTED PRIVATE KEY") {
                "holds an encrypted private key, which herald cannot use (decrypt it, e.g. \
                 `openssl pkey -in tls.key -out tls-plain.key`, and keep that file readable \
                 only by herald)"
            } else if pem.contains("-----BEGIN CERTIFICATE-----") {
                "holds a certificate, not a private key (are tls_cert and tls_key swapped?)"
            } else {
                "holds no private key"
            };
            Err(format!("{what}; {KEY_HINT}"))
        }
        // The details of a damaged section may quote it; say only what kind of damage.
        Err(e) => Err(format!("is not readable as PEM ({}); {KEY_HINT}", pem_error(&e))),
    }
}

/// A PEM error in words that never quote the input.
fn pem_error(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a section has no -----END ...----- line",
        pem::Error::IllegalSectionStart { .. } => "a -----BEGIN ...----- line is malformed",
        pem::Error::Base64Decode(_) => "a section's base64 content is damaged",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "damaged PEM",
    }
}

/// Why rustls refused the pair.
fn pair_problem(error: &rustls::Error) -> TlsProblem {
    use rustls::{Error, InconsistentKeys};
    match error {
        Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => TlsProblem::Key(
            "does not belong to the certificate in tls_cert (its public key differs from the \
             first certificate's); give the key the certificate was issued for, and put the \
             server's own certificate first in tls_cert"
                .to_owned(),
        ),
        Error::InvalidCertificate(_) | Error::InconsistentKeys(_) => TlsProblem::Cert(format!(
            "holds a first certificate that cannot be parsed ({error}); {CERT_HINT}"
        )),
        // Anything else concerns loading the key: an encoding ring does not accept.
        _ => TlsProblem::Key(format!("is not a usable private key ({error}); {KEY_HINT}")),
    }
}
