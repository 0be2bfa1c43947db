//! `economy-items`: the Item Instances service as its own process (production deployments).
//! Configuration: `--config FILE` (TOML) and `ECONOMY_<SECTION>__<KEY>` variables.

use economy_items::ItemsConfig;
use economy_kit::identity::{IdentityConfig, IdentityKey};
use economy_kit::metrics::MetricsConfig;
use economy_kit::server::{ServerLimits, shutdown_signal};
use economy_kit::telemetry::{self, LogConfig};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Settings {
    items: ItemsConfig,
    identity: IdentityConfig,
    server: ServerLimits,
    log: LogConfig,
    metrics: MetricsConfig,
}

#[global_allocator]
static ALLOCATOR: economy_kit::Allocator = economy_kit::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config_file = economy_kit::config::file_argument("economy-items")?;
    let settings: Settings = economy_kit::config::load(config_file.as_deref())?;
    telemetry::init(&settings.log);
    economy_kit::metrics::install(&settings.metrics).await?;
    let identity = IdentityKey::new(&settings.identity)?;
    let shutdown = CancellationToken::new();
    let server = economy_items::start(&settings.items, &identity, &settings.server, shutdown.clone()).await?;
    shutdown_signal().await;
    shutdown.cancel();
    let stopped = server.wait().await;
    telemetry::shutdown().await;
    stopped
}
