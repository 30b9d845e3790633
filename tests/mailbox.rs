//! Shared-mailbox access end to end: a ServiceNow ticket becomes a policy-checked,
//! approval-gated, verified Exchange Online permission, written back to the ticket and removed
//! at expiry, through the real connectors and the Exchange simulator over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use grantline_shared::audit::AuditEvent;
use grantline_shared::request::RequestState;
use grantline_sims::{FaultRule, LoggedRequest, Method, NewRitm, ids, snow_sys_id};
use support::{Stack, TempDir, WAIT, WAIT_EXPIRY, failing_checks};

const INVOKE: &str = "/adminapi/beta/*/InvokeCommand";

fn mailbox_ticket(user_id: &str, mailbox: &str, level: &str) -> NewRitm {
    NewRitm::new(&snow_sys_id(user_id), ids::CAT_ITEM_SHARED_MAILBOX_NAME)
        .variable("mailbox", mailbox)
        .variable("access", level)
        .variable("justification", "covering the team's inbox while they are away")
}

/// The cmdlets Exchange was asked to run, in order, with their status.
fn cmdlets(stack: &Stack) -> Vec<(String, u16)> {
    stack
        .sims
        .exchange
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/InvokeCommand"))
        .map(|r: &LoggedRequest| {
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            (v["CmdletInput"]["CmdletName"].as_str().unwrap_or_default().to_owned(), r.status)
        })
        .collect()
}

