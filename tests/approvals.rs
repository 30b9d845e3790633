//! Approvals where approvers work, end to end: the real edge, workers and scheduler, the
//! simulators over HTTP. An approver answers on a Teams card or on their ServiceNow approval
//! record; every card, message and record is brought up to date after a decision; reminders,
//! escalation and expiry follow the clock; an approver out of office is passed over; a manager
//! who files for their contractor is routed to the fallback; a decision (in Teams, on the
//! approval record) on a ticket closed meanwhile ends the request cancelled and grants nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use grantline_shared::audit::AuditEvent;
use grantline_shared::request::RequestState;
use grantline_sims::botframework::Click;
use grantline_sims::{NewRitm, ids, snow_sys_id};
use serde_json::Value;
use support::*;

fn opts() -> StackOptions {
    StackOptions { chat: true, scheduler: Some(Duration::from_millis(100)), ..StackOptions::default() }
}

/// (service URL, conversation id, activity id) of a Teams notice.
fn teams_ref(n: &grantline_shared::record::Notice) -> (String, String, String) {
    let p: Vec<&str> = n.reference.splitn(3, '|').collect();
    (p[0].to_owned(), p[1].to_owned(), p[2].to_owned())
}

/// The card the user sees now on a Teams activity.
fn card(stack: &Stack, activity: &str) -> Value {
    stack.sims.botframework.state().activity(activity).and_then(|a| a.card().cloned()).expect("card")
}

