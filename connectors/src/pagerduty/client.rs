//! The Events API v2 client.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use jiff::Timestamp;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Map, Value};
use tracing::{Instrument, Span};
use url::Url;
use uuid::Uuid;

use super::PagerDutyConfig;
use super::error::{PagerDutyError, Refusal};
use super::model::{MAX_DEDUP_KEY_CHARS, TriggerEvent, truncate_summary};
use crate::graph::{Correlated, Correlation};
use crate::http;
use crate::{ConfigError, Secret};

/// PagerDuty integration keys are exactly this long.
const ROUTING_KEY_CHARS: usize = 32;

/// A client for the PagerDuty Events API v2. Cloning is cheap; clones share the connection
/// pool. It holds no credential: each call takes the routing key of its service.
#[derive(Clone)]
pub struct PagerDutyClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    enqueue: Url,
}

impl fmt::Debug for PagerDutyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagerDutyClient").field("enqueue_url", &self.inner.enqueue.as_str()).finish_non_exhaustive()
    }
}

macro_rules! pd_span {
    ($name:literal, $url:expr) => {
        tracing::info_span!(
            $name,
            otel.kind = "client",
            http.method = "POST",
            url.path = %$url.path(),
            http.status_code = tracing::field::Empty,
            client_request_id = tracing::field::Empty,
            request_id = tracing::field::Empty,
            dedup_key = tracing::field::Empty,
            error.code = tracing::field::Empty,
        )
    };
}

impl PagerDutyClient {
    /// A client built from configuration (`pagerduty.base_url`, `pagerduty.http.*`).
    pub fn new(config: &PagerDutyConfig) -> Result<Self, ConfigError> {
        let base = http::parse_base_url("pagerduty.base_url", &config.base_url)?;
        let http = http::build_client(&config.http).map_err(|e| {
            let key = match e.key {
                "http.timeout_ms" => "pagerduty.http.timeout_ms",
                "http.connect_timeout_ms" => "pagerduty.http.connect_timeout_ms",
                "http.proxy_url" => "pagerduty.http.proxy_url",
                _ => "pagerduty.http",
            };
            ConfigError::new(key, e.reason)
        })?;
        let enqueue = http::join_segments(&base, &["v2", "enqueue"]);
        Ok(Self { inner: Arc::new(Inner { http, enqueue }) })
    }

    /// Opens an alert, or merges into the open one with the same `dedup_key`. Returns the
    /// dedup key PagerDuty answered with (the one sent, or the one it made).
    pub async fn trigger(
        &self,
        routing_key: &Secret,
        event: &TriggerEvent,
    ) -> Result<Correlated<String>, PagerDutyError> {
        check_routing_key(routing_key)?;
        if let Some(key) = &event.dedup_key {
            check_dedup_key(key)?;
        }
        let mut payload = Map::new();
        payload.insert("summary".into(), truncate_summary(&event.summary).into());
        payload.insert("source".into(), event.source.clone().into());
        payload.insert("severity".into(), event.severity.as_str().into());
        // Whole seconds: PagerDuty documents ISO 8601 and shows no fractions.
        let now = Timestamp::now();
        let stamp = Timestamp::from_second(now.as_second()).unwrap_or(now);
        payload.insert("timestamp".into(), stamp.to_string().into());
        for (name, value) in [("component", &event.component), ("group", &event.group), ("class", &event.class)] {
            if let Some(v) = value {
                payload.insert(name.into(), v.clone().into());
            }
        }
        if !event.custom_details.is_null() {
            payload.insert("custom_details".into(), event.custom_details.clone());
        }
        let mut body = Map::new();
        body.insert("routing_key".into(), routing_key.expose().into());
        body.insert("event_action".into(), "trigger".into());
        if let Some(key) = &event.dedup_key {
            body.insert("dedup_key".into(), key.clone().into());
        }
        body.insert("payload".into(), Value::Object(payload));
        if !event.links.is_empty() {
            let links = serde_json::to_value(&event.links)
                .map_err(|e| PagerDutyError::InvalidInput { message: e.to_string() })?;
            body.insert("links".into(), links);
        }
        let span = pd_span!("pagerduty.trigger", self.inner.enqueue);
        if let Some(key) = &event.dedup_key {
            span.record("dedup_key", key.as_str());
        }
        traced(span, self.enqueue("trigger", Value::Object(body), event.dedup_key.as_deref())).await
    }

    /// Acknowledges the open alert with this dedup key (PagerDuty drops it, still answering
    /// 202, when there is none).
    pub async fn acknowledge(
        &self,
        routing_key: &Secret,
        dedup_key: &str,
    ) -> Result<Correlated<String>, PagerDutyError> {
        self.follow_up("acknowledge", routing_key, dedup_key).await
    }

