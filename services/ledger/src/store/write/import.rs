//! Opening balances in bulk (docs/import.md, "Speed"): the entries of one `ImportBalances`
//! call that are new share ONE transaction on the writer. The user accounts they credit
//! are created in one statement, the assets and system accounts they name are checked in
//! one read, and the entries are then written by the bulk form of the backend — on SQLite
//! [`super::sqlite_batch`] (decided in memory, a few statements), on PostgreSQL the
//! combined statement of [`super::postgres_combined`] after the balance rows it moves are
//! made sure to exist — so they are the same journal entries, postings and resulting
//! balances every other path writes. Whatever the bulk form does not take (a key already
//! used, an asset or system account missing, a refusal, the transaction failing) goes
//! through [`LedgerStore::apply`] one entry at a time, which decides it and names the
//! refusal; a failed transaction leaves nothing behind.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use economy_kit::db::Backend;
use economy_kit::db::params::{Params, list, tuple};
use futures_util::future::join_all;
use sqlx::AnyConnection;

use super::{Applied, EntryWrite, postgres_combined, sqlite_batch};
use crate::domain::LedgerError;
use crate::domain::commands::WritePlan;
use crate::domain::entry::Entry;
use crate::store::LedgerStore;
use crate::store::known::KnownRows;

/// Most entries one bulk statement carries: PostgreSQL's combined statement binds about
/// fifty values an entry, within its 65,535.
const MAX_BULK: usize = 500;

impl LedgerStore {
    /// Applies the opening entries `plans` (each a plain movement: no hold), each exactly
    /// once per idempotency key, answering each as [`LedgerStore::apply`] would (results
    /// in `plans` order). `Err` only when storage fails outside a row's own write.
    pub async fn apply_imports(&self, plans: &[WritePlan]) -> Result<Vec<Result<Applied, LedgerError>>, LedgerError> {
        let taken = self.taken_keys(plans).await?;
        let mut written: Vec<Option<Entry>> = vec![None; plans.len()];
        let fresh: Vec<usize> = (0..plans.len())
            .filter(|index| plans[*index].new_hold.is_none() && !taken.contains(plans[*index].meta.key.as_str()))
            .collect();
        for chunk in fresh.chunks(MAX_BULK) {
            let chunk_plans: Vec<&WritePlan> = chunk.iter().map(|index| &plans[*index]).collect();
            for (index, entry) in chunk.iter().zip(self.write_together(&chunk_plans).await) {
                written[*index] = entry;
            }
        }
        if written.iter().any(Option::is_some) {
            self.appended.committed();
        }
        let answers = plans.iter().zip(written).map(|(plan, entry)| async move {
            match entry {
                Some(entry) => {
                    self.known.learn(&entry.legs);
                    crate::metrics::entry_written(&entry.business_type);
                    Ok(Applied { entry, replayed: false })
                }
                None => self.apply(plan).await,
            }
        });
        Ok(join_all(answers).await)
    }

    /// The keys of `plans` already claimed by a journal entry.
    async fn taken_keys(&self, plans: &[WritePlan]) -> Result<HashSet<String>, LedgerError> {
        let mut taken = HashSet::new();
        for chunk in plans.chunks(MAX_BULK) {
            let mut params = Params::for_backend(self.db.backend());
            let keys = params.push_each(chunk.iter().map(|plan| plan.meta.key.as_str()))?;
            let sql = format!("SELECT idempotency_key FROM journal_entries WHERE idempotency_key IN ({})", list(&keys));
            let rows: Vec<(String,)> =
                sqlx::query_as_with(&sql, params.into_arguments()).fetch_all(self.db.pool()).await?;
            taken.extend(rows.into_iter().map(|(key,)| key));
        }
        Ok(taken)
    }

