//! JSON log lines that name their trace (docs/operations.md, "Observability"): the
//! event formatter wraps tracing-subscriber's JSON one and puts `trace_id` and `span_id`
//! (W3C hex, as OTLP exports them) first in every line written inside a span that has an
//! OpenTelemetry context, so a log line finds its trace and a trace its lines.

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt as _;
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `inner` (a JSON event format) with the ids of the event's span, read through the
/// subscriber's dispatch (given once installed: inside an event `get_default` answers no
/// dispatch while a scoped default exists, so it is kept here).
#[derive(Debug, Clone)]
pub(super) struct WithTraceIds<F> {
    inner: F,
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl<F> WithTraceIds<F> {
    pub(super) fn new(inner: F) -> Self {
        Self { inner, dispatch: Arc::default() }
    }

    /// Where the installed subscriber's dispatch goes (`telemetry::init_with`).
    pub(super) fn dispatch(&self) -> Arc<OnceLock<WeakDispatch>> {
        self.dispatch.clone()
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, context: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let dispatch = self.dispatch.get().and_then(WeakDispatch::upgrade);
        let Some((trace_id, span_id)) = dispatch.and_then(|dispatch| ids(context, &dispatch)) else {
            return self.inner.format_event(context, writer, event);
        };
        let mut line = String::new();
        self.inner.format_event(context, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}

/// The trace and span ids of the innermost span of the event's scope that has a valid
/// OpenTelemetry context (the transport crates' spans have none: their lines name the
/// request's span); none outside any such span.
fn ids<S, N>(context: &FmtContext<'_, S, N>, dispatch: &Dispatch) -> Option<(String, String)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let scope: Vec<tracing::span::Id> = context.event_scope()?.map(|span| span.id()).collect();
    scope.iter().find_map(|id| valid_ids(id, dispatch))
}

/// The ids of the span `id` when its OpenTelemetry context is valid.
fn valid_ids(id: &tracing::span::Id, dispatch: &Dispatch) -> Option<(String, String)> {
    let otel = tracing_opentelemetry::get_otel_context(id, dispatch)?;
    let span = otel.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| (span_context.trace_id().to_string(), span_context.span_id().to_string()))
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::testing::LogBuffer;

    #[test]
    fn lines_inside_a_span_name_its_trace_and_span() {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        let provider = SdkTracerProvider::builder().build();
        let format = WithTraceIds::new(tracing_subscriber::fmt::format().json());
        let slot = format.dispatch();
        let json = tracing_subscriber::fmt::layer().json().event_format(format).with_writer(move || writer.clone());
        // As `init_with` filters it: INFO spans, none of the transport's.
        let targets = Targets::new().with_default(LevelFilter::INFO).with_target("h2", LevelFilter::OFF);
        let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test")).with_filter(targets);
        let subscriber = tracing_subscriber::registry().with(otel).with(json);
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let dispatch = Dispatch::new(subscriber);
        slot.set(dispatch.downgrade()).expect("set once");
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!("outside");
            let span = tracing::info_span!("request");
            crate::telemetry::set_remote_parent(&span, parent);
            span.in_scope(|| {
                tracing::info!("inside");
                // A span outside OpenTelemetry (the transport's): the request's ids.
                tracing::debug_span!(target: "h2", "frame").in_scope(|| tracing::info!("nested"));
            });
        });
        let text = buffer.text();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|line| serde_json::from_str(line).expect("json")).collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0].get("trace_id"), None, "no span, no ids: {text}");
        for line in &lines[1..] {
            assert_eq!(line["trace_id"], "0af7651916cd43dd8448eb211c80319c", "{text}");
            assert!(line["span_id"].as_str().is_some_and(|id| id.len() == 16 && id != "b7ad6b7169203331"), "{text}");
        }
        assert_eq!(lines[1]["span_id"], lines[2]["span_id"]);
    }
}
