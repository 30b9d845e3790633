//! The Slack Web API client.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{Instrument, Span};
use url::Url;

use super::SlackConfig;
use super::error::SlackError;
use super::signature::{self, SignatureError};
use crate::http;
use crate::{ConfigError, Secret};

const JSON_UTF8: &str = "application/json; charset=utf-8";

/// A client for one Slack workspace's Web API, acting as the app's bot user. Cloning is cheap;
/// clones share the connection pool.
#[derive(Clone)]
pub struct SlackClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    bot_token: Secret,
    signing_secret: Secret,
}

impl fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackClient").field("base_url", &self.inner.base.as_str()).finish_non_exhaustive()
    }
}

/// Where a message landed: keep both for `chat.update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    /// The channel id Slack reports (`D…` when the message was sent to a user id).
    pub channel: String,
    /// The message's `ts` (`"1503435956.000247"`), its id within the channel.
    pub ts: String,
}

/// A workspace member as `users.info` / `users.lookupByEmail` describe them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackUser {
    pub id: String,
    pub team_id: Option<String>,
    /// The handle.
    pub name: Option<String>,
    pub real_name: Option<String>,
    pub display_name: Option<String>,
    /// `profile.email`: present only when the token has `users:read.email`.
    pub email: Option<String>,
    /// Deactivated accounts.
    pub deleted: bool,
    pub is_bot: bool,
}

