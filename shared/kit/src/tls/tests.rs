//! The TLS settings through a real gRPC server and client: start-up refusals naming the
//! setting, and a rotation caught half-written.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::{Acceptor, ClientTls, ServerTls, endpoint};
use crate::server::{RunningServer, ServeOptions, ServerLimits, spawn_with};

/// A CA (its PEM) that issues server certificates for 127.0.0.1.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let pem = params.self_signed(&key).expect("CA").pem();
        Self { pem, issuer: Issuer::new(params, key) }
    }

    /// `(certificate, key)` PEM for 127.0.0.1.
    fn leaf(&self) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        (params.signed_by(&key, &self.issuer).expect("leaf").pem(), key.serialize_pem())
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("economy-kit-tls-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn server_tls(dir: &Path) -> ServerTls {
    ServerTls { cert_file: path(dir, "cert.pem"), key_file: path(dir, "key.pem"), client_ca_file: String::new() }
}

/// Trusting only `ca`'s certificate, written into `dir` as `name`.
fn trusting(dir: &Path, name: &str, ca: &Ca) -> ClientTls {
    std::fs::write(dir.join(name), &ca.pem).expect("CA file");
    ClientTls { ca_file: path(dir, name), ..ClientTls::default() }
}

async fn serve(tls: &ServerTls) -> RunningServer {
    let options = ServeOptions::tls(tls, "test.tls").expect("TLS settings");
    let limits = ServerLimits::default();
    spawn_with("127.0.0.1:0", "test", tonic::service::Routes::default(), &limits, options, CancellationToken::new())
        .await
        .expect("served")
}

/// True when a new connection trusting `tls` gets a health answer.
async fn answers(url: &str, tls: &ClientTls) -> bool {
    let Ok(channel) = endpoint(url, tls, "test.internal_tls").expect("endpoint").connect().await else {
        return false;
    };
    HealthClient::new(channel).check(HealthCheckRequest::default()).await.is_ok()
}

fn refusal(tls: &ServerTls) -> String {
    format!("{:#}", Acceptor::new(tls, "ledger.tls", false).expect_err("refused"))
}

#[test]
fn start_up_refusals_name_the_setting() {
    let dir = temp_dir();
    let (ca, other) = (Ca::new(), Ca::new());
    let ((cert, key), (_, other_key)) = (ca.leaf(), other.leaf());
    std::fs::write(dir.join("cert.pem"), cert).expect("cert");
    std::fs::write(dir.join("key.pem"), key).expect("key");
    std::fs::write(dir.join("other.key"), other_key).expect("key");
    let tls = server_tls(&dir);

    let alone = ServerTls { key_file: String::new(), ..tls.clone() };
    assert!(refusal(&alone).contains("ledger.tls.cert_file and ledger.tls.key_file go together"));
    let missing = ServerTls { cert_file: path(&dir, "missing.pem"), ..tls.clone() };
    assert!(refusal(&missing).contains("ledger.tls.cert_file"), "{}", refusal(&missing));
    let mismatched = ServerTls { key_file: path(&dir, "other.key"), ..tls.clone() };
    assert!(refusal(&mismatched).contains("does not fit"), "{}", refusal(&mismatched));
    let no_ca = ServerTls { client_ca_file: path(&dir, "key.pem"), ..tls.clone() };
    assert!(refusal(&no_ca).contains("ledger.tls.client_ca_file"), "{}", refusal(&no_ca));
    assert!(Acceptor::new(&tls, "ledger.tls", false).is_ok());
    // A client CA without the server's own certificate would serve plaintext to anyone.
    let ca_alone = ServerTls { client_ca_file: path(&dir, "cert.pem"), ..ServerTls::default() };
    let ca_alone = format!("{:#}", ServeOptions::tls(&ca_alone, "ledger.tls").expect_err("no server certificate"));
    assert!(ca_alone.contains("ledger.tls.client_ca_file requires"), "{ca_alone}");

    let client = trusting(&dir, "ca.pem", &ca);
    let plain = format!("{:#}", endpoint("http://127.0.0.1:1", &client, "market.internal_tls").expect_err("http"));
    assert!(plain.contains("market.internal_tls.ca_file is set"), "{plain}");
    let no_ca =
        ClientTls { cert_file: path(&dir, "cert.pem"), key_file: path(&dir, "key.pem"), ..ClientTls::default() };
    let no_ca = format!("{:#}", endpoint("http://127.0.0.1:1", &no_ca, "market.internal_tls").expect_err("no CA"));
    assert!(no_ca.contains("market.internal_tls.cert_file / key_file need"), "{no_ca}");
    let half = ClientTls { cert_file: path(&dir, "cert.pem"), ..client };
    let half = format!("{:#}", endpoint("https://127.0.0.1:1", &half, "market.internal_tls").expect_err("half"));
    assert!(half.contains("market.internal_tls.cert_file and market.internal_tls.key_file"), "{half}");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn a_rotation_caught_half_written_keeps_the_previous_certificate() {
    let dir = temp_dir();
    let (first, second) = (Ca::new(), Ca::new());
    let (first_cert, first_key) = first.leaf();
    std::fs::write(dir.join("cert.pem"), &first_cert).expect("cert");
    std::fs::write(dir.join("key.pem"), &first_key).expect("key");
    let server = serve(&server_tls(&dir)).await;
    let url = server.url();
    let (trusts_first, trusts_second) = (trusting(&dir, "first.pem", &first), trusting(&dir, "second.pem", &second));
    assert!(answers(&url, &trusts_first).await);
    assert!(!answers(&url, &trusts_second).await);

    let (second_cert, second_key) = second.leaf();
    std::fs::write(dir.join("cert.pem"), &second_cert).expect("new certificate, old key");
    assert!(answers(&url, &trusts_first).await, "a certificate without its key is not served");
    std::fs::write(dir.join("key.pem"), &second_key).expect("new key");
    assert!(answers(&url, &trusts_second).await, "the complete pair is served");
    assert!(!answers(&url, &trusts_first).await);
    server.stop().await.expect("stopped");
    std::fs::remove_dir_all(dir).expect("cleanup");
}
