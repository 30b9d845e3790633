//! Slack simulator: the Web API methods an approval bot uses, signed button clicks delivered to
//! the app's Request URL, and the `response_url` follow-ups.
//!
//! Web API under `/api/` (POST or GET; JSON bodies with a bearer token, or form bodies and
//! query strings where `token` may also be a field):
//!
//! - `chat.postMessage` (`chat:write`): to a channel id, `#name`, or a user id (a direct
//!   message: the answer names the `D…` channel). Refusals come as HTTP 200 with
//!   `{"ok":false,"error":…}`: `channel_not_found`, `not_in_channel` (the bot is not a member),
//!   `is_archived`, `no_text` (neither text nor blocks), `msg_too_long` (text over 40,000
//!   characters), `invalid_blocks_format` (blocks not an array), `invalid_blocks` (with
//!   `errors` and `response_metadata.messages` naming a JSON pointer). A per-channel token
//!   bucket (1 message per second, bursts of 3 by default) answers HTTP 429
//!   `{"ok":false,"error":"ratelimited"}` with `Retry-After`. `ts` values are
//!   `"<unix seconds>.<6 digits>"` on the simulated clock, unique and increasing.
//! - `chat.update` (`chat:write`): `message_not_found` for an unknown or deleted `ts`.
//! - `users.info` (`users:read`; `user.profile.email` only with `users:read.email`),
//!   `users.lookupByEmail` (`users:read.email`; `users_not_found`), `conversations.open`
//!   (`im:write`; one user), `auth.test`.
//! - Without a token: `not_authed`; another token: `invalid_auth`; a scope the token lacks:
//!   `missing_scope` with `needed` and `provided`. Every answer carries `x-slack-req-id` and
//!   `x-oauth-scopes`. An unknown method is HTTP 404 `unknown_method`.
//!
//! Users derive from the tenant: each directory user is a workspace member with a stable id
//! ([`slack_user_id`]), the handle of their UPN's local part and, as email, their `mail` (or
//! UPN); disabled accounts are deactivated (`deleted: true`). The workspace also has a member
//! with no directory match ([`EXTERNAL_USER_ID`]) and the bot user.
//!
//! Clicks ([`SlackSim::click`], [`SlackSim::click_with`], `POST /sim/click`): builds the
//! `block_actions` payload of the clicked message as it is now (with a `trigger_id` and a
//! `response_url` back at this simulator), form-encodes `payload=<json>`, signs
//! `v0:{timestamp}:{body}` with the signing secret and the simulated clock, POSTs it to the
//! Request URL ([`SlackSim::set_request_url`]) and returns the app's answer. [`Tamper`] spoils
//! the request on purpose; [`SlackSim::replay`] resends an earlier delivery byte for byte.
//!
//! `response_url` (`POST /actions/{team}/{id}/{secret}`, JSON): `replace_original` replaces
//! the message, `delete_original` deletes it, `response_type: in_channel` posts a new message,
//! anything else is an ephemeral message to the clicking user. Five uses within 30 minutes;
//! the sixth use is HTTP 404 `{"ok":false,"error":"used_url"}` and a use after 30 minutes is
//! HTTP 404 `{"ok":false,"error":"expired_url"}`; an unknown URL is 404 `invalid_url`.
//!
//! Admin routes besides the common ones: `GET /sim/state`, `PUT /sim/request-url {"url"}`,
//! `POST /sim/click {"user","channel","ts","action_id","value","tamper"}`,
//! `POST /sim/replay {"index"}`, `PUT /sim/scopes {"scopes":[…]}`,
//! `POST /sim/channels {"id","name","bot_member","archived"}`.
//!
//! Where it differs from Slack: the 404 bodies of a used, expired or unknown `response_url`
//! are the simulator's wording (Slack's are not documented); Block Kit validation covers the
//! common blocks and buttons, not every element's rules; `chat.update` and the read methods are
//! not rate limited (Slack's tiers 3 and 4); direct messages to several users (MPIMs), threads
//! beyond recording `thread_ts`, and `chat:write.public` are not modelled; the Request URL's
//! answer to a click is recorded but never changes the message (as for `block_actions`); the
//! request log does not redact a form `token` field (the log redacts by field name).

mod api;
mod blocks;
mod click;
mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

