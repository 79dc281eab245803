//! TLS for gctr's HTTP: the server's certificate and key (`--tls-cert`, `--tls-key`),
//! checked when they are loaded so a bad file is named at start, and the client's trust
//! roots (`--ca`, `--discovery-ca`). The TLS itself is rustls: tiny_http's
//! `ssl-rustls` feature on the server, ureq's `tls` feature on the client. Both use
//! rustls' ring provider.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// A server's certificate chain and private key, as PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub certificate_pem: Vec<u8>,
    pub private_key_pem: Vec<u8>,
}

impl fmt::Debug for ServerTls {
    /// Never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerTls(..)")
    }
}

impl ServerTls {
    /// Reads and checks `cert` (one or more PEM certificates, the server's first) and
    /// `key` (an unencrypted PEM private key: PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, String> {
        let certificate_pem = read(cert, "certificate")?;
        let chain = certificates(&certificate_pem)
            .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
        let private_key_pem = read(key, "key")?;
        let private_key = PrivateKeyDer::from_pem_slice(&private_key_pem).map_err(|e| {
            format!(
                "TLS key {}: no unencrypted PEM private key in it ({e})",
                key.display()
            )
        })?;
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private_key))
            .map_err(|e| {
                format!(
                    "TLS key {} and certificate {}: {e}",
                    key.display(),
                    cert.display()
                )
            })?;
        Ok(ServerTls {
            certificate_pem,
            private_key_pem,
        })
    }
}

/// A client configuration that trusts the certificates in the PEM file `ca` and
/// nothing else.
pub fn client_trusting(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let pem = read(ca, "CA")?;
    let named = |e: String| format!("TLS CA {}: {e}", ca.display());
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(&pem).map_err(named)? {
        roots
            .add(certificate)
            .map_err(|e| named(format!("not a usable CA certificate: {e}")))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| named(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the TLS {what} {}: {e}", path.display()))
}

/// Every certificate in `pem`; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in it (expected PEM `BEGIN CERTIFICATE`)".into());
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_without_certificates_or_keys_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = ServerTls::load(&junk, &junk).unwrap_err();
        assert!(
            e.starts_with(&format!(
                "TLS certificate {}: no certificate",
                junk.display()
            )),
            "{e}"
        );
        let e = client_trusting(&junk).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = client_trusting(&missing).unwrap_err();
        assert!(e.starts_with("cannot read the TLS CA"), "{e}");
    }
}
