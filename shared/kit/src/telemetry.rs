//! Tracing initialisation (docs/operations.md, "Observability"): structured fields, `RUST_LOG`-style filters,
//! optional JSON output; OpenTelemetry traces exported over OTLP (gRPC) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, over TLS
//! to an `https://` collector (docs/operations.md, "TLS"); and the W3C trace context
//! (`traceparent`, `tracestate`) carried in gRPC metadata and outbox rows.
//!
//! Propagation: every server extracts the caller's context into its request span
//! (`crate::observe`); every service-to-service call injects the current one
//! (`crate::identity::Signer`, the gateway's proxy); work done later (outbox deliveries)
//! stores `current_traceparent()` with its row and resumes it with `set_remote_parent`.
//! Without an exporter spans still get OpenTelemetry ids (nothing is exported), so logs
//! name their trace (`trace_ids`) and the trace context still flows between services.

use std::sync::OnceLock;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

mod trace_ids;

/// Environment variable that turns OTLP trace export on (e.g. `http://127.0.0.1:4317`).
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Signal-specific form of `OTLP_ENDPOINT_ENV`; either one enables export.
pub const OTLP_TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// PEM CA certificates an `https://` collector must chain to (default: the system's
/// roots); `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` wins when set.
pub const OTLP_CERTIFICATE_ENV: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
/// PEM client certificate (with `OTEL_EXPORTER_OTLP_CLIENT_KEY`) for a collector requiring
/// mTLS; the `…_TRACES_…` forms win when set.
pub const OTLP_CLIENT_CERTIFICATE_ENV: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
/// PEM private key of `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`.
pub const OTLP_CLIENT_KEY_ENV: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";

/// Targets whose spans never become OpenTelemetry spans: the transport under every call,
/// including the exporter's own (exporting them would feed back into the exporter).
const TRANSPORT_TARGETS: [&str; 8] =
    ["h2", "hyper", "hyper_util", "tonic", "tower", "opentelemetry", "opentelemetry_sdk", "opentelemetry_otlp"];

/// The tracer provider installed by `init`, flushed by `shutdown`.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// `[log]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// Filter directives, e.g. `info,economy_ledger=debug`; `RUST_LOG` wins when set.
    pub filter: String,
    /// Emit one JSON object per line instead of human-readable text; a line written inside
    /// a request carries its `trace_id` and `span_id`.
    pub json: bool,
    /// One access line per RPC at `info` (target `economy::access`; `crate::observe`).
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { filter: "info".into(), json: false, access: true }
    }
}

/// Installs the global subscriber (logs on stderr, filtered by `config.filter` or
/// `RUST_LOG`) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, an OTLP/gRPC span exporter (batched, in the
/// background; service name from `OTEL_SERVICE_NAME`, else the executable's name). Call
/// inside the Tokio runtime. A second call (tests) is a no-op. An exporter that cannot be
/// built is logged and traces stay off.
pub fn init(config: &LogConfig) {
    let (provider, failure) = match otlp_provider() {
        Ok(provider) => (provider, None),
        Err(error) => (None, Some(error)),
    };
    init_with(config, provider);
    if let Some(error) = failure {
        tracing::error!(%error, "the OTLP trace exporter could not be built; traces are not exported");
    }
}

/// `init` with the given tracer provider instead of the OTLP one (tests pass a provider
/// with an in-memory exporter); with `None`, spans are not exported but still get trace
/// and span ids (the caller's trace, or a new one), which logs and propagation carry.
/// Spans at INFO and above become OpenTelemetry spans, whatever the log filter, except
/// those of the transport crates.
pub fn init_with(config: &LogConfig, provider: Option<SdkTracerProvider>) {
    crate::observe::set_access_log(config.access);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let format = trace_ids::WithTraceIds::new(tracing_subscriber::fmt::format().json());
    let dispatch = format.dispatch();
    let (json, text) = if config.json {
        let layer = tracing_subscriber::fmt::layer().json().event_format(format).with_writer(std::io::stderr);
        (Some(layer.with_filter(filter)), None)
    } else {
        (None, Some(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter)))
    };
    // Without an exporter, a provider without processors: ids, no export.
    let provider = provider.unwrap_or_else(|| SdkTracerProvider::builder().build());
    let tracer = provider.tracer("economy");
    let _ = PROVIDER.set(provider);
    let targets = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_targets(TRANSPORT_TARGETS.map(|target| (target, LevelFilter::OFF)));
    let otel = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(targets);
    if tracing_subscriber::registry().with(otel).with(json).with(text).try_init().is_ok() {
        let _ = dispatch.set(tracing::dispatcher::get_default(tracing::Dispatch::downgrade));
    }
}

