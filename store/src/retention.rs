//! Retention: what Redis keeps of a request once it is finished (denied, rejected, expired,
//! removed, rolled back or cancelled: it holds nothing and will grant nothing).
//!
//! Two steps, each on its own clock:
//!
//! 1. **Compaction** ([`compact`]), some time after the request finished: the record keeps its
//!    summary (state, ticket, times, target, reason, trace and the head of its audit chain) and
//!    drops what the audit trail already holds in full (the directory facts, the decision with
//!    its checks, the receipts, approvals, notices). Listings, `requests show` and
//!    `audit verify` keep working; the trail is untouched.
//! 2. **Archive, then trim** ([`archive_and_trim`]), after the audit retention: the trail is
//!    verified against the record's head, written to an archive ([`ArchiveLine`]: every record
//!    exactly as stored, then the trail's head), the archive is flushed to disk, and only then are
//!    the record, its trail, its ticket keys and its index entries deleted. A trail whose chain
//!    does not verify is never trimmed.
//!
//! A request that still holds access (active, a permanent grant) is never finished, so
//! retention never touches it. Both steps are idempotent and bounded per call.

use std::collections::HashMap;
use std::io::Write as _;

use grantline_queue::{CommitOutcome, Guard, Handoff, Queue, Write, WriteCmd};
use grantline_shared::audit;
use grantline_shared::record::fields;
use grantline_shared::request::{RequestState, keys};
use redis::AsyncCommands;

use crate::{StoreError, person};

/// The fields a compacted record keeps.
pub const KEPT: [&str; 11] = [
    fields::STATE,
    fields::TICKET,
    fields::TRACEPARENT,
    fields::TRACE_ID,
    fields::CREATED_MS,
    fields::UPDATED_MS,
    fields::AUDIT_HEAD,
    fields::TARGET,
    fields::REASON,
    fields::END_MS,
    fields::COMPACTED_MS,
];

/// The finished states (retention's scope).
fn finished(state: RequestState) -> bool {
    !person::indexed(state)
}

/// Adds to [`keys::FINISHED`] the finished requests created before `created_before_ms` that it
/// does not hold yet (requests that finished before the set existed), scored by their last
/// update. Returns how many it added (at most `limit` per state).
pub async fn backfill(queue: &Queue, created_before_ms: u64, limit: usize) -> Result<usize, StoreError> {
    let ns = queue.namespace();
    let mut conn = queue.connection();
    let mut added = 0;
    for state in RequestState::ALL.into_iter().filter(|s| finished(*s)) {
        let ids: Vec<String> = conn
            .zrangebyscore_limit(ns.key(&keys::by_state(state)), "-inf", created_before_ms, 0, limit as isize)
            .await?;
        for id in ids {
            let (in_finished, in_compacted): (Option<f64>, Option<f64>) = redis::pipe()
                .zscore(ns.key(keys::FINISHED), &id)
                .zscore(ns.key(keys::COMPACTED), &id)
                .query_async(&mut conn)
                .await?;
            if in_finished.is_some() || in_compacted.is_some() {
                continue;
            }
            let updated: Option<u64> = conn.hget(ns.key(&keys::request(&id)), fields::UPDATED_MS).await?;
            if let Some(at) = updated {
                let _: () = conn.zadd(ns.key(keys::FINISHED), &id, at).await?;
                added += 1;
            }
        }
    }
    Ok(added)
}

