use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// Remove what this request granted (only what grantline added, never a membership that
/// existed before), verify by reading back, and note the ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveAccess {
    pub request_id: String,
    pub trigger: RemovalTrigger,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalTrigger {
    /// The grant's end date arrived.
    Expiry,
    /// The person left or was disabled.
    Offboarding,
    /// An operator revoked it.
    Revoked,
}

impl RemovalTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalTrigger::Expiry => "expiry",
            RemovalTrigger::Offboarding => "offboarding",
            RemovalTrigger::Revoked => "revoked",
        }
    }
}

impl JobPayload for RemoveAccess {
    const KIND: JobKind = JobKind::RemoveAccess;
}
