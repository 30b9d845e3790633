//! ServiceNow simulator: the Table API for the service-catalog tables, Basic and OAuth
//! (`/oauth_token.do`, password and refresh-token grants) authentication, per-user hourly rate-limit
//! rules, the exact failure envelopes, and an outbound webhook fired on demand.
//!
//! # Approvals
//!
//! `sysapproval_approver` rows are served like every table: `POST` answers 201 with the full
//! record, references render as `{link, value}` (or with their display value under
//! `sysparm_display_value`), `comments` is a journal field (writes append to
//! `sys_journal_field`, reads return `""`), and `sys_updated_by` is the account that wrote. A
//! row inserted without a `state` gets `requested`.
//!
//! A simplified catalog workflow ([`ServiceNowConfig::approval_workflow`], on by default)
//! settles a RITM from the approvals it requested itself: the rows [`ServiceNowState::create_ritm`]
//! creates for its `approvers` carry the workflow's `wf_activity`. When all of them are
//! approved, the RITM's `approval` becomes `approved` and its stage `fulfillment`; when one is
//! rejected, the RITM is rejected and closed incomplete. Approvals inserted through the Table
//! API without a `wf_activity` belong to the integration that created them (grantline runs its
//! own approval engine over them): approving or rejecting them never changes the RITM, and they
//! do not count towards the workflow's own approvals of the same RITM.
//!
//! An approver acting in the ServiceNow UI is [`ServiceNowState::act_on_approval`] (state,
//! journal comment and `sys_updated_by` as that user) or [`ServiceNowSim::approve_in_ui`], which
//! also rings the approval doorbell when one is set ([`ServiceNowSim::set_approval_webhook`]): the
//! webhook payload of the approval's RITM with event `approval.updated`, sent with the
//! configured secret header and signing, as a business rule on `sysapproval_approver` would.
//! Over HTTP: `PUT /sim/approval-webhook` `{"url": "..." | null}` and
//! `POST /sim/approvals/{sys_id}/act` `{"user_name", "state", "comment"}`.

mod routes;
mod schema;
mod state;
mod webhook;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

pub use state::{CreatedRitm, JournalEntry, NewRitm, Record, RitmView, ServiceNowState};
pub use webhook::{HmacSigning, WebhookConfig, WebhookDelivery, WebhookTarget, webhook_signature};

use self::routes::Caller;
use self::state::{Store, glide_time};
use crate::clock::Clock;
use crate::error::SimError;
use crate::faults::Faults;
use crate::json::Obj;
use crate::log::LoggedRequest;
use crate::server::{self, Core, ServerTask, Service, SimRequest, SimResponse, admin_error, admin_ok};
use crate::tenant::{Tenant, ids, snow_sys_id};

pub(crate) const CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// The event of the approval doorbell.
pub(crate) const APPROVAL_UPDATED: &str = "approval.updated";

/// `{"error":{"message","detail"},"status":"failure"}`.
pub(crate) fn failure(status: u16, message: &str, detail: Option<&str>) -> SimResponse {
    let body = Obj::new()
        .with(
            "error",
            Obj::new()
                .with("message", message)
                .with("detail", detail.map_or(serde_json::Value::Null, |d| serde_json::Value::String(d.to_owned()))),
        )
        .with("status", "failure");
    SimResponse::json_bytes(status, CONTENT_TYPE, body.to_bytes())
}

/// An account that may call the API (Basic auth, or the OAuth password grant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNowAccount {
    pub user_name: String,
    pub password: String,
    /// Full name on its sys_user row.
    pub name: String,
    pub sys_id: String,
    /// Writes (PATCH/PUT/POST) allowed; otherwise they get 403.
    pub can_write: bool,
}

/// An OAuth client registered on the instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
}

/// A catalog item and its variables (name, question).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogItem {
    pub sys_id: String,
    pub name: String,
    pub short_description: String,
    pub variables: Vec<(String, String)>,
}

/// A rate-limit rule for the Table API, counted per user per hour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitRule {
    pub sys_id: String,
    /// `None`: all users. A single-user rule beats an all-users rule; among equals the lowest
    /// limit wins.
    pub user_name: Option<String>,
    pub requests_per_hour: u32,
}

