//! End to end: ServiceNow simulator → webhook → ingest → workers → Graph simulator → ticket.
//! The paths that grant: auto-approval, human approval (and its refusals), an existing
//! membership, one request per ticket however often it is delivered, and removal at expiry.
//! Denials, bad input and Graph failures are in `e2e_failures.rs`; several worker processes in
//! `e2e_processes.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use grantline_shared::audit::AuditEvent;
use grantline_shared::request::{RequestState, fields, keys};
use grantline_sims::{NewRitm, ids, snow_sys_id};
use redis::AsyncCommands;
use support::{Stack, WAIT, WAIT_EXPIRY};

fn ms_text(ms: &str) -> String {
    jiff::Timestamp::from_millisecond(ms.parse().unwrap()).unwrap().to_string()
}

/// The audit event names with the run of check results folded into one entry.
/// The chain's events with repeated checks folded into one; the notices of approvers (sent
/// alongside the chain, at a moment that depends on timing) are left out.
fn steps(events: &[&'static str]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for e in events {
        if (*e == "check_evaluated" && out.last() == Some(&"check_evaluated")) || *e == "approvers_notified" {
            continue;
        }
        out.push(e);
    }
    out
}

/// Graph `POST .../members/$ref` calls the simulator answered.
fn member_adds(stack: &Stack) -> usize {
    stack.sims.graph.requests().iter().filter(|r| r.method == "POST" && r.path.contains("/members/")).count()
}

