//! Bot Framework channel simulator: what Microsoft Teams and the Bot Connector service do for a
//! bot that asks approvers with Adaptive Cards, plus the Teams Workflows channel webhook.
//!
//! - OpenID metadata for channel tokens: `GET /v1/.well-known/openidconfiguration` (issuer
//!   `https://api.botframework.com`, `jwks_uri` → `GET /v1/.well-known/keys`, RSA keys generated
//!   at start, each endorsed for `msteams`).
//! - Bot Connector REST at the service URL `{base}/teams/`: `POST /v3/conversations` (a 1:1
//!   conversation with one member given by Entra object id or Teams id; the same pair gives the
//!   same conversation), `POST /v3/conversations/{id}/activities` (201 `{"id"}`),
//!   `POST /v3/conversations/{id}/activities/{activityId}` (a reply), and
//!   `PUT /v3/conversations/{id}/activities/{activityId}` (200 `{"id"}`). Each needs a bearer
//!   token the login simulator issued to the bot app for `https://api.botframework.com`.
//!   Every version of every activity is recorded ([`BotFrameworkSim::state`]).
//! - Clicks ([`BotFrameworkSim::click`], `POST /sim/click`): the channel builds the
//!   `adaptiveCard/action` invoke activity from the card's `Action.Execute` data and the user's
//!   inputs, signs a channel token (RS256, `iss` `https://api.botframework.com`, `aud` the bot
//!   app id, `serviceurl`), POSTs it to the bot's messaging endpoint and returns its answer; a
//!   card in the answer replaces the clicked card. [`Tamper`] spoils the token on purpose.
//! - Workflows webhook: `POST /workflows/{id}/triggers/manual/paths/invoke?api-version=1&sp=…&sv=1.0&sig=…`
//!   answers 202 with an empty body; a missing or wrong `sig` is 401.
//!   [`BotFrameworkSim::channel_url`] makes a channel and gives its URL.
//!
//! Admin routes (besides the common ones): `GET /sim/state`, `PUT /sim/bot-endpoint
//! {"url"}`, `POST /sim/click {"user","activity","verb","inputs","data","conversation","tamper"}`,
//! `POST /sim/keys/rotate`, `POST /sim/channels {"name"}` → `{"url"}`,
//! `PUT /sim/installed {"user","installed"}`.
//!
//! Where it differs from the real service: only personal conversations exist; activities are
//! not delivered to any client, and cards are recorded without validation; the 404 body for an
//! unknown activity, the 400 messages for a missing tenant or a group conversation, and the
//! Workflows 401/404 bodies are the simulator's own wording.

mod click;
mod connector;
pub mod keys;
mod state;
mod workflows;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::Digest as _;

pub use self::click::{Click, ClickResult, Tamper};
pub use self::keys::{KeySet, SigningKey};
pub use self::state::{
    ADAPTIVE_CARD, ActivityVersion, BotFrameworkState, Channel, ChannelMessage, Conversation, InvokeRecord,
    RecordedActivity, VersionSource,
};
use crate::clock::Clock;
use crate::error::SimError;
use crate::faults::Faults;
use crate::json::Obj;
use crate::log::LoggedRequest;
use crate::login::TokenTable;
use crate::server::{self, Core, ServerTask, Service, SimRequest, SimResponse, admin_error, admin_ok};
use crate::tenant::{Tenant, User};

/// The bot's app registration (single-tenant Azure Bot) in the demo tenant.
pub const BOT_APP_ID: &str = "30000000-0000-4000-8000-0000000000b1";
/// The bot app's client secret.
pub const BOT_APP_SECRET: &str = "bot-demo-secret";
/// The web sign-in app registration (approval page, OpenID Connect).
pub const SIGNIN_APP_ID: &str = "30000000-0000-4000-8000-0000000000c1";
/// The web sign-in app's client secret.
pub const SIGNIN_APP_SECRET: &str = "signin-demo-secret";
/// The resource of Bot Connector tokens (scope `https://api.botframework.com/.default`) and the
/// issuer of channel tokens.
pub const BOT_FRAMEWORK_RESOURCE: &str = "https://api.botframework.com";
/// The `channelId` of Teams activities, and the endorsement the channel's keys carry.
pub const TEAMS_CHANNEL_ID: &str = "msteams";

