//! Exchange failures, classified where they are born.
//!
//! A failed cmdlet comes back as an OData error whose `error.message` is generic ("Error
//! executing cmdlet"); the reason is in `error.details[].message`, shaped
//! `<id>|<exception type>|<reason>`. The exception type decides the code; the reason is read from
//! the details, then `innererror.internalexception.message`, then `innererror.message`, then
//! `error.message`.
//!
//! | answer | class | code |
//! | --- | --- | --- |
//! | 4xx with `ManagementObjectNotFoundException` or `InvalidExternalUserIdException` | Permanent | `exchange.not_found` |
//! | 4xx with `ManagementObjectAmbiguousException` | Permanent | `exchange.ambiguous` |
//! | 4xx with `UserAlreadyExistsInPermissionEntryException` | Permanent | `exchange.already_exists` |
//! | 4xx with `UserNotFoundInPermissionEntryException` | Permanent | `exchange.permission_entry_not_found` |
//! | 4xx with `ParameterBindingException` | Permanent | `exchange.invalid_parameter` |
//! | 4xx with another exception type | Permanent | `exchange.cmdlet_error` |
//! | 403 with an empty or NUL body | Permanent | `exchange.forbidden` (unknown cmdlet or no RBAC role) |
//! | other statuses | per [`crate::http`] | `exchange.` + the status name (`throttled`, `unavailable`, ...) |
//!
//! A folder entry that exists with another role than the one asked for is
//! [`ExchangeError::Conflict`] (`exchange.conflict`).

use std::time::Duration;

use grantline_shared::{ErrorClass, StepError};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::graph::Correlation;
use crate::http::{self, TransportKind};
use crate::token::TokenError;

/// What an Exchange error body says, reduced to what classification needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeErrorBody {
    /// `error.code` (`NotFound`, `BadRequest`, ...).
    pub code: String,
    /// `error.message` (usually generic).
    pub message: String,
    /// The exception type: the middle segment of `error.details[].message`.
    pub exception: Option<String>,
    /// Why it failed, from the first place that says.
    pub reason: String,
    /// The body was empty, whitespace or NUL bytes only.
    pub blank: bool,
}

#[derive(Deserialize)]
struct Envelope {
    error: RawError,
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    details: Option<Vec<RawDetail>>,
    #[serde(default, alias = "innerError")]
    innererror: Option<RawInner>,
}

#[derive(Deserialize)]
struct RawDetail {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct RawInner {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, alias = "internalException", alias = "InternalException")]
    internalexception: Option<RawInternal>,
}

#[derive(Deserialize)]
struct RawInternal {
    #[serde(default)]
    message: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl ExchangeErrorBody {
    /// Parses an error body; anything that is not an OData error (a proxy's HTML page, nothing
    /// at all) becomes a body whose reason is the start of the text.
    pub fn parse(body: &[u8]) -> Self {
        if body.iter().all(|b| *b == 0 || b.is_ascii_whitespace()) {
            return Self { blank: true, ..Self::default() };
        }
        let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(body) else {
            return Self { reason: http::truncate(String::from_utf8_lossy(body).trim(), 300), ..Self::default() };
        };
        let mut exception = None;
        let mut reason = None;
        for detail in error.details.into_iter().flatten() {
            let Some(text) = non_empty(detail.message) else { continue };
            let parts: Vec<&str> = text.splitn(3, '|').collect();
            if let [_, kind, why] = parts.as_slice() {
                exception = Some(kind.trim().to_owned()).filter(|k| !k.is_empty());
                reason = Some(why.trim().to_owned());
                break;
            }
            reason.get_or_insert(text);
        }
        let inner = error.innererror;
        let reason = reason
            .or_else(|| {
                non_empty(inner.as_ref().and_then(|i| i.internalexception.as_ref()).and_then(|x| x.message.clone()))
            })
            .or_else(|| non_empty(inner.as_ref().and_then(|i| i.message.clone())))
            .or_else(|| non_empty(error.message.clone()))
            .unwrap_or_default();
        Self {
            code: error.code.unwrap_or_default(),
            message: error.message.unwrap_or_default(),
            exception,
            reason,
            blank: false,
        }
    }

    /// The exception type without its namespace (`ManagementObjectNotFoundException`).
    pub fn exception_name(&self) -> Option<&str> {
        self.exception.as_deref().map(|e| e.rsplit('.').next().unwrap_or(e))
    }

    fn is(&self, name: &str) -> bool {
        self.exception_name().is_some_and(|e| e.eq_ignore_ascii_case(name))
    }
}

/// A failed Exchange call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// No token could be obtained.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// No response: timeout, refused or reset connection.
    #[error("exchange {cmdlet} request failed: {message} ({correlation})")]
    Transport { kind: TransportKind, cmdlet: String, message: String, correlation: Correlation },
    /// Exchange answered with a status the operation does not treat as success.
    #[error("{}", api_message(*.status, .cmdlet, .body, .correlation))]
    Api {
        status: u16,
        cmdlet: String,
        body: ExchangeErrorBody,
        retry_after: Option<Duration>,
        correlation: Correlation,
    },
    /// A folder entry for the user exists with other rights than the ones asked for.
    #[error(
        "{user} already has {existing:?} on {folder}, not {wanted}: change or remove that entry first ({correlation})"
    )]
    Conflict { folder: String, user: String, existing: Vec<String>, wanted: String, correlation: Correlation },
    /// A success status with a body that is not what the cmdlet returns, or a nextLink that
    /// leaves the configured host.
    #[error("exchange response could not be used: {message} ({correlation})")]
    Decode { message: String, correlation: Correlation },
    /// The call was refused before it was sent (an empty mailbox or user).
    #[error("invalid exchange request: {message}")]
    InvalidInput { message: String },
}

