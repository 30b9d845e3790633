//! The security log of the approval doors. An answer refused before the door could say who
//! sent it (a Teams token that does not verify, a Slack signature that does not match or is
//! replayed, a signed link that was tampered with, reused or has expired) is not written on a
//! request's hash-chained timeline, which only proven parties and grantline itself write: it
//! goes to one capped stream, `audit:doors`, with what it claimed to be.

use grantline_queue::Queue;
use grantline_shared::request::keys;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// How many door refusals are kept (the oldest are trimmed).
pub const KEEP: usize = 100_000;

/// One refused attempt at a door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoorRefusal {
    /// `teams`, `slack`, `web`.
    pub door: String,
    /// The stable code of the refusal (`auth.bad_token`, `auth.bad_signature`, `auth.replayed`,
    /// `link.tampered`, `link.used`, `link.expired`).
    pub reason: String,
    /// The identity the attempt claimed (a Teams `aadObjectId`, a Slack user id), unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed: Option<String>,
    /// The request it named, unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// More for the reader (which check failed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    pub at_ms: u64,
}

fn clip(s: &str) -> String {
    s.chars().take(256).collect()
}

/// Appends a refusal to the doors' log.
pub async fn refused(queue: &Queue, r: &DoorRefusal) -> Result<(), StoreError> {
    let r = DoorRefusal {
        door: clip(&r.door),
        reason: clip(&r.reason),
        claimed: r.claimed.as_deref().map(clip),
        request_id: r.request_id.as_deref().map(clip),
        detail: clip(&r.detail),
        at_ms: r.at_ms,
    };
    let json = serde_json::to_string(&r).map_err(|e| StoreError::Encode(e.to_string()))?;
    tracing::warn!(door = %r.door, reason = %r.reason, claimed = ?r.claimed, request_id = ?r.request_id, "door refused an answer");
    let mut conn = queue.connection();
    let _: String = redis::cmd("XADD")
        .arg(queue.namespace().key(keys::DOOR_REFUSALS))
        .arg("MAXLEN")
        .arg("~")
        .arg(KEEP)
        .arg("*")
        .arg("refusal")
        .arg(json)
        .query_async(&mut conn)
        .await?;
    Ok(())
}

/// The most recent refusals, newest first.
pub async fn recent(queue: &Queue, count: usize) -> Result<Vec<DoorRefusal>, StoreError> {
    let mut conn = queue.connection();
    let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(queue.namespace().key(keys::DOOR_REFUSALS))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(count)
        .query_async(&mut conn)
        .await?;
    Ok(reply
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("refusal"))
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect())
}
