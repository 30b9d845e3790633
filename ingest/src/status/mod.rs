//! The status page: a read-only view of grantline for operators, served by ingest.
//!
//! Routes (HTML, with the same strict headers as the approval page: no script, nothing loaded
//! from elsewhere, no framing, `Cache-Control: no-store`):
//! - `GET /status`: without a session, the sign-in form; with one, the queues (ready, delayed,
//!   running, dead, oldest ready age), the newest dead letters, and the requests, filtered by
//!   `state` and `ticket` and paged with `after`.
//! - `GET /status/requests/{id}`: one request: its facts, approvals with the identities that
//!   gave them, the grant and removal receipts, the ticket updates and every audit event in
//!   order, with the trace id (a link into the trace UI when `ingest.status.trace_url` is set).
//! - `POST /status/sign-in` (`token`): an operator token (`ingest.operator_tokens`) opens a
//!   session (a random id in an `HttpOnly`, `Secure` (unless `secure_cookies = false`), `SameSite=Strict` cookie scoped to
//!   `/status`; Redis keeps only its SHA-256, for `ingest.status.session_ttl_secs`). A wrong
//!   token is refused (401) and logged on the doors' security log (`status.bad_token`).
//! - `POST /status/sign-out` (`csrf`): ends the session.
//!
//! A request with `Authorization: Bearer <operator token>` is served without a session, so
//! the pages can be fetched by scripts too. Nothing on these pages changes anything.

mod page;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use grantline_queue::{DeadLetter, QueueMetrics};
use grantline_shared::request::RequestState;
use grantline_store::doors::{self, DoorRefusal};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::extract::operator_for_token;
use crate::state::AppState;

/// The session cookie of the status page.
pub const COOKIE: &str = "grantline_status";
/// Requests per page.
pub const PAGE_SIZE: usize = 50;
/// Newest dead letters shown per queue.
pub const DEAD_LETTERS_SHOWN: usize = 20;

/// Configuration of the status page (`ingest.status`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusConfig {
    /// Serve the page (it still needs an operator token or session).
    pub enabled: bool,
    /// A link into the trace UI, `{trace_id}` replaced by the request's trace id
    /// (`http://localhost:16686/trace/{trace_id}` for the compose file's Jaeger). Empty: the
    /// trace id is shown as text.
    pub trace_url: String,
    /// How long a session lasts.
    pub session_ttl_secs: u64,
    /// Mark the session cookie `Secure` (sent over HTTPS only). Turn off only for plain-HTTP
    /// test setups on another host than localhost.
    pub secure_cookies: bool,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self { enabled: true, trace_url: String::new(), session_ttl_secs: 8 * 3600, secure_cookies: true }
    }
}

impl StatusConfig {
    /// Problems, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.trace_url.is_empty() {
            if !self.trace_url.contains("{trace_id}") {
                p.push("ingest.status.trace_url must contain {trace_id}".to_owned());
            } else if url::Url::parse(&self.trace_url.replace("{trace_id}", "0")).is_err()
                || !(self.trace_url.starts_with("https://") || self.trace_url.starts_with("http://"))
            {
                p.push("ingest.status.trace_url must be an http(s) URL".to_owned());
            }
        }
        if !(60..=7 * 24 * 3600).contains(&self.session_ttl_secs) {
            p.push("ingest.status.session_ttl_secs must be between 60 and 604800".to_owned());
        }
        p
    }
}

/// The routes (served only when `ingest.status.enabled`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/status", get(overview))
        .route("/status/requests/{id}", get(request))
        .route("/status/sign-in", post(sign_in))
        .route("/status/sign-out", post(sign_out))
}

/// Who is looking: an operator, and the CSRF token of their session (none for bearer calls).
struct Viewer {
    operator: String,
    csrf: Option<String>,
}

fn digest(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn session_key(id: &str) -> String {
    format!("status:session:{}", digest(id))
}

fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name && !v.is_empty()).then_some(v)
    })
}

