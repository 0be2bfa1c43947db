//! `economy up` (ARCHITECTURE.md, "Bird's-eye view"): runs the whole stack in one
//! process until Ctrl-C or SIGTERM: each service on its own loopback port speaking real
//! gRPC, and the gateway in front of them as the only public endpoint. The stack itself is
//! started by `economy_stack`, as the benchmark and the tests start it.
//!
//! Configuration: defaults, then `--config FILE`, then `ECONOMY_<SECTION>__<KEY>`.
//! Development conveniences: built-in SQLite URLs are moved into the data directory, an
//! empty `identity.secret` is read from (or generated into) `<data-dir>/dev-identity.secret`,
//! a gateway without token keys verifies HS256 tokens signed with `<data-dir>/dev-jwt.secret`
//! (what `economy token` mints with), the gateway is a development one
//! (`gateway.development`), browser pages of this machine may call it when no CORS origin
//! is configured, and the gateway's upstreams point at the services started here. With
//! `--tls`, a throwaway development CA and certificates are generated into
//! `<data-dir>/tls/` and every server is served over TLS (docs/operations.md, "TLS").

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use economy_gateway::config::GatewayConfig;
use economy_gateway::cors::LOCAL_ORIGINS;
use economy_items::ItemsConfig;
use economy_kit::identity::IdentityConfig;
use economy_kit::metrics::MetricsConfig;
use economy_kit::server::{ServerLimits, shutdown_signal};
use economy_kit::telemetry::{self, LogConfig};
use economy_ledger::LedgerConfig;
use economy_market::MarketConfig;
use economy_redemption::RedemptionConfig;
use economy_stack::tls::DevPki;
use economy_stack::{Service, StackBuilder, StackConfig};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};

use crate::client::{DEV_IDENTITY_SECRET_FILE, DEV_JWT_SECRET_FILE, DEV_TLS_DIR};

/// Options of `economy up` (besides the global `--data-dir`).
#[derive(Debug, Args)]
pub struct UpArgs {
    /// TOML configuration file with sections `gateway`, `ledger`, `items`, `redemption`,
    /// `market`, `identity`, `server`, `log`, `metrics`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve everything over TLS with a throwaway development CA generated into
    /// `<data-dir>/tls/` (the client commands trust it through `--data-dir`); the
    /// services also require client certificates (mTLS).
    #[arg(long)]
    pub tls: bool,
}

/// Every section the stack reads.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct StackSettings {
    /// `[gateway]`.
    gateway: GatewayConfig,
    /// `[ledger]`.
    ledger: LedgerConfig,
    /// `[items]`.
    items: ItemsConfig,
    /// `[redemption]`.
    redemption: RedemptionConfig,
    /// `[market]`.
    market: MarketConfig,
    /// `[identity]`: the secret shared by every service and this client.
    identity: IdentityConfig,
    /// `[server]` limits of every gRPC server.
    server: ServerLimits,
    /// `[log]`.
    log: LogConfig,
    /// `[metrics]`: one Prometheus endpoint for the whole stack (off unless `listen` is set).
    metrics: MetricsConfig,
}

/// Starts the stack, prints where it listens and runs until a shutdown signal.
pub async fn run(args: &UpArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let mut settings: StackSettings = economy_kit::config::load(args.config.as_deref())?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let secrets = settings.apply_development_defaults(data_dir)?;
    telemetry::init(&settings.log);
    let metrics = economy_kit::metrics::install(&settings.metrics).await?;
    let StackSettings { gateway, ledger, items, redemption, market, identity, server, .. } = settings;
    let mut config = StackConfig { gateway, ledger, items, redemption, market, identity, limits: server };
    let tls = development_tls(args.tls, data_dir, &mut config)?;
    let stack = StackBuilder::from_config(config).start().await?;
    let url = |service| stack.url(service).unwrap_or_default();
    let mut banner = format!("economy is up\n  gateway     {}  (public: gRPC and gRPC-web)\n", url(Service::Gateway));
    for service in Service::BACKENDS {
        banner.push_str(&format!("  {:<10}  {}  (internal)\n", service.name(), url(service)));
    }
    if let Some(addr) = metrics {
        banner.push_str(&format!("  metrics     http://{addr}/metrics\n"));
    }
    banner.push_str(&format!("  data        {}\n{secrets}{tls}press Ctrl-C to stop\n", data_dir.display()));
    print_banner(&banner)?;
    // The gateway drains first, so no request in flight loses its upstream.
    let served = stack.run_until(shutdown_signal()).await;
    telemetry::shutdown().await;
    served.map(|()| ExitCode::SUCCESS)
}

