//! One entry in ONE autocommitted statement on PostgreSQL, the entry's
//! `BatchedWrite::autocommit`: chosen for an entry going alone that opens no hold and
//! touches only assets and accounts known to exist (a plain entry alone in the queue of
//! [`super::postgres_combined`] or that its combined statement did not apply, and an
//! entry that settles or releases holds, such as a market purchase). The transaction path
//! costs `BEGIN`, the entry's INSERT, a read and an UPDATE per hold, the postings' INSERT,
//! an UPDATE per balance and `COMMIT`: round trips on a server that shares the machine's
//! cores. This form reads the holds the entry resolves (on the same connection, outside
//! any transaction: a hold's amount gives the legs that empty it), then one statement of
//! data-modifying CTEs claims the key (`ON CONFLICT DO NOTHING`), resolves each hold by
//! compare-and-set on `open`, locks the balance rows in the transaction path's order,
//! moves every balance one version up with the same bounds as that path's conditional
//! UPDATE and inserts the postings with the balances that UPDATE returned; its final
//! SELECT returns those balances, and divides by zero when a hold or a balance did not
//! move (resolved meanwhile, refused, or its row missing), which aborts the statement so
//! nothing of it remains. The transaction path then decides that entry on the same
//! connection and names the refusal (also after a lost deadlock, and when the read
//! already shows a hold missing, resolved or exceeded).

use economy_kit::db::Writer;
use economy_kit::db::params::{Params, list, tuple};
use economy_kit::group_commit::Autocommitted;
use sqlx::{Any, Executor};

use super::rows::{MOVE_COLUMNS, POSTING_COLUMNS, balance_locks, bind_entry, bind_moves, count, posting_rows};
use super::{EntryWrite, Refusal};
use crate::domain::LedgerError;
use crate::domain::entry::{BalanceAfter, BalanceDelta, Entry, EntryMeta, Leg, balanced_deltas};
use crate::domain::hold::Resolved;
use crate::store::read::holds_in;

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
    let mut params = Params::numbered();
    let sql = statement(&mut params, &entry, &write.plan.meta, &deltas, resolved)?;
    let rows: Result<Vec<MovedRow>, _> =
        sqlx::query_as_with(&sql, params.into_arguments()).fetch_all(&mut **writer).await;
    let rows = writer.finish(rows)?;
    if rows.first().is_none_or(|row| row.0 != 1) {
        return Ok(Some(Err(Refusal::KeyTaken)));
    }
    let balances = moved_balances(&deltas, &rows);
    Ok(Some(Ok(entry.with_balances(balances))))
}

/// A row of [`statement`]: 1 (written) or 0 (key taken), then one balance the entry moved
/// as it is after it (account, asset, available, frozen, seq; NULLs when none moved).
type MovedRow = (i64, Option<String>, Option<String>, Option<i64>, Option<i64>, Option<i64>);

