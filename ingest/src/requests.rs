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

use grantline_queue::validate_id;
use grantline_shared::audit::{self, AuditEvent, GENESIS};
use grantline_shared::flow::Outcome;
use grantline_shared::policy::{
    ApprovalPlan, ApprovalProgress, Approver, IgnoreReason, RecordedApproval, UserFacts, Verdict, approval_state,
};
use grantline_shared::record::{ApprovalEntry, RecordError};
use grantline_shared::request::{RequestState, keys};
use grantline_store::{Applied, Commit, StoreError};

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

fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

/// What a decision amounts to.
#[derive(Debug, PartialEq, Eq)]
enum Verdicts {
    SelfApproval,
    NotAnApprover,
    Counted { outcome: Outcome, stage: usize },
}

fn person(s: &str) -> Approver {
    Approver { id: s.to_owned(), upn: Some(s.to_owned()), member_of: Vec::new() }
}

fn judge(plan: &ApprovalPlan, requester: &UserFacts, past: &[ApprovalEntry], body: &DecisionBody) -> Verdicts {
    let who = norm(&body.approver);
    if [requester.id.as_str(), requester.upn.as_str()].iter().any(|r| !r.trim().is_empty() && norm(r) == who) {
        return Verdicts::SelfApproval;
    }
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
    let stage = match approval_state(plan, &recorded, &requester.id).progress {
        ApprovalProgress::Pending { stage } => stage,
        _ => plan.stages.len().saturating_sub(1),
    };
    recorded.push(RecordedApproval {
        stage,
        approver: person(&body.approver),
        verdict: if body.approve { Verdict::Approve } else { Verdict::Reject },
        at: None,
    });
    let after = approval_state(plan, &recorded, &requester.id);
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
    Verdicts::Counted { outcome, stage }
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
    let awaiting = RequestState::AwaitingApproval;
    for _ in 0..DECISION_ATTEMPTS {
        let rec = match grantline_store::load(&state.queue, &id).await {
            Ok(r) => r,
            Err(StoreError::Record(RecordError::NotFound { .. })) => return Err(ApiError::not_found()),
            Err(StoreError::Record(e)) => {
                return Err(ApiError::conflict(codes::REQUEST_INCOMPLETE, format!("the request cannot be read: {e}")));
            }
            Err(e) => return Err(e.into()),
        };
        if rec.state != awaiting {
            return Err(ApiError::conflict(
                codes::REQUEST_NOT_AWAITING_APPROVAL,
                format!("the request is {}, not awaiting approval", rec.state),
            ));
        }
        let Some(requester) = rec.requester.as_ref().filter(|r| !r.id.trim().is_empty()) else {
            return Err(ApiError::conflict(
                codes::REQUEST_INCOMPLETE,
                "the request has no requester on record; it cannot be decided",
            ));
        };
        // deny by default: without a readable approval plan nobody may approve
        let Some(plan) = rec.decision.as_ref().and_then(|d| d.plan()) else {
            return Err(ApiError::conflict(
                codes::APPROVAL_NO_PLAN,
                "the request has no approval plan on record; nobody can approve it",
            ));
        };
        if !rec.trace_id.is_empty() {
            tracing::Span::current().record("trace_id", rec.trace_id.as_str());
        }
        let now = state.now_ms();
        let verdict = judge(plan, requester, &rec.approvals, &body);
        let commit = Commit::new(&rec, format!("operator:{}", op.id), now);
        let (commit, outcome) = match verdict {
            Verdicts::NotAnApprover => {
                return Err(ApiError::forbidden(
                    codes::APPROVAL_NOT_AN_APPROVER,
                    "this person is not an approver of this request",
                ));
            }
            Verdicts::SelfApproval => {
                (commit.event(AuditEvent::SelfApprovalRefused { approver: body.approver.clone() }), None)
            }
            Verdicts::Counted { outcome, stage } => {
                let mut approvals = rec.approvals.clone();
                approvals.push(ApprovalEntry {
                    approver: body.approver.clone(),
                    approver_id: None,
                    approve: body.approve,
                    comment: body.comment.clone(),
                    at_ms: now,
                    stage: Some(stage),
                    via: Some(op.id.clone()),
                    recorded_by: None,
                });
                let c = commit
                    .event(AuditEvent::ApprovalRecorded {
                        approver: body.approver.clone(),
                        approve: body.approve,
                        comment: body.comment.clone(),
                    })
                    .set(|u| u.approvals(&approvals))
                    .outcome(outcome);
                (c, Some(outcome))
            }
        };
        match commit.apply(&state.queue).await? {
            Applied::Done { jobs, state: new_state } => {
                return match outcome {
                    None => {
                        tracing::warn!(request_id = %id, operator = %op.id, "self-approval refused");
                        Err(ApiError::forbidden(
                            codes::APPROVAL_SELF_APPROVAL,
                            "a requester can never approve their own request",
                        ))
                    }
                    Some(o) => {
                        tracing::info!(request_id = %id, operator = %op.id, outcome = outcome_name(o), "decision recorded");
                        Ok(Json(DecisionRecorded {
                            request_id: id,
                            state: new_state.as_str().to_owned(),
                            outcome: outcome_name(o),
                            jobs,
                        })
                        .into_response())
                    }
                };
            }
            Applied::Conflict => continue,
        }
    }
    Err(ApiError::conflict(codes::REQUEST_CONFLICT, "the request kept changing while the decision was recorded; retry"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use grantline_shared::policy::{ApproverKind, OnTimeout, PlannedApprover, PlannedStage, PolicyDuration, Quorum};

    fn body(approver: &str, approve: bool) -> DecisionBody {
        DecisionBody { approver: approver.into(), approve, comment: String::new() }
    }

    fn requester() -> UserFacts {
        serde_json::from_value(
            json!({"id": "u-1", "upn": "Alex@Contoso.com", "user_type": "Member", "account_enabled": true}),
        )
        .unwrap()
    }

    fn stage(name: &str, quorum: Quorum, entries: &[&[&str]]) -> PlannedStage {
        PlannedStage {
            name: name.into(),
            quorum,
            approvers: entries
                .iter()
                .map(|ids| PlannedApprover {
                    kind: ApproverKind::Users,
                    group_id: None,
                    ids: ids.iter().map(|s| (*s).to_owned()).collect(),
                    via_fallback: false,
                    note: None,
                })
                .collect(),
            fallback: None,
            time_to_decide: "72h".parse::<PolicyDuration>().unwrap(),
            on_timeout: OnTimeout::Expire,
            fallback_decides: false,
            escalated: false,
            notes: vec![],
        }
    }

    fn entry(who: &str, stage: usize) -> ApprovalEntry {
        ApprovalEntry {
            approver: who.into(),
            approver_id: None,
            approve: true,
            comment: String::new(),
            at_ms: 1,
            stage: Some(stage),
            via: None,
            recorded_by: None,
        }
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
    fn stages_and_quorums_and_the_requester_never_approves() {
        let plan = ApprovalPlan {
            rule: "r".into(),
            excluded: vec!["u-1".into(), "alex@contoso.com".into(), "filer@contoso.com".into()],
            stages: vec![
                stage("manager", Quorum::Any, &[&["mgr"]]),
                stage("owners", Quorum::All, &[&["own1"], &["own2"]]),
            ],
        };
        let r = requester();
        for who in ["u-1", "alex@contoso.com", "ALEX@CONTOSO.COM", "filer@contoso.com"] {
            assert_eq!(judge(&plan, &r, &[], &body(who, true)), Verdicts::SelfApproval, "{who}");
        }
        assert_eq!(judge(&plan, &r, &[], &body("own1", true)), Verdicts::NotAnApprover, "stage 2 approver in stage 1");
        assert_eq!(
            judge(&plan, &r, &[], &body("MGR", true)),
            Verdicts::Counted { outcome: Outcome::StageApproved, stage: 0 }
        );
        let past = [entry("mgr", 0)];
        assert_eq!(
            judge(&plan, &r, &past, &body("own1", true)),
            Verdicts::Counted { outcome: Outcome::StageApproved, stage: 1 }
        );
        let past = [entry("mgr", 0), entry("own1", 1)];
        assert_eq!(
            judge(&plan, &r, &past, &body("own2", true)),
            Verdicts::Counted { outcome: Outcome::Approved, stage: 1 }
        );
        assert_eq!(
            judge(&plan, &r, &past, &body("own2", false)),
            Verdicts::Counted { outcome: Outcome::Rejected, stage: 1 }
        );
    }
}
