//! Microsoft Graph v1.0 simulator: users, managers, groups and group membership, `$batch`,
//! users delta queries, mailbox settings, throttling, replication lag, and Graph's headers and
//! error envelopes.
//!
//! Every response carries `request-id`, `client-request-id` (the client's, or equal to
//! `request-id`), `x-ms-ags-diagnostic`, `x-ms-resource-unit` and `OData-Version: 4.0`; error
//! bodies carry `innerError` with `date` (no `Z`, no fraction), `request-id` and
//! `client-request-id`. Permissions come from the `roles` of the bearer token, which must have been
//! issued by the login simulator for `https://graph.microsoft.com`.
//!
//! Besides users, groups and membership:
//!
//! - `GET /users/delta` (see `delta.rs`): `$select`, `$filter=id eq '…' or …` (at most 50),
//!   `Prefer: return=minimal`, `$skiptoken` pages and a `$deltatoken` link back at the
//!   simulator; deleted users come back with `@removed` (`changed` while restorable, `deleted`
//!   once purged). State helpers [`GraphState::delete_user`], [`GraphState::purge_user`],
//!   [`GraphState::restore_user`], [`GraphState::expire_delta_tokens`].
//! - `GET /users/{id}?$expand=manager($select=…)`: the user with a `manager` object, absent when
//!   there is none; `$expand` costs one more resource unit.
//! - `GET /users/{id}/mailboxSettings[?$select=…]` and `…/mailboxSettings/{setting}` (see
//!   `mailbox.rs`), needing `MailboxSettings.Read`; [`GraphState::set_automatic_replies`] and
//!   [`GraphState::set_out_of_office`] change a mailbox's automatic replies.
//! - Throttling scopes: the app+tenant RU and write buckets and a tenant-wide write bucket
//!   across all apps; a 429 names the bucket in `x-ms-throttle-scope` (`Tenant_Application/Read`,
//!   `Tenant_Application/ReadWrite` for a write out of resource units,
//!   `Tenant_Application/Write`, `Tenant/Write`). [`GraphState::write_histogram`] and
//!   [`GraphState::max_writes_in_window`] show the writes let through and refused per second.
//!
//! Admin routes besides the common ones: `GET /sim/counters`, `GET /sim/writes`,
//! `GET /sim/groups/{id}/members`, `GET|PATCH|DELETE /sim/users/{id}` (`?permanent=true` to
//! purge), `POST /sim/users/{id}/restore`, `GET|PUT /sim/users/{id}/automatic-replies`,
//! `POST /sim/delta {"page_size","expire_tokens"}`, `POST /sim/throttle` (also `tenant_writes`,
//! `tenant_write_window_seconds`), `POST /sim/replication`.
//!
//! Where these additions knowingly differ from Graph:
//!
//! - Delta: tokens are random and kept in memory (Graph encodes state in them); they stay valid
//!   for a configurable lifetime (7 days by default) and may be polled again; the 410 message,
//!   and the 400 bodies for an unsupported or oversized `$filter`, are the simulator's wording.
//!   `resyncRequired`, the `Location` header of a 410, `$expand` in delta, groups delta and
//!   `@odata.type` on items are not modelled; items come in id order, page by page, computed when
//!   a round starts. A change counts only if a tracked property's value differs (changing a
//!   value and back between polls reports nothing). The base cost is 1 (not listed in the
//!   throttling table).
//! - `$expand=manager`: one level only; `$levels` is 501 and other navigation properties 400.
//!   The `@odata.context` for an expansion, `users(…,manager(…))/$entity`, is the simulator's
//!   rendering. `$expand` is still ignored (apart from its cost) on every route but
//!   `GET /users/{id}`.
//! - Mailbox settings: a missing permission is 403 `ErrorAccessDenied` ("Access is denied.
//!   Check credentials and try again."), the Exchange-style answer these Outlook-backed routes
//!   give, rather than the directory's `Authorization_RequestDenied`; `userPurpose` is a string
//!   (the current v1.0 shape); the values other than automatic replies and user purpose are
//!   fixed; `PATCH` is not modelled; mailbox settings count against the identity RU bucket
//!   (Outlook's own limits are not modelled). Shared, room and equipment mailboxes answer under
//!   their address.
//! - Throttling: the per-app bucket across all tenants (150,000 RU / 20 s, 70,000 writes / 5
//!   min) is not modelled; the tenant-wide bucket counts writes only, like Graph's.

