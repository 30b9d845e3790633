//! End-to-end harness: a private redis-server, the simulators on port 0, the real
//! connectors over HTTP, the HTTP edge and the workers, all in this process (or, for the
//! scaling test, the workers as separate `grantline worker` processes).
//!
//! Nothing here sleeps to wait for an outcome: every `wait_*` helper polls with a deadline
//! and fails with what it last saw.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grantline_queue::server::{RedisCluster, RedisServer};
use grantline_queue::{Queue, QueueConfig, QueueMetrics, RetryPolicy};
use grantline_shared::audit::{self, AuditRecord};
use grantline_shared::request::{RequestState, fields, keys};
use grantline_sims::{Sims, SimsConfig, ids};
use grantline_workers::{ExecutorSettings, Services, WorkerOptions};
use redis::AsyncCommands;
use tokio::sync::oneshot;

pub const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/policy.toml");

pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret-0123456789";
pub const OPERATOR_TOKEN: &str = "e2e-operator-token-0123456789";
/// The key approval links are signed with.
pub const LINK_SECRET: &str = "e2e-link-secret-0123456789-0123456789";

/// How long a chain that involves no expiry may take.
pub const WAIT: Duration = Duration::from_secs(20);
/// How long a chain that waits for a short grant to expire may take.
pub const WAIT_EXPIRY: Duration = Duration::from_secs(40);

/// How a [`Stack`] is started.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// The policy file the workers load.
    pub policy: PathBuf,
    /// Run the step workers in this process (false: the test brings its own, e.g. processes).
    pub workers: bool,
    /// The simulators' configuration (the demo tenant by default).
    pub sims: SimsConfig,
    /// Budgets and batching of the executors (also handed to worker processes).
    pub executors: ExecutorSettings,
    /// Ask approvers in Teams and Slack too (the doors and the channels, against the
    /// simulators); ServiceNow approval records are always created.
    pub chat: bool,
    /// Run a scheduler on the simulators' clock, sweeping this often (and reading approval
    /// records back ten times as seldom).
    pub scheduler: Option<Duration>,
    /// Approvers no chat reaches get a signed link (in their ServiceNow approval record).
    pub links: bool,
    /// Run on a private three-master Redis Cluster instead of one redis-server.
    pub cluster: bool,
    /// Page about dead letters through the paging simulators (`grantline::demo::paging_settings`:
    /// PagerDuty on-call and critical services, the signed webhook, the service desk's Teams
    /// channel); on by default.
    pub paging: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            policy: PathBuf::from(POLICY),
            workers: true,
            sims: SimsConfig::demo(),
            executors: ExecutorSettings::default(),
            chat: false,
            scheduler: None,
            links: false,
            cluster: false,
            paging: true,
        }
    }
}

#[allow(unused_imports)]
pub use grantline::bench::{agent_id as bulk_user_id, agents_tenant as bulk_tenant};

/// The demo tenant plus `n` people in Sales managed by Sara Davis (`seller0001@…`): their
/// Team Alpha requests need Sara's approval.
pub fn sales_tenant(n: usize) -> grantline_sims::Tenant {
    let mut t = grantline_sims::Tenant::demo();
    for i in 0..n {
        let id = format!("41000000-0000-4000-8000-{i:012}");
        let upn = format!("seller{i:04}@contoso.com");
        t.users.push(grantline_sims::User::new(&id, &upn, &format!("Seller {i:04}")).department("Sales"));
        t.managers.push((id, ids::SARA_ID.to_owned()));
    }
    t
}

pub struct Stack {
    pub ingest_url: String,
    pub http: reqwest::Client,
    pub redis: TestRedis,
    pub sims: Sims,
    pub queue: Queue,
    pub svc: Arc<Services>,
    pub policy_path: PathBuf,
    pub executors: ExecutorSettings,
    stops: Vec<oneshot::Sender<()>>,
}

/// The private Redis of a [`Stack`]: one server, or a three-master cluster.
pub enum TestRedis {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl TestRedis {
    /// `redis://…` or `redis+cluster://…`.
    pub fn url(&self) -> String {
        match self {
            TestRedis::Single(s) => s.url(),
            TestRedis::Cluster(c) => c.url(),
        }
    }

