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
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;
use serde::Serialize;
use serde_json::{Value, json};

use grantline_queue::{CommitOutcome, Guard, Handoff, NewJob, Write, successor_id, validate_id};
use grantline_shared::audit::{self, AuditEvent, AuditRecord, GENESIS};
use grantline_shared::flow::{self, Next, Outcome};
use grantline_shared::jobs::{ExecuteGrant, JobPayload, UpdateTicket};
use grantline_shared::policy::{
    ApprovalPlan, ApprovalProgress, ApprovalRequirement, Approver, IgnoreReason, RecordedApproval, Verdict,
    approval_state,
};
use grantline_shared::request::{RequestState, fields, keys};
use grantline_shared::trace::TRACEPARENT;

use crate::error::{ApiError, codes};
use crate::extract::{JsonBytes, Operator};
use crate::state::AppState;

/// How often a decision re-reads and retries after a concurrent change.
const DECISION_ATTEMPTS: usize = 5;
const MAX_APPROVER_LEN: usize = 256;
const MAX_COMMENT_LEN: usize = 4000;

fn check_id(id: &str) -> Result<(), ApiError> {
    validate_id(id).map_err(|_| ApiError::not_found())
}

/// A hash field that holds JSON, as JSON (a value that does not parse is returned as a string).
fn json_field(h: &HashMap<String, String>, name: &str) -> Value {
    match h.get(name) {
        None => Value::Null,
        Some(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
    }
}

fn num_field(h: &HashMap<String, String>, name: &str) -> Value {
    match h.get(name) {
        None => Value::Null,
        Some(s) => s.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::String(s.clone())),
    }
}

fn str_field(h: &HashMap<String, String>, name: &str) -> Value {
    h.get(name).map(|s| Value::String(s.clone())).unwrap_or(Value::Null)
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
    if h.is_empty() {
        return Err(ApiError::not_found());
    }
    let mut chain = Vec::with_capacity(stream.ids.len());
    let mut timeline = Vec::with_capacity(stream.ids.len());
    for e in &stream.ids {
        let record = stream_field(&e.map, "record");
        timeline.push(serde_json::from_str::<Value>(&record).unwrap_or(Value::String(record.clone())));
        chain.push((record, stream_field(&e.map, "prev"), stream_field(&e.map, "hash")));
    }
    let head = h.get(fields::AUDIT_HEAD).map(String::as_str).unwrap_or(GENESIS);
    let verification = audit::verify(&chain, head);
    let approvals = match json_field(&h, fields::APPROVALS) {
        Value::Null => json!([]),
        v => v,
    };
    let body = json!({
        "id": id,
        "state": str_field(&h, fields::STATE),
        "ticket": json_field(&h, fields::TICKET),
        "trace_id": str_field(&h, fields::TRACE_ID),
        "created_ms": num_field(&h, fields::CREATED_MS),
        "updated_ms": num_field(&h, fields::UPDATED_MS),
        "requester": json_field(&h, fields::REQUESTER),
        "target": json_field(&h, fields::TARGET),
        "decision": json_field(&h, fields::DECISION),
        "approvals": approvals,
        "grant": json_field(&h, fields::GRANT),
        "reason": str_field(&h, fields::REASON),
        "end_ms": num_field(&h, fields::END_MS),
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
    /// Directory object id or UPN of the person deciding.
    pub approver: String,
    pub approve: bool,
    pub comment: String,
}

/// Parses a decision body, naming the field at fault.
pub fn parse_decision(body: &[u8]) -> Result<DecisionBody, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| ApiError::malformed_json())?;
    let Some(obj) = v.as_object() else {
        return Err(ApiError::invalid_field("approver", "the body must be a JSON object with approver and approve"));
    };
    let approver = match obj.get("approver") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.trim().chars().count() <= MAX_APPROVER_LEN => {
            s.trim().to_owned()
        }
        Some(_) => {
            return Err(ApiError::invalid_field(
                "approver",
                format!("must be a directory user id or UPN (1-{MAX_APPROVER_LEN} characters)"),
            ));
        }
        None => return Err(ApiError::invalid_field("approver", "is required")),
    };
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
    Ok(DecisionBody { approver, approve, comment })
}

