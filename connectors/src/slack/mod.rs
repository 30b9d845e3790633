//! Slack approvals: Block Kit messages with Approve/Reject buttons, the signed interactivity
//! callback, and updating the message once the decision is made.
//!
//! - [`SlackClient`] calls the Web API (`chat.postMessage`, `chat.update`, `users.info`,
//!   `users.lookupByEmail`, `conversations.open`) with the bot token as a bearer token, and
//!   POSTs follow-ups to an interaction's `response_url`. Every call runs in its own span
//!   (`slack.post_message`, ...) with `http.method`, `url.path`, `http.status_code`,
//!   `request_id` (Slack's `x-slack-req-id`) and, on failure, `error.code`.
//! - [`verify_signature`] checks `X-Slack-Signature` / `X-Slack-Request-Timestamp` over the raw
//!   request body (pure: the caller passes the clock).
//! - [`parse_block_actions`] turns the `payload=` form body of a button click into
//!   [`BlockActions`].
//!
//! Classification (see [`SlackError::class`]): the Web API answers most errors with HTTP 200 and
//! `{"ok":false,"error":"…"}`; those are Permanent with the code `slack.<error>`, except
//! `ratelimited`, `service_unavailable`, `internal_error`, `fatal_error` and `request_timeout`,
//! which are Transient. HTTP 429 is Throttled with `Retry-After`; 5xx, timeouts and resets are
//! Transient; other statuses follow the one table in [`crate::http`].

mod client;
mod error;
mod payload;
mod signature;

use serde::Deserialize;

pub use client::{Posted, SlackClient, SlackUser};
pub use error::SlackError;
pub use payload::{BlockAction, BlockActions, PayloadError, parse_block_actions};
pub use signature::{DEFAULT_WINDOW, SignatureError, signature, verify_signature};

use crate::Secret;
use crate::http::HttpConfig;

/// Configuration of a [`SlackClient`] (the `[slack]` section).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlackConfig {
    /// The Web API root: `https://slack.com/api`. Method names are appended to it.
    pub base_url: String,
    /// The bot token (`xoxb-…`), sent as `Authorization: Bearer`.
    pub bot_token: Secret,
    /// The app's signing secret, for verifying interactivity requests.
    pub signing_secret: Secret,
    pub http: HttpConfig,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            base_url: "https://slack.com/api".to_owned(),
            bot_token: Secret::default(),
            signing_secret: Secret::default(),
            http: HttpConfig::default(),
        }
    }
}
