//! `POST /v1/teams/messages`: the Teams bot's messaging endpoint (the `adaptiveCard/action`
//! invoke of an approval card).
//!
//! Every call is verified before anything in it is believed: the bearer token must be a Bot
//! Framework channel token for our app id, signed by a published key, within its validity
//! (five minutes of skew), and its `serviceurl` claim must be the activity's `serviceUrl`
//! ([`BotAuthenticator::verify`]). A call that fails is answered 401 and written to the doors'
//! security log (`store::doors`), never to a request's timeline.
//!
//! A verified `invoke` named `adaptiveCard/action` whose `Action.Execute` verb is `approve` or
//! `reject` answers the request its data names (`{requestId, stage}`, plus the merged input
//! `comment`) as the clicking user, identified by `from.aadObjectId` only. The answer is an
//! `AdaptiveCardInvokeResponse` (always HTTP 200): the card as the request now stands (no buttons
//! once the stage is decided), or an error naming the refusal while the card can still act.
//! Other activities (messages, conversation and installation updates) are answered 200 with an
//! empty body and change nothing.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};
use tracing::Instrument;

use grantline_connectors::ConfigError;
use grantline_connectors::graph::Claim;
use grantline_connectors::jwt::JwtError;
use grantline_connectors::teams::{
    Activity, BotAuthenticator, BotConfig, TeamsError, invoke_card_response, invoke_error_response,
    invoke_message_response,
};
use grantline_shared::cards::ApprovalView;
use grantline_store::doors::{self, DoorRefusal};

use crate::approvals::{self, Answer, Answered, refusal_error};
use crate::error::{ApiError, codes as api};
use crate::extract::read_body;
use crate::state::AppState;

/// The route of the bot's messaging endpoint.
pub const ROUTE: &str = "/v1/teams/messages";
/// The door's name on audit events and in the doors' log.
pub const DOOR: &str = "teams";
/// How long a click waits for its answer to be recorded before the card is answered with "being
/// recorded" (Teams gives an invoke a few seconds; the recording carries on regardless).
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(4);
/// The longest comment accepted (the card's input allows as much).
pub const MAX_COMMENT_CHARS: usize = 4000;

/// The stable codes this door adds to [`crate::codes`] (refusals of the token, and a verified
/// call that names nobody).
pub mod codes {
    /// The token's validity window (`exp`, `nbf`, with the skew) does not contain now.
    pub const AUTH_TOKEN_EXPIRED: &str = "auth.token_expired";
    /// The token was issued for another app than this bot.
    pub const AUTH_WRONG_AUDIENCE: &str = "auth.wrong_audience";
    /// The token's `serviceurl` claim is not the activity's `serviceUrl`.
    pub const AUTH_SERVICE_URL_MISMATCH: &str = "auth.service_url_mismatch";
    /// The channel's signing keys could not be fetched, so nothing could be verified.
    pub const AUTH_KEYS_UNAVAILABLE: &str = "auth.keys_unavailable";
    /// A verified call that does not say who clicked (`from.aadObjectId` is missing).
    pub const AUTH_NO_IDENTITY: &str = "auth.no_identity";
}

/// What the Teams door needs at run time: the verifier of channel tokens (with its key cache)
/// and how long a click may wait for its answer.
#[derive(Debug)]
pub struct TeamsDoor {
    auth: BotAuthenticator,
    answer_timeout: Duration,
}

impl TeamsDoor {
    /// The door of the bot configured in `ingest.teams` (only the inbound keys are used here:
    /// `app_id` and `openid_metadata_url`).
    pub fn new(cfg: &BotConfig) -> Result<Self, ConfigError> {
        Ok(Self::from_authenticator(BotAuthenticator::new(cfg)?))
    }

    /// A door around an existing authenticator (to share its key cache).
    pub fn from_authenticator(auth: BotAuthenticator) -> Self {
        Self { auth, answer_timeout: DEFAULT_ANSWER_TIMEOUT }
    }

    /// How long a click waits for its answer before the card is told it is being recorded.
    pub fn with_answer_timeout(mut self, timeout: Duration) -> Self {
        self.answer_timeout = timeout;
        self
    }

    /// The verifier of channel tokens.
    pub fn authenticator(&self) -> &BotAuthenticator {
        &self.auth
    }
}

/// The routes of this door.
pub fn routes() -> Router<AppState> {
    Router::new().route(ROUTE, post(messages))
}

async fn messages(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match handle(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn route_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, api::ROUTE_NOT_FOUND, "no such route")
}

/// An invoke answer (always HTTP 200: the invoke's own status is in the body).
fn invoke(v: Value) -> Response {
    Json(v).into_response()
}

fn invoke_error(e: &ApiError) -> Response {
    invoke(invoke_error_response(e.status.as_u16(), e.code, &e.message))
}

