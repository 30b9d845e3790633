//! `GET /users/{id | userPrincipalName}/mailboxSettings` (and `…/mailboxSettings/{setting}`):
//! the Outlook mailbox settings Graph exposes, of which grantline reads two: the
//! `automaticRepliesSetting` (is an approver out of office?) and `userPurpose` (is this address
//! a shared mailbox?).
//!
//! Needs `MailboxSettings.Read` or `MailboxSettings.ReadWrite`. Without either the answer is
//! 403 `ErrorAccessDenied` / `Access is denied. Check credentials and try again.`: mailbox
//! settings are served by Exchange Online, whose errors use Exchange's codes rather than the
//! directory's `Authorization_RequestDenied`. The other Exchange-style answers: an unknown user
//! is 404 `ErrorInvalidUser`, a user without a mailbox (the B2B guest) is 404
//! `MailboxNotEnabledForRESTAPI`, an unknown `$select` name is 400 `RequestBroker--ParseUri`.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::errors::{CONTENT_TYPE, GraphError};
use super::state::{Directory, GraphState};
use crate::error::SimError;
use crate::json::Obj;
use crate::server::SimResponse;
use crate::tenant::{Mailbox, Tenant};

pub(crate) const MAILBOX_SETTINGS_READ: &[&str] = &["MailboxSettings.Read", "MailboxSettings.ReadWrite"];

/// The settings of `mailboxSettings`, in Graph's order.
const SETTINGS: &[&str] = &[
    "archiveFolder",
    "timeZone",
    "delegateMeetingMessageDeliveryOptions",
    "dateFormat",
    "timeFormat",
    "userPurpose",
    "automaticRepliesSetting",
    "language",
    "workingHours",
];

const STATUSES: &[&str] = &["disabled", "alwaysEnabled", "scheduled"];
const AUDIENCES: &[&str] = &["none", "contactsOnly", "all"];

/// `automaticRepliesSetting`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AutoReplies {
    status: String,
    external_audience: String,
    start: Timestamp,
    end: Timestamp,
    internal: String,
    external: String,
}

#[derive(Clone, Debug)]
struct MailboxEntry {
    /// Lower-case primary SMTP address.
    address: String,
    /// Lower-case directory id of the owning user (user mailboxes).
    user_id: Option<String>,
    purpose: &'static str,
    replies: AutoReplies,
}

/// The mailboxes of the tenant and their settings.
#[derive(Debug, Default)]
pub(crate) struct Mailboxes {
    entries: HashMap<String, MailboxEntry>,
}

fn purpose_of(recipient_type_details: &str) -> &'static str {
    match recipient_type_details {
        Mailbox::USER => "user",
        Mailbox::SHARED => "shared",
        Mailbox::ROOM => "room",
        Mailbox::EQUIPMENT => "equipment",
        "LinkedMailbox" => "linked",
        _ => "others",
    }
}

/// `{"dateTime":"2026-03-14T07:00:00.0000000","timeZone":"UTC"}`.
fn date_time_time_zone(t: Timestamp) -> Value {
    let whole = t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    json!({ "dateTime": format!("{whole}.{:07}", t.subsec_nanosecond() / 100), "timeZone": "UTC" })
}

fn parse_date_time(v: &Value) -> Option<Timestamp> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Object(o) => {
            let zone = o.get("timeZone").and_then(Value::as_str).unwrap_or("UTC");
            if !zone.eq_ignore_ascii_case("UTC") {
                return None;
            }
            let dt = o.get("dateTime").and_then(Value::as_str)?;
            let civil: jiff::civil::DateTime = dt.trim_end_matches('Z').parse().ok()?;
            civil.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp())
        }
        _ => None,
    }
}

impl Mailboxes {
    pub(crate) fn from_tenant(t: &Tenant, now: Timestamp) -> Self {
        let hour = Timestamp::from_second(now.as_second().div_euclid(3600) * 3600).unwrap_or(now);
        let replies = AutoReplies {
            status: "disabled".to_owned(),
            external_audience: "all".to_owned(),
            start: hour,
            end: hour.checked_add(SignedDuration::from_hours(24)).unwrap_or(hour),
            internal: String::new(),
            external: String::new(),
        };
        let entries = t
            .mailboxes
            .iter()
            .map(|m| {
                let address = m.primary_smtp_address.to_ascii_lowercase();
                let entry = MailboxEntry {
                    address: address.clone(),
                    user_id: m.user_id.as_ref().map(|u| u.to_ascii_lowercase()),
                    purpose: purpose_of(&m.recipient_type_details),
                    replies: replies.clone(),
                };
                (address, entry)
            })
            .collect();
        Self { entries }
    }

    fn for_user(&self, user_id: &str) -> Option<&MailboxEntry> {
        let id = user_id.to_ascii_lowercase();
        self.entries.values().find(|e| e.user_id.as_deref() == Some(id.as_str()))
    }

    pub(crate) fn set_automatic_replies(&mut self, key: &str, v: &Value) -> Result<(), SimError> {
        let entry = self.entries.get_mut(key).ok_or_else(|| SimError::NotFound(format!("mailbox {key}")))?;
        let Value::Object(map) = v else {
            return Err(SimError::Config("automatic replies must be a JSON object".into()));
        };
        let mut next = entry.replies.clone();
        for (k, val) in map {
            let text =
                || val.as_str().map(str::to_owned).ok_or_else(|| SimError::Config(format!("{k} must be a string")));
            let pick = |allowed: &[&str]| {
                let s = text()?;
                allowed
                    .iter()
                    .find(|a| a.eq_ignore_ascii_case(&s))
                    .map(|a| (*a).to_owned())
                    .ok_or_else(|| SimError::Config(format!("{k} must be one of {}", allowed.join(", "))))
            };
            match k.as_str() {
                "status" => next.status = pick(STATUSES)?,
                "externalAudience" => next.external_audience = pick(AUDIENCES)?,
                "scheduledStartDateTime" => {
                    next.start = parse_date_time(val)
                        .ok_or_else(|| SimError::Config(format!("{k} must be a UTC dateTimeTimeZone")))?;
                }
                "scheduledEndDateTime" => {
                    next.end = parse_date_time(val)
                        .ok_or_else(|| SimError::Config(format!("{k} must be a UTC dateTimeTimeZone")))?;
                }
                "internalReplyMessage" => next.internal = text()?,
                "externalReplyMessage" => next.external = text()?,
                other => return Err(SimError::Config(format!("unknown automaticRepliesSetting property {other}"))),
            }
        }
        entry.replies = next;
        Ok(())
    }

