//! ServiceNow records as grantline reads and writes them.
//!
//! On the wire every value is a string. Reads of requested items use
//! `sysparm_display_value=all`, so each field arrives as
//! `{"display_value": "...", "value": "..."}` (plus `"link"` for references) and one read
//! yields both the stored value (`"3"`, a sys_id) and its label (`"Closed Complete"`, a name).
//! The parsing here is tolerant: a field may also be a plain string, or a reference in the
//! `{"link", "value"}` shape, or `""` for an empty reference.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A choice or text field: the stored value and its display value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub value: String,
    pub display_value: String,
}

/// A reference field: the referenced record's sys_id (`value`), its display value (a name or
/// number) and the API link to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub value: String,
    pub display_value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Well-known values of the task `state` choice list. Instances may configure their own;
/// verify against `sys_choice` when it matters.
pub mod ritm_state {
    pub const PENDING: &str = "-5";
    pub const OPEN: &str = "1";
    pub const WORK_IN_PROGRESS: &str = "2";
    pub const CLOSED_COMPLETE: &str = "3";
    pub const CLOSED_INCOMPLETE: &str = "4";
    pub const CLOSED_SKIPPED: &str = "7";
}

/// A requested item (`sc_req_item`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ritm {
    pub sys_id: String,
    /// `RITM0010001`.
    pub number: String,
    /// See [`ritm_state`].
    pub state: Field,
    /// `waiting_for_approval`, `fulfillment`, `complete`, ...
    pub stage: Field,
    /// `not requested`, `requested`, `approved`, `rejected`, ...
    pub approval: Field,
    /// `"true"` while the item is open; `"false"` once closed or cancelled.
    pub active: Field,
    pub cat_item: Option<Reference>,
    pub requested_for: Option<Reference>,
    pub opened_by: Option<Reference>,
    pub request: Option<Reference>,
    pub assignment_group: Option<Reference>,
    pub short_description: String,
    /// The stored value: UTC, `2026-01-22 14:12:37`.
    pub sys_updated_on: String,
}

impl Ritm {
    /// `sys_updated_on` as a timestamp.
    pub fn updated_at(&self) -> Option<Timestamp> {
        parse_glide_datetime(&self.sys_updated_on)
    }

    /// Why the item can no longer be fulfilled (closed, cancelled, no longer active), or `None`
    /// while it is open. Nothing is granted for an item that is not open.
    pub fn closed_reason(&self) -> Option<String> {
        let state = self.state.value.as_str();
        let label = if self.state.display_value.is_empty() { state } else { self.state.display_value.as_str() };
        if matches!(state, ritm_state::CLOSED_COMPLETE | ritm_state::CLOSED_INCOMPLETE | ritm_state::CLOSED_SKIPPED) {
            return Some(format!("the ticket {} is closed ({label})", self.number));
        }
        if self.active.value.eq_ignore_ascii_case("false") {
            return Some(format!("the ticket {} is no longer active (state {label})", self.number));
        }
        if self.stage.value.eq_ignore_ascii_case("Request Cancelled") || self.approval.value == "cancelled" {
            return Some(format!("the ticket {} was cancelled", self.number));
        }
        None
    }

    pub(crate) fn from_raw(raw: &RawRecord) -> Self {
        Ritm {
            sys_id: raw.value("sys_id"),
            number: raw.value("number"),
            state: raw.field("state"),
            stage: raw.field("stage"),
            approval: raw.field("approval"),
            active: raw.field("active"),
            cat_item: raw.reference("cat_item"),
            requested_for: raw.reference("requested_for"),
            opened_by: raw.reference("opened_by"),
            request: raw.reference("request"),
            assignment_group: raw.reference("assignment_group"),
            short_description: raw.value("short_description"),
            sys_updated_on: raw.value("sys_updated_on"),
        }
    }
}

/// The fields of `sc_req_item` grantline reads.
pub(crate) const RITM_FIELDS: &str = "sys_id,number,state,stage,approval,active,cat_item,requested_for,opened_by,request,assignment_group,short_description,sys_updated_on";

/// A user (`sys_user`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceNowUser {
    pub sys_id: String,
    pub user_name: String,
    pub email: String,
    pub name: String,
}

