//! The Graph client.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tracing::{Instrument, Span};
use url::Url;
use uuid::Uuid;

use super::GraphConfig;
use super::error::{GraphError, GraphErrorBody};
use super::model::{AddOutcome, Correlated, Correlation, DirectoryObject, Group, RemoveOutcome, User};
use crate::ConfigError;
use crate::http;
use crate::token::TokenProvider;

pub(super) const USER_SELECT: &str = "$select=id,userPrincipalName,displayName,accountEnabled,userType,employeeType,department,employeeLeaveDateTime,mail";
pub(super) const GROUP_SELECT: &str = "$select=id,displayName,groupTypes,mailEnabled,securityEnabled,isAssignableToRole,membershipRule,onPremisesSyncEnabled,mail";
const ID_SELECT: &str = "$select=id";

/// A client for Microsoft Graph v1.0. Cloning is cheap; clones share the HTTP connection pool
/// and the token cache.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    tokens: TokenProvider,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("base_url", &self.inner.base.as_str())
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

/// One HTTP exchange with Graph, after the one token refresh a `401` allows.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    headers: HeaderMap,
    pub(super) body: Vec<u8>,
    pub(super) correlation: Correlation,
}

macro_rules! graph_span {
    ($name:literal, $method:expr, $url:expr) => {
        tracing::info_span!(
            $name,
            otel.kind = "client",
            http.method = %$method,
            url.path = %$url.path(),
            http.status_code = tracing::field::Empty,
            request_id = tracing::field::Empty,
            client_request_id = tracing::field::Empty,
            error.code = tracing::field::Empty,
            batch.size = tracing::field::Empty,
        )
    };
}
pub(super) use graph_span;

impl GraphClient {
    /// A client with its own HTTP client and token provider, built from configuration.
    pub fn new(config: &GraphConfig) -> Result<Self, ConfigError> {
        let http = http::build_client(&config.http)?;
        let tokens = TokenProvider::new(&config.token, http.clone())?;
        Self::from_parts(&config.base_url, http, tokens)
    }

    /// A client from its parts: the service root (`https://graph.microsoft.com/v1.0`), an HTTP
    /// client (see [`http::build_client`]) and a token provider (which may be shared).
    pub fn from_parts(base_url: &str, http: reqwest::Client, tokens: TokenProvider) -> Result<Self, ConfigError> {
        let base = http::parse_base_url("graph.base_url", base_url)?;
        Ok(Self { inner: Arc::new(Inner { http, base, tokens }) })
    }

    pub fn token_provider(&self) -> &TokenProvider {
        &self.inner.tokens
    }

    pub(super) fn base(&self) -> &Url {
        &self.inner.base
    }

    pub(super) fn api_error(&self, reply: Reply) -> GraphError {
        api_error(reply)
    }

    /// The `@odata.id` of a directory object: `<base>/directoryObjects/{id}`.
    pub fn directory_object_ref(&self, id: &str) -> String {
        http::join_segments(&self.inner.base, &["directoryObjects", id]).to_string()
    }

