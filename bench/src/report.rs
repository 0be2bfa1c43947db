//! What the harness prints: one block per scenario, and for `all` a Markdown table of
//! every scenario, the ratios issue 7 asks for and each target of issue 7 with its
//! verdict. Tables are Markdown so a run can be pasted into BENCHMARKS.md as is.

use std::fmt::Write as _;
use std::time::Duration;

use crate::driver::Measurement;
use crate::lag::StreamReport;
use crate::scenarios::{Run, Scenario, ScenarioResult};

fn millis(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

/// The report of one scenario.
pub fn scenario_block(result: &ScenarioResult) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== {} — {}", result.scenario.name(), result.backend);
    let _ = writeln!(out, "operation   {}", result.operation);
    match &result.run {
        Run::Skipped(why) => {
            let _ = writeln!(out, "skipped     {why}");
        }
        Run::Failed(error) => {
            let _ = writeln!(out, "FAILED      {error}");
        }
        Run::Measured(measurement) => write_measurement(&mut out, measurement),
    }
    for note in &result.notes {
        let _ = writeln!(out, "note        {note}");
    }
    out
}

fn write_measurement(out: &mut String, measurement: &Measurement) {
    let load = &measurement.load;
    let pace = match load.rate {
        None => "closed loop".to_owned(),
        Some(rate) => format!("open loop offering {rate:.0} ops/s"),
    };
    let _ = writeln!(
        out,
        "load        {} clients over {} HTTP/2 connection(s), {pace}, {:.1} s measured after {:.1} s warm-up",
        load.concurrency.max(1),
        load.connections.max(1),
        load.duration.as_secs_f64(),
        load.warmup.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "result      {} ok, {} failed in {:.1} s: {:.0} ops/s",
        measurement.ok(),
        measurement.failed(),
        measurement.elapsed.as_secs_f64(),
        measurement.throughput()
    );
    let _ = writeln!(
        out,
        "latency     p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        millis(measurement.quantile(0.50)),
        millis(measurement.quantile(0.90)),
        millis(measurement.quantile(0.99)),
        millis(measurement.max())
    );
    if measurement.failures.is_empty() {
        let _ = writeln!(out, "failures    none");
    }
    for (reason, failure) in &measurement.failures {
        let _ = writeln!(out, "failures    {:>8}  {reason}  (first: {})", failure.count, failure.example);
    }
    if let Some(streams) = &measurement.streams {
        write_streams(out, streams);
    }
}

/// The lag per consumer kind and the exactly-once check, loudly when it fails.
fn write_streams(out: &mut String, streams: &StreamReport) {
    for lag in &streams.lags {
        let _ = writeln!(
            out,
            "lag         {} ({} stream(s)): p50 {} ms, p99 {} ms, max {} ms over {} entries created in the window",
            lag.kind,
            lag.streams,
            millis(lag.quantile(0.50)),
            millis(lag.quantile(0.99)),
            millis(lag.max()),
            lag.count()
        );
    }
    let _ = writeln!(
        out,
        "lag basis   receipt time - the entry's created_at, which the ledger stamps just before commit with \
         millisecond resolution (a lag reads up to 1 ms high)"
    );
    for check in &streams.checks {
        let verdict = if check.exactly_once() { "ok" } else { "DELIVERY MISMATCH" };
        let _ = writeln!(
            out,
            "delivery    {verdict}: {}: {} written, {} delivered, {} missing, {} repeated, {} unexpected{}",
            check.kind,
            check.written,
            check.delivered,
            check.missing,
            check.repeated,
            check.unexpected,
            check.example.as_deref().map(|example| format!(" (e.g. {example})")).unwrap_or_default()
        );
    }
    let _ = writeln!(out, "drain       {:.2} s after the last write", streams.drain.as_secs_f64());
    for (stream, why) in &streams.ended {
        let _ = writeln!(out, "STREAM END  {stream} ended before the run did: {why}");
    }
}

/// The Markdown table of every result.
pub fn table(results: &[ScenarioResult]) -> String {
    let mut out = String::from(
        "| scenario | ops/s | p50 ms | p90 ms | p99 ms | max ms | ok | failed |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for result in results {
        let mut name = result.scenario.name();
        if result.measurement().and_then(|m| m.streams.as_ref()).is_some_and(|streams| !streams.is_clean()) {
            name.push_str(" (STREAM DELIVERY FAILED)");
        }
        let _ = match &result.run {
            Run::Measured(measurement) => writeln!(
                out,
                "| {name} | {:.0} | {} | {} | {} | {} | {} | {} |",
                measurement.throughput(),
                millis(measurement.quantile(0.50)),
                millis(measurement.quantile(0.90)),
                millis(measurement.quantile(0.99)),
                millis(measurement.max()),
                measurement.ok(),
                measurement.failed()
            ),
            Run::Skipped(why) => writeln!(out, "| {name} | skipped: {why} | | | | | | |"),
            Run::Failed(error) => writeln!(out, "| {name} | FAILED: {error} | | | | | | |"),
        };
    }
    out
}

