//! Exchange Online admin API simulator: shared-mailbox permissions through the REST endpoint the
//! ExchangeOnlineManagement module uses.
//!
//! Routes (`{tenant}` must be the tenant id; a domain answers 401):
//! - `POST /adminapi/beta/{tenant}/InvokeCommand` with
//!   `{"CmdletInput":{"CmdletName":…,"Parameters":{…}}}`: these cmdlets, with the parameters
//!   listed in `cmdlets.rs` (Get-Mailbox, Set-Mailbox `GrantSendOnBehalfTo`, Get/Add/Remove-MailboxPermission,
//!   Get/Add/Remove-RecipientPermission, Get/Add/Set/Remove-MailboxFolderPermission). Any other
//!   cmdlet is refused with 403 and a body of NUL bytes declared as gzip.
//! - `POST /adminapi/beta/{tenant}/$batch`: `{"requests":[{id, method, url, headers, body}]}`,
//!   answered per item in `{"responses":[{id, status, headers, body}]}`.
//! - `POST /adminapi/v2.0/{tenant}/Mailbox` (Get-Mailbox, Set-Mailbox) and
//!   `/MailboxFolderPermission` (its four cmdlets); another cmdlet there is a 400 OData error.
//! - `POST /adminapi/v1.0/{tenant}/InvokeCommand`: 405.
//!
//! The bearer token must come from the login simulator for `https://outlook.office365.com` and
//! carry `Exchange.ManageAsApp` (beta) or `Exchange.ManageAsAppV2` (v2.0); otherwise 401 with no
//! body. With the RBAC-missing switch on, a valid token gets 403. Every response carries
//! `request-id` and `client-request-id`; cmdlets that ran carry `Rate-Limit-Remaining` and
//! `Rate-Limit-Reset`. Successful bodies are `{"@odata.context", "adminapi.warnings@odata.type",
//! "@adminapi.warnings", ["@odata.nextLink"], "value"}`, warnings also in `X-Warnings` headers.
//! `Get-*` results page with an absolute `@odata.nextLink`; the client re-POSTs the same body.

mod batch;
mod cmdlets;
mod errors;
mod state;
mod throttle;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

pub use state::{ExchangeCounters, ExchangeState, FolderEntry, FolderView, FullAccessEntry, MailboxView};
pub use throttle::ExchangeThrottleConfig;

use self::cmdlets::{CmdletSpec, Params};
use self::errors::{CONTENT_TYPE, CmdletError};
use self::throttle::{Throttle, Verdict};
use crate::clock::Clock;
use crate::error::SimError;
use crate::faults::Faults;
use crate::json::{Obj, Val};
use crate::log::LoggedRequest;
use crate::login::{EXCHANGE_RESOURCE, IssuedToken, TokenTable};
use crate::server::{self, Core, ServerTask, Service, SimRequest, SimResponse, admin_error, admin_ok, percent_decode};
use crate::tenant::Tenant;

/// The app role the beta InvokeCommand endpoint requires.
pub const MANAGE_AS_APP: &str = "Exchange.ManageAsApp";
/// The app role the v2.0 admin API requires.
pub const MANAGE_AS_APP_V2: &str = "Exchange.ManageAsAppV2";

/// How the service treats `ResultSize`; the sources disagree, so both are modelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResultSizeMode {
    /// The service ignores `ResultSize` and pages by the page size (one client's finding; the
    /// module applies `ResultSize` itself).
    #[default]
    Ignored,
    /// Without `ResultSize=Unlimited` every page holds one row, with a nextLink and a truncation
    /// warning while rows remain; a number caps the total (another client's finding).
    FirstPageOfOne,
}

/// Exchange simulator settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ExchangeConfig {
    pub throttle: ExchangeThrottleConfig,
    /// Delay between a permission write and its visibility to `Get-*` (default 0).
    pub propagation_delay: Duration,
    /// Rows per page of a `Get-*` result (default 1000); `Prefer: odata.maxpagesize` may lower it.
    pub page_size: usize,
    pub result_size: ResultSizeMode,
    /// Answer every valid token with 403, as for an app without an Exchange role assignment.
    pub rbac_missing: bool,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            throttle: ExchangeThrottleConfig::default(),
            propagation_delay: Duration::ZERO,
            page_size: 1000,
            result_size: ResultSizeMode::Ignored,
            rbac_missing: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    Beta,
    V2,
}

