//! The request record as a step sees it: read through the store, with the store's errors
//! classified for the queue (Redis unreachable is transient; a record that cannot be read is
//! permanent and names the field).

use grantline_queue::{Handoff, JobError};
use grantline_shared::JobKind;
use grantline_shared::record::RequestRecord;
use grantline_store::{Commit, Loaded, StoreError};

use crate::services::Services;

/// A store failure as the queue's retry input.
pub fn store_error(e: StoreError) -> JobError {
    if e.is_transient() {
        JobError::transient("redis.unavailable", e.to_string())
    } else {
        let code = match &e {
            StoreError::Record(grantline_shared::record::RecordError::NotFound { .. }) => "request.not_found",
            StoreError::Record(_) => "request.corrupt",
            _ => "request.encode",
        };
        JobError::permanent(code, e.to_string())
    }
}

/// Reads the record for a step of `kind`: `None` when the step has already run (its job is
/// acknowledged without doing anything).
pub async fn load(svc: &Services, kind: JobKind, id: &str) -> Result<Option<RequestRecord>, JobError> {
    match grantline_store::load_for(&svc.queue, kind, id).await.map_err(store_error)? {
        Loaded::Run(rec) => Ok(Some(rec)),
        Loaded::Skip(rec) => {
            tracing::info!(step = %kind, request_id = id, state = %rec.state, "step already applied; acknowledging");
            Ok(None)
        }
    }
}

/// A commit as this job's hand-off.
pub fn handoff(commit: Commit<'_>) -> Result<Handoff, JobError> {
    commit.into_handoff().map_err(store_error)
}

/// The step's commit on `rec` at the services' clock.
pub fn commit<'a>(svc: &Services, rec: &'a RequestRecord, kind: JobKind) -> Commit<'a> {
    Commit::step(rec, kind, svc.now_ms())
}