/// The ratios of issue 7, each `None` when a scenario it needs did not run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ratios {
    /// `ledger-write` throughput / `raw-db` throughput.
    pub end_to_end_vs_raw: Option<f64>,
    /// `ledger-write` p50 / `ledger-write-direct` p50.
    pub gateway_vs_direct_p50: Option<f64>,
    /// `ledger-write-direct` throughput / `raw-db` throughput.
    pub direct_vs_raw: Option<f64>,
    /// `replay` p50 / `ledger-write` p50.
    pub replay_vs_first_p50: Option<f64>,
    /// `replay` throughput / `ledger-write` throughput.
    pub replay_vs_first_throughput: Option<f64>,
    /// `ledger-write` throughput / `pgledger` throughput (the peer on the same server).
    pub ledger_write_vs_pgledger: Option<f64>,
}

fn find(results: &[ScenarioResult], scenario: Scenario) -> Option<&Measurement> {
    results.iter().find(|result| result.scenario == scenario).and_then(ScenarioResult::measurement)
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| numerator / denominator)
}

impl Ratios {
    /// The ratios of `results`.
    pub fn of(results: &[ScenarioResult]) -> Self {
        let throughput = |scenario| find(results, scenario).map(Measurement::throughput);
        let p50 = |scenario| find(results, scenario).map(|measurement| measurement.quantile(0.5).as_secs_f64());
        let both = |a: Option<f64>, b: Option<f64>| a.zip(b).and_then(|(a, b)| ratio(a, b));
        Self {
            end_to_end_vs_raw: both(throughput(Scenario::LedgerWrite), throughput(Scenario::RawDb)),
            gateway_vs_direct_p50: both(p50(Scenario::LedgerWrite), p50(Scenario::LedgerWriteDirect)),
            direct_vs_raw: both(throughput(Scenario::LedgerWriteDirect), throughput(Scenario::RawDb)),
            replay_vs_first_p50: both(p50(Scenario::Replay), p50(Scenario::LedgerWrite)),
            replay_vs_first_throughput: both(throughput(Scenario::Replay), throughput(Scenario::LedgerWrite)),
            ledger_write_vs_pgledger: both(throughput(Scenario::LedgerWrite), throughput(Scenario::Pgledger)),
        }
    }
}

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.2}x"))
}

/// The ratios as a Markdown table.
pub fn ratios_table(ratios: &Ratios) -> String {
    let rows = [
        ("end to end vs raw DB (ledger-write / raw-db throughput)", ratios.end_to_end_vs_raw),
        ("ledger direct vs raw DB (ledger-write-direct / raw-db throughput)", ratios.direct_vs_raw),
        ("gateway overhead (ledger-write / ledger-write-direct p50)", ratios.gateway_vs_direct_p50),
        ("replay vs first execution (replay / ledger-write p50)", ratios.replay_vs_first_p50),
        ("replay vs first execution (replay / ledger-write throughput)", ratios.replay_vs_first_throughput),
        ("peer: ledger-write / pgledger throughput", ratios.ledger_write_vs_pgledger),
    ];
    let mut out = String::from("| ratio | value |\n| --- | ---: |\n");
    for (name, value) in rows {
        let _ = writeln!(out, "| {name} | {} |", show(value));
    }
    out
}

