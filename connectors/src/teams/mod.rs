//! Microsoft Teams approvals: Adaptive Cards sent proactively through the Bot Connector API,
//! clicks received as `adaptiveCard/action` invokes whose Bot Framework token is verified, and
//! display-only cards posted to a channel through a Workflows webhook.
//!
//! - [`BotConnectorClient`]: `POST {serviceUrl}/v3/conversations` (a 1:1 conversation with a
//!   user by Entra object id), `POST …/conversations/{id}/activities` (send a card) and
//!   `PUT …/activities/{activityId}` (replace it). Tokens come from the identity platform for
//!   the resource `https://api.botframework.com` (client credentials of the single-tenant bot
//!   app); a `401` refreshes the token once. The service URL must be `http(s)` and start with
//!   one of `allowed_service_urls`, so an activity can never make the bot send its token
//!   elsewhere.
//! - [`BotAuthenticator`]: checks the `Authorization` header of an inbound activity: an RS256
//!   token issued by `https://api.botframework.com` for our app id, signed by a key from the
//!   Bot Framework OpenID metadata (cached, see [`crate::jwt`]), within the clock skew, whose
//!   `serviceurl` claim equals the activity's `serviceUrl` and whose key is endorsed for the
//!   activity's channel when the key lists endorsements.
//! - [`TeamsChannelClient`]: `POST` to a Workflows webhook URL (its `sig` is the credential, so
//!   the URL is a [`Secret`](crate::Secret) and never appears in errors or spans).
//!
//! Every call runs in a span (`teams.create_conversation`, `teams.send_card`,
//! `teams.update_card`, `teams.post_channel_card`) with `http.method`, `url.path`,
//! `http.status_code`, `client_request_id`, `request_id` (the service's `MS-CV` or
//! `x-ms-workflow-run-id`) and, on failure, `error.code`. Failures follow the status table of
//! [`crate::http`].

mod auth;
mod channel;
mod client;
mod error;
mod model;

use serde::Deserialize;
use url::Url;

pub use auth::{ActivityIdentity, BotAuthenticator, BotCaller};
pub use channel::TeamsChannelClient;
pub use client::BotConnectorClient;
pub use error::{BotErrorBody, TeamsError};
pub use model::{
    ADAPTIVE_CARD_CONTENT_TYPE, ActionExecute, Activity, ChannelAccount, ConversationAccount, invoke_card_response,
    invoke_error_response, invoke_message_response,
};

use crate::http::{self, HttpConfig};
use crate::token::EntraTokenConfig;
use crate::{ConfigError, Secret};

/// The resource of Bot Connector tokens (the scope sent is `https://api.botframework.com/.default`).
pub const BOT_FRAMEWORK_RESOURCE: &str = "https://api.botframework.com";
/// The issuer of the tokens the channel sends with activities.
pub const BOT_FRAMEWORK_ISSUER: &str = "https://api.botframework.com";
/// Where the Bot Framework publishes its OpenID metadata.
pub const DEFAULT_OPENID_METADATA_URL: &str = "https://login.botframework.com/v1/.well-known/openidconfiguration";
/// The service URL prefix Teams uses.
pub const DEFAULT_SERVICE_URL_PREFIX: &str = "https://smba.trafficmanager.net/";

/// Configuration of the Teams bot. In configuration files this is the `teams` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotConfig {
    /// The bot's Microsoft App ID (its Entra app registration).
    pub app_id: String,
    /// The bot app's client secret.
    pub app_secret: Secret,
    /// The tenant of the single-tenant bot (id or domain); Bot Connector tokens come from it.
    pub tenant: String,
    /// The identity platform authority host: `https://login.microsoftonline.com`.
    pub authority: String,
    /// The Bot Framework OpenID metadata document (channel token keys).
    pub openid_metadata_url: String,
    /// Service URLs the bot may call, by prefix (`https://smba.trafficmanager.net/`).
    pub allowed_service_urls: Vec<String>,
    pub http: HttpConfig,
}

impl Default for BotConfig {
    fn default() -> Self {
        Self {
            app_id: String::new(),
            app_secret: Secret::default(),
            tenant: String::new(),
            authority: "https://login.microsoftonline.com".to_owned(),
            openid_metadata_url: DEFAULT_OPENID_METADATA_URL.to_owned(),
            allowed_service_urls: vec![DEFAULT_SERVICE_URL_PREFIX.to_owned()],
            http: HttpConfig::default(),
        }
    }
}

impl BotConfig {
    /// Checks every key, naming the first bad one (`teams.app_id`, ...).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_inbound()?;
        self.validate_outbound()?;
        Ok(())
    }

    /// What verifying inbound activities needs: the app id and the metadata URL.
    fn validate_inbound(&self) -> Result<Url, ConfigError> {
        if self.app_id.trim().is_empty() {
            return Err(ConfigError::new("teams.app_id", "must be set"));
        }
        let url = Url::parse(self.openid_metadata_url.trim())
            .map_err(|e| ConfigError::new("teams.openid_metadata_url", format!("not a URL: {e}")))?;
        if (url.scheme() != "https" && url.scheme() != "http") || url.host_str().is_none() {
            return Err(ConfigError::new("teams.openid_metadata_url", "must be an absolute http(s) URL"));
        }
        Ok(url)
    }

    /// What sending cards needs: the credentials, the tenant and the allow-list.
    fn validate_outbound(&self) -> Result<Vec<String>, ConfigError> {
        if self.app_secret.is_empty() {
            return Err(ConfigError::new("teams.app_secret", "must be set"));
        }
        if self.tenant.trim().is_empty() {
            return Err(ConfigError::new("teams.tenant", "must be set"));
        }
        http::parse_base_url("teams.authority", &self.authority)?;
        if self.allowed_service_urls.is_empty() {
            return Err(ConfigError::new("teams.allowed_service_urls", "must list at least one URL prefix"));
        }
        self.allowed_service_urls.iter().map(|p| normalize_prefix(p)).collect()
    }

    /// The client-credentials grant for Bot Connector tokens.
    pub fn token_config(&self) -> EntraTokenConfig {
        EntraTokenConfig {
            authority: self.authority.clone(),
            tenant: self.tenant.clone(),
            client_id: self.app_id.clone(),
            client_secret: self.app_secret.clone(),
            resource: BOT_FRAMEWORK_RESOURCE.to_owned(),
            ..EntraTokenConfig::default()
        }
    }
}

/// An allow-list entry as a URL string ending in `/`, so `https://a.net` cannot admit
/// `https://a.net.evil.example/`.
fn normalize_prefix(prefix: &str) -> Result<String, ConfigError> {
    let url = Url::parse(prefix.trim())
        .map_err(|e| ConfigError::new("teams.allowed_service_urls", format!("{prefix:?} is not a URL: {e}")))?;
    if (url.scheme() != "https" && url.scheme() != "http") || url.host_str().is_none() {
        return Err(ConfigError::new("teams.allowed_service_urls", format!("{prefix:?} is not an http(s) URL")));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(ConfigError::new("teams.allowed_service_urls", format!("{prefix:?} must be a plain URL prefix")));
    }
    let mut s = url.to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    Ok(s)
}
