//! What an alert says: the trigger event and its fields' limits.

use serde::{Deserialize, Serialize};

/// PagerDuty's limit on `payload.summary`, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// PagerDuty's limit on `dedup_key`, in characters.
pub const MAX_DEDUP_KEY_CHARS: usize = 255;

/// How bad it is: `payload.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    /// The wire value: `critical`, `error`, `warning` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// A link shown on the alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
    pub text: String,
}

/// A `trigger` event. `summary` is truncated to [`MAX_SUMMARY_CHARS`] on a character boundary
/// when sent; `custom_details` is omitted when null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerEvent {
    /// Events with the same key for an open alert merge into it. `None`: PagerDuty makes one
    /// and returns it.
    pub dedup_key: Option<String>,
    pub summary: String,
    /// The affected system (`grantline.prod`).
    pub source: String,
    pub severity: Severity,
    pub component: Option<String>,
    pub group: Option<String>,
    pub class: Option<String>,
    pub custom_details: serde_json::Value,
    pub links: Vec<Link>,
}

impl TriggerEvent {
    /// An event with the required fields and nothing else.
    pub fn new(summary: impl Into<String>, source: impl Into<String>, severity: Severity) -> Self {
        Self {
            dedup_key: None,
            summary: summary.into(),
            source: source.into(),
            severity,
            component: None,
            group: None,
            class: None,
            custom_details: serde_json::Value::Null,
            links: Vec::new(),
        }
    }

    /// Sets the dedup key.
    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }
}

/// At most [`MAX_SUMMARY_CHARS`] characters of `summary`, cut on a character boundary.
pub fn truncate_summary(summary: &str) -> &str {
    match summary.char_indices().nth(MAX_SUMMARY_CHARS) {
        Some((idx, _)) => &summary[..idx],
        None => summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        let long = "é".repeat(1500);
        let cut = truncate_summary(&long);
        assert_eq!(cut.chars().count(), 1024);
        assert_eq!(cut.len(), 2048);
        assert_eq!(truncate_summary("short"), "short");
        assert_eq!(serde_json::to_string(&Severity::Warning).unwrap(), "\"warning\"");
    }
}