#[derive(Debug)]
struct Paging {
    page_size: usize,
    mode: ResultSizeMode,
}

struct Ids {
    request_id: String,
    client_request_id: String,
}

#[derive(Debug)]
pub(crate) struct ExchangeService {
    core: Core,
    state: ExchangeState,
    tokens: TokenTable,
    throttle: Mutex<Throttle>,
    paging: Mutex<Paging>,
    tenant_id: String,
}

/// The v2.0 endpoints and the cmdlets each accepts.
const V2_ENDPOINTS: &[(&str, &[&str])] = &[
    ("Mailbox", &["Get-Mailbox", "Set-Mailbox"]),
    (
        "MailboxFolderPermission",
        &[
            "Get-MailboxFolderPermission",
            "Add-MailboxFolderPermission",
            "Set-MailboxFolderPermission",
            "Remove-MailboxFolderPermission",
        ],
    ),
];

fn header_safe(text: &str) -> String {
    text.chars().map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' }).collect()
}

fn timestamp_header(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `Prefer: odata.maxpagesize=N` (also with spaces and other preferences).
fn max_page_size(req: &SimRequest) -> Option<usize> {
    let prefer = req.header("prefer")?;
    prefer.split([';', ',']).find_map(|part| {
        let (k, v) = part.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("odata.maxpagesize") { v.trim().parse().ok().filter(|n| *n > 0) } else { None }
    })
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "CmdletInput")]
    cmdlet_input: CmdletInput,
}

#[derive(Deserialize)]
struct CmdletInput {
    #[serde(rename = "CmdletName")]
    cmdlet_name: String,
    #[serde(rename = "Parameters", default)]
    parameters: Option<serde_json::Map<String, Value>>,
}

/// What a `ResultSize` parameter asks for.
#[derive(Clone, Copy, Debug)]
enum ResultSize {
    Unlimited,
    Count(usize),
}

fn result_size(p: &Params<'_>) -> Result<Option<ResultSize>, CmdletError> {
    let Some(v) = p.string("ResultSize")? else { return Ok(None) };
    if v.eq_ignore_ascii_case("unlimited") {
        return Ok(Some(ResultSize::Unlimited));
    }
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(Some(ResultSize::Count(n))),
        _ => Err(CmdletError::parameter(format!(
            "Cannot process argument transformation on parameter 'ResultSize'. Cannot convert value \"{v}\" to type \"Microsoft.Exchange.Data.Unlimited`1[System.UInt32]\"."
        ))),
    }
}

