//! A group-committed batch of entries on SQLite, decided in memory and written by a few
//! statements: chosen for every batch of the group commit there. The batch runs inside
//! `BEGIN IMMEDIATE` on the one writer connection, so nothing else writes until it
//! commits: the balances it touches are read once, every entry is checked against them in
//! batch order in memory (the same bounds as the transaction path's conditional UPDATE),
//! and the accepted entries, their postings and the balances they moved are written with
//! one statement each. Each SQLite call is a hand-off to the connection's worker thread,
//! so the reads are one statement and the writes one call: with `BEGIN` and `COMMIT`, four
//! calls per batch instead of four per entry. Each statement takes its rows as one JSON
//! array (`json_each`), so it is prepared once whatever the batch's size. A refused entry
//! is never written, so nothing needs undoing.
//!
//! Entries that resolve holds (settle, release, expire) are decided here too: the read
//! also returns the holds and the balances they free, each resolution is decided in batch
//! order against the holds as the earlier entries left them (the transaction path's
//! compare-and-set on `open`), and one more statement of the write call resolves the
//! accepted entries' holds.
//!
//! A batch of such entries only (the usual one) opens and commits its own transaction:
//! `BEGIN IMMEDIATE` goes with the read and `COMMIT` with the writes, two calls per batch.
//! Entries that open holds, or touch an asset or account not yet known to exist, take the
//! [`super::transaction`] path, each in a savepoint, in their place in the batch.

use std::collections::{HashMap, HashSet};

use economy_kit::db::{Writer, json_rows};
use economy_kit::group_commit::{BulkResults, write_in_savepoint};
use sqlx::AnyConnection;

use super::rows::{POSTING_COLUMNS, posting_rows};
use super::{EntryWrite, Refusal, batch_now};
use crate::domain::LedgerError;
use crate::domain::entry::{BalanceAfter, BalanceDelta, Buckets, Entry, balanced_deltas};
use crate::domain::hold::{Hold, Resolved};
use crate::store::read::{HoldRow, corrupt, hold_from_row};

/// A balance row: `(account key, asset code)`.
type BalanceKey = (String, String);

/// Applies `batch` when the bulk form takes every write, in a transaction of its own on
/// `writer` (SQLite): results in batch order; `Ok(None)` when a write needs the
/// write-by-write path (or on PostgreSQL); `Err` when a statement failed (the transaction
/// is rolled back, or, if even that failed, left for the writer's next user to roll back).
pub(super) async fn commit_entries(batch: &[EntryWrite], writer: &mut Writer) -> BulkResults<EntryWrite> {
    if !batch.iter().all(EntryWrite::has_fast_form) {
        return Ok(None);
    }
    let Some(mut transaction) = writer.raw_transaction() else { return Ok(None) };
    let written = write_bulk(batch, &mut transaction, batch_now(batch), Framing::Own).await;
    transaction.finish(written).await.map(Some)
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

/// Applies `batch` (see the module docs) in its order: each run of writes the bulk form
/// takes in bulk, every other write alone. Results in batch order; `Ok(None)` when the
/// bulk form takes no write (the group commit's write-by-write path then applies the batch
/// without savepoints); `Err` when a statement failed (the caller's transaction is then
/// rolled back whole).
pub(super) async fn write_entries(
    batch: &[EntryWrite],
    conn: &mut AnyConnection,
) -> Result<Option<Vec<Result<Entry, Refusal>>>, sqlx::Error> {
    let now = batch_now(batch);
    // Decided once: `known` grows while the batch runs (earlier callers learning).
    let fast: Vec<bool> = batch.iter().map(EntryWrite::has_fast_form).collect();
    if !fast.contains(&true) {
        return Ok(None);
    }
    let mut results = Vec::with_capacity(batch.len());
    let mut start = 0;
    while start < batch.len() {
        let end = (start..batch.len()).find(|index| !fast[*index]).unwrap_or(batch.len());
        if end > start {
            results.extend(write_bulk(&batch[start..end], conn, now, Framing::Inside).await?);
            start = end;
        } else {
            results.push(write_in_savepoint(conn, &batch[start]).await?);
            start += 1;
        }
    }
    Ok(Some(results))
}

/// Applies `writes` with one read and one write call: decided in order against the
/// balances and holds as the earlier ones leave them, only the accepted ones written. A
/// key is claimed by the first write with it that is accepted.
async fn write_bulk(
    writes: &[EntryWrite],
    conn: &mut AnyConnection,
    now: i64,
    framing: Framing,
) -> Result<Vec<Result<Entry, Refusal>>, sqlx::Error> {
    let (taken, mut books) = read_state(conn, writes, framing).await?;
    let mut claimed = HashSet::new();
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        let key = write.plan.meta.key.as_str();
        results.push(if taken.contains(key) || claimed.contains(key) {
            Err(Refusal::KeyTaken)
        } else {
            let decided = books.decide(write, now).map_err(Refusal::Refused);
            if decided.is_ok() {
                claimed.insert(key);
            }
            decided
        });
    }
    let accepted: Vec<(&Entry, &str)> = results
        .iter()
        .zip(writes)
        .filter_map(|(result, write)| result.as_ref().ok().map(|entry| (entry, write.plan.meta.fingerprint.as_str())))
        .collect();
    write_accepted(conn, &accepted, &books, now, framing).await?;
    Ok(results)
}

