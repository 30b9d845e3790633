//! Health, readiness and the Prometheus metrics of every role.
//!
//! `/metrics` is served on its own listener (`metrics.bind`, default `127.0.0.1:9464`), by
//! the edge, each worker process and the scheduler alike ([`metrics_router`], [`serve_metrics`]);
//! the webhook listener answers it only when `ingest.metrics_token` is set, and only to that
//! bearer token. One exposition (Prometheus text 0.0.4, encoded by `prometheus-client`) holds:
//!
//! - the figures read from Redis at each scrape, the same in every process (aggregate them
//!   with `max`): queues, requests by state, approvals pending and the oldest one's age,
//!   removals pending, the policy in force, the directory sweeps' counters;
//! - what this process counted ([`grantline_shared::metrics`]; sum them): job durations and
//!   outcomes, upstream answers, budget views, the edge's latency and connections, and in the
//!   edge its webhook outcomes and refusals.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use grantline_queue::{Queue, QueueMetrics};
use grantline_shared::Clock;
use grantline_shared::metrics::prometheus_client;
use grantline_shared::request::{RequestState, keys};

use crate::config::Secret;
use crate::error::{ApiError, codes};
use crate::state::{AppState, IngestMetrics, WebhookOutcome};

/// How long `/readyz` waits for Redis to answer PING.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a scrape waits for Redis before it answers without the Redis figures.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);
/// The content type of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: Redis answers PING within a second.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let mut conn = state.queue.connection();
    let ping = tokio::time::timeout(READY_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut conn)).await;
    match ping {
        Ok(Ok(_)) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: redis ping failed");
            (StatusCode::SERVICE_UNAVAILABLE, "redis unavailable").into_response()
        }
        Err(_) => {
            tracing::warn!("not ready: redis did not answer ping within 1 s");
            (StatusCode::SERVICE_UNAVAILABLE, "redis unavailable").into_response()
        }
    }
}

/// What Redis says at one scrape.
#[derive(Debug, Default, Clone)]
pub struct RedisFigures {
    pub queues: Vec<QueueMetrics>,
    /// Whether every queue figure could be read.
    pub queues_ok: bool,
    /// Requests per state (every state, zeros included), when readable.
    pub states: Option<Vec<(RequestState, u64)>>,
    /// Seconds since the oldest request awaiting approval was received (0 when none).
    pub approval_oldest_age_secs: f64,
    /// Time-bound grants whose removal is still to come.
    pub removals_pending: Option<u64>,
    pub policy_version: Option<String>,
    pub policy_reload_failures: u64,
    /// The directory sweeps' counters (`directory:stats`).
    pub directory: BTreeMap<String, u64>,
}

