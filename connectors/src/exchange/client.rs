//! The Exchange Online client: one cmdlet per call through `InvokeCommand`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tracing::{Instrument, Span};
use url::Url;
use uuid::Uuid;

use super::ExchangeConfig;
use super::error::{ExchangeError, ExchangeErrorBody};
use super::model::{Change, FolderPermission, Mailbox, MailboxPermission, RecipientPermission};
use crate::ConfigError;
use crate::graph::{Correlated, Correlation};
use crate::http;
use crate::token::TokenProvider;

/// The routing hint for calls that name no mailbox: the tenant's system mailbox.
const SYSTEM_MAILBOX: &str = "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}";
/// Pages followed at most for one `Get-*` cmdlet.
const MAX_PAGES: usize = 1000;

/// A client for Exchange Online's admin REST endpoint (`/adminapi/beta/{tenant}/InvokeCommand`).
/// Cloning is cheap; clones share the HTTP connection pool, the token cache and the
/// `connection-id`.
#[derive(Clone)]
pub struct ExchangeClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    tenant_id: String,
    invoke: Url,
    anchor: Option<String>,
    connection_id: String,
    tokens: TokenProvider,
}

impl fmt::Debug for ExchangeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeClient")
            .field("base_url", &self.inner.base.as_str())
            .field("tenant_id", &self.inner.tenant_id)
            .field("anchor", &self.inner.anchor)
            .field("tokens", &self.inner.tokens)
            .finish_non_exhaustive()
    }
}

/// One HTTP exchange, after the one token refresh a `401` allows.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    correlation: Correlation,
}

/// What a cmdlet returned over all its pages.
struct Invoked {
    rows: Vec<Value>,
    warnings: Vec<String>,
    correlation: Correlation,
}

macro_rules! exchange_span {
    ($name:literal, $cmdlet:expr, $url:expr) => {
        tracing::info_span!(
            $name,
            otel.kind = "client",
            http.method = "POST",
            url.path = %$url.path(),
            exchange.cmdlet = $cmdlet,
            http.status_code = tracing::field::Empty,
            request_id = tracing::field::Empty,
            client_request_id = tracing::field::Empty,
            exchange.warnings = tracing::field::Empty,
            error.code = tracing::field::Empty,
        )
    };
}

/// Whether a tenant id is a GUID in its usual 8-4-4-4-12 form.
pub(crate) fn is_guid(s: &str) -> bool {
    s.len() == 36 && Uuid::parse_str(s).is_ok()
}

fn non_empty(what: &str, value: &str) -> Result<(), ExchangeError> {
    if value.trim().is_empty() {
        return Err(ExchangeError::InvalidInput { message: format!("{what} is empty") });
    }
    Ok(())
}

/// `mailbox:\folder` (`""` is the top of the store).
fn folder_identity(mailbox: &str, folder: &str) -> Result<String, ExchangeError> {
    non_empty("mailbox", mailbox)?;
    if mailbox.contains(":\\") {
        return Err(ExchangeError::InvalidInput {
            message: "mailbox must not contain a folder; pass the folder separately".to_owned(),
        });
    }
    let folder = folder.trim().replace('/', "\\");
    Ok(format!("{}:\\{}", mailbox.trim(), folder.trim_matches('\\')))
}

fn is_already_present(w: &str) -> bool {
    let w = w.to_ascii_lowercase();
    w.contains("access control entry is already present") || w.contains("no settings of")
}

fn is_absent(w: &str) -> bool {
    let w = w.to_ascii_lowercase();
    w.contains("because the ace doesn't exist")
        || w.contains("can't remove the access control entry")
        || w.contains("no settings of")
}

/// An add: the "already present" (or "nothing modified") warning means it was there already.
fn added(warnings: &[String]) -> Change {
    if warnings.iter().any(|w| is_already_present(w)) { Change::AlreadyPresent } else { Change::Applied }
}

/// A removal: "the ACE doesn't exist" (or "nothing modified") means there was nothing to remove.
fn removed(warnings: &[String]) -> Change {
    if warnings.iter().any(|w| is_absent(w)) { Change::NotPresent } else { Change::Applied }
}

