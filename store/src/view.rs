//! One request as an operator looks at it: its state, the approvals with the identities the
//! doors proved, the receipts of grant and removal, the notes written to its ticket, a pending
//! extension, its trace id and the whole timeline from the audit trail with the chain checked.
//! The CLI (`grantline requests show`) and the operator API (`GET /v1/tickets/{number}/request`)
//! show the same view.

use grantline_queue::Queue;
use grantline_shared::audit::{self, AuditEvent, AuditRecord, GENESIS};
use grantline_shared::receipt::{Receipt, RemovalReceipt};
use grantline_shared::record::{ApprovalEntry, RequestRecord};
use grantline_shared::request::{RequestState, TicketRef};
use serde::Serialize;

use crate::StoreError;
use crate::lifecycle::Extension;

/// A note grantline wrote to the ticket, as the timeline recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketNote {
    pub update: String,
    /// The ticket state it set (empty: unchanged).
    pub state: String,
    pub at_ms: u64,
}

/// Whether the timeline's hash chain is intact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainCheck {
    pub records: usize,
    pub intact: bool,
    pub broken_at: Option<usize>,
    pub reason: Option<String>,
}

/// One request, as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestView {
    pub id: String,
    pub state: RequestState,
    pub ticket: TicketRef,
    pub trace_id: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The person the access is for (UPN), when validate read them.
    pub requester: Option<String>,
    pub requester_id: Option<String>,
    /// What was asked for, as the ticket named it.
    pub target: Option<String>,
    /// What was granted, for people.
    pub access: Option<String>,
    pub reason: Option<String>,
    /// When the access ends (ms), when time-bound.
    pub end_ms: Option<u64>,
    /// When retention compacted the finished record (ms): the facts it dropped are in the
    /// timeline.
    pub compacted_ms: Option<u64>,
    pub approvals: Vec<ApprovalEntry>,
    pub grant: Option<Receipt>,
    pub removal: Option<RemovalReceipt>,
    pub ticket_notes: Vec<TicketNote>,
    /// An extension waiting for approval.
    pub extension: Option<Extension>,
    /// Every audit record, oldest first.
    pub timeline: Vec<AuditRecord>,
    pub audit: ChainCheck,
}

/// The view of a request, or `None` when there is none.
pub async fn view(queue: &Queue, id: &str) -> Result<Option<RequestView>, StoreError> {
    let Some(rec) = crate::find(queue, id).await? else { return Ok(None) };
    Ok(Some(of(queue, rec).await?))
}

/// The view of a request found by its ticket number, or `None`.
pub async fn by_ticket(queue: &Queue, number: &str) -> Result<Option<RequestView>, StoreError> {
    match crate::index::by_ticket(queue, number).await? {
        Some(id) => view(queue, &id).await,
        None => Ok(None),
    }
}

async fn of(queue: &Queue, rec: RequestRecord) -> Result<RequestView, StoreError> {
    let entries = crate::trail::entries(queue, &rec.id).await?;
    let triples: Vec<_> = entries.iter().map(|e| e.triple()).collect();
    let head = if rec.audit_head.is_empty() { GENESIS } else { rec.audit_head.as_str() };
    let check = audit::verify(&triples, head);
    let timeline: Vec<AuditRecord> = entries.iter().filter_map(|e| e.parse().ok()).collect();
    let ticket_notes = timeline
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::TicketUpdated { update, state } => {
                Some(TicketNote { update: update.clone(), state: state.clone(), at_ms: r.at_ms })
            }
            _ => None,
        })
        .collect();
    let extension = crate::lifecycle::pending_extension(queue, &rec).await?;
    Ok(RequestView {
        requester: rec.requester.as_ref().map(|r| r.upn.clone()),
        requester_id: rec.requester.as_ref().map(|r| r.id.clone()),
        access: rec.grant.as_ref().map(Receipt::describe),
        audit: ChainCheck {
            records: check.records,
            intact: check.broken_at.is_none(),
            broken_at: check.broken_at,
            reason: check.reason,
        },
        id: rec.id,
        state: rec.state,
        ticket: rec.ticket,
        trace_id: rec.trace_id,
        created_ms: rec.created_ms,
        updated_ms: rec.updated_ms,
        target: rec.target,
        reason: rec.reason,
        end_ms: rec.end_ms,
        compacted_ms: rec.compacted_ms,
        approvals: rec.approvals,
        grant: rec.grant,
        removal: rec.removal,
        ticket_notes,
        extension,
        timeline,
    })
}
