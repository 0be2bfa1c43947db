//! Asset Ledger service (`economy.ledger.v1.LedgerService`, docs/ledger.md):
//! double-entry balances of stackable assets, holds, conversions and reconciliation.
//!
//! Layers: `domain` (rules, no SQL or gRPC), `store` (sqlx, owns `migrations/ledger`),
//! `grpc` (proto conversion, authorization, error mapping); `jobs` runs the hold-expiry
//! worker.

pub mod domain;
pub mod grpc;
pub mod jobs;
pub mod metrics;
pub mod store;

use std::time::Duration;

use economy_kit::db::DbOptions;
use economy_kit::identity::IdentityKey;
use economy_kit::jobs::Scheduler;
use economy_kit::schedule::{Schedule, time_zone};
use economy_kit::server::{RunningServer, ServeOptions, ServerLimits, spawn_with};
use economy_kit::time::{SharedClock, system_clock};
use economy_kit::tls::ServerTls;
use economy_proto::ledger::v1::ledger_service_server::LedgerServiceServer;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::domain::ids::{SYSTEM_ISSUANCE, SYSTEM_PLATFORM_FEE, SYSTEM_SHOP_REVENUE};
use crate::store::ReconcileLimits;

/// Name under which the service reports health.
pub const SERVICE_NAME: &str = "economy.ledger.v1.LedgerService";

/// `[ledger]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LedgerConfig {
    /// Listen address (`127.0.0.1:50061`; port 0 picks one).
    pub listen: String,
    /// TLS of the server (docs/operations.md, "TLS"); empty: plaintext.
    pub tls: ServerTls,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Pool settings.
    pub database: DbOptions,
    /// System accounts beyond SYSTEM_ISSUANCE, SYSTEM_PLATFORM_FEE and SYSTEM_SHOP_REVENUE
    /// (e.g. another `market.offer_revenue_account`).
    pub extra_system_accounts: Vec<String>,
    /// Period of the hold-expiry job, seconds.
    pub hold_expiry_interval_secs: u64,
    /// When the scheduled whole check runs: five cron fields read in `time_zone` (default
    /// `0 2 * * *`, 02:00), once across replicas (docs/operations.md, "Background jobs").
    pub reconcile_schedule: String,
    /// IANA time zone of the schedules (default `UTC`).
    pub time_zone: String,
    /// Postings one chunk of the whole check reads at most (at least 1; docs/ledger.md,
    /// "Reconciliation").
    pub reconcile_chunk_postings: i64,
    /// Balance rows one chunk of the whole check reads at most (at least 1).
    pub reconcile_chunk_balances: i64,
    /// A `Reconcile` call of the whole check returns with a cursor once it has run this
    /// long, milliseconds (it finishes the chunk under way).
    pub reconcile_call_budget_ms: u64,
    /// Period of the incremental check of the entries since its checkpoint, seconds
    /// (never at start; docs/ledger.md, "Reconciliation").
    pub incremental_reconcile_interval_secs: u64,
    /// A `WatchEntries` stream sends a heartbeat after this long without a message,
    /// seconds (at least 1; docs/streams.md).
    pub watch_heartbeat_secs: u64,
    /// Source of the business "now" (expiries, leases, jobs' cutoffs): the system clock;
    /// not read from files, a test or the stack builder may inject a manual one.
    #[serde(skip, default = "system_clock")]
    pub clock: SharedClock,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50061".into(),
            tls: ServerTls::default(),
            database_url: "sqlite://data/ledger.db".into(),
            database: DbOptions::default(),
            extra_system_accounts: Vec::new(),
            hold_expiry_interval_secs: 30,
            reconcile_schedule: "0 2 * * *".into(),
            time_zone: "UTC".into(),
            reconcile_chunk_postings: ReconcileLimits::default().postings,
            reconcile_chunk_balances: ReconcileLimits::default().balances,
            reconcile_call_budget_ms: 10_000,
            incremental_reconcile_interval_secs: 60,
            watch_heartbeat_secs: 15,
            clock: system_clock(),
        }
    }
}

impl LedgerConfig {
    /// The chunk sizes of the whole check.
    pub fn reconcile_limits(&self) -> ReconcileLimits {
        ReconcileLimits {
            postings: self.reconcile_chunk_postings.max(1),
            balances: self.reconcile_chunk_balances.max(1),
        }
    }

    /// The whole check's schedule; refuses a bad `ledger.reconcile_schedule` or
    /// `ledger.time_zone`, naming it.
    pub fn reconcile_schedule(&self) -> anyhow::Result<Schedule> {
        let zone = time_zone(&self.time_zone, "ledger.time_zone")?;
        Schedule::parse(&self.reconcile_schedule, zone, "ledger.reconcile_schedule")
    }

    /// Every system account the ledger creates at start.
    pub fn system_accounts(&self) -> Vec<String> {
        let mut accounts = [SYSTEM_ISSUANCE, SYSTEM_PLATFORM_FEE, SYSTEM_SHOP_REVENUE].map(str::to_owned).to_vec();
        accounts.extend(self.extra_system_accounts.iter().cloned());
        accounts
    }
}

/// Opens the database (migrating it), starts the hold-expiry job and serves the API
/// until `shutdown` is cancelled. Requests must carry an identity signed with `identity`.
pub async fn start(
    config: &LedgerConfig,
    identity: &IdentityKey,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningServer> {
    let reconcile_schedule = config.reconcile_schedule()?;
    let store = store::LedgerStore::open(
        &config.database_url,
        &config.database,
        &config.system_accounts(),
        config.clock.clone(),
    )
    .await?;
    metrics::describe();
    jobs::spawn_hold_expiry(
        store.clone(),
        config.clock.clone(),
        Duration::from_secs(config.hold_expiry_interval_secs.max(1)),
        shutdown.clone(),
    );
    let scheduler = Scheduler::new(store.db().clone(), config.clock.clone(), shutdown.clone());
    jobs::spawn_reconciliation(&scheduler, store.clone(), config.reconcile_limits(), reconcile_schedule);
    jobs::spawn_incremental_reconciliation(
        store.clone(),
        Duration::from_secs(config.incremental_reconcile_interval_secs.max(1)),
        shutdown.clone(),
    );
    store.spawn_relay(shutdown.clone());
    let watch = grpc::WatchOptions {
        heartbeat: Duration::from_secs(config.watch_heartbeat_secs.max(1)),
        shutdown: shutdown.clone(),
    };
    let service = LedgerServiceServer::new(
        grpc::LedgerApi::new(store, config.clock.clone(), watch)
            .with_whole_check(config.reconcile_limits(), Duration::from_millis(config.reconcile_call_budget_ms)),
    )
    .max_decoding_message_size(limits.max_message_bytes)
    .max_encoding_message_size(limits.max_message_bytes);
    let routes = Routes::new(tonic::service::interceptor::InterceptedService::new(service, identity.clone()));
    let options = ServeOptions::tls(&config.tls, "ledger.tls")?;
    spawn_with(&config.listen, SERVICE_NAME, routes, limits, options, shutdown).await
}
