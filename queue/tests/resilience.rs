#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use apalis_core::backend::TaskSink;
use common::*;
use grantline_queue::{NewJob, Queue, QueueConfig, RedisBackend, RetryPolicy};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    n: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_stall_shorter_than_five_seconds_does_not_kill_a_worker() {
    let e = env(QueueConfig::default()).await;
    let q = e.queue.clone();
    let done = Arc::new(AtomicU32::new(0));
    let d = done.clone();
    let w = spawn_worker!("stall", RedisBackend::<Job>::new(&q, "stall"), 4, move |_j: Job| {
        let d = d.clone();
        async move {
            d.fetch_add(1, Ordering::SeqCst);
        }
    });
    q.push(NewJob::new("stall", &Job { n: 1 }).unwrap()).await.unwrap();
    eventually(Duration::from_secs(5), "first job", || async { (done.load(Ordering::SeqCst) == 1).then_some(()) })
        .await;
    let server = e.server.as_ref().expect("this test stalls its own redis-server");
    let pid = server.pid().unwrap();
    std::process::Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    std::process::Command::new("kill").args(["-CONT", &pid.to_string()]).status().unwrap();
    q.push(NewJob::new("stall", &Job { n: 2 }).unwrap()).await.unwrap();
    eventually(Duration::from_secs(5), "a job after the stall", || async {
        (done.load(Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    assert!(!w.handle.is_finished(), "the worker is still running");
    w.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_running_jobs_and_returns_unstarted_ones() {
    let mut cfg = fast_config();
    cfg.fetch_batch = 10;
    let e = env(cfg).await;
    let q = e.queue.clone();
    let jobs = (0..10).map(|n| NewJob::new("slow", &Job { n }).unwrap()).collect();
    q.push_many(jobs).await.unwrap();
    let (started, finished) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (s, f) = (started.clone(), finished.clone());
    let w = spawn_worker!("slow", RedisBackend::<Job>::new(&q, "slow").batch(10), 2, move |_j: Job| {
        let (s, f) = (s.clone(), f.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(400)).await;
            f.fetch_add(1, Ordering::SeqCst);
        }
    });
    eventually(Duration::from_secs(5), "two running", || async { (started.load(Ordering::SeqCst) == 2).then_some(()) })
        .await;
    let t = Instant::now();
    w.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(2), "shutdown waited only for running jobs");
    assert_eq!((started.load(Ordering::SeqCst), finished.load(Ordering::SeqCst)), (2, 2), "running jobs finished");
    let m = q.metrics("slow").await.unwrap();
    assert_eq!((m.ready, m.in_flight, m.completed_total), (8, 0, 2), "unstarted jobs returned at once: {m:?}");
    // given back without consuming an attempt
    let mut conn = q.connection();
    let ready: Vec<String> = conn.lrange(q.keys("slow").ready, 0, -1).await.unwrap();
    assert!(ready.iter().all(|e| e.ends_with("|0")), "{ready:?}");
}

#[tokio::test]
async fn a_job_that_kills_its_worker_ends_in_the_dead_letters() {
    let mut cfg = fast_config();
    cfg.retry.insert("poison".into(), RetryPolicy { max_attempts: 3, ..RetryPolicy::default() });
    let e = env(cfg).await;
    let watcher = e.queue.clone();
    watcher.watch("poison").await.unwrap();
    watcher.push(NewJob::new("poison", &Job { n: 666 }).unwrap()).await.unwrap();
    for crash in 1..=3 {
        // a process of its own (its own Queue and maintenance loop) that dies mid-job
        let q = Queue::connect(&e.url, e.queue.config().clone()).await.unwrap();
        let picked = Arc::new(AtomicU32::new(0));
        let p = picked.clone();
        let w = spawn_worker!("poison", RedisBackend::<Job>::new(&q, "poison"), 1, move |_j: Job| {
            let p = p.clone();
            async move {
                p.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
        });
        eventually(Duration::from_secs(10), "picked up", || async {
            (picked.load(Ordering::SeqCst) == 1).then_some(())
        })
        .await;
        w.handle.abort();
        let _ = w.handle.await;
        drop(q);
        let expect_dead = crash == 3;
        eventually(Duration::from_secs(10), "lease reaped", || {
            let watcher = watcher.clone();
            async move {
                let m = watcher.metrics("poison").await.unwrap();
                (m.in_flight == 0 && (m.ready == 1 || (expect_dead && m.dead == 1))).then_some(())
            }
        })
        .await;
    }
    let dead = watcher.dead_letters("poison", None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].reason, "lease expired on the last attempt");
    assert!(dead[0].errors.iter().all(|a| a.code == "queue.lease_expired"));
    assert_eq!(dead[0].errors.len(), 3);
}

#[tokio::test]
async fn retention_expires_finished_jobs_and_idempotency_keys() {
    let mut cfg = fast_config();
    cfg.completed_retention = Duration::from_millis(200);
    cfg.janitor_every = Duration::from_millis(100);
    cfg.idempotency_ttl = Duration::from_secs(60);
    let e = env(cfg).await;
    let q = e.queue.clone();
    let jobs = (0..20).map(|n| NewJob::new("kept", &Job { n }).unwrap().idempotency_key(format!("k{n}"))).collect();
    q.push_many(jobs).await.unwrap();
    let w = spawn_worker!("kept", RedisBackend::<Job>::new(&q, "kept"), 4, |_j: Job| async {});
    let keys = q.keys("kept");
    let mut conn = q.connection();
    eventually(Duration::from_secs(5), "completed", || async {
        (q.metrics("kept").await.unwrap().completed_total == 20).then_some(())
    })
    .await;
    // kept for the retention time, then forgotten by the janitor
    let kept: u64 = conn.zcard(&keys.done).await.unwrap();
    assert!(kept > 0);
    eventually(Duration::from_secs(5), "forgotten", || {
        let mut conn = conn.clone();
        let keys = keys.clone();
        async move {
            let (jobs, done): (u64, u64) =
                redis::pipe().hlen(&keys.jobs).zcard(&keys.done).query_async(&mut conn).await.unwrap();
            (jobs == 0 && done == 0).then_some(())
        }
    })
    .await;
    w.shutdown().await;
    let ttl: i64 = conn.pttl(keys.idempotency("k3")).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "idempotency keys carry a TTL: {ttl}");
    // nothing else is left behind but bounded bookkeeping
    let all: Vec<String> = conn.keys(q.namespace().key("*")).await.unwrap();
    for k in &all {
        let bounded = k.ends_with(":stats") || k.ends_with(":queues") || k.contains(":idem:") || k.ends_with(":signal");
        assert!(bounded, "unexpected key left behind: {k}");
    }
}

#[tokio::test]
async fn metrics_report_the_age_of_the_oldest_ready_job() {
    let e = env(fast_config()).await;
    let q = &e.queue;
    assert_eq!(q.metrics("aging").await.unwrap().oldest_ready_age_ms, 0);
    q.push(NewJob::new("aging", &Job { n: 1 }).unwrap()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    q.push(NewJob::new("aging", &Job { n: 2 }).unwrap()).await.unwrap();
    let m = q.metrics("aging").await.unwrap();
    assert_eq!(m.ready, 2);
    assert!((280..2000).contains(&m.oldest_ready_age_ms), "{m:?}");
}

#[tokio::test]
async fn apalis_task_sink_pushes_work_and_duplicates_are_errors() {
    let e = env(fast_config()).await;
    let q = e.queue.clone();
    let mut sink = RedisBackend::<Job>::new(&q, "sink");
    sink.push(Job { n: 1 }).await.unwrap();
    sink.push_bulk(vec![Job { n: 2 }, Job { n: 3 }]).await.unwrap();
    let t = apalis_core::task::builder::TaskBuilder::new(Job { n: 4 }).idempotency_key("once").build();
    sink.push_task(t).await.unwrap();
    let again = apalis_core::task::builder::TaskBuilder::new(Job { n: 5 }).idempotency_key("once").build();
    assert!(sink.push_task(again).await.is_err(), "a duplicate is reported");
    assert_eq!(q.metrics("sink").await.unwrap().ready, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_delayed_jobs_due_in_the_same_second_drain_without_error() {
    const M: u64 = 1_000_000;
    let cfg = QueueConfig { completed_retention: Duration::ZERO, fetch_batch: 500, ..QueueConfig::default() };
    let e = env(cfg).await;
    let q = e.queue.clone();
    let keys = q.keys("mass");
    let mut conn = q.connection();
    // written server-side in chunks: the point is the backlog, not the enqueue path
    let due: u64 = {
        let (s, us): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
        s * 1000 + us / 1000 + 300
    };
    let fill = redis::Script::new(
        r#"for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
             local id = 'm' .. i
             redis.call('HSET', KEYS[1], id, '{"p":{"n":1},"c":0}')
             redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), id .. '|0')
           end
           return 1"#,
    );
    for start in (0..M).step_by(50_000) {
        let _: i64 = fill
            .key(&keys.jobs)
            .key(&keys.delayed)
            .arg(start)
            .arg(start + 49_999)
            .arg(due)
            .invoke_async(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(q.metrics("mass").await.unwrap().delayed, M);
    let w = spawn_worker!("mass", RedisBackend::<Job>::new(&q, "mass"), 500, |_j: Job| async {});
    eventually(Duration::from_secs(600), "a million jobs drained", || async {
        let m = q.metrics("mass").await.unwrap();
        (m.completed_total == M).then_some(())
    })
    .await;
    w.shutdown().await;
    let m = q.metrics("mass").await.unwrap();
    assert_eq!((m.delayed, m.ready, m.in_flight, m.dead), (0, 0, 0, 0));
}