impl RedisFigures {
    /// Reads the figures; what cannot be read is left out (and `queues_ok` is false when a
    /// queue's figures are missing).
    pub async fn read(queue: &Queue, now_ms: u64) -> Self {
        let mut out = RedisFigures { queues_ok: true, ..Default::default() };
        match queue.queues().await {
            Ok(names) => {
                for q in names {
                    match queue.metrics(&q).await {
                        Ok(m) => out.queues.push(m),
                        Err(e) => {
                            tracing::warn!(queue = %q, error = %e, "queue metrics unavailable");
                            out.queues_ok = false;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "queue metrics unavailable");
                out.queues_ok = false;
                // Redis is away: the other figures would fail the same way
                return out;
            }
        }
        let ns = queue.namespace();
        let mut conn = queue.connection();
        let mut pipe = redis::pipe();
        for s in RequestState::ALL {
            pipe.cmd("ZCARD").arg(ns.key(&keys::by_state(s)));
        }
        pipe.cmd("ZRANGE").arg(ns.key(&keys::by_state(RequestState::AwaitingApproval))).arg(0).arg(0).arg("WITHSCORES");
        pipe.cmd("ZCARD").arg(ns.key(keys::EXPIRING));
        pipe.cmd("HGETALL").arg(ns.key(keys::POLICY_STATUS));
        pipe.cmd("HGETALL").arg(ns.key(grantline_store::directory::STATS));
        type Reply = (Vec<u64>, Vec<(String, f64)>, u64, HashMap<String, String>, HashMap<String, u64>);
        let reply: Result<Vec<redis::Value>, _> = pipe.query_async(&mut conn).await;
        let parsed: Option<Reply> = reply.ok().and_then(|values| {
            let n = RequestState::ALL.len();
            if values.len() != n + 4 {
                return None;
            }
            let counts: Vec<u64> =
                values[..n].iter().map(|v| redis::from_redis_value(v.clone()).unwrap_or(0)).collect();
            let oldest = redis::from_redis_value(values[n].clone()).unwrap_or_default();
            let expiring = redis::from_redis_value(values[n + 1].clone()).unwrap_or(0);
            let policy = redis::from_redis_value(values[n + 2].clone()).unwrap_or_default();
            let directory = redis::from_redis_value(values[n + 3].clone()).unwrap_or_default();
            Some((counts, oldest, expiring, policy, directory))
        });
        let Some((counts, oldest, expiring, policy, directory)) = parsed else {
            tracing::warn!("request figures unavailable");
            return out;
        };
        out.states = Some(RequestState::ALL.into_iter().zip(counts).collect());
        out.approval_oldest_age_secs = oldest
            .first()
            .map(|(_, created_ms)| now_ms.saturating_sub(*created_ms as u64) as f64 / 1000.0)
            .unwrap_or(0.0);
        out.removals_pending = Some(expiring);
        out.policy_version = policy.get("version").cloned();
        out.policy_reload_failures = policy.get("reload_failures").and_then(|v| v.parse().ok()).unwrap_or(0);
        out.directory = directory.into_iter().collect();
        out
    }
}

fn gauge_family<V: prometheus_client::encoding::EncodeGaugeValue + Copy>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Vec<(&str, &str)>, V)],
) -> Result<(), std::fmt::Error> {
    let mut family = enc.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
    for (labels, v) in series {
        ConstGauge::new(*v).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter_family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Vec<(&str, &str)>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (labels, v) in series {
        ConstCounter::new(*v).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

type QueueFigure = (&'static str, &'static str, fn(&QueueMetrics) -> u64);

const QUEUE_GAUGES: &[QueueFigure] = &[
    ("grantline_queue_ready", "Jobs ready to run", |m| m.ready),
    ("grantline_queue_in_flight", "Jobs leased by a worker", |m| m.in_flight),
    ("grantline_queue_delayed", "Jobs waiting for their due time", |m| m.delayed),
    ("grantline_queue_dead", "Dead letters kept", |m| m.dead),
];

// counters: the names without `_total`, which the encoder appends
const QUEUE_COUNTERS: &[QueueFigure] = &[
    ("grantline_queue_enqueued", "Jobs enqueued", |m| m.enqueued_total),
    ("grantline_queue_completed", "Jobs completed", |m| m.completed_total),
    ("grantline_queue_retried", "Failed attempts scheduled for a retry", |m| m.retried_total),
    ("grantline_queue_waited", "Waits for a shared budget or a busy lock (no attempt spent)", |m| m.waited_total),
    (
        "grantline_queue_conflicted",
        "Hand-offs that lost a race with a concurrent commit and ran again on fresh state (no attempt spent)",
        |m| m.conflicted_total,
    ),
    ("grantline_queue_throttled", "Attempts throttled by an upstream (not counted as attempts)", |m| m.throttled_total),
    ("grantline_queue_recovered", "Jobs returned to the queue after their lease expired", |m| m.recovered_total),
    ("grantline_queue_dead", "Jobs dead-lettered", |m| m.dead_total),
    ("grantline_queue_redriven", "Dead letters redriven", |m| m.redriven_total),
];

impl Collector for RedisFigures {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in QUEUE_GAUGES {
            let series: Vec<_> = self.queues.iter().map(|m| (vec![("queue", m.queue.as_str())], value(m))).collect();
            gauge_family(&mut enc, name, help, &series)?;
        }
        let ages: Vec<_> = self
            .queues
            .iter()
            .map(|m| (vec![("queue", m.queue.as_str())], m.oldest_ready_age_ms as f64 / 1000.0))
            .collect();
        gauge_family(&mut enc, "grantline_queue_oldest_ready_age_seconds", "Age of the oldest ready job", &ages)?;
        for (name, help, value) in QUEUE_COUNTERS {
            let series: Vec<_> = self.queues.iter().map(|m| (vec![("queue", m.queue.as_str())], value(m))).collect();
            counter_family(&mut enc, name, help, &series)?;
        }
        gauge_family(
            &mut enc,
            "grantline_queue_scrape_ok",
            "Whether the queue figures could be read from Redis",
            &[(vec![], u64::from(self.queues_ok))],
        )?;
        if let Some(states) = &self.states {
            let series: Vec<_> = states.iter().map(|(s, n)| (vec![("state", s.as_str())], *n)).collect();
            gauge_family(&mut enc, "grantline_requests", "Requests by state", &series)?;
            let pending = states.iter().find(|(s, _)| *s == RequestState::AwaitingApproval).map(|(_, n)| *n);
            gauge_family(
                &mut enc,
                "grantline_approvals_pending",
                "Requests awaiting approval",
                &[(vec![], pending.unwrap_or(0))],
            )?;
            gauge_family(
                &mut enc,
                "grantline_approval_oldest_age_seconds",
                "Time since the oldest request awaiting approval was received (0 when none awaits)",
                &[(vec![], self.approval_oldest_age_secs)],
            )?;
        }
        if let Some(n) = self.removals_pending {
            gauge_family(
                &mut enc,
                "grantline_removals_pending",
                "Active time-bound grants whose removal is still to come",
                &[(vec![], n)],
            )?;
        }
        if let Some(v) = &self.policy_version {
            gauge_family(
                &mut enc,
                "grantline_policy_info",
                "The policy version in force in the workers",
                &[(vec![("version", v.as_str())], 1u64)],
            )?;
        }
        if self.states.is_some() {
            counter_family(
                &mut enc,
                "grantline_policy_reload_failures",
                "Policy files that failed to load (the previous policy stayed in force)",
                &[(vec![], self.policy_reload_failures)],
            )?;
        }
        if !self.directory.is_empty() {
            let series: Vec<_> = self.directory.iter().map(|(k, v)| (vec![("event", k.as_str())], *v)).collect();
            counter_family(
                &mut enc,
                "grantline_directory_events",
                "The directory sweeps' counts (leavers offboarded, grants removed out of band, unexplained members, resyncs)",
                &series,
            )?;
        }
        Ok(())
    }
}

/// The edge's own counters: webhook outcomes and refusals by code.
#[derive(Debug)]
struct EdgeCounters {
    webhooks: Vec<(WebhookOutcome, u64)>,
    rejections: BTreeMap<&'static str, u64>,
}

impl EdgeCounters {
    fn of(m: &IngestMetrics) -> Self {
        let webhooks =
            [WebhookOutcome::Accepted, WebhookOutcome::Duplicate, WebhookOutcome::Rejected, WebhookOutcome::Error]
                .into_iter()
                .map(|o| (o, m.webhooks(o)))
                .collect();
        Self { webhooks, rejections: m.rejections() }
    }
}

impl Collector for EdgeCounters {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series: Vec<_> = self.webhooks.iter().map(|(o, n)| (vec![("outcome", o.as_str())], *n)).collect();
        counter_family(&mut enc, "grantline_ingest_requests", "Webhook deliveries by outcome", &series)?;
        let series: Vec<_> = self.rejections.iter().map(|(c, n)| (vec![("code", *c)], *n)).collect();
        counter_family(&mut enc, "grantline_ingest_rejected", "Refused requests (any route) by error code", &series)?;
        Ok(())
    }
}

/// The exposition of one scrape: the Redis figures, this process's families, and the edge's
/// counters when this process is the edge.
pub fn render(redis: RedisFigures, edge: Option<&IngestMetrics>, now_ms: u64) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(redis));
    if let Some(m) = edge {
        registry.register_collector(Box::new(EdgeCounters::of(m)));
    }
    grantline_shared::metrics::register(&mut registry, now_ms);
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "encoding the metrics failed");
    }
    out
}

