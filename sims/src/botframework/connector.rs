//! The Bot Connector REST API under the service URL: conversations and activities.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::Digest as _;

use super::state::{ActivityVersion, Conversation, RecordedActivity, VersionSource};
use super::{BOT_FRAMEWORK_RESOURCE, BotService, bf_error, denied, teams_user_id};
use crate::server::{SimRequest, SimResponse};

impl BotService {
    /// `…/teams/v3/{rest}`: every call needs the bot's Bot Connector token.
    pub(super) fn connector(&self, req: &SimRequest, rest: &[&str]) -> SimResponse {
        let mut resp = match self.authenticate(req) {
            Err(resp) => resp,
            Ok(()) => match (req.method.as_str(), rest) {
                ("POST", ["conversations"]) => self.create_conversation(req),
                ("POST", ["conversations", id, "activities"]) => self.send_activity(req, id, None),
                ("POST", ["conversations", id, "activities", reply_to]) => self.send_activity(req, id, Some(reply_to)),
                ("PUT", ["conversations", id, "activities", activity]) => self.update_activity(req, id, activity),
                _ => bf_error(404, "NotFound", "The requested resource does not exist."),
            },
        };
        let cv = req
            .header("ms-cv")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}.0", URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())));
        resp.default_header("MS-CV", cv);
        resp
    }

    fn authenticate(&self, req: &SimRequest) -> Result<(), SimResponse> {
        let header = req.header("authorization").unwrap_or("").trim();
        let token = match header.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => return Err(denied()),
        };
        let record = self.tokens.lookup(token).ok_or_else(denied)?;
        let now = self.core.clock.now();
        if record.audience != BOT_FRAMEWORK_RESOURCE || now < record.not_before || now >= record.expires_at {
            return Err(denied());
        }
        if !record.app_id.eq_ignore_ascii_case(&self.cfg().bot_app_id) {
            return Err(bf_error(401, "BotNotRegistered", "No registration found for this bot."));
        }
        Ok(())
    }

    /// `POST /v3/conversations`: a personal conversation with one member.
    fn create_conversation(&self, req: &SimRequest) -> SimResponse {
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return bf_error(400, "BadArgument", "Invalid conversation parameters.");
        };
        if body.get("isGroup").and_then(Value::as_bool) == Some(true) {
            return bf_error(400, "BadArgument", "Bots cannot create group conversations.");
        }
        let bot_app_id = self.cfg().bot_app_id.clone();
        if let Some(bot) = body.pointer("/bot/id").and_then(Value::as_str) {
            let id = bot.strip_prefix("28:").unwrap_or(bot);
            if !id.eq_ignore_ascii_case(&bot_app_id) {
                return bf_error(400, "BadArgument", "Invalid bot id.");
            }
        }
        let members = body.get("members").and_then(Value::as_array).cloned().unwrap_or_default();
        let [member] = members.as_slice() else {
            return bf_error(400, "BadArgument", "A personal conversation needs exactly one member.");
        };
        let tenant = body
            .get("tenantId")
            .and_then(Value::as_str)
            .or_else(|| body.pointer("/channelData/tenant/id").and_then(Value::as_str));
        let Some(tenant) = tenant else {
            return bf_error(400, "BadArgument", "Tenant id is required.");
        };
        let user = member.get("id").and_then(Value::as_str).and_then(|id| self.find_user(id));
        let Some(user) = user.filter(|_| tenant.eq_ignore_ascii_case(&self.tenant_id)) else {
            return bf_error(400, "BadArgument", "Invalid user identity in provided tenant");
        };
        let mut records = self.records();
        if records.uninstalled.contains(&user.id) {
            return bf_error(403, "BotNotInConversationRoster", "The bot is not part of the conversation roster.");
        }
        let digest = sha2::Sha256::digest(format!("{bot_app_id}:{}", user.id).as_bytes());
        let id = format!("a:1{}", URL_SAFE_NO_PAD.encode(digest));
        if records.state.conversation(&id).is_none() {
            let conversation = Conversation {
                id: id.clone(),
                tenant_id: self.tenant_id.clone(),
                user_aad_object_id: user.id.clone(),
                user_id: teams_user_id(&user.id),
                created_at: self.core.clock.now(),
                activities: Vec::new(),
            };
            records.state.conversations.push(conversation);
        }
        created(201, &id)
    }

    /// `POST /v3/conversations/{id}/activities[/{replyToId}]`.
    fn send_activity(&self, req: &SimRequest, conversation_id: &str, reply_to: Option<&str>) -> SimResponse {
        let activity = match parse_activity(req) {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        let now = self.core.clock.now();
        let mut records = self.records();
        let id = {
            let ms = now.as_millisecond().max(records.last_activity_ms + 1);
            records.last_activity_ms = ms;
            ms.to_string()
        };
        let Some(conversation) = records.state.conversations.iter_mut().find(|c| c.id == conversation_id) else {
            return bf_error(404, "ConversationNotFound", "Conversation not found.");
        };
        let mut activity = activity;
        activity.insert("id".into(), id.clone().into());
        if let Some(reply_to) = reply_to {
            activity.insert("replyToId".into(), reply_to.into());
        }
        conversation.activities.push(RecordedActivity {
            id: id.clone(),
            conversation_id: conversation_id.to_owned(),
            versions: vec![ActivityVersion { at: now, source: VersionSource::Sent, activity: Value::Object(activity) }],
        });
        created(201, &id)
    }

    /// `PUT /v3/conversations/{id}/activities/{activityId}`.
    fn update_activity(&self, req: &SimRequest, conversation_id: &str, activity_id: &str) -> SimResponse {
        let activity = match parse_activity(req) {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        let now = self.core.clock.now();
        let mut records = self.records();
        let Some(conversation) = records.state.conversations.iter_mut().find(|c| c.id == conversation_id) else {
            return bf_error(404, "ConversationNotFound", "Conversation not found.");
        };
        let Some(recorded) = conversation.activities.iter_mut().find(|a| a.id == activity_id) else {
            return bf_error(404, "NotFound", "Activity not found in this conversation.");
        };
        let mut activity = activity;
        activity.insert("id".into(), activity_id.into());
        recorded.versions.push(ActivityVersion {
            at: now,
            source: VersionSource::Updated,
            activity: Value::Object(activity),
        });
        created(200, activity_id)
    }
}

fn parse_activity(req: &SimRequest) -> Result<serde_json::Map<String, Value>, SimResponse> {
    let Ok(Value::Object(activity)) = serde_json::from_slice::<Value>(&req.body) else {
        return Err(bf_error(400, "BadArgument", "Invalid activity payload."));
    };
    if activity.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(bf_error(400, "BadArgument", "Activity type is required."));
    }
    Ok(activity)
}

fn created(status: u16, id: &str) -> SimResponse {
    SimResponse::json_bytes(status, "application/json; charset=utf-8", serde_json::json!({ "id": id }).to_string())
}
