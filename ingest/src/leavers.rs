//! `POST /v1/events/leaver`: a person left (an HR system, a ServiceNow offboarding flow).
//! Authenticated like the ServiceNow webhook (`X-Grantline-Secret`, or the HMAC signature with
//! its timestamp), body `{"user": UPN or object id, "reason"?: text, "effective_at"?: RFC 3339}`.
//!
//! The person is resolved in the directory (read only), then one `offboard` job is enqueued,
//! at once or delayed until `effective_at`: the same job the directory sweep enqueues, so it
//! is retried like any step. It removes every grant of the person now (ownership-aware, each
//! ticket noted) and cancels every request not yet executed. The job's idempotency key is the
//! person and the effective time: the same event twice is one offboarding (202 with
//! `duplicate: true`). Bad input is refused with 400 naming the field and nothing is enqueued.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use grantline_queue::{NewJob, PushOutcome, RunAt};
use grantline_shared::JobKind;
use grantline_shared::jobs::{Offboard, OffboardSource};
use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, codes};
use crate::extract::ServiceNowWebhook;
use crate::state::AppState;

/// The route.
pub const ROUTE: &str = "/v1/events/leaver";

/// Stable codes of this route's refusals (beyond the shared ones).
pub mod leaver_codes {
    /// The directory does not know the person.
    pub const USER_NOT_FOUND: &str = "user.not_found";
    /// The directory could not be read: nothing was done, retry.
    pub const DIRECTORY_UNAVAILABLE: &str = "directory.unavailable";
}

/// The longest UPN or reason accepted.
const MAX_USER_LEN: usize = 256;
const MAX_REASON_LEN: usize = 1000;

/// A leaver event as accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaverEvent {
    /// A UPN (`someone@contoso.com`) or a directory object id.
    pub user: String,
    pub reason: String,
    pub effective_ms: Option<u64>,
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, codes::REQUEST_INVALID_FIELD, message).with_field(field)
}

fn is_object_id(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// Reads a leaver event; every refusal names the field at fault.
pub fn parse(body: &[u8]) -> Result<LeaverEvent, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| ApiError::malformed_json())?;
    let Some(obj) = v.as_object() else {
        return Err(bad("user", "the body must be a JSON object with a \"user\" (UPN or object id)"));
    };
    if let Some(unknown) = obj.keys().find(|k| !["user", "reason", "effective_at"].contains(&k.as_str())) {
        return Err(bad(unknown, "is not a field of a leaver event (user, reason, effective_at)"));
    }
    let user = match obj.get("user") {
        Some(Value::String(u)) => u.trim().to_owned(),
        Some(_) => return Err(bad("user", "must be a string: a UPN or a directory object id")),
        None => return Err(bad("user", "is required: a UPN or a directory object id")),
    };
    if user.is_empty() || user.len() > MAX_USER_LEN || user.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(
            "user",
            format!("must be a UPN or a directory object id (1 to {MAX_USER_LEN} characters, no spaces)"),
        ));
    }
    if !is_object_id(&user) && !user.contains('@') {
        return Err(bad("user", "must be a UPN (name@domain) or a directory object id (a GUID)"));
    }
    let reason = match obj.get("reason") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(r)) if r.chars().count() <= MAX_REASON_LEN => r.trim().to_owned(),
        Some(Value::String(_)) => return Err(bad("reason", format!("must be at most {MAX_REASON_LEN} characters"))),
        Some(_) => return Err(bad("reason", "must be a string")),
    };
    let effective_ms = match obj.get("effective_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => match t.parse::<jiff::Timestamp>() {
            Ok(ts) if ts.as_millisecond() > 0 => Some(grantline_shared::clock::ms(ts)),
            _ => return Err(bad("effective_at", "must be an RFC 3339 time, like 2027-03-02T17:00:00Z")),
        },
        Some(_) => return Err(bad("effective_at", "must be an RFC 3339 time string, like 2027-03-02T17:00:00Z")),
    };
    Ok(LeaverEvent { user, reason, effective_ms })
}

/// The answer to an accepted leaver event.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    pub job_id: String,
    /// The same event was accepted before: nothing new was enqueued.
    pub duplicate: bool,
    /// When the offboarding runs (RFC 3339), when later than now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<String>,
}

