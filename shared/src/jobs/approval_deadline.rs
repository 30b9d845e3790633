use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// A point of a stage's time to decide came (a reminder, or the deadline): the handler looks at
/// the request's approval clock and reminds, escalates to the fallback or expires the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDeadline {
    pub request_id: String,
    /// The due time (ms, the scheduler's clock) that rang.
    pub due_ms: u64,
}

impl JobPayload for ApprovalDeadline {
    const KIND: JobKind = JobKind::ApprovalDeadline;
}
