//! TLS end to end (docs/operations.md, "TLS"): the whole stack over TLS with mTLS
//! between services, refusals of clients without a certificate, trusting another CA or
//! speaking plaintext, gRPC-web over TLS, and the gateway's certificate rotated without
//! a restart.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use economy_kit::identity::roles;
use economy_kit::tls::{ClientTls, ServerTls};
use economy_proto::gateway::v1 as gateway;
use economy_proto::ledger::v1 as ledger;
use economy_proto::market::v1 as market;
use economy_testkit::tls::{DevCa, LOOPBACK_NAMES, health_over_tls, http1_over_tls};
use economy_testkit::{Service, TestStack, test_stack, with_new_key};
use http_body_util::Full;
use prost_reflect::prost::Message;
use tonic_health::pb::health_check_response::ServingStatus;

const SELLER: i64 = 2;
const SERVING: Result<i32, String> = Ok(ServingStatus::Serving as i32);

/// Every server over TLS; the gateway's own certificate in `gateway_dir` (issued by a CA
/// of its own, so the test can rotate it), the services' from the stack's PKI.
async fn tls_stack(gateway_ca: &DevCa, gateway_dir: &Path) -> TestStack {
    let gateway_tls = write_leaf(gateway_ca, gateway_dir);
    test_stack(&Service::ALL)
        .tls()
        .configure(|config| {
            config.gateway.tls = gateway_tls;
            config.gateway.rate_limit_per_second = 10_000;
            config.gateway.rate_limit_burst = 10_000;
        })
        .start()
        .await
}

/// Writes a fresh server certificate of `ca` for the loopback names (and the CA) into
/// `dir`, replacing the files there; returns the `tls` serving them.
fn write_leaf(ca: &DevCa, dir: &Path) -> ServerTls {
    std::fs::create_dir_all(dir).unwrap();
    let leaf = ca.server(&LOOPBACK_NAMES).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.join("key.pem"), &leaf.key_pem).unwrap();
    std::fs::write(dir.join("cert.pem"), &leaf.cert_pem).unwrap();
    ServerTls { cert_file: file(dir, "cert.pem"), key_file: file(dir, "key.pem"), client_ca_file: String::new() }
}

fn file(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("economy-gateway-tls-{}", uuid::Uuid::now_v7()))
}

/// Trusting only the CA in `dir`, no client certificate.
fn trusting(dir: &Path) -> ClientTls {
    ClientTls { ca_file: file(dir, "ca.pem"), ..ClientTls::default() }
}

