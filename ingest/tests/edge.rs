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

/// A GET on a raw keep-alive connection, and the answer's status.
async fn get_on(s: &mut TcpStream, path: &str) -> u16 {
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: edge\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("an answer").unwrap();
    assert!(n > 0, "closed instead of answering");
    parse(&buf[..n]).0
}

/// Waits until an over-the-cap connection is answered (some are closed unanswered).
async fn refused_answer(addr: SocketAddr) -> (u16, serde_json::Value, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut probe = TcpStream::connect(addr).await.unwrap();
        let raw = read_to_close(&mut probe, Duration::from_secs(3)).await.expect("a refused connection is closed");
        if !raw.is_empty() {
            let (status, json) = parse(&raw);
            return (status, json, String::from_utf8_lossy(&raw).to_ascii_lowercase());
        }
        assert!(Instant::now() < deadline, "never answered");
    }
}

/// Waits (at most 5 s) until a new connection from this address is served `/healthz`.
async fn served_again(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: edge\r\nconnection: close\r\n\r\n").await.unwrap();
        let raw = read_to_close(&mut s, Duration::from_secs(3)).await.unwrap_or_default();
        if String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200") {
            return;
        }
        assert!(Instant::now() < deadline, "still refused: {}", String::from_utf8_lossy(&raw));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A webhook whose headers are in and whose body is half sent: a connection in a request.
async fn in_a_request(addr: SocketAddr) -> (TcpStream, String) {
    let body = ritm_body(NUMBER, SYS_ID);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(webhook_head(SHARED_SECRET, body.len()).as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..body.len() / 2]).await.unwrap();
    (s, body)
}

#[tokio::test]
async fn idle_connections_at_the_cap_give_way_to_a_new_client_oldest_first() {
    let edge = Edge::start(|c| {
        c.max_connections = 4;
        c.header_timeout_ms = 30_000;
    })
    .await;
    // the oldest stalls in its headers, the next sends nothing, the last two are keep-alive
    // connections between requests
    let mut stalled = TcpStream::connect(edge.addr).await.unwrap();
    stalled.write_all(b"POST /v1/webhooks/servicenow HTTP/1.1\r\nhost: edge\r\nx-grant").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut silent = TcpStream::connect(edge.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut keep1 = TcpStream::connect(edge.addr).await.unwrap();
    assert_eq!(get_on(&mut keep1, "/healthz").await, 200);
    let mut keep2 = TcpStream::connect(edge.addr).await.unwrap();
    assert_eq!(get_on(&mut keep2, "/healthz").await, 200);

    // the cap is full of connections without a request: a new client is served at once
    let started = Instant::now();
    let mut newcomer = TcpStream::connect(edge.addr).await.unwrap();
    assert_eq!(get_on(&mut newcomer, "/healthz").await, 200);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // and the one that waited longest gave way, closed without an answer
    let got = read_to_close(&mut stalled, Duration::from_secs(2)).await.expect("the oldest is closed");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    // a second newcomer takes the next oldest
    let mut second = TcpStream::connect(edge.addr).await.unwrap();
    assert_eq!(get_on(&mut second, "/healthz").await, 200);
    assert!(read_to_close(&mut silent, Duration::from_secs(2)).await.is_some(), "the next oldest is closed");
    // the keep-alive connections used since are still served
    assert_eq!(get_on(&mut keep2, "/healthz").await, 200);
    assert_eq!(get_on(&mut newcomer, "/healthz").await, 200);
    edge.stop().await;
}

#[tokio::test]
async fn at_the_cap_with_every_connection_in_a_request_a_new_one_is_refused_with_503() {
    let edge = Edge::start(|c| {
        c.max_connections = 2;
        c.header_timeout_ms = 30_000;
        c.body_timeout_ms = 30_000;
    })
    .await;
    let (mut first, body) = in_a_request(edge.addr).await;
    let (second, _) = in_a_request(edge.addr).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, json, raw) = refused_answer(edge.addr).await;
    assert_eq!(status, 503, "{raw}");
    assert_eq!(json["code"], "service.overloaded");
    assert!(json["message"].as_str().unwrap().contains("ingest.max_connections"), "{json}");
    assert!(raw.contains("retry-after: 1") && raw.contains("connection: close"), "{raw}");
    // a connection in a request is never the one to give way: the first finishes its webhook
    first.write_all(&body.as_bytes()[body.len() / 2..]).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(parse(&buf[..n]).0, 202, "{}", String::from_utf8_lossy(&buf[..n]));
    // once a place is free new clients are served
    drop(second);
    served_again(edge.addr).await;
    edge.stop().await;
}

