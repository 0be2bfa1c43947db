//! Property test: random sequences of ledger operations keep every invariant — each
//! entry balanced (reconcile finds no zero-sum violation), user balances never negative,
//! frozen equal to open holds, balances equal to their postings.

use std::collections::BTreeMap;

use economy_kit::db::{Backend, DbOptions};
use economy_kit::testing::TestDatabase;
use economy_kit::time::system_clock;
use economy_ledger::domain::LedgerError;
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
    let store = LedgerStore::open(&database.url, &DbOptions::default(), &["SYSTEM_ISSUANCE".into()], system_clock())
        .await
        .unwrap();
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

/// The plan of a credit, debit or transfer (`None` for other ops).
fn movement(op: &Op, key: IdempotencyKey) -> Option<WritePlan> {
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
        _ => return None,
    })
}

/// The plan of a hold `id` on `value` of `user`'s asset.
fn open_hold(user: i64, asset: usize, value: i64, id: EntityId, key: IdempotencyKey) -> WritePlan {
    let hold = CreateHold {
        user: uid(user),
        asset: code(asset),
        amount: amount(value),
        expires_at: None,
        reference: String::new(),
    };
    hold.plan(id, key, "user:1")
}

async fn plan(store: &LedgerStore, op: &Op, holds: &[EntityId], step: usize) -> Option<WritePlan> {
    let key = IdempotencyKey::parse(&format!("op-{step}")).unwrap();
    let actor = "user:1";
    Some(match op.clone() {
        Op::Credit { .. } | Op::Debit { .. } | Op::Transfer { .. } => return movement(op, key),
        Op::Hold { user, asset, amount: value } => open_hold(user, asset, value, EntityId::generate(), key),
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
    let report = store.reconcile_whole().await.unwrap();
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

/// Plans `ops` up front (no store reads): holds are settled in full or released by the
/// index of the `Hold` op that opened them, whether or not it succeeded.
fn plan_all(ops: &[Op]) -> Vec<WritePlan> {
    let mut holds: Vec<(EntityId, i64, usize, i64)> = Vec::new();
    let mut plans = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let key = IdempotencyKey::parse(&format!("op-{step}")).unwrap();
        let actor = "user:1";
        let plan = match op.clone() {
            Op::Hold { user, asset, amount: value } => {
                let id = EntityId::generate();
                holds.push((id.clone(), user, asset, value));
                open_hold(user, asset, value, id, key)
            }
            Op::Settle { hold, to, .. } => {
                let Some((id, _, asset, value)) = holds.get(hold).cloned() else { continue };
                SettleHold {
                    hold: id,
                    amount: None,
                    destinations: vec![(AccountId::User(uid(to)), code(asset), amount(value))],
                    business_type: "HOLD_SETTLE".into(),
                    correlation_id: String::new(),
                }
                .plan(key, actor)
            }
            Op::Release { hold } => {
                let Some((id, ..)) = holds.get(hold).cloned() else { continue };
                ReleaseHold { hold: id, reason: String::new(), expiry: false }.plan(key, actor)
            }
            Op::Convert { .. } => continue,
            Op::Credit { .. } | Op::Debit { .. } | Op::Transfer { .. } => {
                let Some(plan) = movement(op, key) else { continue };
                plan
            }
        };
        plans.push(plan);
    }
    plans
}

/// A store whose users 1..=3 already hold 100 of every asset (so their writes take the
/// group commit's bulk form; user 4 is new and takes the write-by-write path).
async fn warmed_store() -> (TestDatabase, LedgerStore) {
    let (database, store) = setup().await;
    let balances = (1..=3).flat_map(|user| (0..ASSETS.len()).map(move |asset| (user, asset)));
    for (index, (user, asset)) in balances.enumerate() {
        let key = IdempotencyKey::parse(&format!("warm-{index}")).unwrap();
        let credit = movement(&Op::Credit { user, asset, amount: 100 }, key).unwrap();
        store.apply(&credit).await.unwrap();
    }
    (database, store)
}

/// Every balance and hold of the users, comparable across stores.
async fn state(store: &LedgerStore, plans: &[WritePlan]) -> (Vec<(i64, String, i64, i64)>, Vec<String>) {
    let mut balances = Vec::new();
    for user in 1..=4 {
        for (asset, available, frozen) in store.balances(&AccountId::User(uid(user))).await.unwrap() {
            balances.push((user, asset, available, frozen));
        }
    }
    let mut holds = Vec::new();
    for hold in plans.iter().filter_map(|plan| plan.new_hold.as_ref()) {
        let stored = store.hold(hold.id.as_str()).await.unwrap();
        holds.push(stored.map(|hold| format!("{:?} {}", hold.status, hold.settled_amount)).unwrap_or_default());
    }
    (balances, holds)
}

/// Submitted all at once, writes keep every invariant. On SQLite they are group-committed
/// in submission order, mostly in bulk: every outcome and the final state then equal
/// applying them one by one (PostgreSQL runs them in parallel, in no set order).
async fn run_concurrently(ops: Vec<Op>) {
    let plans = plan_all(&ops);
    let (_one_by_one_db, one_by_one) = warmed_store().await;
    let mut expected = Vec::new();
    for plan in &plans {
        expected.push(one_by_one.apply(plan).await.map(|applied| applied.replayed));
    }
    let (_together_db, together) = warmed_store().await;
    let outcomes: Vec<_> = futures_util::future::join_all(plans.iter().map(|plan| together.apply(plan)))
        .await
        .into_iter()
        .map(|outcome| outcome.map(|applied| applied.replayed))
        .collect();
    assert_invariants(&together).await;
    if together.db().backend() == Backend::Sqlite {
        assert_eq!(outcomes, expected);
        assert_eq!(state(&together, &plans).await, state(&one_by_one, &plans).await);
    } else {
        let storage_errors: Vec<_> =
            outcomes.iter().filter(|outcome| matches!(outcome, Err(LedgerError::Storage(_)))).collect();
        assert!(storage_errors.is_empty(), "{storage_errors:?}");
    }
    one_by_one.db().close().await;
    together.db().close().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_writes_equal_the_same_writes_one_by_one(ops in proptest::collection::vec(op(), 1..60)) {
        tokio::runtime::Runtime::new().unwrap().block_on(run_concurrently(ops));
    }
}

/// A plain entry (on PostgreSQL the one-statement form) moves its balances exactly; when
/// a balance refuses, nothing of it remains, its refusal is named and its key stays free.
#[tokio::test]
async fn a_refused_plain_entry_leaves_nothing_and_frees_its_key() {
    let (_database, store) = warmed_store().await;
    let transfer = |amount, key: &str| {
        movement(&Op::Transfer { from: 1, to: 2, asset: 0, amount }, IdempotencyKey::parse(key).unwrap()).unwrap()
    };
    let gold = |user| {
        let store = &store;
        async move {
            let balances = store.balances(&AccountId::User(uid(user))).await.unwrap();
            balances.into_iter().find(|(asset, ..)| asset.as_str() == ASSETS[0]).map(|(_, available, _)| available)
        }
    };
    assert!(!store.apply(&transfer(60, "first")).await.unwrap().replayed);
    let refused = store.apply(&transfer(60, "second")).await;
    assert!(matches!(refused, Err(LedgerError::InsufficientBalance { .. })), "{refused:?}");
    assert_eq!((gold(1).await, gold(2).await), (Some(40), Some(160)));
    assert!(!store.apply(&transfer(30, "second")).await.unwrap().replayed);
    assert!(store.apply(&transfer(60, "first")).await.unwrap().replayed);
    assert_eq!((gold(1).await, gold(2).await), (Some(10), Some(190)));
    assert_invariants(&store).await;
    store.db().close().await;
}

/// Holds opened, then settled twice, released and spent in one batch: on SQLite the
/// resolutions are decided in the bulk form in queue order (the second settlement is
/// refused, the released gold pays the last transfer, the one before it is refused) and
/// every outcome and the final state equal applying them one by one.
#[tokio::test]
async fn settlements_in_one_batch_equal_the_same_writes_one_by_one() {
    run_concurrently(vec![
        Op::Hold { user: 1, asset: 0, amount: 30 },
        Op::Hold { user: 2, asset: 0, amount: 50 },
        Op::Hold { user: 3, asset: 1, amount: 20 },
        Op::Settle { hold: 0, amount: None, to: 2 },
        Op::Settle { hold: 0, amount: None, to: 3 },
        Op::Release { hold: 1 },
        Op::Transfer { from: 2, to: 3, asset: 0, amount: 140 },
        Op::Transfer { from: 2, to: 3, asset: 0, amount: 120 },
        Op::Settle { hold: 2, amount: None, to: 1 },
    ])
    .await;
}

/// Two writes with one key queued together, the first refused: as one by one, the key
/// stays free and the second applies (on PostgreSQL, in either order, one applies).
#[tokio::test]
async fn a_key_refused_in_a_batch_stays_free_for_the_next_write_with_it() {
    let (_database, store) = warmed_store().await;
    let transfer = |amount| {
        movement(&Op::Transfer { from: 1, to: 2, asset: 0, amount }, IdempotencyKey::parse("shared").unwrap()).unwrap()
    };
    let (too_much, enough) = (transfer(500), transfer(50));
    let (first, second) = tokio::join!(store.apply(&too_much), store.apply(&enough));
    if store.db().backend() == Backend::Sqlite {
        assert!(matches!(first, Err(LedgerError::InsufficientBalance { .. })), "{first:?}");
        assert!(!second.unwrap().replayed);
    } else {
        assert_eq!([&first, &second].iter().filter(|outcome| outcome.is_ok()).count(), 1, "{first:?} {second:?}");
    }
    assert_invariants(&store).await;
    store.db().close().await;
}

/// Settlements of holds opened before, queued together (on SQLite one batch of the bulk
/// form in its own transaction): each hold records the entry that resolved it.
#[tokio::test]
async fn settlements_queued_together_record_their_resolving_entries() {
    let (_database, store) = warmed_store().await;
    let ops = [
        Op::Hold { user: 1, asset: 0, amount: 30 },
        Op::Hold { user: 2, asset: 0, amount: 50 },
        Op::Settle { hold: 0, amount: None, to: 3 },
        Op::Release { hold: 1 },
    ];
    let plans = plan_all(&ops);
    for plan in &plans[..2] {
        store.apply(plan).await.unwrap();
    }
    let (settled, released) = tokio::join!(store.apply(&plans[2]), store.apply(&plans[3]));
    for (plan, applied) in plans[..2].iter().zip([settled.unwrap(), released.unwrap()]) {
        let hold = plan.new_hold.as_ref().unwrap().id.as_str();
        let (entry, resolved_at): (String, i64) =
            sqlx::query_as("SELECT resolution_entry_id, resolved_at FROM holds WHERE id = $1")
                .bind(hold)
                .fetch_one(store.db().pool())
                .await
                .unwrap();
        assert_eq!((entry, resolved_at), (applied.entry.id.clone(), applied.entry.created_at));
    }
    assert_invariants(&store).await;
    store.db().close().await;
}
