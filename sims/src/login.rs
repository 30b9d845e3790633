//! Microsoft identity platform simulator: the v2.0 client-credentials token endpoint.
//!
//! `POST /{tenant}/oauth2/v2.0/token` with a form body (`grant_type=client_credentials`,
//! `client_id`, `client_secret` or HTTP Basic, `scope=<resource>/.default`). Tokens are JWT-shaped
//! (`header.payload.signature`, base64url; the signature is random bytes) and recorded in a
//! [`TokenTable`] that the Graph simulator consults. Errors use the identity platform's body
//! (`error`, `error_description` with CRLF-separated Trace ID, Correlation ID and Timestamp,
//! `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::SimError;
use crate::faults::Faults;
use crate::json::Obj;
use crate::log::LoggedRequest;
use crate::server::{self, Core, ServerTask, Service, SimRequest, SimResponse};
use crate::tenant::{Tenant, ids};

/// The Graph resource (`aud` of Graph tokens; scope `https://graph.microsoft.com/.default`).
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
/// The Exchange Online resource (scope `https://outlook.office365.com/.default`).
pub const EXCHANGE_RESOURCE: &str = "https://outlook.office365.com";

const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An app registration that may get tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppRegistration {
    pub client_id: String,
    pub display_name: String,
    pub secret: String,
    /// The secret exists but has expired (AADSTS7000222).
    pub secret_expired: bool,
    /// Accept a `client_assertion` (certificate credential) instead of the secret; the assertion's
    /// signature is not checked.
    pub allow_client_assertion: bool,
    /// Application permissions granted with admin consent, e.g. `GroupMember.ReadWrite.All`.
    pub roles: Vec<String>,
}

impl AppRegistration {
    pub fn new(client_id: &str, secret: &str, roles: &[&str]) -> Self {
        Self {
            client_id: client_id.to_owned(),
            display_name: client_id.to_owned(),
            secret: secret.to_owned(),
            secret_expired: false,
            allow_client_assertion: false,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    pub fn named(mut self, display_name: &str) -> Self {
        self.display_name = display_name.to_owned();
        self
    }
}

/// Token endpoint configuration.
#[derive(Clone, Debug)]
pub struct LoginConfig {
    pub apps: Vec<AppRegistration>,
    /// `expires_in` of issued tokens (default 3599 s).
    pub token_lifetime: Duration,
    /// `ext_expires_in` (default: the same as `token_lifetime`).
    pub ext_token_lifetime: Option<Duration>,
    /// Resources a `.default` scope may name.
    pub resources: Vec<String>,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self::demo()
    }
}

impl LoginConfig {
    /// The demo app registrations from [`ids`].
    pub fn demo() -> Self {
        let mut expired =
            AppRegistration::new(ids::APP_EXPIRED_SECRET_ID, ids::APP_EXPIRED_SECRET_SECRET, &["User.Read.All"])
                .named("expired-secret-app");
        expired.secret_expired = true;
        Self {
            apps: vec![
                AppRegistration::new(
                    ids::APP_GRANTLINE_ID,
                    ids::APP_GRANTLINE_SECRET,
                    &[
                        "GroupMember.ReadWrite.All",
                        "User.Read.All",
                        "User-LifeCycleInfo.Read.All",
                        "Exchange.ManageAsApp",
                    ],
                )
                .named("grantline"),
                AppRegistration::new(
                    ids::APP_READONLY_ID,
                    ids::APP_READONLY_SECRET,
                    &["User.Read.All", "GroupMember.Read.All"],
                )
                .named("grantline-readonly"),
                AppRegistration::new(
                    ids::APP_PRIVILEGED_ID,
                    ids::APP_PRIVILEGED_SECRET,
                    &[
                        "GroupMember.ReadWrite.All",
                        "User.ReadWrite.All",
                        "User-LifeCycleInfo.Read.All",
                        "RoleManagement.ReadWrite.Directory",
                    ],
                )
                .named("over-privileged-app"),
                expired,
            ],
            token_lifetime: Duration::from_secs(3599),
            ext_token_lifetime: None,
            resources: vec![GRAPH_RESOURCE.to_owned(), EXCHANGE_RESOURCE.to_owned()],
        }
    }
}

/// The app roles a token for `audience` carries: an app's permissions belong to one resource
/// each, so an Exchange token holds only the `Exchange.*` roles and a Graph token the others.
fn roles_for(app: &AppRegistration, audience: &str) -> Vec<String> {
    let exchange = audience == EXCHANGE_RESOURCE;
    app.roles.iter().filter(|r| r.starts_with("Exchange.") == exchange).cloned().collect()
}

/// What the token table knows about an issued token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssuedToken {
    pub app_id: String,
    pub app_display_name: String,
    pub tenant_id: String,
    pub audience: String,
    pub roles: Vec<String>,
    pub issued_at: Timestamp,
    pub not_before: Timestamp,
    pub expires_at: Timestamp,
}

