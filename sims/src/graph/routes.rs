//! Graph v1.0 routes: users, managers, groups, membership reads and writes.

use std::time::Duration;

use http::Method;
use jiff::Timestamp;
use serde_json::Value;

use super::errors::{self, CONTENT_TYPE, GraphError};
use super::state::{DirObject, GraphState};
use super::{delta, mailbox, odata};
use crate::json::{Obj, Val};
use crate::login::IssuedToken;
use crate::server::{SimRequest, SimResponse, percent_decode};
use crate::tenant::Group;

const USER_READ: &[&str] =
    &["User.Read.All", "User.ReadWrite.All", "User.ReadBasic.All", "Directory.Read.All", "Directory.ReadWrite.All"];
const GROUP_READ: &[&str] = &[
    "GroupMember.Read.All",
    "GroupMember.ReadWrite.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
const MEMBER_WRITE: &[&str] = &["GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"];
const GROUP_WRITE: &[&str] = &["Group.ReadWrite.All", "Directory.ReadWrite.All"];
const ROLE_WRITE: &[&str] = &["RoleManagement.ReadWrite.Directory"];
const USER_DELETE: &[&str] = &["User.ReadWrite.All", "Directory.ReadWrite.All"];
pub(crate) const LIFECYCLE_READ: &[&str] = &["User-LifeCycleInfo.Read.All", "User-LifeCycleInfo.ReadWrite.All"];

/// Most references accepted by one `members@odata.bind` or one `checkMemberGroups`.
const MAX_REFS: usize = 20;

/// Per-request context.
pub(crate) struct Ctx<'a> {
    pub base: &'a str,
    pub now: Timestamp,
    pub token: &'a IssuedToken,
    /// Whether `employeeLeaveDateTime` is readable (the lifecycle permission, when required).
    pub lifecycle: bool,
}

/// Whether `roles` holds any of the permissions.
pub(crate) fn has_any(roles: &[String], any_of: &[&str]) -> bool {
    roles.iter().any(|r| any_of.iter().any(|p| p.eq_ignore_ascii_case(r)))
}

impl Ctx<'_> {
    pub(crate) fn has(&self, any_of: &[&str]) -> bool {
        has_any(&self.token.roles, any_of)
    }

    fn require(&self, any_of: &[&str]) -> Result<(), GraphError> {
        if self.has(any_of) { Ok(()) } else { Err(GraphError::denied()) }
    }
}

/// A recognised Graph path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `GET /users?$filter=mail eq '…'` (or `userPrincipalName eq '…'`): the lookup that
    /// finds a B2B guest by the address their home organisation gave them.
    Users,
    /// `GET /users/delta`.
    UsersDelta,
    User(String),
    /// `GET /users/{id}/mailboxSettings[/{setting}]`.
    UserMailboxSettings(String, Option<String>),
    UserManager(String),
    UserMemberOf(String, String),
    CheckMemberGroups(String),
    CheckMemberObjects(String),
    Group(String),
    GroupMembers(String),
    /// `GET /groups/{id}/transitiveMembers`: members through nested groups too.
    GroupTransitiveMembers(String),
    GroupMembersRef(String),
    GroupMember(String, String),
    GroupMemberRef(String, String),
    Batch,
}

/// Splits `users('x')` into `users` and `x`.
fn key_segment(seg: &str) -> (String, Option<String>) {
    if let (Some(open), true) = (seg.find('('), seg.ends_with(')')) {
        let name = &seg[..open];
        let inner = &seg[open + 1..seg.len() - 1];
        let inner = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).unwrap_or(inner);
        return (name.to_owned(), Some(inner.replace("''", "'")));
    }
    (seg.to_owned(), None)
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// `delta`, `delta()`, `microsoft.graph.delta`, `microsoft.graph.delta()`.
fn is_delta(seg: &str) -> bool {
    let s = seg.strip_prefix("microsoft.graph.").unwrap_or(seg);
    eq(s, "delta") || eq(s, "delta()")
}

