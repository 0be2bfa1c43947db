//! The load driver: N workers (one per simulated client), each a closed loop that issues
//! its next operation as soon as the previous one answers, for a warm-up (not recorded)
//! then a fixed measured window. Every worker keeps its own HdrHistogram of successful
//! operation latencies (microseconds) and its failures by reason; they are merged at the
//! end into one [`Measurement`].
//!
//! An operation that starts inside the window is recorded; the driver stops issuing at the
//! window's end. A worker may also end early when its scenario has nothing left to do
//! (e.g. a pre-granted item pool ran out): the window then ends with the last worker.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

/// Largest latency the histograms track, microseconds (a minute); longer ones saturate.
const MAX_LATENCY_MICROS: u64 = 60_000_000;
/// Significant decimal digits of the histograms.
const SIGNIFICANT_DIGITS: u8 = 3;

/// How hard and how long to drive a scenario.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Concurrent clients (workers), at least one.
    pub concurrency: usize,
    /// HTTP/2 connections the clients share (client `i` uses connection `i % connections`).
    pub connections: usize,
    /// Unrecorded run before the window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { concurrency: 32, connections: 4, warmup: Duration::from_secs(1), duration: Duration::from_secs(10) }
    }
}

/// The result of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded; its latency is recorded.
    Ok,
    /// It failed; counted under `reason` (see `clients::failure_reason`), with `detail`
    /// kept as an example of the first such failure.
    Failed {
        /// Stable grouping key, e.g. `FAILED_PRECONDITION INSUFFICIENT_BALANCE`.
        reason: String,
        /// The first message seen for this reason.
        detail: String,
    },
    /// The worker has nothing left to do (not an operation; ends this worker).
    Exhausted,
}

impl Outcome {
    /// A failure from a gRPC status.
    pub fn status(status: &tonic::Status) -> Self {
        Self::Failed { reason: crate::clients::failure_reason(status), detail: status.message().to_owned() }
    }

    /// A failure found by the harness itself (e.g. a response that is not what the
    /// scenario expects).
    pub fn unexpected(reason: &str, detail: impl Into<String>) -> Self {
        Self::Failed { reason: reason.to_owned(), detail: detail.into() }
    }
}

/// One simulated client: a loop of operations.
pub trait Worker: Send + 'static {
    /// Performs one operation (possibly several calls, e.g. create then fulfil).
    fn call(&mut self) -> impl Future<Output = Outcome> + Send;
}

/// Count and first example of one failure reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureCount {
    /// Failures in the window.
    pub count: u64,
    /// The first message seen.
    pub example: String,
}

/// What the driver measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Latencies of successful operations, microseconds.
    pub latencies: Histogram<u64>,
    /// Failed operations by reason.
    pub failures: BTreeMap<String, FailureCount>,
    /// The measured window (shorter than asked when every worker ran out of work).
    pub elapsed: Duration,
    /// Workers that ended early for lack of work.
    pub exhausted_workers: usize,
    /// The load it ran with.
    pub load: LoadOptions,
}

impl Measurement {
    /// Successful operations in the window.
    pub fn ok(&self) -> u64 {
        self.latencies.len()
    }

    /// Failed operations in the window.
    pub fn failed(&self) -> u64 {
        self.failures.values().map(|failure| failure.count).sum()
    }

    /// Successful operations per second.
    pub fn throughput(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 { self.ok() as f64 / seconds } else { 0.0 }
    }

    /// The latency at `quantile` (0.5 = p50), or zero with no successful operation.
    pub fn quantile(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.latencies.value_at_quantile(quantile))
    }

    /// The largest latency.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.latencies.max())
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, SIGNIFICANT_DIGITS)?)
}

/// What one worker saw.
struct Tally {
    latencies: Histogram<u64>,
    failures: BTreeMap<String, FailureCount>,
    /// When the worker ran out of work, if it did.
    exhausted_at: Option<Instant>,
}

