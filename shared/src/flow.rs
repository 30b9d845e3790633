//! The chain as a pure function: what a step's outcome makes of the request's state and
//! which jobs follow, and in which states each step may run. Workers, the HTTP edge and the
//! scheduler call it; nothing else decides the order of steps, the states a step starts from or
//! when a delayed step runs. The diagram in ARCHITECTURE.md is this table.

use crate::JobKind;
use crate::jobs::{NotifyWhat, RemovalTrigger, TicketUpdate};
use crate::request::RequestState;

/// The outcome of a step (or of a decision arriving at the HTTP edge, or of the scheduler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Ingest stored a new request.
    Received,
    /// validate: every check passed and policy allows it.
    Allowed,
    /// validate: policy or a hard rule said no.
    Denied,
    /// validate, execute-grant or a decision found the ticket closed or withdrawn, or an
    /// operator cancelled the request: nothing is (or will be) granted.
    Cancelled,
    /// request-approval: a policy rule approved it.
    AutoApproved,
    /// request-approval: approvers were asked.
    ApprovalRequested,
    /// decision: a stage was approved and more stages remain; `next` is asked now.
    StageApproved { next: usize },
    /// decision: the last stage was approved.
    Approved,
    /// decision: an approver rejected.
    Rejected,
    /// approval-deadline: nobody decided in time.
    ApprovalExpired,
    /// approval-deadline (time ran out) or notify (its approvers cannot act): the stage went
    /// to its fallback, who is asked now.
    Escalated { stage: usize },
    /// approval-deadline: a reminder time of the stage came.
    Reminded { stage: usize },
    /// decision: an approval counted, and the stage needs more (an all-of or N-of-M quorum).
    ApprovalCounted,
    /// A decision was refused (not an approver, self-approval, a stale card, ...): only
    /// recorded.
    DecisionRefused,
    /// execute-grant: outside the change window; runs again at its opening.
    Deferred { until_ms: u64 },
    /// execute-grant: done and verified by reading it back.
    Granted,
    /// update-ticket finished the given update; `time_bound` says whether a removal follows.
    TicketUpdated { update: TicketUpdate, time_bound: bool },
    /// schedule-removal parked the delayed removal for the grant's end.
    RemovalScheduled { at_ms: u64 },
    /// remove-access removed (or found nothing of ours to remove).
    Removed,
    /// A step failed for good; `changed_something` says whether there is anything to undo.
    Failed { changed_something: bool },
    /// rollback-grant undid what the request changed.
    RolledBack,
    /// rollback-grant failed for good: what the request changed may still be in place. The
    /// request stays `compensating` (so the rollback's dead letter can be redriven once the
    /// cause is fixed) and the ticket is told to intervene by hand.
    CompensationFailed,
    /// An operator asked for a later end of an active grant: back to approval for it (the
    /// access stays until a decision).
    ExtensionRequested,
    /// The extension was approved: the removal moves to `until_ms`.
    Extended { until_ms: u64 },
    /// The extension was rejected or not decided in time: the original end, `end_ms`, stands.
    ExtensionRefused { end_ms: u64 },
}

/// A job the outcome calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Validate,
    RequestApproval,
    /// execute-grant, now or (deferred to a change window) at `at_ms`.
    ExecuteGrant {
        at_ms: Option<u64>,
    },
    UpdateTicket(TicketUpdate),
    ScheduleRemoval,
    /// remove-access, now or at the grant's end.
    RemoveAccess {
        trigger: RemovalTrigger,
        at_ms: Option<u64>,
    },
    RollbackGrant,
    Notify(NotifyWhat),
    SyncApprovals,
    /// approval-deadline for the due time `due_ms`, when it comes.
    ApprovalDeadline {
        due_ms: u64,
    },
}

impl Next {
    /// The kind of job this is.
    pub fn kind(self) -> JobKind {
        match self {
            Next::Validate => JobKind::Validate,
            Next::RequestApproval => JobKind::RequestApproval,
            Next::ExecuteGrant { .. } => JobKind::ExecuteGrant,
            Next::UpdateTicket(_) => JobKind::UpdateTicket,
            Next::ScheduleRemoval => JobKind::ScheduleRemoval,
            Next::RemoveAccess { .. } => JobKind::RemoveAccess,
            Next::RollbackGrant => JobKind::RollbackGrant,
            Next::Notify(_) => JobKind::Notify,
            Next::SyncApprovals => JobKind::SyncApprovals,
            Next::ApprovalDeadline { .. } => JobKind::ApprovalDeadline,
        }
    }