pub use self::click::{Click, ClickResult, Tamper};
pub use self::state::{
    ChannelRecord, EphemeralMessage, Interaction, MessageSource, MessageVersion, SlackMessage, SlackState,
};
use crate::clock::Clock;
use crate::error::SimError;
use crate::faults::Faults;
use crate::log::LoggedRequest;
use crate::server::{self, Core, ServerTask, Service, SimRequest, SimResponse, admin_error, admin_ok};
use crate::tenant::Tenant;

/// The demo bot token (`xoxb-…`).
pub const DEMO_BOT_TOKEN: &str = "xoxb-000000000001-000000000002-grantlinedemobottoken";
/// The demo app's signing secret.
pub const DEMO_SIGNING_SECRET: &str = "grantline-demo-slack-signing-secret";
/// The demo workspace.
pub const TEAM_ID: &str = "T0CONTOSO1";
/// `#access-approvals`: the bot is a member.
pub const APPROVALS_CHANNEL_ID: &str = "C0APPROVALS";
pub const APPROVALS_CHANNEL: &str = "access-approvals";
/// `#general`: the bot is not a member (posting is `not_in_channel`).
pub const GENERAL_CHANNEL_ID: &str = "C0GENERAL1";
/// `#old-approvals`: archived (posting is `is_archived`).
pub const ARCHIVED_CHANNEL_ID: &str = "C0ARCHIVED";
/// A workspace member with no directory user (a contractor's own Slack account).
pub const EXTERNAL_USER_ID: &str = "U0CASEYEXT";
pub const EXTERNAL_USER_EMAIL: &str = "casey@freelance.example";

/// The Slack user id of a directory user: `U` and ten upper-case hex digits derived from the
/// directory object id (stable across runs).
pub fn slack_user_id(directory_id: &str) -> String {
    let digest = sha2::Sha256::digest(format!("slack-user:{}", directory_id.to_ascii_lowercase()).as_bytes());
    format!("U{}", &hex::encode_upper(digest)[..10])
}

/// The id of the direct-message channel between the bot and a user.
pub(crate) fn im_channel_id(user_id: &str) -> String {
    let digest = sha2::Sha256::digest(format!("slack-im:{user_id}").as_bytes());
    format!("D{}", &hex::encode_upper(digest)[..10])
}

/// A channel that exists when the simulator starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSeed {
    pub id: String,
    pub name: String,
    #[serde(default = "yes")]
    pub bot_member: bool,
    #[serde(default)]
    pub archived: bool,
}

fn yes() -> bool {
    true
}

/// Slack simulator settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SlackConfig {
    pub team_id: String,
    pub team_domain: String,
    /// The app (`api_app_id` in payloads).
    pub api_app_id: String,
    /// The bot's user id and bot id (`U…`, `B…`).
    pub bot_user_id: String,
    pub bot_id: String,
    /// The only token the Web API accepts.
    pub bot_token: String,
    /// The token's scopes (default `chat:write`, `users:read`, `users:read.email`, `im:write`).
    pub scopes: Vec<String>,
    /// Signs clicks.
    pub signing_secret: String,
    /// The deprecated verification token put in payloads (`token`).
    pub verification_token: String,
    /// Where clicks are POSTed (also [`SlackSim::set_request_url`]).
    pub request_url: Option<String>,
    pub channels: Vec<ChannelSeed>,
    /// `chat.postMessage` per channel: sustained rate and burst.
    pub messages_per_second: f64,
    pub burst: u32,
    /// How long a click waits for the app's answer (Slack: 3 seconds).
    pub interaction_timeout: Duration,
    /// `response_url` budget: uses and lifetime (Slack: 5 within 30 minutes).
    pub response_url_uses: u32,
    pub response_url_lifetime: Duration,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self::demo()
    }
}