impl Route {
    /// Parses the path after `/v1.0`.
    pub(crate) fn parse(rest: &str) -> Result<Route, GraphError> {
        let mut segs: Vec<String> = Vec::new();
        for raw in rest.split('/').filter(|s| !s.is_empty()) {
            let (name, key) = key_segment(&percent_decode(raw));
            // `delta()` is a function call with no arguments, not a key.
            let call = key.as_deref() == Some("") && is_delta(&name);
            segs.push(name);
            if let Some(k) = key.filter(|_| !call) {
                segs.push(k);
            }
        }
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let unknown = |i: usize| {
            let seg = s.get(i).or(s.last()).copied().unwrap_or("");
            GraphError::new(400, "BadRequest", format!("Resource not found for the segment '{seg}'."))
        };
        let strip_ns = |x: &str| x.strip_prefix("microsoft.graph.").map(str::to_owned).unwrap_or_else(|| x.to_owned());
        match s.as_slice() {
            [b] if eq(b, "$batch") => Ok(Route::Batch),
            [u, d] if eq(u, "users") && is_delta(d) => Ok(Route::UsersDelta),
            [u, id] if eq(u, "users") => Ok(Route::User((*id).to_owned())),
            [u, id, m] if eq(u, "users") && eq(m, "mailboxSettings") => {
                Ok(Route::UserMailboxSettings((*id).to_owned(), None))
            }
            [u, id, m, setting] if eq(u, "users") && eq(m, "mailboxSettings") => {
                Ok(Route::UserMailboxSettings((*id).to_owned(), Some((*setting).to_owned())))
            }
            [u, id, m] if eq(u, "users") && eq(m, "manager") => Ok(Route::UserManager((*id).to_owned())),
            [u, id, m, g] if eq(u, "users") && eq(m, "memberOf") => {
                Ok(Route::UserMemberOf((*id).to_owned(), (*g).to_owned()))
            }
            [u, id, f] if eq(u, "users") && eq(&strip_ns(f), "checkMemberGroups") => {
                Ok(Route::CheckMemberGroups((*id).to_owned()))
            }
            [u, id, f] if eq(u, "users") && eq(&strip_ns(f), "checkMemberObjects") => {
                Ok(Route::CheckMemberObjects((*id).to_owned()))
            }
            [g, id] if eq(g, "groups") => Ok(Route::Group((*id).to_owned())),
            [g, id, m] if eq(g, "groups") && eq(m, "members") => Ok(Route::GroupMembers((*id).to_owned())),
            [g, id, m] if eq(g, "groups") && eq(m, "transitiveMembers") => {
                Ok(Route::GroupTransitiveMembers((*id).to_owned()))
            }
            [g, id, m, r] if eq(g, "groups") && eq(m, "members") && eq(r, "$ref") => {
                Ok(Route::GroupMembersRef((*id).to_owned()))
            }
            [g, id, m, mid] if eq(g, "groups") && eq(m, "members") => {
                Ok(Route::GroupMember((*id).to_owned(), (*mid).to_owned()))
            }
            [g, id, m, mid, r] if eq(g, "groups") && eq(m, "members") && eq(r, "$ref") => {
                Ok(Route::GroupMemberRef((*id).to_owned(), (*mid).to_owned()))
            }
            [set] if eq(set, "users") => Ok(Route::Users),
            [set] if eq(set, "groups") => {
                Err(GraphError::new(501, "NotImplemented", format!("Listing {set} is not supported by the simulator.")))
            }
            [first, ..] if !eq(first, "users") && !eq(first, "groups") => Err(unknown(0)),
            [] => Err(unknown(0)),
            _ => Err(unknown(2)),
        }
    }

    /// Whether the request counts against the write budget.
    pub(crate) fn is_write(&self, method: &Method) -> bool {
        match self {
            Route::CheckMemberGroups(_) | Route::CheckMemberObjects(_) | Route::Batch => false,
            _ => matches!(*method, Method::POST | Method::PATCH | Method::PUT | Method::DELETE),
        }
    }

    /// Resource-unit cost (throttling-limits.md): base cost, `$select` −1, `$expand` +1,
    /// `$top` below 20 −1, at least 1.
    pub(crate) fn cost(&self, method: &Method, pairs: &[(String, String)]) -> u32 {
        let base: i64 = match (self, method) {
            (Route::User(_), &Method::GET) => 2,
            (Route::GroupMembers(_), &Method::GET) => 3,
            (Route::GroupTransitiveMembers(_), &Method::GET) => 5,
            (Route::CheckMemberGroups(_) | Route::CheckMemberObjects(_), _) => 4,
            _ => 1,
        };
        let has = |k: &str| pairs.iter().any(|(q, _)| eq(q, k) || eq(q, k.trim_start_matches('$')));
        let mut cost = base;
        if has("$select") {
            cost -= 1;
        }
        if has("$expand") {
            cost += 1;
        }
        let top = pairs.iter().find(|(q, _)| eq(q, "$top") || eq(q, "top")).and_then(|(_, v)| v.parse::<u32>().ok());
        if top.is_some_and(|t| t < 20) {
            cost -= 1;
        }
        u32::try_from(cost.max(1)).unwrap_or(1)
    }
}

