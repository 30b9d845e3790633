//! `grantline bench edge`: the HTTP edge under slow and idle clients, measured. The edge runs
//! as `grantline ingest` would (a child process of this binary, against a private Redis), so
//! its file descriptors and memory are that process's own (`/proc/PID/fd`, `VmRSS`, `VmHWM`).
//! Three attacks, one after the other:
//!
//! 1. **idle**: `--idle` connections (default 20,000) that send nothing. Counted: how many the
//!    edge held (it closes them after `ingest.header_timeout_ms`, or `ingest.idle_timeout_secs`
//!    when that is shorter, or sooner to make room for a newer one at `ingest.max_connections`),
//!    how many it refused with `503 service.overloaded` or closed at once, the edge's
//!    descriptors, and every half second
//!    a probe: `/healthz` on the webhook listener and on the metrics listener, and a genuine
//!    HMAC-signed webhook for a new ticket (status and latency).
//! 2. **bad secret**: `--slow-bodies` connections (default 3,000), each sending the headers of
//!    a webhook with a wrong shared secret and `Content-Length: 65536`, then `--sent-bytes` of
//!    the body (all but one byte): answered `401 auth.bad_secret` from the headers, the body
//!    never read, so the edge's RSS should not move. It runs before the slow bodies, whose freed
//!    heap the allocator keeps.
//! 3. **slow bodies**: the same with the valid secret: the body never completes. Counted: the
//!    edge's RSS before, at its peak and after, and how many were answered `408
//!    request.timeout` (the JSON error body), after how long.
//!
//! The client raises its own `RLIMIT_NOFILE` soft limit to the hard limit first (and says when
//! the hard limit still caps it). A table goes to standard error, one JSON line to standard
//! output.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use grantline_queue::server::RedisServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;

/// Options of `grantline bench edge`.
#[derive(clap::Args, Debug, Clone)]
pub struct EdgeArgs {
    /// Idle connections of the first attack (0: skip it).
    #[arg(long, default_value_t = 20_000)]
    pub idle: usize,
    /// Connections of the second and third attacks, each with an unfinished body (0: skip).
    #[arg(long, default_value_t = 3_000)]
    pub slow_bodies: usize,
    /// The body each of them declares (`Content-Length`).
    #[arg(long, default_value_t = 64 * 1024)]
    pub content_length: usize,
    /// How much of it each sends before it stalls (default: all but one byte).
    #[arg(long)]
    pub sent_bytes: Option<usize>,
    /// `ingest.max_connections` of the edge under test (default: the configuration's).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// `ingest.header_timeout_ms` of the edge under test.
    #[arg(long)]
    pub header_timeout_ms: Option<u64>,
    /// `ingest.body_timeout_ms` of the edge under test.
    #[arg(long)]
    pub body_timeout_ms: Option<u64>,
    /// `ingest.idle_timeout_secs` of the edge under test.
    #[arg(long)]
    pub idle_timeout_secs: Option<u64>,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 512)]
    pub connect_concurrency: usize,
    /// Use this (disposable) Redis instead of a private one.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// The policy file the edge is pointed at.
    #[arg(long, default_value = "deploy/policy.toml")]
    pub policy: PathBuf,
}

const SECRET: &str = "bench-edge-shared-secret-0123456789";
const BAD_SECRET: &str = "not-the-shared-secret-0123456789";
const HMAC_KEY: &str = "bench-edge-hmac-key-0123456789";
/// Client sockets are spread over this many loopback source addresses (127.0.0.2, …), so that
/// the attack never runs out of ephemeral ports.
const SOURCES: u8 = 8;
/// Descriptors the client keeps back for itself (Redis, the edge's pipes, probes, runtime).
const FD_RESERVE: u64 = 96;
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// The limits the edge under test runs with.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    header_timeout_ms: u64,
    body_timeout_ms: u64,
    idle_timeout_secs: u64,
    max_body_bytes: usize,
}

impl Limits {
    fn of(args: &EdgeArgs) -> Self {
        let d = grantline_ingest::IngestConfig::default();
        Self {
            max_connections: args.max_connections.unwrap_or(d.max_connections),
            header_timeout_ms: args.header_timeout_ms.unwrap_or(d.header_timeout_ms),
            body_timeout_ms: args.body_timeout_ms.unwrap_or(d.body_timeout_ms),
            idle_timeout_secs: args.idle_timeout_secs.unwrap_or(d.idle_timeout_secs),
            max_body_bytes: d.max_body_bytes,
        }
    }

    /// How long an accepted connection that sends nothing is kept.
    fn silent_close_ms(&self) -> u64 {
        self.header_timeout_ms.min(self.idle_timeout_secs * 1000)
    }

    /// How long an accepted connection whose body stalls is kept.
    fn stalled_body_ms(&self) -> u64 {
        self.body_timeout_ms.min(self.idle_timeout_secs * 1000)
    }