impl ExchangeService {
    fn ids(req: &SimRequest) -> Ids {
        let request_id = Uuid::new_v4().to_string();
        let client_request_id = req
            .header("client-request-id")
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| request_id.clone());
        Ids { request_id, client_request_id }
    }

    fn throttle(&self) -> MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn paging(&self) -> MutexGuard<'_, Paging> {
        self.paging.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn decorate(resp: &mut SimResponse, ids: &Ids) {
        resp.default_header("request-id", ids.request_id.clone());
        resp.default_header("client-request-id", ids.client_request_id.clone());
        resp.default_header("Cache-Control", "private");
        resp.default_header("X-CalculatedBETarget", "nampr01mb0001.namprd01.prod.outlook.com");
        resp.default_header("X-BEServer", "NAMPR01MB0001");
        resp.default_header("OData-Version", "4.0");
        resp.default_header("Strict-Transport-Security", "max-age=31536000; includeSubDomains");
    }

    /// Runs one request (an HTTP request, or a `$batch` item when `in_batch`).
    pub(crate) fn process(&self, req: &SimRequest, in_batch: bool) -> SimResponse {
        let now = self.core.clock.now();
        let ids = Self::ids(req);
        let mut resp = self.run(req, in_batch, now);
        Self::decorate(&mut resp, &ids);
        resp
    }

    fn authenticate(&self, req: &SimRequest, now: Timestamp, role: &str) -> Result<IssuedToken, SimResponse> {
        let header = req.header("authorization").unwrap_or("").trim();
        let token = match header.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => "",
        };
        if token.is_empty() {
            return Err(errors::unauthorized("The bearer token is missing."));
        }
        let Some(record) = self.tokens.lookup(token) else {
            return Err(errors::unauthorized("The token is invalid."));
        };
        if record.audience != EXCHANGE_RESOURCE {
            return Err(errors::unauthorized(&format!("The audience claim value '{}' is invalid.", record.audience)));
        }
        if now < record.not_before || now >= record.expires_at {
            return Err(errors::unauthorized("The token has expired."));
        }
        if !record.roles.iter().any(|r| r.eq_ignore_ascii_case(role)) {
            return Err(errors::unauthorized(&format!(
                "The role assigned to application {} isn't supported in this scenario.",
                record.app_id
            )));
        }
        Ok(record)
    }

    fn run(&self, req: &SimRequest, in_batch: bool, now: Timestamp) -> SimResponse {
        let segs: Vec<String> = req.path.trim_start_matches('/').split('/').map(percent_decode).collect();
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let (version, tenant, endpoint) = match s.as_slice() {
            [a, v, _, c] if eq(a, "adminapi") && eq(v, "v1.0") && eq(c, "InvokeCommand") => {
                let (code, message) = errors::for_status(405);
                return errors::odata_error(405, code, message);
            }
            [a, v, t, c] if eq(a, "adminapi") && eq(v, "beta") && (eq(c, "InvokeCommand") || *c == "$batch") => {
                (Version::Beta, *t, *c)
            }
            [a, v, t, e] if eq(a, "adminapi") && eq(v, "v2.0") => (Version::V2, *t, *e),
            _ => {
                let (code, message) = errors::for_status(404);
                return errors::odata_error(404, code, message);
            }
        };
        if req.method != http::Method::POST {
            let (code, _) = errors::for_status(405);
            let message = format!("The requested resource does not support http method '{}'.", req.method);
            return errors::odata_error(405, code, &message);
        }
        let role = if version == Version::Beta { MANAGE_AS_APP } else { MANAGE_AS_APP_V2 };
        let token = match self.authenticate(req, now, role) {
            Ok(t) => t,
            Err(resp) => return resp,
        };
        if !tenant.eq_ignore_ascii_case(&self.tenant_id) || !token.tenant_id.eq_ignore_ascii_case(&self.tenant_id) {
            return errors::unauthorized("The tenant in the request URL is not the token's tenant id.");
        }
        self.state.lock().counters.requests += 1;
        if version == Version::Beta && endpoint == "$batch" {
            if in_batch {
                return errors::odata_error(400, "BadRequest", "A batch request cannot contain another batch.");
            }
            return batch::run(self, req, tenant);
        }
        if self.state.lock().rbac_missing {
            return errors::forbidden_nul();
        }
        let input = match serde_json::from_slice::<Envelope>(&req.body) {
            Ok(env) => env.cmdlet_input,
            Err(_) => {
                return errors::odata_error(
                    400,
                    "BadRequest",
                    "The request body must be {\"CmdletInput\":{\"CmdletName\":\"…\",\"Parameters\":{…}}}.",
                );
            }
        };
        let Some(spec) = cmdlets::spec(&input.cmdlet_name) else {
            return errors::forbidden_nul();
        };
        if version == Version::V2 {
            let Some((_, allowed)) = V2_ENDPOINTS.iter().find(|(name, _)| name.eq_ignore_ascii_case(endpoint)) else {
                return errors::odata_error(404, "NotFound", &format!("The endpoint '{endpoint}' is not modelled."));
            };
            if !allowed.iter().any(|c| c.eq_ignore_ascii_case(spec.name)) {
                return errors::odata_error(
                    400,
                    "BadRequest",
                    &format!("The cmdlet '{}' is not supported on the endpoint '{endpoint}'.", spec.name),
                );
            }
        }
        let key = format!("{}|{}", token.app_id, self.tenant_id);
        let verdict = self.throttle().check(&key, spec.write, now);
        let mut resp = match verdict.retry_after {
            Some(seconds) => {
                self.state.lock().counters.throttled += 1;
                let (code, _) = errors::for_status(429);
                errors::odata_error(
                    429,
                    code,
                    &format!("The request was throttled because the application exceeded its rate limit. Try again in {seconds} seconds."),
                )
                .header("Retry-After", seconds.to_string())
            }
            None => {
                let empty = serde_json::Map::new();
                let params = input.parameters.as_ref().unwrap_or(&empty);
                self.invoke(spec, &Params(params), req, version, now)
            }
        };
        Self::rate_headers(&mut resp, &verdict);
        resp
    }

    fn rate_headers(resp: &mut SimResponse, v: &Verdict) {
        resp.default_header("Rate-Limit-Remaining", v.remaining.to_string());
        resp.default_header("Rate-Limit-Reset", timestamp_header(v.reset_at));
    }

    fn invoke(
        &self,
        spec: &CmdletSpec,
        p: &Params<'_>,
        req: &SimRequest,
        version: Version,
        now: Timestamp,
    ) -> SimResponse {
        let outcome = {
            let mut store = self.state.lock();
            store.counters.cmdlets += 1;
            let result = p.check(spec).and_then(|()| {
                let size = if spec.write { None } else { result_size(p)? };
                cmdlets::run(spec, p, &mut store, now).map(|out| (out, size))
            });
            if let Ok((out, _)) = &result
                && out.changed
            {
                store.counters.writes_applied += 1;
            }
            result
        };
        let (out, size) = match outcome {
            Ok(ok) => ok,
            Err(e) => return errors::cmdlet_failure(&e, &[]),
        };
        let mut warnings = out.warnings;
        let mut rows = out.rows;
        let mut next_link = None;
        if !spec.write {
            let (page, link, warning) = self.page(req, rows, size);
            rows = page;
            next_link = link;
            warnings.extend(warning);
        }
        let select: Option<Vec<String>> = req
            .query_pairs()
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("$select") || k.eq_ignore_ascii_case("select"))
            .map(|(_, v)| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect());
        let rows: Vec<Val> = rows
            .into_iter()
            .map(|row| match &select {
                None => Val::Obj(row),
                Some(keep) => {
                    let mut o = Obj::new();
                    for (k, v) in row.into_pairs() {
                        let base = k.split('@').next().unwrap_or(&k);
                        if keep.iter().any(|s| s.eq_ignore_ascii_case(base)) {
                            o.push(k, v);
                        }
                    }
                    Val::Obj(o)
                }
            })
            .collect();
        let api = if version == Version::Beta { "beta" } else { "v2.0" };
        let mut body = Obj::new()
            .with(
                "@odata.context",
                format!(
                    "{}/adminapi/{api}/{}/$metadata#Collection(Exchange.GenericHashTable)",
                    self.core.base_url, self.tenant_id
                ),
            )
            .with("adminapi.warnings@odata.type", "#Collection(String)")
            .with("@adminapi.warnings", Val::List(warnings.iter().map(|w| Val::from(w.as_str())).collect()));
        if let Some(link) = next_link {
            body.push("@odata.nextLink", link);
        }
        body.push("value", Val::List(rows));
        let mut resp = SimResponse::json_bytes(200, CONTENT_TYPE, body.to_bytes());
        for w in &warnings {
            resp.headers.push(("X-Warnings".to_owned(), header_safe(w)));
        }
        resp
    }

    /// One page of a `Get-*` result, its nextLink and a truncation warning.
    fn page(
        &self,
        req: &SimRequest,
        rows: Vec<Obj>,
        size: Option<ResultSize>,
    ) -> (Vec<Obj>, Option<String>, Option<String>) {
        let pairs = req.query_pairs();
        let skip = pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("$skiptoken"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let (configured, mode) = {
            let p = self.paging();
            (p.page_size.max(1), p.mode)
        };
        let normal = max_page_size(req).map_or(configured, |n| n.min(configured));
        let total = rows.len();
        let (page_size, cap, truncated_by) = match (mode, size) {
            (ResultSizeMode::Ignored, _) | (ResultSizeMode::FirstPageOfOne, Some(ResultSize::Unlimited)) => {
                (normal, total, None)
            }
            (ResultSizeMode::FirstPageOfOne, Some(ResultSize::Count(n))) => (normal, n.min(total), Some(n)),
            (ResultSizeMode::FirstPageOfOne, None) => (1, total, None),
        };
        let end = skip.saturating_add(page_size).min(cap);
        let page: Vec<Obj> = rows.into_iter().skip(skip).take(end.saturating_sub(skip)).collect();
        let next = (end < cap).then(|| {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs.iter().filter(|(k, _)| !k.eq_ignore_ascii_case("$skiptoken")) {
                q.append_pair(k, v);
            }
            q.append_pair("$skiptoken", &end.to_string());
            format!("{}{}?{}", self.core.base_url, req.path, q.finish())
        });
        let warning = match (mode, size) {
            (ResultSizeMode::FirstPageOfOne, None) if next.is_some() => Some(
                "By default, only the first 1 items are returned. Use the ResultSize parameter to specify the number of items returned. To return all items, specify \"-ResultSize Unlimited\".".to_owned(),
            ),
            _ if truncated_by.is_some_and(|n| n < total) && next.is_none() => Some(
                "There are more results available than are currently displayed. To view them, increase the value for the ResultSize parameter.".to_owned(),
            ),
            _ => None,
        };
        (page, next, warning)
    }
}

