//! The two error classes that decide retry. Connectors classify at the edge, where the
//! error is born; workers hand the class to the queue, which applies the retry policy.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a failed step should be treated by the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum ErrorClass {
    /// Worth retrying with backoff (408, 5xx, timeouts, resets, unknown errors).
    /// `retry_after` is a floor the retry must not undercut.
    Transient {
        #[serde(default, with = "opt_millis", skip_serializing_if = "Option::is_none")]
        retry_after: Option<Duration>,
    },
    /// The upstream asked us to slow down (429). Retried after `retry_after` without
    /// consuming an attempt.
    Throttled {
        #[serde(default, with = "opt_millis", skip_serializing_if = "Option::is_none")]
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (other 4xx, policy violations, malformed data).
    Permanent,
}

impl ErrorClass {
    /// A transient error without a retry-after hint.
    pub const TRANSIENT: ErrorClass = ErrorClass::Transient { retry_after: None };

    /// True when the queue should try again.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ErrorClass::Permanent)
    }
}

/// A classified failure of one step: the class decides retry, the code is stable and
/// machine-readable (it ends up on tickets, in audit events and in dead letters), the
/// message is for humans and never carries secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct StepError {
    pub class: ErrorClass,
    pub code: String,
    pub message: String,
}

impl StepError {
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { class, code: code.into(), message: message.into() }
    }
    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::TRANSIENT, code, message)
    }
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, code, message)
    }
    pub fn throttled(retry_after: Option<Duration>, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Throttled { retry_after }, code, message)
    }
}

mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_round_trips_through_json() {
        let c = ErrorClass::Throttled { retry_after: Some(Duration::from_millis(2500)) };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(s, r#"{"class":"throttled","retry_after":2500}"#);
        assert_eq!(serde_json::from_str::<ErrorClass>(&s).unwrap(), c);
        assert!(!ErrorClass::Permanent.is_retryable());
        assert!(ErrorClass::TRANSIENT.is_retryable());
    }
}