#[tokio::test]
async fn one_address_over_its_own_cap_is_refused_while_others_are_served() {
    let edge = Edge::start(|c| {
        c.max_connections_per_client = 2;
        c.header_timeout_ms = 30_000;
    })
    .await;
    let a = TcpStream::connect(edge.addr).await.unwrap();
    let _b = TcpStream::connect(edge.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, json, raw) = refused_answer(edge.addr).await;
    assert_eq!(status, 503, "{raw}");
    assert_eq!(json["code"], "client.too_many_connections");
    assert!(json["message"].as_str().unwrap().contains("ingest.max_connections_per_client"), "{json}");
    // another address (loopback is a /8) is served
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(edge.addr).await.unwrap();
    assert_eq!(get_on(&mut other, "/healthz").await, 200);
    // and the first address again once one of its connections goes
    drop(a);
    served_again(edge.addr).await;
    edge.stop().await;
}

#[tokio::test]
async fn malformed_http_is_answered_with_the_json_error_and_the_edge_carries_on() {
    let edge = Edge::start(|c| c.max_header_bytes = 8192).await;
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    s.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    let raw = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
    let (status, json) = parse(&raw);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(json["code"], "request.malformed_http");
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.contains("content-type: application/json") && text.contains("connection: close"), "{text}");

    // a bad header line after good requests on the same connection
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    assert_eq!(get_on(&mut s, "/healthz").await, 200);
    assert_eq!(get_on(&mut s, "/no-such-route").await, 404, "the application's own 4xx are its own");
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: edge\r\nbad header\r\n\r\n").await.unwrap();
    let raw = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
    let (status, json) = parse(&raw);
    assert_eq!(
        (status, json["code"].as_str()),
        (400, Some("request.malformed_http")),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    // headers over ingest.max_header_bytes
    let mut s = TcpStream::connect(edge.addr).await.unwrap();
    let big = format!("GET /healthz HTTP/1.1\r\nhost: edge\r\nx-padding: {}\r\n\r\n", "a".repeat(10_000));
    s.write_all(big.as_bytes()).await.unwrap();
    let raw = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
    let (status, json) = parse(&raw);
    assert_eq!(status, 431, "{}", String::from_utf8_lossy(&raw));
    assert_eq!(json["code"], "request.headers_too_large");
    assert!(json["message"].as_str().unwrap().contains("ingest.max_header_bytes (8192 bytes)"), "{json}");
    assert_eq!(edge.healthz().await, 200);
    edge.stop().await;
}

#[tokio::test]
async fn the_listener_is_bound_with_the_configured_backlog() {
    assert!(
        std::process::Command::new("ss").arg("-V").output().is_ok(),
        "ss (iproute2) is needed: scripts/setup.sh installs it"
    );
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap().trim().parse().unwrap();
    for backlog in [77u32, grantline_ingest::config::DEFAULT_LISTEN_BACKLOG] {
        let listener = grantline_ingest::server::bind("127.0.0.1:0".parse().unwrap(), backlog).unwrap();
        let port = listener.local_addr().unwrap().port();
        let out = std::process::Command::new("ss").args(["-Hltn", &format!("sport = :{port}")]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // State Recv-Q Send-Q Local Peer: a listening socket's Send-Q is its backlog
        let send_q: u32 = text.split_whitespace().nth(2).unwrap_or_else(|| panic!("{text:?}")).parse().unwrap();
        assert_eq!(send_q, backlog.min(somaxconn), "{text}");
    }
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
