#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use grantline_queue::{
    CommitOutcome, Guard, Handoff, JobError, NewJob, PushOutcome, QueueConfig, RedisBackend, RetryPolicy, Write,
    WriteCmd,
};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Ping {
    n: u32,
}

#[tokio::test]
async fn push_reports_duplicates_and_queue_names_are_kind_strings() {
    let e = env(fast_config()).await;
    let q = &e.queue;
    let a = q.push(NewJob::new("validate", &Ping { n: 1 }).unwrap().idempotency_key("servicenow:RITM1")).await.unwrap();
    let PushOutcome::Enqueued { id } = a else { panic!("{a:?}") };
    let b = q.push(NewJob::new("validate", &Ping { n: 2 }).unwrap().idempotency_key("servicenow:RITM1")).await.unwrap();
    assert_eq!(
        b,
        PushOutcome::Duplicate {
            id: match &b {
                PushOutcome::Duplicate { id, .. } => id.clone(),
                _ => String::new(),
            },
            existing: id.clone()
        }
    );
    // an explicit id that exists is a duplicate too
    let c = q.push(NewJob::new("validate", &Ping { n: 3 }).unwrap().with_id(id.clone())).await.unwrap();
    assert!(matches!(c, PushOutcome::Duplicate { .. }));
    // many, pipelined, each with its own outcome
    let many: Vec<NewJob> = (0..100).map(|n| NewJob::new("validate", &Ping { n }).unwrap()).collect();
    let out = q.push_many(many).await.unwrap();
    assert_eq!(out.iter().filter(|o| matches!(o, PushOutcome::Enqueued { .. })).count(), 100);
    let m = q.metrics("validate").await.unwrap();
    assert_eq!(m.ready, 101);
    assert_eq!(q.queues().await.unwrap(), vec!["validate".to_owned()]);
    let mut conn = q.connection();
    let keys: Vec<String> = conn.keys("*").await.unwrap();
    assert!(keys.iter().all(|k| k.starts_with("{grantline}:") || k.starts_with("{t")), "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with(":q:validate:ready")), "queue named by its kind string: {keys:?}");
}

#[tokio::test]
async fn delayed_jobs_wait_in_redis_and_run_when_due() {
    let e = env(fast_config()).await;
    let q = e.queue.clone();
    q.push(NewJob::new("later", &Ping { n: 1 }).unwrap().delay(Duration::from_millis(600))).await.unwrap();
    let m = q.metrics("later").await.unwrap();
    assert_eq!((m.ready, m.delayed), (0, 1));
    let started = std::time::Instant::now();
    let seen = Arc::new(AtomicU32::new(0));
    let s = seen.clone();
    let w = spawn_worker!("later", RedisBackend::<Ping>::new(&q, "later"), 4, move |_p: Ping| {
        let s = s.clone();
        async move {
            s.fetch_add(1, Ordering::SeqCst);
        }
    });
    eventually(Duration::from_secs(5), "delayed job ran", || async {
        (seen.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(500), "ran too early: {waited:?}");
    assert!(waited < Duration::from_millis(1500), "ran too late: {waited:?}");
    w.shutdown().await;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    chain: u32,
    k: u32,
}

#[tokio::test]
async fn handoff_acks_enqueues_successors_and_applies_writes_atomically() {
    let e = env(fast_config()).await;
    let q = e.queue.clone();
    let jobs: Vec<NewJob> = (0..50).map(|c| NewJob::new("chain", &Step { chain: c, k: 1 }).unwrap()).collect();
    q.push_many(jobs).await.unwrap();
    let w = spawn_worker!("chain", RedisBackend::<Step>::new(&q, "chain"), 8, |s: Step| async move {
        let mut h = Handoff::done()
            .write(Write::new(WriteCmd::HIncrBy, "test:steps", [format!("{}:{}", s.chain, s.k), "1".to_owned()]))
            .write(Write::xadd(format!("test:audit:{}", s.chain), [("step", s.k.to_string())]));
        if s.k < 5 {
            h = h.then(NewJob::new("chain", &Step { chain: s.chain, k: s.k + 1 })?);
        }
        Ok::<_, grantline_queue::QueueError>(h)
    });
    let mut conn = q.connection();
    let key = q.namespace().key("test:steps");
    eventually(Duration::from_secs(20), "all 250 steps", || {
        let mut conn = conn.clone();
        let key = key.clone();
        async move { (conn.hlen::<_, u64>(&key).await.unwrap() == 250).then_some(()) }
    })
    .await;
    w.shutdown().await;
    let counts: std::collections::HashMap<String, u32> = conn.hgetall(&key).await.unwrap();
    assert!(counts.values().all(|&n| n == 1), "every step acknowledged exactly once");
    let audit: u64 = conn.xlen(q.namespace().key("test:audit:7")).await.unwrap();
    assert_eq!(audit, 5);
    let m = q.metrics("chain").await.unwrap();
    assert_eq!((m.ready, m.in_flight, m.delayed, m.completed_total), (0, 0, 0, 250));
}

#[tokio::test]
async fn guards_and_idempotency_make_a_commit_all_or_nothing() {
    let e = env(fast_config()).await;
    let q = &e.queue;
    let first = Handoff::done()
        .guard(Guard::KeyAbsent { key: "req:1".into() })
        .write(Write::hset("req:1", [("state", "received")]))
        .then(NewJob::new("validate", &Ping { n: 1 }).unwrap().idempotency_key("sn:RITM1"));
    assert!(matches!(q.commit(first.clone()).await.unwrap(), CommitOutcome::Applied { .. }));
    assert_eq!(q.commit(first).await.unwrap(), CommitOutcome::GuardFailed { index: 0 });
    let second = Handoff::done()
        .guard(Guard::FieldIn {
            key: "req:1".into(),
            field: "state".into(),
            values: vec!["received".into(), "validating".into()],
        })
        .write(Write::hset("req:1", [("state", "validating")]))
        .then(NewJob::new("validate", &Ping { n: 2 }).unwrap().idempotency_key("sn:RITM1"));
    assert!(matches!(q.commit(second).await.unwrap(), CommitOutcome::Duplicate { .. }));
    // a lock held as a string key: only its holder's commit applies
    let mut conn0 = q.connection();
    let _: () = conn0.set(q.namespace().key("lock:x"), "token-a").await.unwrap();
    let by = |t: &str| {
        Handoff::done().guard(Guard::KeyEquals { key: "lock:x".into(), value: t.into() }).write(Write::new(
            WriteCmd::Del,
            "lock:x",
            Vec::<String>::new(),
        ))
    };
    assert_eq!(q.commit(by("token-b")).await.unwrap(), CommitOutcome::GuardFailed { index: 0 });
    assert!(matches!(q.commit(by("token-a")).await.unwrap(), CommitOutcome::Applied { .. }));
    let gone: bool = conn0.exists(q.namespace().key("lock:x")).await.unwrap();
    assert!(!gone, "the holder's commit released it");
    let mut conn = q.connection();
    let state: String = conn.hget(q.namespace().key("req:1"), "state").await.unwrap();
    assert_eq!(state, "received", "a refused commit writes nothing");
    assert_eq!(q.metrics("validate").await.unwrap().ready, 1);
}

fn retry_config() -> QueueConfig {
    let mut cfg = fast_config();
    cfg.retry.insert(
        "flaky".into(),
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(50),
            max_wait: Duration::from_secs(60),
        },
    );
    cfg.dead_letter_queue = Some("alert".into());
    cfg
}

#[tokio::test]
async fn transient_failures_retry_then_dead_letter_with_history_and_one_alert() {
    let e = env(retry_config()).await;
    let q = e.queue.clone();
    q.push(NewJob::new("flaky", &Ping { n: 7 }).unwrap()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let w = spawn_worker!("flaky", RedisBackend::<Ping>::new(&q, "flaky"), 2, move |_p: Ping| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(JobError::transient("graph.unavailable", "503 from Graph"))
        }
    });
    let dead = eventually(Duration::from_secs(10), "dead letter", || {
        let q = q.clone();
        async move { q.dead_letters("flaky", None, 10).await.unwrap().into_iter().next() }
    })
    .await;
    w.shutdown().await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "max_attempts counts every attempt");
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.reason, "retries exhausted");
    assert_eq!(dead.errors.len(), 3);
    assert!(dead.errors.iter().all(|a| a.code == "graph.unavailable"));
    assert_eq!(dead.payload, serde_json::json!({"n": 7}));
    // exactly one alert job for this arrival, naming the dead letter
    let alerts = q.metrics("alert").await.unwrap();
    assert_eq!(alerts.ready, 1);
    // redrive puts it back with a fresh budget, discard removes it for good
    let m = q.metrics("flaky").await.unwrap();
    assert_eq!((m.dead, m.dead_total), (1, 1));
    assert!(q.redrive("flaky", &dead.id).await.unwrap().is_some());
    let m = q.metrics("flaky").await.unwrap();
    assert_eq!((m.dead, m.ready), (0, 1));
    assert!(q.dead_letters("flaky", None, 10).await.unwrap().is_empty());
    assert!(q.redrive("flaky", &dead.id).await.unwrap().is_none(), "a dead letter is redriven once");
}