/// Tags of the rows `read_state` returns.
const TAKEN_KEY: i64 = 0;
const BALANCE: i64 = 1;
const HOLD: i64 = 2;

/// A row of `read_state`: its tag, then the tag's columns (the rest empty or zero).
#[derive(sqlx::FromRow)]
struct StateRow {
    tag: i64,
    /// The taken key, the balance's account or the hold's id.
    id: String,
    /// The balance's asset or the hold's account.
    account_or_asset: String,
    /// The hold's asset.
    asset: String,
    /// The hold's status.
    status: String,
    /// The balance's available amount or the hold's amount.
    amount: i64,
    /// The balance's frozen amount or the hold's expiry (ms; `NULL` for none).
    frozen_or_expiry: Option<i64>,
    /// The balance's version.
    seq: i64,
}

/// In one statement: the idempotency keys of `writes` that an entry already holds, the
/// holds they resolve, and the current rows of every balance their legs or those holds
/// move with their versions (missing rows hold zero, version 0).
async fn read_state(
    conn: &mut AnyConnection,
    writes: &[EntryWrite],
    framing: Framing,
) -> Result<(HashSet<String>, Books), sqlx::Error> {
    let keys: Vec<&str> = writes.iter().map(|write| write.plan.meta.key.as_str()).collect();
    let holds: Vec<&str> =
        writes.iter().flat_map(|write| write.plan.resolutions.iter().map(|(id, _)| id.as_str())).collect();
    let balances: HashSet<BalanceKey> = writes
        .iter()
        .flat_map(|write| write.plan.legs.iter().map(|leg| (leg.account.key(), leg.asset.to_string())))
        .collect();
    let found: Vec<StateRow> = sqlx::query_as(&format!(
        "{}SELECT {TAKEN_KEY} AS tag, idempotency_key AS id, '' AS account_or_asset, '' AS asset, '' AS status, \
         0 AS amount, 0 AS frozen_or_expiry, 0 AS seq FROM journal_entries \
         WHERE idempotency_key IN (SELECT value FROM json_each($1)) \
         UNION ALL SELECT {BALANCE}, b.account, b.asset_code, '', '', b.available, b.frozen, b.seq FROM \
         (SELECT value ->> 0 AS account, value ->> 1 AS asset_code FROM json_each($2) \
         UNION ALL SELECT account, asset_code FROM holds WHERE id IN (SELECT value FROM json_each($3))) AS k \
         JOIN balances AS b ON b.account = k.account AND b.asset_code = k.asset_code \
         UNION ALL SELECT {HOLD}, id, account, asset_code, status, amount, expires_at, 0 FROM holds \
         WHERE id IN (SELECT value FROM json_each($3))",
        framing.begin()
    ))
    .bind(json_rows(&keys)?)
    .bind(json_rows(&balances)?)
    .bind(json_rows(&holds)?)
    .fetch_all(conn)
    .await?;
    let mut taken = HashSet::new();
    let mut books = Books::default();
    for row in found {
        match row.tag {
            TAKEN_KEY => _ = taken.insert(row.id),
            BALANCE => {
                let frozen = row.frozen_or_expiry.unwrap_or_default();
                let balance = Versioned { buckets: Buckets { available: row.amount, frozen }, seq: row.seq };
                books.balances.rows.insert((row.id, row.account_or_asset), balance);
            }
            _ => {
                let hold = read_hold(
                    &row.id,
                    &row.account_or_asset,
                    &row.asset,
                    &row.status,
                    row.amount,
                    row.frozen_or_expiry,
                );
                books.holds.insert(row.id, hold);
            }
        }
    }
    Ok((taken, books))
}

