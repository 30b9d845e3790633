//! Outbound HTTP connectors: the only code in grantline that talks to identity systems and
//! ITSMs.
//!
//! - [`token`]: Microsoft identity platform client-credentials tokens, cached and refreshed
//!   with a single flight.
//! - [`graph`]: Microsoft Graph v1.0 users, groups and group membership, batched writes and
//!   reads, users delta.
//! - [`exchange`]: Exchange Online mailbox permissions through the REST command endpoint
//!   (InvokeCommand).
//! - [`servicenow`]: the ServiceNow Table API (requested items, variables, users, work notes,
//!   approval records).
//! - [`teams`]: Bot Connector approval cards, inbound Bot Framework activity authentication, and
//!   Workflows channel cards; [`jwt`]: RS256 token verification with a JWKS cache.
//! - [`oidc`]: approver sign-in with OpenID Connect (authorization code with PKCE).
//! - [`slack`]: chat messages, interactivity payloads and their request signatures.
//! - [`pagerduty`], [`webhook`]: paging on-call (Events API v2, and grantline's signed alert
//!   webhook).
//!
//! Every base URL is configuration, so the same client talks to a simulator, to any faithful
//! server or to the real service. Every failure is classified where it is born into
//! [`grantline_shared::ErrorClass`] with a stable machine code (see [`http`] for the one
//! status table all connectors share). Connectors do not retry transient failures themselves;
//! the queue does, honouring `Retry-After`. The one retry a connector makes is after a `401`:
//! the cached token is dropped, a new one fetched, and the call repeated exactly once.

// Errors carry the upstream's correlation ids and parsed error body by value: they are
// returned once per HTTP call, where their size does not matter.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

pub mod exchange;
pub mod graph;
pub mod http;
pub mod jwt;
pub mod oidc;
pub mod pagerduty;
pub mod servicenow;
pub mod slack;
pub mod teams;
pub mod token;
pub mod webhook;

pub use exchange::{ExchangeClient, ExchangeConfig, ExchangeError};
pub use grantline_shared::Secret;
pub use graph::{GraphClient, GraphConfig, GraphError};
pub use http::HttpConfig;
pub use servicenow::{ServiceNowClient, ServiceNowConfig, ServiceNowError};
pub use token::{EntraTokenConfig, TokenError, TokenProvider};

/// A configuration value that cannot be used. `key` names the configuration key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration `{key}`: {reason}")]
pub struct ConfigError {
    pub key: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self { key, reason: reason.into() }
    }
}
