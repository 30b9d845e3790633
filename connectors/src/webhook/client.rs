//! The alert webhook client and its failures.

use std::fmt;
use std::time::Duration;

use grantline_shared::{ErrorClass, StepError};
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tracing::Instrument;
use url::Url;

use crate::http::{self, HttpConfig, TransportKind};
use crate::pagerduty::Severity;
use crate::{ConfigError, Secret};

/// `alert.trigger` or `alert.resolve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertEventKind {
    #[serde(rename = "alert.trigger")]
    Trigger,
    #[serde(rename = "alert.resolve")]
    Resolve,
}

/// The body of one delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub event: AlertEventKind,
    /// Groups a trigger with its resolve.
    pub dedup_key: String,
    pub severity: Severity,
    pub summary: String,
    pub details: serde_json::Value,
    /// When the condition arose (RFC 3339, UTC).
    pub occurred_at: Timestamp,
}

/// A failed delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No response: timeout, refused or reset connection.
    #[error("alert webhook delivery failed: {message}")]
    Transport { kind: TransportKind, message: String },
    /// The receiver answered with a non-success status.
    #[error("alert webhook answered HTTP {status}{}", .body.as_deref().map(|b| format!(": {b}")).unwrap_or_default())]
    Rejected { status: u16, retry_after: Option<Duration>, body: Option<String> },
    /// Refused before sending: the URL is not http(s), or the event does not serialise.
    #[error("invalid alert webhook delivery: {message}")]
    InvalidInput { message: String },
}

impl WebhookError {
    pub fn class(&self) -> ErrorClass {
        match self {
            WebhookError::Transport { kind, .. } => kind.class(),
            WebhookError::Rejected { status, retry_after, .. } if *status == 429 || *status >= 500 => {
                ErrorClass::Transient { retry_after: *retry_after }
            }
            WebhookError::Rejected { status, retry_after, .. } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                http::classify_status(status, *retry_after)
            }
            WebhookError::InvalidInput { .. } => ErrorClass::Permanent,
        }
    }

    /// `webhook.throttled`, `webhook.unavailable`, `webhook.bad_request`, `webhook.unauthorized`,
    /// `webhook.timeout`, `webhook.invalid_input`, ...
    pub fn code(&self) -> String {
        match self {
            WebhookError::Transport { kind, .. } => format!("webhook.{}", kind.code_name()),
            WebhookError::Rejected { status, .. } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                format!("webhook.{}", http::status_code_name(status))
            }
            WebhookError::InvalidInput { .. } => "webhook.invalid_input".to_owned(),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            WebhookError::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn to_step_error(&self) -> StepError {
        StepError::new(self.class(), self.code(), self.to_string())
    }
}

impl From<WebhookError> for StepError {
    fn from(err: WebhookError) -> Self {
        err.to_step_error()
    }
}

/// `sha256=` + lower-case hex of HMAC-SHA256(secret, body): the `X-Signature` value.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let hex = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .map(|mut mac| {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        })
        .unwrap_or_default();
    format!("sha256={hex}")
}

/// Delivers alert events to receivers. Cloning is cheap; clones share the connection pool.
#[derive(Clone)]
pub struct AlertWebhookClient {
    http: reqwest::Client,
}

impl fmt::Debug for AlertWebhookClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertWebhookClient").finish_non_exhaustive()
    }
}

impl AlertWebhookClient {
    /// A client with these timeouts (`webhook.http.*`).
    pub fn new(config: &HttpConfig) -> Result<Self, ConfigError> {
        let http = http::build_client(config).map_err(|e| {
            let key = match e.key {
                "http.timeout_ms" => "webhook.http.timeout_ms",
                "http.connect_timeout_ms" => "webhook.http.connect_timeout_ms",
                "http.proxy_url" => "webhook.http.proxy_url",
                _ => "webhook.http",
            };
            ConfigError::new(key, e.reason)
        })?;
        Ok(Self { http })
    }

    /// Sends one event, signed with `secret`, stamped `now`, with `event_id` as its idempotency
    /// key (send the same id when retrying the same event).
    pub async fn send(
        &self,
        url: &str,
        secret: &Secret,
        event: &AlertEvent,
        event_id: &str,
        now: Timestamp,
    ) -> Result<(), WebhookError> {
        let url = Url::parse(url.trim())
            .ok()
            .filter(|u| (u.scheme() == "https" || u.scheme() == "http") && u.host_str().is_some())
            .ok_or_else(|| WebhookError::InvalidInput { message: "the URL is not an http(s) URL".into() })?;
        if event_id.trim().is_empty() {
            return Err(WebhookError::InvalidInput { message: "the event id is empty".into() });
        }
        let body = serde_json::to_vec(event).map_err(|e| WebhookError::InvalidInput { message: e.to_string() })?;
        let signature = sign(secret, &body);
        let span = tracing::info_span!(
            "webhook.send",
            otel.kind = "client",
            http.method = "POST",
            server.address = url.host_str().unwrap_or_default(),
            event_id = event_id,
            dedup_key = event.dedup_key.as_str(),
            http.status_code = tracing::field::Empty,
            error.code = tracing::field::Empty,
        );
        let request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("X-Signature", signature)
            .header("X-Timestamp", now.as_second().to_string())
            .header("X-Event-Id", event_id)
            .body(body);
        let result = async {
            let transport = |e: reqwest::Error| {
                let (kind, message) = http::describe_transport(e);
                WebhookError::Transport { kind, message }
            };
            let response = request.send().await.map_err(transport)?;
            let status = response.status();
            grantline_shared::metrics::upstream_response("alert_webhook", status.as_u16());
            tracing::Span::current().record("http.status_code", status.as_u16());
            if status.is_success() {
                return Ok(());
            }
            let retry_after = http::retry_after(response.headers(), Timestamp::now());
            let text = response.text().await.unwrap_or_default();
            let body = (!text.trim().is_empty()).then(|| http::truncate(text.trim(), 300));
            Err(WebhookError::Rejected { status: status.as_u16(), retry_after, body })
        }
        .instrument(span.clone())
        .await;
        if let Err(err) = &result {
            let code = err.code();
            span.record("error.code", code.as_str());
            span.in_scope(|| tracing::debug!(error = %err, "alert webhook delivery failed"));
        }
        result
    }
}
