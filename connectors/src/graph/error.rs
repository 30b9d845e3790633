//! Graph failures, classified where they are born.

use std::time::Duration;

use grantline_shared::{ErrorClass, StepError};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::model::Correlation;
use crate::http::{self, TransportKind};
use crate::token::TokenError;

/// The `error` object of Graph's error envelope. `innerError` and the older `innererror` are
/// both accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphErrorBody {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(rename = "innerError", alias = "innererror", default, skip_serializing_if = "Option::is_none")]
    pub inner_error: Option<InnerError>,
}

/// `innerError`: when and which request, as Graph recorded it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InnerError {
    #[serde(default)]
    pub date: Option<String>,
    #[serde(rename = "request-id", default)]
    pub request_id: Option<String>,
    #[serde(rename = "client-request-id", default)]
    pub client_request_id: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: GraphErrorBody,
}

impl GraphErrorBody {
    /// Parses an error envelope; a body that is not one (an HTML page from a proxy, nothing at
    /// all) becomes a body with an empty code and the start of the text as its message.
    pub fn parse(body: &[u8]) -> Self {
        match serde_json::from_slice::<Envelope>(body) {
            Ok(env) => env.error,
            Err(_) => GraphErrorBody {
                code: String::new(),
                message: http::truncate(String::from_utf8_lossy(body).trim(), 300),
                inner_error: None,
            },
        }
    }

    fn message_contains(&self, needle: &str) -> bool {
        self.message.to_ascii_lowercase().contains(needle)
    }

    /// 400 "One or more added object references already exist ...": the add was a no-op.
    pub fn is_already_exists(&self) -> bool {
        self.message_contains("object references already exist")
    }

    /// 400 "One or more removed object references do not exist ...": the remove was a no-op.
    pub fn is_references_do_not_exist(&self) -> bool {
        self.message_contains("object references do not exist")
    }

    /// 400 "Cannot Update a mail-enabled security groups and or distribution list."
    pub fn is_mail_enabled_group(&self) -> bool {
        self.message_contains("mail-enabled")
    }
}

/// A failed Graph call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// No token could be obtained.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// No response: timeout, refused or reset connection.
    #[error("graph request failed: {message} ({correlation})")]
    Transport { kind: TransportKind, message: String, correlation: Correlation },
    /// Graph answered with a status the operation does not treat as success.
    #[error("graph answered HTTP {status} {}: {} ({correlation})", .body.code, .body.message)]
    Api {
        status: u16,
        body: GraphErrorBody,
        retry_after: Option<Duration>,
        /// `x-ms-throttle-scope` of a 429: which budget was spent (`Tenant_Application/...` for
        /// this app's share of the tenant, `Tenant/...` for the tenant's total).
        throttle_scope: Option<String>,
        correlation: Correlation,
    },
    /// A success status with a body that is not the expected resource.
    #[error("graph response could not be decoded: {message} ({correlation})")]
    Decode { message: String, correlation: Correlation },
    /// The call was refused before it was sent (an empty id).
    #[error("invalid graph request: {message}")]
    InvalidInput { message: String },
}

