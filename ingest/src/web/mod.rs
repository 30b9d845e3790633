//! The signed-link approval page: the door for approvers without Teams or Slack.
//!
//! grantline sends such an approver a link `{public_url}/v1/approvals/{token}`, where the token
//! ([`grantline_shared::link`]) names one stage of one request and the approver it is for, is
//! signed with the deployment's link secret, expires, and works for one decision. The approver
//! signs in with the organisation's identity platform (OpenID Connect, authorization code with
//! PKCE), sees the request and approves or rejects it with a comment.
//!
//! Routes (HTML; every response carries a strict Content-Security-Policy, `X-Frame-Options:
//! DENY`, `Referrer-Policy: no-referrer` and `Cache-Control: no-store`):
//! - `GET /v1/approvals/{token}`: 400 for a tampered or malformed link, 410 for an expired or
//!   used one (each also on the doors' security log, `link.tampered`, `link.expired`,
//!   `link.used`); without a session a 303 to the identity platform; with the session of the
//!   link's approver, the request and (while the stage is pending) the decision form; with
//!   anyone else's session a 403 (`link.not_yours` on the doors' log). Reading never uses the
//!   link up.
//! - `GET /v1/auth/callback`: finishes a sign-in (the `state` must be a pending sign-in of this
//!   browser; the id_token is verified by the connector), creates the session and sends the
//!   browser back to its link.
//! - `POST /v1/approvals/{token}` (`decision=approve|reject`, `comment`, `csrf`): the session,
//!   the CSRF token bound to it, the link and the approver are checked, the link's nonce is
//!   burnt atomically, and the answer goes to [`crate::approvals::answer`] like every other
//!   door's.

pub(crate) mod page;
mod store;

use std::collections::HashMap;

use axum::Router;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use grantline_connectors::graph::Claim;
use grantline_connectors::oidc::{OidcClient, OidcConfig, OidcError, PkcePair, parse_callback, random_value};
use grantline_shared::cards::ApprovalView;
use grantline_shared::link::{self, LinkClaims, LinkError};
use grantline_store::doors::{self, DoorRefusal};

use crate::approvals::{self, Answer, Answered, refusal_error};
use crate::config::{ConfigError, Secret};
use crate::state::AppState;

use page::Viewer;
use store::Session;

pub use store::{SIGNIN_TTL_SECS, random_id};

/// The door's name on the timeline and the doors' log.
pub const DOOR: &str = "web";
/// Where the identity platform sends the browser back (append to `public_url`).
pub const CALLBACK_PATH: &str = "/v1/auth/callback";
/// The session cookie.
pub const SESSION_COOKIE: &str = "grantline_session";
/// The cookie that ties a sign-in to the browser that started it.
pub const SIGNIN_COOKIE: &str = "grantline_signin";
/// The longest comment accepted, in characters.
pub const MAX_COMMENT_CHARS: usize = 4000;
/// Shortest link secret accepted, in characters.
pub const MIN_LINK_SECRET_CHARS: usize = 32;

/// Configuration of the approval page (`ingest.web`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// The externally visible base URL of ingest, scheme and host only
    /// (`https://grantline.example.com`): links and the sign-in redirect URI are built on it.
    pub public_url: String,
    /// Signs the links (at least 32 characters).
    pub link_secret: Secret,
    /// The sign-in app. `redirect_uri` may be left empty: it is `{public_url}/v1/auth/callback`,
    /// and any other value is refused.
    pub oidc: OidcConfig,
    /// Mark cookies `Secure` (default true). Only a plain-http test deployment turns this off.
    pub secure_cookies: bool,
    /// How long a sign-in lasts, in seconds (default 900).
    pub session_ttl_secs: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            public_url: String::new(),
            link_secret: Secret::default(),
            oidc: OidcConfig::default(),
            secure_cookies: true,
            session_ttl_secs: 900,
        }
    }
}