#[derive(Deserialize)]
struct ThrottleBody {
    enabled: Option<bool>,
    write_per_second: Option<f64>,
    write_burst: Option<u32>,
    read_per_second: Option<f64>,
    read_burst: Option<u32>,
    penalize_refused: Option<bool>,
}

#[derive(Deserialize)]
struct PagingBody {
    page_size: Option<usize>,
    /// `ignored` or `first_page_of_one`.
    result_size: Option<String>,
}

impl Service for ExchangeService {
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
        let ids = Self::ids(req);
        let mut resp = match body {
            Some(b) => SimResponse::new(status).body(b),
            None => match status {
                401 => errors::unauthorized("The token has expired."),
                403 => errors::forbidden_nul(),
                s => {
                    let (code, message) = errors::for_status(s);
                    errors::odata_error(s, code, message)
                }
            },
        };
        let defaults = std::mem::take(&mut resp.headers);
        resp.headers = headers;
        for (k, v) in defaults {
            resp.default_header(&k, v);
        }
        Self::decorate(&mut resp, &ids);
        resp
    }

    async fn admin(&self, req: &SimRequest) -> Option<SimResponse> {
        let segs: Vec<String> = req.path.trim_start_matches("/sim/").split('/').map(percent_decode).collect();
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let json = || serde_json::from_slice::<Value>(&req.body).ok();
        let resp = match (req.method.as_str(), s.as_slice()) {
            ("GET", ["mailboxes"]) => admin_ok(&self.state.mailboxes()),
            ("GET", ["mailboxes", identity]) => match self.state.mailbox(identity) {
                Some(m) => admin_ok(&m),
                None => admin_error(404, "no such mailbox"),
            },
            ("GET", ["counters"]) => admin_ok(&self.state.counters()),
            ("POST", ["throttle"]) => match serde_json::from_slice::<ThrottleBody>(&req.body) {
                Ok(b) => {
                    let mut t = self.throttle();
                    let mut cfg = t.cfg.clone();
                    cfg.enabled = b.enabled.unwrap_or(cfg.enabled);
                    cfg.write_per_second = b.write_per_second.unwrap_or(cfg.write_per_second);
                    cfg.write_burst = b.write_burst.unwrap_or(cfg.write_burst);
                    cfg.read_per_second = b.read_per_second.unwrap_or(cfg.read_per_second);
                    cfg.read_burst = b.read_burst.unwrap_or(cfg.read_burst);
                    cfg.penalize_refused = b.penalize_refused.unwrap_or(cfg.penalize_refused);
                    t.set_config(cfg);
                    SimResponse::new(204)
                }
                Err(e) => admin_error(400, &e.to_string()),
            },
            ("POST", ["propagation"]) => match json().and_then(|v| v.get("delay_ms").and_then(Value::as_u64)) {
                Some(ms) => {
                    self.state.set_propagation_delay(Duration::from_millis(ms));
                    SimResponse::new(204)
                }
                None => admin_error(400, "expected {\"delay_ms\": <number>}"),
            },
            ("PUT", ["rbac"]) => match json().and_then(|v| v.get("missing").and_then(Value::as_bool)) {
                Some(missing) => {
                    self.state.lock().rbac_missing = missing;
                    SimResponse::new(204)
                }
                None => admin_error(400, "expected {\"missing\": true|false}"),
            },
            ("PUT", ["paging"]) => match serde_json::from_slice::<PagingBody>(&req.body) {
                Ok(b) => {
                    let mode = match b.result_size.as_deref() {
                        None => None,
                        Some("ignored") => Some(ResultSizeMode::Ignored),
                        Some("first_page_of_one") => Some(ResultSizeMode::FirstPageOfOne),
                        Some(_) => {
                            return Some(admin_error(400, "result_size is \"ignored\" or \"first_page_of_one\""));
                        }
                    };
                    let mut p = self.paging();
                    p.page_size = b.page_size.unwrap_or(p.page_size).max(1);
                    p.mode = mode.unwrap_or(p.mode);
                    SimResponse::new(204)
                }
                Err(e) => admin_error(400, &e.to_string()),
            },
            _ => return None,
        };
        Some(resp)
    }
}

