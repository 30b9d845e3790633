//! Verifying the Bot Framework token of an inbound activity.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::model::Activity;
use super::{BOT_FRAMEWORK_ISSUER, BotConfig, TeamsError};
use crate::ConfigError;
use crate::http;
use crate::jwt::{DEFAULT_CLOCK_SKEW, JwksCache, JwksConfig, Validation};

/// What the authenticator reads from an activity. Pass the whole activity ([`Activity`] or the
/// parsed JSON) so the caller's identity is filled in; a bare service URL (`&str`) checks the
/// token only, and the [`BotCaller`] then has an empty `from_id` and no `aad_object_id`.
pub trait ActivityIdentity {
    /// The activity's `serviceUrl`.
    fn service_url(&self) -> Option<&str>;
    /// The activity's `channelId` (`msteams`).
    fn channel_id(&self) -> Option<&str> {
        None
    }
    /// `from.id`.
    fn sender_id(&self) -> Option<&str> {
        None
    }
    /// `from.aadObjectId`.
    fn sender_aad_object_id(&self) -> Option<&str> {
        None
    }
}

impl ActivityIdentity for str {
    fn service_url(&self) -> Option<&str> {
        Some(self)
    }
}

impl ActivityIdentity for String {
    fn service_url(&self) -> Option<&str> {
        Some(self)
    }
}

impl ActivityIdentity for Activity {
    fn service_url(&self) -> Option<&str> {
        Some(&self.service_url)
    }
    fn channel_id(&self) -> Option<&str> {
        self.channel_id.as_deref()
    }
    fn sender_id(&self) -> Option<&str> {
        Some(&self.from.id)
    }
    fn sender_aad_object_id(&self) -> Option<&str> {
        self.from.aad_object_id.as_deref()
    }
}

impl ActivityIdentity for Value {
    fn service_url(&self) -> Option<&str> {
        self.get("serviceUrl").and_then(Value::as_str)
    }
    fn channel_id(&self) -> Option<&str> {
        self.get("channelId").and_then(Value::as_str)
    }
    fn sender_id(&self) -> Option<&str> {
        self.pointer("/from/id").and_then(Value::as_str)
    }
    fn sender_aad_object_id(&self) -> Option<&str> {
        self.pointer("/from/aadObjectId").and_then(Value::as_str)
    }
}

/// Who sent a verified activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotCaller {
    /// The user's Entra object id (`from.aadObjectId`): authorize the approver by this.
    pub aad_object_id: Option<String>,
    /// The user's Teams id (`from.id`).
    pub from_id: String,
    /// The verified service URL (for replies and card updates).
    pub service_url: String,
}

/// Verifies inbound activities. Cloning shares the key cache.
#[derive(Clone)]
pub struct BotAuthenticator {
    jwks: JwksCache,
    app_id: String,
    skew: Duration,
}

impl fmt::Debug for BotAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotAuthenticator").field("app_id", &self.app_id).field("jwks", &self.jwks).finish()
    }
}

/// `https://host/path/` and `https://HOST/path` are the same service URL.
fn same_service_url(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim().trim_end_matches('/').to_ascii_lowercase();
    !a.trim().is_empty() && norm(a) == norm(b)
}

impl BotAuthenticator {
    /// An authenticator with its own HTTP client.
    pub fn new(config: &BotConfig) -> Result<Self, ConfigError> {
        let http = http::build_client(&config.http)?;
        Self::from_parts(config, http)
    }

    /// An authenticator that fetches keys through `http`, with the default clock skew
    /// (5 minutes) and key cache (24 hours, refetch on an unknown key at most once a minute).
    pub fn from_parts(config: &BotConfig, http: reqwest::Client) -> Result<Self, ConfigError> {
        Self::with_options(config, http, DEFAULT_CLOCK_SKEW, JwksConfig::default())
    }

