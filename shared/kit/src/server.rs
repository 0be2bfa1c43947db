//! The gRPC server every service runs (docs/operations.md, "Observability"):
//! the service's routes plus `grpc.health.v1` and server reflection (v1 and v1alpha) over
//! the Economy descriptor set, TLS and mTLS (`crate::tls`), request timeout, per-connection concurrency limit,
//! graceful shutdown on a cancellation token, and `crate::observe` (request spans joined
//! to the caller's trace, RPC metrics) around every request.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::Connected;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tonic_web::GrpcWebLayer;

use crate::connect::ConnectLayer;
use deadline::DeadlineLayer;
pub use tower_http::cors::CorsLayer;

use crate::observe::ObserveLayer;
use crate::tls::{Acceptor, ServerTls};

pub mod deadline;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// `[server]` limits shared by every service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerLimits {
    /// Largest request or response message, bytes.
    pub max_message_bytes: usize,
    /// Longest deadline of one request, seconds: caps the caller's `grpc-timeout`
    /// (`deadline`; docs/operations.md, "Deadlines").
    pub request_timeout_secs: u64,
    /// Concurrent requests on one HTTP/2 connection.
    pub concurrency_per_connection: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self { max_message_bytes: 4 * 1024 * 1024, request_timeout_secs: 30, concurrency_per_connection: 256 }
    }
}

/// A server running in the background.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound address (the real port when started on `:0`).
    pub addr: SocketAddr,
    /// True when it serves TLS.
    pub tls: bool,
    /// Its `grpc.health.v1` reporter (the gateway reports its upstreams through it).
    pub health: HealthReporter,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// `http://addr`, or `https://addr` when it serves TLS, for clients.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Stops accepting, drains in-flight requests and waits for the server to end.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await?
    }

    /// This server, whose end (`stop`, `wait`) also waits for `drain` once the listener
    /// has stopped and its connections have closed: work its requests left running
    /// (e.g. the gateway's record of a write whose client went away).
    pub fn draining(self, drain: impl Future<Output = ()> + Send + 'static) -> Self {
        let Self { addr, tls, health, shutdown, task } = self;
        let task = tokio::spawn(async move {
            let served = task.await;
            drain.await;
            served?
        });
        Self { addr, tls, health, shutdown, task }
    }

    /// Waits until the server ends (after its token is cancelled, or on failure).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

/// Binds `listen` (e.g. `127.0.0.1:50061`, or port 0 for any) and serves `routes` in
/// plaintext with health (`service_name` and the empty name reported SERVING) and
/// reflection until `shutdown` is cancelled.
pub async fn spawn(
    listen: &str,
    service_name: &str,
    routes: Routes,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningServer> {
    spawn_with(listen, service_name, routes, limits, ServeOptions::default(), shutdown).await
}

/// What a server offers besides gRPC over HTTP/2.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// gRPC-web over HTTP/1.1 (and HTTP/2) with this CORS policy (the gateway, for the
    /// BFF); `None`: gRPC only.
    pub grpc_web: Option<CorsLayer>,
    /// TLS of the listener (docs/operations.md, "TLS"); `None`: plaintext.
    pub tls: Option<Acceptor>,
    /// The Connect protocol beside gRPC-web (`crate::connect`; served only with
    /// `grpc_web`, whose CORS policy and HTTP/1.1 it shares); `None`: not served.
    pub connect: Option<ConnectLayer>,
    /// Reflection advertises every service of the API (the gateway, which routes them
    /// all); otherwise only the server's own service and health.
    pub reflect_whole_api: bool,
    /// Serve no server reflection (the gateway's `gateway.reflection`; docs/gateway.md,
    /// "Start-up refusals"). Default: reflection is served.
    pub without_reflection: bool,
}

impl ServeOptions {
    /// Options serving `tls` when it is enabled (`section` names its settings in errors,
    /// e.g. `ledger.tls`), gRPC only. Errors: see [`Acceptor::new`].
    pub fn tls(tls: &ServerTls, section: &str) -> anyhow::Result<Self> {
        Ok(Self { tls: acceptor(tls, section, false)?, ..Self::default() })
    }

    /// Options serving gRPC-web with `cors` beside gRPC, over `tls` when it is enabled.
    pub fn grpc_web(cors: CorsLayer, tls: &ServerTls, section: &str) -> anyhow::Result<Self> {
        Ok(Self { tls: acceptor(tls, section, true)?, grpc_web: Some(cors), ..Self::default() })
    }
}

fn acceptor(tls: &ServerTls, section: &str, http1: bool) -> anyhow::Result<Option<Acceptor>> {
    anyhow::ensure!(
        tls.enabled() || tls.client_ca_file.is_empty(),
        "{section}.client_ca_file requires {section}.cert_file and {section}.key_file: without them the \
         server would be plaintext and require no client certificate"
    );
    tls.enabled().then(|| Acceptor::new(tls, section, http1)).transpose()
}

