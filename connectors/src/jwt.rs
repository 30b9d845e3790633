//! Verifying signed tokens from identity providers: compact JWS parsing, RS256 signatures with
//! `openssl`, a JWKS cache fed by an OpenID configuration document, and the claims checks.
//!
//! Verification order: the token must be three base64url parts with JSON objects for header
//! and claims (`jwt.malformed`); the header's `alg` must be `RS256` (`none`, `HS256` and
//! everything else are `jwt.unsupported_alg`); the key its `kid` names must be published
//! (`jwt.unknown_key`, or `jwt.keys_unavailable` when the keys cannot be fetched); the signature
//! must verify (`jwt.bad_signature`); then `exp` (required, `jwt.expired`), `nbf`
//! (`jwt.not_yet_valid`), `iss` (exact, `jwt.wrong_issuer`) and `aud` (a string, or an array that
//! contains an expected audience, `jwt.wrong_audience`), with a clock skew (default 5 minutes)
//! on the times. "Now" is always the caller's, so tests control time.
//!
//! The [`JwksCache`] fetches the OpenID configuration, then its `jwks_uri`, and keeps the keys
//! for a TTL (default 24 hours). A token naming a `kid` the cache does not know causes one
//! refetch, at most once per `min_refetch_interval` (default a minute), so a key rotation is
//! picked up at once while a stream of tokens with invented key ids cannot make it fetch more
//! often. Fetches are single flight. When a refresh fails, keys already held are still used.
//! Cache ages are measured on the `now` callers pass.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use grantline_shared::{ErrorClass, StepError};
use jiff::Timestamp;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;
use openssl::sign::Verifier;
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::Instrument;
use url::Url;

use crate::http;

/// The only signing algorithm accepted.
pub const RS256: &str = "RS256";
/// How long fetched keys are kept by default.
pub const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(24 * 3600);
/// The default allowance for clock differences on `exp` and `nbf`.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// The default shortest time between two fetches caused by unknown key ids.
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Tokens longer than this are refused unparsed.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a compact JWS with JSON header and claims, or a required claim is missing.
    #[error("malformed token: {reason}")]
    Malformed { reason: String },
    /// The header names an algorithm other than RS256 (`none`, `HS256`, ...).
    #[error("unsupported signing algorithm {alg:?}")]
    UnsupportedAlg { alg: String },
    /// The key the token names is not published (even after a refetch).
    #[error("token signed with an unknown key {kid:?}")]
    UnknownKey { kid: String },
    /// The signature does not verify with the published key.
    #[error("token signature does not verify")]
    BadSignature,
    /// `exp` (plus the clock skew) has passed.
    #[error("token expired at {exp} (unix seconds)")]
    Expired { exp: i64 },
    /// `nbf` (minus the clock skew) is still ahead.
    #[error("token not valid before {nbf} (unix seconds)")]
    NotYetValid { nbf: i64 },
    /// `iss` is not the expected issuer.
    #[error("token issuer {found:?} is not {expected:?}")]
    WrongIssuer { expected: String, found: String },
    /// `aud` holds none of the expected audiences.
    #[error("token audience {found} is not one of {expected:?}")]
    WrongAudience { expected: Vec<String>, found: String },
    /// The signing keys could not be fetched (and none are held).
    #[error("signing keys unavailable: {reason}")]
    KeysUnavailable { reason: String },
}

impl JwtError {
    /// Only an unavailable key endpoint is worth retrying; every other refusal is final.
    pub fn class(&self) -> ErrorClass {
        match self {
            JwtError::KeysUnavailable { .. } => ErrorClass::TRANSIENT,
            _ => ErrorClass::Permanent,
        }
    }

