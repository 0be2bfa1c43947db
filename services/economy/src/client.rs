//! The client side of the binary (docs/gateway.md): every command goes through the
//! gateway with `authorization: Bearer <JWT>` (given, or minted from the development
//! secret of `economy up`) and every write carries an `idempotency-key`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use economy_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::output;

/// File (inside the data directory) holding the development identity secret that the
/// gateway signs internal calls with.
pub const DEV_IDENTITY_SECRET_FILE: &str = "dev-identity.secret";
/// File (inside the data directory) holding the development HS256 token secret.
pub const DEV_JWT_SECRET_FILE: &str = "dev-jwt.secret";
/// Directory (inside the data directory) of the development PKI of `economy up --tls`;
/// its `ca.pem` is the CA clients trust.
pub const DEV_TLS_DIR: &str = "tls";
/// The gateway's address of `economy up`.
const DEFAULT_GATEWAY: &str = "127.0.0.1:50051";
/// Lifetime of the tokens the client mints for itself, seconds.
const SELF_MINTED_TTL_SECS: u64 = 300;

/// The ledger, through the gateway.
pub type Ledger = LedgerServiceClient<InterceptedService<Channel, Bearer>>;

/// Options shared by every command.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Gateway endpoint of the running stack [default: `http://127.0.0.1:50051`, or
    /// `https://127.0.0.1:50051` when `<data-dir>/tls/ca.pem` exists (`economy up --tls`)].
    #[arg(long, global = true, env = "ECONOMY_ENDPOINT")]
    pub endpoint: Option<String>,
    /// PEM CA certificates an `https://` endpoint must chain to [default:
    /// `<data-dir>/tls/ca.pem` when it exists, else the system's roots].
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate presented to an `https://` server requiring mTLS (with
    /// `--client-key`) [default with the development CA: `<data-dir>/tls/client.pem`].
    #[arg(long, global = true, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `--client-cert`.
    #[arg(long, global = true, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Data directory (`economy up` stores the databases and development secrets there).
    #[arg(long, global = true, env = "ECONOMY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Bearer token to send; when absent one is minted for `--user-id`/`--role` from the
    /// development secret.
    #[arg(long, global = true, env = "ECONOMY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// HS256 secret to mint tokens with; defaults to `<data-dir>/dev-jwt.secret`.
    #[arg(long, global = true, env = "ECONOMY_GATEWAY__AUTH__HS256_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// User id of the minted token.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..))]
    pub user_id: i64,
    /// Role level of the minted token (0 user, 50 merchant staff, 100 admin).
    #[arg(long, global = true, default_value_t = 100, value_parser = clap::value_parser!(i32).range(0..=100))]
    pub role: i32,
}

/// `--idempotency-key` of every write.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Idempotency key (a UUID, optionally prefixed `idem_`); a fresh UUIDv7 when absent.
    /// Reuse it to retry safely.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

impl KeyArgs {
    /// `message` with the `idempotency-key` metadata: the given key or a new UUIDv7.
    /// Prints `idempotency key: K` so a retry can reuse it.
    pub fn request<T>(&self, message: T) -> anyhow::Result<Request<T>> {
        let key = self.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let value: MetadataValue<Ascii> =
            key.parse().with_context(|| format!("--idempotency-key `{key}` is not valid metadata"))?;
        println!("idempotency key: {key}");
        let mut request = Request::new(message);
        request.metadata_mut().insert("idempotency-key", value);
        Ok(request)
    }
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Debug, Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// True when the gateway answered with a stored response (`idempotent-replayed: true`);
/// the body is then byte-identical to the first answer.
pub fn replayed<T>(response: &tonic::Response<T>) -> bool {
    response.metadata().get("idempotent-replayed").is_some_and(|value| value == "true")
}

/// Reads a development secret written by `economy up` in `data_dir`.
pub fn read_dev_secret(data_dir: &Path, file: &str, flag: &str) -> anyhow::Result<String> {
    let path = data_dir.join(file);
    let secret = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (run `economy up --data-dir {}` first, or pass {flag})",
            path.display(),
            data_dir.display()
        )
    })?;
    Ok(secret.trim().to_owned())
}

