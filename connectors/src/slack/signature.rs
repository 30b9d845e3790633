//! Verifying requests from Slack: `X-Slack-Signature: v0=<hex>` is the HMAC-SHA256, keyed with
//! the app's signing secret, of `v0:{X-Slack-Request-Timestamp}:{raw body}`.

use std::time::Duration;

use grantline_shared::{ErrorClass, StepError};
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::Secret;

/// Slack's replay window: a request whose timestamp is more than five minutes from now, in
/// either direction, is refused.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

const VERSION: &str = "v0";

/// Why a request that claims to come from Slack is refused. All are Permanent: resending the
/// same request cannot make it valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// `X-Slack-Signature` or `X-Slack-Request-Timestamp` is absent or empty.
    #[error("the Slack signature or timestamp header is missing")]
    Missing,
    /// The timestamp is further from now than the window allows (a replay, or a skewed clock).
    #[error("the Slack request timestamp is outside the replay window")]
    Stale,
    /// The signature does not match the body (or is malformed, or the timestamp is not a
    /// number).
    #[error("the Slack signature does not match the request")]
    Invalid,
}

impl SignatureError {
    /// `slack.signature_missing`, `slack.signature_stale` or `slack.signature_invalid`.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing => "slack.signature_missing",
            SignatureError::Stale => "slack.signature_stale",
            SignatureError::Invalid => "slack.signature_invalid",
        }
    }

    pub fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }

    pub fn to_step_error(&self) -> StepError {
        StepError::permanent(self.code(), self.to_string())
    }
}

impl From<SignatureError> for StepError {
    fn from(err: SignatureError) -> Self {
        err.to_step_error()
    }
}

/// HMAC-SHA256 of `v0:{timestamp}:{body}`. HMAC takes keys of any length, so `None` never
/// happens in practice; callers treat it as "does not match".
fn digest(signing_secret: &Secret, timestamp: &str, raw_body: &[u8]) -> Option<[u8; 32]> {
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.expose().as_bytes()).ok()?;
    mac.update(VERSION.as_bytes());
    mac.update(b":");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(raw_body);
    Some(mac.finalize().into_bytes().into())
}

/// The `X-Slack-Signature` value Slack would send for this timestamp and body:
/// `v0=` + lower-case hex.
pub fn signature(signing_secret: &Secret, timestamp: &str, raw_body: &[u8]) -> String {
    let hex = digest(signing_secret, timestamp, raw_body).map(hex::encode).unwrap_or_default();
    format!("{VERSION}={hex}")
}

/// Verifies a request from Slack. `timestamp_header` and `signature_header` are the values of
/// `X-Slack-Request-Timestamp` and `X-Slack-Signature` (`None` when absent); `raw_body` is the
/// body exactly as received, before any decoding; `now` is the current time and `window` the
/// allowed skew either way ([`DEFAULT_WINDOW`]).
///
/// The timestamp is checked before the signature, so a replayed request is reported as stale
/// even when its signature is genuine. The comparison is constant-time.
pub fn verify_signature(
    signing_secret: &Secret,
    timestamp_header: Option<&str>,
    signature_header: Option<&str>,
    raw_body: &[u8],
    now: Timestamp,
    window: Duration,
) -> Result<(), SignatureError> {
    let timestamp = timestamp_header.map(str::trim).filter(|t| !t.is_empty()).ok_or(SignatureError::Missing)?;
    let provided = signature_header.map(str::trim).filter(|s| !s.is_empty()).ok_or(SignatureError::Missing)?;
    let seconds: i64 = timestamp.parse().map_err(|_| SignatureError::Invalid)?;
    let skew = now.as_second().abs_diff(seconds);
    if u128::from(skew) * 1000 > window.as_millis() {
        return Err(SignatureError::Stale);
    }
    let hex_part = provided.strip_prefix("v0=").ok_or(SignatureError::Invalid)?;
    let provided_bytes = hex::decode(hex_part).map_err(|_| SignatureError::Invalid)?;
    let expected = digest(signing_secret, timestamp, raw_body).ok_or(SignatureError::Invalid)?;
    if provided_bytes.len() == expected.len() && bool::from(expected.as_slice().ct_eq(&provided_bytes)) {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_window() {
        let secret = Secret::new("s3cret");
        let now: Timestamp = "2026-01-22T14:12:37Z".parse().unwrap();
        let ts = now.as_second().to_string();
        let sig = signature(&secret, &ts, b"payload=%7B%7D");
        assert!(sig.starts_with("v0=") && sig.len() == 67);
        assert_eq!(verify_signature(&secret, Some(&ts), Some(&sig), b"payload=%7B%7D", now, DEFAULT_WINDOW), Ok(()));
        let later = Timestamp::from_second(now.as_second() + 301).unwrap();
        assert_eq!(
            verify_signature(&secret, Some(&ts), Some(&sig), b"payload=%7B%7D", later, DEFAULT_WINDOW),
            Err(SignatureError::Stale)
        );
        let edge = Timestamp::from_second(now.as_second() - 300).unwrap();
        assert_eq!(verify_signature(&secret, Some(&ts), Some(&sig), b"payload=%7B%7D", edge, DEFAULT_WINDOW), Ok(()));
        assert_eq!(SignatureError::Stale.code(), "slack.signature_stale");
    }
}
