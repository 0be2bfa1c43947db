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
