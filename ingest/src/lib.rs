//! grantline-ingest: the HTTP edge.
//!
//! Thin by design: extractors ([`extract`]) read and verify raw bytes (size limit, webhook
//! authentication, content type, operator tokens); handlers map what they were given to the
//! vocabulary of `grantline-shared` and enqueue it through `grantline-queue`; one error type
//! ([`ApiError`]) renders every refusal as status + stable code + message + field. Ingest
//! changes nothing outside Redis: the connectors it calls only read (the directory, to prove
//! who an approver is; Slack's users.info) or answer the person who clicked.
//!
//! Routes:
//! - `POST /v1/webhooks/servicenow`: an ITSM doorbell. Authenticated by `X-Grantline-Secret`
//!   (shared secret) or `X-Grantline-Timestamp` + `X-Grantline-Signature: sha256=<hex>`
//!   (HMAC-SHA256 of `"{timestamp}.{raw body}"`, timestamp within the replay window). The
//!   request record, ticket index, first audit record and `validate` job are one atomic
//!   commit; 202 is answered only after it. The same ticket again answers 202 with the
//!   existing request id and writes nothing.
//! - `GET /v1/requests/{id}` and `POST /v1/requests/{id}/decision`: operator API
//!   (`Authorization: Bearer <operator token>`). A decision is the operator's own (its
//!   configured directory identity) or names the approver in `on_behalf_of`; either way the
//!   approver is proved against the directory and judged by the plan.
//! - `GET /v1/requests?state=&ticket=&limit=&after=`, `GET /v1/tickets/{number}/request`,
//!   `POST /v1/requests/{id}/cancel|revoke|extend`: the operator's lifecycle commands
//!   ([`operator`]), same token, each audited with the operator's id.
//! - `POST /v1/teams/messages`: the Teams bot's messaging endpoint (Bot Framework token verified;
//!   approval card clicks answered with the replaced card). 404 unless `ingest.teams` is set.
//! - `POST /v1/slack/interactions`: the Slack app's Request URL (signature, 5-minute window and
//!   replay verified; acknowledged at once, the message replaced after). 404 unless `ingest.slack` is set.
//! - `POST /v1/events/leaver`: a person left ([`leavers`]); authenticated like the webhook.
//!   Resolves the person in the directory and enqueues one `offboard` job (idempotent).
//! - `GET /healthz`, `GET /readyz`. `GET /metrics` is on its own listener ([`ops`]); here it is
//!   404 unless `ingest.metrics_token` is set, then only for that bearer token.
//!
//! Connections are served by [`server`]: header, body and idle timeouts and a connection cap.
//!
//! Request ids are UUID v7 in simple form: 32 lowercase hex characters, time-ordered.

pub mod approvals;
pub mod config;
pub mod error;
pub mod extract;
pub mod leavers;
pub mod operator;
pub mod ops;
pub mod requests;
pub mod server;
pub mod slack;
pub mod state;
pub mod status;
pub mod teams;
pub mod web;
pub mod webhook;

use std::future::Future;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tracing::Instrument;

pub use config::{ConfigError, IngestConfig, OperatorToken, Secret, ServiceNowAuth};
pub use error::{ApiError, ErrorCode, codes};
pub use state::{AppState, Clock, IngestMetrics, WebhookOutcome};

/// The webhook route.
pub const WEBHOOK_ROUTE: &str = "/v1/webhooks/servicenow";

/// Errors of [`serve`].
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("binding {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// The router of the HTTP edge, with its state.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(WEBHOOK_ROUTE, post(webhook::servicenow))
        .route("/v1/requests/{id}", get(requests::get_request))
        .route("/v1/requests/{id}/decision", post(requests::decide))
        .route(leavers::ROUTE, post(leavers::leaver))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::edge_metrics))
        .merge(teams::routes())
        .merge(slack::routes())
        .merge(web::routes())
        .merge(status::routes())
        .merge(operator::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, codes::ROUTE_NOT_FOUND, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, codes::METHOD_NOT_ALLOWED, "method not allowed on this route")
}

/// One span per request (`http.request` with method, route and status; the webhook and
/// the decision route add request_id and trace_id), and the counters of refusals.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "http.request",
        method = %req.method(),
        route = %route,
        status = tracing::field::Empty,
        request_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    grantline_shared::metrics::http_request(&route, started.elapsed());
    let status = resp.status();
    span.record("status", status.as_u16());
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    if let Some(code) = code
        && status.is_client_error()
    {
        state.metrics.record_rejection(code);
    }
    if route == WEBHOOK_ROUTE {
        let outcome = match resp.extensions().get::<WebhookOutcome>() {
            Some(o) => *o,
            None if status.is_server_error() => WebhookOutcome::Error,
            None => WebhookOutcome::Rejected,
        };
        state.metrics.record_webhook(outcome);
    }
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), code, "request failed");
        } else if status.is_client_error() {
            tracing::info!(status = status.as_u16(), code, "request refused");
        } else {
            tracing::debug!(status = status.as_u16(), "request served");
        }
    });
    resp
}

/// Serves on an already bound listener, under the connection limits of the state's
/// configuration, until `shutdown` completes, then finishes the requests in progress.
pub async fn serve_listener(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "ingest listening");
    }
    let limits = server::Limits::from_config(&state.cfg);
    server::serve(listener, router(state), limits, shutdown).await?;
    tracing::info!("ingest stopped");
    Ok(())
}

/// Validates `cfg`, binds `cfg.bind` and serves until `shutdown` completes (graceful:
/// requests in progress finish).
pub async fn serve(
    cfg: &IngestConfig,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    cfg.validate()?;
    state.cfg.validate()?;
    let listener =
        server::bind(cfg.bind, cfg.listen_backlog).map_err(|source| ServeError::Bind { addr: cfg.bind, source })?;
    serve_listener(listener, state, shutdown).await
}