mod batch;
mod delta;
mod errors;
mod mailbox;
mod odata;
mod routes;
mod state;
mod throttle;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use uuid::Uuid;

pub use state::{GraphCounters, GraphState, WriteSecond};
pub use throttle::ThrottleConfig;

use self::errors::{CONTENT_TYPE, GraphError};
use self::routes::{Ctx, Route};
use self::throttle::{Throttle, Verdict};
use crate::clock::Clock;
use crate::error::SimError;
use crate::faults::Faults;
use crate::log::LoggedRequest;
use crate::login::{GRAPH_RESOURCE, IssuedToken, TokenTable};
use crate::server::{self, Core, ServerTask, Service, SimRequest, SimResponse, admin_error, admin_ok};
use crate::tenant::Tenant;

/// Graph simulator settings.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphConfig {
    pub throttle: ThrottleConfig,
    /// Delay between a membership write and its visibility to membership reads (default 0).
    pub replication_delay: Duration,
    /// `employeeLeaveDateTime` reads as null unless the token has `User-LifeCycleInfo.Read.All`
    /// (default true, as documented).
    pub require_lifecycle_permission: bool,
    /// Users per page of a `/users/delta` answer (default 100).
    pub delta_page_size: usize,
    /// How long delta and skip tokens stay valid (default 7 days; then 410).
    pub delta_token_lifetime: Duration,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            throttle: ThrottleConfig::default(),
            replication_delay: Duration::ZERO,
            require_lifecycle_permission: true,
            delta_page_size: 100,
            delta_token_lifetime: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

struct Ids {
    request_id: String,
    client_request_id: String,
    date: String,
}

#[derive(Debug)]
pub(crate) struct GraphService {
    core: Core,
    state: GraphState,
    tokens: TokenTable,
    throttle: Mutex<Throttle>,
    tenant_id: String,
    require_lifecycle: bool,
}

type Failure = (GraphError, u32);