/// A running Exchange Online admin API simulator. Cloning shares it.
#[derive(Clone, Debug)]
pub struct ExchangeSim {
    svc: Arc<ExchangeService>,
    server: Arc<ServerTask>,
}

impl ExchangeSim {
    /// Starts the simulator on `addr` with the tenant's mailboxes, validating bearer tokens
    /// against `tokens` (the login simulator's table).
    pub async fn start(
        cfg: ExchangeConfig,
        tenant: &Tenant,
        clock: Clock,
        tokens: TokenTable,
        addr: SocketAddr,
    ) -> Result<Self, SimError> {
        let state = ExchangeState::new(tenant, clock.clone(), cfg.propagation_delay)?;
        state.lock().rbac_missing = cfg.rbac_missing;
        let (listener, base_url) = server::bind(addr).await?;
        let (core, shutdown) = server::core(clock, base_url);
        let svc = Arc::new(ExchangeService {
            core,
            state,
            tokens,
            throttle: Mutex::new(Throttle::new(cfg.throttle)),
            paging: Mutex::new(Paging { page_size: cfg.page_size.max(1), mode: cfg.result_size }),
            tenant_id: tenant.id.clone(),
        });
        let server = server::spawn(svc.clone(), listener, shutdown);
        Ok(Self { svc, server: Arc::new(server) })
    }

