//! Access tokens: the Microsoft identity platform client-credentials grant, and the cache
//! every token-based connector shares.
//!
//! The cache keeps a token until shortly before `expires_in` runs out. The refresh margin is
//! the configured margin (default 5 minutes) or a tenth of the token's lifetime, whichever is
//! smaller, so a short-lived token is not refreshed on every call. Refreshes are single
//! flight: when many tasks need a token at once, one HTTP call is made and the others wait for
//! its result (a failure is shared the same way, so a broken credential costs one call, not
//! one per waiting task). When a refresh fails but the previous token has not yet expired,
//! the previous token is still handed out.
//!
//! A `401` from an API means the token was revoked or expired early: the connector calls
//! [`TokenProvider::invalidate_if_current`] and repeats its call once with a new token.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use grantline_shared::{ErrorClass, StepError};
use serde::{Deserialize, Deserializer};
use tracing::Instrument;
use url::Url;

use crate::http::{self, TransportKind};
use crate::{ConfigError, Secret};

/// A bearer token. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The token itself, for the `Authorization` header.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// The source of "now" for token expiry. [`SystemClock`] in production; [`ManualClock`] lets
/// tests and simulations move time without sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self { start: Instant::now(), offset: Mutex::new(Duration::ZERO) }
    }

    pub fn advance(&self, by: Duration) {
        *lock(&self.offset) += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *lock(&self.offset)
    }
}

/// Configuration of the client-credentials grant against the Microsoft identity platform.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EntraTokenConfig {
    /// The authority host, without the tenant: `https://login.microsoftonline.com`.
    pub authority: String,
    /// Tenant id (GUID) or domain (`contoso.onmicrosoft.com`).
    pub tenant: String,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret value.
    pub client_secret: Secret,
    /// The resource the token is for; the scope sent is `<resource>/.default`.
    pub resource: String,
    /// Refresh this long before expiry (capped at a tenth of the token's lifetime).
    pub refresh_margin_secs: u64,
}

impl Default for EntraTokenConfig {
    fn default() -> Self {
        Self {
            authority: "https://login.microsoftonline.com".to_owned(),
            tenant: String::new(),
            client_id: String::new(),
            client_secret: Secret::default(),
            resource: "https://graph.microsoft.com".to_owned(),
            refresh_margin_secs: 300,
        }
    }
}

impl EntraTokenConfig {
    /// `POST {authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> Result<Url, ConfigError> {
        let base = http::parse_base_url("token.authority", &self.authority)?;
        if self.tenant.trim().is_empty() {
            return Err(ConfigError::new("token.tenant", "must be set"));
        }
        Ok(http::join_segments(&base, &[self.tenant.trim(), "oauth2", "v2.0", "token"]))
    }

    /// `<resource>/.default`.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.resource.trim().trim_end_matches('/'))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::new("token.client_id", "must be set"));
        }
        if self.client_secret.is_empty() {
            return Err(ConfigError::new("token.client_secret", "must be set"));
        }
        if self.resource.trim().is_empty() {
            return Err(ConfigError::new("token.resource", "must be set"));
        }
        Ok(())
    }
}

/// A failure to obtain a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint refused the credentials or the request (wrong or expired secret,
    /// unknown application or tenant, bad scope). Retrying cannot help.
    #[error("token request rejected with HTTP {status} {error}: {description}")]
    Rejected {
        status: u16,
        /// The OAuth `error` (`invalid_client`, `unauthorized_client`, ...).
        error: String,
        /// The AADSTS codes (`[7000215]`), when the endpoint sends them.
        error_codes: Vec<i64>,
        /// The first line of `error_description`.
        description: String,
        trace_id: Option<String>,
        correlation_id: Option<String>,
    },
    /// The token endpoint answered 429.
    #[error("token endpoint throttled the request")]
    Throttled { retry_after: Option<Duration> },
    /// The token endpoint failed (5xx, 408, `temporarily_unavailable`, an unexpected status).
    #[error("token endpoint unavailable (HTTP {status}): {description}")]
    Unavailable { status: u16, retry_after: Option<Duration>, description: String },
    /// No response (timeout, refused or reset connection).
    #[error("token request failed: {message}")]
    Transport { kind: TransportKind, message: String },
    /// A success status with a body that is not a token response.
    #[error("malformed token response: {message}")]
    Malformed { message: String },
}

