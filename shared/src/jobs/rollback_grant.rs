use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// Compensation: undo what this request changed, in reverse order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackGrant {
    pub request_id: String,
}

impl JobPayload for RollbackGrant {
    const KIND: JobKind = JobKind::RollbackGrant;
}
