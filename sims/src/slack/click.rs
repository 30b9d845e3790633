//! A user clicks a button: Slack POSTs a signed `block_actions` payload to the app's Request
//! URL. And the `response_url` the payload carries.

use hmac::{Hmac, Mac};
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use super::blocks;
use super::state::{EphemeralMessage, Interaction, MessageSource, MessageVersion, SlackMessage};
use super::{ResponseUrl, SentClick, SlackService, slack_json};
use crate::error::SimError;
use crate::server::{SimRequest, SimResponse, admin_error, admin_ok};

/// How a click's request is spoiled, to test that the app refuses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    /// A genuine request.
    #[default]
    None,
    /// Timestamp (and signature over it) six minutes in the past: outside the replay window.
    StaleTimestamp,
    /// Timestamp six minutes in the future.
    FutureTimestamp,
    /// Signed with another secret.
    BadSignature,
    /// Signed correctly, then one byte of the body changed.
    TamperedBody,
    /// No `X-Slack-Signature` header.
    MissingSignature,
    /// No `X-Slack-Request-Timestamp` header.
    MissingTimestamp,
    /// Neither header.
    MissingHeaders,
}

/// "User U clicks the element A of message T in channel C."
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Click {
    /// Slack user id, email or directory id. Any member may click (the app must check who).
    pub user: String,
    /// Channel id (`C…`, `D…`), name, or the user id of a direct-message channel.
    pub channel: String,
    pub ts: String,
    pub action_id: String,
    /// Overrides the element's `value` (`None` keeps the element's).
    pub value: Option<String>,
    pub tamper: Tamper,
}

impl Click {
    pub fn new(user: &str, channel: &str, ts: &str, action_id: &str) -> Self {
        Self {
            user: user.to_owned(),
            channel: channel.to_owned(),
            ts: ts.to_owned(),
            action_id: action_id.to_owned(),
            value: None,
            tamper: Tamper::None,
        }
    }

    pub fn value(mut self, value: &str) -> Self {
        self.value = Some(value.to_owned());
        self
    }

    pub fn tamper(mut self, tamper: Tamper) -> Self {
        self.tamper = tamper;
        self
    }
}

/// What the app answered to a click.
#[derive(Clone, Debug, Serialize)]
pub struct ClickResult {
    /// The app's HTTP status.
    pub status: u16,
    /// The app's answer: JSON, a string when it was not JSON, null when empty.
    pub body: Value,
    /// The `block_actions` payload sent.
    pub payload: Value,
    /// The `response_url` in the payload.
    pub response_url: String,
    pub trigger_id: String,
    /// The delivery's index (for [`super::SlackSim::replay`]).
    pub delivery: usize,
}

/// `POST /sim/click`.
#[derive(Deserialize)]
pub(super) struct ClickBody {
    user: String,
    channel: String,
    ts: String,
    action_id: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    tamper: Tamper,
}

impl From<ClickBody> for Click {
    fn from(b: ClickBody) -> Self {
        Click { user: b.user, channel: b.channel, ts: b.ts, action_id: b.action_id, value: b.value, tamper: b.tamper }
    }
}

pub(super) fn admin_result(result: Result<ClickResult, SimError>) -> SimResponse {
    match result {
        Ok(r) => admin_ok(&r),
        Err(SimError::NotFound(what)) => admin_error(404, &format!("not found: {what}")),
        Err(SimError::Config(what)) => admin_error(409, &what),
        Err(e) => admin_error(502, &e.to_string()),
    }
}

