//! Stream delivery lag (`watch-lag`): what stream consumers received, the lag of each
//! delivered entry (receipt time minus the entry's `created_at`) in an HdrHistogram per
//! consumer kind, and the exactly-once check of the entries written against the entries
//! delivered.
//!
//! The ledger stamps `created_at` just before the entry's transaction commits, with
//! millisecond resolution (truncated), so a lag reads up to 1 ms high and includes the
//! commit itself. Sender and receivers share this machine's clock.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

/// Largest lag the histograms track, microseconds (a minute); longer ones saturate.
const MAX_LAG_MICROS: u64 = 60_000_000;

/// One entry as a consumer received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The journal entry's id.
    pub entry_id: String,
    /// Its `created_at`, or `None` when the message had none.
    pub created_at: Option<SystemTime>,
    /// When the consumer read it off the stream.
    pub received: SystemTime,
}

impl Delivery {
    /// Receipt time minus `created_at`: `None` without a `created_at`, zero when the
    /// stamp is after the receipt (clock resolution).
    pub fn lag(&self) -> Option<Duration> {
        let created_at = self.created_at?;
        Some(self.received.duration_since(created_at).unwrap_or(Duration::ZERO))
    }
}

/// A protobuf `Timestamp` as a `SystemTime` (`None` before the epoch or malformed).
pub fn system_time(timestamp: &prost_types::Timestamp) -> Option<SystemTime> {
    let seconds = u64::try_from(timestamp.seconds).ok()?;
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// Wall-clock bounds of the measured window: entries created in `[start, end)` count.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The window's start.
    pub start: SystemTime,
    /// The window's end.
    pub end: SystemTime,
}

impl Window {
    fn holds(&self, delivery: &Delivery) -> bool {
        delivery.created_at.is_some_and(|at| at >= self.start && at < self.end)
    }
}

/// The lags one kind of consumer saw, all its streams together.
#[derive(Debug, Clone)]
pub struct ConsumerLag {
    /// What the consumer is, e.g. `WatchEntries, admin, every entry`.
    pub kind: String,
    /// Streams of this kind.
    pub streams: usize,
    /// Lags of the entries created in the window, microseconds.
    pub lags: Histogram<u64>,
}

impl ConsumerLag {
    /// The lags of `deliveries` (one list per stream) created in `window`.
    pub fn of(kind: &str, deliveries: &[Vec<Delivery>], window: Window) -> anyhow::Result<Self> {
        let mut lags = Histogram::new_with_bounds(1, MAX_LAG_MICROS, 3)?;
        for delivery in deliveries.iter().flatten().filter(|delivery| window.holds(delivery)) {
            if let Some(lag) = delivery.lag() {
                lags.saturating_record(u64::try_from(lag.as_micros()).unwrap_or(u64::MAX).max(1));
            }
        }
        Ok(Self { kind: kind.to_owned(), streams: deliveries.len(), lags })
    }

    /// Entries counted (created in the window).
    pub fn count(&self) -> u64 {
        self.lags.len()
    }

    /// The lag at `quantile` (0.5 = p50), zero without entries.
    pub fn quantile(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.lags.value_at_quantile(quantile))
    }

    /// The largest lag.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.lags.max())
    }
}

/// Entries written against entries one kind of consumer delivered, over the whole run
/// (warm-up, window and drain).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryCheck {
    /// What the consumer is.
    pub kind: String,
    /// Entries the consumers should have received.
    pub written: u64,
    /// Entries they received, repeats included.
    pub delivered: u64,
    /// Written entries never received.
    pub missing: u64,
    /// Receipts of an entry already received on the same stream.
    pub repeated: u64,
    /// Received entries that were not written by the load (e.g. a write that failed on
    /// the client's side but committed, or another client's on a running stack).
    pub unexpected: u64,
    /// The first missing or repeated entry id, as an example.
    pub example: Option<String>,
}

impl DeliveryCheck {
    /// Compares, stream by stream, the entry ids each stream should have received with
    /// what it received.
    pub fn of(kind: &str, streams: &[(Vec<String>, Vec<Delivery>)]) -> Self {
        let mut check = Self { kind: kind.to_owned(), ..Self::default() };
        for (written, delivered) in streams {
            check.add_stream(written, delivered);
        }
        check
    }