#[tokio::test]
async fn dead_letters_redrive_all_and_discard() {
    let e = env(retry_config()).await;
    let q = e.queue.clone();
    for n in 0..3 {
        q.push(NewJob::new("flaky", &Ping { n }).unwrap()).await.unwrap();
    }
    let w = spawn_worker!("flaky", RedisBackend::<Ping>::new(&q, "flaky"), 3, |_p: Ping| async {
        Err::<(), _>(JobError::permanent("policy.denied", "no"))
    });
    eventually(Duration::from_secs(10), "three dead letters", || {
        let q = q.clone();
        async move { (q.metrics("flaky").await.unwrap().dead == 3).then_some(()) }
    })
    .await;
    w.shutdown().await;
    let dead = q.dead_letters("flaky", None, 10).await.unwrap();
    assert!(q.discard("flaky", &dead[0].id).await.unwrap());
    assert!(!q.discard("flaky", &dead[0].id).await.unwrap(), "gone for good");
    assert_eq!(q.redrive_all("flaky").await.unwrap(), 2);
    let m = q.metrics("flaky").await.unwrap();
    assert_eq!((m.dead, m.ready, m.redriven_total), (0, 2, 2));
    // each dead letter raised exactly one alert, redrives do not raise more
    assert_eq!(q.metrics("alert").await.unwrap().ready, 3);
}

