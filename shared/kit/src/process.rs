//! The life of one service as its own process (the `economy-<service>` binaries of
//! production deployments): tracing and metrics from the settings, the internal identity
//! key, the service started, then a graceful stop on Ctrl-C or SIGTERM.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::identity::{IdentityConfig, IdentityKey};
use crate::metrics::MetricsConfig;
use crate::server::{RunningServer, shutdown_signal};
use crate::telemetry::{self, LogConfig};

/// Runs a service until Ctrl-C / SIGTERM: initialises logging (`log`) and the metrics
/// endpoint (`metrics`), derives the internal identity key (`identity`), calls `start`
/// with it and the shutdown token, then on the signal cancels the token, waits for the
/// server to drain and flushes traces. Errors: invalid identity settings, a metrics
/// listener or service that cannot start, or the server's own failure.
pub async fn run<Start, Started>(
    log: &LogConfig,
    metrics: &MetricsConfig,
    identity: &IdentityConfig,
    start: Start,
) -> anyhow::Result<()>
where
    Start: FnOnce(IdentityKey, CancellationToken) -> Started,
    Started: Future<Output = anyhow::Result<RunningServer>>,
{
    telemetry::init(log);
    crate::metrics::install(metrics).await?;
    let identity = IdentityKey::new(identity)?;
    let shutdown = CancellationToken::new();
    let server = start(identity, shutdown.clone()).await?;
    shutdown_signal().await;
    shutdown.cancel();
    let stopped = server.wait().await;
    telemetry::shutdown().await;
    stopped
}