    /// `GET /users/{id | userPrincipalName}?$select=...`. `Ok(None)` when Graph answers 404.
    /// Guest UPNs (`#EXT#`) are percent-encoded; a UPN starting with `$` is addressed as
    /// `/users('$x@y.com')`.
    pub async fn get_user(&self, id_or_upn: &str) -> Result<Correlated<Option<User>>, GraphError> {
        non_empty("user id", id_or_upn)?;
        let mut url = if id_or_upn.starts_with('$') {
            let quoted = format!("users('{}')", id_or_upn.replace('\'', "''"));
            http::join_segments(&self.inner.base, &[&quoted])
        } else {
            http::join_segments(&self.inner.base, &["users", id_or_upn])
        };
        url.set_query(Some(USER_SELECT));
        let span = graph_span!("graph.get_user", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None).await?;
            match reply.status {
                s if s.is_success() => decode::<User>(reply).map(|c| c.map(Some)),
                StatusCode::NOT_FOUND => Ok(Correlated { value: None, correlation: reply.correlation }),
                _ => Err(api_error(reply)),
            }
        })
        .await
    }

    /// `GET /users?$filter=mail eq '…'`: finds a user by mail address. This is how a B2B
    /// guest is found from the address an ITSM knows them by (their UPN is the `#EXT#`
    /// form). `Ok(None)` when nobody has that address; the first match otherwise.
    pub async fn find_user_by_mail(&self, mail: &str) -> Result<Correlated<Option<User>>, GraphError> {
        non_empty("mail", mail)?;
        let mut url = http::join_segments(&self.inner.base, &["users"]);
        let filter = format!("mail eq '{}'", mail.replace('\'', "''"));
        url.query_pairs_mut().append_pair("$filter", &filter);
        let select = USER_SELECT.trim_start_matches("$select=");
        url.query_pairs_mut().append_pair("$select", select);
        let span = graph_span!("graph.find_user_by_mail", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None).await?;
            if !reply.status.is_success() {
                return Err(api_error(reply));
            }
            #[derive(serde::Deserialize)]
            struct Page {
                #[serde(default)]
                value: Vec<User>,
            }
            decode::<Page>(reply)
                .map(|c| Correlated { value: c.value.value.into_iter().next(), correlation: c.correlation })
        })
        .await
    }

    /// `GET /users/{id}/manager`. `Ok(None)` when no manager is set (404 naming `'manager'`);
    /// a 404 naming the user itself (the user does not exist) is a `graph.not_found` error.
    pub async fn get_manager(&self, user_id: &str) -> Result<Correlated<Option<DirectoryObject>>, GraphError> {
        non_empty("user id", user_id)?;
        let url = http::join_segments(&self.inner.base, &["users", user_id, "manager"]);
        let span = graph_span!("graph.get_manager", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None).await?;
            match reply.status {
                s if s.is_success() => decode::<DirectoryObject>(reply).map(|c| c.map(Some)),
                StatusCode::NOT_FOUND => {
                    let body = GraphErrorBody::parse(&reply.body);
                    if body.message.contains(&format!("'{user_id}'")) {
                        Err(api_error(reply))
                    } else {
                        Ok(Correlated { value: None, correlation: reply.correlation })
                    }
                }
                _ => Err(api_error(reply)),
            }
        })
        .await
    }

    /// `GET /groups/{id}?$select=...`. `Ok(None)` when Graph answers 404.
    pub async fn get_group(&self, group_id: &str) -> Result<Correlated<Option<Group>>, GraphError> {
        non_empty("group id", group_id)?;
        let mut url = http::join_segments(&self.inner.base, &["groups", group_id]);
        url.set_query(Some(GROUP_SELECT));
        let span = graph_span!("graph.get_group", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None).await?;
            match reply.status {
                s if s.is_success() => decode::<Group>(reply).map(|c| c.map(Some)),
                StatusCode::NOT_FOUND => Ok(Correlated { value: None, correlation: reply.correlation }),
                _ => Err(api_error(reply)),
            }
        })
        .await
    }

    /// Direct membership: `GET /groups/{gid}/members/{uid}?$select=id`; 200 is `true`, 404 is
    /// `false` (also when the group itself does not exist; Graph's 404 does not say which).
    pub async fn is_member(&self, group_id: &str, user_id: &str) -> Result<Correlated<bool>, GraphError> {
        non_empty("group id", group_id)?;
        non_empty("user id", user_id)?;
        let mut url = http::join_segments(&self.inner.base, &["groups", group_id, "members", user_id]);
        url.set_query(Some(ID_SELECT));
        let span = graph_span!("graph.is_member", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None).await?;
            match reply.status {
                s if s.is_success() => Ok(Correlated { value: true, correlation: reply.correlation }),
                StatusCode::NOT_FOUND => Ok(Correlated { value: false, correlation: reply.correlation }),
                _ => Err(api_error(reply)),
            }
        })
        .await
    }

    /// `POST /groups/{id}/members/$ref` with `{"@odata.id": "<base>/directoryObjects/{uid}"}`.
    /// 204 is [`AddOutcome::Added`]; the 400 "added object references already exist" is
    /// [`AddOutcome::AlreadyMember`]. Any other 400 (mail-enabled or dynamic group, ...) is a
    /// Permanent error carrying Graph's code and message; 403 is `graph.forbidden`; 404 (group
    /// or user missing) is `graph.not_found`.
    pub async fn add_member(&self, group_id: &str, user_id: &str) -> Result<Correlated<AddOutcome>, GraphError> {
        non_empty("group id", group_id)?;
        non_empty("user id", user_id)?;
        let url = http::join_segments(&self.inner.base, &["groups", group_id, "members", "$ref"]);
        let body = serde_json::json!({ "@odata.id": self.directory_object_ref(user_id) });
        let span = graph_span!("graph.add_member", Method::POST, url);
        traced(span, async {
            let reply = self.execute(Method::POST, url, Some(&body)).await?;
            match reply.status {
                s if s.is_success() => Ok(Correlated { value: AddOutcome::Added, correlation: reply.correlation }),
                StatusCode::BAD_REQUEST if GraphErrorBody::parse(&reply.body).is_already_exists() => {
                    Ok(Correlated { value: AddOutcome::AlreadyMember, correlation: reply.correlation })
                }
                _ => Err(api_error(reply)),
            }
        })
        .await
    }

    /// `DELETE /groups/{gid}/members/{uid}/$ref`: always with `/$ref`, which removes the
    /// membership (without it, Graph would delete the user object). 204 is
    /// [`RemoveOutcome::Removed`]; 404 and the 400 "removed object references do not exist" are
    /// [`RemoveOutcome::NotAMember`].
    pub async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<Correlated<RemoveOutcome>, GraphError> {
        non_empty("group id", group_id)?;
        non_empty("user id", user_id)?;
        let url = http::join_segments(&self.inner.base, &["groups", group_id, "members", user_id, "$ref"]);
        let span = graph_span!("graph.remove_member", Method::DELETE, url);
        traced(span, async {
            let reply = self.execute(Method::DELETE, url, None).await?;
            match reply.status {
                s if s.is_success() => Ok(Correlated { value: RemoveOutcome::Removed, correlation: reply.correlation }),
                StatusCode::NOT_FOUND => {
                    Ok(Correlated { value: RemoveOutcome::NotAMember, correlation: reply.correlation })
                }
                StatusCode::BAD_REQUEST if GraphErrorBody::parse(&reply.body).is_references_do_not_exist() => {
                    Ok(Correlated { value: RemoveOutcome::NotAMember, correlation: reply.correlation })
                }
                _ => Err(api_error(reply)),
            }
        })
        .await
    }

    /// Sends one request; on a `401`, drops the token, fetches a new one and sends the request
    /// once more (with a new `client-request-id`). A second `401` is returned as is.
    pub(super) async fn execute(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, GraphError> {
        let span = Span::current();
        let mut refreshed = false;
        loop {
            let token = self.inner.tokens.token().await?;
            let client_request_id = Uuid::new_v4().to_string();
            span.record("client_request_id", client_request_id.as_str());
            let mut request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.secret())
                .header("client-request-id", client_request_id.as_str())
                .header(ACCEPT, "application/json");
            if let Some(body) = body {
                request = request.json(body);
            }
            let sent = Correlation { request_id: None, client_request_id };
            let response = request.send().await.map_err(|e| transport(e, sent.clone()))?;
            let status = response.status();
            grantline_shared::metrics::upstream_response("graph", status.as_u16());
            let headers = response.headers().clone();
            let request_id = http::header_str(&headers, "request-id").map(str::to_owned);
            span.record("http.status_code", status.as_u16());
            if let Some(id) = &request_id {
                span.record("request_id", id.as_str());
            }
            let correlation = Correlation { request_id, client_request_id: sent.client_request_id };
            let body_bytes = response.bytes().await.map_err(|e| transport(e, correlation.clone()))?;
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                tracing::debug!("graph answered 401; refreshing the token and trying once more");
                self.inner.tokens.invalidate_if_current(&token);
                refreshed = true;
                continue;
            }
            return Ok(Reply { status, headers, body: body_bytes.to_vec(), correlation });
        }
    }
}