/// One recorded answer, as kept in the request's `approvals` field.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ApprovalEntry {
    pub approver: String,
    pub approve: bool,
    #[serde(default)]
    pub comment: String,
    pub at_ms: u64,
    /// The plan stage (0-based) the answer was given for, when the request has a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<usize>,
    /// The operator token that submitted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Who may approve, as read from the request's `decision` field.
#[derive(Debug)]
enum Approvers {
    /// No list: anyone but the requester.
    Anyone,
    /// `decision.approval.approvers`: ids or UPNs; one approval decides.
    List(Vec<String>),
    /// The policy's approval plan: stages, quorums and exclusions.
    Plan(ApprovalPlan),
}

fn approvers_of(decision: Option<&str>) -> Result<Approvers, ApiError> {
    let incomplete = || {
        ApiError::conflict(
            codes::REQUEST_INCOMPLETE,
            "the request's approval plan cannot be read; it cannot be decided",
        )
    };
    let Some(raw) = decision else { return Ok(Approvers::Anyone) };
    let v: Value = serde_json::from_str(raw).map_err(|_| incomplete())?;
    let approval = match v.get("approval") {
        None | Some(Value::Null) => return Ok(Approvers::Anyone),
        Some(a) => a,
    };
    if let Some(list) = approval.get("approvers").and_then(Value::as_array) {
        let mut out = Vec::new();
        for item in list {
            match item {
                Value::String(s) => out.push(norm(s)),
                Value::Object(o) => {
                    for k in ["id", "upn"] {
                        if let Some(s) = o.get(k).and_then(Value::as_str) {
                            out.push(norm(s));
                        }
                    }
                }
                _ => {}
            }
        }
        return Ok(Approvers::List(out));
    }
    match serde_json::from_value::<ApprovalRequirement>(approval.clone()) {
        Ok(ApprovalRequirement::Plan(p)) => Ok(Approvers::Plan(p)),
        Ok(ApprovalRequirement::Auto { .. }) => Ok(Approvers::Anyone),
        Err(_) => Err(incomplete()),
    }
}

/// What a decision amounts to.
#[derive(Debug, PartialEq, Eq)]
enum Verdicts {
    SelfApproval,
    NotAnApprover,
    Counted { outcome: Outcome, stage: Option<usize> },
}

fn person(s: &str) -> Approver {
    Approver { id: s.to_owned(), upn: Some(s.to_owned()), member_of: Vec::new() }
}

fn judge(approvers: &Approvers, requester: &Value, past: &[ApprovalEntry], body: &DecisionBody) -> Verdicts {
    let who = norm(&body.approver);
    let requester_id = requester.get("id").and_then(Value::as_str).unwrap_or_default();
    let requester_upn = requester.get("upn").and_then(Value::as_str).unwrap_or_default();
    if [requester_id, requester_upn].iter().any(|r| !r.trim().is_empty() && norm(r) == who) {
        return Verdicts::SelfApproval;
    }
    let simple = if body.approve { Outcome::Approved } else { Outcome::Rejected };
    match approvers {
        Approvers::Anyone => Verdicts::Counted { outcome: simple, stage: None },
        Approvers::List(list) => {
            if list.contains(&who) {
                Verdicts::Counted { outcome: simple, stage: None }
            } else {
                Verdicts::NotAnApprover
            }
        }
        Approvers::Plan(plan) => {
            if plan.excluded.iter().any(|x| norm(x) == who) {
                return Verdicts::SelfApproval;
            }
            let mut recorded: Vec<RecordedApproval> = past
                .iter()
                .map(|a| RecordedApproval {
                    stage: a.stage.unwrap_or(0),
                    approver: person(&a.approver),
                    verdict: if a.approve { Verdict::Approve } else { Verdict::Reject },
                    at: None,
                })
                .collect();
            let stage = match approval_state(plan, &recorded, requester_id).progress {
                ApprovalProgress::Pending { stage } => stage,
                _ => plan.stages.len().saturating_sub(1),
            };
            recorded.push(RecordedApproval {
                stage,
                approver: person(&body.approver),
                verdict: if body.approve { Verdict::Approve } else { Verdict::Reject },
                at: None,
            });
            let after = approval_state(plan, &recorded, requester_id);
            let mine = recorded.len() - 1;
            if let Some(ignored) = after.ignored.iter().find(|i| i.index == mine) {
                return match ignored.reason {
                    IgnoreReason::SelfApproval => Verdicts::SelfApproval,
                    _ => Verdicts::NotAnApprover,
                };
            }
            let outcome = match after.progress {
                ApprovalProgress::Approved => Outcome::Approved,
                ApprovalProgress::Rejected { .. } => Outcome::Rejected,
                ApprovalProgress::Pending { .. } => Outcome::StageApproved,
            };
            Verdicts::Counted { outcome, stage: Some(stage) }
        }
    }
}

