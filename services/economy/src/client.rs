//! The client side of the binary: global connection options, the signed ledger client
//! (DESIGN.md §3 Gateway, internal HMAC identity), idempotency keys and error reporting.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use economy_kit::identity::{Caller, IdentityConfig, IdentityKey, Signer};
use economy_proto::ledger::v1 as pb;
use pb::ledger_service_client::LedgerServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::output;

/// File (inside the data directory) holding the development identity secret.
pub const DEV_SECRET_FILE: &str = "dev-identity.secret";

/// A ledger client that signs every request.
pub type Ledger = LedgerServiceClient<InterceptedService<Channel, Signer>>;

/// Options shared by every command.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Ledger endpoint of the running stack.
    #[arg(long, global = true, env = "ECONOMY_ENDPOINT", default_value = "http://127.0.0.1:50061")]
    pub endpoint: String,
    /// Data directory (`economy up` stores the database and development secret there).
    #[arg(long, global = true, env = "ECONOMY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Identity secret to sign requests with; defaults to `<data-dir>/dev-identity.secret`.
    #[arg(long, global = true, env = "ECONOMY_IDENTITY__SECRET", hide_env_values = true)]
    pub identity_secret: Option<String>,
    /// User id the requests are signed as.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..))]
    pub user_id: i64,
    /// Role level the requests are signed with (0 user, 50 merchant staff, 100 admin).
    #[arg(long, global = true, default_value_t = 100, value_parser = clap::value_parser!(i32).range(0..=100))]
    pub role: i32,
}

/// `--idempotency-key` of every journal write.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Idempotency key of this movement; a fresh UUIDv7 when absent. Reuse it to retry.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

impl KeyArgs {
    /// The given key, or a new UUIDv7; prints `idempotency key: K` so a retry can reuse it.
    pub fn resolve(&self) -> String {
        let key = self.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        println!("idempotency key: {key}");
        key
    }
}

/// Reads the development secret written by `economy up` in `data_dir`.
pub fn read_dev_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(DEV_SECRET_FILE);
    let secret = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the identity secret {} (run `economy up --data-dir {}` first, or pass --identity-secret)",
            path.display(),
            data_dir.display()
        )
    })?;
    Ok(secret.trim().to_owned())
}

/// Connects to `--endpoint` and signs as `--user-id`/`--role`.
pub async fn connect(args: &GlobalArgs) -> anyhow::Result<Ledger> {
    let secret = match args.identity_secret.as_deref().filter(|secret| !secret.is_empty()) {
        Some(secret) => secret.to_owned(),
        None => read_dev_secret(&args.data_dir)?,
    };
    let key = IdentityKey::new(&IdentityConfig { secret, ..IdentityConfig::default() })?;
    let endpoint = Endpoint::from_shared(args.endpoint.clone())
        .with_context(|| format!("invalid --endpoint `{}`", args.endpoint))?
        .connect_timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|error| {
        anyhow::anyhow!(
            "cannot connect to the ledger at {} ({}); is `economy up` running?",
            args.endpoint,
            causes(&error)
        )
    })?;
    Ok(LedgerServiceClient::with_interceptor(channel, key.signer(Caller::user(args.user_id, args.role))))
}

/// `error` and its sources, joined with `: ` (tonic's transport error alone says only
/// "transport error").
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(&format!(": {cause_text}"));
        }
        source = cause.source();
    }
    text
}

/// Prints a failed command to stderr and returns exit status 1: a gRPC status as
/// `error: <CODE> <REASON>: <message>` plus its field violations, anything else as
/// `error: <message>` with its causes.
pub fn report(error: &anyhow::Error) -> ExitCode {
    match error.downcast_ref::<tonic::Status>() {
        Some(status) => output::status(status).iter().for_each(|line| eprintln!("{line}")),
        None => eprintln!("error: {error:#}"),
    }
    ExitCode::FAILURE
}
