//! execute-grant: add the member with `POST /groups/{id}/members/$ref` ("already exists" is
//! success), read it back, and record the before/after state and Graph's correlation ids.
//! Outside the change window it defers itself to the window's opening.

use std::sync::Arc;
use std::time::Duration;

use apalis_core::task::data::Data;
use grantline_connectors::graph::AddOutcome;
use grantline_queue::{Handoff, JobError};
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::ExecuteGrant;
use grantline_shared::policy::{Decision, UserFacts};
use grantline_shared::request::{RequestState, fields};

use super::{already_done, job_error};
use crate::membership::{MembershipLock, holders, holders_key, locked};
use crate::record::{GrantReceipt, StepCommit, load};
use crate::services::Services;

pub async fn run(job: ExecuteGrant, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let rec = load(&svc.queue, &job.request_id).await?;
    if !matches!(rec.state, RequestState::Approved | RequestState::Deferred) {
        return Ok(already_done("execute-grant", &rec.id, rec.state));
    }
    let decision: Decision =
        rec.field(fields::DECISION).ok_or_else(|| JobError::permanent("request.no_decision", "no decision"))?;
    let requester: UserFacts =
        rec.field(fields::REQUESTER).ok_or_else(|| JobError::permanent("request.no_requester", "no requester"))?;
    let target = decision
        .target
        .clone()
        .ok_or_else(|| JobError::permanent("request.no_target", "the decision names no target"))?;
    let group_id = target.group_id.clone().ok_or_else(|| {
        JobError::permanent(
            "grant.unsupported_target",
            format!("{} is not a group; its executor is not available", target.display_name),
        )
    })?;
    let now_ms = svc.now_ms();
    let window_ms = u64::try_from(decision.execute_at.as_millisecond()).unwrap_or(0);
    if window_ms > now_ms && rec.state == RequestState::Approved {
        let reason = decision.deferral().unwrap_or("outside the change window").to_owned();
        return StepCommit::new(&rec, "execute-grant", now_ms)
            .set(fields::REASON, reason)
            .window_at(window_ms)
            .outcome(Outcome::Deferred)
            .into_handoff();
    }
    // one membership, many requests: grant and removal of it are serialised
    let lock = MembershipLock::acquire(&svc.queue, &group_id, &requester.id, &rec.id, "execute-grant").await?;
    locked(lock, &svc.queue, async {
        // effect ledger: a marker written before the change, so a retry after a crash between
        // the change and its acknowledgement knows the membership it finds may be its own
        let ledger = svc.queue.namespace().key(&ledger_key(&rec.id, &group_id, &requester.id));
        let mut conn = svc.queue.connection();
        let first_attempt: bool = redis::cmd("SET")
            .arg(&ledger)
            .arg(now_ms)
            .arg("NX")
            .query_async::<Option<String>>(&mut conn)
            .await
            .map_err(super::redis_unavailable)?
            .is_some();
        let before = svc.graph.is_member(&group_id, &requester.id).await.map_err(job_error)?.value;
        let added = svc.graph.add_member(&group_id, &requester.id).await.map_err(job_error)?;
        // read back: the 204 is the source of truth, but a grant is recorded only once visible
        let mut after = false;
        for i in 0..5u32 {
            after = svc.graph.is_member(&group_id, &requester.id).await.map_err(job_error)?.value;
            if after {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 << i)).await;
        }
        if !after {
            return Err(JobError::transient(
                "grant.not_visible",
                "the membership is not visible yet; will verify again",
            ));
        }
        // pre-existing: a member before grantline (our first attempt may find its own add on a
        // retry, hence the ledger); a membership other grantline requests hold is shared, not
        // pre-existing, and this request becomes one more holder
        let others: Vec<String> =
            holders(&svc.queue, &group_id, &requester.id).await?.into_iter().filter(|h| *h != rec.id).collect();
        let validated_pre_existing = rec.raw.get("pre_existing").is_some_and(|v| v == "true");
        let pre_existing = if !others.is_empty() {
            false
        } else if first_attempt {
            before || added.value == AddOutcome::AlreadyMember
        } else {
            validated_pre_existing
        };
        let receipt = GrantReceipt {
            group_id: group_id.clone(),
            group_name: target.display_name.clone(),
            user_id: requester.id.clone(),
            user_upn: requester.upn.clone(),
            pre_existing,
            granted_ms: now_ms,
            graph_request_id: added.correlation.request_id.clone(),
            client_request_id: added.correlation.client_request_id.clone(),
        };
        let commit = StepCommit::new(&rec, "execute-grant", now_ms)
            .event(AuditEvent::GrantExecuted {
                group_id: group_id.clone(),
                user_id: requester.id.clone(),
                before_member: before,
                after_member: after,
                pre_existing,
                graph_request_id: receipt.graph_request_id.clone(),
                client_request_id: receipt.client_request_id.clone(),
            })
            .set_json(fields::GRANT, &receipt)?
            .write(grantline_queue::Write::new(
                grantline_queue::WriteCmd::Del,
                ledger_key(&rec.id, &receipt.group_id, &receipt.user_id),
                Vec::<String>::new(),
            ));
        let commit = if pre_existing {
            commit
        } else {
            commit.write(grantline_queue::Write::new(
                grantline_queue::WriteCmd::SAdd,
                holders_key(&group_id, &requester.id),
                [rec.id.clone()],
            ))
        };
        commit.outcome(Outcome::Granted).into_handoff()
    })
    .await
}

/// The effect-ledger key of this step's change to one membership (relative to the namespace).
fn ledger_key(request_id: &str, group_id: &str, user_id: &str) -> String {
    format!("ledger:{request_id}:execute-grant:{group_id}:{user_id}")
}