/// The answer to a recorded decision.
#[derive(Debug, Serialize)]
pub struct DecisionRecorded {
    pub request_id: String,
    /// The request's state after the decision.
    pub state: String,
    /// `approved`, `rejected`, or `stage_approved` (more approvals are needed).
    pub outcome: &'static str,
    /// Ids of the jobs enqueued.
    pub jobs: Vec<String>,
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Approved => "approved",
        Outcome::Rejected => "rejected",
        _ => "stage_approved",
    }
}

/// The job a transition calls for, with its id derived from the request id.
fn job_for(request_id: &str, next: Next, index: usize, traceparent: &str) -> Result<NewJob, ApiError> {
    let job = match next {
        Next::ExecuteGrant => {
            let kind = ExecuteGrant::KIND.as_str();
            NewJob::new(kind, &ExecuteGrant { request_id: request_id.to_owned() })?
                .with_id(successor_id(request_id, kind, index))
        }
        Next::UpdateTicket(update) => {
            let kind = UpdateTicket::KIND.as_str();
            NewJob::new(kind, &UpdateTicket { request_id: request_id.to_owned(), update })?
                .with_id(successor_id(request_id, kind, index))
        }
        other => return Err(ApiError::internal(&format!("a decision does not enqueue {other:?}"))),
    };
    Ok(if traceparent.is_empty() { job } else { job.meta(TRACEPARENT, traceparent) })
}