fn ok(status: u16, body: &Obj) -> SimResponse {
    SimResponse::json_bytes(status, CONTENT_TYPE, body.to_bytes())
}

fn parse_body(req: &SimRequest) -> Result<serde_json::Map<String, Value>, GraphError> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(GraphError::invalid_json()),
    }
}

/// The object id in an `@odata.id` / `members@odata.bind` URL.
fn ref_id(url: &str) -> Option<String> {
    let trimmed = url.trim_end_matches('/');
    let mut parts = trimmed.rsplit('/');
    let last = parts.next()?;
    let (name, key) = key_segment(last);
    let id = match key {
        Some(k) if ["directoryObjects", "users", "groups"].iter().any(|n| eq(n, &name)) => k,
        Some(_) => return None,
        None => {
            let prev = parts.next()?;
            if !["directoryObjects", "users", "groups"].iter().any(|n| eq(n, prev)) {
                return None;
            }
            name
        }
    };
    uuid::Uuid::parse_str(&id).ok().map(|_| id)
}

fn invalid_ref(url: &str) -> GraphError {
    GraphError::bad_request(format!("Invalid object identifier '{url}'."))
}

/// Refuses membership changes Graph refuses for this kind of group.
fn check_writable(group: &Group, ctx: &Ctx<'_>) -> Result<(), GraphError> {
    if group.on_premises_sync_enabled == Some(true) {
        return Err(GraphError::bad_request(errors::ON_PREM));
    }
    if group.mail_enabled && !group.is_unified() {
        return Err(GraphError::bad_request(errors::MAIL_ENABLED));
    }
    if group.is_dynamic() {
        return Err(GraphError::bad_request(errors::DYNAMIC));
    }
    if group.is_assignable_to_role == Some(true) && !ctx.has(ROLE_WRITE) {
        return Err(GraphError::denied());
    }
    Ok(())
}

/// Answers one routed request.
pub(crate) fn handle(
    route: &Route,
    req: &SimRequest,
    pairs: &[(String, String)],
    ctx: &Ctx<'_>,
    state: &GraphState,
) -> Result<SimResponse, GraphError> {
    let select = odata::select_of(pairs);
    let sel = select.as_deref();
    let m = &req.method;
    match route {
        Route::Users if m == Method::GET => filter_users(sel, pairs, ctx, state),
        Route::UsersDelta if m == Method::GET => {
            ctx.require(USER_READ)?;
            delta::get(pairs, req.header("prefer"), ctx.base, ctx.lifecycle, ctx.now, state)
        }
        Route::User(key) if m == Method::GET => get_user(key, sel, pairs, ctx, state),
        Route::UserMailboxSettings(key, setting) if m == Method::GET => {
            mailbox::get(key, setting.as_deref(), sel, ctx.base, ctx.has(mailbox::MAILBOX_SETTINGS_READ), state)
        }
        Route::UserManager(key) if m == Method::GET => get_manager(key, sel, ctx, state),
        Route::UserMemberOf(uid, gid) if m == Method::GET => member_of(uid, gid, sel, ctx, state),
        Route::CheckMemberGroups(uid) if m == Method::POST => check_member(uid, req, "groupIds", ctx, state),
        Route::CheckMemberObjects(uid) if m == Method::POST => check_member(uid, req, "ids", ctx, state),
        Route::Group(gid) if m == Method::GET => get_group(gid, sel, ctx, state),
        Route::Group(gid) if m == Method::PATCH => patch_group(gid, req, ctx, state),
        Route::GroupMembers(gid) if m == Method::GET => list_members(gid, false, sel, pairs, ctx, state),
        Route::GroupTransitiveMembers(gid) if m == Method::GET => list_members(gid, true, sel, pairs, ctx, state),
        Route::GroupMembersRef(gid) if m == Method::POST => add_member(gid, req, ctx, state),
        Route::GroupMembersRef(_) if m == Method::PATCH || m == Method::PUT => {
            Err(GraphError::new(400, "BadRequest", "The request is currently not supported on the targeted entity set"))
        }
        Route::GroupMember(gid, mid) if m == Method::GET => get_member(gid, mid, sel, ctx, state),
        Route::GroupMember(gid, mid) if m == Method::DELETE => delete_member_object(gid, mid, ctx, state),
        Route::GroupMemberRef(gid, mid) if m == Method::DELETE => remove_member(gid, mid, ctx, state),
        _ => Err(GraphError::method_not_allowed()),
    }
}

