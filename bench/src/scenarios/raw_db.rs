//! `raw-db`: the database's own limit for the ledger write, the baseline of the "end to end
//! vs raw database" ratio. No gRPC, no gateway, no service: each client runs the ledger
//! store's SQL transaction of one write directly (sqlx), on a fresh database migrated with the
//! ledger's own schema and opened with the ledger's own pool settings (`Db`, 8
//! connections, SQLite WAL + `synchronous=FULL`, `BEGIN IMMEDIATE`).
//!
//! The write plan (legs, fingerprint) comes from the ledger's pure domain code, exactly
//! as the ledger builds it from a request, and the transaction is the ledger store's own
//! (`LedgerStore::apply_unbatched`: `BEGIN` (`IMMEDIATE` on SQLite), journal entry
//! `INSERT` (the UNIQUE key is the replay check), existence checks of assets and accounts
//! on their first use only, one multi-row postings `INSERT`, one conditional `UPDATE` per
//! balance, `COMMIT`) — one transaction and one commit per write: the ledger's group
//! commit is deliberately left out.

use economy_ledger::LedgerConfig;
use economy_ledger::domain::catalog::{Asset, AssetKind};
use economy_ledger::domain::commands::{AdjustBalance, Direction, PostTransaction, WritePlan};
use economy_ledger::domain::ids::{AccountId, Amount, AssetCode, IdempotencyKey, UserId};
use economy_ledger::store::LedgerStore;

use super::setup::ADMIN_BASE;
use super::{BenchOptions, LedgerOp};
use crate::clients::new_key;
use crate::driver::{self, Measurement, Outcome, Worker};
use crate::stack::Databases;

/// The asset moved.
const ASSET: &str = "POINTS";
/// What setup credits to every transfer source account.
const FUNDING: i64 = 1_000_000_000_000_000;
/// First user id of the accounts.
const USER_BASE: i64 = 1_000_000;

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
    store: LedgerStore,
    write: Write,
}

impl Worker for RawWriter {
    async fn call(&mut self) -> Outcome {
        let plan = match self.write.plan(&new_key()) {
            Ok(plan) => plan,
            Err(error) => return Outcome::unexpected("HARNESS", format!("{error:#}")),
        };
        match self.store.apply_unbatched(&plan).await {
            Ok(Some(_)) => Outcome::Ok,
            Ok(None) => Outcome::unexpected("IDEMPOTENCY_KEY_TAKEN", plan.meta.key.as_str()),
            Err(error) => Outcome::status(&tonic::Status::from(error)),
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
    let store = LedgerStore::open(url, &database, &config.system_accounts(), config.clock.clone()).await?;
    let asset = AssetCode::parse(ASSET).map_err(anyhow::Error::msg)?;
    let definition = Asset {
        code: asset.clone(),
        display_name: "Points".into(),
        kind: AssetKind::Currency,
        metadata: Default::default(),
        created_at: 0,
    };
    store.define_asset(&definition).await?;
    let user = |id: i64| UserId::parse(id).map_err(anyhow::Error::msg);
    let mut workers = Vec::new();
    for index in 0..options.load.concurrency.max(1) as i64 {
        let from = user(USER_BASE + 1 + 2 * index)?;
        let to = user(USER_BASE + 2 + 2 * index)?;
        let actor = format!("user:{}", ADMIN_BASE + index);
        if options.ledger_op == LedgerOp::Transfer {
            fund(&store, &asset, from, &actor).await?;
        }
        workers.push(RawWriter {
            store: store.clone(),
            write: Write { op: options.ledger_op, asset: asset.clone(), from, to, actor },
        });
    }
    let measured = driver::drive(workers, &options.load).await;
    store.db().close().await;
    measured
}

/// Credits `FUNDING` to `user` with the same raw transaction (an `AdjustBalance` plan).
async fn fund(store: &LedgerStore, asset: &AssetCode, user: UserId, actor: &str) -> anyhow::Result<()> {
    let plan = AdjustBalance {
        user,
        asset: asset.clone(),
        direction: Direction::Credit,
        amount: Amount::parse(FUNDING).map_err(anyhow::Error::msg)?,
        reason: "benchmark funding".into(),
    }
    .plan(IdempotencyKey::parse(&new_key()).map_err(anyhow::Error::msg)?, actor);
    match store.apply_unbatched(&plan).await {
        Ok(Some(_)) => Ok(()),
        other => anyhow::bail!("funding failed: {other:?}"),
    }
}