impl SlackConfig {
    /// The demo workspace: [`DEMO_BOT_TOKEN`], [`DEMO_SIGNING_SECRET`], the three demo channels,
    /// no Request URL yet.
    pub fn demo() -> Self {
        let seed = |id: &str, name: &str, bot_member: bool, archived: bool| ChannelSeed {
            id: id.to_owned(),
            name: name.to_owned(),
            bot_member,
            archived,
        };
        Self {
            team_id: TEAM_ID.to_owned(),
            team_domain: "contoso".to_owned(),
            api_app_id: "A0GRANTLINE".to_owned(),
            bot_user_id: "U0GRANTBOT".to_owned(),
            bot_id: "B0GRANTBOT".to_owned(),
            bot_token: DEMO_BOT_TOKEN.to_owned(),
            scopes: ["chat:write", "users:read", "users:read.email", "im:write"].map(str::to_owned).to_vec(),
            signing_secret: DEMO_SIGNING_SECRET.to_owned(),
            verification_token: "grantlineDeprecatedVerifTkn".to_owned(),
            request_url: None,
            channels: vec![
                seed(APPROVALS_CHANNEL_ID, APPROVALS_CHANNEL, true, false),
                seed(GENERAL_CHANNEL_ID, "general", false, false),
                seed(ARCHIVED_CHANNEL_ID, "old-approvals", true, true),
            ],
            messages_per_second: 1.0,
            burst: 3,
            interaction_timeout: Duration::from_secs(3),
            response_url_uses: 5,
            response_url_lifetime: Duration::from_secs(30 * 60),
        }
    }
}

/// A workspace member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlackUser {
    pub id: String,
    /// The handle (`alexw`).
    pub name: String,
    pub real_name: String,
    pub email: Option<String>,
    /// The directory user this member derives from.
    pub directory_id: Option<String>,
    /// Deactivated.
    pub deleted: bool,
    pub is_bot: bool,
}

fn users_of(tenant: &Tenant, cfg: &SlackConfig) -> Vec<SlackUser> {
    let mut users: Vec<SlackUser> = tenant
        .users
        .iter()
        .map(|u| {
            let email = u.mail.clone().unwrap_or_else(|| u.user_principal_name.clone());
            let handle = email.split('@').next().unwrap_or(&email).to_ascii_lowercase();
            SlackUser {
                id: slack_user_id(&u.id),
                name: handle,
                real_name: u.display_name.clone(),
                email: Some(email),
                directory_id: Some(u.id.clone()),
                deleted: !u.account_enabled,
                is_bot: false,
            }
        })
        .collect();
    users.push(SlackUser {
        id: EXTERNAL_USER_ID.to_owned(),
        name: "casey".to_owned(),
        real_name: "Casey Contractor".to_owned(),
        email: Some(EXTERNAL_USER_EMAIL.to_owned()),
        directory_id: None,
        deleted: false,
        is_bot: false,
    });
    users.push(SlackUser {
        id: cfg.bot_user_id.clone(),
        name: "grantline".to_owned(),
        real_name: "grantline".to_owned(),
        email: None,
        directory_id: None,
        deleted: false,
        is_bot: true,
    });
    users
}

/// A `response_url` handed out with a click.
#[derive(Debug, Clone)]
pub(crate) struct ResponseUrl {
    pub path: String,
    pub channel: String,
    pub ts: String,
    pub user: String,
    pub created_at: Timestamp,
    pub uses: u32,
}

/// A click as it went on the wire, for replays.
#[derive(Debug, Clone)]
pub(crate) struct SentClick {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub index: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Workspace {
    pub state: SlackState,
    /// Per-channel token buckets: tokens and when they were counted.
    pub buckets: HashMap<String, (f64, Timestamp)>,
    /// The last `ts` handed out: seconds and microseconds.
    pub last_ts: (i64, u32),
    pub response_urls: Vec<ResponseUrl>,
    pub sent: Vec<SentClick>,
}

impl Workspace {
    pub(crate) fn channel_mut(&mut self, id: &str) -> Option<&mut ChannelRecord> {
        self.state.channels.iter_mut().find(|c| c.id == id)
    }

    /// A new `ts`, strictly after every earlier one.
    pub(crate) fn next_ts(&mut self, now: Timestamp) -> String {
        let secs = now.as_second();
        let micros = u32::try_from(now.subsec_microsecond()).unwrap_or(0);
        let (mut s, mut m) = (secs, micros);
        if (s, m) <= self.last_ts {
            (s, m) = self.last_ts;
            m += 1;
            if m >= 1_000_000 {
                s += 1;
                m = 0;
            }
        }
        self.last_ts = (s, m);
        format!("{s}.{m:06}")
    }
}

#[derive(Debug)]
pub(crate) struct SlackService {
    pub core: Core,
    pub cfg: Mutex<SlackConfig>,
    pub users: Vec<SlackUser>,
    pub workspace: Mutex<Workspace>,
    pub http: reqwest::Client,
}

impl SlackService {
    pub(crate) fn cfg(&self) -> MutexGuard<'_, SlackConfig> {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn workspace(&self) -> MutexGuard<'_, Workspace> {
        self.workspace.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A member by Slack id, email, directory id or UPN-derived handle.
    pub(crate) fn find_user(&self, key: &str) -> Option<&SlackUser> {
        let key = key.trim();
        self.users.iter().find(|u| {
            u.id == key
                || u.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(key))
                || u.directory_id.as_deref().is_some_and(|d| d.eq_ignore_ascii_case(key))
        })
    }

