//! `POST /v1/slack/interactions`: the Slack app's interactivity Request URL (Approve and Reject
//! buttons of an approval message).
//!
//! The raw body is verified before it is parsed: `X-Slack-Signature` must be the app's
//! HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{body}`, the timestamp within five minutes of
//! this process's clock, and the signature must not have been seen before (a marker per
//! signature in Redis, `SET NX PX`, kept as long as the signature could still pass the time
//! check). A request that fails is answered 401 and written to the doors' security log.
//!
//! A verified `block_actions` click on `approve` or `reject` (value `<request id>:<stage>`) is
//! acknowledged at once with an empty 200, as Slack asks; the rest runs on its own task, bounded
//! in time: the clicking user's email (`users.info`) is the claim the directory proves, the
//! answer is recorded, and the message is replaced for everyone through the click's
//! `response_url` (or `chat.update` when that fails) with the request as it now stands. A
//! refused answer is explained to the clicker alone (an ephemeral message); the message stays.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tracing::Instrument;

use grantline_connectors::ConfigError;
use grantline_connectors::graph::Claim;
use grantline_connectors::slack::{
    BlockActions, DEFAULT_WINDOW, PayloadError, SignatureError, SlackClient, SlackConfig, parse_block_actions,
};
use grantline_shared::cards::{ApprovalView, parse_slack_value};
use grantline_store::doors::{self, DoorRefusal};

use crate::approvals::{self, Answer, Answered};
use crate::error::{ApiError, codes as api};
use crate::extract::read_body;
use crate::state::AppState;

/// The route of the app's Request URL.
pub const ROUTE: &str = "/v1/slack/interactions";
/// The door's name on audit events and in the doors' log.
pub const DOOR: &str = "slack";
/// `X-Slack-Request-Timestamp`.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// `X-Slack-Signature`.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// How long the work after the acknowledgement may take (identity, decision, message update).
pub const DEFAULT_FOLLOW_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a seen signature is remembered: a timestamp may be up to the window ahead of or
/// behind our clock, so a signature can pass the time check for twice the window.
pub const SEEN_TTL: Duration = Duration::from_secs(2 * DEFAULT_WINDOW.as_secs() + 60);

/// The stable codes this door adds to [`crate::codes`].
pub mod codes {
    /// A signed request whose timestamp is more than five minutes from our clock.
    pub const AUTH_STALE: &str = "auth.stale";
    /// A verified click whose Slack user has no email grantline can read, so nobody could be
    /// identified.
    pub const AUTH_NO_IDENTITY: &str = "auth.no_identity";
}

/// What the Slack door needs at run time: the Web API client (which also holds the signing
/// secret that verifies requests) and the time allowed for the follow-up of a click.
#[derive(Debug)]
pub struct SlackDoor {
    client: SlackClient,
    follow_up_timeout: Duration,
}

impl SlackDoor {
    /// The door of the app configured in `ingest.slack` (`base_url`, `bot_token`,
    /// `signing_secret`).
    pub fn new(cfg: &SlackConfig) -> Result<Self, ConfigError> {
        Ok(Self::from_client(SlackClient::new(cfg)?))
    }

    /// A door around an existing client.
    pub fn from_client(client: SlackClient) -> Self {
        Self { client, follow_up_timeout: DEFAULT_FOLLOW_UP_TIMEOUT }
    }

    /// How long the follow-up of a click may take before it is abandoned (and logged).
    pub fn with_follow_up_timeout(mut self, timeout: Duration) -> Self {
        self.follow_up_timeout = timeout;
        self
    }

    /// The Web API client.
    pub fn client(&self) -> &SlackClient {
        &self.client
    }
}

/// The routes of this door.
pub fn routes() -> Router<AppState> {
    Router::new().route(ROUTE, post(interactions))
}

