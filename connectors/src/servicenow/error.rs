//! ServiceNow failures, classified where they are born.

use std::time::Duration;

use grantline_shared::{ErrorClass, StepError};
use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::http::{self, TransportKind};
use crate::token::TokenError;

/// The failure envelope: `{"error":{"message":"...","detail":"..."},"status":"failure"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceNowErrorBody {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: ServiceNowErrorBody,
}

impl ServiceNowErrorBody {
    /// Parses a failure envelope; anything else becomes a message with the start of the text.
    pub fn parse(body: &[u8]) -> Self {
        match serde_json::from_slice::<Envelope>(body) {
            Ok(env) => env.error,
            Err(_) => {
                ServiceNowErrorBody { message: http::truncate(String::from_utf8_lossy(body).trim(), 300), detail: None }
            }
        }
    }
}

/// The rate-limit headers of a ServiceNow response (`X-RateLimit-Limit`, `-Reset`, `-Rule`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests per hour.
    pub limit: Option<u64>,
    /// When the window resets.
    pub reset: Option<Timestamp>,
    /// The sys_id of the matching rate-limit rule.
    pub rule: Option<String>,
}

impl RateLimit {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let limit = http::header_str(headers, "x-ratelimit-limit").and_then(|v| v.parse().ok());
        let reset = http::header_str(headers, "x-ratelimit-reset")
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|secs| Timestamp::from_second(secs).ok());
        let rule = http::header_str(headers, "x-ratelimit-rule").map(str::to_owned);
        (limit.is_some() || reset.is_some() || rule.is_some()).then_some(RateLimit { limit, reset, rule })
    }
}

/// A failed ServiceNow call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceNowError {
    /// No OAuth token could be obtained from `/oauth_token.do`.
    #[error("servicenow token: {0}")]
    Token(#[from] TokenError),
    /// No response: timeout, refused or reset connection.
    #[error("servicenow request failed: {message}")]
    Transport { kind: TransportKind, message: String },
    /// The instance answered with a status the operation does not treat as success.
    #[error("servicenow answered HTTP {status}: {}{}", .body.message, .body.detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Api { status: u16, body: ServiceNowErrorBody, retry_after: Option<Duration>, rate_limit: Option<RateLimit> },
    /// A query matched no record (the Table API answers 200 with an empty list).
    #[error("servicenow record not found: {what}")]
    NotFound { what: String },
    /// A success status with a body that is not the expected record.
    #[error("servicenow response could not be decoded: {message}")]
    Decode { message: String },
    /// The call was refused before it was sent (an empty id, a character that would change
    /// an encoded query, an empty patch).
    #[error("invalid servicenow request: {message}")]
    InvalidInput { message: String },
}

impl ServiceNowError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ServiceNowError::Token(e) => e.class(),
            ServiceNowError::Transport { kind, .. } => kind.class(),
            ServiceNowError::Api { status, retry_after, .. } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                http::classify_status(status, *retry_after)
            }
            ServiceNowError::NotFound { .. }
            | ServiceNowError::Decode { .. }
            | ServiceNowError::InvalidInput { .. } => ErrorClass::Permanent,
        }
    }

    /// The stable machine code: `servicenow.not_found`, `servicenow.unauthorized`,
    /// `servicenow.throttled`, `servicenow.timeout`, `servicenow.token.invalid_client`, ...
    pub fn code(&self) -> String {
        match self {
            ServiceNowError::Token(e) => format!("servicenow.{}", e.code()),
            ServiceNowError::Transport { kind, .. } => format!("servicenow.{}", kind.code_name()),
            ServiceNowError::Api { status, .. } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                format!("servicenow.{}", http::status_code_name(status))
            }
            ServiceNowError::NotFound { .. } => "servicenow.not_found".to_owned(),
            ServiceNowError::Decode { .. } => "servicenow.decode".to_owned(),
            ServiceNowError::InvalidInput { .. } => "servicenow.invalid_input".to_owned(),
        }
    }

    /// The HTTP status, when the instance answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ServiceNowError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn to_step_error(&self) -> StepError {
        StepError::new(self.class(), self.code(), self.to_string())
    }
}

impl From<ServiceNowError> for StepError {
    fn from(err: ServiceNowError) -> Self {
        err.to_step_error()
    }
}

/// The error for a non-success answer: envelope, `Retry-After` (or, failing that, the time
/// until `X-RateLimit-Reset` on a 429) and the rate-limit headers.
pub(crate) fn api_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ServiceNowError {
    let now = Timestamp::now();
    let rate_limit = RateLimit::from_headers(headers);
    let mut retry_after = http::retry_after(headers, now);
    if retry_after.is_none() && status == StatusCode::TOO_MANY_REQUESTS {
        retry_after = rate_limit
            .as_ref()
            .and_then(|r| r.reset)
            .map(|reset| Duration::try_from(reset.duration_since(now)).unwrap_or(Duration::ZERO));
    }
    ServiceNowError::Api { status: status.as_u16(), body: ServiceNowErrorBody::parse(body), retry_after, rate_limit }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_and_codes() {
        let h = HeaderMap::new();
        let e = api_error(
            StatusCode::NOT_FOUND,
            &h,
            br#"{"error":{"message":"No Record found","detail":"Record doesn't exist or ACL restricts the record retrieval"},"status":"failure"}"#,
        );
        assert_eq!(e.code(), "servicenow.not_found");
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(
            e.to_string(),
            "servicenow answered HTTP 404: No Record found (Record doesn't exist or ACL restricts the record retrieval)"
        );
        let e = api_error(
            StatusCode::UNAUTHORIZED,
            &h,
            br#"{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}"#,
        );
        assert_eq!(e.code(), "servicenow.unauthorized");
        assert_eq!(e.class(), ErrorClass::Permanent);
        let e = api_error(StatusCode::BAD_GATEWAY, &h, b"<html/>");
        assert_eq!(e.class(), ErrorClass::TRANSIENT);
    }

    #[test]
    fn rate_limit_headers() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "30".parse().unwrap());
        h.insert("x-ratelimit-limit", "10".parse().unwrap());
        h.insert("x-ratelimit-reset", "1769091157".parse().unwrap());
        h.insert("x-ratelimit-rule", "a9e30c7dc61122760116894de7bcc7bd".parse().unwrap());
        let e = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            br#"{"error":{"message":"Rate limit exceeded","detail":"Rate limit of 10 requests per hour for Table API exceeded"},"status":"failure"}"#,
        );
        assert_eq!(e.class(), ErrorClass::Throttled { retry_after: Some(Duration::from_secs(30)) });
        assert_eq!(e.code(), "servicenow.throttled");
        let ServiceNowError::Api { rate_limit: Some(rl), .. } = &e else { panic!() };
        assert_eq!(rl.limit, Some(10));
        assert_eq!(rl.reset, Some(Timestamp::from_second(1769091157).unwrap()));

        let mut h = HeaderMap::new();
        let reset = Timestamp::now().as_second() + 120;
        h.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
        let e = api_error(StatusCode::TOO_MANY_REQUESTS, &h, b"");
        let ErrorClass::Throttled { retry_after: Some(d) } = e.class() else { panic!() };
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
    }
}
