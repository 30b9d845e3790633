//! Extractors: they read and verify raw bytes before any handler sees a request. A handler
//! that takes [`ServiceNowWebhook`] knows the body is within the size limit, authenticated,
//! and declared as JSON; one that takes [`Operator`] knows the bearer token is an operator's.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use grantline_shared::trace::TraceParent;

use crate::config::ServiceNowAuth;
use crate::error::{ApiError, codes};
use crate::state::AppState;

/// Header carrying the shared secret.
pub const SECRET_HEADER: &str = "x-grantline-secret";
/// Header carrying the signing time, Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-grantline-timestamp";
/// Header carrying `sha256=<hex HMAC-SHA256 of "{timestamp}.{raw body}">`.
pub const SIGNATURE_HEADER: &str = "x-grantline-signature";
/// The W3C trace context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Reads the body, refusing it with 413 as soon as it exceeds `limit` (a declared
/// `Content-Length` over the limit is refused before anything is read). The buffer grows with
/// what arrives, never past the declared length, so a body that stalls holds about what it sent.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit as u64
    {
        return Err(ApiError::too_large(limit));
    }
    let ceiling = declared.map_or(limit, |len| len as usize);
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if crate::server::is_body_timeout(&e) {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    codes::REQUEST_TIMEOUT,
                    "the body did not arrive in time (ingest.body_timeout_ms)",
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, codes::REQUEST_BODY_UNREADABLE, "the body could not be read")
            }
        })?;
        let need = buf.len() + chunk.len();
        if need > limit {
            return Err(ApiError::too_large(limit));
        }
        if need > buf.capacity() {
            buf.reserve_exact(grown_capacity(buf.capacity(), need, ceiling) - buf.len());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// The capacity a body buffer of `capacity` grows to when it must hold `need` bytes: double,
/// at least 4 KiB, but never past `ceiling` (the declared length or the limit) unless `need` is.
fn grown_capacity(capacity: usize, need: usize, ceiling: usize) -> usize {
    (capacity * 2).max(4096).min(ceiling).max(need)
}

/// Content-Type must be `application/json` (parameters such as `charset` are allowed).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::REQUEST_UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ))
    }
}

/// Constant-time equality that does not leak the length either (both sides are hashed).
pub(crate) fn secret_eq(given: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(given);
    let b = Sha256::digest(expected);
    a.ct_eq(&b).into()
}

/// How a webhook was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookAuth {
    SharedSecret,
    Hmac,
}

/// Authenticates a webhook from its headers and raw body. A signature, when the HMAC key
/// is configured and the request carries one, decides; otherwise the shared secret does.
pub fn authenticate(
    auth: &ServiceNowAuth,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: u64,
    window_secs: u64,
) -> Result<WebhookAuth, ApiError> {
    let header_str = |name: &str| headers.get(name).map(|v| v.to_str().map(str::trim));
    if let (Some(key), Some(sig)) = (&auth.hmac_secret, header_str(SIGNATURE_HEADER)) {
        let bad = |m: &str| ApiError::unauthorized(codes::AUTH_BAD_SIGNATURE, m.to_owned());
        let sig = sig.map_err(|_| bad("the signature is not sha256=<hex>"))?;
        let Some(ts) = header_str(TIMESTAMP_HEADER) else {
            return Err(ApiError::unauthorized(
                codes::AUTH_MISSING,
                "X-Grantline-Timestamp is required with X-Grantline-Signature",
            ));
        };
        let ts = ts.map_err(|_| bad("the timestamp is not Unix seconds"))?;
        let ts_secs: u64 = if !ts.is_empty() && ts.len() <= 12 && ts.bytes().all(|b| b.is_ascii_digit()) {
            ts.parse().map_err(|_| bad("the timestamp is not Unix seconds"))?
        } else {
            return Err(bad("the timestamp is not Unix seconds"));
        };
        let digest = sig
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h).ok())
            .filter(|d| d.len() == 32)
            .ok_or_else(|| bad("the signature is not sha256=<hex>"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).map_err(|e| ApiError::internal(&e))?;
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body);
        if mac.verify_slice(&digest).is_err() {
            return Err(bad("the signature does not match the body"));
        }
        let now_secs = now_ms / 1000;
        if now_secs.abs_diff(ts_secs) > window_secs {
            return Err(ApiError::unauthorized(
                codes::AUTH_REPLAYED,
                format!("the timestamp is more than {window_secs} s away from now; sign the request again"),
            ));
        }
        return Ok(WebhookAuth::Hmac);
    }
    if let (Some(expected), Some(given)) = (&auth.shared_secret, headers.get(SECRET_HEADER)) {
        if secret_eq(given.as_bytes(), expected.expose().as_bytes()) {
            return Ok(WebhookAuth::SharedSecret);
        }
        return Err(ApiError::unauthorized(codes::AUTH_BAD_SECRET, "the shared secret does not match"));
    }
    let accepted = match (&auth.shared_secret, &auth.hmac_secret) {
        (Some(_), Some(_)) => "X-Grantline-Secret, or X-Grantline-Timestamp with X-Grantline-Signature",
        (Some(_), None) => "X-Grantline-Secret",
        (None, Some(_)) => "X-Grantline-Timestamp with X-Grantline-Signature",
        (None, None) => "a configured credential (none is configured)",
    };
    Err(ApiError::unauthorized(codes::AUTH_MISSING, format!("authentication required: {accepted}")))
}