    /// The cluster, when the stack runs on one.
    pub fn cluster(&mut self) -> &mut RedisCluster {
        match self {
            TestRedis::Cluster(c) => c,
            TestRedis::Single(_) => panic!("this stack runs on a single redis-server"),
        }
    }
}

pub fn queue_config() -> QueueConfig {
    let mut cfg = QueueConfig {
        namespace: format!("e2e{:06x}", fastrand::u32(..0xffffff)),
        lease: Duration::from_secs(3),
        renew_every: Duration::from_millis(750),
        reap_every: Duration::from_millis(250),
        idle_wait: Duration::from_millis(500),
        dead_letter_queue: Some("alert".into()),
        default_retry: RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(50),
            cap: Duration::from_millis(400),
            max_wait: Duration::from_secs(120),
        },
        ..QueueConfig::default()
    };
    cfg.completed_retention = Duration::from_secs(60);
    cfg
}

#[allow(unused_imports)]
pub use grantline::demo::{exchange_config, graph_config, servicenow_config};

impl Stack {
    /// The example policy, workers in this process.
    pub async fn start() -> Stack {
        Self::start_opts(StackOptions::default()).await
    }

    /// Another policy file, workers in this process.
    pub async fn start_with(policy: impl AsRef<Path>) -> Stack {
        Self::start_opts(StackOptions { policy: policy.as_ref().to_path_buf(), ..StackOptions::default() }).await
    }

