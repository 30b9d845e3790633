//! What every connector shares: building the HTTP client from configuration, the one table that
//! turns an HTTP status into an [`ErrorClass`], transport-failure classification, and
//! `Retry-After` parsing.
//!
//! | status | class | code suffix |
//! | --- | --- | --- |
//! | 2xx | success | |
//! | 429 | Throttled, with `Retry-After` | `throttled` |
//! | 408 | Transient, with `Retry-After` if present | `request_timeout` |
//! | 500, 502, 503, 504 | Transient, with `Retry-After` if present | `server_error`, `bad_gateway`, `unavailable`, `gateway_timeout` |
//! | other 5xx | Transient | `server_error` |
//! | 401 | the caller refreshes its token once and repeats the call; a second 401 is Permanent | `unauthorized` |
//! | 400, 403, 404, 409, other 4xx | Permanent | `bad_request`, `forbidden`, `not_found`, `conflict`, `client_error` |
//! | anything else (1xx, 3xx) | Transient (unknown) | `unexpected_status` |
//!
//! Timeouts, refused connections and connection resets are Transient. A request that could
//! not even be built (an invalid URL or header value) is Permanent.

use std::error::Error as StdError;
use std::time::Duration;

use grantline_shared::ErrorClass;
use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use url::Url;

use crate::{ConfigError, Secret};

/// Timeouts and identification for one connector's HTTP client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Time allowed to establish a TCP (and TLS) connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Time allowed for a whole request, from sending to the end of the response body, in
    /// milliseconds.
    pub timeout_ms: u64,
    /// The `User-Agent` header sent with every request.
    pub user_agent: String,
    /// An egress proxy for every request (`http://proxy.internal:3128`, credentials allowed in
    /// the URL). Without it, connections are direct: proxy environment variables are ignored.
    pub proxy_url: Option<Secret>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            timeout_ms: 30_000,
            user_agent: concat!("grantline/", env!("CARGO_PKG_VERSION")).to_owned(),
            proxy_url: None,
        }
    }
}

impl HttpConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Builds the HTTP client for one connector: the configured timeouts, no redirects (a redirect
/// would be an unexpected status, never followed with credentials), no proxy from the
/// environment.
pub fn build_client(config: &HttpConfig) -> Result<reqwest::Client, ConfigError> {
    if config.timeout_ms == 0 {
        return Err(ConfigError::new("http.timeout_ms", "must be greater than zero"));
    }
    if config.connect_timeout_ms == 0 {
        return Err(ConfigError::new("http.connect_timeout_ms", "must be greater than zero"));
    }
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout())
        .timeout(config.timeout())
        .user_agent(config.user_agent.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if let Some(proxy) = &config.proxy_url {
        // The error text could echo the URL and its credentials: report only that it is invalid.
        let proxy = reqwest::Proxy::all(proxy.expose())
            .map_err(|_| ConfigError::new("http.proxy_url", "not a valid proxy URL"))?;
        builder = builder.proxy(proxy);
    }
    builder.build().map_err(|e| ConfigError::new("http", error_chain(&e)))
}

/// Parses a configured base URL: absolute, `http` or `https`, without query or fragment. A
/// trailing slash is removed so that path segments can be appended.
pub fn parse_base_url(key: &'static str, value: &str) -> Result<Url, ConfigError> {
    let mut url = Url::parse(value.trim()).map_err(|e| ConfigError::new(key, format!("not a URL: {e}")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ConfigError::new(key, "scheme must be http or https"));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(ConfigError::new(key, "must be an absolute URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(key, "must not have a query or fragment"));
    }
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty();
    }
    Ok(url)
}

/// `base` with `segments` appended, each one percent-encoded as a single path segment (so
/// `#EXT#` becomes `%23EXT%23` and a `/` inside an id cannot change the route).
pub fn join_segments(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// The class of a non-success status, per the table in this module's documentation. `401` is
/// Permanent here: callers that hold a token refresh once before they get to classify it.
pub fn classify_status(status: StatusCode, retry_after: Option<Duration>) -> ErrorClass {
    match status.as_u16() {
        429 => ErrorClass::Throttled { retry_after },
        408 | 500 | 502 | 503 | 504 => ErrorClass::Transient { retry_after },
        500..=599 => ErrorClass::Transient { retry_after },
        400..=499 => ErrorClass::Permanent,
        _ => ErrorClass::Transient { retry_after },
    }
}

/// The stable suffix of a machine code for a non-success status (`graph.` + this, for example).
pub fn status_code_name(status: StatusCode) -> &'static str {
    // specific codes first, then their class
    #[allow(clippy::match_overlapping_arm)]
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        408 => "request_timeout",
        409 => "conflict",
        429 => "throttled",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "gateway_timeout",
        500..=599 => "server_error",
        400..=499 => "client_error",
        _ => "unexpected_status",
    }
}

/// How a request failed before a status arrived (or while its body was read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The connect or request timeout elapsed.
    Timeout,
    /// The connection could not be established (refused, DNS, TLS).
    Connect,
    /// The connection failed mid-request (reset, closed early, truncated body).
    Io,
    /// The request could not be built (invalid URL or header value). Retrying cannot help.
    Builder,
}

impl TransportKind {
    pub fn class(self) -> ErrorClass {
        match self {
            TransportKind::Builder => ErrorClass::Permanent,
            _ => ErrorClass::TRANSIENT,
        }
    }

