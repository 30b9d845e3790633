//! The workers: one apalis worker per job kind, stateless, any number of processes. The
//! only code that changes an identity system or a ticket. Each step lives in
//! `steps/<step>.rs` beside its payload in `shared/src/jobs/<step>.rs`; every handler reads
//! the request record, does its idempotent work, and returns one hand-off that atomically
//! acknowledges the job, updates the record, appends its audit events and enqueues what
//! `shared::flow::next` says comes next.

pub mod batch;
pub mod budget;
pub mod channels;
pub mod executor;
pub mod job_metrics;
pub mod membership;
pub mod paging;
pub mod policy_reload;
pub mod record;
pub mod runtime;
pub mod services;
pub mod steps;

pub use runtime::{WorkerOptions, run_workers};
pub use services::{ExecutorSettings, PolicyHandle, Services};