    fn json(&self) -> Value {
        json!({
            "max_connections": self.max_connections,
            "header_timeout_ms": self.header_timeout_ms,
            "body_timeout_ms": self.body_timeout_ms,
            "idle_timeout_secs": self.idle_timeout_secs,
            "max_body_bytes": self.max_body_bytes,
            "max_header_bytes": grantline_ingest::config::DEFAULT_MAX_HEADER_BYTES,
            "listen_backlog": grantline_ingest::config::DEFAULT_LISTEN_BACKLOG,
            "overflow_answerers": grantline_ingest::server::OVERFLOW_ANSWERERS,
        })
    }
}

// ---- the process under test --------------------------------------------------------------

struct EdgeProc {
    child: tokio::process::Child,
    pid: u32,
    addr: SocketAddr,
    metrics: SocketAddr,
    log: PathBuf,
}

/// A client that keeps no connection open between requests, so that it holds none of the
/// edge's connections (nor shows in its counters) beyond its own requests.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(10)).build().unwrap_or_default()
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `grantline ingest` against `redis_url` with `limits`, and waits until it answers.
async fn start_edge(limits: &Limits, redis_url: &str, policy: &Path) -> Result<EdgeProc> {
    let exe = std::env::current_exe().context("the grantline binary")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let log = std::env::temp_dir().join(format!("grantline-bench-edge-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("ingest");
    for (k, _) in std::env::vars() {
        if k.starts_with("GRANTLINE") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    let env = [
        ("GRANTLINE__REDIS_URL", redis_url.to_owned()),
        ("GRANTLINE__QUEUE__NAMESPACE", format!("benchedge{:06x}", fastrand::u32(..0xffffff))),
        ("GRANTLINE__POLICY__PATH", policy.display().to_string()),
        ("GRANTLINE__METRICS__BIND", metrics.to_string()),
        ("GRANTLINE__INGEST__BIND", addr.to_string()),
        ("GRANTLINE__INGEST__SERVICENOW__SHARED_SECRET", SECRET.to_owned()),
        ("GRANTLINE__INGEST__SERVICENOW__HMAC_SECRET", HMAC_KEY.to_owned()),
        ("GRANTLINE__INGEST__MAX_CONNECTIONS", limits.max_connections.to_string()),
        ("GRANTLINE__INGEST__HEADER_TIMEOUT_MS", limits.header_timeout_ms.to_string()),
        ("GRANTLINE__INGEST__BODY_TIMEOUT_MS", limits.body_timeout_ms.to_string()),
        ("GRANTLINE__INGEST__IDLE_TIMEOUT_SECS", limits.idle_timeout_secs.to_string()),
    ];
    cmd.envs(env)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("starting grantline ingest")?;
    let pid = child.id().ok_or_else(|| anyhow!("the edge exited at once"))?;
    let http = plain_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("grantline ingest exited ({status}): {}", text.trim());
        }
        let up = http.get(format!("http://{addr}/healthz")).send().await.map(|r| r.status().as_u16());
        let metrics_up = http.get(format!("http://{metrics}/healthz")).send().await.map(|r| r.status().as_u16());
        if matches!((up, metrics_up), (Ok(200), Ok(200))) {
            break;
        }
        if Instant::now() > deadline {
            bail!("grantline ingest did not answer /healthz within 30 s (log: {})", log.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(EdgeProc { child, pid, addr, metrics, log })
}

// ---- /proc -------------------------------------------------------------------------------

/// `Max open files` (soft, hard) of a process (`None`: this one); `u64::MAX` is unlimited.
fn nofile(pid: Option<u32>) -> Option<(u64, u64)> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/limits"),
        None => "/proc/self/limits".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut it = line["Max open files".len()..].split_whitespace();
    let num = |s: &str| if s == "unlimited" { Some(u64::MAX) } else { s.parse().ok() };
    Some((num(it.next()?)?, num(it.next()?)?))
}

/// What raising the client's own descriptor limit gave.
#[derive(Debug, Clone, Copy)]
struct ClientLimit {
    soft_before: u64,
    soft: u64,
    hard: u64,
}

/// Raises this process's `RLIMIT_NOFILE` soft limit to its hard limit (through `prlimit(1)`,
/// which sets another process's limits, so this crate stays free of unsafe code).
async fn raise_nofile() -> ClientLimit {
    let Some((soft_before, hard)) = nofile(None) else {
        return ClientLimit { soft_before: 0, soft: 0, hard: 0 };
    };
    let target = if hard == u64::MAX {
        std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1 << 20)
    } else {
        hard
    };
    if soft_before < target {
        let arg =
            format!("--nofile={target}:{}", if hard == u64::MAX { "unlimited".to_owned() } else { hard.to_string() });
        let out = tokio::process::Command::new("prlimit")
            .arg("--pid")
            .arg(std::process::id().to_string())
            .arg(arg)
            .stdin(Stdio::null())
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("warning: prlimit: {}", String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => eprintln!("warning: cannot run prlimit ({e}); the descriptor limit stays {soft_before}"),
        }
    }
    let soft = nofile(None).map_or(soft_before, |(s, _)| s);
    ClientLimit { soft_before, soft, hard }
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:").unwrap_or(0)
}

fn hwm_kb(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:").unwrap_or(0)
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS; false if the kernel refused.
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// The kernel's TCP counters that explain connections lost before the edge saw them: the
/// listen backlog overflowing, and SYN cookies it then could not honour (machine-wide).
fn tcp_counters() -> BTreeMap<String, i64> {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return BTreeMap::new();
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .filter(|(n, _)| matches!(*n, "ListenOverflows" | "SyncookiesSent" | "SyncookiesFailed"))
        .filter_map(|(n, v)| Some((n.to_owned(), v.parse().ok()?)))
        .collect()
}

fn tcp_delta(before: &BTreeMap<String, i64>) -> Value {
    let after = tcp_counters();
    let d = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);
    json!({
        "listen_overflows": d("ListenOverflows"),
        "syncookies_sent": d("SyncookiesSent"),
        "syncookies_failed": d("SyncookiesFailed"),
    })
}

/// Samples the edge's RSS and descriptors until stopped: (peak RSS kB, peak descriptors).
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, usize)>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let (mut rss, mut fds) = (0u64, 0usize);
            loop {
                rss = rss.max(rss_kb(pid));
                fds = fds.max(fd_count(pid));
                if flag.load(Ordering::Relaxed) {
                    return (rss, fds);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { stop, task }
    }

    async fn finish(self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or((0, 0))
    }
}

// ---- the edge's own counters ------------------------------------------------------------

/// Every sample of the edge's `/metrics` (metrics listener), by `name{labels}`.
async fn scrape(http: &reqwest::Client, metrics: SocketAddr) -> BTreeMap<String, f64> {
    let Ok(resp) = http.get(format!("http://{metrics}/metrics")).send().await else {
        return BTreeMap::new();
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn sample(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    m.get(name).copied().unwrap_or(0.0)
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, name: &str) -> u64 {
    (sample(after, name) - sample(before, name)).max(0.0).round() as u64
}

fn edge_counters(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Value {
    json!({
        "refused": delta(before, after, "grantline_ingest_connections_refused_total{reason=\"cap\"}")
            + delta(before, after, "grantline_ingest_connections_refused_total{reason=\"client\"}"),
        "refused_per_client": delta(before, after, "grantline_ingest_connections_refused_total{reason=\"client\"}"),
        "evicted": delta(before, after, "grantline_ingest_connections_evicted_total"),
        "header_timeouts": delta(before, after, "grantline_ingest_connection_timeouts_total{phase=\"header\"}"),
        "body_timeouts": delta(before, after, "grantline_ingest_connection_timeouts_total{phase=\"body\"}"),
        "idle_timeouts": delta(before, after, "grantline_ingest_connection_timeouts_total{phase=\"idle\"}"),
    })
}

/// Waits until the edge holds no connection (its gauge), at most `within`.
async fn wait_drained(http: &reqwest::Client, metrics: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let m = scrape(http, metrics).await;
        // the gauge counts the metrics listener's connections too: this scrape's own
        if sample(&m, "grantline_ingest_connections") <= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- the attacking clients ---------------------------------------------------------------

/// What happened to one attacking connection.
#[derive(Debug, Default, Clone)]
struct Outcome {
    connect_ms: f64,
    connect_err: Option<String>,
    write_err: bool,
    /// The status of the answer, if one came.
    status: Option<u16>,
    /// The `code` of its JSON body.
    code: Option<String>,
    /// From the last byte sent to the first byte of the answer.
    answered_ms: Option<f64>,
    /// From connected to closed by the edge (EOF or reset).
    closed_ms: Option<f64>,
    /// Still open when the client stopped waiting.
    still_open: bool,
}

impl Outcome {
    /// Answered with this status and this JSON error `code`.
    fn answered(&self, status: u16, code: &str) -> bool {
        self.status == Some(status) && self.code.as_deref() == Some(code)
    }

    /// Refused over `ingest.max_connections` with the JSON body.
    fn overloaded(&self) -> bool {
        self.answered(503, "service.overloaded")
    }
}

fn os_error_name(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(24) => "EMFILE".into(),
        Some(23) => "ENFILE".into(),
        Some(99) => "EADDRNOTAVAIL".into(),
        Some(104) => "ECONNRESET".into(),
        Some(110) => "ETIMEDOUT".into(),
        Some(111) => "ECONNREFUSED".into(),
        _ if e.kind() == std::io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

fn parse_answer(raw: &[u8]) -> (Option<u16>, Option<String>) {
    let text = String::from_utf8_lossy(raw);
    let status = text.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|s| s.parse().ok());
    let code = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str::<Value>(body).ok())
        .and_then(|v| v["code"].as_str().map(str::to_owned));
    (status, code)
}

/// Tracks the attack's open sockets and the most at once.
#[derive(Default)]
struct OpenCount {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl OpenCount {
    fn open(&self) {
        let n = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.max.fetch_max(n, Ordering::Relaxed);
    }
    fn close(&self) {
        self.now.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection from `src`: connects, sends `payload` (if any), then reads what the edge
/// answers until it closes, or `wait` passes.
async fn attack_one(
    addr: SocketAddr,
    src: IpAddr,
    payload: Option<Arc<Vec<u8>>>,
    wait: Duration,
    connects: Arc<Semaphore>,
    open: Arc<OpenCount>,
) -> Outcome {
    let mut out = Outcome::default();
    let start = Instant::now();
    let connected = async {
        let _permit = connects.acquire().await;
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(src, 0))?;
        match tokio::time::timeout(Duration::from_secs(30), socket.connect(addr)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")),
        }
    }
    .await;
    out.connect_ms = ms(start.elapsed());
    let mut stream = match connected {
        Ok(s) => s,
        Err(e) => {
            out.connect_err = Some(os_error_name(&e));
            return out;
        }
    };
    open.open();
    let connected_at = Instant::now();
    if let Some(p) = &payload
        && stream.write_all(p).await.is_err()
    {
        out.write_err = true;
    }
    let sent_at = Instant::now();
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    let read = tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.answered_ms.is_none() {
                        out.answered_ms = Some(ms(sent_at.elapsed()));
                    }
                    if head.len() < 8192 {
                        head.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    })
    .await;
    match read {
        Ok(()) => out.closed_ms = Some(ms(connected_at.elapsed())),
        Err(_) => out.still_open = true,
    }
    (out.status, out.code) = parse_answer(&head);
    drop(stream);
    open.close();
    out
}

/// `n` connections at once (within the client's descriptor budget and `connect_concurrency`
/// attempts in flight). Returns every outcome and the most sockets open at once.
async fn attack(
    addr: SocketAddr,
    n: usize,
    payload: Option<Arc<Vec<u8>>>,
    wait: Duration,
    fd_budget: usize,
    connect_concurrency: usize,
) -> (Vec<Outcome>, usize) {
    let fds = Arc::new(Semaphore::new(fd_budget.max(1)));
    let connects = Arc::new(Semaphore::new(connect_concurrency.max(1)));
    let open = Arc::new(OpenCount::default());
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let Ok(fd) = fds.clone().acquire_owned().await else { break };
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCES as usize) as u8));
        let (payload, connects, open) = (payload.clone(), connects.clone(), open.clone());
        tasks.push(tokio::spawn(async move {
            let out = attack_one(addr, src, payload, wait, connects, open).await;
            drop(fd);
            out
        }));
    }
    let mut outs = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(o) = t.await {
            outs.push(o);
        }
    }
    (outs, open.max.load(Ordering::Relaxed))
}