/// `$expand` on a user: `None` without it, `Some(select)` for `manager` or
/// `manager($select=…)`. Other navigation properties and `$levels` are refused.
fn expand_manager(pairs: &[(String, String)]) -> Result<Option<Option<Vec<String>>>, GraphError> {
    let Some(raw) = pairs.iter().find(|(k, _)| eq(k, "$expand") || eq(k, "expand")).map(|(_, v)| v.trim()) else {
        return Ok(None);
    };
    let (name, options) = match raw.find('(') {
        Some(open) if raw.ends_with(')') => (&raw[..open], Some(&raw[open + 1..raw.len() - 1])),
        _ => (raw, None),
    };
    if !eq(name.trim(), "manager") {
        return Err(GraphError::bad_request(format!(
            "Parsing OData Select and Expand failed: Could not find a property named '{}' on type 'microsoft.graph.user'.",
            name.trim()
        )));
    }
    let mut select = None;
    for option in options.into_iter().flat_map(|o| o.split(';')).map(str::trim).filter(|o| !o.is_empty()) {
        let (k, v) = option.split_once('=').unwrap_or((option, ""));
        if eq(k.trim(), "$select") {
            select = Some(v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect::<Vec<_>>());
        } else if eq(k.trim(), "$levels") {
            return Err(GraphError::new(
                501,
                "NotImplemented",
                "The simulator does not expand manager chains ($levels); expand one level.",
            ));
        } else {
            return Err(GraphError::bad_request(format!(
                "Parsing OData Select and Expand failed: Unsupported option '{}' in $expand.",
                k.trim()
            )));
        }
    }
    Ok(Some(select))
}

fn get_user(
    key: &str,
    sel: Option<&[String]>,
    pairs: &[(String, String)],
    ctx: &Ctx<'_>,
    state: &GraphState,
) -> Result<SimResponse, GraphError> {
    ctx.require(USER_READ)?;
    if let Some(s) = sel {
        odata::validate_select(s, true, false, "user")?;
    }
    let expand = expand_manager(pairs)?;
    if let Some(Some(ms)) = &expand {
        odata::validate_select(ms, true, true, "directoryObject")?;
    }
    let dir = state.lock();
    let user = dir.user(key).ok_or_else(|| GraphError::not_found(key))?;
    let Some(manager_select) = expand else {
        return Ok(ok(200, &odata::user_entity(user, ctx.base, sel, ctx.lifecycle)));
    };
    let ms = manager_select.as_deref();
    let mut parts: Vec<String> = sel.map(<[String]>::to_vec).unwrap_or_default();
    parts.push(format!("manager({})", ms.map(|m| m.join(",")).unwrap_or_default()));
    let mut body = Obj::new().with("@odata.context", odata::context(ctx.base, "users", Some(&parts), true));
    for (k, v) in odata::user_collection_item(user, sel, ctx.lifecycle).into_pairs() {
        body.push(k, v);
    }
    if let Some(m) = dir.manager_of(&user.id) {
        body.push("manager", Val::Obj(odata::directory_object(&DirObject::User(m.clone()), ms, ctx.lifecycle)));
    }
    Ok(ok(200, &body))
}

