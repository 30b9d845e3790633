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

/// A removal that failed for good and is not forgotten (`keys::FAILED_REMOVALS`): the
/// scheduler's sweep enqueues it again, with its trigger, once per period until it succeeds;
/// the removal that succeeds resolves the pages of these dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRemoval {
    pub trigger: RemovalTrigger,
    /// The `remove-access` dead letters (stream ids) of this request that were paged about.
    #[serde(default)]
    pub letters: Vec<String>,
    /// When the first of them was buried (ms).
    #[serde(default)]
    pub since_ms: u64,
}

impl JobPayload for RemoveAccess {
    const KIND: JobKind = JobKind::RemoveAccess;
}
