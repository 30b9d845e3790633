//! Exchange Online shared-mailbox permissions: Full Access, Send As, Send on Behalf and folder
//! roles (read-only = `Reviewer`), through the admin REST endpoint the ExchangeOnlineManagement
//! module uses (`POST /adminapi/beta/{tenant}/InvokeCommand`, one cmdlet per call). Microsoft
//! does not document that endpoint; the v2.0 admin API covers only send-on-behalf and folder
//! roles, not Full Access or Send As.
//!
//! Every call sends a bearer token for `https://outlook.office365.com` (refreshed and repeated
//! once on a `401`), `X-AnchorMailbox: UPN:<mailbox>` (or the configured anchor, or the
//! tenant's system mailbox), a fresh `client-request-id`, the client's `connection-id` and
//! `Prefer: odata.maxpagesize=1000`, follows `@odata.nextLink` for `Get-*` cmdlets (same body,
//! same host only), and runs in its own span (`exchange.add_full_access`, ...) with
//! `exchange.cmdlet`, `http.status_code`, `request_id`, `client_request_id` and, on failure,
//! `error.code`. Results and errors carry a [`Correlation`].
//!
//! Idempotency: Exchange answers a write that changes nothing with 200 and a warning ("already
//! present", "the ACE doesn't exist", "no settings … have been modified"); those are
//! [`Change::AlreadyPresent`] and [`Change::NotPresent`]. Folder permissions fail instead of
//! warning; the client turns an existing identical entry and a missing one into the same two
//! outcomes. Changes can take a while to show in Outlook; `Get-*` is the server-side truth.

mod client;
mod error;
mod model;

use serde::{Deserialize, Deserializer};

pub use client::ExchangeClient;
pub use error::{ExchangeError, ExchangeErrorBody};
pub use model::{Change, Delegate, FolderPermission, Mailbox, MailboxPermission, RecipientPermission, names_user};

use crate::ConfigError;
pub use crate::graph::{Correlated, Correlation};
use crate::http::HttpConfig;
use crate::token::EntraTokenConfig;

/// The Exchange Online resource: the token audience and the default base URL.
pub const EXCHANGE_RESOURCE: &str = "https://outlook.office365.com";

/// Configuration of an [`ExchangeClient`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExchangeConfig {
    /// The service root: `https://outlook.office365.com` (GCC High `https://outlook.office365.us`).
    pub base_url: String,
    /// The tenant id (a GUID: Exchange refuses a domain in the path).
    pub tenant_id: String,
    /// The client-credentials grant. `resource` defaults to `https://outlook.office365.com` and
    /// `tenant` to `tenant_id`.
    #[serde(deserialize_with = "exchange_token")]
    pub token: EntraTokenConfig,
    /// Timeouts (shared by Exchange calls and token requests).
    pub http: HttpConfig,
    /// A fixed `X-AnchorMailbox` for every call (for example
    /// `APP:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@<tenant id>`). Unset: the mailbox
    /// the call is about (`UPN:<mailbox>`), or the system mailbox when there is none.
    pub anchor: Option<String>,
}

fn exchange_token_default() -> EntraTokenConfig {
    EntraTokenConfig { resource: EXCHANGE_RESOURCE.to_owned(), ..EntraTokenConfig::default() }
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            base_url: EXCHANGE_RESOURCE.to_owned(),
            tenant_id: String::new(),
            token: exchange_token_default(),
            http: HttpConfig::default(),
            anchor: None,
        }
    }
}

/// The token section, with `resource` defaulting to Exchange rather than Graph when the section
/// is present but does not name one.
fn exchange_token<'de, D: Deserializer<'de>>(d: D) -> Result<EntraTokenConfig, D::Error> {
    let mut value = serde_json::Value::deserialize(d)?;
    if let serde_json::Value::Object(map) = &mut value {
        map.entry("resource").or_insert_with(|| serde_json::Value::String(EXCHANGE_RESOURCE.to_owned()));
    }
    serde_json::from_value(value).map_err(serde::de::Error::custom)
}

impl ExchangeConfig {
    /// Checks the values an [`ExchangeClient`] needs, naming the key that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::http::parse_base_url("exchange.base_url", &self.base_url)?;
        if !client::is_guid(self.tenant_id.trim()) {
            return Err(ConfigError::new(
                "exchange.tenant_id",
                "must be the tenant id, a GUID such as 5a0c1f00-0000-4000-8000-000000000001 (a domain is refused by Exchange)",
            ));
        }
        let resource = self.token.resource.trim().trim_end_matches('/');
        if resource.eq_ignore_ascii_case("https://graph.microsoft.com") {
            return Err(ConfigError::new(
                "exchange.token.resource",
                "is the Graph resource; Exchange needs a token for https://outlook.office365.com",
            ));
        }
        Ok(())
    }
}
