//! Migrations 0004 (resulting balances) and 0005 (ledger history) on a ledger whose
//! history was written before them: each balance's entries are replayed in order
//! (created_at, then entry id), and each posting takes its entry's instant.

use economy_kit::db::{Db, DbOptions};
use economy_kit::testing::TestDatabase;
use economy_kit::time::system_clock;
use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, Migrator};

use super::{LedgerStore, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
use crate::domain::commands::{AdjustBalance, Direction};
use crate::domain::ids::{Amount, UserId};
use crate::store::fixtures::{key, points, user};

/// The migrations of a set up to a version.
#[derive(Debug)]
struct UpTo(Vec<Migration>);

impl<'s> MigrationSource<'s> for UpTo {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { Ok(self.0) })
    }
}

async fn up_to(migrator: &Migrator, version: i64) -> anyhow::Result<Migrator> {
    let migrations = migrator.iter().filter(|migration| migration.version <= version).cloned().collect();
    Ok(Migrator::new(UpTo(migrations)).await?)
}

/// History as the ledger wrote it before 0004: user 2 credited 100 (t=1), 30 of it frozen
/// by a hold (t=2), then two entries at one instant (t=3, ordered by id): "e3" pays 15 to
/// user 3 in two legs, "e4" pays 1 back.
const HISTORY: &str = "
INSERT INTO assets (code, display_name, kind, metadata, created_at, updated_at) VALUES ('POINTS', 'Points', 'currency', '{}', 0, 0);
INSERT INTO accounts (account, user_id, created_at) VALUES ('SYSTEM_ISSUANCE', NULL, 0), ('user:2', 2, 0), ('user:3', 3, 0);
INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, actor, created_at) VALUES
    ('e1', 'k1', 'f', 'ADMIN_ADJUST', '', '', 'user:1', 1),
    ('e2', 'k2', 'f', 'HOLD_CREATE', '', '', 'user:1', 2),
    ('e4', 'k4', 'f', 'TRANSFER', '', '', 'user:1', 3),
    ('e3', 'k3', 'f', 'TRANSFER', '', '', 'user:1', 3);
INSERT INTO postings (entry_id, seq, account, asset_code, bucket, amount, hold_id) VALUES
    ('e1', 0, 'user:2', 'POINTS', 'available', 100, NULL),
    ('e1', 1, 'SYSTEM_ISSUANCE', 'POINTS', 'available', -100, NULL),
    ('e2', 0, 'user:2', 'POINTS', 'available', -30, 'h1'),
    ('e2', 1, 'user:2', 'POINTS', 'frozen', 30, 'h1'),
    ('e3', 0, 'user:2', 'POINTS', 'available', -10, NULL),
    ('e3', 1, 'user:2', 'POINTS', 'available', -5, NULL),
    ('e3', 2, 'user:3', 'POINTS', 'available', 15, NULL),
    ('e4', 0, 'user:3', 'POINTS', 'available', -1, NULL),
    ('e4', 1, 'user:2', 'POINTS', 'available', 1, NULL);
INSERT INTO holds (id, idempotency_key, account, asset_code, amount, settled_amount, status, reference, created_at) VALUES
    ('h1', 'k2', 'user:2', 'POINTS', 30, 0, 'open', '', 2);
INSERT INTO balances (account, asset_code, available, frozen, updated_at) VALUES
    ('user:2', 'POINTS', 56, 30, 3), ('user:3', 'POINTS', 14, 0, 3), ('SYSTEM_ISSUANCE', 'POINTS', -100, 0, 1);
";

/// `(entry, account, available_after, frozen_after, balance_seq)` of every posting.
type Recorded = (String, String, i64, i64, i64);

#[tokio::test]
async fn existing_history_is_replayed_into_running_balances() -> anyhow::Result<()> {
    let database = TestDatabase::new().await?;
    let db = Db::connect(&database.url, &DbOptions::default()).await?;
    db.migrate(&up_to(&SQLITE_MIGRATIONS, 3).await?, &up_to(&POSTGRES_MIGRATIONS, 3).await?).await?;
    for statement in HISTORY.split(';').filter(|statement| !statement.trim().is_empty()) {
        sqlx::query(statement).execute(&mut *db.writer().await?).await?;
    }
    db.close().await;

    let store =
        LedgerStore::open(&database.url, &DbOptions::default(), &["SYSTEM_ISSUANCE".into()], system_clock()).await?;
    let recorded: Vec<Recorded> = sqlx::query_as(
        "SELECT entry_id, account, available_after, frozen_after, balance_seq FROM postings ORDER BY entry_id, seq",
    )
    .fetch_all(store.db.pool())
    .await?;
    let row = |entry: &str, account: &str, available: i64, frozen: i64, seq: i64| {
        (entry.to_owned(), account.to_owned(), available, frozen, seq)
    };
    assert_eq!(
        recorded,
        [
            row("e1", "user:2", 100, 0, 1),
            row("e1", "SYSTEM_ISSUANCE", -100, 0, 1),
            row("e2", "user:2", 70, 30, 2),
            row("e2", "user:2", 70, 30, 2),
            row("e3", "user:2", 55, 30, 3),
            row("e3", "user:2", 55, 30, 3),
            row("e3", "user:3", 15, 0, 1),
            row("e4", "user:3", 14, 0, 2),
            row("e4", "user:2", 56, 30, 4),
        ]
    );
    let seqs: Vec<(String, i64)> =
        sqlx::query_as("SELECT account, seq FROM balances ORDER BY account").fetch_all(store.db.pool()).await?;
    assert_eq!(seqs, [("SYSTEM_ISSUANCE".to_owned(), 1), ("user:2".to_owned(), 4), ("user:3".to_owned(), 2)]);
    let report = store.reconcile_whole().await?;
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    // Migration 0005 gives every posting its entry's instant; the as-of reads follow.
    crate::store::fixtures::assert_postings_carry_their_instants(&store).await?;
    let user2 = user(2);
    let as_of = |at| store.balance_as_of(&user2, "POINTS", at);
    assert_eq!((as_of(0).await?.seq, as_of(2).await?.available, as_of(3).await?.available), (0, 70, 56));

    // New entries continue each balance's versions.
    let credit = AdjustBalance {
        user: UserId::parse(2).expect("user id"),
        asset: points(),
        direction: Direction::Credit,
        amount: Amount::parse(4).expect("amount"),
        reason: "after".into(),
    };
    let applied = store.apply(&credit.plan(key("after"), "user:1")).await?;
    let after =
        applied.entry.balance_after(&user(2), &points()).map(|after| (after.available, after.frozen, after.seq));
    assert_eq!(after, Some((60, 30, 5)));
    assert!(store.reconcile_whole().await?.findings.is_empty());
    Ok(())
}
