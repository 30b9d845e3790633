use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// A person left: every grant of theirs is removed now (ownership-aware, each ticket noted)
/// and every request of theirs not yet executed is cancelled. Several events about one person
/// make one offboarding: a request already handled is not handled again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offboard {
    /// The person's directory object id.
    pub user_id: String,
    /// Their UPN, when known (for people reading the logs and notes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    pub source: OffboardSource,
    /// Why, as the event or the directory said it (kept on every request's timeline).
    #[serde(default)]
    pub reason: String,
    /// When the departure takes effect (ms), when the event named a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_ms: Option<u64>,
}

/// What said the person left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffboardSource {
    /// A leaver event (`POST /v1/events/leaver`): trusted as it is, once authenticated.
    Leaver,
    /// The directory shows the account disabled.
    AccountDisabled,
    /// The directory's `employeeLeaveDateTime` passed.
    LeaveDatePassed,
    /// The directory deleted the user.
    Deleted,
}

impl OffboardSource {
    pub fn as_str(self) -> &'static str {
        match self {
            OffboardSource::Leaver => "leaver",
            OffboardSource::AccountDisabled => "account_disabled",
            OffboardSource::LeaveDatePassed => "leave_date_passed",
            OffboardSource::Deleted => "deleted",
        }
    }

    /// A directory source is read again before anything is done (the person may have been
    /// enabled again, or the leave date moved).
    pub fn from_directory(self) -> bool {
        self != OffboardSource::Leaver
    }
}

impl JobPayload for Offboard {
    const KIND: JobKind = JobKind::Offboard;
}
