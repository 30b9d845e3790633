//! Sign-in failures, classified where they are born.

use grantline_shared::{ErrorClass, StepError};

use crate::jwt::JwtError;
use crate::token::TokenError;

/// The OAuth `error` values of an authorization response that get a code of their own.
const KNOWN_CALLBACK_ERRORS: &[&str] = &[
    "access_denied",
    "login_required",
    "interaction_required",
    "consent_required",
    "invalid_request",
    "unauthorized_client",
    "unsupported_response_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
];

/// A failed sign-in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The token endpoint refused the code (`invalid_grant`: expired, used, PKCE mismatch;
    /// `invalid_client`, ...) or could not be reached. Codes are `token.*`.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token response holds no `id_token` or is not a token response.
    #[error("malformed token response: {message}")]
    Malformed { message: String },
    /// The id_token was refused (signature, issuer, audience, expiry...). Codes are `jwt.*`.
    #[error("id_token refused: {0}")]
    IdToken(JwtError),
    /// The id_token's `nonce` is not the one this sign-in sent (a replayed or swapped token).
    #[error("the id_token's nonce does not match this sign-in")]
    NonceMismatch,
    /// The id_token is from another tenant.
    #[error("the id_token is for tenant {found:?}, not {expected:?}")]
    WrongTenant { expected: String, found: String },
    /// A claim the sign-in needs is missing.
    #[error("the id_token has no {claim} claim")]
    MissingClaim { claim: &'static str },
    /// The identity platform redirected back with an error instead of a code.
    #[error("sign-in failed with {error}: {description}")]
    Denied { error: String, description: String },
    /// The redirect back carries neither a code nor an error, or no state.
    #[error("invalid sign-in callback: {message}")]
    InvalidCallback { message: String },
}

impl OidcError {
    /// Whether retrying can help: only an unreachable or failing identity platform.
    pub fn class(&self) -> ErrorClass {
        match self {
            OidcError::Token(e) => e.class(),
            OidcError::IdToken(e) => e.class(),
            OidcError::Denied { error, .. } if error == "temporarily_unavailable" || error == "server_error" => {
                ErrorClass::TRANSIENT
            }
            _ => ErrorClass::Permanent,
        }
    }

    /// The stable machine code: `token.invalid_grant`, `jwt.bad_signature`,
    /// `oidc.nonce_mismatch`, `oidc.wrong_tenant`, `oidc.missing_claim`,
    /// `oidc.malformed_response`, `oidc.access_denied` (and the other OAuth callback errors),
    /// `oidc.denied`, `oidc.invalid_callback`.
    pub fn code(&self) -> String {
        match self {
            OidcError::Token(e) => e.code(),
            OidcError::Malformed { .. } => "oidc.malformed_response".to_owned(),
            OidcError::IdToken(e) => e.code().to_owned(),
            OidcError::NonceMismatch => "oidc.nonce_mismatch".to_owned(),
            OidcError::WrongTenant { .. } => "oidc.wrong_tenant".to_owned(),
            OidcError::MissingClaim { .. } => "oidc.missing_claim".to_owned(),
            OidcError::Denied { error, .. } if KNOWN_CALLBACK_ERRORS.contains(&error.as_str()) => {
                format!("oidc.{error}")
            }
            OidcError::Denied { .. } => "oidc.denied".to_owned(),
            OidcError::InvalidCallback { .. } => "oidc.invalid_callback".to_owned(),
        }
    }

    /// The failure as a step failure (class, code, message).
    pub fn to_step_error(&self) -> StepError {
        StepError::new(self.class(), self.code(), self.to_string())
    }

    pub(super) fn transport(err: reqwest::Error) -> Self {
        let (kind, message) = crate::http::describe_transport(err);
        OidcError::Token(TokenError::Transport { kind, message })
    }
}

impl From<OidcError> for StepError {
    fn from(err: OidcError) -> Self {
        err.to_step_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_classes() {
        let denied = |e: &str| OidcError::Denied { error: e.into(), description: "d".into() };
        assert_eq!(denied("access_denied").code(), "oidc.access_denied");
        assert_eq!(denied("weird").code(), "oidc.denied");
        assert!(denied("temporarily_unavailable").class().is_retryable());
        assert_eq!(OidcError::NonceMismatch.class(), ErrorClass::Permanent);
        assert_eq!(OidcError::IdToken(JwtError::BadSignature).code(), "jwt.bad_signature");
        assert_eq!(StepError::from(OidcError::MissingClaim { claim: "oid" }).code, "oidc.missing_claim");
    }
}
