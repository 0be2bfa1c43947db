//! What the store's PostgreSQL unit tests start from.

use std::collections::BTreeMap;

use economy_kit::db::{Backend, DbOptions};
use economy_kit::testing::TestDatabase;
use economy_kit::time::system_clock;

use crate::domain::catalog::{Asset, AssetKind};
use crate::domain::commands::{AdjustBalance, Direction};
use crate::domain::ids::{AccountId, Amount, AssetCode, IdempotencyKey, UserId};
use crate::store::LedgerStore;

/// User `id`'s account.
pub(super) fn user(id: i64) -> AccountId {
    AccountId::User(UserId::parse(id).expect("user id"))
}

/// The asset every fixture moves.
pub(super) fn points() -> AssetCode {
    AssetCode::parse("POINTS").expect("asset code")
}

/// An idempotency key.
pub(super) fn key(name: &str) -> IdempotencyKey {
    IdempotencyKey::parse(name).expect("key")
}

/// A PostgreSQL store with the POINTS asset where each `(user, amount)` of `funding` was
/// credited; `None` on SQLite, where the PostgreSQL forms do not run.
pub(super) async fn postgres_store(funding: &[(i64, i64)]) -> anyhow::Result<Option<(TestDatabase, LedgerStore)>> {
    let database = TestDatabase::new().await?;
    let store =
        LedgerStore::open(&database.url, &DbOptions::default(), &["SYSTEM_ISSUANCE".into()], system_clock()).await?;
    if store.db.backend() == Backend::Sqlite {
        return Ok(None);
    }
    let asset = Asset {
        code: points(),
        display_name: "Points".into(),
        kind: AssetKind::Currency,
        metadata: BTreeMap::new(),
        created_at: 0,
    };
    store.define_asset(&asset).await?;
    for &(id, amount) in funding {
        let credit = AdjustBalance {
            user: UserId::parse(id).expect("user id"),
            asset: points(),
            direction: Direction::Credit,
            amount: Amount::parse(amount).expect("amount"),
            reason: "fund".into(),
        };
        store.apply(&credit.plan(key(&format!("fund-{id}")), "admin:1")).await?;
    }
    Ok(Some((database, store)))
}

/// Fails unless `store` holds postings and each carries its entry's instant
/// (docs/ledger.md, "Balances at an instant").
pub(super) async fn assert_postings_carry_their_instants(store: &LedgerStore) -> anyhow::Result<()> {
    let (postings, mismatched): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN p.created_at = e.created_at THEN 0 ELSE 1 END), 0) \
         FROM postings AS p JOIN journal_entries AS e ON e.id = p.entry_id",
    )
    .fetch_one(store.db.pool())
    .await?;
    anyhow::ensure!(
        postings > 0 && mismatched == 0,
        "{mismatched} of {postings} postings without their entry's instant"
    );
    Ok(())
}