/// The stable code and the caller-facing message of a refused token.
fn token_refusal(e: &TeamsError) -> (&'static str, &'static str) {
    match e {
        TeamsError::MissingAuthorization => (api::AUTH_MISSING, "the activity carries no bearer token"),
        TeamsError::Unauthenticated(JwtError::Expired { .. } | JwtError::NotYetValid { .. }) => {
            (codes::AUTH_TOKEN_EXPIRED, "the activity's token is not valid now")
        }
        TeamsError::Unauthenticated(JwtError::WrongAudience { .. }) => {
            (codes::AUTH_WRONG_AUDIENCE, "the activity's token is not for this bot")
        }
        TeamsError::Unauthenticated(JwtError::KeysUnavailable { .. }) => {
            (codes::AUTH_KEYS_UNAVAILABLE, "the channel's signing keys are unavailable; retry later")
        }
        TeamsError::ServiceUrlMismatch { .. } => {
            (codes::AUTH_SERVICE_URL_MISMATCH, "the token's service URL is not the activity's")
        }
        _ => (api::AUTH_BAD_TOKEN, "the activity's token does not verify"),
    }
}

fn non_empty(v: Option<&str>) -> Option<String> {
    v.map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The request id an (unverified) activity's card data names, for the doors' log.
fn claimed_request(activity: &Value) -> Option<String> {
    non_empty(activity.pointer("/value/action/data/requestId").and_then(Value::as_str))
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

async fn handle(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let Some(door) = state.teams.clone() else {
        return Err(route_not_found());
    };
    let raw = read_body(headers, body, state.cfg.max_body_bytes).await?;
    // Read only to find the service URL the token must name (and, if refused, what it claimed).
    let unverified: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = match door.auth.verify(authorization, &unverified, state.clock.now()).await {
        Ok(c) => c,
        Err(e) => {
            let (code, message) = token_refusal(&e);
            let claimed = non_empty(unverified.pointer("/from/aadObjectId").and_then(Value::as_str));
            log_refusal(state, code, claimed, claimed_request(&unverified), format!("{}: {e}", e.code())).await;
            return Err(if code == codes::AUTH_KEYS_UNAVAILABLE {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
            } else {
                ApiError::bearer(code, message)
            });
        }
    };
    let activity = Activity::from_slice(&raw).map_err(|_| ApiError::malformed_json())?;
    if activity.kind != "invoke" {
        tracing::debug!(kind = %activity.kind, "activity acknowledged");
        return Ok(StatusCode::OK.into_response());
    }
    let Some(action) = activity.action() else {
        return Ok(invoke(invoke_error_response(
            400,
            api::REQUEST_INVALID_FIELD,
            "this bot answers only the Approve and Reject buttons of its approval cards",
        )));
    };
    let request_id = non_empty(action.data.get("requestId").and_then(Value::as_str));
    let Some(aad) = non_empty(caller.aad_object_id.as_deref()) else {
        let claimed = non_empty(Some(caller.from_id.as_str()));
        log_refusal(state, codes::AUTH_NO_IDENTITY, claimed, request_id, "the activity has no from.aadObjectId".into())
            .await;
        return Ok(invoke(invoke_error_response(
            401,
            codes::AUTH_NO_IDENTITY,
            "Teams did not say who clicked (no Entra object id); nothing was recorded",
        )));
    };
    let click = match Click::read(&action.verb, &action.data, request_id) {
        Ok(c) => c,
        Err(e) => return Ok(invoke_error(&e)),
    };
    tracing::Span::current().record("request_id", click.request_id.as_str());
    // The answer runs on its own task: if Teams gives up waiting, the recording still finishes.
    let task_state = state.clone();
    let task =
        tokio::spawn(async move { answer_click(&task_state, &aad, &click).await }.instrument(tracing::Span::current()));
    match tokio::time::timeout(door.answer_timeout, task).await {
        Ok(Ok(body)) => Ok(invoke(body)),
        Ok(Err(e)) => Ok(invoke_error(&ApiError::internal(&e))),
        Err(_) => {
            tracing::warn!("a Teams click is still being recorded after the invoke's time ran out");
            Ok(invoke(invoke_message_response(
                "Your answer is being recorded; open the request again in a moment to see it.",
            )))
        }
    }
}

/// What an approval card's click asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Click {
    request_id: String,
    stage: usize,
    approve: bool,
    comment: String,
}

impl Click {
    /// Reads the verb and the card's data (`requestId`, `stage`, the input `comment`).
    fn read(verb: &str, data: &Map<String, Value>, request_id: Option<String>) -> Result<Click, ApiError> {
        let approve = match verb {
            "approve" => true,
            "reject" => false,
            _ => return Err(ApiError::invalid_field("verb", "must be approve or reject")),
        };
        let request_id = request_id.ok_or_else(|| ApiError::invalid_field("requestId", "is required"))?;
        if !grantline_shared::request::is_request_id(&request_id) {
            return Err(ApiError::not_found());
        }
        let stage = data
            .get("stage")
            .and_then(Value::as_u64)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| ApiError::invalid_field("stage", "must be the card's stage number"))?;
        let comment = match data.get("comment") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if s.chars().count() <= MAX_COMMENT_CHARS => s.trim().to_owned(),
            Some(_) => {
                return Err(ApiError::invalid_field(
                    "comment",
                    format!("must be text of at most {MAX_COMMENT_CHARS} characters"),
                ));
            }
        };
        Ok(Click { request_id, stage, approve, comment })
    }
}