    /// The stable machine code: `jwt.malformed`, `jwt.bad_signature`, `jwt.unknown_key`,
    /// `jwt.expired`, `jwt.not_yet_valid`, `jwt.wrong_issuer`, `jwt.wrong_audience`,
    /// `jwt.unsupported_alg`, `jwt.keys_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            JwtError::Malformed { .. } => "jwt.malformed",
            JwtError::UnsupportedAlg { .. } => "jwt.unsupported_alg",
            JwtError::UnknownKey { .. } => "jwt.unknown_key",
            JwtError::BadSignature => "jwt.bad_signature",
            JwtError::Expired { .. } => "jwt.expired",
            JwtError::NotYetValid { .. } => "jwt.not_yet_valid",
            JwtError::WrongIssuer { .. } => "jwt.wrong_issuer",
            JwtError::WrongAudience { .. } => "jwt.wrong_audience",
            JwtError::KeysUnavailable { .. } => "jwt.keys_unavailable",
        }
    }

    /// The refusal as a step failure (class, code, message).
    pub fn to_step_error(&self) -> StepError {
        StepError::new(self.class(), self.code(), self.to_string())
    }

    fn malformed(reason: impl Into<String>) -> Self {
        JwtError::Malformed { reason: reason.into() }
    }

    fn unavailable(reason: impl Into<String>) -> Self {
        JwtError::KeysUnavailable { reason: reason.into() }
    }
}

impl From<JwtError> for StepError {
    fn from(err: JwtError) -> Self {
        err.to_step_error()
    }
}

/// The JOSE header of a token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JwsHeader {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub x5t: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
}

impl JwsHeader {
    /// The key id: `kid`, else `x5t`.
    pub fn key_id(&self) -> Option<&str> {
        self.kid.as_deref().or(self.x5t.as_deref()).filter(|k| !k.is_empty())
    }
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// All claims.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// A claim of any type.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A string claim.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// A numeric claim (an integer, or a number with a fraction, rounded down).
    pub fn get_i64(&self, name: &str) -> Option<i64> {
        let v = self.0.get(name)?;
        #[allow(clippy::cast_possible_truncation)]
        v.as_i64().or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
    }

    /// `aud` as a list (a single string is a list of one).
    pub fn audiences(&self) -> Vec<String> {
        match self.0.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }
}

/// A parsed (not yet verified) compact JWS.
#[derive(Clone)]
pub struct Jws {
    pub header: JwsHeader,
    pub claims: Claims,
    signing_input: String,
    signature: Vec<u8>,
}

impl fmt::Debug for Jws {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jws").field("header", &self.header).finish_non_exhaustive()
    }
}

/// Parses `b64url(header).b64url(claims).b64url(signature)`.
pub fn parse(token: &str) -> Result<Jws, JwtError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::malformed("token is too long"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err(JwtError::malformed(format!("expected 3 dot-separated parts, found {}", parts.len())));
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::malformed(format!("{what} is not base64url")))
    };
    let header_bytes = decode(header, "header")?;
    let claims_bytes = decode(claims, "claims")?;
    let signature = decode(signature, "signature")?;
    let header: JwsHeader = serde_json::from_slice(&header_bytes)
        .map_err(|_| JwtError::malformed("header is not a JSON object with alg"))?;
    let Ok(Value::Object(claims_map)) = serde_json::from_slice::<Value>(&claims_bytes) else {
        return Err(JwtError::malformed("claims are not a JSON object"));
    };
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    Ok(Jws { header, claims: Claims(claims_map), signing_input, signature })
}

/// Refuses every algorithm but RS256.
pub fn check_alg(header: &JwsHeader) -> Result<(), JwtError> {
    if header.alg == RS256 { Ok(()) } else { Err(JwtError::UnsupportedAlg { alg: header.alg.clone() }) }
}

/// One published RSA signing key.
#[derive(Clone)]
pub struct Jwk {
    pub kid: String,
    pub x5t: Option<String>,
    /// The channels a Bot Framework key is endorsed for (`msteams`, ...), when listed.
    pub endorsements: Option<Vec<String>>,
    /// The issuer the key is published for, when listed.
    pub issuer: Option<String>,
    key: PKey<Public>,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk").field("kid", &self.kid).field("endorsements", &self.endorsements).finish_non_exhaustive()
    }
}

