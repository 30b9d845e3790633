//! End to end, compensation: a step that fails for good after the grant. The ticket refuses
//! grantline's write-back (a ServiceNow ACL: 403 on the item's PATCH), so update-ticket is
//! dead-lettered, on-call is paged and rollback-grant removes what grantline added, never a
//! membership that was there before; the ticket is asked for manual intervention with the
//! reason when it can be written, and the reason is on the trail when it cannot. A removal that
//! fails during compensation, or one Graph accepts but never shows, is a critical dead letter,
//! paged on the critical route. Each test checks the directory, the ticket, the audit trail and
//! the page.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use grantline_shared::audit::{AuditEvent, AuditRecord};
use grantline_shared::jobs::LetterClosed;
use grantline_shared::request::{RequestState, fields};
use grantline_sims::paging::DEMO_ROUTING_KEY;
use grantline_sims::{FaultRule, LoggedRequest, Method, NewRitm, ids, snow_sys_id};
use support::{Stack, WAIT};

const MEMBER_DELETE: &str = "/v1.0/groups/*/members/*/$ref";

/// Creates the item, makes ServiceNow refuse every PATCH of it `times` times (None: for good)
/// and rings the webhook. Returns (ticket, sys_id, request id).
async fn submit_refusing_write_back(stack: &Stack, ritm: NewRitm, times: Option<u32>) -> (String, String, String) {
    let created = stack.sims.servicenow.state().create_ritm(ritm).unwrap();
    refuse_write_back(stack, &created.sys_id, times);
    let id = stack.ring(&created.sys_id, &created.number).await;
    (created.number, created.sys_id, id)
}

/// A ServiceNow ACL on the item: its PATCH is answered 403.
fn refuse_write_back(stack: &Stack, sys_id: &str, times: Option<u32>) {
    let rule = FaultRule::respond(403).on(Method::PATCH, format!("/api/now/table/sc_req_item/{sys_id}"));
    stack.sims.servicenow.faults().push(match times {
        Some(n) => rule.times(n),
        None => rule.forever(),
    });
}

fn graph_calls(stack: &Stack, method: &str, needle: &str) -> Vec<LoggedRequest> {
    stack.sims.graph.requests().into_iter().filter(|r| r.method == method && r.path.contains(needle)).collect()
}

/// The PATCHes of the item ServiceNow logged, with the status it answered.
fn ritm_patches(stack: &Stack, sys_id: &str) -> Vec<LoggedRequest> {
    stack.sims.servicenow.requests().into_iter().filter(|r| r.method == "PATCH" && r.path.ends_with(sys_id)).collect()
}

fn position(trail: &[AuditRecord], what: impl Fn(&AuditEvent) -> bool) -> Option<usize> {
    trail.iter().position(|r| what(&r.event))
}

/// The incidents the paging simulator holds for a request.
fn incidents_of(stack: &Stack, id: &str) -> Vec<grantline_sims::paging::Alert> {
    stack.incidents().into_iter().filter(|a| a.custom_details["request_id"] == id).collect()
}

