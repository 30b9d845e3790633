use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// Read the request's ServiceNow approval records (`sysapproval_approver`) and apply the
/// decisions approvers took there: rung by ServiceNow's doorbell or by the scheduler's bounded
/// poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncApprovals {
    pub request_id: String,
}

impl JobPayload for SyncApprovals {
    const KIND: JobKind = JobKind::SyncApprovals;
}
