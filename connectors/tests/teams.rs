#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Teams: inbound activity authentication (every way a channel token can be wrong, key
//! rotation, the key endpoint down), the Bot Connector calls' request shapes and failures, and
//! the Workflows channel webhook. Against fixture servers on 127.0.0.1.

mod common;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use grantline_connectors::Secret;
use grantline_connectors::graph::Correlated;
use grantline_connectors::http::build_client;
use grantline_connectors::jwt::JwksConfig;
use grantline_connectors::teams::{Activity, BotAuthenticator, BotConfig, BotConnectorClient, TeamsChannelClient};
use grantline_connectors::token::{ManualClock, TokenProvider};
use grantline_shared::ErrorClass;
use jiff::Timestamp;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{Value, json};

const BOT_ID: &str = "30000000-0000-4000-8000-0000000000b1";
const BOT_SECRET: &str = "bot-secret-value-xyz";

/// An RSA key the test issuer signs with.
struct TestKey {
    pkey: PKey<Private>,
    kid: String,
}

impl TestKey {
    fn new(kid: &str) -> Self {
        TestKey { pkey: PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), kid: kid.to_owned() }
    }

    fn jwk(&self, endorsements: &[&str]) -> Value {
        let rsa = self.pkey.rsa().unwrap();
        json!({ "kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
            "n": URL_SAFE_NO_PAD.encode(rsa.n().to_vec()), "e": URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
            "endorsements": endorsements })
    }

    fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut s = Signer::new(MessageDigest::sha256(), &self.pkey).unwrap();
        s.update(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(s.sign_to_vec().unwrap()))
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&json!({ "alg": "RS256", "kid": self.kid, "x5t": self.kid, "typ": "JWT" }), claims)
    }
}

/// The Bot Framework's OpenID metadata and keys; `status` other than 200 takes it down.
struct Issuer {
    fixture: Fixture,
    keys: Arc<Mutex<Vec<Value>>>,
    status: Arc<AtomicU16>,
}

impl Issuer {
    async fn start(keys: Vec<Value>) -> Self {
        let keys = Arc::new(Mutex::new(keys));
        let status = Arc::new(AtomicU16::new(200));
        let (k, s) = (keys.clone(), status.clone());
        let fixture = Fixture::start(move |req| {
            let status = s.load(Ordering::SeqCst);
            if status != 200 {
                return Reply::json(status, json!({ "error": "down" }));
            }
            let host = req.header("host").unwrap_or("").to_owned();
            match req.path.as_str() {
                "/v1/.well-known/openidconfiguration" => Reply::json(
                    200,
                    json!({ "issuer": "https://api.botframework.com",
                        "authorization_endpoint": "https://invalid.botframework.com",
                        "jwks_uri": format!("http://{host}/v1/.well-known/keys"),
                        "id_token_signing_alg_values_supported": ["RS256"] }),
                ),
                "/v1/.well-known/keys" => Reply::json(200, json!({ "keys": *k.lock().unwrap() })),
                _ => Reply::empty(404),
            }
        })
        .await;
        Issuer { fixture, keys, status }
    }

    fn metadata_url(&self) -> String {
        format!("{}/v1/.well-known/openidconfiguration", self.fixture.url)
    }

    fn publish(&self, keys: Vec<Value>) {
        *self.keys.lock().unwrap() = keys;
    }

    fn key_fetches(&self) -> usize {
        self.fixture.requests_to("/keys").len()
    }
}

fn bot_config(authority: &str, metadata: &str, service_prefix: &str) -> BotConfig {
    BotConfig {
        app_id: BOT_ID.to_owned(),
        app_secret: Secret::new(BOT_SECRET),
        tenant: TENANT.to_owned(),
        authority: authority.to_owned(),
        openid_metadata_url: metadata.to_owned(),
        allowed_service_urls: vec![service_prefix.to_owned()],
        http: fast_http(),
    }
}

const SERVICE_URL: &str = "https://smba.trafficmanager.net/emea/";

fn authenticator(issuer: &Issuer) -> BotAuthenticator {
    BotAuthenticator::new(&bot_config("https://login.example.com", &issuer.metadata_url(), SERVICE_URL)).unwrap()
}

