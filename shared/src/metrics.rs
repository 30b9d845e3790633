//! The metrics a process counts itself, in one registry per process (Prometheus client
//! conventions): job durations and outcomes per kind, upstream answers per connector and
//! status, the edge's HTTP latency and connection limits, and each worker's view of the shared
//! budgets. Recording is a few atomic operations; nothing here does IO or reads a clock (callers
//! measure durations and pass the time of a scrape).
//!
//! The figures read from Redis at scrape time (queues, requests by state, approvals, removals,
//! the policy in force) are not here: the metrics listener adds them to the same exposition
//! (`grantline_ingest::ops`). [`register`] puts this process's families into a scrape's
//! [`Registry`]; the names are the catalogue `scripts/validate-deploy.sh` checks the dashboard
//! and the alert rules against.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use prometheus_client;

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Upper bounds (seconds) of the job duration buckets: from a Redis-only step (a few ms) to
/// a batched Graph write that waited for its batch, to a slow upstream (30 s timeout).
pub const JOB_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];
/// Upper bounds (seconds) of the HTTP latency buckets of the edge.
pub const HTTP_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

fn job_histogram() -> Histogram {
    Histogram::new(JOB_BUCKETS)
}

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

/// How one attempt of a job ended (the `outcome` label of `grantline_job_outcomes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// The step finished (including "already done").
    Completed,
    /// A transient failure: the queue retries it after backoff (or buries it when it was the
    /// last attempt).
    Retried,
    /// The upstream throttled it: retried without spending an attempt.
    Throttled,
    /// It waits for a shared budget or a busy lock: no attempt spent.
    Waited,
    /// A permanent failure: dead-lettered.
    Failed,
    /// The handler panicked (counted as a failed attempt by the queue).
    Panicked,
}

impl JobOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Completed => "completed",
            JobOutcome::Retried => "retried",
            JobOutcome::Throttled => "throttled",
            JobOutcome::Waited => "waited",
            JobOutcome::Failed => "failed",
            JobOutcome::Panicked => "panicked",
        }
    }
}

/// Why the edge closed a connection it had accepted (`phase` of
/// `grantline_ingest_connection_timeouts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeTimeout {
    /// The request's headers did not arrive in time (an idle keep-alive connection too).
    Header,
    /// The body did not arrive in time (answered 408).
    Body,
    /// No byte moved either way for the idle timeout.
    Idle,
}

impl EdgeTimeout {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeTimeout::Header => "header",
            EdgeTimeout::Body => "body",
            EdgeTimeout::Idle => "idle",
        }
    }
}

/// The families of one process.
#[derive(Debug)]
pub struct Metrics {
    job_duration: HistogramFamily,
    job_outcomes: Family<Labels, Counter>,
    upstream_responses: Family<Labels, Counter>,
    http_duration: HistogramFamily,
    budget_rate: Family<Labels, Gauge<f64, AtomicU64>>,
    /// (upstream, budget) -> paused until, ms since the epoch (the Redis clock's answer).
    budget_paused_until: Mutex<BTreeMap<(String, String), u64>>,
    connections_open: Gauge,
    connections_refused: Family<Labels, Counter>,
    connections_evicted: Counter,
    connection_timeouts: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            job_duration: Family::new_with_constructor(job_histogram),
            job_outcomes: Family::default(),
            upstream_responses: Family::default(),
            http_duration: Family::new_with_constructor(http_histogram),
            budget_rate: Family::default(),
            budget_paused_until: Mutex::new(BTreeMap::new()),
            connections_open: Gauge::default(),
            connections_refused: Family::default(),
            connections_evicted: Counter::default(),
            connection_timeouts: Family::default(),
        }
    }
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// This process's metrics.
pub fn global() -> &'static Metrics {
    GLOBAL.get_or_init(Metrics::default)
}

/// One job attempt of `kind` ended with `outcome` after `elapsed`.
pub fn job_finished(kind: &str, outcome: JobOutcome, elapsed: Duration) {
    let m = global();
    m.job_duration.get_or_create(&vec![("kind", kind.to_owned())]).observe(elapsed.as_secs_f64());
    m.job_outcomes.get_or_create(&vec![("kind", kind.to_owned()), ("outcome", outcome.as_str().to_owned())]).inc();
}

/// An upstream (`graph`, `servicenow`, `exchange`, `entra_token`, `teams`, `slack`,
/// `pagerduty`, `alert_webhook`, ...) answered with HTTP `status`.
pub fn upstream_response(connector: &'static str, status: u16) {
    global()
        .upstream_responses
        .get_or_create(&vec![("connector", connector.to_owned()), ("status", status.to_string())])
        .inc();
}

/// The edge answered a request of `route` (the matched route template) after `elapsed`.
pub fn http_request(route: &str, elapsed: Duration) {
    global().http_duration.get_or_create(&vec![("route", route.to_owned())]).observe(elapsed.as_secs_f64());
}

/// A worker learned the rate of a shared budget (units per second).
pub fn budget_rate(upstream: &str, budget: &str, rate: f64) {
    if rate.is_finite() {
        global()
            .budget_rate
            .get_or_create(&vec![("upstream", upstream.to_owned()), ("budget", budget.to_owned())])
            .set(rate);
    }
}

/// Every caller of a shared budget is paused until `until_ms` (ms since the epoch).
pub fn budget_paused(upstream: &str, budget: &str, until_ms: u64) {
    if let Ok(mut m) = global().budget_paused_until.lock() {
        let e = m.entry((upstream.to_owned(), budget.to_owned())).or_insert(0);
        *e = (*e).max(until_ms);
    }
}