impl Jwk {
    /// Reads one JWKS entry. `Ok(None)` for keys this module does not use (not RSA, not for
    /// signatures, another algorithm, shorter than 2048 bits).
    pub fn from_json(v: &Value) -> Result<Option<Jwk>, String> {
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        if s("kty") != Some("RSA") || s("use").is_some_and(|u| u != "sig") || s("alg").is_some_and(|a| a != RS256) {
            return Ok(None);
        }
        let kid = s("kid").or(s("x5t")).ok_or("key without kid")?.to_owned();
        let n = URL_SAFE_NO_PAD.decode(s("n").ok_or("key without n")?).map_err(|_| "n is not base64url")?;
        let e = URL_SAFE_NO_PAD.decode(s("e").ok_or("key without e")?).map_err(|_| "e is not base64url")?;
        let n = BigNum::from_slice(&n).map_err(|e| e.to_string())?;
        let e = BigNum::from_slice(&e).map_err(|e| e.to_string())?;
        if n.num_bits() < 2048 {
            return Ok(None);
        }
        let rsa = Rsa::from_public_components(n, e).map_err(|e| e.to_string())?;
        let key = PKey::from_rsa(rsa).map_err(|e| e.to_string())?;
        let endorsements = v
            .get("endorsements")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect());
        Ok(Some(Jwk {
            kid,
            x5t: s("x5t").map(str::to_owned),
            endorsements,
            issuer: s("issuer").map(str::to_owned),
            key,
        }))
    }

    /// Whether the RS256 signature of `jws` verifies with this key.
    pub fn verifies(&self, jws: &Jws) -> bool {
        let Ok(mut verifier) = Verifier::new(MessageDigest::sha256(), &self.key) else {
            return false;
        };
        verifier.update(jws.signing_input.as_bytes()).is_ok() && verifier.verify(&jws.signature).unwrap_or(false)
    }
}

/// The usable keys of a JWKS document `{"keys":[…]}` (entries that fail to parse are skipped).
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Jwk>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = doc.get("keys").and_then(Value::as_array).ok_or("JWKS without keys")?;
    Ok(keys.iter().filter_map(|k| Jwk::from_json(k).ok().flatten()).collect())
}

/// What a token must say about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// The exact `iss`.
    pub issuer: String,
    /// `aud` must be (or contain) one of these.
    pub audiences: Vec<String>,
    /// Allowance on `exp` and `nbf`.
    pub clock_skew: Duration,
}

impl Validation {
    /// One issuer and one audience, the default skew.
    pub fn new(issuer: &str, audience: &str) -> Self {
        Self { issuer: issuer.to_owned(), audiences: vec![audience.to_owned()], clock_skew: DEFAULT_CLOCK_SKEW }
    }

    /// Another clock skew.
    pub fn with_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }
}

/// Checks `exp`, `nbf`, `iss` and `aud` at `now`.
pub fn check_claims(claims: &Claims, validation: &Validation, now: Timestamp) -> Result<(), JwtError> {
    let skew = i64::try_from(validation.clock_skew.as_secs()).unwrap_or(i64::MAX);
    let now = now.as_second();
    let exp = claims.get_i64("exp").ok_or_else(|| JwtError::malformed("no exp claim"))?;
    if now >= exp.saturating_add(skew) {
        return Err(JwtError::Expired { exp });
    }
    if let Some(nbf) = claims.get_i64("nbf")
        && now.saturating_add(skew) < nbf
    {
        return Err(JwtError::NotYetValid { nbf });
    }
    let iss = claims.get_str("iss").unwrap_or("");
    if iss != validation.issuer {
        return Err(JwtError::WrongIssuer { expected: validation.issuer.clone(), found: iss.to_owned() });
    }
    let audiences = claims.audiences();
    if !audiences.iter().any(|a| validation.audiences.contains(a)) {
        return Err(JwtError::WrongAudience {
            expected: validation.audiences.clone(),
            found: format!("{audiences:?}"),
        });
    }
    Ok(())
}

/// A token that passed every check, and the key that signed it.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: JwsHeader,
    pub claims: Claims,
    pub key: Jwk,
}