fn claims(now: Timestamp, extra: Value) -> Value {
    let t = now.as_second();
    let mut c = json!({ "serviceurl": SERVICE_URL, "nbf": t - 5, "exp": t + 300,
        "iss": "https://api.botframework.com", "aud": BOT_ID });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn activity() -> Value {
    json!({ "type": "invoke", "name": "adaptiveCard/action", "channelId": "msteams", "serviceUrl": SERVICE_URL,
        "from": { "id": "29:1megan", "aadObjectId": "10000000-0000-4000-8000-000000000004", "name": "Megan Bowen" },
        "conversation": { "id": "a:1xyz", "tenantId": "t" }, "replyToId": "1700000000000",
        "value": { "action": { "type": "Action.Execute", "verb": "approve", "data": { "requestId": "REQ-1042" } } } })
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn refused(auth: &BotAuthenticator, header: Option<&str>, now: Timestamp) -> String {
    auth.verify(header, &activity(), now).await.unwrap_err().code()
}

#[tokio::test]
async fn a_good_channel_token_names_the_caller() {
    let k1 = TestKey::new("k1");
    let issuer = Issuer::start(vec![k1.jwk(&["msteams"])]).await;
    let auth = authenticator(&issuer);
    let now = Timestamp::now();
    let token = k1.sign(&claims(now, json!({})));

    let caller = auth.verify(Some(&bearer(&token)), &activity(), now).await.unwrap();
    assert_eq!(caller.aad_object_id.as_deref(), Some("10000000-0000-4000-8000-000000000004"));
    assert_eq!(caller.from_id, "29:1megan");
    assert_eq!(caller.service_url, SERVICE_URL);
    // The typed activity gives the same; a bare service URL checks the token only.
    let typed = Activity::from_slice(activity().to_string().as_bytes()).unwrap();
    assert_eq!(auth.verify(Some(&bearer(&token)), &typed, now).await.unwrap(), caller);
    let bare = auth.verify(Some(&format!("bearer {token}")), SERVICE_URL, now).await.unwrap();
    assert_eq!((bare.from_id.as_str(), bare.aad_object_id), ("", None));
    // The service URL may differ in case and trailing slash; an audience array is fine.
    let other_case =
        k1.sign(&claims(now, json!({ "serviceurl": "https://SMBA.trafficmanager.net/emea", "aud": ["x", BOT_ID] })));
    assert!(auth.verify(Some(&bearer(&other_case)), &activity(), now).await.is_ok());
    // Within the five minutes of skew either way.
    let late = k1.sign(&claims(now, json!({ "exp": now.as_second() - 200 })));
    assert!(auth.verify(Some(&bearer(&late)), &activity(), now).await.is_ok());
    let early = k1.sign(&claims(now, json!({ "nbf": now.as_second() + 200 })));
    assert!(auth.verify(Some(&bearer(&early)), &activity(), now).await.is_ok());
    // The keys were fetched once (metadata then JWKS).
    assert_eq!(issuer.key_fetches(), 1);

    // Many first verifications at once share one fetch.
    let fresh = authenticator(&issuer);
    let header = bearer(&token);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (auth, header) = (fresh.clone(), header.clone());
        calls.spawn(async move { auth.verify(Some(&header), SERVICE_URL, now).await });
    }
    while let Some(result) = calls.join_next().await {
        assert!(result.unwrap().is_ok());
    }
    assert_eq!(fresh.jwks().fetch_count(), 1);
    assert_eq!(issuer.key_fetches(), 2);
    assert_eq!(issuer.fixture.requests_to("/openidconfiguration").len(), 2);
    assert_eq!(auth.jwks().fetch_count(), 1);
}

#[tokio::test]
async fn every_bad_channel_token_is_refused_with_its_code() {
    let k1 = TestKey::new("k1");
    let issuer = Issuer::start(vec![k1.jwk(&["msteams"])]).await;
    let auth = authenticator(&issuer);
    let now = Timestamp::now();
    let t = now.as_second();
    let signed = |extra: Value| bearer(&k1.sign(&claims(now, extra)));

    let forger = TestKey::new("k1");
    assert_eq!(refused(&auth, Some(&bearer(&forger.sign(&claims(now, json!({}))))), now).await, "jwt.bad_signature");
    assert_eq!(refused(&auth, Some(&signed(json!({ "aud": "another-app" }))), now).await, "jwt.wrong_audience");
    assert_eq!(
        refused(&auth, Some(&signed(json!({ "iss": "https://sts.windows.net/x/" }))), now).await,
        "jwt.wrong_issuer"
    );
    assert_eq!(refused(&auth, Some(&signed(json!({ "exp": t - 400 }))), now).await, "jwt.expired");
    assert_eq!(refused(&auth, Some(&signed(json!({ "nbf": t + 400 }))), now).await, "jwt.not_yet_valid");
    let mismatch = auth
        .verify(Some(&signed(json!({ "serviceurl": "https://smba.trafficmanager.net/amer/" }))), &activity(), now)
        .await
        .unwrap_err();
    assert_eq!(mismatch.code(), "teams.serviceurl_mismatch");
    assert!(mismatch.is_unauthenticated());
    assert_eq!(refused(&auth, Some(&signed(json!({ "serviceurl": null }))), now).await, "teams.serviceurl_mismatch");

    let claims_part = URL_SAFE_NO_PAD.encode(claims(now, json!({})).to_string());
    let none = format!("{}.{claims_part}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#));
    assert_eq!(refused(&auth, Some(&bearer(&none)), now).await, "jwt.unsupported_alg");
    let hs = format!(
        "{}.{claims_part}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode([7u8; 32])
    );
    assert_eq!(refused(&auth, Some(&bearer(&hs)), now).await, "jwt.unsupported_alg");
    assert_eq!(refused(&auth, Some(&bearer("not.a.jwt")), now).await, "jwt.malformed");
    assert_eq!(refused(&auth, None, now).await, "teams.missing_authorization");
    assert_eq!(refused(&auth, Some(""), now).await, "teams.missing_authorization");
    assert_eq!(refused(&auth, Some("Basic Ym90OnNlY3JldA=="), now).await, "jwt.malformed");

    // A key endorsed for other channels only cannot sign Teams activities.
    let k2 = TestKey::new("k2");
    issuer.publish(vec![k1.jwk(&["msteams"]), k2.jwk(&["skype"])]);
    let other_channel = bearer(&k2.sign(&claims(now, json!({}))));
    assert_eq!(refused(&auth, Some(&other_channel), now).await, "teams.key_not_endorsed");
    let e = auth.verify(Some(&other_channel), &activity(), now).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn an_unknown_key_id_causes_one_refetch_that_finds_a_rotated_key() {
    let (k1, k2, k3) = (TestKey::new("k1"), TestKey::new("k2"), TestKey::new("k3"));
    let issuer = Issuer::start(vec![k1.jwk(&["msteams"])]).await;
    let auth = authenticator(&issuer);
    let now = Timestamp::now();
    let with = |k: &TestKey, at: Timestamp| bearer(&k.sign(&claims(at, json!({}))));

    assert!(auth.verify(Some(&with(&k1, now)), &activity(), now).await.is_ok());
    assert_eq!(issuer.key_fetches(), 1);
    // The issuer rotates to k2: the first k2 token refetches and is accepted.
    issuer.publish(vec![k2.jwk(&["msteams"]), k1.jwk(&["msteams"])]);
    assert!(auth.verify(Some(&with(&k2, now)), &activity(), now).await.is_ok());
    assert_eq!(issuer.key_fetches(), 2);
    // k3 is published nowhere. Its first token is allowed one refetch, but only after a
    // minute since the last fetch.
    assert_eq!(refused(&auth, Some(&with(&k3, now)), now).await, "jwt.unknown_key");
    assert_eq!(issuer.key_fetches(), 2, "the last fetch was less than a minute ago");
    let later = now + jiff::SignedDuration::from_secs(61);
    assert_eq!(refused(&auth, Some(&with(&k3, later)), later).await, "jwt.unknown_key");
    assert_eq!(issuer.key_fetches(), 3);
    for _ in 0..5 {
        assert_eq!(refused(&auth, Some(&with(&k3, later)), later).await, "jwt.unknown_key");
    }
    assert_eq!(issuer.key_fetches(), 3, "a stream of unknown kids costs no more fetches");
    // Known keys need no fetch at all.
    assert!(auth.verify(Some(&with(&k1, later)), &activity(), later).await.is_ok());
    assert_eq!(issuer.key_fetches(), 3);
}

#[tokio::test]
async fn keys_expire_after_their_ttl_and_an_unreachable_key_endpoint_is_transient() {
    let k1 = TestKey::new("k1");
    let issuer = Issuer::start(vec![k1.jwk(&["msteams"])]).await;
    let now = Timestamp::now();
    let token = |at: Timestamp| bearer(&k1.sign(&claims(at, json!({}))));

    // Down before the first fetch: nothing to verify with.
    issuer.status.store(503, Ordering::SeqCst);
    let config = bot_config("https://login.example.com", &issuer.metadata_url(), SERVICE_URL);
    let jwks = JwksConfig { ttl: Duration::from_secs(600), ..JwksConfig::default() };
    let auth =
        BotAuthenticator::with_options(&config, build_client(&fast_http()).unwrap(), Duration::from_secs(300), jwks)
            .unwrap();
    let err = auth.verify(Some(&token(now)), &activity(), now).await.unwrap_err();
    assert_eq!(err.code(), "jwt.keys_unavailable");
    assert_eq!(err.class(), ErrorClass::TRANSIENT);
    assert!(!err.is_unauthenticated(), "an outage is not the caller's fault");
    // Back up: the next call fetches.
    issuer.status.store(200, Ordering::SeqCst);
    assert!(auth.verify(Some(&token(now)), &activity(), now).await.is_ok());
    assert_eq!(issuer.key_fetches(), 1);
    // Past the TTL the keys are fetched again.
    let later = now + jiff::SignedDuration::from_secs(601);
    assert!(auth.verify(Some(&token(later)), &activity(), later).await.is_ok());
    assert_eq!(issuer.key_fetches(), 2);
    // Past the TTL with the endpoint down, the keys held are still used.
    issuer.status.store(500, Ordering::SeqCst);
    let much_later = later + jiff::SignedDuration::from_secs(601);
    assert!(auth.verify(Some(&token(much_later)), &activity(), much_later).await.is_ok());

    // A JWKS that answers but holds no usable key is unavailable too.
    let empty = Issuer::start(vec![json!({ "kty": "EC", "kid": "x" })]).await;
    assert_eq!(refused(&authenticator(&empty), Some(&token(now)), now).await, "jwt.keys_unavailable");
}

// ---------------------------------------------------------------------------------------
// Bot Connector: request shapes and failures.

fn connector_for(fixture: &Fixture) -> BotConnectorClient {
    let config = bot_config(
        &fixture.url,
        "https://login.botframework.com/v1/.well-known/openidconfiguration",
        &format!("{}/teams/", fixture.url),
    );
    let http = build_client(&config.http).unwrap();
    let tokens = TokenProvider::with_clock(&config.token_config(), http.clone(), Arc::new(ManualClock::new())).unwrap();
    BotConnectorClient::from_parts(&config, http, tokens).unwrap()
}

fn card() -> Value {
    json!({ "type": "AdaptiveCard", "version": "1.4", "body": [{ "type": "TextBlock", "text": "Access request REQ-1042" }],
        "actions": [{ "type": "Action.Execute", "title": "Approve", "verb": "approve", "data": { "requestId": "REQ-1042" } }] })
}

fn bot_reply(status: u16, body: Value) -> Reply {
    Reply::json(status, body).header("MS-CV", "cv-123.1")
}

#[tokio::test]
async fn cards_are_sent_and_updated_with_the_shapes_the_service_expects() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/teams/v3/conversations") => bot_reply(201, json!({ "id": "a:1xyz" })),
        ("POST", p) if p.ends_with("/activities") => bot_reply(201, json!({ "id": "1700000000001" })),
        ("PUT", _) => bot_reply(200, json!({ "id": "1700000000001" })),
        _ => Reply::empty(404),
    })
    .await;
    let client = connector_for(&fixture);
    let service = format!("{}/teams/", fixture.url);

    let conversation =
        client.create_conversation(&service, "10000000-0000-4000-8000-000000000004", "tenant-1").await.unwrap();
    assert_eq!(conversation.value, "a:1xyz");
    assert_eq!(conversation.correlation.request_id.as_deref(), Some("cv-123.1"));
    let token_req = &fixture.requests_to(TOKEN_PATH)[0];
    assert_eq!(token_req.form_field("scope").as_deref(), Some("https://api.botframework.com/.default"));
    assert_eq!(token_req.form_field("client_id").as_deref(), Some(BOT_ID));
    let req = &fixture.requests_to("/v3/conversations")[0];
    assert_eq!(req.header("authorization"), Some("Bearer tok-1"));
    assert_eq!(req.header("x-ms-client-request-id"), Some(conversation.correlation.client_request_id.as_str()));
    assert_eq!(
        req.body_json(),
        json!({ "bot": { "id": format!("28:{BOT_ID}") }, "isGroup": false,
            "members": [{ "id": "10000000-0000-4000-8000-000000000004" }], "tenantId": "tenant-1",
            "channelData": { "tenant": { "id": "tenant-1" } } })
    );

    let sent = client.send_card(&service, "a:1xyz", &card()).await.unwrap();
    assert_eq!(sent.value, "1700000000001");
    let req = fixture.requests().into_iter().find(|r| r.path.ends_with("/activities")).unwrap();
    assert_eq!(req.path, "/teams/v3/conversations/a:1xyz/activities");
    assert_eq!(
        req.body_json(),
        json!({ "type": "message", "attachments": [{ "contentType": "application/vnd.microsoft.card.adaptive", "content": card() }] })
    );

    let updated: Correlated<()> = client.update_card(&service, "a:1xyz", "1700000000001", &card()).await.unwrap();
    assert_eq!(updated.correlation.request_id.as_deref(), Some("cv-123.1"));
    let req = fixture.requests().into_iter().find(|r| r.method == "PUT").unwrap();
    assert_eq!(req.path, "/teams/v3/conversations/a:1xyz/activities/1700000000001");
    assert_eq!(req.body_json()["id"], "1700000000001");
    assert_eq!(req.body_json()["attachments"][0]["content"], card());
    assert_eq!(fixture.requests_to(TOKEN_PATH).len(), 1, "one token for every call");
}

