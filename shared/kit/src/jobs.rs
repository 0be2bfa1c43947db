//! The loop every background job runs in (docs/operations.md, "Background jobs"): `tick` every period until the
//! shutdown token is cancelled. The first tick runs at once (tokio's `interval`). Daily and
//! hourly jobs run on a cron schedule instead, once across replicas ([`Scheduler`]).

pub(crate) mod scheduled;

pub use scheduled::{Scheduler, TICK};

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Spawns a task running `tick` at once, then every `period` (at least 1 ms), until
/// `shutdown`.
pub fn every<F, Fut>(period: Duration, shutdown: CancellationToken, tick: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    run_every(period, Duration::ZERO, shutdown, tick);
}

/// As [`every`], but the first run waits one `period`: for work that must not run at
/// process start (a reconciliation, docs/ledger.md, "Reconciliation").
pub fn every_after_a_period<F, Fut>(period: Duration, shutdown: CancellationToken, tick: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    run_every(period, period, shutdown, tick);
}

fn run_every<F, Fut>(period: Duration, first_after: Duration, shutdown: CancellationToken, mut tick: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let period = period.max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + first_after, period);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => tick().await,
            }
        }
    });
}
