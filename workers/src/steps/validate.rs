//! validate: the webhook was only a doorbell. Read the requested item and its variables
//! back from ServiceNow, resolve the people in Graph, resolve the target through the
//! policy, read the target group's facts, note an existing membership, and evaluate.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_connectors::graph::Group;
use grantline_connectors::servicenow::Ritm;
use grantline_connectors::{GraphClient, ServiceNowClient};
use grantline_queue::{Handoff, JobError, Write, WriteCmd};
use grantline_shared::JobKind;
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::Validate;
use grantline_shared::policy::{
    self, AccessLevel, Decision, GroupFacts, MailboxFacts, Policy, Principal, RequestFacts, TargetKind, UserFacts,
};
use grantline_shared::receipt::CurrentState;

use super::{evidence, job_error};
use crate::budget::Budget;
use crate::executor::mailbox::READ_ONLY_FOLDERS;
use crate::executor::{Access, MailboxExecutor};
use crate::record::{commit, handoff, load};
use crate::services::Services;

/// Variable names read from the catalog item (first match wins).
const TARGET_VARS: [&str; 3] = ["target", "group", "mailbox"];
const LEVEL_VARS: [&str; 2] = ["access", "level"];
const DURATION_VARS: [&str; 1] = ["duration"];
const END_VARS: [&str; 2] = ["end_date", "until"];
const AI_VARS: [&str; 1] = ["ai_suggested_target"];
/// The characters of a justification kept on the record (approvers see it on the card).
const MAX_JUSTIFICATION: usize = 1000;
const JUSTIFICATION_VARS: [&str; 3] = ["justification", "business_justification", "reason"];

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

/// The address a ServiceNow user is known by in the directory: their email (a member's UPN),
/// else their user name.
fn directory_name(u: &grantline_connectors::servicenow::ServiceNowUser) -> String {
    if u.email.is_empty() { u.user_name.clone() } else { u.email.clone() }
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
    /// The business justification the ticket gives.
    pub justification: Option<String>,
}

/// The groups the policy's conditions ask about: the facts hold exactly what the rules need
/// (no listing of every membership).
fn asked_groups(policy: &Policy) -> Vec<String> {
    let mut asked: Vec<String> = policy
        .rules()
        .iter()
        .map(|r| &r.when)
        .chain(policy.durations().iter().map(|d| &d.when))
        .chain(policy.windows().iter().map(|w| &w.when))
        .flat_map(|m| m.requester_member_of.iter().cloned())
        .collect();
    asked.sort();
    asked.dedup();
    asked
}

/// Reads the ticket (item, variables, people) from ServiceNow and everything the policy needs
/// from the directory in one Graph call (a `$batch`: the user, their manager, the groups the
/// conditions name, the target group and the user's direct membership of it), then evaluates.
/// With a `budget`, the directory read is counted against the tenant's read budget and a
/// refusal pauses every reader.
/// What validate reads with: the directory, the ticket system, the mailbox executor (for
/// mailbox targets) and, in a worker, the tenant's read budget.
#[derive(Clone, Copy)]
pub struct Readers<'a> {
    pub graph: &'a GraphClient,
    pub servicenow: &'a ServiceNowClient,
    pub mailboxes: Option<&'a MailboxExecutor>,
    pub budget: Option<&'a Budget>,
}

