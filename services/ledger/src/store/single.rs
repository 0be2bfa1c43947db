//! The one-statement form of a plain entry on PostgreSQL (BENCHMARKS.md Optimization
//! 16). There each write runs alone (no group commit), and the transaction path costs
//! `BEGIN`, four statements for a transfer and `COMMIT`: seven round trips with the pool's
//! release ping, on a server that shares the machine's cores. A plain entry (no hold to
//! open or resolve; assets and accounts known) is written by ONE autocommitted statement
//! instead: data-modifying CTEs claim the key (`ON CONFLICT DO NOTHING`), insert the
//! postings and move every balance with the same bounds as the transaction path's
//! conditional UPDATE, and the final SELECT divides by zero when a balance did not move
//! (refused, or its row missing), which aborts the statement so nothing of it remains.
//! The transaction path then decides that entry and names the refusal.

use economy_kit::db::Db;
use sqlx::Arguments;

use super::write::{EntryWrite, entry_arguments};
use crate::domain::LedgerError;
use crate::domain::entry::Entry;

/// SQLSTATEs after which the transaction path decides: the statement's refusal signal
/// (`division_by_zero`) and a lost deadlock (`deadlock_detected`).
const UNDECIDED_STATES: [&str; 2] = ["22012", "40P01"];

/// What the one-statement form did.
#[derive(Debug)]
pub(super) enum Posted {
    /// The entry was written.
    Written(Entry),
    /// An entry already holds the key (a replay, or a concurrent writer first).
    KeyTaken,
    /// Nothing was written; the transaction path decides (and says why).
    Undecided,
}

/// Writes a plain `write` in one statement (see the module docs). Errors: storage.
pub(super) async fn post(db: &Db, write: &EntryWrite, now: i64) -> Result<Posted, LedgerError> {
    let Ok(deltas) = write.deltas() else { return Ok(Posted::Undecided) };
    let entry = write.entry(now);
    let postings: Vec<_> = (0_i64..)
        .zip(&entry.legs)
        .map(|(seq, leg)| {
            let hold = leg.hold_id.as_ref().map(|hold| hold.as_str());
            (seq, leg.account.key(), leg.asset.as_str(), leg.bucket.as_str(), leg.amount, hold)
        })
        .collect();
    let moves: Vec<_> = deltas
        .iter()
        .map(|delta| {
            let (available_low, available_high) = delta.available_range();
            let (frozen_low, frozen_high) = delta.frozen_range();
            let (account, asset) = (delta.account.key(), delta.asset.as_str());
            (account, asset, delta.available, delta.frozen, available_low, available_high, frozen_low, frozen_high)
        })
        .collect();
    let mut arguments = entry_arguments(&entry.id, &write.plan.meta, now)?;
    arguments.add(json(&postings)?).map_err(sqlx::Error::Encode)?;
    arguments.add(json(&moves)?).map_err(sqlx::Error::Encode)?;
    arguments.add(i64::try_from(moves.len()).unwrap_or(i64::MAX)).map_err(sqlx::Error::Encode)?;
    let written = sqlx::query_scalar_with::<_, i64, _>(STATEMENT, arguments).fetch_one(&mut *db.writer().await?).await;
    match written {
        Ok(1) => Ok(Posted::Written(entry)),
        Ok(_) => Ok(Posted::KeyTaken),
        Err(error) if is_undecided(&error) => Ok(Posted::Undecided),
        Err(error) => Err(error.into()),
    }
}

fn is_undecided(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|error| error.code()).is_some_and(|code| UNDECIDED_STATES.contains(&&*code))
}

fn json(rows: &impl serde::Serialize) -> Result<String, LedgerError> {
    serde_json::to_string(rows).map_err(|error| LedgerError::Storage(error.to_string()))
}

/// `$1..$8` the entry, `$9` its postings, `$10` its balance moves with their bounds in
/// the transaction path's order, `$11` how many balances must move. Returns 1 (written)
/// or 0 (key taken). `locked` takes the balance rows' locks in the order of `$10` before
/// the UPDATE moves any (an uncorrelated subquery runs once, before the first row), the
/// order the transaction path locks them in, so the two paths cannot deadlock each other.
const STATEMENT: &str = "\
WITH entry AS (
    INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, actor, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
), posted AS (
    INSERT INTO postings (entry_id, seq, account, asset_code, bucket, amount, hold_id)
    SELECT entry.id, (p.value ->> 0)::BIGINT, p.value ->> 1, p.value ->> 2, p.value ->> 3, (p.value ->> 4)::BIGINT,
        p.value ->> 5
    FROM entry, json_array_elements($9::JSON) AS p (value)
), locked AS (
    SELECT 1 FROM json_array_elements($10::JSON) WITH ORDINALITY AS d (value, n)
    JOIN balances AS b ON b.account = d.value ->> 0 AND b.asset_code = d.value ->> 1
    ORDER BY d.n FOR UPDATE OF b
), moved AS (
    UPDATE balances AS b SET available = b.available + (d.value ->> 2)::BIGINT,
        frozen = b.frozen + (d.value ->> 3)::BIGINT, updated_at = $8
    FROM entry, json_array_elements($10::JSON) AS d (value)
    WHERE (SELECT COUNT(*) FROM locked) = $11
        AND b.account = d.value ->> 0 AND b.asset_code = d.value ->> 1
        AND b.available BETWEEN (d.value ->> 4)::BIGINT AND (d.value ->> 5)::BIGINT
        AND b.frozen BETWEEN (d.value ->> 6)::BIGINT AND (d.value ->> 7)::BIGINT
    RETURNING 1
)
SELECT (SELECT COUNT(*) FROM entry)
    / CASE WHEN (SELECT COUNT(*) FROM entry) = 0 OR (SELECT COUNT(*) FROM moved) = $11 THEN 1 ELSE 0 END";
