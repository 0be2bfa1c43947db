//! `economy import DIR [--dry-run]` (docs/import.md): brings an existing economy in from
//! a directory of versioned JSON Lines files — asset catalog, opening balances, item
//! templates, item instances, redemption orders and optional legacy totals. Every row is
//! checked first (bad rows are reported with file, line and reason; the others still
//! import), then written through the gateway, each row idempotent on its own: running
//! the import again changes nothing, and re-running an interrupted import completes it.
//! The report compares the files with what the services confirmed; exit status 3 on any
//! difference or bad row.

mod check;
mod format;
mod report;
mod send;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use economy_proto::items::v1::item_service_client::ItemServiceClient;
use economy_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use economy_proto::redemption::v1::redemption_service_client::RedemptionServiceClient;

use crate::client::{self, GlobalArgs};
use report::Totals;

/// Exit status of an import whose report is not clean.
const NOT_CLEAN: u8 = 3;
/// Lifetime of the token the importer mints for itself: a long import outlives the
/// other commands' short tokens.
const TOKEN_TTL_SECS: u64 = 24 * 3600;

/// `economy import`.
#[derive(Debug, Args)]
pub struct Import {
    /// Directory holding `manifest.json` and the `*.jsonl` files (docs/import.md).
    pub dir: PathBuf,
    /// Check every row and report what would be imported, writing nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs the import (or the dry run) and prints the report.
pub async fn run(args: Import, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let plan = check::read(&args.dir)?;
    println!("importing {} (format version {}{})", args.dir.display(), format::FORMAT_VERSION, source(&plan.source));
    let legacy = (!plan.totals.is_empty()).then(|| Totals::from_rows(&plan.totals));
    let (lines, clean) = if args.dry_run {
        println!("dry run: nothing is written");
        print_plan(&plan);
        report::render(&plan.file, &would_import(&plan), legacy.as_ref(), &plan.bad)
    } else {
        let outcome = send::run(&connect(global).await?, &plan).await?;
        for (file, (created, unchanged)) in sorted(&outcome.counts) {
            println!("{file:<20} created={created:<8} unchanged={unchanged}");
        }
        for (file, took) in &outcome.timings {
            let rows = outcome.counts.get(file).map_or(0, |(created, unchanged)| created + unchanged);
            println!("{file:<20} {rows} rows in {:.1} s ({:.0} rows/s)", took.as_secs_f64(), rate(rows, *took));
        }
        let mut bad = plan.bad.clone();
        bad.extend(outcome.bad);
        bad.sort_by(|left, right| (left.file, left.line).cmp(&(right.file, right.line)));
        report::render(&plan.file, &outcome.imported, legacy.as_ref(), &bad)
    };
    lines.iter().for_each(|line| println!("{line}"));
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(NOT_CLEAN) })
}

/// Rows a second over `took`.
fn rate(rows: u64, took: Duration) -> f64 {
    let seconds = took.as_secs_f64();
    if seconds > 0.0 { rows as f64 / seconds } else { 0.0 }
}

fn source(source: &str) -> String {
    if source.is_empty() { String::new() } else { format!(", source: {source}") }
}

fn sorted<V: Copy>(counts: &std::collections::HashMap<&'static str, V>) -> Vec<(&'static str, V)> {
    let mut counts: Vec<_> = counts.iter().map(|(file, value)| (*file, *value)).collect();
    counts.sort_by_key(|(file, _)| *file);
    counts
}

fn print_plan(plan: &check::Plan) {
    println!("{:<20} {}", format::ASSETS, plan.assets.len());
    println!("{:<20} {}", format::TEMPLATES, plan.templates.len());
    println!("{:<20} {}", format::BALANCES, plan.balances.len());
    println!("{:<20} {}", format::ITEMS, plan.items.len());
    println!("{:<20} {}", format::ORDERS, plan.orders.len());
    for (status, count) in check::status_counts(plan) {
        println!("  items {status:<22} {count}");
    }
}

/// What a successful import would confirm: every row that passed the checks.
fn would_import(plan: &check::Plan) -> Totals {
    let mut totals = Totals::default();
    plan.balances.iter().for_each(|line| totals.balance(&line.row.asset_code, line.row.amount));
    plan.items.iter().for_each(|line| totals.item(&line.row.row.template_code, &line.row.row.status));
    plan.orders.iter().for_each(|line| totals.order(&line.row.row.status));
    totals
}

/// The three clients through the gateway, with a token that outlives a long import.
async fn connect(global: &GlobalArgs) -> anyhow::Result<send::Clients> {
    let token = match global.token.as_deref().filter(|token| !token.is_empty()) {
        Some(token) => token.to_owned(),
        None => client::mint_token(global, TOKEN_TTL_SECS)?,
    };
    let bearer = format!("Bearer {token}").parse().context("the token is not valid metadata")?;
    let url = global.endpoint();
    let endpoint = client::endpoint(&url, global)?.connect_timeout(Duration::from_secs(5));
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to the gateway at {url}; is `economy up` running?"))?;
    let auth = send::Auth(bearer);
    Ok(send::Clients {
        ledger: LedgerServiceClient::with_interceptor(channel.clone(), auth.clone()),
        items: ItemServiceClient::with_interceptor(channel.clone(), auth.clone()),
        redemption: RedemptionServiceClient::with_interceptor(channel, auth),
    })
}
