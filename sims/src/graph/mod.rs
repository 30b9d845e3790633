//! Microsoft Graph v1.0 simulator: users, managers, groups and group membership, `$batch`,
//! throttling, replication lag, and Graph's headers and error envelopes.
//!
//! Every response carries `request-id`, `client-request-id` (the client's, or equal to
//! `request-id`), `x-ms-ags-diagnostic`, `x-ms-resource-unit` and `OData-Version: 4.0`; error
//! bodies carry `innerError` with `date` (no `Z`, no fraction), `request-id` and
//! `client-request-id`. Permissions come from the `roles` of the bearer token, which must have been
//! issued by the login simulator for `https://graph.microsoft.com`.

mod batch;
mod errors;
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

pub use state::{GraphCounters, GraphState};
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
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            throttle: ThrottleConfig::default(),
            replication_delay: Duration::ZERO,
            require_lifecycle_permission: true,
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
        let percentage = match verdict {
            Verdict::Throttled { retry_after, information } => {
                self.state.lock().counters.throttled += 1;
                let e = GraphError::new(
                    429,
                    "Request_ThrottledTemporarily",
                    format!("Your request is throttled temporarily. Please try after {retry_after} seconds."),
                )
                .header("Retry-After", retry_after.to_string())
                .header(
                    "x-ms-throttle-scope",
                    format!("Tenant_Application/ReadWrite/{}/{}", token.app_id, self.tenant_id),
                )
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
    penalize_throttled: Option<bool>,
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
                    t.set_config(cfg);
                    SimResponse::new(204)
                }
                Err(e) => admin_error(400, &e.to_string()),
            },
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
        let svc = Arc::new(GraphService {
            core,
            state: GraphState::new(tenant, clock, cfg.replication_delay),
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

    /// Sets the delay between membership writes and their visibility to reads.
    pub fn set_replication_delay(&self, delay: Duration) {
        self.svc.state.set_replication_delay(delay);
    }

    pub async fn shutdown(&self) {
        self.server.stop().await;
    }
}