/// Runs every worker for `options.warmup + options.duration` and merges what they saw.
pub async fn drive<W: Worker>(workers: Vec<W>, options: &LoadOptions) -> anyhow::Result<Measurement> {
    anyhow::ensure!(!workers.is_empty(), "a load needs at least one worker");
    let window_start = Instant::now() + options.warmup;
    let deadline = window_start + options.duration;
    let mut tasks = JoinSet::new();
    for worker in workers {
        let latencies = histogram()?;
        tasks.spawn(run_worker(worker, latencies, window_start, deadline));
    }
    let mut latencies = histogram()?;
    let mut failures: BTreeMap<String, FailureCount> = BTreeMap::new();
    let (mut exhausted_workers, mut last_end) = (0, None::<Instant>);
    let mut all_exhausted = true;
    while let Some(tally) = tasks.join_next().await {
        let tally = tally?;
        latencies.add(&tally.latencies)?;
        for (reason, failure) in tally.failures {
            let merged = failures.entry(reason).or_default();
            if merged.example.is_empty() {
                merged.example = failure.example;
            }
            merged.count += failure.count;
        }
        match tally.exhausted_at {
            Some(at) => {
                exhausted_workers += 1;
                last_end = Some(last_end.map_or(at, |last| last.max(at)));
            }
            None => all_exhausted = false,
        }
    }
    let window_end = match last_end {
        Some(end) if all_exhausted => end.clamp(window_start, deadline),
        _ => deadline,
    };
    Ok(Measurement {
        latencies,
        failures,
        elapsed: window_end.saturating_duration_since(window_start),
        exhausted_workers,
        load: options.clone(),
    })
}

async fn run_worker<W: Worker>(
    mut worker: W,
    mut latencies: Histogram<u64>,
    window_start: Instant,
    deadline: Instant,
) -> Tally {
    let mut failures: BTreeMap<String, FailureCount> = BTreeMap::new();
    let mut exhausted_at = None;
    loop {
        let began = Instant::now();
        if began >= deadline {
            break;
        }
        let outcome = worker.call().await;
        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        let recorded = began >= window_start;
        match outcome {
            Outcome::Ok if recorded => latencies.saturating_record(micros.max(1)),
            Outcome::Failed { reason, detail } if recorded => {
                let failure = failures.entry(reason).or_default();
                if failure.count == 0 {
                    failure.example = detail;
                }
                failure.count += 1;
            }
            Outcome::Exhausted => {
                exhausted_at = Some(began);
                break;
            }
            Outcome::Ok | Outcome::Failed { .. } => {}
        }
    }
    Tally { latencies, failures, exhausted_at }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter {
        left: usize,
        fail_every: usize,
        calls: usize,
    }

    impl Worker for Counter {
        async fn call(&mut self) -> Outcome {
            if self.left == 0 {
                return Outcome::Exhausted;
            }
            self.left -= 1;
            self.calls += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
            if self.calls.is_multiple_of(self.fail_every) {
                Outcome::unexpected("TEST FAILURE", format!("call {}", self.calls))
            } else {
                Outcome::Ok
            }
        }
    }

    #[tokio::test]
    async fn merges_workers_and_ends_with_the_last_exhausted_one() -> anyhow::Result<()> {
        let options =
            LoadOptions { concurrency: 2, connections: 1, warmup: Duration::ZERO, duration: Duration::from_secs(30) };
        let workers =
            vec![Counter { left: 10, fail_every: 5, calls: 0 }, Counter { left: 20, fail_every: 5, calls: 0 }];
        let measurement = drive(workers, &options).await?;
        assert_eq!(measurement.ok(), 24);
        assert_eq!(measurement.failed(), 6);
        assert_eq!(measurement.failures["TEST FAILURE"].example, "call 5");
        assert_eq!(measurement.exhausted_workers, 2);
        assert!(measurement.elapsed < Duration::from_secs(5), "{:?}", measurement.elapsed);
        assert!(measurement.quantile(0.5) >= Duration::from_millis(1));
        Ok(())
    }
}
