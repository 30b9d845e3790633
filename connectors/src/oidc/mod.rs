//! Approver sign-in with OpenID Connect (authorization-code flow with PKCE) against the
//! Microsoft identity platform, for the signed-link approval page.
//!
//! 1. [`OidcClient::authorize_url`] sends the browser to
//!    `{authority}/{tenant}/oauth2/v2.0/authorize` with `response_type=code`,
//!    `scope=openid profile email`, the caller's `state` and `nonce`, an optional `login_hint`
//!    and the PKCE challenge (S256). Make the values with [`random_value`] and
//!    [`PkcePair::generate`] and keep them with the browser session.
//! 2. The identity platform redirects back to `redirect_uri` with `code` and `state` (or
//!    `error` and `error_description`): [`parse_callback`] reads that query.
//! 3. [`OidcClient::exchange_code`] redeems the code at the token endpoint (client secret and
//!    PKCE verifier) and verifies the `id_token`: RS256 with a key from the tenant's discovery
//!    JWKS (cached, see [`crate::jwt`]), `iss` = `{authority}/{tenant-id}/v2.0`, `aud` = our
//!    client id, `exp`/`nbf` with 5 minutes of skew, `nonce` equal to the one sent, `tid` the
//!    configured tenant. When the tenant is configured by domain, its id comes from the
//!    discovery document's `issuer`.
//!
//! The code, the verifier, the client secret and the tokens never reach a log or an error.
//! Only single-tenant sign-in is supported (`common`/`organizations` are refused).

mod error;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde::Deserialize;
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;
use tracing::Instrument;
use url::Url;
use uuid::Uuid;

pub use error::OidcError;

use crate::http::{self, HttpConfig};
use crate::jwt::{DEFAULT_CLOCK_SKEW, JwksCache, JwksConfig, JwtError, Validation};
use crate::token::TokenError;
use crate::{ConfigError, Secret};

/// The scopes of the sign-in.
pub const SIGNIN_SCOPES: &str = "openid profile email";

/// Configuration of the approver sign-in. In configuration files this is the `oidc` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The identity platform authority host: `https://login.microsoftonline.com`.
    pub authority: String,
    /// The tenant id (GUID) or domain.
    pub tenant: String,
    /// The sign-in app's client id.
    pub client_id: String,
    /// The sign-in app's client secret.
    pub client_secret: Secret,
    /// Where the identity platform sends the browser back (registered for the app).
    pub redirect_uri: String,
    pub http: HttpConfig,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            authority: "https://login.microsoftonline.com".to_owned(),
            tenant: String::new(),
            client_id: String::new(),
            client_secret: Secret::default(),
            redirect_uri: String::new(),
            http: HttpConfig::default(),
        }
    }
}

impl OidcConfig {
    /// Checks every key, naming the first bad one (`oidc.tenant`, ...).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.endpoints().map(|_| ())
    }

    fn endpoints(&self) -> Result<Endpoints, ConfigError> {
        let authority = http::parse_base_url("oidc.authority", &self.authority)?;
        let tenant = self.tenant.trim();
        if tenant.is_empty() {
            return Err(ConfigError::new("oidc.tenant", "must be set"));
        }
        if ["common", "organizations", "consumers"].iter().any(|t| t.eq_ignore_ascii_case(tenant)) {
            return Err(ConfigError::new(
                "oidc.tenant",
                "must name one tenant (multi-tenant sign-in is not supported)",
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::new("oidc.client_id", "must be set"));
        }
        if self.client_secret.is_empty() {
            return Err(ConfigError::new("oidc.client_secret", "must be set"));
        }
        let redirect = Url::parse(self.redirect_uri.trim())
            .map_err(|e| ConfigError::new("oidc.redirect_uri", format!("not a URL: {e}")))?;
        if (redirect.scheme() != "https" && redirect.scheme() != "http") || redirect.host_str().is_none() {
            return Err(ConfigError::new("oidc.redirect_uri", "must be an absolute http(s) URL"));
        }
        if redirect.fragment().is_some() {
            return Err(ConfigError::new("oidc.redirect_uri", "must not have a fragment"));
        }
        let tenant_id = Uuid::parse_str(tenant).ok().map(|u| u.to_string());
        Ok(Endpoints {
            authorize: http::join_segments(&authority, &[tenant, "oauth2", "v2.0", "authorize"]),
            token: http::join_segments(&authority, &[tenant, "oauth2", "v2.0", "token"]),
            discovery: http::join_segments(&authority, &[tenant, "v2.0", ".well-known", "openid-configuration"]),
            authority: authority.as_str().trim_end_matches('/').to_owned(),
            tenant_id,
        })
    }
}

