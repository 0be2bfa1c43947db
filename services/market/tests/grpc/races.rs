//! Races: many buyers for one listing; cancel against purchase.

use economy_proto::market::v1 as pb;

use crate::common::*;

#[tokio::test]
async fn twenty_buyers_race_and_exactly_one_wins() {
    let stack = spawn_stack().await;
    let buyers: Vec<i64> = (100..120).collect();
    let mut credits: Vec<(i64, &str, i64)> = buyers.iter().map(|buyer| (*buyer, "DIAMOND", 1_000)).collect();
    credits.push((SELLER, "red_shard", 10));
    stack.fund(&credits).await;
    let listing = list_asset(&mut stack.market(SELLER).await, 10, 500).await.expect("listed");
    let mut attempts = Vec::new();
    for buyer in &buyers {
        let mut client = stack.market(*buyer).await;
        let id = listing.id.clone();
        attempts.push(tokio::spawn(async move { buy(&mut client, &id).await }));
    }
    let mut winners = Vec::new();
    for (buyer, attempt) in buyers.iter().zip(attempts) {
        match attempt.await.expect("join") {
            Ok(_) => winners.push(*buyer),
            Err(status) => assert_eq!(economy_kit::error::reason(&status).as_deref(), Some("LISTING_NOT_ON_SALE")),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    for buyer in buyers {
        let expected = if buyer == winners[0] { (500, 0) } else { (1_000, 0) };
        assert_eq!(stack.balance(buyer, "DIAMOND").await, expected, "buyer {buyer}");
    }
    assert_eq!(stack.balance(winners[0], "red_shard").await, (10, 0));
    stack.assert_reconciled().await;
}

#[tokio::test]
async fn cancel_and_purchase_race_and_one_of_them_wins() {
    let stack = spawn_stack().await;
    stack.fund(&[(SELLER, "red_shard", 100), (BUYER, "DIAMOND", 10_000)]).await;
    let mut seller = stack.market(SELLER).await;
    let (mut sold, mut cancelled) = (0, 0);
    for _ in 0..10 {
        let listing = list_asset(&mut seller, 10, 100).await.expect("listed");
        let (mut buyer, mut canceller) = (stack.market(BUYER).await, stack.market(SELLER).await);
        let id = listing.id.clone();
        let purchase = tokio::spawn(async move { buy(&mut buyer, &id).await });
        let cancel = pb::CancelListingRequest { listing_id: listing.id.clone(), ..Default::default() };
        let cancelling = tokio::spawn(async move { canceller.cancel_listing(with_new_key(cancel)).await });
        let (purchase, cancel) = (purchase.await.expect("join"), cancelling.await.expect("join"));
        assert!(purchase.is_ok() != cancel.is_ok(), "exactly one wins: {purchase:?} / {cancel:?}");
        let status = stack.listing(&listing.id).await.status;
        if purchase.is_ok() {
            sold += 1;
            assert_eq!(status, pb::ListingStatus::Sold as i32);
        } else {
            cancelled += 1;
            assert_eq!(status, pb::ListingStatus::Cancelled as i32);
        }
    }
    assert_eq!(stack.balance(SELLER, "red_shard").await, (100 - 10 * sold, 0), "no hold left behind");
    assert_eq!(stack.balance(BUYER, "red_shard").await, (10 * sold, 0));
    assert_eq!(stack.balance(BUYER, "DIAMOND").await, (10_000 - 100 * sold, 0));
    assert_eq!(sold + cancelled, 10);
    stack.assert_reconciled().await;
}
