//! Incremental reconciliation (docs/ledger.md, "Reconciliation"): a run checks the journal
//! entries committed after the checkpoint, in stream order below the horizon
//! (docs/streams.md), in rounds of [`ROUND`] entries. Per round:
//! - each entry's legs sum to zero per asset;
//! - each balance the round touches continues its verified state (`reconciled_balances`):
//!   versions without a gap, resulting balances equal to the previous ones plus the
//!   entry's amounts (`RunningBalance`), and — when no later entry moved it since — its
//!   row equals the last entry's resulting balance and its frozen part its open holds;
//! - each asset's running total of verified balances (`reconciled_assets`) stays zero.
//!
//! The round then moves the states, totals and checkpoint forward in one write
//! transaction whose compare-and-set on the checkpoint makes concurrent runs (the job
//! and an admin's call, or two replicas) apply each round once. The cost is that of the
//! entries checked, never of the ledger's history. Findings are reported by the run that
//! meets them; the states move on to what the postings record, so a later run does not
//! report them again (the whole check still does).

use std::collections::{BTreeMap, BTreeSet};

use economy_kit::db::params::{Params, tuple};
use economy_kit::watch::Cursor;

use super::{EntryWatch, LedgerStore};
use crate::domain::LedgerError;
use crate::domain::entry::{Bucket, Entry};
use crate::domain::ids::{AccountId, AssetCode};
use crate::domain::reconcile::{EntryPostings, Finding, FindingKind, RunningBalance};

/// Most entries one round reads (one read, one write transaction).
const ROUND: i64 = 2_000;
/// The checkpoint's name.
const INCREMENTAL: &str = "incremental";

/// The outcome of one incremental run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Increment {
    /// Violations met in the entries checked.
    pub findings: Vec<Finding>,
    /// Entries checked.
    pub entries_checked: i64,
    /// Balances whose verified state moved.
    pub balances_checked: i64,
}

/// A balance's key: account key and asset code.
type Key = (String, String);
/// `(available, frozen, seq)`.
type State = (i64, i64, i64);

/// The new postings of one balance, by entry.
struct Touched {
    account: AccountId,
    asset: AssetCode,
    entries: Vec<EntryPostings>,
}

/// What a round reads besides the entries: the balances' verified states, rows and open
/// holds, and the assets' verified totals.
struct Known {
    states: BTreeMap<Key, State>,
    rows: BTreeMap<Key, State>,
    holds: BTreeMap<Key, i128>,
    totals: BTreeMap<String, i128>,
}

/// What a round writes.
#[derive(Default)]
struct Verified {
    states: Vec<(Key, State)>,
    /// Each asset's verified total, by code.
    totals: BTreeMap<String, (AssetCode, i128)>,
}

impl LedgerStore {
    /// Checks every entry committed since the checkpoint (module docs) and moves the
    /// checkpoint past them. Errors: storage only; a round another run applied first is
    /// skipped and the next one read from the new checkpoint.
    pub async fn reconcile_increment(&self) -> Result<Increment, LedgerError> {
        let mut total = Increment::default();
        loop {
            let (round, full) = self.reconcile_round().await?;
            total.findings.extend(round.findings);
            total.entries_checked += round.entries_checked;
            total.balances_checked += round.balances_checked;
            if !full {
                return Ok(total);
            }
        }
    }

