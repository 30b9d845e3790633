//! End to end, the refusals and failures: policy denials (each with its reason on the ticket
//! and nothing granted), bad input at the edge (nothing written), Graph throttling (retried
//! without spending attempts), a Graph outage (dead letter, failed, manual intervention) and a
//! ticket closed before its grant (cancelled, nothing granted, its state left alone).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use grantline_shared::audit::AuditEvent;
use grantline_shared::request::{RequestState, fields};
use grantline_sims::{FaultRule, Method, NewRitm, ids, snow_sys_id};
use support::{Stack, StackOptions, TempDir, WAIT, WEBHOOK_SECRET, failing_checks};

const MEMBER_REF: &str = "/v1.0/groups/*/members/$ref";

/// Graph membership writes (`POST .../members/$ref`) as the simulator logged them.
fn member_adds(stack: &Stack) -> Vec<grantline_sims::LoggedRequest> {
    stack.sims.graph.requests().into_iter().filter(|r| r.method == "POST" && r.path.contains("/members/")).collect()
}

/// A denial: the request is denied with `code` among the failing checks, the audit trail
/// records the refusal, the ticket is closed incomplete with a note carrying `words`, and
/// nothing reached approval or Graph (`user`'s membership of `group` is what the seed says).
async fn assert_denied(stack: &Stack, number: &str, id: &str, code: &str, words: &[&str], group: &str, user: &str) {
    let seeded = grantline_sims::Tenant::demo().memberships.iter().any(|(g, m)| g == group && m == user);
    let rec = stack.wait_state(id, RequestState::Denied, WAIT).await;
    let raw = rec.get(fields::DECISION).unwrap_or_else(|| panic!("no decision was recorded: {rec:#?}"));
    let decision: serde_json::Value = serde_json::from_str(raw).unwrap();
    assert_eq!(decision["outcome"], "deny");
    let failing = failing_checks(&decision);
    assert!(failing.iter().any(|c| c == code), "{code} is not among the failing checks {failing:?}");

    let trail = stack.audit(id).await;
    assert!(
        trail
            .iter()
            .any(|r| matches!(&r.event, AuditEvent::CheckEvaluated { code: c, passed: false, .. } if c == code)),
        "the audit trail records the failed {code}"
    );
    assert!(trail.iter().any(|r| matches!(&r.event, AuditEvent::DecisionMade { allow: false, .. })));

    let note = stack.wait_note(number, "denied").await;
    for w in words {
        assert!(note.to_lowercase().contains(&w.to_lowercase()), "the note lacks {w:?}: {note}");
    }
    assert!(note.contains(decision["policy_version"].as_str().unwrap()), "the note names the policy version: {note}");
    assert_eq!(stack.ritm_state(number), "4", "closed incomplete");

    // nothing granted, nothing even asked
    for q in ["request-approval", "execute-grant"] {
        assert_eq!(stack.metrics(q).await.enqueued_total, 0, "{q}");
    }
    assert!(member_adds(stack).is_empty(), "no membership write reached Graph");
    assert_eq!(stack.sims.graph.state().counters().writes_applied, 0, "the directory is unchanged");
    assert_eq!(stack.sims.graph.state().is_member(group, user), seeded);
    assert!(!trail.iter().any(|r| r.event.name() == "grant_executed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_is_denied_with_the_reason_on_the_ticket() {
    let stack = Stack::start().await;
    assert!(stack.sims.graph.state().user(ids::DISABLED_ID).is_some(), "the account exists");
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::DISABLED_ID), ids::CAT_ITEM_FINANCE_BI_NAME)).await;
    assert_denied(
        &stack,
        &number,
        &id,
        "identity.enabled",
        &["disabled"],
        ids::GROUP_FINANCE_BI_READ,
        ids::DISABLED_ID,
    )
    .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaver_is_denied() {
    let stack = Stack::start().await;
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::LEAVER_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    assert_denied(
        &stack,
        &number,
        &id,
        "identity.leaving",
        &["leave date", "has passed"],
        ids::GROUP_TEAM_ALPHA,
        ids::LEAVER_ID,
    )
    .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_item_the_policy_does_not_map_is_denied() {
    let stack = Stack::start().await;
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::ISAIAH_ID), ids::CAT_ITEM_UNMAPPED_NAME)).await;
    // no group to look at: assert on every group that nothing was added
    assert_denied(
        &stack,
        &number,
        &id,
        "catalog.item",
        &["Standing desk", "not declared"],
        ids::GROUP_TEAM_ALPHA,
        ids::ISAIAH_ID,
    )
    .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_assignable_group_is_refused_with_the_pim_channel() {
    let dir = TempDir::new("role-assignable");
    let stack = Stack::start_with(support::write_extended_policy(&dir)).await;
    stack.add_privileged_catalog_item();
    assert_eq!(stack.sims.graph.state().group(ids::GROUP_ROLE_ASSIGNABLE).unwrap().is_assignable_to_role, Some(true));
    let ritm = NewRitm::new(&snow_sys_id(ids::ALEX_ID), support::CAT_ITEM_PRIVILEGED)
        .variable("target", support::TARGET_ROLE_ASSIGNABLE);
    let (number, id) = stack.submit(ritm).await;
    assert_denied(
        &stack,
        &number,
        &id,
        "group.role_assignable",
        &["role-assignable", "Privileged Identity Management"],
        ids::GROUP_ROLE_ASSIGNABLE,
        ids::ALEX_ID,
    )
    .await;
    let decision = stack.json_field(&id, fields::DECISION).await;
    assert_eq!(
        decision["target"]["group_id"],
        ids::GROUP_ROLE_ASSIGNABLE,
        "the ticket's target variable picked the group"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_group_is_refused_with_the_rule_owner_channel() {
    let dir = TempDir::new("dynamic");
    let stack = Stack::start_with(support::write_extended_policy(&dir)).await;
    stack.add_privileged_catalog_item();
    let ritm = NewRitm::new(&snow_sys_id(ids::ALEX_ID), support::CAT_ITEM_PRIVILEGED)
        .variable("target", support::TARGET_DYNAMIC);
    let (number, id) = stack.submit(ritm).await;
    assert_denied(
        &stack,
        &number,
        &id,
        "group.dynamic",
        &["dynamic membership", "membership rule"],
        ids::GROUP_DYNAMIC,
        ids::ALEX_ID,
    )
    .await;
    let decision = stack.json_field(&id, fields::DECISION).await;
    assert_eq!(decision["target"]["group_id"], ids::GROUP_DYNAMIC);
    stack.shutdown().await;
}

/// The ServiceNow user row of the guest carries the guest's home address, not the `#EXT#`
/// UPN; validate must still find the directory account and refuse it as a guest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_is_denied_as_a_guest() {
    let stack = Stack::start().await;
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::GUEST_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    assert_denied(&stack, &number, &id, "identity.guest", &["guest"], ids::GROUP_TEAM_ALPHA, ids::GUEST_ID).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_at_the_webhook_changes_nothing() {
    // no workers yet: whatever appears in Redis comes from the edge
    let mut stack = Stack::start_opts(StackOptions { workers: false, ..StackOptions::default() }).await;
    let created = stack
        .sims
        .servicenow
        .state()
        .create_ritm(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME))
        .unwrap();
    let good = serde_json::to_vec(&Stack::webhook_body(&created.sys_id, &created.number)).unwrap();
    let before = stack.redis_keys().await;

    let mut oversized = Stack::webhook_body(&created.sys_id, &created.number);
    oversized["padding"] = serde_json::Value::String("x".repeat(128 * 1024));
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("wrong shared secret", "not-the-webhook-secret-000", good.clone(), 401, "auth.bad_secret"),
        ("oversized body", WEBHOOK_SECRET, serde_json::to_vec(&oversized).unwrap(), 413, "request.too_large"),
        ("malformed JSON", WEBHOOK_SECRET, br#"{"ritm": {"sys_id": "#.to_vec(), 400, "request.malformed_json"),
        (
            "not a sys_id",
            WEBHOOK_SECRET,
            br#"{"ritm": {"sys_id": "../../etc", "number": "RITM0010001"}}"#.to_vec(),
            422,
            "request.invalid_field",
        ),
    ];
    for (what, secret, body, status, code) in cases {
        let (got, answer) = stack.post_webhook(secret, body).await;
        assert_eq!((got, answer["code"].as_str()), (status, Some(code)), "{what}: {answer}");
        let after = stack.redis_keys().await;
        assert_eq!(after, before, "{what} wrote to Redis");
    }
    assert!(stack.work_notes(&created.number).is_empty());
    assert_eq!(stack.ritm_state(&created.number), "1");

    // the ticket itself was never taken: the genuine delivery is a new request that runs
    let (status, accepted) = stack.post_webhook(WEBHOOK_SECRET, good).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["duplicate"], false);
    let id = accepted["request_id"].as_str().unwrap().to_owned();
    stack.spawn_workers();
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_throttling_is_waited_out_without_spending_attempts() {
    let stack = Stack::start().await;
    stack
        .sims
        .graph
        .faults()
        .push(FaultRule::respond(429).on(Method::POST, MEMBER_REF).header("Retry-After", "1").times(2));
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&id, RequestState::Active, WAIT).await;

    let m = stack.metrics("execute-grant").await;
    // each 429 paused the tenant's shared budget; the job waited, spending no attempt
    assert_eq!((m.waited_total, m.retried_total, m.dead_total), (2, 0, 0), "{m:?}");
    assert_eq!((m.enqueued_total, m.completed_total), (1, 1), "{m:?}");
    let adds = member_adds(&stack);
    assert_eq!(adds.iter().map(|r| r.status).collect::<Vec<_>>(), [429, 429, 204], "{adds:#?}");
    for pair in adds.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= jiff::SignedDuration::from_millis(950), "Retry-After was not honoured: {gap:?}");
    }
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 1);
    let trail = stack.audit(&id).await;
    assert_eq!(trail.iter().filter(|r| r.event.name() == "grant_executed").count(), 1);
    assert_eq!(stack.ritm_state(&number), "3");
    stack.wait_note(&number, "Granted and verified").await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_outage_dead_letters_the_grant_and_asks_for_manual_intervention() {
    let stack = Stack::start().await;
    stack.sims.graph.faults().push(FaultRule::respond(503).on(Method::POST, MEMBER_REF).forever());
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    let rec = stack.wait_state(&id, RequestState::Failed, WAIT).await;
    assert!(rec[fields::REASON].contains("execute-grant failed for good after 4 attempt(s)"), "{rec:#?}");

    // the dead letter keeps the payload and every attempt's error
    let letters = stack.queue.dead_letters("execute-grant", None, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let letter = &letters[0];
    assert_eq!(letter.payload["request_id"], id.as_str());
    assert_eq!((letter.attempts, letter.reason.as_str()), (4, "retries exhausted"));
    assert_eq!(letter.errors.len(), 4);
    assert!(letter.errors.iter().all(|e| e.class == "transient"), "{:#?}", letter.errors);
    let m = stack.metrics("execute-grant").await;
    assert_eq!((m.retried_total, m.dead_total, m.throttled_total), (3, 1, 0), "{m:?}");
    assert_eq!(member_adds(&stack).len(), 4, "one Graph write per attempt");
    let alerts = stack.wait_queue_idle("alert", false).await;
    assert_eq!((alerts.enqueued_total, alerts.completed_total), (1, 1), "one alert per dead letter: {alerts:?}");

    // nothing granted; the audit trail says what happened
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID));
    assert!(!rec.contains_key(fields::GRANT));
    let trail = stack.audit(&id).await;
    assert!(!trail.iter().any(|r| r.event.name() == "grant_executed"));
    assert!(trail.iter().any(|r| matches!(
        &r.event,
        AuditEvent::DeadLettered { queue, dead_letter_id, .. } if queue == "execute-grant" && *dead_letter_id == letter.id
    )));

    // the ticket goes to manual intervention, still open
    let note = stack.wait_note(&number, "Manual intervention").await;
    assert!(note.contains("execute-grant"), "{note}");
    assert_eq!(stack.ritm_state(&number), "2");
    // and stays failed: nothing further runs
    let settled = stack.wait_queue_idle("update-ticket", true).await;
    assert_eq!(settled.completed_total, 1);
    assert_eq!(stack.state(&id).await, Some(RequestState::Failed));
    stack.shutdown().await;
}

