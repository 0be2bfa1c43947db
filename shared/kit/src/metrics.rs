//! Prometheus metrics (docs/operations.md, "Observability"): the process-wide recorder behind the `metrics`
//! facade and its scrape endpoint, `GET http://<metrics.listen>/metrics` (text format
//! 0.0.4). One endpoint per process: `economy up` serves every service's metrics on one.
//!
//! Metrics defined here: `economy_job_runs_total{job,outcome}` and
//! `economy_job_items_total{job}` (`job_run`; at zero from `register_job`),
//! `economy_db_pool_connections{database,state}` and
//! `economy_db_pool_max_connections{database}` (sampled every 5 s for each pool while the
//! recorder is installed), `economy_sqlite_wal_bytes{database}` for SQLite files, and the
//! zeros of each database's `economy_db_long_reads_stopped_total` and
//! `economy_sqlite_checkpoints_total`; `economy_build_info` and the `process_*` metrics
//! (`process`, read at every scrape). Every metric of the kit has its `# HELP` (`help`).
//! Histograms whose name ends in `_seconds` (100 µs to 60 s) or `_bytes` get fixed
//! buckets; RPC metrics are in `crate::observe`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

mod help;
mod process;

pub use help::register_job;
pub use process::{COMMIT, VERSION};

/// Buckets of `*_seconds` histograms (request and job latencies), seconds: 100 µs to 60 s.
pub const SECONDS_BUCKETS: [f64; 18] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets of `*_bytes` histograms (idempotency snapshot sizes), bytes.
const BYTES_BUCKETS: [f64; 10] =
    [64.0, 256.0, 1024.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0, 262_144.0, 1_048_576.0];
/// Period of the recorder's upkeep and of the pool sampling.
const SAMPLE_PERIOD: Duration = Duration::from_secs(5);

/// `[metrics]` section of the configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint, e.g. `127.0.0.1:9464` (port 0 picks one); empty
    /// (the default) disables metrics.
    pub listen: String,
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static INSTALLING: Mutex<()> = Mutex::new(());

/// Installs the recorder (once per process) and serves `GET /metrics` on
/// `config.listen` until the process ends; returns the bound address, or `None` when
/// `listen` is empty. Call inside the Tokio runtime.
///
/// Errors: the address cannot be bound, or another `metrics` recorder is installed.
pub async fn install(config: &MetricsConfig) -> anyhow::Result<Option<SocketAddr>> {
    if config.listen.trim().is_empty() {
        return Ok(None);
    }
    let handle = recorder()?;
    let listener = TcpListener::bind(config.listen.trim())
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {} for metrics: {error}", config.listen))?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener, handle));
    tracing::info!(%addr, "metrics endpoint serving");
    Ok(Some(addr))
}

/// The process's Prometheus recorder, installed as the global `metrics` recorder on the
/// first call (with a task running its upkeep, and the kit's metrics described: their
/// `# HELP`); later calls return the same handle.
/// Call inside the Tokio runtime.
///
/// Errors: another `metrics` recorder is already installed.
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    let _installing = INSTALLING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), &BYTES_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| anyhow::anyhow!("another metrics recorder is already installed"))?;
    let _ = HANDLE.set(handle.clone());
    help::describe_kit();
    process::register();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(SAMPLE_PERIOD);
        loop {
            ticker.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// True once `recorder` (or `install`) has run in this process.
pub fn enabled() -> bool {
    HANDLE.get().is_some()
}

/// Counts one pass of the background job `job` (e.g. `ledger_hold_expiry`):
/// `economy_job_runs_total{job,outcome="ok"|"error"}`, and for a pass that succeeded,
/// `items` (rows changed, deliveries, findings) added to `economy_job_items_total{job}`.
/// `None` is a failed pass.
pub fn job_run(job: &'static str, items: Option<u64>) {
    let outcome = if items.is_some() { "ok" } else { "error" };
    metrics::counter!("economy_job_runs_total", "job" => job, "outcome" => outcome).increment(1);
    if let Some(items) = items {
        metrics::counter!("economy_job_items_total", "job" => job).increment(items);
    }
}

/// Samples `pool` every 5 s into `economy_db_pool_connections{database,state="idle"|"in_use"}`
/// and `economy_db_pool_max_connections{database}` until it is closed; does nothing unless
/// the recorder is installed. `database` is the name of the database (file stem or
/// PostgreSQL database), never its URL.
/// For a SQLite file, `wal` is its write-ahead log, whose size is sampled alike into
/// `economy_sqlite_wal_bytes{database}` (0 while the file does not exist).
pub(crate) fn watch_pool(database: String, pool: sqlx::AnyPool, wal: Option<std::path::PathBuf>) {
    if !enabled() {
        return;
    }
    register_database(&database, wal.is_some());
    let max = f64::from(pool.options().get_max_connections());
    metrics::gauge!("economy_db_pool_max_connections", "database" => database.clone()).set(max);
    let wal_bytes = wal.map(|path| (path, metrics::gauge!("economy_sqlite_wal_bytes", "database" => database.clone())));
    let idle = metrics::gauge!("economy_db_pool_connections", "database" => database.clone(), "state" => "idle");
    let in_use = metrics::gauge!("economy_db_pool_connections", "database" => database, "state" => "in_use");
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(SAMPLE_PERIOD);
        while !pool.is_closed() {
            let (size, free) = (pool.size(), u32::try_from(pool.num_idle()).unwrap_or(u32::MAX));
            idle.set(f64::from(free));
            in_use.set(f64::from(size.saturating_sub(free)));
            if let Some((path, gauge)) = &wal_bytes {
                let bytes = tokio::fs::metadata(path).await.map_or(0, |metadata| metadata.len());
                gauge.set(bytes as f64);
            }
            ticker.tick().await;
        }
        idle.set(0.0);
        in_use.set(0.0);
    });
}

