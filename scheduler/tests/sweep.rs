#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The removal safety net: a grant past its end (plus grace) without a removal gets exactly one
//! remove-access job per period, in the request's trace; a removal on file as failed for good
//! is tried again once per period with its own trigger.

use std::time::Duration;

use grantline_queue::server::RedisServer;
use grantline_queue::{Queue, QueueConfig};
use grantline_scheduler::sweep_expired;
use grantline_shared::jobs::{FailedRemoval, RemovalTrigger};
use grantline_shared::request::{fields, keys};
use redis::AsyncCommands;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn an_expired_grant_gets_one_removal_in_its_trace() {
    let redis = RedisServer::start().unwrap();
    let q = Queue::connect(&redis.url(), QueueConfig::default()).await.unwrap();
    let mut conn = q.connection();
    let now: u64 = 1_800_000_000_000;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let _: () = conn.hset(q.namespace().key(&keys::request("r-old")), fields::TRACEPARENT, tp).await.unwrap();
    let expiring = q.namespace().key(keys::EXPIRING);
    let _: () = conn.zadd(&expiring, "r-old", now - 120_000).await.unwrap(); // ended 2 min ago
    let _: () = conn.zadd(&expiring, "r-grace", now - 10_000).await.unwrap(); // within the grace
    let _: () = conn.zadd(&expiring, "r-later", now + 60_000).await.unwrap(); // not yet

    assert_eq!(sweep_expired(&q, now, Duration::from_secs(60), HOUR).await.unwrap(), 1);
    // a second pass (or a second scheduler) in the same period enqueues nothing more
    assert_eq!(sweep_expired(&q, now, Duration::from_secs(60), HOUR).await.unwrap(), 0);
    assert_eq!(sweep_expired(&q, now + 30_000, Duration::from_secs(60), HOUR).await.unwrap(), 0);

    let m = q.metrics("remove-access").await.unwrap();
    assert_eq!((m.ready, m.enqueued_total), (1, 1));
    let bodies: std::collections::HashMap<String, String> = conn.hgetall(q.keys("remove-access").jobs).await.unwrap();
    let body = bodies.values().next().unwrap();
    assert!(body.contains("\"request_id\":\"r-old\"") && body.contains("\"trigger\":\"expiry\""), "{body}");
    assert!(body.contains(tp), "the removal carries the request's traceparent: {body}");
}

/// The removal bodies queued on remove-access, by request id.
async fn removal_bodies(q: &Queue) -> Vec<serde_json::Value> {
    let mut conn = q.connection();
    let bodies: std::collections::HashMap<String, String> = conn.hgetall(q.keys("remove-access").jobs).await.unwrap();
    bodies.values().map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap()["p"].clone()).collect()
}

#[tokio::test]
async fn a_removal_still_due_is_tried_again_once_per_period_with_its_own_trigger() {
    let redis = RedisServer::start().unwrap();
    let q = Queue::connect(&redis.url(), QueueConfig::default()).await.unwrap();
    let mut conn = q.connection();
    let now: u64 = 1_800_000_000_000;
    // an expiry removal that failed for good: still on the expiring index, and on file
    let _: () = conn.zadd(q.namespace().key(keys::EXPIRING), "r-expired", now - 7_200_000).await.unwrap();
    let expired = FailedRemoval { trigger: RemovalTrigger::Expiry, letters: vec!["1-0".into()], since_ms: now };
    // an operator's revoke of a grant that ends next month failed for good: only on file
    let _: () = conn.zadd(q.namespace().key(keys::EXPIRING), "r-revoked", now + 30 * 86_400_000).await.unwrap();
    let revoked = FailedRemoval { trigger: RemovalTrigger::Revoked, letters: vec!["2-0".into()], since_ms: now };
    let failed = q.namespace().key(keys::FAILED_REMOVALS);
    for (id, f) in [("r-expired", &expired), ("r-revoked", &revoked)] {
        let _: () = conn.hset(&failed, id, serde_json::to_string(f).unwrap()).await.unwrap();
    }

    let grace = Duration::from_secs(60);
    assert_eq!(sweep_expired(&q, now, grace, HOUR).await.unwrap(), 2, "one removal each");
    let mut triggers: Vec<(String, String)> = removal_bodies(&q)
        .await
        .iter()
        .map(|p| (p["request_id"].as_str().unwrap().to_owned(), p["trigger"].as_str().unwrap().to_owned()))
        .collect();
    triggers.sort();
    assert_eq!(
        triggers,
        [("r-expired".to_owned(), "expiry".to_owned()), ("r-revoked".to_owned(), "revoked".to_owned())],
        "each with the trigger of the removal that failed"
    );
    // not hammered: nothing more until the next period
    assert_eq!(sweep_expired(&q, now + 60_000, grace, HOUR).await.unwrap(), 0);
    let next_period = (now / 3_600_000 + 1) * 3_600_000;
    assert_eq!(sweep_expired(&q, next_period, grace, HOUR).await.unwrap(), 2, "tried again in the next period");
    // once the removal is done and off file, nothing is tried again
    let _: () = conn.hdel(&failed, "r-revoked").await.unwrap();
    let _: () = conn.zrem(q.namespace().key(keys::EXPIRING), "r-revoked").await.unwrap();
    assert_eq!(sweep_expired(&q, next_period + 3_600_000, grace, HOUR).await.unwrap(), 1);
    let m = q.metrics("remove-access").await.unwrap();
    assert_eq!(m.enqueued_total, 5);
}
