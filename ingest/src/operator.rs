//! The operator API beyond status and decisions: listing requests, finding one by its ticket,
//! and the lifecycle actions (cancel before execution, revoke now, extend through policy and
//! approval again). Every route takes an operator bearer token; every action is audited with
//! `operator:<token id>` as its actor. The logic is `store::lifecycle`, the same the CLI runs.
//!
//! - `GET /v1/requests?state=&ticket=&limit=&after=`: newest first, paged by cursor.
//! - `GET /v1/tickets/{number}/request`: the request a ticket number names (the body of
//!   `GET /v1/requests/{id}`).
//! - `POST /v1/requests/{id}/cancel` `{"reason"?}`, `POST /v1/requests/{id}/revoke`
//!   `{"reason"?}`, `POST /v1/requests/{id}/extend` `{"until", "reason"?}`.
//!
//! Bad input is refused with the field named and nothing changed (422); an unknown request or
//! ticket is 404; a request in a state the action does not apply to is 409 with a stable code.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use grantline_shared::jobs::RemovalTrigger;
use grantline_shared::request::RequestState;
use grantline_store::index::{self, Filter, MAX_PAGE};
use grantline_store::lifecycle::{self, Changed, LifecycleError, MAX_REASON_LEN};

use crate::error::{ApiError, codes};
use crate::extract::{JsonBytes, Operator};
use crate::state::AppState;

/// The longest ticket number accepted.
const MAX_TICKET_LEN: usize = 64;

/// The routes of this module.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/requests", get(list))
        .route("/v1/tickets/{number}/request", get(by_ticket))
        .route("/v1/requests/{id}/cancel", post(cancel))
        .route("/v1/requests/{id}/revoke", post(revoke))
        .route("/v1/requests/{id}/extend", post(extend))
}

fn check_ticket(number: &str) -> Result<&str, ApiError> {
    let t = number.trim();
    if t.is_empty() || t.len() > MAX_TICKET_LEN || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::invalid_field(
            "ticket",
            format!("must be a ticket number (letters, digits, - or _; at most {MAX_TICKET_LEN})"),
        ));
    }
    Ok(t)
}

/// Parses the listing's query, naming the parameter at fault.
pub fn parse_filter(q: &HashMap<String, String>) -> Result<Filter, ApiError> {
    let mut f = Filter::default();
    for (k, v) in q {
        match k.as_str() {
            "state" => {
                f.state = Some(RequestState::parse(v.trim()).ok_or_else(|| {
                    let all: Vec<&str> = RequestState::ALL.iter().map(|s| s.as_str()).collect();
                    ApiError::invalid_field("state", format!("must be one of {}", all.join(", ")))
                })?);
            }
            "ticket" => f.ticket = Some(check_ticket(v)?.to_owned()),
            "limit" => {
                f.limit = v.trim().parse::<usize>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
                    ApiError::invalid_field("limit", format!("must be a whole number from 1 to {MAX_PAGE}"))
                })?;
            }
            "after" => {
                index::parse_cursor(v.trim()).map_err(|e| ApiError::invalid_field("after", e.to_string()))?;
                f.after = Some(v.trim().to_owned());
            }
            other => {
                return Err(ApiError::invalid_field(
                    other,
                    "is not a parameter of this listing (state, ticket, limit, after)",
                ));
            }
        }
    }
    Ok(f)
}

/// The summary of a request in a listing.
pub fn summary(r: &grantline_shared::record::RequestRecord) -> Value {
    json!({
        "id": r.id,
        "state": r.state,
        "ticket": r.ticket.number,
        "requester": r.requester.as_ref().map(|p| p.upn.clone()),
        "target": r.target,
        "access": r.grant.as_ref().map(|g| g.describe()),
        "created_ms": r.created_ms,
        "updated_ms": r.updated_ms,
        "end_ms": r.end_ms,
        "trace_id": r.trace_id,
    })
}

/// `GET /v1/requests`: one page, newest first.
pub async fn list(
    State(state): State<AppState>,
    _op: Operator,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let f = parse_filter(&q)?;
    let page = index::list(&state.queue, &f).await?;
    let requests: Vec<Value> = page.requests.iter().map(summary).collect();
    Ok(Json(json!({ "requests": requests, "next": page.next })).into_response())
}

/// `GET /v1/tickets/{number}/request`: the request a ticket names.
pub async fn by_ticket(
    State(state): State<AppState>,
    op: Operator,
    Path(number): Path<String>,
) -> Result<Response, ApiError> {
    let number = check_ticket(&number)?;
    match index::by_ticket(&state.queue, number).await? {
        Some(id) => crate::requests::get_request(State(state), op, Path(id)).await,
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            codes::REQUEST_NOT_FOUND,
            format!("no request for ticket {number}"),
        )
        .with_field("ticket")),
    }
}

/// The body of an action: a JSON object with only the named fields, each a string.
fn parse_body(raw: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let v: Value = serde_json::from_slice(raw).map_err(|_| ApiError::malformed_json())?;
    let Value::Object(obj) = v else {
        return Err(ApiError::invalid_field(
            allowed.first().copied().unwrap_or("body"),
            "the body must be a JSON object",
        ));
    };
    for (k, v) in &obj {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::invalid_field(k, format!("is not accepted here (accepted: {})", allowed.join(", "))));
        }
        if !matches!(v, Value::String(_) | Value::Null) {
            return Err(ApiError::invalid_field(k, "must be a string"));
        }
    }
    Ok(obj)
}

