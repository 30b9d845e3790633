//! Test harness: a private redis-server per test, the router driven with `tower::oneshot`,
//! a clock the test controls, and snapshots of everything in Redis.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use hmac::{Hmac, Mac};
use redis::AsyncCommands;
use serde_json::Value;
use sha2::Sha256;
use tower::ServiceExt;

use grantline_ingest::{AppState, IngestConfig, OperatorToken, Secret, ServiceNowAuth, router};
use grantline_queue::server::RedisServer;
use grantline_queue::{Queue, QueueConfig};

pub const SHARED_SECRET: &str = "shared-secret-for-tests-0001";
pub const HMAC_KEY: &str = "hmac-key-for-tests-000000001";
pub const OPERATOR_TOKEN: &str = "operator-token-for-tests-0001";
pub const OPERATOR_ID: &str = "ops";
pub const MGR_ID: &str = "22222222-2222-2222-2222-222222222222";
pub const ALEX_ID: &str = "11111111-1111-1111-1111-111111111111";
/// The operators of the tests: (id, token, directory object id, UPN). `ops` is the manager's
/// own token; `helpdesk` has no directory identity.
pub const OPERATORS: [(&str, &str, Option<&str>, Option<&str>); 5] = [
    (OPERATOR_ID, OPERATOR_TOKEN, Some(MGR_ID), Some("mgr@contoso.com")),
    ("alex", "operator-token-for-alex-00001", Some(ALEX_ID), Some("alex@contoso.com")),
    ("stranger", "operator-token-for-stranger-01", Some("33333333-3333-3333-3333-333333333333"), None),
    ("own1", "operator-token-for-own1-00001", Some("44444444-4444-4444-4444-444444444444"), Some("own1@contoso.com")),
    ("helpdesk", "operator-token-for-helpdesk-01", None, None),
];
/// 2027-01-15T08:00:00Z
pub const NOW_MS: u64 = 1_800_000_000_000;
pub const SYS_ID: &str = "a9e30c7dc61122760116894de7bcc7bd";
pub const NUMBER: &str = "RITM0010482";

pub struct Harness {
    pub redis: RedisServer,
    pub queue: Queue,
    pub state: AppState,
    pub app: Router,
    pub now: Arc<AtomicU64>,
}

pub fn config() -> IngestConfig {
    IngestConfig {
        servicenow: ServiceNowAuth {
            shared_secret: Some(Secret::new(SHARED_SECRET)),
            hmac_secret: Some(Secret::new(HMAC_KEY)),
        },
        operator_tokens: OPERATORS
            .iter()
            .map(|(id, token, oid, upn)| OperatorToken {
                id: (*id).into(),
                token: Secret::new(*token),
                directory_id: oid.map(str::to_owned),
                upn: upn.map(str::to_owned),
            })
            .collect(),
        ..IngestConfig::default()
    }
}

pub async fn harness() -> Harness {
    harness_with(config()).await
}

pub async fn harness_with(cfg: IngestConfig) -> Harness {
    cfg.validate().unwrap();
    let redis = RedisServer::start().expect("redis-server");
    let queue =
        Queue::connect(&redis.url(), QueueConfig { namespace: "t".into(), ..QueueConfig::default() }).await.unwrap();
    let now = Arc::new(AtomicU64::new(NOW_MS));
    let clock_now = now.clone();
    let state = AppState::new(queue.clone(), cfg).with_clock(grantline_shared::Clock::from_fn(move || {
        grantline_shared::clock::timestamp(clock_now.load(Ordering::SeqCst))
    }));
    let app = router(state.clone());
    Harness { redis, queue, state, app, now }
}

pub fn ritm_body(number: &str, sys_id: &str) -> String {
    serde_json::json!({
        "source": "servicenow", "event": "ritm.created", "instance": "contoso.service-now.com",
        "ritm": {
            "sys_id": sys_id, "number": number,
            "cat_item": {"sys_id": "0b36816197113110a24734000153af45", "name": "Finance BI"},
            "requested_for": {"sys_id": "1", "user_name": "alex", "email": "alex@contoso.com"},
            "variables": {"justification": "quarter close"}
        },
        "sent_at": "2027-01-15T08:00:00Z"
    })
    .to_string()
}