    /// The entries of `plans` written together, each `None` when the bulk form left it
    /// (then nothing of it was written).
    async fn write_together(&self, plans: &[&WritePlan]) -> Vec<Option<Entry>> {
        let none = || vec![None; plans.len()];
        if plans.len() < 2 {
            return none();
        }
        let Ok(mut writer) = self.db.writer().await else { return none() };
        let Ok(mut tx) = writer.begin().await else { return none() };
        let now = self.clock.now_millis();
        let outcome = match self.write_in(&mut tx, plans, now).await {
            Ok(written) => tx.commit().await.map(|()| written),
            Err(error) => {
                // Nothing of the batch remains; its rows go one at a time.
                let _rolled_back = tx.rollback().await;
                Err(error)
            }
        };
        writer.finish(outcome).unwrap_or_else(|_| none())
    }

    /// [`Self::write_together`] inside the transaction `conn`.
    async fn write_in(
        &self,
        conn: &mut AnyConnection,
        plans: &[&WritePlan],
        now: i64,
    ) -> Result<Vec<Option<Entry>>, sqlx::Error> {
        let existing = existing_rows(conn, plans).await?;
        // Its assets and system accounts exist; its user accounts are created now.
        let takes = |plan: &WritePlan| {
            plan.legs.iter().all(|leg| {
                existing.contains(leg.asset.as_str())
                    && (leg.account.user().is_some() || existing.contains(&leg.account.key()))
            })
        };
        let taken: Vec<&WritePlan> = plans.iter().copied().filter(|plan| takes(plan)).collect();
        create_user_accounts(conn, &taken, now).await?;
        // This batch's own vouching: its accounts and assets exist in this transaction.
        let known = Arc::new(KnownRows::default());
        let mut writes = Vec::new();
        let mut places = Vec::new();
        let mut keys = HashSet::new();
        for (place, plan) in plans.iter().enumerate() {
            if takes(plan) && keys.insert(plan.meta.key.as_str()) {
                known.learn(&plan.legs);
                let plan = (*plan).clone();
                writes.push(EntryWrite { plan, known: Arc::clone(&known), clock: self.clock.clone() });
                places.push(place);
            }
        }
        let mut written = vec![None; plans.len()];
        let entries = match self.db.backend() {
            Backend::Sqlite => sqlite_entries(conn, &writes).await?,
            Backend::Postgres => postgres_entries(conn, &writes, now).await?,
        };
        for (place, entry) in places.into_iter().zip(entries) {
            written[place] = entry;
        }
        Ok(written)
    }
}

/// The user accounts `plans` credit, created when missing (one statement).
async fn create_user_accounts(conn: &mut AnyConnection, plans: &[&WritePlan], now: i64) -> Result<(), sqlx::Error> {
    let users: BTreeSet<(String, i64)> = plans
        .iter()
        .flat_map(|plan| &plan.legs)
        .filter_map(|leg| leg.account.user().map(|user| (leg.account.key(), user.get())))
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    let mut params = Params::numbered();
    let mut rows = Vec::with_capacity(users.len());
    let created_at = params.push(now)?;
    for (account, user) in users {
        rows.push(tuple(&[params.push(account)?, params.push(user)?, created_at]));
    }
    let sql = format!(
        "INSERT INTO accounts (account, user_id, created_at) VALUES {} ON CONFLICT (account) DO NOTHING",
        rows.join(", ")
    );
    sqlx::query_with(&sql, params.into_arguments()).execute(conn).await.map(|_| ())
}

/// The asset codes and system account keys of `plans` that exist.
async fn existing_rows(conn: &mut AnyConnection, plans: &[&WritePlan]) -> Result<HashSet<String>, sqlx::Error> {
    let legs = || plans.iter().flat_map(|plan| &plan.legs);
    let assets: BTreeSet<&str> = legs().map(|leg| leg.asset.as_str()).collect();
    let accounts: BTreeSet<String> =
        legs().filter(|leg| leg.account.user().is_none()).map(|leg| leg.account.key()).collect();
    if accounts.is_empty() {
        return Ok(HashSet::new());
    }
    let mut params = Params::numbered();
    let asset_list = list(&params.push_each(assets)?);
    let account_list = list(&params.push_each(accounts)?);
    let sql = format!(
        "SELECT code FROM assets WHERE code IN ({asset_list}) \
         UNION ALL SELECT account FROM accounts WHERE account IN ({account_list})"
    );
    let rows: Vec<(String,)> = sqlx::query_as_with(&sql, params.into_arguments()).fetch_all(conn).await?;
    Ok(rows.into_iter().map(|(found,)| found).collect())
}

