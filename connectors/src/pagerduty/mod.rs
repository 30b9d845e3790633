//! PagerDuty Events API v2: trigger, acknowledge and resolve alerts with `POST /v2/enqueue`.
//!
//! There is no auth header: the 32-character routing (integration) key in the body is the
//! credential. It is passed per call as a [`Secret`](crate::Secret) and never logged, neither
//! in spans nor in errors. Every call runs in its own span (`pagerduty.trigger`, ...) with
//! `http.method`, `url.path`, `http.status_code`, `client_request_id`, `request_id` and, on
//! failure, `error.code`.
//!
//! Classification: 202 (any 2xx) is success and carries the `dedup_key`; 400 is Permanent
//! (`pagerduty.bad_request`, the `errors` list in the message); 429 and 5xx are Transient, 429
//! with its `Retry-After` or, when it has none, a floor of 60 seconds (the limits are dynamic
//! and PagerDuty asks for backoff in minutes); other statuses follow [`crate::http`].

mod client;
mod error;
mod model;

use serde::Deserialize;

pub use client::PagerDutyClient;
pub use error::{PagerDutyError, THROTTLE_FLOOR};
pub use model::{Link, MAX_DEDUP_KEY_CHARS, MAX_SUMMARY_CHARS, Severity, TriggerEvent, truncate_summary};

use crate::http::HttpConfig;

/// Configuration of a [`PagerDutyClient`] (the `[pagerduty]` section). Routing keys are not
/// configuration of the client: each alert route names its own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The Events API root: `https://events.pagerduty.com`.
    pub base_url: String,
    pub http: HttpConfig,
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        Self { base_url: "https://events.pagerduty.com".to_owned(), http: HttpConfig::default() }
    }
}
