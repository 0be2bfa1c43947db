//! The bulk form of a group-committed batch of entries (SQLite, BENCHMARKS.md
//! Optimization 11). The batch runs inside `BEGIN IMMEDIATE` on the one writer
//! connection, so nothing else writes until it commits: the balances it touches are read
//! once, every entry is checked against them in batch order in memory (the same bounds
//! as the conditional UPDATE of the write-by-write path), and the accepted entries,
//! their postings and the balances they moved are written with one statement each.
//! Each SQLite call is a hand-off to the connection's worker thread, so the two reads
//! are one statement and the three writes one call: with `BEGIN` and `COMMIT`, four
//! calls per batch instead of four per entry (Optimizations 11 and 14). Each statement
//! takes its rows as one JSON array (`json_each`), so it is prepared once whatever the
//! batch's size. A refused entry is never written, so nothing needs undoing.
//!
//! A batch of plain entries only (the usual one) opens and commits its own transaction:
//! `BEGIN IMMEDIATE` goes with the read and `COMMIT` with the writes, two calls per batch
//! (Optimization 18). Entries that resolve or open holds, or touch an asset or account
//! not yet known to exist, take the write-by-write path, each in a savepoint, in their
//! place in the batch.

use std::collections::{HashMap, HashSet};

use economy_kit::db::Writer;
use economy_kit::group_commit::{BulkResults, write_in_savepoint};
use economy_kit::time::now_millis;
use sqlx::AnyConnection;

use super::write::{EntryWrite, Refusal, posting_rows};
use crate::domain::LedgerError;
use crate::domain::entry::{BalanceDelta, Buckets, Entry, balance_deltas, check_balanced};
use crate::domain::ids::EntityId;

/// A balance row: `(account key, asset code)`.
type BalanceKey = (String, String);

/// Applies `batch` when every write is plain, in a transaction of its own on `writer`
/// (SQLite): results in batch order; `Ok(None)` when a write is not plain (or on
/// PostgreSQL); `Err` when a statement failed (the transaction is rolled back, or, if
/// even that failed, left for the writer's next user to roll back).
pub(super) async fn commit_entries(batch: &[EntryWrite], writer: &mut Writer) -> BulkResults<EntryWrite> {
    if !batch.iter().all(EntryWrite::is_plain) {
        return Ok(None);
    }
    let Some(mut transaction) = writer.raw_transaction() else { return Ok(None) };
    match write_plain(batch, &mut transaction, now_millis(), Framing::Own).await {
        Ok(results) => {
            transaction.end();
            Ok(Some(results))
        }
        Err(error) => {
            transaction.roll_back().await;
            Err(error)
        }
    }
}

/// Whether a bulk write runs inside the caller's transaction or begins and commits its own.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Inside,
    Own,
}

impl Framing {
    /// What precedes the read.
    fn begin(self) -> &'static str {
        match self {
            Self::Inside => "",
            Self::Own => "BEGIN IMMEDIATE; ",
        }
    }

    /// What follows the writes.
    fn commit(self) -> &'static str {
        match self {
            Self::Inside => "",
            Self::Own => "; COMMIT",
        }
    }
}

/// Applies `batch` (see the module docs) in its order: each run of plain writes in bulk,
/// every other write alone. Results in batch order; `Ok(None)` when no write is plain
/// (the group commit's write-by-write path then applies the batch without savepoints);
/// `Err` when a statement failed (the caller's transaction is then rolled back whole).
pub(super) async fn write_entries(
    batch: &[EntryWrite],
    conn: &mut AnyConnection,
) -> Result<Option<Vec<Result<Entry, Refusal>>>, sqlx::Error> {
    let now = now_millis();
    // Decided once: `known` grows while the batch runs (earlier callers learning).
    let plain: Vec<bool> = batch.iter().map(EntryWrite::is_plain).collect();
    if !plain.contains(&true) {
        return Ok(None);
    }
    let mut results = Vec::with_capacity(batch.len());
    let mut start = 0;
    while start < batch.len() {
        let end = (start..batch.len()).find(|index| !plain[*index]).unwrap_or(batch.len());
        if end > start {
            results.extend(write_plain(&batch[start..end], conn, now, Framing::Inside).await?);
            start = end;
        } else {
            results.push(write_in_savepoint(conn, &batch[start]).await?);
            start += 1;
        }
    }
    Ok(Some(results))
}

