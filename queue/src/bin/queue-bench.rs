//! queue-bench: the queue's benchmark, following the peer harness's workload contract
//! (../shared/peer-bench): N chains of 5 steps, the handler of step k enqueues step k+1
//! through the atomic hand-off, trivial work, worker processes with concurrency 50, a
//! private loopback Redis. Prints one JSON line per run.
//!
//!   queue-bench chains [--n 20000] [--workers 1] [--concurrency 50] [--rate 0] [--reps 3]
//!                      [--persistence none|everysec|always] [--kill-after-ms 0]
//!   queue-bench delayed [--m 1000000] [--k 10000] [--waiting 100000]
//!   queue-bench worker ...   (internal: one worker process)

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use apalis::prelude::WorkerBuilderExt;
use apalis_core::task::data::Data;
use apalis_core::worker::builder::WorkerBuilder;
use clap::{Parser, Subcommand, ValueEnum};
use grantline_queue::server::{Persistence, RedisServer};
use grantline_queue::{
    Handoff, JobError, NewJob, Queue, QueueConfig, RedisBackend, RetryPolicy, RunAt, Write, WriteCmd,
};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Benchmarks of the grantline queue")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Aof {
    None,
    Everysec,
    Always,
}

#[derive(Subcommand)]
enum Cmd {
    /// N chains of `steps` jobs through worker processes.
    Chains(ChainArgs),
    /// Delayed jobs: bytes per job, enqueue rate, lateness, throughput with them parked.
    Delayed(DelayedArgs),
    /// One worker process (started by the other commands and by the crash tests).
    Worker(WorkerArgs),
}

#[derive(clap::Args, Clone)]
struct ChainArgs {
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    #[arg(long, default_value_t = 5)]
    steps: u32,
    #[arg(long, default_value_t = 1)]
    workers: usize,
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Chains per second, open loop (0: enqueue all at once in batches of --bulk).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    #[arg(long, default_value_t = 500)]
    bulk: usize,
    /// Repetitions after one warm-up run; the printed figures are medians.
    #[arg(long, default_value_t = 1)]
    reps: usize,
    #[arg(long, default_value_t = false)]
    warmup: bool,
    #[arg(long, value_enum, default_value_t = Aof::None)]
    persistence: Aof,
    /// SIGKILL worker 0 this long after the start and start a replacement at once.
    #[arg(long, default_value_t = 0)]
    kill_after_ms: u64,
    #[arg(long, default_value = "chainbench")]
    queue: String,
    /// Use this Redis instead of a private one (it must be disposable).
    #[arg(long)]
    redis_url: Option<String>,
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
    /// Lease in ms (default: the queue's default).
    #[arg(long)]
    lease_ms: Option<u64>,
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(clap::Args, Clone)]
struct DelayedArgs {
    #[arg(long, default_value_t = 1_000_000)]
    m: usize,
    #[arg(long, default_value_t = 10_000)]
    k: usize,
    #[arg(long, default_value_t = 100_000)]
    waiting: usize,
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Then run N chains on the same queue with the M jobs parked (0: skip).
    #[arg(long, default_value_t = 20_000)]
    chains: usize,
    #[arg(long)]
    redis_url: Option<String>,
}

#[derive(clap::Args, Clone)]
struct WorkerArgs {
    /// `redis://host:port/` or a cluster's seeds, `redis+cluster://h1:p1,h2:p2/`.
    #[arg(long)]
    url: String,
    #[arg(long)]
    namespace: String,
    #[arg(long, default_value = "chainbench")]
    queue: String,
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    #[arg(long, default_value_t = 5)]
    steps: u32,
    #[arg(long)]
    lease_ms: Option<u64>,
    /// Sleep this long in every handler (ms), to keep jobs in flight.
    #[arg(long, default_value_t = 0)]
    work_ms: u64,
    /// Also count every acknowledged step in a hash (crash tests: detects a forked chain).
    #[arg(long, default_value_t = false)]
    count_steps: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    c: u64,
    k: u32,
    t0: f64,
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

fn config(namespace: &str, lease_ms: Option<u64>) -> QueueConfig {
    let mut cfg = QueueConfig {
        namespace: namespace.to_owned(),
        // the peer removes completed jobs at once (removeOnComplete: true)
        completed_retention: Duration::ZERO,
        default_retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            max_wait: Duration::from_secs(24 * 3600),
        },
        ..QueueConfig::default()
    };
    if let Some(l) = lease_ms {
        cfg.lease = Duration::from_millis(l);
        cfg.renew_every = Duration::from_millis(l / 4);
    }
    cfg
}

