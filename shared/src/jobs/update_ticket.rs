use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// Write the outcome back to the ticket (work notes and state). Idempotent: each update
/// carries the reason it was sent, and a repeated one is recognised by its marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateTicket {
    pub request_id: String,
    pub update: TicketUpdate,
}

/// Why the ticket is being updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketUpdate {
    /// Policy said no: note the reasons and close the ticket.
    Denied,
    /// Waiting for approvers: note who must decide.
    AwaitingApproval,
    /// An approver rejected: note who and close.
    Rejected,
    /// Nobody decided in time: note it, close the approval records and the ticket.
    Expired,
    /// A stage went to its fallback approvers (time ran out, or its approvers cannot act):
    /// note who decides now and why.
    Escalated,
    /// The ticket was closed or withdrawn (or an operator cancelled): note it; the ticket's
    /// state is left as the ticket system has it.
    Cancelled,
    /// Deferred to a change window: note when.
    Deferred,
    /// The grant was made and verified: note what, to whom, by whom, until when; close.
    Granted,
    /// The time-bound grant was removed.
    Removed,
    /// Something failed for good: manual intervention.
    ManualIntervention,
    /// An operator asked for a later end: note it and who decides.
    ExtensionRequested,
    /// The extension was approved: note the new end.
    Extended,
    /// The extension was not approved: note that the original end stands.
    ExtensionRefused,
}

impl TicketUpdate {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketUpdate::Denied => "denied",
            TicketUpdate::AwaitingApproval => "awaiting_approval",
            TicketUpdate::Rejected => "rejected",
            TicketUpdate::Expired => "expired",
            TicketUpdate::Escalated => "escalated",
            TicketUpdate::Cancelled => "cancelled",
            TicketUpdate::Deferred => "deferred",
            TicketUpdate::Granted => "granted",
            TicketUpdate::Removed => "removed",
            TicketUpdate::ManualIntervention => "manual_intervention",
            TicketUpdate::ExtensionRequested => "extension_requested",
            TicketUpdate::Extended => "extended",
            TicketUpdate::ExtensionRefused => "extension_refused",
        }
    }
}

impl JobPayload for UpdateTicket {
    const KIND: JobKind = JobKind::UpdateTicket;
}
