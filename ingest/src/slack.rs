//! `POST /v1/slack/interactions`: the Slack app's interactivity Request URL (Approve and Reject
//! buttons of an approval message).

use axum::Router;

use crate::state::AppState;

/// What the Slack door needs at run time.
#[derive(Debug)]
pub struct SlackDoor {}

/// The routes of this door.
pub fn routes() -> Router<AppState> {
    Router::new()
}
