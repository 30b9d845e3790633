//! The queue on a private Redis Cluster, end to end with real worker processes
//! (`queue-bench worker` given a `redis+cluster://` URL): chains of 5 steps through the
//! atomic hand-off, a SIGKILLed and restarted master, a failover to a replica, and two
//! namespaces carried by two masters.
//!
//! Every (chain, step) is counted by the hand-off script itself (`HINCRBY` in the same
//! script as the ack and the successor's enqueue), so "each counted exactly once" means no
//! chain was lost and none was forked, whatever the cluster did in between.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use grantline_queue::server::{ClusterOptions, RedisCluster};
use grantline_queue::{NewJob, Queue, QueueConfig};
use redis::AsyncCommands;
use serde::Serialize;

const QUEUE: &str = "chain";
const STEPS: u64 = 5;
/// Lease of the worker processes: short, so jobs whose lease a failover left behind come
/// back quickly.
const LEASE_MS: u64 = 2000;

/// The scenarios each start a cluster and two worker processes and assert recovery times:
/// one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Serialize)]
struct Step {
    c: u64,
    k: u32,
    t0: f64,
}

struct Worker {
    child: Child,
}

impl Worker {
    fn start(url: &str, ns: &str, work_ms: u64) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_queue-bench"))
            .args(["worker", "--url", url, "--namespace", ns, "--queue", QUEUE, "--concurrency", "50"])
            .args(["--count-steps", "--lease-ms", &LEASE_MS.to_string(), "--work-ms", &work_ms.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("ready "), "worker did not start: {line:?}");
        Worker { child }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(ns: &str) -> QueueConfig {
    QueueConfig {
        namespace: ns.into(),
        lease: Duration::from_millis(LEASE_MS),
        renew_every: Duration::from_millis(LEASE_MS / 4),
        ..QueueConfig::default()
    }
}

/// Connects to the cluster and watches the chain queue (this process reaps too).
async fn connect(cluster: &RedisCluster, ns: &str) -> Queue {
    let q = Queue::connect(&cluster.url(), config(ns)).await.unwrap();
    assert!(q.is_cluster());
    q.watch(QUEUE).await.unwrap();
    q
}

async fn push_chains(q: &Queue, n: u64) {
    for start in (0..n).step_by(500) {
        let jobs =
            (start..(start + 500).min(n)).map(|c| NewJob::new(QUEUE, &Step { c, k: 1, t0: 0.0 }).unwrap()).collect();
        q.push_many(jobs).await.unwrap();
    }
}

/// Chains finished so far (0 while the namespace's master cannot be reached).
async fn finished(q: &Queue) -> u64 {
    let mut conn = q.connection();
    conn.llen(q.namespace().key("bench:lat")).await.unwrap_or(0)
}

async fn wait_finished(q: &Queue, n: u64, within: Duration) -> Duration {
    let t = Instant::now();
    while finished(q).await < n {
        assert!(t.elapsed() < within, "{} of {n} chains finished within {within:?}", finished(q).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.elapsed()
}

/// Every step of every chain acknowledged exactly once, each chain's last step recorded
/// once, and nothing left in the queue.
async fn assert_complete(q: &Queue, n: u64) {
    let mut conn = q.connection();
    let steps: HashMap<String, u32> = conn.hgetall(q.namespace().key("bench:steps")).await.unwrap();
    assert_eq!(steps.len() as u64, n * STEPS, "every step of every chain acknowledged (none lost)");
    let forked: Vec<_> = steps.iter().filter(|(_, v)| **v != 1).collect();
    assert!(forked.is_empty(), "steps acknowledged twice (a successor enqueued twice): {forked:?}");
    let lat: Vec<String> = conn.lrange(q.namespace().key("bench:lat"), 0, -1).await.unwrap();
    let chains: HashSet<&str> = lat.iter().filter_map(|l| l.split(',').next()).collect();
    assert_eq!((lat.len() as u64, chains.len() as u64), (n, n), "each chain finished once");
    let m = q.metrics(QUEUE).await.unwrap();
    assert_eq!((m.ready, m.in_flight, m.delayed, m.dead), (0, 0, 0, 0), "{m:?}");
}

/// The first names `{prefix}-0`, `{prefix}-1`, ... that land on `count` different masters.
fn namespaces_on_distinct_masters(cluster: &RedisCluster, prefix: &str, count: usize) -> Vec<(String, u16)> {
    let mut picked: Vec<(String, u16)> = Vec::new();
    for i in 0.. {
        let ns = format!("{prefix}-{i}");
        let master = cluster.master_of(&ns).unwrap();
        if !picked.iter().any(|(_, m)| *m == master) {
            picked.push((ns, master));
        }
        if picked.len() == count {
            break;
        }
    }
    picked
}

fn evalsha_calls(port: u16) -> u64 {
    let stats = RedisCluster::query_node(port, redis::cmd("INFO").arg("commandstats")).unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn keys_in_slot(port: u16, slot: u16) -> u64 {
    RedisCluster::query_node(port, redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot)).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_run_chains_exactly_once() {
    const N: u64 = 2000;
    let _one_at_a_time = SERIAL.lock().await;
    let cluster = RedisCluster::start(3, 0).unwrap();
    let ns = "once";
    let q = connect(&cluster, ns).await;
    push_chains(&q, N).await;
    let _workers = [Worker::start(&cluster.url(), ns, 0), Worker::start(&cluster.url(), ns, 0)];
    let took = wait_finished(&q, N, Duration::from_secs(60)).await;
    eprintln!("{N} chains of {STEPS} steps on 3 masters with 2 worker processes in {took:?}");
    assert_complete(&q, N).await;
    assert_eq!(q.wait_replicated(1, Duration::from_millis(20)).await.unwrap(), 0, "these masters have no replica");
}

/// Steps acknowledged so far in the namespace (None while its master cannot be reached).
async fn acked(q: &Queue) -> Option<u64> {
    q.metrics(QUEUE).await.ok().map(|m| m.completed_total)
}

/// Polls until more than `floor` steps are acknowledged; returns how long that took.
async fn progress_beyond(q: &Queue, url: &str, floor: u64, within: Duration, what: &str) -> Duration {
    let t = Instant::now();
    loop {
        if acked(q).await.is_some_and(|n| n > floor) {
            return t.elapsed();
        }
        if t.elapsed() >= within {
            // tell a stuck client from a stuck cluster
            let fresh = match Queue::connect(url, q.config().clone()).await {
                Ok(f) => format!("{:?}", f.metrics(QUEUE).await),
                Err(e) => format!("no connection: {e}"),
            };
            panic!(
                "{what}: no progress within {within:?}; this client sees {:?}, a new one {fresh}",
                q.metrics(QUEUE).await
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until a share of the steps is acknowledged, so that a fault lands mid-run.
async fn wait_acked(q: &Queue, at_least: u64) -> u64 {
    let t = Instant::now();
    loop {
        let n = acked(q).await.unwrap_or(0);
        if n >= at_least {
            return n;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{n} steps acknowledged, waiting for {at_least}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_ride_out_a_sigkill_and_restart_of_the_namespace_master() {
    const N: u64 = 2000;
    let _one_at_a_time = SERIAL.lock().await;
    let mut cluster = RedisCluster::start(3, 0).unwrap();
    let ns = "restart";
    let master = cluster.master_of(ns).unwrap();
    let q = connect(&cluster, ns).await;
    push_chains(&q, N).await;
    let _workers = [Worker::start(&cluster.url(), ns, 2), Worker::start(&cluster.url(), ns, 2)];
    let before = wait_acked(&q, N * STEPS * 3 / 10).await;
    assert!(before < N * STEPS, "the kill must land while chains run");
    // SIGKILL, then the same port and data directory (AOF, appendfsync always)
    let down = Instant::now();
    cluster.restart(master).unwrap();
    let outage = down.elapsed();
    let resumed =
        progress_beyond(&q, &cluster.url(), before, Duration::from_secs(10), "after the master restarted").await;
    eprintln!("master {master} of {ns:?} killed at {before} steps, back after {outage:?}; progress {resumed:?} later");
    assert_eq!(cluster.master_of(ns).unwrap(), master, "no failover without replicas");
    wait_finished(&q, N, Duration::from_secs(60)).await;
    // late duplicates would show up in the step counts
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_complete(&q, N).await;
    // a restarted master answers CLUSTERDOWN for its first 2 s (Redis gives the cluster that
    // long to reconfigure it before it takes writes again); then the clients' retries get through
    assert!(resumed < Duration::from_secs(4), "workers resumed {resumed:?} after the master came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_takes_over_a_killed_master_which_restarts_as_its_replica() {
    const N: u64 = 2000;
    let _one_at_a_time = SERIAL.lock().await;
    let opts =
        ClusterOptions { replicas_per_master: 1, node_timeout: Duration::from_millis(1000), ..Default::default() };
    let mut cluster = RedisCluster::start_with(opts).unwrap();
    let ns = "failover";
    let old = cluster.master_of(ns).unwrap();
    let replicas = cluster.replicas_of(old).unwrap();
    assert_eq!(replicas.len(), 1, "one replica per master");
    let q = connect(&cluster, ns).await;
    push_chains(&q, N).await;
    let _workers = [Worker::start(&cluster.url(), ns, 5), Worker::start(&cluster.url(), ns, 5)];
    let before = wait_acked(&q, N * STEPS * 3 / 10).await;
    assert!(before < N * STEPS, "the kill must land while chains run");
    // a write confirmed by the replica survives the failover, whatever else is rolled back
    let marker = q.namespace().key("confirmed");
    let mut conn = q.connection();
    let _: () = conn.set(&marker, before).await.unwrap();
    assert_eq!(q.wait_replicated(1, Duration::from_secs(1)).await.unwrap(), 1, "the replica has the write");
    let at_kill = acked(&q).await.unwrap();
    cluster.kill(old).unwrap();
    let killed = Instant::now();
    let new = loop {
        if let Ok(m) = cluster.master_of(ns) {
            break m;
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "no replica took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let failover = killed.elapsed();
    assert_eq!(new, replicas[0], "the replica of the killed master took over");
    // what the replica had not received when its master died is gone: the chains roll back to
    // a consistent earlier point of the namespace's one replication stream, and run on from there
    let at_promotion = acked(&q).await.unwrap_or(0);
    let kept: Option<u64> = conn.get(&marker).await.unwrap();
    assert_eq!(kept, Some(before), "a write the replica had confirmed is on the new master");
    progress_beyond(&q, &cluster.url(), before, Duration::from_secs(15), "after the failover").await;
    let since_kill = killed.elapsed();
    eprintln!(
        "master {old} of {ns:?} killed at {at_kill} steps; replica {new} promoted after {failover:?} \
         ({at_promotion} steps there); progress beyond the kill {since_kill:?} after it \
         (this client replaced its cluster connection {} times)",
        q.connection().replacements()
    );
    cluster.restart(old).unwrap();
    let t = Instant::now();
    while !cluster.is_replica_of(old, new).unwrap_or(false) {
        assert!(t.elapsed() < Duration::from_secs(20), "the old master did not rejoin as a replica");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.wait_healthy(Duration::from_secs(20)).unwrap();
    wait_finished(&q, N, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_complete(&q, N).await;
    assert!(since_kill < Duration::from_secs(10), "work resumed {since_kill:?} after the master was killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_namespaces_on_two_masters_spread_the_load() {
    const N: u64 = 1000;
    let _one_at_a_time = SERIAL.lock().await;
    let cluster = RedisCluster::start(3, 0).unwrap();
    let picked = namespaces_on_distinct_masters(&cluster, "tenant", 2);
    let calls_before: Vec<u64> = picked.iter().map(|(_, m)| evalsha_calls(*m)).collect();
    let mut queues = Vec::new();
    let mut workers = Vec::new();
    for (ns, _) in &picked {
        let q = connect(&cluster, ns).await;
        push_chains(&q, N).await;
        workers.push(Worker::start(&cluster.url(), ns, 0));
        queues.push(q);
    }
    for q in &queues {
        wait_finished(q, N, Duration::from_secs(60)).await;
        assert_complete(q, N).await;
    }
    for (i, (ns, master)) in picked.iter().enumerate() {
        let slot = grantline_queue::Namespace::new(ns).slot();
        let calls = evalsha_calls(*master) - calls_before[i];
        eprintln!("namespace {ns:?}: slot {slot}, master {master}, {calls} script calls there");
        // the namespace's keys live on its master only, and its scripts ran there
        assert!(keys_in_slot(*master, slot) > 0, "{ns} keeps its keys on {master}");
        assert!(calls >= N * STEPS, "{ns}: every hand-off of its chains ran on {master} ({calls} calls)");
        for other in cluster.masters().unwrap().into_iter().filter(|m| m != master) {
            assert_eq!(keys_in_slot(other, slot), 0, "{ns} has no keys on {other}");
        }
    }
}
