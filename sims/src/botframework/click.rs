//! A user clicks an `Action.Execute` button: the channel sends the bot an
//! `adaptiveCard/action` invoke activity with a signed channel token.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::state::{ADAPTIVE_CARD, ActivityVersion, InvokeRecord, VersionSource, card_of};
use super::{BOT_FRAMEWORK_RESOURCE, BotService, TEAMS_CHANNEL_ID, teams_user_id};
use crate::error::SimError;

/// How a click's channel token is spoiled, to test that the bot refuses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    /// A valid token.
    #[default]
    None,
    /// Signed by a key that is not published, under the `kid` of the published one (a forgery).
    ForeignKey,
    /// Signed by a key that is not published, under a `kid` the JWKS does not list.
    UnpublishedKey,
    /// `aud` is another app.
    WrongAudience,
    /// `exp` ten minutes in the past (beyond any reasonable clock skew).
    Expired,
    /// `nbf` ten minutes in the future.
    NotYetValid,
    /// `serviceurl` differs from the activity's `serviceUrl`.
    WrongServiceUrl,
    /// No `Authorization` header at all.
    NoAuthorization,
}

/// "User U clicks the button with verb V on activity A, having typed inputs I."
#[derive(Clone, Debug, PartialEq)]
pub struct Click {
    /// The clicking user: UPN, Entra object id or mail. Any tenant user may click (the bot must
    /// check that it is the expected approver).
    pub user: String,
    /// The activity (card) clicked.
    pub activity_id: String,
    /// When set, the activity must be in this conversation.
    pub conversation_id: Option<String>,
    /// The `verb` of the card's `Action.Execute`.
    pub verb: String,
    /// Merged over the action's `data` (use it to send data the card does not hold).
    pub data: Option<Map<String, Value>>,
    /// Input values (`Input.Text` ids), merged last, as Teams does.
    pub inputs: Map<String, Value>,
    pub tamper: Tamper,
}

impl Click {
    /// `user` clicks the button with `verb` on activity `activity_id`, no inputs.
    pub fn new(user: &str, activity_id: &str, verb: &str) -> Self {
        Self {
            user: user.to_owned(),
            activity_id: activity_id.to_owned(),
            conversation_id: None,
            verb: verb.to_owned(),
            data: None,
            inputs: Map::new(),
            tamper: Tamper::None,
        }
    }

    /// Sets an input value (`Input.Text` id → value).
    pub fn input(mut self, id: &str, value: impl Into<Value>) -> Self {
        self.inputs.insert(id.to_owned(), value.into());
        self
    }

    /// Adds data merged over the action's `data`.
    pub fn data(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data.get_or_insert_with(Map::new).insert(key.to_owned(), value.into());
        self
    }

    /// Requires the activity to be in this conversation.
    pub fn in_conversation(mut self, conversation_id: &str) -> Self {
        self.conversation_id = Some(conversation_id.to_owned());
        self
    }

    /// Spoils the channel token this way.
    pub fn tamper(mut self, tamper: Tamper) -> Self {
        self.tamper = tamper;
        self
    }
}

/// What the bot answered.
#[derive(Clone, Debug, Serialize)]
pub struct ClickResult {
    /// The HTTP status of the bot's answer.
    pub status: u16,
    /// The answer body (an `AdaptiveCardInvokeResponse`), JSON, or a string when it was not
    /// JSON, or null when empty.
    pub body: Value,
    /// Whether the answer carried a card that replaced the clicked one.
    pub card_replaced: bool,
    /// The invoke activity that was sent.
    pub invoke: Value,
}

/// `POST /sim/click`.
#[derive(Deserialize)]
pub(super) struct ClickBody {
    user: String,
    activity: String,
    #[serde(default)]
    conversation: Option<String>,
    verb: String,
    #[serde(default)]
    data: Option<Map<String, Value>>,
    #[serde(default)]
    inputs: Map<String, Value>,
    #[serde(default)]
    tamper: Tamper,
}

impl From<ClickBody> for Click {
    fn from(b: ClickBody) -> Self {
        Click {
            user: b.user,
            activity_id: b.activity,
            conversation_id: b.conversation,
            verb: b.verb,
            data: b.data,
            inputs: b.inputs,
            tamper: b.tamper,
        }
    }
}

/// The `Action.Execute` with this verb, anywhere in the card (actions, action sets, show-card
/// sub-cards).
fn find_action<'a>(node: &'a Value, verb: &str) -> Option<&'a Value> {
    match node {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("Action.Execute")
                && map.get("verb").and_then(Value::as_str) == Some(verb)
            {
                return Some(node);
            }
            map.values().find_map(|v| find_action(v, verb))
        }
        Value::Array(items) => items.iter().find_map(|v| find_action(v, verb)),
        _ => None,
    }
}

