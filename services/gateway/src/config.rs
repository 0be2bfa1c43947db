//! `[gateway]` configuration.

use std::collections::BTreeMap;

use economy_kit::db::DbOptions;
use economy_kit::schedule::{Schedule, time_zone};
use economy_kit::time::{SharedClock, system_clock};
use economy_kit::tls::{ClientTls, ServerTls};
use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;
use crate::cors::CorsConfig;
use crate::safety::Reflection;

/// The gateway's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    /// Public listen address.
    pub listen: String,
    /// TLS of the public listener, gRPC and gRPC-web (docs/operations.md, "TLS");
    /// empty: plaintext (development).
    pub tls: ServerTls,
    /// How the gateway's clients of the services verify them (docs/operations.md,
    /// "TLS"); empty: plaintext `http://` upstreams.
    pub internal_tls: ClientTls,
    /// Idempotency records database (`sqlite://…` or `postgres://…`).
    pub database_url: String,
    /// Pool settings.
    pub database: DbOptions,
    /// Upstream URL of each service, by the second segment of its package
    /// (`economy.ledger.v1` -> `ledger`).
    pub upstreams: BTreeMap<String, String>,
    /// Token verification (docs/gateway.md, "Authentication").
    pub auth: AuthConfig,
    /// Cross-origin access for browser clients of gRPC-web (docs/gateway.md, "CORS").
    pub cors: CorsConfig,
    /// Server reflection on the public listener: `plaintext` (default), `on`, `off`
    /// (docs/gateway.md, "Start-up refusals").
    pub reflection: Reflection,
    /// A development gateway (`economy up` sets it): HS256 development tokens and
    /// reflection over TLS are accepted by `economy-gateway` (docs/gateway.md, "Start-up
    /// refusals").
    pub development: bool,
    /// Idempotency record lifecycle.
    pub idempotency: IdempotencyConfig,
    /// Requests per second allowed to one user (sustained).
    pub rate_limit_per_second: u32,
    /// Burst above the sustained rate.
    pub rate_limit_burst: u32,
    /// Requests processed at once; beyond, new ones are shed with RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// Concurrent server streams and their heartbeats (docs/gateway.md, "Streams").
    pub streams: StreamsConfig,
    /// Period of the upstream health probe, seconds.
    pub health_interval_secs: u64,
    /// When the cross-service consistency check runs: five cron fields read in
    /// `time_zone` (default `30 2 * * *`, 02:30), once across replicas
    /// (docs/operations.md, "Background jobs").
    pub consistency_schedule: String,
    /// IANA time zone of the gateway's schedules (default `UTC`).
    pub time_zone: String,
    /// Source of the business "now" (expiries, leases, jobs' cutoffs): the system clock;
    /// not read from files, a test or the stack builder may inject a manual one.
    #[serde(skip, default = "system_clock")]
    pub clock: SharedClock,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            tls: ServerTls::default(),
            internal_tls: ClientTls::default(),
            database_url: "sqlite://data/gateway.db".into(),
            database: DbOptions { sqlite_synchronous: "NORMAL".into(), ..DbOptions::default() },
            upstreams: BTreeMap::from([
                ("ledger".to_owned(), "http://127.0.0.1:50061".to_owned()),
                ("items".to_owned(), "http://127.0.0.1:50062".to_owned()),
                ("redemption".to_owned(), "http://127.0.0.1:50063".to_owned()),
                ("market".to_owned(), "http://127.0.0.1:50064".to_owned()),
            ]),
            auth: AuthConfig::default(),
            cors: CorsConfig::default(),
            reflection: Reflection::default(),
            development: false,
            idempotency: IdempotencyConfig::default(),
            rate_limit_per_second: 200,
            rate_limit_burst: 400,
            max_in_flight: 1024,
            streams: StreamsConfig::default(),
            health_interval_secs: 5,
            consistency_schedule: "30 2 * * *".into(),
            time_zone: "UTC".into(),
            clock: system_clock(),
        }
    }
}

/// The gateway's schedules: the consistency check's and the record cleanup's.
#[derive(Debug, Clone)]
pub struct Schedules {
    /// `gateway.consistency_schedule`.
    pub consistency: Schedule,
    /// `gateway.idempotency.cleanup_schedule`.
    pub cleanup: Schedule,
}

impl GatewayConfig {
    /// The schedules; refuses a bad `gateway.consistency_schedule`,
    /// `gateway.idempotency.cleanup_schedule` or `gateway.time_zone`, naming it.
    pub fn schedules(&self) -> anyhow::Result<Schedules> {
        let zone = time_zone(&self.time_zone, "gateway.time_zone")?;
        Ok(Schedules {
            consistency: Schedule::parse(&self.consistency_schedule, zone, "gateway.consistency_schedule")?,
            cleanup: Schedule::parse(&self.idempotency.cleanup_schedule, zone, "gateway.idempotency.cleanup_schedule")?,
        })
    }
}

/// Lifecycle of idempotency records: retention, leases, housekeeping and snapshot limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IdempotencyConfig {
    /// How long a record is kept, seconds (7 days).
    pub retention_secs: u64,
    /// How long a claim outlives the upstream timeout, seconds: a `processing` record's
    /// lease is the upstream timeout (`server.request_timeout_secs`) plus this margin, past
    /// which a retry takes it over. The outcome's write is retried within the lease.
    pub lease_margin_secs: u64,
    /// `processing` older than this becomes `failed` / `PROCESSING_TIMEOUT`, seconds
    /// (housekeeping only: a retry takes an expired lease over without waiting for it).
    pub processing_timeout_secs: u64,
    /// Period of the timeout job, seconds.
    pub timeout_job_interval_secs: u64,
    /// When the cleanup job deletes expired records: five cron fields read in
    /// `gateway.time_zone` (default `0 3 * * *`, 03:00), once across replicas.
    pub cleanup_schedule: String,
    /// Snapshots above this many bytes log a warning.
    pub warn_snapshot_bytes: usize,
    /// Snapshots above this many bytes keep only status and business event id.
    pub max_snapshot_bytes: usize,
    /// Row count above which the cleanup job warns.
    pub warn_rows: i64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            retention_secs: 7 * 24 * 3600,
            lease_margin_secs: 15,
            processing_timeout_secs: 30 * 60,
            timeout_job_interval_secs: 5 * 60,
            cleanup_schedule: "0 3 * * *".into(),
            warn_snapshot_bytes: 32 * 1024,
            max_snapshot_bytes: 64 * 1024,
            warn_rows: 100_000,
        }
    }
}

/// Limits of server streams (docs/gateway.md, "Streams"): open streams are counted apart
/// from requests in flight, per user and per gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamsConfig {
    /// Streams one user may hold open at once (at least 1); beyond, `RESOURCE_EXHAUSTED` /
    /// `TOO_MANY_STREAMS`.
    pub per_user: usize,
    /// Streams this gateway holds open at once, every user together (at least 1); beyond,
    /// `RESOURCE_EXHAUSTED` / `TOO_MANY_STREAMS`.
    pub max: usize,
    /// Heartbeat period of the gateway's own streams (`WatchBackpack`), seconds; proxied
    /// streams carry their service's heartbeats.
    pub heartbeat_secs: u64,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self { per_user: 4, max: 1000, heartbeat_secs: 15 }
    }
}