struct Endpoints {
    authorize: Url,
    token: Url,
    discovery: Url,
    /// The authority without a trailing slash, as issuers spell it.
    authority: String,
    /// The tenant id when the tenant is configured by id.
    tenant_id: Option<String>,
}

/// Who signed in, from a verified id_token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInUser {
    /// The user's Entra object id: authorize the approver by this.
    pub oid: String,
    /// The tenant id.
    pub tid: String,
    /// `preferred_username` (usually the UPN; for display, not for authorization).
    pub upn: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// A PKCE verifier and its S256 challenge. `Debug` hides the verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct PkcePair {
    /// Kept with the browser session; sent with the code.
    pub verifier: String,
    /// Sent in the authorize URL.
    pub challenge: String,
}

impl fmt::Debug for PkcePair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PkcePair").field("challenge", &self.challenge).finish_non_exhaustive()
    }
}

impl PkcePair {
    /// A fresh random verifier (64 base64url characters, 366 random bits) and its challenge.
    pub fn generate() -> Self {
        let bytes: Vec<u8> =
            [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()].iter().flat_map(|u| *u.as_bytes()).collect();
        Self::from_verifier(&URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The pair for a known verifier.
    pub fn from_verifier(verifier: &str) -> Self {
        Self { verifier: verifier.to_owned(), challenge: pkce_challenge(verifier) }
    }
}

/// The S256 challenge of a verifier: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// An unguessable value for `state` and `nonce` (43 base64url characters).
pub fn random_value() -> String {
    let bytes: Vec<u8> = [Uuid::new_v4(), Uuid::new_v4()].iter().flat_map(|u| *u.as_bytes()).collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the identity platform sent the browser back with.
#[derive(Clone, PartialEq, Eq)]
pub struct Callback {
    /// The authorization code (a credential).
    pub code: Secret,
    /// The state to match against the session's.
    pub state: String,
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callback").field("state", &self.state).finish_non_exhaustive()
    }
}

/// Reads the query of the redirect back: `code` and `state`, or `error` and
/// `error_description` ([`OidcError::Denied`], with the first line of the description).
pub fn parse_callback(query: &str) -> Result<Callback, OidcError> {
    let mut code = None;
    let mut state = None;
    let mut error = None;
    let mut description = None;
    for (k, v) in url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes()) {
        match k.as_ref() {
            "code" => code = Some(v.into_owned()),
            "state" => state = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Some(error) = error.filter(|e| !e.is_empty()) {
        let description = description.unwrap_or_default();
        let first = http::truncate(description.lines().next().unwrap_or("").trim(), 500);
        return Err(OidcError::Denied { error, description: first });
    }
    let code = code.filter(|c| !c.is_empty()).ok_or_else(|| OidcError::InvalidCallback {
        message: "the redirect carries neither a code nor an error".to_owned(),
    })?;
    let state = state
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OidcError::InvalidCallback { message: "the redirect carries no state".to_owned() })?;
    Ok(Callback { code: Secret::new(code), state })
}

/// The sign-in client. Cloning is cheap and shares the key cache.
#[derive(Clone)]
pub struct OidcClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoints: Endpoints,
    client_id: String,
    client_secret: Secret,
    redirect_uri: String,
    jwks: JwksCache,
    skew: Duration,
}

impl fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcClient")
            .field("authorize", &self.inner.endpoints.authorize.as_str())
            .field("client_id", &self.inner.client_id)
            .field("redirect_uri", &self.inner.redirect_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    id_token: Option<String>,
}

impl OidcClient {
    /// A client with its own HTTP client.
    pub fn new(config: &OidcConfig) -> Result<Self, ConfigError> {
        let http = http::build_client(&config.http)?;
        Self::from_parts(config, http)
    }

    /// A client that sends through `http`, with 5 minutes of clock skew and the default key
    /// cache.
    pub fn from_parts(config: &OidcConfig, http: reqwest::Client) -> Result<Self, ConfigError> {
        Self::with_options(config, http, DEFAULT_CLOCK_SKEW, JwksConfig::default())
    }

