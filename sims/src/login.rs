//! Microsoft identity platform simulator: the v2.0 token endpoint (client credentials and the
//! authorization-code grant), the authorize endpoint of the OpenID Connect sign-in, the
//! discovery document and the signing keys.
//!
//! `POST /{tenant}/oauth2/v2.0/token` with a form body (`grant_type=client_credentials`,
//! `client_id`, `client_secret` or HTTP Basic, `scope=<resource>/.default`). Access tokens are
//! JWT-shaped (`header.payload.signature`, base64url; the signature is random bytes, as clients
//! must not validate tokens for Microsoft APIs) and recorded in a [`TokenTable`] that the
//! resource simulators consult. Errors use the identity platform's body (`error`,
//! `error_description` with CRLF-separated Trace ID, Correlation ID and Timestamp,
//! `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`).
//!
//! OpenID Connect: `GET /{tenant}/v2.0/.well-known/openid-configuration`,
//! `GET /{tenant}/discovery/v2.0/keys` (a JWKS of RSA keys generated at start),
//! `GET /{tenant}/oauth2/v2.0/authorize` (signs in the user chosen with `PUT /sim/signin`, or
//! the one `login_hint` names, and redirects with a code) and `grant_type=authorization_code`
//! at the token endpoint, which returns an RS256-signed `id_token`. Codes are single use, live
//! ten minutes, and are bound to the client, the redirect URI and the PKCE challenge. Redirect
//! URIs match exactly, except that the port of an `http` loopback URI (`localhost`,
//! `127.0.0.1`, `[::1]`) is ignored, as the identity platform does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use uuid::Uuid;

use crate::botframework::{
    BOT_APP_ID, BOT_APP_SECRET, BOT_FRAMEWORK_RESOURCE, KeySet, SIGNIN_APP_ID, SIGNIN_APP_SECRET,
};
use crate::clock::Clock;
use crate::error::SimError;
use crate::faults::Faults;
use crate::json::Obj;
use crate::log::LoggedRequest;
use crate::server::{self, Core, ServerTask, Service, SimRequest, SimResponse, admin_error, admin_ok};
use crate::tenant::{Tenant, User, ids};

/// The Graph resource (`aud` of Graph tokens; scope `https://graph.microsoft.com/.default`).
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
/// The Exchange Online resource (scope `https://outlook.office365.com/.default`).
pub const EXCHANGE_RESOURCE: &str = "https://outlook.office365.com";

const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long an authorization code can be redeemed.
const CODE_LIFETIME: SignedDuration = SignedDuration::from_secs(600);
/// How long an id_token is valid.
const ID_TOKEN_LIFETIME: SignedDuration = SignedDuration::from_secs(3600);
/// The delegated permission an OpenID Connect sign-in's access token carries.
const SIGNIN_GRAPH_SCOPE: &str = "https://graph.microsoft.com/User.Read";

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
    /// Redirect URIs registered for the web platform (OpenID Connect sign-in).
    pub redirect_uris: Vec<String>,
}

impl AppRegistration {
    /// An app with a secret and these application permissions; no redirect URIs.
    pub fn new(client_id: &str, secret: &str, roles: &[&str]) -> Self {
        Self {
            client_id: client_id.to_owned(),
            display_name: client_id.to_owned(),
            secret: secret.to_owned(),
            secret_expired: false,
            allow_client_assertion: false,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            redirect_uris: Vec::new(),
        }
    }

    /// Sets the display name (`app_displayname` in tokens).
    pub fn named(mut self, display_name: &str) -> Self {
        self.display_name = display_name.to_owned();
        self
    }