// ---- probes during the idle attack -------------------------------------------------------

#[derive(Debug, Clone)]
struct Probe {
    at_ms: f64,
    status: Option<u16>,
    latency_ms: f64,
}

/// The three probes, every [`PROBE_EVERY`] until `stop` and then until the edge answers all
/// three again (at most 5 s more), and the most connections the edge reported holding at once.
async fn probe_loop(edge: (SocketAddr, SocketAddr), stop: Arc<AtomicBool>) -> (Vec<[Probe; 3]>, f64) {
    let (addr, metrics) = edge;
    let Ok(http) = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(10)).build() else {
        return (Vec::new(), 0.0);
    };
    let started = Instant::now();
    let mut out = Vec::new();
    let mut held = 0.0f64;
    let mut ticket = 0u64;
    let mut stopped_at: Option<Instant> = None;
    loop {
        let round = Instant::now();
        ticket += 1;
        let at_ms = ms(started.elapsed());
        let timed = |fut: reqwest::RequestBuilder| async move {
            let t = Instant::now();
            let status = fut.send().await.ok().map(|r| r.status().as_u16());
            Probe { at_ms, status, latency_ms: ms(t.elapsed()) }
        };
        let (a, b, c) = tokio::join!(
            timed(http.get(format!("http://{addr}/healthz"))),
            timed(http.get(format!("http://{metrics}/healthz"))),
            timed(signed_webhook(&http, addr, ticket)),
        );
        // the gauge counts the metrics listener's connections too: this scrape's own
        let m = scrape(&http, metrics).await;
        held = held.max(sample(&m, "grantline_ingest_connections") - 1.0);
        let all_ok = [&a, &b, &c].iter().all(|p| matches!(p.status, Some(200 | 202)));
        out.push([a, b, c]);
        // once the attack is over, until the edge serves every probe again (at most 5 s)
        if stop.load(Ordering::Relaxed) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if all_ok || since.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        if let Some(rest) = PROBE_EVERY.checked_sub(round.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    (out, held)
}

/// A genuine webhook for a new ticket, signed with HMAC-SHA256 over `"{timestamp}.{body}"`.
fn signed_webhook(http: &reqwest::Client, addr: SocketAddr, n: u64) -> reqwest::RequestBuilder {
    let body = json!({
        "source": "servicenow",
        "event": "ritm.created",
        "ritm": {"sys_id": format!("{:032x}", 0xed9e_0000_u64 + n), "number": format!("RITM9{n:07}")},
    })
    .to_string();
    let ts = jiff::Timestamp::now().as_second();
    let sig = grantline_sims::webhook_signature(HMAC_KEY, Some(ts), body.as_bytes()).unwrap_or_default();
    http.post(format!("http://{addr}/v1/webhooks/servicenow"))
        .header("content-type", "application/json")
        .header("x-grantline-timestamp", ts.to_string())
        .header("x-grantline-signature", format!("sha256={sig}"))
        .body(body)
}

// ---- figures -----------------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn stats(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return json!(null);
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| crate::bench::percentile(&v, p);
    json!({"n": v.len(), "min": v[0], "p50": at(0.5), "p99": at(0.99), "max": v[v.len() - 1]})
}