fn reason(obj: &Map<String, Value>) -> Result<String, ApiError> {
    match obj.get("reason").and_then(Value::as_str) {
        Some(r) if r.chars().count() > MAX_REASON_LEN => {
            Err(ApiError::invalid_field("reason", format!("must be at most {MAX_REASON_LEN} characters")))
        }
        Some(r) => Ok(r.trim().to_owned()),
        None => Ok(String::new()),
    }
}

/// A lifecycle refusal as the API answers it.
pub fn lifecycle_error(e: LifecycleError) -> ApiError {
    match e {
        LifecycleError::NotFound => ApiError::not_found(),
        LifecycleError::Refused { code, message } if code == lifecycle::codes::BAD_END => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field("until")
        }
        LifecycleError::Refused { code, message } if code == lifecycle::codes::POLICY_REFUSED => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field("until")
        }
        LifecycleError::Refused { code, message } => ApiError::conflict(code, message),
        LifecycleError::Store(e) => e.into(),
    }
}

fn changed(action: &str, c: Changed) -> Response {
    Json(json!({ "request_id": c.request_id, "action": action, "state": c.state, "jobs": c.jobs })).into_response()
}

fn prepare(id: &str) -> Result<(), ApiError> {
    if !grantline_shared::request::is_request_id(id) {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            crate::codes::REQUEST_INVALID_FIELD,
            "id must be a request id: 32 lowercase hexadecimal characters",
        )
        .with_field("id"));
    }
    tracing::Span::current().record("request_id", id);
    Ok(())
}

/// `POST /v1/requests/{id}/cancel`: before execution only.
pub async fn cancel(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    JsonBytes(raw): JsonBytes,
) -> Result<Response, ApiError> {
    prepare(&id)?;
    let body = parse_body(&raw, &["reason"])?;
    let reason = reason(&body)?;
    let actor = format!("operator:{}", op.id);
    let c = lifecycle::cancel(&state.queue, &id, &actor, &reason, state.now_ms()).await.map_err(lifecycle_error)?;
    tracing::info!(request_id = %id, operator = %op.id, "request cancelled");
    Ok(changed("cancel", c))
}

/// `POST /v1/requests/{id}/revoke`: remove the access now (ownership-aware).
pub async fn revoke(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    JsonBytes(raw): JsonBytes,
) -> Result<Response, ApiError> {
    prepare(&id)?;
    let body = parse_body(&raw, &["reason"])?;
    let reason = reason(&body)?;
    let actor = format!("operator:{}", op.id);
    let c = lifecycle::remove_now(&state.queue, &id, &actor, RemovalTrigger::Revoked, &reason, state.now_ms())
        .await
        .map_err(lifecycle_error)?;
    tracing::info!(request_id = %id, operator = %op.id, "revocation requested");
    Ok(changed("revoke", c))
}

/// `POST /v1/requests/{id}/extend`: a later end, through the policy in force and approval.
pub async fn extend(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    JsonBytes(raw): JsonBytes,
) -> Result<Response, ApiError> {
    prepare(&id)?;
    let body = parse_body(&raw, &["until", "reason"])?;
    let reason = reason(&body)?;
    let Some(until) = body.get("until").and_then(Value::as_str) else {
        return Err(ApiError::invalid_field("until", "is required: the new end (2027-03-02 or 2027-03-02T17:00:00Z)"));
    };
    let Some(file) = state.policy_file.as_deref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::POLICY_UNAVAILABLE,
            "this edge has no policy file configured; an extension cannot be checked, nothing was changed",
        ));
    };
    let policy = grantline_shared::policy::load_file(file).map_err(|e| {
        tracing::error!(error = %e, "the policy file cannot be loaded");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::POLICY_UNAVAILABLE,
            "the policy file cannot be loaded; nothing was changed",
        )
    })?;
    let until_ms = lifecycle::parse_until(until, &policy).map_err(|m| ApiError::invalid_field("until", m))?;
    let actor = format!("operator:{}", op.id);
    let c = lifecycle::extend(&state.queue, &id, &actor, until_ms, &reason, state.now_ms(), &policy)
        .await
        .map_err(lifecycle_error)?;
    tracing::info!(request_id = %id, operator = %op.id, until_ms, "extension requested");
    Ok(changed("extend", c))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn listing_parameters_name_the_one_at_fault() {
        let f = parse_filter(&q(&[("state", "active"), ("limit", "2")])).unwrap();
        assert_eq!((f.state, f.limit), (Some(RequestState::Active), 2));
        for (pairs, field) in [
            (vec![("state", "granted-ish")], "state"),
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "501")], "limit"),
            (vec![("after", "17")], "after"),
            (vec![("ticket", "RITM 1")], "ticket"),
            (vec![("sort", "asc")], "sort"),
        ] {
            assert_eq!(parse_filter(&q(&pairs)).unwrap_err().field.as_deref(), Some(field), "{pairs:?}");
        }
    }

    #[test]
    fn action_bodies_accept_only_their_fields() {
        assert!(parse_body(b"", &["reason"]).unwrap().is_empty());
        assert_eq!(parse_body(br#"{"reason":"x"}"#, &["reason"]).unwrap()["reason"], "x");
        assert_eq!(parse_body(br#"{"until":"x"}"#, &["reason"]).unwrap_err().field.as_deref(), Some("until"));
        assert_eq!(parse_body(br#"{"reason":5}"#, &["reason"]).unwrap_err().field.as_deref(), Some("reason"));
        assert_eq!(parse_body(b"{", &["reason"]).unwrap_err().code, codes::REQUEST_MALFORMED_JSON);
    }
}
