//! Tracing initialisation (DESIGN.md §6): structured fields, `RUST_LOG`-style filters,
//! optional JSON output.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// `[log]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// Filter directives, e.g. `info,economy_ledger=debug`; `RUST_LOG` wins when set.
    pub filter: String,
    /// Emit one JSON object per line instead of human-readable text.
    pub json: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { filter: "info".into(), json: false }
    }
}

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if config.json { builder.json().try_init() } else { builder.try_init() };
}
