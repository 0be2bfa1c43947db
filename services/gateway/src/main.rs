//! `economy-gateway`: the gateway as its own process (production deployments), the only
//! public endpoint in front of the four services.
//! Configuration: `--config FILE` (TOML) and `ECONOMY_<SECTION>__<KEY>` variables.

use economy_gateway::config::GatewayConfig;
use economy_kit::identity::IdentityConfig;
use economy_kit::metrics::MetricsConfig;
use economy_kit::server::ServerLimits;
use economy_kit::telemetry::LogConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Settings {
    gateway: GatewayConfig,
    identity: IdentityConfig,
    server: ServerLimits,
    log: LogConfig,
    metrics: MetricsConfig,
}

#[global_allocator]
static ALLOCATOR: economy_kit::Allocator = economy_kit::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config_file = economy_kit::config::file_argument("economy-gateway")?;
    let settings: Settings = economy_kit::config::load(config_file.as_deref())?;
    economy_gateway::safety::refuse_unsafe(&settings.gateway)?;
    economy_kit::process::run(&settings.log, &settings.metrics, &settings.identity, |identity, shutdown| async move {
        economy_gateway::start(&settings.gateway, &identity, &settings.server, shutdown).await
    })
    .await
}