/// Bot Framework simulator settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotFrameworkConfig {
    /// The bot's Microsoft App ID: the `aud` of channel tokens, `28:{id}` in conversations, and
    /// the app whose Bot Connector tokens are accepted.
    pub bot_app_id: String,
    /// The bot's display name.
    pub bot_name: String,
    /// The bot's messaging endpoint, where clicks are POSTed (settable later with
    /// [`BotFrameworkSim::set_bot_endpoint`]).
    pub bot_endpoint: Option<String>,
    /// How long the channel waits for the bot to answer a click (default 15 s).
    pub invoke_timeout: Duration,
    /// Lifetime of channel tokens (default 5 minutes).
    pub channel_token_lifetime: Duration,
}

impl Default for BotFrameworkConfig {
    fn default() -> Self {
        Self::demo()
    }
}

impl BotFrameworkConfig {
    /// The demo bot ([`BOT_APP_ID`]), no endpoint yet.
    pub fn demo() -> Self {
        Self {
            bot_app_id: BOT_APP_ID.to_owned(),
            bot_name: "grantline".to_owned(),
            bot_endpoint: None,
            invoke_timeout: Duration::from_secs(15),
            channel_token_lifetime: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Default)]
struct Records {
    state: BotFrameworkState,
    /// Ids of users who removed the bot (proactive messages to them are refused).
    uninstalled: HashSet<String>,
    /// Workflows channel name → `sig`.
    sigs: Vec<(String, String)>,
    last_activity_ms: i64,
}

#[derive(Debug)]
struct BotService {
    core: Core,
    cfg: Mutex<BotFrameworkConfig>,
    tenant_id: String,
    users: Vec<User>,
    tokens: TokenTable,
    keys: KeySet,
    /// A key that is never published, for forged tokens (made on first use).
    foreign: Mutex<Option<SigningKey>>,
    records: Mutex<Records>,
    http: reqwest::Client,
}

impl BotService {
    fn cfg(&self) -> MutexGuard<'_, BotFrameworkConfig> {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn records(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Bot Connector service URL: `{base}/teams/`.
    fn service_url(&self) -> String {
        format!("{}/teams/", self.core.base_url)
    }

    /// A tenant user by object id, UPN, mail or Teams id.
    fn find_user(&self, key: &str) -> Option<&User> {
        let key = key.trim();
        self.users.iter().find(|u| {
            u.id.eq_ignore_ascii_case(key)
                || u.user_principal_name.eq_ignore_ascii_case(key)
                || u.mail.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(key))
                || teams_user_id(&u.id) == key
        })
    }

    fn foreign_key(&self) -> Result<SigningKey, SimError> {
        let mut slot = self.foreign.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = &*slot {
            return Ok(k.clone());
        }
        let key = SigningKey::generate("forged channel key")?;
        *slot = Some(key.clone());
        Ok(key)
    }

    fn openid_metadata(&self) -> SimResponse {
        let body = Obj::new()
            .with("issuer", BOT_FRAMEWORK_RESOURCE)
            .with("authorization_endpoint", "https://invalid.botframework.com")
            .with("jwks_uri", format!("{}/v1/.well-known/keys", self.core.base_url))
            .with("id_token_signing_alg_values_supported", serde_json::json!(["RS256"]))
            .with("token_endpoint_auth_methods_supported", serde_json::json!(["private_key_jwt"]));
        SimResponse::json_bytes(200, "application/json; charset=utf-8", body.to_bytes())
    }

    fn jwks(&self) -> SimResponse {
        let mut extra = serde_json::Map::new();
        extra.insert("endorsements".into(), serde_json::json!([TEAMS_CHANNEL_ID, "webchat", "directline"]));
        let body = serde_json::to_vec(&self.keys.jwks(&extra)).unwrap_or_default();
        SimResponse::json_bytes(200, "application/json; charset=utf-8", body)
    }
}

/// The Teams id (`29:…`) of a user, derived from the Entra object id.
pub(crate) fn teams_user_id(aad_object_id: &str) -> String {
    let digest = sha2::Sha256::digest(format!("29:{}", aad_object_id.to_ascii_lowercase()).as_bytes());
    format!("29:1{}", URL_SAFE_NO_PAD.encode(digest))
}

