//! Fixture servers for the connector tests: real HTTP on 127.0.0.1, port 0. Each fixture
//! records every request and answers through a closure, so a test can script sequences
//! (429, 429, 204), delays and exact bodies, then assert on what the client sent.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use grantline_connectors::Secret;
use grantline_connectors::graph::GraphClient;
use grantline_connectors::http::{HttpConfig, build_client};
use grantline_connectors::token::{Clock, EntraTokenConfig, ManualClock, TokenProvider};

/// One request as the fixture saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    /// The raw path, exactly as sent (percent-encoding preserved).
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The form fields of an `application/x-www-form-urlencoded` body.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body).into_owned().collect()
    }

    pub fn form_field(&self, name: &str) -> Option<String> {
        self.form().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The decoded query parameters.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes()).into_owned().collect()
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// What the fixture answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn json(status: u16, body: impl ToString) -> Self {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            delay: None,
        }
    }

    pub fn empty(status: u16) -> Self {
        Reply { status, headers: vec![], body: String::new(), delay: None }
    }

    pub fn header(mut self, name: &str, value: impl ToString) -> Self {
        self.headers.push((name.to_owned(), value.to_string()));
        self
    }

    pub fn delay(mut self, by: Duration) -> Self {
        self.delay = Some(by);
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

struct FixtureState {
    handler: Handler,
    log: Mutex<Vec<Recorded>>,
}

/// A running fixture server. Dropping it stops the server.
pub struct Fixture {
    pub url: String,
    state: Arc<FixtureState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(state): State<Arc<FixtureState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body: body.to_vec(),
    };
    state.log.lock().unwrap().push(recorded.clone());
    let reply = (state.handler)(&recorded);
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(&value).unwrap());
    }
    response
}

impl Fixture {
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let state = Arc::new(FixtureState { handler: Arc::new(handler), log: Mutex::new(Vec::new()) });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Fixture { url, state, task }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().unwrap().clone()
    }

    /// Requests whose path ends with `suffix`.
    pub fn requests_to(&self, suffix: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.path.ends_with(suffix)).collect()
    }
}

/// A queue of scripted replies, then a default.
pub struct Script {
    queue: Mutex<VecDeque<Reply>>,
}

impl Script {
    pub fn new(replies: impl IntoIterator<Item = Reply>) -> Arc<Self> {
        Arc::new(Script { queue: Mutex::new(replies.into_iter().collect()) })
    }

    pub fn next_or(&self, default: impl FnOnce() -> Reply) -> Reply {
        self.queue.lock().unwrap().pop_front().unwrap_or_else(default)
    }
}

// ---------------------------------------------------------------------------------------
// A Microsoft identity platform + Graph fixture.

pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const CLIENT_ID: &str = "535fb089-9ff3-47b6-9bfb-4f1264799865";
pub const CLIENT_SECRET: &str = "very-secret-client-value";
pub const TOKEN_PATH: &str = "/contoso.onmicrosoft.com/oauth2/v2.0/token";

/// Token endpoint settings for [`graph_fixture`].
#[derive(Clone)]
pub struct TokenBehaviour {
    pub expires_in: u64,
    pub delay: Option<Duration>,
}

impl Default for TokenBehaviour {
    fn default() -> Self {
        TokenBehaviour { expires_in: 3599, delay: None }
    }
}

/// A successful token response with token `tok-<n>`.
pub fn token_reply(n: usize, expires_in: u64) -> Reply {
    Reply::json(
        200,
        serde_json::json!({ "token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": format!("tok-{n}") }),
    )
}

/// Graph's success and error headers: `request-id` (fresh) and `client-request-id` (echoed).
pub fn graph_reply(req: &Recorded, reply: Reply) -> Reply {
    let request_id = format!("rid-{}", uuid::Uuid::new_v4());
    let client_request_id = req.header("client-request-id").unwrap_or(&request_id).to_owned();
    let mut reply = reply.header("request-id", &request_id).header("client-request-id", client_request_id);
    if reply.status >= 200 && reply.status < 300 && !reply.body.is_empty() {
        reply.headers.retain(|(k, _)| k != "content-type");
        reply = reply.header(
            "content-type",
            "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
        );
    }
    reply
}

/// A Graph error envelope with `innerError` naming this request.
pub fn graph_error(req: &Recorded, status: u16, code: &str, message: &str) -> Reply {
    let client_request_id = req.header("client-request-id").unwrap_or("").to_owned();
    let request_id = format!("rid-{}", uuid::Uuid::new_v4());
    let body = serde_json::json!({ "error": { "code": code, "message": message,
        "innerError": { "date": "2026-01-22T14:12:37", "request-id": request_id, "client-request-id": client_request_id } } });
    Reply::json(status, body).header("request-id", request_id).header("client-request-id", client_request_id)
}

/// A fixture that serves the token endpoint (tokens `tok-1`, `tok-2`, ...) and answers every
/// other path with `graph`.
pub async fn graph_fixture(
    token: TokenBehaviour,
    graph: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
) -> Fixture {
    let issued = AtomicUsize::new(0);
    Fixture::start(move |req| {
        if req.path == TOKEN_PATH {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            let reply = token_reply(n, token.expires_in);
            return match token.delay {
                Some(d) => reply.delay(d),
                None => reply,
            };
        }
        graph(req)
    })
    .await
}

pub fn token_config(fixture: &Fixture) -> EntraTokenConfig {
    EntraTokenConfig {
        authority: fixture.url.clone(),
        tenant: TENANT.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: Secret::new(CLIENT_SECRET),
        ..EntraTokenConfig::default()
    }
}

pub fn fast_http() -> HttpConfig {
    HttpConfig { connect_timeout_ms: 1_000, timeout_ms: 5_000, ..HttpConfig::default() }
}

/// A Graph client for `fixture`, with its base at `<fixture>/v1.0`.
pub fn graph_client_with(fixture: &Fixture, http: HttpConfig, clock: Arc<dyn Clock>) -> GraphClient {
    let client = build_client(&http).unwrap();
    let tokens = TokenProvider::with_clock(&token_config(fixture), client.clone(), clock).unwrap();
    GraphClient::from_parts(&format!("{}/v1.0", fixture.url), client, tokens).unwrap()
}

pub fn graph_client(fixture: &Fixture) -> GraphClient {
    graph_client_with(fixture, fast_http(), Arc::new(ManualClock::new()))
}
