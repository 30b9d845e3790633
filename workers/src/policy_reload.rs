//! Policy reload: on SIGHUP, or when the file's content changes, the policy is loaded
//! again. A file that fails to load leaves the previous policy in force; the failure is
//! logged with its file:line:column diagnostics and counted in Redis, where the HTTP edge's
//! `/metrics` reads it (`grantline_policy_reload_failures_total`, `grantline_policy_info`).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use grantline_queue::Queue;
use grantline_shared::policy;

use crate::services::PolicyHandle;

/// Relative key of the policy status hash: version, loaded_ms, reload_failures, last_error.
pub use grantline_shared::request::keys::POLICY_STATUS as STATUS_KEY;

/// What a reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Loaded { version: String },
    Failed { error: String },
}

/// Loads the file again; replaces the policy only when it loads and differs.
pub async fn reload_once(handle: &PolicyHandle, path: &std::path::Path, queue: &Queue) -> Reload {
    let current = handle.get().version().to_owned();
    let outcome = match policy::load_file(path) {
        Ok(p) if p.version() == current => Reload::Unchanged,
        Ok(p) => {
            let version = p.version().to_owned();
            handle.set(p);
            tracing::info!(path = %path.display(), %version, previous = %current, "policy reloaded");
            Reload::Loaded { version }
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, version = %current,
                "policy reload failed; the previous policy stays in force");
            Reload::Failed { error: e.to_string() }
        }
    };
    if let Err(e) = record(queue, handle, &outcome).await {
        tracing::warn!(error = %e, "could not record the policy status");
    }
    outcome
}

async fn record(queue: &Queue, handle: &PolicyHandle, outcome: &Reload) -> redis::RedisResult<()> {
    let key = queue.namespace().key(STATUS_KEY);
    let mut conn = queue.connection();
    let now = jiff::Timestamp::now().as_millisecond().to_string();
    let mut pipe = redis::pipe();
    pipe.hset(&key, "version", handle.get().version());
    match outcome {
        Reload::Loaded { .. } => {
            pipe.hset(&key, "loaded_ms", &now);
        }
        Reload::Failed { error } => {
            pipe.hincr(&key, "reload_failures", 1).hset(&key, "last_error", error).hset(&key, "failed_ms", &now);
        }
        Reload::Unchanged => {}
    }
    pipe.query_async::<()>(&mut conn).await
}

/// Watches for SIGHUP and content changes (checked every `every`) until `shutdown`.
pub async fn watch(
    handle: PolicyHandle,
    path: PathBuf,
    queue: Queue,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler; reloading on file changes only");
            None
        }
    };
    let mut last = std::fs::read(&path).ok();
    // published after the baseline is taken, so a change from here on is seen
    let _ = record(&queue, &handle, &Reload::Loaded { version: handle.get().version().to_owned() }).await;
    tokio::pin!(shutdown);
    loop {
        let hup_fired = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = hup_fired => {
                tracing::info!("SIGHUP: reloading the policy");
                last = std::fs::read(&path).ok();
                reload_once(&handle, &path, &queue).await;
            }
            _ = tokio::time::sleep(every) => {
                let now = std::fs::read(&path).ok();
                if now != last {
                    last = now;
                    reload_once(&handle, &path, &queue).await;
                }
            }
        }
    }
}