#[tokio::test]
async fn every_hop_runs_over_tls_with_mtls_between_services() {
    let (ca, dir) = (DevCa::new("gateway CA").unwrap(), temp_dir());
    let stack = tls_stack(&ca, &dir).await;
    for service in Service::ALL {
        assert!(stack.url_of(service).starts_with("https://"), "{service}");
    }
    assert!(stack.config().market.ledger_url.starts_with("https://"));
    let gateway_url = stack.url_of(Service::Gateway);
    let authed = tonic::service::interceptor::InterceptedService::new(
        economy_testkit::tls_channel(&gateway_url, &trusting(&dir)).await.unwrap(),
        economy_testkit::Bearer::user(1, roles::ADMIN),
    );

    // gateway -> ledger
    let mut admin = ledger::ledger_service_client::LedgerServiceClient::new(authed.clone());
    for (code, kind) in [("DIAMOND", ledger::AssetKind::Currency), ("red_shard", ledger::AssetKind::Fragment)] {
        let asset =
            ledger::Asset { code: code.into(), display_name: code.into(), kind: kind.into(), ..Default::default() };
        admin.define_asset(with_new_key(ledger::DefineAssetRequest { asset: Some(asset) })).await.unwrap();
    }
    let credit = ledger::AdjustBalanceRequest {
        user_id: SELLER,
        asset_code: "red_shard".into(),
        direction: ledger::AdjustDirection::Credit.into(),
        amount: 10,
        reason: "test funds".into(),
        ..Default::default()
    };
    admin.adjust_balance(with_new_key(credit)).await.unwrap();

    // gateway -> market -> ledger (the hold)
    let seller = tonic::service::interceptor::InterceptedService::new(
        economy_testkit::tls_channel(&gateway_url, &trusting(&dir)).await.unwrap(),
        economy_testkit::Bearer::user(SELLER, roles::USER),
    );
    let listing = market::CreateListingRequest {
        offer: Some(market::create_listing_request::Offer::Asset(market::AssetOffer {
            asset_code: "red_shard".into(),
            amount: 4,
        })),
        price: Some(market::Price { asset_code: "DIAMOND".into(), amount: 10 }),
        ..Default::default()
    };
    let mut market_client = market::market_service_client::MarketServiceClient::new(seller.clone());
    let listed = market_client.create_listing(with_new_key(listing)).await.unwrap().into_inner().listing.unwrap();
    assert!(!listed.hold_id.is_empty(), "the market holds the asset in the ledger");

    // the gateway's own internal clients (backpack: ledger and items)
    let mut backpack = gateway::backpack_service_client::BackpackServiceClient::new(seller);
    let pack = backpack.get_backpack(gateway::GetBackpackRequest::default()).await.unwrap().into_inner();
    let shard = pack.assets.iter().find(|asset| asset.asset_code == "red_shard").unwrap();
    assert_eq!((shard.available, shard.frozen), (6, 4));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_service_requiring_mtls_refuses_a_client_without_a_certificate() {
    let stack = test_stack(&[Service::Ledger]).tls().start().await;
    let pki = stack.pki().unwrap();
    let url = stack.url_of(Service::Ledger);
    assert_eq!(health_over_tls(&url, &pki.client_tls()).await, SERVING, "with the client certificate");
    let anonymous = ClientTls { ca_file: pki.client_tls().ca_file, ..ClientTls::default() };
    let refused = health_over_tls(&url, &anonymous).await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn a_client_trusting_another_ca_or_speaking_plaintext_is_refused() {
    let (ca, dir) = (DevCa::new("gateway CA").unwrap(), temp_dir());
    let stack = tls_stack(&ca, &dir).await;
    let url = stack.url_of(Service::Gateway);
    assert_eq!(health_over_tls(&url, &trusting(&dir)).await, SERVING);

    let other = temp_dir();
    write_leaf(&DevCa::new("another CA").unwrap(), &other);
    let refused = health_over_tls(&url, &trusting(&other)).await;
    assert!(refused.as_ref().is_err_and(|error| error.contains("connect")), "{refused:?}");

    let plaintext = url.replacen("https://", "http://", 1);
    let channel = tonic::transport::Channel::from_shared(plaintext).unwrap().connect().await;
    let answer = match channel {
        Ok(channel) => tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .map(|_| ()),
        Err(error) => Err(tonic::Status::unavailable(error.to_string())),
    };
    assert!(answer.is_err(), "a plaintext client got an answer");
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(other).unwrap();
}

#[tokio::test]
async fn grpc_web_runs_over_tls() {
    let (ca, dir) = (DevCa::new("gateway CA").unwrap(), temp_dir());
    let stack = tls_stack(&ca, &dir).await;
    let addr = stack.addr(Service::Gateway).unwrap();
    let mut body = vec![0, 0, 0, 0, 0];
    body.extend_from_slice(&ledger::ListAssetsRequest {}.encode_to_vec()[..]);
    let request = http::Request::post(format!("https://{addr}/economy.ledger.v1.LedgerService/ListAssets"))
        .header("host", addr.to_string())
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("authorization", economy_testkit::bearer(1, roles::ADMIN))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (head, body) = http1_over_tls(addr, &file(&dir, "ca.pem"), request).await;
    assert_eq!(head.status, http::StatusCode::OK);
    assert_eq!(head.version, http::Version::HTTP_11);
    assert_eq!(head.headers["content-type"], "application/grpc-web+proto");
    let trailer = String::from_utf8_lossy(&body).to_lowercase();
    assert!(trailer.contains("grpc-status:0") || head.headers.get("grpc-status").is_some_and(|status| status == "0"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_gateway_certificate_is_rotated_without_a_restart() {
    let (first_ca, dir) = (DevCa::new("first CA").unwrap(), temp_dir());
    let stack = tls_stack(&first_ca, &dir).await;
    let url = stack.url_of(Service::Gateway);
    let before = dir.join("before");
    std::fs::create_dir_all(&before).unwrap();
    std::fs::copy(dir.join("ca.pem"), before.join("ca.pem")).unwrap();
    assert_eq!(health_over_tls(&url, &trusting(&before)).await, SERVING);

    write_leaf(&DevCa::new("second CA").unwrap(), &dir);
    assert_eq!(health_over_tls(&url, &trusting(&dir)).await, SERVING, "the new certificate is served");
    let stale = health_over_tls(&url, &trusting(&before)).await;
    assert!(stale.is_err(), "the old certificate is no longer served: {stale:?}");
    std::fs::remove_dir_all(dir).unwrap();
}