    /// One round; `true` with it when it was full (more entries may wait).
    async fn reconcile_round(&self) -> Result<(Increment, bool), LedgerError> {
        let (checkpoint, checked) = self.checkpoint().await?;
        let horizon = self.horizon().await?;
        let entries = self.entries_after(&EntryWatch::default(), &checkpoint, horizon, None, ROUND).await?;
        let full = entries.len() as i64 == ROUND;
        let next = match entries.last() {
            Some((cursor, _)) if full => cursor.clone(),
            Some((cursor, _)) => cursor.clone().max(Cursor::before(horizon)),
            None => checkpoint.clone().max(Cursor::before(horizon)),
        };
        let mut findings: Vec<Finding> = entries.iter().flat_map(|(_, entry)| unbalanced(entry)).collect();
        let touched = touched(entries.iter().map(|(_, entry)| entry));
        let known = self.known(&touched).await?;
        let verified = verify(&touched, &known, &mut findings);
        let entries_checked = entries.len() as i64;
        let moved = self.save_round(&checkpoint, &next, checked + entries_checked, &verified).await?;
        if !moved {
            return Ok((Increment::default(), true));
        }
        let balances_checked = verified.states.len() as i64;
        Ok((Increment { findings, entries_checked, balances_checked }, full))
    }

    /// The checkpoint's cursor and the entries checked so far.
    async fn checkpoint(&self) -> Result<(Cursor, i64), LedgerError> {
        let row: Option<(i64, String, i64)> =
            sqlx::query_as("SELECT position, entry_id, entries_checked FROM reconcile_checkpoints WHERE name = $1")
                .bind(INCREMENTAL)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map_or((Cursor::start(), 0), |(position, id, checked)| (Cursor::after(position, &id), checked)))
    }

    /// The verified states, rows, open holds and asset totals of what `touched` moves.
    async fn known(&self, touched: &BTreeMap<Key, Touched>) -> Result<Known, LedgerError> {
        let keys: Vec<&Key> = touched.keys().collect();
        let states = self.states_of("reconciled_balances", &keys).await?;
        let rows = self.states_of("balances", &keys).await?;
        let holds = self.open_holds_of(&keys).await?;
        let assets: BTreeSet<&str> = keys.iter().map(|(_, asset)| asset.as_str()).collect();
        let totals = self.totals_of(&assets).await?;
        Ok(Known { states, rows, holds, totals })
    }

    /// `(available, frozen, seq)` of `keys` in `table` (`balances` or
    /// `reconciled_balances`); keys without a row are left out.
    async fn states_of(&self, table: &str, keys: &[&Key]) -> Result<BTreeMap<Key, State>, LedgerError> {
        let mut states = BTreeMap::new();
        for chunk in keys.chunks(500) {
            let (values, params) = key_values(chunk)?;
            let sql = format!(
                "WITH k (account, asset) AS (VALUES {values}) \
                 SELECT t.account, t.asset_code, t.available, t.frozen, t.seq FROM {table} AS t \
                 JOIN k ON t.account = k.account AND t.asset_code = k.asset"
            );
            let rows: Vec<(String, String, i64, i64, i64)> =
                sqlx::query_as_with(&sql, params.into_arguments()).fetch_all(self.db.pool()).await?;
            states.extend(
                rows.into_iter()
                    .map(|(account, asset, available, frozen, seq)| ((account, asset), (available, frozen, seq))),
            );
        }
        Ok(states)
    }

    /// The sum of the open holds of each of `keys` that has any.
    async fn open_holds_of(&self, keys: &[&Key]) -> Result<BTreeMap<Key, i128>, LedgerError> {
        let mut holds = BTreeMap::new();
        for chunk in keys.chunks(500) {
            let (values, params) = key_values(chunk)?;
            let sql = format!(
                "WITH k (account, asset) AS (VALUES {values}) \
                 SELECT h.account, h.asset_code, h.amount FROM holds AS h \
                 JOIN k ON h.account = k.account AND h.asset_code = k.asset WHERE h.status = 'open'"
            );
            let rows: Vec<(String, String, i64)> =
                sqlx::query_as_with(&sql, params.into_arguments()).fetch_all(self.db.pool()).await?;
            for (account, asset, amount) in rows {
                *holds.entry((account, asset)).or_default() += i128::from(amount);
            }
        }
        Ok(holds)
    }

    /// The verified totals of `assets` (0 for an asset not yet verified).
    async fn totals_of(&self, assets: &BTreeSet<&str>) -> Result<BTreeMap<String, i128>, LedgerError> {
        let mut totals = BTreeMap::new();
        for asset in assets {
            let total: Option<(String,)> = sqlx::query_as("SELECT total FROM reconciled_assets WHERE asset_code = $1")
                .bind(*asset)
                .fetch_optional(self.db.pool())
                .await?;
            let total = match total {
                Some((text,)) => {
                    text.parse().map_err(|_| LedgerError::Storage(format!("corrupt total {text}").into()))?
                }
                None => 0,
            };
            totals.insert((*asset).to_owned(), total);
        }
        Ok(totals)
    }

    /// Writes the round: the checkpoint moves from `from` to `to` only if no other run
    /// moved it meanwhile (`false` then, and nothing is written).
    async fn save_round(
        &self,
        from: &Cursor,
        to: &Cursor,
        checked: i64,
        verified: &Verified,
    ) -> Result<bool, LedgerError> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let moved = sqlx::query(
            "UPDATE reconcile_checkpoints SET position = $1, entry_id = $2, entries_checked = $3, checked_at = $4 \
             WHERE name = $5 AND position = $6 AND entry_id = $7",
        )
        .bind(to.position)
        .bind(to.id.as_str())
        .bind(checked)
        .bind(self.clock.now_millis())
        .bind(INCREMENTAL)
        .bind(from.position)
        .bind(from.id.as_str())
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            // Another run applied this round: roll back, keep the connection.
            drop(tx);
            writer.finish(Ok(()))?;
            return Ok(false);
        }
        for ((account, asset), (available, frozen, seq)) in &verified.states {
            sqlx::query(
                "INSERT INTO reconciled_balances (account, asset_code, available, frozen, seq) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (account, asset_code) DO UPDATE SET available = excluded.available, \
                 frozen = excluded.frozen, seq = excluded.seq",
            )
            .bind(account.as_str())
            .bind(asset.as_str())
            .bind(*available)
            .bind(*frozen)
            .bind(*seq)
            .execute(&mut *tx)
            .await?;
        }
        for (code, (_, total)) in &verified.totals {
            sqlx::query(
                "INSERT INTO reconciled_assets (asset_code, total) VALUES ($1, $2) \
                 ON CONFLICT (asset_code) DO UPDATE SET total = excluded.total",
            )
            .bind(code.as_str())
            .bind(total.to_string())
            .execute(&mut *tx)
            .await?;
        }
        let committed = tx.commit().await;
        writer.finish(committed)?;
        Ok(true)
    }
}