impl GraphService {
    fn throttle(&self) -> MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ids(&self, req: &SimRequest, now: Timestamp) -> Ids {
        let request_id = Uuid::new_v4().to_string();
        let client_request_id = req
            .header("client-request-id")
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| request_id.clone());
        Ids { request_id, client_request_id, date: now.strftime("%Y-%m-%dT%H:%M:%S").to_string() }
    }

    fn authenticate(&self, req: &SimRequest, now: Timestamp) -> Result<IssuedToken, GraphError> {
        const EMPTY: &str = "Access token is empty.";
        let header = req.header("authorization").unwrap_or("").trim();
        if header.is_empty() {
            return Err(GraphError::unauthenticated(EMPTY));
        }
        let token = match header.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => header,
        };
        if token.is_empty() {
            return Err(GraphError::unauthenticated(EMPTY));
        }
        if token.split('.').count() != 3 {
            return Err(GraphError::unauthenticated("CompactToken parsing failed with error code: 80049217"));
        }
        let Some(record) = self.tokens.lookup(token) else {
            return Err(GraphError::unauthenticated("Access token validation failure."));
        };
        if record.audience != GRAPH_RESOURCE {
            return Err(GraphError::unauthenticated("Access token validation failure. Invalid audience."));
        }
        if now < record.not_before || now >= record.expires_at {
            return Err(GraphError::unauthenticated("Access token has expired or is not yet valid."));
        }
        Ok(record)
    }

    fn error_body(e: &GraphError, ids: &Ids) -> SimResponse {
        let body = errors::envelope(&e.code, &e.message, &ids.date, &ids.request_id, &ids.client_request_id);
        let mut resp = SimResponse::json_bytes(e.status, CONTENT_TYPE, body);
        for (k, v) in &e.headers {
            resp.headers.push((k.clone(), v.clone()));
        }
        resp
    }

    fn decorate(resp: &mut SimResponse, ids: &Ids, ru: u32) {
        resp.default_header("Cache-Control", "no-cache");
        resp.default_header("request-id", ids.request_id.clone());
        resp.default_header("client-request-id", ids.client_request_id.clone());
        resp.default_header(
            "x-ms-ags-diagnostic",
            r#"{"ServerInfo":{"DataCenter":"Simulated","Slice":"E","Ring":"3","ScaleUnit":"001","RoleInstance":"SIM-GRAPH-0001"}}"#,
        );
        resp.default_header("x-ms-resource-unit", ru.to_string());
        resp.default_header("OData-Version", "4.0");
        resp.default_header("Strict-Transport-Security", "max-age=31536000");
    }

    /// A complete error response (headers included) outside the normal pipeline.
    pub(crate) fn standalone_error(&self, req: &SimRequest, e: GraphError) -> SimResponse {
        let ids = self.ids(req, self.core.clock.now());
        let mut resp = Self::error_body(&e, &ids);
        Self::decorate(&mut resp, &ids, 1);
        resp
    }

    /// Runs one Graph request (an HTTP request, or a `$batch` item when `in_batch`).
    pub(crate) fn process(&self, req: &SimRequest, in_batch: bool) -> SimResponse {
        let now = self.core.clock.now();
        let ids = self.ids(req, now);
        let (mut resp, ru) = match self.run(req, in_batch, now) {
            Ok(ok) => ok,
            Err((e, ru)) => (Self::error_body(&e, &ids), ru),
        };
        Self::decorate(&mut resp, &ids, ru);
        resp
    }

    fn run(&self, req: &SimRequest, in_batch: bool, now: Timestamp) -> Result<(SimResponse, u32), Failure> {
        let rest = req.path.strip_prefix("/v1.0").filter(|r| r.is_empty() || r.starts_with('/')).ok_or_else(|| {
            let version = req.path.trim_start_matches('/').split('/').next().unwrap_or("");
            (GraphError::new(400, "BadRequest", format!("Invalid version: {version}")), 1)
        })?;
        let token = self.authenticate(req, now).map_err(|e| (e, 1))?;
        let route = Route::parse(rest).map_err(|e| (e, 1))?;
        if route == Route::Batch {
            if in_batch || req.method != http::Method::POST {
                return Err((GraphError::method_not_allowed(), 1));
            }
            return batch::run(self, req).map(|r| (r, 1)).map_err(|e| (e, 1));
        }
        let pairs = req.query_pairs();
        let cost = route.cost(&req.method, &pairs);
        let write = route.is_write(&req.method);
        self.state.lock().counters.requests += 1;
        let verdict = self.throttle().check(&token.app_id, now, cost, write);
        if write {
            self.state.lock().record_write(now, matches!(verdict, Verdict::Allowed { .. }));
        }
        let percentage = match verdict {
            Verdict::Throttled { retry_after, information, scope } => {
                self.state.lock().counters.throttled += 1;
                let e = GraphError::new(
                    429,
                    "Request_ThrottledTemporarily",
                    format!("Your request is throttled temporarily. Please try after {retry_after} seconds."),
                )
                .header("Retry-After", retry_after.to_string())
                .header("x-ms-throttle-scope", format!("{}/{}/{}", scope.as_str(), token.app_id, self.tenant_id))
                .header("x-ms-throttle-information", information);
                return Err((e, cost));
            }
            Verdict::Allowed { limit_percentage } => limit_percentage,
        };
        if write {
            self.state.lock().counters.writes_attempted += 1;
        }
        let ctx = Ctx {
            base: &self.core.base_url,
            now,
            token: &token,
            lifecycle: !self.require_lifecycle || routes::has_any(&token.roles, routes::LIFECYCLE_READ),
        };
        let mut resp = routes::handle(&route, req, &pairs, &ctx, &self.state).map_err(|e| (e, cost))?;
        if let Some(p) = percentage {
            resp.default_header("x-ms-throttle-limit-percentage", format!("{:.1}", p.min(1.8)));
        }
        Ok((resp, cost))
    }
}

#[derive(Deserialize)]
struct ThrottleBody {
    enabled: Option<bool>,
    writes: Option<u32>,
    write_window_seconds: Option<u64>,
    resource_units: Option<u32>,
    resource_unit_window_seconds: Option<u64>,
    tenant_writes: Option<u32>,
    tenant_write_window_seconds: Option<u64>,
    penalize_throttled: Option<bool>,
}

#[derive(Deserialize)]
struct DeltaBody {
    page_size: Option<usize>,
    #[serde(default)]
    expire_tokens: bool,
}

