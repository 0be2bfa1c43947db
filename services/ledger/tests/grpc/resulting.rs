//! Resulting balances (docs/ledger.md, "Resulting balances"): every posting records its
//! balance after the whole entry and the balance's version, and every write returns the
//! balances of the user accounts it moved.

use std::collections::BTreeMap;

use economy_proto::ledger::v1 as pb;
use tokio::task::JoinSet;

use crate::common::*;

/// A user's resulting balance as a write returns it.
fn resulting(user_id: i64, asset: &str, available: i64, frozen: i64) -> pb::Balance {
    pb::Balance { account: user(user_id), asset_code: asset.into(), available, frozen, total: available + frozen }
}

/// `(available_after, frozen_after, balance_seq)` of each posting of `entry` on `account`.
fn afters(entry: &pb::Transaction, account: Option<pb::AccountRef>) -> Vec<(i64, i64, i64)> {
    entry
        .postings
        .iter()
        .filter(|posting| posting.account == account)
        .map(|posting| (posting.available_after, posting.frozen_after, posting.balance_seq))
        .collect()
}

fn transfer(postings: Vec<pb::PostingInput>) -> pb::PostTransactionRequest {
    pb::PostTransactionRequest { idempotency_key: new_key(), postings, ..Default::default() }
}

async fn history(client: &mut Client, user_id: i64) -> Vec<pb::Transaction> {
    let request = pb::ListTransactionsRequest { account: user(user_id), page_size: 500, ..Default::default() };
    client.list_transactions(request).await.unwrap().into_inner().transactions
}

#[tokio::test]
async fn movements_return_and_record_the_balances_after_them() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    let credit = adjust(&mut admin, 2, "POINTS", 100).await.unwrap().transaction.unwrap();
    assert_eq!(credit.resulting_balances, [resulting(2, "POINTS", 100, 0)], "system accounts are left out");
    assert_eq!(afters(&credit, user(2)), [(100, 0, 1)]);
    assert_eq!(afters(&credit, system("SYSTEM_ISSUANCE")), [(-100, 0, 1)]);

    // Two legs on one balance record the balance after the whole entry.
    let split = vec![posting(user(2), "POINTS", -10), posting(user(2), "POINTS", -5), posting(user(3), "POINTS", 15)];
    let response = admin.post_transaction(transfer(split)).await.unwrap().into_inner();
    let paid = response.transaction.unwrap();
    assert_eq!(paid.resulting_balances, [resulting(2, "POINTS", 85, 0), resulting(3, "POINTS", 15, 0)]);
    assert_eq!(afters(&paid, user(2)), [(85, 0, 2), (85, 0, 2)]);
    assert_eq!(afters(&paid, user(3)), [(15, 0, 1)]);
    // Legs that net to zero still make a version of the balance.
    let round_trip = vec![posting(user(2), "POINTS", -20), posting(user(2), "POINTS", 20)];
    let zero = admin.post_transaction(transfer(round_trip)).await.unwrap().into_inner().transaction.unwrap();
    assert_eq!(zero.resulting_balances, [resulting(2, "POINTS", 85, 0)]);
    assert_eq!(afters(&zero, user(2)), [(85, 0, 3), (85, 0, 3)]);

    // Reads return what the writes returned.
    let read = admin.get_transaction(pb::GetTransactionRequest { id: paid.id.clone() }).await.unwrap().into_inner();
    assert_eq!(read.transaction.as_ref(), Some(&paid));
    assert_eq!(history(&mut admin, 2).await, [zero, paid, credit]);

    admin.define_conversion_rule(pb::DefineConversionRuleRequest { rule: Some(shard_rule()) }).await.unwrap();
    adjust(&mut admin, 2, "red_shard", 35).await.unwrap();
    let request = pb::ConvertAssetRequest {
        idempotency_key: new_key(),
        user_id: 2,
        rule_id: "shard_to_crystal".into(),
        quantity: 3,
    };
    let converted = app.user(2).await.convert_asset(request).await.unwrap().into_inner().transaction.unwrap();
    assert_eq!(converted.resulting_balances, [resulting(2, "red_crystal", 3, 0), resulting(2, "red_shard", 5, 0)]);
    let debit = adjust(&mut admin, 2, "red_shard", -5).await.unwrap().transaction.unwrap();
    assert_eq!(debit.resulting_balances, [resulting(2, "red_shard", 0, 0)]);
    assert_eq!(afters(&debit, user(2)), [(0, 0, 3)]);
    assert_consistent(&mut admin).await;
}

fn shard_rule() -> pb::ConversionRule {
    pb::ConversionRule {
        id: "shard_to_crystal".into(),
        from_asset: "red_shard".into(),
        from_amount: 10,
        to_asset: "red_crystal".into(),
        to_amount: 1,
        enabled: true,
    }
}

fn hold_request(amount: i64) -> pb::CreateHoldRequest {
    pb::CreateHoldRequest {
        idempotency_key: new_key(),
        account: user(2),
        asset_code: "POINTS".into(),
        amount,
        ..Default::default()
    }
}

