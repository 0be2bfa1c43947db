//! The load driver: N workers (one per simulated client) for a warm-up (not recorded) then
//! a fixed measured window. Every worker keeps its own HdrHistogram of successful
//! operation latencies (microseconds) and its failures by reason; they are merged at the
//! end into one [`Measurement`].
//!
//! - **Closed loop** (default): a worker issues its next operation as soon as the previous
//!   one answers, so the offered load follows the stack's speed.
//! - **Open loop** (`rate`): the workers share a fixed schedule of `rate` operations per
//!   second (worker `i` of `n` owns every `n`-th slot, as wrk2 does). A worker that is
//!   still busy when its next slot comes issues late, and that operation's latency counts
//!   from its slot, so time spent queued behind a slow answer is measured instead of
//!   omitted ("coordinated omission"); a worker that was idle counts from the moment it
//!   sent, so the timer's granularity is not charged to the stack.
//!
//! An operation that starts inside the window is recorded; the driver stops issuing at the
//! window's end. A worker may also end early when its scenario has nothing left to do
//! (e.g. a pre-granted item pool ran out): the window then ends with the last worker.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::Instant;

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
    /// Open loop: operations per second offered by all workers together (`None`: closed
    /// loop). `concurrency` is then the most operations in flight at once.
    pub rate: Option<f64>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            concurrency: 32,
            connections: 4,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            rate: None,
        }
    }
}

/// When a worker issues its operations.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Each as soon as the previous one answered.
    Closed,
    /// Slot `k` at `first + k * interval`.
    Open { first: Instant, interval: Duration },
}

impl Pace {
    /// Worker `index` of `workers` under `options`, the run starting at `start`.
    fn of(options: &LoadOptions, index: usize, workers: usize, start: Instant) -> Self {
        match options.rate.filter(|rate| rate.is_finite() && *rate > 0.0) {
            None => Self::Closed,
            Some(rate) => Self::Open {
                first: start + Duration::from_secs_f64(index as f64 / rate),
                interval: Duration::from_secs_f64(workers as f64 / rate),
            },
        }
    }

    /// Waits for slot `slot` and returns the instant its latency counts from: the slot
    /// when the previous operation (ended at `previous_end`) kept the worker past it,
    /// else the moment of sending.
    async fn start(&self, slot: u32, previous_end: Instant) -> Instant {
        let Self::Open { first, interval } = *self else { return Instant::now() };
        let due = first + interval * slot;
        if previous_end > due {
            return due;
        }
        tokio::time::sleep_until(due).await;
        Instant::now()
    }

    /// The slot `slot` is due at or after `deadline` (a closed loop never is).
    fn due_after(&self, slot: u32, deadline: Instant) -> bool {
        matches!(*self, Self::Open { first, interval } if first + interval * slot >= deadline)
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
    /// What stream consumers saw meanwhile (`watch-lag`; `None` for the others).
    pub streams: Option<Box<crate::lag::StreamReport>>,
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
    let start = Instant::now();
    let window_start = start + options.warmup;
    let deadline = window_start + options.duration;
    let count = workers.len();
    let mut tasks = JoinSet::new();
    for (index, worker) in workers.into_iter().enumerate() {
        let latencies = histogram()?;
        let pace = Pace::of(options, index, count, start);
        tasks.spawn(run_worker(worker, latencies, pace, (window_start, deadline)));
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
        streams: None,
    })
}

async fn run_worker<W: Worker>(
    mut worker: W,
    mut latencies: Histogram<u64>,
    pace: Pace,
    (window_start, deadline): (Instant, Instant),
) -> Tally {
    let mut failures: BTreeMap<String, FailureCount> = BTreeMap::new();
    let mut exhausted_at = None;
    let mut previous_end = Instant::now();
    for slot in 0.. {
        if pace.due_after(slot, deadline) {
            break;
        }
        let began = pace.start(slot, previous_end).await;
        if Instant::now() >= deadline {
            break;
        }
        let outcome = worker.call().await;
        previous_end = Instant::now();
        let micros = u64::try_from(previous_end.duration_since(began).as_micros()).unwrap_or(u64::MAX);
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

    fn load(concurrency: usize) -> LoadOptions {
        LoadOptions {
            concurrency,
            connections: 1,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            rate: None,
        }
    }

    /// Answers after `delay`, forever.
    struct Slow {
        delay: Duration,
    }

    impl Worker for Slow {
        async fn call(&mut self) -> Outcome {
            tokio::time::sleep(self.delay).await;
            Outcome::Ok
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_loop_issues_the_offered_rate_and_counts_from_the_send() -> anyhow::Result<()> {
        let options = LoadOptions { rate: Some(100.0), ..load(2) };
        let workers = vec![Slow { delay: Duration::from_millis(1) }, Slow { delay: Duration::from_millis(1) }];
        let measurement = drive(workers, &options).await?;
        assert_eq!(measurement.ok(), 100, "one slot every 10 ms for a second");
        assert!(measurement.max() < Duration::from_millis(3), "{:?}", measurement.max());
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_loop_charges_a_late_operation_from_its_slot() -> anyhow::Result<()> {
        let options = LoadOptions { rate: Some(100.0), ..load(1) };
        let measurement = drive(vec![Slow { delay: Duration::from_millis(25) }], &options).await?;
        // Slot k is due at 10k ms but sent at 25k ms (k >= 1): latency 15k + 25 ms.
        assert!((39..=41).contains(&measurement.ok()), "{}", measurement.ok());
        assert!(measurement.quantile(0.0) < Duration::from_millis(27));
        assert!(measurement.max() > Duration::from_millis(550), "{:?}", measurement.max());
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_loop_counts_each_operation_from_its_send() -> anyhow::Result<()> {
        let measurement = drive(vec![Slow { delay: Duration::from_millis(25) }], &load(1)).await?;
        assert_eq!(measurement.ok(), 40);
        assert!(measurement.max() < Duration::from_millis(27), "{:?}", measurement.max());
        Ok(())
    }

    #[tokio::test]
    async fn merges_workers_and_ends_with_the_last_exhausted_one() -> anyhow::Result<()> {
        let options = LoadOptions { duration: Duration::from_secs(30), ..load(2) };
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
