//! End to end: offboarding and drift, against real Redis and the simulators over HTTP, on the
//! simulators' controllable clock.
//!
//! - The leaver endpoint removes every grant of the person at once (a group membership and a
//!   mailbox permission) and cancels their pending request, notes every ticket with the reason,
//!   and leaves another person's grant and a pre-existing membership alone; the same event twice
//!   is one offboarding; bad authentication and bad bodies are refused and change nothing.
//! - The directory sweep (users delta) catches a disabled account and a leave date that passed,
//!   and falls back to a full sync when its delta token expired.
//! - Reconciliation closes a grant removed out of band and reports, without removing, a member
//!   of a governed group that no request explains.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use grantline_shared::JobKind;
use grantline_shared::request::{RequestState, fields};
use grantline_sims::{NewRitm, ids, snow_sys_id};
use grantline_store::directory::{self, DirectoryEvent};
use serde_json::{Value, json};
use support::{Stack, WAIT, WEBHOOK_SECRET};

fn team_alpha(user: &str) -> NewRitm {
    NewRitm::new(&snow_sys_id(user), ids::CAT_ITEM_TEAM_ALPHA_NAME)
}

fn helpdesk_read_only(user: &str) -> NewRitm {
    NewRitm::new(&snow_sys_id(user), ids::CAT_ITEM_SHARED_MAILBOX_NAME)
        .variable("mailbox", ids::MAILBOX_HELPDESK)
        .variable("access", "read-only")
        .variable("justification", "covering the service desk's inbox")
}

fn finance_bi(user: &str) -> NewRitm {
    NewRitm::new(&snow_sys_id(user), ids::CAT_ITEM_FINANCE_BI_NAME).variable("duration", "30d")
}