/// SQLite: the batch form of the group commit, inside this transaction.
async fn sqlite_entries(conn: &mut AnyConnection, writes: &[EntryWrite]) -> Result<Vec<Option<Entry>>, sqlx::Error> {
    let Some(results) = sqlite_batch::write_entries(writes, conn).await? else {
        return Ok(vec![None; writes.len()]);
    };
    // A key taken or a refusal: the entry goes alone, which names its outcome.
    Ok(results.into_iter().map(Result::ok).collect())
}

/// PostgreSQL: the balance rows the entries move made sure to exist (at zero, version 0,
/// which the combined statement moves to version 1 as the transaction path's insert
/// would), then the combined statement; all of them or (the statement failing) none.
async fn postgres_entries(
    conn: &mut AnyConnection,
    writes: &[EntryWrite],
    now: i64,
) -> Result<Vec<Option<Entry>>, sqlx::Error> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let balances: BTreeSet<(String, &str)> =
        writes.iter().flat_map(|write| &write.plan.legs).map(|leg| (leg.account.key(), leg.asset.as_str())).collect();
    let mut params = Params::numbered();
    let mut rows = Vec::with_capacity(balances.len());
    let updated_at = params.push(now)?;
    for (account, asset) in balances {
        rows.push(tuple(&[params.push(account)?, params.push(asset)?, updated_at]));
    }
    let sql = format!(
        "INSERT INTO balances (account, asset_code, available, frozen, updated_at, seq) \
         SELECT b.account, b.asset, 0, 0, b.at, 0 FROM (VALUES {}) AS b (account, asset, at) \
         ORDER BY b.account, b.asset ON CONFLICT (account, asset_code) DO NOTHING",
        rows.join(", ")
    );
    sqlx::query_with(&sql, params.into_arguments()).execute(&mut *conn).await?;
    match postgres_combined::post_in(conn, writes, now).await? {
        Some(entries) => Ok(entries.into_iter().map(Some).collect()),
        None => Err(sqlx::Error::Protocol("the combined statement took no entry".into())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use economy_kit::db::DbOptions;
    use economy_kit::testing::TestDatabase;
    use economy_kit::time::system_clock;

    use super::*;
    use crate::domain::catalog::{Asset, AssetKind};
    use crate::domain::commands::{AdjustBalance, Direction};
    use crate::domain::ids::{Amount, UserId};
    use crate::store::fixtures::{key, points, user};

    fn credit(id: i64, amount: i64) -> WritePlan {
        let credit = AdjustBalance {
            user: UserId::parse(id).expect("user id"),
            asset: points(),
            direction: Direction::Credit,
            amount: Amount::parse(amount).expect("amount"),
            reason: "opening".into(),
        };
        credit.plan(key(&format!("open-{id}-{amount}")), "admin:1")
    }

    #[tokio::test]
    async fn new_entries_are_written_together_and_again_replayed() -> anyhow::Result<()> {
        let database = TestDatabase::new().await?;
        let store =
            LedgerStore::open(&database.url, &DbOptions::default(), &["SYSTEM_ISSUANCE".into()], system_clock())
                .await?;
        let asset = Asset {
            code: points(),
            display_name: "Points".into(),
            kind: AssetKind::Currency,
            metadata: BTreeMap::new(),
            created_at: 0,
        };
        store.define_asset(&asset).await?;
        // New users, one of them twice.
        let plans = vec![credit(1, 5), credit(2, 7), credit(1, 3)];
        let together = store.write_together(&plans.iter().collect::<Vec<_>>()).await;
        assert!(together.iter().all(Option::is_some), "the bulk form took every entry");
        assert_eq!(store.balance(&user(1), "POINTS").await?.0, 8);
        let again = store.apply_imports(&plans).await?;
        assert!(again.iter().all(|applied| applied.as_ref().is_ok_and(|applied| applied.replayed)));
        let report = store.reconcile_whole().await?;
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        Ok(())
    }
}
