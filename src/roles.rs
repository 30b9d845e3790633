//! The long-running roles (the HTTP edge, the workers, the scheduler) and the process that
//! holds them. Everything is checked before anything starts: the configuration of every role
//! the process runs, the policy, the connectors, Redis, and every listener is bound. Then the
//! roles run side by side with the metrics listener, and the process watches them: a role
//! that stops on its own (an error, or an end no one asked for) stops the process at once with
//! a non-zero exit, after the others were asked to shut down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use grantline_ingest::ops::MetricsState;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;

/// Which roles one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub ingest: bool,
    pub workers: bool,
    pub scheduler: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { ingest: true, workers: true, scheduler: true };
    pub const INGEST: Roles = Roles { ingest: true, workers: false, scheduler: false };
    pub const WORKERS: Roles = Roles { ingest: false, workers: true, scheduler: false };
    pub const SCHEDULER: Roles = Roles { ingest: false, workers: false, scheduler: true };
}

/// Time the roles get after the shutdown signal beyond the workers' own shutdown timeout.
const DRAIN_MARGIN: Duration = Duration::from_secs(10);

type RoleFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("{key}: cannot listen on {addr}"))
}

/// Runs `roles` until `shutdown` resolves (normally SIGTERM or SIGINT), or until one of them
/// stops on its own, which is an error.
pub async fn run(cfg: &Config, roles: Roles, shutdown: impl Future<Output = ()>) -> Result<()> {
    // 1. every check that can fail, before anything is started
    if roles.ingest {
        cfg.ingest.validate().map_err(|e| anyhow!("{e}"))?;
    }
    if roles.scheduler {
        cfg.retention.prepare()?;
    }
    let services = if roles.workers { Some(crate::cli::services(cfg).await?) } else { None };
    let queue = match &services {
        Some(s) => s.queue.clone(),
        None => crate::cli::queue(cfg).await?,
    };
    let edge = if roles.ingest { Some(crate::cli::ingest_state(cfg, queue.clone())?) } else { None };
    let ingest_listener = match &edge {
        Some(_) => Some(
            grantline_ingest::server::bind(cfg.ingest.bind, cfg.ingest.listen_backlog)
                .with_context(|| format!("ingest.bind: cannot listen on {}", cfg.ingest.bind))?,
        ),
        None => None,
    };
    let metrics_listener = if cfg.metrics.enabled { Some(bind(cfg.metrics.bind, "metrics.bind").await?) } else { None };

    // 2. the roles, each told to stop by one signal
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let mut set: JoinSet<(&'static str, Result<()>)> = JoinSet::new();
    let mut spawn = |name: &'static str, fut: RoleFuture| {
        set.spawn(async move {
            // in a task of its own, so that a panic keeps the role's name
            let res = match tokio::spawn(fut).await {
                Ok(res) => res,
                Err(e) if e.is_panic() => {
                    let p = e.into_panic();
                    let what = p
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(anyhow!("panicked: {what}"))
                }
                Err(e) => Err(anyhow!("{e}")),
            };
            (name, res)
        });
    };
    if let Some(listener) = metrics_listener {
        let state = match &edge {
            Some(state) => MetricsState::of_edge(state),
            None => MetricsState { token: cfg.ingest.metrics_token.clone(), ..MetricsState::new(queue.clone()) },
        };
        let stop = stopped(stop_rx.clone());
        spawn(
            "metrics",
            Box::pin(async move {
                grantline_ingest::ops::serve_metrics(listener, state, stop).await.context("metrics listener")
            }),
        );
    }
    if let (Some(state), Some(listener)) = (edge, ingest_listener) {
        let stop = stopped(stop_rx.clone());
        spawn(
            "ingest",
            Box::pin(async move { grantline_ingest::serve_listener(listener, state, stop).await.map_err(Into::into) }),
        );
    }
    if roles.scheduler {
        let (q, opts, stop) = (queue.clone(), cfg.scheduler_options(), stopped(stop_rx.clone()));
        spawn("scheduler", Box::pin(async move { grantline_scheduler::run(q, opts, stop).await.map_err(Into::into) }));
        let (q, retention, stop) = (queue.clone(), cfg.retention.clone(), stopped(stop_rx.clone()));
        spawn(
            "retention",
            Box::pin(async move {
                crate::retention::run(q, retention, grantline_shared::Clock::system(), stop).await;
                Ok(())
            }),
        );
    }
    if let Some(svc) = services {
        crate::cli::spawn_policy_watch(cfg, &svc);
        let (opts, stop) = (crate::cli::worker_options(cfg), stopped(stop_rx.clone()));
        spawn(
            "workers",
            Box::pin(async move {
                grantline_workers::run_workers(svc, opts, stop).await.map_err(|e| anyhow!("workers: {e}"))
            }),
        );
    }

    // 3. watch them
    tokio::pin!(shutdown);
    let early = tokio::select! {
        _ = &mut shutdown => None,
        Some(joined) = set.join_next() => Some(ended(joined)),
    };
    let _ = stop_tx.send(true);
    let drain = Duration::from_secs(cfg.workers.shutdown_timeout_secs) + DRAIN_MARGIN;
    let mut failures = Vec::new();
    let rest = tokio::time::timeout(drain, async {
        while let Some(joined) = set.join_next().await {
            let (name, res) = ended(joined);
            if let Err(e) = res {
                failures.push(format!("{name}: {e:#}"));
            }
        }
    })
    .await;
    if let Some((name, res)) = early {
        let why = match res {
            Ok(()) => "it ended without being asked to".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        tracing::error!(role = name, reason = %why, "a role stopped on its own; stopping the process");
        bail!("{name} stopped on its own: {why}");
    }
    if rest.is_err() {
        set.abort_all();
        failures.push(format!("the roles did not stop within {} s of the shutdown signal", drain.as_secs()));
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

fn ended(joined: Result<(&'static str, Result<()>), tokio::task::JoinError>) -> (&'static str, Result<()>) {
    // a role's own panic is caught inside its task; only an abort arrives here
    joined.unwrap_or_else(|e| ("a role", Err(anyhow!("{e}"))))
}
