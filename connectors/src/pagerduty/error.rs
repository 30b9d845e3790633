//! PagerDuty failures, classified where they are born.

use std::time::Duration;

use grantline_shared::{ErrorClass, StepError};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::graph::Correlation;
use crate::http::{self, TransportKind};

/// The retry floor for a 429 without `Retry-After`.
pub const THROTTLE_FLOOR: Duration = Duration::from_secs(60);

/// The body of a refused event: `{"status":"invalid event","message":"Event object is
/// invalid","errors":["…"]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct Refusal {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub errors: Vec<String>,
}

/// A failed Events API call. No variant carries the routing key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PagerDutyError {
    /// No response: timeout, refused or reset connection.
    #[error("pagerduty {action} failed: {message} ({correlation})")]
    Transport { action: &'static str, kind: TransportKind, message: String, correlation: Correlation },
    /// PagerDuty answered with a non-success status. `message` and `errors` come from its body.
    #[error("pagerduty {action} answered HTTP {status}{}{} ({correlation})", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default(), errors_suffix(.errors))]
    Api {
        action: &'static str,
        status: u16,
        message: Option<String>,
        errors: Vec<String>,
        retry_after: Option<Duration>,
        correlation: Correlation,
    },
    /// The event was refused before it was sent (an empty or wrong-length routing key, an
    /// oversized dedup key).
    #[error("invalid pagerduty event: {message}")]
    InvalidInput { message: String },
}

fn errors_suffix(errors: &[String]) -> String {
    if errors.is_empty() { String::new() } else { format!(" [{}]", errors.join("; ")) }
}

impl PagerDutyError {
    pub fn class(&self) -> ErrorClass {
        match self {
            PagerDutyError::Transport { kind, .. } => kind.class(),
            PagerDutyError::Api { status: 429, retry_after, .. } => {
                ErrorClass::Transient { retry_after: Some(retry_after.unwrap_or(THROTTLE_FLOOR)) }
            }
            PagerDutyError::Api { status, retry_after, .. } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                http::classify_status(status, *retry_after)
            }
            PagerDutyError::InvalidInput { .. } => ErrorClass::Permanent,
        }
    }

    /// The stable machine code: `pagerduty.bad_request`, `pagerduty.throttled`,
    /// `pagerduty.unavailable`, `pagerduty.server_error`, `pagerduty.timeout`,
    /// `pagerduty.connect`, `pagerduty.invalid_input`, ...
    pub fn code(&self) -> String {
        match self {
            PagerDutyError::Transport { kind, .. } => format!("pagerduty.{}", kind.code_name()),
            PagerDutyError::Api { status, .. } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                format!("pagerduty.{}", http::status_code_name(status))
            }
            PagerDutyError::InvalidInput { .. } => "pagerduty.invalid_input".to_owned(),
        }
    }

    /// The HTTP status, when PagerDuty answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            PagerDutyError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn correlation(&self) -> Option<&Correlation> {
        match self {
            PagerDutyError::Transport { correlation, .. } | PagerDutyError::Api { correlation, .. } => {
                Some(correlation)
            }
            PagerDutyError::InvalidInput { .. } => None,
        }
    }

    pub fn to_step_error(&self) -> StepError {
        StepError::new(self.class(), self.code(), self.to_string())
    }
}

impl From<PagerDutyError> for StepError {
    fn from(err: PagerDutyError) -> Self {
        err.to_step_error()
    }
}
