//! The Bot Connector client: proactive 1:1 conversations and card activities.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tracing::{Instrument, Span};
use url::Url;
use uuid::Uuid;

use super::error::{BotErrorBody, TeamsError};
use super::model::ADAPTIVE_CARD_CONTENT_TYPE;
use super::{BotConfig, normalize_prefix};
use crate::ConfigError;
use crate::graph::{Correlated, Correlation};
use crate::http;
use crate::token::TokenProvider;

/// A client for the Bot Connector REST API. Cloning is cheap; clones share the connection
/// pool and the token cache.
#[derive(Clone)]
pub struct BotConnectorClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    tokens: TokenProvider,
    app_id: String,
    /// Allowed service URL prefixes, each ending in `/`.
    allowed: Vec<String>,
}

impl fmt::Debug for BotConnectorClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotConnectorClient")
            .field("app_id", &self.inner.app_id)
            .field("allowed_service_urls", &self.inner.allowed)
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    correlation: Correlation,
}

#[derive(Deserialize)]
struct ResourceResponse {
    #[serde(default)]
    id: String,
}

macro_rules! teams_span {
    ($name:literal, $method:expr, $url:expr) => {
        tracing::info_span!(
            $name,
            otel.kind = "client",
            http.method = %$method,
            url.path = %$url.path(),
            http.status_code = tracing::field::Empty,
            request_id = tracing::field::Empty,
            client_request_id = tracing::field::Empty,
            error.code = tracing::field::Empty,
        )
    };
}

impl BotConnectorClient {
    /// A client with its own HTTP client and token provider, built from configuration.
    pub fn new(config: &BotConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let http = http::build_client(&config.http)?;
        let tokens = TokenProvider::new(&config.token_config(), http.clone())?;
        Self::from_parts(config, http, tokens)
    }

    /// A client from its parts: an HTTP client and a token provider for the resource
    /// `https://api.botframework.com` (see [`BotConfig::token_config`]).
    pub fn from_parts(config: &BotConfig, http: reqwest::Client, tokens: TokenProvider) -> Result<Self, ConfigError> {
        if config.app_id.trim().is_empty() {
            return Err(ConfigError::new("teams.app_id", "must be set"));
        }
        let allowed = config.validate_outbound()?;
        Ok(Self { inner: Arc::new(Inner { http, tokens, app_id: config.app_id.trim().to_owned(), allowed }) })
    }

    /// The Bot Connector token provider (shared by clones).
    pub fn token_provider(&self) -> &TokenProvider {
        &self.inner.tokens
    }

    /// `POST {serviceUrl}/v3/conversations`: the 1:1 conversation of the bot with a user
    /// (Teams gives back the existing one when there is one). Returns the conversation id.
    /// 403 `BotNotInConversationRoster` (the user does not have the bot) is
    /// `teams.bot_not_installed`.
    pub async fn create_conversation(
        &self,
        service_url: &str,
        user_aad_object_id: &str,
        tenant_id: &str,
    ) -> Result<Correlated<String>, TeamsError> {
        non_empty("user object id", user_aad_object_id)?;
        non_empty("tenant id", tenant_id)?;
        let url = http::join_segments(&self.service_base(service_url)?, &["v3", "conversations"]);
        let body = serde_json::json!({
            "bot": { "id": format!("28:{}", self.inner.app_id) },
            "isGroup": false,
            "members": [{ "id": user_aad_object_id }],
            "tenantId": tenant_id,
            "channelData": { "tenant": { "id": tenant_id } },
        });
        let span = teams_span!("teams.create_conversation", Method::POST, url);
        traced(span, async {
            let reply = self.execute(Method::POST, url, &body).await?;
            resource_id(reply)
        })
        .await
    }

    /// `POST {serviceUrl}/v3/conversations/{id}/activities` with a message holding one
    /// Adaptive Card. Returns the activity id (to update the card later).
    pub async fn send_card(
        &self,
        service_url: &str,
        conversation_id: &str,
        card: &Value,
    ) -> Result<Correlated<String>, TeamsError> {
        non_empty("conversation id", conversation_id)?;
        let base = self.service_base(service_url)?;
        let url = http::join_segments(&base, &["v3", "conversations", conversation_id, "activities"]);
        let body = serde_json::json!({
            "type": "message",
            "attachments": [{ "contentType": ADAPTIVE_CARD_CONTENT_TYPE, "content": card }],
        });
        let span = teams_span!("teams.send_card", Method::POST, url);
        traced(span, async {
            let reply = self.execute(Method::POST, url, &body).await?;
            resource_id(reply)
        })
        .await
    }

    /// `PUT {serviceUrl}/v3/conversations/{id}/activities/{activityId}`: replaces the card of
    /// an activity the bot sent.
    pub async fn update_card(
        &self,
        service_url: &str,
        conversation_id: &str,
        activity_id: &str,
        card: &Value,
    ) -> Result<Correlated<()>, TeamsError> {
        non_empty("conversation id", conversation_id)?;
        non_empty("activity id", activity_id)?;
        let base = self.service_base(service_url)?;
        let url = http::join_segments(&base, &["v3", "conversations", conversation_id, "activities", activity_id]);
        let body = serde_json::json!({
            "type": "message",
            "id": activity_id,
            "attachments": [{ "contentType": ADAPTIVE_CARD_CONTENT_TYPE, "content": card }],
        });
        let span = teams_span!("teams.update_card", Method::PUT, url);
        traced(span, async {
            let reply = self.execute(Method::PUT, url, &body).await?;
            if reply.status.is_success() {
                Ok(Correlated { value: (), correlation: reply.correlation })
            } else {
                Err(api_error(reply))
            }
        })
        .await
    }

