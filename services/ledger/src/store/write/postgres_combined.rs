//! Several plain movements (no hold opened or resolved; assets and accounts known) in one
//! autocommitted statement on PostgreSQL: chosen for every plain entry there. Plain
//! entries that arrive while the previous statement runs are queued and written together:
//! one statement of data-modifying CTEs claims every key, locks the balance rows the
//! entries move in the one order every write path uses (`balance_deltas`: by account,
//! then asset), checks each entry's moves in queue order against the balances as the
//! entries before it leave them (the bounds of the conditional UPDATE of the other
//! paths), moves each balance by the entries' sum and as many versions, and inserts every
//! posting with the balance as its entry leaves it (a running sum in queue order).
//! Anything short of every entry applying (a key taken, a refusal, a missing balance row,
//! a lost deadlock) aborts the whole statement; each entry then goes through the group
//! commit alone ([`super::postgres_statement`], then if need be
//! [`super::transaction`]), which decides it and names any refusal. A lone entry goes
//! alone at once.

use std::collections::{BTreeSet, HashSet};

use economy_kit::db::Db;
use economy_kit::db::params::{Params, tuple};
use economy_kit::group_commit::{GroupCommit, Submitted};
use futures_util::future::join_all;
use sqlx::AnyConnection;

use super::rows::{MOVE_COLUMNS, POSTING_COLUMNS, balance_locks, bind_entry, bind_moves, count, posting_rows};
use super::{EntryWrite, batch_now};
use crate::domain::entry::{BalanceAfter, BalanceDelta, Entry, balanced_deltas};
use crate::domain::ids::{AccountId, AssetCode};

/// Applies a queued batch of plain `writes`: together when every one applies, else each
/// alone. Results in `writes` order.
pub(super) async fn post_batch(
    db: Db,
    entries: GroupCommit<EntryWrite>,
    writes: Vec<EntryWrite>,
) -> Vec<Submitted<EntryWrite>> {
    if writes.len() > 1
        && let Some(written) = post_together(&db, &writes, batch_now(&writes)).await
    {
        return written.into_iter().map(|entry| Ok(Ok(entry))).collect();
    }
    join_all(writes.into_iter().map(|write| entries.submit(write))).await
}

/// The entries of `writes` when one statement applied them all; `None` otherwise: when it
/// applied none, or on any error (even one after a commit: every key is then taken for
/// good: going alone, each entry then finds its key taken and `LedgerStore::apply` replays
/// it).
async fn post_together(db: &Db, writes: &[EntryWrite], now: i64) -> Option<Vec<Entry>> {
    let deltas: Vec<Vec<BalanceDelta>> =
        writes.iter().map(|write| balanced_deltas(&write.plan.legs)).collect::<Result<_, _>>().ok()?;
    let mut keys = HashSet::new();
    if deltas.iter().any(Vec::is_empty) || !writes.iter().all(|write| keys.insert(write.plan.meta.key.as_str())) {
        return None;
    }
    let entries: Vec<Entry> = writes.iter().map(|write| write.entry(now, write.plan.legs.clone())).collect();
    let balances: BTreeSet<(&AccountId, &AssetCode)> =
        deltas.iter().flatten().map(|delta| (&delta.account, &delta.asset)).collect();
    let mut params = Params::numbered();
    let sql = statement(&mut params, writes, &entries, &deltas, &balances, now).ok()?;
    let mut writer = db.writer().await.ok()?;
    let rows: Result<Vec<StepRow>, _> =
        sqlx::query_as_with(&sql, params.into_arguments()).fetch_all(&mut *writer).await;
    let rows = writer.finish(rows).ok()?;
    Some(with_balances(entries, &deltas, &rows))
}

/// The entries of `writes` written by one combined statement on `conn` (inside the
/// caller's transaction: the opening balances of an import, `super::import`); `None`
/// when they cannot go together (a duplicate key, an empty entry); `Err` when the
/// statement failed, as it does unless every entry applied.
pub(super) async fn post_in(
    conn: &mut AnyConnection,
    writes: &[EntryWrite],
    now: i64,
) -> Result<Option<Vec<Entry>>, sqlx::Error> {
    let Ok(deltas) = writes.iter().map(|write| balanced_deltas(&write.plan.legs)).collect::<Result<Vec<_>, _>>() else {
        return Ok(None);
    };
    let mut keys = HashSet::new();
    if deltas.iter().any(Vec::is_empty) || !writes.iter().all(|write| keys.insert(write.plan.meta.key.as_str())) {
        return Ok(None);
    }
    let entries: Vec<Entry> = writes.iter().map(|write| write.entry(now, write.plan.legs.clone())).collect();
    let balances: BTreeSet<(&AccountId, &AssetCode)> =
        deltas.iter().flatten().map(|delta| (&delta.account, &delta.asset)).collect();
    let mut params = Params::numbered();
    let sql = statement(&mut params, writes, &entries, &deltas, &balances, now)?;
    let rows: Vec<StepRow> = sqlx::query_as_with(&sql, params.into_arguments()).fetch_all(conn).await?;
    Ok(Some(with_balances(entries, &deltas, &rows)))
}

