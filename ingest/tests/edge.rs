//! The edge under slow and idle clients, over real TCP: raw clients that send nothing, stall
//! in their headers or body, hold every connection, or send a large body with a bad secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::*;

struct Edge {
    h: Harness,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), grantline_ingest::ServeError>>,
}

impl Edge {
    async fn start(tune: impl FnOnce(&mut grantline_ingest::IngestConfig)) -> Edge {
        let mut cfg = config();
        tune(&mut cfg);
        let h = harness_with(cfg).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(grantline_ingest::serve_listener(listener, h.state.clone(), async {
            let _ = stopped.await;
        }));
        Edge { h, addr, stop: Some(stop), server }
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.server).await.unwrap().unwrap().unwrap();
    }

    async fn healthz(&self) -> u16 {
        let r = reqwest::Client::new().get(format!("http://{}/healthz", self.addr)).send().await.unwrap();
        r.status().as_u16()
    }
}

/// Everything the server sends until it closes the connection (or `within` passes: then
/// `None`).
async fn read_to_close(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let r = tokio::time::timeout(within, async {
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    r.ok().map(|()| out)
}

/// Status and JSON body of a raw HTTP/1.1 answer.
fn parse(raw: &[u8]) -> (u16, serde_json::Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {text:?}"));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn webhook_head(secret: &str, content_length: usize) -> String {
    format!(
        "POST /v1/webhooks/servicenow HTTP/1.1\r\nhost: edge\r\ncontent-type: application/json\r\n\
         x-grantline-secret: {secret}\r\ncontent-length: {content_length}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let edge = Edge::start(|c| c.header_timeout_ms = 300).await;
    let started = Instant::now();
    let mut idle = TcpStream::connect(edge.addr).await.unwrap();
    let got = read_to_close(&mut idle, Duration::from_secs(5)).await.expect("closed by the server");
    let waited = started.elapsed();
    assert!(got.is_empty(), "nothing to answer: {got:?}");
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(3), "{waited:?}");

    // headers that stop half way are cut off the same way
    let mut slow = TcpStream::connect(edge.addr).await.unwrap();
    slow.write_all(b"POST /v1/webhooks/servicenow HTTP/1.1\r\nhost: edge\r\nx-grantline-").await.unwrap();
    assert!(read_to_close(&mut slow, Duration::from_secs(5)).await.is_some(), "a stalled head is closed");

    // a keep-alive connection idle after its answer as well
    let mut keep = TcpStream::connect(edge.addr).await.unwrap();
    keep.write_all(b"GET /healthz HTTP/1.1\r\nhost: edge\r\n\r\n").await.unwrap();
    let got = read_to_close(&mut keep, Duration::from_secs(5)).await.expect("closed after the idle wait");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"), "{got:?}");
    assert_eq!(edge.healthz().await, 200);
    edge.stop().await;
}

#[tokio::test]
async fn a_connection_where_nothing_moves_is_closed_after_the_idle_timeout() {
    // headers would be waited for 30 s; the idle timeout (1 s) ends it first
    let edge = Edge::start(|c| {
        c.header_timeout_ms = 30_000;
        c.idle_timeout_secs = 1;
    })
    .await;
    let started = Instant::now();
    let mut idle = TcpStream::connect(edge.addr).await.unwrap();
    assert!(read_to_close(&mut idle, Duration::from_secs(5)).await.is_some(), "closed by the idle timeout");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(4), "{waited:?}");
    edge.stop().await;
}

#[tokio::test]
async fn an_unfinished_body_is_answered_408_with_the_json_error_and_nothing_is_stored() {
    let edge = Edge::start(|c| c.body_timeout_ms = 400).await;
    let before = snapshot(&edge.h).await;
    let body = ritm_body(NUMBER, SYS_ID);
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    s.write_all(webhook_head(SHARED_SECRET, body.len()).as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..body.len() / 2]).await.unwrap();
    let started = Instant::now();
    let raw = read_to_close(&mut s, Duration::from_secs(5)).await.expect("answered and closed");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let (status, json) = parse(&raw);
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(json["code"], "request.timeout");
    assert!(json["message"].as_str().unwrap().contains("ingest.body_timeout_ms"), "{json}");
    assert!(String::from_utf8_lossy(&raw).to_ascii_lowercase().contains("connection: close"));
    assert_eq!(snapshot(&edge.h).await, before, "nothing written");
    // the same body sent whole is accepted
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/webhooks/servicenow", edge.addr))
        .header("content-type", "application/json")
        .header("x-grantline-secret", SHARED_SECRET)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    edge.stop().await;
}