impl GraphError {
    pub fn class(&self) -> ErrorClass {
        match self {
            GraphError::Token(e) => e.class(),
            GraphError::Transport { kind, .. } => kind.class(),
            GraphError::Api { status, retry_after, .. } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                http::classify_status(status, *retry_after)
            }
            GraphError::Decode { .. } | GraphError::InvalidInput { .. } => ErrorClass::Permanent,
        }
    }

    /// The stable machine code: `graph.throttled`, `graph.unavailable`, `graph.forbidden`,
    /// `graph.not_found`, `graph.bad_request`, `graph.mail_enabled_group`, `graph.timeout`,
    /// `token.invalid_client`, ... (see [`crate::http`] for the status table).
    pub fn code(&self) -> String {
        match self {
            GraphError::Token(e) => e.code(),
            GraphError::Transport { kind, .. } => format!("graph.{}", kind.code_name()),
            GraphError::Api { status: 400, body, .. } if body.is_mail_enabled_group() => {
                "graph.mail_enabled_group".to_owned()
            }
            GraphError::Api { status, .. } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                format!("graph.{}", http::status_code_name(status))
            }
            GraphError::Decode { .. } => "graph.decode".to_owned(),
            GraphError::InvalidInput { .. } => "graph.invalid_input".to_owned(),
        }
    }

    /// Graph's own error code (`Request_BadRequest`, `Authorization_RequestDenied`, ...).
    pub fn graph_code(&self) -> Option<&str> {
        match self {
            GraphError::Api { body, .. } if !body.code.is_empty() => Some(&body.code),
            _ => None,
        }
    }

    /// The `x-ms-throttle-scope` Graph named when it throttled the call.
    pub fn throttle_scope(&self) -> Option<&str> {
        match self {
            GraphError::Api { throttle_scope, .. } => throttle_scope.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status, when Graph answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn correlation(&self) -> Option<&Correlation> {
        match self {
            GraphError::Transport { correlation, .. }
            | GraphError::Api { correlation, .. }
            | GraphError::Decode { correlation, .. } => Some(correlation),
            GraphError::Token(_) | GraphError::InvalidInput { .. } => None,
        }
    }

    pub fn to_step_error(&self) -> StepError {
        StepError::new(self.class(), self.code(), self.to_string())
    }
}

impl From<GraphError> for StepError {
    fn from(err: GraphError) -> Self {
        err.to_step_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corr() -> Correlation {
        Correlation { request_id: Some("r".into()), client_request_id: "c".into() }
    }

    #[test]
    fn parses_both_inner_error_spellings() {
        let upper = br#"{"error":{"code":"Request_ResourceNotFound","message":"m","innerError":{"date":"2021-06-22T06:41:55","request-id":"54ec78e8","client-request-id":"90b324a1"}}}"#;
        let lower = br#"{"error":{"code":"Request_ResourceNotFound","message":"m","innererror":{"date":"2021-06-22T06:41:55","request-id":"54ec78e8","client-request-id":"90b324a1"}}}"#;
        for body in [&upper[..], &lower[..]] {
            let b = GraphErrorBody::parse(body);
            assert_eq!(b.code, "Request_ResourceNotFound");
            let inner = b.inner_error.unwrap();
            assert_eq!(inner.request_id.as_deref(), Some("54ec78e8"));
            assert_eq!(inner.client_request_id.as_deref(), Some("90b324a1"));
        }
        let junk = GraphErrorBody::parse(b"<html>bad gateway</html>");
        assert_eq!(junk.code, "");
        assert_eq!(junk.message, "<html>bad gateway</html>");
    }

    #[test]
    fn classification_and_codes() {
        let api = |status: u16, message: &str| GraphError::Api {
            status,
            body: GraphErrorBody { code: "Request_BadRequest".into(), message: message.into(), inner_error: None },
            retry_after: Some(Duration::from_secs(3)),
            throttle_scope: None,
            correlation: corr(),
        };
        let e = api(400, "Cannot Update a mail-enabled security groups and or distribution list.");
        assert_eq!((e.class(), e.code().as_str()), (ErrorClass::Permanent, "graph.mail_enabled_group"));
        assert_eq!(e.graph_code(), Some("Request_BadRequest"));
        assert_eq!(api(400, "x").code(), "graph.bad_request");
        assert_eq!(api(403, "x").code(), "graph.forbidden");
        assert_eq!(api(404, "x").code(), "graph.not_found");
        assert_eq!(api(401, "x").class(), ErrorClass::Permanent);
        assert_eq!(api(429, "x").class(), ErrorClass::Throttled { retry_after: Some(Duration::from_secs(3)) });
        assert_eq!(api(503, "x").class(), ErrorClass::Transient { retry_after: Some(Duration::from_secs(3)) });
        assert_eq!(api(503, "x").code(), "graph.unavailable");
        let step = StepError::from(api(403, "Insufficient privileges to complete the operation."));
        assert_eq!(step.code, "graph.forbidden");
        assert!(step.message.contains("request-id: r"));
        assert!(step.message.contains("Insufficient privileges"));
    }
}
