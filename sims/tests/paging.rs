#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The PagerDuty Events API v2 simulator and the signed alert webhook receiver.

use std::net::SocketAddr;
use std::time::Duration;

use grantline_sims::paging::{
    AlertStatus, DEMO_ROUTING_KEY, DEMO_WEBHOOK_SECRET, EventOutcome, PagingConfig, PagingSims,
};
use grantline_sims::{Clock, FaultRule, Method};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const OTHER_KEY: &str = "R0ANOTHERSERVICEROUTINGKEY000002";

async fn start() -> PagingSims {
    PagingSims::start(PagingConfig::demo(), Clock::new(), SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap()
}

async fn enqueue(sims: &PagingSims, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new().post(sims.enqueue_url()).json(body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn trigger(key: &str, dedup: Option<&str>, summary: &str) -> Value {
    let mut v = json!({
        "routing_key": key,
        "event_action": "trigger",
        "payload": { "summary": summary, "source": "grantline.test", "severity": "error",
                     "component": "graph", "group": "grantline", "class": "grant_failure",
                     "custom_details": { "request": "REQ-1042", "http_status": 403 } },
        "client": "grantline",
        "links": [{ "href": "https://grantline.example/requests/REQ-1042", "text": "Request" }],
    });
    if let Some(d) = dedup {
        v["dedup_key"] = json!(d);
    }
    v
}

fn action(key: &str, action: &str, dedup: &str) -> Value {
    json!({ "routing_key": key, "event_action": action, "dedup_key": dedup })
}

#[tokio::test]
async fn trigger_ack_resolve_and_a_new_alert_after_resolve() {
    let sims = start().await;
    let (status, body) =
        enqueue(&sims, &trigger(DEMO_ROUTING_KEY, Some("grantline/REQ-1042/add"), "Grant failed")).await;
    assert_eq!(status, 202);
    assert_eq!(
        body,
        json!({ "status": "success", "message": "Event processed", "dedup_key": "grantline/REQ-1042/add" })
    );

    // The same key while open merges; another routing key is another alert.
    assert_eq!(enqueue(&sims, &trigger(DEMO_ROUTING_KEY, Some("grantline/REQ-1042/add"), "Again")).await.0, 202);
    assert_eq!(enqueue(&sims, &trigger(OTHER_KEY, Some("grantline/REQ-1042/add"), "Other service")).await.0, 202);
    let state = sims.state();
    assert_eq!(state.incidents().len(), 2);
    let first = &state.incidents()[0];
    assert_eq!(first.status, AlertStatus::Triggered);
    assert_eq!(first.summary, "Grant failed");
    assert_eq!(first.severity, "error");
    assert_eq!(first.component.as_deref(), Some("graph"));
    assert_eq!(first.custom_details["request"], "REQ-1042");
    assert_eq!(first.merged_triggers(), 1);
    assert_eq!(first.routing_key, DEMO_ROUTING_KEY);

    assert_eq!(enqueue(&sims, &action(DEMO_ROUTING_KEY, "acknowledge", "grantline/REQ-1042/add")).await.0, 202);
    assert_eq!(enqueue(&sims, &action(DEMO_ROUTING_KEY, "acknowledge", "grantline/REQ-1042/add")).await.0, 202);
    assert_eq!(sims.state().incidents()[0].status, AlertStatus::Acknowledged);
    let (status, body) = enqueue(&sims, &action(DEMO_ROUTING_KEY, "resolve", "grantline/REQ-1042/add")).await;
    assert_eq!((status, body["dedup_key"].as_str()), (202, Some("grantline/REQ-1042/add")));
    let state = sims.state();
    let first = &state.incidents()[0];
    assert_eq!(first.status, AlertStatus::Resolved);
    let outcomes: Vec<EventOutcome> = first.events.iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [
            EventOutcome::Opened,
            EventOutcome::Merged,
            EventOutcome::Acknowledged,
            EventOutcome::AlreadyAcknowledged,
            EventOutcome::Resolved
        ]
    );
    // The other service's alert is untouched.
    assert_eq!(state.incidents()[1].status, AlertStatus::Triggered);

    // After resolve: ack and resolve are dropped (still 202), a trigger opens a new alert.
    assert_eq!(enqueue(&sims, &action(DEMO_ROUTING_KEY, "resolve", "grantline/REQ-1042/add")).await.0, 202);
    assert_eq!(enqueue(&sims, &action(DEMO_ROUTING_KEY, "acknowledge", "never-seen")).await.0, 202);
    assert_eq!(sims.state().dropped.len(), 2);
    assert_eq!(enqueue(&sims, &trigger(DEMO_ROUTING_KEY, Some("grantline/REQ-1042/add"), "Third")).await.0, 202);
    let state = sims.state();
    assert_eq!(state.incidents().len(), 3);
    assert_eq!(state.alert("grantline/REQ-1042/add").unwrap().number, 3);
    assert_eq!(state.open_alerts().len(), 2);
    sims.shutdown().await;
}

#[tokio::test]
async fn a_trigger_without_dedup_key_gets_one() {
    let sims = start().await;
    let (status, body) = enqueue(&sims, &trigger(DEMO_ROUTING_KEY, None, "No key")).await;
    assert_eq!(status, 202);
    let key = body["dedup_key"].as_str().unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(sims.state().incidents()[0].dedup_key, key);
    sims.shutdown().await;
}

#[tokio::test]
async fn invalid_events_are_400_with_the_errors_list() {
    let sims = start().await;
    let (status, body) = enqueue(&sims, &trigger("short-key", Some("k"), "x")).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({ "status": "invalid event", "message": "Event object is invalid",
                "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"] })
    );

    let mut bad = trigger(DEMO_ROUTING_KEY, Some("k"), &"x".repeat(1025));
    bad["payload"]["severity"] = json!("fatal");
    let (status, body) = enqueue(&sims, &bad).await;
    assert_eq!(status, 400);
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{body}");
    assert!(errors[0].as_str().unwrap().contains("payload.summary"));
    assert!(errors[1].as_str().unwrap().contains("payload.severity"));

    // Exactly 1024 characters is fine.
    assert_eq!(enqueue(&sims, &trigger(DEMO_ROUTING_KEY, Some("k"), &"é".repeat(1024))).await.0, 202);

    let (status, body) = enqueue(&sims, &json!({ "routing_key": DEMO_ROUTING_KEY, "event_action": "resolve" })).await;
    assert_eq!(status, 400);
    assert!(body["errors"][0].as_str().unwrap().contains("dedup_key"));
    let (status, _) = enqueue(&sims, &json!({ "routing_key": DEMO_ROUTING_KEY, "event_action": "explode" })).await;
    assert_eq!(status, 400);
    let (status, _) = enqueue(&sims, &action(DEMO_ROUTING_KEY, "resolve", &"k".repeat(256))).await;
    assert_eq!(status, 400);

    // 512 KB.
    let mut huge = trigger(DEMO_ROUTING_KEY, Some("big"), "big");
    huge["payload"]["custom_details"] = json!({ "blob": "x".repeat(600 * 1024) });
    let (status, body) = enqueue(&sims, &huge).await;
    assert_eq!(status, 400);
    assert!(body["errors"][0].as_str().unwrap().contains("too large"));

    let resp = reqwest::Client::new().post(sims.enqueue_url()).body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(sims.state().incidents().len(), 1);
    sims.shutdown().await;
}