#[tokio::test]
async fn service_urls_outside_the_allow_list_are_never_called() {
    let fixture = graph_fixture(TokenBehaviour::default(), |_| bot_reply(201, json!({ "id": "x" }))).await;
    let client = connector_for(&fixture);
    for (url, code) in [
        ("https://evil.example.com/teams/", "teams.service_url_not_allowed"),
        (&format!("{}/teamsevil/", fixture.url) as &str, "teams.service_url_not_allowed"),
        (&format!("{}.evil.example.com/teams/", fixture.url), "teams.invalid_service_url"),
        ("ftp://smba.trafficmanager.net/emea/", "teams.invalid_service_url"),
        ("not a url", "teams.invalid_service_url"),
        (&format!("{}/teams/?x=1", fixture.url), "teams.invalid_service_url"),
    ] {
        let err = client.send_card(url, "a:1", &card()).await.unwrap_err();
        assert_eq!(err.code(), code, "{url}");
        assert_eq!(err.class(), ErrorClass::Permanent);
    }
    let err = client.send_card(&format!("{}/teams/", fixture.url), " ", &card()).await.unwrap_err();
    assert_eq!(err.code(), "teams.invalid_input");
    assert!(fixture.requests().is_empty(), "nothing was sent, not even a token request");
    // A longer path under the prefix is allowed (Teams service URLs carry a region).
    let ok = client.send_card(&format!("{}/teams/emea/", fixture.url), "a:1", &card()).await.unwrap();
    assert_eq!(ok.value, "x");
    assert!(fixture.requests().iter().any(|r| r.path == "/teams/emea/v3/conversations/a:1/activities"));
}