/// The error envelope of the Bot Connector service.
pub(crate) fn bf_error(status: u16, code: &str, message: &str) -> SimResponse {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    SimResponse::json_bytes(status, "application/json; charset=utf-8", body.to_string())
}

/// The 401 body of a refused bearer token.
pub(crate) fn denied() -> SimResponse {
    let body = serde_json::json!({ "message": "Authorization has been denied for this request." });
    SimResponse::json_bytes(401, "application/json; charset=utf-8", body.to_string())
}

#[derive(Deserialize)]
struct EndpointBody {
    url: Option<String>,
}

#[derive(Deserialize)]
struct ChannelBody {
    name: String,
}

#[derive(Deserialize)]
struct InstalledBody {
    user: String,
    installed: bool,
}

impl Service for BotService {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn handle(&self, req: &SimRequest) -> SimResponse {
        let segments: Vec<String> = req.path.trim_start_matches('/').split('/').map(server::percent_decode).collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let get = req.method == http::Method::GET;
        match segs.as_slice() {
            ["v1", ".well-known", "openidconfiguration"] if get => self.openid_metadata(),
            ["v1", ".well-known", "keys"] if get => self.jwks(),
            ["teams", "v3", rest @ ..] => self.connector(req, rest),
            ["workflows", id, "triggers", "manual", "paths", "invoke"] => self.workflow(req, id),
            _ => bf_error(404, "NotFound", "The requested resource does not exist."),
        }
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
            None => match status {
                401 => denied(),
                400 => bf_error(status, "BadArgument", "Bad request."),
                403 => bf_error(status, "Forbidden", "Forbidden."),
                404 => bf_error(status, "NotFound", "Not found."),
                412 => bf_error(status, "PreconditionFailed", "Precondition failed, please try again."),
                429 => bf_error(status, "Throttled", "Too many requests."),
                503 => bf_error(status, "ServiceUnavailable", "Service unavailable."),
                504 => bf_error(status, "GatewayTimeout", "Gateway timeout."),
                _ => bf_error(status, "ServiceError", "An error occurred while processing the request."),
            },
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
            ("GET", ["state"]) => admin_ok(&self.records().state),
            ("PUT", ["bot-endpoint"]) => match serde_json::from_slice::<EndpointBody>(&req.body) {
                Ok(b) => {
                    self.cfg().bot_endpoint = b.url.clone();
                    admin_ok(&serde_json::json!({ "url": b.url }))
                }
                Err(_) => admin_error(400, "expected {\"url\": \"<bot messaging endpoint>\"}"),
            },
            ("POST", ["click"]) => match serde_json::from_slice::<click::ClickBody>(&req.body) {
                Ok(b) => match self.click(b.into()).await {
                    Ok(result) => admin_ok(&result),
                    Err(SimError::NotFound(what)) => admin_error(404, &format!("not found: {what}")),
                    Err(SimError::Config(what)) => admin_error(409, &what),
                    Err(e) => admin_error(502, &e.to_string()),
                },
                Err(e) => admin_error(400, &format!("invalid click: {e}")),
            },
            ("POST", ["keys", "rotate"]) => match self.keys.rotate() {
                Ok(k) => admin_ok(&serde_json::json!({ "kid": k.kid() })),
                Err(e) => admin_error(500, &e.to_string()),
            },
            ("POST", ["channels"]) => match serde_json::from_slice::<ChannelBody>(&req.body) {
                Ok(b) => admin_ok(&serde_json::json!({ "url": self.channel_url(&b.name) })),
                Err(_) => admin_error(400, "expected {\"name\": \"<channel name>\"}"),
            },
            ("PUT", ["installed"]) => match serde_json::from_slice::<InstalledBody>(&req.body) {
                Ok(b) => match self.set_installed(&b.user, b.installed) {
                    Ok(()) => SimResponse::new(204),
                    Err(e) => admin_error(404, &e.to_string()),
                },
                Err(_) => admin_error(400, "expected {\"user\": \"<upn or id>\", \"installed\": <bool>}"),
            },
            _ => return None,
        };
        Some(resp)
    }
}