async fn leaver(stack: &Stack, secret: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let mut req = stack
        .http
        .post(format!("{}/v1/events/leaver", stack.ingest_url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(s) = secret {
        req = req.header("X-Grantline-Secret", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Team Alpha for someone the manager must approve (Alex: Sara), approved and active.
async fn approved_team_alpha(stack: &Stack, user: &str, manager_upn: &str) -> (String, String) {
    let (number, id) = stack.submit(team_alpha(user)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let (status, body) = stack.decide(&id, manager_upn, true).await;
    assert_eq!(status, 200, "{body}");
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    (number, id)
}

/// Enqueues a periodic job now, as the scheduler does once per period, and waits until its
/// queue and the offboarding it causes are idle.
async fn ring(stack: &Stack, kind: JobKind) {
    let now = stack.svc.clock.now_ms();
    assert!(grantline_scheduler::periodic(&stack.queue, kind, now, Duration::from_millis(1)).await.unwrap());
    stack.wait_queue_idle(kind.as_str(), false).await;
    stack.wait_queue_idle(JobKind::Offboard.as_str(), false).await;
}

async fn directory_events(stack: &Stack) -> Vec<DirectoryEvent> {
    directory::recent(&stack.queue, 100).await.unwrap().into_iter().map(|r| r.event).collect()
}

/// A counter of what offboarding and drift found, as `/metrics` exposes it
/// (`grantline_directory_events_total{event=...}`).
async fn metric(stack: &Stack, event: &str) -> u64 {
    directory::stats(&stack.queue).await.unwrap().get(event).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaver_loses_every_grant_at_once_and_their_pending_requests_are_cancelled() {
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    // Megan: Team Alpha (time-bound) and helpdesk@ read-only (permanent), both auto-approved
    // for the Helpdesk; Finance BI waits for its data owner
    let (alpha_number, alpha) = stack.submit(team_alpha(ids::MEGAN_ID)).await;
    let (mailbox_number, mailbox) = stack.submit(helpdesk_read_only(ids::MEGAN_ID)).await;
    let (pending_number, pending) = stack.submit(finance_bi(ids::MEGAN_ID)).await;
    stack.wait_state(&alpha, RequestState::Active, WAIT).await;
    stack.wait_state(&mailbox, RequestState::Completed, WAIT).await;
    stack.wait_state(&pending, RequestState::AwaitingApproval, WAIT).await;
    // someone else's grant on the same group, and Adele's membership from before grantline
    let (_, other) = approved_team_alpha(&stack, ids::ALEX_ID, ids::SARA_UPN).await;
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::ADELE_ID), 1);
    let ex = stack.sims.exchange.state();
    assert_eq!(ex.folder_rights(ids::MAILBOX_HELPDESK, "Inbox", ids::MEGAN_UPN).unwrap_or_default(), ["Reviewer"]);
    for q in ["update-ticket", "notify", "schedule-removal"] {
        stack.wait_queue_idle(q, false).await;
    }
    let before = stack.redis_keys().await;
    let heads: Vec<String> = {
        let mut v = Vec::new();
        for id in [&alpha, &mailbox, &pending, &other] {
            v.push(stack.record(id).await[fields::AUDIT_HEAD].clone());
        }
        v
    };

    // refused: no secret, a wrong secret, bodies that name no one properly, someone unknown
    let body = json!({"user": ids::MEGAN_UPN, "reason": "Left the company"}).to_string();
    let (status, err) = leaver(&stack, None, body.clone()).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("auth.missing")), "{err}");
    let (status, err) = leaver(&stack, Some("not-the-secret-at-all-0000000"), body.clone()).await;
    assert_eq!((status, err["code"].as_str()), (401, Some("auth.bad_secret")), "{err}");
    for (bad, field) in [
        (json!({}), "user"),
        (json!({"user": 42}), "user"),
        (json!({"user": "Megan"}), "user"),
        (json!({"user": ids::MEGAN_UPN, "effective_at": "next week"}), "effective_at"),
        (json!({"user": ids::MEGAN_UPN, "reason": ["x"]}), "reason"),
        (json!({"user": ids::MEGAN_UPN, "scope": "all"}), "scope"),
    ] {
        let (status, err) = leaver(&stack, Some(WEBHOOK_SECRET), bad.to_string()).await;
        assert_eq!(
            (status, err["code"].as_str(), err["field"].as_str()),
            (400, Some("request.invalid_field"), Some(field)),
            "{bad}: {err}"
        );
    }
    let (status, err) = leaver(&stack, Some(WEBHOOK_SECRET), "{not json").await;
    assert_eq!((status, err["code"].as_str()), (400, Some("request.malformed_json")), "{err}");
    let (status, err) = leaver(&stack, Some(WEBHOOK_SECRET), json!({"user": "nobody@contoso.com"}).to_string()).await;
    assert_eq!(
        (status, err["code"].as_str(), err["field"].as_str()),
        (422, Some("user.not_found"), Some("user")),
        "{err}"
    );
    // nothing changed: no job, no key, every request where it was
    assert_eq!(stack.metrics("offboard").await.enqueued_total, 0);
    assert_eq!(stack.redis_keys().await, before);
    for (id, head) in [&alpha, &mailbox, &pending, &other].into_iter().zip(&heads) {
        assert_eq!(&stack.record(id).await[fields::AUDIT_HEAD], head, "{id} changed");
    }

    // the event, twice: one offboarding
    let (status, first) = leaver(&stack, Some(WEBHOOK_SECRET), body.clone()).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["user_id"], ids::MEGAN_ID);
    assert_eq!(first["duplicate"], false);
    let (status, again) = leaver(&stack, Some(WEBHOOK_SECRET), body).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!((again["duplicate"].as_bool(), &again["job_id"]), (Some(true), &first["job_id"]));

    stack.wait_state(&alpha, RequestState::Removed, WAIT).await;
    stack.wait_state(&mailbox, RequestState::Removed, WAIT).await;
    let cancelled = stack.wait_state(&pending, RequestState::Cancelled, WAIT).await;
    assert!(cancelled[fields::REASON].contains("leaver: Left the company"), "{cancelled:?}");
    // the access is gone upstream; the other person's and the pre-existing one stay
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 0);
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::ALEX_ID), 1);
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::ADELE_ID), 1);
    assert!(ex.folder_rights(ids::MAILBOX_HELPDESK, "Inbox", ids::MEGAN_UPN).unwrap_or_default().is_empty());
    assert_eq!(stack.state(&other).await, Some(RequestState::Active));
    // every ticket is told, with the reason
    for number in [&alpha_number, &mailbox_number] {
        let note = stack.wait_note(number, "the person left").await;
        assert!(note.contains("leaver: Left the company") && note.contains("removed and verified"), "{note}");
    }
    let note = stack.wait_note(&pending_number, "Not executed").await;
    assert!(note.contains("leaver: Left the company"), "{note}");
    // typed audit: each request's timeline, and the leaver on the directory log, once
    for id in [&alpha, &mailbox] {
        let rec = stack.audit(id).await;
        let asked = rec.iter().find(|r| r.event.name() == "removal_requested").expect("removal_requested");
        assert_eq!(asked.actor, "grantline:offboard");
        let json = serde_json::to_value(&asked.event).unwrap();
        assert_eq!(
            (json["trigger"].as_str(), json["reason"].as_str()),
            (Some("offboarding"), Some("leaver: Left the company"))
        );
    }
    assert!(stack.audit_events(&pending).await.contains(&"request_cancelled"));
    assert!(!stack.audit_events(&other).await.contains(&"removal_requested"));
    let events = directory_events(&stack).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let DirectoryEvent::Offboarded { user_id, source, removed, cancelled, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!((user_id.as_str(), source.as_str()), (ids::MEGAN_ID, "leaver"));
    let mut removed = removed.clone();
    removed.sort();
    let mut want = vec![alpha.clone(), mailbox.clone()];
    want.sort();
    assert_eq!(removed, want);
    assert_eq!(cancelled, &vec![pending.clone()]);
    assert_eq!(metric(&stack, "offboarded").await, 1);
    assert_eq!(stack.metrics("offboard").await.enqueued_total, 1, "the same event twice is one job");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_sweep_offboards_a_disabled_account_and_a_passed_leave_date_and_resyncs_an_expired_token() {
    let stack = Stack::start().await;
    let graph = stack.sims.graph.state();
    graph.set_delta_page_size(3); // several pages per round
    // Isaiah joins the Helpdesk for this test: Team Alpha auto-approves for him as for Megan
    graph.add_member(ids::GROUP_HELPDESK, ids::ISAIAH_ID).unwrap();
    let (megan_number, megan) = stack.submit(team_alpha(ids::MEGAN_ID)).await;
    let (_, isaiah) = stack.submit(team_alpha(ids::ISAIAH_ID)).await;
    stack.wait_state(&megan, RequestState::Active, WAIT).await;
    stack.wait_state(&isaiah, RequestState::Active, WAIT).await;
    let (_, alex) = approved_team_alpha(&stack, ids::ALEX_ID, ids::SARA_UPN).await;

    // the first sweep is a full sync: the demo tenant's disabled and departed people have no
    // requests, so nobody is offboarded; the delta link is stored
    ring(&stack, JobKind::SweepDirectory).await;
    assert!(directory_events(&stack).await.is_empty());
    let mut conn = stack.queue.connection();
    let link: Option<String> =
        redis::AsyncCommands::get(&mut conn, stack.queue.namespace().key(directory::DELTA_LINK)).await.unwrap();
    assert!(link.as_deref().is_some_and(|l| l.contains("$deltatoken=")), "{link:?}");
    assert!(metric(&stack, "delta_pages").await >= 2, "the round was paged");

    // Megan's account is disabled, Isaiah's leave date passed an hour ago
    assert!(graph.disable_user(ids::MEGAN_ID));
    let hour_ago = stack.sims.clock().now() - jiff::SignedDuration::from_hours(1);
    graph.set_user_field(ids::ISAIAH_ID, "employeeLeaveDateTime", json!(hour_ago.to_string())).unwrap();
    ring(&stack, JobKind::SweepDirectory).await;
    stack.wait_state(&megan, RequestState::Removed, WAIT).await;
    stack.wait_state(&isaiah, RequestState::Removed, WAIT).await;
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 0);
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::ISAIAH_ID), 0);
    let note = stack.wait_note(&megan_number, "the person left").await;
    assert!(note.contains("the account is disabled in the directory"), "{note}");
    assert_eq!(stack.state(&alex).await, Some(RequestState::Active), "Alex did not leave");
    let sources: Vec<String> = directory_events(&stack)
        .await
        .into_iter()
        .filter_map(|e| match e {
            DirectoryEvent::Offboarded { user_id, source, .. } => Some(format!("{user_id} {source}")),
            _ => None,
        })
        .collect();
    assert!(sources.contains(&format!("{} account_disabled", ids::MEGAN_ID)), "{sources:?}");
    assert!(sources.contains(&format!("{} leave_date_passed", ids::ISAIAH_ID)), "{sources:?}");

    // the stored token expires; Alex is disabled meanwhile: the sweep restarts from a full sync
    graph.expire_delta_tokens();
    assert!(graph.disable_user(ids::ALEX_ID));
    ring(&stack, JobKind::SweepDirectory).await;
    stack.wait_state(&alex, RequestState::Removed, WAIT).await;
    assert_eq!(metric(&stack, "delta_resyncs").await, 1);
    let gone =
        stack.sims.graph.requests().iter().filter(|r| r.path.contains("/users/delta") && r.status == 410).count();
    assert_eq!(gone, 1, "one 410, then a full sync");
    // nobody is offboarded twice: Megan and Isaiah are in the full sync again, handled already
    let offboarded = directory_events(&stack)
        .await
        .into_iter()
        .filter(|e| matches!(e, DirectoryEvent::Offboarded { user_id, .. } if user_id == ids::MEGAN_ID))
        .count();
    assert_eq!(offboarded, 1);
    assert_eq!(stack.audit_events(&megan).await.iter().filter(|e| **e == "removal_requested").count(), 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_closes_a_grant_removed_out_of_band_and_reports_an_unexplained_member() {
    let stack = Stack::start().await;
    let graph = stack.sims.graph.state();
    let (megan_number, megan) = stack.submit(team_alpha(ids::MEGAN_ID)).await;
    stack.wait_state(&megan, RequestState::Active, WAIT).await;
    // the first pass records who is in each governed group now (Adele was there before)
    ring(&stack, JobKind::Reconcile).await;
    assert!(directory_events(&stack).await.is_empty(), "nothing is drift on the first pass");
    // a member grantline adds later is explained by its request
    let (_, alex) = approved_team_alpha(&stack, ids::ALEX_ID, ids::SARA_UPN).await;

    // later: someone removes Megan in the portal, and adds Isaiah, without a ticket
    stack.sims.clock().advance(Duration::from_secs(15 * 60));
    assert!(graph.remove_member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID));
    graph.add_member(ids::GROUP_TEAM_ALPHA, ids::ISAIAH_ID).unwrap();
    ring(&stack, JobKind::Reconcile).await;

    let rec = stack.wait_state(&megan, RequestState::Removed, WAIT).await;
    assert_eq!(rec[fields::REASON], "removed out of band");
    let removal = stack.json_field(&megan, "removal").await;
    assert_eq!((removal["trigger"].as_str(), removal["already_gone"].as_bool()), (Some("drift"), Some(true)));
    let names = stack.audit_events(&megan).await;
    assert!(names.contains(&"removed_out_of_band"), "{names:?}");
    let note = stack.wait_note(&megan_number, "removed out of band").await;
    assert!(note.contains("no longer there when checked"), "{note}");
    assert_eq!(stack.state(&alex).await, Some(RequestState::Active), "Alex's membership is still there");
    // reported, never removed
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::ISAIAH_ID), 1);
    let events = directory_events(&stack).await;
    assert!(
        events.iter().any(|e| matches!(e, DirectoryEvent::RemovedOutOfBand { request_id, .. } if *request_id == megan)),
        "{events:?}"
    );
    let unexplained: Vec<&DirectoryEvent> =
        events.iter().filter(|e| matches!(e, DirectoryEvent::UnexplainedMember { .. })).collect();
    assert_eq!(unexplained.len(), 1, "{events:?}");
    let DirectoryEvent::UnexplainedMember { group_id, user_id, .. } = unexplained[0] else { unreachable!() };
    assert_eq!((group_id.as_str(), user_id.as_str()), (ids::GROUP_TEAM_ALPHA, ids::ISAIAH_ID));
    assert_eq!(metric(&stack, "unexplained").await, 1);
    assert_eq!(metric(&stack, "out_of_band").await, 1);

    // the next pass reports nothing new and changes nothing
    ring(&stack, JobKind::Reconcile).await;
    assert_eq!(metric(&stack, "unexplained").await, 1);
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::ISAIAH_ID), 1);
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::ADELE_ID), 1);
    stack.shutdown().await;
}