#[tokio::test]
async fn permanent_failure_is_not_retried_and_retry_after_is_a_floor() {
    let e = env(retry_config()).await;
    let q = e.queue.clone();
    q.push(NewJob::new("flaky", &Ping { n: 1 }).unwrap()).await.unwrap();
    q.push(NewJob::new("flaky", &Ping { n: 2 }).unwrap()).await.unwrap();
    let times = Arc::new(std::sync::Mutex::new(Vec::<(u32, std::time::Instant)>::new()));
    let t = times.clone();
    let w = spawn_worker!("flaky", RedisBackend::<Ping>::new(&q, "flaky"), 2, move |p: Ping| {
        let t = t.clone();
        async move {
            t.lock().unwrap().push((p.n, std::time::Instant::now()));
            match p.n {
                1 => Err(JobError::permanent("policy.denied", "not in the catalog")),
                _ => {
                    let seen = t.lock().unwrap().iter().filter(|(n, _)| *n == 2).count();
                    if seen == 1 {
                        Err(JobError::Transient {
                            code: "graph.503".into(),
                            message: "busy".into(),
                            retry_after: Some(Duration::from_millis(700)),
                        })
                    } else {
                        Ok(())
                    }
                }
            }
        }
    });
    eventually(Duration::from_secs(10), "both settled", || {
        let q = q.clone();
        async move {
            let m = q.metrics("flaky").await.unwrap();
            (m.dead == 1 && m.completed_total == 1).then_some(())
        }
    })
    .await;
    w.shutdown().await;
    let times = times.lock().unwrap().clone();
    assert_eq!(times.iter().filter(|(n, _)| *n == 1).count(), 1, "permanent failures are not retried");
    let two: Vec<_> = times.iter().filter(|(n, _)| *n == 2).map(|(_, t)| *t).collect();
    assert_eq!(two.len(), 2);
    assert!(two[1] - two[0] >= Duration::from_millis(650), "retry honoured Retry-After: {:?}", two[1] - two[0]);
    let dead = q.dead_letters("flaky", None, 10).await.unwrap();
    assert_eq!(dead[0].reason, "permanent failure");
    assert_eq!(dead[0].attempts, 1);
}