/// The requester withdraws the ticket in ServiceNow while it waits for approval; the approver
/// approves anyway. execute-grant reads the ticket before it changes anything: the request
/// ends cancelled with the reason, nothing reaches Graph, and the ticket stays as its owner
/// left it (a work note says why nothing was done; no state is written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_closed_before_the_grant_is_cancelled_and_never_executed() {
    let stack = Stack::start().await;
    let (number, id) =
        stack.submit(NewRitm::new(&snow_sys_id(ids::CONTRACTOR_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    stack.wait_note(&number, "Waiting for approval").await;

    let who = stack.snow_user_name(&snow_sys_id(ids::CONTRACTOR_ID));
    stack.sims.servicenow.state().close_ritm(&number, "4", &who).unwrap();
    let closed = stack.sims.servicenow.state().ritm(&number).unwrap();
    assert_eq!((closed.state.as_str(), closed.active.as_str()), ("4", "false"));
    let closed_at = stack.sims.servicenow.requests().last().map(|r| r.seq).unwrap_or(0);

    // Patti is the contractor's manager and approves: the decision is recorded, execute-grant runs
    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!(status, 200, "{body}");
    let rec = stack.wait_state(&id, RequestState::Cancelled, WAIT).await;
    let reason = &rec[fields::REASON];
    assert!(
        reason.contains(&number) && reason.contains("closed") && reason.contains("nothing was granted"),
        "{reason}"
    );

    let trail = stack.audit(&id).await;
    let check = trail
        .iter()
        .find(|r| matches!(&r.event, AuditEvent::CheckEvaluated { code, passed: false, .. } if code == "ticket.open"))
        .unwrap_or_else(|| panic!("no failed ticket.open check: {trail:#?}"));
    assert_eq!(check.actor, "grantline:execute-grant", "execute-grant found the ticket closed");
    let approved_at = trail.iter().position(|r| r.event.name() == "approval_recorded").expect("the approval");
    assert!(trail.iter().position(|r| std::ptr::eq(r, check)).unwrap() > approved_at);
    assert!(!trail.iter().any(|r| r.event.name() == "grant_executed"), "{trail:#?}");

    // nothing granted, nothing even sent to Graph
    assert!(member_adds(&stack).is_empty(), "no membership write reached Graph");
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::CONTRACTOR_ID));
    let m = stack.metrics("execute-grant").await;
    assert_eq!((m.enqueued_total, m.completed_total, m.dead_total), (1, 1, 0), "{m:?}");

    // the ticket is told why, and keeps the state its owner gave it
    let note = stack.wait_note(&number, "Not executed").await;
    assert!(note.contains("closed"), "{note}");
    stack.wait_queue_idle("update-ticket", true).await;
    let after = stack.sims.servicenow.state().ritm(&number).unwrap();
    assert_eq!(
        (after.state.as_str(), after.active.as_str(), after.approval.as_str(), after.stage.as_str()),
        (closed.state.as_str(), closed.active.as_str(), closed.approval.as_str(), closed.stage.as_str()),
        "the ticket's state was not overwritten"
    );
    let patches: Vec<serde_json::Value> = stack
        .sims
        .servicenow
        .requests()
        .into_iter()
        .filter(|r| r.seq > closed_at && r.method == "PATCH" && r.path.ends_with(&closed.sys_id))
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect();
    assert!(!patches.is_empty(), "the note was written with a PATCH");
    for p in &patches {
        for field in ["state", "approval", "stage", "active"] {
            assert!(p.get(field).is_none(), "a write-back after the close set {field}: {p}");
        }
    }
    stack.shutdown().await;
}