    /// As [`BotAuthenticator::from_parts`], with another clock skew and key cache.
    pub fn with_options(
        config: &BotConfig,
        http: reqwest::Client,
        clock_skew: Duration,
        jwks: JwksConfig,
    ) -> Result<Self, ConfigError> {
        let metadata = config.validate_inbound()?;
        Ok(Self {
            jwks: JwksCache::new(http, metadata, jwks),
            app_id: config.app_id.trim().to_owned(),
            skew: clock_skew,
        })
    }

    /// The key cache (for its fetch count, or to share it).
    pub fn jwks(&self) -> &JwksCache {
        &self.jwks
    }

    /// Checks an inbound activity's `Authorization` header at `now`: a bearer token issued by
    /// `https://api.botframework.com` for our app id, signed by a published key, in its
    /// validity window (with the clock skew), whose `serviceurl` claim is the activity's
    /// `serviceUrl`, and whose key is endorsed for the activity's channel (when the activity
    /// names one and the key lists endorsements).
    pub async fn verify<A: ActivityIdentity + ?Sized>(
        &self,
        authorization_header: Option<&str>,
        activity: &A,
        now: Timestamp,
    ) -> Result<BotCaller, TeamsError> {
        let span = tracing::info_span!("teams.verify_activity", error.code = tracing::field::Empty);
        let result = span.in_scope(|| self.bearer(authorization_header));
        let result = match result {
            Ok(token) => self.check(token, activity, now).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            let code = e.code();
            span.record("error.code", code.as_str());
            span.in_scope(|| tracing::debug!(error = %e, "inbound activity refused"));
        }
        result
    }

    fn bearer<'a>(&self, header: Option<&'a str>) -> Result<&'a str, TeamsError> {
        let header = header.map(str::trim).filter(|h| !h.is_empty()).ok_or(TeamsError::MissingAuthorization)?;
        match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                Ok(token.trim())
            }
            _ => Err(TeamsError::Unauthenticated(crate::jwt::JwtError::Malformed {
                reason: "the Authorization header is not a bearer token".to_owned(),
            })),
        }
    }

    async fn check<A: ActivityIdentity + ?Sized>(
        &self,
        token: &str,
        activity: &A,
        now: Timestamp,
    ) -> Result<BotCaller, TeamsError> {
        let validation = Validation::new(BOT_FRAMEWORK_ISSUER, &self.app_id).with_skew(self.skew);
        let verified = self.jwks.verify(token, &validation, now).await.map_err(TeamsError::Unauthenticated)?;
        let claim = verified.claims.get_str("serviceurl").unwrap_or("");
        let service_url = activity.service_url().unwrap_or("");
        if !same_service_url(claim, service_url) {
            return Err(TeamsError::ServiceUrlMismatch { claim: claim.to_owned(), activity: service_url.to_owned() });
        }
        if let (Some(channel), Some(endorsements)) = (activity.channel_id(), &verified.key.endorsements)
            && !endorsements.iter().any(|e| e.eq_ignore_ascii_case(channel))
        {
            return Err(TeamsError::KeyNotEndorsed { channel: channel.to_owned() });
        }
        Ok(BotCaller {
            aad_object_id: activity.sender_aad_object_id().map(str::to_owned),
            from_id: activity.sender_id().unwrap_or("").to_owned(),
            service_url: service_url.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_compare_without_case_or_trailing_slash() {
        assert!(same_service_url("https://smba.trafficmanager.net/emea/", "https://SMBA.trafficmanager.net/emea"));
        assert!(!same_service_url("https://smba.trafficmanager.net/emea/", "https://smba.trafficmanager.net/amer/"));
        assert!(!same_service_url("", ""));
    }

    #[test]
    fn identities_from_each_source() {
        let v = serde_json::json!({ "serviceUrl": "s", "channelId": "msteams", "from": { "id": "29:1", "aadObjectId": "o" } });
        assert_eq!(
            (v.service_url(), v.channel_id(), v.sender_id(), v.sender_aad_object_id()),
            (Some("s"), Some("msteams"), Some("29:1"), Some("o"))
        );
        assert_eq!("s".service_url(), Some("s"));
        assert_eq!("s".sender_id(), None);
    }
}