/// Issued tokens, shared between the token endpoint and the resource simulators.
#[derive(Clone, Debug, Default)]
pub struct TokenTable {
    inner: Arc<Mutex<HashMap<String, IssuedToken>>>,
}

impl TokenTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, IssuedToken>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record of a token, if this table issued it.
    pub fn lookup(&self, token: &str) -> Option<IssuedToken> {
        self.lock().get(token).cloned()
    }

    /// How many tokens are recorded.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Mints and records a token.
    pub(crate) fn mint(
        &self,
        app: &AppRegistration,
        tenant_id: &str,
        audience: &str,
        now: Timestamp,
        lifetime: Duration,
    ) -> String {
        let life = SignedDuration::try_from(lifetime).unwrap_or(SignedDuration::from_secs(3599));
        let exp = now.checked_add(life).unwrap_or(now);
        let oid = Uuid::new_v5(&Uuid::NAMESPACE_OID, app.client_id.as_bytes()).to_string();
        let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5t": "sim-key", "kid": "sim-key" });
        let roles = roles_for(app, audience);
        let payload = serde_json::json!({
            "aud": audience,
            "iss": format!("https://sts.windows.net/{tenant_id}/"),
            "iat": now.as_second(),
            "nbf": now.as_second(),
            "exp": exp.as_second(),
            "app_displayname": app.display_name,
            "appid": app.client_id,
            "appidacr": "1",
            "idp": format!("https://sts.windows.net/{tenant_id}/"),
            "idtyp": "app",
            "oid": oid,
            "roles": roles,
            "sub": oid,
            "tid": tenant_id,
            "uti": URL_SAFE_NO_PAD.encode(Uuid::new_v4().as_bytes()),
            "ver": "1.0",
        });
        let sig: Vec<u8> = Uuid::new_v4().as_bytes().iter().chain(Uuid::new_v4().as_bytes()).copied().collect();
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            URL_SAFE_NO_PAD.encode(sig)
        );
        let record = IssuedToken {
            app_id: app.client_id.clone(),
            app_display_name: app.display_name.clone(),
            tenant_id: tenant_id.to_owned(),
            audience: audience.to_owned(),
            roles,
            issued_at: now,
            not_before: now,
            expires_at: exp,
        };
        let mut table = self.lock();
        if table.len() > 10_000 {
            table.retain(|_, t| t.expires_at > now);
        }
        table.insert(token.clone(), record);
        token
    }
}

#[derive(Debug)]
struct LoginService {
    core: Core,
    cfg: Mutex<LoginConfig>,
    tenant_id: String,
    tenant_domain: String,
    tokens: TokenTable,
}

struct AadError {
    status: u16,
    error: &'static str,
    code: u32,
    message: String,
}

fn aad(status: u16, error: &'static str, code: u32, message: String) -> AadError {
    AadError { status, error, code, message }
}

fn missing(param: &str) -> AadError {
    aad(400, "invalid_request", 900144, format!("The request body must contain the following parameter: '{param}'."))
}

