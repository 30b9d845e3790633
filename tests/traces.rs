//! One request is one trace: the end-to-end stack runs with an in-memory span exporter
//! behind the same tracing-opentelemetry layer the binary installs, and the exported spans
//! of an auto-approved request are checked against the trace id in its record.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use grantline_shared::request::{RequestState, fields};
use grantline_shared::trace::TraceParent;
use grantline_sims::{NewRitm, ids, snow_sys_id};
use support::Stack;

const WAIT: Duration = Duration::from_secs(20);

/// The chain of an auto-approved, time-bound request, in order.
const CHAIN: [&str; 5] = ["validate", "request-approval", "execute-grant", "update-ticket", "schedule-removal"];

/// Installs, as this test binary's global subscriber, the binary's OpenTelemetry layer over
/// a provider that exports every span as it ends into memory (plus logs, per RUST_LOG).
fn install() -> (SdkTracerProvider, InMemorySpanExporter) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let logs = tracing_subscriber::fmt::layer()
        .with_test_writer()
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")));
    tracing_subscriber::registry().with(logs).with(grantline::telemetry::otel_layer(&provider)).init();
    (provider, exporter)
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.clone())
}

fn attr_str(span: &SpanData, key: &str) -> Option<String> {
    attr(span, key).map(|v| v.as_str().into_owned())
}

fn is_job_span(span: &SpanData) -> bool {
    CHAIN.contains(&span.name.as_ref()) || ["remove-access", "rollback-grant", "alert"].contains(&span.name.as_ref())
}

fn is_connector_span(span: &SpanData) -> bool {
    ["graph.", "servicenow.", "token."].iter().any(|p| span.name.starts_with(p))
}

/// The exported spans, once the last step's span of `request_id` is among them.
async fn spans_of(provider: &SdkTracerProvider, exporter: &InMemorySpanExporter, request_id: &str) -> Vec<SpanData> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        provider.force_flush().expect("flush");
        let spans = exporter.get_finished_spans().expect("finished spans");
        let last = CHAIN[CHAIN.len() - 1];
        if spans.iter().any(|s| s.name == last && attr_str(s, "request_id").as_deref() == Some(request_id)) {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "no {last} span for {request_id}: {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_of_job_spans_with_connector_children() {
    let (provider, exporter) = install();
    let stack = Stack::start().await;
    let (_number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    let rec = stack.wait_state(&id, RequestState::Active, WAIT).await;
    let spans = spans_of(&provider, &exporter, &id).await;

    let trace_id = TraceId::from_hex(&rec[fields::TRACE_ID]).expect("the record's trace id");
    let root = TraceParent::parse(&rec[fields::TRACEPARENT]).expect("the record's traceparent");
    assert_eq!(root.trace_id, rec[fields::TRACE_ID]);
    let root_span = SpanId::from_hex(&root.parent_id).unwrap();
    let by_id: HashMap<SpanId, &SpanData> = spans.iter().map(|s| (s.span_context.span_id(), s)).collect();
    let listing = || {
        spans
            .iter()
            .map(|s| {
                format!("{} {} {} <- {}", s.name, s.span_context.trace_id(), s.span_context.span_id(), s.parent_span_id)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    // every job span is in the request's trace, with its request, attempt and job id
    let jobs: Vec<&SpanData> = spans.iter().filter(|s| is_job_span(s)).collect();
    for s in &jobs {
        assert_eq!(s.span_context.trace_id(), trace_id, "{} is not in the request's trace:\n{}", s.name, listing());
        assert_eq!(attr_str(s, "request_id").as_deref(), Some(id.as_str()), "{}", s.name);
        assert!(
            matches!(attr(s, "attempt"), Some(Value::I64(n)) if n >= 1),
            "{}: attempt {:?}",
            s.name,
            attr(s, "attempt")
        );
        assert!(attr_str(s, "job_id").is_some_and(|j| !j.is_empty()), "{}: no job id", s.name);
        assert_eq!(s.span_kind, SpanKind::Consumer, "{}", s.name);
    }
    let of = |kind: &str| jobs.iter().filter(|s| s.name == kind).copied().collect::<Vec<_>>();
    for kind in CHAIN {
        assert!(!of(kind).is_empty(), "no {kind} span:\n{}", listing());
    }

    // a chain, not a star: validate continues the request's context from ingest (a remote
    // parent), and every later step is a child of the step that handed it off
    for s in of("validate") {
        assert_eq!(s.parent_span_id, root_span, "validate's parent is the request's traceparent:\n{}", listing());
        assert!(s.parent_span_is_remote);
    }
    for pair in CHAIN.windows(2) {
        let parents: Vec<SpanId> = of(pair[0]).iter().map(|s| s.span_context.span_id()).collect();
        for s in of(pair[1]) {
            assert!(parents.contains(&s.parent_span_id), "{} is not a child of {}:\n{}", pair[1], pair[0], listing());
        }
    }

    // connector calls are spans of the same trace, under a job span
    let connectors: Vec<&SpanData> = spans.iter().filter(|s| is_connector_span(s)).collect();
    for name in ["servicenow.get_ritm", "graph.batch", "graph.add_member", "servicenow.update_ritm"] {
        assert!(connectors.iter().any(|s| s.name == name), "no {name} span:\n{}", listing());
    }
    for s in &connectors {
        assert_eq!(s.span_context.trace_id(), trace_id, "{} is not in the request's trace:\n{}", s.name, listing());
        // its nearest job ancestor (a token fetch may sit under the call that needed it)
        let mut parent = by_id.get(&s.parent_span_id).copied();
        while let Some(p) = parent.filter(|p| !is_job_span(p)) {
            parent = by_id.get(&p.parent_span_id).copied();
        }
        assert!(parent.is_some(), "{} has no job span above it:\n{}", s.name, listing());
    }
    let grant_spans: Vec<SpanId> = of("execute-grant").iter().map(|s| s.span_context.span_id()).collect();
    for s in connectors.iter().filter(|s| s.name == "graph.add_member") {
        assert!(
            grant_spans.contains(&s.parent_span_id),
            "graph.add_member is not a child of execute-grant:\n{}",
            listing()
        );
        assert_eq!(s.span_kind, SpanKind::Client);
    }

    stack.shutdown().await;
    provider.shutdown().expect("provider shutdown");
}
