//! The generic signed alert webhook (our own outbound contract, for on-call tools without a
//! dedicated connector).
//!
//! `POST <url>` with `Content-Type: application/json` and the body
//! `{"event":"alert.trigger"|"alert.resolve","dedup_key","severity","summary","details","occurred_at"}`,
//! plus three headers:
//!
//! - `X-Signature: sha256=<hex>`: HMAC-SHA256, keyed with the shared secret, of the raw body
//!   bytes exactly as sent ([`sign`]);
//! - `X-Timestamp`: the sending time in Unix seconds; receivers refuse one more than five
//!   minutes old;
//! - `X-Event-Id`: the idempotency key; a receiver answers a repeated id with 2xx again.
//!
//! Classification: 2xx is success; 429 and 5xx are Transient with `Retry-After` as the floor;
//! other statuses are Permanent (`webhook.bad_request`, `webhook.unauthorized`, ...). The URL
//! (which may carry a token) and the secret are never logged: spans name only the host.

mod client;

pub use crate::pagerduty::Severity;
pub use client::{AlertEvent, AlertEventKind, AlertWebhookClient, WebhookError, sign};
