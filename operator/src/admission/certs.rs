//! The webhook's TLS identity: either made by the operator at start (`rcgen`: its own CA and a
//! serving certificate for the webhook's names), or read from a directory in the layout of a
//! `kubernetes.io/tls` Secret that cert-manager issues (`tls.crt`, `tls.key`, `ca.crt`) and
//! read again when those files change, so a renewed certificate is served without a restart
//! and the webhook configurations carry the CA that signed it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Where the serving certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Made by the operator at start, with a CA of its own.
    Own,
    /// Read from a directory holding `tls.crt`, `tls.key` and `ca.crt` (a mounted
    /// `kubernetes.io/tls` Secret, e.g. cert-manager's), checked for changes every 10 s.
    Dir(PathBuf),
}

/// A certificate and key with the CA (PEM) that the API server must trust for them.
pub struct Identity {
    /// The CA's PEM, for the webhook configurations' `caBundle`.
    pub ca_pem: String,
    /// The serving certificate chain and its signing key.
    pub key: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key)
        .context("the key is of no kind this server can sign with (RSA, ECDSA or Ed25519)")?;
    let certified = CertifiedKey::new(chain, signing);
    // A renewal caught between writing the certificate and the key does not serve.
    certified
        .keys_match()
        .map_err(|e| anyhow::anyhow!("the key does not belong to the certificate: {e}"))?;
    Ok(Arc::new(certified))
}

/// A CA and a serving certificate for `names`, made now.
pub fn own(names: Vec<String>) -> anyhow::Result<Identity> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "leitwerk-webhook-ca");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let mut leaf = CertificateParams::new(names)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "leitwerk-webhook");
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf.signed_by(&leaf_key, &*ca)?;
    let key = PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    Ok(Identity {
        ca_pem: ca.pem(),
        key: certified(vec![leaf.der().clone(), ca.der().clone()], &key)?,
    })
}

/// The identity in `dir` (`tls.crt`, `tls.key`, `ca.crt`), each error naming the file.
pub fn from_dir(dir: &Path) -> anyhow::Result<Identity> {
    let read = |name: &str| {
        let file = dir.join(name);
        std::fs::read(&file).with_context(|| {
            format!(
                "--webhook-cert-dir: {} cannot be read; mount a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt there",
                file.display()
            )
        })
    };
    let (crt, key, ca) = (read("tls.crt")?, read("tls.key")?, read("ca.crt")?);
    let chain = CertificateDer::pem_slice_iter(&crt)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}/tls.crt is not PEM certificates: {e}", dir.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{}/tls.crt holds no certificate",
        dir.display()
    );
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| anyhow::anyhow!("{}/tls.key is not a PEM private key: {e}", dir.display()))?;
    let ca_pem = String::from_utf8(ca)
        .ok()
        .filter(|pem| CertificateDer::pem_slice_iter(pem.as_bytes()).any(|c| c.is_ok()))
        .with_context(|| format!("{}/ca.crt holds no PEM certificate", dir.display()))?;
    Ok(Identity {
        ca_pem,
        key: certified(chain, &key).with_context(|| format!("{}/tls.key", dir.display()))?,
    })
}

/// The certificate served now; swapped when the files change.
#[derive(Debug)]
pub struct Current(RwLock<Arc<CertifiedKey>>);

impl Current {
    /// Serving `key` until [`Current::swap`].
    pub fn new(key: Arc<CertifiedKey>) -> Arc<Self> {
        Arc::new(Self(RwLock::new(key)))
    }

    /// Serves `key` from the next handshake on.
    pub fn swap(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut current) = self.0.write() {
            *current = key;
        }
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|k| k.clone())
    }
}

/// A TLS server configuration that serves whatever `current` holds.
pub fn server_config(current: Arc<Current>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(current);
    Ok(Arc::new(config))
}

/// The bytes of the three files, to notice a change.
pub fn fingerprint(dir: &Path) -> Vec<u8> {
    ["tls.crt", "tls.key", "ca.crt"]
        .iter()
        .flat_map(|f| std::fs::read(dir.join(f)).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, names: &[&str]) -> String {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &*ca).unwrap();
        std::fs::write(dir.join("tls.crt"), leaf.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        ca.pem()
    }

    #[test]
    fn a_certificate_directory_is_read_and_each_fault_names_its_file() {
        let dir = std::env::temp_dir().join(format!("leitwerk-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = write_pair(&dir, &["leitwerk-webhook.leitwerk.svc"]);
        let identity = from_dir(&dir).unwrap();
        assert_eq!(identity.ca_pem, ca);
        assert_eq!(identity.key.cert.len(), 1);
        let before = fingerprint(&dir);
        write_pair(&dir, &["leitwerk-webhook.leitwerk.svc"]);
        assert_ne!(fingerprint(&dir), before, "a renewal is noticed");

        // A key from another pair (a renewal caught half-written) is refused.
        let tls_key = std::fs::read(dir.join("tls.key")).unwrap();
        write_pair(&dir, &["other"]);
        std::fs::write(dir.join("tls.key"), &tls_key).unwrap();
        let err = format!("{:#}", from_dir(&dir).unwrap_err());
        assert!(err.contains("does not belong to the certificate"), "{err}");

        std::fs::write(dir.join("tls.key"), "not a key").unwrap();
        let err = format!("{:#}", from_dir(&dir).unwrap_err());
        assert!(err.contains("tls.key is not a PEM private key"), "{err}");
        std::fs::remove_file(dir.join("ca.crt")).unwrap();
        let err = format!("{:#}", from_dir(&dir).unwrap_err());
        assert!(
            err.contains("ca.crt cannot be read") && err.contains("kubernetes.io/tls"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_served_certificate_is_swapped_in_place() {
        let first = own(vec!["a.example".into()]).unwrap();
        let second = own(vec!["b.example".into()]).unwrap();
        assert_ne!(first.ca_pem, second.ca_pem);
        let current = Current::new(first.key.clone());
        current.swap(second.key.clone());
        let served = current.0.read().unwrap().clone();
        assert!(Arc::ptr_eq(&served, &second.key));
        assert!(server_config(current).is_ok());
    }
}