fn rows_of<T: serde::de::DeserializeOwned>(invoked: &Invoked) -> Result<Vec<T>, ExchangeError> {
    invoked
        .rows
        .iter()
        .map(|r| serde_json::from_value::<T>(r.clone()))
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| ExchangeError::Decode { message: e.to_string(), correlation: invoked.correlation.clone() })
}

impl ExchangeClient {
    /// A client with its own HTTP client and token provider, built from configuration. The
    /// token's tenant defaults to `tenant_id`.
    pub fn new(config: &ExchangeConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let http = http::build_client(&config.http)?;
        let mut token = config.token.clone();
        if token.tenant.trim().is_empty() {
            token.tenant = config.tenant_id.trim().to_owned();
        }
        let tokens = TokenProvider::new(&token, http.clone())?;
        Self::from_parts(&config.base_url, &config.tenant_id, config.anchor.as_deref(), http, tokens)
    }

    /// A client from its parts: the service root (`https://outlook.office365.com`), the tenant
    /// id (a GUID), an optional fixed `X-AnchorMailbox`, an HTTP client (see
    /// [`http::build_client`]) and a token provider for `https://outlook.office365.com`.
    pub fn from_parts(
        base_url: &str,
        tenant_id: &str,
        anchor: Option<&str>,
        http: reqwest::Client,
        tokens: TokenProvider,
    ) -> Result<Self, ConfigError> {
        let base = http::parse_base_url("exchange.base_url", base_url)?;
        let tenant_id = tenant_id.trim().to_owned();
        if !is_guid(&tenant_id) {
            return Err(ConfigError::new(
                "exchange.tenant_id",
                "must be the tenant id, a GUID (a domain is refused by Exchange)",
            ));
        }
        let invoke = http::join_segments(&base, &["adminapi", "beta", &tenant_id, "InvokeCommand"]);
        let anchor = anchor.map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned);
        let connection_id = Uuid::new_v4().to_string();
        Ok(Self { inner: Arc::new(Inner { http, base, tenant_id, invoke, anchor, connection_id, tokens }) })
    }

    /// The token provider (shareable with another client for the same resource).
    pub fn token_provider(&self) -> &TokenProvider {
        &self.inner.tokens
    }

    /// The `connection-id` this client sends with every call.
    pub fn connection_id(&self) -> &str {
        &self.inner.connection_id
    }

    /// `Get-Mailbox -Identity <identity> -IncludeGrantSendOnBehalfToWithDisplayNames`.
    /// `Ok(None)` when Exchange reports `ManagementObjectNotFoundException`.
    pub async fn get_mailbox(&self, identity: &str) -> Result<Correlated<Option<Mailbox>>, ExchangeError> {
        non_empty("mailbox", identity)?;
        let params = json!({ "Identity": identity.trim(), "IncludeGrantSendOnBehalfToWithDisplayNames": true });
        let span = exchange_span!("exchange.get_mailbox", "Get-Mailbox", self.inner.invoke);
        traced(span, async {
            match self.invoke("Get-Mailbox", params, Some(identity)).await {
                Ok(inv) => {
                    let mailbox = inv.rows.first().and_then(Mailbox::from_row);
                    if mailbox.is_none() && !inv.rows.is_empty() {
                        return Err(ExchangeError::Decode {
                            message: "Get-Mailbox returned a row without PrimarySmtpAddress".to_owned(),
                            correlation: inv.correlation,
                        });
                    }
                    Ok(Correlated { value: mailbox, correlation: inv.correlation })
                }
                Err(e) if e.is_not_found() => {
                    let correlation = e.correlation().cloned().unwrap_or_else(empty_correlation);
                    Ok(Correlated { value: None, correlation })
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// `Get-MailboxPermission -Identity <mailbox>`: the direct Full Access grants (the mailbox's
    /// own `NT AUTHORITY\SELF` row, inherited rows and Deny rows are left out).
    pub async fn full_access(&self, mailbox: &str) -> Result<Correlated<Vec<MailboxPermission>>, ExchangeError> {
        non_empty("mailbox", mailbox)?;
        let params = json!({ "Identity": mailbox.trim(), "ResultSize": "Unlimited" });
        let span = exchange_span!("exchange.full_access", "Get-MailboxPermission", self.inner.invoke);
        traced(span, async {
            let inv = self.invoke("Get-MailboxPermission", params, Some(mailbox)).await?;
            let rows: Vec<MailboxPermission> = rows_of(&inv)?;
            let grants = rows.into_iter().filter(|r| r.is_direct_grant() && r.has_full_access()).collect();
            Ok(Correlated { value: grants, correlation: inv.correlation })
        })
        .await
    }

    /// `Add-MailboxPermission -AccessRights FullAccess -InheritanceType All -AutoMapping <b>`.
    /// Exchange's "already present" warning is [`Change::AlreadyPresent`]. AutoMapping of an
    /// existing grant is not changed (Exchange needs a remove and a new add for that).
    pub async fn add_full_access(
        &self,
        mailbox: &str,
        user: &str,
        automapping: bool,
    ) -> Result<Correlated<Change>, ExchangeError> {
        non_empty("mailbox", mailbox)?;
        non_empty("user", user)?;
        let params = json!({ "Identity": mailbox.trim(), "User": user.trim(), "AccessRights": ["FullAccess"],
            "InheritanceType": "All", "AutoMapping": automapping, "Confirm": false });
        let span = exchange_span!("exchange.add_full_access", "Add-MailboxPermission", self.inner.invoke);
        traced(span, self.write("Add-MailboxPermission", params, mailbox, added)).await
    }

    /// `Remove-MailboxPermission -AccessRights FullAccess -InheritanceType All`. Exchange's "the
    /// ACE doesn't exist" warning is [`Change::NotPresent`].
    pub async fn remove_full_access(&self, mailbox: &str, user: &str) -> Result<Correlated<Change>, ExchangeError> {
        non_empty("mailbox", mailbox)?;
        non_empty("user", user)?;
        let params = json!({ "Identity": mailbox.trim(), "User": user.trim(), "AccessRights": ["FullAccess"],
            "InheritanceType": "All", "Confirm": false });
        let span = exchange_span!("exchange.remove_full_access", "Remove-MailboxPermission", self.inner.invoke);
        traced(span, self.write("Remove-MailboxPermission", params, mailbox, removed)).await
    }

    /// `Get-RecipientPermission -Identity <mailbox> -AccessRights SendAs`: the direct Send As
    /// grants (`NT AUTHORITY\SELF`, inherited and Deny rows left out).
    pub async fn send_as(&self, mailbox: &str) -> Result<Correlated<Vec<RecipientPermission>>, ExchangeError> {
        non_empty("mailbox", mailbox)?;
        let params = json!({ "Identity": mailbox.trim(), "AccessRights": ["SendAs"], "ResultSize": "Unlimited" });
        let span = exchange_span!("exchange.send_as", "Get-RecipientPermission", self.inner.invoke);
        traced(span, async {
            let inv = self.invoke("Get-RecipientPermission", params, Some(mailbox)).await?;
            let rows: Vec<RecipientPermission> = rows_of(&inv)?;
            let grants = rows.into_iter().filter(|r| r.is_direct_grant() && r.has_send_as()).collect();
            Ok(Correlated { value: grants, correlation: inv.correlation })
        })
        .await
    }

    /// `Add-RecipientPermission -Trustee <user> -AccessRights SendAs`.
    pub async fn add_send_as(&self, mailbox: &str, user: &str) -> Result<Correlated<Change>, ExchangeError> {
        non_empty("mailbox", mailbox)?;
        non_empty("user", user)?;
        let params =
            json!({ "Identity": mailbox.trim(), "Trustee": user.trim(), "AccessRights": ["SendAs"], "Confirm": false });
        let span = exchange_span!("exchange.add_send_as", "Add-RecipientPermission", self.inner.invoke);
        traced(span, self.write("Add-RecipientPermission", params, mailbox, added)).await
    }

    /// `Remove-RecipientPermission -Trustee <user> -AccessRights SendAs`.
    pub async fn remove_send_as(&self, mailbox: &str, user: &str) -> Result<Correlated<Change>, ExchangeError> {
        non_empty("mailbox", mailbox)?;
        non_empty("user", user)?;
        let params =
            json!({ "Identity": mailbox.trim(), "Trustee": user.trim(), "AccessRights": ["SendAs"], "Confirm": false });
        let span = exchange_span!("exchange.remove_send_as", "Remove-RecipientPermission", self.inner.invoke);
        traced(span, self.write("Remove-RecipientPermission", params, mailbox, removed)).await
    }

    /// `Set-Mailbox -GrantSendOnBehalfTo @{add=<user>}` (a `#Exchange.GenericHashTable`, never the
    /// list form, which would replace every delegate). Read it back with
    /// [`ExchangeClient::get_mailbox`].
    pub async fn add_send_on_behalf(&self, mailbox: &str, user: &str) -> Result<Correlated<Change>, ExchangeError> {
        self.send_on_behalf(mailbox, user, "add").await
    }

    /// `Set-Mailbox -GrantSendOnBehalfTo @{remove=<user>}`.
    pub async fn remove_send_on_behalf(&self, mailbox: &str, user: &str) -> Result<Correlated<Change>, ExchangeError> {
        self.send_on_behalf(mailbox, user, "remove").await
    }

    async fn send_on_behalf(&self, mailbox: &str, user: &str, op: &str) -> Result<Correlated<Change>, ExchangeError> {
        non_empty("mailbox", mailbox)?;
        non_empty("user", user)?;
        let table = json!({ "@odata.type": "#Exchange.GenericHashTable", op: user.trim() });
        let params = json!({ "Identity": mailbox.trim(), "GrantSendOnBehalfTo": table, "Confirm": false });
        let outcome = if op == "add" { added } else { removed };
        let span = if op == "add" {
            exchange_span!("exchange.add_send_on_behalf", "Set-Mailbox", self.inner.invoke)
        } else {
            exchange_span!("exchange.remove_send_on_behalf", "Set-Mailbox", self.inner.invoke)
        };
        traced(span, self.write("Set-Mailbox", params, mailbox, outcome)).await
    }

    /// `Get-MailboxFolderPermission -Identity <mailbox>:\<folder>`: every entry of that folder
    /// (`Default` and `Anonymous` included). `folder` `""` is the top of the store, `"Inbox"` the
    /// Inbox.
    pub async fn folder_permissions(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> Result<Correlated<Vec<FolderPermission>>, ExchangeError> {
        let identity = folder_identity(mailbox, folder)?;
        let span = exchange_span!("exchange.folder_permissions", "Get-MailboxFolderPermission", self.inner.invoke);
        traced(span, async {
            let inv =
                self.invoke("Get-MailboxFolderPermission", json!({ "Identity": identity }), Some(mailbox)).await?;
            let rows = rows_of(&inv)?;
            Ok(Correlated { value: rows, correlation: inv.correlation })
        })
        .await
    }

    /// `Add-MailboxFolderPermission -AccessRights <role>` on one folder (folder permissions are
    /// per folder). When the user already has an entry there, the entry is read back: the same
    /// role is [`Change::AlreadyPresent`], another one is [`ExchangeError::Conflict`].
    pub async fn add_folder_permission(
        &self,
        mailbox: &str,
        folder: &str,
        user: &str,
        role: &str,
    ) -> Result<Correlated<Change>, ExchangeError> {
        let identity = folder_identity(mailbox, folder)?;
        non_empty("user", user)?;
        non_empty("role", role)?;
        let params = json!({ "Identity": identity, "User": user.trim(), "AccessRights": [role.trim()] });
        let span = exchange_span!("exchange.add_folder_permission", "Add-MailboxFolderPermission", self.inner.invoke);
        traced(span, async {
            match self.invoke("Add-MailboxFolderPermission", params, Some(mailbox)).await {
                Ok(inv) => Ok(Correlated { value: Change::Applied, correlation: inv.correlation }),
                Err(e) if e.exception() == Some("UserAlreadyExistsInPermissionEntryException") => {
                    let read = json!({ "Identity": identity, "User": user.trim() });
                    let inv = self.invoke("Get-MailboxFolderPermission", read, Some(mailbox)).await?;
                    let rows: Vec<FolderPermission> = rows_of(&inv)?;
                    let existing = rows.first().map(|r| r.access_rights.clone()).unwrap_or_default();
                    if rows.first().is_some_and(|r| r.has_role(role)) {
                        Ok(Correlated { value: Change::AlreadyPresent, correlation: inv.correlation })
                    } else {
                        Err(ExchangeError::Conflict {
                            folder: identity.clone(),
                            user: user.trim().to_owned(),
                            existing,
                            wanted: role.trim().to_owned(),
                            correlation: inv.correlation,
                        })
                    }
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// `Remove-MailboxFolderPermission` on one folder. No entry for the user there
    /// (`UserNotFoundInPermissionEntryException`) is [`Change::NotPresent`].
    pub async fn remove_folder_permission(
        &self,
        mailbox: &str,
        folder: &str,
        user: &str,
    ) -> Result<Correlated<Change>, ExchangeError> {
        let identity = folder_identity(mailbox, folder)?;
        non_empty("user", user)?;
        let params = json!({ "Identity": identity, "User": user.trim(), "Confirm": false });
        let span =
            exchange_span!("exchange.remove_folder_permission", "Remove-MailboxFolderPermission", self.inner.invoke);
        traced(span, async {
            match self.invoke("Remove-MailboxFolderPermission", params, Some(mailbox)).await {
                Ok(inv) => Ok(Correlated { value: removed(&inv.warnings), correlation: inv.correlation }),
                Err(e) if e.exception() == Some("UserNotFoundInPermissionEntryException") => {
                    let correlation = e.correlation().cloned().unwrap_or_else(empty_correlation);
                    Ok(Correlated { value: Change::NotPresent, correlation })
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// A write cmdlet whose warnings decide the [`Change`].
    async fn write(
        &self,
        cmdlet: &str,
        params: Value,
        mailbox: &str,
        outcome: fn(&[String]) -> Change,
    ) -> Result<Correlated<Change>, ExchangeError> {
        let inv = self.invoke(cmdlet, params, Some(mailbox)).await?;
        Ok(Correlated { value: outcome(&inv.warnings), correlation: inv.correlation })
    }

    fn anchor(&self, mailbox: Option<&str>) -> String {
        if let Some(a) = &self.inner.anchor {
            return a.clone();
        }
        match mailbox.map(str::trim).filter(|m| m.contains('@')) {
            Some(m) => format!("UPN:{m}"),
            None => format!("APP:{SYSTEM_MAILBOX}@{}", self.inner.tenant_id),
        }
    }

    /// Runs a cmdlet and follows `@odata.nextLink` (same body) until the last page.
    async fn invoke(&self, cmdlet: &str, params: Value, mailbox: Option<&str>) -> Result<Invoked, ExchangeError> {
        let body = json!({ "CmdletInput": { "CmdletName": cmdlet, "Parameters": params } });
        let anchor = self.anchor(mailbox);
        let mut url = self.inner.invoke.clone();
        let mut rows = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let mut first: Option<Correlation> = None;
        for _ in 0..MAX_PAGES {
            let reply = self.execute(url.clone(), &body, &anchor, cmdlet).await?;
            if !reply.status.is_success() {
                return Err(api_error(reply, cmdlet));
            }
            let correlation = first.get_or_insert_with(|| reply.correlation.clone()).clone();
            let page: Value = if reply.body.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                serde_json::from_slice(&reply.body).map_err(|e| ExchangeError::Decode {
                    message: format!("{cmdlet} returned a body that is not JSON: {e}"),
                    correlation: reply.correlation.clone(),
                })?
            };
            let mut page_warnings: Vec<String> = page
                .get("@adminapi.warnings")
                .and_then(Value::as_array)
                .map(|w| w.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            if page_warnings.is_empty() {
                page_warnings = reply
                    .headers
                    .get_all("x-warnings")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .filter(|w| !w.trim().is_empty())
                    .collect();
            }
            warnings.extend(page_warnings);
            match page.get("value") {
                Some(Value::Array(items)) => rows.extend(items.iter().cloned()),
                Some(Value::Null) | None => {}
                Some(other) => rows.push(other.clone()),
            }
            let Some(next) = page.get("@odata.nextLink").and_then(Value::as_str) else {
                if !warnings.is_empty() {
                    Span::current().record("exchange.warnings", warnings.len());
                    tracing::debug!(cmdlet, warnings = ?warnings, "exchange returned warnings");
                }
                return Ok(Invoked { rows, warnings, correlation });
            };
            url = self.same_origin(next, &correlation)?;
        }
        Err(ExchangeError::Decode {
            message: format!("{cmdlet} returned more than {MAX_PAGES} pages"),
            correlation: first.unwrap_or_else(empty_correlation),
        })
    }

    /// A nextLink is followed only on the configured scheme, host and port: the bearer token is
    /// never sent anywhere else.
    fn same_origin(&self, link: &str, correlation: &Correlation) -> Result<Url, ExchangeError> {
        let url = self.inner.base.join(link).map_err(|e| ExchangeError::Decode {
            message: format!("invalid @odata.nextLink: {e}"),
            correlation: correlation.clone(),
        })?;
        let base = &self.inner.base;
        if url.scheme() != base.scheme()
            || url.host_str() != base.host_str()
            || url.port_or_known_default() != base.port_or_known_default()
        {
            return Err(ExchangeError::Decode {
                message: format!(
                    "@odata.nextLink points at {}, not the configured host",
                    url.host_str().unwrap_or("?")
                ),
                correlation: correlation.clone(),
            });
        }
        Ok(url)
    }

    /// Sends one request; on a `401`, drops the token, fetches a new one and sends the request
    /// once more (with a new `client-request-id`). A second `401` is returned as is.
    async fn execute(&self, url: Url, body: &Value, anchor: &str, cmdlet: &str) -> Result<Reply, ExchangeError> {
        let span = Span::current();
        let mut refreshed = false;
        loop {
            let token = self.inner.tokens.token().await?;
            let client_request_id = Uuid::new_v4().to_string();
            span.record("client_request_id", client_request_id.as_str());
            let request = self
                .inner
                .http
                .request(Method::POST, url.clone())
                .bearer_auth(token.secret())
                .header(ACCEPT, "application/json")
                .header("X-AnchorMailbox", anchor)
                .header("client-request-id", client_request_id.as_str())
                .header("connection-id", self.inner.connection_id.as_str())
                .header("Prefer", "odata.maxpagesize=1000")
                .header("X-CmdletName", cmdlet)
                .header("X-ResponseFormat", "json")
                .json(body);
            let sent = Correlation { request_id: None, client_request_id };
            let response = request.send().await.map_err(|e| transport(e, cmdlet, sent.clone()))?;
            let status = response.status();
            grantline_shared::metrics::upstream_response("exchange", status.as_u16());
            let headers = response.headers().clone();
            let request_id = http::header_str(&headers, "request-id").map(str::to_owned);
            span.record("http.status_code", status.as_u16());
            if let Some(id) = &request_id {
                span.record("request_id", id.as_str());
            }
            let correlation = Correlation { request_id, client_request_id: sent.client_request_id };
            let bytes = response.bytes().await.map_err(|e| transport(e, cmdlet, correlation.clone()))?;
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                tracing::debug!("exchange answered 401; refreshing the token and trying once more");
                self.inner.tokens.invalidate_if_current(&token);
                refreshed = true;
                continue;
            }
            return Ok(Reply { status, headers, body: bytes.to_vec(), correlation });
        }
    }
}

fn empty_correlation() -> Correlation {
    Correlation { request_id: None, client_request_id: String::new() }
}

fn transport(err: reqwest::Error, cmdlet: &str, correlation: Correlation) -> ExchangeError {
    let (kind, message) = http::describe_transport(err);
    ExchangeError::Transport { kind, cmdlet: cmdlet.to_owned(), message, correlation }
}

/// `Rate-Limit-Reset`: seconds from now, a Unix time, an RFC 3339 time or an HTTP-date (at most an
/// hour away is believed).
fn rate_limit_reset(headers: &HeaderMap, now: jiff::Timestamp) -> Option<std::time::Duration> {
    let value = http::header_str(headers, "rate-limit-reset")?;
    let delay = if let Ok(n) = value.parse::<u64>() {
        if n > 1_000_000_000 {
            let at = jiff::Timestamp::from_second(i64::try_from(n).ok()?).ok()?;
            std::time::Duration::try_from(at.duration_since(now)).unwrap_or_default()
        } else {
            std::time::Duration::from_secs(n)
        }
    } else if let Ok(at) = value.parse::<jiff::Timestamp>() {
        std::time::Duration::try_from(at.duration_since(now)).unwrap_or_default()
    } else {
        http::parse_retry_after(value, now)?
    };
    (delay <= std::time::Duration::from_secs(3600)).then_some(delay)
}

fn api_error(reply: Reply, cmdlet: &str) -> ExchangeError {
    let body = ExchangeErrorBody::parse(&reply.body);
    let now = jiff::Timestamp::now();
    let mut retry_after = http::retry_after(&reply.headers, now);
    if retry_after.is_none() && reply.status == StatusCode::TOO_MANY_REQUESTS {
        retry_after = rate_limit_reset(&reply.headers, now);
    }
    ExchangeError::Api {
        status: reply.status.as_u16(),
        cmdlet: cmdlet.to_owned(),
        body,
        retry_after,
        correlation: reply.correlation,
    }
}

/// Runs one call inside its span and records the error code when it fails.
async fn traced<T>(span: Span, call: impl Future<Output = Result<T, ExchangeError>>) -> Result<T, ExchangeError> {
    let result = call.instrument(span.clone()).await;
    if let Err(err) = &result {
        let code = err.code();
        span.record("error.code", code.as_str());
        span.in_scope(|| tracing::debug!(error = %err, "exchange call failed"));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_decide_the_change() {
        let present = vec!["The appropriate access control entry is already present on the object \"CN=finance\" for account \"X\\AlexW\".".to_owned()];
        let absent = vec!["Can't remove the access control entry on the object \"CN=finance\" for the user account because the ACE doesn't exist on the object.".to_owned()];
        let unchanged =
            vec!["The command completed successfully but no settings of 'finance' have been modified.".to_owned()];
        assert_eq!(added(&present), Change::AlreadyPresent);
        assert_eq!(added(&unchanged), Change::AlreadyPresent);
        assert_eq!(added(&[]), Change::Applied);
        assert_eq!(removed(&absent), Change::NotPresent);
        assert_eq!(removed(&unchanged), Change::NotPresent);
        assert_eq!(removed(&["Something else.".to_owned()]), Change::Applied);
    }

    #[test]
    fn folder_identities_and_guids() {
        assert_eq!(folder_identity("finance@contoso.com", "").unwrap(), "finance@contoso.com:\\");
        assert_eq!(folder_identity("finance@contoso.com", "Inbox").unwrap(), "finance@contoso.com:\\Inbox");
        assert_eq!(
            folder_identity("finance@contoso.com", "\\Inbox/Sub\\").unwrap(),
            "finance@contoso.com:\\Inbox\\Sub"
        );
        assert!(folder_identity("finance@contoso.com:\\Inbox", "").is_err());
        assert!(is_guid("5a0c1f00-0000-4000-8000-000000000001"));
        assert!(!is_guid("contoso.onmicrosoft.com"));
        assert!(!is_guid("5a0c1f00000040008000000000000001"));
    }

    #[test]
    fn rate_limit_reset_forms() {
        let now: jiff::Timestamp = "2026-01-22T14:12:37Z".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("rate-limit-reset", "2026-01-22T14:12:47Z".parse().unwrap());
        assert_eq!(rate_limit_reset(&h, now), Some(std::time::Duration::from_secs(10)));
        h.insert("rate-limit-reset", "5".parse().unwrap());
        assert_eq!(rate_limit_reset(&h, now), Some(std::time::Duration::from_secs(5)));
        h.insert("rate-limit-reset", now.as_second().saturating_add(3).to_string().parse().unwrap());
        assert_eq!(rate_limit_reset(&h, now), Some(std::time::Duration::from_secs(3)));
        h.insert("rate-limit-reset", "Thu, 22 Jan 2026 14:12:39 GMT".parse().unwrap());
        assert_eq!(rate_limit_reset(&h, now), Some(std::time::Duration::from_secs(2)));
        h.insert("rate-limit-reset", "2027-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(rate_limit_reset(&h, now), None);
    }
}
