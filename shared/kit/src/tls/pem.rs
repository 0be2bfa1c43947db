//! PEM files read into rustls' types, each error naming the file and the setting.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The crypto provider of every TLS endpoint: ring, the provider tonic's `tls-ring` and
/// sqlx's `tls-rustls-ring` use too (no OpenSSL, and none of aws-lc's CMake build). rustls
/// 0.23.48 deprecates it for lacking post-quantum key exchange, which no peer of these
/// services requires.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of the PEM file `path` (`setting` names it in errors); at least one.
pub(crate) fn certificates(path: &str, setting: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| anyhow::anyhow!("{setting}: cannot read certificates from {path}: {error}"))?;
    anyhow::ensure!(!certificates.is_empty(), "{setting}: {path} holds no PEM certificate");
    Ok(certificates)
}

/// The first private key of the PEM file `path`.
pub(crate) fn private_key(path: &str, setting: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|error| anyhow::anyhow!("{setting}: cannot read a private key from {path}: {error}"))
}

/// The CA certificates of `path` as a root store.
pub(crate) fn roots(path: &str, setting: &str) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path, setting)? {
        roots.add(certificate).with_context(|| format!("{setting}: {path} holds an unusable CA certificate"))?;
    }
    Ok(Arc::new(roots))
}

/// The chain of `cert_file` with the key of `key_file`, checked to match.
pub(crate) fn certified_key(cert_file: &str, key_file: &str, section: &str) -> anyhow::Result<CertifiedKey> {
    let chain = certificates(cert_file, &format!("{section}.cert_file"))?;
    let key = private_key(key_file, &format!("{section}.key_file"))?;
    CertifiedKey::from_der(chain, key, &provider())
        .with_context(|| format!("{section}: the key of {key_file} does not fit the certificate of {cert_file}"))
}

/// Reads a whole file, naming `setting` when it cannot.
pub(crate) fn read(path: &str, setting: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(Path::new(path)).with_context(|| format!("{setting}: cannot read {path}"))
}