impl WebConfig {
    /// Checks every key, one message per problem, each naming its key (`ingest.web.*`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.checked().map(|_| ())
    }

    /// The normalised public URL and the sign-in configuration with its redirect URI.
    fn checked(&self) -> Result<(String, OidcConfig), ConfigError> {
        let mut problems = Vec::new();
        let public = match parse_public_url(&self.public_url) {
            Ok(u) => Some(u),
            Err(why) => {
                problems.push(format!("ingest.web.public_url {why}"));
                None
            }
        };
        if let Some(p) = &public
            && p.starts_with("http://")
            && self.secure_cookies
        {
            problems.push(
                "ingest.web.secure_cookies must be false when ingest.web.public_url is plain http \
                 (browsers drop Secure cookies there); serve the page over https instead"
                    .to_owned(),
            );
        }
        if self.link_secret.expose().trim().chars().count() < MIN_LINK_SECRET_CHARS {
            problems.push(format!("ingest.web.link_secret must be at least {MIN_LINK_SECRET_CHARS} characters"));
        }
        if !(60..=86_400).contains(&self.session_ttl_secs) {
            problems.push(format!(
                "ingest.web.session_ttl_secs must be between 60 and 86400 (got {})",
                self.session_ttl_secs
            ));
        }
        let mut oidc = self.oidc.clone();
        if let Some(p) = &public {
            let expected = format!("{p}{CALLBACK_PATH}");
            let given = oidc.redirect_uri.trim();
            if given.is_empty() {
                oidc.redirect_uri = expected;
            } else if given != expected {
                problems.push(format!(
                    "ingest.web.oidc.redirect_uri must be {expected:?} (public_url + {CALLBACK_PATH}) or empty, not {given:?}"
                ));
            }
            if let Err(e) = oidc.validate() {
                problems.push(format!("ingest.web.{}: {}", e.key, e.reason));
            }
        }
        match public {
            Some(p) if problems.is_empty() => Ok((p, oidc)),
            _ => Err(ConfigError(problems)),
        }
    }
}

/// `scheme://host[:port]` of an absolute http(s) URL with no path, query or fragment.
fn parse_public_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim().trim_end_matches('/');
    if raw.is_empty() {
        return Err("must be set (the externally visible base URL, e.g. https://grantline.example.com)".to_owned());
    }
    if raw.contains(['#', '?']) {
        return Err("must not have a query or fragment".to_owned());
    }
    let uri: Uri = raw.parse().map_err(|_| format!("{raw:?} is not a URL"))?;
    let scheme = uri.scheme_str().unwrap_or("");
    if scheme != "https" && scheme != "http" {
        return Err("must be an absolute http(s) URL".to_owned());
    }
    let Some(authority) = uri.authority() else {
        return Err("must name a host".to_owned());
    };
    if authority.as_str().contains('@') {
        return Err("must not carry credentials".to_owned());
    }
    if !matches!(uri.path(), "" | "/") {
        return Err("must be scheme and host only: the page's routes and cookies live at /v1/".to_owned());
    }
    Ok(format!("{scheme}://{}", authority.as_str().to_ascii_lowercase()))
}

/// The link an approver is sent: `{public_url}/v1/approvals/{token}`.
pub fn link_url(public_url: &str, token: &str) -> String {
    link::url(public_url, token)
}

/// What the web door needs at run time.
#[derive(Debug)]
pub struct WebDoor {
    public_url: String,
    link_secret: Secret,
    oidc: OidcClient,
    secure_cookies: bool,
    session_ttl_secs: u64,
}

impl WebDoor {
    /// Validates the configuration and builds the sign-in client.
    pub fn new(cfg: &WebConfig) -> Result<WebDoor, ConfigError> {
        let (public_url, oidc) = cfg.checked()?;
        let client =
            OidcClient::new(&oidc).map_err(|e| ConfigError(vec![format!("ingest.web.{}: {}", e.key, e.reason)]))?;
        Ok(WebDoor {
            public_url,
            link_secret: cfg.link_secret.clone(),
            oidc: client,
            secure_cookies: cfg.secure_cookies,
            session_ttl_secs: cfg.session_ttl_secs,
        })
    }

