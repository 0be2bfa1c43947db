//! A local identity provider for the OIDC tests: signs tokens with the test keys of
//! `tests/fixtures/oidc` and publishes the public keys it is told to as a JWKS on
//! `http://127.0.0.1:<port>/certs` — or `https://` with a development CA — (a tiny hyper
//! server; no network). It counts the fetches, can answer 503 (down) or stop listening
//! (outage), and change its key set (rotation).

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use economy_kit::tls::ServerTls;
use economy_testkit::tls::DevPki;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

pub const ISSUER: &str = "https://idp.test/realms/economy";
pub const AUDIENCE: &str = "economy-gateway";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc")
}

/// The public JWK of the test key `kid` (`rsa-1`, `rsa-2`, `ec-1`, `ed-1`).
pub fn jwk(kid: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(format!("{kid}.jwk.json"))).unwrap()).unwrap()
}

/// A token signed by the test key `kid`, with `kid` in its header.
pub fn sign(kid: &str, claims: &Value) -> String {
    let pem = std::fs::read(fixtures().join(format!("{kid}.pem"))).unwrap();
    let (algorithm, key) = match kid.split('-').next().unwrap() {
        "rsa" => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem).unwrap()),
        "ec" => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem).unwrap()),
        "ed" => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem).unwrap()),
        other => panic!("no test key family {other}"),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &key).unwrap()
}

/// Keycloak-style claims for the user `sub` with realm roles `roles`, issued for the test
/// issuer and audience, valid for an hour.
pub fn keycloak_claims(sub: &str, roles: &[&str]) -> Value {
    let now = economy_kit::time::now_millis() / 1000;
    json!({
        "iss": ISSUER,
        "aud": ["account", AUDIENCE],
        "sub": sub,
        "iat": now,
        "exp": now + 3600,
        "preferred_username": "player",
        "realm_access": {"roles": roles},
    })
}

/// The JWKS endpoint.
pub struct Provider {
    pub url: String,
    state: Arc<State>,
    server: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
    down: AtomicBool,
}

impl Provider {
    /// Serves the public keys of `kids`.
    pub async fn start(kids: &[&str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        let connections = TcpListenerStream::new(listener).map(Result::unwrap);
        Self::serve(url, Box::pin(connections), kids)
    }

    /// Serves the public keys of `kids` over TLS with the server certificate of `pki`
    /// (`https://127.0.0.1:<port>/certs`).
    pub async fn start_tls(kids: &[&str], pki: &DevPki) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/certs", listener.local_addr().unwrap());
        let tls = ServerTls {
            cert_file: pki.server_cert_file.display().to_string(),
            key_file: pki.server_key_file.display().to_string(),
            ..ServerTls::default()
        };
        let acceptor = economy_kit::tls::Acceptor::new(&tls, "test.tls", true).unwrap();
        // Never cancelled: the listener lives as long as the test.
        let incoming = economy_kit::tls::incoming(listener, acceptor, CancellationToken::new());
        Self::serve(url, Box::pin(incoming.map(Result::unwrap)), kids)
    }

    fn serve<IO>(url: String, mut connections: Pin<Box<dyn Stream<Item = IO> + Send>>, kids: &[&str]) -> Self
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = Arc::new(State::default());
        let served = state.clone();
        // The connections live in the accept task's JoinSet: aborting it closes them all.
        let server = tokio::spawn(async move {
            let mut open = JoinSet::new();
            while let Some(stream) = connections.next().await {
                let state = served.clone();
                let service = service_fn(move |request| answer(state.clone(), request));
                open.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let provider = Self { url, state, server };
        provider.publish(kids);
        provider
    }

    /// Publishes exactly the keys `kids` from now on.
    pub fn publish(&self, kids: &[&str]) {
        *self.state.keys.lock().unwrap() = kids.iter().map(|kid| jwk(kid)).collect();
    }

    /// How many times the JWKS was requested.
    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    /// Answers 503 while `down`.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Stops listening and closes every connection: the provider is gone.
    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
    }
}

async fn answer(state: Arc<State>, _: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        let mut down = Response::new(Full::new(Bytes::from_static(b"down")));
        *down.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return Ok(down);
    }
    let body = json!({ "keys": *state.keys.lock().unwrap() }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert("content-type", "application/json".parse().unwrap());
    Ok(response)
}
