use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// Park a durable delayed removal for a time-bound grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRemoval {
    pub request_id: String,
}

impl JobPayload for ScheduleRemoval {
    const KIND: JobKind = JobKind::ScheduleRemoval;
}