#[tokio::test]
async fn connector_failures_follow_the_status_table() {
    let script = Script::new([
        bot_reply(401, json!({ "message": "Authorization has been denied for this request." })),
        bot_reply(201, json!({ "id": "after-refresh" })),
        bot_reply(429, json!({ "error": { "code": "Throttled", "message": "Too many requests." } }))
            .header("Retry-After", "3"),
        bot_reply(
            403,
            json!({ "error": { "code": "BotNotInConversationRoster", "message": "The bot is not part of the conversation roster." } }),
        ),
        bot_reply(404, json!({ "error": { "code": "ConversationNotFound", "message": "Conversation not found." } })),
        bot_reply(503, json!({ "error": { "code": "ServiceUnavailable", "message": "Service unavailable." } })),
        bot_reply(401, json!({ "message": "Authorization has been denied for this request." })),
        bot_reply(401, json!({ "message": "Authorization has been denied for this request." })),
        bot_reply(201, json!({})),
    ]);
    let s = script.clone();
    let fixture = graph_fixture(TokenBehaviour::default(), move |_| s.next_or(|| Reply::empty(500))).await;
    let client = connector_for(&fixture);
    let service = format!("{}/teams/", fixture.url);
    let the_card = card();
    let send = || client.send_card(&service, "a:1xyz", &the_card);

    // A 401 refreshes the token once.
    assert_eq!(send().await.unwrap().value, "after-refresh");
    let auths: Vec<String> =
        fixture.requests_to("/activities").iter().map(|r| r.header("authorization").unwrap().to_owned()).collect();
    assert_eq!(auths, vec!["Bearer tok-1", "Bearer tok-2"]);

    let e = send().await.unwrap_err();
    assert_eq!(
        (e.code().as_str(), e.class()),
        ("teams.throttled", ErrorClass::Throttled { retry_after: Some(Duration::from_secs(3)) })
    );
    let e = send().await.unwrap_err();
    assert_eq!((e.code().as_str(), e.class()), ("teams.bot_not_installed", ErrorClass::Permanent));
    assert!(e.to_string().contains("BotNotInConversationRoster"), "{e}");
    let e = send().await.unwrap_err();
    assert_eq!(e.code(), "teams.conversation_not_found");
    let e = send().await.unwrap_err();
    assert_eq!((e.code().as_str(), e.class()), ("teams.unavailable", ErrorClass::Transient { retry_after: None }));
    // Two 401s in a row: the second is returned.
    let e = send().await.unwrap_err();
    assert_eq!((e.code().as_str(), e.status()), ("teams.unauthorized", Some(401)));
    assert!(e.to_string().contains("Authorization has been denied"));
    // A success without an id cannot be used.
    assert_eq!(send().await.unwrap_err().code(), "teams.decode");
    let step: grantline_shared::StepError = e.into();
    assert_eq!(step.code, "teams.unauthorized");
    assert!(!format!("{client:?}").contains(BOT_SECRET));
}