/// The balances after the entry, from the rows the statement returned for `deltas`.
fn moved_balances(deltas: &[BalanceDelta], rows: &[MovedRow]) -> Vec<BalanceAfter> {
    rows.iter()
        .filter_map(|(_, account, asset, available, frozen, seq)| {
            let (account, asset) = (account.as_deref()?, asset.as_deref()?);
            let delta = deltas.iter().find(|delta| delta.account.key() == account && delta.asset.as_str() == asset)?;
            Some(BalanceAfter {
                account: delta.account.clone(),
                asset: delta.asset.clone(),
                available: (*available)?,
                frozen: (*frozen)?,
                seq: (*seq)?,
            })
        })
        .collect()
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

/// The statement for `entry` (of `meta`) moving the balances by `deltas` and resolving the
/// holds `resolved`, its values bound to `params`: the entry, then its postings (seq,
/// account, asset, bucket, amount, hold; the entry id comes from the `entry` CTE, so a
/// taken key inserts no postings, and the balances after from the `moved` UPDATE), then
/// the balance moves (account, asset, available and frozen deltas, their bounds, their
/// order in the transaction path), then how many balances must move, then the holds to
/// resolve (id, final status, settled amount) and their count. Exact-size `VALUES` lists,
/// so the planner knows the row counts (index lookups, no scan of `balances`). Returns
/// [`MovedRow`]s: 1 and every moved balance (written), or one row 0 and NULLs (key
/// taken). `resolved` claims the holds first and `locked` then takes the balance rows'
/// locks in the transaction path's order before the UPDATE moves any (an uncorrelated
/// subquery runs once, before the first row): key, holds, balances, as on the
/// transaction path.
/// (Several holds of one entry are locked in the planner's order, and two writes racing
/// with one idempotency key can deadlock on the key's index entry against a balance lock;
/// PostgreSQL then aborts one, which this form leaves to the transaction path.)
fn statement<'q>(
    params: &mut Params<'q>,
    entry: &'q Entry,
    meta: &'q EntryMeta,
    deltas: &'q [BalanceDelta],
    resolved: &'q [Resolved],
) -> Result<String, sqlx::Error> {
    let entry_columns = bind_entry(params, &entry.id, meta, entry.created_at)?;
    let now = entry_columns[7];
    let entry_row = list(&entry_columns);
    let mut posting_values = Vec::with_capacity(entry.legs.len());
    for row in posting_rows(entry) {
        posting_values.push(tuple(&row.bind_after_entry(params)?));
    }
    let posting_rows = posting_values.join(", ");
    let move_rows = bind_moves(params, deltas)?;
    let moves = params.push(count(deltas.len()))?;
    let (resolved_holds, holds_resolved) = if resolved.is_empty() {
        (String::new(), String::new())
    } else {
        let mut hold_rows = Vec::with_capacity(resolved.len());
        for hold in resolved {
            let status = hold.resolution.status().as_str();
            hold_rows.push(tuple(&[params.push(hold.id.as_str())?, params.push(status)?, params.push(hold.settled)?]));
        }
        let hold_rows = hold_rows.join(", ");
        let holds = params.push(count(resolved.len()))?;
        let resolved_holds = format!(
            "
), resolved AS (
    UPDATE holds AS h SET status = r.status, settled_amount = r.settled, resolved_at = {now}, resolution_entry_id = entry.id
    FROM entry, (VALUES {hold_rows}) AS r (id, status, settled)
    WHERE h.id = r.id AND h.status = 'open'
    RETURNING 1"
        );
        (resolved_holds, format!(" AND (SELECT COUNT(*) FROM resolved) = {holds}"))
    };
    let serialize = balance_locks("moves");
    Ok(format!(
        "WITH moves ({MOVE_COLUMNS}) AS (
    VALUES {move_rows}
), serialized AS (
    {serialize}
), entry AS (
    INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, actor, created_at)
    SELECT * FROM (VALUES ({entry_row})) AS e WHERE (SELECT n FROM serialized) >= 0
    ON CONFLICT (idempotency_key) DO NOTHING RETURNING id{resolved_holds}
), locked AS (
    SELECT 1 FROM moves JOIN balances AS b ON b.account = moves.account AND b.asset_code = moves.asset
    WHERE (SELECT n FROM serialized) >= 0{holds_resolved}
    ORDER BY moves.n FOR UPDATE OF b
), moved AS (
    UPDATE balances AS b SET available = b.available + m.available, frozen = b.frozen + m.frozen, seq = b.seq + 1,
        updated_at = {now}
    FROM entry, moves AS m
    WHERE (SELECT COUNT(*) FROM locked) = {moves} AND b.account = m.account AND b.asset_code = m.asset
        AND b.available BETWEEN m.available_low AND m.available_high
        AND b.frozen BETWEEN m.frozen_low AND m.frozen_high
    RETURNING b.account, b.asset_code, b.available, b.frozen, b.seq
), posted AS (
    INSERT INTO postings ({POSTING_COLUMNS})
    SELECT entry.id, p.seq, p.account, p.asset, p.bucket, p.amount, p.hold, m.available, m.frozen, m.seq, {now}
    FROM entry, (VALUES {posting_rows}) AS p (seq, account, asset, bucket, amount, hold)
    JOIN moved AS m ON m.account = p.account AND m.asset_code = p.asset
)
SELECT c.written, m.account, m.asset_code, m.available, m.frozen, m.seq
FROM (SELECT (SELECT COUNT(*) FROM entry)
    / CASE WHEN (SELECT COUNT(*) FROM entry) = 0 OR (SELECT COUNT(*) FROM moved) = {moves} THEN 1 ELSE 0 END AS written) AS c
LEFT JOIN moved AS m ON true"
    ))
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
    use crate::domain::hold::{HoldStatus, Resolution};
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
        EntryWrite {
            plan: command.plan(key("settle"), "admin:1"),
            known: Arc::clone(&store.known),
            clock: store.clock.clone(),
        }
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
        let afters: Vec<_> = entry.balances.iter().map(|after| (after.available, after.frozen, after.seq)).collect();
        assert_eq!(afters, [(7, 0, 3), (4, 0, 2)], "fund, freeze, settle; fund, settle");
        assert_eq!(store.entry(&entry.id).await?, entry, "the postings record the balances after");
        crate::store::fixtures::assert_postings_carry_their_instants(&store).await?;
        Ok(())
    }

    #[tokio::test]
    async fn an_entry_autocommits_in_the_statement_unless_it_opens_a_hold() -> anyhow::Result<()> {
        let Some((_database, store, hold)) = with_hold().await? else { return Ok(()) };
        let opening = EntryWrite {
            plan: freezing(&HoldId::generate(), 1, "freeze-3"),
            known: Arc::clone(&store.known),
            clock: store.clock.clone(),
        };
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
    fn placeholders_run_on_across_the_lists() -> anyhow::Result<()> {
        let plan = WritePlan {
            meta: freezing(&HoldId::generate(), 1, "move").meta,
            legs: vec![Leg::available(user(1), points(), -1), Leg::available(user(2), points(), 1)],
            new_hold: None,
            resolutions: Vec::new(),
        };
        let entry = Entry::new("entry".into(), &plan.meta, 7, plan.legs.clone());
        let deltas = balanced_deltas(&entry.legs)?;
        let mut params = Params::numbered();
        let sql = statement(&mut params, &entry, &plan.meta, &deltas, &[])?;
        assert!(sql.contains("(VALUES ($1, $2, $3, $4, $5, $6, $7, $8)) AS e WHERE (SELECT n FROM serialized) >= 0"));
        assert!(sql.contains("pg_advisory_xact_lock") && sql.contains("FROM moves) AS keys ORDER BY k"));
        assert!(sql.contains("VALUES ($9, $10, $11, $12, $13, $14), ($15, $16, $17, $18, $19, $20)"));
        assert!(sql.contains("VALUES ($21, $22, $23, $24, $25, $26, $27, $28, $29), ($30,"));
        assert!(sql.contains("= $39 AND") && sql.contains("= $39 THEN 1 ELSE 0 END AS written"));
        assert!(sql.contains("updated_at = $8") && !sql.contains("holds"));
        assert_eq!(params.len(), 39);
        let resolved = [Resolved { id: HoldId::generate(), resolution: Resolution::Release, settled: 0 }];
        let mut params = Params::numbered();
        let sql = statement(&mut params, &entry, &plan.meta, &deltas, &resolved)?;
        assert!(sql.contains("(VALUES ($40, $41, $42)) AS r") && sql.contains("FROM resolved) = $43"));
        assert!(sql.contains("resolved_at = $8,") && params.len() == 43);
        Ok(())
    }
}
