//! Serving TLS: a rustls acceptor whose certificate is re-read when its files change
//! (rotation without a restart), requiring client certificates when `client_ca_file` is
//! set (mTLS), and the stream of accepted TLS connections a tonic server serves.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::ServerTls;
use super::pem::{certified_key, provider, roots};

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A server's TLS configuration, ready to accept connections.
#[derive(Clone)]
pub struct Acceptor(TlsAcceptor);

impl fmt::Debug for Acceptor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Acceptor")
    }
}

impl Acceptor {
    /// The acceptor of `tls` (`section` names its settings in errors, e.g.
    /// `gateway.tls`), offering HTTP/2 and, when `http1` (gRPC-web), HTTP/1.1 by ALPN.
    ///
    /// Errors: only one of `cert_file`/`key_file` set, unreadable or mismatched files, an
    /// unusable `client_ca_file`.
    pub fn new(tls: &ServerTls, section: &str, http1: bool) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !tls.cert_file.is_empty() && !tls.key_file.is_empty(),
            "{section}.cert_file and {section}.key_file go together: set both or neither"
        );
        let resolver = Arc::new(ReloadingCert::load(&tls.cert_file, &tls.key_file, section)?);
        let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
        let builder = if tls.client_ca_file.is_empty() {
            builder.with_no_client_auth()
        } else {
            let roots = roots(&tls.client_ca_file, &format!("{section}.client_ca_file"))?;
            builder.with_client_cert_verifier(WebPkiClientVerifier::builder_with_provider(roots, provider()).build()?)
        };
        let mut config = builder.with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"h2".to_vec()];
        if http1 {
            config.alpn_protocols.push(b"http/1.1".to_vec());
        }
        Ok(Self(TlsAcceptor::from(Arc::new(config))))
    }
}

/// The TLS connections accepted on `listener` until `shutdown`: each handshake runs on
/// its own task (a slow client holds up no other), bounded by a timeout; a failed one
/// (no client certificate under mTLS, an unknown CA, plaintext) is logged and dropped.
pub fn incoming(
    listener: TcpListener,
    acceptor: Acceptor,
    shutdown: CancellationToken,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // E.g. out of file descriptors: give the system a moment, do not spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            if let Err(error) = stream.set_nodelay(true) {
                tracing::warn!(%error, "cannot set TCP_NODELAY");
            }
            let (acceptor, sender) = (acceptor.0.clone(), sender.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = sender.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}

/// The certificate and key files' modification times and sizes: a change in either is a
/// rotation.
type Stamp = [(Option<SystemTime>, u64); 2];

/// Resolves every handshake to the current certificate, re-reading the files first when
/// they changed. A rotation caught half-written (unreadable, or a key that does not fit
/// the certificate yet) keeps the previous certificate and is tried again at the next
/// handshake.
struct ReloadingCert {
    cert_file: String,
    key_file: String,
    section: String,
    current: Mutex<(Stamp, Arc<CertifiedKey>)>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("ReloadingCert").field("cert_file", &self.cert_file).finish_non_exhaustive()
    }
}

impl ReloadingCert {
    fn load(cert_file: &str, key_file: &str, section: &str) -> anyhow::Result<Self> {
        let stamp = stamp(cert_file, key_file);
        let key = Arc::new(certified_key(cert_file, key_file, section)?);
        Ok(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            section: section.to_owned(),
            current: Mutex::new((stamp, key)),
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let stamp = stamp(&self.cert_file, &self.key_file);
        if stamp != current.0 {
            match certified_key(&self.cert_file, &self.key_file, &self.section) {
                Ok(key) => {
                    *current = (stamp, Arc::new(key));
                    tracing::info!(cert_file = %self.cert_file, "TLS certificate reloaded");
                }
                Err(error) => tracing::warn!(error = %format!("{error:#}"), "keeping the previous TLS certificate"),
            }
        }
        Some(current.1.clone())
    }
}

fn stamp(cert_file: &str, key_file: &str) -> Stamp {
    let of =
        |path: &str| std::fs::metadata(path).map_or((None, 0), |metadata| (metadata.modified().ok(), metadata.len()));
    [of(cert_file), of(key_file)]
}
