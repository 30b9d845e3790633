#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The PagerDuty Events API v2 client and the signed alert webhook client against fixture
//! servers (apis.md sections 8.1 and 8.3): request shapes, every classification row, and the
//! credentials that must never reach a log.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use grantline_connectors::Secret;
use grantline_connectors::http::HttpConfig;
use grantline_connectors::pagerduty::{
    Link, PagerDutyClient, PagerDutyConfig, PagerDutyError, Severity, THROTTLE_FLOOR, TriggerEvent,
};
use grantline_connectors::webhook::{AlertEvent, AlertEventKind, AlertWebhookClient, WebhookError, sign};
use grantline_shared::{ErrorClass, StepError};
use jiff::Timestamp;
use serde_json::json;

const ROUTING_KEY: &str = "R0UTINGKEYFIXTURE000000000000042";

fn key() -> Secret {
    Secret::new(ROUTING_KEY)
}

fn pd(fixture: &Fixture) -> PagerDutyClient {
    PagerDutyClient::new(&PagerDutyConfig { base_url: fixture.url.clone(), ..PagerDutyConfig::default() }).unwrap()
}

fn accepted(dedup_key: &str) -> Reply {
    Reply::json(202, json!({ "status": "success", "message": "Event processed", "dedup_key": dedup_key }))
}

fn echo() -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    |req| {
        let key = req.body_json()["dedup_key"].as_str().unwrap_or("generated0000000000000000000000k").to_owned();
        accepted(&key).header("x-request-id", "pd-req-1")
    }
}

fn event() -> TriggerEvent {
    TriggerEvent {
        dedup_key: Some("grantline/REQ-1042/add-member".into()),
        summary: "Access grant failed: REQ-1042 (Graph 403)".into(),
        source: "grantline.prod".into(),
        severity: Severity::Error,
        component: Some("graph".into()),
        group: Some("grantline".into()),
        class: Some("grant_failure".into()),
        custom_details: json!({ "request": "REQ-1042", "http_status": 403 }),
        links: vec![Link { href: "https://grantline.example/requests/REQ-1042".into(), text: "Request".into() }],
    }
}

