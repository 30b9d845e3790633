//! The retention pass the scheduler role runs (`[retention]`): compacts the records of
//! finished requests after `retention.records_days`, and after `retention.audit_days` writes
//! their audit trails to an archive file in `retention.archive_dir` (the `audit export` format,
//! flushed to disk) before it removes them from Redis. One pass per period across every
//! scheduler (a lock in Redis); each pass works in bounded batches until nothing is due.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use grantline_queue::Queue;
use grantline_shared::Clock;
use grantline_store::retention;
use serde::Deserialize;

/// Requests handled per batch.
const BATCH: usize = 200;
const DAY_MS: u64 = 86_400_000;

/// `[retention]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// `retention.records_days`: a finished request's record is compacted to its summary this
    /// many days after it finished (0: never). Default 30.
    pub records_days: u64,
    /// `retention.audit_days`: a finished request's audit trail is archived and then removed
    /// from Redis this many days after it finished (0: kept in Redis for ever). Default 0.
    pub audit_days: u64,
    /// `retention.archive_dir`: where the archives go; required when `audit_days` is set.
    pub archive_dir: String,
    /// `retention.every_secs`: how often the pass runs. Default 3600.
    pub every_secs: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self { records_days: 30, audit_days: 0, archive_dir: String::new(), every_secs: 3600 }
    }
}

impl RetentionSettings {
    pub fn validate(&self) -> Result<()> {
        if self.audit_days > 0 && self.archive_dir.trim().is_empty() {
            bail!(
                "retention.archive_dir must be set when retention.audit_days is: a trail is archived before it is removed"
            );
        }
        if self.audit_days > 0 && self.records_days > self.audit_days {
            bail!(
                "retention.records_days ({}) must not exceed retention.audit_days ({})",
                self.records_days,
                self.audit_days
            );
        }
        if !(60..=7 * 86_400).contains(&self.every_secs) {
            bail!("retention.every_secs must be between 60 and 604800 (got {})", self.every_secs);
        }
        Ok(())
    }

    /// Checks that the archive directory exists (creating it) and takes files, before anything
    /// starts.
    pub fn prepare(&self) -> Result<()> {
        if self.audit_days == 0 {
            return Ok(());
        }
        let dir = Path::new(&self.archive_dir);
        std::fs::create_dir_all(dir).with_context(|| format!("retention.archive_dir: creating {}", dir.display()))?;
        let probe = dir.join(format!(".grantline-probe-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .with_context(|| format!("retention.archive_dir: {} does not take files", dir.display()))?;
        let _ = std::fs::remove_file(probe);
        Ok(())
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub backfilled: usize,
    pub compacted: usize,
    pub trimmed: usize,
    pub archived_records: usize,
    /// The archive file written, if anything was trimmed.
    pub archive: Option<PathBuf>,
    pub broken: Vec<String>,
}

/// One retention pass at `now_ms` (no lock: see [`run`]).
pub async fn pass(queue: &Queue, cfg: &RetentionSettings, now_ms: u64) -> Result<PassReport> {
    let mut report = PassReport::default();
    let oldest = [cfg.records_days, cfg.audit_days].into_iter().filter(|d| *d > 0).min();
    let Some(oldest) = oldest else {
        return Ok(report);
    };
    // requests that finished before the finished set existed, by their last update
    report.backfilled = retention::backfill(queue, now_ms.saturating_sub(oldest * DAY_MS), BATCH).await?;
    if cfg.records_days > 0 {
        let cutoff = now_ms.saturating_sub(cfg.records_days * DAY_MS);
        loop {
            let n = retention::compact(queue, cutoff, now_ms, BATCH).await?;
            report.compacted += n;
            if n < BATCH {
                break;
            }
        }
    }
    if cfg.audit_days > 0 {
        let cutoff = now_ms.saturating_sub(cfg.audit_days * DAY_MS);
        let stamp = jiff::Timestamp::from_millisecond(now_ms as i64)
            .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
            .unwrap_or_else(|_| now_ms.to_string());
        let path = Path::new(&cfg.archive_dir).join(format!("audit-{stamp}-{}.jsonl", queue.config().namespace));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        loop {
            let t = retention::archive_and_trim(queue, cutoff, BATCH, &mut w, retention::sync_file).await?;
            report.trimmed += t.requests;
            report.archived_records += t.records;
            let stuck = t.broken.len();
            report.broken.extend(t.broken);
            if t.requests + stuck < BATCH || t.requests == 0 {
                break;
            }
        }
        drop(w);
        if report.archived_records > 0 {
            report.archive = Some(path);
        } else if std::fs::metadata(&path).map(|m| m.len() == 0).unwrap_or(false) {
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(report)
}

/// Runs a pass every `retention.every_secs` until `shutdown` resolves; a lock in Redis makes
/// it one pass per period however many schedulers run.
pub async fn run(queue: Queue, cfg: RetentionSettings, clock: Clock, shutdown: impl std::future::Future<Output = ()>) {
    if cfg.records_days == 0 && cfg.audit_days == 0 {
        return shutdown.await;
    }
    tokio::pin!(shutdown);
    let every = Duration::from_secs(cfg.every_secs);
    loop {
        let now_ms = clock.now_ms();
        match take_turn(&queue, now_ms, every).await {
            Ok(true) => match pass(&queue, &cfg, now_ms).await {
                Ok(r) => {
                    if r.compacted + r.trimmed + r.backfilled > 0 {
                        tracing::info!(
                            compacted = r.compacted,
                            trimmed = r.trimmed,
                            archived_records = r.archived_records,
                            archive = ?r.archive,
                            "retention pass"
                        );
                    }
                    for id in &r.broken {
                        tracing::error!(request_id = %id, "retention: the audit chain does not verify; kept in Redis");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "retention pass failed; the next period tries again"),
            },
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "retention: cannot take this period's turn"),
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(every.min(Duration::from_secs(60))) => {}
        }
    }
}

/// Whether this process runs the pass of the period `now_ms` falls in.
async fn take_turn(queue: &Queue, now_ms: u64, every: Duration) -> Result<bool> {
    let period = now_ms / (every.as_millis() as u64).max(1);
    let mut conn = queue.connection();
    let key = queue.namespace().key(&format!("retention:pass:{period}"));
    let set: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(std::process::id())
        .arg("NX")
        .arg("PX")
        .arg(every.as_millis() as u64 * 2)
        .query_async(&mut conn)
        .await?;
    Ok(set.is_some())
}