/// The person an event names: their object id and UPN.
async fn resolve(state: &AppState, user: &str) -> Result<(String, Option<String>), ApiError> {
    let Some(directory) = &state.directory else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            leaver_codes::DIRECTORY_UNAVAILABLE,
            "no directory is configured to resolve the person; nothing was done",
        ));
    };
    match directory.get_user(user).await {
        Ok(found) => match found.value {
            Some(u) => Ok((u.id.to_ascii_lowercase(), Some(u.user_principal_name).filter(|p| !p.is_empty()))),
            // deleted already: an object id still names their requests
            None if is_object_id(user) => Ok((user.to_ascii_lowercase(), None)),
            None => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                leaver_codes::USER_NOT_FOUND,
                "the directory has no user with this UPN",
            )
            .with_field("user")),
        },
        Err(e) => {
            tracing::warn!(error = %e, "the directory could not be read for a leaver event");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                leaver_codes::DIRECTORY_UNAVAILABLE,
                "the directory could not be read; nothing was done, retry later",
            ))
        }
    }
}

/// The handler of `POST /v1/events/leaver`.
pub async fn leaver(State(state): State<AppState>, hook: ServiceNowWebhook) -> Result<Response, ApiError> {
    let event = parse(&hook.body)?;
    let (user_id, upn) = resolve(&state, &event.user).await?;
    let now = state.now_ms();
    let payload = Offboard {
        user_id: user_id.clone(),
        upn: upn.clone(),
        source: OffboardSource::Leaver,
        reason: event.reason.clone(),
        effective_ms: event.effective_ms,
    };
    let key = format!(
        "offboard:leaver:{user_id}:{}",
        event.effective_ms.map(|m| m.to_string()).unwrap_or_else(|| "now".to_owned())
    );
    let mut job =
        NewJob::new(JobKind::Offboard.as_str(), &payload).map_err(|e| ApiError::internal(&e))?.idempotency_key(key);
    let later = event.effective_ms.filter(|at| *at > now);
    if let Some(at) = later {
        job = job.run_at(RunAt::After(std::time::Duration::from_millis(at - now)));
    }
    let (job_id, duplicate) = match state.queue.push(job).await? {
        PushOutcome::Enqueued { id } => (id, false),
        PushOutcome::Duplicate { existing, .. } => (existing, true),
    };
    tracing::info!(user_id = %user_id, job_id = %job_id, duplicate, auth = ?hook.auth, "leaver event accepted");
    let body = Accepted {
        user_id,
        upn,
        job_id,
        duplicate,
        effective_at: later.map(|at| grantline_shared::clock::timestamp(at).to_string()),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn refused(body: &str) -> (u16, &'static str, Option<String>) {
        let e = parse(body.as_bytes()).unwrap_err();
        (e.status.as_u16(), e.code, e.field)
    }

    #[test]
    fn takes_a_upn_or_an_object_id_with_an_optional_reason_and_time() {
        let e = parse(br#"{"user":"LeeG@contoso.com","reason":"Left","effective_at":"2027-03-02T17:00:00Z"}"#).unwrap();
        assert_eq!(e.user, "LeeG@contoso.com");
        assert_eq!(e.reason, "Left");
        assert_eq!(e.effective_ms, Some(1_804_006_800_000));
        let e = parse(br#"{"user":"10000000-0000-4000-8000-000000000008"}"#).unwrap();
        assert_eq!((e.reason.as_str(), e.effective_ms), ("", None));
    }

    #[test]
    fn names_the_field_at_fault() {
        assert_eq!(refused("{"), (400, codes::REQUEST_MALFORMED_JSON, None));
        let field = |b: &str| refused(b).2;
        assert_eq!(field("[]"), Some("user".into()));
        assert_eq!(field("{}"), Some("user".into()));
        assert_eq!(field(r#"{"user":7}"#), Some("user".into()));
        assert_eq!(field(r#"{"user":""}"#), Some("user".into()));
        assert_eq!(field(r#"{"user":"not a user"}"#), Some("user".into()));
        assert_eq!(field(r#"{"user":"nobody"}"#), Some("user".into()));
        assert_eq!(field(r#"{"user":"a@b.c","reason":5}"#), Some("reason".into()));
        assert_eq!(field(r#"{"user":"a@b.c","effective_at":"tomorrow"}"#), Some("effective_at".into()));
        assert_eq!(field(r#"{"user":"a@b.c","effective_at":17}"#), Some("effective_at".into()));
        assert_eq!(field(r#"{"user":"a@b.c","delete":true}"#), Some("delete".into()));
        let long = "x".repeat(1001);
        assert_eq!(field(&format!(r#"{{"user":"a@b.c","reason":"{long}"}}"#)), Some("reason".into()));
        assert_eq!(refused(r#"{"user":7}"#).0, 400);
    }
}
