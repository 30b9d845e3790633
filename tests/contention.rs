//! End to end, many requests on one membership and removals that must not be forgotten: thirty
//! tickets for the same person and group wait for the membership's lock instead of failing,
//! share the one membership while any of them holds it, and the last to end removes it; a
//! removal that fails for good is paged at critical severity, stays due, and the expiry sweep
//! tries it again once per period until it is done.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use grantline_shared::audit::AuditEvent;
use grantline_shared::request::{RequestState, fields, keys};
use grantline_sims::{FaultRule, Method, NewRitm, ids, snow_sys_id};
use redis::AsyncCommands;
use support::{Stack, StackOptions, WAIT};

const MEMBER_DELETE: &str = "/v1.0/groups/*/members/*/$ref";

/// Graph `DELETE .../members/{id}/$ref` calls the simulator answered.
fn member_removals(stack: &Stack) -> Vec<grantline_sims::LoggedRequest> {
    stack.sims.graph.requests().into_iter().filter(|r| r.method == "DELETE" && r.path.contains("/members/")).collect()
}

/// Graph membership writes that added a member (204); a write answered "already exists" (400)
/// added nothing.
fn member_adds(stack: &Stack) -> usize {
    stack
        .sims
        .graph
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("/members/") && r.status == 204)
        .count()
}

/// How many requests hold the (group, user) membership grantline created.
async fn holders(stack: &Stack, group: &str, user: &str) -> usize {
    let mut conn = stack.queue.connection();
    let key =
        stack.queue.namespace().key(&grantline_workers::membership::holders_key(&format!("group:{group}:{user}")));
    conn.scard(key).await.unwrap()
}

/// The removal receipt of a removed request.
async fn removal(stack: &Stack, id: &str) -> serde_json::Value {
    stack.json_field(id, fields::REMOVAL).await
}

/// Thirty tickets for Megan's Team Alpha membership, all auto-approved, ending in three waves
/// (1 h, 2 h and 3 h after their grant) on the controllable clock. Every grant and every
/// removal of the one membership takes its lock; a request that finds it held waits without
/// spending an attempt. Nothing fails, nothing is dead-lettered, one membership is written and
/// it is removed once, by the last request to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_requests_on_one_membership_wait_for_its_lock_and_the_last_to_end_removes_it() {
    let stack =
        Stack::start_opts(StackOptions { scheduler: Some(Duration::from_millis(100)), ..Default::default() }).await;
    let waves = ["1h", "2h", "3h"];
    let mut requests: Vec<(String, String, usize)> = Vec::new();
    for i in 0..30 {
        let wave = i % waves.len();
        let ritm =
            NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME).variable("duration", waves[wave]);
        let (number, id) = stack.submit(ritm).await;
        requests.push((number, id, wave));
    }
    for (_, id, _) in &requests {
        stack.wait_state(id, RequestState::Active, WAIT).await;
    }

    // one membership, written once, held by all thirty
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 1);
    assert_eq!(member_adds(&stack), 1, "one membership added in Graph");
    assert_eq!(holders(&stack, ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID).await, 30);
    for (_, id, _) in &requests {
        let grant = stack.json_field(id, fields::GRANT).await;
        assert_eq!(
            grant["pre_existing"], false,
            "{id}: a membership another request added is shared, not pre-existing"
        );
    }
    let grants = stack.metrics("execute-grant").await;
    assert_eq!((grants.completed_total, grants.retried_total, grants.dead_total), (30, 0, 0), "{grants:?}");
    assert!(grants.waited_total > 0, "the grants contended for the lock and waited: {grants:?}");

    // each wave ends: its removals run at once and contend for the lock; the membership stays
    // while a later wave still holds it
    for (k, _) in waves.iter().enumerate() {
        stack
            .svc
            .clock
            .advance(Duration::from_secs(3600) + if k == 0 { Duration::from_secs(120) } else { Duration::ZERO });
        for (_, id, _) in requests.iter().filter(|r| r.2 == k) {
            stack.wait_state(id, RequestState::Removed, WAIT).await;
        }
        let later = requests.iter().filter(|r| r.2 > k).count();
        for (_, id, _) in requests.iter().filter(|r| r.2 > k) {
            assert_eq!(stack.state(id).await, Some(RequestState::Active), "{id} ends later");
        }
        assert_eq!(holders(&stack, ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID).await, later);
        let present = stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID);
        assert_eq!(present, usize::from(later > 0), "after wave {}: {later} requests still hold it", k + 1);
    }

    // exactly one removal reached Graph, by a request of the last wave; the others let go
    assert_eq!(member_removals(&stack).len(), 1, "{:#?}", member_removals(&stack));
    let mut removed_by = Vec::new();
    for (_, id, wave) in &requests {
        let r = removal(&stack, id).await;
        if r["removed"] == true {
            removed_by.push((id.clone(), *wave));
        } else {
            assert!(!r["kept_for"].as_array().unwrap().is_empty(), "{id} let go of a shared membership: {r:#}");
        }
        let trail = stack.audit(id).await;
        assert!(
            trail
                .iter()
                .any(|t| matches!(&t.event, AuditEvent::RemovalExecuted { trigger, .. } if trigger == "expiry"))
        );
    }
    assert_eq!(removed_by.len(), 1, "{removed_by:?}");
    assert_eq!(removed_by[0].1, waves.len() - 1, "the last to end removed it");

    // nothing failed, nothing was retried or dead-lettered
    let removals = stack.wait_queue_idle("remove-access", false).await;
    assert_eq!((removals.completed_total, removals.retried_total, removals.dead_total), (30, 0, 0), "{removals:?}");
    for q in ["validate", "request-approval", "execute-grant", "update-ticket", "schedule-removal", "remove-access"] {
        assert_eq!(stack.metrics(q).await.dead_total, 0, "{q}");
    }
    assert_eq!(stack.metrics("alert").await.enqueued_total, 0, "no dead letter, no alert");
    for (number, id, _) in &requests {
        assert_eq!(stack.state(id).await, Some(RequestState::Removed));
        stack.wait_note(number, "Access period ended").await;
    }
    stack.shutdown().await;
}