/// `(VALUES (account, asset), …)` rows of `keys` with their parameters.
fn key_values<'q>(keys: &[&'q Key]) -> Result<(String, Params<'q>), sqlx::Error> {
    let mut params = Params::numbered();
    let mut rows = Vec::with_capacity(keys.len());
    for (account, asset) in keys {
        rows.push(tuple(&[params.push(account.as_str())?, params.push(asset.as_str())?]));
    }
    Ok((rows.join(", "), params))
}

/// `AssetNotZeroSum` (with the entry) for each asset whose legs in `entry` do not sum to
/// zero.
fn unbalanced(entry: &Entry) -> Vec<Finding> {
    let mut sums: BTreeMap<&AssetCode, i128> = BTreeMap::new();
    for leg in &entry.legs {
        *sums.entry(&leg.asset).or_default() += i128::from(leg.amount);
    }
    sums.into_iter()
        .filter(|(_, sum)| *sum != 0)
        .map(|(asset, sum)| Finding {
            kind: FindingKind::AssetNotZeroSum,
            account: None,
            asset: asset.clone(),
            expected: 0,
            actual: sum,
            entry_id: Some(entry.id.clone()),
        })
        .collect()
}

/// The postings of `entries` per balance, each entry's legs on a balance summed per bucket
/// with the resulting balance it recorded, in balance_seq order.
fn touched<'e>(entries: impl Iterator<Item = &'e Entry>) -> BTreeMap<Key, Touched> {
    let mut touched: BTreeMap<Key, Touched> = BTreeMap::new();
    for entry in entries {
        for after in &entry.balances {
            let key = (after.account.key(), after.asset.as_str().to_owned());
            let mut postings = EntryPostings {
                entry_id: entry.id.clone(),
                balance_seq: after.seq,
                available: 0,
                frozen: 0,
                afters: vec![(after.available, after.frozen)],
            };
            for leg in entry.legs.iter().filter(|leg| leg.account == after.account && leg.asset == after.asset) {
                match leg.bucket {
                    Bucket::Available => postings.available += i128::from(leg.amount),
                    Bucket::Frozen => postings.frozen += i128::from(leg.amount),
                }
            }
            let balance = touched.entry(key).or_insert_with(|| Touched {
                account: after.account.clone(),
                asset: after.asset.clone(),
                entries: Vec::new(),
            });
            balance.entries.push(postings);
        }
    }
    for balance in touched.values_mut() {
        balance.entries.sort_by_key(|entry| entry.balance_seq);
    }
    touched
}