    /// `http://127.0.0.1:PORT`: the stand-in for `https://outlook.office365.com`.
    pub fn base_url(&self) -> String {
        self.svc.core.base_url.clone()
    }

    /// The tenant id the routes expect.
    pub fn tenant_id(&self) -> &str {
        &self.svc.tenant_id
    }

    /// `{base}/adminapi/beta/{tenant}/InvokeCommand`.
    pub fn invoke_url(&self) -> String {
        format!("{}/adminapi/beta/{}/InvokeCommand", self.base_url(), self.svc.tenant_id)
    }

    /// The mailboxes, for inspection and set-up.
    pub fn state(&self) -> &ExchangeState {
        &self.svc.state
    }

    /// The scripted faults of this simulator.
    pub fn faults(&self) -> &Faults {
        &self.svc.core.faults
    }

    /// The request log (secrets redacted), oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.svc.core.log.snapshot()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.svc.core.log.clear();
    }

    /// The shared simulated clock.
    pub fn clock(&self) -> &Clock {
        &self.svc.core.clock
    }

    /// Replaces the throttling settings and refills every bucket.
    pub fn set_throttle(&self, cfg: ExchangeThrottleConfig) {
        self.svc.throttle().set_config(cfg);
    }

    /// The current throttling settings.
    pub fn throttle_config(&self) -> ExchangeThrottleConfig {
        self.svc.throttle().cfg.clone()
    }

    /// Sets the delay between permission writes and their visibility to `Get-*`.
    pub fn set_propagation_delay(&self, delay: Duration) {
        self.svc.state.set_propagation_delay(delay);
    }

    /// Switches the "no Exchange role assignment" mode (every valid token gets 403).
    pub fn set_rbac_missing(&self, missing: bool) {
        self.svc.state.lock().rbac_missing = missing;
    }

    /// Sets the page size and the `ResultSize` behaviour.
    pub fn set_paging(&self, page_size: usize, mode: ResultSizeMode) {
        let mut p = self.svc.paging();
        p.page_size = page_size.max(1);
        p.mode = mode;
    }

    /// Stops the server (waits at most a few seconds for requests in flight).
    pub async fn shutdown(&self) {
        self.server.stop().await;
    }
}