    /// As [`OidcClient::from_parts`], with another clock skew and key cache.
    pub fn with_options(
        config: &OidcConfig,
        http: reqwest::Client,
        clock_skew: Duration,
        jwks: JwksConfig,
    ) -> Result<Self, ConfigError> {
        let endpoints = config.endpoints()?;
        let jwks = JwksCache::new(http.clone(), endpoints.discovery.clone(), jwks);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                endpoints,
                client_id: config.client_id.trim().to_owned(),
                client_secret: config.client_secret.clone(),
                redirect_uri: config.redirect_uri.trim().to_owned(),
                jwks,
                skew: clock_skew,
            }),
        })
    }

    /// The key cache (for its fetch count, or to share it).
    pub fn jwks(&self) -> &JwksCache {
        &self.inner.jwks
    }

    /// Where to send the browser: the authorize endpoint with `client_id`,
    /// `response_type=code`, `redirect_uri`, `response_mode=query`, `scope`, `state`, `nonce`,
    /// `code_challenge` (S256) and, when given, `login_hint` (the expected approver's UPN).
    pub fn authorize_url(&self, state: &str, nonce: &str, login_hint: Option<&str>, pkce_challenge: &str) -> Url {
        let mut url = self.inner.endpoints.authorize.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.inner.client_id)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", &self.inner.redirect_uri)
                .append_pair("response_mode", "query")
                .append_pair("scope", SIGNIN_SCOPES)
                .append_pair("state", state)
                .append_pair("nonce", nonce)
                .append_pair("code_challenge", pkce_challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(hint) = login_hint.filter(|h| !h.trim().is_empty()) {
                q.append_pair("login_hint", hint.trim());
            }
        }
        url
    }

    /// Redeems the code and verifies the id_token at `now` (see the module documentation).
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        expected_nonce: &str,
        now: Timestamp,
    ) -> Result<SignedInUser, OidcError> {
        let span = tracing::info_span!(
            "oidc.exchange_code",
            otel.kind = "client",
            http.method = "POST",
            url.path = %self.inner.endpoints.token.path(),
            http.status_code = tracing::field::Empty,
            error.code = tracing::field::Empty,
        );
        let result = self.exchange(code, pkce_verifier, expected_nonce, now).instrument(span.clone()).await;
        if let Err(e) = &result {
            let code = e.code();
            span.record("error.code", code.as_str());
            span.in_scope(|| tracing::debug!(error = %e, "sign-in failed"));
        }
        result
    }

    async fn exchange(
        &self,
        code: &str,
        pkce_verifier: &str,
        expected_nonce: &str,
        now: Timestamp,
    ) -> Result<SignedInUser, OidcError> {
        if code.trim().is_empty() {
            return Err(OidcError::InvalidCallback { message: "the code is empty".to_owned() });
        }
        let inner = &self.inner;
        let response = inner
            .http
            .post(inner.endpoints.token.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[
                ("client_id", inner.client_id.as_str()),
                ("scope", SIGNIN_SCOPES),
                ("code", code.trim()),
                ("redirect_uri", inner.redirect_uri.as_str()),
                ("grant_type", "authorization_code"),
                ("client_secret", inner.client_secret.expose()),
                ("code_verifier", pkce_verifier),
            ])
            .send()
            .await
            .map_err(OidcError::transport)?;
        let status = response.status();
        grantline_shared::metrics::upstream_response("entra_signin", status.as_u16());
        tracing::Span::current().record("http.status_code", status.as_u16());
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(OidcError::transport)?;
        if !status.is_success() {
            return Err(OidcError::Token(TokenError::from_response(status, &headers, &body)));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| OidcError::Malformed { message: "the token response is not JSON".to_owned() })?;
        let id_token = parsed
            .id_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OidcError::Malformed { message: "the token response has no id_token".to_owned() })?;

        let (issuer, tenant_id) = self.issuer(now).await?;
        let validation = Validation::new(&issuer, &inner.client_id).with_skew(inner.skew);
        let verified = inner.jwks.verify(&id_token, &validation, now).await.map_err(OidcError::IdToken)?;
        let claims = verified.claims;
        let nonce = claims.get_str("nonce").unwrap_or("");
        if expected_nonce.is_empty() || !bool::from(nonce.as_bytes().ct_eq(expected_nonce.as_bytes())) {
            return Err(OidcError::NonceMismatch);
        }
        let tid = claims.get_str("tid").ok_or(OidcError::MissingClaim { claim: "tid" })?;
        if !tid.eq_ignore_ascii_case(&tenant_id) {
            return Err(OidcError::WrongTenant { expected: tenant_id, found: tid.to_owned() });
        }
        let oid = claims.get_str("oid").filter(|o| !o.is_empty()).ok_or(OidcError::MissingClaim { claim: "oid" })?;
        let text = |name: &str| claims.get_str(name).filter(|v| !v.is_empty()).map(str::to_owned);
        Ok(SignedInUser {
            oid: oid.to_owned(),
            tid: tid.to_owned(),
            upn: text("preferred_username"),
            email: text("email"),
            name: text("name"),
        })
    }

    /// The expected issuer and tenant id: from the configuration when the tenant is an id,
    /// else from the discovery document's `issuer` (`{authority}/{tenant-id}/v2.0`).
    async fn issuer(&self, now: Timestamp) -> Result<(String, String), OidcError> {
        let endpoints = &self.inner.endpoints;
        if let Some(id) = &endpoints.tenant_id {
            return Ok((format!("{}/{id}/v2.0", endpoints.authority), id.clone()));
        }
        let discovered = self.inner.jwks.issuer(now).await.map_err(OidcError::IdToken)?.unwrap_or_default();
        let tenant = discovered
            .strip_prefix(&format!("{}/", endpoints.authority))
            .and_then(|rest| rest.strip_suffix("/v2.0"))
            .and_then(|id| Uuid::parse_str(id).ok())
            .ok_or_else(|| {
                OidcError::IdToken(JwtError::KeysUnavailable {
                    reason: "the discovery document's issuer does not name a tenant of this authority".to_owned(),
                })
            })?;
        Ok((discovered.clone(), tenant.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OidcConfig {
        OidcConfig {
            authority: "https://login.example.com/".into(),
            tenant: "5a0c1f00-0000-4000-8000-000000000001".into(),
            client_id: "app".into(),
            client_secret: "oidc-secret-xyz".into(),
            redirect_uri: "https://approvals.contoso.com/signin".into(),
            ..OidcConfig::default()
        }
    }

    #[test]
    fn pkce_matches_rfc_7636() {
        let pair = PkcePair::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(pair.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let fresh = PkcePair::generate();
        assert_eq!(fresh.verifier.len(), 64);
        assert_ne!(fresh.verifier, PkcePair::generate().verifier);
        assert!(!format!("{fresh:?}").contains(&fresh.verifier));
        assert_eq!(random_value().len(), 43);
    }

    #[test]
    fn callbacks() {
        let cb = parse_callback("?code=abc&state=s1&session_state=x").unwrap();
        assert_eq!((cb.code.expose(), cb.state.as_str()), ("abc", "s1"));
        assert!(!format!("{cb:?}").contains("abc"));
        let err = parse_callback(
            "error=access_denied&error_description=AADSTS65004%3A+User+declined.%0D%0ATrace+ID%3A+x&state=s1",
        )
        .unwrap_err();
        assert_eq!(err.code(), "oidc.access_denied");
        assert_eq!(
            err,
            OidcError::Denied { error: "access_denied".into(), description: "AADSTS65004: User declined.".into() }
        );
        assert_eq!(parse_callback("state=s").unwrap_err().code(), "oidc.invalid_callback");
        assert_eq!(parse_callback("code=c").unwrap_err().code(), "oidc.invalid_callback");
    }

    #[test]
    fn config_validation_names_the_key() {
        assert!(config().validate().is_ok());
        let key = |c: OidcConfig| c.validate().unwrap_err().key;
        assert_eq!(key(OidcConfig { tenant: "common".into(), ..config() }), "oidc.tenant");
        assert_eq!(key(OidcConfig { tenant: " ".into(), ..config() }), "oidc.tenant");
        assert_eq!(key(OidcConfig { client_id: String::new(), ..config() }), "oidc.client_id");
        assert_eq!(key(OidcConfig { client_secret: Secret::default(), ..config() }), "oidc.client_secret");
        assert_eq!(key(OidcConfig { redirect_uri: "/signin".into(), ..config() }), "oidc.redirect_uri");
        assert_eq!(key(OidcConfig { authority: "ftp://x".into(), ..config() }), "oidc.authority");
        assert!(!format!("{:?}", config()).contains("oidc-secret-xyz"));
        let e = config().endpoints().unwrap();
        assert_eq!(e.authority, "https://login.example.com");
        assert_eq!(e.discovery.path(), "/5a0c1f00-0000-4000-8000-000000000001/v2.0/.well-known/openid-configuration");
    }
}
