//! HTTP plumbing shared by the simulators: binding, the catch-all handler that applies scripted
//! faults and logs requests, the `/sim/*` admin routes every simulator has, and shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::error::SimError;
use crate::faults::{FaultAction, FaultSpec, Faults};
use crate::json::Obj;
use crate::log::RequestLog;

/// Largest request body accepted.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;
/// How many requests each simulator's log keeps.
pub(crate) const LOG_CAPACITY: usize = 100_000;

/// What every simulator has: its clock, faults, log, own base URL and the shutdown signal.
#[derive(Debug)]
pub(crate) struct Core {
    pub clock: Clock,
    pub faults: Faults,
    pub log: RequestLog,
    pub base_url: String,
    pub shutdown: watch::Receiver<bool>,
}

impl Core {
    /// Sleeps, or returns early (false) when the server shuts down.
    pub(crate) async fn sleep(&self, d: Duration) -> bool {
        let mut rx = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            _ = rx.wait_for(|stop| *stop) => false,
        }
    }
}

/// A request as the simulators see it.
#[derive(Clone, Debug)]
pub(crate) struct SimRequest {
    pub method: Method,
    /// Raw (percent-encoded) path.
    pub path: String,
    /// Raw query string, without `?`.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl SimRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn query_pairs(&self) -> Vec<(String, String)> {
        self.query
            .as_deref()
            .map(|q| url::form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
            .unwrap_or_default()
    }
}

/// A response before it becomes an HTTP response (also used for `$batch` items).
#[derive(Clone, Debug)]
pub(crate) struct SimResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Drop the connection after the headers.
    pub abort: bool,
}

impl SimResponse {
    pub(crate) fn new(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Bytes::new(), abort: false }
    }

    pub(crate) fn json_bytes(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self::new(status).header("Content-Type", content_type).body(body)
    }

    pub(crate) fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub(crate) fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    /// Adds a header unless one of that name is present.
    pub(crate) fn default_header(&mut self, name: &str, value: impl Into<String>) {
        if !self.has_header(name) {
            self.headers.push((name.to_owned(), value.into()));
        }
    }

    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                headers.append(name, value);
            }
        }
        let body = if self.abort {
            Body::from_stream(futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("connection aborted by a scripted fault"))
            }))
        } else {
            Body::from(self.body)
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        *resp.headers_mut() = headers;
        resp
    }
}

/// A simulator behind the shared plumbing.
pub(crate) trait Service: Send + Sync + 'static {
    fn core(&self) -> &Core;

    /// Handles a request that no fault intercepted.
    fn handle(&self, req: &SimRequest) -> impl Future<Output = SimResponse> + Send;

    /// Renders a scripted `Respond` fault (vendor error body when `body` is `None`, vendor headers).
    fn fault_response(
        &self,
        req: &SimRequest,
        status: u16,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> SimResponse;

    /// Simulator-specific `/sim/*` admin routes.
    fn admin(&self, req: &SimRequest) -> impl Future<Output = Option<SimResponse>> + Send;
}

/// A running HTTP server; stops when [`ServerTask::stop`] is called or when dropped.
#[derive(Debug)]
pub(crate) struct ServerTask {
    shutdown: watch::Sender<bool>,
    join: Mutex<Option<JoinHandle<()>>>,
}

impl ServerTask {
    pub(crate) async fn stop(&self) {
        let _ = self.shutdown.send(true);
        let handle = self.join.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let abort = handle.abort_handle();
            if tokio::time::timeout(Duration::from_secs(3), handle).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for ServerTask {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Binds a listener and returns it with the base URL (`http://host:port`).
pub(crate) async fn bind(addr: SocketAddr) -> Result<(TcpListener, String), SimError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| SimError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    Ok((listener, format!("http://{local}")))
}

/// Makes the [`Core`] for a simulator about to be served on `base_url`.
pub(crate) fn core(clock: Clock, base_url: String) -> (Core, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(false);
    let core = Core { clock, faults: Faults::default(), log: RequestLog::new(LOG_CAPACITY), base_url, shutdown: rx };
    (core, tx)
}

/// Serves `svc` on `listener` until shutdown.
pub(crate) fn spawn<S: Service>(svc: Arc<S>, listener: TcpListener, shutdown: watch::Sender<bool>) -> ServerTask {
    let mut rx = shutdown.subscribe();
    let app = Router::new().fallback(entry::<S>).with_state(svc);
    let join = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        });
        if let Err(e) = server.await {
            tracing::warn!(error = %e, "simulator server stopped with an error");
        }
    });
    ServerTask { shutdown, join: Mutex::new(Some(join)) }
}