/// Where spans go: the collector's endpoint and, for `https://`, how it is verified (the
/// OpenTelemetry exporter variables; docs/operations.md, "TLS").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtlpTarget {
    /// `https://host:4317` (TLS) or `http://host:4317`; without a scheme, TLS.
    pub endpoint: String,
    /// PEM CA certificates the collector must chain to; `None`: the system's roots.
    pub ca_file: Option<String>,
    /// PEM client certificate and key, for a collector requiring mTLS.
    pub client_identity: Option<(String, String)>,
}

impl OtlpTarget {
    /// The target the environment names (`OTEL_EXPORTER_OTLP_TRACES_*` over
    /// `OTEL_EXPORTER_OTLP_*`), or `None` when no endpoint is set.
    pub fn from_env() -> Option<Self> {
        let endpoint = env_pair(OTLP_TRACES_ENDPOINT_ENV, OTLP_ENDPOINT_ENV)?;
        let ca_file = env_pair("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", OTLP_CERTIFICATE_ENV);
        let cert = env_pair("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", OTLP_CLIENT_CERTIFICATE_ENV);
        let key = env_pair("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", OTLP_CLIENT_KEY_ENV);
        Some(Self { endpoint, ca_file, client_identity: cert.zip(key) })
    }

    /// True when spans travel over TLS: an `https://` endpoint, or one without a scheme.
    pub fn is_tls(&self) -> bool {
        self.endpoint.starts_with("https://") || !self.endpoint.contains("://")
    }

    /// The TLS settings of an `https://` collector. Errors: an unreadable file.
    fn tls_config(&self) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let read = |path: &str| std::fs::read(path).map_err(|error| anyhow::anyhow!("cannot read {path}: {error}"));
        let config = match &self.ca_file {
            Some(ca_file) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca_file)?)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        Ok(match &self.client_identity {
            Some((cert, key)) => config.identity(Identity::from_pem(read(cert)?, read(key)?)),
            None => config,
        })
    }
}

/// The first of two variables that is set and not blank.
fn env_pair(specific: &str, general: &str) -> Option<String> {
    [specific, general].iter().find_map(|name| {
        std::env::var(name).ok().map(|value| value.trim().to_owned()).filter(|value| !value.is_empty())
    })
}

/// The OTLP/gRPC span exporter to `target`: over TLS (rustls) when [`OtlpTarget::is_tls`],
/// verifying the collector against `ca_file` or the system's roots. Errors: an unreadable
/// file, an invalid endpoint.
pub fn otlp_exporter(target: &OtlpTarget) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
    let builder = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(target.endpoint.clone());
    let builder = if target.is_tls() { builder.with_tls_config(target.tls_config()?) } else { builder };
    Ok(builder.build()?)
}

/// The OTLP/gRPC provider, when an endpoint is configured.
fn otlp_provider() -> anyhow::Result<Option<SdkTracerProvider>> {
    let Some(target) = OtlpTarget::from_env() else {
        return Ok(None);
    };
    let exporter = otlp_exporter(&target)?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        let name = std::env::current_exe()
            .ok()
            .and_then(|path| path.file_stem().map(|stem| stem.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "economy".into());
        resource = resource.with_service_name(name);
    }
    Ok(Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build()))
}

/// Exports the spans still buffered and stops the exporter; call once before the process
/// exits (no-op without one). Blocks a worker of the blocking pool, not the runtime.
pub async fn shutdown() {
    if let Some(provider) = PROVIDER.get().cloned() {
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "the trace exporter did not shut down cleanly");
        }
    }
}

/// Writes the current span's trace context into `metadata` (`traceparent`, and
/// `tracestate` when present), replacing any already there. Nothing is written when the
/// current span has no valid trace (no exporter, or outside any span).
pub fn inject(metadata: &mut MetadataMap) {
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
    }
}

/// The remote parent carried by `headers` (`traceparent`, `tracestate`); an empty context
/// when absent or malformed.
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Makes the trace context carried by `headers` the parent of `span` (call before the span
/// is first entered); no-op when there is none.
pub fn set_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let context = extract(headers);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// The current span's context as a W3C `traceparent` value
/// (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`), or `""` when it has no valid
/// trace. Stored with work done later (outbox rows) to resume the trace.
pub fn current_traceparent() -> String {
    let context = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
    }
    carrier.remove("traceparent").unwrap_or_default()
}

/// Makes `traceparent` (as stored by `current_traceparent`) the parent of `span`, so work
/// done later joins the trace of the request that caused it. Call before the span is
/// first entered. An empty or malformed value leaves `span` a root.
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let carrier = std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// Writes propagation fields into gRPC metadata.
struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (MetadataKey::from_bytes(key.as_bytes()), MetadataValue::try_from(value)) {
            self.0.insert(key, value);
        }
    }
}

