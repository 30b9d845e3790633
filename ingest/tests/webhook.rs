//! The ServiceNow webhook against a real Redis: what an accepted delivery writes, that
//! duplicates write nothing, and that every refusal leaves Redis exactly as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use serde_json::Value;

use common::*;
use grantline_shared::audit::{self, AuditRecord};
use grantline_shared::request::{TicketRef, fields, keys};
use grantline_shared::trace::TraceParent;
use redis::AsyncCommands;

#[tokio::test]
async fn an_accepted_webhook_stores_the_request_its_audit_record_and_one_validate_job() {
    let h = harness().await;
    let a = call(&h.app, webhook(&ritm_body(NUMBER, SYS_ID))).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let id = a.json["request_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(a.json["duplicate"], false);
    assert_eq!(a.json["status_url"], format!("/v1/requests/{id}"));
    assert_eq!(a.headers["location"], format!("/v1/requests/{id}").as_str());

    // the request record
    let rec = request_hash(&h, &id).await;
    assert_eq!(rec[fields::STATE], "received");
    let ticket: TicketRef = serde_json::from_str(&rec[fields::TICKET]).unwrap();
    assert_eq!(
        ticket,
        TicketRef {
            system: "servicenow".into(),
            table: "sc_req_item".into(),
            sys_id: SYS_ID.into(),
            number: NUMBER.into()
        }
    );
    let tp = TraceParent::parse(&rec[fields::TRACEPARENT]).expect("a valid traceparent");
    assert_eq!(rec[fields::TRACE_ID], tp.trace_id);
    assert!(tp.sampled());
    assert_eq!(rec[fields::CREATED_MS], NOW_MS.to_string());
    assert_eq!(rec[fields::UPDATED_MS], NOW_MS.to_string());

    // indexes
    let mut c = h.queue.connection();
    let score: Option<f64> = c.zscore(abs(&h, keys::REQUESTS), &id).await.unwrap();
    assert_eq!(score, Some(NOW_MS as f64));
    let by_ticket: Option<String> = c.get(abs(&h, &keys::ticket("servicenow", NUMBER))).await.unwrap();
    assert_eq!(by_ticket.as_deref(), Some(id.as_str()));

    // exactly one validate job, ready, carrying the trace context
    let m = h.queue.metrics("validate").await.unwrap();
    assert_eq!((m.ready, m.delayed, m.in_flight), (1, 0, 0));
    let jobs = jobs(&h, "validate").await;
    assert_eq!(jobs.len(), 1);
    let env = jobs.values().next().unwrap();
    assert_eq!(env["p"], serde_json::json!({"request_id": id}));
    assert_eq!(env["m"]["traceparent"], rec[fields::TRACEPARENT].as_str());

    // one audit record, chained from genesis to the recorded head
    let entries = audit_entries(&h, &id).await;
    assert_eq!(entries.len(), 1);
    let v = audit::verify(&entries, &rec[fields::AUDIT_HEAD]);
    assert_eq!(v.broken_at, None, "{v:?}");
    let record: AuditRecord = serde_json::from_str(&entries[0].0).unwrap();
    assert_eq!(record.request_id, id);
    assert_eq!(record.actor, "ingest:servicenow");
    assert_eq!(record.trace_id, tp.trace_id);
    assert_eq!(record.at_ms, NOW_MS);
    assert_eq!(
        record.event,
        audit::AuditEvent::RequestReceived {
            system: "servicenow".into(),
            ticket: NUMBER.into(),
            sys_id: SYS_ID.into()
        }
    );
    assert_eq!(h.state.metrics.webhooks(grantline_ingest::WebhookOutcome::Accepted), 1);
}

#[tokio::test]
async fn an_incoming_traceparent_is_continued() {
    let h = harness().await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let req = post(
        "/v1/webhooks/servicenow",
        ritm_body(NUMBER, SYS_ID),
        &[("content-type", "application/json"), ("x-grantline-secret", SHARED_SECRET), ("traceparent", incoming)],
    );
    let a = call(&h.app, req).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let rec = request_hash(&h, a.json["request_id"].as_str().unwrap()).await;
    let tp = TraceParent::parse(&rec[fields::TRACEPARENT]).unwrap();
    assert_eq!(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(tp.parent_id, "00f067aa0ba902b7", "the request gets its own span");
    // an invalid one is ignored: a fresh trace starts
    let req = post(
        "/v1/webhooks/servicenow",
        ritm_body("RITM0010483", SYS_ID),
        &[
            ("content-type", "application/json"),
            ("x-grantline-secret", SHARED_SECRET),
            ("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        ],
    );
    let a = call(&h.app, req).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let rec = request_hash(&h, a.json["request_id"].as_str().unwrap()).await;
    assert!(TraceParent::parse(&rec[fields::TRACEPARENT]).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_ticket_five_times_at_once_is_one_request_and_one_job() {
    let h = harness().await;
    let body = ritm_body(NUMBER, SYS_ID);
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let app = h.app.clone();
            let req = webhook(&body);
            tokio::spawn(async move { call(&app, req).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let ids: Vec<&str> = answers.iter().map(|a| a.json["request_id"].as_str().unwrap()).collect();
    assert!(answers.iter().all(|a| a.status == StatusCode::ACCEPTED));
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(answers.iter().filter(|a| a.json["duplicate"] == false).count(), 1);
    let before = snapshot(&h).await;
    // and again later: still the same request, nothing written
    let a = call(&h.app, webhook(&body)).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.json["request_id"], ids[0]);
    assert_eq!(a.json["duplicate"], true);
    assert_eq!(snapshot(&h).await, before);
    let mut c = h.queue.connection();
    assert_eq!(c.zcard::<_, u64>(abs(&h, keys::REQUESTS)).await.unwrap(), 1);
    assert_eq!(h.queue.metrics("validate").await.unwrap().ready, 1);
    assert_eq!(jobs(&h, "validate").await.len(), 1);
    assert_eq!(h.state.metrics.webhooks(grantline_ingest::WebhookOutcome::Duplicate), 5);
}

#[tokio::test]
async fn a_valid_hmac_signature_is_accepted() {
    let h = harness().await;
    let body = ritm_body(NUMBER, SYS_ID);
    let ts = (NOW_MS / 1000 - 30).to_string();
    let sig = sign(HMAC_KEY, &ts, body.as_bytes());
    let req = post(
        "/v1/webhooks/servicenow",
        body,
        &[("content-type", "application/json"), ("x-grantline-timestamp", &ts), ("x-grantline-signature", &sig)],
    );
    let a = call(&h.app, req).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
}

/// Sends `req`, expects the refusal, and checks Redis did not change at all.
async fn refused(
    h: &Harness,
    req: axum::http::Request<axum::body::Body>,
    status: StatusCode,
    code: &str,
    field: Option<&str>,
) {
    let before = snapshot(h).await;
    let a = call(&h.app, req).await;
    assert_eq!(a.status, status, "{}", a.text);
    assert_eq!(a.json["code"], code, "{}", a.text);
    assert_eq!(a.json["field"], field.map(Value::from).unwrap_or(Value::Null), "{}", a.text);
    assert!(a.json["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(a.json.as_object().unwrap().len(), 3, "{}", a.text);
    assert_eq!(snapshot(h).await, before, "a refused request changed Redis");
}

#[tokio::test]
async fn every_refusal_has_a_stable_code_and_changes_nothing() {
    let h = harness().await;
    // one request in the store first, so "unchanged" compares something
    accept(&h, "RITM0000001").await;
    let body = ritm_body(NUMBER, SYS_ID);
    let json_ct = ("content-type", "application/json");
    let now_s = NOW_MS / 1000;

    // authentication
    let ts = now_s.to_string();
    let mut bad_sig = sign(HMAC_KEY, &ts, b"{}");
    refused(
        &h,
        post(
            "/v1/webhooks/servicenow",
            body.clone(),
            &[json_ct, ("x-grantline-timestamp", &ts), ("x-grantline-signature", &bad_sig)],
        ),
        StatusCode::UNAUTHORIZED,
        "auth.bad_signature",
        None,
    )
    .await;
    bad_sig = sign("not-the-key-not-the-key", &ts, body.as_bytes());
    refused(
        &h,
        post(
            "/v1/webhooks/servicenow",
            body.clone(),
            &[json_ct, ("x-grantline-timestamp", &ts), ("x-grantline-signature", &bad_sig)],
        ),
        StatusCode::UNAUTHORIZED,
        "auth.bad_signature",
        None,
    )
    .await;
    let old = (now_s - 301).to_string();
    let replayed = sign(HMAC_KEY, &old, body.as_bytes());
    refused(
        &h,
        post(
            "/v1/webhooks/servicenow",
            body.clone(),
            &[json_ct, ("x-grantline-timestamp", &old), ("x-grantline-signature", &replayed)],
        ),
        StatusCode::UNAUTHORIZED,
        "auth.replayed",
        None,
    )
    .await;
    let future = (now_s + 301).to_string();
    let early = sign(HMAC_KEY, &future, body.as_bytes());
    refused(
        &h,
        post(
            "/v1/webhooks/servicenow",
            body.clone(),
            &[json_ct, ("x-grantline-timestamp", &future), ("x-grantline-signature", &early)],
        ),
        StatusCode::UNAUTHORIZED,
        "auth.replayed",
        None,
    )
    .await;
    refused(
        &h,
        post("/v1/webhooks/servicenow", body.clone(), &[json_ct]),
        StatusCode::UNAUTHORIZED,
        "auth.missing",
        None,
    )
    .await;
    refused(
        &h,
        post(
            "/v1/webhooks/servicenow",
            body.clone(),
            &[json_ct, ("x-grantline-secret", "shared-secret-for-tests-0002")],
        ),
        StatusCode::UNAUTHORIZED,
        "auth.bad_secret",
        None,
    )
    .await;

    // size, media type, syntax
    let huge = format!(r#"{{"ritm":{{"sys_id":"{SYS_ID}","number":"{NUMBER}"}},"pad":"{}"}}"#, "x".repeat(70 * 1024));
    refused(&h, webhook(&huge), StatusCode::PAYLOAD_TOO_LARGE, "request.too_large", None).await;
    refused(
        &h,
        post(
            "/v1/webhooks/servicenow",
            body.clone(),
            &[("content-type", "text/plain"), ("x-grantline-secret", SHARED_SECRET)],
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "request.unsupported_media_type",
        None,
    )
    .await;
    refused(
        &h,
        post("/v1/webhooks/servicenow", body.clone(), &[("x-grantline-secret", SHARED_SECRET)]),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "request.unsupported_media_type",
        None,
    )
    .await;
    refused(&h, webhook(r#"{"ritm": {"sys_id": "#), StatusCode::BAD_REQUEST, "request.malformed_json", None).await;
    refused(&h, webhook(""), StatusCode::BAD_REQUEST, "request.malformed_json", None).await;

    // fields
    refused(
        &h,
        webhook(&ritm_body(NUMBER, "not-a-sys-id")),
        StatusCode::UNPROCESSABLE_ENTITY,
        "request.invalid_field",
        Some("ritm.sys_id"),
    )
    .await;
    refused(
        &h,
        webhook(r#"{"ritm":{"number":"RITM0010482"}}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        "request.invalid_field",
        Some("ritm.sys_id"),
    )
    .await;
    refused(
        &h,
        webhook(&ritm_body("INC0010482", SYS_ID)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "request.invalid_field",
        Some("ritm.number"),
    )
    .await;
    refused(
        &h,
        webhook(&format!(r#"{{"table":"sys_user","ritm":{{"sys_id":"{SYS_ID}","number":"{NUMBER}"}}}}"#)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "request.invalid_field",
        Some("table"),
    )
    .await;
    refused(
        &h,
        webhook(r#"{"source":"servicenow"}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        "request.invalid_field",
        Some("ritm"),
    )
    .await;

    // counted
    let rejected = h.state.metrics.rejections();
    assert_eq!(rejected["auth.bad_signature"], 2);
    assert_eq!(rejected["request.invalid_field"], 5);
    assert_eq!(h.state.metrics.webhooks(grantline_ingest::WebhookOutcome::Rejected), 16);
}

#[tokio::test]
async fn a_declared_content_length_over_the_limit_is_refused_before_reading() {
    let h = harness().await;
    let req = post(
        "/v1/webhooks/servicenow",
        "{}",
        &[("content-type", "application/json"), ("x-grantline-secret", SHARED_SECRET), ("content-length", "1000000")],
    );
    let a = call(&h.app, req).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.json["code"], "request.too_large");
}