#[tokio::test]
async fn scripted_throttling_and_outages() {
    let sims = start().await;
    sims.faults().push(FaultRule::respond(429).on(Method::POST, "/v2/enqueue"));
    sims.faults().push(FaultRule::respond(503).on(Method::POST, "/v2/enqueue").header("Retry-After", "5"));
    let (status, body) = enqueue(&sims, &trigger(DEMO_ROUTING_KEY, Some("k"), "x")).await;
    assert_eq!(status, 429);
    assert_eq!(body["status"], "throttle event");
    let resp = reqwest::Client::new()
        .post(sims.enqueue_url())
        .json(&trigger(DEMO_ROUTING_KEY, Some("k"), "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert!(sims.state().incidents().is_empty());
    assert_eq!(enqueue(&sims, &trigger(DEMO_ROUTING_KEY, Some("k"), "x")).await.0, 202);
    let log = sims.requests();
    assert_eq!(log.len(), 3);
    assert!(log[0].fault && log[1].fault && !log[2].fault);
    sims.shutdown().await;
}

#[tokio::test]
async fn change_events_are_accepted() {
    let sims = start().await;
    let body = json!({ "routing_key": DEMO_ROUTING_KEY,
                       "payload": { "summary": "Policy reloaded", "source": "grantline", "timestamp": "2026-01-22T14:12:37Z" } });
    let resp =
        reqwest::Client::new().post(format!("{}/v2/change/enqueue", sims.base_url())).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let state = sims.state();
    assert_eq!(state.change_events.len(), 1);
    assert_eq!(state.change_events[0].summary, "Policy reloaded");
    assert_eq!(state.change_events[0].body["routing_key"], "…0001");
    sims.shutdown().await;
}

#[tokio::test]
async fn admin_state_masks_routing_keys() {
    let sims = start().await;
    enqueue(&sims, &trigger(DEMO_ROUTING_KEY, Some("k"), "x")).await;
    let state: Value = reqwest::get(format!("{}/sim/state", sims.base_url())).await.unwrap().json().await.unwrap();
    let text = state.to_string();
    assert!(!text.contains(DEMO_ROUTING_KEY), "{text}");
    assert_eq!(state["alerts"][0]["routing_key"], "…0001");
    sims.shutdown().await;
}

// ------------------------------------------------------------------------------------------
// The signed webhook receiver.

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn alert_body(kind: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event": kind, "dedup_key": "grantline/REQ-1042/add", "severity": "error",
        "summary": "Access grant failed", "details": { "request": "REQ-1042" },
        "occurred_at": "2026-01-22T14:12:37Z",
    }))
    .unwrap()
}

