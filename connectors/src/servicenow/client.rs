//! The ServiceNow client.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tracing::{Instrument, Span};
use url::Url;

use super::error::{ServiceNowError, api_error};
use super::model::{
    JOURNAL_FIELDS, JournalEntry, RITM_FIELDS, RawRecord, Ritm, RitmPatch, ServiceNowUser, USER_FIELDS, UpdateOptions,
    VARIABLE_NAME_FIELD, VARIABLE_VALUE_FIELD,
};
use super::{ServiceNowAuth, ServiceNowConfig};
use crate::http;
use crate::token::{self, AccessToken, Clock, Fetched, SystemClock, TokenCache, TokenError, TokenSource};
use crate::{ConfigError, Secret};

/// A client for one ServiceNow instance's Table API. Cloning is cheap; clones share the
/// connection pool and the OAuth token cache.
#[derive(Clone)]
pub struct ServiceNowClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
}

enum Auth {
    Basic { username: String, password: Secret },
    OAuth { username: String, tokens: TokenCache<PasswordGrant> },
}

impl fmt::Debug for ServiceNowClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, username) = match &self.inner.auth {
            Auth::Basic { username, .. } => ("basic", username),
            Auth::OAuth { username, .. } => ("oauth", username),
        };
        f.debug_struct("ServiceNowClient")
            .field("instance_url", &self.inner.base.as_str())
            .field("auth", &kind)
            .field("username", username)
            .finish_non_exhaustive()
    }
}

/// The OAuth password grant: `POST {instance}/oauth_token.do`.
struct PasswordGrant {
    http: reqwest::Client,
    url: Url,
    client_id: String,
    client_secret: Secret,
    username: String,
    password: Secret,
}

impl TokenSource for PasswordGrant {
    fn fetch(&self) -> impl Future<Output = Result<Fetched, TokenError>> + Send {
        let span = tracing::info_span!(
            "servicenow.token",
            otel.kind = "client",
            http.method = "POST",
            url.path = %self.url.path(),
            http.status_code = tracing::field::Empty,
        );
        let request = self.http.post(self.url.clone()).header(ACCEPT, "application/json").form(&[
            ("grant_type", "password"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("username", self.username.as_str()),
            ("password", self.password.expose()),
        ]);
        token::request_token(request).instrument(span)
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Deserialize)]
struct One {
    result: RawRecord,
}

#[derive(Deserialize)]
struct Many {
    #[serde(default)]
    result: Vec<RawRecord>,
}

macro_rules! sn_span {
    ($name:literal, $method:expr, $url:expr) => {
        tracing::info_span!(
            $name,
            otel.kind = "client",
            http.method = %$method,
            url.path = %$url.path(),
            http.status_code = tracing::field::Empty,
            error.code = tracing::field::Empty,
        )
    };
}

// Approval records: a child module, so it shares this client's request plumbing.
#[path = "approvals.rs"]
mod approvals;

impl ServiceNowClient {
    /// A client built from configuration.
    pub fn new(config: &ServiceNowConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// As [`ServiceNowClient::new`], with OAuth token expiry measured on `clock`.
    pub fn with_clock(config: &ServiceNowConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let base = http::parse_base_url("servicenow.instance_url", &config.instance_url)?;
        let http = http::build_client(&config.http)?;
        let auth = match &config.auth {
            ServiceNowAuth::Basic { username, password } => {
                if username.trim().is_empty() {
                    return Err(ConfigError::new("servicenow.auth.username", "must be set"));
                }
                Auth::Basic { username: username.trim().to_owned(), password: password.clone() }
            }
            ServiceNowAuth::OAuth { client_id, client_secret, username, password, refresh_margin_secs } => {
                if client_id.trim().is_empty() {
                    return Err(ConfigError::new("servicenow.auth.client_id", "must be set"));
                }
                if client_secret.is_empty() {
                    return Err(ConfigError::new("servicenow.auth.client_secret", "must be set"));
                }
                if username.trim().is_empty() {
                    return Err(ConfigError::new("servicenow.auth.username", "must be set"));
                }
                let grant = PasswordGrant {
                    http: http.clone(),
                    url: http::join_segments(&base, &["oauth_token.do"]),
                    client_id: client_id.trim().to_owned(),
                    client_secret: client_secret.clone(),
                    username: username.trim().to_owned(),
                    password: password.clone(),
                };
                let margin = Duration::from_secs(*refresh_margin_secs);
                Auth::OAuth { username: username.trim().to_owned(), tokens: TokenCache::new(grant, margin, clock) }
            }
        };
        Ok(Self { inner: Arc::new(Inner { http, base, auth }) })
    }

    /// How many OAuth token requests this client has sent (0 with Basic auth).
    pub fn token_fetch_count(&self) -> u64 {
        match &self.inner.auth {
            Auth::Basic { .. } => 0,
            Auth::OAuth { tokens, .. } => tokens.fetch_count(),
        }
    }

    fn table_url(&self, table: &str, sys_id: Option<&str>) -> Url {
        match sys_id {
            Some(id) => http::join_segments(&self.inner.base, &["api", "now", "table", table, id]),
            None => http::join_segments(&self.inner.base, &["api", "now", "table", table]),
        }
    }

    /// `GET /api/now/table/sc_req_item/{sys_id}?sysparm_display_value=all`: one read that
    /// returns both stored values and display values. A 404 is `servicenow.not_found`.
    pub async fn get_ritm(&self, sys_id: &str) -> Result<Ritm, ServiceNowError> {
        check_id("sys_id", sys_id)?;
        let mut url = self.table_url("sc_req_item", Some(sys_id));
        url.query_pairs_mut().append_pair("sysparm_display_value", "all").append_pair("sysparm_fields", RITM_FIELDS);
        let span = sn_span!("servicenow.get_ritm", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None, false).await?;
            let one: One = decode_success(reply)?;
            Ok(Ritm::from_raw(&one.result))
        })
        .await
    }

