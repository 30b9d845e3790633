//! PagerDuty Events API v2: `POST /v2/enqueue` and `POST /v2/change/enqueue`.
//!
//! Validation collects every problem into the `errors` list of one 400
//! (`{"status":"invalid event","message":"Event object is invalid","errors":[…]}`). A valid
//! event is answered 202 `{"status":"success","message":"Event processed","dedup_key":"…"}`,
//! with the key sent or, for a trigger without one, a new 32-character key. Alerts are keyed by
//! (routing key, dedup key): a trigger for an open alert merges into it, acknowledge and resolve
//! move it on, and acknowledge or resolve for no open alert is dropped (still 202). After a
//! resolve, the same key opens a new alert.

use jiff::Timestamp;
use serde::{Serialize, Serializer};
use serde_json::{Value, json};
use uuid::Uuid;

use super::PagingState;
use crate::server::{SimRequest, SimResponse};

const JSON: &str = "application/json";
const ROUTING_KEY_CHARS: usize = 32;
const MAX_DEDUP_KEY: usize = 255;
const MAX_SUMMARY: usize = 1024;
const SEVERITIES: &[&str] = &["critical", "error", "warning", "info"];

/// Where an alert is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Triggered,
    Acknowledged,
    Resolved,
}

/// What an accepted event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOutcome {
    /// A trigger that opened a new alert.
    Opened,
    /// A trigger for an open alert: merged into it (deduplicated).
    Merged,
    /// Moved a triggered alert to acknowledged.
    Acknowledged,
    /// An acknowledge for an alert already acknowledged.
    AlreadyAcknowledged,
    /// Closed the alert.
    Resolved,
    /// An acknowledge or resolve for no open alert.
    Dropped,
}

/// One accepted `/v2/enqueue` event.
#[derive(Clone, Debug, Serialize)]
pub struct PagerDutyEvent {
    /// Simulated time it arrived.
    pub at: Timestamp,
    /// `trigger`, `acknowledge` or `resolve`.
    pub action: String,
    pub dedup_key: String,
    pub outcome: EventOutcome,
    /// The event as sent (the routing key is masked to its last four characters).
    pub body: Value,
}

/// A PagerDuty alert and its history.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    /// 1, 2, 3, … in the order alerts were opened.
    pub number: u64,
    /// The routing key the alert belongs to (masked in the admin JSON).
    #[serde(serialize_with = "masked")]
    pub routing_key: String,
    pub dedup_key: String,
    pub status: AlertStatus,
    /// From the trigger that opened the alert.
    pub summary: String,
    pub severity: String,
    pub source: String,
    pub component: Option<String>,
    pub group: Option<String>,
    pub class: Option<String>,
    pub custom_details: Value,
    pub opened_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    /// Every event for this alert, the opening trigger first.
    pub events: Vec<PagerDutyEvent>,
}

impl Alert {
    /// How many triggers were merged into the alert after the one that opened it.
    pub fn merged_triggers(&self) -> usize {
        self.events.iter().filter(|e| e.outcome == EventOutcome::Merged).count()
    }
}

/// One accepted change event.
#[derive(Clone, Debug, Serialize)]
pub struct ChangeEvent {
    pub at: Timestamp,
    pub summary: String,
    /// The event as sent (routing key masked).
    pub body: Value,
}

fn mask(key: &str) -> String {
    let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

fn masked<S: Serializer>(key: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask(key))
}

fn respond(status: u16, body: &Value) -> SimResponse {
    SimResponse::json_bytes(status, JSON, body.to_string())
}

fn invalid(errors: Vec<String>) -> SimResponse {
    respond(400, &json!({ "status": "invalid event", "message": "Event object is invalid", "errors": errors }))
}

/// 405 for a method other than POST on an Events API path.
pub(crate) fn not_allowed() -> SimResponse {
    respond(405, &json!({ "status": "error", "message": "Method not allowed" }))
}