async fn interactions(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match handle(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The stable code and the caller-facing message of a refused signature.
fn signature_refusal(e: SignatureError) -> (&'static str, &'static str) {
    match e {
        SignatureError::Missing => (api::AUTH_MISSING, "X-Slack-Signature and X-Slack-Request-Timestamp are required"),
        SignatureError::Stale => (codes::AUTH_STALE, "the request timestamp is outside the five-minute window"),
        SignatureError::Invalid => (api::AUTH_BAD_SIGNATURE, "the signature does not match the request"),
    }
}

/// What an (unverified) body claims: the clicking user and the request its button names.
fn claims_of(raw: &[u8]) -> (Option<String>, Option<String>) {
    match parse_block_actions(raw) {
        Ok(p) => {
            let request = p
                .actions
                .iter()
                .find_map(|a| a.value.as_deref().and_then(parse_slack_value))
                .map(|(id, _)| id.to_owned());
            (Some(p.user_id), request)
        }
        Err(_) => (None, None),
    }
}

/// Writes a refusal to the doors' log; a failure to write is logged, never the caller's answer.
async fn log_refusal(
    state: &AppState,
    reason: &str,
    claimed: Option<String>,
    request_id: Option<String>,
    detail: String,
) {
    let r = DoorRefusal {
        door: DOOR.to_owned(),
        reason: reason.to_owned(),
        claimed,
        request_id,
        detail,
        at_ms: state.now_ms(),
    };
    if let Err(e) = doors::refused(&state.queue, &r).await {
        tracing::error!(error = %e, door = DOOR, reason, "the doors' log could not be written");
    }
}

/// Remembers a verified signature; `false` when it was seen before.
async fn first_sighting(state: &AppState, signature: &str) -> Result<bool, ApiError> {
    let hex = signature.trim().strip_prefix("v0=").unwrap_or(signature.trim()).to_ascii_lowercase();
    let key = state.queue.namespace().key(&format!("slack:seen:{hex}"));
    let mut conn = state.queue.connection();
    let set: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(state.now_ms())
        .arg("NX")
        .arg("PX")
        .arg(u64::try_from(SEEN_TTL.as_millis()).unwrap_or(u64::MAX))
        .query_async(&mut conn)
        .await?;
    Ok(set.is_some())
}

async fn handle(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let Some(door) = state.slack.clone() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, api::ROUTE_NOT_FOUND, "no such route"));
    };
    let raw = read_body(headers, body, state.cfg.max_body_bytes).await?;
    let signature = header(headers, SIGNATURE_HEADER);
    if let Err(e) = door.client.verify(header(headers, TIMESTAMP_HEADER), signature, &raw, state.clock.now()) {
        let (code, message) = signature_refusal(e);
        let (claimed, request_id) = claims_of(&raw);
        log_refusal(state, code, claimed, request_id, e.code().to_owned()).await;
        return Err(ApiError::unauthorized(code, message));
    }
    if !first_sighting(state, signature.unwrap_or_default()).await? {
        let (claimed, request_id) = claims_of(&raw);
        log_refusal(state, api::AUTH_REPLAYED, claimed, request_id, "this signature was seen before".into()).await;
        return Err(ApiError::unauthorized(api::AUTH_REPLAYED, "this request was received before"));
    }
    let payload = match parse_block_actions(&raw) {
        Ok(p) => p,
        Err(PayloadError::UnexpectedType(kind)) => {
            tracing::debug!(kind = %kind, "interaction acknowledged");
            return Ok(StatusCode::OK.into_response());
        }
        Err(e) => return Err(ApiError::invalid_field("payload", e.to_string())),
    };
    let Some((value, approve)) = payload.actions.iter().find_map(|a| match a.action_id.as_str() {
        "approve" => Some((a.value.clone(), true)),
        "reject" => Some((a.value.clone(), false)),
        _ => None,
    }) else {
        return Ok(StatusCode::OK.into_response());
    };
    let target = value.as_deref().and_then(parse_slack_value).map(|(id, stage)| (id.to_owned(), stage));
    if let Some((id, _)) = &target {
        tracing::Span::current().record("request_id", id.as_str());
    }
    let timeout = door.follow_up_timeout;
    let task_state = state.clone();
    let work = async move {
        if tokio::time::timeout(timeout, follow_up(&task_state, &door.client, &payload, target, approve)).await.is_err()
        {
            tracing::warn!(door = DOOR, "the follow-up of a click ran out of time");
        }
    };
    tokio::spawn(work.instrument(tracing::Span::current()));
    Ok(StatusCode::OK.into_response())
}