fn counts<S: AsRef<str>>(it: impl Iterator<Item = S>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for k in it {
        *m.entry(k.as_ref().to_owned()).or_insert(0) += 1;
    }
    m
}

fn probe_summary(probes: &[[Probe; 3]], i: usize) -> Value {
    let all: Vec<&Probe> = probes.iter().map(|p| &p[i]).collect();
    let statuses = counts(all.iter().map(|p| match p.status {
        Some(200) => "200",
        Some(202) => "202",
        Some(503) => "503",
        Some(_) => "other",
        None => "no answer",
    }));
    let answered: Vec<f64> = all.iter().filter(|p| p.status.is_some()).map(|p| p.latency_ms).collect();
    let ok = |p: &Probe| matches!(p.status, Some(200 | 202));
    let ok_latency: Vec<f64> = all.iter().filter(|p| ok(p)).map(|p| p.latency_ms).collect();
    json!({
        "n": all.len(),
        "statuses": statuses,
        "latency_ms": stats(answered),
        "ok_latency_ms": stats(ok_latency),
        "first_ok_at_ms": all.iter().find(|p| ok(p)).map(|p| p.at_ms),
        "refused_until_ms": all.iter().filter(|p| !ok(p)).map(|p| p.at_ms).next_back(),
    })
}