fn has_buttons(card: &Value) -> bool {
    card.get("actions").and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

/// Every text a Teams user was sent, newest version of each activity.
fn teams_texts(stack: &Stack, user_id: &str) -> Vec<String> {
    let s = stack.sims.botframework.state();
    s.conversation_with(user_id)
        .map(|c| c.activities.iter().filter_map(|a| a.card().map(|c| c.to_string())).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teams_click_approves_replaces_the_cards_and_servicenow_shows_who_approved() {
    let stack = Stack::start_opts(opts()).await;
    stack.set_clock_to_finance_business_hours();
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_FINANCE_BI_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;

    // the data owner is asked in Teams and has an approval record in ServiceNow
    let teams = stack.notice(&id, "teams", ids::PATTI_ID, 0).await;
    let record = stack.notice(&id, "servicenow", ids::PATTI_ID, 0).await;
    assert_eq!(stack.approval_state(&number, &record.reference), "requested");
    let (_, conversation, activity) = teams_ref(&teams);
    let asked = card(&stack, &activity);
    assert!(has_buttons(&asked), "{asked:#}");
    assert!(asked.to_string().contains(&number) && asked.to_string().contains(ids::ALEX_UPN), "{asked:#}");
    let trail = stack.wait_event(&id, "approvers_notified").await;
    let notified = trail.iter().find_map(|r| match &r.event {
        AuditEvent::ApproversNotified { sent, .. } => Some(sent.clone()),
        _ => None,
    });
    let notified = notified.unwrap();
    assert!(notified.contains(&format!("teams:{}", ids::PATTI_UPN)), "{notified:?}");
    assert!(notified.contains(&format!("servicenow:{}", ids::PATTI_UPN)), "{notified:?}");

    // the requester clicking someone else's card counts for nothing
    let r = stack.sims.botframework.click(Click::new(ids::ALEX_UPN, &activity, "approve")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(stack.state(&id).await, Some(RequestState::AwaitingApproval));

    // Patti approves in Teams: the card is replaced for her at once
    let r = stack
        .sims
        .botframework
        .click(
            Click::new(ids::PATTI_UPN, &activity, "approve")
                .in_conversation(&conversation)
                .input("comment", "for the quarter close"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:#}", r.body);
    assert!(r.card_replaced, "{:#}", r.body);
    assert!(!has_buttons(&card(&stack, &activity)));
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    let approvals = stack.json_field(&id, grantline_shared::request::fields::APPROVALS).await;
    assert_eq!(approvals.as_array().unwrap().len(), 1, "{approvals:#}");
    assert_eq!(approvals[0]["via"], "teams");
    assert_eq!(approvals[0]["approver_id"], ids::PATTI_ID);
    assert_eq!(approvals[0]["comment"], "for the quarter close");
    let trail = stack.audit(&id).await;
    let recorded = trail.iter().find(|r| matches!(r.event, AuditEvent::ApprovalRecorded { .. })).unwrap();
    assert_eq!(recorded.actor, format!("approver:{}", ids::PATTI_ID));
    let refused = trail.iter().filter(|r| r.event.name() == "approval_refused").count();
    assert_eq!(refused, 1, "the requester's click is on the record");

    // ServiceNow shows who approved, in which door, with the comment
    stack.wait_approval_state(&number, &record.reference, "approved").await;
    let comments = stack.svc.servicenow.approval_comments(&record.reference).await.unwrap();
    assert!(
        comments.iter().any(|c| c.value.contains("Answered in teams") && c.value.contains("for the quarter close")),
        "{comments:#?}"
    );
    // the requester is told in Teams
    stack
        .wait_for("the requester told in Teams", WAIT, || async {
            teams_texts(&stack, ids::ALEX_ID).iter().any(|t| t.contains("approved")).then_some(())
        })
        .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_on_the_servicenow_approval_record_counts_and_updates_the_teams_card() {
    let stack = Stack::start_opts(opts()).await;
    // the contractor's manager (Patti) approves Team Alpha
    let (number, id) =
        stack.submit(NewRitm::new(&snow_sys_id(ids::CONTRACTOR_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let teams = stack.notice(&id, "teams", ids::PATTI_ID, 0).await;
    let record = stack.notice(&id, "servicenow", ids::PATTI_ID, 0).await;
    let (_, _, activity) = teams_ref(&teams);

    // someone who is not an approver acting on the record does not count
    let sara = stack.snow_user_name(ids::SARA_SNOW_SYS_ID);
    let patti = stack.snow_user_name(ids::PATTI_SNOW_SYS_ID);
    let delivery = stack.sims.servicenow.approve_in_ui(&record.reference, &sara, true, "looks fine").await.unwrap();
    assert_eq!(delivery.expect("the doorbell rang").status, 202);
    stack.wait_event(&id, "approval_refused").await;
    assert_eq!(stack.state(&id).await, Some(RequestState::AwaitingApproval));

    // set back to requested and answered by Patti herself
    stack.sims.servicenow.state().set_field("sysapproval_approver", &record.reference, "state", "requested").unwrap();
    let delivery =
        stack.sims.servicenow.approve_in_ui(&record.reference, &patti, true, "she starts Monday").await.unwrap();
    assert_eq!(delivery.expect("the doorbell rang").status, 202);
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    let approvals = stack.json_field(&id, grantline_shared::request::fields::APPROVALS).await;
    assert_eq!(approvals.as_array().unwrap().len(), 1, "{approvals:#}");
    assert_eq!(approvals[0]["via"], "servicenow");
    assert_eq!(approvals[0]["reference"], record.reference.as_str());
    assert_eq!(approvals[0]["comment"], "she starts Monday");
    assert_eq!(approvals[0]["approver_id"], ids::PATTI_ID);

    // the Teams card no longer asks, and says who decided
    stack
        .wait_for("the Teams card brought up to date", WAIT, || async {
            let c = card(&stack, &activity);
            (!has_buttons(&c) && c.to_string().contains("Approved by")).then_some(())
        })
        .await;
    assert_eq!(stack.approval_state(&number, &record.reference), "approved");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_then_escalation_then_expiry_follow_the_clock() {
    let stack = Stack::start_opts(opts()).await;
    let clock = stack.sims.clock().clone();
    // Send As on finance@: the manager and the mailbox owner, all of them, 72 h, then the
    // Access Governance group decides
    let (number, id) = stack
        .submit(
            NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_SHARED_MAILBOX_NAME)
                .variable("mailbox", ids::MAILBOX_FINANCE)
                .variable("access", "Send As")
                .variable("justification", "sending the month-end statements"),
        )
        .await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let sara = stack.notice(&id, "teams", ids::SARA_ID, 0).await;
    let patti_record = stack.notice(&id, "servicenow", ids::PATTI_ID, 0).await;
    stack.notice(&id, "teams", ids::PATTI_ID, 0).await;
    // Sara answers; Patti does not
    let (_, _, sara_activity) = teams_ref(&sara);
    let r = stack.sims.botframework.click(Click::new(ids::SARA_UPN, &sara_activity, "approve")).await.unwrap();
    assert_eq!(r.status, 200, "{:#}", r.body);
    stack.wait_event(&id, "approval_recorded").await;

    // half-time: Patti is reminded (a second card, a comment on her record); Sara is not
    clock.advance(Duration::from_secs(37 * 3600));
    let trail = stack.wait_event(&id, "approval_reminded").await;
    let reminded = trail
        .iter()
        .find_map(|r| match &r.event {
            AuditEvent::ApprovalReminded { to, percent, .. } => Some((to.clone(), *percent)),
            _ => None,
        })
        .unwrap();
    assert_eq!(reminded, (vec![ids::PATTI_ID.to_owned()], 50));
    stack
        .wait_for("a second card for Patti", WAIT, || async {
            let n = stack.notices(&id).await;
            (n.iter().filter(|n| n.channel == "teams" && n.to == ids::PATTI_ID).count() == 2).then_some(())
        })
        .await;
    assert_eq!(
        stack.notices(&id).await.iter().filter(|n| n.channel == "teams" && n.to == ids::SARA_ID).count(),
        1,
        "who answered is not reminded"
    );
    let comments = stack.svc.servicenow.approval_comments(&patti_record.reference).await.unwrap();
    assert!(comments.iter().any(|c| c.value.starts_with("Reminder:")), "{comments:#?}");

    // the deadline: the stage goes to Access Governance (Allan), with a fresh time to decide
    clock.advance(Duration::from_secs(36 * 3600));
    stack.wait_event(&id, "approval_escalated").await;
    let note = stack.wait_note(&number, "Approval escalated").await;
    assert!(note.contains("group 20000000-0000-4000-8000-000000000010"), "{note}");
    let allan = stack.notice(&id, "teams", ids::ALLAN_ID, 0).await;
    let (_, _, allan_activity) = teams_ref(&allan);
    assert!(has_buttons(&card(&stack, &allan_activity)));
    assert_eq!(stack.state(&id).await, Some(RequestState::AwaitingApproval));

    // nobody decides in the fallback's time either: the request expires
    clock.advance(Duration::from_secs(73 * 3600));
    stack.wait_state(&id, RequestState::Expired, WAIT).await;
    let note = stack.wait_note(&number, "Approval expired").await;
    assert!(note.contains("was not decided within"), "{note}");
    assert_eq!(stack.ritm_state(&number), "4", "closed incomplete");
    // every card stops asking, every open approval record is closed, the requester is told
    stack
        .wait_for("cards and records closed", WAIT, || async {
            let notices = stack.notices(&id).await;
            let cards_closed =
                notices.iter().filter(|n| n.channel == "teams").all(|n| !has_buttons(&card(&stack, &teams_ref(n).2)));
            let records_closed = notices.iter().filter(|n| n.channel == "servicenow").all(|n| {
                let s = stack.approval_state(&number, &n.reference);
                s == "no_longer_required" || s == "approved"
            });
            let told = teams_texts(&stack, ids::ALEX_ID).iter().any(|t| t.contains("expired"));
            (cards_closed && records_closed && told).then_some(())
        })
        .await;
    assert!(!stack.sims.exchange.state().has_send_as(ids::MAILBOX_FINANCE, ids::ALEX_UPN), "nothing was granted");
    // the old card has no button left to click
    assert!(stack.sims.botframework.click(Click::new(ids::ALLAN_UPN, &allan_activity, "approve")).await.is_err());
    assert_eq!(stack.state(&id).await, Some(RequestState::Expired));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_out_of_office_is_passed_over_to_the_fallback() {
    let stack = Stack::start_opts(opts()).await;
    stack.set_clock_to_finance_business_hours();
    let now = stack.sims.clock().now();
    stack
        .sims
        .graph
        .state()
        .set_out_of_office(
            ids::PATTI_UPN,
            now - jiff::SignedDuration::from_hours(1),
            now + jiff::SignedDuration::from_hours(24 * 7),
            "Away until next week",
        )
        .unwrap();
    let (_, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_FINANCE_BI_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    // Allan (Access Governance) is asked instead of Patti
    let allan = stack.notice(&id, "teams", ids::ALLAN_ID, 0).await;
    let trail = stack.wait_event(&id, "approver_skipped").await;
    let skipped = trail.iter().find_map(|r| match &r.event {
        AuditEvent::ApproverSkipped { approver, reason, .. } => Some((approver.clone(), reason.clone())),
        _ => None,
    });
    let (who, why) = skipped.unwrap();
    assert!(who.eq_ignore_ascii_case(ids::PATTI_UPN) && why.contains("out of office"), "{who}: {why}");
    assert!(stack.notices(&id).await.iter().all(|n| n.to != ids::PATTI_ID), "Patti is not asked");
    // the plan on record says so, and Allan's answer counts
    let decision = stack.json_field(&id, grantline_shared::request::fields::DECISION).await;
    assert_eq!(decision["approval"]["stages"][0]["approvers"][0]["via_fallback"], true, "{decision:#}");
    let (_, _, activity) = teams_ref(&allan);
    let r = stack.sims.botframework.click(Click::new(ids::ALLAN_UPN, &activity, "approve")).await.unwrap();
    assert_eq!(r.status, 200, "{:#}", r.body);
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_who_files_for_their_contractor_cannot_approve_and_the_fallback_is_asked() {
    let stack = Stack::start_opts(opts()).await;
    let (number, id) = stack
        .submit(
            NewRitm::new(&snow_sys_id(ids::CONTRACTOR_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)
                .opened_by(&snow_sys_id(ids::PATTI_ID)),
        )
        .await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    // the only eligible approver filed the ticket: the stage goes to its fallback, and the
    // ticket says why
    let note = stack.wait_note(&number, "Waiting for approval").await;
    assert!(note.contains("fallback"), "{note}");
    let allan = stack.notice(&id, "teams", ids::ALLAN_ID, 0).await;
    assert!(stack.notices(&id).await.iter().all(|n| n.to != ids::PATTI_ID), "the filer is not asked");
    // Patti answering anyway is refused and audited
    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("approval.self_approval")), "{body}");
    let (_, _, activity) = teams_ref(&allan);
    let r = stack.sims.botframework.click(Click::new(ids::ALLAN_UPN, &activity, "approve")).await.unwrap();
    assert_eq!(r.status, 200, "{:#}", r.body);
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_doorbell_the_scheduler_reads_approval_records_back() {
    let stack = Stack::start_opts(opts()).await;
    stack.sims.servicenow.set_approval_webhook(None);
    let (_, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::CONTRACTOR_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let record = stack.notice(&id, "servicenow", ids::PATTI_ID, 0).await;
    let patti = stack.snow_user_name(ids::PATTI_SNOW_SYS_ID);
    let rang = stack.sims.servicenow.approve_in_ui(&record.reference, &patti, true, "ok").await.unwrap();
    assert!(rang.is_none(), "no doorbell is configured");
    // the bounded poll (every second here) finds the answer
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    let approvals = stack.json_field(&id, grantline_shared::request::fields::APPROVALS).await;
    assert_eq!(approvals[0]["via"], "servicenow");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_no_chat_reaches_gets_a_signed_link_in_their_approval_record() {
    let stack = Stack::start_opts(StackOptions { links: true, ..StackOptions::default() }).await;
    stack.set_clock_to_finance_business_hours();
    let (_, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_FINANCE_BI_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let link = stack.notice(&id, "link", ids::PATTI_ID, 0).await;
    let record = stack.notice(&id, "servicenow", ids::PATTI_ID, 0).await;
    // the record's first comment carries the link; the notice names it by its nonce only
    let comments = stack.svc.servicenow.approval_comments(&record.reference).await.unwrap();
    let text = comments.iter().map(|c| c.value.clone()).collect::<Vec<_>>().join("\n");
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with("https://grantline.example.com/v1/approvals/"))
        .unwrap_or_else(|| panic!("no link in {text}"));
    let token = url.rsplit('/').next().unwrap();
    assert!(!link.reference.contains(token));
    let claims =
        grantline_shared::link::verify(LINK_SECRET.as_bytes(), token, stack.svc.clock.now_ms()).expect("a valid link");
    assert_eq!((claims.request_id.as_str(), claims.stage, claims.approver.as_str()), (id.as_str(), 0, ids::PATTI_ID));
    assert_eq!(claims.nonce, link.reference);
    // it expires with the stage's time to decide (5 days for financial data)
    let asked: u64 = stack.record(&id).await[grantline_shared::request::fields::ASKED_MS].parse().unwrap();
    assert_eq!(claims.exp_ms, asked + 5 * 86_400_000);
    stack.shutdown().await;
}

/// A decision that arrives, by any door, after the ticket was closed in ServiceNow: the
/// approval is recorded, but the request ends cancelled with the reason, nothing reaches Graph
/// and the ticket keeps the state its owner gave it.
async fn assert_cancelled_untouched(stack: &Stack, number: &str, id: &str, closed: &grantline_sims::RitmView) {
    let rec = stack.wait_state(id, RequestState::Cancelled, WAIT).await;
    let reason = &rec[grantline_shared::request::fields::REASON];
    assert!(reason.contains(number) && reason.contains("nothing was granted"), "{reason}");
    let trail = stack.audit(id).await;
    let names: Vec<&str> = trail.iter().map(|r| r.event.name()).collect();
    assert!(names.contains(&"approval_recorded"), "the decision counted: {names:?}");
    assert!(!names.contains(&"grant_executed"), "{names:?}");
    let adds = stack.sims.graph.requests().into_iter().filter(|r| r.method == "POST" && r.path.contains("/members"));
    assert_eq!(adds.count(), 0, "no membership write reached Graph");
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::CONTRACTOR_ID));
    stack.wait_queue_idle("update-ticket", true).await;
    let after = stack.sims.servicenow.state().ritm(number).unwrap();
    assert_eq!(
        (after.state.as_str(), after.active.as_str()),
        (closed.state.as_str(), closed.active.as_str()),
        "the ticket's state was not overwritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teams_approval_of_a_withdrawn_ticket_ends_cancelled_and_grants_nothing() {
    let stack = Stack::start_opts(opts()).await;
    let (number, id) =
        stack.submit(NewRitm::new(&snow_sys_id(ids::CONTRACTOR_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let teams = stack.notice(&id, "teams", ids::PATTI_ID, 0).await;
    // the contractor withdraws the ticket (closed skipped) while the card waits
    let who = stack.snow_user_name(&snow_sys_id(ids::CONTRACTOR_ID));
    stack.sims.servicenow.state().close_ritm(&number, "7", &who).unwrap();
    let closed = stack.sims.servicenow.state().ritm(&number).unwrap();

    let (_, conversation, activity) = teams_ref(&teams);
    let r = stack
        .sims
        .botframework
        .click(Click::new(ids::PATTI_UPN, &activity, "approve").in_conversation(&conversation))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:#}", r.body);
    assert_cancelled_untouched(&stack, &number, &id, &closed).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_record_answered_after_the_item_was_closed_ends_cancelled_and_grants_nothing() {
    let stack = Stack::start_opts(opts()).await;
    let (number, id) =
        stack.submit(NewRitm::new(&snow_sys_id(ids::CONTRACTOR_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let record = stack.notice(&id, "servicenow", ids::PATTI_ID, 0).await;
    // a fulfiller closes the item incomplete; Patti then approves her approval record
    stack.sims.servicenow.state().close_ritm(&number, "4", "admin").unwrap();
    let closed = stack.sims.servicenow.state().ritm(&number).unwrap();
    let patti = stack.snow_user_name(ids::PATTI_SNOW_SYS_ID);
    let delivery = stack.sims.servicenow.approve_in_ui(&record.reference, &patti, true, "ok").await.unwrap();
    assert_eq!(delivery.expect("the doorbell rang").status, 202);
    assert_cancelled_untouched(&stack, &number, &id, &closed).await;
    let approvals = stack.json_field(&id, grantline_shared::request::fields::APPROVALS).await;
    assert_eq!(approvals[0]["via"], "servicenow");
    stack.shutdown().await;
}

/// Send As on finance@ needs the requester's manager (Sara) and the mailbox owner, whom the
/// policy names by UPN (PattiF@contoso.com). Every answer is resolved through the directory
/// before it is compared, so the requester answering with the object id Teams gives them is
/// refused as self, Sara answering once by UPN and once by object id is one approver (the
/// all-of stage still waits), and Patti answering by object id is the owner the plan names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_is_one_approver_whether_named_by_upn_or_by_object_id() {
    let stack = Stack::start_opts(opts()).await;
    stack.set_clock_to_finance_business_hours();
    let ritm = NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_SHARED_MAILBOX_NAME)
        .variable("mailbox", ids::MAILBOX_FINANCE)
        .variable("access", "Send As");
    let (_, id) = stack.submit(ritm).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let decision = stack.json_field(&id, "decision").await;
    assert_eq!(decision["rule"], "send-as-needs-manager-and-owner");

    // the requester, whom the ticket names by their ServiceNow user (mapped to a UPN), clicks
    // a card in Teams: the click carries their object id, and it is self-approval
    let patti_card = stack.notice(&id, "teams", ids::PATTI_ID, 0).await;
    let (_, _, activity) = teams_ref(&patti_card);
    let r = stack.sims.botframework.click(Click::new(ids::ALEX_UPN, &activity, "approve")).await.unwrap();
    assert_eq!(r.status, 200);
    let trail = stack.wait_event(&id, "approval_refused").await;
    let refused: Vec<(String, Option<String>, String)> = trail
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::ApprovalRefused { approver_id, door, reason, .. } => {
                Some((door.clone(), approver_id.clone(), reason.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        [("teams".to_owned(), Some(ids::ALEX_ID.to_owned()), "approval.self_approval".to_owned())],
        "refused as self, not merely as someone who is not an approver"
    );
    // and by object id through the operator API, the same
    let (status, body) = stack.decide(&id, ids::ALEX_ID, true).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("approval.self_approval")), "{body}");

    // Sara by UPN, then Sara by object id: one person, one approval; the stage still waits
    let (status, body) = stack.decide(&id, ids::SARA_UPN, true).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("counted")), "{body}");
    let (status, body) = stack.decide(&id, ids::SARA_ID, true).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("counted")), "{body}");
    assert_eq!(stack.state(&id).await, Some(RequestState::AwaitingApproval), "Sara twice is not both approvers");
    let approvals = stack.json_field(&id, grantline_shared::request::fields::APPROVALS).await;
    let ids_recorded: Vec<&str> =
        approvals.as_array().unwrap().iter().map(|a| a["approver_id"].as_str().unwrap()).collect();
    assert_eq!(ids_recorded, [ids::SARA_ID, ids::SARA_ID], "both answers bound to her directory id");

    // Patti by object id is the owner the policy names by UPN
    let (status, body) = stack.decide(&id, ids::PATTI_ID, true).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("approved")), "{body}");
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    assert!(stack.sims.exchange.state().has_send_as(ids::MAILBOX_FINANCE, ids::ALEX_UPN));
    stack.shutdown().await;
}

/// The fallback approvers are the group Access Governance; Isaiah belongs to it only through
/// a nested group ("Access Governance deputies"). He is asked, and his approval counts: group
/// approvers are matched by transitive membership (`transitiveMembers` to ask,
/// `checkMemberGroups` to judge). Someone in neither group is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_a_nested_group_approves_for_a_group_approver() {
    const DEPUTIES: &str = "20000000-0000-4000-8000-0000000000d1";
    let mut tenant = grantline_sims::Tenant::demo();
    tenant.groups.push(grantline_sims::Group::security(DEPUTIES, "Access Governance deputies", "ag-deputies"));
    tenant.memberships.push((ids::GROUP_ACCESS_GOVERNANCE.to_owned(), DEPUTIES.to_owned()));
    tenant.memberships.push((DEPUTIES.to_owned(), ids::ISAIAH_ID.to_owned()));
    let sims = grantline_sims::SimsConfig { tenant, ..grantline_sims::SimsConfig::demo() };
    let stack = Stack::start_opts(StackOptions { sims, ..opts() }).await;
    // the manager files for her contractor: the stage goes to the fallback group
    let (_, id) = stack
        .submit(
            NewRitm::new(&snow_sys_id(ids::CONTRACTOR_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)
                .opened_by(&snow_sys_id(ids::PATTI_ID)),
        )
        .await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    stack.notice(&id, "teams", ids::ALLAN_ID, 0).await;
    stack.notice(&id, "servicenow", ids::ISAIAH_ID, 0).await;
    assert!(
        stack.notices(&id).await.iter().all(|n| n.to != DEPUTIES),
        "the nested group itself is not a person to ask"
    );

    let (status, body) = stack.decide(&id, ids::SARA_UPN, true).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("approval.not_an_approver")), "{body}");
    let (status, body) = stack.decide(&id, ids::ISAIAH_UPN, true).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("approved")), "{body}");
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    let approvals = stack.json_field(&id, grantline_shared::request::fields::APPROVALS).await;
    assert_eq!(approvals[0]["approver_id"], ids::ISAIAH_ID);
    assert_eq!(approvals[0]["member_of"], serde_json::json!([ids::GROUP_ACCESS_GOVERNANCE]));
    stack.shutdown().await;
}