    /// The normalised public URL (no trailing slash).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The redirect URI to register for the sign-in app: `{public_url}/v1/auth/callback`.
    pub fn redirect_uri(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.public_url)
    }

    /// The sign-in client (for its key cache).
    pub fn oidc(&self) -> &OidcClient {
        &self.oidc
    }

    /// Signs a link token with this deployment's secret.
    pub fn issue(&self, claims: &LinkClaims) -> String {
        link::issue(self.link_secret.expose().as_bytes(), claims)
    }

    /// The full link for these claims.
    pub fn link(&self, claims: &LinkClaims) -> String {
        link_url(&self.public_url, &self.issue(claims))
    }

    fn verify(&self, token: &str, now_ms: u64) -> Result<LinkClaims, LinkError> {
        link::verify(self.link_secret.expose().as_bytes(), token, now_ms)
    }

    /// The CSRF token of a session: an HMAC of the session id, so it needs no storage and is
    /// worthless with any other session.
    fn csrf(&self, session_id: &str) -> String {
        let mut m = match Hmac::<Sha256>::new_from_slice(self.link_secret.expose().as_bytes()) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        m.update(b"grantline web csrf\n");
        m.update(session_id.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    fn cookie(&self, name: &str, value: &str, path: &str, max_age_secs: u64) -> String {
        format!(
            "{name}={value}; Path={path}; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{}",
            if self.secure_cookies { "; Secure" } else { "" }
        )
    }
}

/// The routes of this door.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/approvals/{token}", get(show).post(decide)).route(CALLBACK_PATH, get(callback))
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// A random id as this door makes them: 64 lowercase hex characters.
fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn same_id(a: &str, b: &str) -> bool {
    !a.trim().is_empty() && a.trim().eq_ignore_ascii_case(b.trim())
}

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "web door: request store unavailable");
    page::message(
        StatusCode::SERVICE_UNAVAILABLE,
        crate::codes::SERVICE_UNAVAILABLE,
        "Try again in a moment",
        "grantline cannot reach its request store right now. Nothing was changed.",
    )
}

fn not_configured() -> Response {
    page::message(
        StatusCode::NOT_FOUND,
        "web.not_configured",
        "Approval links are not enabled",
        "This grantline deployment does not serve the approval page.",
    )
}

/// Writes a refusal on the doors' security log (a failure to write is logged, not shown).
async fn audit(state: &AppState, reason: &str, claimed: Option<&str>, request_id: Option<&str>, detail: &str) {
    let r = DoorRefusal {
        door: DOOR.to_owned(),
        reason: reason.to_owned(),
        claimed: claimed.map(str::to_owned),
        request_id: request_id.map(str::to_owned),
        detail: detail.to_owned(),
        at_ms: state.now_ms(),
    };
    if let Err(e) = doors::refused(&state.queue, &r).await {
        tracing::error!(error = %e, reason, "web door: the doors' log could not be written");
    }
}

/// Verifies a link and that it is unused; a refusal is audited and rendered.
async fn check_link(
    state: &AppState,
    door: &WebDoor,
    token: &str,
    signed_in: Option<&str>,
) -> Result<LinkClaims, Response> {
    let now = state.now_ms();
    let detail_who = signed_in.map(|o| format!("; signed in as {o}")).unwrap_or_default();
    let claims = match door.verify(token, now) {
        Ok(c) => c,
        Err(e @ (LinkError::Malformed | LinkError::BadSignature)) => {
            let named = link::unverified_claims(token);
            audit(
                state,
                "link.tampered",
                named.as_ref().map(|c| c.approver.as_str()).or(signed_in),
                named.as_ref().map(|c| c.request_id.as_str()),
                &format!("{}{detail_who}", e.code()),
            )
            .await;
            return Err(page::message(
                StatusCode::BAD_REQUEST,
                "link.tampered",
                "This link is not valid",
                "The link is damaged or was changed. Open it again from the message you received, \
                 copying the whole address.",
            ));
        }
        Err(LinkError::Expired) => {
            let named = link::unverified_claims(token);
            audit(
                state,
                "link.expired",
                named.as_ref().map(|c| c.approver.as_str()),
                named.as_ref().map(|c| c.request_id.as_str()),
                &format!("expired{detail_who}"),
            )
            .await;
            return Err(page::message(
                StatusCode::GONE,
                "link.expired",
                "This link has expired",
                "Approval links work for a limited time. The request may still be answered in \
                 another way, or a new link will be sent if it is still waiting.",
            ));
        }
    };
    tracing::Span::current().record("request_id", claims.request_id.as_str());
    match store::is_used(&state.queue, &claims.nonce).await {
        Ok(false) => Ok(claims),
        Ok(true) => Err(used(state, &claims, signed_in).await),
        Err(e) => Err(unavailable(&e)),
    }
}

