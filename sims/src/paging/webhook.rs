//! The receiver of our generic signed alert webhook: `POST /webhook`.
//!
//! Checks, in order: `X-Signature` (`sha256=` + hex HMAC-SHA256 of the raw body with the shared
//! secret; missing or wrong is 401), `X-Timestamp` (Unix seconds; missing, unparseable or more
//! than the allowed skew from the simulated clock is 400), `X-Event-Id` (missing is 400; an id
//! already accepted is answered 200 `{"status":"duplicate"}` and counted, not recorded again),
//! then the body (`event` `alert.trigger` or `alert.resolve`, non-empty `dedup_key`, `severity`
//! one of `critical|error|warning|info`, string `summary`, RFC 3339 `occurred_at`, any
//! `details`; otherwise 400). An accepted delivery is answered 202 `{"status":"accepted"}`.

use std::time::Duration;

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::PagingState;
use crate::server::{SimRequest, SimResponse};

/// A delivery the receiver accepted.
#[derive(Clone, Debug, Serialize)]
pub struct AlertDelivery {
    /// Simulated time of the first delivery.
    pub at: Timestamp,
    pub event_id: String,
    /// The parsed body.
    pub event: Value,
    /// The body exactly as received.
    pub raw_body: String,
    /// `X-Timestamp` as sent.
    pub timestamp: i64,
    /// How many times the same event id arrived again (each answered 200).
    pub duplicates: u32,
}

impl AlertDelivery {
    /// `alert.trigger` or `alert.resolve`.
    pub fn kind(&self) -> &str {
        self.event.get("event").and_then(Value::as_str).unwrap_or_default()
    }

    pub fn dedup_key(&self) -> &str {
        self.event.get("dedup_key").and_then(Value::as_str).unwrap_or_default()
    }
}

/// A request the receiver refused.
#[derive(Clone, Debug, Serialize)]
pub struct RejectedDelivery {
    pub at: Timestamp,
    pub status: u16,
    /// The `error` code answered (`invalid_signature`, `stale_timestamp`, ...).
    pub reason: String,
    pub event_id: Option<String>,
}

pub(crate) fn error(status: u16, code: &str, message: &str) -> SimResponse {
    SimResponse::json_bytes(status, "application/json", json!({ "error": code, "message": message }).to_string())
}

/// The receiver's bodies for scripted fault statuses.
pub(crate) fn fault_body(status: u16) -> SimResponse {
    let code = match status {
        429 => "rate_limited",
        500..=599 => "server_error",
        _ => "request_failed",
    };
    error(status, code, "scripted fault")
}

fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_part) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(provided) = hex::decode(hex_part) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&provided).is_ok()
}

fn check_body(v: &Value) -> Result<(), String> {
    match v.get("event").and_then(Value::as_str) {
        Some("alert.trigger" | "alert.resolve") => {}
        _ => return Err("event must be alert.trigger or alert.resolve".into()),
    }
    if v.get("dedup_key").and_then(Value::as_str).is_none_or(|k| k.trim().is_empty()) {
        return Err("dedup_key must be a non-empty string".into());
    }
    match v.get("severity").and_then(Value::as_str) {
        Some("critical" | "error" | "warning" | "info") => {}
        _ => return Err("severity must be critical, error, warning or info".into()),
    }
    if !v.get("summary").is_some_and(Value::is_string) {
        return Err("summary must be a string".into());
    }
    if v.get("occurred_at").and_then(Value::as_str).and_then(|s| s.parse::<Timestamp>().ok()).is_none() {
        return Err("occurred_at must be an RFC 3339 timestamp".into());
    }
    if v.get("details").is_none() {
        return Err("details is required".into());
    }
    Ok(())
}

/// `POST /webhook`.
pub(crate) fn receive(
    req: &SimRequest,
    secret: &str,
    max_skew: Duration,
    now: Timestamp,
    state: &mut PagingState,
) -> SimResponse {
    let event_id = req.header("x-event-id").map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let mut reject = |status: u16, code: &str, message: &str| {
        state.rejected.push(RejectedDelivery { at: now, status, reason: code.to_owned(), event_id: event_id.clone() });
        error(status, code, message)
    };
    let Some(signature) = req.header("x-signature").filter(|s| !s.trim().is_empty()) else {
        return reject(401, "missing_signature", "X-Signature is required");
    };
    if !verify(secret, &req.body, signature) {
        return reject(401, "invalid_signature", "X-Signature does not match the body");
    }
    let Some(sent) = req.header("x-timestamp").and_then(|t| t.trim().parse::<i64>().ok()) else {
        return reject(400, "invalid_timestamp", "X-Timestamp must be Unix seconds");
    };
    if u128::from(now.as_second().abs_diff(sent)) * 1000 > max_skew.as_millis() {
        return reject(400, "stale_timestamp", "X-Timestamp is outside the allowed window");
    }
    let Some(id) = event_id.clone() else {
        return reject(400, "missing_event_id", "X-Event-Id is required");
    };
    if let Some(existing) = state.deliveries.iter_mut().find(|d| d.event_id == id) {
        existing.duplicates += 1;
        return SimResponse::json_bytes(200, "application/json", json!({ "status": "duplicate" }).to_string());
    }
    let parsed: Value = match serde_json::from_slice(&req.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return reject(400, "invalid_event", "the body is not a JSON object"),
    };
    if let Err(message) = check_body(&parsed) {
        return reject(400, "invalid_event", &message);
    }
    state.deliveries.push(AlertDelivery {
        at: now,
        event_id: id,
        event: parsed,
        raw_body: String::from_utf8_lossy(&req.body).into_owned(),
        timestamp: sent,
        duplicates: 0,
    });
    SimResponse::json_bytes(202, "application/json", json!({ "status": "accepted" }).to_string())
}