const KNOWN_OAUTH_ERRORS: &[&str] = &[
    "invalid_client",
    "unauthorized_client",
    "invalid_scope",
    "invalid_request",
    "invalid_grant",
    "unsupported_grant_type",
    "access_denied",
    "invalid_resource",
    "consent_required",
    "interaction_required",
];

impl TokenError {
    pub fn class(&self) -> ErrorClass {
        match self {
            TokenError::Rejected { .. } | TokenError::Malformed { .. } => ErrorClass::Permanent,
            TokenError::Throttled { retry_after } => ErrorClass::Throttled { retry_after: *retry_after },
            TokenError::Unavailable { retry_after, .. } => ErrorClass::Transient { retry_after: *retry_after },
            TokenError::Transport { kind, .. } => kind.class(),
        }
    }

    /// The stable machine code: `token.invalid_client`, `token.throttled`, `token.timeout`, ...
    pub fn code(&self) -> String {
        match self {
            TokenError::Rejected { error, .. } if KNOWN_OAUTH_ERRORS.contains(&error.as_str()) => {
                format!("token.{error}")
            }
            TokenError::Rejected { .. } => "token.rejected".to_owned(),
            TokenError::Throttled { .. } => "token.throttled".to_owned(),
            TokenError::Unavailable { .. } => "token.unavailable".to_owned(),
            TokenError::Transport { kind, .. } => format!("token.{}", kind.code_name()),
            TokenError::Malformed { .. } => "token.malformed".to_owned(),
        }
    }

    pub fn to_step_error(&self) -> StepError {
        StepError::new(self.class(), self.code(), self.to_string())
    }

    fn transport(err: reqwest::Error) -> Self {
        let (kind, message) = http::describe_transport(err);
        TokenError::Transport { kind, message }
    }