/// Megan (not in Team Alpha) is auto-approved and granted; the ticket refuses every write, the
/// grant's note and the manual-intervention note alike. Compensation removes the membership
/// grantline added; the reason is recorded on the trail, the ticket is left as it was, and
/// on-call is paged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_back_removes_the_membership_grantline_added() {
    let stack = Stack::start().await;
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID));
    let ritm = NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME);
    let (number, sys_id, id) = submit_refusing_write_back(&stack, ritm, None).await;
    let rec = stack.wait_state(&id, RequestState::RolledBack, WAIT).await;
    stack.wait_queue_idle("update-ticket", true).await;
    stack.wait_queue_idle("alert", false).await;

    // the directory: added, then removed again with /$ref, and verified gone
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID));
    let adds = graph_calls(&stack, "POST", "/members/$ref");
    assert_eq!(adds.iter().map(|r| r.status).collect::<Vec<_>>(), [204], "{adds:#?}");
    let deletes = graph_calls(&stack, "DELETE", "/members/");
    assert_eq!(deletes.iter().map(|r| r.status).collect::<Vec<_>>(), [204], "{deletes:#?}");
    assert!(deletes[0].path.ends_with(&format!("/members/{}/$ref", ids::MEGAN_ID)), "{}", deletes[0].path);
    let grant = stack.json_field(&id, fields::GRANT).await;
    assert_eq!(grant["pre_existing"], false);
    let removal = stack.json_field(&id, fields::REMOVAL).await;
    assert_eq!((removal["removed"].as_bool(), removal["trigger"].as_str()), (Some(true), Some("compensation")));
    let key = grantline_shared::receipt::access_key_group(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID);
    assert!(grantline_workers::membership::holders(&stack.queue, &key).await.unwrap().is_empty(), "no holder left");

    // the reason says what failed and what was undone
    let reason = &rec[fields::REASON];
    assert!(reason.contains("update-ticket failed for good") && reason.contains("servicenow."), "{reason}");
    assert!(reason.contains("compensated") && reason.contains("removed again"), "{reason}");

    // the trail: granted, the write-back dead-lettered, compensated, the refused note recorded, paged
    let trail = stack.audit(&id).await;
    let granted = position(&trail, |e| matches!(e, AuditEvent::GrantExecuted { pre_existing: false, .. })).unwrap();
    let dead = position(&trail, |e| matches!(e, AuditEvent::DeadLettered { queue, .. } if queue == "update-ticket"))
        .unwrap_or_else(|| panic!("{trail:#?}"));
    let compensated = position(&trail, |e| matches!(e, AuditEvent::Compensated { removed: true, .. }))
        .unwrap_or_else(|| panic!("{trail:#?}"));
    let refused = position(&trail, |e| {
        matches!(e, AuditEvent::StepFailed { kind, message, .. }
            if kind == "update-ticket" && message.contains("manual-intervention") && message.contains("compensated"))
    })
    .unwrap_or_else(|| panic!("the refused manual-intervention note is on the trail: {trail:#?}"));
    assert!(granted < dead && dead < compensated && compensated < refused, "{trail:#?}");
    assert!(trail.iter().any(|r| matches!(&r.event, AuditEvent::Paged { queue, .. } if queue == "update-ticket")));
    assert!(!trail.iter().any(|r| r.event.name() == "ticket_updated"), "nothing reached the ticket");

    // the ticket: both writes were refused, so it is as its owner left it
    let patches = ritm_patches(&stack, &sys_id);
    assert_eq!(patches.iter().map(|r| r.status).collect::<Vec<_>>(), [403, 403], "{patches:#?}");
    assert!(stack.work_notes(&number).is_empty());
    assert_eq!(stack.ritm_state(&number), "1");

    // one dead letter, one page: the refused manual-intervention note pages nobody again
    let letters = stack.queue.dead_letters("update-ticket", None, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert!(stack.queue.dead_letters("rollback-grant", None, 10).await.unwrap().is_empty());
    let pages = incidents_of(&stack, &id);
    assert_eq!(pages.len(), 1, "{pages:#?}");
    assert_eq!(pages[0].custom_details["queue"], "update-ticket");
    assert_eq!((pages[0].routing_key.as_str(), pages[0].severity.as_str()), (DEMO_ROUTING_KEY, "error"));
    assert!(pages[0].summary.contains(&number), "{}", pages[0].summary);
    stack.shutdown().await;
}