/// `ledger-write` next to the peer `pgledger`: both rows and the ratios (ledger-write /
/// pgledger for throughput, so above 1 is faster; pgledger / ledger-write for latencies,
/// so above 1 is also better for ledger-write), as a Markdown table. A scenario that did
/// not run shows why.
pub fn peer_comparison(results: &[ScenarioResult]) -> String {
    let mut out = String::from(
        "| scenario | transfers/s | p50 ms | p90 ms | p99 ms | clients |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for scenario in [Scenario::LedgerWrite, Scenario::Pgledger] {
        let name = scenario.name();
        let result = results.iter().find(|result| result.scenario == scenario);
        let _ = match result.map(|result| &result.run) {
            Some(Run::Measured(m)) => writeln!(
                out,
                "| {name} | {:.0} | {} | {} | {} | {} |",
                m.throughput(),
                millis(m.quantile(0.50)),
                millis(m.quantile(0.90)),
                millis(m.quantile(0.99)),
                m.load.concurrency.max(1)
            ),
            Some(Run::Skipped(why)) => writeln!(out, "| {name} | skipped: {why} | | | | |"),
            Some(Run::Failed(error)) => writeln!(out, "| {name} | FAILED: {error} | | | | |"),
            None => writeln!(out, "| {name} | not run | | | | |"),
        };
    }
    let ours = find(results, Scenario::LedgerWrite);
    let peer = find(results, Scenario::Pgledger);
    let pair = ours.zip(peer);
    let latency = |quantile: f64| {
        show(pair.and_then(|(ours, peer)| {
            ratio(peer.quantile(quantile).as_secs_f64(), ours.quantile(quantile).as_secs_f64())
        }))
    };
    let _ = writeln!(
        out,
        "| ratio (ledger-write vs pgledger) | {} | {} | {} | {} | |",
        show(pair.and_then(|(ours, peer)| ratio(ours.throughput(), peer.throughput()))),
        latency(0.50),
        latency(0.90),
        latency(0.99)
    );
    out
}

/// One target of issue 7 and how this run did.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// What is targeted.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// `Some(true)` met, `Some(false)` missed, `None` not measured.
    pub met: Option<bool>,
}

/// Every target of issue 7 for `backend` (`sqlite…` or `postgres`) against `results`.
pub fn targets(results: &[ScenarioResult], backend: &str) -> Vec<Verdict> {
    let postgres = backend.starts_with("postgres");
    let ratios = Ratios::of(results);
    let (min_rate, max_p99, min_share) = if postgres { (3_500.0, 15.0, 0.6) } else { (5_000.0, 10.0, 0.5) };
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    let mut verdicts = Vec::new();
    let write = find(results, Scenario::LedgerWrite);
    verdicts.push(Verdict {
        target: format!("idempotent write through the gateway >= {min_rate:.0} ops/s"),
        measured: write.map_or("n/a".into(), |m| format!("{:.0} ops/s", m.throughput())),
        met: write.map(|m| m.throughput() >= min_rate),
    });
    verdicts.push(Verdict {
        target: format!("idempotent write through the gateway p99 <= {max_p99:.0} ms"),
        measured: write.map_or("n/a".into(), |m| format!("{} ms", millis(m.quantile(0.99)))),
        met: write.map(|m| ms(m.quantile(0.99)) <= max_p99),
    });
    verdicts.push(Verdict {
        target: format!("end to end >= {min_share:.1}x the raw DB rate"),
        measured: show(ratios.end_to_end_vs_raw),
        met: ratios.end_to_end_vs_raw.map(|value| value >= min_share),
    });
    verdicts.push(Verdict {
        target: "gateway p50 <= 1.3x the direct call".into(),
        measured: show(ratios.gateway_vs_direct_p50),
        met: ratios.gateway_vs_direct_p50.map(|value| value <= 1.3),
    });
    for (scenario, what) in
        [(Scenario::Backpack1k, "backpack, 1,000 items"), (Scenario::Backpack10k, "backpack, 10,000 items, first page")]
    {
        let measurement = find(results, scenario);
        verdicts.push(Verdict {
            target: format!("{what}: p99 <= 5 ms"),
            measured: measurement.map_or("n/a".into(), |m| format!("{} ms", millis(m.quantile(0.99)))),
            met: measurement.map(|m| ms(m.quantile(0.99)) <= 5.0),
        });
    }
    let market = find(results, Scenario::Market);
    verdicts.push(Verdict {
        target: "market purchase (asset listing) p99 <= 20 ms".into(),
        measured: market.map_or("n/a".into(), |m| format!("{} ms", millis(m.quantile(0.99)))),
        met: market.map(|m| ms(m.quantile(0.99)) <= 20.0),
    });
    verdicts.push(Verdict {
        target: "replays cost less than first executions (p50)".into(),
        measured: show(ratios.replay_vs_first_p50),
        met: ratios.replay_vs_first_p50.map(|value| value < 1.0),
    });
    verdicts
}

/// The targets as a Markdown table.
pub fn targets_table(verdicts: &[Verdict]) -> String {
    let mut out = String::from("| target (issue 7) | measured | verdict |\n| --- | ---: | --- |\n");
    for verdict in verdicts {
        let met = match verdict.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        let _ = writeln!(out, "| {} | {} | {met} |", verdict.target, verdict.measured);
    }
    out
}