/// An inbound ServiceNow webhook whose body is within the limit, authenticated, and
/// declared as JSON. Nothing is parsed yet.
#[derive(Debug)]
pub struct ServiceNowWebhook {
    pub auth: WebhookAuth,
    pub body: Bytes,
    /// The caller's valid `traceparent`, if it sent one.
    pub traceparent: Option<TraceParent>,
}

impl FromRequest<AppState> for ServiceNowWebhook {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let cfg = &state.cfg;
        // A shared secret is in the headers: it is checked before a byte of the body is read,
        // so a caller without it cannot make the edge buffer bodies. A signature covers the
        // body, which is then read first (within the size limit and the body timeout).
        let signed = cfg.servicenow.hmac_secret.is_some() && parts.headers.contains_key(SIGNATURE_HEADER);
        let early = if signed {
            None
        } else {
            Some(authenticate(&cfg.servicenow, &parts.headers, &[], state.now_ms(), cfg.replay_window_secs)?)
        };
        let body = read_body(&parts.headers, body, cfg.max_body_bytes).await?;
        let auth = match early {
            Some(auth) => auth,
            None => authenticate(&cfg.servicenow, &parts.headers, &body, state.now_ms(), cfg.replay_window_secs)?,
        };
        require_json(&parts.headers)?;
        let traceparent =
            parts.headers.get(TRACEPARENT_HEADER).and_then(|v| v.to_str().ok()).and_then(TraceParent::parse);
        Ok(Self { auth, body, traceparent })
    }
}

/// A JSON body of the operator API: within the limit and declared as JSON.
#[derive(Debug)]
pub struct JsonBytes(pub Bytes);

impl FromRequest<AppState> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let body = read_body(&parts.headers, body, state.cfg.max_body_bytes).await?;
        require_json(&parts.headers)?;
        Ok(Self(body))
    }
}

/// An authenticated operator (a configured bearer token); `id` names it in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: String,
    /// The operator's own directory identity, when configured.
    pub directory_id: Option<String>,
    pub upn: Option<String>,
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::bearer(codes::AUTH_MISSING, "an operator bearer token is required"));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::bearer(codes::AUTH_MISSING, "an operator bearer token is required"))?;
        operator_for_token(state, token)
            .ok_or_else(|| ApiError::bearer(codes::AUTH_BAD_TOKEN, "the bearer token is not valid"))
    }
}