fn member_removals(stack: &Stack) -> usize {
    stack.sims.graph.requests().iter().filter(|r| r.method == "DELETE").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helpdesk_agent_joins_team_alpha_auto_approved_verified_and_noted() {
    let stack = Stack::start().await;
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    let rec = stack.wait_state(&id, RequestState::Active, WAIT).await;

    // Graph: one membership, added by this request
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 1);
    assert_eq!(member_adds(&stack), 1);

    // Redis: the decision, the grant receipt and the scheduled end
    let decision = stack.json_field(&id, fields::DECISION).await;
    assert_eq!(decision["outcome"], "allow");
    assert_eq!(decision["rule"], "helpdesk-joins-team-alpha");
    let version = decision["policy_version"].as_str().unwrap().to_owned();
    assert!(!version.is_empty());
    let grant = stack.json_field(&id, fields::GRANT).await;
    assert_eq!(grant["group_id"], ids::GROUP_TEAM_ALPHA);
    assert_eq!(grant["user_id"], ids::MEGAN_ID);
    assert_eq!(grant["pre_existing"], false);
    assert_eq!(grant["kind"], "group");
    let graph_request_id = grant["evidence"]["request_id"].as_str().expect("Graph request-id").to_owned();
    let client_request_id = grant["evidence"]["client_request_id"].as_str().unwrap().to_owned();
    assert!(!graph_request_id.is_empty() && !client_request_id.is_empty());
    let end_ms: u64 = rec[fields::END_MS].parse().unwrap();
    let granted_ms = grant["granted_ms"].as_u64().unwrap();
    assert_eq!(end_ms - granted_ms, 180 * 86_400_000, "the group-membership default of 180 days");
    assert_eq!(rec[fields::REASON], "auto-approved by rule helpdesk-joins-team-alpha");

    // the audit trail, chained, in the order of the steps
    let trail = stack.audit(&id).await;
    let names: Vec<&str> = trail.iter().map(|r| r.event.name()).collect();
    assert_eq!(
        steps(&names),
        [
            "request_received",
            "ticket_read",
            "check_evaluated",
            "decision_made",
            "approval_recorded",
            "grant_executed",
            "ticket_updated",
            "removal_scheduled"
        ]
    );
    let executed = trail.iter().find_map(|r| match &r.event {
        AuditEvent::GrantExecuted {
            before_member,
            after_member,
            pre_existing,
            graph_request_id: g,
            client_request_id: c,
            ..
        } => Some((*before_member, *after_member, *pre_existing, g.clone(), c.clone())),
        _ => None,
    });
    assert_eq!(executed, Some((false, true, false, Some(graph_request_id.clone()), client_request_id.clone())));
    assert!(trail.iter().any(
        |r| matches!(&r.event, AuditEvent::ApprovalRecorded { approver, approve: true, .. } if approver == "policy")
    ));
    assert!(
        trail
            .iter()
            .any(|r| matches!(&r.event, AuditEvent::RemovalScheduled { remove_at_ms } if *remove_at_ms == end_ms))
    );

    // removal: a delayed remove-access job and an entry in the expiring-grants index
    let removal = stack.metrics("remove-access").await;
    assert_eq!((removal.enqueued_total, removal.delayed), (1, 1), "{removal:?}");
    let mut conn = stack.queue.connection();
    let score: Option<f64> = conn.zscore(stack.queue.namespace().key(keys::EXPIRING), &id).await.unwrap();
    assert_eq!(score.map(|s| s as u64), Some(end_ms));

    // the ticket: closed complete, with what, to whom, policy, expiry, approval and correlation
    assert_eq!(stack.ritm_state(&number), "3");
    let note = stack.wait_note(&number, "Granted and verified").await;
    for needle in [
        ids::MEGAN_UPN,
        "Team Alpha",
        ids::GROUP_TEAM_ALPHA,
        version.as_str(),
        "auto-approved by rule helpdesk-joins-team-alpha",
        graph_request_id.as_str(),
        client_request_id.as_str(),
        &format!("Expiry: {}", ms_text(&end_ms.to_string())),
    ] {
        assert!(note.contains(needle), "the note lacks {needle:?}: {note}");
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_owner_approves_finance_bi_and_the_requester_cannot() {
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_FINANCE_BI_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let asked = stack.wait_note(&number, "Waiting for approval").await;
    assert!(asked.contains("data owner") && asked.contains(ids::PATTI_UPN), "{asked}");
    // the note is on the ticket before the step records it: the trail's order below needs both
    stack.wait_event(&id, "ticket_updated").await;
    let ritm = stack.sims.servicenow.state().ritm(&number).unwrap();
    assert_eq!(
        (ritm.approval.as_str(), ritm.stage.as_str(), ritm.state.as_str()),
        ("requested", "waiting_for_approval", "1")
    );

    // the requester approving their own request is refused, by UPN or by id, and changes nothing
    let before = stack.record(&id).await;
    for who in [ids::ALEX_UPN, ids::ALEX_ID] {
        let (status, body) = stack.decide(&id, who, true).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["code"], "approval.self_approval");
    }
    // someone who is not an approver is refused too
    let (status, body) = stack.decide(&id, ids::ISAIAH_UPN, true).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("approval.not_an_approver")), "{body}");
    let after = stack.record(&id).await;
    assert_eq!(after[fields::STATE], "awaiting_approval");
    assert!(!after.contains_key(fields::APPROVALS), "no approval was recorded: {after:#?}");
    assert_eq!(before[fields::DECISION], after[fields::DECISION]);
    assert_eq!(stack.metrics("execute-grant").await.enqueued_total, 0);
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID));
    let refused = stack.audit(&id).await;
    let refusals: Vec<_> = refused.iter().filter(|r| r.event.name() == "approval_refused").collect();
    assert_eq!(refusals.len(), 3, "{refused:#?}");
    // the operator who recorded them is the actor; the reason names why
    assert!(refusals.iter().all(|r| r.actor == "operator:e2e"), "{refusals:#?}");
    let reasons: Vec<String> = refusals
        .iter()
        .map(|r| match &r.event {
            grantline_shared::audit::AuditEvent::ApprovalRefused { reason, .. } => reason.clone(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(reasons, ["approval.self_approval", "approval.self_approval", "approval.not_an_approver"]);

    // the data owner approves
    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["outcome"].as_str(), body["state"].as_str()), (Some("approved"), Some("approved")));
    let rec = stack.wait_state(&id, RequestState::Active, WAIT).await;
    assert_eq!(stack.memberships(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID), 1);
    let grant = stack.json_field(&id, fields::GRANT).await;
    assert_eq!(grant["pre_existing"], false);
    let approvals = stack.json_field(&id, fields::APPROVALS).await;
    assert_eq!(approvals.as_array().unwrap().len(), 1);
    assert_eq!(approvals[0]["approver"], ids::PATTI_UPN);
    let end_ms: u64 = rec[fields::END_MS].parse().unwrap();
    assert_eq!(end_ms - grant["granted_ms"].as_u64().unwrap(), 90 * 86_400_000, "financial data: 90 days");

    let trail = stack.audit(&id).await;
    let names: Vec<&str> = trail.iter().map(|r| r.event.name()).collect();
    assert_eq!(
        steps(&names),
        [
            "request_received",
            "ticket_read",
            "check_evaluated",
            "decision_made",
            "approval_requested",
            "ticket_updated",
            "approval_refused",
            "approval_refused",
            "approval_refused",
            "approval_recorded",
            "grant_executed",
            "ticket_updated",
            "removal_scheduled"
        ]
    );
    let approval = trail.iter().find(|r| matches!(&r.event, AuditEvent::ApprovalRecorded { .. })).unwrap();
    assert_eq!(approval.actor, "operator:e2e");

    assert_eq!(stack.ritm_state(&number), "3");
    let note = stack.wait_note(&number, "Granted and verified").await;
    for needle in
        [ids::ALEX_UPN, "Finance BI Readers", ids::PATTI_UPN, grant["evidence"]["client_request_id"].as_str().unwrap()]
    {
        assert!(note.contains(needle), "the note lacks {needle:?}: {note}");
    }
    // a second decision after the fact changes nothing
    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("request.not_awaiting_approval")), "{body}");
    assert_eq!(stack.metrics("execute-grant").await.enqueued_total, 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_closes_the_ticket_incomplete_and_grants_nothing() {
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_FINANCE_BI_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    stack.wait_note(&number, "Waiting for approval").await;

    let (status, body) = stack.decide(&id, ids::PATTI_UPN, false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["outcome"].as_str(), body["state"].as_str()), (Some("rejected"), Some("rejected")));
    stack.wait_state(&id, RequestState::Rejected, WAIT).await;
    let note = stack.wait_note(&number, "rejected").await;
    assert!(note.contains(ids::PATTI_UPN), "the note names who rejected: {note}");
    assert!(!note.contains("allowed by rule"), "a rejection does not read as an allowance: {note}");
    let ritm = stack.sims.servicenow.state().ritm(&number).unwrap();
    assert_eq!((ritm.state.as_str(), ritm.approval.as_str()), ("4", "rejected"));

    assert!(!stack.sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID));
    assert_eq!(member_adds(&stack), 0);
    assert_eq!(stack.metrics("execute-grant").await.enqueued_total, 0);
    let trail = stack.audit(&id).await;
    assert!(trail.iter().any(|r| matches!(&r.event, AuditEvent::ApprovalRecorded { approve: false, approver, .. } if approver == ids::PATTI_UPN)));
    assert!(!trail.iter().any(|r| r.event.name() == "grant_executed"));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_membership_is_recorded_as_pre_existing() {
    let stack = Stack::start().await;
    assert!(stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::ADELE_ID), "seed: Adele is in Team Alpha");
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::ADELE_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    // Team Alpha needs the manager's approval: Sara is Adele's manager (by directory id here)
    let (status, body) = stack.decide(&id, ids::SARA_ID, true).await;
    assert_eq!(status, 200, "{body}");
    stack.wait_state(&id, RequestState::Active, WAIT).await;

    let grant = stack.json_field(&id, fields::GRANT).await;
    assert_eq!(grant["pre_existing"], true, "{grant:#}");
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::ADELE_ID), 1, "one membership, not two");
    let trail = stack.audit(&id).await;
    assert!(trail.iter().any(|r| matches!(
        &r.event,
        AuditEvent::GrantExecuted { before_member: true, after_member: true, pre_existing: true, .. }
    )));
    assert_eq!(stack.ritm_state(&number), "3");
    let note = stack.wait_note(&number, "Granted and verified").await;
    assert!(note.contains("already existed") && note.contains("will not be removed"), "{note}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_ticket_delivered_five_times_at_once_is_one_grant() {
    let stack = Stack::start().await;
    let created = stack
        .sims
        .servicenow
        .state()
        .create_ritm(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME))
        .unwrap();
    let rings = (0..5).map(|_| stack.ring(&created.sys_id, &created.number));
    let request_ids: std::collections::HashSet<String> = futures::future::join_all(rings).await.into_iter().collect();
    assert_eq!(request_ids.len(), 1, "one request for one ticket: {request_ids:?}");
    let id = request_ids.into_iter().next().unwrap();
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    stack.wait_note(&created.number, "Granted and verified").await;

    for (queue, n) in
        [("validate", 1), ("request-approval", 1), ("execute-grant", 1), ("schedule-removal", 1), ("remove-access", 1)]
    {
        let m = stack.metrics(queue).await;
        assert_eq!(m.enqueued_total, n, "{queue}: {m:?}");
    }
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 1);
    assert_eq!(member_adds(&stack), 1, "one membership write in Graph");
    let trail = stack.audit(&id).await;
    assert_eq!(trail.iter().filter(|r| r.event.name() == "request_received").count(), 1);
    assert_eq!(trail.iter().filter(|r| r.event.name() == "grant_executed").count(), 1);
    let mut conn = stack.queue.connection();
    let requests: u64 = conn.zcard(stack.queue.namespace().key(keys::REQUESTS)).await.unwrap();
    assert_eq!(requests, 1);
    let notes = stack.work_notes(&created.number);
    assert_eq!(notes.iter().filter(|n| n.contains("Granted and verified")).count(), 1, "{notes:#?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_grant_is_removed_at_expiry() {
    let stack = Stack::start().await;
    let ritm = NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME).variable("duration", "5s");
    let (number, id) = stack.submit(ritm).await;
    let rec = stack.wait_state(&id, RequestState::Active, WAIT).await;
    let grant = stack.json_field(&id, fields::GRANT).await;
    let end_ms: u64 = rec[fields::END_MS].parse().unwrap();
    assert_eq!(end_ms - grant["granted_ms"].as_u64().unwrap(), 5_000, "the requested 5s is honoured");
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 1);
    let granted = stack.wait_note(&number, "Granted and verified").await;
    assert!(granted.contains(&format!("Expiry: {}", ms_text(&end_ms.to_string()))), "{granted}");

    stack.wait_state(&id, RequestState::Removed, WAIT_EXPIRY).await;
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 0, "the membership is gone");
    assert_eq!(member_removals(&stack), 1);
    let trail = stack.audit(&id).await;
    let removal = trail.iter().find(|r| r.event.name() == "removal_executed").expect("removal audited");
    assert!(removal.at_ms >= end_ms, "not removed before its end ({} < {end_ms})", removal.at_ms);
    assert!(
        matches!(
            &removal.event,
            AuditEvent::RemovalExecuted { removed: true, kept_pre_existing: false, trigger, .. } if trigger == "expiry"
        ),
        "{removal:?}"
    );
    let note = stack.wait_note(&number, "Access period ended").await;
    assert!(
        note.contains("in Team Alpha") && note.contains("removed and verified") && note.contains(ids::MEGAN_UPN),
        "{note}"
    );
    let mut conn = stack.queue.connection();
    let score: Option<f64> = conn.zscore(stack.queue.namespace().key(keys::EXPIRING), &id).await.unwrap();
    assert_eq!(score, None, "no longer in the expiring-grants index");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_existing_membership_is_kept_at_expiry() {
    let stack = Stack::start().await;
    let ritm = NewRitm::new(&snow_sys_id(ids::ADELE_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME).variable("duration", "5s");
    let (number, id) = stack.submit(ritm).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let (status, body) = stack.decide(&id, ids::SARA_ID, true).await;
    assert_eq!(status, 200, "{body}");
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    assert_eq!(stack.json_field(&id, fields::GRANT).await["pre_existing"], true);

    stack.wait_state(&id, RequestState::Removed, WAIT_EXPIRY).await;
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::ADELE_ID), 1, "the membership that existed before stays");
    assert_eq!(member_removals(&stack), 0, "no removal was even attempted");
    let trail = stack.audit(&id).await;
    assert!(
        trail
            .iter()
            .any(|r| matches!(&r.event, AuditEvent::RemovalExecuted { removed: false, kept_pre_existing: true, .. }))
    );
    let note = stack.wait_note(&number, "Access period ended").await;
    assert!(note.contains("in Team Alpha") && note.contains("kept (it existed before this request)"), "{note}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_approves_by_upn_and_the_grant_ends_on_the_leave_date() {
    let stack = Stack::start().await;
    let (number, id) =
        stack.submit(NewRitm::new(&snow_sys_id(ids::CONTRACTOR_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    // Patti is the contractor's manager; a chat callback may carry her UPN rather than her id
    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!(status, 200, "{body}");
    let rec = stack.wait_state(&id, RequestState::Active, WAIT).await;
    let leave = stack.sims.graph.state().user(ids::CONTRACTOR_ID).unwrap().employee_leave_date_time.unwrap();
    let end: i64 = rec[fields::END_MS].parse().unwrap();
    assert_eq!(end, leave.as_millisecond(), "the grant ends on the contractor's leave date");
    let note = stack.wait_note(&number, "Granted and verified").await;
    assert!(note.contains("the requester's leave date"), "the ticket says why it ends then: {note}");
    assert!(note.contains(ids::PATTI_UPN), "and who approved: {note}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_two_requests_rely_on_stays_until_the_last_one_ends() {
    let stack = Stack::start().await;
    let team_alpha = |duration: &str| {
        NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME).variable("duration", duration)
    };
    let (short_number, short) = stack.submit(team_alpha("5s")).await;
    let (_, long) = stack.submit(team_alpha("30d")).await;
    stack.wait_state(&long, RequestState::Active, WAIT).await;
    stack.wait_state(&short, RequestState::Removed, WAIT_EXPIRY).await;
    // the short grant ended, but the long one still needs the membership
    assert!(stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), "still a member");
    let trail = stack.audit(&short).await;
    assert!(
        trail.iter().any(|r| matches!(&r.event, AuditEvent::RemovalExecuted { removed: false, kept_for, .. } if kept_for.contains(&long))),
        "the removal was kept for the other request"
    );
    let note = stack.wait_note(&short_number, "Access period ended").await;
    assert!(note.contains("still needed by request") && note.contains(&long), "{note}");
    assert_eq!(member_removals(&stack), 0, "no DELETE reached Graph");
    stack.shutdown().await;
}
