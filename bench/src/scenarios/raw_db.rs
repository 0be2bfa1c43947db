//! `raw-db`: the database's own limit for the ledger write, the baseline of the "end to end
//! vs raw database" ratio. No gRPC, no gateway, no service: each client issues the SQL
//! transaction of one write directly through sqlx, on a fresh database migrated with the
//! ledger's own schema and opened with the ledger's own pool settings (`Db`, 8
//! connections, SQLite WAL + `synchronous=FULL`, `BEGIN IMMEDIATE`).
//!
//! The write plan (legs, fingerprint) comes from the ledger's pure domain code, exactly
//! as the ledger builds it from a request; the statements reproduce
//! `services/ledger/src/store/write.rs` for a plan without holds, in its order, one
//! transaction (and one commit) per write — the ledger's group commit is not reproduced:
//!
//! 1. `BEGIN` (`BEGIN IMMEDIATE` on SQLite);
//! 2. `INSERT INTO journal_entries` (claims the UNIQUE key: the replay check);
//! 3. only on an asset's or account's first use (the funding writes of the setup; the
//!    ledger remembers what committed entries proved to exist): `SELECT code FROM assets`
//!    per asset, then per account (ordered) `INSERT INTO accounts … ON CONFLICT DO
//!    NOTHING` for users or `SELECT account FROM accounts` for system accounts;
//! 4. one multi-row `INSERT INTO postings`;
//! 5. per balance (ordered), the conditional `UPDATE balances … WHERE available BETWEEN …
//!    AND frozen BETWEEN …` (a balance's first write falls back to `INSERT`);
//! 6. `COMMIT`.

use std::collections::BTreeSet;

use economy_kit::db::Db;
use economy_kit::time::now_millis;
use economy_ledger::LedgerConfig;
use economy_ledger::domain::catalog::{Asset, AssetKind};
use economy_ledger::domain::commands::{AdjustBalance, Direction, PostTransaction, WritePlan};
use economy_ledger::domain::entry::{BalanceDelta, Leg, balance_deltas};
use economy_ledger::domain::ids::{AccountId, Amount, AssetCode, EntityId, IdempotencyKey, UserId};
use economy_ledger::store::LedgerStore;
use sqlx::{Any, Transaction};

use super::setup::ADMIN_BASE;
use super::{BenchOptions, LedgerOp};
use crate::clients::new_key;
use crate::driver::{self, Measurement, Outcome, Worker};
use crate::stack::Databases;

type Tx = Transaction<'static, Any>;

/// The asset moved.
const ASSET: &str = "POINTS";
/// What setup credits to every transfer source account.
const FUNDING: i64 = 1_000_000_000_000_000;
/// First user id of the accounts.
const USER_BASE: i64 = 1_000_000;

