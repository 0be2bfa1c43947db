//! Trace propagation (docs/operations.md, "Observability"): the real stack — ledger, items, redemption and market behind a
//! gateway, each on `127.0.0.1:0` with its own database — with the kit's subscriber
//! exporting to an in-memory OpenTelemetry exporter. A client sends its own `traceparent`;
//! every span of the work it causes, in every service, must carry that trace id:
//! gateway -> ledger, a market purchase -> ledger and items, and a redemption whose
//! consume is delivered later by the outbox job after Items came back.

use std::sync::OnceLock;
use std::time::Duration;

use economy_kit::identity::roles;
use economy_kit::telemetry::{self, LogConfig};
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use economy_proto::market::v1 as market;
use economy_proto::redemption::v1 as redemption;
use economy_testkit::{Service, TestStack, bearer, new_key, test_stack};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tonic::Request;
use tonic::transport::Channel;

const GATEWAY: &str = "economy.gateway.v1.Gateway";
const LEDGER: &str = "economy.ledger.v1.LedgerService";
const ITEMS: &str = "economy.items.v1.ItemService";
const MARKET: &str = "economy.market.v1.MarketService";
const REDEMPTION: &str = "economy.redemption.v1.RedemptionService";

/// The exporter behind the process's subscriber (installed once per test binary).
fn exporter() -> InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
            telemetry::init_with(&LogConfig::default(), Some(provider));
            exporter
        })
        .clone()
}

/// The whole stack; redemption's outbox job runs every second.
async fn spawn_stack() -> TestStack {
    test_stack(&Service::ALL)
        .configure(|config| {
            config.limits.request_timeout_secs = 5;
            config.redemption.outbox_interval_secs = 1;
        })
        .start()
        .await
}

/// A client's trace: a fresh trace id and the client's own span id.
#[derive(Clone, Copy)]
struct ClientTrace {
    trace_id: TraceId,
    span_id: SpanId,
}

impl ClientTrace {
    fn new() -> Self {
        let bytes = *uuid::Uuid::now_v7().as_bytes();
        let span = *uuid::Uuid::now_v7().as_bytes();
        let span_bytes: [u8; 8] = span[8..].try_into().expect("8 bytes");
        Self { trace_id: TraceId::from_bytes(bytes), span_id: SpanId::from_bytes(span_bytes) }
    }

    fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// Clients of the gateway; every request carries its own token ([`call`]).
trait Clients {
    async fn channel(&self) -> Channel;

    async fn ledger(&self) -> ledger::ledger_service_client::LedgerServiceClient<Channel> {
        ledger::ledger_service_client::LedgerServiceClient::new(self.channel().await)
    }

    async fn items(&self) -> items::item_service_client::ItemServiceClient<Channel> {
        items::item_service_client::ItemServiceClient::new(self.channel().await)
    }

    async fn market(&self) -> market::market_service_client::MarketServiceClient<Channel> {
        market::market_service_client::MarketServiceClient::new(self.channel().await)
    }

    async fn redemption(&self) -> redemption::redemption_service_client::RedemptionServiceClient<Channel> {
        redemption::redemption_service_client::RedemptionServiceClient::new(self.channel().await)
    }
}

impl Clients for TestStack {
    async fn channel(&self) -> Channel {
        TestStack::channel(self, Service::Gateway).await
    }
}

/// `message` as `user_id` (role `role`) with a fresh idempotency key and, when given, the
/// client's `traceparent`.
fn call<T>(message: T, user_id: i64, role: i32, trace: Option<ClientTrace>) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("authorization", bearer(user_id, role).parse().expect("ascii"));
    metadata.insert("idempotency-key", new_key().parse().expect("ascii"));
    if let Some(trace) = trace {
        metadata.insert("traceparent", trace.traceparent().parse().expect("ascii"));
    }
    request
}

fn admin<T>(message: T) -> Request<T> {
    call(message, 1, roles::ADMIN, None)
}

fn attribute(span: &SpanData, key: &str) -> String {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
        .unwrap_or_default()
}

/// A server span: which server handled which `/service/method`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hop {
    server: String,
    path: String,
}

fn hop(server: &str, service: &str, method: &str) -> Hop {
    Hop { server: server.into(), path: format!("/{service}/{method}") }
}