/// The `$filter` forms the simulator answers: `mail eq '…'` and `userPrincipalName eq '…'`
/// (case-insensitive values, as in the directory). Anything else is 501.
fn filter_users(
    sel: Option<&[String]>,
    pairs: &[(String, String)],
    ctx: &Ctx<'_>,
    state: &GraphState,
) -> Result<SimResponse, GraphError> {
    ctx.require(USER_READ)?;
    if let Some(s) = sel {
        odata::validate_select(s, true, false, "user")?;
    }
    let filter = pairs.iter().find(|(k, _)| eq(k, "$filter") || eq(k, "filter")).map(|(_, v)| v.trim().to_owned());
    let Some(filter) = filter else {
        return Err(GraphError::new(
            501,
            "NotImplemented",
            "Listing users without $filter is not supported by the simulator.",
        ));
    };
    let parsed = filter.split_once(" eq ").and_then(|(prop, value)| {
        let value = value.trim().strip_prefix('\'')?.strip_suffix('\'')?.replace("''", "'");
        Some((prop.trim().to_owned(), value))
    });
    let Some((prop, value)) = parsed.filter(|(p, _)| eq(p, "mail") || eq(p, "userPrincipalName")) else {
        return Err(GraphError::new(
            501,
            "NotImplemented",
            format!("The simulator does not support the filter '{filter}'."),
        ));
    };
    let dir = state.lock();
    let matches: Vec<Val> = dir
        .all_users()
        .filter(|u| {
            let field =
                if eq(&prop, "mail") { u.mail.as_deref().unwrap_or("") } else { u.user_principal_name.as_str() };
            field.eq_ignore_ascii_case(&value)
        })
        .map(|u| Val::Obj(odata::user_collection_item(u, sel, ctx.lifecycle)))
        .collect();
    let mut body = Obj::new().with("@odata.context", odata::context(ctx.base, "users", sel, false));
    body.push("value", Val::List(matches));
    Ok(ok(200, &body))
}

fn get_manager(
    key: &str,
    sel: Option<&[String]>,
    ctx: &Ctx<'_>,
    state: &GraphState,
) -> Result<SimResponse, GraphError> {
    ctx.require(USER_READ)?;
    if let Some(s) = sel {
        odata::validate_select(s, true, true, "directoryObject")?;
    }
    let dir = state.lock();
    let user = dir.user(key).ok_or_else(|| GraphError::not_found(key))?;
    let manager = dir.manager_of(&user.id).ok_or_else(|| GraphError::not_found("manager"))?;
    Ok(ok(200, &odata::directory_entity(&DirObject::User(manager.clone()), ctx.base, sel, ctx.lifecycle)))
}

fn member_of(
    uid: &str,
    gid: &str,
    sel: Option<&[String]>,
    ctx: &Ctx<'_>,
    state: &GraphState,
) -> Result<SimResponse, GraphError> {
    if !ctx.has(USER_READ) && !ctx.has(GROUP_READ) {
        return Err(GraphError::denied());
    }
    let dir = state.lock();
    let user = dir.user(uid).ok_or_else(|| GraphError::not_found(uid))?;
    let group = dir
        .group(gid)
        .filter(|g| dir.is_member_visible(&g.id, &user.id, ctx.now))
        .ok_or_else(|| GraphError::not_found(gid))?;
    Ok(ok(200, &odata::directory_entity(&DirObject::Group(group.clone()), ctx.base, sel, ctx.lifecycle)))
}

fn check_member(
    uid: &str,
    req: &SimRequest,
    field: &str,
    ctx: &Ctx<'_>,
    state: &GraphState,
) -> Result<SimResponse, GraphError> {
    if !ctx.has(USER_READ) && !ctx.has(GROUP_READ) {
        return Err(GraphError::denied());
    }
    let body = parse_body(req)?;
    let ids: Vec<String> = match body.get(field) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| GraphError::bad_request(format!("Invalid value for '{field}'.")))?,
        _ => {
            return Err(GraphError::bad_request(format!("The request body must contain the parameter '{field}'.")));
        }
    };
    if ids.len() > MAX_REFS {
        return Err(GraphError::bad_request(format!(
            "The number of ids in '{field}' exceeds the maximum of {MAX_REFS}."
        )));
    }
    let dir = state.lock();
    let user = dir.user(uid).ok_or_else(|| GraphError::not_found(uid))?;
    let groups = dir.transitive_groups(&user.id, ctx.now);
    let value: Vec<Value> =
        ids.into_iter().filter(|id| groups.contains(&id.to_ascii_lowercase())).map(Value::String).collect();
    let body = Obj::new()
        .with("@odata.context", format!("{}/v1.0/$metadata#Collection(Edm.String)", ctx.base))
        .with("value", Value::Array(value));
    Ok(ok(200, &body))
}

