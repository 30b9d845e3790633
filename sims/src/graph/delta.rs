//! `GET /users/delta`: change tracking of users (user-delta.md, delta-query-overview.md).
//!
//! A first request (optionally with `$select` and `$filter=id eq '…' or id eq '…'`, at most 50
//! ids) answers every user in pages of [`DeltaStore::page_size`]: each page but the last has an
//! `@odata.nextLink` with a `$skiptoken`, the last an `@odata.deltaLink` with a `$deltatoken`,
//! both absolute URLs back at the simulator. Polling the delta link answers only the users whose
//! tracked properties changed since it was issued (the selected ones, or the default set without
//! `$select`: a change to anything else does not appear), users deleted since
//! (`{"id", "@removed": {"reason": "changed"}}` while restorable, `"deleted"` once gone for
//! good), and users created or restored since. With `Prefer: return=minimal` a changed user
//! carries only its id and the properties that changed (`Preference-Applied: return=minimal`).
//! `$deltatoken=latest` answers no users and a delta link from now. Tokens are opaque, stay
//! valid for [`DeltaStore::lifetime`] and can be polled again; an unknown or expired one is 410
//! `syncStateNotFound`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use uuid::Uuid;

use super::errors::{CONTENT_TYPE, GraphError};
use super::odata;
use super::state::{Directory, GraphState};
use crate::json::{Obj, Val};
use crate::server::SimResponse;
use crate::tenant::User;

/// Most ids one `$filter` may name.
const MAX_FILTER_IDS: usize = 50;

/// What a delta query tracks.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Query {
    select: Option<Vec<String>>,
    /// Lower-case ids of a `$filter`.
    ids: Option<BTreeSet<String>>,
}

/// A user as a delta link last saw it.
#[derive(Clone, Debug, PartialEq)]
enum Entry {
    /// The tracked properties, canonical names.
    Live(Vec<(String, Value)>),
    /// Deleted but restorable.
    SoftDeleted,
}

type Snapshot = BTreeMap<String, Entry>;

/// One sync round: its items, paged out one skip token at a time, and the state its delta link
/// will compare against.
#[derive(Debug)]
struct Round {
    query: Query,
    items: Vec<Obj>,
    snapshot: Arc<Snapshot>,
    created: Timestamp,
    page_size: Option<usize>,
}

#[derive(Debug)]
struct SyncState {
    query: Query,
    snapshot: Arc<Snapshot>,
    created: Timestamp,
}

/// The delta links and skip links handed out.
#[derive(Debug)]
pub(crate) struct DeltaStore {
    /// Users per page (default 100; `Prefer: odata.maxpagesize` lowers it per query).
    pub page_size: usize,
    /// How long a token stays valid (default 7 days).
    pub lifetime: Duration,
    tokens: HashMap<String, SyncState>,
    pages: HashMap<String, (Arc<Round>, usize)>,
}

impl Default for DeltaStore {
    fn default() -> Self {
        Self {
            page_size: 100,
            lifetime: Duration::from_secs(7 * 24 * 3600),
            tokens: HashMap::new(),
            pages: HashMap::new(),
        }
    }
}

fn token() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

fn gone() -> GraphError {
    GraphError::new(
        410,
        "syncStateNotFound",
        "The sync state was not found: the token has expired or is unknown. Restart with a full delta query.",
    )
}

impl DeltaStore {
    pub(crate) fn clear(&mut self) {
        self.tokens.clear();
        self.pages.clear();
    }

    fn expired(&self, created: Timestamp, now: Timestamp) -> bool {
        now.duration_since(created) > SignedDuration::try_from(self.lifetime).unwrap_or(SignedDuration::MAX)
    }

    /// The page of `round` starting at `offset`, with the link that follows it.
    fn page(&mut self, round: Arc<Round>, offset: usize, base: &str, now: Timestamp) -> Obj {
        let size = round.page_size.unwrap_or(self.page_size).min(self.page_size).max(1);
        let end = (offset + size).min(round.items.len());
        let items: Vec<Val> = round.items.get(offset..end).unwrap_or_default().iter().cloned().map(Val::Obj).collect();
        let mut body =
            Obj::new().with("@odata.context", odata::context(base, "users", round.query.select.as_deref(), false));
        let t = token();
        if end < round.items.len() {
            body.push("@odata.nextLink", format!("{base}/v1.0/users/delta?$skiptoken={t}"));
            self.pages.insert(t, (round, end));
        } else {
            body.push("@odata.deltaLink", format!("{base}/v1.0/users/delta?$deltatoken={t}"));
            self.tokens
                .insert(t, SyncState { query: round.query.clone(), snapshot: round.snapshot.clone(), created: now });
        }
        body.push("value", Val::List(items));
        body
    }
}

