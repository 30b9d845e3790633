//! The request record, typed: one struct whose every field is named once, read from and written
//! to the request's Redis hash (`req:{id}`) through this module only.
//!
//! Each field is one hash field. Plain values (the state, ids, times, the reason) are stored as
//! their text, so guards and `redis-cli` read them as they are; structured ones (the ticket, the
//! decision, receipts) as JSON. Reading is strict: a field that is present but does not parse is
//! an error that names the field, never a silent "absent". Fields this version does not know are
//! ignored, so an older worker reads a record written by a newer one during a rolling deploy.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::policy::{Decision, Principal, UserFacts};
use crate::receipt::{CurrentState, Receipt, RemovalReceipt};
use crate::request::{RequestState, TicketRef};

/// A request record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("request {id} has no record")]
    NotFound { id: String },
    #[error("request {id}: field `{field}` is missing")]
    Missing { id: String, field: &'static str },
    #[error("request {id}: field `{field}` cannot be read: {message}")]
    Unreadable { id: String, field: &'static str, message: String },
}

impl RecordError {
    /// The field at fault, when one is.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            RecordError::NotFound { .. } => None,
            RecordError::Missing { field, .. } | RecordError::Unreadable { field, .. } => Some(field),
        }
    }
}

/// How one field's value is stored.
pub trait FieldValue: Sized {
    fn encode(&self) -> String;
    fn decode(text: &str) -> Result<Self, String>;
}

