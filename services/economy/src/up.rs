//! `economy up` (DESIGN.md §6): runs the whole stack in one process until Ctrl-C or
//! SIGTERM. Today the stack is the ledger on its own loopback port, speaking real gRPC.
//!
//! Configuration: defaults, then `--config FILE`, then `ECONOMY_<SECTION>__<KEY>`. Two
//! development conveniences: the built-in SQLite URL is moved into the data directory, and
//! an empty `identity.secret` is read from (or generated into) `<data-dir>/dev-identity.secret`.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use economy_kit::identity::{IdentityConfig, IdentityKey};
use economy_kit::server::{ServerLimits, shutdown_signal};
use economy_kit::telemetry::{self, LogConfig};
use economy_ledger::LedgerConfig;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::client::DEV_SECRET_FILE;

/// Options of `economy up` (besides the global `--data-dir`).
#[derive(Debug, Args)]
pub struct UpArgs {
    /// TOML configuration file with sections `ledger`, `identity`, `server`, `log`.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Every section the stack reads.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct StackSettings {
    /// `[ledger]`.
    ledger: LedgerConfig,
    /// `[identity]`: the secret shared by every service and this client.
    identity: IdentityConfig,
    /// `[server]` limits of every gRPC server.
    server: ServerLimits,
    /// `[log]`.
    log: LogConfig,
}

/// Starts the stack, prints where it listens and runs until a shutdown signal.
pub async fn run(args: &UpArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let mut settings: StackSettings = economy_kit::config::load(args.config.as_deref())?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    if settings.ledger.database_url == LedgerConfig::default().database_url {
        settings.ledger.database_url = format!("sqlite://{}", data_dir.join("ledger.db").display());
    }
    let signed_with = if settings.identity.secret.is_empty() {
        let path = data_dir.join(DEV_SECRET_FILE);
        settings.identity.secret = load_or_create_secret(&path)?;
        path.display().to_string()
    } else {
        "the configured identity.secret".to_owned()
    };
    telemetry::init(&settings.log);
    let identity = IdentityKey::new(&settings.identity)?;
    let shutdown = CancellationToken::new();
    let ledger = economy_ledger::start(&settings.ledger, &identity, &settings.server, shutdown.clone()).await?;

    let banner = format!(
        "economy is up\n  ledger  {}\n  data    {}\ndevelopment admin: --user-id 1 --role 100 (signed with {signed_with})\n\
         press Ctrl-C to stop\n",
        ledger.url(),
        data_dir.display()
    );
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(banner.as_bytes())?;
    stdout.flush()?;
    drop(stdout);

    let server = ledger.wait();
    tokio::pin!(server);
    tokio::select! {
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            shutdown.cancel();
            server.await?;
            Ok(ExitCode::SUCCESS)
        }
        result = &mut server => {
            result?;
            anyhow::bail!("the ledger stopped unexpectedly")
        }
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
        let path = dir.join(DEV_SECRET_FILE);
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
        let path = dir.join(DEV_SECRET_FILE);
        std::fs::write(&path, "short\n").expect("write");
        assert!(load_or_create_secret(&path).is_err());
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
