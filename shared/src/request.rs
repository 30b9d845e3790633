//! The request record: the single source of state of one access request, a Redis hash
//! under `req:{id}` (relative to the queue namespace), with its audit stream beside it.

use serde::{Deserialize, Serialize};

/// Lifecycle states (DESIGN.md section 1). Stored as their snake_case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Received,
    Validating,
    Denied,
    AwaitingApproval,
    Rejected,
    Expired,
    Approved,
    Deferred,
    Granting,
    Granted,
    TicketUpdated,
    Active,
    Removed,
    Completed,
    Failed,
    Compensating,
    RolledBack,
    /// The ticket was closed, cancelled or withdrawn before anything was granted, or an operator
    /// cancelled the request.
    Cancelled,
}

impl RequestState {
    pub const ALL: [RequestState; 18] = [
        RequestState::Received,
        RequestState::Validating,
        RequestState::Denied,
        RequestState::AwaitingApproval,
        RequestState::Rejected,
        RequestState::Expired,
        RequestState::Approved,
        RequestState::Deferred,
        RequestState::Granting,
        RequestState::Granted,
        RequestState::TicketUpdated,
        RequestState::Active,
        RequestState::Removed,
        RequestState::Completed,
        RequestState::Failed,
        RequestState::Compensating,
        RequestState::RolledBack,
        RequestState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Received => "received",
            RequestState::Validating => "validating",
            RequestState::Denied => "denied",
            RequestState::AwaitingApproval => "awaiting_approval",
            RequestState::Rejected => "rejected",
            RequestState::Expired => "expired",
            RequestState::Approved => "approved",
            RequestState::Deferred => "deferred",
            RequestState::Granting => "granting",
            RequestState::Granted => "granted",
            RequestState::TicketUpdated => "ticket_updated",
            RequestState::Active => "active",
            RequestState::Removed => "removed",
            RequestState::Completed => "completed",
            RequestState::Failed => "failed",
            RequestState::Compensating => "compensating",
            RequestState::RolledBack => "rolled_back",
            RequestState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// No further step will run on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RequestState::Denied
                | RequestState::Rejected
                | RequestState::Expired
                | RequestState::Removed
                | RequestState::Completed
                | RequestState::RolledBack
                | RequestState::Cancelled
        )
    }
}

impl std::fmt::Display for RequestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request came from: the ticket is the source of record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRef {
    /// "servicenow"
    pub system: String,
    pub table: String,
    pub sys_id: String,
    pub number: String,
}

impl TicketRef {
    /// The idempotency key of "the same ticket": one request per (system, sys_id). The number a
    /// doorbell names is not trusted (validate checks it against the ticket read back), so it
    /// cannot decide which ticket a delivery is about.
    pub fn idempotency_key(&self) -> String {
        keys::ticket_id(&self.system, &self.sys_id)
    }
}

/// Whether `s` has the exact form of a request id: 32 lowercase hexadecimal characters (a
/// version-7 UUID without hyphens, as ingest creates them). Anything else (`..`, a `:` that
/// would reach another key) is refused before it is used in a key or a path.
pub fn is_request_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Relative key names (the queue's namespace prefixes them with its hash tag).
pub mod keys {
    pub fn request(id: &str) -> String {
        format!("req:{id}")
    }
    pub fn audit(id: &str) -> String {
        format!("req:{id}:audit")
    }
    /// (system, sys_id) -> request id: the idempotency key of a ticket.
    pub fn ticket_id(system: &str, sys_id: &str) -> String {
        format!("ticket-id:{system}:{}", sys_id.to_ascii_lowercase())
    }
    /// ticket number -> request id, for `audit show <ticket>` and status lookups.
    pub fn ticket(system: &str, number: &str) -> String {
        format!("ticket:{system}:{number}")
    }
    /// ZSET of request ids scored by creation time (ms), for listings.
    pub const REQUESTS: &str = "requests";
    /// ZSET of the request ids in one state, scored by creation time (ms): kept by every
    /// commit that changes a request's state, for listings by state.
    pub fn by_state(state: super::RequestState) -> String {
        format!("requests:state:{}", state.as_str())
    }
    /// ZSET of finished requests (a state that holds nothing and will grant nothing: denied,
    /// rejected, expired, removed, rolled back, cancelled), scored by when they got there (ms):
    /// kept by the same commit that moves them, read by retention.
    pub const FINISHED: &str = "requests:finished";
    /// ZSET of finished requests whose record retention already compacted, scored as in
    /// [`FINISHED`]: their audit trail waits for its own retention.
    pub const COMPACTED: &str = "requests:compacted";
    /// HASH of the policy in force in the workers: version, loaded_ms, reload_failures,
    /// last_error (written by the workers' reload, read by the edge's /metrics).
    pub const POLICY_STATUS: &str = "policy:status";
    /// ZSET of active time-bound grants (request ids) scored by expiry (ms): the safety net.
    pub const EXPIRING: &str = "grants:expiring";
    /// HASH of requests whose removal failed for good: request id -> a
    /// [`FailedRemoval`](crate::jobs::FailedRemoval) (the trigger and the dead letters paged
    /// about). Written by the alert of a `remove-access` dead letter, read by the scheduler's
    /// sweep (which tries the removal again once per period), cleared by the removal that
    /// finally succeeds.
    pub const FAILED_REMOVALS: &str = "removals:failed";
    /// ZSET of requests awaiting approval, scored by the next reminder or deadline (ms).
    pub const APPROVALS_DUE: &str = "approvals:due";
    /// STREAM of answers refused at a door before anyone was identified (a forged Teams token,
    /// a bad Slack signature, a tampered or reused signed link): the security log of the doors.
    pub const DOOR_REFUSALS: &str = "audit:doors";
}

/// Field names of the request hash (declared with the typed record).
pub use crate::record::fields;

#[cfg(test)]
mod request_id_tests {
    #[test]
    fn request_ids_have_one_exact_form() {
        assert!(super::is_request_id("01a23c12d86173c9a9021038b5c83fcd"));
        for bad in ["", ".", "..", "01a23c12d86173c9a9021038b5c83fcd:audit", "01A23C12D86173C9A9021038B5C83FCD", "x|y"]
        {
            assert!(!super::is_request_id(bad), "{bad:?}");
        }
    }
}