async fn deliver(
    sims: &PagingSims,
    body: &[u8],
    signature: Option<String>,
    timestamp: Option<i64>,
    event_id: Option<&str>,
) -> (u16, Value) {
    let mut req =
        reqwest::Client::new().post(sims.webhook_url()).header("Content-Type", "application/json").body(body.to_vec());
    if let Some(s) = signature {
        req = req.header("X-Signature", s);
    }
    if let Some(t) = timestamp {
        req = req.header("X-Timestamp", t.to_string());
    }
    if let Some(id) = event_id {
        req = req.header("X-Event-Id", id);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn webhook_accepts_signed_deliveries_once() {
    let sims = start().await;
    let now = sims.clock().unix_seconds();
    let body = alert_body("alert.trigger");
    let sig = sign(DEMO_WEBHOOK_SECRET, &body);
    let (status, answer) = deliver(&sims, &body, Some(sig.clone()), Some(now), Some("evt-1")).await;
    assert_eq!((status, answer), (202, json!({ "status": "accepted" })));
    let (status, answer) = deliver(&sims, &body, Some(sig), Some(now), Some("evt-1")).await;
    assert_eq!((status, answer), (200, json!({ "status": "duplicate" })));
    let resolve = alert_body("alert.resolve");
    assert_eq!(
        deliver(&sims, &resolve, Some(sign(DEMO_WEBHOOK_SECRET, &resolve)), Some(now), Some("evt-2")).await.0,
        202
    );
    let state = sims.state();
    assert_eq!(state.deliveries.len(), 2);
    let first = state.delivery("evt-1").unwrap();
    assert_eq!(first.duplicates, 1);
    assert_eq!(first.kind(), "alert.trigger");
    assert_eq!(first.dedup_key(), "grantline/REQ-1042/add");
    assert_eq!(first.raw_body.as_bytes(), body.as_slice());
    assert_eq!(state.delivery("evt-2").unwrap().kind(), "alert.resolve");
    sims.shutdown().await;
}

#[tokio::test]
async fn webhook_refuses_bad_signatures_stale_timestamps_and_bad_bodies() {
    let sims = start().await;
    let now = sims.clock().unix_seconds();
    let body = alert_body("alert.trigger");
    let good = sign(DEMO_WEBHOOK_SECRET, &body);
    type Case<'a> = (Option<String>, Option<i64>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (None, Some(now), Some("e"), 401, "missing_signature"),
        (Some(sign("wrong-secret", &body)), Some(now), Some("e"), 401, "invalid_signature"),
        (Some(good.replace("sha256=", "")), Some(now), Some("e"), 401, "invalid_signature"),
        (Some(good.clone()), None, Some("e"), 400, "invalid_timestamp"),
        (Some(good.clone()), Some(now - 400), Some("e"), 400, "stale_timestamp"),
        (Some(good.clone()), Some(now + 400), Some("e"), 400, "stale_timestamp"),
        (Some(good.clone()), Some(now), None, 400, "missing_event_id"),
    ];
    for (sig, ts, id, status, code) in cases {
        let (got, answer) = deliver(&sims, &body, sig, ts, id).await;
        assert_eq!((got, answer["error"].as_str()), (status, Some(code)));
    }
    // The signature covers the exact bytes: one added space is another body.
    let mut tampered = body.clone();
    tampered.push(b' ');
    assert_eq!(deliver(&sims, &tampered, Some(good.clone()), Some(now), Some("e")).await.0, 401);

    let wrong = serde_json::to_vec(&json!({ "event": "alert.explode", "dedup_key": "k", "severity": "error",
        "summary": "s", "details": {}, "occurred_at": "2026-01-22T14:12:37Z" }))
    .unwrap();
    let (status, answer) = deliver(&sims, &wrong, Some(sign(DEMO_WEBHOOK_SECRET, &wrong)), Some(now), Some("x")).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_event")));

    // The window follows the simulated clock: a delivery stamped now is stale ten minutes on.
    sims.clock().advance(Duration::from_secs(600));
    assert_eq!(deliver(&sims, &body, Some(good), Some(now), Some("late")).await.0, 400);
    let state = sims.state();
    assert!(state.deliveries.is_empty());
    assert_eq!(state.rejected.len(), 10);

    // A new secret takes effect at once.
    sims.set_webhook_secret("rotated");
    let now = sims.clock().unix_seconds();
    assert_eq!(deliver(&sims, &body, Some(sign("rotated", &body)), Some(now), Some("r")).await.0, 202);
    sims.shutdown().await;
}

#[tokio::test]
async fn webhook_faults_come_before_verification() {
    let sims = start().await;
    sims.faults().push(FaultRule::respond(503).on(Method::POST, "/webhook").header("Retry-After", "2"));
    let body = alert_body("alert.trigger");
    let now = sims.clock().unix_seconds();
    let (status, _) = deliver(&sims, &body, Some(sign(DEMO_WEBHOOK_SECRET, &body)), Some(now), Some("f")).await;
    assert_eq!(status, 503);
    assert_eq!(deliver(&sims, &body, Some(sign(DEMO_WEBHOOK_SECRET, &body)), Some(now), Some("f")).await.0, 202);
    sims.shutdown().await;
}
