//! Property test: random sequences of ledger operations keep every invariant — each
//! entry balanced (reconcile finds no zero-sum violation), user balances never negative,
//! frozen equal to open holds, balances equal to their postings.

use std::collections::BTreeMap;

use economy_kit::db::DbOptions;
use economy_kit::testing::TestDatabase;
use economy_ledger::domain::catalog::{Asset, AssetKind, ConversionRule};
use economy_ledger::domain::commands::{
    AdjustBalance, ConvertAsset, CreateHold, Direction, PostTransaction, ReleaseHold, SettleHold, WritePlan,
};
use economy_ledger::domain::ids::{AccountId, Amount, Code, EntityId, IdempotencyKey, UserId};
use economy_ledger::store::LedgerStore;
use proptest::prelude::*;

const ASSETS: [&str; 2] = ["gold", "shard"];

#[derive(Debug, Clone)]
enum Op {
    Credit { user: i64, asset: usize, amount: i64 },
    Debit { user: i64, asset: usize, amount: i64 },
    Transfer { from: i64, to: i64, asset: usize, amount: i64 },
    Hold { user: i64, asset: usize, amount: i64 },
    Settle { hold: usize, amount: Option<i64>, to: i64 },
    Release { hold: usize },
    Convert { user: i64, quantity: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    let user = 1..4_i64;
    let asset = 0..ASSETS.len();
    let amount = 1..500_i64;
    prop_oneof![
        (user.clone(), asset.clone(), amount.clone()).prop_map(|(user, asset, amount)| Op::Credit {
            user,
            asset,
            amount
        }),
        (user.clone(), asset.clone(), amount.clone()).prop_map(|(user, asset, amount)| Op::Debit {
            user,
            asset,
            amount
        }),
        (user.clone(), user.clone(), asset.clone(), amount.clone())
            .prop_map(|(from, to, asset, amount)| Op::Transfer { from, to, asset, amount }),
        (user.clone(), asset, amount.clone()).prop_map(|(user, asset, amount)| Op::Hold { user, asset, amount }),
        (0..8_usize, proptest::option::of(amount), user.clone()).prop_map(|(hold, amount, to)| Op::Settle {
            hold,
            amount,
            to
        }),
        (0..8_usize).prop_map(|hold| Op::Release { hold }),
        (user, 1..4_i64).prop_map(|(user, quantity)| Op::Convert { user, quantity }),
    ]
}

fn uid(id: i64) -> UserId {
    UserId::parse(id).unwrap()
}

fn code(index: usize) -> Code {
    Code::parse(ASSETS[index]).unwrap()
}

fn amount(value: i64) -> Amount {
    Amount::parse(value).unwrap()
}

async fn setup() -> (TestDatabase, LedgerStore) {
    let database = TestDatabase::new().await.unwrap();
    let store = LedgerStore::open(&database.url, &DbOptions::default(), &["SYSTEM_ISSUANCE".into()]).await.unwrap();
    for (index, kind) in [AssetKind::Currency, AssetKind::Fragment].into_iter().enumerate() {
        let asset = Asset {
            code: code(index),
            display_name: ASSETS[index].into(),
            kind,
            metadata: BTreeMap::new(),
            created_at: 0,
        };
        store.define_asset(&asset).await.unwrap();
    }
    let rule = ConversionRule {
        id: Code::parse("shard_to_gold").unwrap(),
        from_asset: code(1),
        from_amount: 10,
        to_asset: code(0),
        to_amount: 1,
        enabled: true,
    };
    store.define_rule(&rule).await.unwrap();
    (database, store)
}

async fn plan(store: &LedgerStore, op: &Op, holds: &[EntityId], step: usize) -> Option<WritePlan> {
    let key = IdempotencyKey::parse(&format!("op-{step}")).unwrap();
    let actor = "user:1";
    let adjust = |user: i64, asset: usize, value: i64, direction| AdjustBalance {
        user: uid(user),
        asset: code(asset),
        direction,
        amount: amount(value),
        reason: "prop".into(),
    };
    Some(match op.clone() {
        Op::Credit { user, asset, amount } => adjust(user, asset, amount, Direction::Credit).plan(key, actor),
        Op::Debit { user, asset, amount } => adjust(user, asset, amount, Direction::Debit).plan(key, actor),
        Op::Transfer { from, to, asset, amount } => PostTransaction {
            business_type: "TRANSFER".into(),
            correlation_id: String::new(),
            memo: String::new(),
            postings: vec![
                (AccountId::User(uid(from)), code(asset), -amount),
                (AccountId::User(uid(to)), code(asset), amount),
            ],
            settlements: vec![],
        }
        .plan(key, actor),
        Op::Hold { user, asset, amount: value } => CreateHold {
            user: uid(user),
            asset: code(asset),
            amount: amount(value),
            expires_at: None,
            reference: String::new(),
        }
        .plan(EntityId::generate(), key, actor),
        Op::Settle { hold, amount: value, to } => {
            let id = holds.get(hold)?.clone();
            let stored = store.hold(id.as_str()).await.unwrap()?;
            let paid = value.unwrap_or(stored.amount);
            let destinations = vec![(AccountId::User(uid(to)), stored.asset.clone(), amount(paid))];
            SettleHold {
                hold: id,
                amount: value.map(amount),
                destinations,
                business_type: "HOLD_SETTLE".into(),
                correlation_id: String::new(),
            }
            .plan(key, actor)
        }
        Op::Release { hold } => {
            ReleaseHold { hold: holds.get(hold)?.clone(), reason: String::new(), expiry: false }.plan(key, actor)
        }
        Op::Convert { user, quantity } => {
            let rule = store.rule("shard_to_gold").await.unwrap();
            ConvertAsset { user: uid(user), rule: rule.id.clone(), quantity: amount(quantity) }
                .plan(&rule, key, actor)
                .unwrap()
        }
    })
}

async fn assert_invariants(store: &LedgerStore) {
    let report = store.reconcile().await.unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    let (negative,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM balances WHERE account LIKE 'user:%' AND (available < 0 OR frozen < 0)")
            .fetch_one(store.db().pool())
            .await
            .unwrap();
    assert_eq!(negative, 0);
}

async fn run(ops: Vec<Op>) {
    let (_database, store) = setup().await;
    let mut holds = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let Some(plan) = plan(&store, op, &holds, step).await else { continue };
        let new_hold = plan.new_hold.as_ref().map(|hold| hold.id.clone());
        if store.apply(&plan).await.is_ok() {
            holds.extend(new_hold);
        }
        assert_invariants(&store).await;
    }
    store.db().close().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_every_invariant(ops in proptest::collection::vec(op(), 1..30)) {
        tokio::runtime::Runtime::new().unwrap().block_on(run(ops));
    }
}