/// Captures everything the connectors log (spans and events) while it is alive.
struct Captured {
    buf: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

struct BufWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> Captured {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(move || BufWriter(writer.clone()))
        .finish();
    Captured { buf, _guard: tracing::subscriber::set_default(subscriber) }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn trigger_sends_the_documented_event_without_an_auth_header() {
    let fixture = Fixture::start(echo()).await;
    let logs = capture();
    let got = pd(&fixture).trigger(&key(), &event()).await.unwrap();
    assert_eq!(got.value, "grantline/REQ-1042/add-member");
    assert_eq!(got.correlation.request_id.as_deref(), Some("pd-req-1"));
    assert!(uuid::Uuid::parse_str(&got.correlation.client_request_id).is_ok());
    let req = &fixture.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v2/enqueue");
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.header("content-type"), Some("application/json"));
    let body = req.body_json();
    let timestamp = body["payload"]["timestamp"].as_str().unwrap();
    assert!(timestamp.parse::<Timestamp>().is_ok());
    assert_eq!(
        body,
        json!({
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": "grantline/REQ-1042/add-member",
            "payload": { "summary": "Access grant failed: REQ-1042 (Graph 403)", "source": "grantline.prod",
                         "severity": "error", "timestamp": timestamp, "component": "graph", "group": "grantline",
                         "class": "grant_failure", "custom_details": { "request": "REQ-1042", "http_status": 403 } },
            "links": [{ "href": "https://grantline.example/requests/REQ-1042", "text": "Request" }],
        })
    );
    let text = logs.text();
    assert!(text.contains("pagerduty.trigger"), "{text}");
    assert!(!text.contains(ROUTING_KEY), "the routing key was logged: {text}");
}

#[tokio::test]
async fn summary_is_cut_at_1024_characters_and_optional_fields_are_left_out() {
    let fixture = Fixture::start(echo()).await;
    let long = format!("{}{}", "ü".repeat(1020), "é".repeat(100));
    let ev = TriggerEvent { summary: long, ..TriggerEvent::new("", "grantline", Severity::Critical) };
    let got = pd(&fixture).trigger(&key(), &ev).await.unwrap();
    assert_eq!(got.value, "generated0000000000000000000000k");
    let body = fixture.requests()[0].body_json();
    let summary = body["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.ends_with("éééé"));
    assert!(body.get("dedup_key").is_none());
    assert!(body.get("links").is_none());
    for field in ["component", "group", "class", "custom_details"] {
        assert!(body["payload"].get(field).is_none(), "{field}");
    }
    assert_eq!(body["payload"]["severity"], "critical");
}

#[tokio::test]
async fn acknowledge_and_resolve_send_only_the_key_and_action() {
    let fixture = Fixture::start(echo()).await;
    let c = pd(&fixture);
    assert_eq!(c.acknowledge(&key(), "grantline/REQ-1042").await.unwrap().value, "grantline/REQ-1042");
    assert_eq!(c.resolve(&key(), "grantline/REQ-1042").await.unwrap().value, "grantline/REQ-1042");
    let reqs = fixture.requests();
    assert_eq!(
        reqs[0].body_json(),
        json!({ "routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": "grantline/REQ-1042" })
    );
    assert_eq!(reqs[1].body_json()["event_action"], "resolve");

    // Refused before sending.
    let bad = |e: PagerDutyError| (e.code(), e.class());
    let invalid = ("pagerduty.invalid_input".to_owned(), ErrorClass::Permanent);
    assert_eq!(bad(c.resolve(&key(), " ").await.unwrap_err()), invalid);
    assert_eq!(bad(c.resolve(&Secret::new("short"), "k").await.unwrap_err()), invalid);
    assert_eq!(bad(c.resolve(&key(), &"k".repeat(256)).await.unwrap_err()), invalid);
    let err = c.trigger(&Secret::new("short"), &event()).await.unwrap_err();
    assert!(!err.to_string().contains("short"));
    assert_eq!(fixture.requests().len(), 2);
}

#[tokio::test]
async fn every_pagerduty_classification_row() {
    let refused = json!({ "status": "invalid event", "message": "Event object is invalid",
                          "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"] });
    let cases: Vec<(Reply, &str, ErrorClass)> = vec![
        (Reply::json(400, refused.clone()), "pagerduty.bad_request", ErrorClass::Permanent),
        (
            Reply::json(429, "{}").header("Retry-After", "30"),
            "pagerduty.throttled",
            ErrorClass::Transient { retry_after: Some(Duration::from_secs(30)) },
        ),
        (Reply::empty(429), "pagerduty.throttled", ErrorClass::Transient { retry_after: Some(THROTTLE_FLOOR) }),
        (Reply::empty(500), "pagerduty.server_error", ErrorClass::TRANSIENT),
        (Reply::empty(502), "pagerduty.bad_gateway", ErrorClass::TRANSIENT),
        (
            Reply::empty(503).header("Retry-After", "4"),
            "pagerduty.unavailable",
            ErrorClass::Transient { retry_after: Some(Duration::from_secs(4)) },
        ),
        (Reply::empty(504), "pagerduty.gateway_timeout", ErrorClass::TRANSIENT),
        (Reply::empty(403), "pagerduty.forbidden", ErrorClass::Permanent),
        (Reply::empty(404), "pagerduty.not_found", ErrorClass::Permanent),
    ];
    for (reply, code, class) in cases {
        let fixture = Fixture::start(move |_| reply.clone()).await;
        let err = pd(&fixture).trigger(&key(), &event()).await.unwrap_err();
        assert_eq!((err.code().as_str(), err.class()), (code, class.clone()), "{err}");
        assert!(!format!("{err} {err:?}").contains(ROUTING_KEY));
        let step: StepError = err.into();
        assert_eq!((step.code.as_str(), step.class), (code, class));
    }
    let fixture = Fixture::start(move |_| Reply::json(400, refused.clone())).await;
    let err = pd(&fixture).trigger(&key(), &event()).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(
        err.to_string().contains(
            "HTTP 400: Event object is invalid [Length of 'routing_key' is incorrect (should be 32 characters)]"
        ),
        "{err}"
    );
    let client =
        PagerDutyClient::new(&PagerDutyConfig { base_url: "http://127.0.0.1:9".into(), ..Default::default() }).unwrap();
    let err = client.trigger(&key(), &event()).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("pagerduty.connect", ErrorClass::TRANSIENT));
    assert!(err.correlation().is_some());
    assert!(!format!("{client:?}").contains(ROUTING_KEY));
}

