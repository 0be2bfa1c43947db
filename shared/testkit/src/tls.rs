//! TLS helpers of the tests: a call over HTTP/1.1 and TLS (gRPC-web to the gateway), and
//! a health check through a TLS channel that reports how it failed.

use std::sync::Arc;

use bytes::Bytes;
use economy_kit::tls::ClientTls;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::tls_channel;

pub use economy_stack::tls::{DevCa, DevPki, LOOPBACK_NAMES, Leaf};

/// Sends `request` over HTTP/1.1 and TLS to `addr`, trusting only the CA certificates in
/// the PEM file `ca_file` and offering ALPN `http/1.1` (as a browser's gRPC-web call);
/// returns the head and the whole body. Panics when the connection or handshake fails.
pub async fn http1_over_tls(
    addr: std::net::SocketAddr,
    ca_file: &str,
    request: http::Request<Full<Bytes>>,
) -> (http::response::Parts, Bytes) {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_file_iter(ca_file).expect("a CA file") {
        roots.add(certificate.expect("a CA certificate")).expect("a usable CA");
    }
    #[allow(deprecated)] // the provider every endpoint of the project uses (economy_kit::tls)
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connected");
    let name = ServerName::from(addr.ip());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("a response");
    let (head, body) = response.into_parts();
    (head, body.collect().await.expect("the body").to_bytes())
}

/// The health status of the server at `url` (`https://…`) asked through a channel
/// connected with `tls`, or the failure (connection, handshake or call) as text. Under
/// TLS 1.3 a server refuses a client certificate after the client's side of the
/// handshake is done, so a refusal may surface at the call rather than at connect.
pub async fn health_over_tls(url: &str, tls: &ClientTls) -> Result<i32, String> {
    let channel = tls_channel(url, tls).await.map_err(|error| format!("connect: {error:?}"))?;
    let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
    answer.map(|response| response.into_inner().status).map_err(|status| format!("call: {status:?}"))
}