impl BotService {
    pub(super) async fn click(&self, click: Click) -> Result<ClickResult, SimError> {
        let (endpoint, bot_app_id, bot_name, timeout, lifetime) = {
            let cfg = self.cfg();
            (
                cfg.bot_endpoint.clone(),
                cfg.bot_app_id.clone(),
                cfg.bot_name.clone(),
                cfg.invoke_timeout,
                cfg.channel_token_lifetime,
            )
        };
        let endpoint = endpoint.ok_or_else(|| SimError::Config("no bot endpoint is set".to_owned()))?;
        let user =
            self.find_user(&click.user).cloned().ok_or_else(|| SimError::NotFound(format!("user {}", click.user)))?;
        let (conversation_id, card) = {
            let records = self.records();
            let activity = records
                .state
                .activity(&click.activity_id)
                .filter(|a| click.conversation_id.as_deref().is_none_or(|c| c == a.conversation_id))
                .ok_or_else(|| SimError::NotFound(format!("activity {}", click.activity_id)))?;
            (activity.conversation_id.clone(), activity.card().cloned())
        };
        let action = card.as_ref().and_then(|c| find_action(c, &click.verb)).cloned();
        if action.is_none() && click.data.is_none() {
            return Err(SimError::NotFound(format!("an Action.Execute with verb {:?} on the card", click.verb)));
        }
        let mut data =
            action.as_ref().and_then(|a| a.get("data")).and_then(Value::as_object).cloned().unwrap_or_default();
        data.extend(click.data.clone().unwrap_or_default());
        data.extend(click.inputs.clone());
        let mut action_value = Map::new();
        action_value.insert("type".into(), "Action.Execute".into());
        if let Some(title) = action.as_ref().and_then(|a| a.get("title")) {
            action_value.insert("title".into(), title.clone());
        }
        action_value.insert("verb".into(), click.verb.clone().into());
        action_value.insert("data".into(), Value::Object(data));

        let now = self.core.clock.now();
        let service_url = self.service_url();
        let invoke = serde_json::json!({
            "type": "invoke",
            "name": "adaptiveCard/action",
            "id": format!("f:{}", Uuid::new_v4().as_u128() % 10u128.pow(19)),
            "timestamp": now.to_string(),
            "localTimestamp": now.to_string(),
            "channelId": TEAMS_CHANNEL_ID,
            "serviceUrl": service_url,
            "from": { "id": teams_user_id(&user.id), "name": user.display_name, "aadObjectId": user.id },
            "conversation": { "conversationType": "personal", "tenantId": self.tenant_id, "id": conversation_id },
            "recipient": { "id": format!("28:{bot_app_id}"), "name": bot_name },
            "entities": [{ "locale": "en-US", "country": "US", "platform": "Web", "type": "clientInfo" }],
            "channelData": { "tenant": { "id": self.tenant_id }, "source": { "name": "message" }, "legacy": { "replyToId": click.activity_id } },
            "replyToId": click.activity_id,
            "value": { "action": Value::Object(action_value), "trigger": "manual" },
            "locale": "en-US",
        });
        let token = self.channel_token(click.tamper, &bot_app_id, &service_url, now, lifetime)?;

        let mut request = self
            .http
            .post(&endpoint)
            .timeout(timeout)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("User-Agent", "Microsoft-SkypeBotApi (Microsoft-BotFramework 3.0)")
            .header("x-ms-conversation-id", conversation_id.as_str())
            .header("x-ms-tenant-id", self.tenant_id.as_str())
            .body(invoke.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))
        };
        let new_card = (status == 200
            && body.get("statusCode").and_then(Value::as_u64) == Some(200)
            && body.get("type").and_then(Value::as_str) == Some(ADAPTIVE_CARD))
        .then(|| body.get("value").cloned())
        .flatten();

        let at = self.core.clock.now();
        let mut records = self.records();
        let mut card_replaced = false;
        if let Some(card) = new_card
            && let Some(activity) = records
                .state
                .conversations
                .iter_mut()
                .flat_map(|c| c.activities.iter_mut())
                .find(|a| a.id == click.activity_id)
        {
            let mut replaced = activity.current().as_object().cloned().unwrap_or_default();
            replaced.insert("id".into(), click.activity_id.clone().into());
            replaced
                .insert("attachments".into(), serde_json::json!([{ "contentType": ADAPTIVE_CARD, "content": card }]));
            activity.versions.push(ActivityVersion {
                at,
                source: VersionSource::InvokeResponse,
                activity: Value::Object(replaced),
            });
            card_replaced = card_of(activity.current()).is_some();
        }
        records.state.invokes.push(InvokeRecord {
            at,
            user_aad_object_id: user.id.clone(),
            conversation_id,
            activity_id: click.activity_id.clone(),
            verb: click.verb.clone(),
            tamper: click.tamper,
            status,
            response: body.clone(),
        });
        Ok(ClickResult { status, body, card_replaced, invoke })
    }

    /// The channel's token for one invoke, spoiled as `tamper` says (`None` for no header).
    fn channel_token(
        &self,
        tamper: Tamper,
        bot_app_id: &str,
        service_url: &str,
        now: Timestamp,
        lifetime: std::time::Duration,
    ) -> Result<Option<String>, SimError> {
        let life = SignedDuration::try_from(lifetime).unwrap_or(SignedDuration::from_mins(5));
        let ten = SignedDuration::from_mins(10);
        let (nbf, exp) = match tamper {
            Tamper::Expired => (now - ten - life, now - ten),
            Tamper::NotYetValid => (now + ten, now + ten + life),
            _ => (now, now + life),
        };
        let audience = if tamper == Tamper::WrongAudience { Uuid::new_v4().to_string() } else { bot_app_id.to_owned() };
        let serviceurl =
            if tamper == Tamper::WrongServiceUrl { format!("{service_url}other/") } else { service_url.to_owned() };
        let claims = serde_json::json!({
            "serviceurl": serviceurl,
            "nbf": nbf.as_second(),
            "exp": exp.as_second(),
            "iss": BOT_FRAMEWORK_RESOURCE,
            "aud": audience,
        });
        let key = match tamper {
            Tamper::NoAuthorization => return Ok(None),
            Tamper::ForeignKey => self.foreign_key()?.with_kid(self.keys.active().kid()),
            Tamper::UnpublishedKey => self.foreign_key()?,
            _ => self.keys.active(),
        };
        key.sign(&claims).map(Some)
    }
}