/// The finished spans of `trace`, waiting until each of `expected` server spans is there
/// (a span ends with its response body, just after the client has its answer).
async fn spans_of(trace: ClientTrace, expected: &[Hop]) -> Vec<SpanData> {
    spans_when(trace, |spans| expected.iter().all(|wanted| server_span(spans, wanted).is_some())).await
}

/// The finished spans of `trace` once `ready` holds for them (10 s at most).
async fn spans_when(trace: ClientTrace, ready: impl Fn(&[SpanData]) -> bool) -> Vec<SpanData> {
    let mut spans = Vec::new();
    for _ in 0..100 {
        spans = exporter()
            .get_finished_spans()
            .expect("spans")
            .into_iter()
            .filter(|span| span.span_context.trace_id() == trace.trace_id)
            .collect();
        if ready(&spans) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen: Vec<_> = spans.iter().map(|span| (attribute(span, "economy.server"), span.name.to_string())).collect();
    panic!("trace {} is incomplete; it has {seen:?}", trace.trace_id);
}

fn server_span<'a>(spans: &'a [SpanData], wanted: &Hop) -> Option<&'a SpanData> {
    spans.iter().find(|span| attribute(span, "economy.server") == wanted.server && span.name == wanted.path)
}

fn parent_of<'a>(spans: &'a [SpanData], child: &SpanData) -> Option<&'a SpanData> {
    spans.iter().find(|span| span.span_context.span_id() == child.parent_span_id)
}

async fn define_diamond_and_credit(stack: &TestStack, user_id: i64, amount: i64) {
    let mut ledger = stack.ledger().await;
    let asset = ledger::Asset {
        code: "DIAMOND".into(),
        display_name: "Diamond".into(),
        kind: ledger::AssetKind::Currency.into(),
        ..Default::default()
    };
    ledger.define_asset(admin(ledger::DefineAssetRequest { asset: Some(asset) })).await.expect("asset");
    let credit = ledger::AdjustBalanceRequest {
        user_id,
        asset_code: "DIAMOND".into(),
        direction: ledger::AdjustDirection::Credit.into(),
        amount,
        reason: "test".into(),
        ..Default::default()
    };
    ledger.adjust_balance(admin(credit)).await.expect("credit");
}

