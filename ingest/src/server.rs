//! The edge's own connection handling, under slow and idle clients.
//!
//! `axum::serve` has no header, body or idle timeout and no connection cap, so the edge runs
//! hyper itself:
//!
//! - **Connection cap** (`ingest.max_connections`): each accepted connection holds a permit
//!   until it closes. One over the cap is answered `503 service.overloaded` (JSON, `Retry-After:
//!   1`, `Connection: close`) by a small pool of answerers and closed; when that pool is busy
//!   too, it is closed at once. The listener keeps accepting, so it never stalls on a backlog.
//! - **Headers** (`ingest.header_timeout_ms`): hyper's `header_read_timeout`, which runs from
//!   the moment the connection waits for a request head, so it also closes a connection that
//!   sends nothing, or stays idle between keep-alive requests. hyper closes it without an
//!   answer (it has no request to answer).
//! - **Body** (`ingest.body_timeout_ms`): every request body gets a deadline counted from its
//!   headers; reading past it fails with [`BodyTimedOut`], which the body readers answer
//!   `408 request.timeout` and the connection is closed.
//! - **Idle** (`ingest.idle_timeout_secs`): a connection on which no byte moves either way for
//!   that long (a client that stops reading our answer) is dropped.
//! - **Authentication before the body**: the webhook's shared secret is checked from the
//!   headers before a byte of the body is read (see `extract`), so a bad secret with a large
//!   body pending is answered 401 at once.
//!
//! What hyper does not let us shape: a request it cannot parse (bad request line or header,
//! headers over its buffer) gets hyper's own bare `400`/`431` with an empty body, not the JSON
//! error body; a header timeout closes without any answer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use futures::StreamExt;
use grantline_shared::metrics::{self, EdgeTimeout};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::config::IngestConfig;

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
}

impl Limits {
    pub fn from_config(cfg: &IngestConfig) -> Self {
        Self {
            header_timeout: Duration::from_millis(cfg.header_timeout_ms),
            body_timeout: Duration::from_millis(cfg.body_timeout_ms),
            idle_timeout: Duration::from_secs(cfg.idle_timeout_secs),
            max_connections: cfg.max_connections,
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

/// A TCP stream that remembers when a byte last moved (ms since `base`).
struct Activity {
    inner: TcpStream,
    base: Instant,
    last: Arc<AtomicU64>,
}

impl Activity {
    fn touch(&self) {
        self.last.store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Activity {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Activity {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The answer to a connection over the cap.
fn overloaded_response() -> Vec<u8> {
    let body = br#"{"code":"service.overloaded","message":"the edge holds as many connections as it accepts (ingest.max_connections); retry later","field":null}"#;
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\ncache-control: no-store\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Answers a connection over the cap with 503 (when an answerer is free) and closes it.
fn refuse(mut stream: TcpStream, answerers: &Arc<Semaphore>) {
    metrics::connection_refused();
    let Ok(permit) = answerers.clone().try_acquire_owned() else {
        drop(stream);
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(&overloaded_response()).await?;
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

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then lets the
/// requests in progress finish (idle connections are closed at once).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = app.layer(middleware::from_fn_with_state(limits.body_timeout, body_deadline));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let answerers = Arc::new(Semaphore::new(OVERFLOW_ANSWERERS));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let check_every = (limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(stream, &answerers);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let base = Instant::now();
        let last = Arc::new(AtomicU64::new(0));
        let io = Activity { inner: stream, base, last: last.clone() };
        let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        let idle_ms = limits.idle_timeout.as_millis() as u64;
        tokio::spawn(async move {
            let _permit = permit;
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
