//! Cards posted to a Teams channel through a Workflows webhook ("post to a channel when a
//! webhook request is received"). Such cards are for display: only `Action.OpenUrl` buttons
//! work in them.

use std::fmt;

use serde_json::Value;
use url::Url;
use uuid::Uuid;

use super::client::{api_error_from, traced, transport};
use super::error::TeamsError;
use super::model::ADAPTIVE_CARD_CONTENT_TYPE;
use crate::graph::{Correlated, Correlation};
use crate::http::{self, HttpConfig};
use crate::{ConfigError, Secret};

/// Posts cards to Workflows webhooks. Cloning is cheap.
#[derive(Clone)]
pub struct TeamsChannelClient {
    http: reqwest::Client,
}

impl fmt::Debug for TeamsChannelClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeamsChannelClient").finish_non_exhaustive()
    }
}

impl TeamsChannelClient {
    /// A client with its own HTTP client.
    pub fn new(config: &HttpConfig) -> Result<Self, ConfigError> {
        Ok(Self { http: http::build_client(config)? })
    }

    /// A client that sends through `http` (see [`http::build_client`]).
    pub fn from_client(http: reqwest::Client) -> Self {
        Self { http }
    }

    /// `POST` the card as a message to the webhook. 202 (any 2xx) is success; 401 (a wrong
    /// or revoked `sig`) and other 4xx are Permanent; 429 and 5xx are retried by the queue.
    /// The URL is a secret: it appears in no error, log or span (only its host does).
    /// `Correlated::correlation` holds the run id (`x-ms-workflow-run-id`) and the tracking
    /// id we sent (`x-ms-client-tracking-id`).
    pub async fn post_card(&self, webhook_url: &Secret, card: &Value) -> Result<Correlated<()>, TeamsError> {
        let url = Url::parse(webhook_url.expose().trim())
            .ok()
            .filter(|u| (u.scheme() == "https" || u.scheme() == "http") && u.host_str().is_some())
            .ok_or_else(|| TeamsError::InvalidInput { message: "the webhook URL is not an http(s) URL".to_owned() })?;
        let span = tracing::info_span!(
            "teams.post_channel_card",
            otel.kind = "client",
            http.method = "POST",
            server.address = %url.host_str().unwrap_or(""),
            http.status_code = tracing::field::Empty,
            request_id = tracing::field::Empty,
            client_request_id = tracing::field::Empty,
            error.code = tracing::field::Empty,
        );
        let body = serde_json::json!({
            "type": "message",
            "attachments": [{ "contentType": ADAPTIVE_CARD_CONTENT_TYPE, "contentUrl": null, "content": card }],
        });
        traced(span.clone(), async move {
            let tracking = Uuid::new_v4().to_string();
            span.record("client_request_id", tracking.as_str());
            let sent = Correlation { request_id: None, client_request_id: tracking.clone() };
            let response = self
                .http
                .post(url)
                .header("x-ms-client-tracking-id", tracking.as_str())
                .json(&body)
                .send()
                .await
                .map_err(|e| transport(e, sent.clone()))?;
            let status = response.status();
            grantline_shared::metrics::upstream_response("teams_channel", status.as_u16());
            span.record("http.status_code", status.as_u16());
            let headers = response.headers().clone();
            let request_id = http::header_str(&headers, "x-ms-workflow-run-id")
                .or_else(|| http::header_str(&headers, "x-ms-request-id"))
                .map(str::to_owned);
            if let Some(id) = &request_id {
                span.record("request_id", id.as_str());
            }
            let correlation = Correlation { request_id, client_request_id: tracking };
            let bytes = response.bytes().await.map_err(|e| transport(e, correlation.clone()))?;
            if status.is_success() {
                return Ok(Correlated { value: (), correlation });
            }
            Err(api_error_from(status, &headers, &bytes, correlation))
        })
        .await
    }
}
