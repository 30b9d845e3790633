#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Bot Framework channel simulator: OpenID metadata and keys, the Bot Connector REST API,
//! signed card clicks (and every way of spoiling their token), and the Workflows webhook.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{client, jwt_payload};
use grantline_sims::botframework::{
    BOT_APP_ID, BOT_APP_SECRET, BotFrameworkConfig, BotFrameworkSim, Click, Tamper, VersionSource,
};
use grantline_sims::{FaultRule, Method, Sims, SimsConfig, Tenant, ids};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::sign::Verifier;
use serde_json::{Value, json};

async fn start() -> (Sims, BotFrameworkSim) {
    let sims = Sims::start(SimsConfig::demo()).await.unwrap();
    let bot = BotFrameworkSim::start(
        BotFrameworkConfig::demo(),
        &Tenant::demo(),
        sims.clock().clone(),
        sims.login.tokens().clone(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    (sims, bot)
}

async fn token_for(sims: &Sims, client_id: &str, secret: &str, scope: &str) -> String {
    let resp = client()
        .post(sims.login.token_url())
        .form(&[
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn bot_token(sims: &Sims) -> String {
    token_for(sims, BOT_APP_ID, BOT_APP_SECRET, "https://api.botframework.com/.default").await
}

async fn create_conversation(bot: &BotFrameworkSim, token: &str, member: &str) -> reqwest::Response {
    client()
        .post(format!("{}v3/conversations", bot.service_url()))
        .bearer_auth(token)
        .json(&json!({
            "bot": { "id": format!("28:{BOT_APP_ID}") },
            "isGroup": false,
            "members": [{ "id": member }],
            "tenantId": ids::TENANT_ID,
            "channelData": { "tenant": { "id": ids::TENANT_ID } },
        }))
        .send()
        .await
        .unwrap()
}

fn card(title: &str, buttons: bool) -> Value {
    let actions = if buttons {
        json!([
            { "type": "Action.Execute", "title": "Approve", "verb": "approve", "data": { "requestId": "REQ-1042", "nonce": "n1" } },
            { "type": "Action.Execute", "title": "Reject", "verb": "reject", "data": { "requestId": "REQ-1042", "nonce": "n1" } }
        ])
    } else {
        json!([])
    };
    json!({
        "type": "AdaptiveCard", "version": "1.4",
        "body": [
            { "type": "TextBlock", "text": title },
            { "type": "Input.Text", "id": "justification" }
        ],
        "actions": actions,
    })
}

fn message(card: &Value) -> Value {
    json!({ "type": "message", "attachments": [{ "contentType": "application/vnd.microsoft.card.adaptive", "content": card }] })
}

/// A conversation with Megan and one card in it: (conversation id, activity id).
async fn card_for_megan(bot: &BotFrameworkSim, token: &str) -> (String, String) {
    let resp = create_conversation(bot, token, ids::MEGAN_ID).await;
    assert_eq!(resp.status(), 201);
    let conversation = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let resp = client()
        .post(format!("{}v3/conversations/{conversation}/activities", bot.service_url()))
        .bearer_auth(token)
        .json(&message(&card("Access request REQ-1042", true)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let activity = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    (conversation, activity)
}

fn b64(part: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(part).unwrap()
}

/// Verifies an RS256 JWS against a JWKS; returns (header, claims) or why it failed.
fn verify(token: &str, jwks: &Value) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&b64(parts[0])).unwrap();
    let claims: Value = serde_json::from_slice(&b64(parts[1])).unwrap();
    let kid = header["kid"].as_str().unwrap();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).ok_or("unknown kid")?;
    let n = BigNum::from_slice(&b64(jwk["n"].as_str().unwrap())).unwrap();
    let e = BigNum::from_slice(&b64(jwk["e"].as_str().unwrap())).unwrap();
    let key = PKey::from_rsa(Rsa::from_public_components(n, e).unwrap()).unwrap();
    let mut v = Verifier::new(MessageDigest::sha256(), &key).unwrap();
    v.update(format!("{}.{}", parts[0], parts[1]).as_bytes()).unwrap();
    if !v.verify(&b64(parts[2])).unwrap() {
        return Err("bad signature".into());
    }
    Ok((header, claims))
}

async fn jwks(bot: &BotFrameworkSim) -> Value {
    client().get(bot.jwks_url()).send().await.unwrap().json().await.unwrap()
}

/// A stand-in for the bot's messaging endpoint: records each request and answers with `reply`.
#[derive(Clone)]
struct Product {
    url: String,
    seen: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    reply: Arc<Mutex<(u16, Value)>>,
}

impl Product {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(Mutex::new((200, json!({}))));
        let (s, r) = (seen.clone(), reply.clone());
        let app = Router::new().route(
            "/api/messages",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (s, r) = (s.clone(), r.clone());
                async move {
                    s.lock().unwrap().push((headers, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                    let (status, value) = r.lock().unwrap().clone();
                    (axum::http::StatusCode::from_u16(status).unwrap(), axum::Json(value))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api/messages", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Product { url, seen, reply }
    }

    fn answer(&self, status: u16, body: Value) {
        *self.reply.lock().unwrap() = (status, body);
    }

    fn last(&self) -> (HeaderMap, Value) {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }

    fn last_token(&self) -> Option<String> {
        let (headers, _) = self.last();
        headers.get("authorization").map(|v| v.to_str().unwrap().strip_prefix("Bearer ").unwrap().to_owned())
    }
}

#[tokio::test]
async fn publishes_openid_metadata_and_rotating_keys() {
    let (sims, bot) = start().await;
    let meta: Value = client().get(bot.openid_metadata_url()).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["issuer"], "https://api.botframework.com");
    assert_eq!(meta["jwks_uri"], bot.jwks_url());
    assert_eq!(meta["id_token_signing_alg_values_supported"], json!(["RS256"]));
    let keys = jwks(&bot).await;
    let list = keys["keys"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    let k = &list[0];
    assert_eq!((k["kty"].as_str(), k["use"].as_str()), (Some("RSA"), Some("sig")));
    assert_eq!(k["kid"], k["x5t"]);
    assert_eq!(k["e"], "AQAB");
    assert_eq!(b64(k["n"].as_str().unwrap()).len(), 256);
    assert!(k["endorsements"].as_array().unwrap().contains(&json!("msteams")));
    assert_eq!(k["x5c"].as_array().unwrap().len(), 1);

    let old = bot.keys().active().kid().to_owned();
    let resp = client().post(format!("{}/sim/keys/rotate", bot.base_url())).send().await.unwrap();
    let new = resp.json::<Value>().await.unwrap()["kid"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let kids: Vec<Value> = jwks(&bot).await["keys"].as_array().unwrap().iter().map(|k| k["kid"].clone()).collect();
    assert_eq!(kids, vec![json!(new), json!(old)]);
    assert!(bot.keys().retire(&old));
    assert_eq!(jwks(&bot).await["keys"].as_array().unwrap().len(), 1);
    bot.shutdown().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn conversations_and_cards_are_recorded_with_every_version() {
    let (sims, bot) = start().await;
    let token = bot_token(&sims).await;
    let claims = jwt_payload(&token);
    assert_eq!(claims["aud"], "https://api.botframework.com");
    assert_eq!(claims["appid"], BOT_APP_ID);

    let (conversation, activity) = card_for_megan(&bot, &token).await;
    assert!(conversation.starts_with("a:"), "{conversation}");
    // The same pair is the same conversation, by object id or by Teams id.
    let again = create_conversation(&bot, &token, ids::MEGAN_ID).await.json::<Value>().await.unwrap();
    assert_eq!(again["id"], conversation.as_str());
    let teams_id = bot.state().conversation(&conversation).unwrap().user_id.clone();
    assert!(teams_id.starts_with("29:"));
    let by_teams_id = create_conversation(&bot, &token, &teams_id).await.json::<Value>().await.unwrap();
    assert_eq!(by_teams_id["id"], conversation.as_str());

    let url =
        format!("{}v3/conversations/{}/activities/{activity}", bot.service_url(), conversation.replace(':', "%3A"));
    let mut update = message(&card("Approved by Megan Bowen", false));
    update["id"] = json!(activity);
    let resp = client().put(&url).bearer_auth(&token).json(&update).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!common::header(&resp, "ms-cv").is_empty());
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "id": activity }));

    let state = bot.state();
    let conv = state.conversation_with(ids::MEGAN_ID).unwrap();
    assert_eq!(conv.tenant_id, ids::TENANT_ID);
    let recorded = state.activity(&activity).unwrap();
    assert_eq!(
        recorded.versions.iter().map(|v| v.source).collect::<Vec<_>>(),
        vec![VersionSource::Sent, VersionSource::Updated]
    );
    assert!(recorded.was_replaced());
    assert_eq!(recorded.card().unwrap()["body"][0]["text"], "Approved by Megan Bowen");
    assert_eq!(recorded.cards().len(), 2);
    assert_eq!(recorded.cards()[0]["actions"].as_array().unwrap().len(), 2);

    // A reply in the conversation is a new activity.
    let resp = client()
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({ "type": "message", "text": "Recorded" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let state: Value =
        client().get(format!("{}/sim/state", bot.base_url())).send().await.unwrap().json().await.unwrap();
    let activities = state["conversations"][0]["activities"].as_array().unwrap();
    assert_eq!(activities.len(), 2);
    assert_eq!(activities[1]["versions"][0]["activity"]["replyToId"], activity.as_str());

    // The request log redacts the bearer token.
    let logged = bot.requests();
    assert!(logged.iter().all(|r| r.header("authorization") == Some("Bearer [redacted]")));
    bot.shutdown().await;
    sims.shutdown().await;
}

async fn assert_bf_error(resp: reqwest::Response, status: u16, code: &str) {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn the_connector_refuses_what_the_service_refuses() {
    let (sims, bot) = start().await;
    let token = bot_token(&sims).await;
    let (conversation, _) = card_for_megan(&bot, &token).await;
    let activities = format!("{}v3/conversations/{conversation}/activities", bot.service_url());
    let denied = json!({ "message": "Authorization has been denied for this request." });

    let resp = client().post(&activities).json(&message(&card("x", true))).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap(), denied);
    let graph = common::grantline_token(&sims).await;
    let resp = client().post(&activities).bearer_auth(&graph).json(&message(&card("x", true))).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let other_app =
        token_for(&sims, ids::APP_GRANTLINE_ID, ids::APP_GRANTLINE_SECRET, "https://api.botframework.com/.default")
            .await;
    let resp =
        client().post(&activities).bearer_auth(&other_app).json(&message(&card("x", true))).send().await.unwrap();
    assert_bf_error(resp, 401, "BotNotRegistered").await;

    let resp = client()
        .post(format!("{}v3/conversations/a:unknown/activities", bot.service_url()))
        .bearer_auth(&token)
        .json(&message(&card("x", true)))
        .send()
        .await
        .unwrap();
    assert_bf_error(resp, 404, "ConversationNotFound").await;
    let resp = client()
        .put(format!("{activities}/999"))
        .bearer_auth(&token)
        .json(&message(&card("x", true)))
        .send()
        .await
        .unwrap();
    assert_bf_error(resp, 404, "NotFound").await;
    let resp = client().post(&activities).bearer_auth(&token).json(&json!({ "text": "no type" })).send().await.unwrap();
    assert_bf_error(resp, 400, "BadArgument").await;
    let resp = create_conversation(&bot, &token, "00000000-0000-0000-0000-0000000000ff").await;
    assert_bf_error(resp, 400, "BadArgument").await;
    bot.set_installed(ids::ALEX_UPN, false).unwrap();
    let resp = create_conversation(&bot, &token, ids::ALEX_ID).await;
    assert_bf_error(resp, 403, "BotNotInConversationRoster").await;
    bot.set_installed(ids::ALEX_UPN, true).unwrap();
    assert_eq!(create_conversation(&bot, &token, ids::ALEX_ID).await.status(), 201);

    bot.faults().push(
        FaultRule::respond(429).on(Method::POST, "/teams/v3/conversations/*/activities").header("Retry-After", "3"),
    );
    let resp = client().post(&activities).bearer_auth(&token).json(&message(&card("x", true))).send().await.unwrap();
    assert_eq!(common::header(&resp, "retry-after"), "3");
    assert_bf_error(resp, 429, "Throttled").await;
    assert_eq!(
        client().post(&activities).bearer_auth(&token).json(&message(&card("x", true))).send().await.unwrap().status(),
        201
    );

    // An expired token is refused.
    sims.clock().advance(Duration::from_secs(3600));
    let resp = client().post(&activities).bearer_auth(&token).json(&message(&card("x", true))).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    bot.shutdown().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn a_click_is_a_signed_invoke_and_a_returned_card_replaces_the_clicked_one() {
    let (sims, bot) = start().await;
    let product = Product::start().await;
    bot.set_bot_endpoint(&product.url);
    let token = bot_token(&sims).await;
    let (conversation, activity) = card_for_megan(&bot, &token).await;
    let done = card("Approved by Megan Bowen", false);
    product.answer(200, json!({ "statusCode": 200, "type": "application/vnd.microsoft.card.adaptive", "value": done }));

    let result =
        bot.click(Click::new(ids::MEGAN_UPN, &activity, "approve").input("justification", "ok")).await.unwrap();
    assert_eq!(result.status, 200);
    assert!(result.card_replaced);
    assert_eq!(result.body["value"]["body"][0]["text"], "Approved by Megan Bowen");

    let (headers, body) = product.last();
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(body["type"], "invoke");
    assert_eq!(body["name"], "adaptiveCard/action");
    assert_eq!(body["channelId"], "msteams");
    assert_eq!(body["serviceUrl"], bot.service_url());
    assert_eq!(body["from"]["aadObjectId"], ids::MEGAN_ID);
    assert_eq!(body["from"]["name"], "Megan Bowen");
    assert!(body["from"]["id"].as_str().unwrap().starts_with("29:"));
    assert_eq!(body["conversation"]["id"], conversation.as_str());
    assert_eq!(body["conversation"]["tenantId"], ids::TENANT_ID);
    assert_eq!(body["recipient"]["id"], format!("28:{BOT_APP_ID}"));
    assert_eq!(body["replyToId"], activity.as_str());
    assert_eq!(body["value"]["trigger"], "manual");
    assert_eq!(
        body["value"]["action"],
        json!({ "type": "Action.Execute", "title": "Approve", "verb": "approve",
                "data": { "requestId": "REQ-1042", "nonce": "n1", "justification": "ok" } })
    );
    assert_eq!(result.invoke, body);

    let (header, claims) = verify(&product.last_token().unwrap(), &jwks(&bot).await).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], bot.keys().active().kid());
    assert_eq!(claims["iss"], "https://api.botframework.com");
    assert_eq!(claims["aud"], BOT_APP_ID);
    assert_eq!(claims["serviceurl"], bot.service_url());
    let now = sims.clock().now().as_second();
    let (nbf, exp) = (claims["nbf"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert!(nbf <= now && now - nbf < 60, "nbf {nbf} now {now}");
    assert_eq!(exp - nbf, 300);

    let state = bot.state();
    let recorded = state.activity(&activity).unwrap();
    assert_eq!(recorded.versions.last().unwrap().source, VersionSource::InvokeResponse);
    assert_eq!(recorded.card().unwrap()["body"][0]["text"], "Approved by Megan Bowen");
    assert_eq!(state.invokes.len(), 1);
    assert_eq!(state.invokes[0].verb, "approve");
    assert_eq!(state.invokes[0].user_aad_object_id, ids::MEGAN_ID);

    // A toast leaves the card alone; extra data is merged over the card's.
    product.answer(
        200,
        json!({ "statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": "Recorded" }),
    );
    let (_, second) = card_for_megan(&bot, &token).await;
    let result = bot.click(Click::new(ids::ALLAN_ID, &second, "reject").data("nonce", "other")).await.unwrap();
    assert!(!result.card_replaced);
    assert_eq!(product.last().1["value"]["action"]["data"], json!({ "requestId": "REQ-1042", "nonce": "other" }));
    assert_eq!(product.last().1["from"]["aadObjectId"], ids::ALLAN_ID);
    assert!(!bot.state().activity(&second).unwrap().was_replaced());
    bot.shutdown().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn each_tamper_knob_spoils_the_token_in_its_own_way() {
    let (sims, bot) = start().await;
    let product = Product::start().await;
    product.answer(401, json!({}));
    let token = bot_token(&sims).await;
    let (_, activity) = card_for_megan(&bot, &token).await;

    // No endpoint yet: the click cannot be delivered.
    let err = bot.click(Click::new(ids::MEGAN_UPN, &activity, "approve")).await.unwrap_err();
    assert!(err.to_string().contains("no bot endpoint"), "{err}");
    bot.set_bot_endpoint(&product.url);
    let keys = jwks(&bot).await;
    let click = |t: Tamper| Click::new(ids::MEGAN_UPN, &activity, "approve").tamper(t);

    let r = bot.click(click(Tamper::ForeignKey)).await.unwrap();
    assert_eq!(r.status, 401);
    let forged = product.last_token().unwrap();
    assert_eq!(verify(&forged, &keys).unwrap_err(), "bad signature");

    bot.click(click(Tamper::UnpublishedKey)).await.unwrap();
    assert_eq!(verify(&product.last_token().unwrap(), &keys).unwrap_err(), "unknown kid");

    let now = sims.clock().now().as_second();
    bot.click(click(Tamper::WrongAudience)).await.unwrap();
    let (_, claims) = verify(&product.last_token().unwrap(), &keys).unwrap();
    assert_ne!(claims["aud"], BOT_APP_ID);

    bot.click(click(Tamper::Expired)).await.unwrap();
    let (_, claims) = verify(&product.last_token().unwrap(), &keys).unwrap();
    assert!(claims["exp"].as_i64().unwrap() < now - 300);

    bot.click(click(Tamper::NotYetValid)).await.unwrap();
    let (_, claims) = verify(&product.last_token().unwrap(), &keys).unwrap();
    assert!(claims["nbf"].as_i64().unwrap() > now + 300);

    bot.click(click(Tamper::WrongServiceUrl)).await.unwrap();
    let (_, claims) = verify(&product.last_token().unwrap(), &keys).unwrap();
    assert_ne!(claims["serviceurl"], product.last().1["serviceUrl"]);

    // Through the admin route.
    let resp = client()
        .post(format!("{}/sim/click", bot.base_url()))
        .json(&json!({ "user": ids::MEGAN_UPN, "activity": activity, "verb": "approve", "tamper": "no_authorization" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], 401);
    assert!(product.last_token().is_none());

    let resp = client()
        .post(format!("{}/sim/click", bot.base_url()))
        .json(&json!({ "user": ids::MEGAN_UPN, "activity": "404", "verb": "approve" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let err = bot.click(Click::new(ids::MEGAN_UPN, &activity, "escalate")).await.unwrap_err();
    assert!(err.to_string().contains("escalate"), "{err}");

    let invokes = bot.state().invokes;
    assert_eq!(invokes.len(), 7);
    assert!(invokes.iter().all(|i| i.status == 401));
    assert_eq!(invokes[0].tamper, Tamper::ForeignKey);
    bot.shutdown().await;
    sims.shutdown().await;
}

#[tokio::test]
async fn the_workflows_webhook_takes_cards_with_a_valid_sig_only() {
    let (sims, bot) = start().await;
    let url = bot.channel_url("approvals");
    assert_eq!(bot.channel_url("approvals"), url);
    assert!(url.contains("/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig="));
    let body = json!({ "type": "message", "attachments": [{ "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": card("REQ-1042 approved", false) }] });

    let resp = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    assert!(!common::header(&resp, "x-ms-workflow-run-id").is_empty());
    assert_eq!(resp.text().await.unwrap(), "");
    let state = bot.state();
    let channel = state.channel("approvals").unwrap();
    assert_eq!(channel.messages.len(), 1);
    assert_eq!(channel.messages[0].cards()[0]["body"][0]["text"], "REQ-1042 approved");

    let (base, sig) = url.split_once("&sig=").unwrap();
    let resp = client().post(format!("{base}&sig={}x", sig)).json(&body).send().await.unwrap();
    assert_bf_error(resp, 401, "DirectApiInvalidAuthorizationSignature").await;
    let resp = client().post(base).json(&body).send().await.unwrap();
    assert_bf_error(resp, 401, "DirectApiAuthorizationRequired").await;
    let other = url.replace(&state.channel("approvals").unwrap().workflow_id, "0123456789abcdef0123456789abcdef");
    assert_bf_error(client().post(other).json(&body).send().await.unwrap(), 404, "WorkflowNotFound").await;
    let resp = client().post(&url).body("not json").send().await.unwrap();
    assert_bf_error(resp, 400, "InvalidRequestContent").await;
    assert_eq!(bot.state().channel("approvals").unwrap().messages.len(), 1);

    let resp =
        client().post(format!("{}/sim/channels", bot.base_url())).json(&json!({ "name": "ops" })).send().await.unwrap();
    let ops = resp.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_owned();
    assert_ne!(ops, url);
    bot.faults().push(
        FaultRule::respond(429).path(grantline_sims::PathPattern::prefix("/workflows/")).header("Retry-After", "1"),
    );
    assert_eq!(client().post(&ops).json(&body).send().await.unwrap().status(), 429);
    assert_eq!(client().post(&ops).json(&body).send().await.unwrap().status(), 202);
    bot.shutdown().await;
    sims.shutdown().await;
}
