//! Runs one apalis worker per job kind in a Monitor, with graceful shutdown on SIGTERM and
//! SIGINT: fetching stops, running jobs finish (up to the shutdown timeout), fetched but
//! unstarted jobs go back to the queue at once. Every attempt runs inside a span named
//! after its job kind, in the request's trace (see `tracing_layer.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::WorkerBuilderExt;
use apalis_core::monitor::Monitor;
use apalis_core::worker::builder::WorkerBuilder;
use grantline_queue::RedisBackend;
use grantline_shared::jobs::*;

use crate::services::Services;
use crate::steps;

#[path = "tracing_layer.rs"]
pub mod tracing_layer;
pub use tracing_layer::{JobSpan, JobSpanLayer};

#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Jobs run at once per kind.
    pub concurrency: usize,
    /// How long running jobs may take to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self { concurrency: 16, shutdown_timeout: Duration::from_secs(30) }
    }
}

macro_rules! register {
    ($monitor:expr, $svc:expr, $opts:expr, $payload:ty, $handler:path) => {{
        let svc = $svc.clone();
        let n = $opts.concurrency;
        $monitor.register(move |run| {
            let kind = <$payload as JobPayload>::KIND.as_str();
            WorkerBuilder::new(format!("{kind}-{}-{run}", svc.queue.worker_id()))
                .backend(RedisBackend::<$payload>::new(&svc.queue, kind).batch(n))
                .data(svc.clone())
                // outside catch_panic, so a panic is recorded as the attempt span's error
                .layer(JobSpanLayer)
                // also outside catch_panic: a panic counts as the attempt's outcome
                .layer(crate::job_metrics::JobMetricsLayer::new(kind))
                .catch_panic()
                .concurrency(n)
                .build($handler)
        })
    }};
}

/// Runs every step's worker until `shutdown` resolves.
pub async fn run_workers(
    svc: Arc<Services>,
    opts: WorkerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), apalis_core::monitor::MonitorError> {
    let m = Monitor::new();
    let m = register!(m, svc, opts, Validate, steps::validate::run);
    let m = register!(m, svc, opts, RequestApproval, steps::request_approval::run);
    let m = register!(m, svc, opts, ExecuteGrant, steps::execute_grant::run);
    let m = register!(m, svc, opts, UpdateTicket, steps::update_ticket::run);
    let m = register!(m, svc, opts, ScheduleRemoval, steps::schedule_removal::run);
    let m = register!(m, svc, opts, RemoveAccess, steps::remove_access::run);
    let m = register!(m, svc, opts, RollbackGrant, steps::rollback_grant::run);
    let m = register!(m, svc, opts, Alert, steps::alert::run);
    let m = register!(m, svc, opts, Notify, steps::notify::run);
    let m = register!(m, svc, opts, SyncApprovals, steps::sync_approvals::run);
    let m = register!(m, svc, opts, ApprovalDeadline, steps::approval_deadline::run);
    let m = register!(m, svc, opts, ResolveAlert, steps::resolve_alert::run);
    let m = register!(m, svc, opts, Offboard, steps::offboard::run);
    let m = register!(m, svc, opts, SweepDirectory, steps::sweep_directory::run);
    let m = register!(m, svc, opts, Reconcile, steps::reconcile::run);
    m.should_restart(|_ctx, _err| true)
        .shutdown_timeout(opts.shutdown_timeout)
        .run_with_signal(async move {
            shutdown.await;
            Ok(())
        })
        .await
}
