//! The Web API methods: argument parsing (JSON, form, query), the bearer check, scopes, and
//! each method's answers.

use jiff::Timestamp;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::blocks::{self, BlocksError};
use super::state::{MessageSource, MessageVersion, SlackMessage};
use super::{SlackService, SlackUser, Workspace, slack_json};
use crate::server::{SimRequest, SimResponse};

/// Longest `text` accepted.
const MAX_TEXT: usize = 40_000;

/// A fresh `x-slack-req-id`.
pub(crate) fn request_id() -> String {
    Uuid::new_v4().simple().to_string()
}

/// The arguments of one call, from the query string and a JSON or form body.
struct Args {
    values: Map<String, Value>,
    /// A `token` argument (form or query).
    token: Option<String>,
    /// `blocks` sent in a form body but not parseable as JSON.
    blocks_unparsed: bool,
}

impl Args {
    fn parse(req: &SimRequest) -> Args {
        let mut values = Map::new();
        let mut token = None;
        let mut blocks_unparsed = false;
        let mut take_pair = |k: String, v: String, values: &mut Map<String, Value>| {
            if k == "token" {
                token = Some(v);
            } else if k == "blocks" || k == "attachments" {
                match serde_json::from_str::<Value>(&v) {
                    Ok(parsed) => {
                        values.insert(k, parsed);
                    }
                    Err(_) => {
                        blocks_unparsed = k == "blocks";
                        values.insert(k, Value::String(v));
                    }
                }
            } else {
                values.insert(k, Value::String(v));
            }
        };
        for (k, v) in req.query_pairs() {
            take_pair(k, v, &mut values);
        }
        let ct = req.header("content-type").unwrap_or("").to_ascii_lowercase();
        if ct.starts_with("application/json") {
            if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&req.body) {
                values.extend(map);
            }
        } else if !req.body.is_empty() {
            for (k, v) in url::form_urlencoded::parse(&req.body) {
                take_pair(k.into_owned(), v.into_owned(), &mut values);
            }
        }
        Args { values, token, blocks_unparsed }
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
    }

    fn truthy(&self, key: &str) -> bool {
        match self.values.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true" || s == "1",
            _ => false,
        }
    }
}

/// One answer: status, JSON body, and the scopes the method accepts.
struct Answer {
    status: u16,
    body: Value,
    accepted_scopes: &'static str,
    retry_after: Option<u64>,
}

fn ok(accepted_scopes: &'static str, body: Value) -> Answer {
    let mut body = body;
    body["ok"] = Value::Bool(true);
    Answer { status: 200, body, accepted_scopes, retry_after: None }
}

fn fail(accepted_scopes: &'static str, error: &str) -> Answer {
    Answer { status: 200, body: json!({ "ok": false, "error": error }), accepted_scopes, retry_after: None }
}

fn user_json(u: &SlackUser, team_id: &str, with_email: bool) -> Value {
    let mut profile = json!({
        "real_name": u.real_name,
        "display_name": u.name,
        "real_name_normalized": u.real_name,
        "display_name_normalized": u.name,
        "team": team_id,
    });
    if with_email && let Some(e) = &u.email {
        profile["email"] = json!(e);
    }
    json!({
        "id": u.id,
        "team_id": team_id,
        "name": u.name,
        "deleted": u.deleted,
        "real_name": u.real_name,
        "tz": "Europe/London",
        "tz_label": "Greenwich Mean Time",
        "tz_offset": 0,
        "profile": profile,
        "is_admin": false,
        "is_owner": false,
        "is_bot": u.is_bot,
        "is_app_user": false,
    })
}

