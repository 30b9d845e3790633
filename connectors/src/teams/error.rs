//! Teams failures, classified where they are born.

use std::time::Duration;

use grantline_shared::{ErrorClass, StepError};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::graph::Correlation;
use crate::http::{self, TransportKind};
use crate::jwt::JwtError;
use crate::token::TokenError;

/// The Bot Connector's (and the Workflows endpoint's) error body: `{"error":{"code","message"}}`,
/// or the bare `{"message": …}` of a refused bearer token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotErrorBody {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl BotErrorBody {
    /// Parses either shape; anything else becomes an empty code and the start of the text.
    pub fn parse(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            error: BotErrorBody,
        }
        #[derive(Deserialize)]
        struct Bare {
            message: String,
        }
        if let Ok(env) = serde_json::from_slice::<Envelope>(body) {
            return env.error;
        }
        if let Ok(bare) = serde_json::from_slice::<Bare>(body) {
            return BotErrorBody { code: String::new(), message: bare.message };
        }
        BotErrorBody { code: String::new(), message: http::truncate(String::from_utf8_lossy(body).trim(), 300) }
    }
}

/// A failed Teams call, or a refused inbound activity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TeamsError {
    /// No Bot Connector token could be obtained.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// No response: timeout, refused or reset connection.
    #[error("teams request failed: {message} ({correlation})")]
    Transport { kind: TransportKind, message: String, correlation: Correlation },
    /// The service answered with a status the operation does not treat as success.
    #[error("teams answered HTTP {status} {}: {} ({correlation})", .body.code, .body.message)]
    Api { status: u16, body: BotErrorBody, retry_after: Option<Duration>, correlation: Correlation },
    /// A success status with a body that is not the expected one.
    #[error("teams response could not be decoded: {message} ({correlation})")]
    Decode { message: String, correlation: Correlation },
    /// The service URL is not an absolute http(s) URL.
    #[error("invalid service URL: {reason}")]
    InvalidServiceUrl { reason: String },
    /// The service URL is not under any allowed prefix.
    #[error("service URL {service_url:?} is not allowed (teams.allowed_service_urls)")]
    ServiceUrlNotAllowed { service_url: String },
    /// The call was refused before it was sent (an empty id, a bad webhook URL).
    #[error("invalid teams request: {message}")]
    InvalidInput { message: String },
    /// An inbound activity without an `Authorization` header.
    #[error("the activity carries no Authorization header")]
    MissingAuthorization,
    /// An inbound activity's token was refused.
    #[error("the activity's token was refused: {0}")]
    Unauthenticated(JwtError),
    /// The token's `serviceurl` claim is not the activity's `serviceUrl`.
    #[error("the token's serviceurl claim {claim:?} does not match the activity's serviceUrl {activity:?}")]
    ServiceUrlMismatch { claim: String, activity: String },
    /// The signing key is not endorsed for the activity's channel.
    #[error("the signing key is not endorsed for channel {channel:?}")]
    KeyNotEndorsed { channel: String },
}

