use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// Make the change in the directory and verify it by reading it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteGrant {
    pub request_id: String,
}

impl JobPayload for ExecuteGrant {
    const KIND: JobKind = JobKind::ExecuteGrant;
}