/// The hold id and entry of a new hold of `amount` on user 2's POINTS.
async fn freeze(client: &mut Client, amount: i64) -> (String, pb::Transaction) {
    let created = client.create_hold(hold_request(amount)).await.unwrap().into_inner();
    (created.hold.unwrap().id, created.transaction.unwrap())
}

fn settle(hold_id: &str, amount: Option<i64>, credit: i64) -> pb::SettleHoldRequest {
    pb::SettleHoldRequest {
        idempotency_key: new_key(),
        hold_id: hold_id.into(),
        amount,
        destinations: vec![posting(user(3), "POINTS", credit)],
        ..Default::default()
    }
}

#[tokio::test]
async fn holds_return_and_record_the_balances_they_freeze_and_free() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 100).await.unwrap();
    let (hold, created) = freeze(&mut admin, 60).await;
    assert_eq!(created.resulting_balances, [resulting(2, "POINTS", 40, 60)]);
    assert_eq!(afters(&created, user(2)), [(40, 60, 2), (40, 60, 2)]);

    // A partial settlement: 20 paid out, 40 back to available.
    let settled = admin.settle_hold(settle(&hold, Some(20), 20)).await.unwrap().into_inner().transaction.unwrap();
    assert_eq!(settled.resulting_balances, [resulting(2, "POINTS", 80, 0), resulting(3, "POINTS", 20, 0)]);
    assert!(afters(&settled, user(2)).iter().all(|after| *after == (80, 0, 3)), "{settled:?}");

    let (hold, _) = freeze(&mut admin, 30).await;
    let request = pb::ReleaseHoldRequest { idempotency_key: new_key(), hold_id: hold, reason: "cancelled".into() };
    let released = admin.release_hold(request).await.unwrap().into_inner().transaction.unwrap();
    assert_eq!(released.resulting_balances, [resulting(2, "POINTS", 80, 0)]);
    assert_eq!(afters(&released, user(2)), [(80, 0, 5), (80, 0, 5)]);

    // A whole settlement inside a transaction that also credits the payer.
    let (hold, _) = freeze(&mut admin, 80).await;
    let post = pb::PostTransactionRequest {
        hold_settlements: vec![pb::HoldSettlement { hold_id: hold.clone(), amount: None }],
        ..transfer(vec![
            posting(system("SYSTEM_ISSUANCE"), "POINTS", -7),
            posting(user(2), "POINTS", 7),
            posting(user(3), "POINTS", 80),
        ])
    };
    let paid = admin.post_transaction(post).await.unwrap().into_inner().transaction.unwrap();
    assert_eq!(paid.resulting_balances, [resulting(2, "POINTS", 7, 0), resulting(3, "POINTS", 100, 0)]);
    assert!(afters(&paid, user(2)).iter().all(|after| *after == (7, 0, 7)), "{paid:?}");
    assert_consistent(&mut admin).await;
}

#[tokio::test]
async fn concurrent_writers_of_one_balance_make_gapless_versions() {
    let app = spawn_app().await;
    let mut admin = app.admin_with_catalog().await;
    adjust(&mut admin, 2, "POINTS", 300).await.unwrap();
    let mut writes = JoinSet::new();
    for index in 0..40 {
        let mut client = app.admin().await;
        writes.spawn(async move {
            // Debits that may be refused, and credits, interleaved on user 2's balance.
            let (from, to) = if index % 4 == 3 { (4, 2) } else { (2, 3) };
            if from == 4 {
                adjust(&mut client, 4, "POINTS", 10).await.unwrap();
            }
            client
                .post_transaction(transfer(vec![posting(user(from), "POINTS", -10), posting(user(to), "POINTS", 10)]))
                .await
        });
    }
    let mut applied = 0;
    while let Some(result) = writes.join_next().await {
        match result.unwrap() {
            Ok(_) => applied += 1,
            Err(status) => assert_eq!(economy_testkit::reason_of(&status), "INSUFFICIENT_BALANCE", "{status:?}"),
        }
    }
    let entries = history(&mut admin, 2).await;
    assert_eq!(entries.len(), applied + 1, "the credit and every applied transfer");
    let mut chain = BTreeMap::new();
    for entry in &entries {
        let delta: i64 = entry.postings.iter().filter(|posting| posting.account == user(2)).map(|p| p.amount).sum();
        let [(available, frozen, seq)] = afters(entry, user(2))[..] else { panic!("one posting: {entry:?}") };
        assert_eq!(frozen, 0);
        assert!(chain.insert(seq, (available, delta)).is_none(), "version {seq} twice");
    }
    assert_eq!(
        chain.keys().copied().collect::<Vec<_>>(),
        (1..=i64::try_from(entries.len()).unwrap()).collect::<Vec<_>>()
    );
    let mut running = 0;
    for (seq, (available, delta)) in chain {
        running += delta;
        assert_eq!(available, running, "version {seq}");
    }
    assert_eq!(balance(&mut admin, 2, "POINTS").await, (running, 0));
    assert_consistent(&mut admin).await;
}