impl SlackUser {
    fn from_json(user: &Value) -> Option<Self> {
        let text = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let profile = user.get("profile");
        Some(SlackUser {
            id: text(user.get("id"))?,
            team_id: text(user.get("team_id")),
            name: text(user.get("name")),
            real_name: text(user.get("real_name")).or_else(|| text(profile.and_then(|p| p.get("real_name")))),
            display_name: text(profile.and_then(|p| p.get("display_name"))),
            email: text(profile.and_then(|p| p.get("email"))),
            deleted: user.get("deleted").and_then(Value::as_bool).unwrap_or(false),
            is_bot: user.get("is_bot").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

macro_rules! slack_span {
    ($name:literal, $url:expr) => {
        tracing::info_span!(
            $name,
            otel.kind = "client",
            http.method = "POST",
            url.path = %$url.path(),
            http.status_code = tracing::field::Empty,
            request_id = tracing::field::Empty,
            error.code = tracing::field::Empty,
        )
    };
}

enum Body<'a> {
    Json(&'a Value),
    Form(&'a [(&'a str, &'a str)]),
}

impl SlackClient {
    /// A client built from configuration. Validation names the key: `slack.base_url`,
    /// `slack.bot_token` (must be a bot token, `xoxb-…`), `slack.signing_secret`.
    pub fn new(config: &SlackConfig) -> Result<Self, ConfigError> {
        let base = http::parse_base_url("slack.base_url", &config.base_url)?;
        if config.bot_token.is_empty() {
            return Err(ConfigError::new("slack.bot_token", "must be set"));
        }
        if !config.bot_token.expose().starts_with("xoxb-") {
            return Err(ConfigError::new("slack.bot_token", "must be a bot token (xoxb-…)"));
        }
        if config.signing_secret.is_empty() {
            return Err(ConfigError::new("slack.signing_secret", "must be set"));
        }
        let http = http::build_client(&config.http).map_err(http_key)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                bot_token: config.bot_token.clone(),
                signing_secret: config.signing_secret.clone(),
            }),
        })
    }

    /// Verifies an interactivity request with the configured signing secret and the default
    /// five-minute window (see [`signature::verify_signature`]).
    pub fn verify(
        &self,
        timestamp_header: Option<&str>,
        signature_header: Option<&str>,
        raw_body: &[u8],
        now: Timestamp,
    ) -> Result<(), SignatureError> {
        signature::verify_signature(
            &self.inner.signing_secret,
            timestamp_header,
            signature_header,
            raw_body,
            now,
            signature::DEFAULT_WINDOW,
        )
    }

    fn method_url(&self, method: &str) -> Url {
        http::join_segments(&self.inner.base, &[method])
    }

    /// `chat.postMessage`: `text` is the notification fallback (always sent), `blocks` the Block
    /// Kit array (`Value::Null` for none). `channel` may be a channel id or a user id (a direct
    /// message; the answer then names the `D…` channel).
    pub async fn post_message(&self, channel: &str, text: &str, blocks: &Value) -> Result<Posted, SlackError> {
        non_empty("channel", channel)?;
        let mut body = Map::new();
        body.insert("channel".into(), channel.into());
        body.insert("text".into(), text.into());
        if !blocks.is_null() {
            body.insert("blocks".into(), blocks.clone());
        }
        let body = Value::Object(body);
        let url = self.method_url("chat.postMessage");
        let span = slack_span!("slack.post_message", url);
        traced(span, async {
            let v = self.call("chat.postMessage", url, Body::Json(&body)).await?;
            posted("chat.postMessage", &v, None)
        })
        .await
    }

    /// `chat.update`: replaces the text and blocks of a message the bot posted.
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<Posted, SlackError> {
        non_empty("channel", channel)?;
        non_empty("ts", ts)?;
        let mut body = Map::new();
        body.insert("channel".into(), channel.into());
        body.insert("ts".into(), ts.into());
        body.insert("text".into(), text.into());
        if !blocks.is_null() {
            body.insert("blocks".into(), blocks.clone());
        }
        let body = Value::Object(body);
        let url = self.method_url("chat.update");
        let span = slack_span!("slack.update_message", url);
        traced(span, async {
            let v = self.call("chat.update", url, Body::Json(&body)).await?;
            posted("chat.update", &v, Some(ts))
        })
        .await
    }

    /// `users.info`: the user and, with the `users:read.email` scope, their email.
    pub async fn user(&self, user_id: &str) -> Result<SlackUser, SlackError> {
        non_empty("user", user_id)?;
        let url = self.method_url("users.info");
        let span = slack_span!("slack.users_info", url);
        traced(span, async {
            let v = self.call("users.info", url, Body::Form(&[("user", user_id)])).await?;
            v.get("user")
                .and_then(SlackUser::from_json)
                .ok_or_else(|| SlackError::Decode { method: "users.info", message: "no user in the answer".into() })
        })
        .await
    }

    /// The email of a Slack user (`users.info` → `user.profile.email`). `Ok(None)` when Slack
    /// shows none (no `users:read.email` scope, or a bot); an unknown user is the Permanent
    /// error `slack.user_not_found`.
    pub async fn user_email(&self, user_id: &str) -> Result<Option<String>, SlackError> {
        Ok(self.user(user_id).await?.email)
    }

    /// `users.lookupByEmail` (needs `users:read.email`). `Ok(None)` when no member has that
    /// address (`users_not_found`).
    pub async fn lookup_by_email(&self, email: &str) -> Result<Option<SlackUser>, SlackError> {
        non_empty("email", email)?;
        let url = self.method_url("users.lookupByEmail");
        let span = slack_span!("slack.lookup_by_email", url);
        traced(span, async {
            match self.call("users.lookupByEmail", url, Body::Form(&[("email", email)])).await {
                Ok(v) => v.get("user").and_then(SlackUser::from_json).map(Some).ok_or_else(|| SlackError::Decode {
                    method: "users.lookupByEmail",
                    message: "no user in the answer".into(),
                }),
                Err(SlackError::Api { error, .. }) if error == "users_not_found" => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// `conversations.open` with one user: the id of the direct-message channel (`D…`).
    pub async fn open_dm(&self, user_id: &str) -> Result<String, SlackError> {
        non_empty("user", user_id)?;
        let body = serde_json::json!({ "users": user_id });
        let url = self.method_url("conversations.open");
        let span = slack_span!("slack.open_dm", url);
        traced(span, async {
            let v = self.call("conversations.open", url, Body::Json(&body)).await?;
            v.get("channel")
                .and_then(|c| c.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| SlackError::Decode { method: "conversations.open", message: "no channel id".into() })
        })
        .await
    }

    /// POSTs a follow-up to an interaction's `response_url` (no token: the URL is the
    /// credential). `body` is a message, e.g. `{"replace_original": true, "text": "Approved by
    /// …"}`. Slack accepts five uses within 30 minutes; after that it answers 404, the Permanent
    /// `slack.used_url` / `slack.expired_url`. Use `chat.update` for later edits.
    ///
    /// Pass only the `response_url` of a payload whose signature was verified.
    pub async fn respond(&self, response_url: &str, body: &Value) -> Result<(), SlackError> {
        let url = Url::parse(response_url.trim())
            .ok()
            .filter(|u| (u.scheme() == "https" || u.scheme() == "http") && u.host_str().is_some())
            .ok_or_else(|| SlackError::InvalidInput { message: "response_url is not an http(s) URL".into() })?;
        // The path of a response_url is a credential: the span names only the host.
        let span = tracing::info_span!(
            "slack.respond",
            otel.kind = "client",
            http.method = "POST",
            server.address = url.host_str().unwrap_or_default(),
            http.status_code = tracing::field::Empty,
            request_id = tracing::field::Empty,
            error.code = tracing::field::Empty,
        );
        traced(span, async {
            let request = self.inner.http.post(url).header(CONTENT_TYPE, JSON_UTF8).body(body.to_string());
            let reply = send("respond", request).await?;
            if reply.status == StatusCode::OK {
                // The answer is `ok` as text or `{"ok":true}`; a JSON `ok:false` is a refusal.
                if let Ok(v) = serde_json::from_slice::<Value>(&reply.body)
                    && v.get("ok").and_then(Value::as_bool) == Some(false)
                {
                    return Err(api_error("respond", &v, reply.request_id));
                }
                return Ok(());
            }
            Err(http_error("respond", reply))
        })
        .await
    }

    /// Sends one Web API call and returns the JSON of an `ok:true` answer.
    async fn call(&self, method: &'static str, url: Url, body: Body<'_>) -> Result<Value, SlackError> {
        let request =
            self.inner.http.post(url).bearer_auth(self.inner.bot_token.expose()).header(ACCEPT, "application/json");
        let request = match body {
            Body::Json(v) => request.header(CONTENT_TYPE, JSON_UTF8).body(v.to_string()),
            Body::Form(pairs) => request.form(pairs),
        };
        let reply = send(method, request).await?;
        if reply.status != StatusCode::OK {
            return Err(http_error(method, reply));
        }
        let v: Value = serde_json::from_slice(&reply.body)
            .map_err(|e| SlackError::Decode { method, message: format!("not JSON: {e}") })?;
        match v.get("ok").and_then(Value::as_bool) {
            Some(true) => Ok(v),
            Some(false) => Err(api_error(method, &v, reply.request_id)),
            None => Err(SlackError::Decode { method, message: "no ok field".into() }),
        }
    }
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
    request_id: Option<String>,
}

async fn send(method: &'static str, request: reqwest::RequestBuilder) -> Result<Reply, SlackError> {
    let span = Span::current();
    let transport = |e: reqwest::Error| {
        let (kind, message) = http::describe_transport(e);
        SlackError::Transport { method, kind, message }
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    grantline_shared::metrics::upstream_response("slack", status.as_u16());
    span.record("http.status_code", status.as_u16());
    let headers = response.headers().clone();
    let request_id = http::header_str(&headers, "x-slack-req-id").map(str::to_owned);
    if let Some(id) = &request_id {
        span.record("request_id", id.as_str());
    }
    let body = response.bytes().await.map_err(transport)?.to_vec();
    Ok(Reply { status, headers, body, request_id })
}

fn api_error(method: &'static str, v: &Value, request_id: Option<String>) -> SlackError {
    let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut messages: Vec<String> = v
        .get("response_metadata")
        .and_then(|m| m.get("messages"))
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(errors) = v.get("errors").and_then(Value::as_array) {
        messages.extend(errors.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    SlackError::Api {
        method,
        error: text("error").unwrap_or_else(|| "unknown_error".to_owned()),
        needed: text("needed"),
        provided: text("provided"),
        messages,
        request_id,
    }
}

fn http_error(method: &'static str, reply: Reply) -> SlackError {
    let error = match serde_json::from_slice::<Value>(&reply.body) {
        Ok(v) => v.get("error").and_then(Value::as_str).map(str::to_owned),
        Err(_) => {
            let text = String::from_utf8_lossy(&reply.body).trim().to_owned();
            (!text.is_empty() && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .then_some(text)
        }
    };
    SlackError::Http {
        method,
        status: reply.status.as_u16(),
        error,
        retry_after: http::retry_after(&reply.headers, Timestamp::now()),
        request_id: reply.request_id,
    }
}

fn posted(method: &'static str, v: &Value, fallback_ts: Option<&str>) -> Result<Posted, SlackError> {
    let channel = v.get("channel").and_then(Value::as_str);
    let ts = v.get("ts").and_then(Value::as_str).or(fallback_ts);
    match (channel, ts) {
        (Some(c), Some(t)) => Ok(Posted { channel: c.to_owned(), ts: t.to_owned() }),
        _ => Err(SlackError::Decode { method, message: "the answer has no channel or ts".into() }),
    }
}

/// Names the key of an `http` setting within the `[slack]` section.
fn http_key(e: ConfigError) -> ConfigError {
    let key = match e.key {
        "http.timeout_ms" => "slack.http.timeout_ms",
        "http.connect_timeout_ms" => "slack.http.connect_timeout_ms",
        "http.proxy_url" => "slack.http.proxy_url",
        _ => "slack.http",
    };
    ConfigError::new(key, e.reason)
}

fn non_empty(what: &str, value: &str) -> Result<(), SlackError> {
    if value.trim().is_empty() {
        return Err(SlackError::InvalidInput { message: format!("{what} is empty") });
    }
    Ok(())
}

/// Runs one call inside its span and records the error code when it fails.
async fn traced<T>(span: Span, call: impl Future<Output = Result<T, SlackError>>) -> Result<T, SlackError> {
    let result = call.instrument(span.clone()).await;
    if let Err(err) = &result {
        let code = err.code();
        span.record("error.code", code.as_str());
        span.in_scope(|| tracing::debug!(error = %err, "slack call failed"));
    }
    result
}
