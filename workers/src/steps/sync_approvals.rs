//! sync-approvals: read the request's ServiceNow approval records back and apply the answers
//! approvers gave there. ServiceNow's doorbell (any webhook about a waiting request's ticket)
//! or the scheduler's bounded poll rings it. Only records grantline created count (they are
//! notices on the request); each record's answer is judged once, like an answer from any other
//! door: whoever acted on the record (its `sys_updated_by`: the approver, or someone acting in
//! their place) is mapped to the directory by their email (else user name), and the decision
//! model decides whether that person's answer counts. Answers written back by grantline (a decision
//! taken in Teams, shown on the record) are recognised and not counted twice.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_connectors::graph::{Claim, plan_groups};
use grantline_queue::{Handoff, JobError};
use grantline_shared::JobKind;
use grantline_shared::jobs::SyncApprovals;
use grantline_store::decision::{self, Ballot, Decided, Refusal};

use super::{job_error, redis_unavailable};
use crate::record::{load, store_error};
use crate::services::Services;

/// How long a judged record state is remembered.
const SEEN_SECS: u64 = 60 * 24 * 3600;

pub async fn run(job: SyncApprovals, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let Some(rec) = load(&svc, JobKind::SyncApprovals, &job.request_id).await? else { return Ok(Handoff::done()) };
    let ours: Vec<_> = rec.notices.iter().filter(|n| n.channel == "servicenow").collect();
    if ours.is_empty() {
        return Ok(Handoff::done());
    }
    let records = svc.servicenow.list_approvals(&rec.ticket.sys_id).await.map_err(job_error)?;
    let groups = rec.decision.as_ref().and_then(|d| d.plan()).map(plan_groups).unwrap_or_default();
    for r in records.iter().filter(|r| r.state.is_decided()) {
        let Some(notice) = ours.iter().find(|n| n.reference == r.sys_id) else { continue };
        if rec.approvals.iter().any(|a| a.reference.as_deref() == Some(r.sys_id.as_str())) {
            continue;
        }
        // grantline wrote this answer back from another door
        if rec.approvals.iter().any(|a| a.stage == notice.stage && a.approver_id.as_deref() == Some(notice.to.as_str()))
        {
            continue;
        }
        // each answer on a record (its state, by whom, when) is judged once
        let when = r.updated_on.map(|t| t.as_millisecond()).unwrap_or_default();
        let seen = svc.queue.namespace().key(&format!(
            "ledger:{}:sync:{}:{}:{}:{when}",
            rec.id,
            r.sys_id,
            r.state.as_str(),
            r.updated_by.to_lowercase()
        ));
        let mut conn = svc.queue.connection();
        let first: Option<String> = redis::cmd("SET")
            .arg(&seen)
            .arg(svc.now_ms())
            .arg("NX")
            .arg("EX")
            .arg(SEEN_SECS)
            .query_async(&mut conn)
            .await
            .map_err(redis_unavailable)?;
        if first.is_none() {
            continue;
        }
        // who acted on the record (the approver, or someone acting in their place) answers
        let acted_by = r.updated_by.trim();
        if acted_by.is_empty() {
            continue;
        }
        let user = svc.servicenow.find_user(acted_by).await.map_err(job_error)?;
        let name = match &user {
            Some(u) if u.email.contains('@') => u.email.clone(),
            Some(u) => u.user_name.clone(),
            None => acted_by.to_owned(),
        };
        let approve = r.state == grantline_connectors::servicenow::ApprovalState::Approved;
        let comment = svc
            .servicenow
            .approval_comments(&r.sys_id)
            .await
            .map_err(job_error)?
            .into_iter()
            .rev()
            .find(|c| c.sys_created_by.eq_ignore_ascii_case(acted_by))
            .map(|c| c.value)
            .unwrap_or_default();
        let now = svc.now_ms();
        let actor = format!("approver:servicenow:{acted_by}");
        let Some(approver) = svc.graph.approver(Claim::Name(&name), &groups).await.map_err(job_error)? else {
            decision::refuse(&svc.queue, &rec.id, &name, "servicenow", &Refusal::UnknownApprover, &actor, now)
                .await
                .map_err(store_error)?;
            continue;
        };
        let ballot = Ballot {
            display: approver.upn.clone().unwrap_or_else(|| approver.id.clone()),
            approver,
            approve,
            comment,
            door: "servicenow".into(),
            recorded_by: None,
            stage: notice.stage,
            reference: Some(r.sys_id.clone()),
        };
        // judged against the record as it is now (decide reads it again)
        if let Some(Decided::Counted { state, .. }) =
            decision::decide(&svc.queue, &rec.id, &ballot, &actor, now).await.map_err(store_error)?
            && state != grantline_shared::request::RequestState::AwaitingApproval
        {
            // the request moved on: the other records are closed by notify
            break;
        }
    }
    Ok(Handoff::done())
}