    /// Opens (or finds) the bot's direct-message channel with a user; returns its id and
    /// whether it already existed.
    pub(crate) fn open_im(&self, ws: &mut Workspace, user: &SlackUser) -> (String, bool) {
        let id = im_channel_id(&user.id);
        if ws.state.channels.iter().any(|c| c.id == id) {
            return (id, true);
        }
        ws.state.channels.push(ChannelRecord {
            id: id.clone(),
            name: user.name.clone(),
            is_im: true,
            user: Some(user.id.clone()),
            bot_member: true,
            archived: false,
            messages: Vec::new(),
        });
        (id, false)
    }
}

fn slack_json(status: u16, body: &serde_json::Value) -> SimResponse {
    SimResponse::json_bytes(status, "application/json; charset=utf-8", body.to_string())
}

#[derive(Deserialize)]
struct UrlBody {
    url: Option<String>,
}

#[derive(Deserialize)]
struct ScopesBody {
    scopes: Vec<String>,
}

#[derive(Deserialize)]
struct ReplayBody {
    #[serde(default)]
    index: Option<usize>,
}

impl Service for SlackService {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn handle(&self, req: &SimRequest) -> SimResponse {
        if let Some(method) = req.path.strip_prefix("/api/") {
            return self.web_api(method, req);
        }
        if req.path.starts_with("/actions/") && req.method == http::Method::POST {
            return self.response_url(req);
        }
        slack_json(404, &serde_json::json!({ "ok": false, "error": "not_found" }))
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
                let error = match status {
                    429 => "ratelimited",
                    500 => "internal_error",
                    503 => "service_unavailable",
                    504 => "request_timeout",
                    _ => "fatal_error",
                };
                let mut r = slack_json(status, &serde_json::json!({ "ok": false, "error": error }));
                if status == 429 {
                    r.headers.push(("Retry-After".into(), "1".into()));
                }
                r
            }
        };
        let defaults = std::mem::take(&mut resp.headers);
        resp.headers = headers;
        for (k, v) in defaults {
            resp.default_header(&k, v);
        }
        resp.default_header("x-slack-req-id", api::request_id());
        resp
    }

    async fn admin(&self, req: &SimRequest) -> Option<SimResponse> {
        let resp = match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/sim/state") => admin_ok(&self.workspace().state),
            ("PUT", "/sim/request-url") => match serde_json::from_slice::<UrlBody>(&req.body) {
                Ok(b) => {
                    self.cfg().request_url = b.url.clone();
                    admin_ok(&serde_json::json!({ "url": b.url }))
                }
                Err(_) => admin_error(400, "expected {\"url\": \"<Request URL>\"}"),
            },
            ("PUT", "/sim/scopes") => match serde_json::from_slice::<ScopesBody>(&req.body) {
                Ok(b) => {
                    self.cfg().scopes = b.scopes;
                    SimResponse::new(204)
                }
                Err(_) => admin_error(400, "expected {\"scopes\": [\"chat:write\", ...]}"),
            },
            ("POST", "/sim/channels") => match serde_json::from_slice::<ChannelSeed>(&req.body) {
                Ok(seed) => {
                    self.add_channel(seed);
                    SimResponse::new(204)
                }
                Err(_) => admin_error(400, "expected {\"id\", \"name\", \"bot_member\", \"archived\"}"),
            },
            ("POST", "/sim/click") => match serde_json::from_slice::<click::ClickBody>(&req.body) {
                Ok(b) => click::admin_result(self.click(b.into()).await),
                Err(e) => admin_error(400, &format!("invalid click: {e}")),
            },
            ("POST", "/sim/replay") => {
                let index = serde_json::from_slice::<ReplayBody>(&req.body).ok().and_then(|b| b.index);
                click::admin_result(self.replay(index).await)
            }
            _ => return None,
        };
        Some(resp)
    }
}

