//! Audit events: one typed struct per fact, appended to the request's stream, each record
//! hash-chained to the one before it so that `grantline audit verify` detects any edit or
//! deletion. Records carry the trace id that joins them to the request's trace.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The facts grantline records. Adding variants is fine; renaming is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditEvent {
    RequestReceived {
        system: String,
        ticket: String,
        sys_id: String,
    },
    TicketRead {
        ticket: String,
        catalog_item: String,
        requested_for: String,
        opened_by: String,
        /// The business justification the requester gave, as the ticket has it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        justification: Option<String>,
    },
    CheckEvaluated {
        code: String,
        passed: bool,
        reason: String,
    },
    DecisionMade {
        allow: bool,
        policy_version: String,
        target: String,
        level: String,
        reason: String,
    },
    ApprovalRequested {
        approvers: Vec<String>,
        reason: String,
    },
    ApprovalRecorded {
        approver: String,
        approve: bool,
        comment: String,
    },
    SelfApprovalRefused {
        approver: String,
    },
    /// An answer that did not count (not an approver, self-approval, expired, wrong stage, a bad
    /// signature), with the identity it claimed and the door it came through.
    ApprovalRefused {
        approver: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approver_id: Option<String>,
        door: String,
        reason: String,
    },
    /// The approvers of a stage were asked, through these channels (`teams:<upn>`,
    /// `servicenow:<upn>`, ...); `failed` names the sends that did not go out.
    ApproversNotified {
        stage: usize,
        sent: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed: Vec<String>,
    },
    /// An approver was passed over for this stage (out of office) and the stage went to `to`.
    ApproverSkipped {
        stage: usize,
        approver: String,
        reason: String,
        to: String,
    },
    /// Those who had not answered were reminded, at this point of the time to decide.
    ApprovalReminded {
        stage: usize,
        percent: u8,
        to: Vec<String>,
    },
    /// The time to decide ran out and the stage went to its fallback.
    ApprovalEscalated {
        stage: usize,
        to: String,
        reason: String,
    },
    /// The time to decide ran out and nobody else could decide: the request expired.
    ApprovalExpired {
        stage: usize,
        reason: String,
    },
    GrantExecuted {
        group_id: String,
        user_id: String,
        before_member: bool,
        after_member: bool,
        pre_existing: bool,
        /// Graph's `request-id` of the membership write (named apart from the record's own
        /// `request_id`, which the event is flattened next to).
        graph_request_id: Option<String>,
        client_request_id: String,
    },
    /// A mailbox permission was granted (or found already there) and verified.
    PermissionGranted {
        mailbox: String,
        level: String,
        user_id: String,
        before_present: bool,
        pre_existing: bool,
        /// Exchange's `request-id` of the write (or of the read that showed the permission).
        exchange_request_id: Option<String>,
        client_request_id: String,
    },
    /// A mailbox permission was let go of: removed and verified gone, or kept.
    PermissionRemoved {
        mailbox: String,
        level: String,
        user_id: String,
        removed: bool,
        kept_pre_existing: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kept_for: Vec<String>,
        trigger: String,
    },
    TicketUpdated {
        update: String,
        state: String,
    },
    /// `remove_at_ms`: when the removal is due (named apart from the record's own `at_ms`).
    RemovalScheduled {
        remove_at_ms: u64,
    },
    RemovalExecuted {
        group_id: String,
        user_id: String,
        removed: bool,
        kept_pre_existing: bool,
        /// Other requests that still hold the membership (it stays until the last lets go).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        kept_for: Vec<String>,
        trigger: String,
    },
    StepFailed {
        kind: String,
        attempt: u32,
        code: String,
        message: String,
    },
    Compensated {
        group_id: String,
        user_id: String,
        removed: bool,
    },
    DeadLettered {
        queue: String,
        job_id: String,
        dead_letter_id: String,
    },
    /// On-call was paged about a dead letter of this request: the destinations that took the
    /// page (`pagerduty:<name>`, `webhook:<name>`, ...), those that refused it for good, and
    /// the dedup key the page carries.
    Paged {
        queue: String,
        dead_letter_id: String,
        dedup_key: String,
        severity: String,
        destinations: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        refused: Vec<String>,
    },
    /// The page about a dead letter was resolved because the letter was redriven or
    /// discarded (`how`).
    PageResolved {
        queue: String,
        dead_letter_id: String,
        dedup_key: String,
        how: String,
        destinations: Vec<String>,
    },
    /// The request was cancelled before anything was granted (by an operator, or because the
    /// person left); `from_state` is where it stood.
    RequestCancelled {
        reason: String,
        from_state: String,
    },
    /// Removal of the request's access now was asked for (`revoked`, `offboarding`).
    RemovalRequested {
        trigger: String,
        reason: String,
    },
    /// A later end was asked for: the request went back to approval for it.
    ExtensionRequested {
        until_ms: u64,
        previous_end_ms: u64,
        reason: String,
    },
    /// The extension was decided: approved (the removal moves to `end_ms`) or not (the
    /// original end, `end_ms`, stands).
    ExtensionDecided {
        approved: bool,
        end_ms: u64,
        how: String,
    },
    /// The reconciliation sweep found the access gone from the directory though nobody in
    /// grantline removed it (`access`: the receipt's access key); the request is closed.
    RemovedOutOfBand {
        access: String,
        checked_ms: u64,
    },
}