impl LoginService {
    fn cfg(&self) -> MutexGuard<'_, LoginConfig> {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn error_response(&self, req: &SimRequest, e: AadError) -> SimResponse {
        let now = self.core.clock.now();
        let ts = now.strftime("%Y-%m-%d %H:%M:%SZ").to_string();
        let trace = Uuid::new_v4().to_string();
        let correlation = req
            .header("client-request-id")
            .and_then(|c| Uuid::parse_str(c).ok())
            .unwrap_or_else(Uuid::new_v4)
            .to_string();
        let description = format!(
            "AADSTS{}: {}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}",
            e.code, e.message
        );
        let body = Obj::new()
            .with("error", e.error)
            .with("error_description", description)
            .with("error_codes", serde_json::json!([e.code]))
            .with("timestamp", ts)
            .with("trace_id", trace.clone())
            .with("correlation_id", correlation.clone())
            .with("error_uri", format!("{}/error?code={}", self.core.base_url, e.code));
        self.with_headers(
            SimResponse::json_bytes(e.status, "application/json; charset=utf-8", body.to_bytes()),
            &trace,
            &correlation,
        )
    }

    fn with_headers(&self, mut resp: SimResponse, trace: &str, correlation: &str) -> SimResponse {
        resp.default_header("Cache-Control", "no-store, no-cache");
        resp.default_header("Pragma", "no-cache");
        resp.default_header("x-ms-request-id", trace);
        resp.default_header("client-request-id", correlation);
        resp.default_header("x-ms-ests-server", "2.1.0 - SIM");
        resp.default_header("Strict-Transport-Security", "max-age=31536000; includeSubDomains");
        resp
    }

    fn token(&self, req: &SimRequest, tenant: &str) -> Result<SimResponse, AadError> {
        if !tenant.eq_ignore_ascii_case(&self.tenant_id) && !tenant.eq_ignore_ascii_case(&self.tenant_domain) {
            return Err(aad(
                400,
                "invalid_request",
                90002,
                format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
                ),
            ));
        }
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(&req.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let field = |k: &str| form.get(k).filter(|v| !v.is_empty()).cloned();
        let basic = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")))
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':').map(|(u, p)| {
                    let dec = |x: &str| {
                        url::form_urlencoded::parse(format!("v={x}").as_bytes())
                            .next()
                            .map(|(_, v)| v.into_owned())
                            .unwrap_or_default()
                    };
                    (dec(u), dec(p))
                })
            });

        let grant_type = field("grant_type").ok_or_else(|| missing("grant_type"))?;
        if grant_type != "client_credentials" {
            return Err(aad(
                400,
                "unsupported_grant_type",
                70003,
                format!("The app requested an unsupported grant type '{grant_type}'."),
            ));
        }
        let client_id = field("client_id")
            .or_else(|| basic.as_ref().map(|(u, _)| u.clone()))
            .ok_or_else(|| missing("client_id"))?;
        let scope = field("scope").ok_or_else(|| missing("scope"))?;
        let cfg = self.cfg();
        let Some(app) = cfg.apps.iter().find(|a| a.client_id.eq_ignore_ascii_case(&client_id)).cloned() else {
            return Err(aad(
                400,
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
                ),
            ));
        };
        let secret = field("client_secret").or_else(|| basic.as_ref().map(|(_, p)| p.clone()));
        let assertion = field("client_assertion");
        match (secret, assertion) {
            (Some(secret), _) => {
                if secret != app.secret {
                    return Err(aad(
                        401,
                        "invalid_client",
                        7000215,
                        format!(
                            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                            app.client_id
                        ),
                    ));
                }
                if app.secret_expired {
                    return Err(aad(
                        401,
                        "invalid_client",
                        7000222,
                        format!(
                            "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                            app.client_id
                        ),
                    ));
                }
            }
            (None, Some(assertion)) => {
                let type_ok = field("client_assertion_type").as_deref() == Some(CLIENT_ASSERTION_TYPE);
                if !type_ok {
                    return Err(missing("client_assertion_type"));
                }
                if !app.allow_client_assertion || assertion.split('.').count() != 3 {
                    return Err(aad(
                        401,
                        "invalid_client",
                        700027,
                        "Client assertion failed signature validation.".to_owned(),
                    ));
                }
            }
            (None, None) => {
                return Err(aad(
                    400,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."
                        .to_owned(),
                ));
            }
        }
        let resource = self.resource_of(&scope, &cfg.resources)?;
        let now = self.core.clock.now();
        let lifetime = cfg.token_lifetime;
        let ext = cfg.ext_token_lifetime.unwrap_or(lifetime);
        drop(cfg);
        let token = self.tokens.mint(&app, &self.tenant_id, &resource, now, lifetime);
        let body = Obj::new()
            .with("token_type", "Bearer")
            .with("expires_in", serde_json::Value::from(lifetime.as_secs()))
            .with("ext_expires_in", serde_json::Value::from(ext.as_secs()))
            .with("access_token", token);
        let trace = Uuid::new_v4().to_string();
        let correlation =
            req.header("client-request-id").map(str::to_owned).unwrap_or_else(|| Uuid::new_v4().to_string());
        Ok(self.with_headers(
            SimResponse::json_bytes(200, "application/json; charset=utf-8", body.to_bytes()),
            &trace,
            &correlation,
        ))
    }

    fn resource_of(&self, scope: &str, resources: &[String]) -> Result<String, AadError> {
        let invalid = |s: &str| {
            aad(
                400,
                "invalid_scope",
                70011,
                format!("The provided value for the input parameter 'scope' is not valid. The scope {s} is not valid."),
            )
        };
        let mut found: Option<String> = None;
        for s in scope.split_whitespace() {
            let Some(res) = s.strip_suffix("/.default") else {
                return Err(invalid(s));
            };
            let res = res.trim_end_matches('/');
            let Some(known) = resources.iter().find(|r| r.eq_ignore_ascii_case(res)) else {
                return Err(invalid(s));
            };
            match &found {
                Some(f) if f != known => return Err(invalid(scope)),
                _ => found = Some(known.clone()),
            }
        }
        found.ok_or_else(|| invalid(scope))
    }
}