fn get_group(gid: &str, sel: Option<&[String]>, ctx: &Ctx<'_>, state: &GraphState) -> Result<SimResponse, GraphError> {
    ctx.require(GROUP_READ)?;
    if let Some(s) = sel {
        odata::validate_select(s, false, true, "group")?;
    }
    let dir = state.lock();
    let group = dir.group(gid).ok_or_else(|| GraphError::not_found(gid))?;
    Ok(ok(200, &odata::group_entity(group, ctx.base, sel)))
}

/// `GET /groups/{id}/members` (direct) or `/transitiveMembers` (through nested groups), paged
/// with `$top` and an opaque `$skiptoken` in `@odata.nextLink`.
fn list_members(
    gid: &str,
    transitive: bool,
    sel: Option<&[String]>,
    pairs: &[(String, String)],
    ctx: &Ctx<'_>,
    state: &GraphState,
) -> Result<SimResponse, GraphError> {
    ctx.require(GROUP_READ)?;
    if let Some(s) = sel {
        odata::validate_select(s, true, true, "directoryObject")?;
    }
    let param = |name: &str| {
        pairs.iter().find(|(k, _)| eq(k, name) || eq(k, name.trim_start_matches('$'))).map(|(_, v)| v.clone())
    };
    let top = param("$top").and_then(|t| t.parse::<usize>().ok()).unwrap_or(100).clamp(1, 999);
    let skip = param("$skiptoken")
        .and_then(|t| t.strip_prefix("X'").and_then(|x| x.strip_suffix('\'')).map(str::to_owned))
        .and_then(|h| usize::from_str_radix(&h, 16).ok())
        .unwrap_or(0);
    let dir = state.lock();
    let group = dir.group(gid).ok_or_else(|| GraphError::not_found(gid))?;
    let ids = if transitive {
        dir.visible_transitive_members(&group.id, ctx.now)
    } else {
        dir.visible_members(&group.id, ctx.now)
    };
    let page: Vec<Val> = ids
        .iter()
        .skip(skip)
        .take(top)
        .filter_map(|id| dir.object(id))
        .map(|o| Val::Obj(odata::directory_object(&o, sel, ctx.lifecycle)))
        .collect();
    let mut body = Obj::new().with("@odata.context", odata::context(ctx.base, "directoryObjects", sel, false));
    if skip + top < ids.len() {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(s) = sel {
            q.append_pair("$select", &s.join(","));
        }
        q.append_pair("$top", &top.to_string());
        q.append_pair("$skiptoken", &format!("X'{:x}'", skip + top));
        let nav = if transitive { "transitiveMembers" } else { "members" };
        body.push("@odata.nextLink", format!("{}/v1.0/groups/{}/{nav}?{}", ctx.base, group.id, q.finish()));
    }
    body.push("value", Val::List(page));
    Ok(ok(200, &body))
}

fn get_member(
    gid: &str,
    mid: &str,
    sel: Option<&[String]>,
    ctx: &Ctx<'_>,
    state: &GraphState,
) -> Result<SimResponse, GraphError> {
    ctx.require(GROUP_READ)?;
    if let Some(s) = sel {
        odata::validate_select(s, true, true, "directoryObject")?;
    }
    let dir = state.lock();
    let group = dir.group(gid).ok_or_else(|| GraphError::not_found(gid))?;
    if !dir.is_member_visible(&group.id, mid, ctx.now) {
        return Err(GraphError::not_found(gid));
    }
    let obj = dir.object(mid).ok_or_else(|| GraphError::not_found(gid))?;
    Ok(ok(200, &odata::directory_entity(&obj, ctx.base, sel, ctx.lifecycle)))
}

fn add_member(gid: &str, req: &SimRequest, ctx: &Ctx<'_>, state: &GraphState) -> Result<SimResponse, GraphError> {
    ctx.require(MEMBER_WRITE)?;
    let mut dir = state.lock();
    let group = dir.group(gid).cloned().ok_or_else(|| GraphError::not_found(gid))?;
    let body = parse_body(req)?;
    let url = match body.get("@odata.id") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(GraphError::bad_request("The request body must contain '@odata.id'."));
        }
    };
    let mid = ref_id(&url).ok_or_else(|| invalid_ref(&url))?;
    if dir.object(&mid).is_none() {
        return Err(GraphError::not_found(&mid));
    }
    check_writable(&group, ctx)?;
    if dir.is_member(&group.id, &mid) {
        return Err(GraphError::bad_request(errors::ALREADY_EXISTS));
    }
    let delay = dir.replication_delay;
    dir.set_member(&group.id, &mid, true, ctx.now, delay);
    dir.counters.writes_applied += 1;
    Ok(SimResponse::new(204))
}