/// The manual-intervention note is refused while another writer moves the request on: the
/// step's commit loses the race and runs again, and the ticket is not asked a second time (the
/// refusal an attempt met is kept for its commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_whose_commit_loses_a_race_is_not_sent_again() {
    let stack = Stack::start().await;
    let ritm = NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME);
    let (_, sys_id, id) = submit_refusing_write_back(&stack, ritm, None).await;
    // once the grant's note is on its way, every later ServiceNow call takes a second
    stack
        .wait_for("the grant's note", WAIT, || async { (!ritm_patches(&stack, &sys_id).is_empty()).then_some(()) })
        .await;
    stack.sims.servicenow.faults().set_latency(Duration::from_millis(1500));
    // the manual-intervention note is in flight: another writer commits first
    stack
        .wait_for("the manual-intervention note in flight", WAIT, || async {
            let patches = ritm_patches(&stack, &sys_id);
            (patches.len() == 2 && patches[1].status == 0).then_some(())
        })
        .await;
    stack.commit_concurrently(&id).await;
    let trail = stack.wait_event(&id, "step_failed").await;
    stack.wait_queue_idle("update-ticket", true).await;
    assert!(stack.metrics("update-ticket").await.conflicted_total >= 1, "the commit lost the race");
    let patches = ritm_patches(&stack, &sys_id);
    assert_eq!(patches.iter().map(|r| r.status).collect::<Vec<_>>(), [403, 403], "asked once: {patches:#?}");
    assert_eq!(trail.iter().filter(|r| r.event.name() == "step_failed").count(), 1, "{trail:#?}");
    stack.sims.servicenow.faults().set_latency(Duration::ZERO);
    stack.shutdown().await;
}

/// The same, when only the grant's note is refused (the manual-intervention note gets
/// through): the ticket asks for a person with the reason and what was undone. Redriving the
/// write-back's letter afterwards, as the page suggests, writes no "granted" note for access
/// that is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_compensation_the_ticket_asks_for_manual_intervention_and_a_redrive_writes_no_grant() {
    let stack = Stack::start().await;
    let ritm = NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME);
    let (number, sys_id, id) = submit_refusing_write_back(&stack, ritm, Some(1)).await;
    stack.wait_state(&id, RequestState::RolledBack, WAIT).await;

    let note = stack.wait_note(&number, "Manual intervention needed").await;
    for needle in ["update-ticket failed for good", "compensated", ids::MEGAN_UPN, "removed again"] {
        assert!(note.contains(needle), "the note lacks {needle:?}: {note}");
    }
    assert_eq!(stack.ritm_state(&number), "2", "work in progress: a person takes it from here");
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID));
    // the note is on the ticket before its commit records it
    stack.wait_queue_idle("update-ticket", true).await;
    let trail = stack.audit(&id).await;
    assert!(trail.iter().any(|r| matches!(&r.event, AuditEvent::Compensated { removed: true, .. })));
    assert!(trail.iter().any(|r| matches!(
        &r.event,
        AuditEvent::TicketUpdated { update, state } if update == "manual_intervention" && state == "2"
    )));
    assert!(!trail.iter().any(|r| r.event.name() == "step_failed"));
    let page = stack.wait_incident("update-ticket", Some(&id)).await;
    assert_eq!(page.severity, "error");

    // on-call fixed the ACL and redrives the write-back's letter
    stack.wait_queue_idle("alert", false).await;
    let letters = stack.queue.dead_letters("update-ticket", None, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let redriven =
        grantline::dlq::close(&stack.queue, "update-ticket", &letters[0].id, LetterClosed::Redriven).await.unwrap();
    assert!(redriven.is_some());
    let m = stack
        .wait_for("the redriven write-back to run", WAIT, || async {
            let m = stack.metrics("update-ticket").await;
            (m.completed_total >= 2 && m.ready == 0 && m.in_flight == 0 && m.delayed == 0).then_some(m)
        })
        .await;
    assert_eq!(m.dead_total, 1, "{m:?}");
    assert!(
        !stack.work_notes(&number).iter().any(|n| n.contains("Granted")),
        "no grant note for access compensation removed: {:#?}",
        stack.work_notes(&number)
    );
    assert_eq!(stack.ritm_state(&number), "2", "not closed complete");
    let patches = ritm_patches(&stack, &sys_id);
    assert_eq!(patches.iter().map(|r| r.status).collect::<Vec<_>>(), [403, 200], "{patches:#?}");
    assert_eq!(stack.state(&id).await, Some(RequestState::RolledBack));
    stack.shutdown().await;
}