    /// When it is due (ms since the epoch on the caller's clock), if not now.
    pub fn due_ms(self) -> Option<u64> {
        match self {
            Next::ExecuteGrant { at_ms } | Next::RemoveAccess { at_ms, .. } => at_ms,
            Next::ApprovalDeadline { due_ms } => Some(due_ms),
            _ => None,
        }
    }
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
        Outcome::Cancelled => {
            t(Some(S::Cancelled), &[UpdateTicket(TicketUpdate::Cancelled), Notify(NotifyWhat::Update)])
        }
        Outcome::AutoApproved => t(Some(S::Approved), &[ExecuteGrant { at_ms: None }]),
        Outcome::Approved => t(Some(S::Approved), &[ExecuteGrant { at_ms: None }, Notify(NotifyWhat::Update)]),
        Outcome::ApprovalRequested => t(
            Some(S::AwaitingApproval),
            &[UpdateTicket(TicketUpdate::AwaitingApproval), Notify(NotifyWhat::Ask { stage: 0 })],
        ),
        Outcome::StageApproved { next } => {
            t(None, &[Notify(NotifyWhat::Update), Notify(NotifyWhat::Ask { stage: next })])
        }
        Outcome::Rejected => t(Some(S::Rejected), &[UpdateTicket(TicketUpdate::Rejected), Notify(NotifyWhat::Update)]),
        Outcome::ApprovalExpired => {
            t(Some(S::Expired), &[UpdateTicket(TicketUpdate::Expired), Notify(NotifyWhat::Update)])
        }
        Outcome::Escalated { stage } => {
            t(None, &[UpdateTicket(TicketUpdate::Escalated), Notify(NotifyWhat::Ask { stage })])
        }
        Outcome::Reminded { stage } => t(None, &[Notify(NotifyWhat::Remind { stage })]),
        Outcome::ApprovalCounted | Outcome::DecisionRefused => t(None, &[]),
        Outcome::Deferred { until_ms } => {
            t(Some(S::Deferred), &[UpdateTicket(TicketUpdate::Deferred), ExecuteGrant { at_ms: Some(until_ms) }])
        }
        Outcome::Granted => t(Some(S::Granted), &[UpdateTicket(TicketUpdate::Granted)]),
        Outcome::TicketUpdated { update: TicketUpdate::Granted, time_bound: true } => {
            t(Some(S::TicketUpdated), &[ScheduleRemoval])
        }
        Outcome::TicketUpdated { update: TicketUpdate::Granted, time_bound: false } => t(Some(S::Completed), &[]),
        Outcome::TicketUpdated { .. } => t(None, &[]),
        Outcome::RemovalScheduled { at_ms } => {
            t(Some(S::Active), &[RemoveAccess { trigger: RemovalTrigger::Expiry, at_ms: Some(at_ms) }])
        }
        Outcome::Removed => t(Some(S::Removed), &[UpdateTicket(TicketUpdate::Removed)]),
        Outcome::Failed { changed_something: true } => t(Some(S::Compensating), &[RollbackGrant]),
        Outcome::Failed { changed_something: false } => {
            t(Some(S::Failed), &[UpdateTicket(TicketUpdate::ManualIntervention)])
        }
        Outcome::RolledBack => t(Some(S::RolledBack), &[UpdateTicket(TicketUpdate::ManualIntervention)]),
        Outcome::CompensationFailed => t(None, &[UpdateTicket(TicketUpdate::ManualIntervention)]),
        Outcome::ExtensionRequested => t(
            Some(S::AwaitingApproval),
            &[UpdateTicket(TicketUpdate::ExtensionRequested), Notify(NotifyWhat::Ask { stage: 0 })],
        ),
        Outcome::Extended { until_ms } => t(
            Some(S::Active),
            &[
                RemoveAccess { trigger: RemovalTrigger::Expiry, at_ms: Some(until_ms) },
                UpdateTicket(TicketUpdate::Extended),
                Notify(NotifyWhat::Update),
            ],
        ),
        Outcome::ExtensionRefused { end_ms } => t(
            Some(S::Active),
            &[
                RemoveAccess { trigger: RemovalTrigger::Expiry, at_ms: Some(end_ms) },
                UpdateTicket(TicketUpdate::ExtensionRefused),
                Notify(NotifyWhat::Update),
            ],
        ),
    }
}