/// Graph answers a membership add with 404 for a user it has not replicated yet (apis.md 2.9).
/// Within `executors.not_found_grace_secs` of the request that is waited out, spending no
/// attempt, and the grant goes through once the user is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_graph_has_not_replicated_yet_is_granted_within_the_grace() {
    let stack = Stack::start().await;
    stack.sims.graph.faults().push(grantline_sims::GraphSim::member_not_replicated(ids::MEGAN_ID).times(2));
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&id, RequestState::Active, WAIT).await;

    let adds = member_adds(&stack);
    assert_eq!(adds.iter().map(|r| r.status).collect::<Vec<_>>(), [404, 404, 204], "{adds:#?}");
    assert!(adds[0].body.contains(ids::MEGAN_ID), "the add named the user: {}", adds[0].body);
    let m = stack.metrics("execute-grant").await;
    assert_eq!((m.waited_total, m.retried_total, m.dead_total), (2, 0, 0), "no attempt was spent: {m:?}");
    assert_eq!((m.enqueued_total, m.completed_total), (1, 1), "{m:?}");
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 1);
    let grant = stack.json_field(&id, fields::GRANT).await;
    assert_eq!(grant["pre_existing"], false, "{grant:#}");
    let trail = stack.audit(&id).await;
    assert_eq!(trail.iter().filter(|r| r.event.name() == "grant_executed").count(), 1);
    stack.wait_note(&number, "Granted and verified").await;
    assert_eq!(stack.ritm_state(&number), "3");
    stack.shutdown().await;
}

