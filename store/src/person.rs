//! The person index: for each person (the directory object id of whom a request is for), the
//! requests that hold access or may still be granted, so offboarding and drift read one small
//! set instead of every request.
//!
//! `person:{user id}:requests` is a ZSET of request ids scored by creation time. A request
//! enters it in the commit that first records its requester (validate) and leaves it in the
//! commit that moves it to a state that holds nothing and will grant nothing (denied,
//! rejected, expired, removed, rolled back, cancelled). Both writes are part of
//! [`crate::Commit`]'s one atomic script, so the index never disagrees with the records. A
//! request not yet validated names nobody yet: validate reads the directory itself, and the
//! policy refuses a disabled account or one past its leave date.
//!
//! Requests recorded before the index existed are added by [`ensure_backfilled`], which the
//! readers of the index (offboarding, the leaver sweep, reconciliation) call first: once per
//! namespace, it walks the requests of every indexed state and adds each one that names its
//! requester, in a script that adds it only while the record is still in the state read (a
//! commit that ended it meanwhile has already taken it out).

use grantline_queue::{Queue, Write, WriteCmd};
use grantline_shared::policy::UserFacts;
use grantline_shared::record::{FieldValue, RequestRecord, Update, fields};
use grantline_shared::request::RequestState;
use redis::AsyncCommands;

use crate::StoreError;

/// The person index of one directory object id (relative to the namespace).
pub fn key(user_id: &str) -> String {
    format!("person:{}:requests", user_id.to_ascii_lowercase())
}

/// Whether a request in `state` belongs in its person's index: it holds access, or may still be
/// granted, or is being handled (failed, compensating).
pub fn indexed(state: RequestState) -> bool {
    use RequestState as S;
    !matches!(state, S::Denied | S::Rejected | S::Expired | S::Removed | S::RolledBack | S::Cancelled)
}

/// The requester a commit leaves on the record: the one it sets, else the one read.
fn requester_id(rec: &RequestRecord, update: &Update) -> Option<String> {
    match update.get(fields::REQUESTER) {
        Some(text) => UserFacts::decode(text).ok().map(|u| u.id),
        None => rec.requester.as_ref().map(|u| u.id.clone()),
    }
    .filter(|id| !id.is_empty())
}