/// A row of [`statement`]: 1, then one balance move (its number) with the balance after
/// it (available, frozen, seq).
type StepRow = (i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// `entries` with the balances each leaves (`rows`, by move number over `deltas`).
fn with_balances(entries: Vec<Entry>, deltas: &[Vec<BalanceDelta>], rows: &[StepRow]) -> Vec<Entry> {
    let mut afters: Vec<Vec<BalanceAfter>> = vec![Vec::new(); entries.len()];
    let moves: Vec<(usize, &BalanceDelta)> =
        deltas.iter().enumerate().flat_map(|(index, moves)| moves.iter().map(move |delta| (index, delta))).collect();
    for (_, number, available, frozen, seq) in rows {
        let found = number.and_then(|number| moves.get(usize::try_from(number).ok()?));
        if let (Some((index, delta)), Some(available), Some(frozen), Some(seq)) = (found, available, frozen, seq) {
            let after = BalanceAfter {
                account: delta.account.clone(),
                asset: delta.asset.clone(),
                available: *available,
                frozen: *frozen,
                seq: *seq,
            };
            afters[*index].push(after);
        }
    }
    entries.into_iter().zip(afters).map(|(entry, balances)| entry.with_balances(balances)).collect()
}

/// The number of `entry`'s move of `account`'s `asset` among all `deltas` (numbered in
/// queue order from 0; `offset` is the number of the entry's first move).
fn move_number(entry_deltas: &[BalanceDelta], offset: usize, account: &str, asset: &str) -> i64 {
    let index = entry_deltas.iter().position(|delta| delta.account.key() == account && delta.asset.as_str() == asset);
    count(offset + index.unwrap_or_default())
}

/// The statement for the `entries` of `writes`, their balance moves `deltas` (one per
/// entry and balance, numbered in queue order) and the distinct `balances` they move
/// (ranked in lock order), its values bound to `params` in this order: entries, postings
/// (each with the number of its move), moves, ranked balances, then `now` and the counts
/// of entries, moves and balances. Returns a [`StepRow`] per move, or divides by zero
/// when not every entry applied. `locked` takes the row locks in rank order before the
/// UPDATE moves any (an uncorrelated subquery runs once, before the first row), and
/// returns the rows as locked, so `steps` runs from the latest balances and versions.
fn statement<'q>(
    params: &mut Params<'q>,
    writes: &'q [EntryWrite],
    entries: &'q [Entry],
    deltas: &'q [Vec<BalanceDelta>],
    balances: &BTreeSet<(&'q AccountId, &'q AssetCode)>,
    now: i64,
) -> Result<String, sqlx::Error> {
    let mut entry_rows = Vec::with_capacity(entries.len());
    for (write, entry) in writes.iter().zip(entries) {
        entry_rows.push(tuple(&bind_entry(params, &entry.id, &write.plan.meta, now)?));
    }
    let entry_rows = entry_rows.join(", ");
    let mut posting_rows_sql = Vec::new();
    let mut offset = 0;
    for (entry, entry_deltas) in entries.iter().zip(deltas) {
        for row in posting_rows(entry) {
            let number = move_number(entry_deltas, offset, &row.account, row.asset);
            posting_rows_sql.push(row.bind_numbered(params, number)?);
        }
        offset += entry_deltas.len();
    }
    let posting_rows = posting_rows_sql.join(", ");
    let move_rows = bind_moves(params, deltas.iter().flatten())?;
    let mut balance_rows = Vec::with_capacity(balances.len());
    for (rank, (account, asset)) in (0_i64..).zip(balances) {
        balance_rows.push(tuple(&[params.push(account.key())?, params.push(asset.as_str())?, params.push(rank)?]));
    }
    let balance_rows = balance_rows.join(", ");
    let now = params.push(now)?;
    let entry_count = params.push(count(entries.len()))?;
    let move_count = params.push(count(deltas.iter().map(Vec::len).sum()))?;
    let balance_count = params.push(count(balances.len()))?;
    let serialize = balance_locks("ranked");
    Ok(format!(
        "WITH ranked (account, asset, r) AS (
    VALUES {balance_rows}
), serialized AS (
    {serialize}
), entries AS (
    INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, actor, created_at)
    SELECT * FROM (VALUES {entry_rows}) AS e WHERE (SELECT n FROM serialized) >= 0
    ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
), moves ({MOVE_COLUMNS}) AS (
    VALUES {move_rows}
), locked AS (
    SELECT b.account, b.asset_code, b.available, b.frozen, b.seq
    FROM ranked JOIN balances AS b ON b.account = ranked.account AND b.asset_code = ranked.asset
    WHERE (SELECT n FROM serialized) >= 0
    ORDER BY ranked.r FOR UPDATE OF b
), steps AS (
    SELECT m.n, m.available_low, m.available_high, m.frozen_low, m.frozen_high,
        l.available + SUM(m.available) OVER w - m.available AS available_before,
        l.frozen + SUM(m.frozen) OVER w - m.frozen AS frozen_before,
        l.available + SUM(m.available) OVER w AS available_after,
        l.frozen + SUM(m.frozen) OVER w AS frozen_after,
        l.seq + ROW_NUMBER() OVER w AS seq_after
    FROM moves AS m JOIN locked AS l ON l.account = m.account AND l.asset_code = m.asset
    WINDOW w AS (PARTITION BY m.account, m.asset ORDER BY m.n)
), fits AS (
    SELECT COUNT(*) AS n FROM steps
    WHERE available_before BETWEEN available_low AND available_high
        AND frozen_before BETWEEN frozen_low AND frozen_high
), sums AS (
    SELECT account, asset, SUM(available) AS available, SUM(frozen) AS frozen, COUNT(*) AS entries
    FROM moves GROUP BY account, asset
), moved AS (
    UPDATE balances AS b SET available = b.available + s.available, frozen = b.frozen + s.frozen,
        seq = b.seq + s.entries, updated_at = {now}
    FROM sums AS s
    WHERE (SELECT n FROM fits) = {move_count} AND (SELECT COUNT(*) FROM entries) = {entry_count}
        AND b.account = s.account AND b.asset_code = s.asset
    RETURNING 1
), posted AS (
    INSERT INTO postings ({POSTING_COLUMNS})
    SELECT p.entry_id, p.seq, p.account, p.asset, p.bucket, p.amount, p.hold,
        s.available_after, s.frozen_after, s.seq_after, {now}
    FROM (VALUES {posting_rows}) AS p (entry_id, seq, account, asset, bucket, amount, hold, n)
    JOIN entries ON entries.id = p.entry_id
    JOIN steps AS s ON s.n = p.n
)
SELECT c.written, s.n, CAST(s.available_after AS BIGINT), CAST(s.frozen_after AS BIGINT), s.seq_after
FROM (SELECT 1 / CASE WHEN (SELECT COUNT(*) FROM moved) = {balance_count} THEN 1 ELSE 0 END AS written) AS c
LEFT JOIN steps AS s ON true"
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use economy_kit::testing::TestDatabase;
    use economy_kit::time::now_millis;

    use super::*;
    use crate::domain::LedgerError;
    use crate::domain::commands::{PostTransaction, WritePlan};
    use crate::store::LedgerStore;
    use crate::store::fixtures::{key, points, postgres_store, user};
    use crate::store::write::Refusal;

    fn transfer(from: i64, to: i64, amount: i64, name: &str) -> WritePlan {
        let postings = vec![(user(from), points(), -amount), (user(to), points(), amount)];
        let command = PostTransaction {
            business_type: "TRANSFER".into(),
            correlation_id: String::new(),
            memo: String::new(),
            postings,
            settlements: vec![],
        };
        command.plan(key(name), "user:1")
    }

    /// A PostgreSQL store where users 1, 2 and 3 hold 5 POINTS each.
    async fn funded() -> anyhow::Result<Option<(TestDatabase, LedgerStore)>> {
        postgres_store(&[(1, 5), (2, 5), (3, 5)]).await
    }

    fn writes(store: &LedgerStore, plans: Vec<WritePlan>) -> Vec<EntryWrite> {
        plans
            .into_iter()
            .map(|plan| EntryWrite { plan, known: Arc::clone(&store.known), clock: store.clock.clone() })
            .collect()
    }

    async fn balances(store: &LedgerStore) -> anyhow::Result<Vec<i64>> {
        let mut available = Vec::new();
        for id in 1..=3 {
            available.push(store.balance(&user(id), "POINTS").await?.0);
        }
        Ok(available)
    }

    #[tokio::test]
    async fn entries_apply_together_only_when_each_fits_in_queue_order() -> anyhow::Result<()> {
        let Some((_database, store)) = funded().await? else { return Ok(()) };
        // User 1 pays 10 before being paid 5: the sum fits, the first entry does not.
        let unfunded = writes(&store, vec![transfer(1, 2, 10, "pay"), transfer(3, 1, 5, "refill")]);
        assert!(post_together(&store.db, &unfunded, now_millis()).await.is_none());
        assert_eq!(balances(&store).await?, vec![5, 5, 5], "nothing of the batch remains");
        let funded = writes(&store, vec![transfer(3, 1, 5, "refill"), transfer(1, 2, 10, "pay")]);
        let entries =
            post_together(&store.db, &funded, now_millis()).await.ok_or_else(|| anyhow::anyhow!("applied"))?;
        assert_eq!(entries.len(), 2);
        assert_eq!(balances(&store).await?, vec![0, 15, 0]);
        // Each entry records the balances as it leaves them, one version up per entry.
        let afters: Vec<Vec<(i64, i64, i64)>> = entries
            .iter()
            .map(|entry| entry.balances.iter().map(|after| (after.available, after.frozen, after.seq)).collect())
            .collect();
        assert_eq!(afters, [vec![(10, 0, 2), (0, 0, 2)], vec![(0, 0, 3), (15, 0, 2)]]);
        for (entry, plan) in entries.iter().zip([transfer(3, 1, 5, "refill"), transfer(1, 2, 10, "pay")]) {
            assert_eq!(&store.entry(&entry.id).await?, entry, "the postings record the same");
            assert_eq!(store.entry(&entry.id).await?.legs, plan.legs);
            let replayed = store.apply(&plan).await?;
            assert!(replayed.replayed && replayed.entry.id == entry.id, "the key names the entry");
        }
        let taken = writes(&store, vec![transfer(2, 1, 1, "fresh"), transfer(2, 3, 1, "pay")]);
        assert!(post_together(&store.db, &taken, now_millis()).await.is_none(), "a taken key stops the batch");
        assert_eq!(balances(&store).await?, vec![0, 15, 0]);
        crate::store::fixtures::assert_postings_carry_their_instants(&store).await?;
        Ok(())
    }

    #[tokio::test]
    async fn entries_the_statement_did_not_apply_are_decided_alone() -> anyhow::Result<()> {
        let Some((_database, store)) = funded().await? else { return Ok(()) };
        let batch = writes(&store, vec![transfer(1, 2, 10, "unfunded"), transfer(2, 3, 1, "funded")]);
        let outcomes = post_batch(store.db.clone(), store.entries.clone(), batch).await;
        let [Ok(Err(Refusal::Refused(refused))), Ok(Ok(entry))] = outcomes.as_slice() else {
            anyhow::bail!("the unfunded entry refused, the funded one applied: {outcomes:?}");
        };
        assert!(matches!(refused, LedgerError::InsufficientBalance { .. }), "{refused:?}");
        assert_eq!(store.entry(&entry.id).await?.legs, transfer(2, 3, 1, "funded").legs);
        assert_eq!(balances(&store).await?, vec![5, 4, 6]);
        Ok(())
    }

    #[test]
    fn placeholders_run_on_across_the_lists() -> anyhow::Result<()> {
        // Two entries of two postings each moving three balances (four moves).
        let writes: Vec<EntryWrite> = [transfer(1, 2, 1, "a"), transfer(2, 3, 1, "b")]
            .into_iter()
            .map(|plan| EntryWrite { plan, known: Arc::default(), clock: economy_kit::time::system_clock() })
            .collect();
        let entries: Vec<Entry> = writes.iter().map(|write| write.entry(7, write.plan.legs.clone())).collect();
        let deltas: Vec<Vec<BalanceDelta>> =
            writes.iter().map(|write| balanced_deltas(&write.plan.legs)).collect::<Result<_, _>>()?;
        let balances = deltas.iter().flatten().map(|delta| (&delta.account, &delta.asset)).collect();
        let mut params = Params::numbered();
        let sql = statement(&mut params, &writes, &entries, &deltas, &balances, 7)?;
        assert_eq!(params.len(), 97);
        assert!(sql.contains("VALUES ($1, $2, $3, $4, $5, $6, $7, $8), ($9,"));
        assert!(sql.contains("VALUES ($17, $18, $19, $20, $21, $22, $23, $24), ($25,"));
        assert!(sql.contains("VALUES ($49, $50, $51, $52, $53, $54, $55, $56, $57), ($58,"));
        assert!(sql.contains("VALUES ($85, $86, $87), ($88, $89, $90), ($91, $92, $93)\n"));
        assert!(sql.contains("updated_at = $94") && sql.contains("= $96 AND (SELECT COUNT(*) FROM entries) = $95"));
        assert!(sql.contains("= $97 THEN 1 ELSE 0 END AS written"));
        Ok(())
    }
}
