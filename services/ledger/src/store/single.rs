//! The one-statement form of a plain entry on PostgreSQL (BENCHMARKS.md Optimization
//! 16), for an entry alone in the queue of `combined` or whose combined statement did not
//! apply. There the transaction path costs `BEGIN`, four statements for a transfer and
//! `COMMIT`, round trips on a server that shares the machine's cores. A plain entry (no hold to
//! open or resolve; assets and accounts known) is written by ONE autocommitted statement
//! instead: data-modifying CTEs claim the key (`ON CONFLICT DO NOTHING`), insert the
//! postings, lock the balance rows in the transaction path's order and move every
//! balance with the same bounds as that path's conditional UPDATE, and the final SELECT
//! divides by zero when a balance did not move (refused, or its row missing), which
//! aborts the statement so nothing of it remains. The transaction path then decides that
//! entry and names the refusal (also after a lost deadlock).

use economy_kit::db::{Db, value_tuples_after};
use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments};

use super::write::{EntryWrite, PostingRow, entry_arguments, posting_rows};
use crate::domain::LedgerError;
use crate::domain::entry::{BalanceDelta, Entry};

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
    if deltas.is_empty() {
        return Ok(Posted::Undecided);
    }
    let entry = write.entry(now);
    let mut arguments = entry_arguments(&entry.id, &write.plan.meta, now)?;
    // The entry id comes from the `entry` CTE, so a taken key inserts no postings.
    for row in posting_rows(&entry.id, &entry.legs) {
        add_posting(&mut arguments, row)?;
    }
    add_moves(&mut arguments, &deltas)?;
    add(&mut arguments, i64::try_from(deltas.len()).unwrap_or(i64::MAX))?;
    let sql = statement(entry.legs.len(), deltas.len());
    match run_autocommitted(db, &sql, arguments).await {
        Ok(1) => Ok(Posted::Written(entry)),
        Ok(_) => Ok(Posted::KeyTaken),
        Err(error) if is_undecided(&error) => Ok(Posted::Undecided),
        Err(error) => Err(error.into()),
    }
}

/// Runs an autocommitted statement that returns one number on a writer (marked reusable)
/// and returns it. It reads every reply up to the statement's end (`fetch_all`): the
/// commit of an autocommitted statement comes after its row, and `fetch_one` on the `Any`
/// driver stops at the row, so a failed commit would go unseen and be left for the
/// connection's next user.
pub(super) async fn run_autocommitted(db: &Db, sql: &str, arguments: AnyArguments<'_>) -> Result<i64, sqlx::Error> {
    let mut writer = db.writer().await?;
    let rows = sqlx::query_scalar_with::<_, i64, _>(sql, arguments).fetch_all(&mut *writer).await;
    writer.finish(rows)?.first().copied().ok_or(sqlx::Error::RowNotFound)
}

/// Appends one bind parameter.
pub(super) fn add<'q, T>(arguments: &mut AnyArguments<'q>, value: T) -> Result<(), sqlx::Error>
where
    T: 'q + sqlx::Encode<'q, Any> + sqlx::Type<Any>,
{
    arguments.add(value).map_err(sqlx::Error::Encode)
}

/// Appends a posting's columns after its entry id: seq, account, asset, bucket, amount,
/// hold.
pub(super) fn add_posting<'q>(arguments: &mut AnyArguments<'q>, row: PostingRow<'q>) -> Result<(), sqlx::Error> {
    let (_, seq, account, asset, bucket, amount, hold) = row;
    add(arguments, seq)?;
    add(arguments, account)?;
    add(arguments, asset)?;
    add(arguments, bucket)?;
    add(arguments, amount)?;
    add(arguments, hold)
}