/// The viewer of this request, or the response to give instead (the sign-in form).
async fn viewer(state: &AppState, headers: &HeaderMap) -> Result<Result<Viewer, Response>, Response> {
    if !state.cfg.status.enabled {
        return Err(page::message(StatusCode::NOT_FOUND, "route.not_found", "Not found", "There is no such page."));
    }
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        return match token.and_then(|t| operator_for_token(state, t)) {
            Some(op) => Ok(Ok(Viewer { operator: op.id, csrf: None })),
            None => Err(page::message(
                StatusCode::UNAUTHORIZED,
                crate::codes::AUTH_BAD_TOKEN,
                "Not signed in",
                "The bearer token is not an operator token.",
            )),
        };
    }
    let Some(id) = cookie_value(headers, COOKIE) else {
        return Ok(Err(page::sign_in(StatusCode::OK, None)));
    };
    let mut conn = state.queue.connection();
    let found: Option<String> = redis::cmd("GET")
        .arg(state.queue.namespace().key(&session_key(id)))
        .query_async(&mut conn)
        .await
        .map_err(|_| unavailable())?;
    match found.and_then(|s| serde_json::from_str::<StoredSession>(&s).ok()) {
        Some(s) if state.cfg.operator_tokens.iter().any(|t| t.id == s.operator) => {
            Ok(Ok(Viewer { operator: s.operator, csrf: Some(s.csrf) }))
        }
        _ => Ok(Err(page::sign_in(StatusCode::OK, Some("Your session ended; sign in again.")))),
    }
}

#[derive(serde::Serialize, Deserialize)]
struct StoredSession {
    operator: String,
    csrf: String,
}

fn unavailable() -> Response {
    page::message(
        StatusCode::SERVICE_UNAVAILABLE,
        crate::codes::SERVICE_UNAVAILABLE,
        "Unavailable",
        "The store cannot be reached; try again shortly.",
    )
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct ListQuery {
    state: String,
    ticket: String,
    after: String,
}

async fn overview(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(Ok(v)) => v,
        Ok(Err(form)) | Err(form) => return form,
    };
    let filter_state = if q.state.is_empty() {
        None
    } else {
        match RequestState::parse(&q.state) {
            Some(s) => Some(s),
            None => {
                return page::message(
                    StatusCode::BAD_REQUEST,
                    crate::codes::REQUEST_INVALID_FIELD,
                    "Unknown state",
                    &format!("state {:?} is not a request state", q.state),
                );
            }
        }
    };
    let queues = match queue_figures(&state).await {
        Ok(q) => q,
        Err(e) => {
            tracing::warn!(error = %e, "status page: queue figures unavailable");
            return unavailable();
        }
    };
    let filter = grantline_store::index::Filter {
        state: filter_state,
        ticket: (!q.ticket.trim().is_empty()).then(|| q.ticket.trim().to_owned()),
        after: (!q.after.is_empty()).then(|| q.after.clone()),
        limit: PAGE_SIZE,
    };
    let listed = match grantline_store::index::list(&state.queue, &filter).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "status page: request list unavailable");
            return unavailable();
        }
    };
    page::overview(&page::Overview {
        operator: &viewer.operator,
        csrf: viewer.csrf.as_deref(),
        queues: &queues,
        state: &q.state,
        ticket: q.ticket.trim(),
        requests: &listed.requests,
        next: listed.next.as_deref(),
        now_ms: state.clock.now_ms(),
    })
}

/// Each queue's figures and its newest dead letters.
async fn queue_figures(state: &AppState) -> Result<Vec<(QueueMetrics, Vec<DeadLetter>)>, grantline_queue::QueueError> {
    let mut out = Vec::new();
    for name in state.queue.queues().await? {
        let m = state.queue.metrics(&name).await?;
        let dead =
            if m.dead > 0 { state.queue.newest_dead_letters(&name, DEAD_LETTERS_SHOWN).await? } else { Vec::new() };
        out.push((m, dead));
    }
    Ok(out)
}

