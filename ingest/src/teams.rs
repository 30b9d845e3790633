//! `POST /v1/teams/messages`: the Teams bot's messaging endpoint (the `adaptiveCard/action`
//! invoke of an approval card).

use axum::Router;

use crate::state::AppState;

/// What the Teams door needs at run time.
#[derive(Debug)]
pub struct TeamsDoor {}

/// The routes of this door.
pub fn routes() -> Router<AppState> {
    Router::new()
}