    /// Registers these redirect URIs (replacing any).
    pub fn redirect_uris(mut self, uris: &[&str]) -> Self {
        self.redirect_uris = uris.iter().map(|u| (*u).to_owned()).collect();
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
    /// The demo app registrations from [`ids`], the bot ([`BOT_APP_ID`]) and the web sign-in app
    /// ([`SIGNIN_APP_ID`], no redirect URIs until the caller sets them).
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
                        "MailboxSettings.Read",
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
                AppRegistration::new(BOT_APP_ID, BOT_APP_SECRET, &[]).named("grantline-bot"),
                AppRegistration::new(SIGNIN_APP_ID, SIGNIN_APP_SECRET, &[]).named("grantline-approvals"),
            ],
            token_lifetime: Duration::from_secs(3599),
            ext_token_lifetime: None,
            resources: vec![GRAPH_RESOURCE.to_owned(), EXCHANGE_RESOURCE.to_owned(), BOT_FRAMEWORK_RESOURCE.to_owned()],
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
        self.record(token.clone(), record, now);
        token
    }

    /// Mints and records a delegated Graph token for a signed-in user (no app roles; `scp`
    /// names the delegated permissions).
    fn mint_delegated(
        &self,
        app: &AppRegistration,
        tenant_id: &str,
        user: &User,
        scp: &str,
        now: Timestamp,
        lifetime: Duration,
    ) -> String {
        let life = SignedDuration::try_from(lifetime).unwrap_or(SignedDuration::from_secs(3599));
        let exp = now.checked_add(life).unwrap_or(now);
        let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5t": "sim-key", "kid": "sim-key" });
        let payload = serde_json::json!({
            "aud": GRAPH_RESOURCE,
            "iss": format!("https://sts.windows.net/{tenant_id}/"),
            "iat": now.as_second(),
            "nbf": now.as_second(),
            "exp": exp.as_second(),
            "app_displayname": app.display_name,
            "appid": app.client_id,
            "appidacr": "1",
            "idp": format!("https://sts.windows.net/{tenant_id}/"),
            "idtyp": "user",
            "name": user.display_name,
            "oid": user.id,
            "scp": scp,
            "sub": pairwise_subject(&app.client_id, &user.id),
            "tid": tenant_id,
            "unique_name": user.user_principal_name,
            "upn": user.user_principal_name,
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
            audience: GRAPH_RESOURCE.to_owned(),
            roles: Vec::new(),
            issued_at: now,
            not_before: now,
            expires_at: exp,
        };
        self.record(token.clone(), record, now);
        token
    }

    fn record(&self, token: String, record: IssuedToken, now: Timestamp) {
        let mut table = self.lock();
        if table.len() > 10_000 {
            table.retain(|_, t| t.expires_at > now);
        }
        table.insert(token, record);
    }
}

/// The `sub` of a user's tokens for one app: pairwise, so two apps see different subjects.
fn pairwise_subject(client_id: &str, user_id: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{client_id}:{user_id}").as_bytes());
    URL_SAFE_NO_PAD.encode(digest)
}

/// An authorization code the authorize endpoint issued.
#[derive(Clone, Debug)]
struct AuthCode {
    client_id: String,
    redirect_uri: String,
    user_id: String,
    scopes: Vec<String>,
    nonce: Option<String>,
    /// `(method, challenge)` when the request carried PKCE.
    challenge: Option<(String, String)>,
    session: String,
    expires_at: Timestamp,
    redeemed: bool,
}

/// Who the authorize endpoint signs in, and the codes it issued.
#[derive(Debug, Default)]
struct SignIn {
    /// The id of the user chosen with `PUT /sim/signin`.
    chosen: Option<String>,
    codes: HashMap<String, AuthCode>,
}

#[derive(Debug)]
struct LoginService {
    core: Core,
    cfg: Mutex<LoginConfig>,
    tenant_id: String,
    tenant_domain: String,
    tokens: TokenTable,
    keys: KeySet,
    users: Vec<User>,
    signin: Mutex<SignIn>,
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

struct Described {
    description: String,
    trace: String,
    correlation: String,
    ts: String,
}

fn invalid_grant(code: u32, message: impl Into<String>) -> AadError {
    aad(400, "invalid_grant", code, message.into())
}

fn missing(param: &str) -> AadError {
    aad(400, "invalid_request", 900144, format!("The request body must contain the following parameter: '{param}'."))
}

impl LoginService {
    fn cfg(&self) -> MutexGuard<'_, LoginConfig> {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn describe(&self, req: &SimRequest, e: &AadError) -> Described {
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
        Described { description, trace, correlation, ts }
    }

