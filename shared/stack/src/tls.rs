//! A throwaway development PKI for a stack served over TLS (`economy up --tls`, the tests;
//! docs/operations.md, "TLS"): one CA, one server certificate every server presents and
//! one client certificate the internal clients present for mTLS. Never for production:
//! the certificates name only the loopback host.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use economy_kit::tls::{ClientTls, ServerTls};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The names of the loopback host every development certificate carries.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate authority held in memory: it issues leaf certificates as PEM.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("DevCa")
    }
}

/// A leaf certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl DevCa {
    /// A new CA (ECDSA P-256) named `common_name`.
    pub fn new(common_name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let pem = params.self_signed(&key)?.pem();
        Ok(Self { issuer: Issuer::new(params, key), pem })
    }

    /// The CA certificate (what clients and mTLS servers trust).
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> anyhow::Result<Leaf> {
        self.leaf(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate named `common_name` (for mTLS).
    pub fn client(&self, common_name: &str) -> anyhow::Result<Leaf> {
        self.leaf(&[common_name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> anyhow::Result<Leaf> {
        let mut params = CertificateParams::new(names.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name = name(names.first().copied().unwrap_or("economy"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert_pem = params.signed_by(&key, &self.issuer)?.pem();
        Ok(Leaf { cert_pem, key_pem: key.serialize_pem() })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// The files of a development PKI in one directory: `ca.pem`, `server.pem` /
/// `server.key` (for [`LOOPBACK_NAMES`]), `client.pem` / `client.key` (keys owner-only).
#[derive(Debug, Clone)]
pub struct DevPki {
    /// The CA certificate: `ca.pem`.
    pub ca_file: PathBuf,
    /// Every server's certificate: `server.pem`.
    pub server_cert_file: PathBuf,
    /// Its key: `server.key`.
    pub server_key_file: PathBuf,
    /// The internal clients' certificate: `client.pem`.
    pub client_cert_file: PathBuf,
    /// Its key: `client.key`.
    pub client_key_file: PathBuf,
}

impl DevPki {
    /// The file names under `dir` (nothing is written).
    pub fn at(dir: &Path) -> Self {
        Self {
            ca_file: dir.join("ca.pem"),
            server_cert_file: dir.join("server.pem"),
            server_key_file: dir.join("server.key"),
            client_cert_file: dir.join("client.pem"),
            client_key_file: dir.join("client.key"),
        }
    }

    /// Generates a fresh CA and its certificates into `dir` (created if missing),
    /// replacing any earlier ones. The CA's key is not kept.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let pki = Self::at(dir);
        let ca = DevCa::new("Economy development CA")?;
        let server = ca.server(&LOOPBACK_NAMES)?;
        let client = ca.client("economy-internal")?;
        write(&pki.ca_file, ca.cert_pem(), false)?;
        write(&pki.server_cert_file, &server.cert_pem, false)?;
        write(&pki.server_key_file, &server.key_pem, true)?;
        write(&pki.client_cert_file, &client.cert_pem, false)?;
        write(&pki.client_key_file, &client.key_pem, true)?;
        Ok(pki)
    }

    /// A server's `tls`: the server certificate, and when `mtls` the CA as
    /// `client_ca_file` (clients must present a certificate it signed).
    pub fn server_tls(&self, mtls: bool) -> ServerTls {
        ServerTls {
            cert_file: path(&self.server_cert_file),
            key_file: path(&self.server_key_file),
            client_ca_file: if mtls { path(&self.ca_file) } else { String::new() },
        }
    }

    /// An internal client's `internal_tls`: the CA, and the client certificate.
    pub fn client_tls(&self) -> ClientTls {
        ClientTls {
            ca_file: path(&self.ca_file),
            cert_file: path(&self.client_cert_file),
            key_file: path(&self.client_key_file),
        }
    }
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

/// Replaces `path` with `contents` (mode 0600 on unix when `secret`).
fn write(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}
