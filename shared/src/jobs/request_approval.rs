use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// Apply the approval plan: auto-approve, or ask the approvers and finish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestApproval {
    pub request_id: String,
}

impl JobPayload for RequestApproval {
    const KIND: JobKind = JobKind::RequestApproval;
}
