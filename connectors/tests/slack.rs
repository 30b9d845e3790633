#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Slack client against fixture servers that answer as apis.md section 7 describes, the
//! request-signature check against Slack's documented vector and an independently computed
//! one, and the click payload parser.

mod common;

use std::time::Duration;

use common::*;
use grantline_connectors::Secret;
use grantline_connectors::slack::{
    DEFAULT_WINDOW, PayloadError, SignatureError, SlackClient, SlackConfig, SlackError, parse_block_actions, signature,
    verify_signature,
};
use grantline_shared::{ErrorClass, StepError};
use jiff::Timestamp;
use serde_json::{Value, json};

const TOKEN: &str = "xoxb-1111-2222-fixturebottoken";
const SIGNING_SECRET: &str = "fixture-signing-secret-value";

fn config(fixture: &Fixture) -> SlackConfig {
    SlackConfig {
        base_url: format!("{}/api", fixture.url),
        bot_token: Secret::new(TOKEN),
        signing_secret: Secret::new(SIGNING_SECRET),
        ..SlackConfig::default()
    }
}

fn client(fixture: &Fixture) -> SlackClient {
    SlackClient::new(&config(fixture)).unwrap()
}

fn slack(body: Value) -> Reply {
    Reply::json(200, body).header("x-slack-req-id", "req-123")
}

fn blocks() -> Value {
    json!([{ "type": "actions", "block_id": "decision", "elements": [
        { "type": "button", "action_id": "approve", "text": { "type": "plain_text", "text": "Approve" }, "value": "REQ-1042" } ] }])
}