    /// `GET /api/now/table/sc_req_item?sysparm_query=number=<number>&sysparm_limit=1`. No match is
    /// `servicenow.not_found`.
    pub async fn get_ritm_by_number(&self, number: &str) -> Result<Ritm, ServiceNowError> {
        check_id("number", number)?;
        let mut url = self.table_url("sc_req_item", None);
        url.query_pairs_mut()
            .append_pair("sysparm_query", &format!("number={number}"))
            .append_pair("sysparm_limit", "1")
            .append_pair("sysparm_display_value", "all")
            .append_pair("sysparm_fields", RITM_FIELDS);
        let span = sn_span!("servicenow.get_ritm_by_number", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None, false).await?;
            let many: Many = decode_success(reply)?;
            many.result
                .first()
                .map(Ritm::from_raw)
                .ok_or_else(|| ServiceNowError::NotFound { what: format!("sc_req_item number={number}") })
        })
        .await
    }

    /// The catalog variables of a requested item, name to value, from
    /// `sc_item_option_mtom?sysparm_query=request_item=<sys_id>` with the dot-walked fields
    /// `sc_item_option.item_option_new.name` and `sc_item_option.value`.
    pub async fn get_variables(&self, ritm_sys_id: &str) -> Result<BTreeMap<String, String>, ServiceNowError> {
        check_id("sys_id", ritm_sys_id)?;
        let mut url = self.table_url("sc_item_option_mtom", None);
        url.query_pairs_mut()
            .append_pair("sysparm_query", &format!("request_item={ritm_sys_id}"))
            .append_pair("sysparm_fields", &format!("{VARIABLE_NAME_FIELD},{VARIABLE_VALUE_FIELD}"));
        let span = sn_span!("servicenow.get_variables", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None, false).await?;
            let many: Many = decode_success(reply)?;
            Ok(many
                .result
                .iter()
                .map(|r| (r.value(VARIABLE_NAME_FIELD), r.value(VARIABLE_VALUE_FIELD)))
                .filter(|(name, _)| !name.is_empty())
                .collect())
        })
        .await
    }

    /// `GET /api/now/table/sys_user/{sys_id}` (user_name, email, name).
    pub async fn get_user(&self, sys_id: &str) -> Result<ServiceNowUser, ServiceNowError> {
        check_id("sys_id", sys_id)?;
        let mut url = self.table_url("sys_user", Some(sys_id));
        url.query_pairs_mut().append_pair("sysparm_fields", USER_FIELDS);
        let span = sn_span!("servicenow.get_user", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None, false).await?;
            let one: One = decode_success(reply)?;
            Ok(ServiceNowUser::from_raw(&one.result))
        })
        .await
    }

    /// `PATCH /api/now/table/sc_req_item/{sys_id}` with the fields set in `patch`. Returns the
    /// updated record, or `None` with [`UpdateOptions::no_response_body`].
    ///
    /// Work notes and comments *append* a journal entry on every call: the same patch sent
    /// twice writes the note twice. Making the write idempotent is the caller's concern.
    pub async fn update_ritm(
        &self,
        sys_id: &str,
        patch: &RitmPatch,
        options: UpdateOptions,
    ) -> Result<Option<Ritm>, ServiceNowError> {
        check_id("sys_id", sys_id)?;
        if patch.is_empty() {
            return Err(ServiceNowError::InvalidInput { message: "the patch sets no field".to_owned() });
        }
        let body = serde_json::to_value(patch).map_err(|e| ServiceNowError::InvalidInput { message: e.to_string() })?;
        let mut url = self.table_url("sc_req_item", Some(sys_id));
        url.query_pairs_mut().append_pair("sysparm_display_value", "all").append_pair("sysparm_fields", RITM_FIELDS);
        let span = sn_span!("servicenow.update_ritm", Method::PATCH, url);
        traced(span, async {
            let reply = self.execute(Method::PATCH, url, Some(&body), options.no_response_body).await?;
            if !reply.status.is_success() {
                return Err(api_error(reply.status, &reply.headers, &reply.body));
            }
            if options.no_response_body || reply.body.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            let one: One = decode_success(reply)?;
            Ok(Some(Ritm::from_raw(&one.result)))
        })
        .await
    }

    /// The work notes of a record, oldest first, from
    /// `sys_journal_field?sysparm_query=element_id=<sys_id>^element=work_notes`.
    pub async fn list_work_notes(&self, sys_id: &str) -> Result<Vec<JournalEntry>, ServiceNowError> {
        check_id("sys_id", sys_id)?;
        let mut url = self.table_url("sys_journal_field", None);
        url.query_pairs_mut()
            .append_pair("sysparm_query", &format!("element_id={sys_id}^element=work_notes"))
            .append_pair("sysparm_fields", JOURNAL_FIELDS);
        let span = sn_span!("servicenow.list_work_notes", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None, false).await?;
            let many: Many = decode_success(reply)?;
            let mut notes: Vec<JournalEntry> = many.result.iter().map(JournalEntry::from_raw).collect();
            notes.sort_by(|a, b| a.sys_created_on.cmp(&b.sys_created_on));
            Ok(notes)
        })
        .await
    }

    /// Sends one request; with OAuth, a `401` drops the token, fetches a new one and sends the
    /// request once more. With Basic auth a `401` is returned as is.
    async fn execute(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        no_response_body: bool,
    ) -> Result<Reply, ServiceNowError> {
        let span = Span::current();
        let mut refreshed = false;
        loop {
            let mut request = self.inner.http.request(method.clone(), url.clone()).header(ACCEPT, "application/json");
            let mut used_token: Option<AccessToken> = None;
            match &self.inner.auth {
                Auth::Basic { username, password } => {
                    request = request.basic_auth(username, Some(password.expose()));
                }
                Auth::OAuth { tokens, .. } => {
                    let token = tokens.get().await?;
                    request = request.bearer_auth(token.secret());
                    used_token = Some(token);
                }
            }
            if no_response_body {
                request = request.header("X-no-response-body", "true");
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(transport)?;
            let status = response.status();
            grantline_shared::metrics::upstream_response("servicenow", status.as_u16());
            span.record("http.status_code", status.as_u16());
            let headers = response.headers().clone();
            let bytes = response.bytes().await.map_err(transport)?;
            if status == StatusCode::UNAUTHORIZED
                && !refreshed
                && let (Auth::OAuth { tokens, .. }, Some(token)) = (&self.inner.auth, &used_token)
            {
                tracing::debug!("servicenow answered 401; refreshing the token and trying once more");
                tokens.invalidate_if_current(token);
                refreshed = true;
                continue;
            }
            return Ok(Reply { status, headers, body: bytes.to_vec() });
        }
    }
}

