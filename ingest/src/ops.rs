//! Health, readiness and Prometheus metrics.

use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use grantline_queue::QueueMetrics;

use crate::state::{AppState, WebhookOutcome};

/// How long `/readyz` waits for Redis to answer PING.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

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

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    value: fn(&QueueMetrics) -> String,
}

const QUEUE_FAMILIES: &[Family] = &[
    Family { name: "grantline_queue_ready", help: "Jobs ready to run.", kind: "gauge", value: |m| m.ready.to_string() },
    Family {
        name: "grantline_queue_in_flight",
        help: "Jobs leased by a worker.",
        kind: "gauge",
        value: |m| m.in_flight.to_string(),
    },
    Family {
        name: "grantline_queue_delayed",
        help: "Jobs waiting for their due time.",
        kind: "gauge",
        value: |m| m.delayed.to_string(),
    },
    Family { name: "grantline_queue_dead", help: "Dead letters kept.", kind: "gauge", value: |m| m.dead.to_string() },
    Family {
        name: "grantline_queue_oldest_ready_age_seconds",
        help: "Age of the oldest ready job.",
        kind: "gauge",
        value: |m| format!("{:.3}", m.oldest_ready_age_ms as f64 / 1000.0),
    },
    Family {
        name: "grantline_queue_enqueued_total",
        help: "Jobs enqueued.",
        kind: "counter",
        value: |m| m.enqueued_total.to_string(),
    },
    Family {
        name: "grantline_queue_completed_total",
        help: "Jobs completed.",
        kind: "counter",
        value: |m| m.completed_total.to_string(),
    },
    Family {
        name: "grantline_queue_retried_total",
        help: "Failed attempts scheduled for a retry.",
        kind: "counter",
        value: |m| m.retried_total.to_string(),
    },
    Family {
        name: "grantline_queue_throttled_total",
        help: "Attempts throttled by an upstream (not counted as attempts).",
        kind: "counter",
        value: |m| m.throttled_total.to_string(),
    },
    Family {
        name: "grantline_queue_recovered_total",
        help: "Jobs returned to the queue after their lease expired.",
        kind: "counter",
        value: |m| m.recovered_total.to_string(),
    },
    Family {
        name: "grantline_queue_dead_total",
        help: "Jobs dead-lettered.",
        kind: "counter",
        value: |m| m.dead_total.to_string(),
    },
    Family {
        name: "grantline_queue_redriven_total",
        help: "Dead letters redriven.",
        kind: "counter",
        value: |m| m.redriven_total.to_string(),
    },
];

/// Renders the Prometheus text exposition of the given queue figures and ingest counters.
/// The policy in force and its failed reloads, as the workers record them in Redis
/// (`keys::POLICY_STATUS`; see the workers' policy reload).
async fn policy_status(state: &AppState) -> String {
    use redis::AsyncCommands;
    let mut conn = state.queue.connection();
    let status: std::collections::HashMap<String, String> = conn
        .hgetall(state.queue.namespace().key(grantline_shared::request::keys::POLICY_STATUS))
        .await
        .unwrap_or_default();
    let mut out = String::new();
    if let Some(version) = status.get("version") {
        let _ = writeln!(out, "# HELP grantline_policy_info The policy version in force in the workers.");
        let _ = writeln!(out, "# TYPE grantline_policy_info gauge");
        let _ = writeln!(out, "grantline_policy_info{{version=\"{}\"}} 1", escape(version));
    }
    let failures: u64 = status.get("reload_failures").and_then(|v| v.parse().ok()).unwrap_or(0);
    let _ = writeln!(
        out,
        "# HELP grantline_policy_reload_failures_total Policy files that failed to load (the previous policy stayed in force)."
    );
    let _ = writeln!(out, "# TYPE grantline_policy_reload_failures_total counter");
    let _ = writeln!(out, "grantline_policy_reload_failures_total {failures}");
    out
}

pub fn render(queues: &[QueueMetrics], state: &AppState, queue_scrape_ok: bool) -> String {
    let mut out = String::new();
    for f in QUEUE_FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for m in queues {
            let _ = writeln!(out, "{}{{queue=\"{}\"}} {}", f.name, escape(&m.queue), (f.value)(m));
        }
    }
    let _ = writeln!(out, "# HELP grantline_queue_scrape_ok Whether the queue figures could be read from Redis.");
    let _ = writeln!(out, "# TYPE grantline_queue_scrape_ok gauge");
    let _ = writeln!(out, "grantline_queue_scrape_ok {}", u8::from(queue_scrape_ok));
    let _ = writeln!(out, "# HELP grantline_ingest_requests_total Webhook deliveries by outcome.");
    let _ = writeln!(out, "# TYPE grantline_ingest_requests_total counter");
    for o in [WebhookOutcome::Accepted, WebhookOutcome::Duplicate, WebhookOutcome::Rejected, WebhookOutcome::Error] {
        let _ = writeln!(
            out,
            "grantline_ingest_requests_total{{outcome=\"{}\"}} {}",
            o.as_str(),
            state.metrics.webhooks(o)
        );
    }
    let _ = writeln!(out, "# HELP grantline_ingest_rejected_total Refused requests (any route) by error code.");
    let _ = writeln!(out, "# TYPE grantline_ingest_rejected_total counter");
    for (code, n) in state.metrics.rejections() {
        let _ = writeln!(out, "grantline_ingest_rejected_total{{code=\"{}\"}} {n}", escape(code));
    }
    out
}

/// `GET /metrics`: Prometheus text. Queue figures are read from Redis; when it is
/// unreachable they are left out and `grantline_queue_scrape_ok` is 0.
/// What offboarding and drift found (`store::directory::STATS`): people offboarded, grants
/// removed out of band, unexplained members of governed groups, delta pages and resyncs.
async fn directory_events(state: &AppState) -> String {
    let stats = grantline_store::directory::stats(&state.queue).await.unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP grantline_directory_events_total Offboarding and drift, by what was found or done.");
    let _ = writeln!(out, "# TYPE grantline_directory_events_total counter");
    for event in
        ["offboarded", "offboard_removals", "offboard_cancels", "out_of_band", "unexplained", "delta_pages", "delta_resyncs"]
    {
        let n = stats.get(event).copied().unwrap_or(0);
        let _ = writeln!(out, "grantline_directory_events_total{{event=\"{event}\"}} {n}");
    }
    out
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut figures = Vec::new();
    let mut ok = true;
    match state.queue.queues().await {
        Ok(names) => {
            for q in names {
                match state.queue.metrics(&q).await {
                    Ok(m) => figures.push(m),
                    Err(e) => {
                        tracing::warn!(queue = %q, error = %e, "queue metrics unavailable");
                        ok = false;
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "queue metrics unavailable");
            ok = false;
        }
    }
    let mut text = render(&figures, &state, ok);
    text.push_str(&policy_status(&state).await);
    text.push_str(&directory_events(&state).await);
    let mut resp = text.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}