#[tokio::test]
async fn post_message_sends_json_with_the_bearer_token() {
    let fixture = Fixture::start(|_| {
        slack(json!({ "ok": true, "channel": "C123ABC456", "ts": "1503435956.000247", "message": { "text": "x" } }))
    })
    .await;
    let posted = client(&fixture).post_message("C123ABC456", "REQ-1042 needs approval", &blocks()).await.unwrap();
    assert_eq!(posted.channel, "C123ABC456");
    assert_eq!(posted.ts, "1503435956.000247");
    let req = &fixture.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/chat.postMessage");
    assert_eq!(req.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(req.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(
        req.body_json(),
        json!({ "channel": "C123ABC456", "text": "REQ-1042 needs approval", "blocks": blocks() })
    );

    // No blocks: the field is left out; a user id as channel answers with the DM channel.
    let fixture =
        Fixture::start(|_| slack(json!({ "ok": true, "channel": "D0DM000001", "ts": "1503435957.000001" }))).await;
    let posted = client(&fixture).post_message("U0SARA0001", "plain", &Value::Null).await.unwrap();
    assert_eq!(posted.channel, "D0DM000001");
    assert_eq!(fixture.requests()[0].body_json(), json!({ "channel": "U0SARA0001", "text": "plain" }));
}

#[tokio::test]
async fn update_message_names_channel_and_ts() {
    let fixture = Fixture::start(|_| {
        slack(json!({ "ok": true, "channel": "C123ABC456", "ts": "1503435956.000247", "text": "Approved" }))
    })
    .await;
    let posted = client(&fixture)
        .update_message("C123ABC456", "1503435956.000247", "Approved by Sara", &json!([]))
        .await
        .unwrap();
    assert_eq!(posted.ts, "1503435956.000247");
    let req = &fixture.requests()[0];
    assert_eq!(req.path, "/api/chat.update");
    assert_eq!(
        req.body_json(),
        json!({ "channel": "C123ABC456", "ts": "1503435956.000247", "text": "Approved by Sara", "blocks": [] })
    );
}

#[tokio::test]
async fn user_email_and_lookup_by_email() {
    let fixture = Fixture::start(|req| match req.path.as_str() {
        "/api/users.info" => match req.form_field("user").as_deref() {
            Some("U0SARA0001") => slack(json!({ "ok": true, "user": { "id": "U0SARA0001", "team_id": "T1",
                "name": "sarad", "real_name": "Sara Davis", "deleted": false, "is_bot": false,
                "profile": { "email": "SaraD@contoso.com", "display_name": "sarad" } } })),
            Some("U0NOEMAIL1") => {
                slack(json!({ "ok": true, "user": { "id": "U0NOEMAIL1", "name": "x", "profile": {} } }))
            }
            _ => slack(json!({ "ok": false, "error": "user_not_found" })),
        },
        "/api/users.lookupByEmail" => match req.form_field("email").as_deref() {
            Some("SaraD@contoso.com") => slack(json!({ "ok": true, "user": { "id": "U0SARA0001", "name": "sarad",
                "profile": { "email": "SaraD@contoso.com" } } })),
            _ => slack(json!({ "ok": false, "error": "users_not_found" })),
        },
        "/api/conversations.open" => slack(json!({ "ok": true, "channel": { "id": "D0DM000001" } })),
        _ => Reply::json(404, json!({ "ok": false, "error": "unknown_method" })),
    })
    .await;
    let c = client(&fixture);
    assert_eq!(c.user_email("U0SARA0001").await.unwrap().as_deref(), Some("SaraD@contoso.com"));
    assert_eq!(c.user_email("U0NOEMAIL1").await.unwrap(), None);
    let err = c.user_email("U0NOBODY01").await.unwrap_err();
    assert_eq!(err.code(), "slack.user_not_found");
    let info = &fixture.requests_to("/users.info")[0];
    assert_eq!(info.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(info.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));

    let user = c.lookup_by_email("SaraD@contoso.com").await.unwrap().unwrap();
    assert_eq!(user.id, "U0SARA0001");
    assert_eq!(user.name.as_deref(), Some("sarad"));
    assert_eq!(user.email.as_deref(), Some("SaraD@contoso.com"));
    assert_eq!(c.lookup_by_email("nobody@contoso.com").await.unwrap(), None);
    assert_eq!(c.open_dm("U0SARA0001").await.unwrap(), "D0DM000001");
    assert_eq!(fixture.requests_to("/conversations.open")[0].body_json(), json!({ "users": "U0SARA0001" }));
}

#[tokio::test]
async fn respond_posts_json_to_the_response_url_without_the_token() {
    let fixture = Fixture::start(|req| {
        if req.path.ends_with("/used") {
            Reply::json(404, json!({ "ok": false, "error": "used_url" }))
        } else if req.path.ends_with("/text") {
            Reply { status: 404, headers: vec![], body: "expired_url".into(), delay: None }
        } else {
            Reply::json(200, json!({ "ok": true }))
        }
    })
    .await;
    let c = client(&fixture);
    let body = json!({ "replace_original": true, "text": "Approved by Sara Davis" });
    c.respond(&format!("{}/actions/T1/123/secret", fixture.url), &body).await.unwrap();
    let req = &fixture.requests()[0];
    assert_eq!(req.path, "/actions/T1/123/secret");
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(req.body_json(), body);

    let used = c.respond(&format!("{}/actions/T1/123/used", fixture.url), &body).await.unwrap_err();
    assert_eq!((used.code(), used.class()), ("slack.used_url".to_owned(), ErrorClass::Permanent));
    let expired = c.respond(&format!("{}/actions/T1/123/text", fixture.url), &body).await.unwrap_err();
    assert_eq!(expired.code(), "slack.expired_url");
    let invalid = c.respond("not a url", &body).await.unwrap_err();
    assert_eq!(invalid.code(), "slack.invalid_input");
}

/// Every row of the classification: (answer, code, class).
#[tokio::test]
async fn every_classification_row() {
    let cases: Vec<(Reply, &str, ErrorClass)> = vec![
        (slack(json!({ "ok": false, "error": "channel_not_found" })), "slack.channel_not_found", ErrorClass::Permanent),
        (slack(json!({ "ok": false, "error": "not_in_channel" })), "slack.not_in_channel", ErrorClass::Permanent),
        (slack(json!({ "ok": false, "error": "invalid_auth" })), "slack.invalid_auth", ErrorClass::Permanent),
        (slack(json!({ "ok": false, "error": "not_authed" })), "slack.not_authed", ErrorClass::Permanent),
        (slack(json!({ "ok": false, "error": "invalid_blocks" })), "slack.invalid_blocks", ErrorClass::Permanent),
        (slack(json!({ "ok": false, "error": "msg_too_long" })), "slack.msg_too_long", ErrorClass::Permanent),
        (slack(json!({ "ok": false, "error": "no_text" })), "slack.no_text", ErrorClass::Permanent),
        (slack(json!({ "ok": false, "error": "ratelimited" })), "slack.ratelimited", ErrorClass::TRANSIENT),
        (
            slack(json!({ "ok": false, "error": "service_unavailable" })),
            "slack.service_unavailable",
            ErrorClass::TRANSIENT,
        ),
        (slack(json!({ "ok": false, "error": "internal_error" })), "slack.internal_error", ErrorClass::TRANSIENT),
        (slack(json!({ "ok": false, "error": "fatal_error" })), "slack.fatal_error", ErrorClass::TRANSIENT),
        (slack(json!({ "ok": false, "error": "request_timeout" })), "slack.request_timeout", ErrorClass::TRANSIENT),
        (
            Reply::json(429, json!({ "ok": false, "error": "ratelimited" })).header("Retry-After", "7"),
            "slack.throttled",
            ErrorClass::Throttled { retry_after: Some(Duration::from_secs(7)) },
        ),
        (Reply::empty(429), "slack.throttled", ErrorClass::Throttled { retry_after: None }),
        (Reply::empty(500), "slack.server_error", ErrorClass::TRANSIENT),
        (
            Reply::empty(503).header("Retry-After", "2"),
            "slack.unavailable",
            ErrorClass::Transient { retry_after: Some(Duration::from_secs(2)) },
        ),
        (Reply::empty(502), "slack.bad_gateway", ErrorClass::TRANSIENT),
        (
            Reply::json(404, json!({ "ok": false, "error": "unknown_method" })),
            "slack.unknown_method",
            ErrorClass::Permanent,
        ),
        (Reply::empty(403), "slack.forbidden", ErrorClass::Permanent),
        (Reply::json(200, "<html>"), "slack.decode", ErrorClass::Permanent),
        (Reply::json(200, json!({ "channel": "C1" })), "slack.decode", ErrorClass::Permanent),
    ];
    for (reply, code, class) in cases {
        let fixture = Fixture::start(move |_| reply.clone()).await;
        let err = client(&fixture).post_message("C1", "x", &Value::Null).await.unwrap_err();
        assert_eq!((err.code().as_str(), err.class()), (code, class.clone()), "{err}");
        let step: StepError = err.into();
        assert_eq!((step.code.as_str(), step.class), (code, class));
    }

    // missing_scope names the scopes; invalid_blocks carries Slack's messages.
    let fixture = Fixture::start(|_| {
        slack(json!({ "ok": false, "error": "missing_scope", "needed": "chat:write", "provided": "users:read" }))
    })
    .await;
    let err = client(&fixture).post_message("C1", "x", &Value::Null).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "slack chat.postMessage refused: missing_scope (needed: chat:write, provided: users:read) (x-slack-req-id: req-123)"
    );
    let fixture = Fixture::start(|_| {
        slack(json!({ "ok": false, "error": "invalid_blocks", "errors": ["must be plain_text [json-pointer:/blocks/0/text/type]"] }))
    })
    .await;
    let err = client(&fixture).post_message("C1", "x", &Value::Null).await.unwrap_err();
    assert!(err.to_string().contains("[json-pointer:/blocks/0/text/type]"), "{err}");
    assert_eq!(err.slack_error(), Some("invalid_blocks"));

    // No server at all: transient.
    let cfg = SlackConfig { base_url: "http://127.0.0.1:9/api".into(), ..config(&fixture) };
    let err = SlackClient::new(&cfg).unwrap().post_message("C1", "x", &Value::Null).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("slack.connect", ErrorClass::TRANSIENT));
    let err = client(&fixture).post_message(" ", "x", &Value::Null).await.unwrap_err();
    assert!(matches!(err, SlackError::InvalidInput { .. }));
}

