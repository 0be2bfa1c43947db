//! The one-statement form of an entry on PostgreSQL (BENCHMARKS.md Optimizations 16 and
//! 22), the entry's `BatchedWrite::autocommit`: a plain entry alone in the queue of
//! `combined` or whose combined statement did not apply, and an entry that settles or
//! releases holds (a market purchase). There the transaction path costs `BEGIN`, the
//! entry's INSERT, a read and an UPDATE per hold, the postings' INSERT, an UPDATE per
//! balance and `COMMIT`: round trips on a server that shares the machine's cores. Such an
//! entry (no hold to open; assets and accounts known) is written by ONE autocommitted
//! statement instead, after one read of the holds it resolves (on the same connection,
//! outside any transaction: a hold's amount gives the legs that empty it):
//! data-modifying CTEs claim the key (`ON CONFLICT DO NOTHING`), insert the postings,
//! resolve each hold by compare-and-set on `open`, lock the balance rows in the
//! transaction path's order and move every balance with the same bounds as that path's
//! conditional UPDATE, and the final SELECT divides by zero when a hold or a balance did
//! not move (resolved meanwhile, refused, or its row missing), which aborts the statement
//! so nothing of it remains. The transaction path then decides that entry on the same
//! connection and names the refusal (also after a lost deadlock, and when the read
//! already shows a hold missing, resolved or exceeded).

use economy_kit::db::{Writer, value_tuples_after};
use economy_kit::group_commit::Autocommitted;
use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments, Executor};

use super::read::holds_in;
use super::write::{EntryWrite, PostingRow, Refusal, entry_arguments, posting_rows};
use crate::domain::LedgerError;
use crate::domain::entry::{BalanceDelta, Leg, balanced_deltas};
use crate::domain::hold::Resolved;

/// Writes `write` (no hold to open; assets and accounts known) in one statement on
/// `writer` (see the module docs): `Ok(None)` when the transaction path must decide it,
/// `Err` when the statement failed (the kit falls back to that path when the statement
/// aborted itself or lost a deadlock).
pub(super) async fn post(writer: &mut Writer, write: &EntryWrite, now: i64) -> Autocommitted<EntryWrite> {
    match settled_legs(&mut **writer, write, now).await? {
        Some((legs, resolved)) => post_legs(writer, write, legs, &resolved, now).await,
        None => Ok(None),
    }
}

/// The statement of [`post`] for `write` with all its `legs`, resolving the holds
/// `resolved` as they were read.
async fn post_legs(
    writer: &mut Writer,
    write: &EntryWrite,
    legs: Vec<Leg>,
    resolved: &[Resolved],
    now: i64,
) -> Autocommitted<EntryWrite> {
    let Ok(deltas) = balanced_deltas(&legs) else {
        return Ok(None);
    };
    if deltas.is_empty() {
        return Ok(None);
    }
    let entry = write.entry(now, legs);
    let mut arguments = entry_arguments(&entry.id, &write.plan.meta, now)?;
    // The entry id comes from the `entry` CTE, so a taken key inserts no postings.
    for row in posting_rows(&entry.id, &entry.legs) {
        add_posting(&mut arguments, row)?;
    }
    add_moves(&mut arguments, &deltas)?;
    add(&mut arguments, i64::try_from(deltas.len()).unwrap_or(i64::MAX))?;
    for hold in resolved {
        add(&mut arguments, hold.id.as_str())?;
        add(&mut arguments, hold.resolution.status().as_str())?;
        add(&mut arguments, hold.settled)?;
    }
    add(&mut arguments, i64::try_from(resolved.len()).unwrap_or(i64::MAX))?;
    let sql = statement(entry.legs.len(), deltas.len(), resolved.len());
    match writer.fetch_number(sqlx::query_with(&sql, arguments)).await? {
        1 => Ok(Some(Ok(entry))),
        _ => Ok(Some(Err(Refusal::KeyTaken))),
    }
}