/// A grant whose validate read the membership while the last holder was removing it: the
/// read says "a member", the removal then completes, and the grant must not take the stale
/// read for a pre-existing membership: it adds the membership again and holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_validated_during_the_last_removal_adds_the_membership_again() {
    let stack =
        Stack::start_opts(StackOptions { scheduler: Some(Duration::from_millis(100)), ..Default::default() }).await;
    let ritm = NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME).variable("duration", "1h");
    let (_, old) = stack.submit(ritm).await;
    stack.wait_state(&old, RequestState::Active, WAIT).await;
    // the removal at the end holds the lock while Graph takes its time with the DELETE
    stack.sims.graph.faults().push(FaultRule::delay(Duration::from_secs(2)).on(Method::DELETE, MEMBER_DELETE).times(1));
    stack.svc.clock.advance(Duration::from_secs(3600 + 120));
    let lock = stack.queue.namespace().key(&format!("lock:group:{}:{}", ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID));
    stack
        .wait_for("the removal to hold the membership's lock", WAIT, || async {
            let mut conn = stack.queue.connection();
            let holder: Option<String> = conn.get(&lock).await.unwrap();
            holder.filter(|h| h.ends_with(":remove-access")).map(|_| ())
        })
        .await;
    let ritm = NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME).variable("duration", "1h");
    let (_, new) = stack.submit(ritm).await;
    stack.wait_state(&old, RequestState::Removed, WAIT).await;
    stack.wait_state(&new, RequestState::Active, WAIT).await;
    let grant = stack.json_field(&new, fields::GRANT).await;
    assert_eq!(grant["pre_existing"], false, "{grant:#}");
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 1, "the new request has the membership");
    assert_eq!(holders(&stack, ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID).await, 1);
    stack.shutdown().await;
}

/// Grants that arrive while the last holders of the membership let go of it: each new request
/// either finds the membership held (and shares it) or adds it again; none may believe it
/// pre-existing, and when the old ones are gone the new ones still have it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_arriving_while_the_last_holders_let_go_keep_the_membership() {
    let stack =
        Stack::start_opts(StackOptions { scheduler: Some(Duration::from_millis(100)), ..Default::default() }).await;
    let mut old = Vec::new();
    for _ in 0..15 {
        let ritm = NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME).variable("duration", "1h");
        old.push(stack.submit(ritm).await.1);
    }
    for id in &old {
        stack.wait_state(id, RequestState::Active, WAIT).await;
    }
    // the old grants end, and new tickets come in while their removals run
    stack.svc.clock.advance(Duration::from_secs(3600 + 120));
    let mut new = Vec::new();
    for _ in 0..15 {
        let ritm = NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME).variable("duration", "1h");
        new.push(stack.submit(ritm).await.1);
    }
    for id in &old {
        stack.wait_state(id, RequestState::Removed, WAIT).await;
    }
    for id in &new {
        stack.wait_state(id, RequestState::Active, WAIT).await;
        let grant = stack.json_field(id, fields::GRANT).await;
        assert_eq!(grant["pre_existing"], false, "{id}: {grant:#}");
    }
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 1, "the new requests still have it");
    assert_eq!(holders(&stack, ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID).await, new.len());
    for q in ["execute-grant", "remove-access"] {
        let m = stack.metrics(q).await;
        assert_eq!((m.retried_total, m.dead_total), (0, 0), "{q}: {m:?}");
    }
    stack.shutdown().await;
}

/// One pass of the scheduler's removal sweep at the stack's clock (the test is the scheduler,
/// so nothing runs between the passes it asks for).
async fn sweep(stack: &Stack) -> usize {
    let now = stack.svc.clock.now_ms();
    grantline_scheduler::sweep_expired(&stack.queue, now, Duration::from_secs(60), Duration::from_secs(3600))
        .await
        .unwrap()
}

