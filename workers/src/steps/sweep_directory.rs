//! sweep-directory: the directory's users delta (apis.md 2.10), polled from the stored delta
//! link, or a full sync when there is none or Graph says the token expired (410). Pages are
//! followed through `@odata.nextLink`; the link of the page in progress is stored after each
//! page, so a retried sweep continues where it stopped, and the new `@odata.deltaLink` is
//! stored once the round is complete.
//!
//! A user shown disabled, deleted, or with an `employeeLeaveDateTime` that passed (by the
//! clock) is offboarded through an `offboard` job, the same path as a leaver event, when
//! grantline holds requests of theirs (the person index); a leave date still to come gets an
//! `offboard` job delayed until then, which reads the directory again before it acts. Each job
//! carries an idempotency key, so a sweep run twice enqueues each once.

use std::sync::Arc;
use std::time::Duration;

use apalis_core::task::data::Data;
use grantline_connectors::graph::DeltaUser;
use grantline_queue::{Handoff, JobError, NewJob, RunAt};
use grantline_shared::JobKind;
use grantline_shared::clock::ms;
use grantline_shared::jobs::{Offboard, OffboardSource, SweepDirectory};
use grantline_store::directory;
use redis::AsyncCommands;

use super::{job_error, redis_unavailable};
use crate::record::store_error;
use crate::services::Services;

/// The most pages one sweep reads (a larger tenant continues in the next sweep, from the
/// stored link of the page in progress).
const MAX_PAGES: usize = 10_000;

/// Why a user is leaving, and from when (a leave date, passed or still to come).
pub fn leaving(u: &DeltaUser) -> Option<(OffboardSource, Option<u64>)> {
    if u.removed.is_some() {
        return Some((OffboardSource::Deleted, None));
    }
    if u.account_enabled == Some(false) {
        return Some((OffboardSource::AccountDisabled, None));
    }
    u.employee_leave_date_time.flatten().map(|t| (OffboardSource::LeaveDatePassed, Some(ms(t))))
}

async fn offboard(svc: &Services, u: &DeltaUser, source: OffboardSource, at: Option<u64>) -> Result<bool, JobError> {
    let now = svc.now_ms();
    if grantline_store::person::count(&svc.queue, &u.id).await.map_err(store_error)? == 0 {
        return Ok(false);
    }
    let payload = Offboard {
        user_id: u.id.to_ascii_lowercase(),
        upn: u.user_principal_name.clone(),
        source,
        reason: String::new(),
        effective_ms: at,
    };
    let mut job = NewJob::new(JobKind::Offboard.as_str(), &payload)
        .map_err(|e| JobError::permanent("offboard.encode", e.to_string()))?
        .idempotency_key(format!(
            "offboard:directory:{}:{}:{}",
            payload.user_id,
            source.as_str(),
            at.map(|a| a.to_string()).unwrap_or_default()
        ));
    if let Some(at) = at.filter(|at| *at > now) {
        job = job.run_at(RunAt::After(Duration::from_millis(at - now)));
    }
    let pushed = svc.queue.push(job).await.map_err(redis_unavailable)?;
    Ok(matches!(pushed, grantline_queue::PushOutcome::Enqueued { .. }))
}

pub async fn run(job: SweepDirectory, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    // requests recorded before the person index existed are added to it first (once)
    grantline_store::person::ensure_backfilled(&svc.queue, svc.now_ms()).await.map_err(store_error)?;
    let ns = svc.queue.namespace();
    let (next_key, link_key) = (ns.key(directory::DELTA_NEXT), ns.key(directory::DELTA_LINK));
    let mut conn = svc.queue.connection();
    let in_progress: Option<String> = conn.get(&next_key).await.map_err(redis_unavailable)?;
    let stored: Option<String> = conn.get(&link_key).await.map_err(redis_unavailable)?;
    let mut link = in_progress.or(stored);
    let (mut pages, mut seen, mut enqueued, mut resynced) = (0usize, 0usize, 0usize, false);
    while pages < MAX_PAGES {
        let page = match svc.graph.users_delta(link.as_deref()).await {
            Ok(p) => p.value,
            Err(e) if e.is_sync_reset() && !resynced => {
                tracing::warn!(error = %e, "the delta token expired; restarting from a full sync");
                let _: () = redis::pipe()
                    .del(&next_key)
                    .del(&link_key)
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_unavailable)?;
                directory::count(&svc.queue, "delta_resyncs", 1).await.map_err(store_error)?;
                resynced = true;
                link = None;
                continue;
            }
            Err(e) => return Err(job_error(e)),
        };
        pages += 1;
        seen += page.users.len();
        for u in &page.users {
            if let Some((source, at)) = leaving(u)
                && offboard(&svc, u, source, at).await?
            {
                enqueued += 1;
            }
        }
        match (page.next_link, page.delta_link) {
            (Some(next), _) => {
                let _: () = conn.set(&next_key, &next).await.map_err(redis_unavailable)?;
                link = Some(next);
            }
            (None, Some(delta)) => {
                let _: () = redis::pipe()
                    .set(&link_key, &delta)
                    .del(&next_key)
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_unavailable)?;
                link = None;
                break;
            }
            (None, None) => break,
        }
    }
    directory::count(&svc.queue, "delta_pages", pages as i64).await.map_err(store_error)?;
    tracing::info!(
        period = job.period,
        pages,
        users = seen,
        offboardings = enqueued,
        resynced,
        more = link.is_some(),
        "directory swept"
    );
    Ok(Handoff::done())
}

// about a person (or the whole directory), not one request: the span names that instead
impl crate::runtime::JobSpan for SweepDirectory {
    fn job_span(&self) -> tracing::Span {
        tracing::info_span!(
            "sweep-directory",
            otel.kind = "consumer",
            period = self.period,
            attempt = tracing::field::Empty,
            job_id = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(enabled: Option<bool>, leave: Option<Option<&str>>, removed: Option<&str>) -> DeltaUser {
        DeltaUser {
            id: "u".into(),
            user_principal_name: None,
            account_enabled: enabled,
            employee_leave_date_time: leave.map(|l| l.map(|t| t.parse().unwrap())),
            removed: removed.map(str::to_owned),
        }
    }

    #[test]
    fn who_is_leaving() {
        assert_eq!(leaving(&user(Some(true), None, None)), None);
        assert_eq!(leaving(&user(Some(false), None, None)), Some((OffboardSource::AccountDisabled, None)));
        assert_eq!(leaving(&user(None, None, Some("changed"))), Some((OffboardSource::Deleted, None)));
        assert_eq!(leaving(&user(None, Some(None), None)), None, "a leave date cleared");
        let t = "2026-01-02T00:00:00Z";
        let at = ms(t.parse().unwrap());
        assert_eq!(leaving(&user(Some(true), Some(Some(t)), None)), Some((OffboardSource::LeaveDatePassed, Some(at))));
    }
}