async fn used(state: &AppState, claims: &LinkClaims, signed_in: Option<&str>) -> Response {
    let detail = signed_in.map(|o| format!("signed in as {o}")).unwrap_or_default();
    audit(state, "link.used", Some(&claims.approver), Some(&claims.request_id), &detail).await;
    page::message(
        StatusCode::GONE,
        "link.used",
        "This link was already used",
        "A decision was already made with this link; each link works once.",
    )
}

async fn not_yours(state: &AppState, claims: &LinkClaims, session: &Session) -> Response {
    audit(
        state,
        "link.not_yours",
        Some(&session.oid),
        Some(&claims.request_id),
        &format!("the link is for {}", claims.approver),
    )
    .await;
    let who = session.upn.as_deref().unwrap_or(&session.oid);
    page::message(
        StatusCode::FORBIDDEN,
        "link.not_yours",
        "This link is for someone else",
        &format!(
            "You are signed in as {who}, but this approval link was sent to another person. \
             Nothing was recorded. Only the person it was sent to can answer with it."
        ),
    )
}

/// The session the browser presents, if it is live.
async fn current_session(state: &AppState, headers: &HeaderMap) -> Result<Option<(String, Session)>, Response> {
    let Some(id) = cookie(headers, SESSION_COOKIE).filter(|c| is_id(c)) else {
        return Ok(None);
    };
    match store::session(&state.queue, &id, state.now_ms()).await {
        Ok(Some(s)) => Ok(Some((id, s))),
        Ok(None) => Ok(None),
        Err(e) => Err(unavailable(&e)),
    }
}

/// Sends the browser to the identity platform, keeping what the callback needs.
async fn start_signin(state: &AppState, door: &WebDoor, token: &str, headers: &HeaderMap) -> Response {
    let browser = cookie(headers, SIGNIN_COOKIE).filter(|c| is_id(c)).unwrap_or_else(store::random_id);
    let signin_state = random_value();
    let pending = store::PendingSignIn {
        verifier: PkcePair::generate().verifier,
        nonce: random_value(),
        token: token.to_owned(),
        binding: store::binding_of(&browser),
    };
    if let Err(e) = store::put_signin(&state.queue, &signin_state, &pending).await {
        return unavailable(&e);
    }
    let challenge = PkcePair::from_verifier(&pending.verifier).challenge;
    let url = door.oidc.authorize_url(&signin_state, &pending.nonce, None, &challenge);
    tracing::info!("web door: sign-in started");
    page::see_other(url.as_str(), &[door.cookie(SIGNIN_COOKIE, &browser, "/v1/auth/", SIGNIN_TTL_SECS)])
}

