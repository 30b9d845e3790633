//! The operator API: request status with its audit timeline, and approval decisions.
//!
//! A decision is recorded with one guarded commit: the request must still be awaiting
//! approval and its audit head must be the one read, so two concurrent decisions cannot
//! both pass; the loser re-reads and usually finds the request decided (409). What follows
//! a decision comes from `shared::flow::next`, and its jobs have ids derived from the
//! request id, so a repeated decision can never enqueue a second grant.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use redis::streams::StreamRangeReply;
use serde::Serialize;
use serde_json::{Value, json};

use grantline_connectors::graph::Claim;
use grantline_shared::audit::{self, GENESIS};
use grantline_shared::record::RecordError;
use grantline_shared::request::keys;

use crate::approvals::{self, Answer, Answered, outcome_name, refusal_error};

use crate::error::{ApiError, codes};
use crate::extract::{JsonBytes, Operator};
use crate::state::AppState;

const MAX_APPROVER_LEN: usize = 256;
const MAX_COMMENT_LEN: usize = 4000;

fn check_id(id: &str) -> Result<(), ApiError> {
    if grantline_shared::request::is_request_id(id) {
        Ok(())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            crate::codes::REQUEST_INVALID_FIELD,
            "id must be a request id: 32 lowercase hexadecimal characters",
        )
        .with_field("id"))
    }
}

fn stream_field(map: &HashMap<String, redis::Value>, name: &str) -> String {
    match map.get(name) {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    }
}

/// `GET /v1/requests/{id}`: the record, its audit timeline in order, and whether the
/// timeline's hash chain is intact.
pub async fn get_request(
    State(state): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let ns = state.queue.namespace();
    let mut conn = state.queue.connection();
    let (h, stream): (HashMap<String, String>, StreamRangeReply) = redis::pipe()
        .atomic()
        .hgetall(ns.key(&keys::request(&id)))
        .xrange_all(ns.key(&keys::audit(&id)))
        .query_async(&mut conn)
        .await?;
    let rec = match grantline_shared::record::RequestRecord::from_hash(&id, &h) {
        Ok(r) => r,
        Err(RecordError::NotFound { .. }) => return Err(ApiError::not_found()),
        Err(e) => {
            return Err(ApiError::conflict(codes::REQUEST_INCOMPLETE, format!("the request cannot be read: {e}")));
        }
    };
    let mut chain = Vec::with_capacity(stream.ids.len());
    let mut timeline = Vec::with_capacity(stream.ids.len());
    for e in &stream.ids {
        let record = stream_field(&e.map, "record");
        timeline.push(serde_json::from_str::<Value>(&record).unwrap_or(Value::String(record.clone())));
        chain.push((record, stream_field(&e.map, "prev"), stream_field(&e.map, "hash")));
    }
    let head = if rec.audit_head.is_empty() { GENESIS } else { rec.audit_head.as_str() };
    let verification = audit::verify(&chain, head);
    let body = json!({
        "id": id,
        "state": rec.state,
        "ticket": rec.ticket,
        "trace_id": rec.trace_id,
        "created_ms": rec.created_ms,
        "updated_ms": rec.updated_ms,
        "requester": rec.requester,
        "opened_by": rec.opened_by,
        "target": rec.target,
        "decision": rec.decision,
        "approvals": rec.approvals,
        "current": rec.current,
        "grant": rec.grant,
        "removal": rec.removal,
        "reason": rec.reason,
        "end_ms": rec.end_ms,
        "timeline": timeline,
        "audit": {
            "records": verification.records,
            "intact": verification.broken_at.is_none(),
            "broken_at": verification.broken_at,
            "reason": verification.reason,
        },
    });
    Ok(Json(body).into_response())
}

/// The body of `POST /v1/requests/{id}/decision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionBody {
    pub approve: bool,
    pub comment: String,
    /// The approver the operator records this for (UPN, mail or object id), proved against the
    /// directory. `None`: the decision is the operator's own, under its configured identity.
    pub on_behalf_of: Option<String>,
}