/// Reads propagation fields from HTTP headers.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
    use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanExporter as _};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Runs `test` with an OpenTelemetry layer as this thread's subscriber; returns the
    /// exporter and its provider (dropping the provider would clear the exporter).
    fn with_tracing(test: impl FnOnce()) -> (InMemorySpanExporter, SdkTracerProvider) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), test);
        (exporter, provider)
    }

    /// An OTLP collector counting the spans it receives.
    #[derive(Default)]
    struct Collector(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    #[async_trait::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let request = request.into_inner();
            let scopes = request.resource_spans.iter().flat_map(|resource| &resource.scope_spans);
            let count = scopes.map(|scope| scope.spans.len()).sum::<usize>();
            self.0.fetch_add(count, std::sync::atomic::Ordering::SeqCst);
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    /// A CA and a server certificate for 127.0.0.1 it signs, written into `dir` as
    /// `ca.pem`, `cert.pem`, `key.pem`.
    fn certificates(dir: &std::path::Path) -> anyhow::Result<crate::tls::ServerTls> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        std::fs::create_dir_all(dir)?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate()?;
        std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key)?.pem())?;
        let leaf_key = KeyPair::generate()?;
        let leaf =
            CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&leaf_key, &Issuer::new(ca, ca_key))?;
        std::fs::write(dir.join("cert.pem"), leaf.pem())?;
        std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem())?;
        let file = |name: &str| dir.join(name).display().to_string();
        Ok(crate::tls::ServerTls {
            cert_file: file("cert.pem"),
            key_file: file("key.pem"),
            client_ca_file: String::new(),
        })
    }

    #[tokio::test]
    async fn spans_reach_an_https_collector_verified_against_its_ca() -> anyhow::Result<()> {
        use crate::server::{ServeOptions, ServerLimits, spawn_with};
        let dir = std::env::temp_dir().join(format!("economy-otlp-tls-{}", uuid::Uuid::now_v7()));
        let tls = certificates(&dir)?;
        let collector = Collector::default();
        let received = collector.0.clone();
        let routes = tonic::service::Routes::new(TraceServiceServer::new(collector));
        let options = ServeOptions::tls(&tls, "collector.tls")?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server =
            spawn_with("127.0.0.1:0", "collector", routes, &ServerLimits::default(), options, shutdown).await?;
        let (spans, _provider) = with_tracing(|| tracing::info_span!("exported").in_scope(|| {}));
        let spans = spans.get_finished_spans()?;
        assert_eq!(spans.len(), 1);

        let ca_file = Some(dir.join("ca.pem").display().to_string());
        let trusted = OtlpTarget { endpoint: server.url(), ca_file, client_identity: None };
        assert!(trusted.is_tls());
        otlp_exporter(&trusted)?.export(spans.clone()).await?;
        assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 1);

        let untrusted = OtlpTarget { endpoint: server.url(), ..OtlpTarget::default() };
        assert!(otlp_exporter(&untrusted)?.export(spans).await.is_err(), "a collector outside the system's roots");
        assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 1);
        server.stop().await?;
        Ok(std::fs::remove_dir_all(dir)?)
    }

    #[test]
    fn nothing_is_propagated_outside_a_trace() {
        let mut metadata = MetadataMap::new();
        inject(&mut metadata);
        assert!(metadata.is_empty());
        assert_eq!(current_traceparent(), "");
        let extracted = extract(&http::HeaderMap::new());
        assert!(!extracted.span().span_context().is_valid());
    }

    #[test]
    fn the_context_round_trips_through_metadata_and_storage() {
        let client = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let (mut metadata, mut stored) = (MetadataMap::new(), String::new());
        let (exporter, _provider) = with_tracing(|| {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", http::HeaderValue::from_static(client));
            let span = tracing::info_span!("request");
            set_parent(&span, &headers);
            span.in_scope(|| {
                inject(&mut metadata);
                stored = current_traceparent();
            });
            let later = tracing::info_span!("later");
            set_remote_parent(&later, &stored);
            later.in_scope(|| {});
            let broken = tracing::info_span!("broken");
            set_remote_parent(&broken, "00-not-a-trace");
            broken.in_scope(|| {});
        });
        let sent = metadata.get("traceparent").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
        assert!(sent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"), "{sent}");
        assert_ne!(sent, client, "the request's own span is the parent downstream");
        assert_eq!(stored, sent);
        let spans = exporter.get_finished_spans().expect("spans");
        let span = |name: &str| spans.iter().find(|span| span.name == name).expect("span");
        let trace = span("request").span_context.trace_id();
        assert_eq!(trace.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(span("later").span_context.trace_id(), trace);
        assert_eq!(span("later").parent_span_id, span("request").span_context.span_id());
        assert_ne!(span("broken").span_context.trace_id(), trace, "a malformed value starts a new trace");
    }
}