// ---------------------------------------------------------------------------------------
// Workflows channel webhook.

#[tokio::test]
async fn channel_cards_go_to_the_webhook_whose_url_stays_secret() {
    let script = Script::new([
        Reply::empty(202).header("x-ms-workflow-run-id", "08584run"),
        Reply::json(
            401,
            json!({ "error": { "code": "DirectApiInvalidAuthorizationSignature", "message": "The provided authorization signature is not valid." } }),
        ),
        Reply::json(429, json!({ "error": { "code": "Throttled", "message": "x" } })).header("Retry-After", "2"),
        Reply::empty(502),
    ]);
    let s = script.clone();
    let fixture = Fixture::start(move |_| s.next_or(|| Reply::empty(500))).await;
    let sig = "SiGnAtUrE-abcdefghijklmnopqrstuvwxyz0123456";
    let url = Secret::new(format!(
        "{}/workflows/0123abcd/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={sig}",
        fixture.url
    ));
    let client = TeamsChannelClient::new(&fast_http()).unwrap();

    let ok = client.post_card(&url, &card()).await.unwrap();
    assert_eq!(ok.correlation.request_id.as_deref(), Some("08584run"));
    let req = &fixture.requests()[0];
    assert_eq!(req.path, "/workflows/0123abcd/triggers/manual/paths/invoke");
    assert_eq!(req.query_param("sig").as_deref(), Some(sig));
    assert_eq!(req.header("x-ms-client-tracking-id"), Some(ok.correlation.client_request_id.as_str()));
    assert_eq!(
        req.body_json(),
        json!({ "type": "message", "attachments": [{ "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": card() }] })
    );

    let e = client.post_card(&url, &card()).await.unwrap_err();
    assert_eq!((e.code().as_str(), e.class()), ("teams.unauthorized", ErrorClass::Permanent));
    assert!(!e.to_string().contains(sig) && !format!("{e:?}").contains(sig));
    let e = client.post_card(&url, &card()).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Throttled { retry_after: Some(Duration::from_secs(2)) });
    let e = client.post_card(&url, &card()).await.unwrap_err();
    assert_eq!((e.code().as_str(), e.class()), ("teams.bad_gateway", ErrorClass::TRANSIENT));

    let e = client.post_card(&Secret::new("mailto:x@example.com"), &card()).await.unwrap_err();
    assert_eq!(e.code(), "teams.invalid_input");
    // A webhook that cannot be reached: transient, and the URL is not in the message.
    let closed = Secret::new(format!("http://127.0.0.1:9/workflows/x/triggers/manual/paths/invoke?sig={sig}"));
    let e = client.post_card(&closed, &card()).await.unwrap_err();
    assert!(e.class().is_retryable(), "{e:?}");
    assert!(!e.to_string().contains(sig), "{e}");
}