/// `GET /v1/approvals/{token}`.
async fn show(State(state): State<AppState>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let Some(door) = state.web.clone() else {
        return not_configured();
    };
    let session = match current_session(&state, &headers).await {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let claims = match check_link(&state, &door, &token, session.as_ref().map(|(_, s)| s.oid.as_str())).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let Some((sid, session)) = session else {
        return start_signin(&state, &door, &token, &headers).await;
    };
    if !same_id(&session.oid, &claims.approver) {
        return not_yours(&state, &claims, &session).await;
    }
    let rec = match grantline_store::find(&state.queue, &claims.request_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return gone_request(),
        Err(e) => return unavailable(&e),
    };
    let view = ApprovalView::of(&rec, claims.stage);
    let viewer = Viewer { oid: &session.oid, upn: session.upn.as_deref(), name: session.name.as_deref() };
    page::approval(&view, viewer, &format!("/v1/approvals/{token}"), &door.csrf(&sid))
}

fn gone_request() -> Response {
    page::message(
        StatusCode::NOT_FOUND,
        crate::codes::REQUEST_NOT_FOUND,
        "No such request",
        "The request this link is about no longer exists.",
    )
}

/// `GET /v1/auth/callback?code&state` (or `?error&error_description&state`).
async fn callback(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Some(door) = state.web.clone() else {
        return not_configured();
    };
    let raw = raw.unwrap_or_default();
    let cb = match parse_callback(&raw) {
        Ok(cb) => cb,
        Err(e) => {
            // the sign-in is over either way: forget it
            if let Some(s) = query.as_ref().ok().and_then(|q| q.0.get("state")).filter(|s| !s.is_empty())
                && let Err(err) = store::take_signin(&state.queue, s).await
            {
                return unavailable(&err);
            }
            let code = e.code();
            audit(&state, "signin.failed", None, None, &code).await;
            let (status, text) = match &e {
                OidcError::Denied { error, .. } => (
                    StatusCode::UNAUTHORIZED,
                    format!("The identity platform did not sign you in ({error}). Open the link again to retry."),
                ),
                _ => (StatusCode::BAD_REQUEST, "This is not a sign-in response grantline can use.".to_owned()),
            };
            return page::message(status, "signin.failed", "Sign-in did not complete", &text);
        }
    };
    let pending = match store::take_signin(&state.queue, &cb.state).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            audit(&state, "signin.unknown_state", None, None, "no pending sign-in has this state").await;
            return page::message(
                StatusCode::BAD_REQUEST,
                "signin.unknown_state",
                "This sign-in has expired",
                "The sign-in took too long or was already completed. Open the approval link again.",
            );
        }
        Err(e) => return unavailable(&e),
    };
    let from_this_browser = cookie(&headers, SIGNIN_COOKIE)
        .map(|c| bool::from(store::binding_of(&c).as_bytes().ct_eq(pending.binding.as_bytes())))
        .unwrap_or(false);
    if !from_this_browser {
        let named = link::unverified_claims(&pending.token);
        audit(
            &state,
            "signin.wrong_browser",
            None,
            named.as_ref().map(|c| c.request_id.as_str()),
            "the callback came to another browser than the one that started the sign-in",
        )
        .await;
        return page::message(
            StatusCode::BAD_REQUEST,
            "signin.wrong_browser",
            "Sign-in did not complete",
            "This sign-in was started in another browser. Open the approval link again here.",
        );
    }
    let user =
        match door.oidc.exchange_code(cb.code.expose(), &pending.verifier, &pending.nonce, state.clock.now()).await {
            Ok(u) => u,
            Err(e) => {
                let code = e.code();
                tracing::warn!(code = %code, "web door: sign-in refused");
                audit(&state, "signin.failed", None, None, &code).await;
                if e.class().is_retryable() {
                    return page::message(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "signin.unavailable",
                        "Sign-in is unavailable",
                        "The identity platform could not be reached. Open the approval link again in a moment.",
                    );
                }
                return page::message(
                    StatusCode::UNAUTHORIZED,
                    "signin.failed",
                    "Sign-in did not complete",
                    "Your sign-in could not be verified. Open the approval link again.",
                );
            }
        };
    let id = store::random_id();
    let ttl = door.session_ttl_secs;
    let session = Session {
        oid: user.oid,
        upn: user.upn,
        name: user.name,
        exp_ms: state.now_ms().saturating_add(ttl.saturating_mul(1000)),
    };
    if let Some(old) = cookie(&headers, SESSION_COOKIE).filter(|c| is_id(c))
        && let Err(e) = store::drop_session(&state.queue, &old).await
    {
        return unavailable(&e);
    }
    if let Err(e) = store::put_session(&state.queue, &id, &session, ttl).await {
        return unavailable(&e);
    }
    tracing::info!(oid = %session.oid, "web door: signed in");
    page::see_other(&link_url(&door.public_url, &pending.token), &[door.cookie(SESSION_COOKIE, &id, "/v1/", ttl)])
}