async fn entry<S: Service>(State(svc): State<Arc<S>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return SimResponse::new(413).into_response();
    };
    let req = SimRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    if req.path.starts_with("/sim/") {
        return admin_common(&*svc, &req).await.into_response();
    }
    let core = svc.core();
    let started = Instant::now();
    let seq = core.log.begin(&req, core.clock.now());
    let latency = core.faults.latency();
    if !latency.is_zero() {
        core.sleep(latency).await;
    }
    let (resp, fault) = match core.faults.take(&req.method, &req.path) {
        None => (svc.handle(&req).await, false),
        Some(FaultAction::Delay(d)) => {
            core.sleep(d).await;
            (svc.handle(&req).await, false)
        }
        Some(FaultAction::Hang(d)) => {
            core.sleep(d).await;
            (svc.fault_response(&req, 504, Vec::new(), None), true)
        }
        Some(FaultAction::Respond { status, headers, body }) => (svc.fault_response(&req, status, headers, body), true),
        Some(FaultAction::Abort) => {
            let mut r = svc.fault_response(&req, 200, Vec::new(), Some(Vec::new()));
            r.abort = true;
            (r, true)
        }
    };
    let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    core.log.finish(seq, resp.status, fault, elapsed);
    resp.into_response()
}

#[derive(Deserialize)]
struct ClockBody {
    #[serde(default)]
    advance_seconds: f64,
}

fn admin_json(status: u16, value: &impl serde::Serialize) -> SimResponse {
    SimResponse::json_bytes(status, "application/json", serde_json::to_vec(value).unwrap_or_default())
}

pub(crate) fn admin_error(status: u16, message: &str) -> SimResponse {
    admin_json(status, &serde_json::json!({ "error": message }))
}

async fn admin_common<S: Service>(svc: &S, req: &SimRequest) -> SimResponse {
    let core = svc.core();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/sim/requests") => admin_json(200, &core.log.snapshot()),
        ("DELETE", "/sim/requests") => {
            core.log.clear();
            SimResponse::new(204)
        }
        ("GET", "/sim/faults") => {
            let rules: Vec<serde_json::Value> = core
                .faults
                .pending()
                .into_iter()
                .map(|(id, rule, left)| {
                    serde_json::json!({
                        "id": id.0,
                        "method": rule.method.map(|m| m.to_string()),
                        "path": format!("{:?}", rule.path),
                        "left": left,
                        "action": format!("{:?}", rule.action),
                    })
                })
                .collect();
            admin_json(200, &rules)
        }
        ("POST", "/sim/faults") => match serde_json::from_slice::<FaultSpec>(&req.body) {
            Ok(spec) => match spec.apply(&core.faults) {
                Ok(id) => admin_json(201, &serde_json::json!({ "id": id.map(|i| i.0) })),
                Err(e) => admin_error(400, &e),
            },
            Err(e) => admin_error(400, &format!("invalid fault: {e}")),
        },
        ("DELETE", "/sim/faults") => {
            core.faults.clear();
            SimResponse::new(204)
        }
        ("GET", "/sim/clock") => admin_json(
            200,
            &Obj::new().with("now", core.clock.now().to_string()).with(
                "offset_ms",
                serde_json::Value::from(i64::try_from(core.clock.offset().as_millis()).unwrap_or(0)),
            ),
        ),
        ("POST", "/sim/clock") => match serde_json::from_slice::<ClockBody>(&req.body) {
            Ok(b) if b.advance_seconds >= 0.0 && b.advance_seconds.is_finite() => {
                core.clock.advance(Duration::from_secs_f64(b.advance_seconds));
                admin_json(200, &serde_json::json!({ "now": core.clock.now().to_string() }))
            }
            _ => admin_error(400, "expected {\"advance_seconds\": <non-negative number>}"),
        },
        _ => match svc.admin(req).await {
            Some(resp) => resp,
            None => admin_error(404, "unknown simulator admin route"),
        },
    }
}

pub(crate) fn admin_ok(value: &impl serde::Serialize) -> SimResponse {
    admin_json(200, value)
}

/// Decodes `%XX` escapes (not `+`) in a path segment.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