/// The states a step may start from; in any other state the step has already run (or can no
/// longer run) and its job is acknowledged without doing anything. Empty: any state.
pub fn entry_states(kind: JobKind) -> &'static [RequestState] {
    use RequestState as S;
    match kind {
        JobKind::Validate => &[S::Received],
        JobKind::RequestApproval => &[S::Validating],
        JobKind::ExecuteGrant => &[S::Approved, S::Deferred],
        JobKind::ScheduleRemoval => &[S::TicketUpdated],
        // a permanent grant is revoked from `completed` (offboarding, an operator)
        JobKind::RemoveAccess => &[S::Active, S::Completed],
        JobKind::RollbackGrant => &[S::Compensating],
        JobKind::SyncApprovals | JobKind::ApprovalDeadline => &[S::AwaitingApproval],
        JobKind::UpdateTicket | JobKind::Alert | JobKind::Notify | JobKind::ResolveAlert => &[],
        // about a person or the whole directory, not one request
        JobKind::Offboard | JobKind::SweepDirectory | JobKind::Reconcile => &[],
    }
}

/// Whether a step of `kind` may run on a request in `state`.
pub fn may_run(kind: JobKind, state: RequestState) -> bool {
    let states = entry_states(kind);
    states.is_empty() || states.contains(&state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Next::*;
    use RequestState as S;

    #[test]
    fn the_chain_table() {
        let expiry = RemoveAccess { trigger: RemovalTrigger::Expiry, at_ms: Some(9) };
        let cases: Vec<(Outcome, Option<S>, Vec<Next>)> = vec![
            (Outcome::Received, Some(S::Received), vec![Validate]),
            (Outcome::Allowed, Some(S::Validating), vec![RequestApproval]),
            (Outcome::Denied, Some(S::Denied), vec![UpdateTicket(TicketUpdate::Denied)]),
            (
                Outcome::Cancelled,
                Some(S::Cancelled),
                vec![UpdateTicket(TicketUpdate::Cancelled), Notify(NotifyWhat::Update)],
            ),
            (Outcome::AutoApproved, Some(S::Approved), vec![ExecuteGrant { at_ms: None }]),
            (
                Outcome::ApprovalRequested,
                Some(S::AwaitingApproval),
                vec![UpdateTicket(TicketUpdate::AwaitingApproval), Notify(NotifyWhat::Ask { stage: 0 })],
            ),
            (
                Outcome::StageApproved { next: 1 },
                None,
                vec![Notify(NotifyWhat::Update), Notify(NotifyWhat::Ask { stage: 1 })],
            ),
            (Outcome::Approved, Some(S::Approved), vec![ExecuteGrant { at_ms: None }, Notify(NotifyWhat::Update)]),
            (
                Outcome::Rejected,
                Some(S::Rejected),
                vec![UpdateTicket(TicketUpdate::Rejected), Notify(NotifyWhat::Update)],
            ),
            (
                Outcome::ApprovalExpired,
                Some(S::Expired),
                vec![UpdateTicket(TicketUpdate::Expired), Notify(NotifyWhat::Update)],
            ),
            (
                Outcome::Escalated { stage: 0 },
                None,
                vec![UpdateTicket(TicketUpdate::Escalated), Notify(NotifyWhat::Ask { stage: 0 })],
            ),
            (Outcome::Reminded { stage: 0 }, None, vec![Notify(NotifyWhat::Remind { stage: 0 })]),
            (Outcome::ApprovalCounted, None, vec![]),
            (Outcome::DecisionRefused, None, vec![]),
            (
                Outcome::Deferred { until_ms: 7 },
                Some(S::Deferred),
                vec![UpdateTicket(TicketUpdate::Deferred), ExecuteGrant { at_ms: Some(7) }],
            ),
            (Outcome::Granted, Some(S::Granted), vec![UpdateTicket(TicketUpdate::Granted)]),
            (
                Outcome::TicketUpdated { update: TicketUpdate::Granted, time_bound: true },
                Some(S::TicketUpdated),
                vec![ScheduleRemoval],
            ),
            (Outcome::TicketUpdated { update: TicketUpdate::Granted, time_bound: false }, Some(S::Completed), vec![]),
            (Outcome::TicketUpdated { update: TicketUpdate::Denied, time_bound: false }, None, vec![]),
            (Outcome::RemovalScheduled { at_ms: 9 }, Some(S::Active), vec![expiry]),
            (Outcome::Removed, Some(S::Removed), vec![UpdateTicket(TicketUpdate::Removed)]),
            (Outcome::Failed { changed_something: true }, Some(S::Compensating), vec![RollbackGrant]),
            (
                Outcome::Failed { changed_something: false },
                Some(S::Failed),
                vec![UpdateTicket(TicketUpdate::ManualIntervention)],
            ),
            (Outcome::RolledBack, Some(S::RolledBack), vec![UpdateTicket(TicketUpdate::ManualIntervention)]),
            (Outcome::CompensationFailed, None, vec![UpdateTicket(TicketUpdate::ManualIntervention)]),
            (
                Outcome::ExtensionRequested,
                Some(S::AwaitingApproval),
                vec![UpdateTicket(TicketUpdate::ExtensionRequested), Notify(NotifyWhat::Ask { stage: 0 })],
            ),
            (
                Outcome::Extended { until_ms: 9 },
                Some(S::Active),
                vec![expiry, UpdateTicket(TicketUpdate::Extended), Notify(NotifyWhat::Update)],
            ),
            (
                Outcome::ExtensionRefused { end_ms: 9 },
                Some(S::Active),
                vec![expiry, UpdateTicket(TicketUpdate::ExtensionRefused), Notify(NotifyWhat::Update)],
            ),
        ];
        for (outcome, state, jobs) in cases {
            assert_eq!(next(outcome), Transition { state, next: jobs }, "{outcome:?}");
        }
        assert_eq!(expiry.due_ms(), Some(9));
        assert_eq!(expiry.kind(), JobKind::RemoveAccess);
    }

    #[test]
    fn terminal_states_call_for_nothing_but_a_ticket_note() {
        for o in [Outcome::Denied, Outcome::Rejected, Outcome::Removed, Outcome::RolledBack, Outcome::Cancelled] {
            let tr = next(o);
            assert!(tr.state.is_some_and(|s| s.is_terminal()), "{o:?}");
            assert!(tr.next.iter().all(|n| matches!(n, Next::UpdateTicket(_) | Next::Notify(_))), "{o:?}");
        }
    }

    #[test]
    fn each_step_starts_only_from_the_states_that_lead_to_it() {
        // every job an outcome enqueues can run in the state that outcome sets
        let outcomes = [
            Outcome::Received,
            Outcome::Allowed,
            Outcome::AutoApproved,
            Outcome::Deferred { until_ms: 1 },
            Outcome::Granted,
            Outcome::TicketUpdated { update: TicketUpdate::Granted, time_bound: true },
            Outcome::RemovalScheduled { at_ms: 1 },
            Outcome::Failed { changed_something: true },
            Outcome::ApprovalRequested,
            Outcome::Escalated { stage: 0 },
            Outcome::ExtensionRequested,
            Outcome::Extended { until_ms: 1 },
            Outcome::ExtensionRefused { end_ms: 1 },
        ];
        for o in outcomes {
            let tr = next(o);
            let state = tr.state.unwrap_or(S::Received);
            for n in tr.next {
                assert!(may_run(n.kind(), state), "{:?} cannot start in {state} after {o:?}", n.kind());
            }
        }
        assert!(!may_run(JobKind::ExecuteGrant, S::AwaitingApproval), "nothing is granted before approval");
        assert!(!may_run(JobKind::ExecuteGrant, S::Granted), "a grant runs once");
        assert!(may_run(JobKind::UpdateTicket, S::Removed));
    }
}