/// Compacts up to `limit` records of requests that finished before `finished_before_ms`.
/// Returns how many it compacted.
pub async fn compact(queue: &Queue, finished_before_ms: u64, now_ms: u64, limit: usize) -> Result<usize, StoreError> {
    let ns = queue.namespace();
    let mut conn = queue.connection();
    let due: Vec<(String, u64)> = conn
        .zrangebyscore_limit_withscores(ns.key(keys::FINISHED), "-inf", finished_before_ms, 0, limit as isize)
        .await?;
    let mut compacted = 0;
    for (id, finished_ms) in due {
        let raw: HashMap<String, String> = conn.hgetall(ns.key(&keys::request(&id))).await?;
        let state = raw.get(fields::STATE).and_then(|s| RequestState::parse(s));
        let (Some(state), Some(head)) = (state, raw.get(fields::AUDIT_HEAD)) else {
            // no record (trimmed by hand, or never complete): nothing to compact
            let _: () = conn.zrem(ns.key(keys::FINISHED), &id).await?;
            continue;
        };
        if !finished(state) {
            let _: () = conn.zrem(ns.key(keys::FINISHED), &id).await?;
            continue;
        }
        let dropped: Vec<&str> = raw.keys().map(String::as_str).filter(|f| !KEPT.contains(f)).collect();
        let mut h = Handoff::done()
            .guard(Guard::FieldEquals {
                key: keys::request(&id),
                field: fields::AUDIT_HEAD.into(),
                value: head.clone(),
            })
            .write(Write::hset(keys::request(&id), [(fields::COMPACTED_MS, now_ms.to_string())]))
            .write(Write::new(WriteCmd::ZRem, keys::FINISHED, [id.clone()]))
            .write(Write::new(WriteCmd::ZAdd, keys::COMPACTED, [finished_ms.to_string(), id.clone()]));
        if !dropped.is_empty() {
            h = h.write(Write::new(WriteCmd::HDel, keys::request(&id), dropped));
        }
        if let CommitOutcome::Applied { .. } = queue.commit(h).await? {
            compacted += 1;
        }
    }
    Ok(compacted)
}

/// What one [`archive_and_trim`] call did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Trimmed {
    /// Requests whose trail went to the archive and which are gone from Redis.
    pub requests: usize,
    /// Audit records written to the archive.
    pub records: usize,
    /// Requests left alone because their chain did not verify (each logged).
    pub broken: Vec<String>,
}

/// Archives to `archive` and then deletes up to `limit` requests that finished before
/// `finished_before_ms`: their trails are written first (as `audit export` lines), then
/// `flush` must make the archive durable, and only then is anything deleted.
pub async fn archive_and_trim<W: std::io::Write>(
    queue: &Queue,
    finished_before_ms: u64,
    limit: usize,
    archive: &mut W,
    flush: impl FnOnce(&mut W) -> std::io::Result<()>,
) -> Result<Trimmed, StoreError> {
    let ns = queue.namespace();
    let mut conn = queue.connection();
    let mut due: Vec<String> = Vec::new();
    for set in [keys::COMPACTED, keys::FINISHED] {
        let left = limit.saturating_sub(due.len());
        if left == 0 {
            break;
        }
        let ids: Vec<String> =
            conn.zrangebyscore_limit(ns.key(set), "-inf", finished_before_ms, 0, left as isize).await?;
        due.extend(ids);
    }
    let io = |e: std::io::Error| StoreError::Encode(format!("writing the audit archive: {e}"));
    let mut out = Trimmed::default();
    let mut ready = Vec::new();
    for id in due {
        let raw: HashMap<String, String> = conn.hgetall(ns.key(&keys::request(&id))).await?;
        let state = raw.get(fields::STATE).and_then(|s| RequestState::parse(s));
        if state.is_some_and(|s| !finished(s)) {
            // it moved on (an operator's action): retention starts again when it finishes
            let _: () = redis::pipe()
                .zrem(ns.key(keys::FINISHED), &id)
                .zrem(ns.key(keys::COMPACTED), &id)
                .query_async(&mut conn)
                .await?;
            continue;
        }
        let entries = crate::trail::entries(queue, &id).await?;
        let head = raw.get(fields::AUDIT_HEAD).cloned().unwrap_or_default();
        let triples: Vec<_> = entries.iter().map(crate::trail::TrailEntry::triple).collect();
        if !raw.is_empty() || !entries.is_empty() {
            let v = audit::verify(&triples, &head);
            if let Some(at) = v.broken_at {
                tracing::error!(
                    request_id = %id,
                    record = at,
                    reason = v.reason.as_deref().unwrap_or(""),
                    "audit chain does not verify; this trail is kept, not archived"
                );
                out.broken.push(id);
                continue;
            }
        }
        for e in &entries {
            let line = ArchiveLine::Record {
                request_id: id.clone(),
                record: e.record.clone(),
                prev: e.prev.clone(),
                hash: e.hash.clone(),
            };
            serde_json::to_writer(&mut *archive, &line).map_err(|err| StoreError::Encode(err.to_string()))?;
            archive.write_all(b"\n").map_err(io)?;
            out.records += 1;
        }
        let end = ArchiveLine::End {
            request_id: id.clone(),
            head: head.clone(),
            records: entries.len(),
            state: state.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            ticket: raw
                .get(fields::TICKET)
                .and_then(|t| serde_json::from_str::<grantline_shared::request::TicketRef>(t).ok())
                .map(|t| t.number)
                .unwrap_or_default(),
        };
        serde_json::to_writer(&mut *archive, &end).map_err(|err| StoreError::Encode(err.to_string()))?;
        archive.write_all(b"\n").map_err(io)?;
        ready.push((id, raw, head));
    }
    if ready.is_empty() {
        return Ok(out);
    }
    flush(archive).map_err(io)?;
    for (id, raw, head) in ready {
        let mut h = Handoff::done()
            .write(Write::new(WriteCmd::Del, keys::request(&id), Vec::<String>::new()))
            .write(Write::new(WriteCmd::Del, keys::audit(&id), Vec::<String>::new()));
        for set in [keys::REQUESTS.to_owned(), keys::FINISHED.to_owned(), keys::COMPACTED.to_owned()]
            .into_iter()
            .chain(RequestState::ALL.into_iter().filter(|s| finished(*s)).map(keys::by_state))
        {
            h = h.write(Write::new(WriteCmd::ZRem, set, [id.clone()]));
        }
        if !head.is_empty() {
            // nothing was appended since the archive was written
            h = h.guard(Guard::FieldEquals { key: keys::request(&id), field: fields::AUDIT_HEAD.into(), value: head });
        }
        if let Some(ticket) =
            raw.get(fields::TICKET).and_then(|t| serde_json::from_str::<grantline_shared::request::TicketRef>(t).ok())
        {
            for key in [keys::ticket(&ticket.system, &ticket.number), keys::ticket_id(&ticket.system, &ticket.sys_id)] {
                let points_to: Option<String> = conn.get(ns.key(&key)).await?;
                if points_to.as_deref() == Some(id.as_str()) {
                    h = h.write(Write::new(WriteCmd::Del, key, Vec::<String>::new()));
                }
            }
        }
        if let CommitOutcome::Applied { .. } = queue.commit(h).await? {
            out.requests += 1;
        }
    }
    Ok(out)
}