/// Why a raw write did not commit.
#[derive(Debug)]
enum RawError {
    /// The database refused a statement.
    Sql(sqlx::Error),
    /// A rule the ledger would report (e.g. a balance bound), by reason.
    Rule(&'static str, String),
}

impl From<sqlx::Error> for RawError {
    fn from(error: sqlx::Error) -> Self {
        Self::Sql(error)
    }
}

impl RawError {
    fn outcome(self) -> Outcome {
        match self {
            Self::Sql(error) => Outcome::unexpected("SQL", error.to_string()),
            Self::Rule(reason, detail) => Outcome::unexpected(reason, detail),
        }
    }
}

/// The ledger write one client repeats, as the ledger's domain would plan it.
#[derive(Debug, Clone)]
struct Write {
    op: LedgerOp,
    asset: AssetCode,
    from: UserId,
    to: UserId,
    actor: String,
}

impl Write {
    fn plan(&self, key: &str) -> anyhow::Result<WritePlan> {
        let key = IdempotencyKey::parse(key).map_err(anyhow::Error::msg)?;
        Ok(match self.op {
            LedgerOp::Transfer => PostTransaction {
                business_type: "TRANSFER".into(),
                correlation_id: String::new(),
                memo: "benchmark".into(),
                postings: vec![
                    (AccountId::User(self.from), self.asset.clone(), -1),
                    (AccountId::User(self.to), self.asset.clone(), 1),
                ],
                settlements: Vec::new(),
            }
            .plan(key, &self.actor),
            LedgerOp::Adjust => AdjustBalance {
                user: self.to,
                asset: self.asset.clone(),
                direction: Direction::Credit,
                amount: Amount::parse(1).map_err(anyhow::Error::msg)?,
                reason: "benchmark".into(),
            }
            .plan(key, &self.actor),
        })
    }
}

/// One client.
struct RawWriter {
    db: Db,
    write: Write,
    /// True until the client's first write committed (its accounts may not exist yet).
    first_use: bool,
}

impl Worker for RawWriter {
    async fn call(&mut self) -> Outcome {
        let plan = match self.write.plan(&new_key()) {
            Ok(plan) => plan,
            Err(error) => return Outcome::unexpected("HARNESS", format!("{error:#}")),
        };
        match apply(&self.db, &plan, self.first_use).await {
            Ok(()) => {
                self.first_use = false;
                Outcome::Ok
            }
            Err(error) => error.outcome(),
        }
    }
}

/// Creates a fresh database, measures, and drops it.
pub(super) async fn run(options: &BenchOptions, notes: &mut Vec<String>) -> anyhow::Result<Measurement> {
    let databases = Databases::create(options.target.backend(), &["ledger"]).await?;
    let measured = measure(databases.url("ledger")?, options).await;
    let dropped = databases.drop_all().await;
    let measured = measured?;
    dropped?;
    if options.target.is_remote() {
        notes.push("measured on a fresh local database of --database, not the running stack's".into());
    }
    Ok(measured)
}

async fn measure(url: &str, options: &BenchOptions) -> anyhow::Result<Measurement> {
    let config = LedgerConfig::default();
    let database = options.target.backend().db_options(config.database.clone());
    let store = LedgerStore::open(url, &database, &config.system_accounts()).await?;
    let asset = AssetCode::parse(ASSET).map_err(anyhow::Error::msg)?;
    let definition = Asset {
        code: asset.clone(),
        display_name: "Points".into(),
        kind: AssetKind::Currency,
        metadata: Default::default(),
        created_at: 0,
    };
    store.define_asset(&definition).await?;
    let db = store.db().clone();
    let user = |id: i64| UserId::parse(id).map_err(anyhow::Error::msg);
    let mut workers = Vec::new();
    for index in 0..options.load.concurrency.max(1) as i64 {
        let from = user(USER_BASE + 1 + 2 * index)?;
        let to = user(USER_BASE + 2 + 2 * index)?;
        let actor = format!("user:{}", ADMIN_BASE + index);
        if options.ledger_op == LedgerOp::Transfer {
            fund(&db, &asset, from, &actor).await?;
        }
        workers.push(RawWriter {
            db: db.clone(),
            write: Write { op: options.ledger_op, asset: asset.clone(), from, to, actor },
            first_use: true,
        });
    }
    let measured = driver::drive(workers, &options.load).await;
    db.close().await;
    measured
}

/// Credits `FUNDING` to `user` with the same raw transaction (an `AdjustBalance` plan).
async fn fund(db: &Db, asset: &AssetCode, user: UserId, actor: &str) -> anyhow::Result<()> {
    let plan = AdjustBalance {
        user,
        asset: asset.clone(),
        direction: Direction::Credit,
        amount: Amount::parse(FUNDING).map_err(anyhow::Error::msg)?,
        reason: "benchmark funding".into(),
    }
    .plan(IdempotencyKey::parse(&new_key()).map_err(anyhow::Error::msg)?, actor);
    apply(db, &plan, true).await.map_err(|error| anyhow::anyhow!("funding failed: {error:?}"))
}

/// The statements of the ledger's write path for `plan` (no holds); `first_use` adds the
/// existence checks of its assets and accounts.
async fn apply(db: &Db, plan: &WritePlan, first_use: bool) -> Result<(), RawError> {
    let meta = &plan.meta;
    let now = now_millis();
    let entry_id = EntityId::generate();
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, actor, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entry_id.as_str())
    .bind(meta.key.as_str())
    .bind(&meta.fingerprint)
    .bind(&meta.business_type)
    .bind(&meta.correlation_id)
    .bind(&meta.memo)
    .bind(&meta.actor)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if first_use {
        ensure_assets(&mut tx, &plan.legs).await?;
        ensure_accounts(&mut tx, &plan.legs, now).await?;
    }
    insert_postings(&mut tx, entry_id.as_str(), &plan.legs).await?;
    let deltas = balance_deltas(&plan.legs).map_err(|error| RawError::Rule("BALANCE_OVERFLOW", error.to_string()))?;
    for delta in &deltas {
        apply_delta(&mut tx, delta, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn ensure_assets(tx: &mut Tx, legs: &[Leg]) -> Result<(), RawError> {
    let assets: BTreeSet<&AssetCode> = legs.iter().map(|leg| &leg.asset).collect();
    for asset in assets {
        let found = sqlx::query("SELECT code FROM assets WHERE code = $1")
            .bind(asset.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        if found.is_none() {
            return Err(RawError::Rule("ASSET_NOT_FOUND", asset.to_string()));
        }
    }
    Ok(())
}

async fn ensure_accounts(tx: &mut Tx, legs: &[Leg], now: i64) -> Result<(), RawError> {
    let accounts: BTreeSet<&AccountId> = legs.iter().map(|leg| &leg.account).collect();
    for account in accounts {
        match account.user() {
            Some(user) => {
                sqlx::query(
                    "INSERT INTO accounts (account, user_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (account) DO NOTHING",
                )
                .bind(account.key())
                .bind(user.get())
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            None => {
                let found = sqlx::query("SELECT account FROM accounts WHERE account = $1")
                    .bind(account.key())
                    .fetch_optional(&mut **tx)
                    .await?;
                if found.is_none() {
                    return Err(RawError::Rule("ACCOUNT_NOT_FOUND", account.key()));
                }
            }
        }
    }
    Ok(())
}

/// The conditional UPDATE; a balance's first write inserts its row (a racing insert
/// retries the UPDATE once).
async fn apply_delta(tx: &mut Tx, delta: &BalanceDelta, now: i64) -> Result<(), RawError> {
    let (available_low, available_high) = delta.available_range();
    let (frozen_low, frozen_high) = delta.frozen_range();
    for _ in 0..2 {
        let updated = sqlx::query(
            "UPDATE balances SET available = available + $1, frozen = frozen + $2, updated_at = $3 \
             WHERE account = $4 AND asset_code = $5 AND available BETWEEN $6 AND $7 AND frozen BETWEEN $8 AND $9",
        )
        .bind(delta.available)
        .bind(delta.frozen)
        .bind(now)
        .bind(delta.account.key())
        .bind(delta.asset.as_str())
        .bind(available_low)
        .bind(available_high)
        .bind(frozen_low)
        .bind(frozen_high)
        .execute(&mut **tx)
        .await?;
        if updated.rows_affected() == 1 {
            return Ok(());
        }
        let current: Option<(i64, i64)> =
            sqlx::query_as("SELECT available, frozen FROM balances WHERE account = $1 AND asset_code = $2")
                .bind(delta.account.key())
                .bind(delta.asset.as_str())
                .fetch_optional(&mut **tx)
                .await?;
        let zero_allowed = (available_low..=available_high).contains(&0) && (frozen_low..=frozen_high).contains(&0);
        if current.is_some() || !zero_allowed {
            return Err(RawError::Rule("BALANCE_OUT_OF_BOUNDS", format!("{}/{}", delta.account, delta.asset)));
        }
        let inserted = sqlx::query(
            "INSERT INTO balances (account, asset_code, available, frozen, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (account, asset_code) DO NOTHING",
        )
        .bind(delta.account.key())
        .bind(delta.asset.as_str())
        .bind(delta.available)
        .bind(delta.frozen)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(());
        }
    }
    Err(RawError::Rule("BALANCE_CONTENDED", format!("{}/{}", delta.account, delta.asset)))
}

async fn insert_postings(tx: &mut Tx, entry_id: &str, legs: &[Leg]) -> Result<(), RawError> {
    const COLUMNS: usize = 7;
    let rows: Vec<String> = (0..legs.len())
        .map(|row| {
            let placeholders: Vec<String> =
                (1..=COLUMNS).map(|column| format!("${}", row * COLUMNS + column)).collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO postings (entry_id, seq, account, asset_code, bucket, amount, hold_id) VALUES {}",
        rows.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for (seq, leg) in (0_i64..).zip(legs) {
        query = query
            .bind(entry_id)
            .bind(seq)
            .bind(leg.account.key())
            .bind(leg.asset.as_str())
            .bind(leg.bucket.as_str())
            .bind(leg.amount)
            .bind(leg.hold_id.as_ref().map(|hold| hold.as_str().to_owned()));
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