    /// Classifies a non-success answer of an OAuth token endpoint.
    pub(crate) fn from_response(
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Self {
        let retry_after = http::retry_after(headers, jiff::Timestamp::now());
        let parsed: Option<OAuthErrorBody> = serde_json::from_slice(body).ok();
        let code = status.as_u16();
        if code == 429 {
            return TokenError::Throttled { retry_after };
        }
        let description = match &parsed {
            Some(p) => first_line(p.error_description.as_deref().unwrap_or(p.error.as_str())),
            None => http::truncate(String::from_utf8_lossy(body).trim(), 300),
        };
        let temporarily = parsed.as_ref().is_some_and(|p| p.error == "temporarily_unavailable");
        let client_error = (400..500).contains(&code) && code != 408;
        if !client_error || (temporarily && code != 401 && code != 403) {
            return TokenError::Unavailable { status: code, retry_after, description };
        }
        let parsed = parsed.unwrap_or_default();
        TokenError::Rejected {
            status: code,
            error: if parsed.error.is_empty() { "unknown".to_owned() } else { parsed.error },
            error_codes: parsed.error_codes,
            description,
            trace_id: parsed.trace_id,
            correlation_id: parsed.correlation_id,
        }
    }
}

impl From<TokenError> for StepError {
    fn from(err: TokenError) -> Self {
        err.to_step_error()
    }
}

fn first_line(text: &str) -> String {
    http::truncate(text.lines().next().unwrap_or("").trim(), 500)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OAuthErrorBody {
    error: String,
    error_description: Option<String>,
    error_codes: Vec<i64>,
    trace_id: Option<String>,
    correlation_id: Option<String>,
}

/// A successful token response (`token_type`, `expires_in`, `access_token`; other fields such
/// as `ext_expires_in`, `scope` or `refresh_token` are ignored).
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    access_token: String,
    #[serde(deserialize_with = "number_or_string")]
    expires_in: u64,
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(u64),
        Str(String),
    }
    match NumOrStr::deserialize(d)? {
        NumOrStr::Num(n) => Ok(n),
        NumOrStr::Str(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// A freshly issued token and its lifetime.
pub(crate) struct Fetched {
    pub token: AccessToken,
    pub lifetime: Duration,
}

/// Sends a token request and interprets the answer. Shared by every OAuth token endpoint.
pub(crate) async fn request_token(request: reqwest::RequestBuilder) -> Result<Fetched, TokenError> {
    let response = request.send().await.map_err(TokenError::transport)?;
    let status = response.status();
    grantline_shared::metrics::upstream_response("entra_token", status.as_u16());
    tracing::Span::current().record("http.status_code", status.as_u16());
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(TokenError::transport)?;
    if !status.is_success() {
        return Err(TokenError::from_response(status, &headers, &body));
    }
    let parsed: TokenResponse =
        serde_json::from_slice(&body).map_err(|e| TokenError::Malformed { message: e.to_string() })?;
    if parsed.access_token.is_empty() {
        return Err(TokenError::Malformed { message: "empty access_token".to_owned() });
    }
    Ok(Fetched { token: AccessToken::new(parsed.access_token), lifetime: Duration::from_secs(parsed.expires_in) })
}

/// Where a [`TokenCache`] gets new tokens from.
pub(crate) trait TokenSource: Send + Sync + 'static {
    fn fetch(&self) -> impl Future<Output = Result<Fetched, TokenError>> + Send;
}

struct Cached {
    token: AccessToken,
    refresh_at: Instant,
    expires_at: Instant,
}

#[derive(Default)]
struct CacheState {
    current: Option<Cached>,
    /// Completed fetch attempts, successful or not.
    attempts: u64,
    last_error: Option<TokenError>,
}

/// A token cache with single-flight refresh, generic over where tokens come from.
pub(crate) struct TokenCache<S> {
    source: S,
    clock: Arc<dyn Clock>,
    margin: Duration,
    state: Mutex<CacheState>,
    flight: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

impl<S: TokenSource> TokenCache<S> {
    pub(crate) fn new(source: S, margin: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            source,
            clock,
            margin,
            state: Mutex::new(CacheState::default()),
            flight: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    pub(crate) async fn get(&self) -> Result<AccessToken, TokenError> {
        let seen = {
            let state = lock(&self.state);
            if let Some(token) = self.fresh(&state) {
                return Ok(token);
            }
            state.attempts
        };
        let _flight = self.flight.lock().await;
        {
            let state = lock(&self.state);
            if let Some(token) = self.fresh(&state) {
                return Ok(token);
            }
            if state.attempts != seen {
                // Someone else's fetch finished while this task waited, and it failed.
                if let Some(err) = &state.last_error {
                    return self.usable(&state).ok_or_else(|| err.clone());
                }
            }
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.source.fetch().await;
        let now = self.clock.now();
        let mut state = lock(&self.state);
        state.attempts += 1;
        match result {
            Ok(fetched) => {
                let margin = self.margin.min(fetched.lifetime / 10);
                let expires_at = now + fetched.lifetime;
                state.current =
                    Some(Cached { token: fetched.token.clone(), refresh_at: expires_at - margin, expires_at });
                state.last_error = None;
                Ok(fetched.token)
            }
            Err(err) => {
                state.last_error = Some(err.clone());
                self.usable(&state).ok_or(err)
            }
        }
    }

    /// The cached token if it is not yet due for refresh.
    fn fresh(&self, state: &CacheState) -> Option<AccessToken> {
        let now = self.clock.now();
        state.current.as_ref().filter(|c| now < c.refresh_at).map(|c| c.token.clone())
    }

    /// The cached token if it has not yet expired (used when a refresh fails).
    fn usable(&self, state: &CacheState) -> Option<AccessToken> {
        let now = self.clock.now();
        state.current.as_ref().filter(|c| now < c.expires_at).map(|c| c.token.clone())
    }

    pub(crate) fn invalidate(&self) {
        lock(&self.state).current = None;
    }

    pub(crate) fn invalidate_if_current(&self, token: &AccessToken) {
        let mut state = lock(&self.state);
        if state.current.as_ref().is_some_and(|c| &c.token == token) {
            state.current = None;
        }
    }

    pub(crate) fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct EntraSource {
    http: reqwest::Client,
    url: Url,
    tenant: String,
    client_id: String,
    client_secret: Secret,
    scope: String,
}

impl TokenSource for EntraSource {
    fn fetch(&self) -> impl Future<Output = Result<Fetched, TokenError>> + Send {
        let span = tracing::info_span!(
            "token.fetch",
            otel.kind = "client",
            http.method = "POST",
            url.path = %self.url.path(),
            http.status_code = tracing::field::Empty,
        );
        let request = self.http.post(self.url.clone()).form(&[
            ("client_id", self.client_id.as_str()),
            ("scope", self.scope.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("grant_type", "client_credentials"),
        ]);
        request_token(request).instrument(span)
    }
}

/// Client-credentials tokens from the Microsoft identity platform, cached. Cloning is cheap and
/// shares the cache.
#[derive(Clone)]
pub struct TokenProvider {
    cache: Arc<TokenCache<EntraSource>>,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("url", &self.cache.source.url.as_str())
            .field("client_id", &self.cache.source.client_id)
            .field("scope", &self.cache.source.scope)
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// A provider that sends its token requests through `http`.
    pub fn new(config: &EntraTokenConfig, http: reqwest::Client) -> Result<Self, ConfigError> {
        Self::with_clock(config, http, Arc::new(SystemClock))
    }

    /// As [`TokenProvider::new`], with expiry measured on `clock`.
    pub fn with_clock(
        config: &EntraTokenConfig,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let url = config.token_url()?;
        config.validate()?;
        let source = EntraSource {
            http,
            url,
            tenant: config.tenant.trim().to_owned(),
            client_id: config.client_id.trim().to_owned(),
            client_secret: config.client_secret.clone(),
            scope: config.scope(),
        };
        let margin = Duration::from_secs(config.refresh_margin_secs);
        Ok(Self { cache: Arc::new(TokenCache::new(source, margin, clock)) })
    }

    /// The tenant the tokens are for (a GUID or a domain, as configured).
    pub fn tenant(&self) -> &str {
        &self.cache.source.tenant
    }

    /// The app (client id) the tokens are issued to.
    pub fn client_id(&self) -> &str {
        &self.cache.source.client_id
    }

    /// A valid token: the cached one, or a new one (one request however many tasks ask).
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        self.cache.get().await
    }

    /// Drops the cached token, so the next [`TokenProvider::token`] fetches a new one.
    pub fn invalidate(&self) {
        self.cache.invalidate();
    }

    /// Drops the cached token only if it is still `token` (the one an API just refused), so
    /// that many concurrent `401`s cause one refresh, not one each.
    pub fn invalidate_if_current(&self, token: &AccessToken) {
        self.cache.invalidate_if_current(token);
    }

    /// How many token requests this provider has sent.
    pub fn fetch_count(&self) -> u64 {
        self.cache.fetch_count()
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    use super::*;

    const WRONG_SECRET: &str = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '00000000-0000-0000-0000-000000000000'.\r\nTrace ID: 1ac2a64a-16aa-433e-be83-c43c36ac1a01\r\nCorrelation ID: da2dd6b7-e090-459b-a2f5-1becad5c5142\r\nTimestamp: 2022-08-02 12:02:24Z","error_codes":[7000215],"timestamp":"2022-08-02 12:02:24Z","trace_id":"1ac2a64a-16aa-433e-be83-c43c36ac1a01","correlation_id":"da2dd6b7-e090-459b-a2f5-1becad5c5142","error_uri":"https://login.microsoftonline.com/error?code=7000215"}"#;

    #[test]
    fn classifies_token_errors() {
        let h = HeaderMap::new();
        let e = TokenError::from_response(StatusCode::UNAUTHORIZED, &h, WRONG_SECRET.as_bytes());
        assert_eq!(e.code(), "token.invalid_client");
        assert_eq!(e.class(), ErrorClass::Permanent);
        let TokenError::Rejected { error_codes, description, trace_id, .. } = &e else { panic!("{e:?}") };
        assert_eq!(error_codes, &vec![7000215]);
        assert!(description.starts_with("AADSTS7000215: Invalid client secret provided."));
        assert!(!description.contains("Trace ID"));
        assert_eq!(trace_id.as_deref(), Some("1ac2a64a-16aa-433e-be83-c43c36ac1a01"));

        for (status, error) in [(400, "unauthorized_client"), (400, "invalid_scope"), (400, "invalid_request")] {
            let body = format!(r#"{{"error":"{error}","error_description":"x","error_codes":[1]}}"#);
            let e = TokenError::from_response(StatusCode::from_u16(status).unwrap(), &h, body.as_bytes());
            assert_eq!(e.code(), format!("token.{error}"));
            assert_eq!(e.class(), ErrorClass::Permanent);
        }

        let mut h429 = HeaderMap::new();
        h429.insert("retry-after", "7".parse().unwrap());
        let e = TokenError::from_response(StatusCode::TOO_MANY_REQUESTS, &h429, b"");
        assert_eq!(e.class(), ErrorClass::Throttled { retry_after: Some(Duration::from_secs(7)) });
        assert_eq!(e.code(), "token.throttled");

        let e = TokenError::from_response(StatusCode::SERVICE_UNAVAILABLE, &h, b"<html>down</html>");
        assert_eq!(e.class(), ErrorClass::TRANSIENT);
        assert_eq!(e.code(), "token.unavailable");

        let body = br#"{"error":"temporarily_unavailable","error_description":"busy"}"#;
        let e = TokenError::from_response(StatusCode::BAD_REQUEST, &h, body);
        assert!(e.class().is_retryable());

        let e = TokenError::from_response(StatusCode::BAD_REQUEST, &h, br#"{"error":"weird_thing"}"#);
        assert_eq!(e.code(), "token.rejected");
        assert_eq!(e.class(), ErrorClass::Permanent);
    }

    #[test]
    fn token_response_accepts_string_expiry() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":"3599","token_type":"Bearer"}"#).unwrap();
        assert_eq!(t.expires_in, 3599);
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"a","expires_in":60}"#).unwrap();
        assert_eq!(t.expires_in, 60);
    }

    #[test]
    fn config_builds_url_and_scope() {
        let c = EntraTokenConfig {
            authority: "http://127.0.0.1:9/".into(),
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "app".into(),
            client_secret: "s3cr3t".into(),
            ..Default::default()
        };
        assert_eq!(c.token_url().unwrap().as_str(), "http://127.0.0.1:9/contoso.onmicrosoft.com/oauth2/v2.0/token");
        assert_eq!(c.scope(), "https://graph.microsoft.com/.default");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let missing = EntraTokenConfig { client_secret: Secret::default(), ..c };
        assert_eq!(missing.validate().unwrap_err().key, "token.client_secret");
    }

    #[test]
    fn access_token_debug_is_redacted() {
        assert_eq!(format!("{:?}", AccessToken::new("eyJ0eXAi")), "AccessToken(***)");
    }
}
