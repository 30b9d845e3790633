//! validate: the webhook was only a doorbell. Read the requested item and its variables
//! back from ServiceNow, resolve the people in Graph, resolve the target through the
//! policy, read the target group's facts, note an existing membership, and evaluate.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_connectors::graph::{Group, User};
use grantline_connectors::servicenow::Ritm;
use grantline_connectors::{GraphClient, ServiceNowClient};
use grantline_queue::{Handoff, JobError, Write, WriteCmd};
use grantline_shared::JobKind;
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::Validate;
use grantline_shared::policy::{self, Decision, GroupFacts, Policy, Principal, RequestFacts, UserFacts};
use grantline_shared::receipt::CurrentState;

use super::{evidence, job_error};
use crate::record::{commit, handoff, load};
use crate::services::Services;

/// Variable names read from the catalog item (first match wins).
const TARGET_VARS: [&str; 3] = ["target", "group", "mailbox"];
const LEVEL_VARS: [&str; 2] = ["access", "level"];
const DURATION_VARS: [&str; 1] = ["duration"];
const END_VARS: [&str; 2] = ["end_date", "until"];
const AI_VARS: [&str; 1] = ["ai_suggested_target"];

fn first(vars: &std::collections::BTreeMap<String, String>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| vars.get(*n)).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn group_facts(g: &Group) -> GroupFacts {
    GroupFacts {
        id: g.id.clone(),
        display_name: g.display_name.clone(),
        group_types: g.group_types.clone(),
        mail_enabled: g.mail_enabled.unwrap_or(false),
        security_enabled: g.security_enabled.unwrap_or(false),
        is_assignable_to_role: g.is_assignable_to_role,
        membership_rule: g.membership_rule.clone(),
        on_premises_sync_enabled: g.on_premises_sync_enabled,
    }
}

/// A ServiceNow user reference resolved to a directory user: by email as UPN (members),
/// then by the `mail` property (B2B guests, whose UPN is the `#EXT#` form).
async fn directory_user(graph: &GraphClient, sn: &ServiceNowClient, sys_id: &str) -> Result<Option<User>, JobError> {
    let snu = sn.get_user(sys_id).await.map_err(job_error)?;
    let upn = if snu.email.is_empty() { snu.user_name.clone() } else { snu.email.clone() };
    if let Some(u) = graph.get_user(&upn).await.map_err(job_error)?.value {
        return Ok(Some(u));
    }
    if snu.email.contains('@') {
        return Ok(graph.find_user_by_mail(&snu.email).await.map_err(job_error)?.value);
    }
    Ok(None)
}

/// What a ticket asks for, resolved against the directory and evaluated under a policy.
/// Reads only: the validate step records it, `grantline policy explain --ticket` prints it.
pub struct Evaluated {
    pub ritm: Ritm,
    /// None when the person the access is for is not in the directory.
    pub facts: Option<RequestFacts>,
    pub decision: Option<Decision>,
    /// What the directory says of the access asked for today (the requester is already a
    /// member of the target group), with the read that says so.
    pub current: Option<CurrentState>,
}

pub async fn evaluate_ticket(
    graph: &GraphClient,
    sn: &ServiceNowClient,
    policy: &Policy,
    sys_id: &str,
    now: jiff::Timestamp,
) -> Result<Evaluated, JobError> {
    let ritm = sn.get_ritm(sys_id).await.map_err(job_error)?;
    let vars = sn.get_variables(&ritm.sys_id).await.map_err(job_error)?;
    let catalog_item = ritm.cat_item.as_ref().map(|c| c.display_value.clone()).unwrap_or_default();
    let requested_for = ritm.requested_for.as_ref().map(|r| r.value.clone()).unwrap_or_default();
    let opened_by = ritm.opened_by.as_ref().map(|r| r.value.clone()).filter(|v| !v.is_empty());
    let Some(user) = directory_user(graph, sn, &requested_for).await? else {
        return Ok(Evaluated { ritm, facts: None, decision: None, current: None });
    };
    let manager = graph.get_manager(&user.id).await.map_err(job_error)?.value;
    let opener = match opened_by.as_deref() {
        Some(o) if o != requested_for => {
            directory_user(graph, sn, o).await?.map(|u| Principal::new(u.id, Some(&u.user_principal_name)))
        }
        _ => None,
    };
    // the groups the policy's conditions ask about: checked one by one in Graph, so the
    // facts hold exactly what the rules need (no listing of every membership)
    let mut asked: Vec<String> = policy
        .rules()
        .iter()
        .map(|r| &r.when)
        .chain(policy.durations().iter().map(|d| &d.when))
        .flat_map(|m| m.requester_member_of.iter().cloned())
        .collect();
    asked.sort();
    asked.dedup();
    let mut member_of = Vec::new();
    for group in asked {
        if graph.is_member(&group, &user.id).await.map_err(job_error)?.value {
            member_of.push(group);
        }
    }
    let requester = UserFacts {
        id: user.id.clone(),
        upn: user.user_principal_name.clone(),
        display_name: user.display_name.clone(),
        user_type: user.user_type.clone().unwrap_or_else(|| "Member".into()),
        account_enabled: user.account_enabled.unwrap_or(false),
        employee_leave_date_time: user.employee_leave_date_time,
        manager_id: manager.as_ref().map(|m| m.id.clone()),
        manager_upn: manager.as_ref().and_then(|m| m.user_principal_name.clone()),
        member_of,
    };
    let mut facts = RequestFacts {
        now,
        requester,
        opened_by: opener,
        catalog_item,
        target: first(&vars, &TARGET_VARS),
        level: first(&vars, &LEVEL_VARS),
        duration: first(&vars, &DURATION_VARS),
        end: first(&vars, &END_VARS).and_then(|e| parse_date(&e)),
        ai_suggested_target: first(&vars, &AI_VARS),
        target_group: None,
    };
    // resolve the target first, then evaluate again with what the directory says of it
    let mut decision = policy::evaluate(&facts, policy);
    let mut current = None;
    if let Some(group_id) = decision.target.as_ref().and_then(|t| t.group_id.clone()) {
        // an unknown group keeps no facts, and the policy refuses a group without them
        if let Some(g) = graph.get_group(&group_id).await.map_err(job_error)?.value {
            facts.target_group = Some(group_facts(&g));
            decision = policy::evaluate(&facts, policy);
            let member = graph.is_member(&group_id, &user.id).await.map_err(job_error)?;
            let at_ms = grantline_shared::clock::ms(now);
            current = Some(CurrentState { present: member.value, evidence: evidence(&member.correlation, at_ms) });
        }
    }
    Ok(Evaluated { ritm, facts: Some(facts), decision: Some(decision), current })
}

