//! The typed configuration of the HTTP edge. Defaults, then whatever the process loader
//! layers on top (file, environment), then [`IngestConfig::validate`], whose messages name
//! the key. Secrets are wrapped in [`Secret`], whose `Debug` never shows them.

use std::collections::HashSet;
use std::net::SocketAddr;

use serde::Deserialize;

pub use grantline_shared::Secret;

/// How ServiceNow (or anything posting our documented payload) authenticates. ServiceNow
/// does not sign outbound requests, so the integrator configures one of these in the REST
/// message: a shared secret header, or an HMAC computed in script.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceNowAuth {
    /// Compared (in constant time) with the `X-Grantline-Secret` header.
    pub shared_secret: Option<Secret>,
    /// Keys the HMAC-SHA256 carried in `X-Grantline-Signature: sha256=<hex>` over
    /// `"{X-Grantline-Timestamp}.{raw body}"`.
    pub hmac_secret: Option<Secret>,
}

/// A bearer token for the decision and admin API, with the id it is known by in the audit
/// trail (`operator:<id>`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorToken {
    pub id: String,
    pub token: Secret,
    /// The operator's own directory identity (object id): a decision the operator records
    /// without naming someone else is theirs, judged like any approver's.
    #[serde(default)]
    pub directory_id: Option<String>,
    /// The operator's UPN, shown on tickets.
    #[serde(default)]
    pub upn: Option<String>,
}

/// Configuration of the HTTP edge.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Listen address (default `127.0.0.1:8080`).
    pub bind: SocketAddr,
    pub servicenow: ServiceNowAuth,
    /// How far (seconds, either way) a signed webhook's timestamp may be from our clock.
    pub replay_window_secs: u64,
    /// The largest request body accepted, in bytes (default 64 KiB).
    pub max_body_bytes: usize,
    /// Bearer tokens for `/v1/requests/...`. Empty: that API refuses everyone.
    pub operator_tokens: Vec<OperatorToken>,
    /// ServiceNow tables a webhook may name (default `["sc_req_item"]`).
    pub allowed_tables: Vec<String>,
    /// The Teams bot (`ingest.teams`): where approval cards' clicks arrive. Unset: the route
    /// refuses every call.
    pub teams: Option<grantline_connectors::teams::BotConfig>,
    /// The Slack app (`ingest.slack`): where approval buttons' clicks arrive.
    pub slack: Option<grantline_connectors::slack::SlackConfig>,
    /// The signed-link approval page and its sign-in (`ingest.web`).
    pub web: Option<crate::web::WebConfig>,
    /// The read-only status page for operators (`ingest.status`).
    pub status: crate::status::StatusConfig,
    /// Time a client has to send a request's headers, from the connection's start or the end
    /// of the previous response (so an idle keep-alive connection is closed after it too).
    pub header_timeout_ms: u64,
    /// Time a client has to send the whole body once its headers are in; later: 408.
    pub body_timeout_ms: u64,
    /// A connection on which no byte moves either way for this long is closed.
    pub idle_timeout_secs: u64,
    /// Connections held at once. At the cap a new connection takes the place of the one that
    /// has waited longest without a request in progress (idle, or still sending its headers);
    /// when every connection is in a request, it is answered 503 and closed.
    pub max_connections: usize,
    /// Connections one client address may hold at once (0: no limit of its own). For an edge
    /// reached directly; behind a proxy every connection has the proxy's address.
    pub max_connections_per_client: usize,
    /// The largest request head (request line and headers) accepted, in bytes; larger: 431.
    /// Also the most the connection buffers of a request at once.
    pub max_header_bytes: usize,
    /// The listen backlog: connections the kernel completes before the edge accepts them
    /// (capped by the kernel's `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// With it, the webhook listener also serves `/metrics` to `Authorization: Bearer <token>`
    /// (and the metrics listener asks for it too); without it `/metrics` is only on
    /// `metrics.bind`.
    pub metrics_token: Option<Secret>,
}

pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_REPLAY_WINDOW_SECS: u64 = 300;
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
/// Shortest secret or token accepted.
pub const MIN_SECRET_LEN: usize = 16;

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            servicenow: ServiceNowAuth::default(),
            replay_window_secs: DEFAULT_REPLAY_WINDOW_SECS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            operator_tokens: Vec::new(),
            allowed_tables: vec!["sc_req_item".to_owned()],
            teams: None,
            slack: None,
            web: None,
            status: crate::status::StatusConfig::default(),
            header_timeout_ms: DEFAULT_HEADER_TIMEOUT_MS,
            body_timeout_ms: DEFAULT_BODY_TIMEOUT_MS,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: 0,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            listen_backlog: DEFAULT_LISTEN_BACKLOG,
            metrics_token: None,
        }
    }
}

/// What is wrong with a configuration: one message per problem, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ingest configuration: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

impl IngestConfig {
    /// Checks the configuration. Deny by default: without a webhook credential nothing
    /// could be authenticated, so that is an error, not an open door.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = self.status.problems();
        let sn = &self.servicenow;
        if sn.shared_secret.is_none() && sn.hmac_secret.is_none() {
            problems.push(
                "ingest.servicenow.shared_secret or ingest.servicenow.hmac_secret must be set: \
                 unauthenticated webhooks are refused"
                    .to_owned(),
            );
        }
        for (key, secret) in
            [("ingest.servicenow.shared_secret", &sn.shared_secret), ("ingest.servicenow.hmac_secret", &sn.hmac_secret)]
        {
            if let Some(s) = secret
                && s.expose().trim().chars().count() < MIN_SECRET_LEN
            {
                problems.push(format!("{key} must be at least {MIN_SECRET_LEN} characters"));
            }
        }
        if !(1..=3600).contains(&self.replay_window_secs) {
            problems.push(format!(
                "ingest.replay_window_secs must be between 1 and 3600 (got {})",
                self.replay_window_secs
            ));
        }
        if !(256..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            problems
                .push(format!("ingest.max_body_bytes must be between 256 and 16777216 (got {})", self.max_body_bytes));
        }
        for (key, v, range) in [
            ("ingest.header_timeout_ms", self.header_timeout_ms, 100..=600_000),
            ("ingest.body_timeout_ms", self.body_timeout_ms, 100..=600_000),
            ("ingest.idle_timeout_secs", self.idle_timeout_secs, 1..=3_600),
            ("ingest.max_connections", self.max_connections as u64, 1..=1_000_000),
            ("ingest.max_connections_per_client", self.max_connections_per_client as u64, 0..=1_000_000),
            ("ingest.max_header_bytes", self.max_header_bytes as u64, 8_192..=1_048_576),
            ("ingest.listen_backlog", u64::from(self.listen_backlog), 1..=65_535),
        ] {
            if !range.contains(&v) {
                problems.push(format!("{key} must be between {} and {} (got {v})", range.start(), range.end()));
            }
        }
        if let Some(t) = &self.metrics_token
            && t.expose().trim().chars().count() < MIN_SECRET_LEN
        {
            problems.push(format!("ingest.metrics_token must be at least {MIN_SECRET_LEN} characters"));
        }
        let mut ids = HashSet::new();
        let mut tokens = HashSet::new();
        for (i, t) in self.operator_tokens.iter().enumerate() {
            let id_ok = !t.id.is_empty()
                && t.id.len() <= 64
                && t.id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
            if !id_ok {
                problems.push(format!("ingest.operator_tokens[{i}].id must be 1-64 characters of [A-Za-z0-9._@-]"));
            } else if !ids.insert(t.id.as_str()) {
                problems.push(format!("ingest.operator_tokens[{i}].id {:?} is used twice", t.id));
            }
            if t.token.expose().chars().count() < MIN_SECRET_LEN {
                problems
                    .push(format!("ingest.operator_tokens[{i}].token must be at least {MIN_SECRET_LEN} characters"));
            } else if !tokens.insert(t.token.expose()) {
                problems.push(format!("ingest.operator_tokens[{i}].token is the same as another operator's token"));
            }
        }
        if self.allowed_tables.is_empty() {
            problems.push("ingest.allowed_tables must name at least one table".to_owned());
        }
        for (i, t) in self.allowed_tables.iter().enumerate() {
            if t.is_empty()
                || t.len() > 80
                || !t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                problems.push(format!("ingest.allowed_tables[{i}] {t:?} is not a table name ([a-z0-9_], at most 80)"));
            }
        }
        if let Some(t) = &self.teams
            && let Err(e) = t.validate()
        {
            problems.push(format!("ingest.{}: {}", e.key, e.reason));
        }
        if let Some(s) = &self.slack {
            if let Err(e) = grantline_connectors::slack::SlackClient::new(s) {
                problems.push(format!("ingest.{}: {}", e.key, e.reason));
            } else if s.signing_secret.expose().trim().chars().count() < MIN_SECRET_LEN {
                problems.push(format!("ingest.slack.signing_secret must be at least {MIN_SECRET_LEN} characters"));
            }
        }
        if let Some(web) = &self.web
            && let Err(e) = web.validate()
        {
            problems.extend(e.0);
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError(problems)) }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn valid() -> IngestConfig {
        IngestConfig {
            servicenow: ServiceNowAuth { shared_secret: Some(Secret::new("a-long-enough-secret")), hmac_secret: None },
            ..IngestConfig::default()
        }
    }

    #[test]
    fn defaults_deny_until_a_webhook_credential_is_set() {
        let c = IngestConfig::default();
        assert_eq!(c.bind.to_string(), DEFAULT_BIND);
        assert_eq!(c.allowed_tables, ["sc_req_item"]);
        let err = c.validate().unwrap_err();
        assert!(err.0[0].contains("ingest.servicenow.shared_secret"), "{err}");
        assert!(valid().validate().is_ok());
    }

    #[test]
    fn messages_name_the_key() {
        let mut c = valid();
        c.servicenow.hmac_secret = Some(Secret::new("short"));
        c.replay_window_secs = 0;
        c.max_body_bytes = 10;
        c.max_header_bytes = 4096;
        c.listen_backlog = 0;
        c.allowed_tables = vec!["Bad Table".into()];
        c.operator_tokens = vec![
            OperatorToken {
                id: "ops".into(),
                token: Secret::new("operator-token-0001"),
                directory_id: None,
                upn: None,
            },
            OperatorToken {
                id: "ops".into(),
                token: Secret::new("operator-token-0001"),
                directory_id: None,
                upn: None,
            },
            OperatorToken { id: "bad id".into(), token: Secret::new("x"), directory_id: None, upn: None },
        ];
        let msg = c.validate().unwrap_err().to_string();
        for key in [
            "ingest.servicenow.hmac_secret",
            "ingest.replay_window_secs",
            "ingest.max_body_bytes",
            "ingest.max_header_bytes",
            "ingest.listen_backlog",
            "ingest.allowed_tables[0]",
            "ingest.operator_tokens[1].id",
            "ingest.operator_tokens[1].token",
            "ingest.operator_tokens[2].id",
            "ingest.operator_tokens[2].token",
        ] {
            assert!(msg.contains(key), "{key} missing from {msg}");
        }
    }

    #[test]
    fn deserialises_with_defaults_and_debug_redacts() {
        let c: IngestConfig = serde_json::from_value(serde_json::json!({
            "servicenow": {"hmac_secret": "hmac-key-hmac-key-1234"},
            "operator_tokens": [{"id": "ops", "token": "operator-token-0001"}]
        }))
        .unwrap();
        assert_eq!(c.replay_window_secs, 300);
        assert_eq!(c.max_body_bytes, 65536);
        assert!(c.validate().is_ok());
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hmac-key-hmac-key-1234") && !dbg.contains("operator-token-0001"), "{dbg}");
        assert!(serde_json::from_value::<IngestConfig>(serde_json::json!({"bnid": "x"})).is_err(), "typos are errors");
    }
}
