//! The gRPC server every service runs (docs/operations.md, "Observability"):
//! the service's routes plus `grpc.health.v1` and server reflection (v1 and v1alpha) over
//! the Economy descriptor set, request timeout, per-connection concurrency limit,
//! graceful shutdown on a cancellation token, and `crate::observe` (request spans joined
//! to the caller's trace, RPC metrics) around every request.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tonic_web::GrpcWebLayer;
use tower_http::cors::CorsLayer;

use crate::observe::ObserveLayer;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// `[server]` limits shared by every service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerLimits {
    /// Largest request or response message, bytes.
    pub max_message_bytes: usize,
    /// Deadline of one request, seconds.
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
    /// Its `grpc.health.v1` reporter (the gateway reports its upstreams through it).
    pub health: HealthReporter,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// `http://addr`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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
        let Self { addr, health, shutdown, task } = self;
        let task = tokio::spawn(async move {
            let served = task.await;
            drain.await;
            served?
        });
        Self { addr, health, shutdown, task }
    }

    /// Waits until the server ends (after its token is cancelled, or on failure).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

/// Binds `listen` (e.g. `127.0.0.1:50061`, or port 0 for any) and serves `routes` with
/// health (`service_name` and the empty name reported SERVING) and reflection until
/// `shutdown` is cancelled.
pub async fn spawn(
    listen: &str,
    service_name: &str,
    routes: Routes,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningServer> {
    spawn_with(listen, service_name, routes, limits, false, shutdown).await
}

/// `spawn`, plus gRPC-web over HTTP/1.1 with permissive CORS when `grpc_web` (the
/// gateway, for the BFF).
pub async fn spawn_with(
    listen: &str,
    service_name: &str,
    routes: Routes,
    limits: &ServerLimits,
    grpc_web: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningServer> {
    let listener =
        TcpListener::bind(listen).await.map_err(|error| anyhow::anyhow!("cannot listen on {listen}: {error}"))?;
    let addr = listener.local_addr()?;
    let (health, routes) = with_operator_services(routes, service_name).await?;
    let builder = Server::builder()
        .timeout(Duration::from_secs(limits.request_timeout_secs))
        .concurrency_limit_per_connection(limits.concurrency_per_connection)
        .http2_keepalive_interval(Some(Duration::from_secs(30)));
    // Without TCP_NODELAY a response written in several frames waits for the peer's
    // delayed ACK (~40 ms); tonic's own setting does not apply to a given listener.
    let incoming = TcpListenerStream::new(listener).map(|stream| {
        if let Ok(stream) = &stream
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
        stream
    });
    let signal = shutdown.clone().cancelled_owned();
    let serve: BoxFuture<'static, Result<(), tonic::transport::Error>> = if grpc_web {
        let mut builder = builder
            .accept_http1(true)
            .layer(CorsLayer::permissive())
            .layer(GrpcWebLayer::new())
            .layer(ObserveLayer::new(service_name));
        Box::pin(builder.add_routes(routes).serve_with_incoming_shutdown(incoming, signal))
    } else {
        let mut builder = builder.layer(ObserveLayer::new(service_name));
        Box::pin(builder.add_routes(routes).serve_with_incoming_shutdown(incoming, signal))
    };
    let name = service_name.to_owned();
    let task = tokio::spawn(async move {
        serve.await?;
        tracing::info!(service = %name, "server stopped");
        Ok(())
    });
    tracing::info!(service = service_name, %addr, "serving");
    Ok(RunningServer { addr, health, shutdown, task })
}

async fn with_operator_services(routes: Routes, service_name: &str) -> anyhow::Result<(HealthReporter, Routes)> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status(service_name, ServingStatus::Serving).await;
    reporter.set_service_status("", ServingStatus::Serving).await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(economy_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let routes =
        routes.add_service(health).add_service(reflection().build_v1()?).add_service(reflection().build_v1alpha()?);
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