/// ServiceNow simulator settings.
#[derive(Clone, Debug)]
pub struct ServiceNowConfig {
    /// Instance host name used in webhook payloads (`contoso.service-now.com`).
    pub instance: String,
    pub accounts: Vec<ServiceNowAccount>,
    pub oauth_clients: Vec<OAuthClient>,
    /// `expires_in` of OAuth access tokens (default 1799 s).
    pub token_lifetime: Duration,
    pub catalog_items: Vec<CatalogItem>,
    /// Off when empty (the default).
    pub rate_limits: Vec<RateLimitRule>,
    pub webhook: WebhookConfig,
    /// Run the simplified catalog workflow (default true): a RITM's approval and stage follow
    /// the approvals the workflow requested itself (all approved, or one rejected). Approvals
    /// inserted through the Table API are never counted; see the module docs.
    pub approval_workflow: bool,
}

impl Default for ServiceNowConfig {
    fn default() -> Self {
        Self::demo()
    }
}

impl ServiceNowConfig {
    /// The demo instance: integration and read-only accounts, one OAuth client, three catalog items.
    pub fn demo() -> Self {
        Self {
            instance: ids::SNOW_INSTANCE.to_owned(),
            accounts: vec![
                ServiceNowAccount {
                    user_name: ids::SNOW_USER.to_owned(),
                    password: ids::SNOW_PASSWORD.to_owned(),
                    name: "grantline Integration".to_owned(),
                    sys_id: ids::SNOW_USER_SYS_ID.to_owned(),
                    can_write: true,
                },
                ServiceNowAccount {
                    user_name: ids::SNOW_READONLY_USER.to_owned(),
                    password: ids::SNOW_READONLY_PASSWORD.to_owned(),
                    name: "Readonly Auditor".to_owned(),
                    sys_id: "90000000000040008000000000000002".to_owned(),
                    can_write: false,
                },
            ],
            oauth_clients: vec![OAuthClient {
                client_id: ids::SNOW_OAUTH_CLIENT_ID.to_owned(),
                client_secret: ids::SNOW_OAUTH_CLIENT_SECRET.to_owned(),
            }],
            token_lifetime: Duration::from_secs(1799),
            catalog_items: vec![
                CatalogItem {
                    sys_id: ids::CAT_ITEM_FINANCE_BI.to_owned(),
                    name: ids::CAT_ITEM_FINANCE_BI_NAME.to_owned(),
                    short_description: "Read access to the Finance BI workspace".to_owned(),
                    variables: vec![
                        ("justification".into(), "Business justification".into()),
                        ("duration_days".into(), "Access duration (days)".into()),
                    ],
                },
                CatalogItem {
                    sys_id: ids::CAT_ITEM_TEAM_ALPHA.to_owned(),
                    name: ids::CAT_ITEM_TEAM_ALPHA_NAME.to_owned(),
                    short_description: "Join Team Alpha".to_owned(),
                    variables: vec![("justification".into(), "Business justification".into())],
                },
                CatalogItem {
                    sys_id: ids::CAT_ITEM_SHARED_MAILBOX.to_owned(),
                    name: ids::CAT_ITEM_SHARED_MAILBOX_NAME.to_owned(),
                    short_description: "Access to a shared mailbox".to_owned(),
                    variables: vec![
                        ("mailbox".into(), "Mailbox".into()),
                        ("access".into(), "Access level".into()),
                        ("duration".into(), "For how long".into()),
                        ("justification".into(), "Business justification".into()),
                    ],
                },
                CatalogItem {
                    sys_id: ids::CAT_ITEM_UNMAPPED.to_owned(),
                    name: ids::CAT_ITEM_UNMAPPED_NAME.to_owned(),
                    short_description: "Request a standing desk".to_owned(),
                    variables: vec![("location".into(), "Office location".into())],
                },
            ],
            rate_limits: Vec::new(),
            webhook: WebhookConfig::default(),
            approval_workflow: true,
        }
    }
}

/// The `user_name` a directory user gets in ServiceNow: the mail (or UPN) local part, lower case.
pub fn snow_user_name(user: &crate::tenant::User) -> String {
    let source = user.mail.as_deref().unwrap_or(&user.user_principal_name);
    source.split('@').next().unwrap_or(source).to_ascii_lowercase()
}