/// Checks each touched balance from its verified state (module docs), adding findings;
/// returns the states and asset totals to record.
fn verify(touched: &BTreeMap<Key, Touched>, known: &Known, findings: &mut Vec<Finding>) -> Verified {
    let mut verified = Verified::default();
    for (key, balance) in touched {
        let before = known.states.get(key).copied().unwrap_or_default();
        let mut running = RunningBalance::resume(balance.account.clone(), balance.asset.clone(), before);
        balance.entries.iter().for_each(|entry| running.check(entry));
        let (available, frozen, seq) = running.latest();
        findings.extend(running.into_findings());
        findings.extend(row_findings(balance, (available, frozen, seq), known.rows.get(key), known.holds.get(key)));
        // The postings record i64 values, so the state reached fits.
        let state = (i64::try_from(available).unwrap_or_default(), i64::try_from(frozen).unwrap_or_default(), seq);
        let moved = (available + frozen) - (i128::from(before.0) + i128::from(before.1));
        let verified_total = known.totals.get(&key.1).copied().unwrap_or(0);
        let total = verified.totals.entry(key.1.clone()).or_insert_with(|| (balance.asset.clone(), verified_total));
        total.1 += moved;
        verified.states.push((key.clone(), state));
    }
    for (asset, total) in verified.totals.values() {
        if *total != 0 {
            findings.push(Finding {
                kind: FindingKind::AssetNotZeroSum,
                account: None,
                asset: asset.clone(),
                expected: 0,
                actual: *total,
                entry_id: None,
            });
        }
    }
    verified
}

/// The row's findings for a balance whose postings reached `latest`: none when a later
/// entry moved the row on (a later run compares it); otherwise the row must equal what
/// the last posting recorded, and its frozen part its open holds.
fn row_findings(
    balance: &Touched,
    latest: (i128, i128, i64),
    row: Option<&State>,
    holds: Option<&i128>,
) -> Vec<Finding> {
    let (row_available, row_frozen, row_seq) = row.copied().unwrap_or_default();
    let (available, frozen, seq) = latest;
    if row_seq > seq {
        return Vec::new();
    }
    let finding = |kind, expected: i128, actual: i128| Finding {
        kind,
        account: Some(balance.account.clone()),
        asset: balance.asset.clone(),
        expected,
        actual,
        entry_id: None,
    };
    let checks = [
        (FindingKind::BalanceSeqMismatch, i128::from(seq), i128::from(row_seq)),
        (FindingKind::AvailableAfterMismatch, available, i128::from(row_available)),
        (FindingKind::FrozenAfterMismatch, frozen, i128::from(row_frozen)),
        (FindingKind::FrozenHoldsMismatch, holds.copied().unwrap_or(0), i128::from(row_frozen)),
    ];
    checks
        .into_iter()
        .filter(|(_, expected, actual)| expected != actual)
        .map(|(kind, e, a)| finding(kind, e, a))
        .collect()
}