#[test]
fn config_defaults_validation_and_redaction() {
    let cfg: SlackConfig = toml::from_str(
        r#"
        bot_token = "xoxb-secret-bot-token-value"
        signing_secret = "secret-signing-value"
        "#,
    )
    .unwrap();
    assert_eq!(cfg.base_url, "https://slack.com/api");
    let client = SlackClient::new(&cfg).unwrap();
    for text in [format!("{cfg:?}"), format!("{client:?}")] {
        assert!(!text.contains("xoxb-secret-bot-token-value") && !text.contains("secret-signing-value"), "{text}");
    }
    assert!(toml::from_str::<SlackConfig>("bot_tokn = 'x'").is_err());
    let key = |cfg: SlackConfig| SlackClient::new(&cfg).unwrap_err().key;
    assert_eq!(key(SlackConfig { bot_token: Secret::default(), ..cfg.clone() }), "slack.bot_token");
    assert_eq!(key(SlackConfig { bot_token: Secret::new("xoxp-user-token"), ..cfg.clone() }), "slack.bot_token");
    assert_eq!(key(SlackConfig { signing_secret: Secret::default(), ..cfg.clone() }), "slack.signing_secret");
    assert_eq!(key(SlackConfig { base_url: "ftp://slack".into(), ..cfg.clone() }), "slack.base_url");
    let mut zero = cfg.clone();
    zero.http.timeout_ms = 0;
    assert_eq!(key(zero), "slack.http.timeout_ms");
}