/// The delivery lag of every result with stream consumers, as a Markdown table (empty
/// when none has).
pub fn lag_table(results: &[ScenarioResult]) -> String {
    let mut rows = String::new();
    for result in results {
        let Some(streams) = result.measurement().and_then(|m| m.streams.as_ref()) else { continue };
        for (lag, check) in streams.lags.iter().zip(&streams.checks) {
            let _ = writeln!(
                rows,
                "| {} | {} | {} | {} | {} | {} | {} / {} |",
                result.scenario.name(),
                lag.kind,
                lag.count(),
                millis(lag.quantile(0.50)),
                millis(lag.quantile(0.99)),
                millis(lag.max()),
                check.delivered,
                check.written
            );
        }
    }
    if rows.is_empty() {
        return rows;
    }
    let header = "| scenario | consumer | entries | lag p50 ms | lag p99 ms | lag max ms | delivered / written |\n\
                  | --- | --- | ---: | ---: | ---: | ---: | ---: |\n";
    format!("{header}{rows}")
}

/// The whole summary of `all`: table, stream lags, ratios, targets.
pub fn summary(results: &[ScenarioResult], backend: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Summary ({backend})\n");
    out.push_str(&table(results));
    out.push('\n');
    let lags = lag_table(results);
    if !lags.is_empty() {
        out.push_str(&lags);
        out.push('\n');
    }
    out.push_str(&ratios_table(&Ratios::of(results)));
    out.push('\n');
    out.push_str(&targets_table(&targets(results, backend)));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::driver::LoadOptions;
    use crate::lag::DeliveryCheck;

    fn watch_lag(check: DeliveryCheck) -> anyhow::Result<ScenarioResult> {
        let mut latencies = hdrhistogram::Histogram::new(3)?;
        latencies.record(1_000)?;
        let streams = StreamReport {
            lags: Vec::new(),
            checks: vec![check],
            drain: Duration::from_millis(5),
            ended: BTreeMap::from([("WatchEntries #0".to_owned(), "UNAVAILABLE (no reason): gone".to_owned())]),
        };
        let measurement = Measurement {
            latencies,
            failures: BTreeMap::new(),
            elapsed: Duration::from_secs(1),
            exhausted_workers: 0,
            load: LoadOptions::default(),
            streams: Some(Box::new(streams)),
        };
        Ok(ScenarioResult {
            scenario: Scenario::WatchLag,
            operation: String::new(),
            backend: "sqlite".into(),
            run: Run::Measured(measurement),
            notes: Vec::new(),
        })
    }

    #[test]
    fn a_delivery_mismatch_or_an_ended_stream_fails_the_scenario_loudly() -> anyhow::Result<()> {
        let check = DeliveryCheck {
            kind: "WatchEntries".into(),
            written: 3,
            delivered: 2,
            missing: 1,
            example: Some("e-1 missing".into()),
            ..DeliveryCheck::default()
        };
        let result = watch_lag(check)?;
        let block = scenario_block(&result);
        assert!(block.contains("DELIVERY MISMATCH: WatchEntries: 3 written, 2 delivered, 1 missing"), "{block}");
        assert!(block.contains("e-1 missing") && block.contains("STREAM END  WatchEntries #0"), "{block}");
        assert!(table(std::slice::from_ref(&result)).contains("watch-lag (STREAM DELIVERY FAILED)"));
        assert!(!result.is_clean());
        Ok(())
    }

    #[test]
    fn the_summary_has_a_lag_table_only_with_stream_consumers() -> anyhow::Result<()> {
        let mut result = watch_lag(DeliveryCheck { kind: "WatchEntries".into(), ..DeliveryCheck::default() })?;
        let window = crate::lag::Window { start: std::time::SystemTime::UNIX_EPOCH, end: std::time::SystemTime::now() };
        if let Run::Measured(measurement) = &mut result.run
            && let Some(streams) = &mut measurement.streams
        {
            streams.lags = vec![crate::lag::ConsumerLag::of("WatchEntries", &[], window)?];
        }
        let summary = summary(std::slice::from_ref(&result), "sqlite");
        assert!(summary.contains("| watch-lag | WatchEntries | 0 |"), "{summary}");
        result.run = Run::Skipped("not needed".into());
        assert!(lag_table(std::slice::from_ref(&result)).is_empty());
        Ok(())
    }
}