fn remove_member(gid: &str, mid: &str, ctx: &Ctx<'_>, state: &GraphState) -> Result<SimResponse, GraphError> {
    ctx.require(MEMBER_WRITE)?;
    let mut dir = state.lock();
    let group = dir.group(gid).cloned().ok_or_else(|| GraphError::not_found(gid))?;
    check_writable(&group, ctx)?;
    if !dir.is_member(&group.id, mid) {
        return Err(GraphError::not_found(gid));
    }
    let delay = dir.replication_delay;
    dir.set_member(&group.id, mid, false, ctx.now, delay);
    dir.counters.writes_applied += 1;
    Ok(SimResponse::new(204))
}

/// `DELETE /groups/{gid}/members/{mid}` without `/$ref` addresses the member object itself: with
/// the object-write permission Graph deletes the user (or group). Modelled literally.
fn delete_member_object(gid: &str, mid: &str, ctx: &Ctx<'_>, state: &GraphState) -> Result<SimResponse, GraphError> {
    let mut dir = state.lock();
    let group = dir.group(gid).cloned().ok_or_else(|| GraphError::not_found(gid))?;
    if !dir.is_member(&group.id, mid) {
        return Err(GraphError::not_found(gid));
    }
    match dir.object(mid) {
        Some(DirObject::User(u)) => {
            ctx.require(USER_DELETE)?;
            tracing::error!(
                user_id = %u.id,
                upn = %u.user_principal_name,
                group_id = %group.id,
                app_id = %ctx.token.app_id,
                "DELETE /groups/{{id}}/members/{{id}} without /$ref: the USER OBJECT was deleted, not the membership"
            );
            dir.delete_user(&u.id);
        }
        Some(DirObject::Group(g)) => {
            ctx.require(GROUP_WRITE)?;
            tracing::error!(
                deleted_group_id = %g.id,
                group_id = %group.id,
                app_id = %ctx.token.app_id,
                "DELETE /groups/{{id}}/members/{{id}} without /$ref: the GROUP OBJECT was deleted, not the membership"
            );
            dir.delete_group(&g.id);
        }
        None => return Err(GraphError::not_found(gid)),
    }
    dir.counters.writes_applied += 1;
    Ok(SimResponse::new(204))
}