/// What a batch's accepted entries have done so far: the balances and holds they moved.
#[derive(Default)]
struct Books {
    balances: BalanceBook,
    holds: HashMap<String, HoldState>,
    /// `(hold id, status, settled amount, resolving entry id)` of every resolved hold.
    resolved: Vec<(String, &'static str, i64, String)>,
}

/// A hold row as the batch sees it: `None` when corrupt (its entries are refused).
type HoldState = Option<Hold>;

/// The hold of a batch read's row, parsed as every hold row is (`read::hold_from_row`);
/// the columns that read leaves out (settled amount, reference, creation and resolution
/// instants) are zero or empty, as deciding the batch needs none of them (it needs the
/// expiry: an expired hold is not paid out).
fn read_hold(id: &str, account: &str, asset: &str, status: &str, amount: i64, expires_at: Option<i64>) -> HoldState {
    let row = HoldRow {
        id: id.into(),
        account: account.into(),
        asset_code: asset.into(),
        amount,
        settled_amount: 0,
        status: status.into(),
        reference: String::new(),
        expires_at,
        created_at: 0,
        resolved_at: None,
    };
    hold_from_row(row).ok()
}

impl Books {
    /// Decides `write` against the books: its entry, the books moved by it; or its
    /// refusal, the books untouched. Refusals and their order are the write-by-write
    /// path's: a hold missing (or its row corrupt: `Storage`), already resolved or
    /// exceeded, unbalanced legs, then a balance out of bounds.
    fn decide(&mut self, write: &EntryWrite, now: i64) -> Result<Entry, LedgerError> {
        let holds = &self.holds;
        let (legs, resolved) = write.resolve(now, |id| {
            let hold = holds.get(id.as_str()).ok_or_else(|| LedgerError::HoldNotFound(id.to_string()))?;
            hold.as_ref().ok_or_else(|| corrupt("hold", id.as_str()))
        })?;
        let balances = self.balances.apply(&balanced_deltas(&legs)?)?;
        let entry = write.entry(now, legs).with_balances(balances);
        for Resolved { id, resolution, settled } in resolved {
            if let Some(Some(hold)) = self.holds.get_mut(id.as_str()) {
                hold.status = resolution.status();
            }
            self.resolved.push((id.to_string(), resolution.status().as_str(), settled, entry.id.clone()));
        }
        Ok(entry)
    }
}

/// A balance row's amounts and version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Versioned {
    buckets: Buckets,
    seq: i64,
}

/// The balances a batch touches, as the batch's accepted entries leave them.
#[derive(Default)]
struct BalanceBook {
    rows: HashMap<BalanceKey, Versioned>,
    moved: HashSet<BalanceKey>,
}

