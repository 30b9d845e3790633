//! The `block_actions` interaction payload Slack POSTs when a user clicks a button:
//! `Content-Type: application/x-www-form-urlencoded`, body `payload=<url-encoded JSON>`.

use grantline_shared::StepError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One action of a click (a button press, usually exactly one per payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockAction {
    pub action_id: String,
    /// The button's `value`, when it has one.
    pub value: Option<String>,
    /// The `block_id` of the actions block (Slack generates one when the message set none).
    pub block_id: String,
}

/// A decoded `block_actions` payload: who clicked what on which message, and where to answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockActions {
    /// The clicking user's Slack id (`U…`).
    pub user_id: String,
    /// The user's handle (`user.username`, or `user.name`).
    pub user_name: String,
    pub team_id: String,
    /// The channel of the message (`C…`, or `D…` for a direct message).
    pub channel_id: String,
    /// The `ts` of the message that holds the buttons (for `chat.update`).
    pub message_ts: String,
    pub actions: Vec<BlockAction>,
    /// Accepts up to five follow-ups within 30 minutes ([`super::SlackClient::respond`]).
    pub response_url: String,
    /// Opens a modal within 3 seconds of the click; single use.
    pub trigger_id: String,
}

/// Why an interaction body could not be read. Permanent: the same body never parses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The form body has no `payload` field.
    #[error("the interaction body has no payload field")]
    MissingPayload,
    /// `payload` is not JSON, or lacks a field a click always has.
    #[error("the interaction payload is invalid: {0}")]
    Invalid(String),
    /// A valid payload of another type (`view_submission`, `shortcut`, ...).
    #[error("the interaction payload has type {0:?}, not block_actions")]
    UnexpectedType(String),
}

impl PayloadError {
    /// `slack.payload_missing`, `slack.payload_invalid` or `slack.payload_unexpected_type`.
    pub fn code(&self) -> &'static str {
        match self {
            PayloadError::MissingPayload => "slack.payload_missing",
            PayloadError::Invalid(_) => "slack.payload_invalid",
            PayloadError::UnexpectedType(_) => "slack.payload_unexpected_type",
        }
    }

    pub fn to_step_error(&self) -> StepError {
        StepError::permanent(self.code(), self.to_string())
    }
}

impl From<PayloadError> for StepError {
    fn from(err: PayloadError) -> Self {
        err.to_step_error()
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

fn required<'a>(v: &'a Value, paths: &[&[&str]], name: &str) -> Result<&'a str, PayloadError> {
    paths.iter().find_map(|p| str_at(v, p)).ok_or_else(|| PayloadError::Invalid(format!("no {name}")))
}

/// Parses the raw form body of an interactivity request (verify it first with
/// [`super::verify_signature`]) into [`BlockActions`].
pub fn parse_block_actions(raw_body: &[u8]) -> Result<BlockActions, PayloadError> {
    let payload = url::form_urlencoded::parse(raw_body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or(PayloadError::MissingPayload)?;
    let v: Value = serde_json::from_str(&payload).map_err(|e| PayloadError::Invalid(format!("not JSON: {e}")))?;
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind != "block_actions" {
        return Err(PayloadError::UnexpectedType(kind.to_owned()));
    }
    let user_id = required(&v, &[&["user", "id"]], "user.id")?.to_owned();
    let user_name =
        str_at(&v, &["user", "username"]).or_else(|| str_at(&v, &["user", "name"])).unwrap_or_default().to_owned();
    let team_id = required(&v, &[&["team", "id"], &["user", "team_id"]], "team.id")?.to_owned();
    let channel_id = required(&v, &[&["channel", "id"], &["container", "channel_id"]], "channel.id")?.to_owned();
    let message_ts =
        required(&v, &[&["container", "message_ts"], &["message", "ts"]], "container.message_ts")?.to_owned();
    let response_url = required(&v, &[&["response_url"]], "response_url")?.to_owned();
    let trigger_id = str_at(&v, &["trigger_id"]).unwrap_or_default().to_owned();
    let actions = v
        .get("actions")
        .and_then(Value::as_array)
        .ok_or_else(|| PayloadError::Invalid("no actions".to_owned()))?
        .iter()
        .map(|a| {
            let action_id = str_at(a, &["action_id"])
                .ok_or_else(|| PayloadError::Invalid("an action has no action_id".to_owned()))?
                .to_owned();
            Ok(BlockAction {
                action_id,
                value: a.get("value").and_then(Value::as_str).map(str::to_owned),
                block_id: str_at(a, &["block_id"]).unwrap_or_default().to_owned(),
            })
        })
        .collect::<Result<Vec<_>, PayloadError>>()?;
    Ok(BlockActions { user_id, user_name, team_id, channel_id, message_ts, actions, response_url, trigger_id })
}