impl Service for GraphService {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn handle(&self, req: &SimRequest) -> SimResponse {
        self.process(req, false)
    }

    fn fault_response(
        &self,
        req: &SimRequest,
        status: u16,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> SimResponse {
        let ids = self.ids(req, self.core.clock.now());
        let mut resp = match body {
            Some(b) => SimResponse::new(status).body(b),
            None => {
                let (code, message) = errors::for_status(status);
                Self::error_body(&GraphError::new(status, code, message), &ids)
            }
        };
        let defaults = std::mem::take(&mut resp.headers);
        resp.headers = headers;
        for (k, v) in defaults {
            resp.default_header(&k, v);
        }
        Self::decorate(&mut resp, &ids, 1);
        resp
    }

    async fn admin(&self, req: &SimRequest) -> Option<SimResponse> {
        let segs: Vec<&str> = req.path.trim_start_matches("/sim/").split('/').collect();
        let resp = match (req.method.as_str(), segs.as_slice()) {
            ("GET", ["counters"]) => admin_ok(&self.state.counters()),
            ("GET", ["groups", gid, "members"]) => admin_ok(&serde_json::json!({ "members": self.state.members(gid) })),
            ("GET", ["users", id]) => match self.state.user(id) {
                Some(u) => admin_ok(&u),
                None => admin_error(404, "no such user"),
            },
            ("PATCH", ["users", id]) => {
                let Ok(serde_json::Value::Object(props)) = serde_json::from_slice::<serde_json::Value>(&req.body)
                else {
                    return Some(admin_error(400, "expected a JSON object of user properties"));
                };
                for (k, v) in props {
                    if let Err(e) = self.state.set_user_field(id, &k, v) {
                        return Some(admin_error(400, &e.to_string()));
                    }
                }
                admin_ok(&self.state.user(id))
            }
            ("POST", ["throttle"]) => match serde_json::from_slice::<ThrottleBody>(&req.body) {
                Ok(b) => {
                    let mut t = self.throttle();
                    let mut cfg = t.cfg.clone();
                    cfg.enabled = b.enabled.unwrap_or(cfg.enabled);
                    cfg.writes = b.writes.unwrap_or(cfg.writes);
                    cfg.resource_units = b.resource_units.unwrap_or(cfg.resource_units);
                    cfg.penalize_throttled = b.penalize_throttled.unwrap_or(cfg.penalize_throttled);
                    if let Some(s) = b.write_window_seconds {
                        cfg.write_window = Duration::from_secs(s);
                    }
                    if let Some(s) = b.resource_unit_window_seconds {
                        cfg.resource_unit_window = Duration::from_secs(s);
                    }
                    cfg.tenant_writes = b.tenant_writes.unwrap_or(cfg.tenant_writes);
                    if let Some(s) = b.tenant_write_window_seconds {
                        cfg.tenant_write_window = Duration::from_secs(s);
                    }
                    t.set_config(cfg);
                    SimResponse::new(204)
                }
                Err(e) => admin_error(400, &e.to_string()),
            },
            ("GET", ["writes"]) => admin_ok(&self.state.write_histogram()),
            ("POST", ["delta"]) => match serde_json::from_slice::<DeltaBody>(&req.body) {
                Ok(b) => {
                    if let Some(n) = b.page_size {
                        self.state.set_delta_page_size(n);
                    }
                    if b.expire_tokens {
                        self.state.expire_delta_tokens();
                    }
                    SimResponse::new(204)
                }
                Err(_) => admin_error(400, "expected {\"page_size\": <number>, \"expire_tokens\": <bool>}"),
            },
            ("DELETE", ["users", id]) => {
                let permanent = req.query_pairs().iter().any(|(k, v)| k == "permanent" && v == "true");
                let done = if permanent { self.state.purge_user(id) } else { self.state.delete_user(id) };
                if done { SimResponse::new(204) } else { admin_error(404, "no such user") }
            }
            ("POST", ["users", id, "restore"]) => {
                if self.state.restore_user(id) {
                    admin_ok(&self.state.user(id))
                } else {
                    admin_error(404, "no such deleted user")
                }
            }
            ("GET", ["users", id, "automatic-replies"]) => match self.state.automatic_replies(id) {
                Some(v) => admin_ok(&v),
                None => admin_error(404, "no such mailbox"),
            },
            ("PUT" | "PATCH", ["users", id, "automatic-replies"]) => {
                match serde_json::from_slice::<serde_json::Value>(&req.body) {
                    Ok(v) => match self.state.set_automatic_replies(id, v) {
                        Ok(()) => admin_ok(&self.state.automatic_replies(id)),
                        Err(SimError::NotFound(what)) => admin_error(404, &format!("not found: {what}")),
                        Err(e) => admin_error(400, &e.to_string()),
                    },
                    Err(_) => admin_error(400, "expected an automaticRepliesSetting JSON object"),
                }
            }
            ("POST", ["replication"]) => {
                let ms = serde_json::from_slice::<serde_json::Value>(&req.body)
                    .ok()
                    .and_then(|v| v.get("delay_ms").and_then(serde_json::Value::as_u64));
                match ms {
                    Some(ms) => {
                        self.state.set_replication_delay(Duration::from_millis(ms));
                        SimResponse::new(204)
                    }
                    None => admin_error(400, "expected {\"delay_ms\": <number>}"),
                }
            }
            _ => return None,
        };
        Some(resp)
    }
}

/// A running Graph simulator. Cloning shares it.
#[derive(Clone, Debug)]
pub struct GraphSim {
    svc: Arc<GraphService>,
    server: Arc<ServerTask>,
}

impl GraphSim {
    pub(crate) async fn start(
        cfg: GraphConfig,
        tenant: &Tenant,
        clock: Clock,
        tokens: TokenTable,
        addr: SocketAddr,
    ) -> Result<Self, SimError> {
        let (listener, base_url) = server::bind(addr).await?;
        let (core, shutdown) = server::core(clock.clone(), base_url);
        let state = GraphState::new(tenant, clock, cfg.replication_delay);
        {
            let mut dir = state.lock();
            dir.delta.page_size = cfg.delta_page_size.max(1);
            dir.delta.lifetime = cfg.delta_token_lifetime;
        }
        let svc = Arc::new(GraphService {
            core,
            state,
            tokens,
            throttle: Mutex::new(Throttle::new(cfg.throttle)),
            tenant_id: tenant.id.clone(),
            require_lifecycle: cfg.require_lifecycle_permission,
        });
        let server = server::spawn(svc.clone(), listener, shutdown);
        Ok(Self { svc, server: Arc::new(server) })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.svc.core.base_url.clone()
    }