struct Ctx {
    work: Duration,
    queue: String,
    steps: u32,
    count_steps: bool,
}

async fn step(s: Step, ctx: Data<Arc<Ctx>>) -> Result<Handoff, JobError> {
    if !ctx.work.is_zero() {
        tokio::time::sleep(ctx.work).await;
    }
    let mut h = Handoff::done();
    if ctx.count_steps {
        h = h.write(Write::new(WriteCmd::HIncrBy, "bench:steps", [format!("{}:{}", s.c, s.k), "1".to_owned()]));
    }
    if s.k < ctx.steps {
        let next = NewJob::new(ctx.queue.clone(), &Step { c: s.c, k: s.k + 1, t0: s.t0 })
            .map_err(|e| JobError::permanent("bench.encode", e.to_string()))?;
        Ok(h.then(next))
    } else {
        Ok(h.write(Write::new(WriteCmd::RPush, "bench:lat", [format!("{},{},{}", s.c, s.t0, now_ms())])))
    }
}

async fn worker_main(a: WorkerArgs) -> Result<()> {
    let q = Queue::connect(&a.url, config(&a.namespace, a.lease_ms)).await?;
    let backend = RedisBackend::<Step>::new(&q, &a.queue).batch(a.concurrency.min(64));
    let ctx = Arc::new(Ctx {
        work: Duration::from_millis(a.work_ms),
        queue: a.queue.clone(),
        steps: a.steps,
        count_steps: a.count_steps,
    });
    let worker = WorkerBuilder::new(format!("bench-{}", q.worker_id()))
        .backend(backend)
        .data(ctx)
        .concurrency(a.concurrency)
        .build(step);
    println!("ready {}", q.worker_id());
    worker
        .run_until(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r,
                _ = term.recv() => Ok(()),
            }
        })
        .await
        .map_err(|e| anyhow!("worker: {e}"))
}

struct WorkerProc {
    child: Child,
}

impl WorkerProc {
    fn start(url: &str, ns: &str, queue: &str, concurrency: usize, steps: u32, lease_ms: Option<u64>) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.args(["worker", "--url", url, "--namespace", ns, "--queue", queue]).args([
            "--concurrency",
            &concurrency.to_string(),
            "--steps",
            &steps.to_string(),
        ]);
        if let Some(l) = lease_ms {
            cmd.args(["--lease-ms", &l.to_string()]);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        if !line.starts_with("ready") {
            bail!("worker did not start: {line:?}");
        }
        Ok(Self { child })
    }

    fn cpu_s(&self) -> f64 {
        proc_cpu_s(self.child.id())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(&mut self) -> f64 {
        let cpu = self.cpu_s();
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        cpu
    }
}

/// utime + stime of a process, from /proc (clock ticks of 10 ms).
fn proc_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return f64::NAN };
    let Some(rest) = stat.rsplit(") ").next() else { return f64::NAN };
    let f: Vec<&str> = rest.split(' ').collect();
    let t = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (t(11) + t(12)) / 100.0
}

async fn info_field(conn: &mut redis::aio::MultiplexedConnection, section: &str, field: &str) -> Result<f64> {
    let info: String = redis::cmd("INFO").arg(section).query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).and_then(|v| v.trim().parse().ok()))
        .ok_or_else(|| anyhow!("INFO {section} has no {field}"))
}

async fn redis_cpu_s(conn: &mut redis::aio::MultiplexedConnection) -> Result<f64> {
    Ok(info_field(conn, "cpu", "used_cpu_sys").await? + info_field(conn, "cpu", "used_cpu_user").await?)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * (sorted.len() - 1) as f64).floor() as usize).min(sorted.len() - 1);
    (sorted[i] * 10.0).round() / 10.0
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

struct Private {
    _server: Option<RedisServer>,
    url: String,
}

fn redis_for(url: &Option<String>, aof: Aof) -> Result<Private> {
    match url {
        Some(u) => Ok(Private { _server: None, url: u.clone() }),
        None => {
            let p = match aof {
                Aof::None => Persistence::None,
                Aof::Everysec => Persistence::AofEverySec,
                Aof::Always => Persistence::AofAlways,
            };
            let s = RedisServer::start_with(p)?;
            let url = s.url();
            Ok(Private { _server: Some(s), url })
        }
    }
}