pub async fn run(job: Validate, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let Some(rec) = load(&svc, JobKind::Validate, &job.request_id).await? else { return Ok(Handoff::done()) };
    let policy = svc.policy.get();
    let ev = evaluate_ticket(&svc.graph, &svc.servicenow, &policy, &rec.ticket.sys_id, svc.now()).await?;
    let ritm = &ev.ritm;
    let commit = commit(&svc, &rec, JobKind::Validate).event(AuditEvent::TicketRead {
        ticket: ritm.number.clone(),
        catalog_item: ritm.cat_item.as_ref().map(|c| c.display_value.clone()).unwrap_or_default(),
        requested_for: ritm.requested_for.as_ref().map(|r| r.display_value.clone()).unwrap_or_default(),
        opened_by: ritm.opened_by.as_ref().map(|r| r.display_value.clone()).unwrap_or_default(),
    });
    // the doorbell named a ticket by sys_id and number: they must be the same item, or the
    // delivery is refused and the ticket's key is freed for its genuine delivery
    if !ritm.number.eq_ignore_ascii_case(&rec.ticket.number) {
        let reason = format!(
            "the delivery named ticket {} but this item is {}; refused, nothing was granted",
            rec.ticket.number, ritm.number
        );
        return handoff(
            commit
                .event(AuditEvent::CheckEvaluated {
                    code: "ticket.number".into(),
                    passed: false,
                    reason: reason.clone(),
                })
                .set(|u| u.reason(&reason))
                .write(release_ticket_key(&rec))
                .outcome(Outcome::Cancelled),
        );
    }
    if let Some(reason) = ritm.closed_reason() {
        return handoff(
            commit
                .event(AuditEvent::CheckEvaluated { code: "ticket.open".into(), passed: false, reason: reason.clone() })
                .set(|u| u.reason(&format!("{reason}; nothing was granted")))
                .outcome(Outcome::Cancelled),
        );
    }
    let (Some(facts), Some(decision)) = (ev.facts, ev.decision) else {
        let reason = "the person the access is for was not found in the directory".to_owned();
        return handoff(
            commit
                .event(AuditEvent::CheckEvaluated {
                    code: "requester.exists".into(),
                    passed: false,
                    reason: reason.clone(),
                })
                .set(|u| u.reason(&reason))
                .outcome(Outcome::Denied),
        );
    };
    let checks = decision.checks.iter().map(|c| AuditEvent::CheckEvaluated {
        code: c.code.clone(),
        passed: c.status != policy::CheckStatus::Fail,
        reason: c.reason.clone(),
    });
    let allow = decision.is_allowed();
    let reason = if allow {
        decision.rule.clone().map(|r| format!("allowed by rule {r}")).unwrap_or_else(|| "allowed".into())
    } else {
        decision.failing().map(|c| c.reason.clone()).collect::<Vec<_>>().join("; ")
    };
    let target = decision.target.as_ref().map(|t| t.display_name.clone()).unwrap_or_default();
    let commit = commit
        .events(checks.collect::<Vec<_>>())
        .event(AuditEvent::DecisionMade {
            allow,
            policy_version: decision.policy_version.clone(),
            target: target.clone(),
            level: decision.level.map(|l| l.to_string()).unwrap_or_default(),
            reason: reason.clone(),
        })
        .set(|mut u| {
            u = u.requester(&facts.requester).decision(&decision).target(&target).reason(&reason);
            if let Some(o) = &facts.opened_by {
                u = u.opened_by(o);
            }
            if let Some(c) = &ev.current {
                u = u.current(c);
            }
            u
        });
    handoff(commit.outcome(if allow { Outcome::Allowed } else { Outcome::Denied }))
}

/// Frees the ticket's idempotency key (it names this request: a later delivery of the same
/// sys_id was answered as a duplicate of it), so the ticket's genuine delivery can make its
/// request.
fn release_ticket_key(rec: &grantline_shared::record::RequestRecord) -> Write {
    Write::new(WriteCmd::Del, rec.ticket.idempotency_key(), Vec::<String>::new())
}

/// A ticket date: RFC 3339, or a plain date (midnight UTC).
fn parse_date(s: &str) -> Option<jiff::Timestamp> {
    s.parse::<jiff::Timestamp>().ok().or_else(|| {
        s.parse::<jiff::civil::Date>()
            .ok()
            .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
            .map(|z| z.timestamp())
    })
}