fn writes(stack: &Stack) -> Vec<(String, u16)> {
    cmdlets(stack).into_iter().filter(|(c, _)| !c.starts_with("Get-")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_as_on_finance_needs_the_manager_and_the_owner_and_is_removed_at_expiry() {
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    let ritm = mailbox_ticket(ids::ALEX_ID, ids::MAILBOX_FINANCE, "Send As").variable("duration", "4s");
    let (number, id) = stack.submit(ritm).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let decision = stack.json_field(&id, "decision").await;
    assert_eq!(decision["rule"], "send-as-needs-manager-and-owner");
    assert!(!stack.sims.exchange.state().has_send_as(ids::MAILBOX_FINANCE, ids::ALEX_UPN));
    // the justification is on the trail
    let trail = stack.audit(&id).await;
    assert!(
        trail.iter().any(
            |r| matches!(&r.event, AuditEvent::TicketRead { justification: Some(j), .. } if j.contains("covering"))
        )
    );

    // one approval is not enough: the stage needs both the manager and the mailbox owner
    let (status, body) = stack.decide(&id, ids::SARA_UPN, true).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("counted")), "{body}");
    assert!(writes(&stack).is_empty(), "nothing granted before both approvals");
    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("approved")), "{body}");

    let rec = stack.wait_state(&id, RequestState::Active, WAIT).await;
    assert!(stack.sims.exchange.state().has_send_as(ids::MAILBOX_FINANCE, ids::ALEX_UPN));
    let grant = stack.json_field(&id, "grant").await;
    assert_eq!((grant["kind"].as_str(), grant["level"].as_str()), (Some("mailbox"), Some("send-as")));
    assert_eq!(grant["pre_existing"], false);
    assert!(grant["evidence"]["client_request_id"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(rec.contains_key("end_ms"));
    let note = stack.wait_note(&number, "Granted and verified").await;
    for needle in [ids::ALEX_UPN, "Finance", "Send As", ids::SARA_UPN, ids::PATTI_UPN, "Exchange request-id"] {
        assert!(note.contains(needle), "the note lacks {needle:?}: {note}");
    }
    assert_eq!(stack.ritm_state(&number), "3");
    assert_eq!(writes(&stack), [("Add-RecipientPermission".to_owned(), 200)]);

    // at expiry the permission grantline added is removed, and the removal verified
    stack.wait_state(&id, RequestState::Removed, WAIT_EXPIRY).await;
    assert!(!stack.sims.exchange.state().has_send_as(ids::MAILBOX_FINANCE, ids::ALEX_UPN));
    assert!(writes(&stack).contains(&("Remove-RecipientPermission".to_owned(), 200)));
    stack.wait_note(&number, "removed and verified").await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_whose_commit_loses_a_race_is_committed_again_without_a_second_write() {
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    let ritm = mailbox_ticket(ids::ALEX_ID, ids::MAILBOX_FINANCE, "Send As");
    let (_, id) = stack.submit(ritm).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let (status, _) = stack.decide(&id, ids::SARA_UPN, true).await;
    assert_eq!(status, 200);
    // the write is held up; while it is, another writer of the record moves its audit trail on
    stack.sims.exchange.faults().push(FaultRule::delay(Duration::from_secs(3)).on(Method::POST, INVOKE).times(1));
    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("approved")), "{body}");
    stack
        .wait_for("the write to be under way", WAIT, || async {
            stack.sims.exchange.faults().pending().is_empty().then_some(())
        })
        .await;
    assert_eq!(stack.state(&id).await, Some(RequestState::Approved), "the grant is still being written");
    stack.commit_concurrently(&id).await;

    // the grant's commit finds the trail moved and the step runs again: it commits what the first
    // attempt found and did, and Exchange is not written to a second time
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    let m = stack.metrics("execute-grant").await;
    assert!(
        m.conflicted_total >= 1 && m.retried_total == 0,
        "the commit lost the race, and no attempt was spent: {m:?}"
    );
    assert_eq!(writes(&stack), [("Add-RecipientPermission".to_owned(), 200)]);
    let add = stack.sims.exchange.requests().into_iter().find(|r| r.body.contains("Add-RecipientPermission")).unwrap();
    let grant = stack.json_field(&id, "grant").await;
    assert_eq!(grant["evidence"]["client_request_id"].as_str(), add.header("client-request-id"), "{grant:#}");
    assert_eq!(grant["pre_existing"], false);
    let granted: Vec<bool> = stack
        .audit(&id)
        .await
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::PermissionGranted { before_present, .. } => Some(*before_present),
            _ => None,
        })
        .collect();
    assert_eq!(granted, [false], "one grant, of a permission that was not there");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helpdesk_read_only_is_auto_approved_for_the_helpdesk_group_and_not_for_others() {
    let stack = Stack::start().await;
    let (number, id) = stack.submit(mailbox_ticket(ids::MEGAN_ID, ids::MAILBOX_HELPDESK, "read-only")).await;
    stack.wait_state(&id, RequestState::Completed, WAIT).await;
    let ex = stack.sims.exchange.state();
    for folder in ["", "Inbox"] {
        let rights = ex.folder_rights(ids::MAILBOX_HELPDESK, folder, ids::MEGAN_UPN).unwrap_or_default();
        assert_eq!(rights, ["Reviewer"], "folder {folder:?}");
    }
    let rec = stack.record(&id).await;
    assert_eq!(rec["reason"], "auto-approved by rule helpdesk-reads-support-mailboxes");
    let grant = stack.json_field(&id, "grant").await;
    assert_eq!(grant["folders"], serde_json::json!(["", "Inbox"]));
    assert_eq!(stack.ritm_state(&number), "3", "the ticket is closed complete");
    let names = stack.audit_events(&id).await;
    for e in ["ticket_read", "decision_made", "approval_recorded", "permission_granted", "ticket_updated"] {
        assert!(names.contains(&e), "{e} missing from {names:?}");
    }

    // the same request from someone outside the Helpdesk group needs the mailbox owner
    let (_, other) = stack.submit(mailbox_ticket(ids::ISAIAH_ID, ids::MAILBOX_HELPDESK, "read-only")).await;
    stack.wait_state(&other, RequestState::AwaitingApproval, WAIT).await;
    assert_eq!(stack.json_field(&other, "decision").await["rule"], "mailbox-access-needs-owner");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_that_already_exists_is_not_written_and_never_removed() {
    let stack = Stack::start().await;
    // Adele already has Reviewer on helpdesk@ (top and Inbox); the owner approves her request
    let ritm = mailbox_ticket(ids::ADELE_ID, ids::MAILBOX_HELPDESK, "read-only").variable("duration", "3s");
    let (number, id) = stack.submit(ritm).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let (status, body) = stack.decide(&id, ids::ALLAN_UPN, true).await;
    assert_eq!(status, 200, "{body}");
    stack.wait_state(&id, RequestState::Removed, WAIT_EXPIRY).await;
    assert!(writes(&stack).is_empty(), "no write at all: {:?}", writes(&stack));
    let grant = stack.json_field(&id, "grant").await;
    assert_eq!(grant["pre_existing"], true);
    let ex = stack.sims.exchange.state();
    for folder in ["", "Inbox"] {
        assert_eq!(ex.folder_rights(ids::MAILBOX_HELPDESK, folder, ids::ADELE_UPN).unwrap_or_default(), ["Reviewer"]);
    }
    let note = stack.wait_note(&number, "Access period ended").await;
    assert!(note.contains("kept (it existed before this request)"), "{note}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_the_mailbox_does_not_offer_is_denied() {
    let stack = Stack::start().await;
    let (number, id) = stack.submit(mailbox_ticket(ids::MEGAN_ID, ids::MAILBOX_HELPDESK, "Send As")).await;
    stack.wait_state(&id, RequestState::Denied, WAIT).await;
    assert_eq!(failing_checks(&stack.json_field(&id, "decision").await), ["level.allowed"]);
    stack.wait_note(&number, "Access denied by policy").await;
    assert_eq!(stack.ritm_state(&number), "4");
    assert!(writes(&stack).is_empty());
    stack.shutdown().await;
}

/// The example policy plus two mailboxes Exchange will not confirm: one it does not have, one
/// that is a person's own mailbox, not a shared one.
fn policy_with_unconfirmed_mailboxes(dir: &TempDir) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(support::POLICY).unwrap();
    text = text.replace(
        r#"targets = ["finance@contoso.com", "helpdesk@contoso.com"]"#,
        r#"targets = ["finance@contoso.com", "helpdesk@contoso.com", "ghost@contoso.com", "sarad@contoso.com"]"#,
    );
    text.push_str(
        r#"
[mailboxes."ghost@contoso.com"]
type = "shared"
display_name = "Ghost"
tags = ["support-owned"]
levels = ["read-only"]
owners.mailbox = ["AllanD@contoso.com"]

[mailboxes."sarad@contoso.com"]
type = "shared"
display_name = "Sara's mailbox, declared shared by mistake"
tags = ["support-owned"]
levels = ["read-only"]
owners.mailbox = ["AllanD@contoso.com"]
"#,
    );
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_exchange_does_not_have_or_that_is_not_shared_is_refused() {
    let dir = TempDir::new("mailboxes");
    let stack = Stack::start_with(policy_with_unconfirmed_mailboxes(&dir)).await;
    let (n1, missing) = stack.submit(mailbox_ticket(ids::MEGAN_ID, "ghost@contoso.com", "read-only")).await;
    let (n2, personal) = stack.submit(mailbox_ticket(ids::MEGAN_ID, "sarad@contoso.com", "read-only")).await;
    stack.wait_state(&personal, RequestState::Denied, WAIT).await;
    // a mailbox Exchange does not know may be one not replicated yet: asked for again within
    // executors.not_found_grace_secs, then refused
    stack
        .wait_for("validate to wait for the mailbox", WAIT, || async {
            (stack.metrics("validate").await.waited_total >= 1).then_some(())
        })
        .await;
    assert_eq!(stack.state(&missing).await, Some(RequestState::Received));
    let grace = grantline_workers::ExecutorSettings::default().not_found_grace_secs;
    stack.sims.clock().advance(std::time::Duration::from_secs(grace + 1));
    stack.wait_state(&missing, RequestState::Denied, WAIT).await;
    assert_eq!(failing_checks(&stack.json_field(&missing, "decision").await), ["mailbox.facts"]);
    assert_eq!(failing_checks(&stack.json_field(&personal, "decision").await), ["mailbox.type"]);
    let note = stack.wait_note(&n1, "Access denied").await;
    assert!(note.contains("not found in Exchange Online") && note.contains("still not found"), "{note}");
    assert!(stack.wait_note(&n2, "Access denied").await.contains("UserMailbox"));
    assert!(writes(&stack).is_empty());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_throttling_is_waited_out_and_the_grant_completes() {
    let stack = Stack::start().await;
    stack
        .sims
        .exchange
        .faults()
        .push(FaultRule::respond(429).on(Method::POST, INVOKE).header("Retry-After", "1").times(2));
    let (_, id) = stack.submit(mailbox_ticket(ids::MEGAN_ID, ids::MAILBOX_HELPDESK, "read-only")).await;
    stack.wait_state(&id, RequestState::Completed, WAIT).await;
    assert_eq!(cmdlets(&stack).iter().filter(|(_, s)| *s == 429).count(), 2);
    let dead: u64 =
        [stack.metrics("validate").await.dead_total, stack.metrics("execute-grant").await.dead_total].iter().sum();
    assert_eq!(dead, 0);
    let waited = stack.metrics("validate").await.waited_total + stack.metrics("execute-grant").await.waited_total;
    assert_eq!(waited, 2, "each refusal made its job wait, no attempt spent");
    assert!(
        stack
            .sims
            .exchange
            .state()
            .folder_rights(ids::MAILBOX_HELPDESK, "Inbox", ids::MEGAN_UPN)
            .is_some_and(|r| r == ["Reviewer"])
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_exchange_failure_goes_to_manual_intervention() {
    let stack = Stack::start().await;
    let (number, id) = stack.submit(mailbox_ticket(ids::ISAIAH_ID, ids::MAILBOX_HELPDESK, "read-only")).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    // Exchange now refuses every cmdlet with its empty-bodied 403 (no RBAC role)
    stack.sims.exchange.set_rbac_missing(true);
    let (status, body) = stack.decide(&id, ids::ALLAN_UPN, true).await;
    assert_eq!(status, 200, "{body}");
    let rec = stack.wait_state(&id, RequestState::Failed, WAIT).await;
    assert!(rec["reason"].contains("exchange.forbidden"), "{rec:#?}");
    let note = stack.wait_note(&number, "Manual intervention needed").await;
    assert!(note.contains("RBAC"), "{note}");
    assert_eq!(stack.ritm_state(&number), "2", "back to work in progress for a person");
    let letters = stack.queue.dead_letters("execute-grant", None, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, "permanent failure");
    stack.shutdown().await;
}