/// The simulator's bodies for scripted fault statuses (the real 429 body is undocumented).
pub(crate) fn fault_body(status: u16) -> SimResponse {
    let (state, message) = match status {
        400 => ("invalid event", "Event object is invalid"),
        429 => ("throttle event", "Requests for this service are arriving too quickly. Please retry later."),
        500..=599 => ("error", "Internal server error"),
        _ => ("error", "Request failed"),
    };
    let mut body = json!({ "status": state, "message": message });
    if status == 400 {
        body["errors"] = json!(["Event object is invalid"]);
    }
    respond(status, &body)
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn opt_text(v: &Value, key: &str) -> Option<String> {
    text(v, key).map(str::to_owned)
}

/// Parses the body, checks its size and the routing key.
fn parse(req: &SimRequest, max_bytes: usize) -> Result<(Value, String), SimResponse> {
    if req.body.len() > max_bytes {
        return Err(invalid(vec![format!("Event object is too large (the limit is {} KB)", max_bytes / 1024)]));
    }
    let v: Value =
        serde_json::from_slice(&req.body).map_err(|_| invalid(vec!["Event object is not valid JSON".into()]))?;
    if !v.is_object() {
        return Err(invalid(vec!["Event object is not a JSON object".into()]));
    }
    let key = match v.get("routing_key") {
        Some(Value::String(k)) if k.chars().count() == ROUTING_KEY_CHARS => k.clone(),
        Some(Value::String(k)) if !k.is_empty() => {
            return Err(invalid(vec![format!(
                "Length of 'routing_key' is incorrect (should be {ROUTING_KEY_CHARS} characters)"
            )]));
        }
        _ => return Err(invalid(vec!["'routing_key' is missing or blank".into()])),
    };
    Ok((v, key))
}

fn masked_body(v: &Value) -> Value {
    let mut body = v.clone();
    if let Some(k) = body.get("routing_key").and_then(Value::as_str).map(mask) {
        body["routing_key"] = Value::String(k);
    }
    body
}

/// `POST /v2/enqueue`.
pub(crate) fn enqueue(req: &SimRequest, max_bytes: usize, now: Timestamp, state: &mut PagingState) -> SimResponse {
    let (v, routing_key) = match parse(req, max_bytes) {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let mut errors: Vec<String> = Vec::new();
    let action = text(&v, "event_action").unwrap_or_default().to_owned();
    if !["trigger", "acknowledge", "resolve"].contains(&action.as_str()) {
        errors.push("'event_action' is invalid (must be one of 'trigger', 'acknowledge' or 'resolve')".into());
    }
    let dedup_key = match v.get("dedup_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => {
            errors.push("'dedup_key' must be a string".into());
            None
        }
    };
    if dedup_key.as_ref().is_some_and(|k| k.chars().count() > MAX_DEDUP_KEY) {
        errors.push(format!("Length of 'dedup_key' is incorrect (should be at most {MAX_DEDUP_KEY} characters)"));
    }
    if action != "trigger" && !action.is_empty() && dedup_key.as_deref().is_none_or(str::is_empty) {
        errors.push(format!("'dedup_key' is required for event_action '{action}'"));
    }
    let payload = v.get("payload").cloned().unwrap_or(Value::Null);
    if action == "trigger" {
        if !payload.is_object() {
            errors.push("'payload' is missing or not an object".into());
        } else {
            match text(&payload, "summary") {
                Some(s) if !s.trim().is_empty() => {
                    if s.chars().count() > MAX_SUMMARY {
                        errors.push(format!(
                            "Length of 'payload.summary' is incorrect (should be at most {MAX_SUMMARY} characters)"
                        ));
                    }
                }
                _ => errors.push("'payload.summary' is missing or blank".into()),
            }
            if text(&payload, "source").is_none_or(|s| s.trim().is_empty()) {
                errors.push("'payload.source' is missing or blank".into());
            }
            match text(&payload, "severity") {
                Some(s) if SEVERITIES.contains(&s) => {}
                _ => errors.push(
                    "'payload.severity' is invalid (must be one of 'critical', 'error', 'warning' or 'info')".into(),
                ),
            }
            if let Some(ts) = text(&payload, "timestamp")
                && ts.parse::<Timestamp>().is_err()
            {
                errors.push("'payload.timestamp' is not a valid ISO 8601 timestamp".into());
            }
        }
    }
    if !errors.is_empty() {
        return invalid(errors);
    }
    let dedup_key = dedup_key.filter(|k| !k.is_empty()).unwrap_or_else(|| Uuid::new_v4().simple().to_string());
    let open = state
        .alerts
        .iter_mut()
        .rev()
        .find(|a| a.routing_key == routing_key && a.dedup_key == dedup_key && a.status != AlertStatus::Resolved);
    let mut event = PagerDutyEvent {
        at: now,
        action: action.clone(),
        dedup_key: dedup_key.clone(),
        outcome: EventOutcome::Dropped,
        body: masked_body(&v),
    };
    match (action.as_str(), open) {
        ("trigger", Some(alert)) => {
            event.outcome = EventOutcome::Merged;
            alert.events.push(event);
        }
        ("trigger", None) => {
            event.outcome = EventOutcome::Opened;
            let number = state.alerts.len() as u64 + 1;
            state.alerts.push(Alert {
                number,
                routing_key,
                dedup_key: dedup_key.clone(),
                status: AlertStatus::Triggered,
                summary: opt_text(&payload, "summary").unwrap_or_default(),
                severity: opt_text(&payload, "severity").unwrap_or_default(),
                source: opt_text(&payload, "source").unwrap_or_default(),
                component: opt_text(&payload, "component"),
                group: opt_text(&payload, "group"),
                class: opt_text(&payload, "class"),
                custom_details: payload.get("custom_details").cloned().unwrap_or(Value::Null),
                opened_at: now,
                acknowledged_at: None,
                resolved_at: None,
                events: vec![event],
            });
        }
        ("acknowledge", Some(alert)) => {
            if alert.status == AlertStatus::Triggered {
                alert.status = AlertStatus::Acknowledged;
                alert.acknowledged_at = Some(now);
                event.outcome = EventOutcome::Acknowledged;
            } else {
                event.outcome = EventOutcome::AlreadyAcknowledged;
            }
            alert.events.push(event);
        }
        ("resolve", Some(alert)) => {
            alert.status = AlertStatus::Resolved;
            alert.resolved_at = Some(now);
            event.outcome = EventOutcome::Resolved;
            alert.events.push(event);
        }
        _ => state.dropped.push(event),
    }
    respond(202, &json!({ "status": "success", "message": "Event processed", "dedup_key": dedup_key }))
}

/// `POST /v2/change/enqueue`: a routing key and a payload with a summary.
pub(crate) fn change(req: &SimRequest, max_bytes: usize, now: Timestamp, state: &mut PagingState) -> SimResponse {
    let (v, _key) = match parse(req, max_bytes) {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let summary = v.get("payload").and_then(|p| text(p, "summary")).unwrap_or_default();
    if summary.trim().is_empty() {
        return invalid(vec!["'payload.summary' is missing or blank".into()]);
    }
    if summary.chars().count() > MAX_SUMMARY {
        return invalid(vec![format!(
            "Length of 'payload.summary' is incorrect (should be at most {MAX_SUMMARY} characters)"
        )]);
    }
    state.change_events.push(ChangeEvent { at: now, summary: summary.to_owned(), body: masked_body(&v) });
    respond(202, &json!({ "status": "success", "message": "Change event processed" }))
}