async fn failed_removals(stack: &Stack) -> std::collections::HashMap<String, String> {
    let mut conn = stack.queue.connection();
    conn.hgetall(stack.queue.namespace().key(keys::FAILED_REMOVALS)).await.unwrap()
}

/// Graph refuses to remove the membership for longer than the queue retries: the removal is
/// dead-lettered and paged at critical severity, yet the request stays active and on file; the
/// sweep does not try again within the period; once Graph recovers, the next period's sweep
/// removes the membership, the request ends removed, and the incident is resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_that_fails_for_good_is_paged_and_the_sweep_removes_it_later() {
    let stack = Stack::start().await;
    let ritm = NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME).variable("duration", "1h");
    let (number, id) = stack.submit(ritm).await;
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    let outage = stack.sims.graph.faults().push(FaultRule::respond(503).on(Method::DELETE, MEMBER_DELETE).forever());

    // the grant ends; the sweep asks for its removal, which fails on every attempt
    stack.svc.clock.advance(Duration::from_secs(3600 + 120));
    assert_eq!(sweep(&stack).await, 1);
    let letter = stack
        .wait_for("the removal's dead letter", WAIT, || async {
            stack.queue.dead_letters("remove-access", None, 10).await.unwrap().into_iter().next()
        })
        .await;
    assert_eq!(letter.payload["request_id"], id.as_str());
    assert_eq!(letter.attempts, 4);
    let incident = stack.wait_incident("remove-access", Some(&id)).await;
    assert_eq!(incident.severity, "critical");
    assert_eq!(incident.routing_key, grantline::demo::CRITICAL_ROUTING_KEY, "the critical route");
    assert!(incident.summary.contains(&number), "{}", incident.summary);
    stack.wait_queue_idle("alert", false).await;

    // not failed, not compensated: still active, the membership still there, on file
    let rec = stack.record(&id).await;
    assert_eq!(stack.state(&id).await, Some(RequestState::Active), "{rec:#?}");
    assert!(rec[fields::REASON].contains("remove-access failed for good"), "{rec:#?}");
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 1);
    assert_eq!(stack.metrics("rollback-grant").await.enqueued_total, 0, "a removal is not compensated");
    let trail = stack.audit(&id).await;
    assert!(trail.iter().any(|r| matches!(
        &r.event,
        AuditEvent::DeadLettered { queue, dead_letter_id, .. } if queue == "remove-access" && *dead_letter_id == letter.id
    )));
    let on_file = failed_removals(&stack).await;
    let failed: grantline_shared::jobs::FailedRemoval = serde_json::from_str(&on_file[&id]).unwrap();
    assert_eq!(failed.trigger, grantline_shared::jobs::RemovalTrigger::Expiry);
    assert_eq!(failed.letters, std::slice::from_ref(&letter.id));

    // not hammered: within the period the sweep leaves it, even with Graph back
    assert!(stack.sims.graph.faults().remove(outage));
    assert_eq!(sweep(&stack).await, 0);
    assert_eq!(member_removals(&stack).len(), 4, "one DELETE per attempt, none since");

    // the next period: tried again, and done
    stack.svc.clock.advance(Duration::from_secs(3600));
    assert_eq!(sweep(&stack).await, 1);
    stack.wait_state(&id, RequestState::Removed, WAIT).await;
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 0, "the membership is gone");
    let removals = member_removals(&stack);
    assert_eq!(removals.iter().map(|r| r.status).collect::<Vec<_>>(), [503, 503, 503, 503, 204]);
    assert_eq!(removal(&stack, &id).await["removed"], true);
    stack.wait_note(&number, "Access period ended").await;
    assert!(failed_removals(&stack).await.is_empty(), "off file");

    // the incident is resolved and the letter dropped: a later job did its work
    let resolved = stack
        .wait_for("the incident to be resolved", WAIT, || async {
            stack.incidents().into_iter().find(|a| {
                a.dedup_key == incident.dedup_key && a.status == grantline_sims::paging::AlertStatus::Resolved
            })
        })
        .await;
    assert_eq!(resolved.events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["trigger", "resolve"]);
    let trail = stack
        .wait_for("page_resolved on the trail", WAIT, || async {
            let trail = stack.audit(&id).await;
            trail.iter().any(|r| r.event.name() == "page_resolved").then_some(trail)
        })
        .await;
    let names: Vec<&str> = trail.iter().map(|r| r.event.name()).collect();
    let dead = names.iter().position(|n| *n == "dead_lettered").unwrap();
    let removed = names.iter().position(|n| *n == "removal_executed").unwrap();
    assert!(dead < removed, "{names:?}");
    assert!(trail.iter().any(|r| matches!(&r.event, AuditEvent::PageResolved { how, .. } if how == "superseded")));
    assert!(stack.queue.dead_letters("remove-access", None, 10).await.unwrap().is_empty(), "the letter is dropped");
    assert_eq!(stack.metrics("remove-access").await.dead_total, 1);
    stack.shutdown().await;
}