#[tokio::test]
async fn throttled_retries_do_not_consume_attempts() {
    let e = env(retry_config()).await;
    let q = e.queue.clone();
    q.push(NewJob::new("flaky", &Ping { n: 1 }).unwrap()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let attempts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, a) = (calls.clone(), attempts.clone());
    let w = spawn_worker!(
        "flaky",
        RedisBackend::<Ping>::new(&q, "flaky"),
        1,
        move |_p: Ping, att: apalis_core::task::attempt::Attempt| {
            let (c, a) = (c.clone(), a.clone());
            async move {
                a.lock().unwrap().push(att.current());
                // four 429s, more than max_attempts (3), then success
                if c.fetch_add(1, Ordering::SeqCst) < 4 {
                    Err(JobError::throttled("graph.throttled", "429", Some(Duration::from_millis(30))))
                } else {
                    Ok(())
                }
            }
        }
    );
    eventually(Duration::from_secs(10), "completed after throttling", || {
        let q = q.clone();
        async move { (q.metrics("flaky").await.unwrap().completed_total == 1).then_some(()) }
    })
    .await;
    w.shutdown().await;
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(*attempts.lock().unwrap(), vec![1, 1, 1, 1, 1], "429s leave the attempt count alone");
    let m = q.metrics("flaky").await.unwrap();
    assert_eq!((m.throttled_total, m.dead), (4, 0));
}

#[tokio::test]
async fn a_hand_off_that_loses_a_race_runs_again_on_fresh_state_without_spending_an_attempt() {
    let mut cfg = retry_config();
    cfg.retry.insert(
        "racy".into(),
        RetryPolicy {
            max_attempts: 2,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(50),
            max_wait: Duration::from_secs(30),
        },
    );
    let e = env(cfg).await;
    let q = e.queue.clone();
    let mut conn = q.connection();
    let head = q.namespace().key("test:head");
    let _: () = conn.set(&head, 0).await.unwrap();
    q.push(NewJob::new("racy", &Ping { n: 1 }).unwrap()).await.unwrap();
    let attempts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, h) = (attempts.clone(), head.clone());
    let c = conn.clone();
    let w = spawn_worker!(
        "racy",
        RedisBackend::<Ping>::new(&q, "racy"),
        1,
        move |_p: Ping, att: apalis_core::task::attempt::Attempt| {
            let (a, h, mut c) = (a.clone(), h.clone(), c.clone());
            async move {
                // the handler reads the head its hand-off is based on; five times a concurrent
                // writer moves it on before the hand-off is applied
                let seen: u32 = c.get(&h).await.unwrap();
                a.lock().unwrap().push((att.current(), std::time::Instant::now()));
                if seen < 5 {
                    let _: () = c.set(&h, seen + 1).await.unwrap();
                }
                Ok::<_, grantline_queue::QueueError>(
                    Handoff::done()
                        .guard(Guard::KeyEquals { key: "test:head".into(), value: seen.to_string() })
                        .write(Write::new(WriteCmd::Set, "test:done", [seen.to_string()])),
                )
            }
        }
    );
    eventually(Duration::from_secs(10), "the hand-off applied", || {
        let q = q.clone();
        async move { (q.metrics("racy").await.unwrap().completed_total == 1).then_some(()) }
    })
    .await;
    w.shutdown().await;
    let runs = attempts.lock().unwrap().clone();
    assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1; 6], "a lost race gives its attempt back");
    // each race lost in a row waits twice as long as the one before: 10-60 ms, then 20-120, ...
    let gaps: Vec<u128> = runs.windows(2).map(|w| (w[1].1 - w[0].1).as_millis()).collect();
    assert!(gaps[0] >= 10 && gaps[4] >= 160 && gaps.iter().sum::<u128>() >= 310, "{gaps:?}");
    let done: String = conn.get(q.namespace().key("test:done")).await.unwrap();
    assert_eq!(done, "5", "applied on the state it read last");
    let m = q.metrics("racy").await.unwrap();
    assert_eq!((m.conflicted_total, m.retried_total, m.waited_total, m.dead), (5, 0, 0, 0), "{m:?}");
    let errors: std::collections::HashMap<String, String> = conn.hgetall(q.keys("racy").errors).await.unwrap();
    assert!(errors.is_empty(), "no error history for a lost race: {errors:?}");
}