impl BalanceBook {
    /// Moves the balances by `deltas`, all or none, each one version up: the balances
    /// after, or the refusal of the first delta a balance cannot take
    /// (`INSUFFICIENT_BALANCE`, `BALANCE_OVERFLOW`, …).
    fn apply(&mut self, deltas: &[BalanceDelta]) -> Result<Vec<BalanceAfter>, LedgerError> {
        let moved: Vec<(BalanceKey, Versioned)> = deltas
            .iter()
            .map(|delta| {
                let key = key_of(delta);
                let current = self.rows.get(&key).copied().unwrap_or_default();
                let buckets = delta.apply_to(current.buckets)?;
                Ok((key, Versioned { buckets, seq: current.seq + 1 }))
            })
            .collect::<Result<_, LedgerError>>()?;
        let afters = deltas
            .iter()
            .zip(&moved)
            .map(|(delta, (_, after))| BalanceAfter {
                account: delta.account.clone(),
                asset: delta.asset.clone(),
                available: after.buckets.available,
                frozen: after.buckets.frozen,
                seq: after.seq,
            })
            .collect();
        for (key, after) in moved {
            self.rows.insert(key.clone(), after);
            self.moved.insert(key);
        }
        Ok(afters)
    }

    /// Every moved balance as `(account, asset, available, frozen, seq)`.
    fn moved_rows(&self) -> Vec<(&str, &str, i64, i64, i64)> {
        self.moved
            .iter()
            .filter_map(|key| {
                let row = self.rows.get(key)?;
                Some((key.0.as_str(), key.1.as_str(), row.buckets.available, row.buckets.frozen, row.seq))
            })
            .collect()
    }
}

/// In one call (four statements): the accepted entries with their fingerprints, their
/// postings numbered by leg order with the balances after each entry, the holds they
/// resolved, and every moved balance with its version (inserting rows that did not
/// exist).
async fn write_accepted(
    conn: &mut AnyConnection,
    entries: &[(&Entry, &str)],
    books: &Books,
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
    let posting_rows: Vec<_> = entries.iter().flat_map(|(entry, _)| posting_rows(entry)).collect();
    sqlx::query(&format!(
        "INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, actor, \
         created_at) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
         value ->> 7 FROM json_each($1); \
         INSERT INTO postings ({POSTING_COLUMNS}) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, \
         value ->> 7, value ->> 8, value ->> 9, value ->> 10 FROM json_each($2); \
         UPDATE holds SET status = r.value ->> 1, settled_amount = r.value ->> 2, resolved_at = $4, \
         resolution_entry_id = r.value ->> 3 FROM json_each($5) AS r \
         WHERE holds.id = r.value ->> 0; \
         INSERT INTO balances (account, asset_code, available, frozen, seq, updated_at) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, $4 FROM json_each($3) WHERE true \
         ON CONFLICT (account, asset_code) DO UPDATE SET available = excluded.available, \
         frozen = excluded.frozen, seq = excluded.seq, updated_at = excluded.updated_at{}",
        framing.commit()
    ))
    .bind(json_rows(&entry_rows)?)
    .bind(json_rows(&posting_rows)?)
    .bind(json_rows(&books.balances.moved_rows())?)
    .bind(now)
    .bind(json_rows(&books.resolved)?)
    .execute(conn)
    .await?;
    Ok(())
}

