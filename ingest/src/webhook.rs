//! `POST /v1/webhooks/servicenow`: the doorbell. The body is not trusted beyond the ticket
//! reference (`ritm.sys_id`, `ritm.number`, optional `table`); the validate step reads the
//! ticket back from ServiceNow. The request record, its ticket index, its first audit record
//! and its first job are written in one atomic commit, and only then is 202 answered.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use redis::AsyncCommands;
use serde::Serialize;
use serde_json::Value;

use grantline_queue::{CommitOutcome, Handoff};
use grantline_shared::request::TicketRef;

use crate::error::ApiError;
use crate::extract::{ServiceNowWebhook, start_trace};
use crate::state::{AppState, WebhookOutcome};

/// The ticket system name used in keys, ticket references and audit records.
pub const SYSTEM: &str = "servicenow";
/// The audit actor of records written by this route.
pub const ACTOR: &str = "ingest:servicenow";
/// The table a webhook names when it names none.
pub const DEFAULT_TABLE: &str = "sc_req_item";

/// The answer to an accepted (or duplicate) webhook.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub request_id: String,
    pub duplicate: bool,
    pub status_url: String,
}

fn is_sys_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_ritm_number(s: &str) -> bool {
    s.strip_prefix("RITM")
        .is_some_and(|digits| (4..=16).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Extracts the ticket reference from a webhook body: the only part of it that is used.
pub fn parse_ticket(body: &[u8], allowed_tables: &[String]) -> Result<TicketRef, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| ApiError::malformed_json())?;
    let Some(obj) = v.as_object() else {
        return Err(ApiError::invalid_field("ritm", "the body must be a JSON object with a \"ritm\" object"));
    };
    let table = match obj.get("table") {
        None | Some(Value::Null) => DEFAULT_TABLE.to_owned(),
        Some(Value::String(t)) if allowed_tables.iter().any(|a| a == t) => t.clone(),
        Some(Value::String(_)) => {
            return Err(ApiError::invalid_field(
                "table",
                format!("the table is not accepted here (accepted: {})", allowed_tables.join(", ")),
            ));
        }
        Some(_) => return Err(ApiError::invalid_field("table", "must be a string")),
    };
    if !allowed_tables.contains(&table) {
        return Err(ApiError::invalid_field(
            "table",
            format!("the table is not accepted here (accepted: {})", allowed_tables.join(", ")),
        ));
    }
    let Some(ritm) = obj.get("ritm").and_then(Value::as_object) else {
        return Err(ApiError::invalid_field("ritm", "\"ritm\" must be an object with sys_id and number"));
    };
    let sys_id = match ritm.get("sys_id") {
        Some(Value::String(s)) if is_sys_id(s) => s.to_ascii_lowercase(),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "ritm.sys_id",
                "must be a ServiceNow sys_id: 32 hexadecimal characters",
            ));
        }
        None => return Err(ApiError::invalid_field("ritm.sys_id", "is required")),
    };
    let number = match ritm.get("number") {
        Some(Value::String(s)) if is_ritm_number(s) => s.clone(),
        Some(_) => {
            return Err(ApiError::invalid_field("ritm.number", "must be a request item number like RITM0010001"));
        }
        None => return Err(ApiError::invalid_field("ritm.number", "is required")),
    };
    Ok(TicketRef { system: SYSTEM.to_owned(), table, sys_id, number })
}

fn status_url(id: &str) -> String {
    format!("/v1/requests/{id}")
}

fn respond(request_id: String, duplicate: bool) -> Response {
    let url = status_url(&request_id);
    let mut resp =
        (StatusCode::ACCEPTED, Json(Accepted { request_id, duplicate, status_url: url.clone() })).into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.extensions_mut().insert(if duplicate { WebhookOutcome::Duplicate } else { WebhookOutcome::Accepted });
    resp
}

/// Builds the atomic commit that creates a request.
pub(crate) fn new_request(
    id: &str,
    ticket: &TicketRef,
    traceparent: &str,
    trace_id: &str,
    now_ms: u64,
) -> Result<Handoff, ApiError> {
    Ok(grantline_store::create(id, ticket, traceparent, trace_id, now_ms, ACTOR)?)
}

