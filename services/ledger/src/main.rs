//! `economy-ledger`: the Asset Ledger as its own process (production deployments).
//! Configuration: `--config FILE` (TOML) and `ECONOMY_<SECTION>__<KEY>` variables.

use economy_kit::identity::IdentityConfig;
use economy_kit::metrics::MetricsConfig;
use economy_kit::server::ServerLimits;
use economy_kit::telemetry::LogConfig;
use economy_ledger::LedgerConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Settings {
    ledger: LedgerConfig,
    identity: IdentityConfig,
    server: ServerLimits,
    log: LogConfig,
    metrics: MetricsConfig,
}

#[global_allocator]
static ALLOCATOR: economy_kit::Allocator = economy_kit::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config_file = economy_kit::config::file_argument("economy-ledger")?;
    let settings: Settings = economy_kit::config::load(config_file.as_deref())?;
    economy_kit::process::run(&settings.log, &settings.metrics, &settings.identity, |identity, shutdown| async move {
        economy_ledger::start(&settings.ledger, &identity, &settings.server, shutdown).await
    })
    .await
}
