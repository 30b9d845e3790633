//! Slack failures, classified where they are born.

use std::time::Duration;

use grantline_shared::{ErrorClass, StepError};
use reqwest::StatusCode;

use crate::http::{self, TransportKind};

/// `ok:false` error codes that say "try again later" rather than "this request is wrong".
const TRANSIENT_ERRORS: &[&str] =
    &["ratelimited", "service_unavailable", "internal_error", "fatal_error", "request_timeout"];

/// A failed Slack call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// No response: timeout, refused or reset connection.
    #[error("slack {method} failed: {message}")]
    Transport { method: &'static str, kind: TransportKind, message: String },
    /// Slack answered with a non-success HTTP status (429, 5xx, 404 for an unknown method, a
    /// `response_url` that is used up, ...). `error` is the `error` field of a JSON body, when
    /// there was one.
    #[error("slack {method} answered HTTP {status}{}{}", .error.as_deref().map(|e| format!(": {e}")).unwrap_or_default(), request_suffix(.request_id.as_deref()))]
    Http {
        method: &'static str,
        status: u16,
        error: Option<String>,
        retry_after: Option<Duration>,
        request_id: Option<String>,
    },
    /// HTTP 200 with `{"ok":false,"error":"…"}`. For `missing_scope`, `needed` and `provided`
    /// name the scopes; `messages` carries `response_metadata.messages` (why blocks are invalid).
    #[error("slack {method} refused: {error}{}{}{}", scope_suffix(.needed.as_deref(), .provided.as_deref()), messages_suffix(.messages), request_suffix(.request_id.as_deref()))]
    Api {
        method: &'static str,
        error: String,
        needed: Option<String>,
        provided: Option<String>,
        messages: Vec<String>,
        request_id: Option<String>,
    },
    /// A success status with a body that is not what the method returns.
    #[error("slack {method} response could not be decoded: {message}")]
    Decode { method: &'static str, message: String },
    /// The call was refused before it was sent (an empty channel, an invalid `response_url`).
    #[error("invalid slack request: {message}")]
    InvalidInput { message: String },
}

fn request_suffix(id: Option<&str>) -> String {
    id.map(|id| format!(" (x-slack-req-id: {id})")).unwrap_or_default()
}

fn scope_suffix(needed: Option<&str>, provided: Option<&str>) -> String {
    match (needed, provided) {
        (None, None) => String::new(),
        (n, p) => format!(" (needed: {}, provided: {})", n.unwrap_or("-"), p.unwrap_or("-")),
    }
}

fn messages_suffix(messages: &[String]) -> String {
    if messages.is_empty() { String::new() } else { format!(" [{}]", messages.join("; ")) }
}

impl SlackError {
    pub fn class(&self) -> ErrorClass {
        match self {
            SlackError::Transport { kind, .. } => kind.class(),
            SlackError::Http { status, retry_after, .. } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                http::classify_status(status, *retry_after)
            }
            SlackError::Api { error, .. } if TRANSIENT_ERRORS.contains(&error.as_str()) => ErrorClass::TRANSIENT,
            SlackError::Api { .. } | SlackError::Decode { .. } | SlackError::InvalidInput { .. } => {
                ErrorClass::Permanent
            }
        }
    }

    /// The stable machine code: `slack.<error>` for an `ok:false` answer (`slack.channel_not_found`,
    /// `slack.missing_scope`, ...), `slack.<error>` for a `response_url` refusal with a JSON error
    /// (`slack.used_url`), otherwise `slack.` + the status table's name (`slack.throttled`,
    /// `slack.unavailable`, `slack.not_found`), `slack.timeout`, `slack.connect`, `slack.decode`,
    /// `slack.invalid_input`.
    pub fn code(&self) -> String {
        match self {
            SlackError::Transport { kind, .. } => format!("slack.{}", kind.code_name()),
            SlackError::Http { status, error, .. } => match error {
                Some(e) if *status != 429 && *status < 500 && is_code(e) => format!("slack.{e}"),
                _ => {
                    let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    format!("slack.{}", http::status_code_name(status))
                }
            },
            SlackError::Api { error, .. } if is_code(error) => format!("slack.{error}"),
            SlackError::Api { .. } => "slack.api_error".to_owned(),
            SlackError::Decode { .. } => "slack.decode".to_owned(),
            SlackError::InvalidInput { .. } => "slack.invalid_input".to_owned(),
        }
    }

    /// Slack's own error string (`channel_not_found`, ...), when it gave one.
    pub fn slack_error(&self) -> Option<&str> {
        match self {
            SlackError::Api { error, .. } => Some(error),
            SlackError::Http { error: Some(e), .. } => Some(e),
            _ => None,
        }
    }

    /// The HTTP status, when Slack answered (200 for `ok:false`).
    pub fn status(&self) -> Option<u16> {
        match self {
            SlackError::Http { status, .. } => Some(*status),
            SlackError::Api { .. } => Some(200),
            _ => None,
        }
    }

    pub fn to_step_error(&self) -> StepError {
        StepError::new(self.class(), self.code(), self.to_string())
    }
}

impl From<SlackError> for StepError {
    fn from(err: SlackError) -> Self {
        err.to_step_error()
    }
}

/// Slack's error strings are short snake_case words; anything else does not become a code.
fn is_code(error: &str) -> bool {
    !error.is_empty()
        && error.len() <= 64
        && error.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(error: &str) -> SlackError {
        SlackError::Api {
            method: "chat.postMessage",
            error: error.to_owned(),
            needed: None,
            provided: None,
            messages: Vec::new(),
            request_id: None,
        }
    }

    #[test]
    fn ok_false_codes() {
        assert_eq!(api("channel_not_found").code(), "slack.channel_not_found");
        assert_eq!(api("channel_not_found").class(), ErrorClass::Permanent);
        for e in TRANSIENT_ERRORS {
            assert_eq!(api(e).class(), ErrorClass::TRANSIENT, "{e}");
        }
        assert_eq!(api("Weird Thing!").code(), "slack.api_error");
    }

    #[test]
    fn http_codes() {
        let e = SlackError::Http {
            method: "respond",
            status: 404,
            error: Some("used_url".into()),
            retry_after: None,
            request_id: None,
        };
        assert_eq!(e.code(), "slack.used_url");
        assert_eq!(e.class(), ErrorClass::Permanent);
        let e = SlackError::Http {
            method: "chat.postMessage",
            status: 429,
            error: Some("ratelimited".into()),
            retry_after: Some(Duration::from_secs(3)),
            request_id: Some("abc".into()),
        };
        assert_eq!(e.code(), "slack.throttled");
        assert_eq!(e.class(), ErrorClass::Throttled { retry_after: Some(Duration::from_secs(3)) });
        assert_eq!(e.to_string(), "slack chat.postMessage answered HTTP 429: ratelimited (x-slack-req-id: abc)");
    }
}