#[test]
fn pagerduty_config() {
    let cfg: PagerDutyConfig = toml::from_str("[http]\ntimeout_ms = 2000").unwrap();
    assert_eq!(cfg.base_url, "https://events.pagerduty.com");
    assert_eq!(cfg.http.timeout_ms, 2000);
    assert!(toml::from_str::<PagerDutyConfig>("routing_key = 'x'").is_err());
    let err = PagerDutyClient::new(&PagerDutyConfig { base_url: "events".into(), ..Default::default() }).unwrap_err();
    assert_eq!(err.key, "pagerduty.base_url");
    let mut zero = PagerDutyConfig::default();
    zero.http.connect_timeout_ms = 0;
    assert_eq!(PagerDutyClient::new(&zero).unwrap_err().key, "pagerduty.http.connect_timeout_ms");
}

// ------------------------------------------------------------------------------------------
// The signed alert webhook.

const WEBHOOK_SECRET: &str = "webhook-shared-secret-value";

fn alert() -> AlertEvent {
    AlertEvent {
        event: AlertEventKind::Trigger,
        dedup_key: "grantline/REQ-1042/add-member".into(),
        severity: Severity::Warning,
        summary: "Access grant failed: REQ-1042".into(),
        details: json!({ "request": "REQ-1042" }),
        occurred_at: "2026-01-22T14:12:37Z".parse().unwrap(),
    }
}

fn openssl_hmac(secret: &str, body: &[u8]) -> String {
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::sign::Signer;
    let key = PKey::hmac(secret.as_bytes()).unwrap();
    let mut signer = Signer::new(MessageDigest::sha256(), &key).unwrap();
    signer.update(body).unwrap();
    format!("sha256={}", hex::encode(signer.sign_to_vec().unwrap()))
}

#[test]
fn webhook_signature_vector() {
    // Computed with `printf '{"a":1}' | openssl dgst -sha256 -hmac webhook-secret`.
    assert_eq!(
        sign(&Secret::new("webhook-secret"), br#"{"a":1}"#),
        "sha256=7636aa12ed84a427b685e3c629daaa79b2732c8f15c200a639978d3b48f509f0"
    );
}

#[tokio::test]
async fn webhook_body_and_headers_follow_the_contract() {
    let fixture = Fixture::start(|_| Reply::json(202, json!({ "status": "accepted" }))).await;
    let client = AlertWebhookClient::new(&HttpConfig::default()).unwrap();
    let now: Timestamp = "2026-01-22T14:13:00Z".parse().unwrap();
    let logs = capture();
    let url = format!("{}/hooks/oncall?token=url-token-value", fixture.url);
    client.send(&url, &Secret::new(WEBHOOK_SECRET), &alert(), "evt-0001", now).await.unwrap();
    let req = &fixture.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hooks/oncall");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-event-id"), Some("evt-0001"));
    assert_eq!(req.header("x-timestamp"), Some(now.as_second().to_string().as_str()));
    // The signature covers the exact bytes received.
    assert_eq!(req.header("x-signature"), Some(openssl_hmac(WEBHOOK_SECRET, &req.body).as_str()));
    assert_eq!(
        req.body_json(),
        json!({ "event": "alert.trigger", "dedup_key": "grantline/REQ-1042/add-member", "severity": "warning",
                "summary": "Access grant failed: REQ-1042", "details": { "request": "REQ-1042" },
                "occurred_at": "2026-01-22T14:12:37Z" })
    );
    let resolve = AlertEvent { event: AlertEventKind::Resolve, ..alert() };
    client.send(&url, &Secret::new(WEBHOOK_SECRET), &resolve, "evt-0002", now).await.unwrap();
    assert_eq!(fixture.requests()[1].body_json()["event"], "alert.resolve");
    let text = logs.text();
    assert!(text.contains("webhook.send"), "{text}");
    assert!(!text.contains(WEBHOOK_SECRET) && !text.contains("url-token-value"), "{text}");
}