fn key_of(delta: &BalanceDelta) -> BalanceKey {
    (delta.account.key(), delta.asset.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::commands::SettleHold;
    use crate::domain::hold::HoldStatus;
    use crate::domain::ids::{Amount, Code, HoldId, IdempotencyKey};
    use crate::store::fixtures::user;

    fn gold() -> Code {
        Code::parse("gold").expect("code")
    }

    fn versioned(available: i64, frozen: i64) -> Versioned {
        Versioned { buckets: Buckets { available, frozen }, seq: 0 }
    }

    /// Books holding `hold` (10 gold frozen on user 1) and user 1's balance.
    fn books(hold: &HoldId) -> Books {
        let mut books = Books::default();
        let state = read_hold(hold.as_str(), &user(1).key(), "gold", "open", 10, None);
        books.holds.insert(hold.to_string(), state);
        books.balances.rows.insert((user(1).key(), "gold".into()), versioned(0, 10));
        books
    }

    fn settle(hold: &HoldId, to: i64, paid: i64, key: &str) -> EntryWrite {
        let plan = SettleHold {
            hold: hold.clone(),
            amount: Some(Amount::parse(paid).expect("amount")),
            destinations: vec![(user(to), gold(), Amount::parse(paid).expect("amount"))],
            business_type: "HOLD_SETTLE".into(),
            correlation_id: String::new(),
        }
        .plan(IdempotencyKey::parse(key).expect("key"), "user:1");
        EntryWrite { plan, known: Arc::default(), clock: economy_kit::time::system_clock() }
    }

    #[test]
    fn a_hold_resolves_once_per_batch_and_a_refused_entry_leaves_it_open() {
        let hold = HoldId::generate();
        let mut books = books(&hold);
        let too_much = books.decide(&settle(&hold, 2, 11, "a"), 1);
        assert!(matches!(too_much, Err(LedgerError::HoldAmountExceeded { .. })), "{too_much:?}");
        assert!(books.resolved.is_empty());
        let settled = books.decide(&settle(&hold, 2, 4, "b"), 1).expect("settles");
        assert_eq!(books.resolved, vec![(hold.to_string(), "settled", 4, settled.id.clone())]);
        let frozen = books.balances.rows.get(&(user(1).key(), "gold".into())).copied();
        assert_eq!(frozen, Some(Versioned { buckets: Buckets { available: 6, frozen: 0 }, seq: 1 }));
        let after = settled.balance_after(&user(1), &gold()).map(|after| (after.available, after.frozen, after.seq));
        assert_eq!(after, Some((6, 0, 1)), "the entry carries the balance after it");
        let again = books.decide(&settle(&hold, 3, 4, "c"), 1);
        assert!(matches!(again, Err(LedgerError::HoldAlreadyResolved { status: "settled", .. })), "{again:?}");
        let unknown = books.decide(&settle(&HoldId::generate(), 3, 4, "d"), 1);
        assert!(matches!(unknown, Err(LedgerError::HoldNotFound(_))), "{unknown:?}");
    }

    #[test]
    fn an_expired_hold_is_not_paid_out_by_a_batch() {
        let hold = HoldId::generate();
        let mut books = books(&hold);
        let expiring = read_hold(hold.as_str(), &user(1).key(), "gold", "open", 10, Some(5));
        books.holds.insert(hold.to_string(), expiring);
        let late = books.decide(&settle(&hold, 2, 4, "a"), 5);
        assert!(matches!(late, Err(LedgerError::HoldExpired { expires_at: 5, .. })), "{late:?}");
        assert!(books.resolved.is_empty() && books.balances.moved.is_empty());
        assert!(books.decide(&settle(&hold, 2, 4, "b"), 4).is_ok(), "still payable just before");
    }

    #[test]
    fn a_settlement_a_balance_refuses_leaves_its_hold_open() {
        let hold = HoldId::generate();
        let mut books = books(&hold);
        books.balances.rows.insert((user(1).key(), "gold".into()), versioned(0, 5));
        // Frozen below its open holds is a broken invariant, refused as a storage error.
        let refused = books.decide(&settle(&hold, 2, 4, "a"), 1);
        assert!(matches!(refused, Err(LedgerError::Storage(_))), "{refused:?}");
        assert!(books.resolved.is_empty());
        assert!(
            books
                .holds
                .get(hold.as_str())
                .is_some_and(|hold| hold.as_ref().is_some_and(|hold| hold.status == HoldStatus::Open))
        );
    }
}
