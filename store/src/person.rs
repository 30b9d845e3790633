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
