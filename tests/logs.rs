//! Logs joined to traces, and the access log (docs/operations.md, "Observability"): the
//! real `economy up` logs JSON lines and exports its spans to an OTLP collector run by
//! the test. A request sent with the client's own `traceparent` writes an access line at
//! the gateway and at the ledger, each carrying that trace id and its span's id, and the
//! span the gateway's line names is the one the collector received. A refused request's
//! line names its code and reason. With `log.access = false` no access line is written.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use economy_e2e::Stack;
use economy_kit::server::{ServerLimits, spawn};
use economy_proto::ledger::v1 as ledger;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const GATEWAY: &str = "economy.gateway.v1.Gateway";
const LEDGER: &str = "economy.ledger.v1.LedgerService";
const LIST_BALANCES: &str = "/economy.ledger.v1.LedgerService/ListBalances";

/// An OTLP collector keeping the `(trace id, span id, name)` of every span it receives.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<(String, String, String)>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let spans =
            request.resource_spans.iter().flat_map(|resource| &resource.scope_spans).flat_map(|scope| &scope.spans);
        let received = spans.map(|span| (hex(&span.trace_id), hex(&span.span_id), span.name.clone()));
        self.0.lock().expect("collector").extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The JSON access lines (`economy::access`) logged so far.
fn access_lines(stack: &Stack) -> Vec<Value> {
    let lines = stack.logs();
    let values = lines.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok());
    values.filter(|value| value["target"] == "economy::access").collect()
}

/// The access line of `method` at `server` whose field `key` is `value`, waiting for it
/// (a line is written when its response ends, just after the client has its answer).
async fn access_line(stack: &Stack, server: &str, method: &str, key: &str, value: &Value) -> Value {
    for _ in 0..100 {
        let found = access_lines(stack).into_iter().find(|line| {
            let fields = &line["fields"];
            fields["server"] == server && fields["method"] == method && line.pointer(key) == Some(value)
        });
        if let Some(line) = found {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no access line of {method} at {server} with {key} = {value}; logs:\n{}", stack.logs());
}

/// An admin's bearer token from `economy token`.
async fn admin_token(stack: &Stack) -> anyhow::Result<String> {
    Ok(stack.ok(&["token", "--user-id", "1", "--role", "100", "--ttl", "1h"]).await?.stdout.trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_id_in_a_log_line_finds_its_trace() -> anyhow::Result<()> {
    let collector = Collector::default();
    let shutdown = CancellationToken::new();
    let routes = tonic::service::Routes::new(TraceServiceServer::new(collector.clone()));
    let otlp = spawn("127.0.0.1:0", "collector", routes, &ServerLimits::default(), shutdown.clone()).await?;
    let endpoint = otlp.url();
    let stack =
        Stack::start_with_env(&[("ECONOMY_LOG__JSON", "true"), ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]).await?;

    let token = admin_token(&stack).await?;
    let (trace_id, client_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let channel = tonic::transport::Channel::from_shared(stack.endpoint.clone())?.connect().await?;
    let account = ledger::AccountRef { account: Some(ledger::account_ref::Account::UserId(2)) };
    let mut request = tonic::Request::new(ledger::ListBalancesRequest { account: Some(account), as_of: None });
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-{client_span}-01").parse()?);
    request.metadata_mut().insert("x-request-id", "logs-test-1".parse()?);
    ledger::ledger_service_client::LedgerServiceClient::new(channel).list_balances(request).await?;

    let traced = Value::from(trace_id);
    let at_gateway = access_line(&stack, GATEWAY, LIST_BALANCES, "/trace_id", &traced).await;
    let at_ledger = access_line(&stack, LEDGER, LIST_BALANCES, "/trace_id", &traced).await;
    for (line, request_id) in [(&at_gateway, Value::from("logs-test-1")), (&at_ledger, Value::Null)] {
        let fields = &line["fields"];
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(fields["code"], "OK", "{line}");
        assert_eq!(fields["user_id"], 1, "the verified caller: {line}");
        assert!(fields["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{line}");
        assert_eq!(fields["request_id"], request_id, "{line}");
        assert!(line["span_id"].as_str().is_some_and(|id| id.len() == 16 && id != client_span), "{line}");
    }
    let gateway_span = at_gateway["span_id"].as_str().unwrap_or_default().to_owned();

    // A refusal names its code and reason (a command without any traceparent of its own).
    let refused = stack.run(&["adjust", "--user", "2", "--asset", "NOPE", "--amount", "1", "--reason", "x"]).await?;
    assert!(refused.stderr.contains("ASSET_NOT_FOUND"), "{}", refused.stderr);
    let reason = Value::from("ASSET_NOT_FOUND");
    let refusal =
        access_line(&stack, GATEWAY, "/economy.ledger.v1.LedgerService/AdjustBalance", "/fields/reason", &reason).await;
    assert_eq!(refusal["fields"]["code"], "NOT_FOUND", "{refusal}");
    assert!(refusal["trace_id"].as_str().is_some_and(|id| id.len() == 32 && id != trace_id), "a trace of its own");

    // The exporter flushes when the stack stops: the gateway's span is in the collector.
    assert_eq!(stack.stop().await?, Some(0));
    let received = collector.0.lock().expect("collector").clone();
    let span = received.iter().find(|(trace, span, _)| *trace == trace_id && *span == gateway_span);
    assert_eq!(span.map(|(_, _, name)| name.as_str()), Some(LIST_BALANCES), "span {gateway_span} in {received:?}");
    otlp.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_can_be_turned_off() -> anyhow::Result<()> {
    let stack = Stack::start_with_env(&[("ECONOMY_LOG__JSON", "true"), ("ECONOMY_LOG__ACCESS", "false")]).await?;
    let token = admin_token(&stack).await?;
    stack.ok(&["--token", &token, "balance", "--user", "2"]).await?;
    let logs = stack.log_reader();
    assert_eq!(stack.stop().await?, Some(0));
    // The gateway stops after its requests ended: its last line comes after theirs.
    let stopped = |line: &Value| line["fields"]["message"] == "server stopped" && line["fields"]["service"] == GATEWAY;
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = logs().lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()).collect();
        if lines.iter().any(stopped) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lines.iter().any(stopped), "the gateway's stop is logged:\n{}", logs());
    assert!(!lines.iter().any(|line| line["target"] == "economy::access"), "no access line:\n{}", logs());
    Ok(())
}
