//! One span per job attempt, so that every request is one trace.
//!
//! [`JobSpanLayer`] wraps every step worker. For each attempt it opens a span named after
//! the job's kind (`validate`, `execute-grant`, ...) with `request_id`, `attempt` and
//! `job_id`, makes the job's `traceparent` metadata its OpenTelemetry parent, and runs the
//! handler inside it, so the connector spans (`graph.add_member`, `servicenow.get_ritm`, ...)
//! are its children. When the handler succeeds, the successors it hands off carry this
//! span's own `traceparent` instead of the request's, so a trace reads as the chain
//! validate → request-approval → execute-grant → ... rather than a star of siblings.
//!
//! Without an OpenTelemetry layer in the subscriber (no exporter configured) the span is
//! still opened for the logs, and successors keep the traceparent they were given.

use std::collections::HashMap;
use std::fmt::Display;
use std::task::{Context, Poll};

use apalis_core::layers::{Layer, Service};
use apalis_core::task::Task;
use futures::FutureExt;
use futures::future::BoxFuture;
use grantline_queue::Handoff;
use grantline_shared::jobs::*;
use grantline_shared::trace::{TRACEPARENT, TraceParent};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::field::Empty;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A job payload that knows its attempt span: a static name (the kind) and the request.
pub trait JobSpan {
    /// A new, unentered span for one attempt of this job, with `request_id` recorded (an
    /// alert names its dead job instead); `attempt` and `job_id` are left for the layer.
    fn job_span(&self) -> Span;
}

// `tracing` span names are static: one literal per kind, checked against `KIND` in the
// tests below.
macro_rules! job_span {
    ($payload:ty, $name:literal) => {
        impl JobSpan for $payload {
            fn job_span(&self) -> Span {
                tracing::info_span!(
                    $name,
                    otel.kind = "consumer",
                    request_id = self.request_id.as_str(),
                    attempt = Empty,
                    job_id = Empty,
                    otel.status_code = Empty,
                    otel.status_description = Empty,
                )
            }
        }
    };
}

job_span!(Validate, "validate");
job_span!(RequestApproval, "request-approval");
job_span!(ExecuteGrant, "execute-grant");
job_span!(UpdateTicket, "update-ticket");
job_span!(ScheduleRemoval, "schedule-removal");
job_span!(RemoveAccess, "remove-access");
job_span!(RollbackGrant, "rollback-grant");
job_span!(Notify, "notify");
job_span!(SyncApprovals, "sync-approvals");
job_span!(ApprovalDeadline, "approval-deadline");
// an alert is about a dead job, not a request: it names the job instead
impl JobSpan for Alert {
    fn job_span(&self) -> Span {
        tracing::info_span!(
            "alert",
            otel.kind = "consumer",
            dead_queue = %self.queue,
            dead_job = %self.job_id,
            attempt = Empty,
            job_id = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        )
    }
}

// a resolve is about a dead letter as well
impl JobSpan for ResolveAlert {
    fn job_span(&self) -> Span {
        tracing::info_span!(
            "resolve-alert",
            otel.kind = "consumer",
            dead_queue = %self.queue,
            dead_letter = %self.dead_letter_id,
            attempt = Empty,
            job_id = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        )
    }
}