/// Ids and numbers go into paths and encoded queries: refuse the characters that would change
/// the query (`^`, `=`, ...) rather than encode them.
fn check_id(what: &str, value: &str) -> Result<(), ServiceNowError> {
    if value.is_empty() {
        return Err(ServiceNowError::InvalidInput { message: format!("{what} is empty") });
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
        return Err(ServiceNowError::InvalidInput { message: format!("{what} has characters outside [A-Za-z0-9._-]") });
    }
    // `.` and `..` would collapse out of the URL path: `/sys_user/..` reads the whole table
    if value.chars().all(|c| c == '.') {
        return Err(ServiceNowError::InvalidInput { message: format!("{what} {value:?} is not an id") });
    }
    Ok(())
}

fn transport(err: reqwest::Error) -> ServiceNowError {
    let (kind, message) = http::describe_transport(err);
    ServiceNowError::Transport { kind, message }
}

fn decode_success<T: serde::de::DeserializeOwned>(reply: Reply) -> Result<T, ServiceNowError> {
    if !reply.status.is_success() {
        return Err(api_error(reply.status, &reply.headers, &reply.body));
    }
    serde_json::from_slice(&reply.body).map_err(|e| ServiceNowError::Decode { message: e.to_string() })
}

/// Runs one call inside its span and records the error code when it fails.
async fn traced<T>(span: Span, call: impl Future<Output = Result<T, ServiceNowError>>) -> Result<T, ServiceNowError> {
    let result = call.instrument(span.clone()).await;
    if let Err(err) = &result {
        let code = err.code();
        span.record("error.code", code.as_str());
        span.in_scope(|| tracing::debug!(error = %err, "servicenow call failed"));
    }
    result
}

#[cfg(test)]
mod id_tests {
    #[test]
    fn dot_segments_are_not_ids() {
        for bad in ["", ".", "..", "a/b", "a^b", "x=y"] {
            assert!(super::check_id("sys_id", bad).is_err(), "{bad:?}");
        }
        for ok in ["0b36816197113110a24734000153af01", "RITM0010001", "a.b"] {
            assert!(super::check_id("sys_id", ok).is_ok(), "{ok:?}");
        }
    }
}
