//! The request log every simulator keeps, with secrets redacted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use serde::Serialize;

use crate::server::SimRequest;

/// What replaces a secret in the log.
pub const REDACTED: &str = "[redacted]";

const SECRET_HEADERS: &[&str] =
    &["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"];

const SECRET_FIELDS: &[&str] = &[
    "client_secret",
    "client_assertion",
    "password",
    "refresh_token",
    "access_token",
    "id_token",
    "secret",
    "assertion",
    // a Workflows webhook's signature, an authorization code and its PKCE verifier are
    // credentials too
    "sig",
    "code",
    "code_verifier",
    // a PagerDuty routing key is its integration's credential; Slack form calls carry a token
    "routing_key",
    "token",
];

/// One request as a simulator saw it.
#[derive(Clone, Debug, Serialize)]
pub struct LoggedRequest {
    /// Position in this simulator's log (starts at 1).
    pub seq: u64,
    pub method: String,
    /// Path as received (percent-encoded).
    pub path: String,
    /// Raw query string without `?`, secrets redacted.
    pub query: Option<String>,
    /// Header names in lower case; secret values redacted (the `Bearer`/`Basic` scheme is kept).
    pub headers: Vec<(String, String)>,
    /// Body as text (lossy UTF-8), secret fields redacted in form and JSON bodies.
    pub body: String,
    /// Status returned; 0 while no response has been sent (or the client went away first).
    pub status: u16,
    /// Whether a scripted fault decided the response.
    pub fault: bool,
    /// Simulated time the request arrived.
    pub at: Timestamp,
    /// Wall time spent answering, in milliseconds.
    pub elapsed_ms: u64,
}

impl LoggedRequest {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct LogInner {
    next_seq: u64,
    entries: VecDeque<LoggedRequest>,
    capacity: usize,
}

/// A bounded request log; the oldest entries are dropped past the capacity.
#[derive(Clone, Debug)]
pub(crate) struct RequestLog {
    inner: Arc<Mutex<LogInner>>,
}

impl RequestLog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(LogInner { next_seq: 0, entries: VecDeque::new(), capacity: capacity.max(1) })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn begin(&self, req: &SimRequest, at: Timestamp) -> u64 {
        let headers = req
            .headers
            .iter()
            .map(|(k, v)| {
                let name = k.as_str().to_ascii_lowercase();
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                let value = if SECRET_HEADERS.contains(&name.as_str()) { redact_header_value(&value) } else { value };
                (name, value)
            })
            .collect();
        let mut inner = self.lock();
        inner.next_seq += 1;
        let seq = inner.next_seq;
        let entry = LoggedRequest {
            seq,
            method: req.method.as_str().to_owned(),
            path: req.path.clone(),
            query: req.query.as_deref().map(redact_form),
            headers,
            body: redact_body(req.header("content-type"), &req.body),
            status: 0,
            fault: false,
            at,
            elapsed_ms: 0,
        };
        inner.entries.push_back(entry);
        while inner.entries.len() > inner.capacity {
            inner.entries.pop_front();
        }
        seq
    }

    pub(crate) fn finish(&self, seq: u64, status: u16, fault: bool, elapsed_ms: u64) {
        let mut inner = self.lock();
        let Some(front) = inner.entries.front().map(|e| e.seq) else {
            return;
        };
        if seq < front {
            return;
        }
        let idx = usize::try_from(seq - front).unwrap_or(usize::MAX);
        if let Some(e) = inner.entries.get_mut(idx) {
            e.status = status;
            e.fault = fault;
            e.elapsed_ms = elapsed_ms;
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<LoggedRequest> {
        self.lock().entries.iter().cloned().collect()
    }

    pub(crate) fn clear(&self) {
        self.lock().entries.clear();
    }
}

fn redact_header_value(value: &str) -> String {
    match value.split_once(' ') {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("basic") => {
            format!("{scheme} {REDACTED}")
        }
        _ => REDACTED.to_owned(),
    }
}

fn is_secret_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_FIELDS.contains(&lower.as_str())
}

fn redact_form(raw: &str) -> String {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| {
            let v = if is_secret_field(&k) { REDACTED.to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    if !pairs.iter().any(|(k, _)| is_secret_field(k)) {
        return raw.to_owned();
    }
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn redact_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret_field(k) {
                    *val = serde_json::Value::String(REDACTED.to_owned());
                } else {
                    redact_json(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}

fn redact_body(content_type: Option<&str>, body: &[u8]) -> String {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("application/x-www-form-urlencoded") {
        return redact_form(&String::from_utf8_lossy(body));
    }
    if (ct.contains("json") || body.first() == Some(&b'{'))
        && let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body)
    {
        let before = v.clone();
        redact_json(&mut v);
        if v != before {
            return serde_json::to_string(&v).unwrap_or_default();
        }
    }
    String::from_utf8_lossy(body).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn redacts_form_and_json_and_headers() {
        assert_eq!(
            redact_form("client_id=a&client_secret=s3cr%21t&scope=x"),
            "client_id=a&client_secret=%5Bredacted%5D&scope=x"
        );
        assert_eq!(
            redact_body(Some("application/json"), br#"{"password":"p","u":"x"}"#),
            r#"{"password":"[redacted]","u":"x"}"#
        );
        assert_eq!(redact_header_value("Bearer abc.def"), "Bearer [redacted]");
        assert_eq!(redact_header_value("s3cret"), "[redacted]");
    }
}