/// What a metrics listener needs.
#[derive(Clone)]
pub struct MetricsState {
    pub queue: Queue,
    pub clock: Clock,
    /// The edge's counters, when this process is the edge.
    pub edge: Option<Arc<IngestMetrics>>,
    /// When set, a scrape must carry `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
}

impl std::fmt::Debug for MetricsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsState").field("queue", &self.queue).finish_non_exhaustive()
    }
}

impl MetricsState {
    /// A worker's or the scheduler's listener.
    pub fn new(queue: Queue) -> Self {
        Self { queue, clock: Clock::system(), edge: None, token: None }
    }

    /// The edge's listener: its counters, clock and token.
    pub fn of_edge(state: &AppState) -> Self {
        Self {
            queue: state.queue.clone(),
            clock: state.clock.clone(),
            edge: Some(state.metrics.clone()),
            token: state.cfg.metrics_token.clone(),
        }
    }
}

fn bearer_ok(headers: &HeaderMap, token: &Secret) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .is_some_and(|(_, t)| crate::extract::secret_eq(t.trim().as_bytes(), token.expose().as_bytes()))
}

async fn scrape(state: &MetricsState) -> Response {
    let now_ms = state.clock.now_ms();
    let redis =
        tokio::time::timeout(SCRAPE_TIMEOUT, RedisFigures::read(&state.queue, now_ms)).await.unwrap_or_else(|_| {
            tracing::warn!("redis did not answer the scrape in time");
            RedisFigures::default()
        });
    let text = render(redis, state.edge.as_deref(), now_ms);
    let mut resp = text.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn metrics_handler(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.token
        && !bearer_ok(&headers, token)
    {
        return ApiError::bearer(codes::AUTH_MISSING, "the metrics token is required").into_response();
    }
    scrape(&state).await
}

/// `GET /metrics` on the webhook listener: 404 unless `ingest.metrics_token` is set, then
/// only for that bearer token.
pub async fn edge_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = &state.cfg.metrics_token else {
        return ApiError::new(StatusCode::NOT_FOUND, codes::ROUTE_NOT_FOUND, "no such route").into_response();
    };
    if !bearer_ok(&headers, token) {
        return ApiError::bearer(codes::AUTH_MISSING, "the metrics token is required").into_response();
    }
    scrape(&MetricsState::of_edge(&state)).await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, codes::ROUTE_NOT_FOUND, "no such route")
}

/// The metrics listener's routes: `GET /metrics`, `GET /healthz`.
pub fn metrics_router(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .with_state(state)
}

/// Serves [`metrics_router`] on `listener` (with the edge's connection limits) until
/// `shutdown` completes.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: MetricsState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics listening");
    }
    let limits = crate::server::Limits { max_connections: 64, ..crate::server::Limits::default() };
    crate::server::serve(listener, metrics_router(state), limits, shutdown).await
}