/// A development token for `--user-id`/`--role`, valid `ttl_secs`, signed with
/// `--jwt-secret` or the stack's development secret.
pub fn mint_token(args: &GlobalArgs, ttl_secs: u64) -> anyhow::Result<String> {
    let secret = match args.jwt_secret.as_deref().filter(|secret| !secret.is_empty()) {
        Some(secret) => secret.to_owned(),
        None => read_dev_secret(&args.data_dir, DEV_JWT_SECRET_FILE, "--jwt-secret or --token")?,
    };
    economy_gateway::auth::mint_hs256(&secret, args.user_id, args.role, ttl_secs)
}

impl GlobalArgs {
    /// `--endpoint`, or the gateway of `economy up` (over TLS when the data directory holds
    /// the development CA of `economy up --tls`).
    pub fn endpoint(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None if self.dev_ca().is_some() => format!("https://{DEFAULT_GATEWAY}"),
            None => format!("http://{DEFAULT_GATEWAY}"),
        }
    }

    /// `<data-dir>/tls/ca.pem`, when `economy up --tls` wrote it.
    fn dev_ca(&self) -> Option<PathBuf> {
        Some(self.data_dir.join(DEV_TLS_DIR).join("ca.pem")).filter(|path| path.is_file())
    }

    /// How an `https://` server is verified: against `--ca-file`, else the development
    /// CA of the data directory, else the system's roots; and the client certificate
    /// presented: `--client-cert`/`--client-key`, else the development one when the
    /// development CA is used. Errors: an unreadable file.
    pub fn tls_config(&self) -> anyhow::Result<ClientTlsConfig> {
        let dev_ca = self.ca_file.is_none().then(|| self.dev_ca()).flatten();
        let config = match self.ca_file.as_ref().or(dev_ca.as_ref()) {
            Some(ca_file) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca_file, "CA")?)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        let dev_identity = || {
            let dir = self.data_dir.join(DEV_TLS_DIR);
            dev_ca.is_some().then(|| (dir.join("client.pem"), dir.join("client.key")))
        };
        match self.client_cert.clone().zip(self.client_key.clone()).or_else(dev_identity) {
            Some((cert, key)) => {
                Ok(config.identity(Identity::from_pem(read(&cert, "certificate")?, read(&key, "key")?)))
            }
            None => Ok(config),
        }
    }
}

/// The PEM file at `path` (`what` it holds, for the error).
fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} file {}", path.display()))
}

/// An endpoint for `url`, over TLS verified by `args.tls_config()` when it is `https://`.
pub fn endpoint(url: &str, args: &GlobalArgs) -> anyhow::Result<Endpoint> {
    let endpoint = Endpoint::from_shared(url.to_owned()).with_context(|| format!("invalid endpoint `{url}`"))?;
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint);
    }
    Ok(endpoint.tls_config(args.tls_config()?)?)
}

/// Connects to the gateway at `--endpoint`, authenticating with `--token` or a freshly
/// minted development token.
pub async fn connect(args: &GlobalArgs) -> anyhow::Result<(Channel, Bearer)> {
    let token = match args.token.as_deref().filter(|token| !token.is_empty()) {
        Some(token) => token.to_owned(),
        None => mint_token(args, SELF_MINTED_TTL_SECS)?,
    };
    let bearer = Bearer(format!("Bearer {token}").parse().context("the token is not valid metadata")?);
    let url = args.endpoint();
    let endpoint = endpoint(&url, args)?.connect_timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|error| {
        anyhow::anyhow!("cannot connect to the gateway at {url} ({}); is `economy up` running?", causes(&error))
    })?;
    Ok((channel, bearer))
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
