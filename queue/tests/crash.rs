//! Crash and durability tests with real processes: worker processes are SIGKILLed while
//! chains run, and Redis itself is killed and restarted (AOF, appendfsync always).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grantline_queue::server::{Persistence, RedisServer};
use grantline_queue::{NewJob, Queue, QueueConfig};
use redis::AsyncCommands;
use serde::Serialize;

const QUEUE: &str = "chain";

#[derive(Serialize)]
struct Step {
    c: u64,
    k: u32,
    t0: f64,
}

struct Worker {
    child: Child,
    id: String,
}

impl Worker {
    fn start(url: &str, ns: &str, lease_ms: Option<u64>, work_ms: u64) -> Worker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_queue-bench"));
        cmd.args(["worker", "--url", url, "--namespace", ns, "--queue", QUEUE, "--concurrency", "50", "--count-steps"])
            .args(["--work-ms", &work_ms.to_string()]);
        if let Some(l) = lease_ms {
            cmd.args(["--lease-ms", &l.to_string()]);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("worker process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let id = line.trim().strip_prefix("ready ").expect("ready line").to_owned();
        Worker { child, id }
    }
    fn sigkill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn push_chains(q: &Queue, n: u64) {
    for start in (0..n).step_by(1000) {
        let jobs =
            (start..(start + 1000).min(n)).map(|c| NewJob::new(QUEUE, &Step { c, k: 1, t0: 0.0 }).unwrap()).collect();
        q.push_many(jobs).await.unwrap();
    }
}

/// Every chain finished once: every (chain, step) acknowledged exactly once, and the final
/// step recorded once per chain.
async fn assert_complete(q: &Queue, n: u64) {
    let mut conn = q.connection();
    let steps: std::collections::HashMap<String, u32> = conn.hgetall(q.namespace().key("bench:steps")).await.unwrap();
    assert_eq!(steps.len() as u64, n * 5, "every step of every chain acknowledged (0 lost)");
    let forked: Vec<_> = steps.iter().filter(|(_, v)| **v != 1).collect();
    assert!(forked.is_empty(), "steps acknowledged twice (a successor enqueued twice): {forked:?}");
    let lat: Vec<String> = conn.lrange(q.namespace().key("bench:lat"), 0, -1).await.unwrap();
    let chains: std::collections::HashSet<&str> = lat.iter().filter_map(|l| l.split(',').next()).collect();
    assert_eq!((lat.len() as u64, chains.len() as u64), (n, n));
    let m = q.metrics(QUEUE).await.unwrap();
    assert_eq!((m.ready, m.in_flight, m.delayed, m.dead), (0, 0, 0, 0), "{m:?}");
}

async fn finished(q: &Queue) -> u64 {
    let mut conn = q.connection();
    conn.llen(q.namespace().key("bench:lat")).await.unwrap_or(0)
}

async fn leases_of(q: &Queue, worker: &str) -> usize {
    let mut conn = q.connection();
    let members: Vec<String> = conn.zrange(q.keys(QUEUE).inflight, 0, -1).await.unwrap_or_default();
    members.iter().filter(|m| m.ends_with(&format!("|{worker}"))).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_workers_lose_nothing_and_fork_nothing() {
    const N: u64 = 20_000;
    const LEASE_MS: u64 = 2000;
    let server = RedisServer::start().unwrap();
    let cfg = QueueConfig { namespace: "crash".into(), ..QueueConfig::default() };
    let q = Queue::connect(&server.url(), cfg).await.unwrap();
    // this process watches the queue too: any live process may reap
    q.watch(QUEUE).await.unwrap();
    push_chains(&q, N).await;
    // 10 ms of work per step keeps the 100,000 jobs busy for well over the time the four kills
    // and their recoveries take, so every kill lands while chains are in flight
    const WORK_MS: u64 = 10;
    let mut worker = Worker::start(&server.url(), "crash", Some(LEASE_MS), WORK_MS);
    for kill in 1..=4 {
        tokio::time::sleep(Duration::from_millis(300 + fastrand::u64(0..1200))).await;
        assert!(finished(&q).await < N, "kill {kill} must land while chains remain");
        let held = leases_of(&q, &worker.id).await;
        worker.sigkill();
        let dead_id = worker.id.clone();
        let killed_at = Instant::now();
        worker = Worker::start(&server.url(), "crash", Some(LEASE_MS), WORK_MS);
        // the dead worker's leases come back within the lease time (plus a reaper tick)
        while leases_of(&q, &dead_id).await > 0 {
            assert!(
                killed_at.elapsed() < Duration::from_millis(LEASE_MS + 1500),
                "jobs of a killed worker not recovered in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("kill {kill}: {held} leases held, recovered in {:?}", killed_at.elapsed());
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while finished(&q).await < N {
        assert!(Instant::now() < deadline, "chains did not complete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_complete(&q, N).await;
    assert!(q.metrics(QUEUE).await.unwrap().recovered_total > 0, "kills landed while jobs were in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_lease_recovers_a_killed_worker_within_ten_seconds() {
    let server = RedisServer::start().unwrap();
    let q = Queue::connect(&server.url(), QueueConfig { namespace: "crashdefault".into(), ..QueueConfig::default() })
        .await
        .unwrap();
    q.watch(QUEUE).await.unwrap();
    push_chains(&q, 200).await;
    // slow handlers keep jobs in flight at the moment of the kill
    let mut worker = Worker::start(&server.url(), "crashdefault", None, 200);
    let mut held = 0;
    let t = Instant::now();
    while held == 0 {
        assert!(t.elapsed() < Duration::from_secs(10));
        held = leases_of(&q, &worker.id).await;
    }
    let dead = worker.id.clone();
    worker.sigkill();
    let killed_at = Instant::now();
    let _replacement = Worker::start(&server.url(), "crashdefault", None, 0);
    while leases_of(&q, &dead).await > 0 {
        assert!(killed_at.elapsed() < Duration::from_secs(10), "recovery took longer than 10 s with defaults");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = killed_at.elapsed();
    eprintln!("{held} leases of the killed worker recovered in {recovered:?}");
    while finished(&q).await < 200 {
        assert!(killed_at.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_complete(&q, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_loses_nothing_and_workers_resume_by_themselves() {
    const N: u64 = 5_000;
    let mut server = RedisServer::start_with(Persistence::AofAlways).unwrap();
    let url = server.url();
    let q = Queue::connect(&url, QueueConfig { namespace: "restart".into(), ..QueueConfig::default() }).await.unwrap();
    push_chains(&q, N).await;
    let _worker = Worker::start(&url, "restart", None, 0);
    let t = Instant::now();
    while finished(&q).await < N / 5 {
        assert!(t.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = finished(&q).await;
    server.restart().unwrap(); // SIGKILL, then the same port and data directory
    let up = Instant::now();
    // progress resumes within 2 s of Redis accepting connections again
    let mut resumed = None;
    while resumed.is_none() {
        let n = finished(&q).await;
        if n > before {
            resumed = Some(up.elapsed());
        }
        assert!(
            up.elapsed() < Duration::from_secs(2),
            "workers did not resume within 2 s ({n} finished, {before} before)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("resumed {resumed:?} after Redis came back");
    while finished(&q).await < N {
        assert!(up.elapsed() < Duration::from_secs(120), "chains did not complete after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_complete(&q, N).await;
}
