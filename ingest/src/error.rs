//! The one error type of the HTTP edge. Every refusal renders as
//! `{"code": "...", "message": "...", "field": "..." | null}` with a stable code; internal
//! failures are logged here and answered with a generic message, never echoed.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Stable error codes. Never renamed: integrators and dashboards match on them.
pub mod codes {
    /// No credential that this deployment accepts was presented.
    pub const AUTH_MISSING: &str = "auth.missing";
    /// The shared secret did not match.
    pub const AUTH_BAD_SECRET: &str = "auth.bad_secret";
    /// The HMAC signature (or its timestamp) is malformed or does not match.
    pub const AUTH_BAD_SIGNATURE: &str = "auth.bad_signature";
    /// A correctly signed request whose timestamp is outside the replay window.
    pub const AUTH_REPLAYED: &str = "auth.replayed";
    /// The bearer token is not an operator token.
    pub const AUTH_BAD_TOKEN: &str = "auth.bad_token";
    pub const REQUEST_TOO_LARGE: &str = "request.too_large";
    pub const REQUEST_UNSUPPORTED_MEDIA_TYPE: &str = "request.unsupported_media_type";
    pub const REQUEST_MALFORMED_JSON: &str = "request.malformed_json";
    pub const REQUEST_INVALID_FIELD: &str = "request.invalid_field";
    /// The body could not be read (the client went away mid-body).
    pub const REQUEST_BODY_UNREADABLE: &str = "request.body_unreadable";
    pub const REQUEST_NOT_FOUND: &str = "request.not_found";
    pub const REQUEST_NOT_AWAITING_APPROVAL: &str = "request.not_awaiting_approval";
    /// Concurrent changes kept a decision from being recorded; retry.
    pub const REQUEST_CONFLICT: &str = "request.conflict";
    /// The request record lacks what a decision needs (requester, readable approval plan).
    pub const REQUEST_INCOMPLETE: &str = "request.incomplete";
    /// The ticket was received before, but its request could not be found.
    pub const REQUEST_DUPLICATE: &str = "request.duplicate";
    pub const APPROVAL_SELF_APPROVAL: &str = "approval.self_approval";
    pub const APPROVAL_NOT_AN_APPROVER: &str = "approval.not_an_approver";
    /// The request has no approval plan on record: nobody may approve it (deny by default).
    pub const APPROVAL_NO_PLAN: &str = "approval.no_plan";
    /// The operator token has no directory identity, and the decision names no one else.
    pub const APPROVAL_OPERATOR_WITHOUT_IDENTITY: &str = "approval.operator_without_identity";
    /// The directory has no enabled account for the approver named.
    pub const APPROVAL_UNKNOWN_APPROVER: &str = "approval.unknown_approver";
    /// The answer was about another stage than the pending one (a stale card or link).
    pub const APPROVAL_WRONG_STAGE: &str = "approval.wrong_stage";
    /// Naming an approver needs the directory, and none is configured or it did not answer.
    pub const APPROVAL_DIRECTORY_UNAVAILABLE: &str = "approval.directory_unavailable";
    pub const ROUTE_NOT_FOUND: &str = "route.not_found";
    pub const METHOD_NOT_ALLOWED: &str = "request.method_not_allowed";
    /// The edge has no policy file to check an extension against (or it cannot be loaded).
    pub const POLICY_UNAVAILABLE: &str = "policy.unavailable";
    /// The body did not arrive within `ingest.body_timeout_ms`: nothing was accepted.
    pub const REQUEST_TIMEOUT: &str = "request.timeout";
    /// The request line or a header could not be parsed as HTTP/1.1 (answered, then closed).
    pub const REQUEST_MALFORMED_HTTP: &str = "request.malformed_http";
    /// The request line and headers exceed `ingest.max_header_bytes`.
    pub const REQUEST_HEADERS_TOO_LARGE: &str = "request.headers_too_large";
    /// The request target is longer than the edge parses.
    pub const REQUEST_URI_TOO_LONG: &str = "request.uri_too_long";
    /// The edge holds `ingest.max_connections` connections, each in a request: retry later.
    pub const SERVICE_OVERLOADED: &str = "service.overloaded";
    /// The client's address holds `ingest.max_connections_per_client` connections.
    pub const CLIENT_TOO_MANY_CONNECTIONS: &str = "client.too_many_connections";
    /// Redis (the request store) is unreachable: nothing was accepted; retry later.
    pub const SERVICE_UNAVAILABLE: &str = "service.unavailable";
    pub const INTERNAL: &str = "internal.error";
}

/// A refusal or failure, rendered as status + stable code + message + field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The JSON path of the offending field, when one is to blame.
    pub field: Option<String>,
    /// `WWW-Authenticate` challenge to send with a 401.
    pub challenge: Option<&'static str>,
}

/// The response extension that carries the code of an error response, for metrics and logs.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    field: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, challenge: None }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// A 401 of the bearer-token API, with its `WWW-Authenticate: Bearer` challenge.
    pub fn bearer(code: &'static str, message: impl Into<String>) -> Self {
        Self { challenge: Some("Bearer"), ..Self::unauthorized(code, message) }
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, codes::REQUEST_INVALID_FIELD, message).with_field(field)
    }

    pub fn malformed_json() -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::REQUEST_MALFORMED_JSON, "the body is not valid JSON")
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::REQUEST_TOO_LARGE,
            format!("the body is larger than {limit} bytes"),
        )
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::REQUEST_NOT_FOUND, "no such request")
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// The request store failed. The cause is logged, not returned.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request store unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::SERVICE_UNAVAILABLE,
            "the request store is unavailable; nothing was changed, retry later",
        )
    }

    /// Something that should not happen. The cause is logged, not returned.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, "internal error")
    }
}

impl From<grantline_queue::QueueError> for ApiError {
    fn from(e: grantline_queue::QueueError) -> Self {
        match e {
            grantline_queue::QueueError::Redis(_) => ApiError::unavailable(&e),
            other => ApiError::internal(&other),
        }
    }
}

impl From<grantline_store::StoreError> for ApiError {
    fn from(e: grantline_store::StoreError) -> Self {
        if e.is_transient() { ApiError::unavailable(&e) } else { ApiError::internal(&e) }
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        ApiError::unavailable(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { code: self.code, message: &self.message, field: self.field.as_deref() };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(c) = self.challenge {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_code_message_and_field() {
        let resp = ApiError::invalid_field("ritm.sys_id", "must be 32 hex characters").into_response();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": "request.invalid_field", "message": "must be 32 hex characters", "field": "ritm.sys_id"})
        );
        let resp = ApiError::malformed_json().into_response();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["field"], serde_json::Value::Null);
    }

    #[test]
    fn internal_errors_do_not_echo_their_cause() {
        let e = ApiError::internal(&"redis://:hunter2@host failed");
        assert!(!e.message.contains("hunter2"));
    }
}
