//! Health, readiness, metrics, and the real server (TCP, graceful shutdown).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;

use common::*;

/// The metrics listener's routes over the same state (the webhook listener has no /metrics).
fn metrics_app(h: &Harness) -> axum::Router {
    grantline_ingest::ops::metrics_router(grantline_ingest::ops::MetricsState::of_edge(&h.state))
}

#[tokio::test]
async fn health_and_readiness() {
    let mut h = harness().await;
    let a = call(&h.app, get("/healthz", &[])).await;
    assert_eq!((a.status, a.text.as_str()), (StatusCode::OK, "ok"));
    let a = call(&h.app, get("/readyz", &[])).await;
    assert_eq!(a.status, StatusCode::OK);

    h.redis.kill();
    let started = std::time::Instant::now();
    let a = call(&h.app, get("/readyz", &[])).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "readiness answers within its timeout");
    let a = call(&h.app, get("/healthz", &[])).await;
    assert_eq!(a.status, StatusCode::OK, "alive even when Redis is not");
    // accepting nothing while Redis is down, with a stable code
    let a = call(&h.app, webhook(&ritm_body(NUMBER, SYS_ID))).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text);
    assert_eq!(a.json["code"], "service.unavailable");
    let a = call(&metrics_app(&h), get("/metrics", &[])).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text.contains("grantline_queue_scrape_ok 0"), "{}", a.text);
    assert!(a.text.contains("grantline_ingest_requests_total{outcome=\"error\"} 1"), "{}", a.text);
}

#[tokio::test]
async fn metrics_in_prometheus_text() {
    let h = harness().await;
    accept(&h, NUMBER).await;
    accept(&h, NUMBER).await; // duplicate
    let a = call(&h.app, webhook("{")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = call(&metrics_app(&h), get("/metrics", &[])).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = &a.text;
    for line in [
        "# TYPE grantline_queue_ready gauge",
        "grantline_queue_ready{queue=\"validate\"} 1",
        "grantline_queue_in_flight{queue=\"validate\"} 0",
        "grantline_queue_delayed{queue=\"validate\"} 0",
        "grantline_queue_dead{queue=\"validate\"} 0",
        "# TYPE grantline_queue_completed_total counter",
        "grantline_queue_completed_total{queue=\"validate\"} 0",
        "grantline_queue_retried_total{queue=\"validate\"} 0",
        "grantline_queue_dead_total{queue=\"validate\"} 0",
        "grantline_queue_enqueued_total{queue=\"validate\"} 1",
        "grantline_queue_scrape_ok 1",
        "# TYPE grantline_ingest_requests_total counter",
        "grantline_ingest_requests_total{outcome=\"accepted\"} 1",
        "grantline_ingest_requests_total{outcome=\"duplicate\"} 1",
        "grantline_ingest_requests_total{outcome=\"rejected\"} 1",
        "grantline_ingest_rejected_total{code=\"request.malformed_json\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(
        text.lines().any(|l| l.starts_with("grantline_queue_oldest_ready_age_seconds{queue=\"validate\"} ")),
        "{text}"
    );
    // every sample line is `name{labels} value` or `name value`, with a numeric value
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = l.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{l}");
    }
}

#[tokio::test]
async fn serves_over_tcp_and_shuts_down_gracefully() {
    let h = harness().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(grantline_ingest::serve_listener(listener, h.state.clone(), async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let body = ritm_body(NUMBER, SYS_ID);
    let ts = (NOW_MS / 1000).to_string();
    let r = client
        .post(format!("{base}/v1/webhooks/servicenow"))
        .header("content-type", "application/json")
        .header("x-grantline-timestamp", &ts)
        .header("x-grantline-signature", sign(HMAC_KEY, &ts, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let v: serde_json::Value = r.json().await.unwrap();
    let id = v["request_id"].as_str().unwrap().to_owned();

    let r = client.get(format!("{base}/v1/requests/{id}")).bearer_auth(OPERATOR_TOKEN).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(200 * 1024));
    let r = client
        .post(format!("{base}/v1/webhooks/servicenow"))
        .header("content-type", "application/json")
        .header("x-grantline-secret", SHARED_SECRET)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "request.too_large");

    let r = client.delete(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let r = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "route.not_found");

    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn serve_refuses_a_configuration_without_webhook_credentials() {
    let h = harness().await;
    let mut cfg = config();
    cfg.servicenow = grantline_ingest::ServiceNowAuth::default();
    cfg.bind = "127.0.0.1:0".parse().unwrap();
    let err = grantline_ingest::serve(&cfg, h.state.clone(), async {}).await.unwrap_err();
    assert!(err.to_string().contains("ingest.servicenow.shared_secret"), "{err}");
}