/// A connection was accepted (`+1`) or closed (`-1`) by the edge.
pub fn connection_open(delta: i64) {
    global().connections_open.inc_by(delta);
}

/// Why the edge refused a connection (`reason` of `grantline_ingest_connections_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeRefusal {
    /// It held `ingest.max_connections`, every one of them in a request.
    Cap,
    /// The client's address held `ingest.max_connections_per_client`.
    Client,
}

impl EdgeRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeRefusal::Cap => "cap",
            EdgeRefusal::Client => "client",
        }
    }
}

/// The edge refused a connection.
pub fn connection_refused(reason: EdgeRefusal) {
    global().connections_refused.get_or_create(&vec![("reason", reason.as_str().to_owned())]).inc();
}

/// The edge closed a connection without a request in progress to make room for a new one.
pub fn connection_evicted() {
    global().connections_evicted.inc();
}

/// The edge timed a client out.
pub fn connection_timeout(phase: EdgeTimeout) {
    global().connection_timeouts.get_or_create(&vec![("phase", phase.as_str().to_owned())]).inc();
}

/// The budgets' pauses as gauges (1 while paused at the scrape's time).
#[derive(Debug)]
struct Paused {
    at_ms: u64,
    budgets: Vec<((String, String), u64)>,
}

impl Collector for Paused {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if self.budgets.is_empty() {
            return Ok(());
        }
        let g = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "grantline_budget_paused",
            "Whether this worker holds back every call of the budget because the upstream asked to wait (1) or not (0).",
            None,
            g.metric_type(),
        )?;
        for ((upstream, budget), until) in &self.budgets {
            let labels = [("upstream", upstream.as_str()), ("budget", budget.as_str())];
            ConstGauge::new(i64::from(*until > self.at_ms)).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Registers this process's families in `registry`; `now_ms` is the scrape's time (for the
/// budget pauses).
pub fn register(registry: &mut Registry, now_ms: u64) {
    let m = global();
    registry.register(
        "grantline_job_duration_seconds",
        "Time one job attempt took in this process, by kind (every outcome)",
        m.job_duration.clone(),
    );
    registry.register(
        "grantline_job_outcomes",
        "Job attempts run by this process, by kind and outcome (completed, retried, throttled, waited, failed, panicked)",
        m.job_outcomes.clone(),
    );
    registry.register(
        "grantline_upstream_responses",
        "HTTP answers this process received from upstream services, by connector and status code",
        m.upstream_responses.clone(),
    );
    registry.register(
        "grantline_http_request_duration_seconds",
        "Time the edge took to answer, by route",
        m.http_duration.clone(),
    );
    registry.register(
        "grantline_budget_rate",
        "The rate of a shared upstream budget as this worker last saw it (units per second; lowered after refusals)",
        m.budget_rate.clone(),
    );
    registry.register(
        "grantline_ingest_connections",
        "Connections this process's listeners hold open (at the edge its webhook and API listener's and its metrics listener's; in a worker or the scheduler its metrics listener's)",
        m.connections_open.clone(),
    );
    registry.register(
        "grantline_ingest_connections_refused",
        "Connections the edge refused, by reason: cap (it held ingest.max_connections, each in a request) or client (the address held ingest.max_connections_per_client)",
        m.connections_refused.clone(),
    );
    registry.register(
        "grantline_ingest_connections_evicted",
        "Connections without a request in progress (idle, or still sending headers) the edge closed at ingest.max_connections to take a new one",
        m.connections_evicted.clone(),
    );
    registry.register(
        "grantline_ingest_connection_timeouts",
        "Connections the edge closed on a client too slow (header, body) or silent (idle)",
        m.connection_timeouts.clone(),
    );
    let budgets =
        m.budget_paused_until.lock().map(|b| b.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default();
    registry.register_collector(Box::new(Paused { at_ms: now_ms, budgets }));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use prometheus_client::encoding::prometheus_text::encode;

    fn text(now_ms: u64) -> String {
        let mut r = Registry::default();
        register(&mut r, now_ms);
        let mut out = String::new();
        encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn families_render_with_the_catalogue_names() {
        job_finished("unit-kind", JobOutcome::Completed, Duration::from_millis(30));
        job_finished("unit-kind", JobOutcome::Retried, Duration::from_millis(2));
        upstream_response("unit-graph", 429);
        budget_rate("graph", "writes", 14.0);
        budget_paused("graph", "writes", 2_000);
        let t = text(1_000);
        for line in [
            "# TYPE grantline_job_duration_seconds histogram",
            "grantline_job_duration_seconds_bucket{kind=\"unit-kind\",le=\"0.05\"} 2",
            "grantline_job_duration_seconds_bucket{kind=\"unit-kind\",le=\"0.025\"} 1",
            "grantline_job_duration_seconds_count{kind=\"unit-kind\"} 2",
            "# TYPE grantline_job_outcomes_total counter",
            "grantline_job_outcomes_total{kind=\"unit-kind\",outcome=\"completed\"} 1",
            "grantline_job_outcomes_total{kind=\"unit-kind\",outcome=\"retried\"} 1",
            "grantline_upstream_responses_total{connector=\"unit-graph\",status=\"429\"} 1",
            "grantline_budget_rate{upstream=\"graph\",budget=\"writes\"} 14.0",
            "grantline_budget_paused{upstream=\"graph\",budget=\"writes\"} 1",
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line:?} in\n{t}");
        }
        // the pause is over at a later scrape
        assert!(text(3_000).lines().any(|l| l == "grantline_budget_paused{upstream=\"graph\",budget=\"writes\"} 0"));
    }
}