    /// Resolves the open alert with this dedup key (dropped with 202 when there is none).
    pub async fn resolve(&self, routing_key: &Secret, dedup_key: &str) -> Result<Correlated<String>, PagerDutyError> {
        self.follow_up("resolve", routing_key, dedup_key).await
    }

    async fn follow_up(
        &self,
        action: &'static str,
        routing_key: &Secret,
        dedup_key: &str,
    ) -> Result<Correlated<String>, PagerDutyError> {
        check_routing_key(routing_key)?;
        if dedup_key.trim().is_empty() {
            return Err(PagerDutyError::InvalidInput { message: format!("{action} needs a dedup_key") });
        }
        check_dedup_key(dedup_key)?;
        let body = serde_json::json!({
            "routing_key": routing_key.expose(),
            "event_action": action,
            "dedup_key": dedup_key,
        });
        let span = match action {
            "acknowledge" => pd_span!("pagerduty.acknowledge", self.inner.enqueue),
            _ => pd_span!("pagerduty.resolve", self.inner.enqueue),
        };
        span.record("dedup_key", dedup_key);
        traced(span, self.enqueue(action, body, Some(dedup_key))).await
    }

    async fn enqueue(
        &self,
        action: &'static str,
        body: Value,
        sent_key: Option<&str>,
    ) -> Result<Correlated<String>, PagerDutyError> {
        let span = Span::current();
        // PagerDuty takes no client id; this one names the call in our own logs.
        let client_request_id = Uuid::new_v4().to_string();
        span.record("client_request_id", client_request_id.as_str());
        let sent = Correlation { request_id: None, client_request_id };
        let request = self
            .inner
            .http
            .post(self.inner.enqueue.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body.to_string());
        let transport = |e: reqwest::Error, correlation: Correlation| {
            let (kind, message) = http::describe_transport(e);
            PagerDutyError::Transport { action, kind, message, correlation }
        };
        let response = request.send().await.map_err(|e| transport(e, sent.clone()))?;
        let status = response.status();
        grantline_shared::metrics::upstream_response("pagerduty", status.as_u16());
        span.record("http.status_code", status.as_u16());
        let headers = response.headers().clone();
        let request_id = http::header_str(&headers, "x-request-id").map(str::to_owned);
        if let Some(id) = &request_id {
            span.record("request_id", id.as_str());
        }
        let correlation = Correlation { request_id, client_request_id: sent.client_request_id };
        let bytes = response.bytes().await.map_err(|e| transport(e, correlation.clone()))?;
        if status.is_success() {
            let answered = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("dedup_key").and_then(Value::as_str).map(str::to_owned));
            let dedup_key = answered.or_else(|| sent_key.map(str::to_owned)).unwrap_or_default();
            span.record("dedup_key", dedup_key.as_str());
            return Ok(Correlated { value: dedup_key, correlation });
        }
        let refusal: Refusal = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            Refusal { message: (!text.is_empty()).then(|| http::truncate(&text, 300)), ..Refusal::default() }
        });
        let message = match (refusal.message, refusal.status) {
            (Some(m), _) => Some(m),
            (None, s) => s,
        };
        Err(PagerDutyError::Api {
            action,
            status: status.as_u16(),
            message,
            errors: refusal.errors,
            retry_after: http::retry_after(&headers, Timestamp::now()),
            correlation,
        })
    }
}

fn check_routing_key(key: &Secret) -> Result<(), PagerDutyError> {
    let len = key.expose().chars().count();
    if len != ROUTING_KEY_CHARS {
        return Err(PagerDutyError::InvalidInput {
            message: format!("the routing key must be {ROUTING_KEY_CHARS} characters (it has {len})"),
        });
    }
    Ok(())
}

fn check_dedup_key(key: &str) -> Result<(), PagerDutyError> {
    if key.chars().count() > MAX_DEDUP_KEY_CHARS {
        return Err(PagerDutyError::InvalidInput {
            message: format!("dedup_key is longer than {MAX_DEDUP_KEY_CHARS} characters"),
        });
    }
    Ok(())
}

/// Runs one call inside its span and records the error code when it fails.
async fn traced<T>(span: Span, call: impl Future<Output = Result<T, PagerDutyError>>) -> Result<T, PagerDutyError> {
    let result = call.instrument(span.clone()).await;
    if let Err(err) = &result {
        let code = err.code();
        span.record("error.code", code.as_str());
        span.in_scope(|| tracing::debug!(error = %err, "pagerduty call failed"));
    }
    result
}
