//! Reading a request's audit trail: the hash-chained stream the commits append to.

use grantline_queue::Queue;
use grantline_shared::audit::AuditRecord;
use grantline_shared::request::keys;
use redis::AsyncCommands;

use crate::StoreError;

/// One stored entry of a trail, exactly as written: the record's JSON text, the hash it
/// chains from and its own hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailEntry {
    /// The stream id (`<ms>-<seq>`).
    pub id: String,
    pub record: String,
    pub prev: String,
    pub hash: String,
}

impl TrailEntry {
    /// The parsed record.
    pub fn parse(&self) -> Result<AuditRecord, StoreError> {
        serde_json::from_str(&self.record).map_err(|e| StoreError::Encode(format!("audit entry {}: {e}", self.id)))
    }

    /// (record, prev, hash), the shape `audit::verify` takes.
    pub fn triple(&self) -> (String, String, String) {
        (self.record.clone(), self.prev.clone(), self.hash.clone())
    }
}

/// Every entry of a request's trail, oldest first (empty when the request has none).
pub async fn entries(queue: &Queue, request_id: &str) -> Result<Vec<TrailEntry>, StoreError> {
    let mut conn = queue.connection();
    let reply: redis::streams::StreamRangeReply =
        conn.xrange_all(queue.namespace().key(&keys::audit(request_id))).await?;
    Ok(reply
        .ids
        .into_iter()
        .map(|e| {
            let get = |k: &str| e.get::<String>(k).unwrap_or_default();
            TrailEntry { record: get("record"), prev: get("prev"), hash: get("hash"), id: e.id }
        })
        .collect())
}

/// The parsed records of a request's trail, oldest first.
pub async fn records(queue: &Queue, request_id: &str) -> Result<Vec<AuditRecord>, StoreError> {
    entries(queue, request_id).await?.iter().map(TrailEntry::parse).collect()
}