/// Puts the counters of `database` at zero: the long reads stopped and, for a SQLite file
/// (`sqlite`), its checkpoints by outcome (`crate::db`).
fn register_database(database: &str, sqlite: bool) {
    metrics::counter!("economy_db_long_reads_stopped_total", "database" => database.to_owned()).increment(0);
    if sqlite {
        for outcome in ["truncated", "busy", "error"] {
            let labels = [("database", database.to_owned()), ("outcome", outcome.to_owned())];
            metrics::counter!("economy_sqlite_checkpoints_total", &labels).increment(0);
        }
    }
}

/// Accepts scrapes until the process ends.
async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics endpoint accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let response = respond(&handle, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

/// `GET /metrics`: the rendered metrics; anything else: 404.
fn respond<B>(handle: &PrometheusHandle, request: &http::Request<B>) -> http::Response<Full<Bytes>> {
    if request.method() == http::Method::GET && request.uri().path() == "/metrics" {
        process::collect();
        let mut response = http::Response::new(Full::new(Bytes::from(handle.render())));
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; version=0.0.4"));
        response
    } else {
        let mut response = http::Response::new(Full::new(Bytes::from_static(b"not found; try GET /metrics\n")));
        *response.status_mut() = http::StatusCode::NOT_FOUND;
        response
    }
}

/// The label naming a database URL's database: the SQLite file's stem or the PostgreSQL
/// database name (`postgres` when the URL names none); never credentials or hosts.
pub(crate) fn database_label(url: &str) -> String {
    let base = url.split(['?', '#']).next().unwrap_or(url);
    let (scheme, rest) = base.split_once(':').unwrap_or(("", base));
    let rest = rest.trim_start_matches('/');
    let name = if scheme.starts_with("sqlite") {
        let file = rest.rsplit('/').next().unwrap_or(rest);
        file.split_once('.').map_or(file, |(stem, _)| stem)
    } else {
        rest.split_once('/').map_or("", |(_, path)| path)
    };
    let name = name.trim_matches('/');
    if name.is_empty() { "postgres".into() } else { name.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_labels_never_carry_credentials() {
        assert_eq!(database_label("sqlite://data/ledger.db"), "ledger");
        assert_eq!(database_label("sqlite:///tmp/x/items.db?mode=rwc"), "items");
        assert_eq!(
            database_label("postgres://user:secret@db.example:5432/economy_market?sslmode=off"),
            "economy_market"
        );
        assert_eq!(database_label("postgres://user:secret@db.example:5432"), "postgres");
        assert_eq!(database_label("postgresql://u:p@h/"), "postgres");
    }

    #[tokio::test]
    async fn the_recorder_describes_the_kit_and_the_process() {
        let handle = recorder().expect("recorder");
        register_job("test_registered_job");
        let rendered = handle.render();
        let build = format!("economy_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1");
        assert!(rendered.lines().any(|line| line == build), "{build} in {rendered}");
        let processes = [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ];
        for name in processes.iter().chain(&["economy_build_info", "economy_job_runs_total", "economy_job_items_total"])
        {
            assert!(rendered.contains(&format!("# HELP {name} ")), "{name} is described");
            assert!(
                rendered
                    .lines()
                    .any(|line| line.starts_with(&format!("{name} ")) || line.starts_with(&format!("{name}{{"))),
                "{name} has a sample"
            );
        }
        for outcome in ["ok", "error"] {
            let zero = format!("economy_job_runs_total{{job=\"test_registered_job\",outcome=\"{outcome}\"}} 0");
            assert!(rendered.lines().any(|line| line == zero), "{zero}");
        }
        assert!(rendered.lines().any(|line| line == "economy_job_items_total{job=\"test_registered_job\"} 0"));
    }

    #[test]
    fn jobs_are_counted_when_the_recorder_is_absent() {
        // The facade without a recorder is a no-op: counting must never fail.
        job_run("test_job", Some(3));
        job_run("test_job", None);
    }
}
