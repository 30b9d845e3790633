//! The whole chain on a private three-master Redis Cluster: the edge, two `grantline worker`
//! processes given a `redis+cluster://` URL, and the simulators. The master that holds the
//! namespace's slot is SIGKILLed and restarted (same port, same AOF) while requests are in
//! flight; every request is still granted exactly once, its ticket noted once.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use grantline_shared::request::RequestState;
use grantline_sims::{NewRitm, ids, snow_sys_id};
use support::{Stack, StackOptions, TempDir, WorkerProcess};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_survives_a_restart_of_the_namespace_master_with_two_worker_processes() {
    let dir = TempDir::new("cluster-e2e");
    let mut stack = Stack::start_opts(StackOptions { workers: false, cluster: true, ..StackOptions::default() }).await;
    assert!(stack.queue.is_cluster());
    // directory calls take a little while, so the restart lands among requests in flight
    stack.sims.graph.faults().set_latency(Duration::from_millis(20));
    let people = [ids::MEGAN_ID, ids::ALEX_ID, ids::ISAIAH_ID, ids::SARA_ID, ids::ALLAN_ID];
    for p in &people[1..] {
        stack.sims.graph.state().add_member(ids::GROUP_HELPDESK, p).unwrap();
    }
    let workers = [WorkerProcess::spawn(&stack, &dir, 1), WorkerProcess::spawn(&stack, &dir, 2)];

    let mut requests = Vec::new();
    for _round in 0..6 {
        for p in &people {
            requests.push(stack.submit(NewRitm::new(&snow_sys_id(p), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await);
        }
    }
    // once the first grants are through, and others are not, the namespace's master goes down
    let first = &requests[0].1;
    stack.wait_state(first, RequestState::Active, WAIT).await;
    let namespace = stack.queue.config().namespace.clone();
    let cluster = stack.redis.cluster();
    let master = cluster.master_of(&namespace).unwrap();
    cluster.restart(master).unwrap();
    let mut done_before = 0;
    for (_, id) in &requests {
        if stack.state(id).await == Some(RequestState::Active) {
            done_before += 1;
        }
    }
    eprintln!("master {master} of {namespace:?} restarted with {done_before} of {} requests active", requests.len());

    for (number, id) in &requests {
        stack.wait_state(id, RequestState::Active, WAIT).await;
        stack.wait_note(number, "Granted and verified").await;
    }
    // exactly once: one grant per request, one membership per person, one note per ticket
    for (number, id) in &requests {
        let trail = stack.audit(id).await;
        assert_eq!(trail.iter().filter(|r| r.event.name() == "grant_executed").count(), 1, "{id}");
        let notes = stack.work_notes(number);
        assert_eq!(notes.iter().filter(|n| n.contains("Granted and verified")).count(), 1, "{number}: {notes:#?}");
    }
    for p in &people {
        assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, p), 1, "{p}");
    }
    let n = requests.len() as u64;
    for kind in ["validate", "request-approval", "execute-grant", "schedule-removal"] {
        let m = stack.wait_queue_idle(kind, false).await;
        assert_eq!((m.completed_total, m.dead_total), (n, 0), "{kind}: {m:?}");
    }
    for w in workers {
        let (status, log) = w.terminate().await;
        assert!(status.success(), "{log}");
    }
    stack.shutdown().await;
}