    pub(crate) fn automatic_replies_json(&self, key: &str) -> Option<Value> {
        self.entries.get(key).map(|e| replies_value(&e.replies))
    }
}

fn replies_value(r: &AutoReplies) -> Value {
    json!({
        "status": r.status,
        "externalAudience": r.external_audience,
        "scheduledStartDateTime": date_time_time_zone(r.start),
        "scheduledEndDateTime": date_time_time_zone(r.end),
        "internalReplyMessage": r.internal,
        "externalReplyMessage": r.external,
    })
}

fn setting(entry: &MailboxEntry, name: &str) -> Value {
    match name {
        "archiveFolder" => json!("AQMkADAwATM0MDAAMS1iNTcwLWI2NTEtMDACLTAwCgAuAAAD"),
        "timeZone" => json!("UTC"),
        "delegateMeetingMessageDeliveryOptions" => json!("sendToDelegateOnly"),
        "dateFormat" => json!("dd/MM/yyyy"),
        "timeFormat" => json!("HH:mm"),
        "userPurpose" => json!(entry.purpose),
        "automaticRepliesSetting" => replies_value(&entry.replies),
        "language" => json!({ "locale": "en-GB", "displayName": "English (United Kingdom)" }),
        _ => json!({
            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
            "startTime": "08:00:00.0000000",
            "endTime": "17:00:00.0000000",
            "timeZone": { "name": "UTC" },
        }),
    }
}

impl Directory {
    /// The mailbox key for a user's id or UPN (their user mailbox) or a mailbox address.
    pub(crate) fn mailbox_key(&self, id_or_address: &str) -> Option<String> {
        if let Some(u) = self.user(id_or_address) {
            return self.mailboxes.for_user(&u.id).map(|e| e.address.clone());
        }
        let k = id_or_address.to_ascii_lowercase();
        self.mailboxes.entries.contains_key(&k).then_some(k)
    }
}

fn exchange_error(status: u16, code: &str, message: impl Into<String>) -> GraphError {
    GraphError::new(status, code, message)
}

/// Answers `GET /users/{key}/mailboxSettings[/{setting}]`.
pub(crate) fn get(
    key: &str,
    sub: Option<&str>,
    select: Option<&[String]>,
    base: &str,
    allowed: bool,
    state: &GraphState,
) -> Result<SimResponse, GraphError> {
    if !allowed {
        return Err(exchange_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."));
    }
    let dir = state.lock();
    let user = dir.user(key);
    let entry = match user {
        Some(u) => dir.mailboxes.for_user(&u.id),
        None => dir.mailboxes.entries.get(&key.to_ascii_lowercase()),
    };
    let Some(entry) = entry else {
        if user.is_some() {
            return Err(exchange_error(
                404,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            ));
        }
        return Err(exchange_error(404, "ErrorInvalidUser", format!("The requested user '{key}' is invalid.")));
    };
    let owner = user.map_or_else(|| entry.address.clone(), |u| u.id.clone());
    let context = format!("{base}/v1.0/$metadata#users('{owner}')/mailboxSettings");
    let unknown = |name: &str| {
        exchange_error(
            400,
            "RequestBroker--ParseUri",
            format!("Could not find a property named '{name}' on type 'microsoft.graph.mailboxSettings'."),
        )
    };
    let canonical = |name: &str| SETTINGS.iter().find(|s| s.eq_ignore_ascii_case(name)).copied();
    let body = match sub {
        Some(name) => {
            let name = canonical(name).ok_or_else(|| unknown(name))?;
            let value = setting(entry, name);
            let mut o = Obj::new().with("@odata.context", format!("{context}/{name}"));
            match value {
                Value::Object(map) => {
                    for (k, v) in map {
                        o.push(k, v);
                    }
                }
                other => o.push("value", other),
            }
            o
        }
        None => {
            let names: Vec<&str> = match select {
                Some(sel) if !sel.iter().any(|s| s == "*") => {
                    sel.iter().map(|s| canonical(s).ok_or_else(|| unknown(s))).collect::<Result<_, _>>()?
                }
                _ => SETTINGS.to_vec(),
            };
            let mut o = Obj::new().with("@odata.context", context);
            for n in names {
                o.push(n, setting(entry, n));
            }
            o
        }
    };
    Ok(SimResponse::json_bytes(200, CONTENT_TYPE, body.to_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn date_times_round_trip() {
        let t: Timestamp = "2026-03-14T07:00:00Z".parse().unwrap();
        let v = date_time_time_zone(t);
        assert_eq!(v, json!({ "dateTime": "2026-03-14T07:00:00.0000000", "timeZone": "UTC" }));
        assert_eq!(parse_date_time(&v), Some(t));
        assert_eq!(parse_date_time(&json!("2026-03-14T07:00:00Z")), Some(t));
        assert_eq!(
            parse_date_time(&json!({ "dateTime": "2026-03-14T07:00:00", "timeZone": "Pacific Standard Time" })),
            None
        );
    }
}
