use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// Read the ticket back, resolve people and target, evaluate policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validate {
    pub request_id: String,
}

impl JobPayload for Validate {
    const KIND: JobKind = JobKind::Validate;
}