// ------------------------------------------------------------------------------------------
// Signatures.

/// The example in Slack's "Verifying requests from Slack".
const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const DOC_TIMESTAMP: &str = "1531420618";
const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const DOC_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

fn at(unix: i64) -> Timestamp {
    Timestamp::from_second(unix).unwrap()
}

/// HMAC-SHA256 through OpenSSL: an implementation independent of the connector's.
fn openssl_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::sign::Signer;
    let key = PKey::hmac(secret.as_bytes()).unwrap();
    let mut signer = Signer::new(MessageDigest::sha256(), &key).unwrap();
    signer.update(format!("v0:{timestamp}:").as_bytes()).unwrap();
    signer.update(body).unwrap();
    format!("v0={}", hex::encode(signer.sign_to_vec().unwrap()))
}

#[test]
fn slacks_documented_example_verifies() {
    let secret = Secret::new(DOC_SECRET);
    assert_eq!(signature(&secret, DOC_TIMESTAMP, DOC_BODY.as_bytes()), DOC_SIGNATURE);
    let now = at(1531420618 + 30);
    assert_eq!(
        verify_signature(&secret, Some(DOC_TIMESTAMP), Some(DOC_SIGNATURE), DOC_BODY.as_bytes(), now, DEFAULT_WINDOW),
        Ok(())
    );
    assert_eq!(openssl_signature(DOC_SECRET, DOC_TIMESTAMP, DOC_BODY.as_bytes()), DOC_SIGNATURE);
}

#[test]
fn a_fixed_vector_computed_elsewhere_verifies() {
    // Computed with `printf 'v0:1769091157:<body>' | openssl dgst -sha256 -hmac <secret>`.
    let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
    let expected = "v0=47b1500abd1277c9207f0b12987d25f6e8477a5fc4baefa1b41409410957d2a8";
    let secret = Secret::new("grantline-test-signing-secret");
    assert_eq!(signature(&secret, "1769091157", body), expected);
    assert_eq!(openssl_signature("grantline-test-signing-secret", "1769091157", body), expected);
    assert_eq!(
        verify_signature(&secret, Some("1769091157"), Some(expected), body, at(1769091157), DEFAULT_WINDOW),
        Ok(())
    );
}

#[test]
fn stale_missing_and_invalid_signatures_are_refused() {
    let secret = Secret::new(DOC_SECRET);
    let body = DOC_BODY.as_bytes();
    let ts = 1531420618;
    let check = |timestamp: Option<&str>, sig: Option<&str>, body: &[u8], now: i64| {
        verify_signature(&secret, timestamp, sig, body, at(now), DEFAULT_WINDOW)
    };
    let doc_ts = Some(DOC_TIMESTAMP);
    let doc_sig = Some(DOC_SIGNATURE);
    // The window is five minutes either way, inclusive.
    assert_eq!(check(doc_ts, doc_sig, body, ts + 300), Ok(()));
    assert_eq!(check(doc_ts, doc_sig, body, ts - 300), Ok(()));
    assert_eq!(check(doc_ts, doc_sig, body, ts + 301), Err(SignatureError::Stale));
    assert_eq!(check(doc_ts, doc_sig, body, ts - 301), Err(SignatureError::Stale));
    assert_eq!(check(None, doc_sig, body, ts), Err(SignatureError::Missing));
    assert_eq!(check(doc_ts, None, body, ts), Err(SignatureError::Missing));
    assert_eq!(check(Some(" "), doc_sig, body, ts), Err(SignatureError::Missing));
    assert_eq!(check(Some("soon"), doc_sig, body, ts), Err(SignatureError::Invalid));
    let mut tampered = body.to_vec();
    tampered[0] = b'T';
    assert_eq!(check(doc_ts, doc_sig, &tampered, ts), Err(SignatureError::Invalid));
    assert_eq!(check(doc_ts, Some(&DOC_SIGNATURE.replace("v0=", "v1=")), body, ts), Err(SignatureError::Invalid));
    assert_eq!(check(doc_ts, Some("v0=zz"), body, ts), Err(SignatureError::Invalid));
    assert_eq!(check(doc_ts, Some(&DOC_SIGNATURE[..40]), body, ts), Err(SignatureError::Invalid));
    assert_eq!(check(doc_ts, Some(DOC_SIGNATURE.to_uppercase().replace("V0=", "v0=").as_str()), body, ts), Ok(()));
    // Another timestamp with the same signature: the timestamp is signed too.
    assert_eq!(check(Some("1531420619"), doc_sig, body, ts), Err(SignatureError::Invalid));
    let wrong = Secret::new("another-secret");
    assert_eq!(verify_signature(&wrong, doc_ts, doc_sig, body, at(ts), DEFAULT_WINDOW), Err(SignatureError::Invalid));
    // A narrower window.
    assert_eq!(
        verify_signature(&secret, doc_ts, doc_sig, body, at(ts + 61), Duration::from_secs(60)),
        Err(SignatureError::Stale)
    );
    for (e, code) in [
        (SignatureError::Missing, "slack.signature_missing"),
        (SignatureError::Stale, "slack.signature_stale"),
        (SignatureError::Invalid, "slack.signature_invalid"),
    ] {
        assert_eq!(e.code(), code);
        let step: StepError = e.into();
        assert_eq!((step.code.as_str(), step.class), (code, ErrorClass::Permanent));
    }
    // The client's own check uses the configured secret.
    let cfg = SlackConfig {
        bot_token: Secret::new(TOKEN),
        signing_secret: Secret::new(DOC_SECRET),
        ..SlackConfig::default()
    };
    let client = SlackClient::new(&cfg).unwrap();
    assert_eq!(client.verify(doc_ts, doc_sig, body, at(ts)), Ok(()));
}

