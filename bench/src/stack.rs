//! Where the load goes: fresh databases ([`Databases`]) and the whole stack (ledger,
//! items, redemption, market, gateway) started in-process by `economy_stack`, as
//! `economy up` starts it, or the endpoints of a stack that is already running
//! ([`RemoteStack`]).
//!
//! In-process, every service listens on `127.0.0.1:0` over its own fresh database (a
//! SQLite file in a temporary folder, or a new PostgreSQL database created on the given
//! server and dropped afterwards), with the services' default settings (ledger SQLite
//! `synchronous=FULL`, gateway `NORMAL`, 8 pooled connections each) except the gateway's
//! per-user rate limit, which is raised so it measures the stack, not the limiter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use economy_gateway::auth::mint_hs256;
use economy_kit::db::DbOptions;
use economy_kit::identity::{IdentityConfig, IdentityKey};
use economy_stack::{RunningStack, Service, StackBuilder};
use sqlx::{Connection, Executor};
use tonic::metadata::AsciiMetadataValue;

/// The gateway's per-user rate limit in the in-process stack (requests per second and
/// burst): high enough never to shed benchmark load.
pub const IN_PROCESS_RATE_LIMIT: u32 = 1_000_000;
/// Lifetime of the bearer tokens the harness mints, seconds.
const TOKEN_TTL_SECS: u64 = 3600;
/// How long the in-process stack may take to drain when it stops.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A database engine and where its fresh databases are created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file per service in a new folder under `dir` (the system's temporary
    /// folder when `None`), removed afterwards.
    Sqlite {
        /// Parent of the per-run folder.
        dir: Option<PathBuf>,
        /// `synchronous` of every service's SQLite database (`FULL` or `NORMAL`); `None`
        /// keeps each service's default (`FULL`, the gateway's `NORMAL`).
        synchronous: Option<String>,
    },
    /// One new database per service on this PostgreSQL server (`postgres://user@host:port/db`,
    /// a database to connect to for `CREATE DATABASE`), dropped afterwards.
    Postgres {
        /// The server URL.
        server_url: String,
    },
}

impl Backend {
    /// `defaults` with this backend's overrides (SQLite `synchronous`).
    pub fn db_options(&self, defaults: DbOptions) -> DbOptions {
        match self {
            Self::Sqlite { synchronous: Some(synchronous), .. } => {
                DbOptions { sqlite_synchronous: synchronous.clone(), ..defaults }
            }
            Self::Sqlite { synchronous: None, .. } | Self::Postgres { .. } => defaults,
        }
    }

    /// The name, with any override: `sqlite`, `sqlite synchronous=NORMAL`, `postgres`.
    pub fn label(&self) -> String {
        match self {
            Self::Sqlite { synchronous: Some(synchronous), .. } => format!("sqlite synchronous={synchronous}"),
            Self::Sqlite { synchronous: None, .. } | Self::Postgres { .. } => self.name().to_owned(),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }
}

/// A stack started elsewhere (e.g. `economy up`).
#[derive(Debug, Clone)]
pub struct RemoteStack {
    /// The gateway (`http://127.0.0.1:50051`).
    pub gateway_url: String,
    /// HS256 secret the gateway verifies tokens with (`economy up`: `data/dev-jwt.secret`).
    pub jwt_secret: String,
    /// The ledger itself, for `ledger-write-direct` (needs `identity_secret` too).
    pub ledger_url: Option<String>,
    /// The internal identity secret shared by the services (`data/dev-identity.secret`).
    pub identity_secret: Option<String>,
    /// What the report says about the database (the harness cannot see it).
    pub backend_label: String,
}

/// What the scenarios run against.
#[derive(Debug, Clone)]
pub enum Target {
    /// Start a fresh stack in this process for every scenario.
    InProcess(Backend),
    /// Use a running stack; `raw-db` still measures a fresh local database of `Backend`.
    Remote(RemoteStack, Backend),
}

impl Target {
    /// The backend of fresh databases (the in-process stack's, and `raw-db`'s).
    pub fn backend(&self) -> &Backend {
        match self {
            Self::InProcess(backend) | Self::Remote(_, backend) => backend,
        }
    }

    /// True for a running stack elsewhere.
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Remote(..))
    }
}

/// Fresh, empty databases, one per name, removed by [`Databases::drop_all`].
#[derive(Debug)]
pub struct Databases {
    urls: BTreeMap<String, String>,
    sqlite_dir: Option<PathBuf>,
    postgres: Option<(String, Vec<String>)>,
}