#[tokio::test]
async fn waiting_spends_no_attempt_keeps_no_history_and_ends_only_after_the_wall_time_cap() {
    let mut cfg = retry_config();
    cfg.retry.insert(
        "patient".into(),
        RetryPolicy {
            max_attempts: 2,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(50),
            max_wait: Duration::from_millis(600),
        },
    );
    let e = env(cfg).await;
    let q = e.queue.clone();
    q.push(NewJob::new("patient", &Ping { n: 1 }).unwrap()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let w = spawn_worker!("patient", RedisBackend::<Ping>::new(&q, "patient"), 1, move |_p: Ping| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(JobError::wait("budget.wait", "the tenant's write budget is spent", Duration::from_millis(40)))
        }
    });
    let dead = eventually(Duration::from_secs(10), "a dead letter after the wall-time cap", || {
        let q = q.clone();
        async move { q.dead_letters("patient", None, 10).await.unwrap().into_iter().next() }
    })
    .await;
    w.shutdown().await;
    let n = calls.load(Ordering::SeqCst);
    assert!(n > 3, "many more waits than max_attempts (2): {n}");
    assert!(dead.reason.starts_with("waited longer than"), "{}", dead.reason);
    assert_eq!(dead.attempts, 0, "no attempt was spent");
    assert_eq!(dead.errors.len(), 1, "one line, for the wait that ended it: {:?}", dead.errors);
    assert_eq!(dead.errors[0].class, "wait");
    let m = q.metrics("patient").await.unwrap();
    assert_eq!(m.waited_total, u64::from(n) - 1);
    assert_eq!((m.retried_total, m.dead), (0, 1));
    let mut conn = q.connection();
    let errors: std::collections::HashMap<String, String> = conn.hgetall(q.keys("patient").errors).await.unwrap();
    assert!(errors.is_empty(), "nothing is left behind: {errors:?}");
}

#[tokio::test]
async fn push_many_reports_each_duplicate_in_place_across_queues() {
    let e = env(fast_config()).await;
    let q = &e.queue;
    q.push(NewJob::new("a", &Ping { n: 0 }).unwrap().idempotency_key("taken")).await.unwrap();
    let jobs = vec![
        NewJob::new("a", &Ping { n: 1 }).unwrap().idempotency_key("taken"),
        NewJob::new("b", &Ping { n: 2 }).unwrap(),
        NewJob::new("a", &Ping { n: 3 }).unwrap().idempotency_key("fresh"),
        NewJob::new("a", &Ping { n: 4 }).unwrap().idempotency_key("fresh"),
        NewJob::new("b", &Ping { n: 5 }).unwrap().delay(Duration::from_secs(60)),
    ];
    let out = q.push_many(jobs).await.unwrap();
    let kinds: Vec<&str> =
        out.iter().map(|o| if matches!(o, PushOutcome::Enqueued { .. }) { "new" } else { "dup" }).collect();
    assert_eq!(kinds, ["dup", "new", "new", "dup", "new"]);
    let PushOutcome::Enqueued { id: fresh } = &out[2] else { unreachable!() };
    assert_eq!(
        out[3],
        PushOutcome::Duplicate {
            id: match &out[3] {
                PushOutcome::Duplicate { id, .. } => id.clone(),
                _ => String::new(),
            },
            existing: fresh.clone()
        }
    );
    let (a, b) = (q.metrics("a").await.unwrap(), q.metrics("b").await.unwrap());
    assert_eq!((a.ready, a.enqueued_total), (2, 2));
    assert_eq!((b.ready, b.delayed, b.enqueued_total), (1, 1, 2));
}