/// Adele was in Team Alpha before she asked: the write-back is refused, and nothing is
/// removed. The request fails (there is nothing to undo) and the ticket asks for a person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_back_keeps_a_membership_that_existed_before() {
    let stack = Stack::start().await;
    assert!(stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::ADELE_ID), "seed");
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::ADELE_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    stack.wait_note(&number, "Waiting for approval").await;
    // from now on the ticket refuses the next write: the grant's note
    let sys_id = stack.sims.servicenow.state().ritm(&number).unwrap().sys_id;
    refuse_write_back(&stack, &sys_id, Some(1));
    let (status, body) = stack.decide(&id, ids::SARA_ID, true).await;
    assert_eq!(status, 200, "{body}");
    let rec = stack.wait_state(&id, RequestState::Failed, WAIT).await;

    // the directory: the membership stays, nothing was even asked to remove it
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::ADELE_ID), 1);
    assert!(graph_calls(&stack, "DELETE", "/members/").is_empty());
    assert_eq!(stack.json_field(&id, fields::GRANT).await["pre_existing"], true);
    assert!(!rec.contains_key(fields::REMOVAL));
    assert_eq!(stack.metrics("rollback-grant").await.enqueued_total, 0, "nothing to compensate");

    // failed enqueued the manual-intervention note with the same commit: once the queue is
    // idle, it ran
    stack.wait_queue_idle("update-ticket", true).await;
    let trail = stack.audit(&id).await;
    let dead = position(&trail, |e| matches!(e, AuditEvent::DeadLettered { queue, .. } if queue == "update-ticket"))
        .unwrap_or_else(|| panic!("{trail:#?}"));
    let asked =
        position(&trail, |e| matches!(e, AuditEvent::TicketUpdated { update, .. } if update == "manual_intervention"))
            .unwrap_or_else(|| panic!("{trail:#?}"));
    assert!(dead < asked);
    assert!(
        !trail.iter().any(|r| matches!(&r.event, AuditEvent::Compensated { .. } | AuditEvent::RemovalExecuted { .. }))
    );

    let note = stack.wait_note(&number, "Manual intervention needed").await;
    assert!(note.contains("update-ticket failed for good"), "{note}");
    assert_eq!(stack.ritm_state(&number), "2");
    let page = stack.wait_incident("update-ticket", Some(&id)).await;
    assert_eq!(page.severity, "error");
    assert!(page.summary.contains(&number), "{}", page.summary);
    stack.shutdown().await;
}

