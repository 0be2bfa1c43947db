//! Limits: per-user rate limit, in-flight limit with load shedding, maximum message size,
//! and a write cut off by the client's deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use economy_kit::identity::roles;
use economy_proto::ledger::v1 as pb;
use tonic::Code;

use crate::common::*;
use crate::shop::{EXPORT, held_export, number, shop_stack};

/// The value of the unlabelled series `name` in this process's recorder (installed by the
/// first call; 0 before any).
fn counted(name: &str) -> f64 {
    let rendered = economy_kit::metrics::recorder().expect("recorder").render();
    rendered.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn requests_over_the_per_user_rate_are_refused_and_not_stored() {
    let refused_before = counted("economy_gateway_rate_limited_total");
    let stack = stack_with(|config, _| {
        config.rate_limit_per_second = 1;
        config.rate_limit_burst = 1;
    })
    .await;
    let mut user = stack.client(USER, roles::USER).await;
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        outcomes.push(user.list_assets(pb::ListAssetsRequest {}).await);
    }
    assert!(outcomes[0].is_ok(), "{:?}", outcomes[0]);
    let limited = outcomes.into_iter().filter(|outcome| outcome.is_err()).collect::<Vec<_>>();
    assert!(!limited.is_empty());
    // Counted (other tests of this process may add theirs).
    assert!(counted("economy_gateway_rate_limited_total") - refused_before >= limited.len() as f64);
    for outcome in limited {
        assert_error(outcome, Code::ResourceExhausted, "RATE_LIMITED");
    }
    // The limit is per user.
    stack.client(USER + 1, roles::USER).await.list_assets(pb::ListAssetsRequest {}).await.unwrap();

    // A write refused by the limit is not stored: once the quota refills, the key executes.
    let mut admin = stack.admin_with_points().await;
    let key = new_key();
    let deadline = Instant::now() + Duration::from_secs(20);
    let applied = loop {
        match admin.adjust_balance(keyed(adjust(USER, 3), &key)).await {
            Err(status) if economy_kit::error::reason(&status).as_deref() == Some("RATE_LIMITED") => {
                assert!(Instant::now() < deadline, "the quota never refilled");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            outcome => break outcome.unwrap(),
        }
    };
    assert_eq!(meta(applied.metadata(), "idempotent-replayed"), None);
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_shed_and_not_stored() {
    let shed_before = counted("economy_gateway_shed_total");
    let stack = Arc::new(shop_stack(|config, _| config.max_in_flight = 1).await);
    let (release, busy) = held_export(&stack, &new_key()).await;
    let key = new_key();
    let shed = stack.call("Export", EXPORT, Some(&key)).await;
    assert_error(shed, Code::ResourceExhausted, "OVERLOADED");
    assert!(counted("economy_gateway_shed_total") - shed_before >= 1.0, "the shed request is counted");
    assert_eq!(stack.store().await.status_of(USER, &key).await.unwrap(), None);

    release.send(()).unwrap();
    busy.await.unwrap().unwrap();
    let later = stack.call("Export", EXPORT, Some(&key)).await.unwrap();
    assert_eq!(meta(later.metadata(), "idempotent-replayed"), None);
    assert_eq!(stack.shop.calls(), 2);
}

#[tokio::test]
async fn messages_over_the_size_limit_are_refused() {
    let stack = stack_with(|_, limits| limits.max_message_bytes = 1024).await;
    let mut admin = stack.admin().await;
    let asset = |code: &str, note_len: usize| pb::Asset {
        code: code.into(),
        display_name: code.into(),
        kind: pb::AssetKind::Currency.into(),
        metadata: [("note".to_owned(), "x".repeat(note_len))].into(),
        ..Default::default()
    };
    let key = new_key();
    let request = pb::DefineAssetRequest { asset: Some(asset("BIG", 2000)) };
    let too_big = admin.define_asset(keyed(request, &key)).await;
    assert_eq!(too_big.expect_err("request too large").code(), Code::OutOfRange);
    assert_eq!(stack.store().await.status_of(ADMIN, &key).await.unwrap(), None);
    let mut ledger = ledger_admin(&stack.ledger_url()).await;
    assert!(ledger.list_assets(pb::ListAssetsRequest {}).await.unwrap().into_inner().assets.is_empty());

    // Each asset fits, the catalog listing both does not.
    for code in ["ONE", "TWO"] {
        admin.define_asset(keyed(pb::DefineAssetRequest { asset: Some(asset(code, 600)) }, &new_key())).await.unwrap();
    }
    let listing = admin.list_assets(pb::ListAssetsRequest {}).await;
    assert_eq!(listing.expect_err("response too large").code(), Code::OutOfRange);
}

#[tokio::test]
async fn a_write_cut_off_by_the_client_deadline_is_still_recorded() {
    let stack = Arc::new(shop_stack(|_, _| {}).await);
    let (key, release) = (new_key(), stack.shop.hold_next());
    let mut request = stack.request("Export", EXPORT, Some(&key));
    request.set_timeout(Duration::from_millis(300));
    let cut_off = stack.send("Export", request).await.expect_err("the client gives up");
    assert!(matches!(cut_off.code(), Code::DeadlineExceeded | Code::Cancelled), "{cut_off:?}");

    // The upstream call goes on; its outcome is recorded and replayed to the retry.
    release.send(()).unwrap();
    let store = stack.store().await;
    eventually("the cut-off write to be recorded", || async {
        store.status_of(USER, &key).await.unwrap().is_some_and(|(status, _)| status != "processing")
    })
    .await;
    let retry = stack.call("Export", EXPORT, Some(&key)).await.unwrap();
    assert_eq!(meta(retry.metadata(), "idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(number(&stack.decode("Export", retry.get_ref()), "attempt"), 1);
    assert_eq!(stack.shop.calls(), 1);
}