impl Service for LoginService {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn handle(&self, req: &SimRequest) -> SimResponse {
        let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            [tenant, "oauth2", "v2.0", "token"] => {
                if req.method != http::Method::POST {
                    return self.error_response(
                        req,
                        aad(
                            400,
                            "invalid_request",
                            900561,
                            "The endpoint only accepts POST requests. Received a GET request."
                                .replace("GET", req.method.as_str()),
                        ),
                    );
                }
                match self.token(req, tenant) {
                    Ok(r) => r,
                    Err(e) => self.error_response(req, e),
                }
            }
            _ => SimResponse::json_bytes(404, "text/plain; charset=utf-8", "Not Found"),
        }
    }

    fn fault_response(
        &self,
        req: &SimRequest,
        status: u16,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> SimResponse {
        let mut resp = match body {
            Some(b) => SimResponse::new(status).body(b),
            None => {
                let (error, code, message) = match status {
                    429 => (
                        "temporarily_unavailable",
                        90055,
                        "The request was throttled. Retry after the interval in the Retry-After header.",
                    ),
                    500..=599 => {
                        ("temporarily_unavailable", 90033, "A transient error has occurred. Please try again.")
                    }
                    _ => ("invalid_request", 90000, "The request failed."),
                };
                self.error_response(req, aad(status, error, code, message.to_owned()))
            }
        };
        let mut out = SimResponse::new(status).body(std::mem::take(&mut resp.body));
        out.headers = headers;
        for (k, v) in resp.headers {
            out.default_header(&k, v);
        }
        out
    }

    async fn admin(&self, _req: &SimRequest) -> Option<SimResponse> {
        None
    }
}

/// A running token endpoint. Cloning shares it.
#[derive(Clone, Debug)]
pub struct LoginSim {
    svc: Arc<LoginService>,
    server: Arc<ServerTask>,
}

impl LoginSim {
    pub(crate) async fn start(
        cfg: LoginConfig,
        tenant: &Tenant,
        clock: Clock,
        tokens: TokenTable,
        addr: std::net::SocketAddr,
    ) -> Result<Self, SimError> {
        let (listener, base_url) = server::bind(addr).await?;
        let (core, shutdown) = server::core(clock, base_url);
        let svc = Arc::new(LoginService {
            core,
            cfg: Mutex::new(cfg),
            tenant_id: tenant.id.clone(),
            tenant_domain: tenant.domain.clone(),
            tokens,
        });
        let server = server::spawn(svc.clone(), listener, shutdown);
        Ok(Self { svc, server: Arc::new(server) })
    }

    /// `http://127.0.0.1:PORT`: the authority host to configure clients with.
    pub fn base_url(&self) -> String {
        self.svc.core.base_url.clone()
    }

    /// The token endpoint for the simulated tenant: `{base}/{tenant-id}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.base_url(), self.svc.tenant_id)
    }

    /// The simulated tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.svc.tenant_id
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

    /// The issued-token table the Graph simulator validates against.
    pub fn tokens(&self) -> &TokenTable {
        &self.svc.tokens
    }

    /// Issues a token without HTTP, for tests. `resource` is e.g. [`GRAPH_RESOURCE`].
    pub fn issue_token(&self, client_id: &str, resource: &str) -> Result<String, SimError> {
        let cfg = self.svc.cfg();
        let app = cfg
            .apps
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
            .cloned()
            .ok_or_else(|| SimError::NotFound(format!("app {client_id}")))?;
        let lifetime = cfg.token_lifetime;
        drop(cfg);
        Ok(self.svc.tokens.mint(&app, &self.svc.tenant_id, resource, self.svc.core.clock.now(), lifetime))
    }

    /// The registered apps.
    pub fn apps(&self) -> Vec<AppRegistration> {
        self.svc.cfg().apps.clone()
    }

    /// Changes `expires_in` for tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.svc.cfg().token_lifetime = lifetime;
    }

    /// Replaces an app's roles for tokens issued from now on (existing tokens keep theirs).
    pub fn set_app_roles(&self, client_id: &str, roles: &[&str]) -> Result<(), SimError> {
        let mut cfg = self.svc.cfg();
        let app = cfg
            .apps
            .iter_mut()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
            .ok_or_else(|| SimError::NotFound(format!("app {client_id}")))?;
        app.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        Ok(())
    }

    /// Adds or replaces an app registration.
    pub fn register_app(&self, app: AppRegistration) {
        let mut cfg = self.svc.cfg();
        cfg.apps.retain(|a| !a.client_id.eq_ignore_ascii_case(&app.client_id));
        cfg.apps.push(app);
    }

    /// Stops the server (waits at most a few seconds for requests in flight).
    pub async fn shutdown(&self) {
        self.server.stop().await;
    }
}