fn p(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for k in path {
        cur = &cur[*k];
    }
    match cur {
        Value::Null => "-".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The edge's log lines about accepts that failed (EMFILE and friends).
fn accept_failures(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|t| t.lines().filter(|l| l.contains("accepting a connection failed")).count())
        .unwrap_or(0)
}

// ---- the three attacks -------------------------------------------------------------------

async fn idle_attack(edge: &EdgeProc, args: &EdgeArgs, limits: &Limits, fd_budget: usize) -> Value {
    let http = plain_client();
    let (rss_before, fd_before) = (rss_kb(edge.pid), fd_count(edge.pid));
    let hwm_reset = reset_hwm(edge.pid);
    let before = scrape(&http, edge.metrics).await;
    let accept_failures_before = accept_failures(&edge.log);
    let kernel = tcp_counters();
    let sampler = Sampler::start(edge.pid);
    let stop = Arc::new(AtomicBool::new(false));
    let probes = tokio::spawn(probe_loop((edge.addr, edge.metrics), stop.clone()));
    let started = Instant::now();
    let wait = Duration::from_millis(limits.silent_close_ms() + 10_000);
    let (outs, max_open) = attack(edge.addr, args.idle, None, wait, fd_budget, args.connect_concurrency).await;
    let elapsed = started.elapsed();
    let kernel = tcp_delta(&kernel);
    stop.store(true, Ordering::Relaxed);
    let (probes, held) = probes.await.unwrap_or_default();
    wait_drained(&http, edge.metrics, Duration::from_secs(10)).await;
    let (rss_peak, fd_peak) = sampler.finish().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = scrape(&http, edge.metrics).await;

    let half = limits.silent_close_ms() as f64 / 2.0;
    let connected: Vec<&Outcome> = outs.iter().filter(|o| o.connect_err.is_none()).collect();
    let refused_503: Vec<&Outcome> = connected.iter().copied().filter(|o| o.overloaded()).collect();
    let silent = |o: &Outcome| o.status.is_none() && o.closed_ms.is_some();
    let closed_at_once = connected.iter().filter(|o| silent(o)).filter(|o| o.closed_ms.unwrap_or(0.0) < half).count();
    let timed_out: Vec<f64> =
        connected.iter().filter(|o| silent(o)).filter_map(|o| o.closed_ms).filter(|t| *t >= half).collect();
    let other = counts(
        connected
            .iter()
            .filter(|o| o.status.is_some() && !o.overloaded())
            .map(|o| if o.status == Some(503) { "503 without the JSON body" } else { "another answer" }),
    );
    json!({
        "n": args.idle,
        "elapsed_s": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "connected": connected.len(),
        "connect_failed": counts(outs.iter().filter_map(|o| o.connect_err.as_deref())),
        "connect_ms": stats(connected.iter().map(|o| o.connect_ms).collect()),
        "client_max_open_at_once": max_open,
        "edge_held_at_once": held.max(0.0) as u64,
        "refused_503_json": refused_503.len(),
        "refused_503_answer_ms": stats(refused_503.iter().filter_map(|o| o.answered_ms).collect()),
        "closed_unanswered_at_once": closed_at_once,
        "closed_by_timeout": timed_out.len(),
        "closed_by_timeout_after_ms": stats(timed_out),
        "still_open_when_the_client_gave_up": connected.iter().filter(|o| o.still_open).count(),
        "other_answers": other,
        "edge_counters": edge_counters(&before, &after),
        "kernel": kernel,
        "edge_fds": {"before": fd_before, "peak": fd_peak, "after": fd_count(edge.pid)},
        "edge_rss_kb": {"before": rss_before, "peak": rss_peak, "hwm": hwm_reset.then(|| hwm_kb(edge.pid)), "after": rss_kb(edge.pid)},
        "edge_accept_failures": accept_failures(&edge.log).saturating_sub(accept_failures_before),
        "probes": {
            "healthz": probe_summary(&probes, 0),
            "healthz_metrics_listener": probe_summary(&probes, 1),
            "signed_webhook": probe_summary(&probes, 2),
        },
    })
}

/// A webhook's headers with `secret`, declaring `content_length`, then `sent` bytes of a body.
fn slow_payload(secret: &str, content_length: usize, sent: usize) -> Vec<u8> {
    let mut out = format!(
        "POST /v1/webhooks/servicenow HTTP/1.1\r\nhost: edge\r\ncontent-type: application/json\r\n\
         x-grantline-secret: {secret}\r\ncontent-length: {content_length}\r\n\r\n"
    )
    .into_bytes();
    let mut body = b"{\"ritm\":".to_vec();
    body.resize(sent.min(content_length), b' ');
    body.truncate(sent.min(content_length));
    out.extend_from_slice(&body);
    out
}

async fn body_attack(
    edge: &EdgeProc,
    args: &EdgeArgs,
    limits: &Limits,
    fd_budget: usize,
    secret: &str,
    expect: (u16, &str),
) -> Value {
    let http = plain_client();
    let sent = args.sent_bytes.unwrap_or(args.content_length.saturating_sub(1));
    let payload = Arc::new(slow_payload(secret, args.content_length, sent));
    let rss_before = rss_kb(edge.pid);
    let hwm_reset = reset_hwm(edge.pid);
    let before = scrape(&http, edge.metrics).await;
    let kernel = tcp_counters();
    let sampler = Sampler::start(edge.pid);
    let started = Instant::now();
    let wait = Duration::from_millis(limits.stalled_body_ms() + 10_000);
    let (outs, max_open) =
        attack(edge.addr, args.slow_bodies, Some(payload), wait, fd_budget, args.connect_concurrency).await;
    let elapsed = started.elapsed();
    let kernel = tcp_delta(&kernel);
    let hwm = hwm_reset.then(|| hwm_kb(edge.pid));
    wait_drained(&http, edge.metrics, Duration::from_secs(10)).await;
    let (rss_peak, fd_peak) = sampler.finish().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = scrape(&http, edge.metrics).await;

    let half = limits.stalled_body_ms() as f64 / 2.0;
    let connected: Vec<&Outcome> = outs.iter().filter(|o| o.connect_err.is_none()).collect();
    let expected: Vec<&Outcome> = connected.iter().copied().filter(|o| o.answered(expect.0, expect.1)).collect();
    let refused: Vec<&Outcome> = connected.iter().copied().filter(|o| o.overloaded()).collect();
    let rest =
        counts(connected.iter().filter(|o| !o.answered(expect.0, expect.1) && !o.overloaded()).map(|o| {
            match (o.status, o.still_open) {
                (_, true) => "still open when the client gave up".to_owned(),
                (None, _) if o.closed_ms.unwrap_or(0.0) < half => "closed at once without an answer".to_owned(),
                (None, _) => "closed late without an answer".to_owned(),
                (Some(s), _) => format!("{s} {}", o.code.as_deref().unwrap_or("(no JSON code)")),
            }
        }));
    json!({
        "n": args.slow_bodies,
        "secret": if secret == SECRET { "valid" } else { "bad" },
        "content_length": args.content_length,
        "sent_bytes": sent,
        "elapsed_s": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "connected": connected.len(),
        "connect_failed": counts(outs.iter().filter_map(|o| o.connect_err.as_deref())),
        "client_max_open_at_once": max_open,
        "answered": expect.0,
        "answered_code": expect.1,
        "answered_json": expected.len(),
        "time_to_answer_ms": stats(expected.iter().filter_map(|o| o.answered_ms).collect()),
        "refused_503_json": refused.len(),
        "other": rest,
        "edge_counters": edge_counters(&before, &after),
        "kernel": kernel,
        "edge_fds_peak": fd_peak,
        "edge_rss_kb": {"before": rss_before, "peak": rss_peak, "hwm": hwm, "after": rss_kb(edge.pid)},
    })
}

fn print_table(out: &Value) {
    let mut lines = vec![
        format!(
            "limits: max_connections {}, header_timeout_ms {}, body_timeout_ms {}, idle_timeout_secs {}, max_body_bytes {}",
            p(out, &["limits", "max_connections"]),
            p(out, &["limits", "header_timeout_ms"]),
            p(out, &["limits", "body_timeout_ms"]),
            p(out, &["limits", "idle_timeout_secs"]),
            p(out, &["limits", "max_body_bytes"]),
        ),
        format!(
            "client descriptors: soft {} -> {} (hard {}), budget {}, most open at once {}{}; edge: soft {}",
            p(out, &["client", "nofile_soft_before"]),
            p(out, &["client", "nofile_soft"]),
            p(out, &["client", "nofile_hard"]),
            p(out, &["client", "fd_budget"]),
            p(out, &["client", "max_open_at_once"]),
            if out["client"]["capped"] == json!(true) { " (capped by the hard limit)" } else { "" },
            p(out, &["edge", "nofile_soft"]),
        ),
    ];
    let i = &out["idle"];
    if !i.is_null() {
        let row = |k: &str, v: String| format!("  {k:<44} {v}");
        lines.push(format!("idle connections: {} in {} s", p(i, &["n"]), p(i, &["elapsed_s"])));
        lines.push(row("connected / failed", format!("{} / {}", p(i, &["connected"]), i["connect_failed"])));
        lines.push(row(
            "connect ms p50 / p99 / max",
            format!(
                "{} / {} / {}",
                p(i, &["connect_ms", "p50"]),
                p(i, &["connect_ms", "p99"]),
                p(i, &["connect_ms", "max"])
            ),
        ));
        lines.push(row("held by the edge at once (its gauge)", p(i, &["edge_held_at_once"])));
        lines.push(row("refused 503 service.overloaded (JSON)", p(i, &["refused_503_json"])));
        lines.push(row("closed unanswered soon (evicted, or refused)", p(i, &["closed_unanswered_at_once"])));
        lines.push(row(
            "closed by the header/idle timeout, after ms",
            format!(
                "{} after {} / {} / {} (min / p50 / max)",
                p(i, &["closed_by_timeout"]),
                p(i, &["closed_by_timeout_after_ms", "min"]),
                p(i, &["closed_by_timeout_after_ms", "p50"]),
                p(i, &["closed_by_timeout_after_ms", "max"])
            ),
        ));
        lines.push(row("still open when the client gave up", p(i, &["still_open_when_the_client_gave_up"])));
        lines.push(row("edge counters", i["edge_counters"].to_string()));
        lines.push(row("kernel (listen backlog)", i["kernel"].to_string()));
        lines.push(row(
            "edge descriptors before / peak / after",
            format!(
                "{} / {} / {}",
                p(i, &["edge_fds", "before"]),
                p(i, &["edge_fds", "peak"]),
                p(i, &["edge_fds", "after"])
            ),
        ));
        lines.push(row(
            "edge RSS kB before / peak / after",
            format!(
                "{} / {} / {}",
                p(i, &["edge_rss_kb", "before"]),
                p(i, &["edge_rss_kb", "peak"]),
                p(i, &["edge_rss_kb", "after"])
            ),
        ));
        lines.push(row("edge accept failures (EMFILE, …)", p(i, &["edge_accept_failures"])));
        for (name, key) in [
            ("probe /healthz (webhook listener)", "healthz"),
            ("probe /healthz (metrics listener)", "healthz_metrics_listener"),
            ("probe signed webhook", "signed_webhook"),
        ] {
            let pr = &i["probes"][key];
            lines.push(row(
                name,
                format!(
                    "{} answered {} in p50 {} / max {} ms; first ok at {} ms",
                    p(pr, &["n"]),
                    pr["statuses"],
                    p(pr, &["latency_ms", "p50"]),
                    p(pr, &["latency_ms", "max"]),
                    p(pr, &["first_ok_at_ms"])
                ),
            ));
        }
    }
    for key in ["bad_secret", "slow_body"] {
        let b = &out[key];
        if b.is_null() {
            continue;
        }
        let row = |k: &str, v: String| format!("  {k:<44} {v}");
        lines.push(format!(
            "{}: {} connections, {} secret, {} of {} body bytes sent, in {} s",
            key,
            p(b, &["n"]),
            p(b, &["secret"]),
            p(b, &["sent_bytes"]),
            p(b, &["content_length"]),
            p(b, &["elapsed_s"])
        ));
        lines.push(row("connected / failed", format!("{} / {}", p(b, &["connected"]), b["connect_failed"])));
        lines.push(row(
            &format!("answered {} {} (JSON)", p(b, &["answered"]), p(b, &["answered_code"])),
            format!(
                "{} after {} / {} / {} ms (min / p50 / max)",
                p(b, &["answered_json"]),
                p(b, &["time_to_answer_ms", "min"]),
                p(b, &["time_to_answer_ms", "p50"]),
                p(b, &["time_to_answer_ms", "max"])
            ),
        ));
        lines.push(row("refused 503 service.overloaded (JSON)", p(b, &["refused_503_json"])));
        lines.push(row("other", b["other"].to_string()));
        lines.push(row("edge counters", b["edge_counters"].to_string()));
        lines.push(row("kernel (listen backlog)", b["kernel"].to_string()));
        lines.push(row(
            "edge RSS kB before / peak (VmHWM) / after",
            format!(
                "{} / {} ({}) / {}",
                p(b, &["edge_rss_kb", "before"]),
                p(b, &["edge_rss_kb", "peak"]),
                p(b, &["edge_rss_kb", "hwm"]),
                p(b, &["edge_rss_kb", "after"])
            ),
        ));
    }
    eprintln!("{}", lines.join("\n"));
}

/// Runs the three attacks and prints the table (standard error) and one JSON line.
pub async fn run(args: EdgeArgs) -> Result<()> {
    let limits = Limits::of(&args);
    let client = raise_nofile().await;
    let (_server, url) = match &args.redis_url {
        Some(u) => (None, u.clone()),
        None => {
            let s = RedisServer::start().map_err(|e| anyhow!("{e}"))?;
            let url = s.url();
            (Some(s), url)
        }
    };
    let mut edge = start_edge(&limits, &url, &args.policy).await?;
    let in_use = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    let fd_budget = client.soft.saturating_sub(in_use + FD_RESERVE).max(1) as usize;
    let edge_nofile = nofile(Some(edge.pid));
    let mut out = json!({
        "bench": "edge",
        "limits": limits.json(),
        "client": {
            "nofile_soft_before": client.soft_before,
            "nofile_soft": client.soft,
            "nofile_hard": client.hard,
            "fd_budget": fd_budget,
        },
        "edge": {
            "pid": edge.pid,
            "nofile_soft": edge_nofile.map(|n| n.0),
            "rss_kb_started": rss_kb(edge.pid),
            "fds_started": fd_count(edge.pid),
        },
    });
    if args.idle > 0 {
        out["idle"] = idle_attack(&edge, &args, &limits, fd_budget).await;
    }
    if args.slow_bodies > 0 {
        // the bad secret first: the heap the slow bodies leave behind would blur its figures
        out["bad_secret"] = body_attack(&edge, &args, &limits, fd_budget, BAD_SECRET, (401, "auth.bad_secret")).await;
        out["slow_body"] = body_attack(&edge, &args, &limits, fd_budget, SECRET, (408, "request.timeout")).await;
    }
    let most_open = ["idle", "bad_secret", "slow_body"]
        .iter()
        .filter_map(|k| out[*k]["client_max_open_at_once"].as_u64())
        .max()
        .unwrap_or(0);
    out["client"]["max_open_at_once"] = json!(most_open);
    // the budget bound only if the attack ever had as many sockets open as it allows
    out["client"]["capped"] = json!(most_open as usize >= fd_budget);
    out["edge"]["alive_at_the_end"] = json!(edge.child.try_wait()?.is_none());
    let _ = edge.child.start_kill();
    let _ = edge.child.wait().await;
    let _ = std::fs::remove_file(&edge.log);
    print_table(&out);
    println!("{out}");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_as_status_and_json_code() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\r\n{\"code\":\"service.overloaded\",\"message\":\"m\",\"field\":null}";
        assert_eq!(parse_answer(raw), (Some(503), Some("service.overloaded".to_owned())));
        assert_eq!(parse_answer(b""), (None, None));
        assert_eq!(parse_answer(b"HTTP/1.1 400 Bad Request\r\n\r\n"), (Some(400), None));
    }

    #[test]
    fn a_slow_payload_declares_the_whole_body_and_sends_only_part_of_it() {
        let p = slow_payload(SECRET, 65_536, 1_000);
        let text = String::from_utf8_lossy(&p);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-length: 65536") && head.contains(SECRET), "{head}");
        assert_eq!(body.len(), 1_000);
        assert!(body.starts_with("{\"ritm\":"));
    }

    #[test]
    fn the_webhook_signature_is_hmac_sha256_in_hex() {
        // RFC 4231, test case 2
        assert_eq!(
            grantline_sims::webhook_signature("Jefe", None, b"what do ya want for nothing?").unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn this_process_has_a_descriptor_limit() {
        let (soft, hard) = nofile(None).unwrap();
        assert!(soft > 0 && soft <= hard);
    }
}