/// The tracked properties of a user, with `id` always present.
fn tracked(u: &User, select: Option<&[String]>, lifecycle: bool) -> Vec<(String, Value)> {
    let names: Vec<String> = match select {
        Some(sel) if !sel.iter().any(|s| s == "*") => sel.to_vec(),
        _ => odata::USER_DEFAULT.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut props: Vec<(String, Value)> = names.iter().filter_map(|n| odata::user_property(u, n, lifecycle)).collect();
    if !props.iter().any(|(n, _)| n == "id") {
        props.push(("id".to_owned(), Value::String(u.id.clone())));
    }
    props
}

fn obj_of(props: &[(String, Value)]) -> Obj {
    let mut o = Obj::new();
    for (k, v) in props {
        o.push(k.clone(), v.clone());
    }
    o
}

fn removed(id: &str, reason: &str) -> Obj {
    Obj::new().with("id", id).with("@removed", Obj::new().with("reason", reason))
}

/// Compares the directory with `prior` (none for a full sync): the items to answer and the new
/// snapshot.
fn diff(
    dir: &Directory,
    query: &Query,
    prior: Option<&Snapshot>,
    minimal: bool,
    lifecycle: bool,
) -> (Vec<Obj>, Snapshot) {
    let wanted = |key: &str| query.ids.as_ref().is_none_or(|ids| ids.contains(key));
    let mut snapshot = Snapshot::new();
    let mut items: BTreeMap<String, Obj> = BTreeMap::new();
    for (key, u) in dir.users_by_key().iter().filter(|(k, _)| wanted(k)) {
        let props = tracked(u, query.select.as_deref(), lifecycle);
        let item = match prior.and_then(|p| p.get(key)) {
            Some(Entry::Live(old)) if *old == props => None,
            Some(Entry::Live(old)) if minimal => {
                let changed: Vec<(String, Value)> = props
                    .iter()
                    .filter(|(n, v)| n == "id" || old.iter().find(|(o, _)| o == n).is_none_or(|(_, ov)| ov != v))
                    .cloned()
                    .collect();
                Some(obj_of(&changed))
            }
            _ => Some(obj_of(&props)),
        };
        if let Some(item) = item {
            items.insert(key.clone(), item);
        }
        snapshot.insert(key.clone(), Entry::Live(props));
    }
    if let Some(prior) = prior {
        for (key, u) in dir.soft_deleted().iter().filter(|(k, _)| wanted(k)) {
            match prior.get(key) {
                Some(Entry::Live(_)) => {
                    items.insert(key.clone(), removed(&u.id, "changed"));
                    snapshot.insert(key.clone(), Entry::SoftDeleted);
                }
                Some(Entry::SoftDeleted) => {
                    snapshot.insert(key.clone(), Entry::SoftDeleted);
                }
                None => {}
            }
        }
        for (key, entry) in prior {
            if snapshot.contains_key(key) {
                continue;
            }
            let id = match entry {
                Entry::Live(props) => props
                    .iter()
                    .find(|(n, _)| n == "id")
                    .and_then(|(_, v)| v.as_str())
                    .map_or_else(|| key.clone(), str::to_owned),
                Entry::SoftDeleted => key.clone(),
            };
            items.insert(key.clone(), removed(&id, "deleted"));
        }
    }
    (items.into_values().collect(), snapshot)
}

/// `$filter=id eq 'a' or id eq 'b'`.
fn parse_filter(filter: &str) -> Result<BTreeSet<String>, GraphError> {
    let unsupported = || {
        GraphError::new(
            400,
            "Request_UnsupportedQuery",
            format!(
                "Unsupported query: a users delta $filter may only name ids (id eq '…' or id eq '…'), not '{filter}'."
            ),
        )
    };
    let lower = filter.to_ascii_lowercase();
    let mut ids = BTreeSet::new();
    let mut rest = lower.as_str();
    loop {
        let part_end = rest.find(" or ").unwrap_or(rest.len());
        let part = rest[..part_end].trim();
        let value = part
            .strip_prefix("id")
            .map(str::trim_start)
            .and_then(|p| p.strip_prefix("eq"))
            .map(str::trim)
            .and_then(|v| v.strip_prefix('\'')?.strip_suffix('\''))
            .filter(|v| !v.is_empty() && !v.contains('\''))
            .ok_or_else(unsupported)?;
        ids.insert(value.to_owned());
        if part_end == rest.len() {
            break;
        }
        rest = &rest[part_end + 4..];
    }
    if ids.len() > MAX_FILTER_IDS {
        return Err(GraphError::bad_request(format!(
            "Too many ids in the $filter of a users delta query: at most {MAX_FILTER_IDS} are allowed."
        )));
    }
    Ok(ids)
}

fn prefers(prefer: Option<&str>, what: &str) -> Option<String> {
    prefer?.split(',').map(str::trim).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(what).then(|| v.trim().to_owned())
    })
}