/// Requests recorded before the person index existed (here: taken out of it by hand, and the
/// backfill's mark removed, as on a namespace upgraded from such a version) are found all the
/// same: the first offboarding backfills the index, once, and the leaver loses that grant and
/// has that pending request cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_before_the_person_index_are_backfilled_and_offboarded() {
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    let (number, alpha) = stack.submit(team_alpha(ids::MEGAN_ID)).await;
    let (_, pending) = stack.submit(finance_bi(ids::MEGAN_ID)).await;
    stack.wait_state(&alpha, RequestState::Active, WAIT).await;
    stack.wait_state(&pending, RequestState::AwaitingApproval, WAIT).await;
    for q in ["update-ticket", "notify", "schedule-removal"] {
        stack.wait_queue_idle(q, false).await;
    }
    let ns = stack.queue.namespace();
    let mut conn = stack.queue.connection();
    let index = ns.key(&grantline_store::person::key(ids::MEGAN_ID));
    let _: () = redis::AsyncCommands::del(&mut conn, &index).await.unwrap();
    let _: () = redis::AsyncCommands::del(&mut conn, ns.key(grantline_store::person::BACKFILLED)).await.unwrap();
    assert_eq!(grantline_store::person::count(&stack.queue, ids::MEGAN_ID).await.unwrap(), 0);

    let body = json!({"user": ids::MEGAN_UPN, "reason": "Left the company"}).to_string();
    let (status, first) = leaver(&stack, Some(WEBHOOK_SECRET), body).await;
    assert_eq!(status, 202, "{first}");
    stack.wait_state(&alpha, RequestState::Removed, WAIT).await;
    stack.wait_state(&pending, RequestState::Cancelled, WAIT).await;
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 0);
    let note = stack.wait_note(&number, "the person left").await;
    assert!(note.contains("removed and verified"), "{note}");
    // backfilled once; the finished requests left the index again with their own commits
    let marked: Option<u64> =
        redis::AsyncCommands::get(&mut conn, ns.key(grantline_store::person::BACKFILLED)).await.unwrap();
    assert!(marked.is_some(), "the backfill is marked done");
    assert_eq!(grantline_store::person::count(&stack.queue, ids::MEGAN_ID).await.unwrap(), 0);
    stack.shutdown().await;
}