/// After the acknowledgement: identify the clicker, record the answer, update the message.
async fn follow_up(
    state: &AppState,
    client: &SlackClient,
    p: &BlockActions,
    target: Option<(String, usize)>,
    approve: bool,
) {
    let Some((request_id, stage)) = target.filter(|(id, _)| grantline_shared::request::is_request_id(id)) else {
        ephemeral(client, p, "This button does not name an approval request; nothing was recorded.").await;
        return;
    };
    let email = match client.user_email(&p.user_id).await {
        Ok(Some(e)) if !e.trim().is_empty() => e.trim().to_owned(),
        found => {
            let detail = match &found {
                Ok(_) => "users.info shows no email".to_owned(),
                Err(e) => format!("users.info failed: {}", e.code()),
            };
            log_refusal(state, codes::AUTH_NO_IDENTITY, Some(p.user_id.clone()), Some(request_id), detail).await;
            let text = match found {
                Ok(_) => {
                    "grantline cannot see an email for your Slack account, so it cannot tell who you are; nothing was recorded."
                }
                Err(_) => {
                    "grantline could not confirm who you are with Slack; nothing was recorded. Try again in a moment."
                }
            };
            ephemeral(client, p, text).await;
            return;
        }
    };
    let answer = Answer {
        claim: Claim::Name(&email),
        upn: None,
        approve,
        comment: "",
        door: DOOR,
        stage: Some(stage),
        recorded_by: None,
        actor: format!("approver:{email}"),
    };
    match approvals::answer(state, &request_id, answer).await {
        Err(e) => ephemeral(client, p, &e.message).await,
        Ok(Answered::NotFound) => ephemeral(client, p, "grantline has no such request; nothing was recorded.").await,
        Ok(Answered::Refused(r)) => ephemeral(client, p, &sentence(&r.message())).await,
        Ok(Answered::Counted { .. }) => {
            let rec = match grantline_store::find(&state.queue, &request_id).await {
                Ok(Some(rec)) => rec,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "the request could not be read back for its message");
                    return;
                }
            };
            let view = ApprovalView::of(&rec, stage);
            replace(client, p, &view).await;
            if view.status.is_pending() {
                let text = format!(
                    "Your {} is recorded. Stage {} of {} waits for more approvers.",
                    if approve { "approval" } else { "rejection" },
                    view.stage + 1,
                    view.stages.max(1)
                );
                ephemeral(client, p, &text).await;
            }
        }
    }
}

/// A message as a sentence: capitalised, with a full stop.
fn sentence(message: &str) -> String {
    let mut chars = message.trim().chars();
    let mut out: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// Replaces the clicked message for everyone: through the `response_url`, else `chat.update`.
async fn replace(client: &SlackClient, p: &BlockActions, view: &ApprovalView) {
    let (text, blocks) = (view.slack_text(), view.slack_blocks());
    let body = json!({ "replace_original": true, "text": text, "blocks": blocks });
    let Err(first) = client.respond(&p.response_url, &body).await else {
        return;
    };
    tracing::info!(error.code = %first.code(), "response_url refused the update; using chat.update");
    if let Err(e) = client.update_message(&p.channel_id, &p.message_ts, &text, &blocks).await {
        tracing::warn!(error.code = %e.code(), "the approval message could not be updated");
    }
}

/// Tells the clicker alone (the message stays as it is).
async fn ephemeral(client: &SlackClient, p: &BlockActions, text: &str) {
    let body: Value = json!({ "response_type": "ephemeral", "replace_original": false, "text": text });
    if let Err(e) = client.respond(&p.response_url, &body).await {
        tracing::warn!(error.code = %e.code(), "the clicker could not be told the outcome");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn refused_signatures_have_stable_codes() {
        assert_eq!(signature_refusal(SignatureError::Missing).0, api::AUTH_MISSING);
        assert_eq!(signature_refusal(SignatureError::Stale).0, codes::AUTH_STALE);
        assert_eq!(signature_refusal(SignatureError::Invalid).0, api::AUTH_BAD_SIGNATURE);
        assert!(SEEN_TTL >= 2 * DEFAULT_WINDOW);
    }

    #[test]
    fn claims_come_from_the_payload_when_it_parses() {
        let payload = json!({"type": "block_actions", "user": {"id": "U1"}, "team": {"id": "T1"},
            "channel": {"id": "C1"}, "container": {"message_ts": "1.2"}, "response_url": "https://x/y",
            "actions": [{"action_id": "approve", "value": "0190f4b2a7c87d1e9a3b5c6d7e8f9a0b:0"}]});
        let body = url_encoded(&payload.to_string());
        assert_eq!(claims_of(body.as_bytes()), (Some("U1".into()), Some("0190f4b2a7c87d1e9a3b5c6d7e8f9a0b".into())));
        assert_eq!(claims_of(b"garbage"), (None, None));
    }

    fn url_encoded(payload: &str) -> String {
        let mut out = String::from("payload=");
        for b in payload.bytes() {
            if b.is_ascii_alphanumeric() {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
}
