//! What the Bot Framework simulator recorded: conversations and every version of every
//! activity, card clicks and the bot's answers, and the messages posted to Workflows channels.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The content type of an Adaptive Card attachment.
pub const ADAPTIVE_CARD: &str = "application/vnd.microsoft.card.adaptive";

/// A snapshot of the simulator's records.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BotFrameworkState {
    /// 1:1 conversations between the bot and a user, in creation order.
    pub conversations: Vec<Conversation>,
    /// Workflows channels and what was posted to them.
    pub channels: Vec<Channel>,
    /// Card clicks delivered to the bot, in order.
    pub invokes: Vec<InvokeRecord>,
}

impl BotFrameworkState {
    /// The conversation with a user (by Entra object id).
    pub fn conversation_with(&self, aad_object_id: &str) -> Option<&Conversation> {
        self.conversations.iter().find(|c| c.user_aad_object_id.eq_ignore_ascii_case(aad_object_id))
    }

    /// A conversation by id.
    pub fn conversation(&self, id: &str) -> Option<&Conversation> {
        self.conversations.iter().find(|c| c.id == id)
    }

    /// An activity by id, in whichever conversation holds it.
    pub fn activity(&self, id: &str) -> Option<&RecordedActivity> {
        self.conversations.iter().flat_map(|c| c.activities.iter()).find(|a| a.id == id)
    }

    /// A Workflows channel by name.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// A personal (1:1) conversation of the bot with one user.
#[derive(Clone, Debug, Serialize)]
pub struct Conversation {
    /// `a:…`.
    pub id: String,
    pub tenant_id: String,
    /// The user's Entra object id.
    pub user_aad_object_id: String,
    /// The user's Teams id (`29:…`).
    pub user_id: String,
    pub created_at: Timestamp,
    pub activities: Vec<RecordedActivity>,
}

/// One activity the bot sent, with every version it has had.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedActivity {
    pub id: String,
    pub conversation_id: String,
    /// Oldest first; the last one is what the user sees.
    pub versions: Vec<ActivityVersion>,
}

impl RecordedActivity {
    /// The activity as the user sees it now.
    pub fn current(&self) -> &Value {
        self.versions.last().map_or(&Value::Null, |v| &v.activity)
    }

    /// The Adaptive Card the user sees now.
    pub fn card(&self) -> Option<&Value> {
        card_of(self.current())
    }

    /// The card of every version, oldest first (versions without a card are skipped).
    pub fn cards(&self) -> Vec<&Value> {
        self.versions.iter().filter_map(|v| card_of(&v.activity)).collect()
    }

    /// Whether the activity was changed after it was sent (an update or a card the bot
    /// returned from a click).
    pub fn was_replaced(&self) -> bool {
        self.versions.len() > 1
    }
}

/// What produced a version of an activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionSource {
    /// `POST …/activities`.
    Sent,
    /// `PUT …/activities/{id}`.
    Updated,
    /// The card the bot returned in its answer to a click.
    InvokeResponse,
}

/// One version of an activity.
#[derive(Clone, Debug, Serialize)]
pub struct ActivityVersion {
    pub at: Timestamp,
    pub source: VersionSource,
    /// The activity body (with its `id`).
    pub activity: Value,
}

/// A Workflows channel ("post to a channel when a webhook request is received").
#[derive(Clone, Debug, Serialize)]
pub struct Channel {
    pub name: String,
    pub workflow_id: String,
    pub messages: Vec<ChannelMessage>,
}

/// A message posted to a Workflows channel.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelMessage {
    pub at: Timestamp,
    pub body: Value,
}

impl ChannelMessage {
    /// The Adaptive Cards among the message's attachments.
    pub fn cards(&self) -> Vec<&Value> {
        cards_of(&self.body)
    }
}

/// A click delivered to the bot and what the bot answered.
#[derive(Clone, Debug, Serialize)]
pub struct InvokeRecord {
    pub at: Timestamp,
    /// The clicking user's Entra object id.
    pub user_aad_object_id: String,
    pub conversation_id: String,
    pub activity_id: String,
    pub verb: String,
    /// How the channel token was tampered with, if at all.
    pub tamper: super::Tamper,
    /// The bot's HTTP status.
    pub status: u16,
    /// The bot's answer (JSON, or a string when it was not JSON).
    pub response: Value,
}

/// The first Adaptive Card attachment of an activity.
pub(crate) fn card_of(activity: &Value) -> Option<&Value> {
    cards_of(activity).into_iter().next()
}

fn cards_of(activity: &Value) -> Vec<&Value> {
    activity
        .get("attachments")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter(|a| a.get("contentType").and_then(Value::as_str) == Some(ADAPTIVE_CARD))
                .filter_map(|a| a.get("content"))
                .collect()
        })
        .unwrap_or_default()
}
