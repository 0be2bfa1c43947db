//! Background jobs of the gateway (docs/gateway.md, "Jobs"), each safe on several replicas
//! at once (single conditional statements): processing records time out, expired records
//! are deleted, and upstream health is probed and reported.

use std::time::Duration;

use economy_kit::jobs::{Scheduler, every};
use economy_kit::schedule::Schedule;
use economy_kit::time::SharedClock;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::ServingStatus;
use tonic_health::pb::health_check_response::ServingStatus as ProbeStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_health::server::HealthReporter;

use crate::config::IdempotencyConfig;
use crate::store::IdempotencyStore;

fn secs(value: u64) -> Duration {
    Duration::from_secs(value.max(1))
}

/// Turns `processing` records older than the timeout into `failed` /
/// `PROCESSING_TIMEOUT` at `now` (ms since the epoch); returns how many.
pub async fn time_out_processing(
    store: &IdempotencyStore,
    config: &IdempotencyConfig,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let timeout_ms = i64::try_from(config.processing_timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    store.time_out_processing(now.saturating_sub(timeout_ms), now).await
}

/// Deletes expired records, exports the remaining row count and warns above the limit;
/// returns `(deleted, remaining)`. Expired means past `now` (ms since the epoch).
pub async fn clean_up(
    store: &IdempotencyStore,
    config: &IdempotencyConfig,
    now: i64,
) -> Result<(u64, i64), sqlx::Error> {
    let deleted = store.delete_expired(now).await?;
    let remaining = store.count().await?;
    crate::metrics::idempotency_records(remaining);
    if remaining > config.warn_rows {
        tracing::warn!(remaining, limit = config.warn_rows, "idempotency records above the warning limit");
    }
    Ok((deleted, remaining))
}

/// Spawns the timeout job (every `timeout_job_interval_secs`) and the cleanup job (on
/// `cleanup`, once per scheduled time across replicas: the `gateway_record_cleanup` job of
/// `scheduler`), which read "now" from `clock`.
pub fn spawn_idempotency_jobs(
    scheduler: &Scheduler,
    store: IdempotencyStore,
    config: IdempotencyConfig,
    clock: SharedClock,
    cleanup: Schedule,
    shutdown: CancellationToken,
) {
    let (timeout_store, timeout_config, timeout_clock) = (store.clone(), config.clone(), clock.clone());
    every(secs(config.timeout_job_interval_secs), shutdown.clone(), move || {
        let (store, config, now) = (timeout_store.clone(), timeout_config.clone(), timeout_clock.now_millis());
        async move {
            let result = time_out_processing(&store, &config, now).await;
            economy_kit::metrics::job_run("gateway_processing_timeout", result.as_ref().ok().copied());
            match result {
                Ok(0) => {}
                Ok(timed_out) => tracing::warn!(timed_out, "idempotency records timed out while processing"),
                Err(error) => tracing::error!(%error, "idempotency timeout job failed"),
            }
        }
    });
    scheduler.spawn("gateway_record_cleanup", cleanup, move || {
        let (store, config, now) = (store.clone(), config.clone(), clock.now_millis());
        async move {
            let result = clean_up(&store, &config, now).await;
            result.map(|(deleted, _)| deleted).map_err(|error| error.to_string())
        }
    });
}

/// Probes each upstream's `grpc.health.v1` and reports its services through `reporter`
/// (NOT_SERVING when the upstream is down or not serving) and in
/// `economy_gateway_upstream_serving{upstream}`, and logs each change once
/// (`crate::upstream::HealthChanges`). `upstreams`: `(name, channel, services)`.
pub fn spawn_health_probe(
    upstreams: Vec<(String, Channel, Vec<String>)>,
    reporter: HealthReporter,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let changes = crate::upstream::HealthChanges::default();
    every(interval, shutdown, move || {
        let (upstreams, reporter, changes) = (upstreams.clone(), reporter.clone(), changes.clone());
        async move {
            for (upstream, channel, services) in upstreams {
                let mut client = HealthClient::new(channel);
                let check = client.check(HealthCheckRequest { service: String::new() });
                let serving = matches!(
                    tokio::time::timeout(Duration::from_secs(2), check).await,
                    Ok(Ok(response)) if response.get_ref().status == ProbeStatus::Serving as i32
                );
                crate::metrics::upstream_serving(&upstream, serving);
                changes.observe(&upstream, serving);
                let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
                for service in services {
                    reporter.set_service_status(service, status).await;
                }
            }
        }
    });
}
