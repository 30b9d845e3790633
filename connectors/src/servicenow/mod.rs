//! ServiceNow Table API: requested items, their catalog variables, users and work notes.
//!
//! Authentication is HTTP Basic with an integration user, or the OAuth password grant
//! (`POST /oauth_token.do`) with the token cached like Graph's and refreshed once on a `401`.
//! Every call runs in its own span (`servicenow.get_ritm`, ...) with `http.method`, `url.path`,
//! `http.status_code` and, on failure, `error.code`.
//!
//! Not-found conventions: a `404` from the instance, and a query that matches no record, are
//! both the Permanent error `servicenow.not_found` (ServiceNow's 404 also covers "an ACL hides
//! it"). Lists (variables, work notes) are simply empty when nothing matches.

mod client;
mod error;
mod model;

use serde::Deserialize;

pub use client::ServiceNowClient;
pub use error::{RateLimit, ServiceNowError, ServiceNowErrorBody};
pub use model::{
    ApprovalRecord, ApprovalState, Field, JournalEntry, Reference, Ritm, RitmPatch, ServiceNowUser, UpdateOptions,
    parse_glide_datetime, ritm_state,
};

use crate::Secret;
use crate::http::HttpConfig;

/// Configuration of a [`ServiceNowClient`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
pub struct ServiceNowConfig {
    /// The instance root: `https://acme.service-now.com`.
    pub instance_url: String,
    pub auth: ServiceNowAuth,
    pub http: HttpConfig,
}

/// How the client authenticates. In configuration: `kind = "basic"` or `kind = "oauth"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServiceNowAuth {
    /// HTTP Basic with an integration user.
    Basic { username: String, password: Secret },
    /// The OAuth password grant against `/oauth_token.do`.
    #[serde(rename = "oauth")]
    OAuth {
        client_id: String,
        client_secret: Secret,
        username: String,
        password: Secret,
        /// Refresh this long before expiry (capped at a tenth of the token's lifetime).
        #[serde(default = "default_refresh_margin_secs")]
        refresh_margin_secs: u64,
    },
}

fn default_refresh_margin_secs() -> u64 {
    300
}

impl Default for ServiceNowAuth {
    fn default() -> Self {
        ServiceNowAuth::Basic { username: String::new(), password: Secret::default() }
    }
}
