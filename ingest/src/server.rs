//! The edge's own connection handling, under slow and idle clients.
//!
//! `axum::serve` has no header, body or idle timeout and no connection cap, so the edge runs
//! hyper itself:
//!
//! - **Connection cap** (`ingest.max_connections`): the edge holds at most that many
//!   connections. At the cap, a new connection takes the place of the one that has gone
//!   longest without a request in progress (an idle keep-alive connection, or one still
//!   sending its headers), which is closed; so idle connections, however many, cannot lock
//!   ServiceNow out. Only when every held connection is in a request (its headers parsed, its
//!   answer not yet produced) is the new one answered `503 service.overloaded` (JSON,
//!   `Retry-After: 1`, `Connection: close`) by a small pool of answerers and closed; when that
//!   pool is busy too, it is closed at once. The listener keeps accepting, so it never stalls
//!   on a backlog.
//! - **Per client** (`ingest.max_connections_per_client`, off by default): one address over
//!   its own cap is answered `503 client.too_many_connections` the same way.
//! - **Listen backlog** (`ingest.listen_backlog`): what the kernel completes before the edge
//!   accepts, 4,096 unless set (tokio's own default is 1,024).
//! - **Headers** (`ingest.header_timeout_ms`): hyper's `header_read_timeout`, which runs from
//!   the moment the connection waits for a request head, so it also closes a connection that
//!   sends nothing, or stays idle between keep-alive requests (it has no request to answer).
//!   The head may be at most `ingest.max_header_bytes`, which also bounds hyper's read buffer,
//!   so a connection holds little more than the body it is sent.
//! - **Body** (`ingest.body_timeout_ms`): every request body gets a deadline counted from its
//!   headers; reading past it fails with [`BodyTimedOut`], which the body readers answer
//!   `408 request.timeout` and the connection is closed.
//! - **Idle** (`ingest.idle_timeout_secs`): a connection on which no byte moves either way for
//!   that long (a client that stops reading our answer) is dropped.
//! - **Authentication before the body**: the webhook's shared secret is checked from the
//!   headers before a byte of the body is read (see `extract`), so a bad secret with a large
//!   body pending is answered 401 at once.
//! - **Unparsable requests**: hyper answers a request line or header it cannot parse itself
//!   (400, 414, 431, without a body). The connection's stream knows when the application owes
//!   no answer, so a response head written then is hyper's: it is replaced by the same status
//!   with the JSON error body (`request.malformed_http`, `request.uri_too_long`,
//!   `request.headers_too_large`). A client that pipelines a bad request behind one whose
//!   answer it has not read may still get hyper's bare answer.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use futures::StreamExt;
use grantline_shared::metrics::{self, EdgeRefusal, EdgeTimeout};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};

use crate::config::IngestConfig;
use crate::error::codes;

/// How many over-the-cap connections are answered 503 at once; beyond that they are closed
/// without an answer.
pub const OVERFLOW_ANSWERERS: usize = 32;

/// The limits one listener applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub max_header_bytes: usize,
}

impl Limits {
    pub fn from_config(cfg: &IngestConfig) -> Self {
        Self {
            header_timeout: Duration::from_millis(cfg.header_timeout_ms),
            body_timeout: Duration::from_millis(cfg.body_timeout_ms),
            idle_timeout: Duration::from_secs(cfg.idle_timeout_secs),
            max_connections: cfg.max_connections,
            max_connections_per_client: cfg.max_connections_per_client,
            max_header_bytes: cfg.max_header_bytes,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&IngestConfig::default())
    }
}

/// The error a request body yields once its deadline has passed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// Whether a body read failed because of [`BodyTimedOut`].
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Set on a request whose body timed out, so the answer closes the connection.
#[derive(Clone, Default)]
struct TimedOut(Arc<AtomicBool>);

