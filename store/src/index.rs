//! Listing requests: newest first, by state or by ticket, paged.
//!
//! Every request is in `requests` (scored by creation time); every commit that moves a request
//! to another state moves it between the `requests:state:<state>` sets in the same atomic
//! script, so a listing by state never scans records. A ticket number names at most one
//! request (`ticket:<system>:<number>`).

use grantline_queue::Queue;
use grantline_shared::record::{RecordError, RequestRecord};
use grantline_shared::request::{RequestState, keys};
use redis::AsyncCommands;

use crate::StoreError;

/// The longest page a listing returns.
pub const MAX_PAGE: usize = 500;

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub state: Option<RequestState>,
    /// A ticket number (the ServiceNow system).
    pub ticket: Option<String>,
    /// The cursor a previous page returned.
    pub after: Option<String>,
    /// Requests per page (1 to [`MAX_PAGE`]; 0 means 50).
    pub limit: usize,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Listed {
    /// Newest first. A request whose record cannot be read is left out and logged.
    pub requests: Vec<RequestRecord>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

/// Why a cursor is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("after must be a cursor returned by a previous page (\"<created ms>:<request id>\")")]
pub struct BadCursor;

/// Parses a cursor `<created ms>:<request id>`.
pub fn parse_cursor(s: &str) -> Result<(u64, String), BadCursor> {
    let (ms, id) = s.split_once(':').ok_or(BadCursor)?;
    let ms = ms.parse().map_err(|_| BadCursor)?;
    uuid::Uuid::parse_str(id).map_err(|_| BadCursor)?;
    Ok((ms, id.to_owned()))
}

/// The request a ticket number names (the ServiceNow system).
pub async fn by_ticket(queue: &Queue, number: &str) -> Result<Option<String>, StoreError> {
    let mut conn = queue.connection();
    Ok(conn.get(queue.namespace().key(&keys::ticket("servicenow", number.trim()))).await?)
}

/// One page of requests, newest first.
pub async fn list(queue: &Queue, f: &Filter) -> Result<Listed, StoreError> {
    let limit = if f.limit == 0 { 50 } else { f.limit.min(MAX_PAGE) };
    if let Some(t) = &f.ticket {
        let Some(id) = by_ticket(queue, t).await? else {
            return Ok(Listed::default());
        };
        let rec = match crate::find(queue, &id).await? {
            Some(r) if f.state.is_none_or(|s| s == r.state) => vec![r],
            _ => Vec::new(),
        };
        return Ok(Listed { requests: rec, next: None });
    }
    let key = queue.namespace().key(&match f.state {
        Some(s) => keys::by_state(s),
        None => keys::REQUESTS.to_owned(),
    });
    let max = match &f.after {
        Some(c) => {
            let (ms, _) = parse_cursor(c).map_err(|e| StoreError::Encode(e.to_string()))?;
            format!("{ms}")
        }
        None => "+inf".to_owned(),
    };
    let mut conn = queue.connection();
    // one more than a page, plus those at the cursor's own time that precede it
    let raw: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&key)
        .arg(&max)
        .arg("-inf")
        .arg("BYSCORE")
        .arg("REV")
        .arg("LIMIT")
        .arg(0)
        .arg(limit + 1 + 64)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await?;
    let after = f.after.as_deref().and_then(|c| parse_cursor(c).ok());
    let mut ids: Vec<(String, u64)> = raw
        .into_iter()
        .map(|(id, score)| (id, score as u64))
        .filter(|(id, ms)| match &after {
            // ties on the time are ordered by id, descending, as ZRANGE REV returns them
            Some((ams, aid)) => *ms < *ams || (*ms == *ams && id.as_str() < aid.as_str()),
            None => true,
        })
        .collect();
    let more = ids.len() > limit;
    ids.truncate(limit);
    let mut out = Listed::default();
    if more && let Some((id, ms)) = ids.last() {
        out.next = Some(format!("{ms}:{id}"));
    }
    if ids.is_empty() {
        return Ok(out);
    }
    let mut pipe = redis::pipe();
    for (id, _) in &ids {
        pipe.hgetall(queue.namespace().key(&keys::request(id)));
    }
    let hashes: Vec<std::collections::HashMap<String, String>> = pipe.query_async(&mut conn).await?;
    for ((id, _), h) in ids.iter().zip(hashes) {
        match RequestRecord::from_hash(id, &h) {
            Ok(r) => out.requests.push(r),
            Err(RecordError::NotFound { .. }) => {}
            Err(e) => tracing::warn!(request_id = %id, error = %e, "a listed request cannot be read"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_name_a_time_and_a_request() {
        let id = "0b8f6a52-9b8e-4c1f-a1a0-3b5f2d9c1e7a";
        assert_eq!(parse_cursor(&format!("17:{id}")), Ok((17, id.to_owned())));
        assert_eq!(parse_cursor("17"), Err(BadCursor));
        assert_eq!(parse_cursor("x:0b8f6a52-9b8e-4c1f-a1a0-3b5f2d9c1e7a"), Err(BadCursor));
        assert_eq!(parse_cursor("17:not-a-uuid"), Err(BadCursor));
    }
}