    pub async fn start_opts(opts: StackOptions) -> Stack {
        let redis = if opts.cluster {
            TestRedis::Cluster(RedisCluster::start(3, 0).expect("redis cluster"))
        } else {
            TestRedis::Single(RedisServer::start().expect("redis-server"))
        };
        let mut sims_cfg = opts.sims.clone();
        // ServiceNow's doorbell authenticates as the business rule we document would
        sims_cfg.servicenow.webhook.secret_header = "X-Grantline-Secret".into();
        sims_cfg.servicenow.webhook.secret = WEBHOOK_SECRET.into();
        let sims = Sims::start(sims_cfg).await.expect("simulators");
        let queue = Queue::connect(&redis.url(), queue_config()).await.expect("queue");
        let policy = grantline_shared::policy::load_file(&opts.policy).expect("policy");
        let clock = sims.clock().clone();
        let mut services = grantline::demo::services(
            queue.clone(),
            &sims,
            policy,
            grantline_shared::Clock::from_fn(move || clock.now()),
            &opts.executors,
        )
        .expect("services");
        if opts.chat {
            services = services.with_channels(grantline::demo::channels(&sims).expect("channels"));
        }
        if opts.links {
            let mut channels = services.channels.clone();
            channels.link = Some(grantline_workers::channels::LinkSettings {
                public_url: "https://grantline.example.com".into(),
                secret: grantline_connectors::Secret::new(LINK_SECRET),
            });
            services = services.with_channels(channels);
        }
        if opts.paging {
            services = services.with_pager(grantline::demo::pager(&sims).expect("pager"));
        }
        let svc = Arc::new(services);
        let ingest_cfg = grantline_ingest::IngestConfig {
            servicenow: grantline_ingest::ServiceNowAuth {
                shared_secret: Some(grantline_ingest::Secret::new(WEBHOOK_SECRET)),
                hmac_secret: None,
            },
            operator_tokens: vec![grantline_ingest::OperatorToken {
                id: "e2e".into(),
                token: grantline_ingest::Secret::new(OPERATOR_TOKEN),
                directory_id: None,
                upn: None,
            }],
            ..Default::default()
        };
        let directory = grantline_connectors::GraphClient::new(&grantline::demo::graph_config(&sims)).unwrap();
        let mut state = grantline_ingest::AppState::new(queue.clone(), ingest_cfg)
            .with_clock(svc.clock.clone())
            .with_directory(directory)
            .with_policy_file(&opts.policy);
        if opts.chat {
            use grantline_ingest::{slack::SlackDoor, teams::TeamsDoor};
            state = state
                .with_teams(Arc::new(TeamsDoor::new(&grantline::demo::bot_config(&sims)).unwrap()))
                .with_slack(Arc::new(SlackDoor::new(&grantline::demo::slack_config(&sims)).unwrap()));
        }
        let app = grantline_ingest::router(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ingest_url = format!("http://{}", listener.local_addr().unwrap());
        // ServiceNow rings the same doorbell when an approver acts on an approval record
        sims.servicenow.set_approval_webhook(Some(format!("{ingest_url}/v1/webhooks/servicenow")));
        if opts.chat {
            sims.botframework.set_bot_endpoint(&format!("{ingest_url}/v1/teams/messages"));
            sims.slack.set_request_url(&format!("{ingest_url}/v1/slack/interactions"));
        }
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        let mut stack = Stack {
            ingest_url,
            http: reqwest::Client::new(),
            redis,
            sims,
            queue,
            svc,
            policy_path: opts.policy,
            executors: opts.executors,
            stops: vec![tx],
        };
        if opts.workers {
            stack.spawn_workers();
        }
        if let Some(every) = opts.scheduler {
            stack.spawn_scheduler(every);
        }
        stack
    }

    /// A scheduler on the simulators' clock.
    pub fn spawn_scheduler(&mut self, every: Duration) {
        let (tx, rx) = oneshot::channel::<()>();
        let clock = self.svc.clock.clone();
        let opts = grantline_scheduler::SchedulerOptions {
            sweep_every: every,
            approval_poll_every: every * 10,
            // the directory's sweeps run when a test asks (`grantline_scheduler::periodic`)
            directory_sweep_every: None,
            reconcile_every: None,
            clock,
            ..Default::default()
        };
        let queue = self.queue.clone();
        tokio::spawn(async move {
            let _ = grantline_scheduler::run(queue, opts, async move {
                let _ = rx.await;
            })
            .await;
        });
        self.stops.push(tx);
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

    /// Moves the simulators' shared clock (which the in-process workers read) to the next
    /// weekday between 09:00 and 16:00 in Amsterdam, the example policy's finance change
    /// window, so that a Finance BI grant runs at once whatever day the suite runs. Leaves
    /// the clock alone when it is already there.
    pub fn set_clock_to_finance_business_hours(&self) {
        let offset = grantline::demo::finance_business_hours_offset(jiff::Timestamp::now()).unwrap();
        if !offset.is_zero() {
            self.sims.clock().set_offset(offset);
        }
    }

    /// Creates a requested item in the ServiceNow simulator and rings the webhook, as a
    /// ServiceNow business rule would. Returns (ticket number, request id).
    pub async fn submit(&self, ritm: grantline_sims::NewRitm) -> (String, String) {
        let created = self.sims.servicenow.state().create_ritm(ritm).expect("create RITM");
        let id = self.ring(&created.sys_id, &created.number).await;
        (created.number, id)
    }

    /// The documented webhook payload for a ticket.
    pub fn webhook_body(sys_id: &str, number: &str) -> serde_json::Value {
        serde_json::json!({
            "source": "servicenow", "event": "ritm.created", "instance": ids::SNOW_INSTANCE,
            "ritm": { "sys_id": sys_id, "number": number },
            "sent_at": "2026-11-22T10:00:00Z"
        })
    }

    /// POSTs raw bytes to the webhook with the given secret; returns the status and the body
    /// (as JSON when it is JSON).
    pub async fn post_webhook(&self, secret: &str, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}/v1/webhooks/servicenow", self.ingest_url))
            .header("X-Grantline-Secret", secret)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    /// POSTs the documented webhook payload for a ticket; returns the request id.
    pub async fn ring(&self, sys_id: &str, number: &str) -> String {
        let body = serde_json::to_vec(&Self::webhook_body(sys_id, number)).unwrap();
        let (status, v) = self.post_webhook(WEBHOOK_SECRET, body).await;
        assert_eq!(status, 202, "webhook accepted: {v}");
        v["request_id"].as_str().unwrap().to_owned()
    }

    /// `POST /v1/requests/{id}/decision` by the operator on behalf of `approver` (proved
    /// against the directory); returns the status and the body.
    pub async fn decide(&self, id: &str, approver: &str, approve: bool) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}/v1/requests/{id}/decision", self.ingest_url))
            .bearer_auth(OPERATOR_TOKEN)
            .json(&serde_json::json!({ "on_behalf_of": approver, "approve": approve, "comment": "e2e decision" }))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    /// The notice of `channel` sent to `to` (a directory object id) about `stage`, once there.
    pub async fn notice(&self, id: &str, channel: &str, to: &str, stage: usize) -> grantline_shared::record::Notice {
        self.wait_for(&format!("a {channel} notice to {to} (stage {stage})"), WAIT, || async {
            let rec = grantline_store::load(&self.queue, id).await.ok()?;
            rec.notices
                .into_iter()
                .find(|n| n.channel == channel && n.to.eq_ignore_ascii_case(to) && n.stage == Some(stage))
        })
        .await
    }

    /// All notices of a request.
    pub async fn notices(&self, id: &str) -> Vec<grantline_shared::record::Notice> {
        grantline_store::load(&self.queue, id).await.map(|r| r.notices).unwrap_or_default()
    }

    /// The ServiceNow `user_name` of a seeded sys_user.
    pub fn snow_user_name(&self, sys_id: &str) -> String {
        self.sims.servicenow.state().record("sys_user", sys_id).expect("sys_user")["user_name"].clone()
    }

    /// The ticket's work notes, oldest first.
    pub fn work_notes(&self, number: &str) -> Vec<String> {
        self.sims.servicenow.state().work_notes(number)
    }

    /// Waits until the ticket has at least `n` work notes.
    pub async fn wait_notes(&self, number: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let notes = self.work_notes(number);
            if notes.len() >= n {
                return notes;
            }
            assert!(
                Instant::now() < deadline,
                "ticket {number} has {} work notes, wanted {n}: {notes:#?}",
                notes.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until one of the ticket's work notes contains `needle`; returns that note.
    pub async fn wait_note(&self, number: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let notes = self.work_notes(number);
            if let Some(n) = notes.iter().find(|n| n.contains(needle)) {
                return n.clone();
            }
            assert!(Instant::now() < deadline, "ticket {number} has no work note containing {needle:?}: {notes:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The requested item's state column ("3" closed complete, "4" closed incomplete, ...).
    pub fn ritm_state(&self, number: &str) -> String {
        self.sims.servicenow.state().ritm(number).expect("RITM").state
    }

    pub async fn record(&self, id: &str) -> HashMap<String, String> {
        let mut conn = self.queue.connection();
        conn.hgetall(self.queue.namespace().key(&keys::request(id))).await.unwrap()
    }

    /// A JSON field of the request record.
    pub async fn json_field(&self, id: &str, field: &str) -> serde_json::Value {
        let rec = self.record(id).await;
        let raw = rec.get(field).unwrap_or_else(|| panic!("request {id} has no {field}: {rec:#?}"));
        serde_json::from_str(raw).unwrap()
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

    /// The request's audit trail, in order, after checking that its hash chain is intact and
    /// ends at the record's head.
    pub async fn audit(&self, id: &str) -> Vec<AuditRecord> {
        let mut conn = self.queue.connection();
        let ns = self.queue.namespace();
        // the stream and the record's head in one transaction: a step may be appending
        let (rec, stream): (HashMap<String, String>, redis::streams::StreamRangeReply) = redis::pipe()
            .atomic()
            .hgetall(ns.key(&keys::request(id)))
            .xrange_all(ns.key(&keys::audit(id)))
            .query_async(&mut conn)
            .await
            .unwrap();
        let get = |e: &redis::streams::StreamId, f: &str| e.get::<String>(f).unwrap_or_default();
        let chain: Vec<(String, String, String)> =
            stream.ids.iter().map(|e| (get(e, "record"), get(e, "prev"), get(e, "hash"))).collect();
        let head = rec.get(fields::AUDIT_HEAD).cloned().unwrap_or_else(|| audit::GENESIS.to_owned());
        let v = audit::verify(&chain, &head);
        assert!(v.broken_at.is_none(), "audit chain of {id} is broken: {v:?}");
        let trace_id = rec.get(fields::TRACE_ID).cloned().unwrap_or_default();
        let records: Vec<AuditRecord> = chain.iter().map(|(r, _, _)| serde_json::from_str(r).unwrap()).collect();
        for r in &records {
            assert_eq!(r.request_id, id);
            assert_eq!(r.trace_id, trace_id, "every audit record carries the request's trace id: {r:?}");
        }
        records
    }

    /// Waits until the request's audit trail holds an event named `name`; returns the trail.
    /// A step records what it did after doing it, so a note on the ticket can be seen before
    /// its `ticket_updated`: wait for this before asserting the trail's order.
    pub async fn wait_event(&self, id: &str, name: &str) -> Vec<AuditRecord> {
        self.wait_for(&format!("audit event {name}"), WAIT, || async {
            let trail = self.audit(id).await;
            trail.iter().any(|r| r.event.name() == name).then_some(trail)
        })
        .await
    }

    /// Another writer of the request's record commits (an audit event, as a concurrent step's
    /// would), reading the record again whenever a step got there first. Moves the audit head
    /// under a step in flight, so that step's commit loses the race.
    pub async fn commit_concurrently(&self, id: &str) {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        self.wait_for("the other writer's commit", WAIT, || async {
            let rec = grantline_store::load(&self.queue, id).await.unwrap();
            let applied = grantline_store::Commit::new(&rec, "grantline:notify", now_ms)
                .event(grantline_shared::audit::AuditEvent::ApproversNotified {
                    stage: 0,
                    sent: vec![],
                    failed: vec![],
                })
                .apply(&self.queue)
                .await
                .unwrap();
            matches!(applied, grantline_store::Applied::Done { .. }).then_some(())
        })
        .await;
    }

    /// The state of a ServiceNow approval record of the ticket `number`.
    pub fn approval_state(&self, number: &str, sys_id: &str) -> String {
        let all = self.sims.servicenow.state().approvals(number);
        all.iter().find(|a| a.get("sys_id").map(String::as_str) == Some(sys_id)).expect("approval")["state"].clone()
    }

    /// Waits until a ServiceNow approval record of the ticket `number` is in state `want`.
    pub async fn wait_approval_state(&self, number: &str, sys_id: &str, want: &str) {
        self.wait_for(&format!("approval {sys_id} {want}"), WAIT, || async {
            (self.approval_state(number, sys_id) == want).then_some(())
        })
        .await;
    }

    /// The names of the request's audit events, in order.
    pub async fn audit_events(&self, id: &str) -> Vec<&'static str> {
        self.audit(id).await.iter().map(|r| r.event.name()).collect()
    }

    /// Every PagerDuty incident (alert) the paging simulator holds, oldest first, with its
    /// events (`custom_details` name the request, ticket, queue and dead letter).
    pub fn incidents(&self) -> Vec<grantline_sims::paging::Alert> {
        self.sims.paging.state().alerts
    }

    /// The PagerDuty dedup key of a dead letter of this stack.
    pub fn dedup_key(&self, queue: &str, dead_letter_id: &str) -> String {
        grantline_workers::paging::dedup_key(&self.queue.config().namespace, queue, dead_letter_id)
    }

    /// Waits until an incident exists for a dead letter of `queue` (and of `request_id`, when
    /// given); returns it.
    pub async fn wait_incident(&self, queue: &str, request_id: Option<&str>) -> grantline_sims::paging::Alert {
        self.wait_for(&format!("a PagerDuty incident about a {queue} dead letter"), WAIT, || async {
            self.incidents().into_iter().find(|a| {
                a.custom_details["queue"] == queue && request_id.is_none_or(|r| a.custom_details["request_id"] == r)
            })
        })
        .await
    }

    pub async fn metrics(&self, queue: &str) -> QueueMetrics {
        self.queue.metrics(queue).await.unwrap()
    }

    /// Polls `probe` until it returns `Some`, failing with `what` after `within`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, within: Duration, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until a queue has nothing ready, in flight or (when `delayed_too`) delayed.
    pub async fn wait_queue_idle(&self, queue: &str, delayed_too: bool) -> QueueMetrics {
        self.wait_for(&format!("queue {queue} to drain"), WAIT, || async {
            let m = self.metrics(queue).await;
            (m.ready == 0 && m.in_flight == 0 && (!delayed_too || m.delayed == 0)).then_some(m)
        })
        .await
    }

    /// Every key in the private Redis, sorted.
    pub async fn redis_keys(&self) -> BTreeSet<String> {
        let mut conn = self.queue.connection();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
        keys.into_iter().collect()
    }

    /// How many times `user` appears among the direct members of `group` in Graph.
    pub fn memberships(&self, group: &str, user: &str) -> usize {
        self.sims.graph.state().members(group).iter().filter(|m| m.as_str() == user).count()
    }

    /// The environment of a `grantline worker` process pointed at this stack's Redis
    /// namespace, simulators, policy and executor settings.
    pub fn worker_env(&self) -> Vec<(String, String)> {
        grantline::bench::worker_env(
            &self.redis.url(),
            self.queue.config(),
            &self.sims,
            &self.policy_path.display().to_string(),
            &self.executors,
        )
    }

    pub async fn shutdown(mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        self.sims.clone().shutdown().await;
    }
}

/// A directory of its own for one test, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "grantline-e2e-{label}-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Catalog item (in the test-local policy and in the ServiceNow simulator) whose targets are
/// the seeded role-assignable and dynamic groups; the ticket's `target` variable picks one.
pub const CAT_ITEM_PRIVILEGED: &str = "Privileged group membership";
pub const TARGET_ROLE_ASSIGNABLE: &str = "tier1-helpdesk-admins";
pub const TARGET_DYNAMIC: &str = "all-finance-dynamic";

/// Writes the example policy extended with catalog entries for the seeded role-assignable
/// and dynamic groups (tagged business-owned, so an ordinary approval rule would match them
/// if the hard group checks did not refuse them). Returns the file's path.
pub fn write_extended_policy(dir: &TempDir) -> PathBuf {
    let mut text = std::fs::read_to_string(POLICY).unwrap();
    text.push_str(&format!(
        r#"

# --- test-local additions: catalog entries that resolve to groups the hard rules refuse ---
[groups.{TARGET_ROLE_ASSIGNABLE}]
id = "{role}"
display_name = "Tier-1 Helpdesk Admins"
tags = ["business-owned"]
owners.app = ["{sara}"]

[groups.{TARGET_DYNAMIC}]
id = "{dynamic}"
display_name = "All Finance (dynamic)"
tags = ["business-owned"]
owners.app = ["{sara}"]

[[catalog]]
item = "{CAT_ITEM_PRIVILEGED}"
targets = ["{TARGET_ROLE_ASSIGNABLE}", "{TARGET_DYNAMIC}"]
"#,
        role = ids::GROUP_ROLE_ASSIGNABLE,
        dynamic = ids::GROUP_DYNAMIC,
        sara = ids::SARA_UPN,
    ));
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Stack {
    /// Adds the catalog item of [`write_extended_policy`] to the ServiceNow simulator.
    pub fn add_privileged_catalog_item(&self) {
        self.sims
            .servicenow
            .state()
            .insert(
                "sc_cat_item",
                &[
                    ("name", CAT_ITEM_PRIVILEGED),
                    ("short_description", "Membership of an administrative group"),
                    ("active", "true"),
                ],
            )
            .unwrap();
    }
}

/// The queues of the dead letters on a request's trail, in order.
pub fn dead_lettered(trail: &[AuditRecord]) -> Vec<&str> {
    trail
        .iter()
        .filter_map(|r| match &r.event {
            grantline_shared::audit::AuditEvent::DeadLettered { queue, .. } => Some(queue.as_str()),
            _ => None,
        })
        .collect()
}

/// The check codes that failed in a stored decision.
pub fn failing_checks(decision: &serde_json::Value) -> Vec<String> {
    decision["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("decision without checks: {decision:#}"))
        .iter()
        .filter(|c| c["status"] == "fail")
        .filter_map(|c| c["code"].as_str().map(str::to_owned))
        .collect()
}

/// A `grantline worker` process configured only through `GRANTLINE__*` variables for a
/// [`Stack`], its log in a file.
pub struct WorkerProcess {
    child: tokio::process::Child,
    pub pid: u32,
    log: std::path::PathBuf,
}

impl WorkerProcess {
    pub fn spawn(stack: &Stack, dir: &TempDir, n: usize) -> WorkerProcess {
        let log = dir.path().join(format!("worker-{n}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_grantline"));
        cmd.arg("worker");
        // only what this test sets: no stray configuration from the environment
        for (k, _) in std::env::vars() {
            if k.starts_with("GRANTLINE") || k.starts_with("OTEL_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(stack.worker_env())
            .env("HOSTNAME", format!("e2e-worker-{n}"))
            .env("RUST_LOG", "info")
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(file))
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn grantline worker");
        let pid = child.id().unwrap();
        WorkerProcess { child, pid, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (within a deadline).
    pub async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let sent = std::process::Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status().unwrap();
        assert!(sent.success(), "kill -TERM {}", self.pid);
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("worker {} did not exit within 20 s of SIGTERM:\n{}", self.pid, self.log()))
            .unwrap();
        (status, self.log())
    }
}