/// Wraps the body in a deadline counted from now (its headers are in).
async fn body_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let flag = TimedOut::default();
    let (parts, body) = req.into_parts();
    let deadline = tokio::time::Instant::now() + limit;
    let fired = flag.clone();
    let stream = futures::stream::unfold(Some(body.into_data_stream()), move |state| {
        let fired = fired.clone();
        async move {
            let mut inner = state?;
            match tokio::time::timeout_at(deadline, inner.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(inner))),
                Ok(Some(Err(e))) => Some((Err(axum::BoxError::from(e)), None)),
                Ok(None) => None,
                Err(_) => {
                    fired.0.store(true, Ordering::Relaxed);
                    Some((Err(axum::BoxError::from(BodyTimedOut)), None))
                }
            }
        }
    });
    let req = Request::from_parts(parts, Body::from_stream(stream));
    let mut resp = next.run(req).await;
    if flag.0.load(Ordering::Relaxed) {
        metrics::connection_timeout(EdgeTimeout::Body);
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The connections one listener holds: the cap, the per-client cap, and which connection
/// gives way when the cap is reached.
struct Conns {
    max: usize,
    per_client: usize,
    inner: Mutex<ConnsInner>,
}

#[derive(Default)]
struct ConnsInner {
    next_id: u64,
    held: HashMap<u64, Held>,
    /// `(id, epoch)` in the order connections became free of a request (accepted, or their
    /// last answer produced); an entry whose epoch has moved on is stale and skipped.
    idle: VecDeque<(u64, u64)>,
    clients: HashMap<IpAddr, usize>,
}

struct Held {
    client: IpAddr,
    in_request: bool,
    epoch: u64,
    evict: Arc<Notify>,
}

impl ConnsInner {
    fn remove(&mut self, id: u64) -> Option<Held> {
        let held = self.held.remove(&id)?;
        if let Some(n) = self.clients.get_mut(&held.client) {
            *n -= 1;
            if *n == 0 {
                self.clients.remove(&held.client);
            }
        }
        Some(held)
    }

    /// The connection that has been without a request the longest.
    fn oldest_idle(&mut self) -> Option<u64> {
        while let Some((id, epoch)) = self.idle.pop_front() {
            if self.held.get(&id).is_some_and(|h| !h.in_request && h.epoch == epoch) {
                return Some(id);
            }
        }
        None
    }

    fn compact(&mut self) {
        if self.idle.len() > 2 * self.held.len() + 64 {
            let held = &self.held;
            self.idle.retain(|(id, epoch)| held.get(id).is_some_and(|h| !h.in_request && h.epoch == *epoch));
        }
    }
}

impl Conns {
    fn new(max: usize, per_client: usize) -> Arc<Self> {
        Arc::new(Self { max, per_client, inner: Mutex::new(ConnsInner::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnsInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for a connection from `client`: refused over the client's cap; at the cap, the
    /// connection longest without a request is told to close and its place is taken.
    fn admit(self: &Arc<Self>, client: IpAddr) -> Result<(Place, Arc<Notify>), EdgeRefusal> {
        let mut g = self.lock();
        if self.per_client > 0 && g.clients.get(&client).copied().unwrap_or(0) >= self.per_client {
            return Err(EdgeRefusal::Client);
        }
        if g.held.len() >= self.max {
            let victim = g.oldest_idle().and_then(|id| g.remove(id)).ok_or(EdgeRefusal::Cap)?;
            victim.evict.notify_one();
            metrics::connection_evicted();
        }
        let id = g.next_id;
        g.next_id += 1;
        let evict = Arc::new(Notify::new());
        g.held.insert(id, Held { client, in_request: false, epoch: 0, evict: evict.clone() });
        g.idle.push_back((id, 0));
        *g.clients.entry(client).or_insert(0) += 1;
        g.compact();
        Ok((Place { conns: self.clone(), id }, evict))
    }
}

/// A connection's place among the held ones, given back when it is dropped.
struct Place {
    conns: Arc<Conns>,
    id: u64,
}

impl Place {
    fn set_in_request(&self, in_request: bool) {
        let mut g = self.conns.lock();
        let g = &mut *g;
        if let Some(h) = g.held.get_mut(&self.id) {
            h.in_request = in_request;
            h.epoch += 1;
            if !in_request {
                g.idle.push_back((self.id, h.epoch));
                g.compact();
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.conns.lock().remove(self.id);
    }
}

/// The application's service, marking the connection in a request from the moment its head
/// is parsed until its answer is produced, and counting the answers owed to the client.
struct Tracked<S> {
    inner: S,
    place: Arc<Place>,
    owed: Arc<AtomicUsize>,
}

type BoxedFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, R> hyper::service::Service<R> for Tracked<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxedFuture<Result<S::Response, S::Error>>;

    fn call(&self, req: R) -> Self::Future {
        self.place.set_in_request(true);
        let fut = self.inner.call(req);
        let place = self.place.clone();
        let owed = self.owed.clone();
        Box::pin(async move {
            let res = fut.await;
            owed.fetch_add(1, Ordering::SeqCst);
            place.set_in_request(false);
            res
        })
    }
}

/// A TCP stream that remembers when a byte last moved (ms since `base`), and that puts the
/// JSON error body in place of the bare answer hyper writes to a request it cannot parse.
struct EdgeIo {
    inner: TcpStream,
    base: Instant,
    last: Arc<AtomicU64>,
    /// Answers the application produced that have not started on the wire: a response head
    /// written while none is owed is hyper's own.
    owed: Arc<AtomicUsize>,
    max_header_bytes: usize,
    /// The JSON answer written in place of hyper's, and how much of it is out.
    replacement: Option<(Vec<u8>, usize)>,
}

impl EdgeIo {
    fn touch(&self) {
        self.last.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Writes out what is left of the replacement answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((buf, done)) = self.replacement.as_mut() {
            if *done >= buf.len() {
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
            self.touch();
        }
        Poll::Ready(Ok(()))
    }
}

/// The status of a response head at the start of `data`, if it starts one.
fn response_status(data: &[u8]) -> Option<u16> {
    // an HTTP/1.0 request gets an HTTP/1.0 answer
    let rest = data.strip_prefix(b"HTTP/1.1 ").or_else(|| data.strip_prefix(b"HTTP/1.0 "))?;
    let digits = rest.get(..3)?;
    digits.iter().all(u8::is_ascii_digit).then(|| digits.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')))
}

/// A complete HTTP/1.1 answer with the edge's JSON error body, closing the connection.
fn raw_error_response(status: StatusCode, code: &str, message: &str, extra_headers: &str) -> Vec<u8> {
    let body = serde_json::json!({"code": code, "message": message, "field": null}).to_string();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}connection: close\r\ncache-control: no-store\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// The JSON answer to a request hyper could not parse (it answers 400, 414 or 431).
fn parse_error_response(status: u16, max_header_bytes: usize) -> Vec<u8> {
    let (status, code, message) = match status {
        431 => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            codes::REQUEST_HEADERS_TOO_LARGE,
            format!("the request line and headers exceed ingest.max_header_bytes ({max_header_bytes} bytes)"),
        ),
        414 => (StatusCode::URI_TOO_LONG, codes::REQUEST_URI_TOO_LONG, "the request target is too long".to_owned()),
        other => (
            StatusCode::from_u16(other).unwrap_or(StatusCode::BAD_REQUEST),
            codes::REQUEST_MALFORMED_HTTP,
            "the request is not valid HTTP/1.1: its request line or a header could not be parsed".to_owned(),
        ),
    };
    raw_error_response(status, code, &message, "")
}

impl AsyncRead for EdgeIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for EdgeIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacement.is_some() {
            // hyper's error answer was replaced: whatever it writes after it is not sent
            ready!(this.drain(cx))?;
            return Poll::Ready(Ok(data.len()));
        }
        let status = response_status(data).filter(|s| *s >= 200);
        if let Some(status) = status
            && status >= 400
            && this.owed.load(Ordering::SeqCst) == 0
        {
            this.replacement = Some((parse_error_response(status, this.max_header_bytes), 0));
            if let Poll::Ready(Err(e)) = this.drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(data.len()));
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            this.touch();
            if status.is_some() {
                // the application's answer has started
                let _ = this.owed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| o.checked_sub(1));
            }
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    // not vectored: hyper then writes each response from one buffer, its head first, which is
    // what tells its own answers from the application's
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The answer to a connection refused for `reason`.
fn refused_response(reason: EdgeRefusal) -> Vec<u8> {
    let (status, code, message) = match reason {
        EdgeRefusal::Cap => (
            StatusCode::SERVICE_UNAVAILABLE,
            codes::SERVICE_OVERLOADED,
            "the edge holds as many connections as it accepts (ingest.max_connections), each in a request; retry later",
        ),
        EdgeRefusal::Client => (
            StatusCode::SERVICE_UNAVAILABLE,
            codes::CLIENT_TOO_MANY_CONNECTIONS,
            "this address holds as many connections as the edge accepts from one client (ingest.max_connections_per_client); retry later",
        ),
    };
    raw_error_response(status, code, message, "retry-after: 1\r\n")
}

/// Answers a refused connection with 503 (when an answerer is free) and closes it.
fn refuse(mut stream: TcpStream, reason: EdgeRefusal, answerers: &Arc<Semaphore>) {
    metrics::connection_refused(reason);
    let Ok(permit) = answerers.clone().try_acquire_owned() else {
        drop(stream);
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(&refused_response(reason)).await?;
            stream.shutdown().await?;
            // read what the client sent before closing, so that closing with unread bytes
            // does not reset the connection before the client reads the answer
            let mut sink = [0u8; 4096];
            let mut total = 0usize;
            while total < 64 * 1024 {
                let n = stream.read(&mut sink).await?;
                if n == 0 {
                    break;
                }
                total += n;
            }
            Ok::<(), io::Error>(())
        })
        .await;
    });
}

/// Binds `addr` for the edge with a listen backlog of `backlog` (the kernel caps it at
/// `net.core.somaxconn`).
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then lets the
/// requests in progress finish (idle connections are closed at once).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = app.layer(middleware::from_fn_with_state(limits.body_timeout, body_deadline));
    let conns = Conns::new(limits.max_connections, limits.max_connections_per_client);
    let answerers = Arc::new(Semaphore::new(OVERFLOW_ANSWERERS));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    let check_every = (limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: the cap should prevent them; back off briefly
                    // rather than spin, and keep serving the connections we have
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (place, evict) = match conns.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(reason) => {
                refuse(stream, reason, &answerers);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let base = Instant::now();
        let last = Arc::new(AtomicU64::new(0));
        let owed = Arc::new(AtomicUsize::new(0));
        let io = EdgeIo {
            inner: stream,
            base,
            last: last.clone(),
            owed: owed.clone(),
            max_header_bytes: limits.max_header_bytes,
            replacement: None,
        };
        let service = Tracked { inner: TowerToHyperService::new(app.clone()), place: Arc::new(place), owed };
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let conn = graceful.watch(conn);
        let idle_ms = limits.idle_timeout.as_millis() as u64;
        tokio::spawn(async move {
            metrics::connection_open(1);
            tokio::pin!(conn);
            let mut tick = tokio::time::interval(check_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    res = &mut conn => {
                        if let Err(e) = res {
                            if e.is_timeout() {
                                metrics::connection_timeout(EdgeTimeout::Header);
                            } else {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        }
                        break;
                    }
                    () = evict.notified() => break,
                    _ = tick.tick() => {
                        let now = base.elapsed().as_millis() as u64;
                        if now.saturating_sub(last.load(Ordering::Relaxed)) >= idle_ms {
                            metrics::connection_timeout(EdgeTimeout::Idle);
                            break;
                        }
                    }
                }
            }
            metrics::connection_open(-1);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_are_told_by_their_status_line() {
        assert_eq!(response_status(b"HTTP/1.1 400 Bad Request\r\n"), Some(400));
        assert_eq!(response_status(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(response_status(b"HTTP/1.1 100 Continue\r\n"), Some(100));
        assert_eq!(response_status(b"{\"code\":\"x\"}"), None);
        assert_eq!(response_status(b"HTTP/1.1 4"), None);
        assert_eq!(response_status(b"HTTP/1.1 4x0 "), None);
    }

    #[test]
    fn at_the_cap_the_oldest_connection_without_a_request_gives_way() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let conns = Conns::new(3, 0);
        let (a, evict_a) = conns.admit(ip).unwrap();
        let (b, evict_b) = conns.admit(ip).unwrap();
        let (c, _) = conns.admit(ip).unwrap();
        // a is in a request, b is the oldest idle one
        a.set_in_request(true);
        let (d, _) = conns.admit(ip).unwrap();
        assert!(!conns.lock().held.contains_key(&b.id), "b gave way");
        assert!(conns.lock().held.contains_key(&a.id));
        // b's task is told; a's is not
        let mut told = std::pin::pin!(evict_b.notified());
        assert!(
            std::future::Future::poll(told.as_mut(), &mut Context::from_waker(std::task::Waker::noop())).is_ready()
        );
        let mut not_told = std::pin::pin!(evict_a.notified());
        assert!(
            std::future::Future::poll(not_told.as_mut(), &mut Context::from_waker(std::task::Waker::noop()))
                .is_pending()
        );
        // c and d go into requests too: now the cap refuses
        c.set_in_request(true);
        d.set_in_request(true);
        assert_eq!(conns.admit(ip).err(), Some(EdgeRefusal::Cap));
        // a's answer is produced: it is the one to give way next
        a.set_in_request(false);
        let (_e, _) = conns.admit(ip).unwrap();
        assert!(!conns.lock().held.contains_key(&a.id));
        drop(b);
        assert_eq!(conns.lock().held.len(), 3, "dropping an evicted place frees nothing twice");
        assert_eq!(conns.lock().clients.get(&ip), Some(&3));
    }

    #[test]
    fn the_idle_queue_stays_bounded_however_many_requests_a_connection_serves() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let conns = Conns::new(4, 0);
        let (p, _) = conns.admit(ip).unwrap();
        for _ in 0..10_000 {
            p.set_in_request(true);
            p.set_in_request(false);
        }
        assert!(conns.lock().idle.len() <= 67, "{}", conns.lock().idle.len());
    }

    #[test]
    fn one_address_is_held_to_its_own_cap() {
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let conns = Conns::new(10, 2);
        let first = conns.admit(a).unwrap();
        let _second = conns.admit(a).unwrap();
        assert_eq!(conns.admit(a).err(), Some(EdgeRefusal::Client));
        assert!(conns.admit(b).is_ok());
        drop(first);
        assert!(conns.admit(a).is_ok());
    }
}
