//! The chain as a pure function: what a step's outcome makes of the request's state and
//! which jobs follow. Workers and the HTTP edge call it; nothing else decides the order of
//! steps. The diagram in ARCHITECTURE.md is this table.

use crate::jobs::TicketUpdate;
use crate::request::RequestState;

/// The outcome of a step (or of a decision arriving at the HTTP edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Ingest stored a new request.
    Received,
    /// validate: every check passed and policy allows it.
    Allowed,
    /// validate: policy or a hard rule said no.
    Denied,
    /// request-approval: a policy rule approved it.
    AutoApproved,
    /// request-approval: approvers were asked.
    ApprovalRequested,
    /// decision: a stage was approved and more stages remain.
    StageApproved,
    /// decision: the last stage was approved.
    Approved,
    /// decision: an approver rejected.
    Rejected,
    /// scheduler: nobody decided in time.
    ApprovalExpired,
    /// execute-grant: outside the change window; runs again at its opening.
    Deferred,
    /// execute-grant: done and verified by reading it back.
    Granted,
    /// update-ticket finished the given update; `time_bound` says whether a removal follows.
    TicketUpdated { update: TicketUpdate, time_bound: bool },
    /// schedule-removal parked the delayed removal.
    RemovalScheduled,
    /// remove-access removed (or found nothing of ours to remove).
    Removed,
    /// A step failed for good; `changed_something` says whether there is anything to undo.
    Failed { changed_something: bool },
    /// rollback-grant undid what the request changed.
    RolledBack,
}

/// A job the outcome calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Validate,
    RequestApproval,
    ExecuteGrant,
    /// execute-grant again when the change window opens.
    ExecuteGrantAtWindow,
    UpdateTicket(TicketUpdate),
    ScheduleRemoval,
    /// remove-access at the grant's end.
    RemoveAccessAtExpiry,
    RollbackGrant,
}

/// The transition: the new state (None: unchanged) and the jobs that follow, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub state: Option<RequestState>,
    pub next: Vec<Next>,
}

fn t(state: Option<RequestState>, next: &[Next]) -> Transition {
    Transition { state, next: next.to_vec() }
}

pub fn next(outcome: Outcome) -> Transition {
    use Next::*;
    use RequestState as S;
    match outcome {
        Outcome::Received => t(Some(S::Received), &[Validate]),
        Outcome::Allowed => t(Some(S::Validating), &[RequestApproval]),
        Outcome::Denied => t(Some(S::Denied), &[UpdateTicket(TicketUpdate::Denied)]),
        Outcome::AutoApproved | Outcome::Approved => t(Some(S::Approved), &[ExecuteGrant]),
        Outcome::ApprovalRequested => t(Some(S::AwaitingApproval), &[UpdateTicket(TicketUpdate::AwaitingApproval)]),
        Outcome::StageApproved => t(None, &[]),
        Outcome::Rejected => t(Some(S::Rejected), &[UpdateTicket(TicketUpdate::Rejected)]),
        Outcome::ApprovalExpired => t(Some(S::Expired), &[UpdateTicket(TicketUpdate::Rejected)]),
        Outcome::Deferred => t(Some(S::Deferred), &[UpdateTicket(TicketUpdate::Deferred), ExecuteGrantAtWindow]),
        Outcome::Granted => t(Some(S::Granted), &[UpdateTicket(TicketUpdate::Granted)]),
        Outcome::TicketUpdated { update: TicketUpdate::Granted, time_bound: true } => {
            t(Some(S::TicketUpdated), &[ScheduleRemoval])
        }
        Outcome::TicketUpdated { update: TicketUpdate::Granted, time_bound: false } => t(Some(S::Completed), &[]),
        Outcome::TicketUpdated { .. } => t(None, &[]),
        Outcome::RemovalScheduled => t(Some(S::Active), &[RemoveAccessAtExpiry]),
        Outcome::Removed => t(Some(S::Removed), &[UpdateTicket(TicketUpdate::Removed)]),
        Outcome::Failed { changed_something: true } => t(Some(S::Compensating), &[RollbackGrant]),
        Outcome::Failed { changed_something: false } => {
            t(Some(S::Failed), &[UpdateTicket(TicketUpdate::ManualIntervention)])
        }
        Outcome::RolledBack => t(Some(S::RolledBack), &[UpdateTicket(TicketUpdate::ManualIntervention)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Next::*;
    use RequestState as S;

    #[test]
    fn the_chain_table() {
        let cases: Vec<(Outcome, Option<S>, Vec<Next>)> = vec![
            (Outcome::Received, Some(S::Received), vec![Validate]),
            (Outcome::Allowed, Some(S::Validating), vec![RequestApproval]),
            (Outcome::Denied, Some(S::Denied), vec![UpdateTicket(TicketUpdate::Denied)]),
            (Outcome::AutoApproved, Some(S::Approved), vec![ExecuteGrant]),
            (Outcome::ApprovalRequested, Some(S::AwaitingApproval), vec![UpdateTicket(TicketUpdate::AwaitingApproval)]),
            (Outcome::StageApproved, None, vec![]),
            (Outcome::Approved, Some(S::Approved), vec![ExecuteGrant]),
            (Outcome::Rejected, Some(S::Rejected), vec![UpdateTicket(TicketUpdate::Rejected)]),
            (Outcome::ApprovalExpired, Some(S::Expired), vec![UpdateTicket(TicketUpdate::Rejected)]),
            (Outcome::Deferred, Some(S::Deferred), vec![UpdateTicket(TicketUpdate::Deferred), ExecuteGrantAtWindow]),
            (Outcome::Granted, Some(S::Granted), vec![UpdateTicket(TicketUpdate::Granted)]),
            (
                Outcome::TicketUpdated { update: TicketUpdate::Granted, time_bound: true },
                Some(S::TicketUpdated),
                vec![ScheduleRemoval],
            ),
            (Outcome::TicketUpdated { update: TicketUpdate::Granted, time_bound: false }, Some(S::Completed), vec![]),
            (Outcome::TicketUpdated { update: TicketUpdate::Denied, time_bound: false }, None, vec![]),
            (Outcome::RemovalScheduled, Some(S::Active), vec![RemoveAccessAtExpiry]),
            (Outcome::Removed, Some(S::Removed), vec![UpdateTicket(TicketUpdate::Removed)]),
            (Outcome::Failed { changed_something: true }, Some(S::Compensating), vec![RollbackGrant]),
            (
                Outcome::Failed { changed_something: false },
                Some(S::Failed),
                vec![UpdateTicket(TicketUpdate::ManualIntervention)],
            ),
            (Outcome::RolledBack, Some(S::RolledBack), vec![UpdateTicket(TicketUpdate::ManualIntervention)]),
        ];
        for (outcome, state, jobs) in cases {
            assert_eq!(next(outcome), Transition { state, next: jobs }, "{outcome:?}");
        }
    }

    #[test]
    fn terminal_states_call_for_nothing_but_a_ticket_note() {
        for o in [Outcome::Denied, Outcome::Rejected, Outcome::Removed, Outcome::RolledBack] {
            let tr = next(o);
            assert!(tr.state.is_some_and(|s| s.is_terminal()), "{o:?}");
            assert!(tr.next.iter().all(|n| matches!(n, Next::UpdateTicket(_))), "{o:?}");
        }
    }
}