async fn grant(stack: &TestStack, owner: i64, template: &str) -> String {
    let mut items = stack.items().await;
    let definition = items::ItemTemplate {
        code: template.into(),
        display_name: template.into(),
        kind: items::ItemKind::Voucher.into(),
        redeemable: true,
        ..Default::default()
    };
    items.define_template(admin(items::DefineTemplateRequest { template: Some(definition) })).await.expect("template");
    let request =
        items::GrantItemRequest { owner_user_id: owner, template_code: template.into(), ..Default::default() };
    items.grant_item(admin(request)).await.expect("grant").into_inner().item.expect("item").id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_the_gateway_is_one_trace() {
    exporter();
    let stack = spawn_stack().await;
    define_diamond_and_credit(&stack, 2, 10).await;
    let trace = ClientTrace::new();
    let credit = ledger::AdjustBalanceRequest {
        user_id: 2,
        asset_code: "DIAMOND".into(),
        direction: ledger::AdjustDirection::Credit.into(),
        amount: 5,
        reason: "traced".into(),
        ..Default::default()
    };
    stack.ledger().await.adjust_balance(call(credit, 1, roles::ADMIN, Some(trace))).await.expect("adjust");

    let (at_gateway, at_ledger) = (hop(GATEWAY, LEDGER, "AdjustBalance"), hop(LEDGER, LEDGER, "AdjustBalance"));
    let spans = spans_of(trace, &[at_gateway.clone(), at_ledger.clone()]).await;
    let gateway = server_span(&spans, &at_gateway).expect("gateway span");
    let ledger = server_span(&spans, &at_ledger).expect("ledger span");
    // client -> gateway: the gateway's span is the child of the client's span.
    assert_eq!(gateway.parent_span_id, trace.span_id);
    // gateway -> ledger: the ledger's span is the child of the gateway's.
    assert_eq!(ledger.parent_span_id, gateway.span_context.span_id());
    assert_eq!(attribute(ledger, "rpc.grpc.status_code"), "0");

    // A request without a traceparent starts its own trace: nothing else joins this one.
    let account = ledger::AccountRef { account: Some(ledger::account_ref::Account::UserId(2)) };
    stack
        .ledger()
        .await
        .list_balances(admin(ledger::ListBalancesRequest { account: Some(account), as_of: None }))
        .await
        .expect("read");
    let again = spans_of(trace, &[at_gateway, at_ledger]).await;
    assert_eq!(again.len(), spans.len(), "only the traced request's spans");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_is_one_trace_across_market_ledger_and_items() {
    exporter();
    let stack = spawn_stack().await;
    let (seller, buyer) = (2, 3);
    define_diamond_and_credit(&stack, buyer, 100).await;
    let item = grant(&stack, seller, "sword").await;
    let listing = market::CreateListingRequest {
        offer: Some(market::create_listing_request::Offer::Item(market::ItemOffer {
            item_instance_id: item.clone(),
            ..Default::default()
        })),
        price: Some(market::Price { asset_code: "DIAMOND".into(), amount: 40 }),
        ..Default::default()
    };
    let listing = stack
        .market()
        .await
        .create_listing(call(listing, seller, roles::USER, None))
        .await
        .expect("listing")
        .into_inner()
        .listing
        .expect("listing");

    let trace = ClientTrace::new();
    let purchase = market::PurchaseListingRequest { listing_id: listing.id.clone(), ..Default::default() };
    let bought = stack.market().await.purchase_listing(call(purchase, buyer, roles::USER, Some(trace))).await;
    assert!(bought.expect("purchase").into_inner().trade.is_some());

    let at_gateway = hop(GATEWAY, MARKET, "PurchaseListing");
    let at_market = hop(MARKET, MARKET, "PurchaseListing");
    let payment = hop(LEDGER, LEDGER, "CreateHold");
    let transfer = hop(ITEMS, ITEMS, "TransferItem");
    let payout = hop(LEDGER, LEDGER, "SettleHold");
    let spans =
        spans_of(trace, &[at_gateway.clone(), at_market.clone(), payment.clone(), transfer.clone(), payout.clone()])
            .await;
    let market_span = server_span(&spans, &at_market).expect("market");
    assert_eq!(market_span.parent_span_id, server_span(&spans, &at_gateway).expect("gateway").span_context.span_id());
    for downstream in [&payment, &transfer, &payout] {
        let span = server_span(&spans, downstream).expect("downstream");
        assert_eq!(span.parent_span_id, market_span.span_context.span_id(), "{downstream:?} is called by the market");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_outbox_delivery_joins_the_trace_of_its_fulfilment() {
    exporter();
    let mut stack = spawn_stack().await;
    let owner = 2;
    let item = grant(&stack, owner, "coffee").await;
    let create = redemption::CreateOrderRequest { item_instance_id: item.clone(), ..Default::default() };
    let created = stack.redemption().await.create_order(call(create, owner, roles::USER, None)).await.expect("create");
    let code = created.into_inner().code;

    // Items goes away: the fulfilment commits, its consume stays owed in the outbox.
    stack.stop(Service::Items).await;
    let trace = ClientTrace::new();
    let fulfil = redemption::FulfillOrderRequest { code, ..Default::default() };
    stack
        .redemption()
        .await
        .fulfill_order(call(fulfil, 7, roles::MERCHANT_STAFF, Some(trace)))
        .await
        .expect("fulfilled while items is down");

    // Items is back; the outbox job delivers the consume a few seconds later.
    stack.restart(Service::Items).await;
    let at_redemption = hop(REDEMPTION, REDEMPTION, "FulfillOrder");
    let consume = hop(ITEMS, ITEMS, "ConsumeItem");
    // The delivery span ends just after the consume it made.
    let spans = spans_when(trace, |spans| {
        server_span(spans, &at_redemption).is_some()
            && server_span(spans, &consume).is_some_and(|consumed| parent_of(spans, consumed).is_some())
    })
    .await;
    let fulfilment = server_span(&spans, &at_redemption).expect("fulfilment");
    let consumed = server_span(&spans, &consume).expect("consume");
    let delivery = parent_of(&spans, consumed).expect("the consume's parent is in the trace");
    assert_eq!(delivery.name, "outbox.deliver");
    assert_eq!(delivery.parent_span_id, fulfilment.span_context.span_id(), "restored from the outbox row");
    assert_eq!(attribute(delivery, "attempt"), "2", "the job's retry, not the inline attempt");
}
