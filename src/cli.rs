//! `grantline <command>`: the roles (worker, scheduler) and the operator tools (queues,
//! dead letters, audit trail, policy).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use grantline_queue::Queue;
use grantline_shared::audit::{self, AuditRecord};
use grantline_shared::jobs::LetterClosed;
use grantline_shared::policy;
use grantline_shared::request::{fields, keys};
use redis::AsyncCommands;

use crate::config::Config;
use crate::roles::Roles;

#[derive(Parser, Debug)]
#[command(name = "grantline", version, about = "Governed execution of IT access requests")]
pub struct Cli {
    /// Configuration file (TOML); environment variables GRANTLINE__SECTION__KEY override it.
    #[arg(long, global = true, env = "GRANTLINE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Everything on one machine: simulators with a seeded tenant, all roles, sample tickets.
    Demo {
        #[arg(long, default_value = "deploy/policy.toml")]
        policy: String,
    },
    /// Run every role in one process: ingest, workers and scheduler.
    Run,
    /// Run the HTTP edge: webhooks, request status, approval decisions, health, metrics.
    Ingest,
    /// Run the simulators (Entra login, Graph, ServiceNow, Exchange Online, Teams, Slack,
    /// PagerDuty and the alert webhook) with the seeded demo tenant.
    Sims {
        /// Ports in that order: login, Graph, ServiceNow, Exchange, Teams, Slack, paging (0, or
        /// a port left out, picks a free one).
        #[arg(long, num_args = 1..=7, value_delimiter = ',')]
        ports: Vec<u16>,
    },
    /// Run the step workers (scale by adding processes).
    Worker,
    /// Run the scheduler: lease reaping and retention for every queue, expired-grant sweep.
    Scheduler,
    /// Queue figures: ready, in flight, delayed, dead, oldest age, totals.
    Queues {
        #[arg(long)]
        json: bool,
    },
    /// Dead letters: list, retry (redrive) or discard.
    Dlq {
        #[command(subcommand)]
        cmd: DlqCmd,
    },
    /// The audit trail of a request: show, verify the hash chain, export as JSONL.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Requests: list, show, and the operator's lifecycle actions (cancel, revoke, extend),
    /// each audited with `operator.identity`.
    Requests {
        #[command(subcommand)]
        cmd: crate::requests_cmd::RequestsCmd,
    },
    /// Policy tooling: check, explain, test.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Benchmarks that print their figures (see BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// The full path: webhook to verified grant and closed ticket, through worker processes,
    /// against the simulators, optionally with Graph enforcing its write budget.
    Pipeline(crate::bench::PipelineArgs),
    /// The HTTP edge under idle and slow clients: connections held and refused, timeouts, the
    /// edge process's descriptors and memory, and whether it still answers.
    Edge(crate::bench_edge::EdgeArgs),
}

