//! `grantline bench pipeline`: the full path, measured. Real ingest (in this process, over
//! HTTP, served with the deployed connection limits and timeouts), real `grantline worker` processes, a private Redis, and the Graph and ServiceNow
//! simulators over HTTP. Auto-approved Team Alpha requests for `--n` Helpdesk agents are rung
//! through the webhook; the run ends when every one is active (granted, verified, the ticket
//! closed, its removal scheduled). Prints one JSON object, with the Redis bytes per request and
//! the edge's slow-client limits in force (`edge_limits`).
//!
//! Unthrottled (the default): requests per second from the first webhook to the last active
//! request, and webhook-to-verified-grant latency. `--throttled`: the Graph simulator enforces
//! `--writes-per-second` membership writes per app and tenant (refused calls counted), and the
//! figures are goodput as a share of the bound, the share of writes answered 429, Graph calls per
//! grant and dead letters. `--kill K` SIGKILLs a worker K times during the run and restarts it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use grantline_queue::server::RedisServer;
use grantline_queue::{Queue, QueueConfig};
use grantline_shared::request::{RequestState, keys};
use grantline_sims::{NewRitm, Sims, SimsConfig, Tenant, ThrottleConfig, ids, snow_sys_id};
use grantline_workers::ExecutorSettings;
use grantline_workers::budget::BudgetConfig;
use serde_json::{Value, json};

/// Options of `grantline bench pipeline`.
#[derive(clap::Args, Debug, Clone)]
pub struct PipelineArgs {
    /// Requests (one Helpdesk agent each, all for Team Alpha).
    #[arg(long, default_value_t = 2000)]
    pub n: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Jobs at once per kind per worker process.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Webhooks per second, open loop (0: all at once, 64 in flight).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// The Graph simulator enforces a write budget.
    #[arg(long)]
    pub throttled: bool,
    /// Membership writes per second per app and tenant that Graph allows (and that grantline's
    /// budget is configured with) when --throttled.
    #[arg(long, default_value_t = 20)]
    pub writes_per_second: u32,
    /// Batch membership writes (members@odata.bind, up to 20 per write).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub batch: bool,
    /// How long the first grant of a batch waits for others (ms).
    #[arg(long, default_value_t = 20)]
    pub linger_ms: u64,
    /// SIGKILL a worker this many times during the run (each restarted at once).
    #[arg(long, default_value_t = 0)]
    pub kill: u32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
    /// Use this (disposable) Redis instead of a private one.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// The policy file (its Team Alpha rule auto-approves Helpdesk agents).
    #[arg(long, default_value = "deploy/policy.toml")]
    pub policy: PathBuf,
}

const SECRET: &str = "bench-webhook-secret-0123456789";

/// The directory id of the `i`-th extra Helpdesk agent.
pub fn agent_id(i: usize) -> String {
    format!("40000000-0000-4000-8000-{i:012}")
}

/// The demo tenant plus `n` Helpdesk agents (`agent0000@contoso.com`, …, members of the
/// Helpdesk group, managed by Sara Davis): the example policy auto-approves their Team Alpha
/// requests, so they make as many independent grants to one group as a run needs.
pub fn agents_tenant(n: usize) -> Tenant {
    let mut t = Tenant::demo();
    for i in 0..n {
        let id = agent_id(i);
        let upn = format!("agent{i:04}@contoso.com");
        t.users.push(grantline_sims::User::new(&id, &upn, &format!("Agent {i:04}")).department("Service Desk"));
        t.memberships.push((ids::GROUP_HELPDESK.to_owned(), id.clone()));
        t.managers.push((id, ids::SARA_ID.to_owned()));
    }
    t
}