impl AuditEvent {
    /// The event's type name, as stored.
    pub fn name(&self) -> &'static str {
        match self {
            AuditEvent::RequestReceived { .. } => "request_received",
            AuditEvent::TicketRead { .. } => "ticket_read",
            AuditEvent::CheckEvaluated { .. } => "check_evaluated",
            AuditEvent::DecisionMade { .. } => "decision_made",
            AuditEvent::ApprovalRequested { .. } => "approval_requested",
            AuditEvent::ApprovalRecorded { .. } => "approval_recorded",
            AuditEvent::SelfApprovalRefused { .. } => "self_approval_refused",
            AuditEvent::ApprovalRefused { .. } => "approval_refused",
            AuditEvent::ApproversNotified { .. } => "approvers_notified",
            AuditEvent::ApproverSkipped { .. } => "approver_skipped",
            AuditEvent::ApprovalReminded { .. } => "approval_reminded",
            AuditEvent::ApprovalEscalated { .. } => "approval_escalated",
            AuditEvent::ApprovalExpired { .. } => "approval_expired",
            AuditEvent::GrantExecuted { .. } => "grant_executed",
            AuditEvent::PermissionGranted { .. } => "permission_granted",
            AuditEvent::PermissionRemoved { .. } => "permission_removed",
            AuditEvent::TicketUpdated { .. } => "ticket_updated",
            AuditEvent::RemovalScheduled { .. } => "removal_scheduled",
            AuditEvent::RemovalExecuted { .. } => "removal_executed",
            AuditEvent::StepFailed { .. } => "step_failed",
            AuditEvent::Compensated { .. } => "compensated",
            AuditEvent::DeadLettered { .. } => "dead_lettered",
            AuditEvent::Paged { .. } => "paged",
            AuditEvent::PageResolved { .. } => "page_resolved",
            AuditEvent::RequestCancelled { .. } => "request_cancelled",
            AuditEvent::RemovalRequested { .. } => "removal_requested",
            AuditEvent::ExtensionRequested { .. } => "extension_requested",
            AuditEvent::ExtensionDecided { .. } => "extension_decided",
            AuditEvent::RemovedOutOfBand { .. } => "removed_out_of_band",
        }
    }
}

/// One stored audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub request_id: String,
    /// ms since the epoch
    pub at_ms: u64,
    /// Who caused it: "grantline:<step>", "operator:<id>", "approver:<id>".
    pub actor: String,
    pub trace_id: String,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// The head of an empty chain.
pub const GENESIS: &str = "genesis";