pub async fn evaluate_ticket(
    readers: Readers<'_>,
    policy: &Policy,
    sys_id: &str,
    now: jiff::Timestamp,
) -> Result<Evaluated, JobError> {
    let Readers { graph, servicenow: sn, mailboxes, budget } = readers;
    let ritm = sn.get_ritm(sys_id).await.map_err(job_error)?;
    let vars = sn.get_variables(&ritm.sys_id).await.map_err(job_error)?;
    let catalog_item = ritm.cat_item.as_ref().map(|c| c.display_value.clone()).unwrap_or_default();
    let requested_for = ritm.requested_for.as_ref().map(|r| r.value.clone()).unwrap_or_default();
    let opened_by = ritm.opened_by.as_ref().map(|r| r.value.clone()).filter(|v| !v.is_empty() && *v != requested_for);
    let snu = sn.get_user(&requested_for).await.map_err(job_error)?;
    let filer = match &opened_by {
        Some(o) => Some(sn.get_user(o).await.map_err(job_error)?),
        None => None,
    };
    let target_var = first(&vars, &TARGET_VARS);
    let justification = first(&vars, &JUSTIFICATION_VARS);
    let ai_var = first(&vars, &AI_VARS);
    let target = policy::ticket_target(policy, &catalog_item, target_var.as_deref(), ai_var.as_deref());
    let group_id = target.and_then(|t| t.group_id()).map(str::to_owned);
    let asked = asked_groups(policy);
    let read = |upn: String| {
        let (asked, group_id, other) = (asked.clone(), group_id.clone(), filer.as_ref().map(directory_name));
        async move {
            if let Some(b) = budget {
                // user, manager, checkMemberGroups (4), group, direct membership, filer
                b.read(&format!("validate:{sys_id}"), 9).await?;
            }
            match graph.directory_facts(&upn, &asked, group_id.as_deref(), other.as_deref()).await {
                Ok(r) => Ok(r),
                Err(e) => Err(graph_read_failure(e, budget).await),
            }
        }
    };
    let mut dir = read(directory_name(&snu)).await?;
    if dir.value.user.is_none() && snu.email.contains('@') {
        // a B2B guest: their UPN is the #EXT# form; find them by the mail the ITSM knows
        if let Some(guest) = graph.find_user_by_mail(&snu.email).await.map_err(job_error)?.value {
            dir = read(guest.user_principal_name.clone()).await?;
        }
    }
    let at_ms = grantline_shared::clock::ms(now);
    let correlation = dir.correlation.clone();
    let d = dir.value;
    let Some(user) = d.user else {
        return Ok(Evaluated { ritm, facts: None, decision: None, current: None, justification });
    };
    // the manager's manager, only for a policy that may ask them
    let managers_manager = match (&d.manager, policy.uses_managers_manager()) {
        (Some(m), true) => graph
            .get_manager(&m.id)
            .await
            .map_err(job_error)?
            .value
            .map(|mm| policy::Principal::new(&mm.id, mm.user_principal_name.as_deref())),
        _ => None,
    };
    let requester = UserFacts {
        id: user.id.clone(),
        upn: user.user_principal_name.clone(),
        display_name: user.display_name.clone(),
        user_type: user.user_type.clone().unwrap_or_else(|| "Member".into()),
        account_enabled: user.account_enabled.unwrap_or(false),
        employee_leave_date_time: user.employee_leave_date_time,
        manager_id: d.manager.as_ref().map(|m| m.id.clone()),
        manager_upn: d.manager.as_ref().and_then(|m| m.user_principal_name.clone()),
        managers_manager,
        member_of: asked.iter().filter(|g| d.member_of.iter().any(|m| m.eq_ignore_ascii_case(g))).cloned().collect(),
    };
    let level = first(&vars, &LEVEL_VARS);
    // a mailbox target: what Exchange says of it, and whether the person already has the level
    let mut target_mailbox = None;
    let mut current_mailbox = None;
    if let (Some(t), Some(exo)) = (target, mailboxes)
        && let Some(address) = t.mailbox_address()
        && let Some(m) = exo.mailbox(address).await?
    {
        target_mailbox = Some(MailboxFacts {
            address: m.address.clone(),
            recipient_type_details: m.recipient_type_details.clone(),
            display_name: Some(m.display_name.clone()),
        });
        let wanted =
            level.as_deref().and_then(AccessLevel::from_ticket).filter(|l| l.target_kind() == TargetKind::Mailbox);
        if let Some(level) = wanted {
            let access = Access::Mailbox {
                address: address.to_owned(),
                name: t.display_name.clone(),
                user_id: requester.id.clone(),
                user_upn: requester.upn.clone(),
                user_display: requester.display_name.clone(),
                level,
                automapping: true,
                folders: if level == AccessLevel::ReadOnly {
                    READ_ONLY_FOLDERS.iter().map(|f| (*f).to_owned()).collect()
                } else {
                    Vec::new()
                },
            };
            let found = exo.check(&access).await?;
            current_mailbox = Some(CurrentState { present: found.present, evidence: found.evidence });
        }
    }
    let facts = RequestFacts {
        now,
        requester,
        opened_by: d.other.map(|u| Principal::new(u.id, Some(&u.user_principal_name))),
        catalog_item,
        target: target_var,
        level,
        duration: first(&vars, &DURATION_VARS),
        end: first(&vars, &END_VARS).and_then(|e| parse_date(&e, policy)),
        ai_suggested_target: ai_var,
        // an unknown group or mailbox keeps no facts, and the policy refuses a target without them
        target_group: d.group.as_ref().map(group_facts),
        target_mailbox,
    };
    let decision = policy::evaluate(&facts, policy);
    let current = match (&d.group, d.direct_member) {
        (Some(_), Some(present)) => Some(CurrentState { present, evidence: evidence(&correlation, at_ms) }),
        _ => current_mailbox,
    };
    Ok(Evaluated { ritm, facts: Some(facts), decision: Some(decision), current, justification })
}

/// What the evaluation did not find upstream, if anything: the person (no directory user), the
/// target group (its facts are missing), or the target mailbox (when Exchange is configured).
fn not_found(ev: &Evaluated, exchange: bool) -> Option<String> {
    let Some(decision) = &ev.decision else {
        return Some("the person the access is for".to_owned());
    };
    let failed = |code: &str| decision.checks.iter().any(|c| c.code == code && c.status == policy::CheckStatus::Fail);
    let target = decision.target.as_ref();
    if failed(policy::codes::GROUP_FACTS) {
        return Some(format!("group {}", target.and_then(|t| t.group_id.as_deref()).unwrap_or("?")));
    }
    if exchange && failed(policy::codes::MAILBOX_FACTS) {
        return Some(format!("mailbox {}", target.and_then(|t| t.mailbox_address.as_deref()).unwrap_or("?")));
    }
    None
}