    fn error_response(&self, req: &SimRequest, e: AadError) -> SimResponse {
        let d = self.describe(req, &e);
        let body = Obj::new()
            .with("error", e.error)
            .with("error_description", d.description)
            .with("error_codes", serde_json::json!([e.code]))
            .with("timestamp", d.ts)
            .with("trace_id", d.trace.clone())
            .with("correlation_id", d.correlation.clone())
            .with("error_uri", format!("{}/error?code={}", self.core.base_url, e.code));
        self.with_headers(
            SimResponse::json_bytes(e.status, "application/json; charset=utf-8", body.to_bytes()),
            &d.trace,
            &d.correlation,
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
        let code_grant = match grant_type.as_str() {
            "client_credentials" => false,
            "authorization_code" => true,
            _ => {
                return Err(aad(
                    400,
                    "unsupported_grant_type",
                    70003,
                    format!("The app requested an unsupported grant type '{grant_type}'."),
                ));
            }
        };
        let client_id = field("client_id")
            .or_else(|| basic.as_ref().map(|(u, _)| u.clone()))
            .ok_or_else(|| missing("client_id"))?;
        // The code grant's scope is optional (the authorize request named it).
        let scope = if code_grant { String::new() } else { field("scope").ok_or_else(|| missing("scope"))? };
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
        if code_grant {
            let lifetime = cfg.token_lifetime;
            let ext = cfg.ext_token_lifetime.unwrap_or(lifetime);
            drop(cfg);
            return self.redeem_code(req, &field, &app, lifetime, ext);
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

    /// `grant_type=authorization_code`: redeems a code the authorize endpoint issued to `app`.
    fn redeem_code(
        &self,
        req: &SimRequest,
        field: &dyn Fn(&str) -> Option<String>,
        app: &AppRegistration,
        lifetime: Duration,
        ext: Duration,
    ) -> Result<SimResponse, AadError> {
        let code = field("code").ok_or_else(|| missing("code"))?;
        let redirect_uri = field("redirect_uri").ok_or_else(|| missing("redirect_uri"))?;
        let now = self.core.clock.now();
        let entry = {
            let mut signin = self.signin();
            signin.codes.retain(|_, c| now < c.expires_at.checked_add(CODE_LIFETIME).unwrap_or(c.expires_at));
            let Some(entry) = signin.codes.get_mut(&code) else {
                return Err(invalid_grant(9002313, "Invalid request. Request is malformed or invalid."));
            };
            if entry.redeemed {
                return Err(invalid_grant(
                    54005,
                    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
                ));
            }
            if now >= entry.expires_at {
                return Err(invalid_grant(
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
                ));
            }
            if !entry.client_id.eq_ignore_ascii_case(&app.client_id) {
                return Err(invalid_grant(
                    70000,
                    "The provided value for the 'code' parameter is not valid. The code was issued to a different client.",
                ));
            }
            if entry.redirect_uri != redirect_uri {
                return Err(invalid_grant(
                    500112,
                    format!(
                        "The reply address '{redirect_uri}' does not match the reply address '{}' provided when requesting Authorization code.",
                        entry.redirect_uri
                    ),
                ));
            }
            if let Some((method, challenge)) = &entry.challenge {
                let verifier = field("code_verifier").ok_or_else(|| missing("code_verifier"))?;
                let computed = if method == "S256" {
                    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
                } else {
                    verifier
                };
                if &computed != challenge {
                    return Err(invalid_grant(
                        50148,
                        "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
                    ));
                }
            }
            entry.redeemed = true;
            entry.clone()
        };
        let Some(user) = self.users.iter().find(|u| u.id == entry.user_id) else {
            return Err(invalid_grant(50034, "The user account does not exist in the directory."));
        };
        let mut scopes: Vec<String> =
            entry.scopes.iter().filter(|s| OIDC_SCOPES.contains(&s.as_str())).cloned().collect();
        scopes.push(SIGNIN_GRAPH_SCOPE.to_owned());
        let scope = scopes.join(" ");
        let access_token =
            self.tokens.mint_delegated(app, &self.tenant_id, user, "openid profile email User.Read", now, lifetime);
        let mut body = Obj::new()
            .with("token_type", "Bearer")
            .with("scope", scope)
            .with("expires_in", serde_json::Value::from(lifetime.as_secs()))
            .with("ext_expires_in", serde_json::Value::from(ext.as_secs()))
            .with("access_token", access_token);
        if entry.scopes.iter().any(|s| s == "openid") {
            let id_token = self.id_token(app, user, &entry, now).map_err(|e| {
                aad(500, "temporarily_unavailable", 90033, format!("A transient error has occurred. {e}"))
            })?;
            body.push("id_token", id_token);
        }
        let trace = Uuid::new_v4().to_string();
        let correlation =
            req.header("client-request-id").map(str::to_owned).unwrap_or_else(|| Uuid::new_v4().to_string());
        Ok(self.with_headers(
            SimResponse::json_bytes(200, "application/json; charset=utf-8", body.to_bytes()),
            &trace,
            &correlation,
        ))
    }

    /// The RS256-signed v2.0 id_token of a sign-in.
    fn id_token(
        &self,
        app: &AppRegistration,
        user: &User,
        code: &AuthCode,
        now: Timestamp,
    ) -> Result<String, SimError> {
        let exp = now.checked_add(ID_TOKEN_LIFETIME).unwrap_or(now);
        let has = |s: &str| code.scopes.iter().any(|x| x == s);
        let mut claims = serde_json::Map::new();
        claims.insert("aud".into(), app.client_id.clone().into());
        claims.insert("iss".into(), self.issuer().into());
        claims.insert("iat".into(), now.as_second().into());
        claims.insert("nbf".into(), now.as_second().into());
        claims.insert("exp".into(), exp.as_second().into());
        if has("email")
            && let Some(mail) = &user.mail
        {
            claims.insert("email".into(), mail.clone().into());
        }
        if has("profile") {
            claims.insert("name".into(), user.display_name.clone().into());
        }
        if let Some(nonce) = &code.nonce {
            claims.insert("nonce".into(), nonce.clone().into());
        }
        claims.insert("oid".into(), user.id.clone().into());
        if has("profile") {
            claims.insert("preferred_username".into(), user.user_principal_name.clone().into());
        }
        claims.insert("sid".into(), code.session.clone().into());
        claims.insert("sub".into(), pairwise_subject(&app.client_id, &user.id).into());
        claims.insert("tid".into(), self.tenant_id.clone().into());
        claims.insert("uti".into(), URL_SAFE_NO_PAD.encode(Uuid::new_v4().as_bytes()).into());
        claims.insert("ver".into(), "2.0".into());
        self.keys.sign(&serde_json::Value::Object(claims))
    }

    fn signin(&self) -> MutexGuard<'_, SignIn> {
        self.signin.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn issuer(&self) -> String {
        format!("{}/{}/v2.0", self.core.base_url, self.tenant_id)
    }

    fn known_tenant(&self, tenant: &str) -> bool {
        tenant.eq_ignore_ascii_case(&self.tenant_id) || tenant.eq_ignore_ascii_case(&self.tenant_domain)
    }

    fn unknown_tenant(tenant: &str) -> AadError {
        aad(
            400,
            "invalid_tenant",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        )
    }

    /// A tenant user by object id, UPN or mail (case-insensitive).
    fn find_user(&self, key: &str) -> Option<&User> {
        let key = key.trim();
        self.users.iter().find(|u| {
            u.id.eq_ignore_ascii_case(key)
                || u.user_principal_name.eq_ignore_ascii_case(key)
                || u.mail.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(key))
        })
    }

    /// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
    fn discovery(&self) -> SimResponse {
        let base = &self.core.base_url;
        let tid = &self.tenant_id;
        let body = Obj::new()
            .with("token_endpoint", format!("{base}/{tid}/oauth2/v2.0/token"))
            .with(
                "token_endpoint_auth_methods_supported",
                serde_json::json!(["client_secret_post", "private_key_jwt", "client_secret_basic"]),
            )
            .with("jwks_uri", format!("{base}/{tid}/discovery/v2.0/keys"))
            .with("response_modes_supported", serde_json::json!(["query", "fragment", "form_post"]))
            .with("subject_types_supported", serde_json::json!(["pairwise"]))
            .with("id_token_signing_alg_values_supported", serde_json::json!(["RS256"]))
            .with(
                "response_types_supported",
                serde_json::json!(["code", "id_token", "code id_token", "id_token token"]),
            )
            .with("scopes_supported", serde_json::json!(["openid", "profile", "email", "offline_access"]))
            .with("issuer", self.issuer())
            .with("request_uri_parameter_supported", false)
            .with("userinfo_endpoint", "https://graph.microsoft.com/oidc/userinfo")
            .with("authorization_endpoint", format!("{base}/{tid}/oauth2/v2.0/authorize"))
            .with("device_authorization_endpoint", format!("{base}/{tid}/oauth2/v2.0/devicecode"))
            .with("http_logout_supported", true)
            .with("frontchannel_logout_supported", true)
            .with("end_session_endpoint", format!("{base}/{tid}/oauth2/v2.0/logout"))
            .with(
                "claims_supported",
                serde_json::json!([
                    "sub",
                    "iss",
                    "cloud_instance_name",
                    "cloud_instance_host_name",
                    "cloud_graph_host_name",
                    "msgraph_host",
                    "aud",
                    "exp",
                    "iat",
                    "auth_time",
                    "acr",
                    "nonce",
                    "preferred_username",
                    "name",
                    "tid",
                    "ver",
                    "at_hash",
                    "c_hash",
                    "email"
                ]),
            )
            .with("kerberos_endpoint", format!("{base}/{tid}/kerberos"))
            .with("tenant_region_scope", "EU")
            .with("cloud_instance_name", "microsoftonline.com")
            .with("cloud_graph_host_name", "graph.windows.net")
            .with("msgraph_host", "graph.microsoft.com")
            .with("rbac_url", "https://pas.windows.net");
        SimResponse::json_bytes(200, "application/json; charset=utf-8", body.to_bytes())
            .header("Access-Control-Allow-Origin", "*")
    }

    /// `GET /{tenant}/discovery/v2.0/keys`.
    fn jwks(&self) -> SimResponse {
        let mut extra = serde_json::Map::new();
        extra.insert("issuer".into(), self.issuer().into());
        let body = serde_json::to_vec(&self.keys.jwks(&extra)).unwrap_or_default();
        SimResponse::json_bytes(200, "application/json; charset=utf-8", body).header("Access-Control-Allow-Origin", "*")
    }

    /// An HTML page of the sign-in experience (200, as a browser sees it).
    fn page(&self, req: &SimRequest, title: &str, text: &str, error: Option<&AadError>) -> SimResponse {
        let detail = match error {
            Some(e) => {
                let d = self.describe(req, e);
                format!(
                    "<p id=\"error\" data-error=\"{}\" data-error-code=\"{}\">{}</p>",
                    e.error,
                    e.code,
                    html_escape(&d.description).replace("\r\n", "<br>")
                )
            }
            None => String::new(),
        };
        let html = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body><h1>{}</h1><p>{}</p>{detail}</body></html>\n",
            html_escape(title),
            html_escape(title),
            html_escape(text),
        );
        let mut resp = SimResponse::json_bytes(200, "text/html; charset=utf-8", html);
        resp.default_header("Cache-Control", "no-store, no-cache");
        resp.default_header("Pragma", "no-cache");
        resp.default_header("x-ms-request-id", Uuid::new_v4().to_string());
        resp.default_header("x-ms-ests-server", "2.1.0 - SIM");
        resp
    }

    fn error_page(&self, req: &SimRequest, e: &AadError) -> SimResponse {
        self.page(req, "Sign in to your account", "Sorry, but we're having trouble signing you in.", Some(e))
    }

    /// A 302 to the client's redirect URI with `params` added to its query.
    fn redirect(redirect_uri: &str, params: &[(&str, &str)]) -> SimResponse {
        let location = match url::Url::parse(redirect_uri) {
            Ok(mut url) => {
                {
                    let mut q = url.query_pairs_mut();
                    for (k, v) in params {
                        q.append_pair(k, v);
                    }
                }
                url.to_string()
            }
            Err(_) => redirect_uri.to_owned(),
        };
        let mut resp = SimResponse::new(302).header("Location", location);
        resp.default_header("Cache-Control", "no-store, no-cache");
        resp.default_header("Pragma", "no-cache");
        resp.default_header("x-ms-ests-server", "2.1.0 - SIM");
        resp
    }

    fn redirect_error(&self, req: &SimRequest, redirect_uri: &str, state: Option<&str>, e: &AadError) -> SimResponse {
        let d = self.describe(req, e);
        let uri = format!("{}/error?code={}", self.core.base_url, e.code);
        let mut params = vec![("error", e.error), ("error_description", d.description.as_str()), ("error_uri", &uri)];
        if let Some(state) = state {
            params.push(("state", state));
        }
        Self::redirect(redirect_uri, &params)
    }

    /// `GET /{tenant}/oauth2/v2.0/authorize`: the OpenID Connect authorization-code request.
    fn authorize(&self, req: &SimRequest, tenant: &str) -> SimResponse {
        if !self.known_tenant(tenant) {
            return self.error_page(req, &Self::unknown_tenant(tenant));
        }
        let q: HashMap<String, String> = req.query_pairs().into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let get = |k: &str| q.get(k).map(String::as_str);
        let Some(client_id) = get("client_id") else {
            return self.error_page(req, &missing("client_id"));
        };
        let Some(app) = self.cfg().apps.iter().find(|a| a.client_id.eq_ignore_ascii_case(client_id)).cloned() else {
            return self.error_page(
                req,
                &aad(
                    400,
                    "unauthorized_client",
                    700016,
                    format!(
                        "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
                    ),
                ),
            );
        };
        let Some(redirect_uri) = get("redirect_uri") else {
            return self.error_page(req, &missing("redirect_uri"));
        };
        if !app.redirect_uris.iter().any(|r| redirect_matches(r, redirect_uri)) {
            return self.error_page(
                req,
                &aad(
                    400,
                    "invalid_request",
                    50011,
                    format!(
                        "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
                        app.client_id
                    ),
                ),
            );
        }
        let state = get("state");
        let fail = |e: AadError| self.redirect_error(req, redirect_uri, state, &e);
        let Some(response_type) = get("response_type") else {
            return fail(missing("response_type"));
        };
        if response_type != "code" {
            return fail(aad(
                400,
                "unsupported_response_type",
                700054,
                format!("response_type '{response_type}' is not enabled for the application."),
            ));
        }
        if let Some(mode) = get("response_mode")
            && mode != "query"
        {
            return fail(aad(
                400,
                "invalid_request",
                90000,
                format!("response_mode '{mode}' is not supported by the simulator; use query."),
            ));
        }
        let Some(scope) = get("scope") else {
            return fail(missing("scope"));
        };
        let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
        let challenge = match (get("code_challenge"), get("code_challenge_method")) {
            (None, None) => None,
            (None, Some(_)) => return fail(missing("code_challenge")),
            (Some(c), method) => {
                let method = method.unwrap_or("plain");
                if method != "S256" && method != "plain" {
                    return fail(aad(
                        400,
                        "invalid_request",
                        90000,
                        format!("The code_challenge_method '{method}' is not supported. Use S256."),
                    ));
                }
                Some((method.to_owned(), c.to_owned()))
            }
        };
        let chosen = self.signin().chosen.clone();
        let user = chosen
            .as_deref()
            .and_then(|id| self.find_user(id))
            .or_else(|| get("login_hint").and_then(|h| self.find_user(h)));
        let Some(user) = user else {
            if get("prompt") == Some("none") {
                return fail(aad(
                    400,
                    "login_required",
                    50058,
                    "A silent sign-in request was sent but no user is signed in.".to_owned(),
                ));
            }
            return self.page(
                req,
                "Sign in to your account",
                "Sign-in is required: nobody is signed in to the simulated identity platform. Choose the user with PUT /sim/signin {\"user\": \"<upn or id>\"}, or send a login_hint that names a user of the tenant.",
                None,
            );
        };
        if !user.account_enabled {
            return self.error_page(
                req,
                &aad(
                    400,
                    "invalid_grant",
                    50057,
                    "The user account is disabled. The account has been disabled by an administrator.".to_owned(),
                ),
            );
        }
        let code = format!(
            "1.A{}",
            URL_SAFE_NO_PAD.encode(
                [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()]
                    .iter()
                    .flat_map(|u| *u.as_bytes())
                    .collect::<Vec<u8>>()
            )
        );
        let session = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("session:{}", user.id).as_bytes()).to_string();
        let now = self.core.clock.now();
        let entry = AuthCode {
            client_id: app.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            user_id: user.id.clone(),
            scopes,
            nonce: get("nonce").map(str::to_owned),
            challenge,
            session: session.clone(),
            expires_at: now.checked_add(CODE_LIFETIME).unwrap_or(now),
            redeemed: false,
        };
        self.signin().codes.insert(code.clone(), entry);
        let mut params = vec![("code", code.as_str())];
        if let Some(state) = state {
            params.push(("state", state));
        }
        params.push(("session_state", session.as_str()));
        Self::redirect(redirect_uri, &params)
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

/// The scopes of an OpenID Connect sign-in that are echoed in the token response.
const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Whether a requested redirect URI matches a registered one: exact, except that scheme and
/// host ignore case and an `http` loopback URI matches on any port.
fn redirect_matches(registered: &str, requested: &str) -> bool {
    let (Ok(reg), Ok(req)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return registered == requested;
    };
    let loopback =
        |u: &url::Url| u.scheme() == "http" && matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    let port_ok = reg.port_or_known_default() == req.port_or_known_default() || (loopback(&reg) && loopback(&req));
    reg.scheme() == req.scheme()
        && reg.host_str() == req.host_str()
        && port_ok
        && reg.path() == req.path()
        && reg.query() == req.query()
        && req.fragment().is_none()
}

#[derive(Deserialize)]
struct SignInBody {
    user: String,
}

#[derive(Deserialize)]
struct RedirectUrisBody {
    redirect_uris: Vec<String>,
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
            [tenant, "oauth2", "v2.0", "authorize"] if req.method == http::Method::GET => self.authorize(req, tenant),
            [tenant, "v2.0", ".well-known", "openid-configuration"] if req.method == http::Method::GET => {
                if self.known_tenant(tenant) {
                    self.discovery()
                } else {
                    self.error_response(req, Self::unknown_tenant(tenant))
                }
            }
            [tenant, "discovery", "v2.0", "keys"] if req.method == http::Method::GET => {
                if self.known_tenant(tenant) {
                    self.jwks()
                } else {
                    self.error_response(req, Self::unknown_tenant(tenant))
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

    async fn admin(&self, req: &SimRequest) -> Option<SimResponse> {
        let segs: Vec<&str> = req.path.trim_start_matches("/sim/").split('/').collect();
        let resp = match (req.method.as_str(), segs.as_slice()) {
            ("GET", ["signin"]) => {
                let chosen = self.signin().chosen.clone();
                admin_ok(&serde_json::json!({ "user": chosen }))
            }
            ("PUT", ["signin"]) => match serde_json::from_slice::<SignInBody>(&req.body) {
                Ok(b) => match self.find_user(&b.user) {
                    Some(u) => {
                        let body = serde_json::json!({ "user": u.id, "userPrincipalName": u.user_principal_name });
                        self.signin().chosen = Some(u.id.clone());
                        admin_ok(&body)
                    }
                    None => admin_error(404, "no such user in the tenant"),
                },
                Err(_) => admin_error(400, "expected {\"user\": \"<upn or id>\"}"),
            },
            ("DELETE", ["signin"]) => {
                self.signin().chosen = None;
                SimResponse::new(204)
            }
            ("PUT", ["apps", id, "redirect_uris"]) => match serde_json::from_slice::<RedirectUrisBody>(&req.body) {
                Ok(b) => {
                    let mut cfg = self.cfg();
                    match cfg.apps.iter_mut().find(|a| a.client_id.eq_ignore_ascii_case(id)) {
                        Some(app) => {
                            app.redirect_uris = b.redirect_uris;
                            admin_ok(&serde_json::json!({ "redirect_uris": app.redirect_uris }))
                        }
                        None => admin_error(404, "no such app"),
                    }
                }
                Err(_) => admin_error(400, "expected {\"redirect_uris\": [\"<uri>\", ...]}"),
            },
            ("POST", ["keys", "rotate"]) => match self.keys.rotate() {
                Ok(k) => admin_ok(&serde_json::json!({ "kid": k.kid() })),
                Err(e) => admin_error(500, &e.to_string()),
            },
            _ => return None,
        };
        Some(resp)
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
        let keys = KeySet::generate("login.microsoftonline.com (simulated)")?;
        let (listener, base_url) = server::bind(addr).await?;
        let (core, shutdown) = server::core(clock, base_url);
        let svc = Arc::new(LoginService {
            core,
            cfg: Mutex::new(cfg),
            tenant_id: tenant.id.clone(),
            tenant_domain: tenant.domain.clone(),
            tokens,
            keys,
            users: tenant.users.clone(),
            signin: Mutex::new(SignIn::default()),
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

    /// Replaces an app's registered redirect URIs.
    pub fn set_redirect_uris(&self, client_id: &str, uris: &[&str]) -> Result<(), SimError> {
        let mut cfg = self.svc.cfg();
        let app = cfg
            .apps
            .iter_mut()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
            .ok_or_else(|| SimError::NotFound(format!("app {client_id}")))?;
        app.redirect_uris = uris.iter().map(|u| (*u).to_owned()).collect();
        Ok(())
    }

    /// The issuer of id_tokens: `{base}/{tenant-id}/v2.0`.
    pub fn issuer(&self) -> String {
        self.svc.issuer()
    }

    /// `{base}/{tenant-id}/v2.0/.well-known/openid-configuration`.
    pub fn openid_configuration_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.svc.issuer())
    }

    /// `{base}/{tenant-id}/oauth2/v2.0/authorize`.
    pub fn authorize_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/authorize", self.base_url(), self.svc.tenant_id)
    }

    /// `{base}/{tenant-id}/discovery/v2.0/keys`.
    pub fn jwks_url(&self) -> String {
        format!("{}/{}/discovery/v2.0/keys", self.base_url(), self.svc.tenant_id)
    }

    /// The keys id_tokens are signed with (rotate them here).
    pub fn keys(&self) -> &KeySet {
        &self.svc.keys
    }

    /// Makes the authorize endpoint sign in this user (UPN, object id or mail) from now on.
    pub fn sign_in(&self, user: &str) -> Result<(), SimError> {
        let id =
            self.svc.find_user(user).map(|u| u.id.clone()).ok_or_else(|| SimError::NotFound(format!("user {user}")))?;
        self.svc.signin().chosen = Some(id);
        Ok(())
    }

    /// Nobody is signed in any more (`login_hint` still signs a user in).
    pub fn sign_out(&self) {
        self.svc.signin().chosen = None;
    }

    /// The id of the user chosen with [`LoginSim::sign_in`].
    pub fn signed_in_user(&self) -> Option<String> {
        self.svc.signin().chosen.clone()
    }

    /// Stops the server (waits at most a few seconds for requests in flight).
    pub async fn shutdown(&self) {
        self.server.stop().await;
    }
}