impl Databases {
    /// Creates one database per name on `backend`.
    ///
    /// SQLite: `<dir>/economy-bench-<uuid>/<name>.db` (the files appear on first
    /// connect). PostgreSQL: `CREATE DATABASE economy_bench_<uuid>_<name>` on the server.
    pub async fn create(backend: &Backend, names: &[&str]) -> anyhow::Result<Self> {
        let run = uuid::Uuid::now_v7().simple().to_string();
        match backend {
            Backend::Sqlite { dir, .. } => {
                let dir = dir.clone().unwrap_or_else(std::env::temp_dir).join(format!("economy-bench-{run}"));
                std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                let urls = names
                    .iter()
                    .map(|name| ((*name).to_owned(), format!("sqlite://{}", dir.join(format!("{name}.db")).display())))
                    .collect();
                Ok(Self { urls, sqlite_dir: Some(dir), postgres: None })
            }
            Backend::Postgres { server_url } => {
                sqlx::any::install_default_drivers();
                let mut admin = sqlx::AnyConnection::connect(server_url)
                    .await
                    .with_context(|| "cannot connect to the PostgreSQL server (--postgres-url)")?;
                let mut urls = BTreeMap::new();
                let mut created = Vec::new();
                for name in names {
                    let database = format!("economy_bench_{run}_{name}");
                    admin.execute(format!("CREATE DATABASE {database}").as_str()).await?;
                    urls.insert((*name).to_owned(), database_url(server_url, &database));
                    created.push(database);
                }
                admin.close().await?;
                Ok(Self { urls, sqlite_dir: None, postgres: Some((server_url.clone(), created)) })
            }
        }
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> anyhow::Result<&str> {
        self.urls.get(name).map(String::as_str).ok_or_else(|| anyhow::anyhow!("no database named {name}"))
    }

    /// Refreshes the planner statistics of database `name` on PostgreSQL (`ANALYZE`, what
    /// autovacuum does within a minute of a bulk load); nothing on SQLite, which keeps no
    /// statistics unless asked.
    pub async fn analyze(&self, name: &str) -> anyhow::Result<()> {
        if self.postgres.is_some() {
            let mut connection = sqlx::AnyConnection::connect(self.url(name)?).await?;
            connection.execute("ANALYZE").await?;
            connection.close().await?;
        }
        Ok(())
    }

    /// Removes every database (PostgreSQL: `DROP DATABASE … WITH (FORCE)`, so pools still
    /// open do not block it).
    pub async fn drop_all(self) -> anyhow::Result<()> {
        if let Some(dir) = &self.sqlite_dir {
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        if let Some((server_url, names)) = &self.postgres {
            let mut admin = sqlx::AnyConnection::connect(server_url).await?;
            for name in names {
                admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
            }
            admin.close().await?;
        }
        Ok(())
    }
}

/// `server_url` with its database replaced by `database` (query string kept).
fn database_url(server_url: &str, database: &str) -> String {
    let (base, query) =
        server_url.split_once('?').map_or((server_url, String::new()), |(base, query)| (base, format!("?{query}")));
    let host_start = base.find("://").map_or(0, |index| index + 3);
    let root = base[host_start..].find('/').map_or(base, |slash| &base[..host_start + slash]);
    format!("{root}/{database}{query}")
}

/// The servers and databases of an in-process stack.
#[derive(Debug)]
struct Running {
    stack: RunningStack,
    databases: Databases,
}

/// A stack to drive: its public gateway and, in-process, the services behind it.
#[derive(Debug)]
pub struct Stack {
    /// The gateway, `http://host:port`.
    pub gateway_url: String,
    /// The ledger itself (in-process, or `--ledger-endpoint`).
    pub ledger_url: Option<String>,
    /// The items service itself (in-process only; setup grants items there directly).
    pub items_url: Option<String>,
    /// Signs the internal identity for services called directly.
    pub identity: Option<IdentityKey>,
    /// What the report says about the stack and its database.
    pub description: String,
    jwt_secret: String,
    running: Option<Running>,
}

impl Stack {
    /// Starts a fresh in-process stack, or describes the remote one.
    pub async fn start(target: &Target) -> anyhow::Result<Self> {
        match target {
            Target::InProcess(backend) => Self::start_in_process(backend).await,
            Target::Remote(remote, _) => Self::remote(remote),
        }
    }

    fn remote(remote: &RemoteStack) -> anyhow::Result<Self> {
        let identity = match &remote.identity_secret {
            Some(secret) => {
                Some(IdentityKey::new(&IdentityConfig { secret: secret.clone(), max_clock_skew_secs: 300 })?)
            }
            None => None,
        };
        Ok(Self {
            gateway_url: remote.gateway_url.clone(),
            ledger_url: remote.ledger_url.clone(),
            items_url: None,
            identity,
            description: format!("{} (running stack at {})", remote.backend_label, remote.gateway_url),
            jwt_secret: remote.jwt_secret.clone(),
            running: None,
        })
    }

    /// Ledger, items, redemption and market (calling those) and the gateway in front of them,
    /// each on `127.0.0.1:0` over its own fresh database.
    async fn start_in_process(backend: &Backend) -> anyhow::Result<Self> {
        let names = Service::ALL.map(Service::name);
        let databases = Databases::create(backend, &names).await?;
        let identity_secret = random_secret();
        let jwt_secret = random_secret();
        match start_stack(backend, &databases, &identity_secret, &jwt_secret).await {
            Ok(stack) => Ok(Self {
                gateway_url: stack.url(Service::Gateway).context("the gateway runs")?,
                ledger_url: stack.url(Service::Ledger),
                items_url: stack.url(Service::Items),
                identity: Some(stack.identity().clone()),
                description: format!("{} (in-process stack, fresh databases)", backend.label()),
                jwt_secret,
                running: Some(Running { stack, databases }),
            }),
            Err(error) => {
                // The servers already started were stopped; the databases go now.
                if let Err(cleanup) = databases.drop_all().await {
                    eprintln!("warning: cannot remove the benchmark databases: {cleanup:#}");
                }
                Err(error)
            }
        }
    }

    /// `Bearer <HS256 token>` for `user_id` with `role_level`, as the gateway expects in
    /// `authorization`.
    pub fn bearer(&self, user_id: i64, role_level: i32) -> anyhow::Result<AsciiMetadataValue> {
        let token = mint_hs256(&self.jwt_secret, user_id, role_level, TOKEN_TTL_SECS)?;
        Ok(format!("Bearer {token}").parse()?)
    }

    /// True when the stack was started here (setup may then call services directly).
    pub fn is_in_process(&self) -> bool {
        self.running.is_some()
    }

    /// The URL of service `name`'s database, in-process only.
    pub fn database_url(&self, name: &str) -> Option<&str> {
        self.running.as_ref().and_then(|running| running.databases.url(name).ok())
    }

    /// `Databases::analyze` of service `name`'s database, in-process only.
    pub async fn analyze(&self, name: &str) -> anyhow::Result<()> {
        match &self.running {
            Some(running) => running.databases.analyze(name).await,
            None => Ok(()),
        }
    }

    /// Stops an in-process stack — the gateway first, so no request loses its upstream,
    /// then the services in reverse order — and drops its databases.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Some(running) = self.running else { return Ok(()) };
        match tokio::time::timeout(STOP_TIMEOUT, running.stack.stop()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: {error:#}"),
            Err(_) => eprintln!("warning: the stack did not stop within {STOP_TIMEOUT:?}"),
        }
        running.databases.drop_all().await
    }
}

/// Starts the stack over `databases` with the services' default settings, except the
/// backend's SQLite `synchronous` override and the gateway's rate limit
/// ([`IN_PROCESS_RATE_LIMIT`]).
async fn start_stack(
    backend: &Backend,
    databases: &Databases,
    identity_secret: &str,
    jwt_secret: &str,
) -> anyhow::Result<RunningStack> {
    let mut builder = StackBuilder::new().any_port().identity_secret(identity_secret).jwt_secret(jwt_secret);
    for service in Service::ALL {
        builder = builder.database_url(service, databases.url(service.name())?);
    }
    builder
        .configure(|config| {
            config.ledger.database = backend.db_options(config.ledger.database.clone());
            config.items.database = backend.db_options(config.items.database.clone());
            config.redemption.database = backend.db_options(config.redemption.database.clone());
            config.market.database = backend.db_options(config.market.database.clone());
            config.gateway.database = backend.db_options(config.gateway.database.clone());
            config.gateway.rate_limit_per_second = IN_PROCESS_RATE_LIMIT;
            config.gateway.rate_limit_burst = IN_PROCESS_RATE_LIMIT;
        })
        .start()
        .await
}

/// 32 random bytes as hex: the identity and token secrets of one in-process stack.
fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_replace_the_database() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(database_url("postgres://u@h:1/db?sslmode=disable", "x"), "postgres://u@h:1/x?sslmode=disable");
        assert_eq!(database_url("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    }
}