/// Records the click as the answer of the user with Entra object id `aad`, and renders the
/// invoke answer.
async fn answer_click(state: &AppState, aad: &str, click: &Click) -> Value {
    let answer = Answer {
        claim: Claim::ObjectId(aad),
        upn: None,
        approve: click.approve,
        comment: &click.comment,
        door: DOOR,
        stage: Some(click.stage),
        recorded_by: None,
        actor: format!("approver:{aad}"),
    };
    let answered = match approvals::answer(state, &click.request_id, answer).await {
        Ok(a) => a,
        Err(e) => return invoke_error_response(e.status.as_u16(), e.code, &e.message),
    };
    match answered {
        Answered::NotFound => invoke_error_response(404, api::REQUEST_NOT_FOUND, "no such request"),
        Answered::Counted { .. } => match view(state, &click.request_id, click.stage).await {
            Some(v) if v.status.is_pending() => invoke_card_response(&answered_card(&v, click.approve)),
            Some(v) => invoke_card_response(&v.teams_card()),
            None => invoke_message_response(if click.approve { "Recorded: approved" } else { "Recorded: rejected" }),
        },
        Answered::Refused(r) => match view(state, &click.request_id, click.stage).await {
            // the stage was decided or the request moved on: the card stops offering buttons
            Some(v) if !v.status.is_pending() => invoke_card_response(&v.teams_card()),
            _ => {
                let e = refusal_error(&r);
                invoke_error_response(e.status.as_u16(), e.code, &e.message)
            }
        },
    }
}

/// The view of `stage` of the request as it now stands (`None` when it cannot be read).
async fn view(state: &AppState, request_id: &str, stage: usize) -> Option<ApprovalView> {
    match grantline_store::find(&state.queue, request_id).await {
        Ok(Some(rec)) => Some(ApprovalView::of(&rec, stage)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "the request could not be read back for its card");
            None
        }
    }
}

/// The card of a stage that still waits for other approvers, for one who has answered: what
/// they answered, and no buttons or comment box (their answer is in).
fn answered_card(view: &ApprovalView, approve: bool) -> Value {
    let mut card = view.teams_card();
    if let Some(obj) = card.as_object_mut() {
        obj.remove("actions");
    }
    if let Some(body) = card.get_mut("body").and_then(Value::as_array_mut) {
        body.retain(|b| b.get("type").and_then(Value::as_str) != Some("Input.Text"));
        body.push(json!({
            "type": "TextBlock",
            "wrap": true,
            "text": format!(
                "You {} this. Stage {} of {} waits for more approvers.",
                if approve { "approved" } else { "rejected" },
                view.stage + 1,
                view.stages.max(1)
            ),
        }));
    }
    card
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reads_a_click_and_names_the_field_at_fault() {
        let id = "0190f4b2a7c87d1e9a3b5c6d7e8f9a0b".to_owned();
        let c = Click::read("reject", &data(json!({"stage": 1, "comment": " no "})), Some(id.clone())).unwrap();
        assert_eq!(c, Click { request_id: id.clone(), stage: 1, approve: false, comment: "no".into() });
        let field = |verb: &str, d: Value, id: Option<String>| Click::read(verb, &data(d), id).unwrap_err();
        assert_eq!(field("maybe", json!({"stage": 0}), Some(id.clone())).field.as_deref(), Some("verb"));
        assert_eq!(field("approve", json!({"stage": 0}), None).field.as_deref(), Some("requestId"));
        assert_eq!(field("approve", json!({"stage": "0"}), Some(id.clone())).field.as_deref(), Some("stage"));
        assert_eq!(
            field("approve", json!({"stage": 0, "comment": 5}), Some(id.clone())).field.as_deref(),
            Some("comment")
        );
        assert_eq!(field("approve", json!({"stage": 0}), Some("../x".into())).code, api::REQUEST_NOT_FOUND);
    }

    #[test]
    fn refused_tokens_have_precise_codes() {
        let code = |e: TeamsError| token_refusal(&e).0;
        assert_eq!(code(TeamsError::MissingAuthorization), api::AUTH_MISSING);
        assert_eq!(code(TeamsError::Unauthenticated(JwtError::Expired { exp: 1 })), codes::AUTH_TOKEN_EXPIRED);
        assert_eq!(code(TeamsError::Unauthenticated(JwtError::BadSignature)), api::AUTH_BAD_TOKEN);
        assert_eq!(
            code(TeamsError::ServiceUrlMismatch { claim: "a".into(), activity: "b".into() }),
            codes::AUTH_SERVICE_URL_MISMATCH
        );
    }
}