/// The policy decides what happens to a member no request explains: Team Alpha says
/// `remove`, every other group (here Finance BI, through `[defaults]`) says `page`. Isaiah,
/// added to Team Alpha in the portal, is removed and verified gone; Alex, added to Finance BI,
/// stays and on-call gets one warning incident, however many passes see him, resolved once he
/// is gone. Members from before grantline governed the groups stay, and nobody is paged for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_says_whether_an_unexplained_member_is_paged_about_or_removed() {
    let dir = support::TempDir::new("unexplained");
    let text = std::fs::read_to_string(support::POLICY)
        .unwrap()
        .replacen("unexplained_members = \"report\"", "unexplained_members = \"page\"", 1)
        .replacen("[groups.team-alpha]\n", "[groups.team-alpha]\nunexplained_members = \"remove\"\n", 1);
    let policy = dir.0.join("policy.toml");
    std::fs::write(&policy, text).unwrap();
    let stack = Stack::start_with(&policy).await;
    let graph = stack.sims.graph.state();
    ring(&stack, JobKind::Reconcile).await;
    assert!(directory_events(&stack).await.is_empty(), "the first pass records the baseline");

    stack.sims.clock().advance(Duration::from_secs(15 * 60));
    graph.add_member(ids::GROUP_TEAM_ALPHA, ids::ISAIAH_ID).unwrap();
    graph.add_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID).unwrap();
    ring(&stack, JobKind::Reconcile).await;

    // removed, verified, on the directory log with the removal's request id
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::ISAIAH_ID), 0);
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::ADELE_ID), 1, "the baseline stays");
    let events = directory_events(&stack).await;
    let removed: Vec<&DirectoryEvent> =
        events.iter().filter(|e| matches!(e, DirectoryEvent::UnexplainedMemberRemoved { .. })).collect();
    assert_eq!(removed.len(), 1, "{events:?}");
    let DirectoryEvent::UnexplainedMemberRemoved { group_id, user_id, graph_request_id, .. } = removed[0] else {
        unreachable!()
    };
    assert_eq!((group_id.as_str(), user_id.as_str()), (ids::GROUP_TEAM_ALPHA, ids::ISAIAH_ID));
    assert!(graph_request_id.is_some(), "{events:?}");
    let actions: Vec<(String, Option<String>)> = events
        .iter()
        .filter_map(|e| match e {
            DirectoryEvent::UnexplainedMember { user_id, action, .. } => Some((user_id.clone(), action.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(actions.len(), 2, "{events:?}");
    assert!(actions.contains(&(ids::ISAIAH_ID.to_owned(), Some("remove".to_owned()))), "{actions:?}");
    assert!(actions.contains(&(ids::ALEX_ID.to_owned(), Some("page".to_owned()))), "{actions:?}");
    assert_eq!(metric(&stack, "unexplained_removed").await, 1);

    // paged, not removed: one warning incident naming the group and the person
    assert_eq!(stack.memberships(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID), 1);
    let incidents = stack.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let incident = &incidents[0];
    assert_eq!((incident.severity.as_str(), incident.class.as_deref()), ("warning", Some("unexplained_member")));
    assert!(
        incident.summary.contains(ids::ALEX_UPN) && incident.summary.contains("Finance BI"),
        "{}",
        incident.summary
    );
    assert_eq!(incident.custom_details["group_id"], ids::GROUP_FINANCE_BI_READ);
    assert_eq!(incident.status, grantline_sims::paging::AlertStatus::Triggered);

    // the next pass: nothing new, no second incident
    ring(&stack, JobKind::Reconcile).await;
    assert_eq!(stack.incidents().len(), 1);
    assert_eq!(stack.incidents()[0].merged_triggers(), 0, "{:#?}", stack.incidents());
    assert_eq!(metric(&stack, "unexplained").await, 2);

    // Alex is taken out in the portal: the incident resolves
    assert!(graph.remove_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID));
    ring(&stack, JobKind::Reconcile).await;
    assert_eq!(stack.incidents()[0].status, grantline_sims::paging::AlertStatus::Resolved);
    stack.shutdown().await;
}
