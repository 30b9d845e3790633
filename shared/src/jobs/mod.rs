//! Job payloads, one file per step (the handler of each lives in the workers crate under
//! the same file name). Payloads carry ids, never copies of directory objects, and only
//! grow optional fields, so old and new workers coexist in a rolling deploy.

mod alert;
mod approval_deadline;
mod execute_grant;
mod notify;
mod offboard;
mod reconcile;
mod remove_access;
mod request_approval;
mod resolve_alert;
mod rollback_grant;
mod schedule_removal;
mod sweep_directory;
mod sync_approvals;
mod update_ticket;
mod validate;

pub use alert::Alert;
pub use approval_deadline::ApprovalDeadline;
pub use execute_grant::ExecuteGrant;
pub use notify::{Notify, NotifyWhat};
pub use offboard::{Offboard, OffboardSource};
pub use reconcile::Reconcile;
pub use remove_access::{FailedRemoval, RemovalTrigger, RemoveAccess};
pub use request_approval::RequestApproval;
pub use resolve_alert::{LetterClosed, ResolveAlert};
pub use rollback_grant::RollbackGrant;
pub use schedule_removal::ScheduleRemoval;
pub use sweep_directory::SweepDirectory;
pub use sync_approvals::SyncApprovals;
pub use update_ticket::{TicketUpdate, UpdateTicket};
pub use validate::Validate;

use crate::JobKind;

/// A job payload with its stable kind.
pub trait JobPayload: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    const KIND: JobKind;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_ignore_unknown_fields_so_newer_producers_do_not_break_older_workers() {
        let v: Validate = serde_json::from_str(r#"{"request_id":"r1","added_later":true}"#).unwrap();
        assert_eq!(v.request_id, "r1");
        assert_eq!(<Validate as JobPayload>::KIND.as_str(), "validate");
        assert_eq!(<RemoveAccess as JobPayload>::KIND.as_str(), "remove-access");
    }
}
