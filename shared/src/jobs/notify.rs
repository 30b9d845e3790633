use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// Tell people about a request, through every channel configured (ServiceNow approval records,
/// Teams, Slack, signed links). Idempotent: what was sent is recorded on the request and not
/// sent twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub request_id: String,
    pub what: NotifyWhat,
}

/// What to tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotifyWhat {
    /// Ask the approvers of this stage (0-based).
    Ask { stage: usize },
    /// Remind the approvers of this stage who have not answered.
    Remind { stage: usize },
    /// Bring every card, message and approval record up to date with the request (who decided,
    /// when; stale cards can no longer act), and tell the requester a final outcome.
    Update,
}

impl JobPayload for Notify {
    const KIND: JobKind = JobKind::Notify;
}