    fn add_stream(&mut self, written: &[String], delivered: &[Delivery]) {
        let expected: HashSet<&str> = written.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        for delivery in delivered {
            let id = delivery.entry_id.as_str();
            if !seen.insert(id) {
                self.repeated += 1;
                self.example.get_or_insert_with(|| format!("{id} repeated"));
            } else if !expected.contains(id) {
                self.unexpected += 1;
            }
        }
        let missing: Vec<&str> = expected.iter().copied().filter(|id| !seen.contains(id)).collect();
        if let Some(first) = missing.first() {
            self.example.get_or_insert_with(|| format!("{first} missing"));
        }
        self.written += expected.len() as u64;
        self.delivered += delivered.len() as u64;
        self.missing += missing.len() as u64;
    }

    /// Every written entry delivered exactly once.
    pub fn exactly_once(&self) -> bool {
        self.missing == 0 && self.repeated == 0
    }
}

/// What the stream consumers of a run saw.
#[derive(Debug, Clone)]
pub struct StreamReport {
    /// Lags per consumer kind.
    pub lags: Vec<ConsumerLag>,
    /// Written against delivered, per consumer kind, in the order of `lags`.
    pub checks: Vec<DeliveryCheck>,
    /// How long the consumers took after the last write to catch up (or the drain
    /// timeout when they did not).
    pub drain: Duration,
    /// Streams that ended before the run did, with why (`kind #n: status`).
    pub ended: BTreeMap<String, String>,
}

impl StreamReport {
    /// Every entry delivered exactly once, something delivered, and no stream ended early.
    pub fn is_clean(&self) -> bool {
        self.ended.is_empty() && self.checks.iter().all(|check| check.exactly_once() && check.delivered > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
    }

    fn delivery(id: &str, created: u64, received: u64) -> Delivery {
        Delivery { entry_id: id.into(), created_at: Some(at(created)), received: at(received) }
    }

    #[test]
    fn lags_count_only_entries_created_in_the_window() -> anyhow::Result<()> {
        let window = Window { start: at(1_000), end: at(2_000) };
        let streams = vec![
            vec![delivery("a", 999, 1_005), delivery("b", 1_000, 1_004)],
            vec![delivery("c", 1_500, 1_502), delivery("d", 2_000, 2_001)],
        ];
        let lag = ConsumerLag::of("test", &streams, window)?;
        assert_eq!((lag.count(), lag.streams), (2, 2));
        // HdrHistogram answers to 3 significant digits.
        assert_eq!(lag.max().as_millis(), 4);
        assert_eq!(lag.quantile(0.0).as_millis(), 2);
        Ok(())
    }

    #[test]
    fn a_stamp_after_the_receipt_is_no_lag() {
        assert_eq!(delivery("a", 10, 9).lag(), Some(Duration::ZERO));
        let unstamped = Delivery { created_at: None, ..delivery("a", 1, 2) };
        assert_eq!(unstamped.lag(), None);
    }

    #[test]
    fn the_check_finds_missing_repeated_and_unexpected_entries() {
        let written = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let delivered = vec![delivery("a", 1, 2), delivery("a", 1, 3), delivery("c", 1, 2), delivery("x", 1, 2)];
        let check = DeliveryCheck::of("test", &[(written, delivered)]);
        assert_eq!((check.written, check.delivered), (3, 4));
        assert_eq!((check.missing, check.repeated, check.unexpected), (1, 1, 1));
        assert_eq!(check.example.as_deref(), Some("a repeated"));
        assert!(!check.exactly_once());
    }

    #[test]
    fn every_entry_once_passes() {
        let written = vec!["a".to_owned(), "b".to_owned()];
        let delivered = vec![delivery("b", 1, 2), delivery("a", 1, 2)];
        let check = DeliveryCheck::of("test", &[(written, delivered)]);
        assert!(check.exactly_once());
        assert_eq!(check.example, None);
    }

    #[test]
    fn timestamps_convert_to_system_time() {
        let timestamp = prost_types::Timestamp { seconds: 1, nanos: 5_000_000 };
        assert_eq!(system_time(&timestamp), Some(at(1_005)));
        assert_eq!(system_time(&prost_types::Timestamp { seconds: -1, nanos: 0 }), None);
    }
}