/// Answers one `GET /users/delta`.
pub(crate) fn get(
    pairs: &[(String, String)],
    prefer: Option<&str>,
    base: &str,
    lifecycle: bool,
    now: Timestamp,
    state: &GraphState,
) -> Result<SimResponse, GraphError> {
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name) || k.eq_ignore_ascii_case(&name[1..]))
            .map(|(_, v)| v.as_str())
    };
    let minimal = prefers(prefer, "return").is_some_and(|v| v.eq_ignore_ascii_case("minimal"));
    let max_page = prefers(prefer, "odata.maxpagesize").and_then(|v| v.parse::<usize>().ok()).filter(|n| *n > 0);
    let mut dir = state.lock();
    let body = if let Some(skip) = param("$skiptoken") {
        let (round, offset) = dir.delta.pages.get(skip).cloned().ok_or_else(gone)?;
        if dir.delta.expired(round.created, now) {
            return Err(gone());
        }
        dir.delta.page(round, offset, base, now)
    } else {
        let (query, prior) = match param("$deltatoken") {
            Some(t) if t.eq_ignore_ascii_case("latest") => (fresh_query(pairs)?, None),
            Some(t) => {
                let sync = dir.delta.tokens.get(t).ok_or_else(gone)?;
                if dir.delta.expired(sync.created, now) {
                    return Err(gone());
                }
                (sync.query.clone(), Some(sync.snapshot.clone()))
            }
            None => (fresh_query(pairs)?, None),
        };
        let latest = param("$deltatoken").is_some_and(|t| t.eq_ignore_ascii_case("latest"));
        let (mut items, snapshot) = diff(&dir, &query, prior.as_deref(), minimal, lifecycle);
        if latest {
            items.clear();
        }
        let round = Arc::new(Round { query, items, snapshot: Arc::new(snapshot), created: now, page_size: max_page });
        dir.delta.page(round, 0, base, now)
    };
    let mut resp = SimResponse::json_bytes(200, CONTENT_TYPE, body.to_bytes());
    if minimal {
        resp = resp.header("Preference-Applied", "return=minimal");
    }
    Ok(resp)
}

fn fresh_query(pairs: &[(String, String)]) -> Result<Query, GraphError> {
    let select = odata::select_of(pairs);
    if let Some(s) = &select {
        odata::validate_select(s, true, false, "user")?;
    }
    let canonical = select.map(|sel| {
        sel.iter()
            .map(|n| {
                odata::user_property(&User::new("x", "x", "x"), n, true).map_or_else(|| n.clone(), |(name, _)| name)
            })
            .collect::<Vec<_>>()
    });
    let filter = pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case("$filter") || k.eq_ignore_ascii_case("filter"));
    let ids = filter.map(|(_, f)| parse_filter(f.trim())).transpose()?;
    Ok(Query { select: canonical, ids })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let ids = parse_filter("id eq 'A' or ID eq 'b'").unwrap();
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(parse_filter("displayName eq 'x'").is_err());
        assert!(parse_filter("id eq 'a' and id eq 'b'").is_err());
        let many = (0..51).map(|i| format!("id eq '{i}'")).collect::<Vec<_>>().join(" or ");
        assert_eq!(parse_filter(&many).unwrap_err().status, 400);
        assert_eq!(prefers(Some("odata.maxpagesize=2, return=minimal"), "return").as_deref(), Some("minimal"));
    }
}