fn api_message(status: u16, cmdlet: &str, body: &ExchangeErrorBody, correlation: &Correlation) -> String {
    if status == 403 && body.blank {
        return format!(
            "exchange refused {cmdlet} with HTTP 403 and no body: the cmdlet is unknown or the app lacks the Exchange RBAC role (Exchange.ManageAsApp + a role assignment) ({correlation})"
        );
    }
    let what = body.exception_name().map(str::to_owned).unwrap_or_else(|| body.code.clone());
    let why = if body.reason.is_empty() { "no error body" } else { body.reason.as_str() };
    if what.is_empty() {
        format!("exchange {cmdlet} failed with HTTP {status}: {why} ({correlation})")
    } else {
        format!("exchange {cmdlet} failed with HTTP {status} {what}: {why} ({correlation})")
    }
}

impl ExchangeError {
    /// Whether and how the queue retries the step that got this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            ExchangeError::Token(e) => e.class(),
            ExchangeError::Transport { kind, .. } => kind.class(),
            ExchangeError::Api { status, retry_after, .. } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                http::classify_status(status, *retry_after)
            }
            ExchangeError::Conflict { .. } | ExchangeError::Decode { .. } | ExchangeError::InvalidInput { .. } => {
                ErrorClass::Permanent
            }
        }
    }

    /// The stable machine code (see the table in this module's documentation).
    pub fn code(&self) -> String {
        match self {
            ExchangeError::Token(e) => e.code(),
            ExchangeError::Transport { kind, .. } => format!("exchange.{}", kind.code_name()),
            ExchangeError::Api { status, body, .. } => {
                let by_exception = (400..500).contains(status) && *status != 429 && body.exception.is_some();
                if by_exception {
                    let code =
                        if body.is("ManagementObjectNotFoundException") || body.is("InvalidExternalUserIdException") {
                            "not_found"
                        } else if body.is("ManagementObjectAmbiguousException") {
                            "ambiguous"
                        } else if body.is("UserAlreadyExistsInPermissionEntryException") {
                            "already_exists"
                        } else if body.is("UserNotFoundInPermissionEntryException") {
                            "permission_entry_not_found"
                        } else if body.is("ParameterBindingException") {
                            "invalid_parameter"
                        } else {
                            "cmdlet_error"
                        };
                    return format!("exchange.{code}");
                }
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                format!("exchange.{}", http::status_code_name(status))
            }
            ExchangeError::Conflict { .. } => "exchange.conflict".to_owned(),
            ExchangeError::Decode { .. } => "exchange.decode".to_owned(),
            ExchangeError::InvalidInput { .. } => "exchange.invalid_input".to_owned(),
        }
    }

    /// The HTTP status, when Exchange answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ExchangeError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The exception type of a failed cmdlet, without its namespace.
    pub fn exception(&self) -> Option<&str> {
        match self {
            ExchangeError::Api { body, .. } => body.exception_name(),
            _ => None,
        }
    }

    /// The object (mailbox, user, folder) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == "exchange.not_found"
    }

    /// How long the service asked to wait (`Retry-After`, else `Rate-Limit-Reset` on a 429).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ExchangeError::Api { retry_after, .. } => *retry_after,
            ExchangeError::Token(TokenError::Throttled { retry_after }) => *retry_after,
            _ => None,
        }
    }

    /// The correlation ids of the call, when a request was sent.
    pub fn correlation(&self) -> Option<&Correlation> {
        match self {
            ExchangeError::Transport { correlation, .. }
            | ExchangeError::Api { correlation, .. }
            | ExchangeError::Conflict { correlation, .. }
            | ExchangeError::Decode { correlation, .. } => Some(correlation),
            ExchangeError::Token(_) | ExchangeError::InvalidInput { .. } => None,
        }
    }

    /// The step failure the queue records (class, code, message without secrets).
    pub fn to_step_error(&self) -> StepError {
        StepError::new(self.class(), self.code(), self.to_string())
    }
}