impl BotService {
    fn set_installed(&self, user: &str, installed: bool) -> Result<(), SimError> {
        let id =
            self.find_user(user).map(|u| u.id.clone()).ok_or_else(|| SimError::NotFound(format!("user {user}")))?;
        let mut records = self.records();
        if installed {
            records.uninstalled.remove(&id);
        } else {
            records.uninstalled.insert(id);
        }
        Ok(())
    }
}

/// A running Bot Framework channel simulator. Cloning shares it.
#[derive(Clone, Debug)]
pub struct BotFrameworkSim {
    svc: Arc<BotService>,
    server: Arc<ServerTask>,
}

impl BotFrameworkSim {
    /// Starts the simulator on `addr`. Bot Connector calls need tokens from the login
    /// simulator that shares `tokens`; `clock` should be the one the other simulators use.
    pub async fn start(
        cfg: BotFrameworkConfig,
        tenant: &Tenant,
        clock: Clock,
        tokens: TokenTable,
        addr: SocketAddr,
    ) -> Result<Self, SimError> {
        let keys = KeySet::generate("api.botframework.com (simulated)")?;
        let http = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build()?;
        let (listener, base_url) = server::bind(addr).await?;
        let (core, shutdown) = server::core(clock, base_url);
        let svc = Arc::new(BotService {
            core,
            cfg: Mutex::new(cfg),
            tenant_id: tenant.id.clone(),
            users: tenant.users.clone(),
            tokens,
            keys,
            foreign: Mutex::new(None),
            records: Mutex::new(Records::default()),
            http,
        });
        let server = server::spawn(svc.clone(), listener, shutdown);
        Ok(Self { svc, server: Arc::new(server) })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.svc.core.base_url.clone()
    }

    /// The Bot Connector service URL activities carry: `{base}/teams/`.
    pub fn service_url(&self) -> String {
        self.svc.service_url()
    }

    /// The OpenID metadata URL of channel tokens: `{base}/v1/.well-known/openidconfiguration`.
    pub fn openid_metadata_url(&self) -> String {
        format!("{}/v1/.well-known/openidconfiguration", self.svc.core.base_url)
    }

    /// The JWKS of channel tokens: `{base}/v1/.well-known/keys`.
    pub fn jwks_url(&self) -> String {
        format!("{}/v1/.well-known/keys", self.svc.core.base_url)
    }

    /// The bot's app id (the `aud` of channel tokens).
    pub fn bot_app_id(&self) -> String {
        self.svc.cfg().bot_app_id.clone()
    }

    /// Sets the bot's messaging endpoint, where clicks are POSTed.
    pub fn set_bot_endpoint(&self, url: &str) {
        self.svc.cfg().bot_endpoint = Some(url.to_owned());
    }

    /// The bot's messaging endpoint, if set.
    pub fn bot_endpoint(&self) -> Option<String> {
        self.svc.cfg().bot_endpoint.clone()
    }

    /// The keys channel tokens are signed with (rotate them here).
    pub fn keys(&self) -> &KeySet {
        &self.svc.keys
    }

    /// Whether the user has the bot installed (default: everyone). Without it, creating a
    /// conversation with them is 403 `BotNotInConversationRoster`.
    pub fn set_installed(&self, user: &str, installed: bool) -> Result<(), SimError> {
        self.svc.set_installed(user, installed)
    }

    /// A user clicks an `Action.Execute` button of a card: see [`Click`].
    pub async fn click(&self, click: Click) -> Result<ClickResult, SimError> {
        self.svc.click(click).await
    }

    /// The URL of a Workflows channel webhook with a valid `sig`, making the channel if needed.
    pub fn channel_url(&self, name: &str) -> String {
        self.svc.channel_url(name)
    }

    /// Everything recorded so far.
    pub fn state(&self) -> BotFrameworkState {
        self.svc.records().state.clone()
    }

    /// The scripted faults (Bot Connector and Workflows routes).
    pub fn faults(&self) -> &Faults {
        &self.svc.core.faults
    }

    /// The requests received, secrets redacted.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.svc.core.log.snapshot()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.svc.core.log.clear();
    }

    /// The clock channel tokens and records are timed by.
    pub fn clock(&self) -> &Clock {
        &self.svc.core.clock
    }

    /// Stops the server (waits at most a few seconds for requests in flight).
    pub async fn shutdown(&self) {
        self.server.stop().await;
    }
}