fn sign(secret: &str, timestamp: &str, body: &str) -> String {
    let hex = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map(|mut mac| {
            mac.update(format!("v0:{timestamp}:").as_bytes());
            mac.update(body.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        })
        .unwrap_or_default();
    format!("v0={hex}")
}

fn random_digits(n: usize) -> String {
    Uuid::new_v4().as_u128().to_string().chars().take(n).collect()
}

impl SlackService {
    pub(super) async fn click(&self, click: Click) -> Result<ClickResult, SimError> {
        let cfg = self.cfg().clone();
        let url = cfg.request_url.clone().ok_or_else(|| SimError::Config("no Request URL is set".to_owned()))?;
        let user =
            self.find_user(&click.user).cloned().ok_or_else(|| SimError::NotFound(format!("user {}", click.user)))?;
        let now = self.core.clock.now();
        let (channel_id, channel_name, message) = {
            let ws = self.workspace();
            let channel = ws
                .state
                .channel(&click.channel)
                .ok_or_else(|| SimError::NotFound(format!("channel {}", click.channel)))?;
            let message = channel
                .messages
                .iter()
                .find(|m| m.ts == click.ts && !m.deleted)
                .cloned()
                .ok_or_else(|| SimError::NotFound(format!("message {} in {}", click.ts, click.channel)))?;
            (channel.id.clone(), channel.name.clone(), message)
        };
        let found = blocks::find_action(message.blocks(), &click.action_id);
        if found.is_none() && click.value.is_none() {
            return Err(SimError::NotFound(format!("an element with action_id {:?} on the message", click.action_id)));
        }
        let (element, block_id) = found.map_or((Value::Null, None), |(e, b)| (e.clone(), b.map(str::to_owned)));
        // Slack generates a block_id when the message set none.
        let block_id = block_id.unwrap_or_else(|| Uuid::new_v4().simple().to_string()[..5].to_owned());
        let value = click.value.clone().or_else(|| element.get("value").and_then(Value::as_str).map(str::to_owned));

        let action_ts = format!("{}.{:06}", now.as_second(), now.subsec_microsecond());
        let trigger_id = format!("{}.{}.{}", random_digits(13), random_digits(12), Uuid::new_v4().simple());
        let secret_part = Uuid::new_v4().simple().to_string()[..24].to_owned();
        let path = format!("/actions/{}/{}/{}", cfg.team_id, random_digits(13), secret_part);
        let response_url = format!("{}{}", self.core.base_url, path);

        let mut action = json!({
            "type": element.get("type").and_then(Value::as_str).unwrap_or("button"),
            "action_id": click.action_id,
            "block_id": block_id,
            "text": element.get("text").cloned().unwrap_or_else(|| json!({ "type": "plain_text", "text": click.action_id })),
            "action_ts": action_ts,
        });
        if let Some(v) = &value {
            action["value"] = json!(v);
        }
        if let Some(style) = element.get("style") {
            action["style"] = style.clone();
        }
        let current = message.current();
        let mut message_json = json!({
            "bot_id": cfg.bot_id, "type": "message", "text": current.text, "user": message.user,
            "ts": message.ts, "app_id": cfg.api_app_id, "team": cfg.team_id,
        });
        if !current.blocks.is_null() {
            message_json["blocks"] = current.blocks.clone();
        }
        let payload = json!({
            "type": "block_actions",
            "user": { "id": user.id, "username": user.name, "name": user.name, "team_id": cfg.team_id },
            "api_app_id": cfg.api_app_id,
            "token": cfg.verification_token,
            "container": { "type": "message", "message_ts": message.ts, "channel_id": channel_id, "is_ephemeral": false },
            "trigger_id": trigger_id,
            "team": { "id": cfg.team_id, "domain": cfg.team_domain },
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": { "id": channel_id, "name": if channel_id.starts_with('D') { "directmessage".to_owned() } else { channel_name } },
            "message": message_json,
            "state": { "values": {} },
            "response_url": response_url,
            "actions": [action],
        });
        let mut body =
            url::form_urlencoded::Serializer::new(String::new()).append_pair("payload", &payload.to_string()).finish();

        let six = SignedDuration::from_mins(6);
        let stamp = match click.tamper {
            Tamper::StaleTimestamp => now - six,
            Tamper::FutureTimestamp => now + six,
            _ => now,
        };
        let ts = stamp.as_second().to_string();
        let signature = match click.tamper {
            Tamper::BadSignature => sign("not-the-signing-secret", &ts, &body),
            _ => sign(&cfg.signing_secret, &ts, &body),
        };
        if click.tamper == Tamper::TamperedBody {
            // The signed bytes are no longer the bytes sent (the payload itself still parses).
            body.push_str("&tampered=1");
        }
        let mut headers: Vec<(String, String)> = vec![
            ("Content-Type".into(), "application/x-www-form-urlencoded".into()),
            ("User-Agent".into(), "Slackbot 1.0 (+https://api.slack.com/robots)".into()),
        ];
        if !matches!(click.tamper, Tamper::MissingTimestamp | Tamper::MissingHeaders) {
            headers.push(("X-Slack-Request-Timestamp".into(), ts));
        }
        if !matches!(click.tamper, Tamper::MissingSignature | Tamper::MissingHeaders) {
            headers.push(("X-Slack-Signature".into(), signature));
        }
        {
            let mut ws = self.workspace();
            ws.response_urls.push(ResponseUrl {
                path,
                channel: channel_id.clone(),
                ts: message.ts.clone(),
                user: user.id.clone(),
                created_at: now,
                uses: 0,
            });
        }
        let meta = Interaction {
            at: now,
            user: user.id.clone(),
            channel: channel_id,
            message_ts: message.ts.clone(),
            action_id: click.action_id.clone(),
            value,
            tamper: click.tamper,
            replay: false,
            status: 0,
            response: Value::Null,
            payload: payload.clone(),
            request_body: body.clone(),
            headers: headers.clone(),
        };
        let (status, answer, delivery) = self.deliver(&url, headers, body, meta, &cfg).await?;
        Ok(ClickResult { status, body: answer, payload, response_url, trigger_id, delivery })
    }

    /// POSTs a click and records it; returns the status, the answer and the delivery index.
    async fn deliver(
        &self,
        url: &str,
        headers: Vec<(String, String)>,
        body: String,
        mut meta: Interaction,
        cfg: &super::SlackConfig,
    ) -> Result<(u16, Value, usize), SimError> {
        let mut request = self.http.post(url).timeout(cfg.interaction_timeout).body(body.clone());
        for (k, v) in &headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let answer = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))
        };
        meta.status = status;
        meta.response = answer.clone();
        let mut ws = self.workspace();
        let index = ws.state.interactions.len();
        ws.state.interactions.push(meta);
        ws.sent.push(SentClick { url: url.to_owned(), headers, body, index });
        Ok((status, answer, index))
    }

    pub(super) async fn replay(&self, index: Option<usize>) -> Result<ClickResult, SimError> {
        let cfg = self.cfg().clone();
        let (sent, mut meta) = {
            let ws = self.workspace();
            let sent = match index {
                Some(i) => ws.sent.iter().find(|s| s.index == i),
                None => ws.sent.last(),
            }
            .cloned()
            .ok_or_else(|| SimError::NotFound("an earlier click to replay".to_owned()))?;
            let meta =
                ws.state.interactions.get(sent.index).cloned().ok_or_else(|| SimError::NotFound("delivery".into()))?;
            (sent, meta)
        };
        meta.at = self.core.clock.now();
        meta.replay = true;
        let payload = meta.payload.clone();
        let (status, answer, delivery) = self.deliver(&sent.url, sent.headers, sent.body, meta, &cfg).await?;
        let text = |k: &str| payload.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        Ok(ClickResult {
            status,
            body: answer,
            response_url: text("response_url"),
            trigger_id: text("trigger_id"),
            payload,
            delivery,
        })
    }

    /// `POST /actions/{team}/{id}/{secret}`: a follow-up to a click.
    pub(super) fn response_url(&self, req: &SimRequest) -> SimResponse {
        let now = self.core.clock.now();
        let (uses_allowed, lifetime, bot_user) = {
            let cfg = self.cfg();
            (cfg.response_url_uses, cfg.response_url_lifetime, cfg.bot_user_id.clone())
        };
        let not_found = |error: &str| slack_json(404, &json!({ "ok": false, "error": error }));
        let mut ws = self.workspace();
        let Some(entry) = ws.response_urls.iter_mut().find(|r| r.path == req.path) else {
            return not_found("invalid_url");
        };
        let age = now.duration_since(entry.created_at);
        if age > SignedDuration::try_from(lifetime).unwrap_or(SignedDuration::MAX) {
            return not_found("expired_url");
        }
        if entry.uses >= uses_allowed {
            return not_found("used_url");
        }
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return slack_json(400, &json!({ "ok": false, "error": "invalid_payload" })),
        };
        entry.uses += 1;
        let target = entry.clone();
        let truthy = |k: &str| body.get(k).and_then(Value::as_bool).unwrap_or(false);
        let text = body.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
        let blocks = body.get("blocks").cloned().unwrap_or(Value::Null);
        if truthy("delete_original") {
            if let Some(m) =
                ws.channel_mut(&target.channel).and_then(|c| c.messages.iter_mut().find(|m| m.ts == target.ts))
            {
                m.deleted = true;
            }
        } else if truthy("replace_original") {
            if let Some(m) =
                ws.channel_mut(&target.channel).and_then(|c| c.messages.iter_mut().find(|m| m.ts == target.ts))
            {
                m.versions.push(MessageVersion { at: now, source: MessageSource::ResponseUrl, text, blocks });
            }
        } else if body.get("response_type").and_then(Value::as_str) == Some("in_channel") {
            let ts = ws.next_ts(now);
            let thread_ts = body.get("thread_ts").and_then(Value::as_str).map(str::to_owned);
            if let Some(c) = ws.channel_mut(&target.channel) {
                c.messages.push(SlackMessage {
                    channel: target.channel.clone(),
                    ts,
                    thread_ts,
                    user: bot_user,
                    deleted: false,
                    versions: vec![MessageVersion { at: now, source: MessageSource::Posted, text, blocks }],
                });
            }
        } else {
            ws.state.ephemeral.push(EphemeralMessage {
                at: now,
                channel: target.channel,
                user: target.user,
                text,
                blocks,
            });
        }
        slack_json(200, &json!({ "ok": true }))
    }
}