async fn request(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(Ok(v)) => v,
        Ok(Err(form)) | Err(form) => return form,
    };
    if uuid::Uuid::parse_str(&id).is_err() {
        return page::message(
            StatusCode::BAD_REQUEST,
            crate::codes::REQUEST_INVALID_FIELD,
            "Not a request id",
            "A request id is a UUID.",
        );
    }
    let rec = match grantline_store::find(&state.queue, &id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return page::message(
                StatusCode::NOT_FOUND,
                crate::codes::REQUEST_NOT_FOUND,
                "Not found",
                "There is no such request.",
            );
        }
        Err(e) if e.is_transient() => return unavailable(),
        Err(e) => {
            return page::message(
                StatusCode::CONFLICT,
                crate::codes::REQUEST_INCOMPLETE,
                "Unreadable request",
                &format!("The request cannot be read: {e}"),
            );
        }
    };
    let trail = match grantline_store::trail::entries(&state.queue, &id).await {
        Ok(t) => t,
        Err(_) => return unavailable(),
    };
    let triples: Vec<_> = trail.iter().map(|e| e.triple()).collect();
    let head = if rec.audit_head.is_empty() { grantline_shared::audit::GENESIS } else { rec.audit_head.as_str() };
    let verified = grantline_shared::audit::verify(&triples, head);
    let events: Vec<_> = trail.iter().filter_map(|e| e.parse().ok()).collect();
    let trace_url = (!state.cfg.status.trace_url.is_empty() && !rec.trace_id.is_empty())
        .then(|| state.cfg.status.trace_url.replace("{trace_id}", &rec.trace_id));
    page::request(&page::RequestPage {
        operator: &viewer.operator,
        csrf: viewer.csrf.as_deref(),
        rec: &rec,
        events: &events,
        chain_intact: verified.broken_at.is_none() && verified.reason.is_none(),
        trace_url: trace_url.as_deref(),
    })
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    token: String,
}

async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !state.cfg.status.enabled {
        return page::message(StatusCode::NOT_FOUND, "route.not_found", "Not found", "There is no such page.");
    }
    let token = form.map(|Form(f)| f.token).unwrap_or_default();
    let Some(op) = operator_for_token(&state, token.trim()) else {
        let refusal = DoorRefusal {
            door: "status".into(),
            reason: "status.bad_token".into(),
            claimed: None,
            request_id: None,
            detail: format!("sign-in from {}", forwarded_for(&headers)),
            at_ms: state.clock.now_ms(),
        };
        if let Err(e) = doors::refused(&state.queue, &refusal).await {
            tracing::warn!(error = %e, "the doors' security log is unavailable");
        }
        return page::sign_in(StatusCode::UNAUTHORIZED, Some("That is not an operator token."));
    };
    let id = crate::web::random_id();
    let session = StoredSession { operator: op.id.clone(), csrf: crate::web::random_id() };
    let ttl = state.cfg.status.session_ttl_secs;
    let mut conn = state.queue.connection();
    let stored: Result<(), _> = redis::cmd("SET")
        .arg(state.queue.namespace().key(&session_key(&id)))
        .arg(serde_json::to_string(&session).unwrap_or_default())
        .arg("EX")
        .arg(ttl.max(1))
        .query_async(&mut conn)
        .await;
    if stored.is_err() {
        return unavailable();
    }
    tracing::info!(operator = %op.id, "status page: operator signed in");
    let cookie = format!("{COOKIE}={id}; Path=/status; Max-Age={ttl}; HttpOnly{}; SameSite=Strict", secure(&state));
    page::see_other("/status", &[cookie])
}

#[derive(Deserialize)]
struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignOutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let viewer = match viewer(&state, &headers).await {
        Ok(Ok(v)) => v,
        Ok(Err(form)) | Err(form) => return form,
    };
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    let ok = viewer.csrf.as_deref().is_some_and(|c| {
        use subtle::ConstantTimeEq as _;
        bool::from(c.as_bytes().ct_eq(csrf.as_bytes()))
    });
    if !ok {
        return page::message(
            StatusCode::FORBIDDEN,
            "status.csrf",
            "Not signed out",
            "The form is stale; reload the page.",
        );
    }
    if let Some(id) = cookie_value(&headers, COOKIE) {
        let mut conn = state.queue.connection();
        let _: Result<(), _> =
            redis::cmd("DEL").arg(state.queue.namespace().key(&session_key(id))).query_async(&mut conn).await;
    }
    let cookie = format!("{COOKIE}=; Path=/status; Max-Age=0; HttpOnly{}; SameSite=Strict", secure(&state));
    page::see_other("/status", &[cookie])
}

fn secure(state: &AppState) -> &'static str {
    if state.cfg.status.secure_cookies { "; Secure" } else { "" }
}

fn forwarded_for(headers: &HeaderMap) -> String {
    headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).unwrap_or("direct").chars().take(64).collect()
}