impl SlackService {
    /// `/api/{method}`.
    pub(crate) fn web_api(&self, method: &str, req: &SimRequest) -> SimResponse {
        let now = self.core.clock.now();
        let args = Args::parse(req);
        let (token, scopes) = {
            let cfg = self.cfg();
            (cfg.bot_token.clone(), cfg.scopes.clone())
        };
        let answer = match method {
            "chat.postMessage"
            | "chat.update"
            | "users.info"
            | "users.lookupByEmail"
            | "conversations.open"
            | "auth.test" => {
                let presented = req
                    .header("authorization")
                    .and_then(|h| h.split_once(' '))
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim().to_owned())
                    .or_else(|| args.token.clone())
                    .filter(|t| !t.is_empty());
                match presented {
                    None => fail("", "not_authed"),
                    Some(t) if t != token => fail("", "invalid_auth"),
                    Some(_) => self.method(method, &args, &scopes, now),
                }
            }
            _ => Answer {
                status: 404,
                body: json!({ "ok": false, "error": "unknown_method", "req_method": method }),
                accepted_scopes: "",
                retry_after: None,
            },
        };
        let mut resp = slack_json(answer.status, &answer.body)
            .header("x-slack-req-id", request_id())
            .header("x-oauth-scopes", scopes.join(","))
            .header("x-accepted-oauth-scopes", answer.accepted_scopes);
        if let Some(secs) = answer.retry_after {
            resp = resp.header("Retry-After", secs.to_string());
        }
        resp
    }

    fn method(&self, method: &str, args: &Args, scopes: &[String], now: Timestamp) -> Answer {
        let needed: &'static str = match method {
            "chat.postMessage" | "chat.update" => "chat:write",
            "users.info" => "users:read",
            "users.lookupByEmail" => "users:read.email",
            "conversations.open" => "im:write",
            _ => "",
        };
        if !needed.is_empty() && !scopes.iter().any(|s| s == needed) {
            return Answer {
                status: 200,
                body: json!({ "ok": false, "error": "missing_scope", "needed": needed, "provided": scopes.join(",") }),
                accepted_scopes: needed,
                retry_after: None,
            };
        }
        let has_email = scopes.iter().any(|s| s == "users:read.email");
        let team_id = self.cfg().team_id.clone();
        match method {
            "chat.postMessage" => self.post_message(args, now),
            "chat.update" => self.update_message(args, now),
            "users.info" => match args.str("user").and_then(|u| self.users.iter().find(|x| x.id == u)) {
                Some(u) => ok(needed, json!({ "user": user_json(u, &team_id, has_email) })),
                None => fail(needed, "user_not_found"),
            },
            "users.lookupByEmail" => {
                let found = args.str("email").and_then(|e| {
                    self.users.iter().find(|u| u.email.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(e)))
                });
                match found {
                    Some(u) => ok(needed, json!({ "user": user_json(u, &team_id, true) })),
                    None => fail(needed, "users_not_found"),
                }
            }
            "conversations.open" => self.open_conversation(args),
            _ => {
                let cfg = self.cfg();
                ok(
                    "",
                    json!({
                        "url": format!("https://{}.slack.com/", cfg.team_domain),
                        "team": cfg.team_domain, "user": "grantline", "team_id": cfg.team_id,
                        "user_id": cfg.bot_user_id, "bot_id": cfg.bot_id, "is_enterprise_install": false,
                    }),
                )
            }
        }
    }

    fn open_conversation(&self, args: &Args) -> Answer {
        const SCOPES: &str = "im:write";
        let Some(users) = args.str("users") else {
            return match args.str("channel") {
                Some(c) if self.workspace().state.channels.iter().any(|x| x.id == c && x.is_im) => {
                    ok(SCOPES, json!({ "channel": { "id": c }, "no_op": true, "already_open": true }))
                }
                Some(_) => fail(SCOPES, "channel_not_found"),
                None => fail(SCOPES, "users_list_not_supplied"),
            };
        };
        let ids: Vec<&str> = users.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if ids.len() != 1 {
            return fail(SCOPES, "not_supported");
        }
        let Some(user) = self.users.iter().find(|u| u.id == ids[0]) else {
            return fail(SCOPES, "user_not_found");
        };
        if user.is_bot {
            return fail(SCOPES, "cannot_dm_bot");
        }
        if user.deleted {
            return fail(SCOPES, "user_disabled");
        }
        let mut ws = self.workspace();
        let (id, existed) = self.open_im(&mut ws, user);
        let mut body = json!({ "channel": { "id": id } });
        if args.truthy("return_im") {
            body["channel"] = json!({ "id": id, "is_im": true, "user": user.id, "is_open": true });
        }
        if existed {
            body["no_op"] = json!(true);
            body["already_open"] = json!(true);
        }
        ok(SCOPES, body)
    }

    /// Resolves a `channel` argument: a channel id, a name (`#` optional) or a user id (the
    /// bot's direct-message channel with them, opened on demand).
    fn resolve_channel(&self, ws: &mut Workspace, key: &str) -> Option<String> {
        if key.starts_with('U') || key.starts_with('W') {
            let user = self.users.iter().find(|u| u.id == key && !u.is_bot)?;
            return Some(self.open_im(ws, user).0);
        }
        let name = key.strip_prefix('#').unwrap_or(key);
        ws.state.channels.iter().find(|c| c.id == key || (!c.is_im && c.name == name)).map(|c| c.id.clone())
    }

    /// Checks `text` and `blocks`; returns the text and blocks to record.
    fn content(args: &Args) -> Result<(String, Value), Answer> {
        const SCOPES: &str = "chat:write";
        let text = args.values.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
        let blocks = args.values.get("blocks").cloned().unwrap_or(Value::Null);
        if args.blocks_unparsed {
            return Err(fail(SCOPES, "invalid_blocks_format"));
        }
        if !blocks.is_null() {
            match blocks::validate(&blocks) {
                Ok(()) => {}
                Err(BlocksError::Format) => return Err(fail(SCOPES, "invalid_blocks_format")),
                Err(BlocksError::Invalid(errors)) => {
                    let messages: Vec<String> = errors.iter().map(|e| format!("[ERROR] {e}")).collect();
                    return Err(Answer {
                        status: 200,
                        body: json!({ "ok": false, "error": "invalid_blocks", "errors": errors,
                                      "response_metadata": { "messages": messages } }),
                        accepted_scopes: SCOPES,
                        retry_after: None,
                    });
                }
            }
        }
        let empty_blocks = blocks.as_array().is_none_or(Vec::is_empty);
        if text.trim().is_empty() && empty_blocks {
            return Err(fail(SCOPES, "no_text"));
        }
        if text.chars().count() > MAX_TEXT {
            return Err(fail(SCOPES, "msg_too_long"));
        }
        Ok((text, blocks))
    }

    fn message_json(&self, m: &SlackMessage) -> Value {
        let cfg = self.cfg();
        let v = m.current();
        let mut out = json!({
            "user": m.user, "type": "message", "ts": m.ts, "bot_id": cfg.bot_id, "app_id": cfg.api_app_id,
            "text": v.text, "team": cfg.team_id,
        });
        if !v.blocks.is_null() {
            out["blocks"] = v.blocks.clone();
        }
        if let Some(t) = &m.thread_ts {
            out["thread_ts"] = json!(t);
        }
        out
    }

    /// Takes one token from the channel's bucket, or says how long to wait.
    fn rate_limit(&self, ws: &mut Workspace, channel: &str, now: Timestamp) -> Result<(), u64> {
        let (rate, burst) = {
            let cfg = self.cfg();
            (cfg.messages_per_second.max(0.001), f64::from(cfg.burst.max(1)))
        };
        let (tokens, at) = ws.buckets.entry(channel.to_owned()).or_insert((burst, now));
        let elapsed = now.duration_since(*at).as_secs_f64().max(0.0);
        *tokens = (*tokens + elapsed * rate).min(burst);
        *at = now;
        if *tokens < 1.0 {
            let wait = ((1.0 - *tokens) / rate).ceil();
            return Err(if wait.is_finite() && wait >= 1.0 { wait as u64 } else { 1 });
        }
        *tokens -= 1.0;
        Ok(())
    }

    fn post_message(&self, args: &Args, now: Timestamp) -> Answer {
        const SCOPES: &str = "chat:write";
        let bot_user = self.cfg().bot_user_id.clone();
        let mut ws = self.workspace();
        let Some(channel_id) = args.str("channel").and_then(|c| self.resolve_channel(&mut ws, c)) else {
            return fail(SCOPES, "channel_not_found");
        };
        if let Err(wait) = self.rate_limit(&mut ws, &channel_id, now) {
            return Answer {
                status: 429,
                body: json!({ "ok": false, "error": "ratelimited" }),
                accepted_scopes: SCOPES,
                retry_after: Some(wait),
            };
        }
        let (member, archived) = ws
            .state
            .channels
            .iter()
            .find(|c| c.id == channel_id)
            .map_or((false, false), |c| (c.bot_member, c.archived));
        if archived {
            return fail(SCOPES, "is_archived");
        }
        if !member {
            return fail(SCOPES, "not_in_channel");
        }
        let (text, blocks) = match Self::content(args) {
            Ok(c) => c,
            Err(answer) => return answer,
        };
        let ts = ws.next_ts(now);
        let message = SlackMessage {
            channel: channel_id.clone(),
            ts: ts.clone(),
            thread_ts: args.str("thread_ts").map(str::to_owned),
            user: bot_user,
            deleted: false,
            versions: vec![MessageVersion { at: now, source: MessageSource::Posted, text, blocks }],
        };
        let json_message = self.message_json(&message);
        if let Some(c) = ws.channel_mut(&channel_id) {
            c.messages.push(message);
        }
        ok(SCOPES, json!({ "channel": channel_id, "ts": ts, "message": json_message }))
    }

    fn update_message(&self, args: &Args, now: Timestamp) -> Answer {
        const SCOPES: &str = "chat:write";
        let mut ws = self.workspace();
        let Some(channel_id) = args.str("channel").and_then(|c| self.resolve_channel(&mut ws, c)) else {
            return fail(SCOPES, "channel_not_found");
        };
        let Some(ts) = args.str("ts").map(str::to_owned) else {
            return fail(SCOPES, "message_not_found");
        };
        let archived = ws.state.channels.iter().find(|c| c.id == channel_id).is_some_and(|c| c.archived);
        if archived {
            return fail(SCOPES, "is_archived");
        }
        let exists = ws
            .state
            .channels
            .iter()
            .find(|c| c.id == channel_id)
            .and_then(|c| c.messages.iter().find(|m| m.ts == ts))
            .is_some_and(|m| !m.deleted);
        if !exists {
            return fail(SCOPES, "message_not_found");
        }
        let (text, blocks) = match Self::content(args) {
            Ok(c) => c,
            Err(answer) => return answer,
        };
        let mut updated = None;
        if let Some(m) = ws.channel_mut(&channel_id).and_then(|c| c.messages.iter_mut().find(|m| m.ts == ts)) {
            m.versions.push(MessageVersion { at: now, source: MessageSource::Updated, text: text.clone(), blocks });
            updated = Some(m.clone());
        }
        let message = updated.map(|m| self.message_json(&m)).unwrap_or(Value::Null);
        ok(SCOPES, json!({ "channel": channel_id, "ts": ts, "text": text, "message": message }))
    }
}
