//! One file per step: the handler, next to its payload's file name in shared/src/jobs.

pub mod alert;
pub mod execute_grant;
pub mod remove_access;
pub mod request_approval;
pub mod rollback_grant;
pub mod schedule_removal;
pub mod update_ticket;
pub mod validate;

use grantline_queue::JobError;
use grantline_shared::{ErrorClass, StepError};

/// A classified connector failure as the queue's retry input.
pub fn job_error(e: impl Into<StepError>) -> JobError {
    let e: StepError = e.into();
    match e.class {
        ErrorClass::Transient { retry_after } => JobError::Transient { code: e.code, message: e.message, retry_after },
        ErrorClass::Throttled { retry_after } => JobError::Throttled { code: e.code, message: e.message, retry_after },
        ErrorClass::Permanent => JobError::Permanent { code: e.code, message: e.message },
    }
}

/// Redis could not be reached: the step runs again later.
pub fn redis_unavailable(e: impl std::fmt::Display) -> JobError {
    JobError::transient("redis.unavailable", e.to_string())
}

/// The step already ran (its state moved on): acknowledging again is success.
pub fn already_done(
    step: &str,
    request_id: &str,
    state: grantline_shared::request::RequestState,
) -> grantline_queue::Handoff {
    tracing::info!(step, request_id, %state, "step already applied; acknowledging");
    grantline_queue::Handoff::done()
}
