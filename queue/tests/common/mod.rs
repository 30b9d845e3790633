//! Test harness: a private redis-server per test (or `GRANTLINE_TEST_REDIS_URL` with a
//! fresh namespace), workers run until told to stop, and polling with a deadline.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use grantline_queue::server::RedisServer;
use grantline_queue::{Queue, QueueConfig};
use tokio::sync::oneshot;

pub struct Env {
    pub server: Option<RedisServer>,
    pub url: String,
    pub queue: Queue,
}

pub async fn env(cfg: QueueConfig) -> Env {
    let mut cfg = cfg;
    let (server, url) = match std::env::var("GRANTLINE_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            cfg.namespace = format!("t{:08x}", fastrand::u32(..));
            (None, url)
        }
        _ => {
            let s = RedisServer::start().expect("redis-server");
            let url = s.url();
            (Some(s), url)
        }
    };
    let queue = Queue::connect(&url, cfg).await.expect("connect");
    Env { server, url, queue }
}

pub fn fast_config() -> QueueConfig {
    QueueConfig {
        lease: Duration::from_millis(1200),
        renew_every: Duration::from_millis(300),
        reap_every: Duration::from_millis(200),
        idle_wait: Duration::from_millis(500),
        ..QueueConfig::default()
    }
}

/// Polls `check` until it returns Some, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running worker; dropping `stop` (or sending on it) shuts it down gracefully.
pub struct Running {
    pub stop: Option<oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.handle).await;
    }
}

/// Starts an apalis worker on `backend` running `handler` (any apalis handler).
#[macro_export]
macro_rules! spawn_worker {
    ($name:expr, $backend:expr, $concurrency:expr, $handler:expr) => {{
        use apalis::prelude::WorkerBuilderExt as _;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let worker = apalis_core::worker::builder::WorkerBuilder::new(format!("{}-{:08x}", $name, fastrand::u32(..)))
            .backend($backend)
            .concurrency($concurrency)
            .build($handler);
        let handle = tokio::spawn(async move {
            let _ = worker
                .run_until(async move {
                    let _ = rx.await;
                    Ok::<(), std::io::Error>(())
                })
                .await;
        });
        $crate::common::Running { stop: Some(tx), handle }
    }};
}
