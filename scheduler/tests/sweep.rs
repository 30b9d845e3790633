#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The expired-grant safety net: a grant past its end (plus grace) without a removal gets
//! exactly one remove-access job, in the request's trace.

use std::time::Duration;

use grantline_queue::server::RedisServer;
use grantline_queue::{Queue, QueueConfig};
use grantline_scheduler::sweep_expired;
use grantline_shared::request::{fields, keys};
use redis::AsyncCommands;

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

    assert_eq!(sweep_expired(&q, now, Duration::from_secs(60)).await.unwrap(), 1);
    // a second pass (or a second scheduler) enqueues nothing more
    assert_eq!(sweep_expired(&q, now, Duration::from_secs(60)).await.unwrap(), 0);

    let m = q.metrics("remove-access").await.unwrap();
    assert_eq!((m.ready, m.enqueued_total), (1, 1));
    let bodies: std::collections::HashMap<String, String> = conn.hgetall(q.keys("remove-access").jobs).await.unwrap();
    let body = bodies.values().next().unwrap();
    assert!(body.contains("\"request_id\":\"r-old\"") && body.contains("\"trigger\":\"expiry\""), "{body}");
    assert!(body.contains(tp), "the removal carries the request's traceparent: {body}");
}
