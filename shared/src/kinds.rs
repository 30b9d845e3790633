//! Job kinds: stable strings, never renamed. Queue names derive from them, never from
//! Rust type names, so renaming a type can never silently move its queue.

use serde::{Deserialize, Serialize};

/// Every kind of job grantline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    Validate,
    RequestApproval,
    ExecuteGrant,
    UpdateTicket,
    ScheduleRemoval,
    RemoveAccess,
    RollbackGrant,
    Alert,
    /// Tell people about a request: ask a stage's approvers, remind them, bring every card,
    /// message and approval record up to date with a decision, tell the requester.
    Notify,
    /// Read a request's ServiceNow approval records and apply decisions taken there.
    SyncApprovals,
    /// A stage's reminder time or time to decide came: remind, escalate or expire.
    ApprovalDeadline,
    /// A dead letter was redriven or discarded: resolve the page its alert raised.
    ResolveAlert,
    /// A person left (a leaver event, or the directory shows them disabled, deleted or past
    /// their leave date): remove their grants now, cancel their pending requests.
    Offboard,
    /// Read the directory's users delta and offboard those who left.
    SweepDirectory,
    /// Compare active grants and governed groups with the directory (drift).
    Reconcile,
}

impl JobKind {
    pub const ALL: [JobKind; 15] = [
        JobKind::Validate,
        JobKind::RequestApproval,
        JobKind::ExecuteGrant,
        JobKind::UpdateTicket,
        JobKind::ScheduleRemoval,
        JobKind::RemoveAccess,
        JobKind::RollbackGrant,
        JobKind::Alert,
        JobKind::Notify,
        JobKind::SyncApprovals,
        JobKind::ApprovalDeadline,
        JobKind::ResolveAlert,
        JobKind::Offboard,
        JobKind::SweepDirectory,
        JobKind::Reconcile,
    ];

    /// The stable wire name, also the queue name.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobKind::Validate => "validate",
            JobKind::RequestApproval => "request-approval",
            JobKind::ExecuteGrant => "execute-grant",
            JobKind::UpdateTicket => "update-ticket",
            JobKind::ScheduleRemoval => "schedule-removal",
            JobKind::RemoveAccess => "remove-access",
            JobKind::RollbackGrant => "rollback-grant",
            JobKind::Alert => "alert",
            JobKind::Notify => "notify",
            JobKind::SyncApprovals => "sync-approvals",
            JobKind::ApprovalDeadline => "approval-deadline",
            JobKind::ResolveAlert => "resolve-alert",
            JobKind::Offboard => "offboard",
            JobKind::SweepDirectory => "sweep-directory",
            JobKind::Reconcile => "reconcile",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_stable_strings() {
        let names: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "validate",
                "request-approval",
                "execute-grant",
                "update-ticket",
                "schedule-removal",
                "remove-access",
                "rollback-grant",
                "alert",
                "notify",
                "sync-approvals",
                "approval-deadline",
                "resolve-alert",
                "offboard",
                "sweep-directory",
                "reconcile"
            ]
        );
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
    }
}