async fn chains_once(a: &ChainArgs, url: &str, ns: &str) -> Result<serde_json::Value> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let q = Queue::connect(url, config(ns, a.lease_ms)).await?;
    let lat_key = q.namespace().key("bench:lat");
    let _: () = conn.del(&lat_key).await?;
    let mem_before = info_field(&mut conn, "memory", "used_memory").await?;
    let mut workers = Vec::new();
    for _ in 0..a.workers {
        workers.push(WorkerProc::start(url, ns, &a.queue, a.concurrency, a.steps, a.lease_ms)?);
    }
    let cpu0 = redis_cpu_s(&mut conn).await?;
    let t_start = now_ms();
    let started = Instant::now();
    let mut killed_at: Option<f64> = None;
    let mut sent = 0usize;
    let mk = |c: usize| NewJob::new(a.queue.clone(), &Step { c: c as u64, k: 1, t0: now_ms() });
    let mut mem_peak = mem_before;
    let maybe_kill = |workers: &mut Vec<WorkerProc>, killed_at: &mut Option<f64>| -> Result<()> {
        if a.kill_after_ms > 0 && killed_at.is_none() && started.elapsed() >= Duration::from_millis(a.kill_after_ms) {
            *killed_at = Some(now_ms());
            workers[0].kill();
            workers[0] = WorkerProc::start(url, ns, &a.queue, a.concurrency, a.steps, a.lease_ms)?;
        }
        Ok(())
    };
    if a.rate > 0.0 {
        while sent < a.n {
            let due = (((now_ms() - t_start) / 1000.0 * a.rate).floor() as usize + 1).min(a.n);
            if due > sent {
                let batch = (sent..due).map(mk).collect::<Result<Vec<_>, _>>()?;
                sent = due;
                q.push_many(batch).await?;
            } else {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            maybe_kill(&mut workers, &mut killed_at)?;
        }
    } else {
        while sent < a.n {
            let end = (sent + a.bulk.max(1)).min(a.n);
            let batch = (sent..end).map(mk).collect::<Result<Vec<_>, _>>()?;
            sent = end;
            q.push_many(batch).await?;
        }
    }
    let t_enq = now_ms();
    let deadline = Instant::now() + Duration::from_secs(a.timeout_s);
    loop {
        maybe_kill(&mut workers, &mut killed_at)?;
        let done: usize = conn.llen(&lat_key).await?;
        if done >= a.n {
            if a.kill_after_ms > 0 {
                tokio::time::sleep(Duration::from_secs(2)).await; // late duplicates
            }
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        mem_peak = mem_peak.max(info_field(&mut conn, "memory", "used_memory").await?);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu1 = redis_cpu_s(&mut conn).await?;
    let recs: Vec<String> = conn.lrange(&lat_key, 0, -1).await?;
    let mut seen = std::collections::HashSet::new();
    let (mut dup, mut t_last, mut lat) = (0usize, 0f64, Vec::with_capacity(a.n));
    for r in recs {
        let f: Vec<f64> = r.split(',').filter_map(|x| x.parse().ok()).collect();
        let [c, t0, t1] = f[..] else { continue };
        if !seen.insert(c as u64) {
            dup += 1;
            continue;
        }
        lat.push(t1 - t0);
        t_last = t_last.max(t1);
    }
    lat.sort_by(|x, y| x.total_cmp(y));
    let worker_cpu: Vec<f64> = workers.iter_mut().map(|w| w.stop()).collect();
    let wall = (t_last - t_start) / 1000.0;
    let jobs = (seen.len() * a.steps as usize) as f64;
    let redis_cpu = cpu1 - cpu0;
    let wcpu: f64 = worker_cpu.iter().sum();
    let mut out = json!({
        "system": "grantline-queue", "label": a.label, "n": a.n, "steps": a.steps, "workers": a.workers,
        "concurrency": a.concurrency,
        "mode": if a.rate > 0.0 { format!("paced {}/s", a.rate) } else { format!("burst bulk={}", a.bulk) },
        "persistence": format!("{:?}", a.persistence).to_lowercase(),
        "chains_done": seen.len(), "lost": a.n - seen.len(), "duplicate_successors": dup,
        "wall_s": round(wall, 3), "chains_per_s": round(seen.len() as f64 / wall, 1),
        "jobs_per_s": round(jobs / wall, 1),
        "enqueue_s": round((t_enq - t_start) / 1000.0, 3),
        "enqueue_per_s": round(a.n as f64 / ((t_enq - t_start) / 1000.0), 1),
        "lat_ms": { "p50": pct(&lat, 0.5), "p90": pct(&lat, 0.9), "p99": pct(&lat, 0.99), "p999": pct(&lat, 0.999), "max": pct(&lat, 1.0) },
        "redis_cpu_s": round(redis_cpu, 2), "redis_cpu_us_per_job": round(redis_cpu * 1e6 / jobs, 1),
        "worker_cpu_s": worker_cpu.iter().map(|x| round(*x, 2)).collect::<Vec<_>>(),
        "worker_cpu_us_per_job": round(wcpu * 1e6 / jobs, 1),
        "redis_used_memory_peak_delta_mb": round((mem_peak - mem_before) / 1_048_576.0, 1),
    });
    if let Some(k) = killed_at {
        out["killed_after_s"] = json!(round((k - t_start) / 1000.0, 2));
        out["recovery_s_after_kill"] = json!(round((t_last - k) / 1000.0, 2));
    }
    let _: () = conn.del(&lat_key).await?;
    Ok(out)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn chains(a: ChainArgs) -> Result<()> {
    let r = redis_for(&a.redis_url, a.persistence)?;
    if a.warmup {
        let mut w = a.clone();
        w.n = (a.n / 10).max(1000);
        w.kill_after_ms = 0;
        chains_once(&w, &r.url, "benchwarm").await?;
    }
    let mut runs = Vec::new();
    for i in 0..a.reps.max(1) {
        runs.push(chains_once(&a, &r.url, &format!("bench{i}")).await?);
    }
    // the run with the median throughput stands for the set; the others are listed
    let mut tput: Vec<f64> = runs.iter().map(|r| r["chains_per_s"].as_f64().unwrap_or(0.0)).collect();
    let m = median(&mut tput);
    let idx = runs.iter().position(|r| r["chains_per_s"].as_f64() == Some(m)).unwrap_or(0);
    let mut out = runs[idx].clone();
    if runs.len() > 1 {
        out["reps"] = json!(runs.len());
        out["chains_per_s_runs"] = json!(runs.iter().map(|r| r["chains_per_s"].clone()).collect::<Vec<_>>());
        out["redis_cpu_us_per_job_runs"] =
            json!(runs.iter().map(|r| r["redis_cpu_us_per_job"].clone()).collect::<Vec<_>>());
        out["p99_ms_runs"] = json!(runs.iter().map(|r| r["lat_ms"]["p99"].clone()).collect::<Vec<_>>());
    }
    println!("{out}");
    let lost = out["lost"].as_u64().unwrap_or(1);
    let dup = out["duplicate_successors"].as_u64().unwrap_or(1);
    if lost > 0 || dup > 0 {
        bail!("lost {lost}, duplicated {dup}");
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct Removal {
    tenant: String,
    subject: String,
    grant: String,
    reason: String,
    #[serde(rename = "requestId")]
    request_id: String,
}

#[derive(Serialize, Deserialize)]
struct Soon {
    #[serde(rename = "dueAt")]
    due_at: f64,
}

/// The peer's payload for a removal job (same JSON size).
fn removal(i: usize) -> Removal {
    Removal {
        tenant: format!("t{}", i % 97),
        subject: format!("user-{i}"),
        grant: "repo:acme/app:write".into(),
        reason: "temporary-access".into(),
        request_id: format!("req-{i:012x}"),
    }
}

async fn delayed(a: DelayedArgs) -> Result<()> {
    let r = redis_for(&a.redis_url, Aof::None)?;
    let client = redis::Client::open(r.url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let queue = "removals";
    let q = Queue::connect(&r.url, config("delayedbench", None)).await?;
    let mem = |c: &mut redis::aio::MultiplexedConnection| {
        let mut c = c.clone();
        async move { info_field(&mut c, "memory", "used_memory").await }
    };
    let mut out =
        json!({ "system": "grantline-queue", "payload_json_bytes": serde_json::to_string(&removal(123_456))?.len() });
    // (1a) ready jobs, no worker
    let m0 = mem(&mut conn).await?;
    let t = Instant::now();
    for chunk in (0..a.waiting).collect::<Vec<_>>().chunks(1000) {
        let jobs = chunk.iter().map(|&i| NewJob::new(queue, &removal(i))).collect::<Result<Vec<_>, _>>()?;
        q.push_many(jobs).await?;
    }
    out["waiting_enqueue_per_s"] = json!((a.waiting as f64 / t.elapsed().as_secs_f64()).round());
    out["bytes_per_waiting_job"] = json!(((mem(&mut conn).await? - m0) / a.waiting as f64).round());
    let keys = q.keys(queue);
    let _: () = redis::cmd("DEL").arg(&keys.ready).arg(&keys.jobs).arg(&keys.stats).query_async(&mut conn).await?;
    // (1b)+(2) far-future delayed jobs (7..28 days)
    let day = 86_400_000u64;
    let now = now_ms() as u64;
    let m0 = mem(&mut conn).await?;
    let t = Instant::now();
    for chunk in (0..a.m).collect::<Vec<_>>().chunks(1000) {
        let jobs = chunk
            .iter()
            .map(|&i| {
                NewJob::new(queue, &removal(i)).map(|j| j.run_at(RunAt::At(now + 7 * day + fastrand::u64(0..21 * day))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        q.push_many(jobs).await?;
    }
    let enq = t.elapsed().as_secs_f64();
    out["delayed_jobs"] = json!(a.m);
    out["delayed_enqueue_s"] = json!(round(enq, 1));
    out["delayed_enqueue_per_s"] = json!((a.m as f64 / enq).round());
    out["bytes_per_delayed_job"] = json!(((mem(&mut conn).await? - m0) / a.m as f64).round());
    out["redis_used_memory_mb"] = json!(round(mem(&mut conn).await? / 1_048_576.0, 1));
    // (3) near-future jobs due 2..7 s from now, with the M jobs parked in the same queue
    let late = Arc::new(std::sync::Mutex::new(Vec::<f64>::with_capacity(a.k)));
    let l = late.clone();
    let soon_q = Queue::connect(&r.url, config("delayedbench", None)).await?;
    let worker = WorkerBuilder::new("delayed-bench")
        .backend(RedisBackend::<Soon>::new(&soon_q, queue).batch(a.concurrency.min(64)))
        .concurrency(a.concurrency)
        .build(move |s: Soon| {
            let l = l.clone();
            async move {
                if let Ok(mut v) = l.lock() {
                    v.push(now_ms() - s.due_at);
                }
            }
        });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(worker.run_until(async move {
        let _ = rx.await;
        Ok::<(), std::io::Error>(())
    }));
    let t = Instant::now();
    for chunk in (0..a.k).collect::<Vec<_>>().chunks(1000) {
        let jobs = chunk
            .iter()
            .map(|_| {
                let delay = 2000 + fastrand::u64(0..5000);
                NewJob::new(queue, &Soon { due_at: now_ms() + delay as f64 })
                    .map(|j| j.delay(Duration::from_millis(delay)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        q.push_many(jobs).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while late.lock().map(|v| v.len()).unwrap_or(0) < a.k && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = tx.send(());
    let _ = handle.await;
    let mut v = late.lock().map(|v| v.clone()).unwrap_or_default();
    v.sort_by(|x, y| x.total_cmp(y));
    out["near_jobs"] = json!(a.k);
    out["near_done"] = json!(v.len());
    out["near_wall_s"] = json!(round(t.elapsed().as_secs_f64(), 2));
    out["lateness_ms"] = json!({ "p50": pct(&v, 0.5), "p99": pct(&v, 0.99), "max": pct(&v, 1.0) });
    out["far_jobs_still_delayed"] = json!(q.metrics(queue).await?.delayed);
    println!("{out}");
    if a.chains > 0 {
        // throughput of the chain workload on the queue that holds the M parked jobs
        let ca = ChainArgs {
            n: a.chains,
            steps: 5,
            workers: 1,
            concurrency: 50,
            rate: 0.0,
            bulk: 500,
            reps: 1,
            warmup: false,
            persistence: Aof::None,
            kill_after_ms: 0,
            queue: queue.to_owned(),
            redis_url: None,
            timeout_s: 600,
            lease_ms: None,
            label: format!("with {} delayed parked", a.m),
        };
        let mut res = chains_once(&ca, &r.url, "delayedbench").await?;
        res["parked_delayed_jobs"] = json!(q.metrics(queue).await?.delayed);
        println!("{res}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Worker(a) => worker_main(a).await,
        Cmd::Chains(a) => chains(a).await.context("chains benchmark"),
        Cmd::Delayed(a) => delayed(a).await.context("delayed benchmark"),
    }
}