/// Chains a record to the previous head: sha256(prev || "\n" || record JSON), hex.
pub fn chain_hash(prev: &str, record_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(record_json.as_bytes());
    hex::encode(h.finalize())
}

/// The fields of a stream entry for `record` following `prev`, and the new head.
pub fn entry(prev: &str, record: &AuditRecord) -> Result<(Vec<(String, String)>, String), serde_json::Error> {
    let json = serde_json::to_string(record)?;
    let hash = chain_hash(prev, &json);
    Ok((vec![("record".into(), json), ("prev".into(), prev.into()), ("hash".into(), hash.clone())], hash))
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub records: usize,
    /// None when the chain is intact.
    pub broken_at: Option<usize>,
    pub reason: Option<String>,
}

/// Checks a chain read in stream order: every `prev` names the hash before it, every hash
/// matches its record, and the last hash is the recorded head.
pub fn verify(entries: &[(String, String, String)], head: &str) -> Verification {
    let mut prev = GENESIS.to_owned();
    for (i, (record, p, hash)) in entries.iter().enumerate() {
        if *p != prev {
            return Verification {
                records: entries.len(),
                broken_at: Some(i),
                reason: Some("a record is missing before this one".into()),
            };
        }
        if chain_hash(p, record) != *hash {
            return Verification {
                records: entries.len(),
                broken_at: Some(i),
                reason: Some("this record was edited".into()),
            };
        }
        prev = hash.clone();
    }
    if prev != head {
        return Verification {
            records: entries.len(),
            broken_at: Some(entries.len()),
            reason: Some("records are missing at the end".into()),
        };
    }
    Verification { records: entries.len(), broken_at: None, reason: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u64) -> AuditRecord {
        AuditRecord {
            request_id: "r1".into(),
            at_ms: n,
            actor: "grantline:validate".into(),
            trace_id: "t".into(),
            event: AuditEvent::CheckEvaluated { code: format!("c{n}"), passed: true, reason: "ok".into() },
        }
    }

    fn chain(n: u64) -> (Vec<(String, String, String)>, String) {
        let mut head = GENESIS.to_owned();
        let mut out = Vec::new();
        for i in 0..n {
            let (fields, h) = entry(&head, &rec(i)).unwrap();
            out.push((fields[0].1.clone(), fields[1].1.clone(), fields[2].1.clone()));
            head = h;
        }
        (out, head)
    }

    #[test]
    fn verify_detects_edits_deletions_and_truncation() {
        let (entries, head) = chain(4);
        assert_eq!(verify(&entries, &head).broken_at, None);
        let mut edited = entries.clone();
        edited[1].0 = edited[1].0.replace("c1", "cX");
        assert_eq!(verify(&edited, &head).broken_at, Some(1));
        let mut deleted = entries.clone();
        deleted.remove(2);
        assert_eq!(verify(&deleted, &head).broken_at, Some(2));
        assert_eq!(verify(&entries[..3], &head).broken_at, Some(3));
    }

    #[test]
    fn every_event_reads_back_from_its_stored_form() {
        // the event is flattened into the record: no event field may reuse a record field name
        let events = [
            AuditEvent::RequestReceived { system: "s".into(), ticket: "t".into(), sys_id: "x".into() },
            AuditEvent::TicketRead {
                ticket: "t".into(),
                catalog_item: "c".into(),
                requested_for: "a".into(),
                opened_by: "b".into(),
                justification: Some("covering the inbox".into()),
            },
            AuditEvent::CheckEvaluated { code: "c".into(), passed: true, reason: "r".into() },
            AuditEvent::DecisionMade {
                allow: true,
                policy_version: "v".into(),
                target: "t".into(),
                level: "member".into(),
                reason: "r".into(),
            },
            AuditEvent::ApprovalRequested { approvers: vec!["a".into()], reason: "r".into() },
            AuditEvent::ApprovalRecorded { approver: "a".into(), approve: true, comment: "c".into() },
            AuditEvent::SelfApprovalRefused { approver: "a".into() },
            AuditEvent::ApprovalRefused {
                approver: "a".into(),
                approver_id: Some("id".into()),
                door: "teams".into(),
                reason: "approval.not_an_approver".into(),
            },
            AuditEvent::ApproversNotified { stage: 0, sent: vec!["teams:a".into()], failed: vec![] },
            AuditEvent::ApproverSkipped { stage: 0, approver: "a".into(), reason: "r".into(), to: "f".into() },
            AuditEvent::ApprovalReminded { stage: 0, percent: 50, to: vec!["a".into()] },
            AuditEvent::ApprovalEscalated { stage: 0, to: "f".into(), reason: "r".into() },
            AuditEvent::ApprovalExpired { stage: 0, reason: "r".into() },
            AuditEvent::GrantExecuted {
                group_id: "g".into(),
                user_id: "u".into(),
                before_member: false,
                after_member: true,
                pre_existing: false,
                graph_request_id: Some("graph-req".into()),
                client_request_id: "client-req".into(),
            },
            AuditEvent::PermissionGranted {
                mailbox: "m".into(),
                level: "send-as".into(),
                user_id: "u".into(),
                before_present: false,
                pre_existing: false,
                exchange_request_id: Some("x".into()),
                client_request_id: "c".into(),
            },
            AuditEvent::PermissionRemoved {
                mailbox: "m".into(),
                level: "send-as".into(),
                user_id: "u".into(),
                removed: true,
                kept_pre_existing: false,
                kept_for: vec![],
                trigger: "expiry".into(),
            },
            AuditEvent::TicketUpdated { update: "granted".into(), state: "3".into() },
            AuditEvent::RemovalScheduled { remove_at_ms: 42 },
            AuditEvent::RemovalExecuted {
                group_id: "g".into(),
                user_id: "u".into(),
                removed: true,
                kept_pre_existing: false,
                kept_for: vec!["r2".into()],
                trigger: "expiry".into(),
            },
            AuditEvent::StepFailed { kind: "k".into(), attempt: 1, code: "c".into(), message: "m".into() },
            AuditEvent::Compensated { group_id: "g".into(), user_id: "u".into(), removed: true },
            AuditEvent::DeadLettered { queue: "q".into(), job_id: "j".into(), dead_letter_id: "d".into() },
            AuditEvent::Paged {
                queue: "q".into(),
                dead_letter_id: "d".into(),
                dedup_key: "k".into(),
                severity: "critical".into(),
                destinations: vec!["pagerduty:oncall".into()],
                refused: vec!["webhook:soc".into()],
            },
            AuditEvent::PageResolved {
                queue: "q".into(),
                dead_letter_id: "d".into(),
                dedup_key: "k".into(),
                how: "redriven".into(),
                destinations: vec!["pagerduty:oncall".into()],
            },
            AuditEvent::RequestCancelled { reason: "r".into(), from_state: "awaiting_approval".into() },
            AuditEvent::RemovalRequested { trigger: "revoked".into(), reason: "r".into() },
            AuditEvent::ExtensionRequested { until_ms: 2, previous_end_ms: 1, reason: "r".into() },
            AuditEvent::ExtensionDecided { approved: true, end_ms: 2, how: "approved".into() },
            AuditEvent::RemovedOutOfBand { access: "group:g:u".into(), checked_ms: 3 },
        ];
        // a new variant must be added above
        assert_eq!(events.iter().map(AuditEvent::name).collect::<std::collections::BTreeSet<_>>().len(), 29);
        for event in events {
            let r = AuditRecord { event, ..rec(1) };
            let (fields, _) = entry(GENESIS, &r).unwrap();
            let back: AuditRecord =
                serde_json::from_str(&fields[0].1).unwrap_or_else(|e| panic!("{}: {e}", fields[0].1));
            assert_eq!(back, r);
        }
    }

    #[test]
    fn records_serialise_with_their_type() {
        let j = serde_json::to_value(rec(1)).unwrap();
        assert_eq!(j["type"], "check_evaluated");
        assert_eq!(j["code"], "c1");
    }
}