/// The write-back is refused once, and the removal compensation asks for for good (Graph 403
/// on the DELETE): the membership nobody will confirm stays in place, so the rollback is a
/// critical dead letter, paged on the critical route; the request stays compensating (a redrive
/// of the letter runs the rollback again) and the ticket is asked for manual intervention,
/// saying that the membership may still be there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_refused_during_compensation_is_a_critical_dead_letter() {
    let stack = Stack::start().await;
    stack.sims.graph.faults().push(FaultRule::respond(403).on(Method::DELETE, MEMBER_DELETE).forever());
    let ritm = NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME);
    let (number, _, id) = submit_refusing_write_back(&stack, ritm, Some(1)).await;

    let critical = stack.wait_incident("rollback-grant", Some(&id)).await;
    assert_eq!(critical.routing_key, grantline::demo::CRITICAL_ROUTING_KEY, "the critical route");
    assert_eq!(critical.severity, "critical");
    assert!(critical.summary.contains(&number) && critical.summary.contains("rollback-grant"), "{}", critical.summary);
    let letters = stack.queue.dead_letters("rollback-grant", None, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    // a refusal is permanent: no retries of a removal Graph will not do
    assert_eq!(letters[0].attempts, 1);
    assert_eq!(
        (letters[0].errors[0].class.as_str(), letters[0].errors[0].code.as_str()),
        ("permanent", "graph.forbidden")
    );
    assert_eq!(letters[0].payload["request_id"], id.as_str());

    // the access is still there, and grantline says so: compensating, not rolled back
    stack.wait_queue_idle("alert", false).await;
    assert_eq!(stack.state(&id).await, Some(RequestState::Compensating));
    assert!(stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID));
    assert_eq!(graph_calls(&stack, "DELETE", "/members/").iter().map(|r| r.status).collect::<Vec<_>>(), [403]);
    let rec = stack.record(&id).await;
    assert!(!rec.contains_key(fields::REMOVAL), "no removal was recorded");
    let trail = stack.audit(&id).await;
    assert!(!trail.iter().any(|r| matches!(&r.event, AuditEvent::Compensated { .. })), "{trail:#?}");
    assert!(trail.iter().any(|r| matches!(
        &r.event,
        AuditEvent::Paged { queue, severity, .. } if queue == "rollback-grant" && severity == "critical"
    )));
    assert!(trail.iter().any(|r| matches!(&r.event, AuditEvent::Paged { queue, severity, .. } if queue == "update-ticket" && severity == "error")));
    assert_eq!(incidents_of(&stack, &id).len(), 2, "one page per dead letter");
    // the ticket is told what failed and what is left, once
    let note = stack.wait_note(&number, "Manual intervention needed").await;
    for needle in [
        "compensation failed",
        "rollback-grant failed for good",
        "graph.forbidden",
        "may still be in place",
        &letters[0].id,
    ] {
        assert!(note.contains(needle), "the note lacks {needle:?}: {note}");
    }
    assert_eq!(stack.work_notes(&number).len(), 1, "{:#?}", stack.work_notes(&number));
    assert_eq!(stack.ritm_state(&number), "2", "work in progress");
    let trail = stack.audit(&id).await;
    let dead = support::dead_lettered(&trail);
    assert_eq!(dead, ["update-ticket", "rollback-grant"], "{trail:#?}");
    assert_eq!(stack.state(&id).await, Some(RequestState::Compensating), "still compensating after the note");
    stack.shutdown().await;
}

/// A rollback whose removal Graph accepts but that never shows on read-back (a replica that
/// keeps answering the membership): the rollback cannot verify it, is retried until its
/// attempts run out, and is a critical dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_cannot_be_verified_is_a_critical_dead_letter() {
    let stack = Stack::start().await;
    // every membership read says Megan is a member, whatever the directory holds
    let member = serde_json::json!({ "@odata.type": "#microsoft.graph.user", "id": ids::MEGAN_ID });
    stack.sims.graph.faults().push(
        FaultRule::respond(200)
            .on(Method::GET, format!("/v1.0/groups/{}/members/{}", ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID))
            .json(&member)
            .forever(),
    );
    let ritm = NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME);
    let (number, _, id) = submit_refusing_write_back(&stack, ritm, None).await;

    let critical = stack.wait_incident("rollback-grant", Some(&id)).await;
    assert_eq!(
        (critical.routing_key.as_str(), critical.severity.as_str()),
        (grantline::demo::CRITICAL_ROUTING_KEY, "critical")
    );
    let letters = stack.queue.dead_letters("rollback-grant", None, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!((letters[0].attempts, letters[0].reason.as_str()), (4, "retries exhausted"));
    assert!(letters[0].errors.iter().all(|e| e.code == "removal.not_visible"), "{:#?}", letters[0].errors);
    assert!(critical.summary.contains("removal.not_visible"), "{}", critical.summary);

    stack.wait_queue_idle("alert", false).await;
    assert_eq!(stack.state(&id).await, Some(RequestState::Compensating));
    // the first DELETE removed it, the retries found nothing left to remove
    let deletes = graph_calls(&stack, "DELETE", "/members/");
    assert_eq!(deletes.iter().map(|r| r.status).collect::<Vec<_>>(), [204, 404, 404, 404], "{deletes:#?}");
    let trail = stack.audit(&id).await;
    assert!(!trail.iter().any(|r| matches!(&r.event, AuditEvent::Compensated { .. })), "never verified: {trail:#?}");
    assert!(trail.iter().any(|r| matches!(
        &r.event,
        AuditEvent::Paged { queue, severity, .. } if queue == "rollback-grant" && severity == "critical"
    )));
    assert!(stack.work_notes(&number).is_empty());
    stack.shutdown().await;
}