/// A doorbell about a known ticket whose request waits for approval may mean an approver
/// answered in ServiceNow: a `sync-approvals` job reads the approval records back (never the
/// body). Its id is derived from the request's audit head, so repeated rings between two
/// changes of the request enqueue one job.
async fn ring_approvals(state: &AppState, request_id: &str) -> Result<(), ApiError> {
    let rec = match grantline_store::find(&state.queue, request_id).await {
        Ok(Some(r)) => r,
        Ok(None) | Err(grantline_store::StoreError::Record(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if rec.state != grantline_shared::request::RequestState::AwaitingApproval {
        return Ok(());
    }
    let commit =
        grantline_store::Commit::new(&rec, ACTOR, state.now_ms()).then(grantline_shared::flow::Next::SyncApprovals);
    match commit.apply(&state.queue).await? {
        grantline_store::Applied::Done { jobs, .. } => {
            tracing::info!(request_id, ?jobs, "approval records to read back");
        }
        // rung before (the same job exists), or the request changed meanwhile
        grantline_store::Applied::Conflict => {}
    }
    Ok(())
}

/// The handler of `POST /v1/webhooks/servicenow`.
pub async fn servicenow(State(state): State<AppState>, hook: ServiceNowWebhook) -> Result<Response, ApiError> {
    let ticket = parse_ticket(&hook.body, &state.cfg.allowed_tables)?;
    let trace = start_trace(hook.traceparent.as_ref());
    let traceparent = trace.to_string();
    let span = tracing::Span::current();
    // A fresh id collides only by accident; try a few before giving up.
    for _ in 0..3 {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let commit = new_request(&id, &ticket, &traceparent, &trace.trace_id, state.now_ms())?;
        match state.queue.commit(commit).await? {
            CommitOutcome::Applied { .. } => {
                span.record("request_id", id.as_str());
                span.record("trace_id", trace.trace_id.as_str());
                tracing::info!(request_id = %id, ticket = %ticket.number, auth = ?hook.auth, "request received");
                return Ok(respond(id, false));
            }
            CommitOutcome::GuardFailed { index: 1 } => continue,
            CommitOutcome::GuardFailed { .. } | CommitOutcome::Duplicate { .. } => {
                let key = state.queue.namespace().key(&ticket.idempotency_key());
                let existing: Option<String> = state.queue.connection().get(&key).await?;
                return match existing {
                    Some(existing) => {
                        span.record("request_id", existing.as_str());
                        tracing::info!(request_id = %existing, ticket = %ticket.number, "duplicate delivery of a known ticket");
                        ring_approvals(&state, &existing).await?;
                        Ok(respond(existing, true))
                    }
                    None => Err(ApiError::conflict(
                        crate::error::codes::REQUEST_DUPLICATE,
                        "this ticket was received before, but its request could not be found",
                    )),
                };
            }
        }
    }
    Err(ApiError::internal(&"three fresh request ids were all taken"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn tables() -> Vec<String> {
        vec!["sc_req_item".to_owned()]
    }

    fn field_of(body: &str) -> (u16, Option<String>) {
        let e = parse_ticket(body.as_bytes(), &tables()).unwrap_err();
        (e.status.as_u16(), e.field)
    }

    #[test]
    fn takes_only_the_ticket_reference() {
        let t = parse_ticket(
            br#"{"source":"servicenow","ritm":{"sys_id":"A9E30C7DC61122760116894DE7BCC7BD","number":"RITM0010482","variables":{"x":1}}}"#,
            &tables(),
        )
        .unwrap();
        assert_eq!(
            t,
            TicketRef {
                system: "servicenow".into(),
                table: "sc_req_item".into(),
                sys_id: "a9e30c7dc61122760116894de7bcc7bd".into(),
                number: "RITM0010482".into()
            }
        );
        assert_eq!(t.idempotency_key(), "ticket-id:servicenow:a9e30c7dc61122760116894de7bcc7bd");
    }

    #[test]
    fn names_the_field_at_fault() {
        let sys = "a9e30c7dc61122760116894de7bcc7bd";
        assert_eq!(field_of("{"), (400, None));
        assert_eq!(field_of("[]"), (422, Some("ritm".into())));
        assert_eq!(field_of("{}"), (422, Some("ritm".into())));
        assert_eq!(field_of(r#"{"ritm":{"number":"RITM0010482"}}"#), (422, Some("ritm.sys_id".into())));
        assert_eq!(field_of(r#"{"ritm":{"sys_id":"xyz","number":"RITM0010482"}}"#), (422, Some("ritm.sys_id".into())));
        assert_eq!(field_of(&format!(r#"{{"ritm":{{"sys_id":"{sys}"}}}}"#)), (422, Some("ritm.number".into())));
        for bad in ["INC0010482", "RITM12", "ritm0010482", "RITM00104820000000000", "RITM 010482"] {
            assert_eq!(
                field_of(&format!(r#"{{"ritm":{{"sys_id":"{sys}","number":"{bad}"}}}}"#)),
                (422, Some("ritm.number".into())),
                "{bad}"
            );
        }
        assert_eq!(
            field_of(&format!(r#"{{"table":"sys_user","ritm":{{"sys_id":"{sys}","number":"RITM0010482"}}}}"#)),
            (422, Some("table".into()))
        );
        assert_eq!(
            field_of(&format!(r#"{{"table":7,"ritm":{{"sys_id":"{sys}","number":"RITM0010482"}}}}"#)),
            (422, Some("table".into()))
        );
    }
}