impl TeamsError {
    /// Whether the queue should retry: by the status table for service answers; a refused
    /// token is Permanent unless the keys were unavailable.
    pub fn class(&self) -> ErrorClass {
        match self {
            TeamsError::Token(e) => e.class(),
            TeamsError::Transport { kind, .. } => kind.class(),
            TeamsError::Api { status, retry_after, .. } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                http::classify_status(status, *retry_after)
            }
            TeamsError::Unauthenticated(e) => e.class(),
            TeamsError::Decode { .. }
            | TeamsError::InvalidServiceUrl { .. }
            | TeamsError::ServiceUrlNotAllowed { .. }
            | TeamsError::InvalidInput { .. }
            | TeamsError::MissingAuthorization
            | TeamsError::ServiceUrlMismatch { .. }
            | TeamsError::KeyNotEndorsed { .. } => ErrorClass::Permanent,
        }
    }

    /// The stable machine code: `teams.throttled`, `teams.not_found`, `teams.unauthorized`,
    /// `teams.bot_not_installed` (403 `BotNotInConversationRoster`), `teams.bot_disabled`
    /// (403 `BotDisabledByAdmin`), `teams.conversation_not_found`, `teams.timeout`,
    /// `teams.service_url_not_allowed`, `teams.missing_authorization`,
    /// `teams.serviceurl_mismatch`, `teams.key_not_endorsed`, the `jwt.*` code of a refused
    /// token, `token.*` for token failures.
    pub fn code(&self) -> String {
        match self {
            TeamsError::Token(e) => e.code(),
            TeamsError::Transport { kind, .. } => format!("teams.{}", kind.code_name()),
            TeamsError::Api { status: 403, body, .. } if body.code == "BotNotInConversationRoster" => {
                "teams.bot_not_installed".to_owned()
            }
            TeamsError::Api { status: 403, body, .. } if body.code == "BotDisabledByAdmin" => {
                "teams.bot_disabled".to_owned()
            }
            TeamsError::Api { status: 404, body, .. } if body.code == "ConversationNotFound" => {
                "teams.conversation_not_found".to_owned()
            }
            TeamsError::Api { status, .. } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                format!("teams.{}", http::status_code_name(status))
            }
            TeamsError::Decode { .. } => "teams.decode".to_owned(),
            TeamsError::InvalidServiceUrl { .. } => "teams.invalid_service_url".to_owned(),
            TeamsError::ServiceUrlNotAllowed { .. } => "teams.service_url_not_allowed".to_owned(),
            TeamsError::InvalidInput { .. } => "teams.invalid_input".to_owned(),
            TeamsError::MissingAuthorization => "teams.missing_authorization".to_owned(),
            TeamsError::Unauthenticated(e) => e.code().to_owned(),
            TeamsError::ServiceUrlMismatch { .. } => "teams.serviceurl_mismatch".to_owned(),
            TeamsError::KeyNotEndorsed { .. } => "teams.key_not_endorsed".to_owned(),
        }
    }

    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            TeamsError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for a refused inbound activity (the route answers 401). An unreachable key
    /// endpoint is not the caller's fault: it is retryable and not counted here.
    pub fn is_unauthenticated(&self) -> bool {
        match self {
            TeamsError::Unauthenticated(e) => !matches!(e, JwtError::KeysUnavailable { .. }),
            TeamsError::MissingAuthorization
            | TeamsError::ServiceUrlMismatch { .. }
            | TeamsError::KeyNotEndorsed { .. } => true,
            _ => false,
        }
    }

    /// The ids of the failed call, when one was made.
    pub fn correlation(&self) -> Option<&Correlation> {
        match self {
            TeamsError::Transport { correlation, .. }
            | TeamsError::Api { correlation, .. }
            | TeamsError::Decode { correlation, .. } => Some(correlation),
            _ => None,
        }
    }

    /// The failure as a step failure (class, code, message).
    pub fn to_step_error(&self) -> StepError {
        StepError::new(self.class(), self.code(), self.to_string())
    }
}

impl From<TeamsError> for StepError {
    fn from(err: TeamsError) -> Self {
        err.to_step_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> TeamsError {
        TeamsError::Api {
            status,
            body: BotErrorBody { code: code.into(), message: "m".into() },
            retry_after: Some(Duration::from_secs(2)),
            correlation: Correlation { request_id: Some("cv".into()), client_request_id: "c".into() },
        }
    }

    #[test]
    fn parses_both_error_shapes() {
        let b =
            BotErrorBody::parse(br#"{"error":{"code":"ConversationNotFound","message":"Conversation not found."}}"#);
        assert_eq!((b.code.as_str(), b.message.as_str()), ("ConversationNotFound", "Conversation not found."));
        let b = BotErrorBody::parse(br#"{"message":"Authorization has been denied for this request."}"#);
        assert_eq!(b.code, "");
        assert!(b.message.starts_with("Authorization has been denied"));
        assert_eq!(BotErrorBody::parse(b"<html>").message, "<html>");
    }

    #[test]
    fn codes_and_classes() {
        assert_eq!(api(403, "BotNotInConversationRoster").code(), "teams.bot_not_installed");
        assert_eq!(api(403, "BotDisabledByAdmin").code(), "teams.bot_disabled");
        assert_eq!(api(403, "Forbidden").code(), "teams.forbidden");
        assert_eq!(api(404, "ConversationNotFound").code(), "teams.conversation_not_found");
        assert_eq!(api(429, "Throttled").class(), ErrorClass::Throttled { retry_after: Some(Duration::from_secs(2)) });
        assert_eq!(api(412, "PreconditionFailed").class(), ErrorClass::Permanent);
        assert_eq!(api(503, "").class(), ErrorClass::Transient { retry_after: Some(Duration::from_secs(2)) });
        let e = TeamsError::Unauthenticated(JwtError::BadSignature);
        assert_eq!((e.code(), e.is_unauthenticated()), ("jwt.bad_signature".to_owned(), true));
        let e = TeamsError::Unauthenticated(JwtError::KeysUnavailable { reason: "down".into() });
        assert!(e.class().is_retryable() && !e.is_unauthenticated());
        let step = StepError::from(api(404, "NotFound"));
        assert_eq!(step.code, "teams.not_found");
        assert!(step.message.contains("request-id: cv"));
    }
}