/// The operator a bearer token belongs to. Every configured token is compared, in constant
/// time, without stopping at the first match.
pub fn operator_for_token(state: &AppState, token: &str) -> Option<Operator> {
    if token.is_empty() {
        return None;
    }
    let mut found = None;
    for t in &state.cfg.operator_tokens {
        if secret_eq(token.as_bytes(), t.token.expose().as_bytes()) {
            found = Some(t);
        }
    }
    found.map(|t| Operator { id: t.id.clone(), directory_id: t.directory_id.clone(), upn: t.upn.clone() })
}

/// The trace a new request starts: the caller's trace continued when it sent a valid
/// `traceparent`, otherwise a fresh one (random 16-byte trace id, flags 01). The parent id
/// is a new span id: the request's own span, which every job of the request continues.
pub fn start_trace(incoming: Option<&TraceParent>) -> TraceParent {
    let mut span = 0u64;
    while span == 0 {
        span = fastrand::u64(..);
    }
    let parent_id = format!("{span:016x}");
    match incoming {
        Some(t) => TraceParent { trace_id: t.trace_id.clone(), parent_id, flags: t.flags },
        None => {
            let mut id = 0u128;
            while id == 0 {
                id = fastrand::u128(..);
            }
            TraceParent { trace_id: format!("{id:032x}"), parent_id, flags: 0x01 }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use axum::http::HeaderValue;

    fn sign(key: &str, ts: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const KEY: &str = "hmac-key-hmac-key-1234";

    fn both() -> ServiceNowAuth {
        ServiceNowAuth {
            shared_secret: Some(Secret::new("shared-secret-0123456")),
            hmac_secret: Some(Secret::new(KEY)),
        }
    }

    #[test]
    fn hmac_window_and_secret() {
        let auth = both();
        let body = br#"{"a":1}"#;
        let now_ms = 1_800_000_000_000;
        let ts = "1800000000";
        let ok = headers(&[(TIMESTAMP_HEADER, ts), (SIGNATURE_HEADER, &sign(KEY, ts, body))]);
        assert_eq!(authenticate(&auth, &ok, body, now_ms, 300), Ok(WebhookAuth::Hmac));
        // 299 s either way is inside, 301 s is not
        assert!(authenticate(&auth, &ok, body, now_ms + 299_000, 300).is_ok());
        assert!(authenticate(&auth, &ok, body, now_ms - 299_000, 300).is_ok());
        assert_eq!(authenticate(&auth, &ok, body, now_ms + 301_000, 300).unwrap_err().code, codes::AUTH_REPLAYED);
        assert_eq!(authenticate(&auth, &ok, body, now_ms - 301_000, 300).unwrap_err().code, codes::AUTH_REPLAYED);
        // another body, another key, a malformed signature
        assert_eq!(authenticate(&auth, &ok, b"{}", now_ms, 300).unwrap_err().code, codes::AUTH_BAD_SIGNATURE);
        let other_key = headers(&[(TIMESTAMP_HEADER, ts), (SIGNATURE_HEADER, &sign("another-key-0000000", ts, body))]);
        assert_eq!(authenticate(&auth, &other_key, body, now_ms, 300).unwrap_err().code, codes::AUTH_BAD_SIGNATURE);
        for bad in ["sha256=zz", "md5=00", "", "sha256="] {
            let h = headers(&[(TIMESTAMP_HEADER, ts), (SIGNATURE_HEADER, bad)]);
            assert_eq!(
                authenticate(&auth, &h, body, now_ms, 300).unwrap_err().code,
                codes::AUTH_BAD_SIGNATURE,
                "{bad}"
            );
        }
        let no_ts = headers(&[(SIGNATURE_HEADER, &sign(KEY, ts, body))]);
        assert_eq!(authenticate(&auth, &no_ts, body, now_ms, 300).unwrap_err().code, codes::AUTH_MISSING);
        let bad_ts = headers(&[(TIMESTAMP_HEADER, "-5"), (SIGNATURE_HEADER, &sign(KEY, "-5", body))]);
        assert_eq!(authenticate(&auth, &bad_ts, body, now_ms, 300).unwrap_err().code, codes::AUTH_BAD_SIGNATURE);
        // shared secret
        let s = headers(&[(SECRET_HEADER, "shared-secret-0123456")]);
        assert_eq!(authenticate(&auth, &s, body, now_ms, 300), Ok(WebhookAuth::SharedSecret));
        let s = headers(&[(SECRET_HEADER, "shared-secret-012345")]);
        assert_eq!(authenticate(&auth, &s, body, now_ms, 300).unwrap_err().code, codes::AUTH_BAD_SECRET);
        assert_eq!(authenticate(&auth, &HeaderMap::new(), body, now_ms, 300).unwrap_err().code, codes::AUTH_MISSING);
        // a secret header is not enough when only HMAC is configured
        let hmac_only = ServiceNowAuth { shared_secret: None, hmac_secret: Some(Secret::new(KEY)) };
        let s = headers(&[(SECRET_HEADER, "shared-secret-0123456")]);
        assert_eq!(authenticate(&hmac_only, &s, body, now_ms, 300).unwrap_err().code, codes::AUTH_MISSING);
    }

    #[test]
    fn content_type_must_be_json() {
        assert!(require_json(&headers(&[("content-type", "application/json")])).is_ok());
        assert!(require_json(&headers(&[("content-type", "Application/JSON; charset=utf-8")])).is_ok());
        for bad in ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"] {
            assert_eq!(
                require_json(&headers(&[("content-type", bad)])).unwrap_err().status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            );
        }
        assert!(require_json(&HeaderMap::new()).is_err());
    }

    #[test]
    fn traces_are_started_or_continued() {
        let fresh = start_trace(None);
        let s = fresh.to_string();
        assert_eq!(TraceParent::parse(&s), Some(fresh.clone()), "{s}");
        assert!(fresh.sampled());
        let incoming = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        let cont = start_trace(Some(&incoming));
        assert_eq!(cont.trace_id, incoming.trace_id);
        assert_ne!(cont.parent_id, incoming.parent_id);
        assert_eq!(cont.flags, 0);
        assert_ne!(start_trace(None).trace_id, fresh.trace_id);
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let h = HeaderMap::new();
        assert_eq!(read_body(&h, Body::from(vec![b'x'; 10]), 10).await.unwrap().len(), 10);
        assert_eq!(
            read_body(&h, Body::from(vec![b'x'; 11]), 10).await.unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let declared = headers(&[("content-length", "1000")]);
        assert_eq!(read_body(&declared, Body::empty(), 10).await.unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn a_body_buffer_grows_by_doubling_and_never_past_the_declared_length() {
        // 65,535 of a declared 65,536 bytes, in hyper's 8 KiB reads and then in dribbles
        let mut cap = 0;
        let mut len = 0;
        let mut grows = 0;
        let chunks = std::iter::repeat_n(8192, 7).chain(std::iter::repeat_n(1, 8191));
        for chunk in chunks {
            let need = len + chunk;
            if need > cap {
                let next = grown_capacity(cap, need, 65_536);
                assert!(next >= need && next <= 65_536, "{cap} -> {next} for {need}");
                cap = next;
                grows += 1;
            }
            len = need;
        }
        assert_eq!(len, 65_535);
        assert_eq!(cap, 65_536, "the buffer ends at the declared length, not the next power past it");
        assert!(grows <= 5, "{grows} reallocations");
        // without a declared length the limit is the ceiling; a small body stays small
        assert_eq!(grown_capacity(0, 10, 65_536), 4096);
        assert_eq!(grown_capacity(0, 10, 10), 10);
        assert_eq!(grown_capacity(49_152, 57_344, 65_536), 65_536);
    }

    #[tokio::test]
    async fn a_body_in_many_chunks_is_read_whole() {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            (0..100).map(|i| Ok(Bytes::from(vec![i as u8; 655]))).collect();
        let body = Body::from_stream(futures::stream::iter(chunks));
        let declared = headers(&[("content-length", "65500")]);
        let got = read_body(&declared, body, 65_536).await.unwrap();
        assert_eq!(got.len(), 65_500);
        assert!(got.chunks(655).enumerate().all(|(i, c)| c.iter().all(|b| *b == i as u8)));
    }
}
