#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Slack simulator: Web API answers, the per-channel limiter, signed clicks and their
//! tamper knobs, and the `response_url` budget.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use grantline_sims::slack::{
    APPROVALS_CHANNEL, APPROVALS_CHANNEL_ID, ARCHIVED_CHANNEL_ID, Click, DEMO_BOT_TOKEN, DEMO_SIGNING_SECRET,
    EXTERNAL_USER_EMAIL, EXTERNAL_USER_ID, GENERAL_CHANNEL_ID, MessageSource, SlackConfig, SlackSim, Tamper,
    slack_user_id,
};
use grantline_sims::{Clock, FaultRule, Method, Tenant, ids};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

async fn start() -> SlackSim {
    start_with(SlackConfig::demo()).await
}

async fn start_with(cfg: SlackConfig) -> SlackSim {
    SlackSim::start(cfg, &Tenant::demo(), Clock::new(), SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap()
}

async fn call(sim: &SlackSim, method: &str, body: &Value) -> (u16, HeaderMap, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/{method}", sim.api_url()))
        .bearer_auth(DEMO_BOT_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

fn approval_blocks(request: &str) -> Value {
    json!([
        { "type": "section", "text": { "type": "mrkdwn", "text": format!("*Alex Wilber* requests *Finance BI Readers* ({request})") } },
        { "type": "actions", "block_id": "decision", "elements": [
            { "type": "button", "action_id": "approve", "style": "primary", "text": { "type": "plain_text", "text": "Approve" }, "value": request },
            { "type": "button", "action_id": "reject", "style": "danger", "text": { "type": "plain_text", "text": "Reject" }, "value": request } ] }
    ])
}

async fn post_approval(sim: &SlackSim, channel: &str) -> (String, String) {
    let (status, _, body) = call(
        sim,
        "chat.postMessage",
        &json!({ "channel": channel, "text": "REQ-1042 needs approval", "blocks": approval_blocks("REQ-1042") }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["ok"], true, "{body}");
    (body["channel"].as_str().unwrap().to_owned(), body["ts"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn post_message_records_blocks_and_returns_channel_and_ts() {
    let sim = start().await;
    let (status, headers, body) = call(
        &sim,
        "chat.postMessage",
        &json!({ "channel": APPROVALS_CHANNEL_ID, "text": "REQ-1042 needs approval", "blocks": approval_blocks("REQ-1042") }),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["ok"], true);
    assert_eq!(body["channel"], APPROVALS_CHANNEL_ID);
    let ts = body["ts"].as_str().unwrap();
    let (secs, micros) = ts.split_once('.').unwrap();
    assert_eq!(micros.len(), 6);
    assert!((secs.parse::<i64>().unwrap() - sim.clock().unix_seconds()).abs() <= 2);
    assert_eq!(body["message"]["text"], "REQ-1042 needs approval");
    assert_eq!(body["message"]["bot_id"], "B0GRANTBOT");
    assert_eq!(body["message"]["blocks"][1]["block_id"], "decision");
    assert!(!headers["x-slack-req-id"].is_empty());
    assert_eq!(headers["x-oauth-scopes"], "chat:write,users:read,users:read.email,im:write");

    // A second message gets a later ts; the channel can be named.
    let (_, _, second) =
        call(&sim, "chat.postMessage", &json!({ "channel": "#access-approvals", "text": "second" })).await;
    assert!(second["ts"].as_str().unwrap() > ts);
    let messages = sim.state().messages(APPROVALS_CHANNEL);
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].ts, ts);
    assert_eq!(messages[0].blocks(), &approval_blocks("REQ-1042"));
    assert_eq!(messages[0].current().source, MessageSource::Posted);
    sim.shutdown().await;
}

#[tokio::test]
async fn direct_messages_through_a_user_id_or_conversations_open() {
    let sim = start().await;
    let sara = slack_user_id(ids::SARA_ID);
    let (channel, _) = post_approval(&sim, &sara).await;
    assert!(channel.starts_with('D'));
    let (_, _, opened) = call(&sim, "conversations.open", &json!({ "users": sara })).await;
    assert_eq!(opened["channel"]["id"], channel.as_str());
    assert_eq!(opened["already_open"], true);
    let megan = slack_user_id(ids::MEGAN_ID);
    let (_, _, fresh) = call(&sim, "conversations.open", &json!({ "users": megan })).await;
    assert!(fresh.get("already_open").is_none());
    assert_ne!(fresh["channel"]["id"], channel.as_str());
    let (_, _, bad) = call(&sim, "conversations.open", &json!({ "users": "U0NOBODY00" })).await;
    assert_eq!(bad["error"], "user_not_found");
    assert_eq!(sim.state().messages(&sara).len(), 1);
    assert_eq!(sim.state().messages(&channel).len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn web_api_refusals_are_http_200_with_the_error_code() {
    let sim = start().await;
    let blocks = approval_blocks("REQ-1");
    let cases = [
        (json!({ "channel": "C0NOSUCH00", "text": "x" }), "channel_not_found"),
        (json!({ "text": "x" }), "channel_not_found"),
        (json!({ "channel": GENERAL_CHANNEL_ID, "text": "x" }), "not_in_channel"),
        (json!({ "channel": ARCHIVED_CHANNEL_ID, "text": "x" }), "is_archived"),
        (json!({ "channel": APPROVALS_CHANNEL_ID, "text": "" }), "no_text"),
        (json!({ "channel": "D0NOSUCH00", "text": "x" }), "channel_not_found"),
    ];
    for (body, error) in cases {
        let (status, _, answer) = call(&sim, "chat.postMessage", &body).await;
        assert_eq!(
            (status, answer["ok"].clone(), answer["error"].as_str()),
            (200, json!(false), Some(error)),
            "{body}"
        );
        sim.clock().advance(Duration::from_secs(1));
    }
    let (_, _, long) =
        call(&sim, "chat.postMessage", &json!({ "channel": APPROVALS_CHANNEL_ID, "text": "x".repeat(40_001) })).await;
    assert_eq!(long["error"], "msg_too_long");
    let mut bad_blocks = blocks.clone();
    bad_blocks[1]["elements"][0]["text"]["type"] = json!("mrkdwn");
    let (_, _, invalid) =
        call(&sim, "chat.postMessage", &json!({ "channel": APPROVALS_CHANNEL_ID, "text": "x", "blocks": bad_blocks }))
            .await;
    assert_eq!(invalid["error"], "invalid_blocks");
    assert_eq!(invalid["errors"], json!(["must be plain_text [json-pointer:/blocks/1/elements/0/text/type]"]));
    assert_eq!(
        invalid["response_metadata"]["messages"],
        json!(["[ERROR] must be plain_text [json-pointer:/blocks/1/elements/0/text/type]"])
    );
    sim.clock().advance(Duration::from_secs(3));
    let (_, _, format) = call(
        &sim,
        "chat.postMessage",
        &json!({ "channel": APPROVALS_CHANNEL_ID, "text": "x", "blocks": { "type": "section" } }),
    )
    .await;
    assert_eq!(format["error"], "invalid_blocks_format");
    let (_, _, missing) =
        call(&sim, "chat.update", &json!({ "channel": APPROVALS_CHANNEL_ID, "ts": "1.000001", "text": "x" })).await;
    assert_eq!(missing["error"], "message_not_found");
    assert!(sim.state().messages(APPROVALS_CHANNEL_ID).is_empty());

    // Authentication and scopes.
    let client = reqwest::Client::new();
    let url = format!("{}/chat.postMessage", sim.api_url());
    let none: Value = client
        .post(&url)
        .json(&json!({ "channel": APPROVALS_CHANNEL_ID, "text": "x" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none, json!({ "ok": false, "error": "not_authed" }));
    let wrong: Value = client
        .post(&url)
        .bearer_auth("xoxb-not-the-token")
        .json(&json!({ "channel": APPROVALS_CHANNEL_ID, "text": "x" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wrong["error"], "invalid_auth");
    sim.set_scopes(&["users:read"]);
    let (status, headers, scope) =
        call(&sim, "chat.postMessage", &json!({ "channel": APPROVALS_CHANNEL_ID, "text": "x" })).await;
    assert_eq!(status, 200);
    assert_eq!(
        scope,
        json!({ "ok": false, "error": "missing_scope", "needed": "chat:write", "provided": "users:read" })
    );
    assert_eq!(headers["x-accepted-oauth-scopes"], "chat:write");
    let resp = client.post(format!("{}/chat.explode", sim.api_url())).bearer_auth(DEMO_BOT_TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "unknown_method");
    sim.shutdown().await;
}

#[tokio::test]
async fn form_encoded_calls_with_a_token_field_work_too() {
    let sim = start().await;
    let blocks = approval_blocks("REQ-7").to_string();
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/chat.postMessage", sim.api_url()))
        .form(&[("token", DEMO_BOT_TOKEN), ("channel", APPROVALS_CHANNEL_ID), ("text", "form"), ("blocks", &blocks)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["ok"], true, "{resp}");
    let stored = sim.state().messages(APPROVALS_CHANNEL_ID);
    assert_eq!(stored[0].blocks(), &approval_blocks("REQ-7"));
    let bad: Value = reqwest::Client::new()
        .post(format!("{}/chat.postMessage", sim.api_url()))
        .form(&[("token", DEMO_BOT_TOKEN), ("channel", APPROVALS_CHANNEL_ID), ("text", "x"), ("blocks", "[not json")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bad["error"], "invalid_blocks_format");
    sim.shutdown().await;
}

#[tokio::test]
async fn users_derive_from_the_tenant_and_email_needs_its_scope() {
    let sim = start().await;
    let alex = slack_user_id(ids::ALEX_ID);
    assert_eq!(alex, slack_user_id(&ids::ALEX_ID.to_ascii_uppercase()));
    assert!(alex.starts_with('U') && alex.len() == 11);
    let (_, _, info) = call(&sim, "users.info", &json!({ "user": alex })).await;
    assert_eq!(info["user"]["id"], alex.as_str());
    assert_eq!(info["user"]["name"], "alexw");
    assert_eq!(info["user"]["real_name"], "Alex Wilber");
    assert_eq!(info["user"]["profile"]["email"], ids::ALEX_UPN);
    // The guest's email is their home address; the disabled account is deactivated.
    // The same as a form body with the bearer token (how read methods are usually called).
    let form: Value = reqwest::Client::new()
        .post(format!("{}/users.info", sim.api_url()))
        .bearer_auth(DEMO_BOT_TOKEN)
        .form(&[("user", alex.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(form["user"], info["user"]);
    let (_, _, guest) = call(&sim, "users.info", &json!({ "user": slack_user_id(ids::GUEST_ID) })).await;
    assert_eq!(guest["user"]["profile"]["email"], "jordan@fabrikam.com");
    let (_, _, diego) = call(&sim, "users.info", &json!({ "user": slack_user_id(ids::DISABLED_ID) })).await;
    assert_eq!(diego["user"]["deleted"], true);
    let (_, _, unknown) = call(&sim, "users.info", &json!({ "user": "U0NOBODY00" })).await;
    assert_eq!(unknown["error"], "user_not_found");

    let (_, _, found) = call(&sim, "users.lookupByEmail", &json!({ "email": "saraD@CONTOSO.com" })).await;
    assert_eq!(found["user"]["id"], slack_user_id(ids::SARA_ID).as_str());
    let (_, _, external) = call(&sim, "users.lookupByEmail", &json!({ "email": EXTERNAL_USER_EMAIL })).await;
    assert_eq!(external["user"]["id"], EXTERNAL_USER_ID);
    assert!(sim.user(EXTERNAL_USER_ID).unwrap().directory_id.is_none());
    let (_, _, none) = call(&sim, "users.lookupByEmail", &json!({ "email": "nobody@contoso.com" })).await;
    assert_eq!(none["error"], "users_not_found");

    // Without users:read.email: no email in users.info, and lookupByEmail is refused.
    sim.set_scopes(&["chat:write", "users:read"]);
    let (_, _, info) = call(&sim, "users.info", &json!({ "user": alex })).await;
    assert_eq!(info["ok"], true);
    assert!(info["user"]["profile"].get("email").is_none(), "{info}");
    let (_, _, refused) = call(&sim, "users.lookupByEmail", &json!({ "email": ids::ALEX_UPN })).await;
    assert_eq!(refused["error"], "missing_scope");
    assert_eq!(refused["needed"], "users:read.email");
    sim.shutdown().await;
}

async fn post(sim: &SlackSim, channel: &str) -> (u16, Option<String>, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/chat.postMessage", sim.api_url()))
        .bearer_auth(DEMO_BOT_TOKEN)
        .json(&json!({ "channel": channel, "text": "burst" }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (status, retry, resp.json::<Value>().await.unwrap())
}

#[tokio::test]
async fn per_channel_limiter_allows_a_burst_then_429_with_retry_after() {
    let sim = start().await;
    // the budget refills by the second: the clock moves only when the test says
    sim.clock().freeze();
    for _ in 0..3 {
        assert_eq!(post(&sim, APPROVALS_CHANNEL_ID).await.0, 200);
    }
    let (status, retry, body) = post(&sim, APPROVALS_CHANNEL_ID).await;
    assert_eq!((status, retry.as_deref()), (429, Some("1")));
    assert_eq!(body, json!({ "ok": false, "error": "ratelimited" }));
    // Another channel has its own budget.
    assert_eq!(post(&sim, &slack_user_id(ids::SARA_ID)).await.0, 200);
    sim.clock().advance(Duration::from_secs(1));
    assert_eq!(post(&sim, APPROVALS_CHANNEL_ID).await.0, 200);
    assert_eq!(post(&sim, APPROVALS_CHANNEL_ID).await.0, 429);
    assert_eq!(sim.state().messages(APPROVALS_CHANNEL_ID).len(), 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn scripted_faults_use_slack_bodies() {
    let sim = start().await;
    sim.faults().push(FaultRule::respond(503).on(Method::POST, "/api/chat.postMessage"));
    let (status, headers, body) =
        call(&sim, "chat.postMessage", &json!({ "channel": APPROVALS_CHANNEL_ID, "text": "x" })).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "service_unavailable");
    assert!(headers.contains_key("x-slack-req-id"));
    let log = sim.requests();
    assert_eq!(log[0].header("authorization"), Some("Bearer [redacted]"));
    sim.shutdown().await;
}

// ------------------------------------------------------------------------------------------
// Clicks: a small app that verifies requests as Slack documents.

#[derive(Clone)]
struct App {
    clock: Clock,
    seen: Arc<Mutex<Vec<String>>>,
    received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

fn expected_signature(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(DEMO_SIGNING_SECRET.as_bytes()).unwrap();
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

async fn interactivity(State(app): State<App>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    app.received.lock().unwrap().push((headers.clone(), body.clone()));
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (Some(ts), Some(sig)) = (header("x-slack-request-timestamp"), header("x-slack-signature")) else {
        return (StatusCode::UNAUTHORIZED, "missing".into());
    };
    let sent: i64 = ts.parse().unwrap();
    if (app.clock.unix_seconds() - sent).abs() > 300 {
        return (StatusCode::UNAUTHORIZED, "stale".into());
    }
    if sig != expected_signature(&ts, &body) {
        return (StatusCode::UNAUTHORIZED, "invalid".into());
    }
    let mut seen = app.seen.lock().unwrap();
    if seen.contains(&sig) {
        return (StatusCode::CONFLICT, "replay".into());
    }
    seen.push(sig);
    (StatusCode::OK, String::new())
}

async fn app(sim: &SlackSim) -> App {
    let app = App { clock: sim.clock().clone(), seen: Arc::default(), received: Arc::default() };
    let router =
        Router::new().route("/slack/interactivity", axum::routing::post(interactivity)).with_state(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slack/interactivity", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    sim.set_request_url(&url);
    app
}

fn payload_of(body: &[u8]) -> Value {
    let payload = url::form_urlencoded::parse(body).find(|(k, _)| k == "payload").unwrap().1.into_owned();
    serde_json::from_str(&payload).unwrap()
}

#[tokio::test]
async fn a_click_is_a_signed_block_actions_payload() {
    let sim = start().await;
    let app = app(&sim).await;
    let (channel, ts) = post_approval(&sim, APPROVALS_CHANNEL_ID).await;
    let sara = slack_user_id(ids::SARA_ID);
    let result = sim.click(&sara, &channel, &ts, "approve", None).await.unwrap();
    assert_eq!(result.status, 200);
    assert_eq!(result.body, Value::Null);

    let (headers, body) = app.received.lock().unwrap()[0].clone();
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
    assert!(std::str::from_utf8(&body).unwrap().starts_with("payload=%7B"));
    let p = payload_of(&body);
    assert_eq!(p, result.payload);
    assert_eq!(p["type"], "block_actions");
    assert_eq!(p["user"]["id"], sara.as_str());
    assert_eq!(p["user"]["username"], "sarad");
    assert_eq!(p["team"]["id"], sim.team_id());
    assert_eq!(
        p["container"],
        json!({ "type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": false })
    );
    assert_eq!(p["channel"], json!({ "id": channel, "name": APPROVALS_CHANNEL }));
    assert_eq!(p["message"]["ts"], ts.as_str());
    assert_eq!(p["message"]["blocks"], approval_blocks("REQ-1042"));
    let action = &p["actions"][0];
    assert_eq!(action["action_id"], "approve");
    assert_eq!(action["block_id"], "decision");
    assert_eq!(action["value"], "REQ-1042");
    assert_eq!(action["type"], "button");
    assert_eq!(action["style"], "primary");
    assert_eq!(action["text"]["text"], "Approve");
    let trigger = p["trigger_id"].as_str().unwrap();
    assert_eq!(trigger.split('.').count(), 3);
    assert!(p["response_url"].as_str().unwrap().starts_with(&format!("{}/actions/{}/", sim.base_url(), sim.team_id())));

    // A click by email, an overridden value, and the click record.
    let r = sim.click(ids::ADELE_UPN, &channel, &ts, "reject", "REQ-9999").await.unwrap();
    assert_eq!(r.payload["actions"][0]["value"], "REQ-9999");
    assert_eq!(r.payload["user"]["id"], slack_user_id(ids::ADELE_ID).as_str());
    let state = sim.state();
    assert_eq!(state.interactions.len(), 2);
    assert_eq!(state.interactions[1].action_id, "reject");
    assert_eq!(state.interactions[1].status, 200);

    // Unknown message, unknown action without a value, no Request URL.
    assert!(sim.click(&sara, &channel, "1.000000", "approve", None).await.is_err());
    assert!(sim.click(&sara, &channel, &ts, "escalate", None).await.is_err());
    let bare = start().await;
    let (c2, t2) = post_approval(&bare, APPROVALS_CHANNEL_ID).await;
    assert!(bare.click(&sara, &c2, &t2, "approve", None).await.is_err());
    bare.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn the_click_sees_the_message_as_updated() {
    let sim = start().await;
    let _app = app(&sim).await;
    let (channel, ts) = post_approval(&sim, APPROVALS_CHANNEL_ID).await;
    let updated = json!([{ "type": "section", "text": { "type": "mrkdwn", "text": "Still waiting" } },
        { "type": "actions", "block_id": "again", "elements": [
            { "type": "button", "action_id": "approve", "text": { "type": "plain_text", "text": "Approve now" }, "value": "v2" } ] }]);
    let (_, _, up) =
        call(&sim, "chat.update", &json!({ "channel": channel, "ts": ts, "text": "updated", "blocks": updated })).await;
    assert_eq!(up["ok"], true, "{up}");
    assert_eq!(up["ts"], ts.as_str());
    let r = sim.click(&slack_user_id(ids::SARA_ID), &channel, &ts, "approve", None).await.unwrap();
    assert_eq!(r.payload["message"]["text"], "updated");
    assert_eq!(r.payload["actions"][0]["block_id"], "again");
    assert_eq!(r.payload["actions"][0]["value"], "v2");
    let m = sim.state().message(&channel, &ts).unwrap().clone();
    assert!(m.was_updated());
    assert_eq!(m.versions[1].source, MessageSource::Updated);
    sim.shutdown().await;
}

#[tokio::test]
async fn tamper_knobs_and_replays_are_refused_by_a_verifying_app() {
    let sim = start().await;
    let _app = app(&sim).await;
    let (channel, ts) = post_approval(&sim, APPROVALS_CHANNEL_ID).await;
    let sara = slack_user_id(ids::SARA_ID);
    let knobs = [
        (Tamper::StaleTimestamp, "stale"),
        (Tamper::FutureTimestamp, "stale"),
        (Tamper::BadSignature, "invalid"),
        (Tamper::TamperedBody, "invalid"),
        (Tamper::MissingSignature, "missing"),
        (Tamper::MissingTimestamp, "missing"),
        (Tamper::MissingHeaders, "missing"),
    ];
    for (tamper, reason) in knobs {
        let r = sim.click_with(Click::new(&sara, &channel, &ts, "approve").tamper(tamper)).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (401, Some(reason)), "{tamper:?}");
    }
    let genuine = sim.click_with(Click::new(&sara, &channel, &ts, "approve")).await.unwrap();
    assert_eq!(genuine.status, 200);
    let replay = sim.replay(None).await.unwrap();
    assert_eq!((replay.status, replay.body.as_str()), (409, Some("replay")));
    assert_eq!(replay.payload, genuine.payload);
    let state = sim.state();
    let last = state.interactions.last().unwrap();
    assert!(last.replay);
    assert_eq!(last.request_body, state.interactions[genuine.delivery].request_body);
    assert_eq!(last.headers, state.interactions[genuine.delivery].headers);
    // Six minutes later the same bytes are also stale.
    sim.clock().advance(Duration::from_secs(360));
    let late = sim.replay(Some(genuine.delivery)).await.unwrap();
    assert_eq!(late.body.as_str(), Some("stale"));
    sim.shutdown().await;
}

#[tokio::test]
async fn response_url_replaces_then_runs_out_after_five_uses() {
    let sim = start().await;
    let _app = app(&sim).await;
    let (channel, ts) = post_approval(&sim, APPROVALS_CHANNEL_ID).await;
    let sara = slack_user_id(ids::SARA_ID);
    let click = sim.click(&sara, &channel, &ts, "approve", None).await.unwrap();
    let client = reqwest::Client::new();
    let respond = |body: Value| client.post(&click.response_url).json(&body).send();

    let resp = respond(json!({ "replace_original": true, "text": "Approved by Sara Davis" })).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "ok": true }));
    let m = sim.state().message(&channel, &ts).unwrap().clone();
    assert_eq!(m.text(), "Approved by Sara Davis");
    assert_eq!(m.current().source, MessageSource::ResponseUrl);
    assert_eq!(m.blocks(), &Value::Null);

    assert_eq!(respond(json!({ "text": "only you can see this" })).await.unwrap().status(), 200);
    assert_eq!(respond(json!({ "response_type": "in_channel", "text": "for everyone" })).await.unwrap().status(), 200);
    assert_eq!(respond(json!({ "replace_original": true, "text": "4" })).await.unwrap().status(), 200);
    assert_eq!(respond(json!({ "replace_original": true, "text": "5" })).await.unwrap().status(), 200);
    let sixth = respond(json!({ "replace_original": true, "text": "6" })).await.unwrap();
    assert_eq!(sixth.status(), 404);
    assert_eq!(sixth.json::<Value>().await.unwrap(), json!({ "ok": false, "error": "used_url" }));
    let state = sim.state();
    assert_eq!(state.message(&channel, &ts).unwrap().text(), "5");
    assert_eq!(state.ephemeral.len(), 1);
    assert_eq!(state.ephemeral[0].user, sara);
    assert_eq!(state.messages(&channel).len(), 2);

    // The replaced message has no buttons left; a fresh message's click URL expires after 30
    // minutes.
    assert!(sim.click(&sara, &channel, &ts, "approve", None).await.is_err());
    let (channel, ts) = post_approval(&sim, APPROVALS_CHANNEL_ID).await;
    let fresh = sim.click(&sara, &channel, &ts, "approve", None).await.unwrap();
    sim.clock().advance(Duration::from_secs(30 * 60 + 1));
    let expired = client.post(&fresh.response_url).json(&json!({ "delete_original": true })).send().await.unwrap();
    assert_eq!(expired.status(), 404);
    assert_eq!(expired.json::<Value>().await.unwrap()["error"], "expired_url");
    let unknown = client.post(format!("{}/actions/T/1/nope", sim.base_url())).json(&json!({})).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn delete_original_removes_the_message_from_later_clicks() {
    let sim = start().await;
    let _app = app(&sim).await;
    let (channel, ts) = post_approval(&sim, APPROVALS_CHANNEL_ID).await;
    let sara = slack_user_id(ids::SARA_ID);
    let click = sim.click(&sara, &channel, &ts, "reject", None).await.unwrap();
    let resp = reqwest::Client::new()
        .post(&click.response_url)
        .json(&json!({ "delete_original": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(sim.state().message(&channel, &ts).unwrap().deleted);
    assert!(sim.click(&sara, &channel, &ts, "reject", None).await.is_err());
    let (_, _, up) = call(&sim, "chat.update", &json!({ "channel": channel, "ts": ts, "text": "x" })).await;
    assert_eq!(up["error"], "message_not_found");
    sim.shutdown().await;
}

#[tokio::test]
async fn admin_routes_drive_clicks_from_another_process() {
    let sim = start().await;
    let app = app(&sim).await;
    let (channel, ts) = post_approval(&sim, APPROVALS_CHANNEL_ID).await;
    let client = reqwest::Client::new();
    let r: Value = client
        .post(format!("{}/sim/click", sim.base_url()))
        .json(&json!({ "user": ids::SARA_UPN, "channel": channel, "ts": ts, "action_id": "approve", "tamper": "bad_signature" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], 401);
    assert_eq!(app.received.lock().unwrap().len(), 1);
    let state: Value = client.get(format!("{}/sim/state", sim.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["interactions"][0]["tamper"], "bad_signature");
    let resp =
        client.put(format!("{}/sim/request-url", sim.base_url())).json(&json!({ "url": null })).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client
        .post(format!("{}/sim/click", sim.base_url()))
        .json(&json!({ "user": ids::SARA_UPN, "channel": channel, "ts": ts, "action_id": "approve" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    sim.shutdown().await;
}
