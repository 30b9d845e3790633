//! What the Slack simulator recorded: channels with every message and every version of it,
//! clicks delivered to the app, and what was posted to `response_url`s.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::click::Tamper;

/// A snapshot of the simulator's records.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SlackState {
    /// Channels, public ones first (as configured), then direct-message channels as opened.
    pub channels: Vec<ChannelRecord>,
    /// Clicks delivered to the Request URL, in order.
    pub interactions: Vec<Interaction>,
    /// Ephemeral messages posted through a `response_url` (seen only by the clicking user).
    pub ephemeral: Vec<EphemeralMessage>,
}

impl SlackState {
    /// A channel by id (`C…`, `D…`), by name (with or without `#`), or the direct-message
    /// channel of a user (`U…`).
    pub fn channel(&self, key: &str) -> Option<&ChannelRecord> {
        let name = key.strip_prefix('#').unwrap_or(key);
        self.channels.iter().find(|c| c.id == key || (!c.is_im && c.name == name) || c.user.as_deref() == Some(key))
    }

    /// The messages of a channel (see [`SlackState::channel`] for the keys), oldest first,
    /// deleted ones included. Empty for an unknown channel.
    pub fn messages(&self, channel: &str) -> Vec<SlackMessage> {
        self.channel(channel).map(|c| c.messages.clone()).unwrap_or_default()
    }

    /// One message by channel and `ts`.
    pub fn message(&self, channel: &str, ts: &str) -> Option<&SlackMessage> {
        self.channel(channel).and_then(|c| c.messages.iter().find(|m| m.ts == ts))
    }
}

/// A channel and its messages.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelRecord {
    pub id: String,
    /// The channel name (for a direct-message channel, the user's handle).
    pub name: String,
    /// A direct-message channel (`D…`) with [`ChannelRecord::user`].
    pub is_im: bool,
    pub user: Option<String>,
    /// Whether the bot is a member (posting elsewhere is `not_in_channel`).
    pub bot_member: bool,
    pub archived: bool,
    pub messages: Vec<SlackMessage>,
}

/// What produced a version of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageSource {
    /// `chat.postMessage`.
    Posted,
    /// `chat.update`.
    Updated,
    /// A `response_url` post with `replace_original`.
    ResponseUrl,
}

/// One version of a message.
#[derive(Clone, Debug, Serialize)]
pub struct MessageVersion {
    pub at: Timestamp,
    pub source: MessageSource,
    pub text: String,
    /// The Block Kit array (`null` without blocks).
    pub blocks: Value,
}

/// A message the bot posted, with every version it has had.
#[derive(Clone, Debug, Serialize)]
pub struct SlackMessage {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    /// The posting user (the bot user).
    pub user: String,
    /// Deleted through a `response_url` (`delete_original`).
    pub deleted: bool,
    /// Oldest first; the last is what people see.
    pub versions: Vec<MessageVersion>,
}

impl SlackMessage {
    /// What people see now.
    pub fn current(&self) -> &MessageVersion {
        // A message is created with one version and versions are only ever added.
        &self.versions[self.versions.len() - 1]
    }

    /// The current text.
    pub fn text(&self) -> &str {
        &self.current().text
    }

    /// The current blocks.
    pub fn blocks(&self) -> &Value {
        &self.current().blocks
    }

    /// Whether it changed after it was posted.
    pub fn was_updated(&self) -> bool {
        self.versions.len() > 1
    }
}

/// A message posted through a `response_url` that only the clicking user sees.
#[derive(Clone, Debug, Serialize)]
pub struct EphemeralMessage {
    pub at: Timestamp,
    pub channel: String,
    pub user: String,
    pub text: String,
    pub blocks: Value,
}

/// A click delivered to the app's Request URL, and its answer.
#[derive(Clone, Debug, Serialize)]
pub struct Interaction {
    pub at: Timestamp,
    /// The clicking user's Slack id.
    pub user: String,
    pub channel: String,
    pub message_ts: String,
    pub action_id: String,
    pub value: Option<String>,
    pub tamper: Tamper,
    /// Whether this was a byte-for-byte replay of an earlier delivery.
    pub replay: bool,
    /// The app's HTTP status.
    pub status: u16,
    /// The app's answer (JSON, a string, or null when empty).
    pub response: Value,
    /// The decoded `payload`.
    pub payload: Value,
    /// The exact form body sent (`payload=…`).
    pub request_body: String,
    /// The headers sent (signature and timestamp included).
    pub headers: Vec<(String, String)>,
}