/// `spawn` with `options`: gRPC-web and CORS, TLS (the certificate re-read when its files
/// change, client certificates required when `client_ca_file` is set).
pub async fn spawn_with(
    listen: &str,
    service_name: &str,
    routes: Routes,
    limits: &ServerLimits,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningServer> {
    let listener =
        TcpListener::bind(listen).await.map_err(|error| anyhow::anyhow!("cannot listen on {listen}: {error}"))?;
    let addr = listener.local_addr()?;
    let reflection = match (options.without_reflection, options.reflect_whole_api) {
        (true, _) => Reflection::Off,
        (false, true) => Reflection::WholeApi,
        (false, false) => Reflection::Own,
    };
    let (health, routes) = with_operator_services(routes, service_name, reflection).await?;
    // No `Server::timeout`: `DeadlineLayer` keeps the deadline, and answers it with
    // `DEADLINE_EXCEEDED` where tonic's timeout answers `CANCELLED`.
    let builder = Server::builder()
        .concurrency_limit_per_connection(limits.concurrency_per_connection)
        .http2_keepalive_interval(Some(Duration::from_secs(30)));
    let deadline = DeadlineLayer::new(service_name, Duration::from_secs(limits.request_timeout_secs));
    let layers = (ObserveLayer::new(service_name), deadline);
    let signal = shutdown.clone().cancelled_owned();
    let tls = options.tls.is_some();
    let serve = match options.tls {
        Some(acceptor) => {
            let incoming = crate::tls::incoming(listener, acceptor, shutdown.clone());
            serve(builder, routes, options.grpc_web, options.connect, layers, incoming, signal)
        }
        None => {
            let incoming = plaintext(listener);
            serve(builder, routes, options.grpc_web, options.connect, layers, incoming, signal)
        }
    };
    let name = service_name.to_owned();
    let task = tokio::spawn(async move {
        serve.await?;
        tracing::info!(service = %name, "server stopped");
        Ok(())
    });
    tracing::info!(service = service_name, %addr, tls, "serving");
    Ok(RunningServer { addr, tls, health, shutdown, task })
}

/// The connections of `listener`, with TCP_NODELAY: without it a response written in
/// several frames waits for the peer's delayed ACK (~40 ms); tonic's own setting does not
/// apply to a given listener.
fn plaintext(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> + Send + 'static {
    TcpListenerStream::new(listener).map(|stream| {
        if let Ok(stream) = &stream
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
        stream
    })
}

/// The server future: `routes` behind the observe layer and the request deadline (and
/// gRPC-web with its CORS policy) over the connections of `incoming` until `signal`.
fn serve<I, IO>(
    builder: Server,
    routes: Routes,
    grpc_web: Option<CorsLayer>,
    connect: Option<ConnectLayer>,
    (observe, deadline): (ObserveLayer, DeadlineLayer),
    incoming: I,
    signal: impl Future<Output = ()> + Send + 'static,
) -> BoxFuture<'static, Result<(), tonic::transport::Error>>
where
    I: Stream<Item = std::io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    match grpc_web {
        Some(cors) => {
            let mut builder = builder
                .accept_http1(true)
                .layer(cors)
                .layer(tower::util::option_layer(connect))
                .layer(GrpcWebLayer::new())
                .layer(observe)
                .layer(deadline);
            Box::pin(builder.add_routes(routes).serve_with_incoming_shutdown(incoming, signal))
        }
        None => {
            let mut builder = builder.layer(observe).layer(deadline);
            Box::pin(builder.add_routes(routes).serve_with_incoming_shutdown(incoming, signal))
        }
    }
}

/// The standard health service every server answers.
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// What server reflection advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reflection {
    Off,
    /// The server's own service and health are listed (a client is not offered a service
    /// it would get `UNIMPLEMENTED` from); descriptors of the rest of the API still resolve
    /// by symbol.
    Own,
    WholeApi,
}

async fn with_operator_services(
    routes: Routes,
    service_name: &str,
    reflection_of: Reflection,
) -> anyhow::Result<(HealthReporter, Routes)> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status(service_name, ServingStatus::Serving).await;
    reporter.set_service_status("", ServingStatus::Serving).await;
    let reflection = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(economy_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        match reflection_of {
            Reflection::Own => builder.with_service_name(service_name).with_service_name(HEALTH_SERVICE),
            _ => builder,
        }
    };
    let routes = routes.add_service(health);
    if reflection_of == Reflection::Off {
        return Ok((reporter, routes));
    }
    let routes = routes.add_service(reflection().build_v1()?).add_service(reflection().build_v1alpha()?);
    Ok((reporter, routes))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
