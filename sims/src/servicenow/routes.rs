//! Table API handlers: `GET/POST /api/now/table/{table}`, `GET/PATCH/PUT /api/now/table/{table}/{sys_id}`.

use http::Method;
use jiff::Timestamp;
use serde_json::Value;

use super::schema::{self, Kind};
use super::state::{DisplayMode, EncodedQuery, Record, Store};
use super::{CONTENT_TYPE, failure};
use crate::json::{Obj, Val};
use crate::server::{SimRequest, SimResponse};

const DEFAULT_LIMIT: usize = 10_000;

/// Query parameters that shape a Table API response.
struct Params {
    fields: Option<Vec<String>>,
    mode: DisplayMode,
    exclude_link: bool,
    input_display: bool,
    query: EncodedQuery,
    limit: usize,
    offset: usize,
    pairs: Vec<(String, String)>,
}

fn truthy(v: &str) -> bool {
    v.eq_ignore_ascii_case("true")
}

impl Params {
    fn from(req: &SimRequest) -> Self {
        let pairs = req.query_pairs();
        let get = |k: &str| pairs.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
        let fields = get("sysparm_fields")
            .map(|f| f.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect());
        let mode = match get("sysparm_display_value").as_deref() {
            Some(v) if truthy(v) => DisplayMode::Display,
            Some(v) if v.eq_ignore_ascii_case("all") => DisplayMode::All,
            _ => DisplayMode::Value,
        };
        Self {
            fields,
            mode,
            exclude_link: get("sysparm_exclude_reference_link").is_some_and(|v| truthy(&v)),
            input_display: get("sysparm_input_display_value").is_some_and(|v| truthy(&v)),
            query: EncodedQuery::parse(&get("sysparm_query").unwrap_or_default()),
            limit: get("sysparm_limit").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_LIMIT),
            offset: get("sysparm_offset").and_then(|v| v.parse().ok()).unwrap_or(0),
            pairs,
        }
    }
}

fn json(status: u16, body: &Obj) -> SimResponse {
    SimResponse::json_bytes(status, CONTENT_TYPE, body.to_bytes())
}

fn not_found() -> SimResponse {
    failure(404, "No Record found", Some("Record doesn't exist or ACL restricts the record retrieval"))
}

fn acl_denied() -> SimResponse {
    failure(403, "Operation Failed", Some("ACL Exception Update Failed due to security constraints"))
}

/// The account a request runs as.
pub(crate) struct Caller<'a> {
    pub user_name: &'a str,
    pub can_write: bool,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn table(
    store: &mut Store,
    req: &SimRequest,
    table: &str,
    sys_id: Option<&str>,
    v1: bool,
    caller: &Caller<'_>,
    base: &str,
    now: Timestamp,
) -> SimResponse {
    let Some(table) = schema::TABLES.iter().copied().find(|t| *t == table) else {
        return failure(400, &format!("Invalid table {table}"), None);
    };
    let p = Params::from(req);
    match (&req.method, sys_id) {
        (&Method::GET, Some(id)) => match store.get(table, id) {
            Some(row) => {
                let r = store.render_row(table, row, p.fields.as_deref(), p.mode, p.exclude_link, base);
                json(200, &Obj::new().with("result", r))
            }
            None => not_found(),
        },
        (&Method::GET, None) => list(store, table, &p, v1, base),
        (&Method::PATCH | &Method::PUT, Some(id)) => {
            if !caller.can_write {
                return acl_denied();
            }
            if store.get(table, id).is_none() {
                return not_found();
            }
            let body = match parse_object(req) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let (changes, journal) = prepare(store, table, &body, &p);
            for (element, value) in journal {
                store.append_journal(table, id, &element, &value, caller.user_name, now);
            }
            store.update(table, id, &changes, caller.user_name, now);
            if table == "sysapproval_approver" && body.contains_key("state") {
                store.settle_approvals(id, caller.user_name, now);
            }
            respond_with_row(store, req, table, id, &p, base, 200)
        }
        (&Method::POST, None) => {
            if !caller.can_write {
                return acl_denied();
            }
            let body = match parse_object(req) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let (changes, journal) = prepare(store, table, &body, &p);
            let record: Record = changes.into_iter().collect();
            let id = match store.insert(table, record, caller.user_name, now) {
                Ok(id) => id,
                Err(e) => return failure(400, &e.to_string(), None),
            };
            for (element, value) in journal {
                store.append_journal(table, &id, &element, &value, caller.user_name, now);
            }
            respond_with_row(store, req, table, &id, &p, base, 201)
        }
        _ => failure(405, "Method not Supported", Some("The requested method is not supported for this resource")),
    }
}

