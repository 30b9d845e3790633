//! The activities Teams sends a bot, and the bodies a bot answers a card click with.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The content type of an Adaptive Card attachment (and of a card-replacing invoke answer).
pub const ADAPTIVE_CARD_CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

/// An inbound activity, with the fields an approval needs. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// `invoke`, `message`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// `adaptiveCard/action` for a card click.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    /// `msteams`.
    #[serde(default)]
    pub channel_id: Option<String>,
    /// Where replies and card updates go (checked against the token's `serviceurl`).
    pub service_url: String,
    pub from: ChannelAccount,
    #[serde(default)]
    pub conversation: Option<ConversationAccount>,
    /// The activity (card) the click was on.
    #[serde(default)]
    pub reply_to_id: Option<String>,
    #[serde(default)]
    pub value: Option<Value>,
}

/// A user or bot in an activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelAccount {
    /// The Teams id (`29:…` for users, `28:…` for bots).
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The user's Entra object id: the approver's identity.
    #[serde(default)]
    pub aad_object_id: Option<String>,
}

/// The conversation of an activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationAccount {
    pub id: String,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub conversation_type: Option<String>,
}

/// The `Action.Execute` of an `adaptiveCard/action` invoke: its verb and its data (the card's
/// data with the user's inputs merged in). Never trust ids in `data` for who clicked: that is
/// [`ChannelAccount::aad_object_id`] of a verified activity.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionExecute {
    pub verb: String,
    pub data: Map<String, Value>,
}

impl Activity {
    /// Parses an activity from the raw request body.
    pub fn from_slice(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// The card action of an `adaptiveCard/action` invoke.
    pub fn action(&self) -> Option<ActionExecute> {
        if self.kind != "invoke" || self.name.as_deref() != Some("adaptiveCard/action") {
            return None;
        }
        let action = self.value.as_ref()?.get("action")?;
        if action.get("type").and_then(Value::as_str) != Some("Action.Execute") {
            return None;
        }
        let verb = action.get("verb").and_then(Value::as_str)?.to_owned();
        let data = action.get("data").and_then(Value::as_object).cloned().unwrap_or_default();
        Some(ActionExecute { verb, data })
    }
}

/// The invoke answer that replaces the clicked card with `card` (HTTP 200).
pub fn invoke_card_response(card: &Value) -> Value {
    serde_json::json!({ "statusCode": 200, "type": ADAPTIVE_CARD_CONTENT_TYPE, "value": card })
}

/// The invoke answer that shows a short message and leaves the card as it is (HTTP 200).
pub fn invoke_message_response(text: &str) -> Value {
    serde_json::json!({ "statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": text })
}

/// The invoke answer for a refused click (`400 BadRequest`, `403 Forbidden`, ...; still sent
/// with HTTP 200).
pub fn invoke_error_response(status: u16, code: &str, message: &str) -> Value {
    serde_json::json!({ "statusCode": status, "type": "application/vnd.microsoft.error",
        "value": { "code": code, "message": message } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_card_click() {
        let body = br#"{ "type": "invoke", "name": "adaptiveCard/action", "channelId": "msteams",
            "serviceUrl": "https://smba.trafficmanager.net/emea/",
            "from": { "id": "29:1abc", "aadObjectId": "a1b2", "name": "Megan Bowen" },
            "conversation": { "id": "a:1x", "tenantId": "t" }, "replyToId": "1700000000000",
            "value": { "action": { "type": "Action.Execute", "verb": "approve",
                "data": { "requestId": "REQ-1042", "justification": "ok" } }, "trigger": "manual" },
            "extra": 1 }"#;
        let a = Activity::from_slice(body).unwrap();
        assert_eq!(a.from.aad_object_id.as_deref(), Some("a1b2"));
        assert_eq!(a.conversation.as_ref().unwrap().tenant_id.as_deref(), Some("t"));
        let action = a.action().unwrap();
        assert_eq!(action.verb, "approve");
        assert_eq!(action.data["justification"], "ok");
        let message = Activity { kind: "message".into(), ..a };
        assert!(message.action().is_none());
        assert_eq!(invoke_card_response(&serde_json::json!({}))["type"], ADAPTIVE_CARD_CONTENT_TYPE);
        assert_eq!(invoke_error_response(403, "Forbidden", "no")["value"]["code"], "Forbidden");
        assert_eq!(invoke_message_response("Recorded")["value"], "Recorded");
    }
}