/// With `tls`, generates a fresh development PKI into `<data-dir>/tls/` and serves the
/// whole stack with it; returns the banner line naming the CA. Without, removes the PKI an
/// earlier `--tls` run left, so the client commands no longer expect TLS.
fn development_tls(tls: bool, data_dir: &Path, config: &mut StackConfig) -> anyhow::Result<String> {
    let dir = data_dir.join(DEV_TLS_DIR);
    if !tls {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        return Ok(String::new());
    }
    let pki = DevPki::generate(&dir)?;
    config.set_tls(&pki);
    Ok(format!("TLS: development CA {} (trusted by the client commands with this --data-dir)\n", pki.ca_file.display()))
}

fn print_banner(banner: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(banner.as_bytes())?;
    Ok(stdout.flush()?)
}

impl StackSettings {
    /// Moves built-in SQLite URLs into `data_dir`, fills empty secrets from (or into) its
    /// development secret files, marks the gateway as a development one and, when no CORS
    /// origin is configured, allows pages served from this machine (`LOCAL_ORIGINS`);
    /// returns the banner lines saying so.
    fn apply_development_defaults(&mut self, data_dir: &Path) -> anyhow::Result<String> {
        let in_data_dir = |url: &mut String, default: &str, file: &str| {
            if url == default {
                *url = format!("sqlite://{}", data_dir.join(file).display());
            }
        };
        in_data_dir(&mut self.ledger.database_url, &LedgerConfig::default().database_url, "ledger.db");
        in_data_dir(&mut self.gateway.database_url, &GatewayConfig::default().database_url, "gateway.db");
        in_data_dir(&mut self.items.database_url, &ItemsConfig::default().database_url, "items.db");
        in_data_dir(&mut self.redemption.database_url, &RedemptionConfig::default().database_url, "redemption.db");
        in_data_dir(&mut self.market.database_url, &MarketConfig::default().database_url, "market.db");
        let mut lines = String::new();
        self.gateway.development = true;
        if self.gateway.cors.allowed_origins.is_empty() {
            self.gateway.cors.allowed_origins = LOCAL_ORIGINS.iter().map(|&origin| origin.to_owned()).collect();
        }
        if self.identity.secret.is_empty() {
            self.identity.secret = load_or_create_secret(&data_dir.join(DEV_IDENTITY_SECRET_FILE))?;
        }
        let auth = &mut self.gateway.auth;
        let keys =
            [&auth.hs256_secret, &auth.rs256_public_key_pem, &auth.es256_public_key_pem, &auth.eddsa_public_key_pem];
        if keys.iter().all(|key| key.is_empty()) && auth.jwks_url.is_empty() {
            let path = data_dir.join(DEV_JWT_SECRET_FILE);
            auth.hs256_secret = load_or_create_secret(&path)?;
            lines.push_str(&format!(
                "development tokens: HS256 signed with {} (`economy token --user-id 1 --role 100`)\n",
                path.display()
            ));
        }
        Ok(lines)
    }
}

/// Reads the development secret at `path`, or creates it (owner-only) when missing.
fn load_or_create_secret(path: &Path) -> anyhow::Result<String> {
    let secret = generate_secret()?;
    match create_secret_file(path, &secret) {
        Ok(()) => return Ok(secret),
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error).with_context(|| format!("cannot create {}", path.display())),
    }
    let existing = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let existing = existing.trim().to_owned();
    anyhow::ensure!(
        existing.len() >= 16,
        "{} holds fewer than 16 characters; delete it to generate a new secret",
        path.display()
    );
    Ok(existing)
}

/// 32 bytes from the operating system's RNG as 64 lowercase hex characters.
fn generate_secret() -> anyhow::Result<String> {
    let mut bytes = [0_u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).context("the operating system's random generator failed")?;
    Ok(hex::encode(bytes))
}

/// Writes `secret` to a new file at `path` (mode 0600 on unix); fails with
/// `AlreadyExists` when the file is there.
fn create_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("economy-up-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn secret_is_created_once_then_reused() {
        let dir = temp_dir();
        let path = dir.join(DEV_IDENTITY_SECRET_FILE);
        let created = load_or_create_secret(&path).expect("created");
        assert_eq!(created.len(), 64);
        assert!(created.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_eq!(load_or_create_secret(&path).expect("reused"), created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn short_secret_file_is_refused() {
        let dir = temp_dir();
        let path = dir.join(DEV_IDENTITY_SECRET_FILE);
        std::fs::write(&path, "short\n").expect("write");
        assert!(load_or_create_secret(&path).is_err());
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