/// The entry's legs followed by those that empty the holds it resolves at `now` (read now,
/// outside any transaction), and those holds. `None` when a hold is missing, its row
/// corrupt, not open, expired for a settlement, exceeded or resolved twice by the entry:
/// the transaction path then names the refusal.
async fn settled_legs<'e>(
    executor: impl Executor<'e, Database = Any>,
    write: &EntryWrite,
    now: i64,
) -> Result<Option<(Vec<Leg>, Vec<Resolved>)>, sqlx::Error> {
    let ids: Vec<&str> = write.plan.resolutions.iter().map(|(id, _)| id.as_str()).collect();
    let holds = holds_in(executor, &ids).await?;
    let resolved =
        write.resolve(now, |id| holds.get(id.as_str()).ok_or_else(|| LedgerError::HoldNotFound(id.to_string())));
    Ok(resolved.ok())
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

const POSTING_COLUMNS: usize = 6;
/// Columns of a balance move row ([`add_moves`]).
pub(super) const MOVE_COLUMNS: usize = 9;
const HOLD_COLUMNS: usize = 3;

/// `$1..$8` the entry, then `postings` rows of (seq, account, asset, bucket, amount,
/// hold), then `moves` balance moves (account, asset, available and frozen deltas, their
/// bounds, their order in the transaction path), then how many balances must move, then
/// `holds` holds to resolve (id, final status, settled amount) and their count.
/// Exact-size `VALUES` lists, so the planner knows the row counts (index lookups, no scan
/// of `balances`). Returns 1 (written) or 0 (key taken). `resolved` claims the
/// holds first and `locked` then takes the balance rows' locks in the transaction path's
/// order before the UPDATE moves any (an uncorrelated subquery runs once, before the first
/// row): key, holds, balances, as on the transaction path. (Several holds of one entry
/// are locked in the planner's order, and two writes racing with one idempotency key can
/// deadlock on the key's index entry against a balance lock; PostgreSQL then aborts one,
/// which this form leaves to the transaction path.)
fn statement(postings: usize, moves: usize, holds: usize) -> String {
    let posting_rows = value_tuples_after(8, postings, POSTING_COLUMNS);
    let moves_taken = 8 + postings * POSTING_COLUMNS;
    let move_rows = value_tuples_after(moves_taken, moves, MOVE_COLUMNS);
    let count = moves_taken + moves * MOVE_COLUMNS + 1;
    let (resolved, holds_resolved) = if holds == 0 {
        (String::new(), String::new())
    } else {
        let hold_rows = value_tuples_after(count, holds, HOLD_COLUMNS);
        let hold_count = count + holds * HOLD_COLUMNS + 1;
        let resolved = format!(
            "
), resolved AS (
    UPDATE holds AS h SET status = r.status, settled_amount = r.settled, resolved_at = $8, resolution_entry_id = entry.id
    FROM entry, (VALUES {hold_rows}) AS r (id, status, settled)
    WHERE h.id = r.id AND h.status = 'open'
    RETURNING 1"
        );
        (resolved, format!("\n    WHERE (SELECT COUNT(*) FROM resolved) = ${hold_count}"))
    };
    format!(
        "WITH entry AS (
    INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, actor, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
), moves (account, asset, available, frozen, available_low, available_high, frozen_low, frozen_high, n) AS (
    VALUES {move_rows}
), posted AS (
    INSERT INTO postings (entry_id, seq, account, asset_code, bucket, amount, hold_id)
    SELECT entry.id, p.seq, p.account, p.asset, p.bucket, p.amount, p.hold
    FROM entry, (VALUES {posting_rows}) AS p (seq, account, asset, bucket, amount, hold){resolved}
), locked AS (
    SELECT 1 FROM moves JOIN balances AS b ON b.account = moves.account AND b.asset_code = moves.asset{holds_resolved}
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
    use std::sync::Arc;

    use economy_kit::db::is_undecided;
    use economy_kit::group_commit::BatchedWrite;
    use economy_kit::testing::TestDatabase;
    use economy_kit::time::now_millis;

    use super::*;
    use crate::domain::commands::{CreateHold, ReleaseHold, SettleHold, WritePlan};
    use crate::domain::hold::HoldStatus;
    use crate::domain::ids::{Amount, HoldId, UserId};
    use crate::store::LedgerStore;
    use crate::store::fixtures::{key, points, postgres_store, user};

    /// A PostgreSQL store where user 2 holds 1 POINTS and user 1 holds 10 and has frozen 4
    /// of them in the returned hold; `None` on SQLite, where the statement does not run.
    async fn with_hold() -> anyhow::Result<Option<(TestDatabase, LedgerStore, HoldId)>> {
        let Some((database, store)) = postgres_store(&[(1, 10), (2, 1)]).await? else { return Ok(None) };
        let hold = freeze(&store, "freeze-1").await?;
        Ok(Some((database, store, hold)))
    }

    /// Freezes 4 of user 1's POINTS in a new hold.
    async fn freeze(store: &LedgerStore, name: &str) -> anyhow::Result<HoldId> {
        let hold = HoldId::generate();
        store.apply(&freezing(&hold, 4, name)).await?;
        Ok(hold)
    }

    /// The plan that freezes `amount` of user 1's POINTS in `hold`.
    fn freezing(hold: &HoldId, amount: i64, name: &str) -> WritePlan {
        let create = CreateHold {
            user: UserId::parse(1).expect("id"),
            asset: points(),
            amount: Amount::parse(amount).expect("amount"),
            expires_at: None,
            reference: String::new(),
        };
        create.plan(hold.clone(), key(name), "admin:1")
    }

    /// Settles 3 of `hold` to user 2 (the rest goes back to user 1).
    fn settle(store: &LedgerStore, hold: &HoldId) -> EntryWrite {
        let destinations = vec![(user(2), points(), Amount::parse(3).expect("amount"))];
        let command = SettleHold {
            hold: hold.clone(),
            amount: Amount::parse(3).ok(),
            destinations,
            business_type: "HOLD_SETTLE".into(),
            correlation_id: String::new(),
        };
        EntryWrite { plan: command.plan(key("settle"), "admin:1"), known: Arc::clone(&store.known) }
    }

    async fn books(store: &LedgerStore) -> anyhow::Result<[(i64, i64); 2]> {
        Ok([store.balance(&user(1), "POINTS").await?, store.balance(&user(2), "POINTS").await?])
    }

    #[tokio::test]
    async fn a_settlement_resolves_its_hold_in_the_statement() -> anyhow::Result<()> {
        let Some((_database, store, hold)) = with_hold().await? else { return Ok(()) };
        let now = now_millis();
        let mut writer = store.db.writer().await?;
        let Some(Ok(entry)) = post(&mut writer, &settle(&store, &hold), now).await? else {
            anyhow::bail!("the statement decides an open hold");
        };
        drop(writer);
        assert_eq!(books(&store).await?, [(7, 0), (4, 0)], "3 paid out, 1 back to available");
        let stored = store.hold(hold.as_str()).await?.ok_or_else(|| anyhow::anyhow!("hold"))?;
        assert_eq!((stored.status, stored.settled_amount, stored.resolved_at), (HoldStatus::Settled, 3, Some(now)));
        let resolved_by: (String,) = sqlx::query_as("SELECT resolution_entry_id FROM holds WHERE id = $1")
            .bind(hold.as_str())
            .fetch_one(store.db.pool())
            .await?;
        assert_eq!(resolved_by.0, entry.id);
        assert_eq!(store.entry(&entry.id).await?.legs, entry.legs, "postings of the payout and of the hold");
        Ok(())
    }

    #[tokio::test]
    async fn an_entry_autocommits_in_the_statement_unless_it_opens_a_hold() -> anyhow::Result<()> {
        let Some((_database, store, hold)) = with_hold().await? else { return Ok(()) };
        let opening =
            EntryWrite { plan: freezing(&HoldId::generate(), 1, "freeze-3"), known: Arc::clone(&store.known) };
        let mut writer = store.db.writer().await?;
        assert!(opening.autocommit(&mut writer).await?.is_none(), "opening a hold takes the transaction path");
        let Some(Ok(entry)) = settle(&store, &hold).autocommit(&mut writer).await? else {
            anyhow::bail!("a settlement of an open hold is decided by its statement");
        };
        drop(writer);
        assert_eq!(store.entry(&entry.id).await?.legs, entry.legs);
        assert_eq!(books(&store).await?, [(7, 0), (4, 0)]);
        Ok(())
    }

    #[tokio::test]
    async fn a_hold_resolved_after_the_read_leaves_the_statement_undecided() -> anyhow::Result<()> {
        let Some((_database, store, hold)) = with_hold().await? else { return Ok(()) };
        // Another hold keeps 4 frozen, so the balances alone would let the settlement through.
        freeze(&store, "freeze-2").await?;
        let write = settle(&store, &hold);
        let (legs, resolved) =
            settled_legs(store.db.pool(), &write, now_millis()).await?.ok_or_else(|| anyhow::anyhow!("hold open"))?;
        let release = ReleaseHold { hold: hold.clone(), reason: "meanwhile".into(), expiry: false };
        store.apply(&release.plan(key("release"), "admin:1")).await?;
        let posted = post_legs(&mut store.db.writer().await?, &write, legs, &resolved, now_millis()).await;
        assert!(posted.as_ref().is_err_and(is_undecided), "the statement aborts itself: {posted:?}");
        assert_eq!(books(&store).await?, [(6, 4), (1, 0)], "only the release moved");
        assert!(store.replay(&write.plan.meta).await?.is_none(), "the key stays free");
        let read = settled_legs(store.db.pool(), &write, now_millis()).await?;
        assert!(read.is_none(), "a resolved hold is left to the transaction path");
        let decided = store.apply(&write.plan).await;
        assert!(matches!(decided, Err(LedgerError::HoldAlreadyResolved { .. })), "{decided:?}");
        Ok(())
    }

    #[test]
    fn placeholders_run_on_across_the_lists() {
        let sql = statement(2, 2, 0);
        assert!(sql.contains("VALUES ($9, $10, $11, $12, $13, $14), ($15, $16, $17, $18, $19, $20)"));
        assert!(sql.contains("VALUES ($21, $22, $23, $24, $25, $26, $27, $28, $29), ($30,"));
        assert!(sql.contains("= $39 AND") && sql.ends_with("= $39 THEN 1 ELSE 0 END"));
        assert!(!sql.contains("holds"));
        let sql = statement(2, 2, 1);
        assert!(sql.contains("(VALUES ($40, $41, $42)) AS r") && sql.contains("FROM resolved) = $43"));
    }
}
