//! End-to-end harness: a private redis-server, the simulators on port 0, the real
//! connectors over HTTP, the HTTP edge and the workers, all in this process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grantline_connectors::{GraphClient, ServiceNowClient};
use grantline_queue::server::RedisServer;
use grantline_queue::{Queue, QueueConfig, RetryPolicy};
use grantline_shared::request::{fields, keys, RequestState};
use grantline_sims::{Sims, SimsConfig};
use grantline_workers::{PolicyHandle, Services, WorkerOptions};
use redis::AsyncCommands;
use tokio::sync::oneshot;

pub const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/policy.toml");

pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret-0123456789";
pub const OPERATOR_TOKEN: &str = "e2e-operator-token-0123456789";

pub struct Stack {
    pub ingest_url: String,
    pub http: reqwest::Client,
    pub redis: RedisServer,
    pub sims: Sims,
    pub queue: Queue,
    pub svc: Arc<Services>,
    stops: Vec<oneshot::Sender<()>>,
}

pub fn queue_config() -> QueueConfig {
    let mut cfg = QueueConfig {
        namespace: format!("e2e{:06x}", fastrand::u32(..0xffffff)),
        lease: Duration::from_secs(3),
        renew_every: Duration::from_millis(750),
        reap_every: Duration::from_millis(250),
        idle_wait: Duration::from_millis(500),
        dead_letter_queue: Some("alert".into()),
        default_retry: RetryPolicy { max_attempts: 4, base: Duration::from_millis(50), cap: Duration::from_millis(400), max_throttled: 20 },
        ..QueueConfig::default()
    };
    cfg.completed_retention = Duration::from_secs(60);
    cfg
}

pub use grantline::demo::{graph_config, servicenow_config};

impl Stack {
    pub async fn start() -> Stack {
        let redis = RedisServer::start().expect("redis-server");
        let sims = Sims::start(SimsConfig::demo()).await.expect("simulators");
        let queue = Queue::connect(&redis.url(), queue_config()).await.expect("queue");
        let policy = grantline_shared::policy::load_file(POLICY).expect("policy");
        let clock = sims.clock().clone();
        let svc = Arc::new(Services {
            queue: queue.clone(),
            graph: GraphClient::new(&graph_config(&sims)).expect("graph"),
            servicenow: ServiceNowClient::new(&servicenow_config(&sims)).expect("servicenow"),
            policy: PolicyHandle::new(policy),
            clock: Arc::new(move || clock.now()),
        });
        let ingest_cfg = grantline_ingest::IngestConfig {
            servicenow: grantline_ingest::ServiceNowAuth {
                shared_secret: Some(grantline_ingest::Secret::new(WEBHOOK_SECRET)),
                hmac_secret: None,
            },
            operator_tokens: vec![grantline_ingest::OperatorToken { id: "e2e".into(), token: grantline_ingest::Secret::new(OPERATOR_TOKEN) }],
            ..Default::default()
        };
        let app = grantline_ingest::router(grantline_ingest::AppState::new(queue.clone(), ingest_cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ingest_url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        let mut stack = Stack { ingest_url, http: reqwest::Client::new(), redis, sims, queue, svc, stops: vec![tx] };
        stack.spawn_workers();
        stack
    }

    /// Another worker process's worth of workers, sharing the queue.
    pub fn spawn_workers(&mut self) {
        let (tx, rx) = oneshot::channel::<()>();
        let svc = self.svc.clone();
        tokio::spawn(async move {
            let opts = WorkerOptions { concurrency: 8, shutdown_timeout: Duration::from_secs(5) };
            let _ = grantline_workers::run_workers(svc, opts, async move {
                let _ = rx.await;
            })
            .await;
        });
        self.stops.push(tx);
    }

    /// Creates a requested item in the ServiceNow simulator and rings the webhook, as a
    /// ServiceNow business rule would. Returns (ticket number, request id).
    pub async fn submit(&self, ritm: grantline_sims::NewRitm) -> (String, String) {
        let created = self.sims.servicenow.state().create_ritm(ritm).expect("create RITM");
        let id = self.ring(&created.sys_id, &created.number).await;
        (created.number, id)
    }

    /// POSTs the documented webhook payload for a ticket; returns the request id.
    pub async fn ring(&self, sys_id: &str, number: &str) -> String {
        let body = serde_json::json!({
            "source": "servicenow", "event": "ritm.created", "instance": "contoso.service-now.com",
            "ritm": { "sys_id": sys_id, "number": number },
            "sent_at": "2026-11-22T10:00:00Z"
        });
        let resp = self
            .http
            .post(format!("{}/v1/webhooks/servicenow", self.ingest_url))
            .header("X-Grantline-Secret", WEBHOOK_SECRET)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "webhook accepted");
        let v: serde_json::Value = resp.json().await.unwrap();
        v["request_id"].as_str().unwrap().to_owned()
    }

    /// The ticket's work notes, oldest first.
    pub fn work_notes(&self, number: &str) -> Vec<String> {
        self.sims.servicenow.state().work_notes(number)
    }

    /// Waits until the ticket has at least `n` work notes.
    pub async fn wait_notes(&self, number: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let notes = self.work_notes(number);
            if notes.len() >= n {
                return notes;
            }
            assert!(Instant::now() < deadline, "ticket {number} has {} work notes, wanted {n}", notes.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn record(&self, id: &str) -> HashMap<String, String> {
        let mut conn = self.queue.connection();
        conn.hgetall(self.queue.namespace().key(&keys::request(id))).await.unwrap()
    }

    pub async fn state(&self, id: &str) -> Option<RequestState> {
        self.record(id).await.get(fields::STATE).and_then(|s| RequestState::parse(s))
    }

    /// Waits (polling, with a deadline) until the request reaches `want`.
    pub async fn wait_state(&self, id: &str, want: RequestState, within: Duration) -> HashMap<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let rec = self.record(id).await;
            if rec.get(fields::STATE).and_then(|s| RequestState::parse(s)) == Some(want) {
                return rec;
            }
            assert!(Instant::now() < deadline, "request {id} did not reach {want}; record: {rec:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn shutdown(mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        self.sims.clone().shutdown().await;
    }
}