impl SlackService {
    fn add_channel(&self, seed: ChannelSeed) {
        let mut ws = self.workspace();
        if let Some(c) = ws.channel_mut(&seed.id) {
            c.name = seed.name;
            c.bot_member = seed.bot_member;
            c.archived = seed.archived;
            return;
        }
        ws.state.channels.push(ChannelRecord {
            id: seed.id,
            name: seed.name,
            is_im: false,
            user: None,
            bot_member: seed.bot_member,
            archived: seed.archived,
            messages: Vec::new(),
        });
    }
}

/// A running Slack simulator. Cloning shares it.
#[derive(Clone, Debug)]
pub struct SlackSim {
    svc: Arc<SlackService>,
    server: Arc<ServerTask>,
}

impl SlackSim {
    /// Starts the simulator on `addr`; members derive from `tenant`'s users.
    pub async fn start(cfg: SlackConfig, tenant: &Tenant, clock: Clock, addr: SocketAddr) -> Result<Self, SimError> {
        let http = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build()?;
        let (listener, base_url) = server::bind(addr).await?;
        let (core, shutdown) = server::core(clock, base_url);
        let users = users_of(tenant, &cfg);
        let seeds = cfg.channels.clone();
        let svc = Arc::new(SlackService {
            core,
            cfg: Mutex::new(cfg),
            users,
            workspace: Mutex::new(Workspace::default()),
            http,
        });
        for seed in seeds {
            svc.add_channel(seed);
        }
        let server = server::spawn(svc.clone(), listener, shutdown);
        Ok(Self { svc, server: Arc::new(server) })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.svc.core.base_url.clone()
    }

    /// The Web API root to configure clients with: `{base}/api`.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.svc.core.base_url)
    }

    /// The bot token the Web API accepts.
    pub fn bot_token(&self) -> String {
        self.svc.cfg().bot_token.clone()
    }

    /// The signing secret clicks are signed with.
    pub fn signing_secret(&self) -> String {
        self.svc.cfg().signing_secret.clone()
    }

    /// The workspace id.
    pub fn team_id(&self) -> String {
        self.svc.cfg().team_id.clone()
    }

    /// The bot's user id.
    pub fn bot_user_id(&self) -> String {
        self.svc.cfg().bot_user_id.clone()
    }

    /// Sets the app's Request URL, where clicks are POSTed.
    pub fn set_request_url(&self, url: &str) {
        self.svc.cfg().request_url = Some(url.to_owned());
    }

    /// Replaces the token's scopes (for `missing_scope` and email visibility).
    pub fn set_scopes(&self, scopes: &[&str]) {
        self.svc.cfg().scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Adds a channel, or changes an existing one's membership and archived flag.
    pub fn add_channel(&self, seed: ChannelSeed) {
        self.svc.add_channel(seed);
    }

    /// The workspace members (directory users, the external member, the bot).
    pub fn users(&self) -> Vec<SlackUser> {
        self.svc.users.clone()
    }

    /// The member for a Slack id, email or directory id.
    pub fn user(&self, key: &str) -> Option<SlackUser> {
        self.svc.find_user(key).cloned()
    }

    /// User `user` (Slack id, email or directory id) clicks the element `action_id` of the
    /// message `ts` in `channel`. `value` overrides the element's value (`None` keeps it).
    /// Returns the app's answer.
    pub async fn click<'a>(
        &self,
        user: &str,
        channel: &str,
        ts: &str,
        action_id: &str,
        value: impl Into<Option<&'a str>>,
    ) -> Result<ClickResult, SimError> {
        let mut c = Click::new(user, channel, ts, action_id);
        c.value = value.into().map(str::to_owned);
        self.svc.click(c).await
    }

    /// A click with every knob (see [`Click`] and [`Tamper`]).
    pub async fn click_with(&self, click: Click) -> Result<ClickResult, SimError> {
        self.svc.click(click).await
    }

    /// Sends an earlier click again, byte for byte with the same headers (the last one when
    /// `index` is `None`; indexes count deliveries from 0). Past the five-minute window this is
    /// also a stale request.
    pub async fn replay(&self, index: Option<usize>) -> Result<ClickResult, SimError> {
        self.svc.replay(index).await
    }

    /// Everything recorded so far.
    pub fn state(&self) -> SlackState {
        self.svc.workspace().state.clone()
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

    /// Stops the server (waits at most a few seconds for requests in flight).
    pub async fn shutdown(&self) {
        self.server.stop().await;
    }
}