/// The decision form.
#[derive(Debug, Deserialize)]
struct DecisionForm {
    #[serde(default)]
    decision: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    csrf: String,
}

fn bad_form(text: &str) -> Response {
    page::message(StatusCode::BAD_REQUEST, crate::codes::REQUEST_INVALID_FIELD, "Nothing was recorded", text)
}

/// `POST /v1/approvals/{token}`.
async fn decide(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    let Some(door) = state.web.clone() else {
        return not_configured();
    };
    let (sid, session) = match current_session(&state, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let named = link::unverified_claims(&token);
            audit(
                &state,
                "auth.no_session",
                named.as_ref().map(|c| c.approver.as_str()),
                named.as_ref().map(|c| c.request_id.as_str()),
                "a decision was posted without a live session",
            )
            .await;
            return page::message(
                StatusCode::UNAUTHORIZED,
                "auth.no_session",
                "Please sign in again",
                "Your sign-in has ended, so nothing was recorded. Open the approval link again.",
            );
        }
        Err(resp) => return resp,
    };
    let form = match form {
        Ok(Form(f)) => f,
        Err(_) => return bad_form("The form could not be read."),
    };
    if !bool::from(form.csrf.as_bytes().ct_eq(door.csrf(&sid).as_bytes())) || form.csrf.is_empty() {
        let named = link::unverified_claims(&token);
        audit(
            &state,
            "auth.bad_csrf",
            Some(&session.oid),
            named.as_ref().map(|c| c.request_id.as_str()),
            if form.csrf.is_empty() { "no CSRF token" } else { "the CSRF token is not this session's" },
        )
        .await;
        return page::message(
            StatusCode::FORBIDDEN,
            "auth.bad_csrf",
            "Nothing was recorded",
            "This form did not come from your approval page. Open the approval link again.",
        );
    }
    let approve = match form.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return bad_form("Choose Approve or Reject."),
    };
    let comment = form.comment.replace("\r\n", "\n");
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return bad_form(&format!("The comment is longer than {MAX_COMMENT_CHARS} characters."));
    }
    let claims = match check_link(&state, &door, &token, Some(&session.oid)).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    if !same_id(&session.oid, &claims.approver) {
        return not_yours(&state, &claims, &session).await;
    }
    let ttl_ms = claims.exp_ms.saturating_sub(state.now_ms());
    match store::consume(&state.queue, &claims.nonce, &session.oid, ttl_ms).await {
        Ok(true) => {}
        Ok(false) => return used(&state, &claims, Some(&session.oid)).await,
        Err(e) => return unavailable(&e),
    }
    let answer = Answer {
        claim: Claim::ObjectId(&session.oid),
        upn: session.upn.as_deref(),
        approve,
        comment: &comment,
        door: DOOR,
        stage: Some(claims.stage),
        recorded_by: None,
        actor: format!("approver:{}", session.oid),
    };
    let viewer = Viewer { oid: &session.oid, upn: session.upn.as_deref(), name: session.name.as_deref() };
    match approvals::answer(&state, &claims.request_id, answer).await {
        Ok(Answered::Counted { outcome, .. }) => {
            tracing::info!(
                request_id = %claims.request_id,
                outcome = approvals::outcome_name(outcome),
                "web door: decision recorded"
            );
            match grantline_store::find(&state.queue, &claims.request_id).await {
                Ok(Some(rec)) => page::recorded(&ApprovalView::of(&rec, claims.stage), viewer, approve),
                _ => page::message(
                    StatusCode::OK,
                    "recorded",
                    if approve { "Approved, thank you" } else { "Rejected, thank you" },
                    "Your decision was recorded.",
                ),
            }
        }
        Ok(Answered::Refused(r)) => {
            tracing::warn!(request_id = %claims.request_id, reason = r.code(), "web door: decision refused");
            let e = refusal_error(&r);
            page::message(e.status, e.code, "Your answer was not recorded", &r.message())
        }
        Ok(Answered::NotFound) => gone_request(),
        Err(e) => {
            // nothing was recorded: the link may be used again
            if let Err(err) = store::release(&state.queue, &claims.nonce).await {
                tracing::error!(error = %err, "web door: a used link could not be released");
            }
            page::message(e.status, e.code, "Nothing was recorded", &e.message)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn valid() -> WebConfig {
        WebConfig {
            public_url: "https://Grantline.example.com/".into(),
            link_secret: Secret::new("link-secret-link-secret-link-secret-0001"),
            oidc: OidcConfig {
                authority: "https://login.microsoftonline.com".into(),
                tenant: "5a0c1f00-0000-4000-8000-000000000001".into(),
                client_id: "30000000-0000-4000-8000-0000000000c1".into(),
                client_secret: Secret::new("sign-in-app-secret"),
                ..OidcConfig::default()
            },
            ..WebConfig::default()
        }
    }

    #[test]
    fn defaults_and_derived_redirect_uri() {
        let d = WebConfig::default();
        assert!(d.secure_cookies);
        assert_eq!(d.session_ttl_secs, 900);
        let door = WebDoor::new(&valid()).unwrap();
        assert_eq!(door.public_url(), "https://grantline.example.com");
        assert_eq!(door.redirect_uri(), "https://grantline.example.com/v1/auth/callback");
        let mut explicit = valid();
        explicit.oidc.redirect_uri = "https://grantline.example.com/v1/auth/callback".into();
        assert!(WebDoor::new(&explicit).is_ok());
        assert_eq!(link_url("https://g.example.com/", "v1.a.b"), "https://g.example.com/v1/approvals/v1.a.b");
        let dbg = format!("{:?}", valid());
        assert!(!dbg.contains("link-secret-link") && !dbg.contains("sign-in-app-secret"), "{dbg}");
    }

    #[test]
    fn validation_names_every_key() {
        let mut c = valid();
        c.public_url = "http://grantline.example.com".into();
        c.link_secret = Secret::new("short");
        c.session_ttl_secs = 5;
        c.oidc.tenant = "common".into();
        let msg = WebDoor::new(&c).unwrap_err().to_string();
        for key in [
            "ingest.web.secure_cookies",
            "ingest.web.link_secret",
            "ingest.web.session_ttl_secs",
            "ingest.web.oidc.tenant",
        ] {
            assert!(msg.contains(key), "{key} missing from {msg}");
        }
        for bad in ["", "grantline.example.com", "ftp://x", "https://x/approvals", "https://x/?a=1", "https://u:p@x"] {
            let c = WebConfig { public_url: bad.into(), ..valid() };
            assert!(c.validate().unwrap_err().to_string().contains("ingest.web.public_url"), "{bad}");
        }
        let mut c = valid();
        c.oidc.redirect_uri = "https://elsewhere.example.com/cb".into();
        assert!(c.validate().unwrap_err().to_string().contains("ingest.web.oidc.redirect_uri"));
        let plain = WebConfig { public_url: "http://127.0.0.1:8080".into(), secure_cookies: false, ..valid() };
        assert!(plain.validate().is_ok());
        let typo = serde_json::from_value::<WebConfig>(serde_json::json!({"public_ur": "x"}));
        assert!(typo.is_err(), "typos are errors");
    }

    #[test]
    fn cookies_and_csrf() {
        let door = WebDoor::new(&valid()).unwrap();
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; grantline_session=abc".parse().unwrap());
        h.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
        let set = door.cookie(SESSION_COOKIE, "v", "/v1/", 900);
        assert_eq!(set, "grantline_session=v; Path=/v1/; Max-Age=900; HttpOnly; SameSite=Lax; Secure");
        let a = door.csrf(&"a".repeat(64));
        assert_eq!(a.len(), 64);
        assert_eq!(a, door.csrf(&"a".repeat(64)));
        assert_ne!(a, door.csrf(&"b".repeat(64)));
        assert!(is_id(&store::random_id()) && !is_id("A".repeat(64).as_str()));
    }
}