/// Applies plain `writes` with one read and one write call: decided in order against
/// the balances as the earlier ones leave them, only the accepted ones written.
async fn write_plain(
    writes: &[EntryWrite],
    conn: &mut AnyConnection,
    now: i64,
    framing: Framing,
) -> Result<Vec<Result<Entry, Refusal>>, sqlx::Error> {
    let deltas: Vec<_> = writes.iter().map(EntryWrite::deltas).collect();
    let (taken, mut book) = read_state(conn, writes, deltas.iter().flatten().flatten(), framing).await?;
    let mut claimed = HashSet::new();
    let mut results = Vec::with_capacity(writes.len());
    for (write, deltas) in writes.iter().zip(deltas) {
        let key = write.plan.meta.key.as_str();
        results.push(if taken.contains(key) || !claimed.insert(key) {
            Err(Refusal::KeyTaken)
        } else {
            deltas.and_then(|deltas| book.apply(&deltas)).map(|()| write.entry(now)).map_err(Refusal::Refused)
        });
    }
    let accepted: Vec<(&Entry, &str)> = results
        .iter()
        .zip(writes)
        .filter_map(|(result, write)| result.as_ref().ok().map(|entry| (entry, write.plan.meta.fingerprint.as_str())))
        .collect();
    write_accepted(conn, &accepted, &book, now, framing).await?;
    Ok(results)
}

/// Tags of the rows `read_state` returns.
const TAKEN_KEY: i64 = 0;
const BALANCE: i64 = 1;

/// In one statement: the idempotency keys of `writes` that an entry already holds, and
/// the current rows of every balance `deltas` move (missing rows hold zero).
async fn read_state<'d>(
    conn: &mut AnyConnection,
    writes: &[EntryWrite],
    deltas: impl Iterator<Item = &'d BalanceDelta>,
    framing: Framing,
) -> Result<(HashSet<String>, BalanceBook), sqlx::Error> {
    let keys: Vec<&str> = writes.iter().map(|write| write.plan.meta.key.as_str()).collect();
    let balances: HashSet<BalanceKey> = deltas.map(key_of).collect();
    let found: Vec<(i64, String, String, i64, i64)> = sqlx::query_as(&format!(
        "{}SELECT {TAKEN_KEY}, idempotency_key, '', 0, 0 FROM journal_entries \
         WHERE idempotency_key IN (SELECT value FROM json_each($1)) \
         UNION ALL SELECT {BALANCE}, b.account, b.asset_code, b.available, b.frozen FROM json_each($2) AS k \
         JOIN balances AS b ON b.account = k.value ->> 0 AND b.asset_code = k.value ->> 1",
        framing.begin()
    ))
    .bind(json(&keys)?)
    .bind(json(&balances)?)
    .fetch_all(conn)
    .await?;
    let mut taken = HashSet::new();
    let mut book = BalanceBook { rows: HashMap::new(), moved: HashSet::new() };
    for (tag, first, second, available, frozen) in found {
        match tag {
            TAKEN_KEY => _ = taken.insert(first),
            _ => _ = book.rows.insert((first, second), Buckets { available, frozen }),
        }
    }
    Ok((taken, book))
}

/// The balances a batch touches, as the batch's accepted entries leave them.
struct BalanceBook {
    rows: HashMap<BalanceKey, Buckets>,
    moved: HashSet<BalanceKey>,
}