/// Appends one row per balance move, numbered in order: account, asset, available and
/// frozen deltas, their bounds on the balance before the move, the number.
pub(super) fn add_moves<'q>(
    arguments: &mut AnyArguments<'q>,
    deltas: impl IntoIterator<Item = &'q BalanceDelta>,
) -> Result<(), sqlx::Error> {
    for (order, delta) in (0_i64..).zip(deltas) {
        let (available_low, available_high) = delta.available_range();
        let (frozen_low, frozen_high) = delta.frozen_range();
        add(arguments, delta.account.key())?;
        add(arguments, delta.asset.as_str())?;
        for value in [delta.available, delta.frozen, available_low, available_high, frozen_low, frozen_high, order] {
            add(arguments, value)?;
        }
    }
    Ok(())
}

fn is_undecided(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|error| error.code()).is_some_and(|code| UNDECIDED_STATES.contains(&&*code))
}

const POSTING_COLUMNS: usize = 6;
/// Columns of a balance move row ([`add_moves`]).
pub(super) const MOVE_COLUMNS: usize = 9;

/// `$1..$8` the entry, then `postings` rows of (seq, account, asset, bucket, amount,
/// hold), then `moves` balance moves (account, asset, available and frozen deltas, their
/// bounds, their order in the transaction path), then how many balances must move.
/// Exact-size `VALUES` lists, so the planner knows the row counts (index lookups, no
/// scan of `balances`). Returns 1 (written) or 0 (key taken). `locked` takes the balance
/// rows' locks in the transaction path's order before the UPDATE moves any (an
/// uncorrelated subquery runs once, before the first row), so the write paths cannot
/// deadlock each other on balance rows. (Two writes racing with one idempotency key can
/// still deadlock on the key's index entry against a balance lock; PostgreSQL aborts one,
/// which this form then leaves to the transaction path.)
fn statement(postings: usize, moves: usize) -> String {
    let posting_rows = value_tuples_after(8, postings, POSTING_COLUMNS);
    let moves_taken = 8 + postings * POSTING_COLUMNS;
    let move_rows = value_tuples_after(moves_taken, moves, MOVE_COLUMNS);
    let count = moves_taken + moves * MOVE_COLUMNS + 1;
    format!(
        "WITH entry AS (
    INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, actor, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
), moves (account, asset, available, frozen, available_low, available_high, frozen_low, frozen_high, n) AS (
    VALUES {move_rows}
), posted AS (
    INSERT INTO postings (entry_id, seq, account, asset_code, bucket, amount, hold_id)
    SELECT entry.id, p.seq, p.account, p.asset, p.bucket, p.amount, p.hold
    FROM entry, (VALUES {posting_rows}) AS p (seq, account, asset, bucket, amount, hold)
), locked AS (
    SELECT 1 FROM moves JOIN balances AS b ON b.account = moves.account AND b.asset_code = moves.asset
    ORDER BY moves.n FOR UPDATE OF b
), moved AS (
    UPDATE balances AS b SET available = b.available + m.available, frozen = b.frozen + m.frozen, updated_at = $8
    FROM entry, moves AS m
    WHERE (SELECT COUNT(*) FROM locked) = ${count} AND b.account = m.account AND b.asset_code = m.asset
        AND b.available BETWEEN m.available_low AND m.available_high
        AND b.frozen BETWEEN m.frozen_low AND m.frozen_high
    RETURNING 1
)
SELECT (SELECT COUNT(*) FROM entry)
    / CASE WHEN (SELECT COUNT(*) FROM entry) = 0 OR (SELECT COUNT(*) FROM moved) = ${count} THEN 1 ELSE 0 END"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_run_on_across_the_lists() {
        let sql = statement(2, 2);
        assert!(sql.contains("VALUES ($9, $10, $11, $12, $13, $14), ($15, $16, $17, $18, $19, $20)"));
        assert!(sql.contains("VALUES ($21, $22, $23, $24, $25, $26, $27, $28, $29), ($30,"));
        assert!(sql.contains("= $39 AND") && sql.ends_with("= $39 THEN 1 ELSE 0 END"));
    }
}