#[derive(Subcommand, Debug)]
pub enum DlqCmd {
    /// Print dead letters as JSON lines, oldest first (every one unless --limit).
    List {
        queue: Option<String>,
        /// Start after this dead-letter id (the last one a previous page printed).
        #[arg(long)]
        after: Option<String>,
        /// Print at most this many per queue.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Put a dead letter back on its queue (the page about it is resolved).
    Retry {
        queue: String,
        /// Dead-letter id (omit with --all)
        id: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Delete a dead letter for good (the page about it is resolved).
    Discard { queue: String, id: String },
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Print the timeline of a request (by request id or ticket number).
    Show { request: String },
    /// Check the hash chain; exit 1 if it is broken.
    Verify { request: String },
    /// Write the records as JSON lines (for a SIEM).
    Export { request: String },
    /// Write a signed evidence pack for auditors: <OUT>/<ticket>-<id>.evidence.json and .html.
    Evidence {
        /// Request id or ticket number.
        request: String,
        /// Directory to write the pack to.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Ed25519 private key (PKCS#8 PEM) to sign with; without it a one-time key signs.
        #[arg(long)]
        key: Option<PathBuf>,
        /// The policy file in force (its sha256 is recorded and compared with the decision's).
        #[arg(long, default_value = "deploy/policy.toml")]
        policy: PathBuf,
    },
    /// Verify an evidence pack offline; exit 1 with the reason if it is not valid.
    VerifyEvidence {
        file: PathBuf,
        /// The signer's public key (PEM); without it the key embedded in the pack is used.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Verify an audit archive written by retention (retention.archive_dir) offline: every
    /// trail chains intact to its recorded head; exit 1 naming the line of any problem.
    VerifyArchive { file: PathBuf },
    /// Create an Ed25519 signing key for evidence packs (FILE, and its public key FILE.pub).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Parse and validate a policy file; errors name file, line and column.
    Check { file: PathBuf },
    /// What would happen to a request under a policy: from JSON facts (--request), or read
    /// from a running ServiceNow and Graph (--ticket RITM..., using the configuration's
    /// connectors). Changes nothing.
    Explain {
        #[arg(long)]
        policy: PathBuf,
        #[arg(long, conflicts_with = "ticket", required_unless_present = "ticket")]
        request: Option<PathBuf>,
        #[arg(long)]
        ticket: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run the test cases a policy file carries.
    Test { file: PathBuf },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // a benchmark prints its figures; its own request logs would only slow it down
    if matches!(cli.command, Command::Demo { .. }) {
        // the terminal is for the timeline; the log lines go to a file
        let path = std::env::temp_dir().join(format!("grantline-demo-{}.log", std::process::id()));
        match std::fs::File::create(&path) {
            Ok(f) => {
                crate::telemetry::init_to_file("info", f);
                println!("logs: {}", path.display());
            }
            Err(e) => {
                eprintln!("warning: cannot write {} ({e}); logging to standard error", path.display());
                crate::telemetry::init_with_default("warn");
            }
        }
    } else {
        crate::telemetry::init_with_default(if matches!(cli.command, Command::Bench { .. }) { "warn" } else { "info" });
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received");
}

pub(crate) async fn queue(cfg: &Config) -> Result<Queue> {
    Queue::connect(&cfg.redis_url, cfg.queue_config())
        .await
        .with_context(|| format!("connecting to {}", crate::config::redacted_url(&cfg.redis_url)))
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Policy { cmd: PolicyCmd::Explain { policy: file, ticket: Some(number), json, .. } } = &cli.command {
        let cfg = Config::load(cli.config.as_deref())?;
        return explain_ticket(&cfg, file, number, *json).await;
    }
    if let Command::Policy { cmd } = &cli.command {
        return policy_cmd(cmd);
    }
    if let Command::Bench { cmd: BenchCmd::Pipeline(args) } = &cli.command {
        crate::bench::pipeline(args.clone()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Bench { cmd: BenchCmd::Edge(args) } = &cli.command {
        crate::bench_edge::run(args.clone()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Demo { policy } = &cli.command {
        crate::demo::run(policy).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Sims { ports } = &cli.command {
        let mut cfg = grantline_sims::SimsConfig::demo();
        let port = |i: usize| ports.get(i).copied().unwrap_or(0);
        cfg.ports = grantline_sims::Ports {
            login: port(0),
            graph: port(1),
            servicenow: port(2),
            exchange: port(3),
            botframework: port(4),
            slack: port(5),
            paging: port(6),
        };
        grantline_sims::run_standalone(cfg).await.map_err(|e| anyhow!("simulators: {e}"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let cfg = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Run => crate::roles::run(&cfg, Roles::ALL, shutdown_signal()).await?,
        Command::Ingest => crate::roles::run(&cfg, Roles::INGEST, shutdown_signal()).await?,
        Command::Worker => crate::roles::run(&cfg, Roles::WORKERS, shutdown_signal()).await?,
        Command::Scheduler => crate::roles::run(&cfg, Roles::SCHEDULER, shutdown_signal()).await?,
        Command::Requests { cmd } => {
            let q = queue(&cfg).await?;
            return crate::requests_cmd::run(&cfg, &q, cmd).await;
        }
        Command::Queues { json } => {
            let q = queue(&cfg).await?;
            let mut all = Vec::new();
            for name in q.queues().await? {
                all.push(q.metrics(&name).await?);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!(
                    "{:<18} {:>8} {:>9} {:>8} {:>6} {:>11} {:>10} {:>8}",
                    "queue", "ready", "in-flight", "delayed", "dead", "oldest-ms", "completed", "retried"
                );
                for m in all {
                    println!(
                        "{:<18} {:>8} {:>9} {:>8} {:>6} {:>11} {:>10} {:>8}",
                        m.queue,
                        m.ready,
                        m.in_flight,
                        m.delayed,
                        m.dead,
                        m.oldest_ready_age_ms,
                        m.completed_total,
                        m.retried_total
                    );
                }
            }
        }
        Command::Dlq { cmd } => {
            let q = queue(&cfg).await?;
            match cmd {
                DlqCmd::List { queue: name, after, limit } => {
                    let names = match name {
                        Some(n) => vec![n],
                        None => q.queues().await?,
                    };
                    let mut out = std::io::stdout().lock();
                    for n in names {
                        crate::dlq::list(&q, &n, after.as_deref(), limit, &mut out).await?;
                    }
                }
                DlqCmd::Retry { queue: name, id, all } => {
                    if all {
                        println!("redriven: {}", crate::dlq::retry_all(&q, &name).await?);
                    } else {
                        let id = id.ok_or_else(|| anyhow!("give a dead-letter id or --all"))?;
                        match crate::dlq::close(&q, &name, &id, LetterClosed::Redriven).await? {
                            Some(job) => println!("redriven: job {job}"),
                            None => bail!("no dead letter {id} on {name}"),
                        }
                    }
                }
                DlqCmd::Discard { queue: name, id } => {
                    if crate::dlq::close(&q, &name, &id, LetterClosed::Discarded).await?.is_none() {
                        bail!("no dead letter {id} on {name}");
                    }
                    println!("discarded {id}");
                }
            }
        }
        Command::Audit { cmd } => return audit_cmd(&cfg, cmd).await,
        Command::Policy { .. } | Command::Demo { .. } | Command::Sims { .. } | Command::Bench { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Reloads the policy on SIGHUP or when its file changes, for the life of the process.
pub(crate) fn spawn_policy_watch(cfg: &Config, svc: &grantline_workers::Services) {
    let (handle, queue) = (svc.policy.clone(), svc.queue.clone());
    let path = PathBuf::from(&cfg.policy.path);
    tokio::spawn(grantline_workers::policy_reload::watch(
        handle,
        path,
        queue,
        std::time::Duration::from_secs(2),
        std::future::pending(),
    ));
}

pub(crate) fn worker_options(cfg: &Config) -> grantline_workers::WorkerOptions {
    grantline_workers::WorkerOptions {
        concurrency: cfg.workers.concurrency,
        shutdown_timeout: std::time::Duration::from_secs(cfg.workers.shutdown_timeout_secs),
    }
}

pub async fn services(cfg: &Config) -> Result<Arc<grantline_workers::Services>> {
    let graph =
        cfg.graph.as_ref().ok_or_else(|| anyhow!("graph: configuration missing (graph.base_url, graph.token.*)"))?;
    let sn = cfg
        .servicenow
        .as_ref()
        .ok_or_else(|| anyhow!("servicenow: configuration missing (servicenow.instance_url, servicenow.auth)"))?;
    let policy = policy::load_file(&cfg.policy.path).map_err(|e| anyhow!("{e}"))?;
    let svc = grantline_workers::Services::new(
        queue(cfg).await?,
        grantline_connectors::GraphClient::new(graph)?,
        grantline_connectors::ServiceNowClient::new(sn)?,
        policy,
        grantline_shared::Clock::system(),
        &cfg.executors,
    );
    let svc = match &cfg.exchange {
        Some(x) => svc.with_mailboxes(grantline_connectors::ExchangeClient::new(x)?, &x.tenant_id, &cfg.executors),
        None => svc,
    };
    // the bot and the Slack app send from the same sections the doors verify with
    let channels = grantline_workers::channels::Channels::new(
        &cfg.notify,
        cfg.ingest.teams.as_ref(),
        cfg.ingest.slack.as_ref(),
        &graph.token.tenant,
    )?;
    let svc = svc.with_channels(channels);
    let svc = if cfg.paging.enabled() {
        let pager = grantline_workers::paging::Pager::new(&cfg.paging, svc.channels.slack.as_ref())
            .map_err(anyhow::Error::msg)?;
        svc.with_pager(pager)
    } else {
        tracing::warn!("paging: no destination is configured (paging.destinations); dead letters page nobody");
        svc
    };
    Ok(Arc::new(svc))
}

async fn resolve_request(q: &Queue, r: &str) -> Result<String> {
    let mut conn = q.connection();
    if r.to_ascii_uppercase().starts_with("RITM") {
        let id: Option<String> = conn.get(q.namespace().key(&keys::ticket("servicenow", r))).await?;
        return id.ok_or_else(|| anyhow!("no request for ticket {r}"));
    }
    Ok(r.to_owned())
}

/// The stream entries of a request's audit trail: (record JSON, prev, hash).
pub async fn audit_entries(q: &Queue, id: &str) -> Result<Vec<(String, String, String)>> {
    Ok(grantline_store::trail::entries(q, id).await?.iter().map(grantline_store::trail::TrailEntry::triple).collect())
}

async fn audit_cmd(cfg: &Config, cmd: AuditCmd) -> Result<ExitCode> {
    match &cmd {
        AuditCmd::VerifyEvidence { file, public_key } => {
            return crate::evidence::verify_cmd(file, public_key.as_deref());
        }
        AuditCmd::Keygen { out } => return crate::evidence::keygen_cmd(out),
        AuditCmd::VerifyArchive { file } => {
            let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
            let check = grantline_store::retention::verify_archive(std::io::BufReader::new(f))
                .with_context(|| format!("reading {}", file.display()))?;
            if check.problems.is_empty() {
                println!("ok: {} trails, {} records, every chain intact", check.trails, check.records);
                return Ok(ExitCode::SUCCESS);
            }
            for (line, problem) in &check.problems {
                println!("line {line}: {problem}");
            }
            println!("BROKEN: {} problems ({} trails intact)", check.problems.len(), check.trails);
            return Ok(ExitCode::from(1));
        }
        _ => {}
    }
    let q = queue(cfg).await?;
    if let AuditCmd::Evidence { request, out, key, policy } = &cmd {
        return crate::evidence::evidence_cmd(&q, request, out, key.as_deref(), policy).await;
    }
    let (AuditCmd::Show { request } | AuditCmd::Verify { request } | AuditCmd::Export { request }) = &cmd else {
        bail!("unexpected audit command");
    };
    let id = resolve_request(&q, request).await?;
    let entries = audit_entries(&q, &id).await?;
    if entries.is_empty() {
        bail!("request {id} has no audit trail");
    }
    match cmd {
        AuditCmd::Show { .. } => {
            for (json, _, _) in &entries {
                let r: AuditRecord = serde_json::from_str(json)?;
                let at = jiff::Timestamp::from_millisecond(r.at_ms as i64).map(|t| t.to_string()).unwrap_or_default();
                let detail = serde_json::to_value(&r.event)?;
                println!("{at}  {:<22} {:<28} {}", r.event.name(), r.actor, detail);
            }
        }
        AuditCmd::Export { .. } => {
            for (json, _, hash) in &entries {
                let mut v: serde_json::Value = serde_json::from_str(json)?;
                v["hash"] = serde_json::Value::String(hash.clone());
                println!("{v}");
            }
        }
        AuditCmd::Evidence { .. }
        | AuditCmd::VerifyEvidence { .. }
        | AuditCmd::VerifyArchive { .. }
        | AuditCmd::Keygen { .. } => {}
        AuditCmd::Verify { .. } => {
            let mut conn = q.connection();
            let head: Option<String> = conn.hget(q.namespace().key(&keys::request(&id)), fields::AUDIT_HEAD).await?;
            let v = audit::verify(&entries, head.as_deref().unwrap_or(""));
            match v.broken_at {
                None => println!("ok: {} records, chain intact", v.records),
                Some(i) => {
                    println!("BROKEN at record {i}: {}", v.reason.unwrap_or_default());
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a ticket back from ServiceNow, resolves it in Graph and explains the decision,
/// exactly as the validate step would, without writing anything.
async fn explain_ticket(cfg: &Config, file: &std::path::Path, number: &str, json: bool) -> Result<ExitCode> {
    let p = policy::load_file(file).map_err(|e| anyhow!("{e}"))?;
    let graph = cfg.graph.as_ref().ok_or_else(|| anyhow!("graph: configuration missing"))?;
    let sn = cfg.servicenow.as_ref().ok_or_else(|| anyhow!("servicenow: configuration missing"))?;
    let graph = grantline_connectors::GraphClient::new(graph)?;
    let sn = grantline_connectors::ServiceNowClient::new(sn)?;
    let mailboxes = match &cfg.exchange {
        Some(x) => Some(grantline_workers::executor::MailboxExecutor::new(
            grantline_connectors::ExchangeClient::new(x)?,
            grantline_shared::Clock::system(),
            None,
        )),
        None => None,
    };
    let ritm = sn.get_ritm_by_number(number).await.map_err(|e| anyhow!("{number}: {e}"))?;
    let readers = grantline_workers::steps::validate::Readers {
        graph: &graph,
        servicenow: &sn,
        mailboxes: mailboxes.as_ref(),
        budget: None,
    };
    let ev = grantline_workers::steps::validate::evaluate_ticket(readers, &p, &ritm.sys_id, jiff::Timestamp::now())
        .await
        .map_err(|e| anyhow!("{number}: {e}"))?;
    let Some(facts) = ev.facts else {
        println!("{number}: the person the access is for was not found in the directory: denied");
        return Ok(ExitCode::SUCCESS);
    };
    let e = policy::explain(&facts, &p);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"ticket": number, "facts": facts, "explanation": e}))?
        );
    } else {
        println!("{number}: {}\n{e}", ritm.short_description);
    }
    Ok(ExitCode::SUCCESS)
}

fn policy_cmd(cmd: &PolicyCmd) -> Result<ExitCode> {
    match cmd {
        PolicyCmd::Check { file } => match policy::load_file(file) {
            Ok(p) => {
                println!("ok: {} ({})", file.display(), p.version());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(1))
            }
        },
        PolicyCmd::Explain { policy: file, request, json, .. } => {
            let p = policy::load_file(file).map_err(|e| anyhow!("{e}"))?;
            let request = request.as_ref().ok_or_else(|| anyhow!("give --request FILE.json or --ticket NUMBER"))?;
            let text = std::fs::read_to_string(request).with_context(|| format!("reading {}", request.display()))?;
            let facts: policy::RequestFacts =
                serde_json::from_str(&text).with_context(|| format!("{}: request facts", request.display()))?;
            let e = policy::explain(&facts, &p);
            if *json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                println!("{e}");
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Test { file } => {
            let p = policy::load_file(file).map_err(|e| anyhow!("{e}"))?;
            let report = policy::run_tests(&p);
            println!("{report}");
            Ok(if report.failed() == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

/// The HTTP edge's state: the queue, and the directory that proves approvers' identities.
pub(crate) fn ingest_state(cfg: &Config, q: grantline_queue::Queue) -> Result<grantline_ingest::AppState> {
    let mut state = grantline_ingest::AppState::new(q, cfg.ingest.clone()).with_policy_file(&cfg.policy.path);
    if let Some(graph) = &cfg.graph {
        state = state.with_directory(grantline_connectors::GraphClient::new(graph)?);
    }
    if let Some(bot) = &cfg.ingest.teams {
        state = state.with_teams(std::sync::Arc::new(grantline_ingest::teams::TeamsDoor::new(bot)?));
    }
    if let Some(slack) = &cfg.ingest.slack {
        state = state.with_slack(std::sync::Arc::new(grantline_ingest::slack::SlackDoor::new(slack)?));
    }
    if let Some(web) = &cfg.ingest.web {
        state = state.with_web(std::sync::Arc::new(grantline_ingest::web::WebDoor::new(web)?));
    }
    Ok(state)
}