impl ServiceNowUser {
    pub(crate) fn from_raw(raw: &RawRecord) -> Self {
        ServiceNowUser {
            sys_id: raw.value("sys_id"),
            user_name: raw.value("user_name"),
            email: raw.value("email"),
            name: raw.value("name"),
        }
    }
}

pub(crate) const USER_FIELDS: &str = "sys_id,user_name,email,name";

/// One journal entry (`sys_journal_field`): a work note or comment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub sys_id: String,
    /// `work_notes` or `comments`.
    pub element: String,
    pub value: String,
    /// UTC, `2026-01-22 14:12:37`.
    pub sys_created_on: String,
    pub sys_created_by: String,
}

impl JournalEntry {
    pub(crate) fn from_raw(raw: &RawRecord) -> Self {
        JournalEntry {
            sys_id: raw.value("sys_id"),
            element: raw.value("element"),
            value: raw.value("value"),
            sys_created_on: raw.value("sys_created_on"),
            sys_created_by: raw.value("sys_created_by"),
        }
    }

    pub fn created_at(&self) -> Option<Timestamp> {
        parse_glide_datetime(&self.sys_created_on)
    }
}

pub(crate) const JOURNAL_FIELDS: &str = "sys_id,element,element_id,value,sys_created_on,sys_created_by";

/// The state of one approval record (`sysapproval_approver.state`), by its stored value.
///
/// Instances may add their own choices; those arrive as [`ApprovalState::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ApprovalState {
    /// `not requested`: created, not yet sent to the approver (a later stage).
    NotRequested,
    /// `requested`: waiting for the approver.
    Requested,
    /// `approved`.
    Approved,
    /// `rejected`.
    Rejected,
    /// `cancelled`.
    Cancelled,
    /// `not_required`.
    NotRequired,
    /// `no_longer_required`: closed because the decision was taken without this approver.
    NoLongerRequired,
    /// `duplicate`.
    Duplicate,
    /// Any other stored value.
    Other(String),
}

impl ApprovalState {
    /// The state for a stored value.
    pub fn parse(value: &str) -> Self {
        match value {
            "not requested" => ApprovalState::NotRequested,
            "requested" => ApprovalState::Requested,
            "approved" => ApprovalState::Approved,
            "rejected" => ApprovalState::Rejected,
            "cancelled" => ApprovalState::Cancelled,
            "not_required" => ApprovalState::NotRequired,
            "no_longer_required" => ApprovalState::NoLongerRequired,
            "duplicate" => ApprovalState::Duplicate,
            other => ApprovalState::Other(other.to_owned()),
        }
    }

    /// The stored value, as the Table API reads and writes it.
    pub fn as_str(&self) -> &str {
        match self {
            ApprovalState::NotRequested => "not requested",
            ApprovalState::Requested => "requested",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
            ApprovalState::Cancelled => "cancelled",
            ApprovalState::NotRequired => "not_required",
            ApprovalState::NoLongerRequired => "no_longer_required",
            ApprovalState::Duplicate => "duplicate",
            ApprovalState::Other(value) => value,
        }
    }

    /// Whether the approver answered: approved or rejected. Records closed without an answer
    /// (cancelled, not or no longer required, duplicate) are not decisions.
    pub fn is_decided(&self) -> bool {
        matches!(self, ApprovalState::Approved | ApprovalState::Rejected)
    }

    /// Whether the record still waits for someone: requested, or not yet requested.
    pub fn is_pending(&self) -> bool {
        matches!(self, ApprovalState::NotRequested | ApprovalState::Requested)
    }
}

impl std::fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for ApprovalState {
    fn from(value: String) -> Self {
        ApprovalState::parse(&value)
    }
}

impl From<ApprovalState> for String {
    fn from(state: ApprovalState) -> Self {
        match state {
            ApprovalState::Other(value) => value,
            known => known.as_str().to_owned(),
        }
    }
}