/// Verifies `token` against a fixed set of keys (no fetching).
pub fn verify_with_keys(
    token: &str,
    keys: &[Jwk],
    validation: &Validation,
    now: Timestamp,
) -> Result<Verified, JwtError> {
    let jws = parse(token)?;
    check_alg(&jws.header)?;
    let kid = jws.header.key_id().ok_or_else(|| JwtError::malformed("header names no key (kid)"))?;
    let key = keys.iter().find(|k| k.kid == kid).ok_or_else(|| JwtError::UnknownKey { kid: kid.to_owned() })?;
    finish(jws, key.clone(), validation, now)
}

fn finish(jws: Jws, key: Jwk, validation: &Validation, now: Timestamp) -> Result<Verified, JwtError> {
    if !key.verifies(&jws) {
        return Err(JwtError::BadSignature);
    }
    check_claims(&jws.claims, validation, now)?;
    Ok(Verified { header: jws.header, claims: jws.claims, key })
}

/// How a [`JwksCache`] keeps keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksConfig {
    /// How long fetched keys are used before they are fetched again.
    pub ttl: Duration,
    /// The shortest time between two fetches caused by an unknown key id.
    pub min_refetch_interval: Duration,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self { ttl: DEFAULT_JWKS_TTL, min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL }
    }
}

struct KeySnapshot {
    keys: Vec<Jwk>,
    /// The `issuer` of the OpenID configuration.
    issuer: Option<String>,
    fetched_at: Timestamp,
}

#[derive(Default)]
struct CacheState {
    keys: Option<KeySnapshot>,
    /// When an unknown key id last caused a fetch.
    last_refetch: Option<Timestamp>,
    /// Completed fetch attempts.
    attempts: u64,
    last_error: Option<JwtError>,
}

/// Why the keys are fetched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// None are held, or they are older than the TTL.
    Stale,
    /// The held keys do not include the key a token names.
    UnknownKey,
}

struct CacheInner {
    http: reqwest::Client,
    metadata_url: Url,
    config: JwksConfig,
    state: Mutex<CacheState>,
    flight: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

/// Signing keys from an OpenID configuration's `jwks_uri`, cached. Cloning shares the cache.
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<CacheInner>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("metadata_url", &self.inner.metadata_url.as_str())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn age(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(then).abs()).unwrap_or(Duration::MAX)
}

/// Whether an unknown key id may cause a fetch now.
fn may_refetch(state: &CacheState, now: Timestamp, interval: Duration) -> bool {
    state.last_refetch.is_none_or(|t| age(now, t) >= interval)
}

impl CacheState {
    fn fresh(&self, now: Timestamp, ttl: Duration) -> Option<&KeySnapshot> {
        self.keys.as_ref().filter(|s| age(now, s.fetched_at) < ttl)
    }
}