impl FieldValue for String {
    fn encode(&self) -> String {
        self.clone()
    }
    fn decode(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

impl FieldValue for u64 {
    fn encode(&self) -> String {
        self.to_string()
    }
    fn decode(text: &str) -> Result<Self, String> {
        text.parse().map_err(|_| format!("{text:?} is not a whole number"))
    }
}

impl FieldValue for bool {
    fn encode(&self) -> String {
        self.to_string()
    }
    fn decode(text: &str) -> Result<Self, String> {
        match text {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("{other:?} is not true or false")),
        }
    }
}

impl FieldValue for RequestState {
    fn encode(&self) -> String {
        self.as_str().to_owned()
    }
    fn decode(text: &str) -> Result<Self, String> {
        RequestState::parse(text).ok_or_else(|| format!("{text:?} is not a request state"))
    }
}

macro_rules! json_fields {
    ($($t:ty),* $(,)?) => {$(
        impl FieldValue for $t {
            fn encode(&self) -> String {
                serde_json::to_string(self).unwrap_or_default()
            }
            fn decode(text: &str) -> Result<Self, String> {
                serde_json::from_str(text).map_err(|e| e.to_string())
            }
        }
    )*};
}

json_fields!(
    TicketRef,
    UserFacts,
    Principal,
    Decision,
    Vec<ApprovalEntry>,
    Receipt,
    RemovalReceipt,
    CurrentState,
    Vec<Notice>,
    Vec<String>,
    ApprovalClock
);

/// Declares the record: its struct, the field names (`fields::STATE` = "state"), strict reading,
/// and the typed [`Update`] of a commit. `required` fields must be present; `optional` ones are
/// `Option`s; `listed` ones default to empty.
macro_rules! record {
    (
        required { $( $(#[$rm:meta])* $rf:ident : $rt:ty = $rc:ident $rk:literal, )* }
        optional { $( $(#[$om:meta])* $of:ident : $ot:ty = $oc:ident $ok:literal, )* }
        listed { $( $(#[$lm:meta])* $lf:ident : $lt:ty = $lc:ident $lk:literal, )* }
    ) => {
        /// The request record as every step sees it.
        #[derive(Debug, Clone, PartialEq)]
        pub struct RequestRecord {
            /// The request id (the key's suffix, not a field).
            pub id: String,
            $( $(#[$rm])* pub $rf: $rt, )*
            $( $(#[$om])* pub $of: Option<$ot>, )*
            $( $(#[$lm])* pub $lf: $lt, )*
        }

        /// The names of the record's hash fields.
        pub mod fields {
            $( pub const $rc: &str = $rk; )*
            $( pub const $oc: &str = $ok; )*
            $( pub const $lc: &str = $lk; )*
            /// Every field, in declaration order.
            pub const ALL: &[&str] = &[$( $rk, )* $( $ok, )* $( $lk, )*];
        }

        impl RequestRecord {
            /// Reads a record from its hash fields. Unknown fields are ignored.
            pub fn from_hash(id: &str, hash: &HashMap<String, String>) -> Result<Self, RecordError> {
                if hash.is_empty() {
                    return Err(RecordError::NotFound { id: id.to_owned() });
                }
                let bad = |field: &'static str, message: String| RecordError::Unreadable {
                    id: id.to_owned(),
                    field,
                    message,
                };
                Ok(RequestRecord {
                    id: id.to_owned(),
                    $( $rf: match hash.get($rk) {
                        Some(v) => <$rt as FieldValue>::decode(v).map_err(|m| bad($rk, m))?,
                        None => return Err(RecordError::Missing { id: id.to_owned(), field: $rk }),
                    }, )*
                    $( $of: match hash.get($ok) {
                        Some(v) => Some(<$ot as FieldValue>::decode(v).map_err(|m| bad($ok, m))?),
                        None => None,
                    }, )*
                    $( $lf: match hash.get($lk) {
                        Some(v) => <$lt as FieldValue>::decode(v).map_err(|m| bad($lk, m))?,
                        None => <$lt>::default(),
                    }, )*
                })
            }

            /// Every present field as (name, stored text), for writing a whole record.
            pub fn to_hash(&self) -> Vec<(&'static str, String)> {
                let mut out = vec![$( ($rk, self.$rf.encode()), )*];
                $( if let Some(v) = &self.$of { out.push(($ok, v.encode())); } )*
                $( if !self.$lf.is_empty() { out.push(($lk, self.$lf.encode())); } )*
                out
            }
        }

        /// Field changes of one commit, typed; applied by one HSET (and HDEL for cleared fields).
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct Update {
            set: Vec<(&'static str, String)>,
            cleared: Vec<&'static str>,
        }

        impl Update {
            $( $(#[$rm])* pub fn $rf(mut self, v: &$rt) -> Self { self.put($rk, v.encode()); self } )*
            $( $(#[$om])* pub fn $of(mut self, v: &$ot) -> Self { self.put($ok, v.encode()); self } )*
            $( $(#[$lm])* pub fn $lf(mut self, v: &$lt) -> Self { self.put($lk, v.encode()); self } )*
        }
    };
}

record! {
    required {
        state: RequestState = STATE "state",
        /// The ticket this request came from: the source of record.
        ticket: TicketRef = TICKET "ticket",
        /// W3C traceparent of the request's trace (every job continues it).
        traceparent: String = TRACEPARENT "traceparent",
        trace_id: String = TRACE_ID "trace_id",
        created_ms: u64 = CREATED_MS "created_ms",
        updated_ms: u64 = UPDATED_MS "updated_ms",
        /// Hash of the last audit record of the request's chain.
        audit_head: String = AUDIT_HEAD "audit_head",
    }
    optional {
        /// What the directory said of the person the access is for (validate).
        requester: UserFacts = REQUESTER "requester",
        /// Who filed the ticket, when someone else than the requester.
        opened_by: Principal = OPENED_BY "opened_by",
        /// The target's display name.
        target: String = TARGET "target",
        /// The policy's decision (its checks are in the audit trail, not here).
        decision: Decision = DECISION "decision",
        /// What validate read of the target's current state, as evidence for execute-grant.
        current: CurrentState = CURRENT "current",
        /// What execute-grant changed: the input of removal and compensation.
        grant: Receipt = GRANT "grant",
        /// What remove-access (or rollback) did.
        removal: RemovalReceipt = REMOVAL "removal",
        /// Why the request is where it is, for humans (ticket notes, status).
        reason: String = REASON "reason",
        /// When a time-bound grant ends (ms since the epoch).
        end_ms: u64 = END_MS "end_ms",
        /// The business justification the ticket gives (shown to approvers).
        justification: String = JUSTIFICATION "justification",
        /// When approval was first asked (ms).
        asked_ms: u64 = ASKED_MS "asked_ms",
        /// Where the pending approval stage stands in time: since when, reminders sent.
        approval_clock: ApprovalClock = APPROVAL_CLOCK "approval_clock",
        /// When retention compacted this finished record to its summary (ms): what it dropped is
        /// in the audit trail.
        compacted_ms: u64 = COMPACTED_MS "compacted_ms",
    }
    listed {
        /// The approvers' answers, in order.
        approvals: Vec<ApprovalEntry> = APPROVALS "approvals",
        /// Where approvers and the requester were told (cards and messages to update later).
        notices: Vec<Notice> = NOTICES "notices",
        /// The ticket updates already written (their markers are on the ticket).
        noted: Vec<String> = NOTED "noted",
    }
}

impl Update {
    fn put(&mut self, field: &'static str, value: String) {
        self.cleared.retain(|f| *f != field);
        match self.set.iter_mut().find(|(f, _)| *f == field) {
            Some(slot) => slot.1 = value,
            None => self.set.push((field, value)),
        }
    }

    /// Removes a field.
    pub fn clear(mut self, field: &'static str) -> Self {
        self.set.retain(|(f, _)| *f != field);
        if !self.cleared.contains(&field) {
            self.cleared.push(field);
        }
        self
    }

    /// Sets a field by name from its stored text (for callers that copy fields).
    pub fn raw(mut self, field: &'static str, text: String) -> Self {
        self.put(field, text);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.cleared.is_empty()
    }

    /// The fields set, as (name, stored text).
    pub fn sets(&self) -> &[(&'static str, String)] {
        &self.set
    }

    /// The fields removed.
    pub fn clears(&self) -> &[&'static str] {
        &self.cleared
    }

    /// The new value this update gives `field`, if it sets it.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.set.iter().find(|(f, _)| *f == field).map(|(_, v)| v.as_str())
    }
}

/// One approver's answer, as kept in the record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApprovalEntry {
    /// The approver as shown to people: UPN when known, else the directory object id.
    pub approver: String,
    /// The approver's directory object id, when the door that brought the answer proved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver_id: Option<String>,
    pub approve: bool,
    #[serde(default)]
    pub comment: String,
    pub at_ms: u64,
    /// The plan stage (0-based) the answer was given for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<usize>,
    /// The door it came through: `operator:<id>`, `teams`, `slack`, `servicenow`, `web`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// An operator recorded it on the approver's behalf (the operator's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_by: Option<String>,
    /// The approver's UPN, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver_upn: Option<String>,
    /// The groups (object ids) the approver was verified to belong to when answering: how a
    /// group entry of the plan is matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_of: Vec<String>,
    /// The door's own reference of the answer (a ServiceNow approval record's sys_id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl ApprovalEntry {
    /// The approver as the plan's eligibility rules see them.
    pub fn as_approver(&self) -> crate::policy::Approver {
        crate::policy::Approver {
            id: self.approver_id.clone().unwrap_or_else(|| self.approver.clone()),
            upn: self.approver_upn.clone().or_else(|| Some(self.approver.clone())),
            member_of: self.member_of.clone(),
        }
    }
}

/// Where a request's pending approval stage stands in time. The scheduler finds it through the
/// `approvals:due` index, scored by [`ApprovalClock::next_due_ms`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalClock {
    /// The stage being decided (0-based).
    pub stage: usize,
    /// When it was asked (or escalated): the start of its time to decide.
    pub since_ms: u64,
    /// Reminder points (percentages) already sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reminded: Vec<u8>,
}

impl ApprovalClock {
    pub fn start(stage: usize, since_ms: u64) -> Self {
        Self { stage, since_ms, reminded: Vec::new() }
    }

    /// When the stage's time to decide ends.
    pub fn deadline_ms(&self, plan: &crate::policy::ApprovalPlan) -> Option<u64> {
        let s = plan.stages.get(self.stage)?;
        Some(crate::clock::ms(s.time_to_decide.after(crate::clock::timestamp(self.since_ms))))
    }

    /// The reminders of the stage not sent yet, with their times.
    pub fn pending_reminders(&self, plan: &crate::policy::ApprovalPlan) -> Vec<(u8, u64)> {
        let (Some(s), Some(end)) = (plan.stages.get(self.stage), self.deadline_ms(plan)) else { return Vec::new() };
        let span = end.saturating_sub(self.since_ms);
        s.reminders
            .iter()
            .filter(|p| !self.reminded.contains(p))
            .map(|p| (*p, self.since_ms + span * u64::from(*p) / 100))
            .collect()
    }

    /// The next time something is due: a reminder, or the deadline.
    pub fn next_due_ms(&self, plan: &crate::policy::ApprovalPlan) -> Option<u64> {
        let deadline = self.deadline_ms(plan)?;
        Some(self.pending_reminders(plan).iter().map(|(_, t)| *t).min().unwrap_or(deadline).min(deadline))
    }
}

/// A message grantline sent about a request that it may update later (an approval card, a
/// Slack message, a ServiceNow approval record), so a decision can replace it for everyone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Notice {
    /// `teams`, `slack`, `servicenow`, `link`.
    pub channel: String,
    /// Who it was sent to (directory object id or address).
    pub to: String,
    /// The channel's reference: Teams `serviceUrl|conversation|activity`, Slack `channel|ts`, a
    /// ServiceNow `sysapproval_approver` sys_id, a signed link's nonce.
    pub reference: String,
    /// The plan stage it asks about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<usize>,
    pub at_ms: u64,
}

impl RequestRecord {
    /// A new record as ingest stores it.
    pub fn received(id: &str, ticket: TicketRef, traceparent: &str, trace_id: &str, now_ms: u64, head: &str) -> Self {
        RequestRecord {
            id: id.to_owned(),
            state: RequestState::Received,
            ticket,
            traceparent: traceparent.to_owned(),
            trace_id: trace_id.to_owned(),
            created_ms: now_ms,
            updated_ms: now_ms,
            audit_head: head.to_owned(),
            requester: None,
            opened_by: None,
            target: None,
            decision: None,
            current: None,
            grant: None,
            removal: None,
            reason: None,
            end_ms: None,
            justification: None,
            asked_ms: None,
            approval_clock: None,
            compacted_ms: None,
            approvals: Vec::new(),
            notices: Vec::new(),
            noted: Vec::new(),
        }
    }

    /// The decision, or the error a step that needs it reports.
    pub fn decision(&self) -> Result<&Decision, RecordError> {
        self.decision.as_ref().ok_or_else(|| RecordError::Missing { id: self.id.clone(), field: fields::DECISION })
    }

    pub fn requester(&self) -> Result<&UserFacts, RecordError> {
        self.requester.as_ref().ok_or_else(|| RecordError::Missing { id: self.id.clone(), field: fields::REQUESTER })
    }

    pub fn grant(&self) -> Result<&Receipt, RecordError> {
        self.grant.as_ref().ok_or_else(|| RecordError::Missing { id: self.id.clone(), field: fields::GRANT })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> TicketRef {
        TicketRef {
            system: "servicenow".into(),
            table: "sc_req_item".into(),
            sys_id: "a".repeat(32),
            number: "RITM0010001".into(),
        }
    }

    #[test]
    fn a_record_round_trips_through_its_hash() {
        let mut r = RequestRecord::received("r1", ticket(), "00-tp", "tid", 5, "genesis");
        r.reason = Some("why".into());
        r.end_ms = Some(99);
        r.approvals.push(ApprovalEntry {
            approver: "m@x".into(),
            approver_id: Some("id".into()),
            approve: true,
            comment: String::new(),
            at_ms: 7,
            stage: Some(0),
            via: Some("teams".into()),
            recorded_by: None,
            approver_upn: None,
            member_of: vec![],
            reference: None,
        });
        let hash: HashMap<String, String> = r.to_hash().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        assert_eq!(hash.get("state").map(String::as_str), Some("received"), "plain values stay plain");
        assert_eq!(hash.get("end_ms").map(String::as_str), Some("99"));
        assert!(!hash.contains_key("grant"), "absent fields are not written");
        assert_eq!(RequestRecord::from_hash("r1", &hash).unwrap(), r);
    }

    #[test]
    fn a_field_that_does_not_parse_is_an_error_naming_it() {
        let r = RequestRecord::received("r1", ticket(), "tp", "t", 1, "genesis");
        let mut hash: HashMap<String, String> = r.to_hash().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        hash.insert("decision".into(), "{not json".into());
        let e = RequestRecord::from_hash("r1", &hash).unwrap_err();
        assert_eq!(e.field(), Some("decision"));
        hash.remove("decision");
        hash.insert("state".into(), "sideways".into());
        assert_eq!(RequestRecord::from_hash("r1", &hash).unwrap_err().field(), Some("state"));
        hash.remove("state");
        assert!(matches!(RequestRecord::from_hash("r1", &hash), Err(RecordError::Missing { field: "state", .. })));
        assert!(matches!(RequestRecord::from_hash("r1", &HashMap::new()), Err(RecordError::NotFound { .. })));
        hash.insert("state".into(), "received".into());
        hash.insert("added_by_a_newer_version".into(), "x".into());
        assert!(RequestRecord::from_hash("r1", &hash).is_ok(), "unknown fields are ignored");
    }

    #[test]
    fn updates_are_typed_and_the_last_value_wins() {
        let u = Update::default().reason(&"a".to_owned()).end_ms(&5).reason(&"b".to_owned()).clear(fields::GRANT);
        assert_eq!(u.sets(), &[("reason", "b".to_owned()), ("end_ms", "5".to_owned())]);
        assert_eq!(u.clears(), &["grant"]);
        assert_eq!(u.get("end_ms"), Some("5"));
        assert!(fields::ALL.contains(&"approvals"));
        let n = fields::ALL.len();
        let distinct: std::collections::BTreeSet<_> = fields::ALL.iter().collect();
        assert_eq!(distinct.len(), n, "every field is named once");
    }
}