/// The same 404 past the grace (the clock moved on while Graph kept answering it) is a user
/// that is not there: the grant is dead-lettered as not found with the reason, nothing is
/// granted, on-call is paged and the ticket asks for manual intervention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_still_not_found_past_the_grace_fails_as_not_found() {
    let stack = Stack::start().await;
    stack.sims.graph.faults().push(grantline_sims::GraphSim::member_not_replicated(ids::MEGAN_ID).forever());
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack
        .wait_for("the first 404 to a membership add", WAIT, || async {
            member_adds(&stack).iter().any(|r| r.status == 404).then_some(())
        })
        .await;
    assert_eq!(stack.state(&id).await, Some(RequestState::Approved), "still within the grace");
    let grace = grantline_workers::ExecutorSettings::default().not_found_grace_secs;
    stack.sims.clock().advance(std::time::Duration::from_secs(grace + 1));

    let rec = stack.wait_state(&id, RequestState::Failed, WAIT).await;
    let reason = &rec[fields::REASON];
    assert!(
        reason.contains("graph.not_found") && reason.contains(ids::MEGAN_ID) && reason.contains("still not found"),
        "{reason}"
    );
    assert!(reason.contains("not_found_grace_secs"), "{reason}");
    let letters = stack.queue.dead_letters("execute-grant", None, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    // the waits spent nothing: one attempt, failed for good
    assert_eq!(letters[0].attempts, 1, "{:#?}", letters[0]);
    assert_eq!(letters[0].errors.len(), 1);
    assert_eq!(
        (letters[0].errors[0].class.as_str(), letters[0].errors[0].code.as_str()),
        ("permanent", "graph.not_found")
    );
    assert!(member_adds(&stack).len() >= 2, "retried within the grace");
    assert!(member_adds(&stack).iter().all(|r| r.status == 404));
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID));
    assert!(!rec.contains_key(fields::GRANT));

    let incident = stack.wait_incident("execute-grant", Some(&id)).await;
    assert_eq!(incident.custom_details["ticket"], number.as_str(), "{incident:#?}");
    let note = stack.wait_note(&number, "Manual intervention").await;
    assert!(note.contains("still not found"), "{note}");
    assert_eq!(stack.ritm_state(&number), "2", "the ticket stays open for a person to look");
    stack.shutdown().await;
}