// ------------------------------------------------------------------------------------------
// Click payloads.

fn form(payload: &Value) -> Vec<u8> {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
        .into_bytes()
}

fn click_payload() -> Value {
    json!({ "type": "block_actions", "api_app_id": "A0", "token": "deprecated",
        "team": { "id": "T0TEAM", "domain": "acme" },
        "user": { "id": "U0MEGAN", "username": "megan", "name": "megan", "team_id": "T0TEAM" },
        "container": { "type": "message", "message_ts": "1503435956.000247", "channel_id": "C123ABC456", "is_ephemeral": false },
        "channel": { "id": "C123ABC456", "name": "access-approvals" },
        "message": { "ts": "1503435956.000247", "blocks": [] },
        "trigger_id": "123.456.abc", "response_url": "https://hooks.slack.com/actions/T0/1/x",
        "actions": [ { "type": "button", "action_id": "approve", "block_id": "decision", "value": "REQ-1042",
                       "text": { "type": "plain_text", "text": "Approve" }, "action_ts": "1503435970.123456" } ],
        "state": { "values": {} } })
}

#[test]
fn block_actions_parse_from_the_form_body() {
    let parsed = parse_block_actions(&form(&click_payload())).unwrap();
    assert_eq!(parsed.user_id, "U0MEGAN");
    assert_eq!(parsed.user_name, "megan");
    assert_eq!(parsed.team_id, "T0TEAM");
    assert_eq!(parsed.channel_id, "C123ABC456");
    assert_eq!(parsed.message_ts, "1503435956.000247");
    assert_eq!(parsed.response_url, "https://hooks.slack.com/actions/T0/1/x");
    assert_eq!(parsed.trigger_id, "123.456.abc");
    assert_eq!(parsed.actions.len(), 1);
    assert_eq!(parsed.actions[0].action_id, "approve");
    assert_eq!(parsed.actions[0].value.as_deref(), Some("REQ-1042"));
    assert_eq!(parsed.actions[0].block_id, "decision");

    // Fall-backs: container-less payloads name the channel and ts elsewhere.
    let mut p = click_payload();
    p.as_object_mut().unwrap().remove("container");
    p["user"].as_object_mut().unwrap().remove("username");
    let parsed = parse_block_actions(&form(&p)).unwrap();
    assert_eq!((parsed.message_ts.as_str(), parsed.user_name.as_str()), ("1503435956.000247", "megan"));

    assert_eq!(parse_block_actions(b"foo=bar"), Err(PayloadError::MissingPayload));
    assert!(matches!(parse_block_actions(b"payload=%7Bnot"), Err(PayloadError::Invalid(_))));
    let mut view = click_payload();
    view["type"] = json!("view_submission");
    assert_eq!(parse_block_actions(&form(&view)), Err(PayloadError::UnexpectedType("view_submission".into())));
    let mut no_actions = click_payload();
    no_actions.as_object_mut().unwrap().remove("actions");
    let err = parse_block_actions(&form(&no_actions)).unwrap_err();
    assert_eq!(err.code(), "slack.payload_invalid");
}