impl From<ExchangeError> for StepError {
    fn from(err: ExchangeError) -> Self {
        err.to_step_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_FOUND: &str = r##"{"error":{"code":"NotFound","message":"Error executing cmdlet","details":[{"code":"Client","target":"","message":"Ex6F9304|Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException|The operation couldn't be performed because object 'x@contoso.com' couldn't be found on 'DC1.PROD.OUTLOOK.COM'."}],"innererror":{"message":"Error executing cmdlet","type":"Microsoft.Exchange.Admin.OData.Core.ODataServiceException","stacktrace":"…","internalexception":{"message":"Exception of type 'Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletExecutionException' was thrown.","type":"Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletExecutionException","stacktrace":"…"}}},"adminapi.warnings@odata.type":"#Collection(String)","@adminapi.warnings":[]}"##;

    fn api(status: u16, body: &str) -> ExchangeError {
        ExchangeError::Api {
            status,
            cmdlet: "Get-Mailbox".into(),
            body: ExchangeErrorBody::parse(body.as_bytes()),
            retry_after: None,
            correlation: Correlation { request_id: Some("r".into()), client_request_id: "c".into() },
        }
    }

    #[test]
    fn reason_chain() {
        let b = ExchangeErrorBody::parse(NOT_FOUND.as_bytes());
        assert_eq!(b.exception_name(), Some("ManagementObjectNotFoundException"));
        assert!(b.reason.starts_with("The operation couldn't be performed because object 'x@contoso.com'"));
        let rest = r#"{"error":{"code":"NotFound","message":"An server side error occured.","innererror":{"message":"The object was not found.","type":"Microsoft.Exchange.Admin.OData.Core.ODataServiceException"}}}"#;
        let b = ExchangeErrorBody::parse(rest.as_bytes());
        assert_eq!((b.exception, b.reason.as_str()), (None, "The object was not found."));
        let internal = r#"{"error":{"code":"BadRequest","message":"Invalid Operation","innererror":{"internalException":{"message":"Deep reason"}}}}"#;
        assert_eq!(ExchangeErrorBody::parse(internal.as_bytes()).reason, "Deep reason");
        let plain = r#"{"error":{"code":"BadRequest","message":"Only this"}}"#;
        assert_eq!(ExchangeErrorBody::parse(plain.as_bytes()).reason, "Only this");
        assert!(ExchangeErrorBody::parse(&[0u8; 16]).blank);
        assert!(ExchangeErrorBody::parse(b"").blank);
        assert_eq!(ExchangeErrorBody::parse(b"<html>bad gateway</html>").reason, "<html>bad gateway</html>");
    }

    #[test]
    fn codes_and_classes() {
        let e = api(404, NOT_FOUND);
        assert_eq!((e.code().as_str(), e.class()), ("exchange.not_found", ErrorClass::Permanent));
        assert!(e.is_not_found());
        assert!(e.to_string().contains("ManagementObjectNotFoundException"));
        let nul = ExchangeError::Api {
            status: 403,
            cmdlet: "Get-Widget".into(),
            body: ExchangeErrorBody::parse(&[0u8; 4]),
            retry_after: None,
            correlation: Correlation { request_id: None, client_request_id: "c".into() },
        };
        assert_eq!(nul.code(), "exchange.forbidden");
        assert!(nul.to_string().contains("the cmdlet is unknown or the app lacks the Exchange RBAC role"));
        let step = StepError::from(api(503, "{}"));
        assert_eq!((step.code.as_str(), step.class), ("exchange.unavailable", ErrorClass::TRANSIENT));
    }
}