/// `POST /v1/requests/{id}/decision`.
pub async fn decide(
    State(state): State<AppState>,
    op: Operator,
    Path(id): Path<String>,
    JsonBytes(raw): JsonBytes,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let body = parse_decision(&raw)?;
    tracing::Span::current().record("request_id", id.as_str());
    let key = keys::request(&id);
    let abs = state.queue.namespace().key(&key);
    let mut conn = state.queue.connection();
    let awaiting = RequestState::AwaitingApproval.as_str();
    for _ in 0..DECISION_ATTEMPTS {
        let h: HashMap<String, String> = conn.hgetall(&abs).await?;
        if h.is_empty() {
            return Err(ApiError::not_found());
        }
        let current = h.get(fields::STATE).map(String::as_str).unwrap_or_default();
        if current != awaiting {
            return Err(ApiError::conflict(
                codes::REQUEST_NOT_AWAITING_APPROVAL,
                format!("the request is {current}, not awaiting approval"),
            ));
        }
        let requester = match h.get(fields::REQUESTER).and_then(|s| serde_json::from_str::<Value>(s).ok()) {
            Some(r) if r.get("id").and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty()) => r,
            _ => {
                return Err(ApiError::conflict(
                    codes::REQUEST_INCOMPLETE,
                    "the request has no requester on record; it cannot be decided",
                ));
            }
        };
        let approvers = approvers_of(h.get(fields::DECISION).map(String::as_str))?;
        let past: Vec<ApprovalEntry> = match h.get(fields::APPROVALS) {
            None => Vec::new(),
            Some(s) => serde_json::from_str(s).map_err(|e| ApiError::internal(&e))?,
        };
        let head = h.get(fields::AUDIT_HEAD).cloned().unwrap_or_else(|| GENESIS.to_owned());
        let trace_id = h.get(fields::TRACE_ID).cloned().unwrap_or_default();
        let traceparent = h.get(fields::TRACEPARENT).cloned().unwrap_or_default();
        if !trace_id.is_empty() {
            tracing::Span::current().record("trace_id", trace_id.as_str());
        }
        let now = state.now_ms();
        let verdict = judge(&approvers, &requester, &past, &body);
        let event = match &verdict {
            Verdicts::NotAnApprover => {
                return Err(ApiError::forbidden(
                    codes::APPROVAL_NOT_AN_APPROVER,
                    "this person is not an approver of this request",
                ));
            }
            Verdicts::SelfApproval => AuditEvent::SelfApprovalRefused { approver: body.approver.clone() },
            Verdicts::Counted { .. } => AuditEvent::ApprovalRecorded {
                approver: body.approver.clone(),
                approve: body.approve,
                comment: body.comment.clone(),
            },
        };
        let record =
            AuditRecord { request_id: id.clone(), at_ms: now, actor: format!("operator:{}", op.id), trace_id, event };
        let (entry, new_head) = audit::entry(&head, &record).map_err(|e| ApiError::internal(&e))?;
        let mut commit = Handoff::default()
            .guard(Guard::FieldEquals { key: key.clone(), field: fields::STATE.to_owned(), value: awaiting.to_owned() })
            .guard(Guard::FieldEquals { key: key.clone(), field: fields::AUDIT_HEAD.to_owned(), value: head.clone() })
            .write(Write::xadd(keys::audit(&id), entry));
        let mut outcome = None;
        match verdict {
            Verdicts::SelfApproval => {
                commit = commit.write(Write::hset(key.clone(), [(fields::AUDIT_HEAD, new_head.as_str())]));
            }
            Verdicts::Counted { outcome: o, stage } => {
                let transition = flow::next(o);
                let mut approvals = past.clone();
                approvals.push(ApprovalEntry {
                    approver: body.approver.clone(),
                    approve: body.approve,
                    comment: body.comment.clone(),
                    at_ms: now,
                    stage,
                    via: Some(op.id.clone()),
                });
                let approvals = serde_json::to_string(&approvals).map_err(|e| ApiError::internal(&e))?;
                let now_s = now.to_string();
                let mut hset = vec![
                    (fields::AUDIT_HEAD, new_head.as_str()),
                    (fields::APPROVALS, approvals.as_str()),
                    (fields::UPDATED_MS, now_s.as_str()),
                ];
                if let Some(s) = transition.state {
                    hset.push((fields::STATE, s.as_str()));
                }
                commit = commit.write(Write::hset(key.clone(), hset));
                for (i, next) in transition.next.iter().enumerate() {
                    commit = commit.then(job_for(&id, *next, i, &traceparent)?);
                }
                outcome = Some((o, transition.state));
            }
            Verdicts::NotAnApprover => {}
        }
        match state.queue.commit(commit).await? {
            CommitOutcome::Applied { ids } => {
                return match outcome {
                    None => {
                        tracing::warn!(request_id = %id, operator = %op.id, "self-approval refused");
                        Err(ApiError::forbidden(
                            codes::APPROVAL_SELF_APPROVAL,
                            "a requester can never approve their own request",
                        ))
                    }
                    Some((o, new_state)) => {
                        let state_name = new_state.map(|s| s.as_str()).unwrap_or(awaiting).to_owned();
                        tracing::info!(request_id = %id, operator = %op.id, outcome = outcome_name(o), "decision recorded");
                        Ok(Json(DecisionRecorded {
                            request_id: id,
                            state: state_name,
                            outcome: outcome_name(o),
                            jobs: ids,
                        })
                        .into_response())
                    }
                };
            }
            CommitOutcome::GuardFailed { .. } => continue,
            CommitOutcome::Duplicate { .. } => {
                return Err(ApiError::conflict(codes::REQUEST_CONFLICT, "the jobs of this decision exist already"));
            }
        }
    }
    Err(ApiError::conflict(codes::REQUEST_CONFLICT, "the request kept changing while the decision was recorded; retry"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn body(approver: &str, approve: bool) -> DecisionBody {
        DecisionBody { approver: approver.into(), approve, comment: String::new() }
    }

    #[test]
    fn decision_bodies_name_the_field() {
        assert_eq!(
            parse_decision(br#"{"approver":" mgr@contoso.com ","approve":true}"#).unwrap(),
            DecisionBody { approver: "mgr@contoso.com".into(), approve: true, comment: String::new() }
        );
        assert_eq!(parse_decision(b"{").unwrap_err().code, codes::REQUEST_MALFORMED_JSON);
        for (b, f) in [
            (r#"{"approve":true}"#, "approver"),
            (r#"{"approver":"","approve":true}"#, "approver"),
            (r#"{"approver":"a"}"#, "approve"),
            (r#"{"approver":"a","approve":"yes"}"#, "approve"),
            (r#"{"approver":"a","approve":true,"comment":5}"#, "comment"),
        ] {
            assert_eq!(parse_decision(b.as_bytes()).unwrap_err().field.as_deref(), Some(f), "{b}");
        }
    }

    #[test]
    fn the_requester_never_approves() {
        let requester = json!({"id": "u-1", "upn": "Alex@Contoso.com"});
        for who in ["u-1", "alex@contoso.com", "ALEX@CONTOSO.COM"] {
            assert_eq!(judge(&Approvers::Anyone, &requester, &[], &body(who, true)), Verdicts::SelfApproval);
            assert_eq!(
                judge(&Approvers::List(vec![norm(who)]), &requester, &[], &body(who, false)),
                Verdicts::SelfApproval
            );
        }
        assert_eq!(
            judge(&Approvers::List(vec!["mgr".into()]), &requester, &[], &body("other", true)),
            Verdicts::NotAnApprover
        );
        assert_eq!(
            judge(&Approvers::List(vec!["mgr".into()]), &requester, &[], &body("MGR", true)),
            Verdicts::Counted { outcome: Outcome::Approved, stage: None }
        );
    }

    #[test]
    fn reads_both_approver_shapes() {
        let list =
            approvers_of(Some(r#"{"approval":{"approvers":["Mgr@Contoso.com",{"id":"g1","upn":"x@y"}]}}"#)).unwrap();
        assert!(matches!(list, Approvers::List(l) if l == ["mgr@contoso.com", "g1", "x@y"]));
        assert!(matches!(approvers_of(None).unwrap(), Approvers::Anyone));
        assert!(matches!(approvers_of(Some(r#"{"outcome":"allow"}"#)).unwrap(), Approvers::Anyone));
        assert_eq!(
            approvers_of(Some(r#"{"approval":{"type":"mystery"}}"#)).unwrap_err().code,
            codes::REQUEST_INCOMPLETE
        );
        let plan = json!({"approval": {"type": "plan", "rule": "r", "excluded": ["u-1", "alex@contoso.com"], "stages": [
            {"name": "manager", "quorum": "any", "approvers": [{"kind": "manager", "ids": ["mgr"]}], "time_to_decide": "72h", "on_timeout": "expire"},
            {"name": "owners", "quorum": "all", "approvers": [{"kind": "users", "ids": ["own1"]}, {"kind": "users", "ids": ["own2"]}], "time_to_decide": "72h", "on_timeout": "expire"}
        ]}});
        let a = approvers_of(Some(&plan.to_string())).unwrap();
        let Approvers::Plan(_) = &a else { panic!("expected a plan, got {a:?}") };
        let requester = json!({"id": "u-1", "upn": "alex@contoso.com"});
        let entry = |who: &str, stage: usize| ApprovalEntry {
            approver: who.into(),
            approve: true,
            comment: String::new(),
            at_ms: 1,
            stage: Some(stage),
            via: None,
        };
        assert_eq!(
            judge(&a, &requester, &[], &body("own1", true)),
            Verdicts::NotAnApprover,
            "stage 2 approver in stage 1"
        );
        assert_eq!(
            judge(&a, &requester, &[], &body("mgr", true)),
            Verdicts::Counted { outcome: Outcome::StageApproved, stage: Some(0) }
        );
        let past = [entry("mgr", 0)];
        assert_eq!(
            judge(&a, &requester, &past, &body("own1", true)),
            Verdicts::Counted { outcome: Outcome::StageApproved, stage: Some(1) }
        );
        let past = [entry("mgr", 0), entry("own1", 1)];
        assert_eq!(
            judge(&a, &requester, &past, &body("own2", true)),
            Verdicts::Counted { outcome: Outcome::Approved, stage: Some(1) }
        );
        assert_eq!(
            judge(&a, &requester, &past, &body("own2", false)),
            Verdicts::Counted { outcome: Outcome::Rejected, stage: Some(1) }
        );
        assert_eq!(
            judge(&a, &json!({"id": "someone"}), &[], &body("alex@contoso.com", true)),
            Verdicts::SelfApproval,
            "excluded by the plan"
        );
    }
}