#[tokio::test]
async fn every_webhook_classification_row() {
    let ok = [200u16, 202, 204];
    for status in ok {
        let fixture = Fixture::start(move |_| Reply::empty(status)).await;
        let client = AlertWebhookClient::new(&HttpConfig::default()).unwrap();
        client.send(&fixture.url, &Secret::new(WEBHOOK_SECRET), &alert(), "e", Timestamp::now()).await.unwrap();
    }
    let cases: Vec<(Reply, &str, ErrorClass)> = vec![
        (
            Reply::empty(429).header("Retry-After", "12"),
            "webhook.throttled",
            ErrorClass::Transient { retry_after: Some(Duration::from_secs(12)) },
        ),
        (Reply::empty(429), "webhook.throttled", ErrorClass::Transient { retry_after: None }),
        (Reply::empty(500), "webhook.server_error", ErrorClass::TRANSIENT),
        (
            Reply::empty(503).header("Retry-After", "3"),
            "webhook.unavailable",
            ErrorClass::Transient { retry_after: Some(Duration::from_secs(3)) },
        ),
        (Reply::json(400, json!({ "error": "stale_timestamp" })), "webhook.bad_request", ErrorClass::Permanent),
        (Reply::json(401, json!({ "error": "invalid_signature" })), "webhook.unauthorized", ErrorClass::Permanent),
        (Reply::empty(404), "webhook.not_found", ErrorClass::Permanent),
        (Reply::empty(409), "webhook.conflict", ErrorClass::Permanent),
    ];
    for (reply, code, class) in cases {
        let fixture = Fixture::start(move |_| reply.clone()).await;
        let client = AlertWebhookClient::new(&HttpConfig::default()).unwrap();
        let err =
            client.send(&fixture.url, &Secret::new(WEBHOOK_SECRET), &alert(), "e", Timestamp::now()).await.unwrap_err();
        assert_eq!((err.code().as_str(), err.class()), (code, class.clone()), "{err}");
        let step: StepError = err.into();
        assert_eq!((step.code.as_str(), step.class), (code, class));
    }
    let client = AlertWebhookClient::new(&HttpConfig::default()).unwrap();
    let secret = Secret::new(WEBHOOK_SECRET);
    let err = client.send("http://127.0.0.1:9/hook", &secret, &alert(), "e", Timestamp::now()).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("webhook.connect", ErrorClass::TRANSIENT));
    let err = client.send("mailto:oncall@example.com", &secret, &alert(), "e", Timestamp::now()).await.unwrap_err();
    assert!(matches!(err, WebhookError::InvalidInput { .. }));
    let err = client.send("http://127.0.0.1:9/hook", &secret, &alert(), " ", Timestamp::now()).await.unwrap_err();
    assert_eq!(err.code(), "webhook.invalid_input");
    let text = format!("{client:?}");
    assert!(!text.contains(WEBHOOK_SECRET));
    let fixture = Fixture::start(|_| Reply::json(401, json!({ "error": "invalid_signature" }))).await;
    let err = client.send(&fixture.url, &secret, &alert(), "e", Timestamp::now()).await.unwrap_err();
    assert_eq!(err.to_string(), r#"alert webhook answered HTTP 401: {"error":"invalid_signature"}"#);
}