#[test]
fn bot_config_from_toml_with_defaults_and_validation() {
    let config: BotConfig = toml::from_str(
        r#"
        app_id = "30000000-0000-4000-8000-0000000000b1"
        app_secret = "bot-secret-value-xyz"
        tenant = "contoso.onmicrosoft.com"
        "#,
    )
    .unwrap();
    assert_eq!(config.authority, "https://login.microsoftonline.com");
    assert_eq!(config.openid_metadata_url, "https://login.botframework.com/v1/.well-known/openidconfiguration");
    assert_eq!(config.allowed_service_urls, vec!["https://smba.trafficmanager.net/".to_owned()]);
    assert!(config.validate().is_ok());
    assert_eq!(config.token_config().scope(), "https://api.botframework.com/.default");
    assert!(!format!("{config:?}").contains(BOT_SECRET));
    assert!(toml::from_str::<BotConfig>("app_id = 'x'\nunknown = 1").is_err());

    let key = |c: BotConfig| c.validate().unwrap_err().key;
    assert_eq!(key(BotConfig { app_id: String::new(), ..config.clone() }), "teams.app_id");
    assert_eq!(key(BotConfig { app_secret: Secret::default(), ..config.clone() }), "teams.app_secret");
    assert_eq!(key(BotConfig { tenant: String::new(), ..config.clone() }), "teams.tenant");
    assert_eq!(key(BotConfig { openid_metadata_url: "nope".into(), ..config.clone() }), "teams.openid_metadata_url");
    assert_eq!(key(BotConfig { allowed_service_urls: vec![], ..config.clone() }), "teams.allowed_service_urls");
    assert_eq!(
        key(BotConfig { allowed_service_urls: vec!["ftp://x/".into()], ..config.clone() }),
        "teams.allowed_service_urls"
    );
    assert_eq!(key(BotConfig { authority: "x".into(), ..config.clone() }), "teams.authority");
    // Verifying activities needs only the app id and the metadata URL.
    let inbound = BotConfig { app_secret: Secret::default(), tenant: String::new(), ..config.clone() };
    assert!(BotAuthenticator::new(&inbound).is_ok());
    assert_eq!(BotConnectorClient::new(&inbound).unwrap_err().key, "teams.app_secret");
}