    /// The stable suffix of a machine code for this failure.
    pub fn code_name(self) -> &'static str {
        match self {
            TransportKind::Timeout => "timeout",
            TransportKind::Connect => "connect",
            TransportKind::Io => "transport",
            TransportKind::Builder => "invalid_request",
        }
    }

    pub fn of(err: &reqwest::Error) -> Self {
        if err.is_timeout() {
            TransportKind::Timeout
        } else if err.is_builder() {
            TransportKind::Builder
        } else if err.is_connect() {
            TransportKind::Connect
        } else {
            TransportKind::Io
        }
    }
}

/// A transport failure, described without the URL (so no query string reaches a log).
pub fn describe_transport(err: reqwest::Error) -> (TransportKind, String) {
    let kind = TransportKind::of(&err);
    (kind, error_chain(&err.without_url()))
}

/// An error and its sources, joined with `: `.
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The retry delay a response asks for: `retry-after-ms` or `x-ms-retry-after-ms`
/// (milliseconds) when present, else `Retry-After` as delta-seconds or an HTTP-date (a date in
/// the past means "now", zero).
pub fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = header_str(headers, name).and_then(parse_millis) {
            return Some(ms);
        }
    }
    header_str(headers, "retry-after").and_then(|v| parse_retry_after(v, now))
}

/// Parses one `Retry-After` value: delta-seconds (a non-negative integer; a decimal fraction
/// is tolerated) or an HTTP-date (IMF-fixdate, RFC 850 or asctime).
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let at = parse_http_date(value)?;
    let delta = at.duration_since(now);
    Some(Duration::try_from(delta).unwrap_or(Duration::ZERO))
}

/// Parses an HTTP-date (RFC 9110 section 5.6.7): the preferred IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`) and the obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`)
/// and asctime (`Sun Nov  6 08:49:37 1994`) forms.
pub fn parse_http_date(value: &str) -> Option<Timestamp> {
    let value = value.trim();
    if let Ok(ts) = jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(value) {
        return Some(ts);
    }
    let collapsed = value.split_whitespace().collect::<Vec<_>>().join(" ");
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y"].into_iter().find_map(|format| {
        let civil = jiff::fmt::strtime::parse(format, &collapsed).ok()?.to_datetime().ok()?;
        civil.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp())
    })
}

fn parse_millis(value: &str) -> Option<Duration> {
    let ms = value.trim().parse::<f64>().ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64((ms / 1000.0).min(1e9)))
}

/// A header as a string, when present and visible ASCII.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// At most `max` characters of an upstream body, for error messages.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((idx, _)) => format!("{}…", &text[..idx]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-22T14:12:37Z".parse().unwrap()
    }

    #[test]
    fn status_table() {
        let ra = Some(Duration::from_secs(2));
        assert_eq!(classify_status(StatusCode::TOO_MANY_REQUESTS, ra), ErrorClass::Throttled { retry_after: ra });
        for s in [408, 500, 502, 503, 504, 599] {
            let st = StatusCode::from_u16(s).unwrap();
            assert_eq!(classify_status(st, ra), ErrorClass::Transient { retry_after: ra }, "{s}");
        }
        for s in [400, 401, 403, 404, 409, 412, 422] {
            let st = StatusCode::from_u16(s).unwrap();
            assert_eq!(classify_status(st, None), ErrorClass::Permanent, "{s}");
        }
        assert_eq!(classify_status(StatusCode::FOUND, None), ErrorClass::TRANSIENT);
        assert_eq!(status_code_name(StatusCode::from_u16(418).unwrap()), "client_error");
        assert_eq!(status_code_name(StatusCode::from_u16(501).unwrap()), "server_error");
        assert_eq!(status_code_name(StatusCode::MOVED_PERMANENTLY), "unexpected_status");
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2", now()), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 120 ", now()), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("1.5", now()), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("-1", now()), None);
        assert_eq!(parse_retry_after("soon", now()), None);
        assert_eq!(parse_retry_after("Thu, 22 Jan 2026 14:12:47 GMT", now()), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Thursday, 22-Jan-26 14:13:37 GMT", now()), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Thu Jan 22 14:12:40 2026", now()), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Thu Jan  1 00:00:00 2026", now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now()), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_ms_wins() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "5".parse().unwrap());
        assert_eq!(retry_after(&h, now()), Some(Duration::from_secs(5)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h, now()), Some(Duration::from_millis(250)));
        let mut h = HeaderMap::new();
        h.insert("x-ms-retry-after-ms", "1200".parse().unwrap());
        assert_eq!(retry_after(&h, now()), Some(Duration::from_millis(1200)));
        assert_eq!(retry_after(&HeaderMap::new(), now()), None);
    }

    #[test]
    fn base_urls() {
        let u = parse_base_url("graph.base_url", "http://127.0.0.1:1234/v1.0/").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:1234/v1.0");
        let j = join_segments(&u, &["users", "alex_contoso.com#EXT#@fabrikam.onmicrosoft.com"]);
        assert_eq!(j.path(), "/v1.0/users/alex_contoso.com%23EXT%23@fabrikam.onmicrosoft.com");
        let j = join_segments(&u, &["groups", "g/1", "members", "$ref"]);
        assert_eq!(j.path(), "/v1.0/groups/g%2F1/members/$ref");
        assert!(parse_base_url("k", "ftp://x").is_err());
        assert!(parse_base_url("k", "http://x/?a=b").is_err());
        assert!(parse_base_url("k", "nope").is_err());
        let root = parse_base_url("k", "https://acme.service-now.com").unwrap();
        assert_eq!(join_segments(&root, &["api", "now"]).as_str(), "https://acme.service-now.com/api/now");
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hi", 5), "hi");
    }
}
