//! Canonical operations: the gateway refuses to start with an unmapped write (listing every
//! offender), the real API is fully mapped, and a write path without one fails at run time.

use std::collections::HashMap;
use std::sync::Arc;

use economy_gateway::auth::Authenticator;
use economy_gateway::proxy::{Gateway, Proxy};
use economy_gateway::registry::Registry;
use economy_gateway::store::IdempotencyStore;
use economy_kit::identity::roles;
use economy_kit::server::ServerLimits;
use economy_testkit::TestDatabase;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::service::Routes;
use tonic::transport::Channel;

use crate::common::*;
use crate::shop::compile;

const UNMAPPED: &str = r#"syntax = "proto3";
package economy.shop.v1;
import "economy/options/v1/options.proto";
message Empty {}
service ShopService {
  rpc Browse(Empty) returns (Empty) { option idempotency_level = NO_SIDE_EFFECTS; }
  rpc Buy(Empty) returns (Empty);
  rpc Pay(Empty) returns (Empty) { option (economy.options.v1.method) = {min_role_level: 0}; }
  rpc Sell(Empty) returns (Empty) { option (economy.options.v1.method) = {canonical_operation: "sell"}; }
  rpc Gift(Empty) returns (Empty) { option (economy.options.v1.method) = {canonical_operation: "SHOP_GIVE_ITEM"}; }
  rpc Give(Empty) returns (Empty) { option (economy.options.v1.method) = {canonical_operation: "SHOP_GIVE_ITEM"}; }
  rpc Keep(Empty) returns (Empty) { option (economy.options.v1.method) = {canonical_operation: "SHOP_KEEP_ITEM"}; }
}"#;

#[tokio::test]
async fn a_write_without_a_canonical_operation_stops_the_start() {
    let database = TestDatabase::new().await.unwrap();
    let mut config = gateway_config(&database, &[("shop", format!("http://{}", free_addr()))]);
    config.listen = free_addr();
    let registry = Registry::load(&compile(UNMAPPED)).unwrap();
    let started = economy_gateway::start_with_registry(
        registry,
        &config,
        &identity(),
        &ServerLimits::default(),
        CancellationToken::new(),
    )
    .await;
    let error = format!("{:#}", started.expect_err("the start is refused"));
    for offender in [
        "ShopService/Buy",
        "ShopService/Pay",
        "ShopService/Sell",
        "ShopService/Gift, /economy.shop.v1.ShopService/Give",
    ] {
        assert!(error.contains(offender), "{offender} missing from: {error}");
    }
    assert!(!error.contains("Browse") && !error.contains("Keep"), "{error}");
    std::net::TcpListener::bind(&config.listen).expect("nothing listens after a refused start");
}

#[test]
fn the_real_api_is_fully_mapped() {
    let registry = Registry::load(economy_proto::FILE_DESCRIPTOR_SET).unwrap();
    assert_eq!(registry.check(), Ok(()));
    let writes: Vec<_> = registry.methods().filter(|method| !method.read_only).collect();
    assert!(writes.iter().any(|method| method.path == ADJUST));
    assert!(writes.iter().all(|method| method.canonical_operation.is_some()), "{writes:?}");
}

#[tokio::test]
async fn an_unmapped_write_fails_at_run_time() {
    // The start-up check refuses such an API, so the proxy is assembled by hand.
    let database = TestDatabase::new().await.unwrap();
    let config = gateway_config(&database, &[]);
    let limits = ServerLimits::default();
    let store = IdempotencyStore::open(&config.database_url, &config.database).await.unwrap();
    let upstream = Channel::from_shared(format!("http://{}", free_addr())).unwrap().connect_lazy();
    let gateway = Gateway::new(
        Registry::load(&compile(UNMAPPED)).unwrap(),
        Authenticator::new(&config.auth).unwrap(),
        identity(),
        store.clone(),
        HashMap::from([("shop".to_owned(), upstream)]),
        &config,
        &limits,
    );
    let router = Routes::builder().routes().into_axum_router().fallback_service(Proxy(Arc::new(gateway)));
    let server =
        economy_kit::server::spawn("127.0.0.1:0", "test", Routes::from(router), &limits, CancellationToken::new())
            .await
            .unwrap();
    let channel = channel(&server.url()).await;
    let token = bearer(USER, roles::USER);

    let path = "/economy.shop.v1.ShopService/Buy";
    let result = raw_call(channel.clone(), path, raw_request(Vec::new(), &token, Some(&new_key()))).await;
    let status = assert_error(result, Code::Internal, "CANONICAL_OPERATION_NOT_DEFINED");
    assert_eq!(error_info(&status).get("method").map(String::as_str), Some(path));
    assert_eq!(store.count().await.unwrap(), 0);

    let unknown = raw_call(channel, "/economy.shop.v1.ShopService/Nope", raw_request(Vec::new(), &token, None)).await;
    assert_eq!(unknown.expect_err("not routed").code(), Code::Unimplemented);
}
