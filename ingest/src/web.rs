//! The signed-link approval page: `GET/POST /v1/approvals/{token}` and the sign-in callback
//! `GET /v1/auth/callback`.

use axum::Router;

use crate::state::AppState;

/// Configuration of the approval page (`ingest.web`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {}

/// What the web door needs at run time.
#[derive(Debug)]
pub struct WebDoor {}

/// The routes of this door.
pub fn routes() -> Router<AppState> {
    Router::new()
}