/// The writes that keep the index true for a commit on `rec` that leaves it in `new_state` with
/// `update` applied. Nothing when neither the state nor the requester changes.
pub fn index_writes(rec: &RequestRecord, new_state: RequestState, update: &Update) -> Vec<Write> {
    let Some(user) = requester_id(rec, update) else {
        return Vec::new();
    };
    let requester_set = update.get(fields::REQUESTER).is_some();
    if new_state == rec.state && !requester_set {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Some(old) = rec.requester.as_ref().map(|u| u.id.as_str()).filter(|o| !o.eq_ignore_ascii_case(&user))
        && !old.is_empty()
    {
        out.push(Write::new(WriteCmd::ZRem, key(old), [rec.id.clone()]));
    }
    out.push(if indexed(new_state) {
        Write::new(WriteCmd::ZAdd, key(&user), [rec.created_ms.to_string(), rec.id.clone()])
    } else {
        Write::new(WriteCmd::ZRem, key(&user), [rec.id.clone()])
    });
    out
}

/// The requests of one person in the index, oldest first (at most `limit`). A record that
/// cannot be read is left out and logged.
pub async fn requests(queue: &Queue, user_id: &str, limit: usize) -> Result<Vec<RequestRecord>, StoreError> {
    let mut conn = queue.connection();
    let ids: Vec<String> =
        conn.zrange(queue.namespace().key(&key(user_id)), 0, isize::try_from(limit).unwrap_or(isize::MAX) - 1).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match crate::find(queue, &id).await {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(StoreError::Record(e)) => {
                tracing::warn!(request_id = %id, error = %e, "an indexed request cannot be read")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Set (relative to the namespace) once every request recorded before the index existed is in
/// it; its value is when the backfill finished (ms).
pub const BACKFILLED: &str = "person:backfilled";

/// Adds `id` to its person's index only while its record is in `state`.
const ADD_IF_STATE: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return -1 end
return redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[4])
";

/// How many request ids one backfill read takes from a state's listing.
const BACKFILL_PAGE: isize = 500;

/// Adds to the index every request of an indexed state that names its requester and is not in
/// it yet. Returns how many it added. Idempotent; safe beside running commits.
pub async fn backfill(queue: &Queue) -> Result<usize, StoreError> {
    use grantline_shared::request::keys;
    let ns = queue.namespace();
    let mut conn = queue.connection();
    let script = redis::Script::new(ADD_IF_STATE);
    let mut added = 0;
    for state in RequestState::ALL.into_iter().filter(|s| indexed(*s)) {
        let listing = ns.key(&keys::by_state(state));
        let mut start: isize = 0;
        loop {
            let ids: Vec<String> = conn.zrange(&listing, start, start + BACKFILL_PAGE - 1).await?;
            for id in &ids {
                let (requester, created): (Option<String>, Option<u64>) = redis::cmd("HMGET")
                    .arg(ns.key(&keys::request(id)))
                    .arg(fields::REQUESTER)
                    .arg(fields::CREATED_MS)
                    .query_async(&mut conn)
                    .await?;
                let Some(user) = requester.and_then(|t| UserFacts::decode(&t).ok()).map(|u| u.id) else { continue };
                if user.is_empty() {
                    continue;
                }
                let n: i64 = script
                    .key(ns.key(&keys::request(id)))
                    .key(ns.key(&key(&user)))
                    .arg(fields::STATE)
                    .arg(state.as_str())
                    .arg(created.unwrap_or(0))
                    .arg(id)
                    .invoke_async(&mut conn)
                    .await?;
                if n > 0 {
                    added += 1;
                }
            }
            if ids.len() < BACKFILL_PAGE as usize {
                break;
            }
            start += BACKFILL_PAGE;
        }
    }
    Ok(added)
}

/// Runs [`backfill`] once per namespace: a no-op (one read) once [`BACKFILLED`] is set.
pub async fn ensure_backfilled(queue: &Queue, now_ms: u64) -> Result<(), StoreError> {
    let done_key = queue.namespace().key(BACKFILLED);
    let mut conn = queue.connection();
    let done: bool = conn.exists(&done_key).await?;
    if done {
        return Ok(());
    }
    let added = backfill(queue).await?;
    let _: () = conn.set(&done_key, now_ms).await?;
    tracing::info!(added, "the person index holds every request recorded before it existed");
    Ok(())
}

/// How many requests the index holds for a person.
pub async fn count(queue: &Queue, user_id: &str) -> Result<usize, StoreError> {
    let mut conn = queue.connection();
    Ok(conn.zcard(queue.namespace().key(&key(user_id))).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use grantline_shared::audit::GENESIS;
    use grantline_shared::request::TicketRef;

    fn facts(id: &str) -> UserFacts {
        serde_json::from_value(serde_json::json!({
            "id": id, "upn": "a@b.c", "user_type": "Member", "account_enabled": true
        }))
        .unwrap()
    }

    fn rec(state: RequestState, requester: Option<&str>) -> RequestRecord {
        let t = TicketRef {
            system: "servicenow".into(),
            table: "sc_req_item".into(),
            sys_id: "a".repeat(32),
            number: "RITM0010001".into(),
        };
        let mut r = RequestRecord::received("r1", t, "", "t", 7, GENESIS);
        r.state = state;
        r.requester = requester.map(facts);
        r
    }

    #[test]
    fn a_request_enters_when_its_requester_is_known_and_leaves_when_it_ends() {
        let r = rec(RequestState::Received, None);
        let w = index_writes(&r, RequestState::Validating, &Update::default().requester(&facts("U1")));
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].cmd, w[0].key.as_str()), (WriteCmd::ZAdd, "person:u1:requests"));
        assert_eq!(w[0].args, ["7", "r1"]);

        let active = rec(RequestState::Active, Some("u1"));
        assert!(index_writes(&active, RequestState::Active, &Update::default()).is_empty(), "no change, no write");
        let w = index_writes(&active, RequestState::Removed, &Update::default());
        assert_eq!((w[0].cmd, w[0].args.as_slice()), (WriteCmd::ZRem, ["r1".to_owned()].as_slice()));
        assert!(indexed(RequestState::Completed), "a permanent grant holds access");
        assert!(!indexed(RequestState::Cancelled));
        assert!(index_writes(&rec(RequestState::Received, None), RequestState::Denied, &Update::default()).is_empty());
    }
}
