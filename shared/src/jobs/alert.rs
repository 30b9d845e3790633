use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// Page on-call about a dead letter. Enqueued by the queue itself, exactly once per
/// arrival, with this shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// The queue (job kind) of the dead job.
    pub queue: String,
    pub job_id: String,
    pub dead_letter_id: String,
}

impl JobPayload for Alert {
    const KIND: JobKind = JobKind::Alert;
}