pub fn sign(key: &str, ts: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn post(uri: &str, body: impl Into<Body>, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().method("POST").uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

pub fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().method("GET").uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

/// A webhook authenticated with the shared secret.
pub fn webhook(body: &str) -> Request<Body> {
    post(
        "/v1/webhooks/servicenow",
        body.to_owned(),
        &[("content-type", "application/json"), ("x-grantline-secret", SHARED_SECRET)],
    )
}

/// The bearer header of the operator with this id.
pub fn bearer_of(id: &str) -> String {
    let (_, token, _, _) = OPERATORS.iter().find(|o| o.0 == id).expect("operator");
    format!("Bearer {token}")
}

pub fn bearer() -> String {
    format!("Bearer {OPERATOR_TOKEN}")
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

pub async fn call(app: &Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, headers, text, json }
}

/// Posts the standard webhook and returns the new request id.
pub async fn accept(h: &Harness, number: &str) -> String {
    let a = call(&h.app, webhook(&ritm_body(number, SYS_ID))).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    a.json["request_id"].as_str().unwrap().to_owned()
}

pub fn abs(h: &Harness, rel: &str) -> String {
    h.queue.namespace().key(rel)
}

pub async fn request_hash(h: &Harness, id: &str) -> HashMap<String, String> {
    let mut c = h.queue.connection();
    c.hgetall(abs(h, &grantline_shared::request::keys::request(id))).await.unwrap()
}

/// Audit entries as (record, prev, hash), in order.
pub async fn audit_entries(h: &Harness, id: &str) -> Vec<(String, String, String)> {
    let mut c = h.queue.connection();
    let reply: redis::streams::StreamRangeReply =
        c.xrange_all(abs(h, &grantline_shared::request::keys::audit(id))).await.unwrap();
    let s = |m: &HashMap<String, redis::Value>, k: &str| match m.get(k) {
        Some(redis::Value::BulkString(b)) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("field {k}: {other:?}"),
    };
    reply.ids.iter().map(|e| (s(&e.map, "record"), s(&e.map, "prev"), s(&e.map, "hash"))).collect()
}

/// Jobs stored in a queue: id -> envelope JSON ({"p": payload, "m": metadata, "c": ms}).
pub async fn jobs(h: &Harness, queue: &str) -> BTreeMap<String, Value> {
    let mut c = h.queue.connection();
    let all: HashMap<String, String> = c.hgetall(h.queue.keys(queue).jobs).await.unwrap();
    all.into_iter().map(|(k, v)| (k, serde_json::from_str(&v).unwrap())).collect()
}

/// Everything in the Redis database, by key, rendered as text.
pub async fn snapshot(h: &Harness) -> BTreeMap<String, String> {
    let mut c = h.queue.connection();
    let keys: Vec<String> = c.keys("*").await.unwrap();
    let mut out = BTreeMap::new();
    for k in keys {
        let t: String = redis::cmd("TYPE").arg(&k).query_async(&mut c).await.unwrap();
        let v = match t.as_str() {
            "string" => c.get::<_, String>(&k).await.unwrap(),
            "hash" => format!("{:?}", c.hgetall::<_, BTreeMap<String, String>>(&k).await.unwrap()),
            "list" => format!("{:?}", c.lrange::<_, Vec<String>>(&k, 0, -1).await.unwrap()),
            "set" => {
                let mut m: Vec<String> = c.smembers(&k).await.unwrap();
                m.sort();
                format!("{m:?}")
            }
            "zset" => format!("{:?}", c.zrange_withscores::<_, Vec<(String, f64)>>(&k, 0, -1).await.unwrap()),
            "stream" => format!(
                "{:?}",
                c.xrange_all::<_, redis::streams::StreamRangeReply>(&k)
                    .await
                    .unwrap()
                    .ids
                    .iter()
                    .map(|e| e.id.clone())
                    .collect::<Vec<_>>()
            ),
            other => other.to_owned(),
        };
        out.insert(k, format!("{t}:{v}"));
    }
    let size: u64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size as usize, out.len());
    out
}

/// Puts a request into awaiting_approval with a requester and a decision, as the validate
/// and request-approval steps would.
pub async fn await_approval(h: &Harness, id: &str, requester: Value, decision: Value) {
    use grantline_shared::request::fields;
    let mut c = h.queue.connection();
    let _: () = c
        .hset_multiple(
            abs(h, &grantline_shared::request::keys::request(id)),
            &[
                (fields::STATE, "awaiting_approval".to_owned()),
                (fields::REQUESTER, requester.to_string()),
                (fields::DECISION, decision.to_string()),
            ],
        )
        .await
        .unwrap();
}

/// A policy decision (allow) whose approval requirement is `approval` (a plan as JSON).
pub fn decision_with_plan(approval: Value) -> Value {
    let d = serde_json::json!({
        "outcome": "allow", "policy_version": "sha256:test", "evaluated_at": "2027-01-15T08:00:00Z",
        "checks": [], "execute_at": "2027-01-15T08:00:00Z", "approval": approval,
    });
    // it must be a decision the request record accepts
    let typed: grantline_shared::policy::Decision = serde_json::from_value(d.clone()).unwrap();
    serde_json::to_value(typed).unwrap()
}