/// Parses a decision body, naming the field at fault.
pub fn parse_decision(body: &[u8]) -> Result<DecisionBody, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| ApiError::malformed_json())?;
    let Some(obj) = v.as_object() else {
        return Err(ApiError::invalid_field("approve", "the body must be a JSON object with approve"));
    };
    if obj.contains_key("approver") {
        return Err(ApiError::invalid_field(
            "approver",
            "is not accepted: a decision is the operator's own, or names the approver in on_behalf_of",
        ));
    }
    let approve = match obj.get("approve") {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid_field("approve", "must be true or false")),
        None => return Err(ApiError::invalid_field("approve", "is required")),
    };
    let comment = match obj.get("comment") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.chars().count() <= MAX_COMMENT_LEN => s.clone(),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "comment",
                format!("must be a string of at most {MAX_COMMENT_LEN} characters"),
            ));
        }
    };
    let on_behalf_of = match obj.get("on_behalf_of") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.trim().chars().count() <= MAX_APPROVER_LEN => {
            Some(s.trim().to_owned())
        }
        Some(_) => {
            return Err(ApiError::invalid_field(
                "on_behalf_of",
                format!("must be the approver's UPN, mail or object id (1-{MAX_APPROVER_LEN} characters)"),
            ));
        }
    };
    Ok(DecisionBody { approve, comment, on_behalf_of })
}

/// The answer to a recorded decision.
#[derive(Debug, Serialize)]
pub struct DecisionRecorded {
    pub request_id: String,
    /// The request's state after the decision.
    pub state: String,
    /// `approved`, `rejected`, `stage_approved` (the next stage is asked) or `counted` (the
    /// stage needs more approvals).
    pub outcome: &'static str,
    /// The stage (1-based) the decision counted for.
    pub stage: usize,
    /// Who the decision was recorded for, as the directory knows them.
    pub approver: Value,
    /// Ids of the jobs enqueued.
    pub jobs: Vec<String>,
}

/// `POST /v1/requests/{id}/decision`: an operator records a decision, as itself (its configured
/// directory identity) or on behalf of a named approver; the operator is the audit actor
/// either way, and the approver is judged by the plan like anyone answering in Teams.
pub async fn decide(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    JsonBytes(raw): JsonBytes,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let body = parse_decision(&raw)?;
    tracing::Span::current().record("request_id", id.as_str());
    let claim = match (&body.on_behalf_of, &op.directory_id) {
        (Some(name), _) => Claim::Name(name),
        (None, Some(own)) => Claim::ObjectId(own),
        (None, None) => {
            return Err(ApiError::forbidden(
                codes::APPROVAL_OPERATOR_WITHOUT_IDENTITY,
                format!(
                    "operator {} has no directory identity (operator_tokens[].directory_id); name the approver in on_behalf_of",
                    op.id
                ),
            ));
        }
    };
    let answer = Answer {
        claim,
        upn: if body.on_behalf_of.is_none() { op.upn.as_deref() } else { None },
        approve: body.approve,
        comment: &body.comment,
        door: "operator",
        stage: None,
        recorded_by: body.on_behalf_of.as_ref().map(|_| op.id.as_str()),
        actor: format!("operator:{}", op.id),
    };
    match approvals::answer(&state, &id, answer).await? {
        Answered::NotFound => Err(ApiError::not_found()),
        Answered::Refused(r) => {
            tracing::warn!(request_id = %id, operator = %op.id, reason = r.code(), "decision refused");
            Err(refusal_error(&r))
        }
        Answered::Counted { outcome, stage, state: new_state, jobs, approver } => {
            tracing::info!(request_id = %id, operator = %op.id, outcome = outcome_name(outcome), "decision recorded");
            Ok(Json(DecisionRecorded {
                request_id: id,
                state: new_state.as_str().to_owned(),
                outcome: outcome_name(outcome),
                stage: stage + 1,
                approver: json!({"id": approver.id, "upn": approver.upn}),
                jobs,
            })
            .into_response())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn decision_bodies_name_the_field() {
        assert_eq!(
            parse_decision(br#"{"approve":true,"on_behalf_of":" mgr@contoso.com "}"#).unwrap(),
            DecisionBody { approve: true, comment: String::new(), on_behalf_of: Some("mgr@contoso.com".into()) }
        );
        assert_eq!(
            parse_decision(br#"{"approve":false,"comment":"no"}"#).unwrap(),
            DecisionBody { approve: false, comment: "no".into(), on_behalf_of: None }
        );
        assert_eq!(parse_decision(b"{").unwrap_err().code, codes::REQUEST_MALFORMED_JSON);
        for (b, f) in [
            (r#"{"approver":"mgr@contoso.com","approve":true}"#, "approver"),
            (r#"{}"#, "approve"),
            (r#"{"approve":"yes"}"#, "approve"),
            (r#"{"approve":true,"comment":5}"#, "comment"),
            (r#"{"approve":true,"on_behalf_of":""}"#, "on_behalf_of"),
            (r#"{"approve":true,"on_behalf_of":7}"#, "on_behalf_of"),
        ] {
            assert_eq!(parse_decision(b.as_bytes()).unwrap_err().field.as_deref(), Some(f), "{b}");
        }
    }
}