fn seed(store: &mut Store, tenant: &Tenant, cfg: &ServiceNowConfig, now: Timestamp) -> Result<(), SimError> {
    let by = "system";
    let mut group = state::Record::new();
    group.insert("sys_id".into(), ids::SNOW_GROUP_SERVICE_DESK.into());
    group.insert("name".into(), "Service Desk".into());
    group.insert("description".into(), "First-line service desk".into());
    group.insert("active".into(), "true".into());
    store.insert("sys_user_group", group, by, now)?;
    let managers: HashMap<&str, &str> = tenant.managers.iter().map(|(u, m)| (u.as_str(), m.as_str())).collect();
    for (i, u) in tenant.users.iter().enumerate() {
        let mut r = state::Record::new();
        r.insert("sys_id".into(), snow_sys_id(&u.id));
        r.insert("user_name".into(), snow_user_name(u));
        r.insert("first_name".into(), u.given_name.clone().unwrap_or_default());
        r.insert("last_name".into(), u.surname.clone().unwrap_or_default());
        r.insert("name".into(), u.display_name.clone());
        r.insert("email".into(), u.mail.clone().unwrap_or_default());
        r.insert("title".into(), u.job_title.clone().unwrap_or_default());
        r.insert("department".into(), u.department.clone().unwrap_or_default());
        r.insert("manager".into(), managers.get(u.id.as_str()).map(|m| snow_sys_id(m)).unwrap_or_default());
        r.insert("employee_number".into(), format!("{:06}", i + 1));
        r.insert("active".into(), u.account_enabled.to_string());
        r.insert("locked_out".into(), "false".into());
        store.insert("sys_user", r, by, now)?;
    }
    for a in &cfg.accounts {
        let mut r = state::Record::new();
        r.insert("sys_id".into(), a.sys_id.clone());
        r.insert("user_name".into(), a.user_name.clone());
        r.insert("name".into(), a.name.clone());
        r.insert("active".into(), "true".into());
        r.insert("locked_out".into(), "false".into());
        store.insert("sys_user", r, by, now)?;
    }
    for c in &cfg.catalog_items {
        let mut r = state::Record::new();
        r.insert("sys_id".into(), c.sys_id.clone());
        r.insert("name".into(), c.name.clone());
        r.insert("short_description".into(), c.short_description.clone());
        r.insert("active".into(), "true".into());
        r.insert("category".into(), "Access".into());
        r.insert("sys_class_name".into(), "sc_cat_item".into());
        store.insert("sc_cat_item", r, by, now)?;
        for (order, (name, question)) in c.variables.iter().enumerate() {
            let mut q = state::Record::new();
            q.insert("name".into(), name.clone());
            q.insert("question_text".into(), question.clone());
            q.insert("cat_item".into(), c.sys_id.clone());
            q.insert("type".into(), "6".into());
            q.insert("order".into(), ((order + 1) * 100).to_string());
            q.insert("active".into(), "true".into());
            store.insert("item_option_new", q, by, now)?;
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Auth {
    access: HashMap<String, (String, Timestamp)>,
    refresh: HashMap<String, (String, Timestamp)>,
    rate: HashMap<(String, String, i64), u32>,
}

#[derive(Debug)]
pub(crate) struct ServiceNowService {
    core: Core,
    state: ServiceNowState,
    cfg: Mutex<ServiceNowConfig>,
    auth: Mutex<Auth>,
    http: reqwest::Client,
    /// Where an approval decision taken in the UI rings the doorbell (none by default).
    approval_doorbell: Mutex<Option<String>>,
}

fn random_token() -> String {
    let bytes: Vec<u8> = (0..3).flat_map(|_| *uuid::Uuid::new_v4().as_bytes()).collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unauthenticated() -> SimResponse {
    failure(401, "User Not Authenticated", Some("Required to provide Auth information"))
        .header("WWW-Authenticate", "BASIC realm=\"Service-now\"")
        .header("X-Is-Logged-In", "false")
}

fn oauth_denied() -> SimResponse {
    let body = Obj::new().with("error_description", "access_denied").with("error", "server_error");
    SimResponse::json_bytes(401, CONTENT_TYPE, body.to_bytes())
}

impl ServiceNowService {
    fn cfg(&self) -> MutexGuard<'_, ServiceNowConfig> {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn auth(&self) -> MutexGuard<'_, Auth> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn authenticate(&self, req: &SimRequest, now: Timestamp) -> Option<ServiceNowAccount> {
        let header = req.header("authorization")?.trim();
        let (scheme, rest) = header.split_once(' ')?;
        let cfg = self.cfg();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD.decode(rest.trim()).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, pass) = text.split_once(':')?;
            return cfg.accounts.iter().find(|a| a.user_name == user && a.password == pass).cloned();
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let (user, exp) = self.auth().access.get(rest.trim()).cloned()?;
            if now >= exp {
                return None;
            }
            return cfg.accounts.iter().find(|a| a.user_name == user).cloned();
        }
        None
    }

    /// Applies the matching rate-limit rule; returns its headers, or the 429.
    fn rate_limit(&self, user: &str, now: Timestamp) -> Result<Vec<(String, String)>, SimResponse> {
        let cfg = self.cfg();
        let specific: Vec<&RateLimitRule> =
            cfg.rate_limits.iter().filter(|r| r.user_name.as_deref() == Some(user)).collect();
        let pool = if specific.is_empty() {
            cfg.rate_limits.iter().filter(|r| r.user_name.is_none()).collect()
        } else {
            specific
        };
        let Some(rule) = pool.into_iter().min_by_key(|r| r.requests_per_hour) else {
            return Ok(Vec::new());
        };
        let hour = now.as_second().div_euclid(3600) * 3600;
        let reset = hour + 3600;
        let mut auth = self.auth();
        let count = auth.rate.entry((rule.sys_id.clone(), user.to_owned(), hour)).or_insert(0);
        *count += 1;
        let headers = vec![
            ("X-RateLimit-Limit".to_owned(), rule.requests_per_hour.to_string()),
            ("X-RateLimit-Reset".to_owned(), reset.to_string()),
            ("X-RateLimit-Rule".to_owned(), rule.sys_id.clone()),
        ];
        if *count > rule.requests_per_hour {
            let mut resp = failure(
                429,
                "Rate limit exceeded",
                Some(&format!("Rate limit of {} requests per hour for Table API exceeded", rule.requests_per_hour)),
            );
            resp.headers.push(("Retry-After".into(), (reset - now.as_second()).max(1).to_string()));
            resp.headers.extend(headers);
            return Err(resp);
        }
        Ok(headers)
    }

    fn oauth(&self, req: &SimRequest, now: Timestamp) -> SimResponse {
        if req.method != http::Method::POST {
            return failure(405, "Method not Supported", None);
        }
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(&req.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let get = |k: &str| form.get(k).cloned().unwrap_or_default();
        let cfg = self.cfg().clone();
        let client_ok = cfg
            .oauth_clients
            .iter()
            .any(|c| c.client_id == get("client_id") && c.client_secret == get("client_secret"));
        if !client_ok {
            return oauth_denied();
        }
        let user = match get("grant_type").as_str() {
            "password" => cfg
                .accounts
                .iter()
                .find(|a| a.user_name == get("username") && a.password == get("password"))
                .map(|a| a.user_name.clone()),
            "refresh_token" => {
                self.auth().refresh.get(&get("refresh_token")).filter(|(_, exp)| now < *exp).map(|(u, _)| u.clone())
            }
            _ => None,
        };
        let Some(user) = user else {
            return oauth_denied();
        };
        let life = SignedDuration::try_from(cfg.token_lifetime).unwrap_or(SignedDuration::from_secs(1799));
        let access = random_token();
        let refresh = if get("grant_type") == "refresh_token" { get("refresh_token") } else { random_token() };
        {
            let mut auth = self.auth();
            auth.access.insert(access.clone(), (user.clone(), now.checked_add(life).unwrap_or(now)));
            let refresh_exp = now.checked_add(SignedDuration::from_hours(24 * 100)).unwrap_or(now);
            auth.refresh.insert(refresh.clone(), (user, refresh_exp));
        }
        let body = Obj::new()
            .with("scope", "useraccount")
            .with("token_type", "Bearer")
            .with("expires_in", serde_json::Value::from(cfg.token_lifetime.as_secs()))
            .with("refresh_token", refresh)
            .with("access_token", access);
        SimResponse::json_bytes(200, "application/json;charset=UTF-8", body.to_bytes())
    }

    async fn fire(&self, ritm: &str, target: &WebhookTarget) -> Result<WebhookDelivery, SimError> {
        let instance = self.cfg().instance.clone();
        let body = webhook::payload(&self.state, &instance, ritm, target.event.as_deref())?;
        webhook::deliver(&self.http, target, body, self.core.clock.unix_seconds()).await
    }

    fn doorbell(&self) -> MutexGuard<'_, Option<String>> {
        self.approval_doorbell.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An approver's action in the UI, then the approval doorbell when one is set.
    async fn act_in_ui(
        &self,
        approval_sys_id: &str,
        user_name: &str,
        state: &str,
        comment: &str,
    ) -> Result<Option<WebhookDelivery>, SimError> {
        let doorbell = self.doorbell().clone();
        let doorbell = doorbell
            .map(|url| {
                let ritm = self
                    .state
                    .approval_ritm(approval_sys_id)
                    .ok_or_else(|| SimError::NotFound(format!("the RITM of sysapproval_approver {approval_sys_id}")))?;
                Ok::<_, SimError>((url, ritm))
            })
            .transpose()?;
        self.state.act_on_approval(approval_sys_id, user_name, state, comment)?;
        let Some((url, ritm)) = doorbell else {
            return Ok(None);
        };
        let mut target = self.default_target(&url);
        target.event = Some(APPROVAL_UPDATED.to_owned());
        self.fire(&ritm, &target).await.map(Some)
    }

    fn default_target(&self, url: &str) -> WebhookTarget {
        let cfg = self.cfg();
        WebhookTarget {
            url: url.to_owned(),
            event: None,
            headers: vec![(cfg.webhook.secret_header.clone(), cfg.webhook.secret.clone())],
            hmac: cfg.webhook.hmac.clone(),
        }
    }
}

#[derive(Deserialize)]
struct FireBody {
    ritm: String,
    url: String,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    secret_header: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    hmac: Option<HmacSigning>,
}

#[derive(Deserialize)]
struct DoorbellBody {
    url: Option<String>,
}

#[derive(Deserialize)]
struct ActBody {
    user_name: String,
    state: String,
    #[serde(default)]
    comment: String,
}

impl Service for ServiceNowService {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn handle(&self, req: &SimRequest) -> SimResponse {
        let now = self.core.clock.now();
        if req.path == "/oauth_token.do" {
            return self.oauth(req, now);
        }
        let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        let (v1, rest): (bool, &[&str]) = match segs.as_slice() {
            ["api", "now", "table", rest @ ..] => (false, rest),
            ["api", "now", "v2", "table", rest @ ..] => (false, rest),
            ["api", "now", "v1", "table", rest @ ..] => (true, rest),
            ["api", ..] => {
                return failure(400, "Requested URI does not represent any resource", None);
            }
            _ => return SimResponse::json_bytes(404, "text/html;charset=UTF-8", "<html><body>Not Found</body></html>"),
        };
        let (table, sys_id) = match rest {
            [t] if !t.is_empty() => (*t, None),
            [t, id] if !t.is_empty() && !id.is_empty() => (*t, Some(*id)),
            _ => return failure(400, "Requested URI does not represent any resource", None),
        };
        let Some(account) = self.authenticate(req, now) else {
            return unauthenticated();
        };
        let rate_headers = match self.rate_limit(&account.user_name, now) {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        let caller = Caller { user_name: &account.user_name, can_write: account.can_write };
        let mut resp = {
            let mut store = self.state.lock();
            routes::table(&mut store, req, table, sys_id, v1, &caller, &self.core.base_url, now)
        };
        resp.headers.extend(rate_headers);
        resp
    }

    fn fault_response(
        &self,
        _req: &SimRequest,
        status: u16,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> SimResponse {
        let mut resp = match body {
            Some(b) => SimResponse::new(status).body(b),
            None => {
                let (message, detail) = match status {
                    401 => ("User Not Authenticated", "Required to provide Auth information"),
                    403 => ("Operation Failed", "ACL Exception Update Failed due to security constraints"),
                    404 => ("No Record found", "Record doesn't exist or ACL restricts the record retrieval"),
                    429 => ("Rate limit exceeded", "Rate limit of requests per hour for Table API exceeded"),
                    503 => ("Service Unavailable", "The instance is temporarily unavailable"),
                    _ => ("Request failed", "The instance could not process the request"),
                };
                failure(status, message, Some(detail))
            }
        };
        let defaults = std::mem::take(&mut resp.headers);
        resp.headers = headers;
        for (k, v) in defaults {
            resp.default_header(&k, v);
        }
        resp
    }

    async fn admin(&self, req: &SimRequest) -> Option<SimResponse> {
        let segs: Vec<&str> = req.path.trim_start_matches("/sim/").split('/').collect();
        let resp = match (req.method.as_str(), segs.as_slice()) {
            ("POST", ["ritms"]) => match serde_json::from_slice::<NewRitm>(&req.body) {
                Ok(new) => match self.state.create_ritm(new) {
                    Ok(created) => {
                        let mut r = admin_ok(&created);
                        r.status = 201;
                        r
                    }
                    Err(e) => admin_error(400, &e.to_string()),
                },
                Err(e) => admin_error(400, &format!("invalid RITM: {e}")),
            },
            ("GET", ["ritms", id]) => match self.state.ritm(id) {
                Some(view) => admin_ok(&serde_json::json!({
                    "ritm": view,
                    "journal": self.state.journal(&view.sys_id),
                    "approvals": self.state.approvals(&view.sys_id),
                })),
                None => admin_error(404, "no such RITM"),
            },
            ("POST", ["webhooks", "fire"]) => match serde_json::from_slice::<FireBody>(&req.body) {
                Ok(b) => {
                    let mut target = self.default_target(&b.url);
                    target.event = b.event;
                    if let (Some(h), Some(s)) = (b.secret_header, b.secret) {
                        target.headers = vec![(h, s)];
                    }
                    target.headers.extend(b.headers);
                    if b.hmac.is_some() {
                        target.hmac = b.hmac;
                    }
                    match self.fire(&b.ritm, &target).await {
                        Ok(d) => admin_ok(&d),
                        Err(SimError::NotFound(m)) => admin_error(404, &m),
                        Err(e) => admin_error(502, &e.to_string()),
                    }
                }
                Err(e) => admin_error(400, &format!("invalid fire request: {e}")),
            },
            ("PUT", ["approval-webhook"]) => match serde_json::from_slice::<DoorbellBody>(&req.body) {
                Ok(b) => {
                    *self.doorbell() = b.url;
                    SimResponse::new(204)
                }
                Err(e) => admin_error(400, &format!("invalid approval webhook: {e}")),
            },
            ("POST", ["approvals", id, "act"]) => match serde_json::from_slice::<ActBody>(&req.body) {
                Ok(b) => match self.act_in_ui(id, &b.user_name, &b.state, &b.comment).await {
                    Ok(delivery) => admin_ok(&serde_json::json!({ "delivery": delivery })),
                    Err(SimError::NotFound(m)) => admin_error(404, &m),
                    Err(SimError::Config(m)) => admin_error(400, &m),
                    Err(e) => admin_error(502, &e.to_string()),
                },
                Err(e) => admin_error(400, &format!("invalid approval action: {e}")),
            },
            ("PUT", ["rate-limits"]) => match serde_json::from_slice::<Vec<RateLimitRule>>(&req.body) {
                Ok(rules) => {
                    self.cfg().rate_limits = rules;
                    SimResponse::new(204)
                }
                Err(e) => admin_error(400, &e.to_string()),
            },
            _ => return None,
        };
        Some(resp)
    }
}

/// A running ServiceNow simulator. Cloning shares it.
#[derive(Clone, Debug)]
pub struct ServiceNowSim {
    svc: Arc<ServiceNowService>,
    server: Arc<ServerTask>,
}

impl ServiceNowSim {
    pub(crate) async fn start(
        cfg: ServiceNowConfig,
        tenant: &Tenant,
        clock: Clock,
        addr: SocketAddr,
    ) -> Result<Self, SimError> {
        let mut store = Store::new();
        store.approval_workflow = cfg.approval_workflow;
        seed(&mut store, tenant, &cfg, clock.now())?;
        let (listener, base_url) = server::bind(addr).await?;
        let (core, shutdown) = server::core(clock.clone(), base_url);
        let http = reqwest::Client::builder().timeout(cfg.webhook.timeout).build().unwrap_or_default();
        let svc = Arc::new(ServiceNowService {
            core,
            state: ServiceNowState { store: Arc::new(Mutex::new(store)), clock },
            cfg: Mutex::new(cfg),
            auth: Mutex::new(Auth::default()),
            http,
            approval_doorbell: Mutex::new(None),
        });
        let server = server::spawn(svc.clone(), listener, shutdown);
        Ok(Self { svc, server: Arc::new(server) })
    }

    /// `http://127.0.0.1:PORT`: the instance URL to configure clients with.
    pub fn base_url(&self) -> String {
        self.svc.core.base_url.clone()
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

    /// Records, for seeding and inspection.
    pub fn state(&self) -> &ServiceNowState {
        &self.svc.state
    }

    /// Replaces the rate-limit rules (empty turns rate limiting off) and resets the counters.
    pub fn set_rate_limits(&self, rules: Vec<RateLimitRule>) {
        self.svc.cfg().rate_limits = rules;
        self.svc.auth().rate.clear();
    }

    /// The configured accounts and OAuth clients.
    pub fn credentials(&self) -> (Vec<ServiceNowAccount>, Vec<OAuthClient>) {
        let cfg = self.svc.cfg();
        (cfg.accounts.clone(), cfg.oauth_clients.clone())
    }

    /// The configured webhook settings.
    pub fn webhook_config(&self) -> WebhookConfig {
        self.svc.cfg().webhook.clone()
    }

    /// POSTs the webhook payload for a RITM (sys_id or number) to `url` with one shared-secret
    /// header and `User-Agent: ServiceNow/1.0`.
    pub async fn fire_webhook(
        &self,
        ritm: &str,
        url: &str,
        secret_header_name: &str,
        secret: &str,
    ) -> Result<WebhookDelivery, SimError> {
        let target = WebhookTarget {
            url: url.to_owned(),
            event: None,
            headers: vec![(secret_header_name.to_owned(), secret.to_owned())],
            hmac: self.svc.cfg().webhook.hmac.clone(),
        };
        self.svc.fire(ritm, &target).await
    }

    /// POSTs the webhook payload with the configured secret header and signing.
    pub async fn fire_configured_webhook(&self, ritm: &str, url: &str) -> Result<WebhookDelivery, SimError> {
        let target = self.svc.default_target(url);
        self.svc.fire(ritm, &target).await
    }

    /// POSTs the webhook payload to a fully described target.
    pub async fn fire_webhook_to(&self, ritm: &str, target: &WebhookTarget) -> Result<WebhookDelivery, SimError> {
        self.svc.fire(ritm, target).await
    }

    /// Sets (or, with `None`, clears) the approval doorbell: the URL that
    /// [`ServiceNowSim::approve_in_ui`] posts the `approval.updated` webhook to, with the
    /// configured secret header and signing.
    pub fn set_approval_webhook(&self, url: Option<String>) {
        *self.svc.doorbell() = url;
    }

    /// An approver approves (or rejects) in the ServiceNow UI: [`ServiceNowState::act_on_approval`]
    /// with `approved` or `rejected`, then, when a doorbell is set, the webhook payload of the
    /// approval's RITM with event `approval.updated`. Returns the delivery (`None` without a
    /// doorbell). A delivery that fails leaves the decision in place, as an asynchronous
    /// business rule would.
    pub async fn approve_in_ui(
        &self,
        approval_sys_id: &str,
        user_name: &str,
        approve: bool,
        comment: &str,
    ) -> Result<Option<WebhookDelivery>, SimError> {
        let state = if approve { "approved" } else { "rejected" };
        self.svc.act_in_ui(approval_sys_id, user_name, state, comment).await
    }

    /// The current time formatted like `sys_updated_on`.
    pub fn now_glide(&self) -> String {
        glide_time(self.svc.core.clock.now())
    }

    pub async fn shutdown(&self) {
        self.server.stop().await;
    }
}
