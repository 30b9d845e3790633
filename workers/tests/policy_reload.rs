#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The running service reloads its policy on SIGHUP or when the file changes; a file that
//! fails to load leaves the previous policy in force and is counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use grantline_queue::server::RedisServer;
use grantline_queue::{Queue, QueueConfig};
use grantline_workers::PolicyHandle;
use grantline_workers::policy_reload::{self, Reload};
use redis::AsyncCommands;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/policy.toml");

struct Setup {
    redis: RedisServer,
    q: Queue,
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
    good: String,
    handle: PolicyHandle,
    v1: String,
}

/// A private Redis, a copy of the example policy in a temp dir, and the policy loaded from it.
async fn setup() -> Setup {
    let redis = RedisServer::start().unwrap();
    let q = Queue::connect(&redis.url(), QueueConfig::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("grantline-policy-{:08x}", fastrand_u32()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.toml");
    let good = std::fs::read_to_string(EXAMPLE).unwrap();
    std::fs::write(&path, &good).unwrap();
    let handle = PolicyHandle::new(grantline_shared::policy::load_file(&path).unwrap());
    let v1 = handle.get().version().to_owned();
    Setup { redis, q, dir, path, good, handle, v1 }
}

async fn status(q: &Queue) -> HashMap<String, String> {
    let mut conn = q.connection();
    conn.hgetall(q.namespace().key(policy_reload::STATUS_KEY)).await.unwrap()
}

async fn eventually<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_broken_file_keeps_the_previous_policy_and_a_good_change_is_picked_up() {
    let Setup { redis: _redis, q, dir, path, good, handle, v1 } = setup().await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let watcher =
        tokio::spawn(policy_reload::watch(handle.clone(), path.clone(), q.clone(), Duration::from_millis(50), async {
            let _ = rx.await;
        }));
    // the watcher has taken its baseline once it published the version in force
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status(&q).await.contains_key("version") {
        assert!(Instant::now() < deadline, "the watcher did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // a broken file: the previous policy stays, the failure is counted with its reason
    std::fs::write(&path, good.replace("schema_version = 1", "schema_version = \"one\"")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(&q).await;
        if s.get("reload_failures").map(String::as_str) == Some("1") {
            assert!(s["last_error"].contains("policy.toml:"), "the error names the file and line: {}", s["last_error"]);
            break;
        }
        assert!(Instant::now() < deadline, "the failed reload was not recorded: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(handle.get().version(), v1, "the previous policy is still in force");
    // a good change replaces it
    std::fs::write(&path, format!("{good}\n# reviewed again\n")).unwrap();
    eventually("the new policy is in force", || handle.get().version() != v1).await;
    let v2 = handle.get().version().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&q).await.get("version") != Some(&v2) {
        assert!(Instant::now() < deadline, "the version in force was not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = tx.send(());
    watcher.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sighup_reloads_at_once() {
    let Setup { redis: _redis, q, dir, path, good, handle, v1 } = setup().await;
    // file polling an hour apart: only the signal can trigger this reload
    let watcher = tokio::spawn(policy_reload::watch(
        handle.clone(),
        path.clone(),
        q.clone(),
        Duration::from_secs(3600),
        std::future::pending(),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await; // the handler is installed
    std::fs::write(&path, format!("{good}\n# changed\n")).unwrap();
    std::process::Command::new("kill").args(["-HUP", &std::process::id().to_string()]).status().unwrap();
    eventually("reloaded on SIGHUP", || handle.get().version() != v1).await;
    watcher.abort();
    // and reload_once reports what it did
    assert_eq!(policy_reload::reload_once(&handle, &path, &q).await, Reload::Unchanged);
    let _ = std::fs::remove_dir_all(&dir);
}

fn fastrand_u32() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
        ^ std::process::id()
}
