//! End to end with the real binary: two `grantline worker` processes, configured only through
//! `GRANTLINE__*` environment variables, share one queue namespace. The test process runs the
//! simulators, Redis and the HTTP edge, and no workers of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use grantline_shared::JobKind;
use grantline_shared::request::RequestState;
use grantline_sims::{NewRitm, ids, snow_sys_id};
use support::{Stack, StackOptions, TempDir, WAIT, WorkerProcess as Worker};

/// Idle consumers wait on their queue's wake-up list with BLPOP, one connection each; a
/// process serves every job kind, so a ready process holds one such connection per kind.
async fn blocked_consumers(stack: &Stack) -> usize {
    let mut conn = stack.queue.connection();
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut conn).await.unwrap();
    list.lines().filter(|l| l.split(' ').any(|f| f == "cmd=blpop")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_the_work_and_stop_cleanly_on_sigterm() {
    let dir = TempDir::new("processes");
    let stack = Stack::start_opts(StackOptions { workers: false, ..StackOptions::default() }).await;
    // a little latency on every directory call, so that jobs overlap and both processes are needed
    stack.sims.graph.faults().set_latency(Duration::from_millis(25));
    // five Helpdesk agents (Megan, and four added for this test): Team Alpha auto-approves for them
    let people = [ids::MEGAN_ID, ids::ALEX_ID, ids::ISAIAH_ID, ids::SARA_ID, ids::ALLAN_ID];
    for p in &people[1..] {
        stack.sims.graph.state().add_member(ids::GROUP_HELPDESK, p).unwrap();
    }

    let workers = [Worker::spawn(&stack, &dir, 1), Worker::spawn(&stack, &dir, 2)];
    let kinds = JobKind::ALL.len();
    stack
        .wait_for("both worker processes to wait on every queue", WAIT, || async {
            for w in &workers {
                let log = w.log();
                assert!(!log.contains("error:"), "worker {} failed to start:\n{log}", w.pid);
            }
            (blocked_consumers(&stack).await >= 2 * kinds).then_some(())
        })
        .await;

    // who holds leases, sampled while the work runs: queue members are `id|attempt|worker`
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (queue, stop) = (stack.queue.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            let mut conn = queue.connection();
            while !stop.load(Ordering::SeqCst) {
                let mut pipe = redis::pipe();
                for k in JobKind::ALL {
                    pipe.zrange(queue.keys(k.as_str()).inflight, 0, -1);
                }
                let lists: Vec<Vec<String>> = pipe.query_async(&mut conn).await.unwrap();
                for member in lists.into_iter().flatten() {
                    let mut parts = member.splitn(3, '|');
                    let (Some(job), Some(_), Some(worker)) = (parts.next(), parts.next(), parts.next()) else {
                        continue;
                    };
                    seen.entry(worker.to_owned()).or_default().insert(job.to_owned());
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            seen
        })
    };

    let mut requests = Vec::new();
    for round in 0..4 {
        for p in &people {
            let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(p), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
            requests.push((round, *p, number, id));
        }
    }
    assert_eq!(requests.len(), 20);
    for (_, _, number, id) in &requests {
        stack.wait_state(id, RequestState::Active, WAIT).await;
        stack.wait_note(number, "Granted and verified").await;
        assert_eq!(stack.ritm_state(number), "3");
    }
    stop.store(true, Ordering::SeqCst);
    let seen = sampler.await.unwrap();

    // every chain ran to its end exactly once
    for (kind, n) in [("validate", 20), ("request-approval", 20), ("execute-grant", 20), ("schedule-removal", 20)] {
        let m = stack.wait_queue_idle(kind, false).await;
        assert_eq!((m.enqueued_total, m.completed_total, m.dead_total), (n, n, 0), "{kind}: {m:?}");
    }
    assert_eq!(stack.metrics("remove-access").await.delayed, 20);
    for p in &people {
        assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, p), 1, "{p}");
    }
    for (_, _, _, id) in &requests {
        let trail = stack.audit(id).await;
        assert_eq!(trail.iter().filter(|r| r.event.name() == "grant_executed").count(), 1, "{id}");
    }

    // both processes held leases (their worker ids carry their pids) ...
    let by_process: Vec<usize> = workers
        .iter()
        .map(|w| {
            let tag = format!("-{}-", w.pid);
            seen.iter().filter(|(worker, _)| worker.contains(&tag)).map(|(_, jobs)| jobs.len()).sum()
        })
        .collect();
    eprintln!("jobs seen in flight per worker process: {by_process:?}");
    assert!(
        by_process.iter().all(|n| *n > 0),
        "jobs seen in flight per process {by_process:?}; worker ids seen: {:?}",
        seen.keys().collect::<Vec<_>>()
    );
    // ... and both called Graph: each process fetches its own token, lazily, on first use
    let token_requests =
        stack.sims.login.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with("/token")).count();
    assert!(token_requests >= 2, "token requests: {token_requests}");

    // SIGTERM: each stops fetching, finishes what it runs and exits 0
    let [a, b] = workers;
    let ((sa, la), (sb, lb)) = tokio::join!(a.terminate(), b.terminate());
    assert!(sa.success(), "worker 1 exited with {sa}:\n{la}");
    assert!(sb.success(), "worker 2 exited with {sb}:\n{lb}");
    // nothing was left leased by the processes that went away
    for k in JobKind::ALL {
        assert_eq!(stack.metrics(k.as_str()).await.in_flight, 0, "{k:?}");
    }
    stack.shutdown().await;
}