/// One approval record (`sysapproval_approver`) on a requested item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub sys_id: String,
    pub state: ApprovalState,
    /// The approver: the `sys_user` sys_id (`value`) and the user's name (`display_value`).
    pub approver: Option<Reference>,
    /// `sys_updated_on`: when the record last changed.
    pub updated_on: Option<Timestamp>,
    /// `sys_updated_by`: the `user_name` of whoever changed it last (the approver, when they
    /// answered in ServiceNow; the integration account, when grantline wrote).
    pub updated_by: String,
}

/// The catalog-variable fields of `sc_item_option_mtom` (dot-walked).
pub(crate) const VARIABLE_NAME_FIELD: &str = "sc_item_option.item_option_new.name";
pub(crate) const VARIABLE_VALUE_FIELD: &str = "sc_item_option.value";

/// A change to a requested item. Only the fields that are `Some` are sent.
///
/// `work_notes` and `comments` are journal fields: each PATCH that carries one *appends* a new
/// entry, so sending the same patch twice writes the note twice. Callers that retry must
/// check [`crate::ServiceNowClient::list_work_notes`] (or their own effect ledger) first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RitmPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_notes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comments: Option<String>,
    /// See [`ritm_state`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
}

impl RitmPatch {
    pub fn is_empty(&self) -> bool {
        self == &RitmPatch::default()
    }

    pub fn work_notes(mut self, text: impl Into<String>) -> Self {
        self.work_notes = Some(text.into());
        self
    }

    pub fn comments(mut self, text: impl Into<String>) -> Self {
        self.comments = Some(text.into());
        self
    }

    pub fn state(mut self, value: impl Into<String>) -> Self {
        self.state = Some(value.into());
        self
    }

    pub fn stage(mut self, value: impl Into<String>) -> Self {
        self.stage = Some(value.into());
        self
    }

    pub fn approval(mut self, value: impl Into<String>) -> Self {
        self.approval = Some(value.into());
        self
    }
}

/// Options of [`crate::ServiceNowClient::update_ritm`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateOptions {
    /// Send `X-no-response-body: true`: the instance answers without the updated record, and
    /// `update_ritm` returns `None`.
    pub no_response_body: bool,
}

/// Parses a stored GlideDateTime (`2026-01-22 14:12:37`, UTC).
pub fn parse_glide_datetime(value: &str) -> Option<Timestamp> {
    let dt: jiff::civil::DateTime = value.trim().replacen(' ', "T", 1).parse().ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp())
}