/// A ticket for a person the directory does not have yet (a new hire whose account has not
/// replicated, apis.md 2.9): validate asks again within `executors.not_found_grace_secs`,
/// spending no attempt, and the request goes on once the person is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_not_in_the_directory_yet_is_asked_for_again_within_the_grace() {
    let stack = Stack::start().await;
    let graph = stack.sims.graph.state();
    assert!(graph.delete_user(ids::MEGAN_ID));
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack
        .wait_for("validate to wait for the person", WAIT, || async {
            (stack.metrics("validate").await.waited_total >= 1).then_some(())
        })
        .await;
    assert_eq!(stack.state(&id).await, Some(RequestState::Received), "not denied within the grace");
    // the account replicates, with its manager and its Helpdesk membership (which the policy
    // auto-approves on)
    assert!(graph.restore_user(ids::MEGAN_ID));
    graph.set_manager(ids::MEGAN_ID, Some(ids::PATTI_ID));
    graph.add_member(ids::GROUP_HELPDESK, ids::MEGAN_ID).unwrap();
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    let m = stack.metrics("validate").await;
    assert_eq!((m.retried_total, m.dead_total, m.completed_total), (0, 0, 1), "no attempt was spent: {m:?}");
    assert!(graph.is_member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID));
    stack.wait_note(&number, "Granted and verified").await;
    stack.shutdown().await;
}

/// The same person still not there past the grace (the clock moved on): the request is denied
/// as not in the directory, saying how long it was waited for, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_still_not_in_the_directory_past_the_grace_is_denied() {
    let stack = Stack::start().await;
    assert!(stack.sims.graph.state().delete_user(ids::MEGAN_ID));
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack
        .wait_for("validate to wait for the person", WAIT, || async {
            (stack.metrics("validate").await.waited_total >= 1).then_some(())
        })
        .await;
    let grace = grantline_workers::ExecutorSettings::default().not_found_grace_secs;
    stack.sims.clock().advance(std::time::Duration::from_secs(grace + 1));
    let rec = stack.wait_state(&id, RequestState::Denied, WAIT).await;
    let reason = &rec[fields::REASON];
    assert!(reason.contains("not found in the directory") && reason.contains("still not found"), "{reason}");
    let m = stack.metrics("validate").await;
    assert_eq!((m.retried_total, m.dead_total), (0, 0), "{m:?}");
    assert!(stack.queue.dead_letters("validate", None, 10).await.unwrap().is_empty());
    assert!(
        !stack.sims.graph.requests().iter().any(|r| r.method == "POST" && r.path.contains("/members/$ref")),
        "nothing was written"
    );
    let note = stack.wait_note(&number, "still not found").await;
    assert!(note.contains("not found in the directory"), "{note}");
    stack.shutdown().await;
}