/// An id or name that goes into a URL path as one segment: not empty, and not `.` or `..`,
/// which would collapse out of the path (`/users/..` would read the whole user collection).
pub(crate) fn non_empty(what: &str, value: &str) -> Result<(), GraphError> {
    if value.trim().is_empty() {
        return Err(GraphError::InvalidInput { message: format!("{what} is empty") });
    }
    if value.chars().all(|c| c == '.') {
        return Err(GraphError::InvalidInput { message: format!("{what} {value:?} is not an id") });
    }
    Ok(())
}

fn transport(err: reqwest::Error, correlation: Correlation) -> GraphError {
    let (kind, message) = http::describe_transport(err);
    GraphError::Transport { kind, message, correlation }
}

fn decode<T: DeserializeOwned>(reply: Reply) -> Result<Correlated<T>, GraphError> {
    match serde_json::from_slice::<T>(&reply.body) {
        Ok(value) => Ok(Correlated { value, correlation: reply.correlation }),
        Err(e) => Err(GraphError::Decode { message: e.to_string(), correlation: reply.correlation }),
    }
}

fn api_error(reply: Reply) -> GraphError {
    let body = GraphErrorBody::parse(&reply.body);
    let mut correlation = reply.correlation;
    if correlation.request_id.is_none() {
        correlation.request_id = body.inner_error.as_ref().and_then(|i| i.request_id.clone());
    }
    let retry_after = http::retry_after(&reply.headers, jiff::Timestamp::now());
    let throttle_scope = http::header_str(&reply.headers, "x-ms-throttle-scope").map(str::to_owned);
    GraphError::Api { status: reply.status.as_u16(), body, retry_after, throttle_scope, correlation }
}

/// Runs one call inside its span and records the error code when it fails.
pub(super) async fn traced<T>(span: Span, call: impl Future<Output = Result<T, GraphError>>) -> Result<T, GraphError> {
    let result = call.instrument(span.clone()).await;
    if let Err(err) = &result {
        let code = err.code();
        span.record("error.code", code.as_str());
        span.in_scope(|| tracing::debug!(error = %err, "graph call failed"));
    }
    result
}

#[cfg(test)]
mod id_tests {
    #[test]
    fn dot_segments_are_not_ids() {
        for bad in ["", "  ", ".", "..", "..."] {
            assert!(super::non_empty("user id", bad).is_err(), "{bad:?}");
        }
        for ok in ["10000000-0000-4000-8000-000000000001", "AlexW@contoso.com", "a.b"] {
            assert!(super::non_empty("user id", ok).is_ok(), "{ok:?}");
        }
    }
}