fn patch_group(gid: &str, req: &SimRequest, ctx: &Ctx<'_>, state: &GraphState) -> Result<SimResponse, GraphError> {
    let body = parse_body(req)?;
    let mut binds: Option<Vec<String>> = None;
    let mut props: Vec<(&str, Option<String>)> = Vec::new();
    for (k, v) in &body {
        match k.as_str() {
            "members@odata.bind" => {
                let Value::Array(items) = v else {
                    return Err(GraphError::bad_request("'members@odata.bind' must be an array of URLs."));
                };
                let urls = items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| GraphError::bad_request("'members@odata.bind' must be an array of URLs."))?;
                binds = Some(urls);
            }
            "displayName" | "description" | "visibility" => {
                props.push((k.as_str(), v.as_str().map(str::to_owned)));
            }
            other => {
                return Err(GraphError::bad_request(format!(
                    "Property '{other}' cannot be updated through this request."
                )));
            }
        }
    }
    if binds.is_some() {
        ctx.require(MEMBER_WRITE)?;
    }
    if !props.is_empty() {
        ctx.require(GROUP_WRITE)?;
    }
    let mut dir = state.lock();
    let group = dir.group(gid).cloned().ok_or_else(|| GraphError::not_found(gid))?;
    let mut to_add: Vec<String> = Vec::new();
    if let Some(urls) = &binds {
        if urls.len() > MAX_REFS {
            return Err(GraphError::bad_request(format!(
                "The number of references in 'members@odata.bind' exceeds the maximum of {MAX_REFS}."
            )));
        }
        for url in urls {
            let mid = ref_id(url).ok_or_else(|| invalid_ref(url))?;
            if dir.object(&mid).is_none() {
                return Err(GraphError::not_found(&mid));
            }
            to_add.push(mid);
        }
        check_writable(&group, ctx)?;
        let mut seen = std::collections::HashSet::new();
        for mid in &to_add {
            if dir.is_member(&group.id, mid) || !seen.insert(mid.to_ascii_lowercase()) {
                return Err(GraphError::bad_request(errors::ALREADY_EXISTS));
            }
        }
    }
    let delay: Duration = dir.replication_delay;
    for mid in &to_add {
        dir.set_member(&group.id, mid, true, ctx.now, delay);
    }
    if let Some(g) = dir.group_mut(&group.id) {
        for (k, v) in props {
            match k {
                "displayName" => g.display_name = v.unwrap_or_default(),
                "description" => g.description = v,
                _ => g.visibility = v,
            }
        }
    }
    dir.counters.writes_applied += 1;
    Ok(SimResponse::new(204))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_routes() {
        assert_eq!(Route::parse("/users/AlexW%40contoso.com").unwrap(), Route::User("AlexW@contoso.com".into()));
        assert_eq!(Route::parse("/users('a%23EXT%23@x.com')").unwrap(), Route::User("a#EXT#@x.com".into()));
        assert_eq!(Route::parse("/groups/g/members/$ref").unwrap(), Route::GroupMembersRef("g".into()));
        assert_eq!(Route::parse("/groups/g/transitiveMembers").unwrap(), Route::GroupTransitiveMembers("g".into()));
        assert_eq!(Route::parse("/groups/g/members/u/$ref").unwrap(), Route::GroupMemberRef("g".into(), "u".into()));
        assert_eq!(
            Route::parse("/users/u/microsoft.graph.checkMemberGroups").unwrap(),
            Route::CheckMemberGroups("u".into())
        );
        let e = Route::parse("/widgets/1").unwrap_err();
        assert_eq!(e.message, "Resource not found for the segment 'widgets'.");
    }

    #[test]
    fn parses_refs() {
        let id = "10000000-0000-4000-8000-000000000001";
        assert_eq!(ref_id(&format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}")).as_deref(), Some(id));
        assert_eq!(ref_id(&format!("http://127.0.0.1:1/v1.0/users/{id}")).as_deref(), Some(id));
        assert_eq!(ref_id(&format!("https://graph.microsoft.com/v1.0/directoryObjects('{id}')")).as_deref(), Some(id));
        assert_eq!(ref_id("https://graph.microsoft.com/v1.0/directoryObjects/nope"), None);
        assert_eq!(ref_id(id), None);
    }

    #[test]
    fn costs() {
        let none: Vec<(String, String)> = vec![];
        let sel = vec![("$select".to_owned(), "id".to_owned())];
        assert_eq!(Route::User("x".into()).cost(&Method::GET, &none), 2);
        assert_eq!(Route::User("x".into()).cost(&Method::GET, &sel), 1);
        assert_eq!(Route::GroupMember("g".into(), "u".into()).cost(&Method::GET, &sel), 1);
        assert_eq!(Route::CheckMemberGroups("u".into()).cost(&Method::POST, &none), 4);
        let expand = vec![("$expand".to_owned(), "manager($select=id)".to_owned())];
        assert_eq!(Route::User("x".into()).cost(&Method::GET, &expand), 3);
        assert_eq!(Route::UsersDelta.cost(&Method::GET, &sel), 1);
    }

    #[test]
    fn parses_delta_and_mailbox_settings() {
        assert_eq!(Route::parse("/users/delta").unwrap(), Route::UsersDelta);
        assert_eq!(Route::parse("/users/microsoft.graph.delta()").unwrap(), Route::UsersDelta);
        assert_eq!(Route::parse("/users/u/mailboxSettings").unwrap(), Route::UserMailboxSettings("u".into(), None));
        assert_eq!(
            Route::parse("/users/u/mailboxSettings/automaticRepliesSetting").unwrap(),
            Route::UserMailboxSettings("u".into(), Some("automaticRepliesSetting".into()))
        );
        let p = |v: &str| expand_manager(&[("$expand".to_owned(), v.to_owned())]);
        assert_eq!(p("manager").unwrap(), Some(None));
        assert_eq!(p("manager($select=id,displayName)").unwrap(), Some(Some(vec!["id".into(), "displayName".into()])));
        assert_eq!(p("memberOf").unwrap_err().status, 400);
        assert_eq!(p("manager($levels=max;$select=id)").unwrap_err().status, 501);
    }
}