/// A failed directory read: a refusal pauses the tenant's readers and waits; anything else is
/// classified where it was born.
async fn graph_read_failure(e: grantline_connectors::GraphError, budget: Option<&Budget>) -> JobError {
    match (e.status(), budget) {
        (Some(429), Some(b)) => {
            let after = match &e {
                grantline_connectors::GraphError::Api { retry_after, .. } => *retry_after,
                _ => None,
            };
            b.refused(false, e.throttle_scope(), after).await
        }
        _ => job_error(e),
    }
}

pub async fn run(job: Validate, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let Some(rec) = load(&svc, JobKind::Validate, &job.request_id).await? else { return Ok(Handoff::done()) };
    let policy = svc.policy.get();
    let readers = Readers {
        graph: &svc.graph,
        servicenow: &svc.servicenow,
        mailboxes: svc.executors.mailbox.as_ref(),
        budget: Some(&svc.graph_budget),
    };
    let ev = evaluate_ticket(readers, &policy, &rec.ticket.sys_id, svc.now()).await?;
    let ritm = &ev.ritm;
    let commit = commit(&svc, &rec, JobKind::Validate).event(AuditEvent::TicketRead {
        ticket: ritm.number.clone(),
        catalog_item: ritm.cat_item.as_ref().map(|c| c.display_value.clone()).unwrap_or_default(),
        requested_for: ritm.requested_for.as_ref().map(|r| r.display_value.clone()).unwrap_or_default(),
        opened_by: ritm.opened_by.as_ref().map(|r| r.display_value.clone()).unwrap_or_default(),
        justification: ev.justification.clone(),
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
    // a person, group or mailbox not found moments after the request may not have replicated
    // yet (apis.md 2.9): asked again within executors.not_found_grace_secs, spending no attempt
    let mut still_missing = String::new();
    if let Some(missing) = not_found(&ev, svc.executors.mailbox.is_some()) {
        let grace = svc.executors.not_found_grace;
        let now_ms = svc.now_ms();
        let elapsed = now_ms.saturating_sub(rec.created_ms) / 1000;
        if let Some(after) = super::replication_wait(grace, rec.created_ms, now_ms) {
            tracing::info!(request_id = %rec.id, elapsed_secs = elapsed, "{missing} not found yet; it may not have replicated");
            return Err(JobError::wait(
                "directory.not_found",
                format!(
                    "{missing} not found {elapsed} s after the request was made; asked again as replication for up to {} s",
                    grace.as_secs()
                ),
                after,
            ));
        }
        if !grace.is_zero() {
            still_missing = format!(" (still not found {elapsed} s after the request was made)");
        }
    }
    let (Some(facts), Some(decision)) = (ev.facts, ev.decision) else {
        let reason = format!("the person the access is for was not found in the directory{still_missing}");
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
        decision.failing().map(|c| c.reason.clone()).collect::<Vec<_>>().join("; ") + &still_missing
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
            if let Some(j) = ev.justification.as_deref().map(str::trim).filter(|j| !j.is_empty()) {
                u = u.justification(&j.chars().take(MAX_JUSTIFICATION).collect::<String>());
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

/// A ticket date: RFC 3339, or a plain date, which means access until the end of that day in
/// the policy's time zone.
fn parse_date(s: &str, policy: &Policy) -> Option<jiff::Timestamp> {
    s.parse::<jiff::Timestamp>().ok().or_else(|| s.parse::<jiff::civil::Date>().ok().and_then(|d| policy.end_of_day(d)))
}

#[cfg(test)]
mod date_tests {
    use super::*;

    fn policy() -> Policy {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/policy.toml");
        grantline_shared::policy::load_file(path).unwrap()
    }

    #[test]
    fn a_plain_end_date_lasts_through_that_day_in_the_policy_time_zone() {
        let p = policy();
        // deploy/policy.toml reads plain dates in Europe/Amsterdam (CET in March, CEST in July)
        assert_eq!(parse_date("2027-03-02", &p), Some("2027-03-02T23:00:00Z".parse().unwrap()));
        assert_eq!(parse_date("2027-07-01", &p), Some("2027-07-01T22:00:00Z".parse().unwrap()));
        assert_eq!(
            parse_date("2027-03-02T12:00:00Z", &p),
            Some("2027-03-02T12:00:00Z".parse().unwrap()),
            "an instant is taken as is"
        );
        assert_eq!(parse_date("next tuesday", &p), None);
    }
}