    /// The service URL as a base for paths, after the allow-list check.
    fn service_base(&self, service_url: &str) -> Result<Url, TeamsError> {
        let invalid = |reason: &str| TeamsError::InvalidServiceUrl { reason: reason.to_owned() };
        let url = Url::parse(service_url.trim()).map_err(|_| invalid("not an absolute URL"))?;
        if (url.scheme() != "https" && url.scheme() != "http") || url.host_str().is_none() {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("a service URL has no credentials, query or fragment"));
        }
        let normalized = normalize_prefix(url.as_str()).map_err(|_| invalid("not a plain URL"))?;
        if !self.inner.allowed.iter().any(|p| normalized.starts_with(p.as_str())) {
            return Err(TeamsError::ServiceUrlNotAllowed { service_url: service_url.trim().to_owned() });
        }
        http::parse_base_url("teams.service_url", &normalized).map_err(|e| invalid(&e.reason))
    }

    /// Sends one request; on a `401`, drops the token, fetches a new one and sends the request
    /// once more. A second `401` is returned as is.
    async fn execute(&self, method: Method, url: Url, body: &Value) -> Result<Reply, TeamsError> {
        let span = Span::current();
        let mut refreshed = false;
        loop {
            let token = self.inner.tokens.token().await?;
            let client_request_id = Uuid::new_v4().to_string();
            span.record("client_request_id", client_request_id.as_str());
            let request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.secret())
                .header("x-ms-client-request-id", client_request_id.as_str())
                .header(ACCEPT, "application/json")
                .json(body);
            let sent = Correlation { request_id: None, client_request_id };
            let response = request.send().await.map_err(|e| transport(e, sent.clone()))?;
            let status = response.status();
            grantline_shared::metrics::upstream_response("teams", status.as_u16());
            let headers = response.headers().clone();
            span.record("http.status_code", status.as_u16());
            let request_id = http::header_str(&headers, "ms-cv")
                .or_else(|| http::header_str(&headers, "x-ms-request-id"))
                .map(str::to_owned);
            if let Some(id) = &request_id {
                span.record("request_id", id.as_str());
            }
            let correlation = Correlation { request_id, client_request_id: sent.client_request_id };
            let bytes = response.bytes().await.map_err(|e| transport(e, correlation.clone()))?;
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                tracing::debug!("the bot connector answered 401; refreshing the token and trying once more");
                self.inner.tokens.invalidate_if_current(&token);
                refreshed = true;
                continue;
            }
            return Ok(Reply { status, headers, body: bytes.to_vec(), correlation });
        }
    }
}

fn resource_id(reply: Reply) -> Result<Correlated<String>, TeamsError> {
    if !reply.status.is_success() {
        return Err(api_error(reply));
    }
    match serde_json::from_slice::<ResourceResponse>(&reply.body) {
        Ok(r) if !r.id.is_empty() => Ok(Correlated { value: r.id, correlation: reply.correlation }),
        Ok(_) => {
            Err(TeamsError::Decode { message: "the response has no id".to_owned(), correlation: reply.correlation })
        }
        Err(e) => Err(TeamsError::Decode { message: e.to_string(), correlation: reply.correlation }),
    }
}

fn non_empty(what: &str, value: &str) -> Result<(), TeamsError> {
    if value.trim().is_empty() {
        return Err(TeamsError::InvalidInput { message: format!("{what} is empty") });
    }
    Ok(())
}

pub(super) fn transport(err: reqwest::Error, correlation: Correlation) -> TeamsError {
    let (kind, message) = http::describe_transport(err);
    TeamsError::Transport { kind, message, correlation }
}

fn api_error(reply: Reply) -> TeamsError {
    let body = BotErrorBody::parse(&reply.body);
    let retry_after = http::retry_after(&reply.headers, jiff::Timestamp::now());
    TeamsError::Api { status: reply.status.as_u16(), body, retry_after, correlation: reply.correlation }
}

/// Runs one call inside its span and records the error code when it fails.
pub(super) async fn traced<T>(span: Span, call: impl Future<Output = Result<T, TeamsError>>) -> Result<T, TeamsError> {
    let result = call.instrument(span.clone()).await;
    if let Err(err) = &result {
        let code = err.code();
        span.record("error.code", code.as_str());
        span.in_scope(|| tracing::debug!(error = %err, "teams call failed"));
    }
    result
}

/// Reads a status and headers into a [`TeamsError::Api`] (shared with the channel client).
pub(super) fn api_error_from(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    correlation: Correlation,
) -> TeamsError {
    let retry_after = http::retry_after(headers, jiff::Timestamp::now());
    TeamsError::Api { status: status.as_u16(), body: BotErrorBody::parse(body), retry_after, correlation }
}