/// One line of an archive: every record of a trail exactly as stored (its JSON text, the hash
/// it chains from, its own hash), then the trail's end (the head the record held), so the file
/// proves offline that nothing was edited, dropped or cut off ([`verify_archive`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
pub enum ArchiveLine {
    Record { request_id: String, record: String, prev: String, hash: String },
    End { request_id: String, head: String, records: usize, state: String, ticket: String },
}

/// (record, prev, hash) of one stored entry.
type Triple = (String, String, String);

/// What [`verify_archive`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArchiveCheck {
    /// Trails whose chain verified to their head.
    pub trails: usize,
    pub records: usize,
    /// Line numbers (1-based) and what is wrong there.
    pub problems: Vec<(usize, String)>,
}

/// Verifies an archive: each trail chains from the genesis, every hash matches its record, the
/// end line names the last hash and the count, and no trail is left without its end.
pub fn verify_archive(reader: impl std::io::BufRead) -> std::io::Result<ArchiveCheck> {
    let mut check = ArchiveCheck::default();
    // per trail not yet ended: the line it began on, and its (record, prev, hash) entries
    let mut open: HashMap<String, (usize, Vec<Triple>)> = HashMap::new();
    for (i, line) in reader.lines().enumerate() {
        let (n, line) = (i + 1, line?);
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ArchiveLine>(&line) {
            Err(e) => check.problems.push((n, format!("not an archive line: {e}"))),
            Ok(ArchiveLine::Record { request_id, record, prev, hash }) => {
                open.entry(request_id).or_insert_with(|| (n, Vec::new())).1.push((record, prev, hash));
            }
            Ok(ArchiveLine::End { request_id, head, records, .. }) => {
                let (_, entries) = open.remove(&request_id).unwrap_or_default();
                let v = audit::verify(&entries, &head);
                if let Some(at) = v.broken_at {
                    check.problems.push((n, format!("{request_id}: record {at}: {}", v.reason.unwrap_or_default())));
                } else if entries.len() != records {
                    check
                        .problems
                        .push((n, format!("{request_id}: {} records, the end says {records}", entries.len())));
                } else {
                    check.trails += 1;
                    check.records += entries.len();
                }
            }
        }
    }
    for (id, (n, _)) in open {
        check.problems.push((n, format!("{id}: the trail has no end line (the archive was cut off)")));
    }
    check.problems.sort();
    Ok(check)
}

/// An archive file flushed to disk (data and metadata).
pub fn sync_file(f: &mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()> {
    f.flush()?;
    f.get_ref().sync_all()
}