fn respond_with_row(
    store: &Store,
    req: &SimRequest,
    table: &'static str,
    id: &str,
    p: &Params,
    base: &str,
    status: u16,
) -> SimResponse {
    if req.header("x-no-response-body").is_some_and(truthy) {
        return SimResponse::new(status);
    }
    match store.get(table, id) {
        Some(row) => {
            let r = store.render_row(table, row, p.fields.as_deref(), p.mode, p.exclude_link, base);
            json(status, &Obj::new().with("result", r))
        }
        None => not_found(),
    }
}

fn parse_object(req: &SimRequest) -> Result<serde_json::Map<String, Value>, SimResponse> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(failure(400, "Exception while reading request", Some("The payload is not valid JSON."))),
    }
}

fn as_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Object(m) => m.get("value").map(as_string).unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    }
}

/// Column changes and journal entries, each as (column, value).
type Prepared = (Vec<(String, String)>, Vec<(String, String)>);

/// Splits a PATCH/PUT/POST body into column changes and journal entries; unknown columns and
/// `sys_*` are ignored.
fn prepare(store: &Store, table: &'static str, body: &serde_json::Map<String, Value>, p: &Params) -> Prepared {
    let mut changes: Vec<(String, String)> = Vec::new();
    let mut journal: Vec<(String, String)> = Vec::new();
    for (k, v) in body {
        if k.starts_with("sys_") {
            continue;
        }
        let Some(kind) = schema::kind(table, k) else {
            continue;
        };
        let value = as_string(v);
        match kind {
            Kind::Journal => {
                if !value.trim().is_empty() {
                    journal.push((k.clone(), value));
                }
            }
            Kind::Ref(t) if p.input_display && !value.is_empty() && store.get(t, &value).is_none() => {
                let field = schema::display_field(t);
                let found = store
                    .rows(t)
                    .iter()
                    .find(|r| r.get(field).is_some_and(|d| d.eq_ignore_ascii_case(&value)))
                    .and_then(|r| r.get("sys_id").cloned());
                changes.push((k.clone(), found.unwrap_or(value)));
            }
            _ => changes.push((k.clone(), value)),
        }
    }
    (changes, journal)
}

fn list(store: &Store, table: &'static str, p: &Params, v1: bool, base: &str) -> SimResponse {
    let rows = store.query(table, &p.query);
    let total = rows.len();
    if v1 && total == 0 {
        return not_found();
    }
    let page: Vec<Val> = rows
        .iter()
        .skip(p.offset)
        .take(p.limit)
        .map(|row| Val::Obj(store.render_row(table, row, p.fields.as_deref(), p.mode, p.exclude_link, base)))
        .collect();
    let mut resp = json(200, &Obj::new().with("result", Val::List(page)));
    resp.headers.push(("X-Total-Count".into(), total.to_string()));
    let link = |offset: usize, rel: &str| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &p.pairs {
            if k != "sysparm_offset" && k != "sysparm_limit" {
                q.append_pair(k, v);
            }
        }
        q.append_pair("sysparm_limit", &p.limit.to_string());
        q.append_pair("sysparm_offset", &offset.to_string());
        format!("<{base}/api/now/table/{table}?{}>;rel=\"{rel}\"", q.finish())
    };
    if p.limit > 0 {
        let mut links = vec![link(0, "first")];
        if p.offset > 0 {
            links.push(link(p.offset.saturating_sub(p.limit), "prev"));
        }
        if p.offset + p.limit < total {
            links.push(link(p.offset + p.limit, "next"));
        }
        let last = if total == 0 { 0 } else { ((total - 1) / p.limit) * p.limit };
        links.push(link(last, "last"));
        resp.headers.push(("Link".into(), links.join(",")));
    }
    resp
}