/// The OpenTelemetry context a job's `traceparent` names (empty when it has none or it
/// does not parse, which makes the span the root of a new trace).
pub fn remote_parent(traceparent: Option<&str>) -> opentelemetry::Context {
    let Some(tp) = traceparent.and_then(TraceParent::parse) else {
        return opentelemetry::Context::new();
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), tp.to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// The `traceparent` naming `span` itself, when an OpenTelemetry layer is installed.
pub fn traceparent_of(span: &Span) -> Option<TraceParent> {
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.get(TRACEPARENT).and_then(|s| TraceParent::parse(s))
}

/// Successors continue the trace from `own`, the span of the job that handed them off. A
/// successor that names another trace on purpose keeps it.
pub fn continue_trace(handoff: &mut Handoff, own: &TraceParent) {
    for job in &mut handoff.jobs {
        let same_trace = match job.metadata.get(TRACEPARENT).map(|s| TraceParent::parse(s)) {
            None => true,
            Some(Some(tp)) => tp.trace_id == own.trace_id,
            Some(None) => true,
        };
        if same_trace {
            job.metadata.insert(TRACEPARENT.to_owned(), own.to_string());
        }
    }
}

/// The tower layer that opens the attempt span of every job (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct JobSpanLayer;

impl<S> Layer<S> for JobSpanLayer {
    type Service = JobSpanService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        JobSpanService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct JobSpanService<S> {
    inner: S,
}

impl<S, Args> Service<Task<Args>> for JobSpanService<S>
where
    S: Service<Task<Args>, Response = Handoff>,
    S::Future: Send + 'static,
    S::Error: Display + Send + 'static,
    Args: JobSpan,
{
    type Response = Handoff;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Handoff, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let span = task.args.job_span();
        // the backend hands tasks over with the attempts used so far; the worker counts the
        // current one only when it first polls the handler, inside this layer
        // (as i64: tracing-opentelemetry exports unsigned fields as strings)
        span.record("attempt", i64::try_from(task.attempt()).unwrap_or(i64::MAX).saturating_add(1));
        if let Some(id) = task.task_id() {
            span.record("job_id", tracing::field::display(id));
        }
        // before the span is first entered: afterwards its parent is fixed
        let _ = span.set_parent(remote_parent(task.metadata().get(TRACEPARENT)));
        let own = traceparent_of(&span);
        let fut = self.inner.call(task).instrument(span.clone());
        async move {
            let mut res = fut.await;
            match &mut res {
                Ok(handoff) => {
                    if let Some(own) = &own {
                        continue_trace(handoff, own);
                    }
                }
                Err(e) => {
                    span.record("otel.status_code", "error");
                    span.record("otel.status_description", tracing::field::display(e));
                }
            }
            res
        }
        .boxed()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use grantline_queue::NewJob;

    fn name<T: JobSpan>(job: &T) -> &'static str {
        // without a subscriber every span is disabled and has no metadata: give it one
        let subscriber = tracing_subscriber_for_names();
        tracing::subscriber::with_default(subscriber, || job.job_span().metadata().map(|m| m.name()).unwrap_or(""))
    }

    /// The smallest subscriber that enables every span (names live in their metadata).
    fn tracing_subscriber_for_names() -> impl tracing::Subscriber + Send + Sync {
        struct All;
        impl tracing::Subscriber for All {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, _: &tracing::Event<'_>) {}
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }
        All
    }

    #[test]
    fn every_span_is_named_after_its_kind() {
        let r = || "r1".to_owned();
        assert_eq!(name(&Validate { request_id: r() }), Validate::KIND.as_str());
        assert_eq!(name(&RequestApproval { request_id: r() }), RequestApproval::KIND.as_str());
        assert_eq!(name(&ExecuteGrant { request_id: r() }), ExecuteGrant::KIND.as_str());
        assert_eq!(name(&UpdateTicket { request_id: r(), update: TicketUpdate::Denied }), UpdateTicket::KIND.as_str());
        assert_eq!(name(&ScheduleRemoval { request_id: r() }), ScheduleRemoval::KIND.as_str());
        assert_eq!(
            name(&RemoveAccess { request_id: r(), trigger: RemovalTrigger::Expiry }),
            RemoveAccess::KIND.as_str()
        );
        assert_eq!(name(&RollbackGrant { request_id: r() }), RollbackGrant::KIND.as_str());
        assert_eq!(name(&Notify { request_id: r(), what: NotifyWhat::Update }), Notify::KIND.as_str());
        assert_eq!(name(&SyncApprovals { request_id: r() }), SyncApprovals::KIND.as_str());
        assert_eq!(name(&ApprovalDeadline { request_id: r(), due_ms: 1 }), ApprovalDeadline::KIND.as_str());
        assert_eq!(
            name(&Alert { queue: "validate".into(), job_id: "j".into(), dead_letter_id: "d".into() }),
            Alert::KIND.as_str()
        );
        let resolve = ResolveAlert {
            queue: "validate".into(),
            dead_letter_id: "d".into(),
            how: LetterClosed::Discarded,
            by: "cli".into(),
        };
        assert_eq!(name(&resolve), ResolveAlert::KIND.as_str());
    }

    #[test]
    fn a_traceparent_becomes_the_remote_parent() {
        use opentelemetry::trace::TraceContextExt;
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = remote_parent(Some(tp));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        for none in [None, Some(""), Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01")] {
            assert!(!remote_parent(none).span().span_context().is_valid(), "{none:?}");
        }
    }

    #[test]
    fn successors_continue_from_the_job_span_unless_they_name_another_trace() {
        let request = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let other = "00-11111111111111111111111111111111-2222222222222222-01";
        let own = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-1234567890abcdef-01").unwrap();
        let job = |tp: Option<&str>| {
            let j = NewJob::new("q", &serde_json::json!({})).unwrap();
            match tp {
                Some(tp) => j.meta(TRACEPARENT, tp),
                None => j,
            }
        };
        let mut h = Handoff::done().then(job(Some(request))).then(job(None)).then(job(Some(other)));
        continue_trace(&mut h, &own);
        let tps: Vec<Option<&str>> = h.jobs.iter().map(|j| j.metadata.get(TRACEPARENT).map(String::as_str)).collect();
        let own = own.to_string();
        assert_eq!(tps, vec![Some(own.as_str()), Some(own.as_str()), Some(other)]);
    }
}