    /// The Graph base URL to configure clients with: `{base}/v1.0`.
    pub fn v1_url(&self) -> String {
        format!("{}/v1.0", self.svc.core.base_url)
    }

    pub fn faults(&self) -> &Faults {
        &self.svc.core.faults
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.svc.core.log.snapshot()
    }

    pub fn clear_requests(&self) {
        self.svc.core.log.clear();
    }

    pub fn clock(&self) -> &Clock {
        &self.svc.core.clock
    }

    /// The directory, for inspection and set-up.
    pub fn state(&self) -> &GraphState {
        &self.svc.state
    }

    /// Replaces the throttling settings and refills every bucket.
    pub fn set_throttle(&self, cfg: ThrottleConfig) {
        self.svc.throttle().set_config(cfg);
    }

    pub fn throttle_config(&self) -> ThrottleConfig {
        self.svc.throttle().cfg.clone()
    }

    /// A scripted answer for membership adds (`POST /v1.0/groups/{id}/members/$ref`) as Graph
    /// gives it when the replica a write reaches does not have the user yet (apis.md 2.9): 404
    /// `Request_ResourceNotFound` naming `member_id`, whatever the body names. It fires once;
    /// chain `.times(n)` or `.forever()` before pushing it onto [`GraphSim::faults`].
    pub fn member_not_replicated(member_id: &str) -> crate::faults::FaultRule {
        let e = GraphError::not_found(member_id);
        let body = serde_json::json!({ "error": { "code": e.code, "message": e.message } });
        crate::faults::FaultRule::respond(404)
            .on(http::Method::POST, "/v1.0/groups/*/members/$ref")
            .header("Content-Type", CONTENT_TYPE)
            .body(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// Sets the delay between membership writes and their visibility to reads.
    pub fn set_replication_delay(&self, delay: Duration) {
        self.svc.state.set_replication_delay(delay);
    }

    pub async fn shutdown(&self) {
        self.server.stop().await;
    }
}