/// One record from the Table API, field by field, whatever shape each field came in.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub(crate) struct RawRecord(BTreeMap<String, RawField>);

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawField {
    Text(String),
    Object {
        #[serde(default)]
        value: Option<serde_json::Value>,
        #[serde(default)]
        display_value: Option<serde_json::Value>,
        #[serde(default)]
        link: Option<String>,
    },
    Other(serde_json::Value),
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl RawRecord {
    fn get(&self, name: &str) -> Option<&RawField> {
        self.0.get(name)
    }

    /// The stored value of a field (for a display-value-only object, its display value).
    pub(crate) fn value(&self, name: &str) -> String {
        match self.get(name) {
            Some(RawField::Text(s)) => s.clone(),
            Some(RawField::Object { value: Some(v), .. }) => text(v),
            Some(RawField::Object { value: None, display_value: Some(d), .. }) => text(d),
            Some(RawField::Other(v)) => text(v),
            _ => String::new(),
        }
    }

    pub(crate) fn field(&self, name: &str) -> Field {
        match self.get(name) {
            Some(RawField::Object { value, display_value, .. }) => {
                let value = value.as_ref().map(text).unwrap_or_default();
                let display_value = display_value.as_ref().map(text).unwrap_or_else(|| value.clone());
                Field { value, display_value }
            }
            _ => {
                let value = self.value(name);
                Field { display_value: value.clone(), value }
            }
        }
    }

    /// A reference, or `None` when it is empty (`""` or an empty value).
    pub(crate) fn reference(&self, name: &str) -> Option<Reference> {
        let reference = match self.get(name)? {
            RawField::Object { value, display_value, link } => Reference {
                value: value.as_ref().map(text).unwrap_or_default(),
                display_value: display_value.as_ref().map(text).unwrap_or_default(),
                link: link.clone().filter(|l| !l.is_empty()),
            },
            RawField::Text(s) => Reference { value: s.clone(), display_value: String::new(), link: None },
            RawField::Other(_) => return None,
        };
        (!reference.value.is_empty()).then_some(reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ritm_from_display_value_all() {
        let body = r#"{
          "sys_id": {"display_value": "a9e3", "value": "a9e3"},
          "number": {"display_value": "RITM0010482", "value": "RITM0010482"},
          "state": {"display_value": "Open", "value": "1"},
          "stage": {"display_value": "Fulfillment", "value": "fulfillment"},
          "approval": {"display_value": "Approved", "value": "approved"},
          "cat_item": {"display_value": "Group access", "link": "https://x/api/now/table/sc_cat_item/0b36", "value": "0b36"},
          "requested_for": {"display_value": "Alex Doe", "link": "https://x/api/now/table/sys_user/u1", "value": "u1"},
          "opened_by": {"display_value": "", "value": ""},
          "short_description": {"display_value": "Finance BI", "value": "Finance BI"},
          "sys_updated_on": {"display_value": "2026-01-22 06:12:37", "value": "2026-01-22 14:12:37"}
        }"#;
        let raw: RawRecord = serde_json::from_str(body).unwrap();
        let r = Ritm::from_raw(&raw);
        assert_eq!(r.number, "RITM0010482");
        assert_eq!(r.state, Field { value: "1".into(), display_value: "Open".into() });
        let cat = r.cat_item.clone().unwrap();
        assert_eq!((cat.value.as_str(), cat.display_value.as_str()), ("0b36", "Group access"));
        assert_eq!(r.requested_for.as_ref().unwrap().value, "u1");
        assert_eq!(r.opened_by, None);
        assert_eq!(r.request, None);
        assert_eq!(r.sys_updated_on, "2026-01-22 14:12:37");
        assert_eq!(r.updated_at(), Some("2026-01-22T14:12:37Z".parse().unwrap()));
    }

    #[test]
    fn ritm_from_plain_values() {
        let body = r#"{"sys_id":"a9e3","number":"RITM1","state":"3","stage":"complete","approval":"approved",
          "cat_item":{"link":"https://x/api/now/table/sc_cat_item/0b36","value":"0b36"},"requested_for":"","opened_by":"u2",
          "short_description":"x","sys_updated_on":"2026-01-22 14:12:37"}"#;
        let raw: RawRecord = serde_json::from_str(body).unwrap();
        let r = Ritm::from_raw(&raw);
        assert_eq!(r.state.value, "3");
        assert_eq!(r.state.display_value, "3");
        assert_eq!(r.cat_item.unwrap().link.as_deref(), Some("https://x/api/now/table/sc_cat_item/0b36"));
        assert_eq!(r.requested_for, None);
        assert_eq!(r.opened_by.unwrap().value, "u2");
    }

    #[test]
    fn approval_states_round_trip() {
        for value in [
            "not requested",
            "requested",
            "approved",
            "rejected",
            "cancelled",
            "not_required",
            "no_longer_required",
            "duplicate",
        ] {
            let state = ApprovalState::parse(value);
            assert!(!matches!(state, ApprovalState::Other(_)), "{value}");
            assert_eq!(state.as_str(), value);
            assert_eq!(serde_json::to_string(&state).unwrap(), format!("\"{value}\""));
        }
        let custom: ApprovalState = serde_json::from_str(r#""u_escalated""#).unwrap();
        assert_eq!(custom, ApprovalState::Other("u_escalated".into()));
        assert_eq!(custom.to_string(), "u_escalated");
        assert!(ApprovalState::Approved.is_decided() && ApprovalState::Rejected.is_decided());
        assert!(!ApprovalState::NoLongerRequired.is_decided() && !ApprovalState::Requested.is_decided());
        assert!(ApprovalState::Requested.is_pending() && ApprovalState::NotRequested.is_pending());
        assert!(!ApprovalState::Cancelled.is_pending() && !custom.is_pending());
    }

    #[test]
    fn patch_sends_only_set_fields() {
        let p = RitmPatch::default().work_notes("granted").state(ritm_state::CLOSED_COMPLETE);
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"work_notes":"granted","state":"3"}"#);
        assert!(RitmPatch::default().is_empty());
    }
}
