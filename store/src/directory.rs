//! What grantline learns about people and groups from the directory, beyond one request:
//! the namespace-level log of offboardings and drift (`audit:directory`, a capped stream of
//! typed events), its counters (`directory:stats`, read by `/metrics`), the stored delta link
//! of the users delta query, and the recorded pre-existing members of governed groups.

use std::collections::HashMap;

use grantline_queue::Queue;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// How many directory events are kept (the oldest are trimmed).
pub const KEEP: usize = 100_000;

/// The stream of directory events (relative to the namespace).
pub const LOG: &str = "audit:directory";
/// HASH of counters: `offboarded`, `offboard_removals`, `offboard_cancels`, `out_of_band`,
/// `unexplained`, `delta_pages`, `delta_resyncs`.
pub const STATS: &str = "directory:stats";
/// The `@odata.deltaLink` of the last complete users delta round.
pub const DELTA_LINK: &str = "directory:delta:link";
/// The `@odata.nextLink` of a round in progress (a retried sweep continues from it).
pub const DELTA_NEXT: &str = "directory:delta:next";

/// The members of a governed group recorded as there before grantline (relative key).
pub fn baseline_key(group_id: &str) -> String {
    format!("drift:baseline:{}", group_id.to_ascii_lowercase())
}

/// SET of governed groups whose baseline was taken.
pub const BASELINED: &str = "drift:baselined";

/// The unexplained members already reported, as `group|user` (reported once, until they leave
/// the group).
pub const REPORTED: &str = "drift:reported";

/// The requests an offboarding of this person already handled (relative key): a later event
/// about the same person does not handle them again.
pub fn handled_key(user_id: &str) -> String {
    format!("offboard:{}:handled", user_id.to_ascii_lowercase())
}

/// One fact about the directory, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DirectoryEvent {
    /// A person was offboarded: the requests whose access is being removed, those cancelled,
    /// and those left for now (being granted right now: handled on the retry).
    Offboarded {
        user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upn: Option<String>,
        /// `leaver`, `account_disabled`, `leave_date_passed`, `deleted`.
        source: String,
        reason: String,
        removed: Vec<String>,
        cancelled: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pending: Vec<String>,
    },
    /// An access grantline granted was gone from the directory though grantline did not remove
    /// it; the request was closed.
    RemovedOutOfBand { request_id: String, access: String },
    /// A member of a governed group that no request and no recorded pre-existing membership
    /// explains. `action` is what the policy says to do about it (`report`, `page`, `remove`;
    /// absent on events recorded before the setting existed: reported only).
    UnexplainedMember {
        group_id: String,
        user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upn: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<String>,
    },
    /// An unexplained member removed because the policy says so (`unexplained_members =
    /// "remove"`), verified gone, with the removal's upstream request id.
    UnexplainedMemberRemoved {
        group_id: String,
        user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upn: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        graph_request_id: Option<String>,
    },
}

impl DirectoryEvent {
    fn counter(&self) -> &'static str {
        match self {
            DirectoryEvent::Offboarded { .. } => "offboarded",
            DirectoryEvent::RemovedOutOfBand { .. } => "out_of_band",
            DirectoryEvent::UnexplainedMember { .. } => "unexplained",
            DirectoryEvent::UnexplainedMemberRemoved { .. } => "unexplained_removed",
        }
    }
}

/// A directory event as stored, with when and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryRecord {
    pub at_ms: u64,
    pub actor: String,
    #[serde(flatten)]
    pub event: DirectoryEvent,
}

/// Appends an event to the directory log and counts it.
pub async fn record(queue: &Queue, actor: &str, at_ms: u64, event: DirectoryEvent) -> Result<(), StoreError> {
    let counter = event.counter();
    let rec = DirectoryRecord { at_ms, actor: actor.to_owned(), event };
    let json = serde_json::to_string(&rec).map_err(|e| StoreError::Encode(e.to_string()))?;
    tracing::warn!(event = counter, record = %json, "directory event");
    let ns = queue.namespace();
    let mut conn = queue.connection();
    let _: () = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(ns.key(LOG))
        .arg("MAXLEN")
        .arg("~")
        .arg(KEEP)
        .arg("*")
        .arg("event")
        .arg(json)
        .ignore()
        .hincr(ns.key(STATS), counter, 1)
        .ignore()
        .query_async(&mut conn)
        .await?;
    Ok(())
}

/// Adds to a counter of [`STATS`].
pub async fn count(queue: &Queue, counter: &str, by: i64) -> Result<(), StoreError> {
    let mut conn = queue.connection();
    let _: i64 = conn.hincr(queue.namespace().key(STATS), counter, by).await?;
    Ok(())
}

/// The counters of [`STATS`].
pub async fn stats(queue: &Queue) -> Result<HashMap<String, u64>, StoreError> {
    let mut conn = queue.connection();
    Ok(conn.hgetall(queue.namespace().key(STATS)).await?)
}

/// The most recent directory events, newest first.
pub async fn recent(queue: &Queue, count: usize) -> Result<Vec<DirectoryRecord>, StoreError> {
    let mut conn = queue.connection();
    let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(queue.namespace().key(LOG))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(count)
        .query_async(&mut conn)
        .await?;
    Ok(reply
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("event"))
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_stored_with_their_type() {
        let r = DirectoryRecord {
            at_ms: 1,
            actor: "grantline:reconcile".into(),
            event: DirectoryEvent::UnexplainedMember {
                group_id: "g".into(),
                user_id: "u".into(),
                upn: None,
                action: Some("page".into()),
            },
        };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["type"], "unexplained_member");
        assert_eq!(j["group_id"], "g");
        let back: DirectoryRecord = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.event.counter(), "unexplained");
    }
}
