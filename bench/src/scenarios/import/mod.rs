//! `import`: `economy import` of a generated legacy economy into a fresh stack (issue 27,
//! "Speed"; BENCHMARKS.md, "Import"). [`files`] writes `--import-balances` opening
//! balances and `--import-items` item instances (with some redemption orders) in the
//! format of docs/import.md (untimed); the real `economy` binary then imports them
//! through the gateway, as an operator would, and its report must be clean with every row
//! created. The measurement counts every imported row over the time of the three bulk
//! files (each row's "latency" is its file's time per row); the notes give each file's
//! rows, time and rate, and the command's whole wall time (reading and checking the
//! files included).

pub mod files;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;

use super::BenchOptions;
use crate::driver::Measurement;
use crate::stack::Stack;

/// The import's sizes and the command that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// Rows of `balances.jsonl`.
    pub balances: u64,
    /// Rows of `items.jsonl`.
    pub items: u64,
    /// The `economy` binary [default: beside `economy-bench`].
    pub economy_bin: Option<PathBuf>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self { balances: 1_000_000, items: 1_000_000, economy_bin: None }
    }
}

/// One bulk file's line of the command's output: `<file> <rows> rows in <s> s (…)`.
#[derive(Debug, Clone, PartialEq)]
struct Timed {
    file: String,
    rows: u64,
    took: Duration,
}

/// Generates the files, runs the import, checks its report and measures it.
pub async fn run(
    stack: &Stack,
    options: &BenchOptions,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<Measurement>> {
    let Some(economy) = economy_binary(&options.import) else {
        notes.push(
            "needs the `economy` binary beside economy-bench (cargo build --release -p economy) or --economy-bin"
                .into(),
        );
        return Ok(None);
    };
    let dir = std::env::temp_dir().join(format!("economy-bench-import-{}", std::process::id()));
    let written = files::write(&dir, options.import.balances, options.import.items)?;
    let started = Instant::now();
    let output = import(&economy, stack, &dir).await;
    let wall = started.elapsed();
    let removed = std::fs::remove_dir_all(&dir);
    let stdout = output?;
    removed.with_context(|| format!("cannot remove {}", dir.display()))?;
    let timed = check(&stdout, &written)?;
    notes.push(format!(
        "`economy import` wall time {:.1} s (reading and checking the files included)",
        wall.as_secs_f64()
    ));
    for line in &timed {
        let seconds = line.took.as_secs_f64();
        let rate = if seconds > 0.0 { format!("{:.0} rows/s", line.rows as f64 / seconds) } else { "instant".into() };
        notes.push(format!("{}: {} rows in {seconds:.1} s ({rate})", line.file, line.rows));
    }
    measurement(&timed, options).map(Some)
}

fn economy_binary(options: &ImportOptions) -> Option<PathBuf> {
    let beside = || std::env::current_exe().ok()?.parent().map(|dir| dir.join("economy"));
    options.economy_bin.clone().or_else(beside).filter(|path| path.is_file())
}

/// Runs `economy import DIR` against the stack's gateway as an admin; its stdout, or an
/// error with its output when it did not exit 0.
async fn import(economy: &Path, stack: &Stack, dir: &Path) -> anyhow::Result<String> {
    let bearer = stack.bearer(1, 100)?;
    let token = bearer.to_str()?.trim_start_matches("Bearer ").to_owned();
    let output = tokio::process::Command::new(economy)
        .args(["--endpoint", &stack.gateway_url, "import"])
        .arg(dir)
        .env("ECONOMY_TOKEN", token)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", economy.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "economy import exited with {}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

/// The report must be clean with every row created now; the timed lines.
fn check(stdout: &str, written: &files::Written) -> anyhow::Result<Vec<Timed>> {
    anyhow::ensure!(stdout.lines().any(|line| line == "import: clean"), "the report is not clean:\n{stdout}");
    let timed: Vec<Timed> = stdout.lines().filter_map(timed_line).collect();
    for (file, rows) in
        [("balances.jsonl", written.balances), ("items.jsonl", written.items), ("orders.jsonl", written.orders)]
    {
        let created = format!("{file:<20} created={rows:<8} unchanged=0");
        anyhow::ensure!(
            stdout.lines().any(|line| line.trim_end() == created.trim_end()),
            "{file}: not every row created:\n{stdout}"
        );
        anyhow::ensure!(
            timed.iter().any(|line| line.file == file && line.rows == rows),
            "{file}: no timing:\n{stdout}"
        );
    }
    Ok(timed)
}

fn timed_line(line: &str) -> Option<Timed> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [file, rows, "rows", "in", seconds, "s", ..] = fields.as_slice() else { return None };
    let took = Duration::try_from_secs_f64(seconds.parse().ok()?).ok()?;
    Some(Timed { file: (*file).to_owned(), rows: rows.parse().ok()?, took })
}

/// Every row one successful operation; its "latency" its file's time per row.
fn measurement(timed: &[Timed], options: &BenchOptions) -> anyhow::Result<Measurement> {
    let mut latencies = Histogram::<u64>::new(3)?;
    for line in timed.iter().filter(|line| line.rows > 0) {
        let per_row = u64::try_from(line.took.as_micros() / u128::from(line.rows)).unwrap_or(u64::MAX).max(1);
        latencies.record_n(per_row, line.rows)?;
    }
    Ok(Measurement {
        latencies,
        failures: Default::default(),
        elapsed: timed.iter().map(|line| line.took).sum(),
        exhausted_workers: 0,
        load: options.load.clone(),
        streams: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timed_lines_are_read() {
        let line = timed_line("balances.jsonl       1000 rows in 2.5 s (400 rows/s)");
        assert_eq!(line, Some(Timed { file: "balances.jsonl".into(), rows: 1000, took: Duration::from_millis(2500) }));
        assert_eq!(timed_line("balances.jsonl       created=1000     unchanged=0"), None);
    }
}