/// The environment that points a `grantline worker` process at a Redis namespace, the
/// simulators and a policy, with these executor settings.
pub fn worker_env(
    redis_url: &str,
    queue: &QueueConfig,
    sims: &Sims,
    policy: &str,
    executors: &ExecutorSettings,
) -> Vec<(String, String)> {
    let retry = &queue.default_retry;
    let mut env: Vec<(String, String)> = [
        ("GRANTLINE__REDIS_URL", redis_url.to_owned()),
        ("GRANTLINE__QUEUE__NAMESPACE", queue.namespace.clone()),
        ("GRANTLINE__QUEUE__LEASE_MS", queue.lease.as_millis().to_string()),
        ("GRANTLINE__QUEUE__MAX_ATTEMPTS", retry.max_attempts.to_string()),
        ("GRANTLINE__QUEUE__BACKOFF_BASE_MS", retry.base.as_millis().to_string()),
        ("GRANTLINE__QUEUE__BACKOFF_CAP_MS", retry.cap.as_millis().to_string()),
        ("GRANTLINE__WORKERS__SHUTDOWN_TIMEOUT_SECS", "10".to_owned()),
        // any free port: several processes run side by side
        ("GRANTLINE__METRICS__BIND", "127.0.0.1:0".to_owned()),
        ("GRANTLINE__POLICY__PATH", policy.to_owned()),
        ("GRANTLINE__GRAPH__BASE_URL", sims.graph.v1_url()),
        ("GRANTLINE__GRAPH__TOKEN__AUTHORITY", sims.login.base_url()),
        ("GRANTLINE__GRAPH__TOKEN__TENANT", ids::TENANT_ID.to_owned()),
        ("GRANTLINE__GRAPH__TOKEN__CLIENT_ID", ids::APP_GRANTLINE_ID.to_owned()),
        ("GRANTLINE__GRAPH__TOKEN__CLIENT_SECRET", ids::APP_GRANTLINE_SECRET.to_owned()),
        ("GRANTLINE__SERVICENOW__INSTANCE_URL", sims.servicenow.base_url()),
        ("GRANTLINE__SERVICENOW__AUTH__KIND", "basic".to_owned()),
        ("GRANTLINE__SERVICENOW__AUTH__USERNAME", ids::SNOW_USER.to_owned()),
        ("GRANTLINE__SERVICENOW__AUTH__PASSWORD", ids::SNOW_PASSWORD.to_owned()),
        ("GRANTLINE__EXCHANGE__BASE_URL", sims.exchange.base_url()),
        ("GRANTLINE__EXCHANGE__TENANT_ID", ids::TENANT_ID.to_owned()),
        ("GRANTLINE__EXCHANGE__TOKEN__AUTHORITY", sims.login.base_url()),
        ("GRANTLINE__EXCHANGE__TOKEN__TENANT", ids::TENANT_ID.to_owned()),
        ("GRANTLINE__EXCHANGE__TOKEN__CLIENT_ID", ids::APP_GRANTLINE_ID.to_owned()),
        ("GRANTLINE__EXCHANGE__TOKEN__CLIENT_SECRET", ids::APP_GRANTLINE_SECRET.to_owned()),
        ("GRANTLINE__EXCHANGE__TOKEN__RESOURCE", "https://outlook.office365.com".to_owned()),
        ("GRANTLINE__EXECUTORS__BATCH", executors.batch.to_string()),
        ("GRANTLINE__EXECUTORS__BATCH_LINGER_MS", executors.batch_linger_ms.to_string()),
        ("GRANTLINE__EXECUTORS__MAX_WAIT_SECS", executors.max_wait_secs.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let b = &executors.graph_budget;
    let prefix = "GRANTLINE__EXECUTORS__GRAPH_BUDGET__";
    for (k, v) in [
        ("WRITES_PER_SECOND", b.writes_per_second),
        ("TENANT_WRITES_PER_SECOND", b.tenant_writes_per_second),
        ("WRITE_BURST", b.write_burst),
        ("READS_PER_SECOND", b.reads_per_second),
        ("READ_BURST", b.read_burst),
    ] {
        // with a decimal point, so the configuration reads a number of that type
        env.push((format!("{prefix}{k}"), format!("{v:?}")));
    }
    env.push((format!("{prefix}DEFAULT_RETRY_AFTER_MS"), b.default_retry_after_ms.to_string()));
    env
}

struct WorkerProc {
    child: tokio::process::Child,
}

fn spawn_worker(env: &[(String, String)], n: usize, concurrency: usize) -> Result<WorkerProc> {
    let exe = std::env::current_exe().context("the grantline binary")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("worker");
    for (k, _) in std::env::vars() {
        if k.starts_with("GRANTLINE") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().cloned())
        .env("GRANTLINE__WORKERS__CONCURRENCY", concurrency.to_string())
        .env("HOSTNAME", format!("bench-worker-{n}"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    Ok(WorkerProc { child: cmd.spawn().context("starting a worker process")? })
}

/// The `p` quantile (0 to 1) of sorted figures, by nearest rank; 0 when there are none.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the benchmark and prints its figures as one JSON line.
pub async fn pipeline(args: PipelineArgs) -> Result<()> {
    let (_server, url) = match &args.redis_url {
        Some(u) => (None, u.clone()),
        None => {
            let s = RedisServer::start().map_err(|e| anyhow!("{e}"))?;
            let url = s.url();
            (Some(s), url)
        }
    };
    let mut sims_cfg = SimsConfig { tenant: agents_tenant(args.n), ..SimsConfig::demo() };
    sims_cfg.graph.throttle = if args.throttled {
        ThrottleConfig {
            writes: args.writes_per_second,
            write_window: Duration::from_secs(1),
            resource_units: 10_000_000,
            ..ThrottleConfig::default()
        }
    } else {
        ThrottleConfig::disabled()
    };
    let sims = Sims::start(sims_cfg).await.map_err(|e| anyhow!("simulators: {e}"))?;
    let queue_cfg = QueueConfig {
        namespace: format!("bench{:06x}", fastrand::u32(..0xffffff)),
        dead_letter_queue: Some("alert".into()),
        completed_retention: Duration::ZERO,
        ..QueueConfig::default()
    };
    let queue = Queue::connect(&url, queue_cfg.clone()).await.with_context(|| format!("redis at {url}"))?;
    let budget = if args.throttled {
        BudgetConfig {
            writes_per_second: f64::from(args.writes_per_second),
            tenant_writes_per_second: 0.0,
            write_burst: f64::from(args.writes_per_second),
            reads_per_second: 1_000_000.0,
            read_burst: 1_000_000.0,
            default_retry_after_ms: 1_000,
        }
    } else {
        BudgetConfig {
            writes_per_second: 1_000_000.0,
            tenant_writes_per_second: 0.0,
            write_burst: 1_000_000.0,
            reads_per_second: 1_000_000.0,
            read_burst: 1_000_000.0,
            default_retry_after_ms: 1_000,
        }
    };
    let executors = ExecutorSettings {
        graph_budget: budget,
        batch: args.batch,
        batch_linger_ms: args.linger_ms,
        ..ExecutorSettings::default()
    };
    let policy = args.policy.display().to_string();
    let env = worker_env(&url, &queue_cfg, &sims, &policy, &executors);

    // the edge, in this process
    let ingest_cfg = grantline_ingest::IngestConfig {
        servicenow: grantline_ingest::ServiceNowAuth {
            shared_secret: Some(grantline_ingest::Secret::new(SECRET)),
            hmac_secret: None,
        },
        ..Default::default()
    };
    // served as `grantline ingest` serves it: the same connection limits, timeouts and backlog
    let limits = edge_limits(&ingest_cfg);
    let listener = grantline_ingest::server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), ingest_cfg.listen_backlog)?;
    let ingest_url = format!("http://{}/v1/webhooks/servicenow", listener.local_addr()?);
    let edge_state = grantline_ingest::AppState::new(queue.clone(), ingest_cfg);
    tokio::spawn(grantline_ingest::serve_listener(listener, edge_state, std::future::pending()));

    // the tickets exist before the clock starts
    let mut tickets = Vec::with_capacity(args.n);
    for i in 0..args.n {
        let ritm = NewRitm::new(&snow_sys_id(&agent_id(i)), ids::CAT_ITEM_TEAM_ALPHA_NAME);
        let c = sims.servicenow.state().create_ritm(ritm).map_err(|e| anyhow!("{e}"))?;
        tickets.push((c.sys_id, c.number));
    }
    let baseline = used_memory(&queue).await?;
    let mut workers: Vec<WorkerProc> =
        (0..args.workers).map(|w| spawn_worker(&env, w, args.concurrency)).collect::<Result<_>>()?;
    // let the workers connect before the clock starts
    tokio::time::sleep(Duration::from_millis(800)).await;
    sims.graph.clear_requests();

    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let started = Instant::now();
    let t0_ms = grantline_shared::clock::Clock::system().now_ms();
    let posted: Arc<tokio::sync::Mutex<HashMap<String, u64>>> = Arc::default();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut sends = Vec::with_capacity(args.n);
    for (i, (sys_id, number)) in tickets.iter().enumerate() {
        if args.rate > 0.0 {
            let due = Duration::from_secs_f64(i as f64 / args.rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let permit = sem.clone().acquire_owned().await?;
        let (http, url, posted) = (http.clone(), ingest_url.clone(), posted.clone());
        let body =
            json!({"source": "servicenow", "event": "ritm.created", "ritm": {"sys_id": sys_id, "number": number}});
        sends.push(tokio::spawn(async move {
            let at = grantline_shared::clock::Clock::system().now_ms();
            let resp = http.post(url).header("X-Grantline-Secret", SECRET).json(&body).send().await;
            drop(permit);
            match resp {
                Ok(r) if r.status().as_u16() == 202 => {
                    let v: serde_json::Value = r.json().await.unwrap_or_default();
                    if let Some(id) = v["request_id"].as_str() {
                        posted.lock().await.insert(id.to_owned(), at);
                    }
                    Ok(())
                }
                Ok(r) => Err(anyhow!("webhook refused: {}", r.status())),
                Err(e) => Err(anyhow!("webhook: {e}")),
            }
        }));
    }
    for s in sends {
        s.await??;
    }
    let posted = posted.lock().await.clone();
    if posted.len() != args.n {
        bail!("{} of {} webhooks accepted", posted.len(), args.n);
    }
    let ids: Vec<String> = posted.keys().cloned().collect();

    // wait for every request to be active, killing workers along the way if asked
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut kills_left = args.kill;
    let mut killed = 0u32;
    let mut done_at: HashMap<String, u64> = HashMap::new();
    loop {
        let mut conn = queue.connection();
        let pending: Vec<&String> = ids.iter().filter(|id| !done_at.contains_key(*id)).collect();
        for chunk in pending.chunks(500) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("HMGET").arg(queue.namespace().key(&keys::request(id))).arg("state").arg("updated_ms");
            }
            let rows: Vec<(Option<String>, Option<u64>)> = pipe.query_async(&mut conn).await?;
            for (id, (state, updated)) in chunk.iter().zip(rows) {
                let state = state.as_deref().and_then(RequestState::parse);
                if matches!(state, Some(RequestState::Active | RequestState::Completed)) {
                    done_at.insert((*id).clone(), updated.unwrap_or(0));
                }
                if matches!(state, Some(s) if s.is_terminal() || s == RequestState::Failed)
                    && state != Some(RequestState::Completed)
                {
                    bail!("request {id} ended {state:?}");
                }
            }
        }
        let done = done_at.len();
        // the kills land at even fractions of the run
        if kills_left > 0 && done * (args.kill as usize + 1) >= args.n * (killed as usize + 1) && !workers.is_empty() {
            let w = &mut workers[0];
            let _ = w.child.start_kill();
            let _ = w.child.wait().await;
            workers[0] = spawn_worker(&env, 100 + killed as usize, args.concurrency)?;
            kills_left -= 1;
            killed += 1;
            eprintln!("SIGKILLed a worker at {done}/{} active; restarted it", args.n);
        }
        if done == args.n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done} of {} requests active after {} s", args.n, args.timeout_secs);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let last_done = done_at.values().copied().max().unwrap_or(t0_ms);
    let span_s = (last_done.saturating_sub(t0_ms) as f64 / 1000.0).max(elapsed.min(0.001));

    // latency: webhook accepted to the verified grant (its audit record)
    let mut grant_latency = Vec::with_capacity(args.n);
    let mut first_grant = u64::MAX;
    let mut last_grant = 0u64;
    let mut grants_recorded = 0usize;
    for (id, posted_at) in &posted {
        for e in grantline_store::trail::entries(&queue, id).await? {
            let rec = e.record;
            if rec.contains("\"type\":\"grant_executed\"") {
                grants_recorded += 1;
                let v: serde_json::Value = serde_json::from_str(&rec)?;
                let at = v["at_ms"].as_u64().unwrap_or(0);
                first_grant = first_grant.min(at);
                last_grant = last_grant.max(at);
                grant_latency.push(at.saturating_sub(*posted_at) as f64);
            }
        }
    }
    grant_latency.sort_by(f64::total_cmp);

    // what Graph saw
    let log = sims.graph.requests();
    let graph_calls = log.len();
    let is_write = |r: &grantline_sims::LoggedRequest| {
        (r.method == "POST" && r.path.ends_with("/members/$ref"))
            || (r.method == "PATCH" && r.path.starts_with("/v1.0/groups/"))
    };
    let write_calls = log.iter().filter(|r| is_write(r)).count();
    let write_429 = log.iter().filter(|r| is_write(r) && r.status == 429).count();
    let calls_429 = log.iter().filter(|r| r.status == 429).count();
    let members = sims.graph.state().members(ids::GROUP_TEAM_ALPHA);
    let granted_once = (0..args.n).filter(|i| members.iter().filter(|m| **m == agent_id(*i)).count() == 1).count();
    // no duplicate ticket notes
    let mut duplicate_notes = 0usize;
    for (_, number) in &tickets {
        let notes = sims.servicenow.state().work_notes(number);
        let mut markers: Vec<&str> =
            notes.iter().filter_map(|n| n.split(']').next()).filter(|m| m.starts_with("[grantline")).collect();
        let before = markers.len();
        markers.sort_unstable();
        markers.dedup();
        duplicate_notes += before - markers.len();
    }
    let mut dead = 0u64;
    for q in queue.queues().await? {
        dead += queue.metrics(&q).await?.dead_total;
    }
    let (bytes_total, bytes_audit) = memory_per_request(&queue, &ids, baseline).await?;
    // the same once the queue has forgotten the completed jobs (queue.completed_retention_secs
    // after they ran): what a request costs for as long as it is kept
    // (this process's handle keeps no completed job: its retention is zero)
    for q in queue.queues().await? {
        queue.apply_retention(&q).await?;
    }
    let (settled_total, _) = memory_per_request(&queue, &ids, baseline).await?;
    let grant_span_s = (last_grant.saturating_sub(first_grant) as f64 / 1000.0).max(0.001);
    let goodput = args.n as f64 / grant_span_s;
    let bound = f64::from(args.writes_per_second) * if args.batch { 20.0 } else { 1.0 };
    for mut w in workers {
        let _ = w.child.start_kill();
        let _ = w.child.wait().await;
    }
    let out = json!({
        "bench": "pipeline",
        "n": args.n,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "throttled": args.throttled,
        "writes_per_second": args.throttled.then_some(args.writes_per_second),
        "batch": args.batch,
        "linger_ms": args.linger_ms,
        "kills": killed,
        "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
        "requests_per_s": (args.n as f64 / span_s).round(),
        "grants_per_s": (goodput * 10.0).round() / 10.0,
        "goodput_of_bound": args.throttled.then(|| ((goodput / bound) * 1000.0).round() / 1000.0),
        "grant_latency_ms": {
            "p50": percentile(&grant_latency, 0.50),
            "p90": percentile(&grant_latency, 0.90),
            "p99": percentile(&grant_latency, 0.99),
            "max": grant_latency.last().copied().unwrap_or(0.0),
        },
        "granted_exactly_once": granted_once,
        "grant_records": grants_recorded,
        "duplicate_ticket_notes": duplicate_notes,
        "dead_letters": dead,
        "graph_calls": graph_calls,
        "graph_calls_per_grant": ((graph_calls as f64 / args.n as f64) * 100.0).round() / 100.0,
        "write_calls": write_calls,
        "write_calls_per_grant": ((write_calls as f64 / args.n as f64) * 1000.0).round() / 1000.0,
        "write_calls_429": write_429,
        "write_429_share": if write_calls == 0 { 0.0 } else { ((write_429 as f64 / write_calls as f64) * 1000.0).round() / 1000.0 },
        "calls_429": calls_429,
        "redis_bytes_per_request": bytes_total,
        "redis_bytes_per_request_audit": bytes_audit,
        "redis_bytes_per_request_before_audit": bytes_total.saturating_sub(bytes_audit),
        "redis_bytes_per_request_before_audit_settled": settled_total.saturating_sub(bytes_audit),
        "edge_limits": limits,
    });
    println!("{out}");
    sims.shutdown().await;
    Ok(())
}

/// The slow-client limits the edge runs with (`grantline bench edge` attacks them).
fn edge_limits(cfg: &grantline_ingest::IngestConfig) -> Value {
    json!({
        "header_timeout_ms": cfg.header_timeout_ms,
        "body_timeout_ms": cfg.body_timeout_ms,
        "idle_timeout_secs": cfg.idle_timeout_secs,
        "max_connections": cfg.max_connections,
        "max_connections_per_client": cfg.max_connections_per_client,
        "max_header_bytes": cfg.max_header_bytes,
        "max_body_bytes": cfg.max_body_bytes,
        "listen_backlog": cfg.listen_backlog,
    })
}

async fn used_memory(queue: &Queue) -> Result<u64> {
    let mut conn = queue.connection();
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("INFO memory has no used_memory"))
}

/// Redis bytes per request in all (the memory the run added, over the requests) and of that, the
/// audit trail's (MEMORY USAGE of the audit streams).
async fn memory_per_request(queue: &Queue, ids: &[String], baseline: u64) -> Result<(u64, u64)> {
    let total = used_memory(queue).await?.saturating_sub(baseline);
    let mut conn = queue.connection();
    let mut audit = 0u64;
    for chunk in ids.chunks(500) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("MEMORY").arg("USAGE").arg(queue.namespace().key(&keys::audit(id))).arg("SAMPLES").arg(0);
        }
        let sizes: Vec<Option<u64>> = pipe.query_async(&mut conn).await?;
        audit += sizes.into_iter().flatten().sum::<u64>();
    }
    let n = ids.len().max(1) as u64;
    Ok((total / n, audit / n))
}