#[tokio::test]
async fn a_bad_secret_with_a_64_kib_body_pending_is_answered_401_without_reading_the_body() {
    let edge = Edge::start(|c| c.body_timeout_ms = 30_000).await;
    let before = snapshot(&edge.h).await;
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    s.write_all(webhook_head("not-the-shared-secret-000", 64 * 1024).as_bytes()).await.unwrap();
    s.write_all(b"{\"ritm\":").await.unwrap();
    let started = Instant::now();
    // the answer comes while the body is still pending (the body timeout is 30 s)
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("answered at once").unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    let raw = &buf[..n];
    let (status, json) = parse(raw);
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(raw));
    assert_eq!(json["code"], "auth.bad_secret");
    assert_eq!(snapshot(&edge.h).await, before, "nothing written");

    // a missing credential likewise
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    let head = "POST /v1/webhooks/servicenow HTTP/1.1\r\nhost: edge\r\ncontent-type: application/json\r\ncontent-length: 65536\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("answered at once").unwrap();
    let (status, json) = parse(&buf[..n]);
    assert_eq!((status, json["code"].as_str()), (401, Some("auth.missing")));
    edge.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_503_and_the_edge_stays_healthy() {
    let edge = Edge::start(|c| {
        c.max_connections = 4;
        c.header_timeout_ms = 30_000;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(edge.addr).await.unwrap());
    }
    // the server has taken the four (its connection gauge counts them)
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut probe = TcpStream::connect(edge.addr).await.unwrap();
        let raw =
            read_to_close(&mut probe, Duration::from_secs(3)).await.expect("an over-the-cap connection is closed");
        if !raw.is_empty() {
            let (status, json) = parse(&raw);
            assert_eq!(status, 503, "{}", String::from_utf8_lossy(&raw));
            assert_eq!(json["code"], "service.overloaded");
            assert!(String::from_utf8_lossy(&raw).to_ascii_lowercase().contains("retry-after: 1"));
            break;
        }
        assert!(Instant::now() < deadline, "never answered 503");
    }
    // the held connections still work
    let mut first = held.remove(0);
    first.write_all(b"GET /healthz HTTP/1.1\r\nhost: edge\r\nconnection: close\r\n\r\n").await.unwrap();
    let raw = read_to_close(&mut first, Duration::from_secs(5)).await.unwrap();
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"), "{raw:?}");
    // once they go, new clients are served again
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ok = reqwest::Client::new()
            .get(format!("http://{}/healthz", edge.addr))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if matches!(ok, Ok(200)) {
            break;
        }
        assert!(Instant::now() < deadline, "the edge did not recover: {ok:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    edge.stop().await;
}

#[tokio::test]
async fn malformed_http_is_refused_and_the_edge_carries_on() {
    let edge = Edge::start(|_| {}).await;
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    s.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    let raw = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
    // hyper answers a request it cannot parse itself (a bare 400, see ARCHITECTURE.md)
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 400"), "{}", String::from_utf8_lossy(&raw));
    assert_eq!(edge.healthz().await, 200);
    edge.stop().await;
}

#[tokio::test]
async fn the_webhook_listener_serves_metrics_only_with_the_metrics_token() {
    let edge = Edge::start(|_| {}).await;
    let client = reqwest::Client::new();
    let r = client.get(format!("http://{}/metrics", edge.addr)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "route.not_found");
    edge.stop().await;

    let token = "metrics-token-for-tests-0001";
    let edge = Edge::start(|c| c.metrics_token = Some(grantline_ingest::Secret::new(token))).await;
    let url = format!("http://{}/metrics", edge.addr);
    assert_eq!(client.get(&url).send().await.unwrap().status().as_u16(), 401);
    assert_eq!(
        client.get(&url).bearer_auth("metrics-token-for-tests-0002").send().await.unwrap().status().as_u16(),
        401
    );
    let r = client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("grantline_queue_scrape_ok 1"));
    edge.stop().await;
}