impl JwksCache {
    /// A cache for the keys of the OpenID configuration at `metadata_url`.
    pub fn new(http: reqwest::Client, metadata_url: Url, config: JwksConfig) -> Self {
        let inner = CacheInner {
            http,
            metadata_url,
            config,
            state: Mutex::new(CacheState::default()),
            flight: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The OpenID configuration document's URL.
    pub fn metadata_url(&self) -> &Url {
        &self.inner.metadata_url
    }

    /// How many times the keys were fetched (each fetch is two requests).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Forgets the keys, so the next lookup fetches them.
    pub fn invalidate(&self) {
        let mut state = lock(&self.inner.state);
        state.keys = None;
        state.last_refetch = None;
    }

    /// Verifies `token`: alg, key, signature, then claims.
    pub async fn verify(&self, token: &str, validation: &Validation, now: Timestamp) -> Result<Verified, JwtError> {
        let jws = parse(token)?;
        check_alg(&jws.header)?;
        let kid = jws.header.key_id().ok_or_else(|| JwtError::malformed("header names no key (kid)"))?.to_owned();
        let key = self.key(&kid, now).await?;
        finish(jws, key, validation, now)
    }

    /// The `issuer` of the OpenID configuration (fetching the keys if none are held).
    pub async fn issuer(&self, now: Timestamp) -> Result<Option<String>, JwtError> {
        {
            let state = lock(&self.inner.state);
            if let Some(snap) = state.fresh(now, self.inner.config.ttl) {
                return Ok(snap.issuer.clone());
            }
        }
        self.refresh(now, None, Reason::Stale).await?;
        Ok(lock(&self.inner.state).keys.as_ref().and_then(|s| s.issuer.clone()))
    }

    /// The published key `kid`, fetching or refetching the keys as the cache's rules allow.
    pub async fn key(&self, kid: &str, now: Timestamp) -> Result<Jwk, JwtError> {
        let reason = {
            let state = lock(&self.inner.state);
            match state.fresh(now, self.inner.config.ttl) {
                Some(snap) => {
                    if let Some(k) = snap.keys.iter().find(|k| k.kid == kid) {
                        return Ok(k.clone());
                    }
                    if !may_refetch(&state, now, self.inner.config.min_refetch_interval) {
                        return Err(JwtError::UnknownKey { kid: kid.to_owned() });
                    }
                    Reason::UnknownKey
                }
                None => Reason::Stale,
            }
        };
        self.refresh(now, Some(kid), reason).await?;
        let state = lock(&self.inner.state);
        state
            .keys
            .as_ref()
            .and_then(|s| s.keys.iter().find(|k| k.kid == kid))
            .cloned()
            .ok_or_else(|| JwtError::UnknownKey { kid: kid.to_owned() })
    }

    /// Fetches the keys once (single flight). A caller that waited while another fetch
    /// completed uses that fetch's outcome. A failed fetch keeps the keys held before.
    async fn refresh(&self, now: Timestamp, kid: Option<&str>, reason: Reason) -> Result<(), JwtError> {
        let seen = lock(&self.inner.state).attempts;
        let _flight = self.inner.flight.lock().await;
        {
            let mut state = lock(&self.inner.state);
            if state.attempts != seen {
                // Another caller fetched while this one waited: use its outcome.
                let has = |s: &KeySnapshot| kid.is_none_or(|kid| s.keys.iter().any(|k| k.kid == kid));
                if state.keys.as_ref().is_some_and(has) {
                    return Ok(());
                }
                if let Some(err) = &state.last_error {
                    return Err(err.clone());
                }
                return Ok(());
            }
            if reason == Reason::UnknownKey {
                state.last_refetch = Some(now);
            }
        }
        self.inner.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch(now).await;
        let mut state = lock(&self.inner.state);
        state.attempts += 1;
        match result {
            Ok(snapshot) => {
                state.keys = Some(snapshot);
                state.last_error = None;
                Ok(())
            }
            Err(err) => {
                state.last_error = Some(err.clone());
                let held =
                    state.keys.as_ref().is_some_and(|s| kid.is_none_or(|kid| s.keys.iter().any(|k| k.kid == kid)));
                if held {
                    tracing::warn!(error = %err, "signing keys could not be refreshed; using the keys held");
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn fetch(&self, now: Timestamp) -> Result<KeySnapshot, JwtError> {
        let span = tracing::info_span!(
            "jwt.fetch_keys",
            otel.kind = "client",
            url.path = %self.inner.metadata_url.path(),
            http.status_code = tracing::field::Empty,
            error.code = tracing::field::Empty,
        );
        let result = async {
            let metadata = self.get_json(self.inner.metadata_url.clone(), "OpenID configuration").await?;
            let jwks_uri = metadata
                .get("jwks_uri")
                .and_then(Value::as_str)
                .and_then(|u| Url::parse(u).ok())
                .filter(|u| u.scheme() == "https" || u.scheme() == "http")
                .ok_or_else(|| JwtError::unavailable("the OpenID configuration has no http(s) jwks_uri"))?;
            let issuer = metadata.get("issuer").and_then(Value::as_str).map(str::to_owned);
            let body = self.get(jwks_uri, "JWKS").await?;
            let keys = parse_jwks(&body).map_err(JwtError::unavailable)?;
            if keys.is_empty() {
                return Err(JwtError::unavailable("the JWKS holds no usable RS256 key"));
            }
            Ok(KeySnapshot { keys, issuer, fetched_at: now })
        }
        .instrument(span.clone())
        .await;
        if let Err(e) = &result {
            span.record("error.code", e.code());
        }
        result
    }

    async fn get_json(&self, url: Url, what: &str) -> Result<Value, JwtError> {
        let body = self.get(url, what).await?;
        serde_json::from_slice(&body).map_err(|_| JwtError::unavailable(format!("the {what} is not JSON")))
    }

    async fn get(&self, url: Url, what: &str) -> Result<Vec<u8>, JwtError> {
        let response =
            self.inner.http.get(url).header(reqwest::header::ACCEPT, "application/json").send().await.map_err(|e| {
                JwtError::unavailable(format!("fetching the {what}: {}", http::describe_transport(e).1))
            })?;
        let status = response.status();
        grantline_shared::metrics::upstream_response("jwks", status.as_u16());
        tracing::Span::current().record("http.status_code", status.as_u16());
        if !status.is_success() {
            return Err(JwtError::unavailable(format!("the {what} answered HTTP {}", status.as_u16())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| JwtError::unavailable(format!("reading the {what}: {}", http::describe_transport(e).1)))?;
        Ok(body.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use openssl::pkey::Private;
    use openssl::sign::Signer;
    use serde_json::json;

    use super::*;

    fn key() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    fn jwk(k: &PKey<Private>, kid: &str) -> Jwk {
        let rsa = k.rsa().unwrap();
        let v = json!({ "kty": "RSA", "use": "sig", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(rsa.n().to_vec()), "e": URL_SAFE_NO_PAD.encode(rsa.e().to_vec()) });
        Jwk::from_json(&v).unwrap().unwrap()
    }

    fn sign(k: &PKey<Private>, header: &Value, claims: &Value) -> String {
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut s = Signer::new(MessageDigest::sha256(), k).unwrap();
        s.update(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(s.sign_to_vec().unwrap()))
    }

    fn now() -> Timestamp {
        "2026-01-22T14:12:37Z".parse().unwrap()
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({ "iss": "https://issuer", "aud": "app", "nbf": now().as_second() - 10, "exp": now().as_second() + 300 });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[test]
    fn parse_refuses_what_is_not_a_compact_jws() {
        for bad in ["", "a.b", "a.b.c.d.e", "!!.e30.e30", "e30.!!.e30", "bnVsbA.e30.", "e30.e30.e30"] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.code(), "jwt.malformed", "{bad}: {err}");
        }
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k"}"#);
        let list = URL_SAFE_NO_PAD.encode("[1]");
        assert_eq!(parse(&format!("{header}.{list}.")).unwrap_err().code(), "jwt.malformed");
        let ok = parse(&format!("{header}.{}.", URL_SAFE_NO_PAD.encode("{}"))).unwrap();
        assert_eq!(ok.header.key_id(), Some("k"));
        assert_eq!(parse(&"a".repeat(MAX_TOKEN_LEN + 1)).unwrap_err().code(), "jwt.malformed");
    }

    #[test]
    fn verifies_rs256_and_each_claim() {
        let k = key();
        let keys = vec![jwk(&k, "k1")];
        let v = Validation::new("https://issuer", "app");
        let h = json!({ "alg": "RS256", "kid": "k1", "typ": "JWT" });
        let ok = verify_with_keys(&sign(&k, &h, &claims(json!({}))), &keys, &v, now()).unwrap();
        assert_eq!(ok.claims.get_str("iss"), Some("https://issuer"));
        assert_eq!(ok.key.kid, "k1");

        let check =
            |c: Value| verify_with_keys(&sign(&k, &h, &claims(c)), &keys, &v, now()).map(|_| ()).map_err(|e| e.code());
        assert_eq!(check(json!({ "aud": ["other", "app"] })), Ok(()));
        assert_eq!(check(json!({ "aud": ["other"] })), Err("jwt.wrong_audience"));
        assert_eq!(check(json!({ "aud": 7 })), Err("jwt.wrong_audience"));
        assert_eq!(check(json!({ "iss": "https://issuer/" })), Err("jwt.wrong_issuer"));
        // Skew: five minutes either side.
        let t = now().as_second();
        assert_eq!(check(json!({ "exp": t - 299 })), Ok(()));
        assert_eq!(check(json!({ "exp": t - 300 })), Err("jwt.expired"));
        assert_eq!(check(json!({ "nbf": t + 300 })), Ok(()));
        assert_eq!(check(json!({ "nbf": t + 301 })), Err("jwt.not_yet_valid"));
        assert_eq!(check(json!({ "exp": (t + 60) as f64 + 0.5 })), Ok(()));
        assert_eq!(check(json!({ "exp": null })), Err("jwt.malformed"));
        let tight = v.clone().with_skew(Duration::ZERO);
        let token = sign(&k, &h, &claims(json!({ "exp": t })));
        assert_eq!(verify_with_keys(&token, &keys, &tight, now()).unwrap_err().code(), "jwt.expired");

        // alg none, HS256 and unknown kids; a signature by another key.
        for alg in ["none", "HS256", "RS512", "rs256"] {
            let token = sign(&k, &json!({ "alg": alg, "kid": "k1" }), &claims(json!({})));
            assert_eq!(verify_with_keys(&token, &keys, &v, now()).unwrap_err().code(), "jwt.unsupported_alg", "{alg}");
        }
        let token = sign(&k, &json!({ "alg": "RS256", "kid": "k2" }), &claims(json!({})));
        assert_eq!(verify_with_keys(&token, &keys, &v, now()).unwrap_err().code(), "jwt.unknown_key");
        let token = sign(&key(), &h, &claims(json!({})));
        assert_eq!(verify_with_keys(&token, &keys, &v, now()).unwrap_err(), JwtError::BadSignature);
        // A valid signature over different claims does not carry over.
        let good = sign(&k, &h, &claims(json!({})));
        let parts: Vec<&str> = good.split('.').collect();
        let tampered =
            format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(claims(json!({ "aud": "x" })).to_string()), parts[2]);
        assert_eq!(verify_with_keys(&tampered, &keys, &v, now()).unwrap_err(), JwtError::BadSignature);
        let token = sign(&k, &json!({ "alg": "RS256" }), &claims(json!({})));
        assert_eq!(verify_with_keys(&token, &keys, &v, now()).unwrap_err().code(), "jwt.malformed");
    }

    #[test]
    fn jwks_parsing_skips_keys_it_cannot_use() {
        let k = key();
        let good = jwk(&k, "k1");
        let rsa = k.rsa().unwrap();
        let n = URL_SAFE_NO_PAD.encode(rsa.n().to_vec());
        let small = Rsa::generate(1024).unwrap();
        let doc = json!({ "keys": [
            { "kty": "RSA", "use": "sig", "kid": "k1", "n": n, "e": "AQAB", "endorsements": ["msteams"] },
            { "kty": "EC", "kid": "ec", "crv": "P-256", "x": "a", "y": "b" },
            { "kty": "RSA", "use": "enc", "kid": "enc", "n": n, "e": "AQAB" },
            { "kty": "RSA", "kid": "small", "n": URL_SAFE_NO_PAD.encode(small.n().to_vec()), "e": "AQAB" },
            { "kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB" }
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, good.kid);
        assert_eq!(keys[0].endorsements.as_deref(), Some(&["msteams".to_owned()][..]));
        assert!(parse_jwks(b"[]").is_err());
        assert!(format!("{:?}", keys[0]).contains("k1"));
    }

    #[test]
    fn classes_and_codes() {
        assert_eq!(JwtError::unavailable("x").class(), ErrorClass::TRANSIENT);
        assert_eq!(JwtError::BadSignature.class(), ErrorClass::Permanent);
        let step = StepError::from(JwtError::Expired { exp: 5 });
        assert_eq!(step.code, "jwt.expired");
    }
}