impl BalanceBook {
    /// Moves the balances by `deltas`, all or none: the first delta a balance cannot take
    /// refuses the entry (`INSUFFICIENT_BALANCE`, `BALANCE_OVERFLOW`, …).
    fn apply(&mut self, deltas: &[BalanceDelta]) -> Result<(), LedgerError> {
        let moved: Vec<(BalanceKey, Buckets)> = deltas
            .iter()
            .map(|delta| {
                let key = key_of(delta);
                let current = self.rows.get(&key).copied().unwrap_or_default();
                delta.apply_to(current).map(|after| (key, after))
            })
            .collect::<Result<_, _>>()?;
        for (key, after) in moved {
            self.rows.insert(key.clone(), after);
            self.moved.insert(key);
        }
        Ok(())
    }

    /// Every moved balance as `(account, asset, available, frozen)`.
    fn moved_rows(&self) -> Vec<(&str, &str, i64, i64)> {
        self.moved
            .iter()
            .filter_map(|key| self.rows.get(key).map(|row| (key.0.as_str(), key.1.as_str(), row.available, row.frozen)))
            .collect()
    }
}

/// In one call (three statements): the accepted entries with their fingerprints, their
/// postings numbered by leg order, and every moved balance (inserting rows that did not
/// exist).
async fn write_accepted(
    conn: &mut AnyConnection,
    entries: &[(&Entry, &str)],
    book: &BalanceBook,
    now: i64,
    framing: Framing,
) -> Result<(), sqlx::Error> {
    let entry_rows: Vec<_> = entries
        .iter()
        .map(|(entry, fingerprint)| {
            (
                &entry.id,
                &entry.idempotency_key,
                fingerprint,
                &entry.business_type,
                &entry.correlation_id,
                &entry.memo,
                &entry.actor,
                entry.created_at,
            )
        })
        .collect();
    let posting_rows: Vec<_> = entries.iter().flat_map(|(entry, _)| posting_rows(&entry.id, &entry.legs)).collect();
    sqlx::query(&format!(
        "INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, actor, \
         created_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
         value ->> 7 FROM json_each($1); \
         INSERT INTO postings (entry_id, seq, account, asset_code, bucket, amount, hold_id) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 \
         FROM json_each($2); \
         INSERT INTO balances (account, asset_code, available, frozen, updated_at) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, $4 FROM json_each($3) WHERE true \
         ON CONFLICT (account, asset_code) DO UPDATE SET available = excluded.available, \
         frozen = excluded.frozen, updated_at = excluded.updated_at{}",
        framing.commit()
    ))
    .bind(json(&entry_rows)?)
    .bind(json(&posting_rows)?)
    .bind(json(&book.moved_rows())?)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

fn key_of(delta: &BalanceDelta) -> BalanceKey {
    (delta.account.key(), delta.asset.as_str().to_owned())
}

/// The rows of a bulk statement as its one JSON parameter (`json_each` unpacks them): one
/// prepared statement whatever the batch's size.
fn json(rows: &impl serde::Serialize) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows).map_err(|error| sqlx::Error::Encode(Box::new(error)))
}

impl EntryWrite {
    /// True when the bulk form can apply this write: no holds to open or resolve, and
    /// every asset and account already known to exist.
    pub(super) fn is_plain(&self) -> bool {
        let plan = &self.plan;
        plan.new_hold.is_none()
            && plan.resolutions.is_empty()
            && plan
                .legs
                .iter()
                .all(|leg| self.known.has_asset(leg.asset.as_str()) && self.known.has_account(&leg.account.key()))
    }

    /// The balance moves of a plain write, or why its legs are refused.
    pub(super) fn deltas(&self) -> Result<Vec<BalanceDelta>, LedgerError> {
        check_balanced(&self.plan.legs)?;
        balance_deltas(&self.plan.legs)
    }

    pub(super) fn entry(&self, now: i64) -> Entry {
        Entry::new(EntityId::generate().to_string(), &self.plan.meta, now, self.plan.legs.clone())
    }
}
