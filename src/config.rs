//! One typed configuration per process: defaults, then an optional TOML file, then
//! environment variables `GRANTLINE__SECTION__KEY` (double underscore nests), then
//! validation with messages that name the key. Secrets are never printed.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use grantline_connectors::{GraphConfig, ServiceNowConfig};
use grantline_queue::{QueueConfig, RetryPolicy};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// redis://host:port/db
    pub redis_url: String,
    pub queue: QueueSettings,
    pub workers: WorkerSettings,
    pub policy: PolicySettings,
    pub ingest: grantline_ingest::IngestConfig,
    pub graph: Option<GraphConfig>,
    pub servicenow: Option<ServiceNowConfig>,
    /// Exchange Online, for mailbox permissions (without it, mailbox requests cannot execute).
    pub exchange: Option<grantline_connectors::ExchangeConfig>,
    /// Shared budgets and batching of the executors.
    pub executors: grantline_workers::ExecutorSettings,
    /// How approvers are asked (the bot and the Slack app are `ingest.teams` / `ingest.slack`).
    pub notify: grantline_workers::channels::NotifySettings,
    /// Who is paged about dead letters, by job kind and severity.
    pub paging: grantline_workers::paging::PagingSettings,
    /// The operator the `requests` commands act as (audited as `operator:<identity>`).
    pub operator: OperatorSettings,
    /// The scheduler's directory sweeps: leavers (users delta) and drift.
    pub offboarding: OffboardingSettings,
    /// Every role's own `/metrics` listener.
    pub metrics: MetricsSettings,
    /// What Redis keeps of finished requests, and the archive of their audit trails.
    pub retention: crate::retention::RetentionSettings,
}

/// `[metrics]`: the listener on which each process (the edge, every worker, the scheduler, or
/// `grantline run` for all three) serves `/metrics` and `/healthz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// `metrics.enabled`: serve the listener (default true).
    pub enabled: bool,
    /// `metrics.bind`: its address, loopback by default so that nothing is exposed unless asked
    /// (`0.0.0.0:9464` in a pod; port 0 takes any free port). A scrape needs
    /// `ingest.metrics_token` as a bearer token when that is set.
    pub bind: std::net::SocketAddr,
}

pub const DEFAULT_METRICS_BIND: std::net::SocketAddr =
    std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9464));

impl Default for MetricsSettings {
    fn default() -> Self {
        Self { enabled: true, bind: DEFAULT_METRICS_BIND }
    }
}

/// `[offboarding]`: how often the scheduler asks for the directory sweeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OffboardingSettings {
    /// `offboarding.directory_sweep_secs`: the users delta is read this often for people
    /// disabled, deleted or past their leave date (0: off). Default 900.
    pub directory_sweep_secs: u64,
    /// `offboarding.reconcile_secs`: active grants and governed groups are compared with the
    /// directory this often (0: off). Default 3600.
    pub reconcile_secs: u64,
}

impl Default for OffboardingSettings {
    fn default() -> Self {
        Self { directory_sweep_secs: 900, reconcile_secs: 3600 }
    }
}

/// `[operator]`: the identity of whoever runs the operator commands of this configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorSettings {
    /// `operator.identity`: a name or UPN (`alice@contoso.com`); required by `requests cancel`,
    /// `revoke` and `extend`, which refuse to act for nobody.
    pub identity: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379/".into(),
            queue: QueueSettings::default(),
            workers: WorkerSettings::default(),
            policy: PolicySettings::default(),
            ingest: grantline_ingest::IngestConfig::default(),
            graph: None,
            servicenow: None,
            exchange: None,
            executors: grantline_workers::ExecutorSettings::default(),
            notify: grantline_workers::channels::NotifySettings::default(),
            paging: grantline_workers::paging::PagingSettings::default(),
            operator: OperatorSettings::default(),
            offboarding: OffboardingSettings::default(),
            metrics: MetricsSettings::default(),
            retention: crate::retention::RetentionSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    pub namespace: String,
    pub lease_ms: u64,
    pub completed_retention_secs: u64,
    pub dead_retention_days: Option<u64>,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        let q = QueueConfig::default();
        let r = RetryPolicy::default();
        Self {
            namespace: q.namespace,
            lease_ms: q.lease.as_millis() as u64,
            completed_retention_secs: q.completed_retention.as_secs(),
            dead_retention_days: q.dead_retention.map(|d| d.as_secs() / 86_400),
            max_attempts: r.max_attempts,
            backoff_base_ms: r.base.as_millis() as u64,
            backoff_cap_ms: r.cap.as_millis() as u64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub shutdown_timeout_secs: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self { concurrency: 16, shutdown_timeout_secs: 30 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    pub path: String,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self { path: "deploy/policy.toml".into() }
    }
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut tree = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            tree = text.parse::<toml::Table>().with_context(|| format!("parsing {}", path.display()))?;
        }
        overlay_env(&mut tree, std::env::vars())?;
        let cfg: Config = toml::Value::Table(tree).try_into().context("configuration")?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if !self.redis_url.starts_with("redis://")
            && !self.redis_url.starts_with("rediss://")
            && !self.redis_url.starts_with(grantline_queue::CLUSTER_SCHEME)
        {
            bail!(
                "redis_url: {:?} must start with redis://, rediss:// or {}",
                redacted_url(&self.redis_url),
                grantline_queue::CLUSTER_SCHEME
            );
        }
        if self.workers.concurrency == 0 {
            bail!("workers.concurrency must be at least 1");
        }
        self.queue_config().validate().map_err(anyhow::Error::msg)?;
        self.executors.validate().map_err(anyhow::Error::msg)?;
        self.notify.validate().map_err(anyhow::Error::msg)?;
        self.paging.validate().map_err(anyhow::Error::msg)?;
        self.retention.validate()?;
        if self
            .paging
            .destinations
            .values()
            .any(|d| matches!(d, grantline_workers::paging::Destination::SlackChannel { .. }))
            && self.ingest.slack.is_none()
        {
            bail!("paging.destinations: a slack_channel destination needs the Slack app (ingest.slack)");
        }
        Ok(())
    }

    /// The scheduler's options: its sweeps as configured, on the system clock.
    pub fn scheduler_options(&self) -> grantline_scheduler::SchedulerOptions {
        let every = |secs: u64| (secs > 0).then(|| Duration::from_secs(secs));
        grantline_scheduler::SchedulerOptions {
            directory_sweep_every: every(self.offboarding.directory_sweep_secs),
            reconcile_every: every(self.offboarding.reconcile_secs),
            ..Default::default()
        }
    }

    pub fn queue_config(&self) -> QueueConfig {
        let q = &self.queue;
        let lease = Duration::from_millis(q.lease_ms);
        QueueConfig {
            namespace: q.namespace.clone(),
            lease,
            renew_every: lease / 4,
            completed_retention: Duration::from_secs(q.completed_retention_secs),
            dead_retention: q.dead_retention_days.map(|d| Duration::from_secs(d * 86_400)),
            default_retry: RetryPolicy {
                max_attempts: q.max_attempts,
                base: Duration::from_millis(q.backoff_base_ms),
                cap: Duration::from_millis(q.backoff_cap_ms),
                max_wait: Duration::from_secs(self.executors.max_wait_secs),
            },
            dead_letter_queue: Some(grantline_shared::JobKind::Alert.as_str().into()),
            retry: self.paging_retry(),
            ..QueueConfig::default()
        }
    }
}

impl Config {
    /// Alerts and their resolves keep trying through an on-call tool's outage
    /// (`paging.max_attempts`, backoff capped at ten minutes at least).
    fn paging_retry(&self) -> std::collections::HashMap<String, RetryPolicy> {
        let q = &self.queue;
        let base = RetryPolicy {
            max_attempts: q.max_attempts,
            base: Duration::from_millis(q.backoff_base_ms),
            cap: Duration::from_millis(q.backoff_cap_ms),
            max_wait: Duration::from_secs(self.executors.max_wait_secs),
        };
        let policy = self.paging.retry_policy(&base);
        [grantline_shared::JobKind::Alert, grantline_shared::JobKind::ResolveAlert]
            .into_iter()
            .map(|k| (k.as_str().to_owned(), policy.clone()))
            .collect()
    }
}

/// `GRANTLINE__QUEUE__LEASE_MS=5000` sets `queue.lease_ms`. Values are parsed as TOML
/// scalars when they parse (numbers, booleans), else taken as strings.
pub fn overlay_env(tree: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) -> Result<()> {
    for (k, v) in vars {
        let Some(path) = k.strip_prefix("GRANTLINE__") else { continue };
        let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let value = format!("v = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(v));
        let mut node = &mut *tree;
        for (i, part) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                node.insert(part.clone(), value.clone());
            } else {
                let entry = node.entry(part.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                node = match entry {
                    toml::Value::Table(t) => t,
                    _ => bail!("{k}: {part} is not a section"),
                };
            }
        }
    }
    Ok(())
}

/// A Redis URL with its password (if any) masked, for messages.
pub fn redacted_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') { format!("{user}:***") } else { "***".to_owned() };
            format!("{}{masked}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_passwords_never_reach_messages() {
        assert_eq!(redacted_url("redis://:s3cret@r:6379/0"), "redis://:***@r:6379/0");
        assert_eq!(redacted_url("redis://app:s3cret@r:6379/"), "redis://app:***@r:6379/");
        assert_eq!(redacted_url("redis+cluster://tok@a:1,b:2/"), "redis+cluster://***@a:1,b:2/");
        assert_eq!(redacted_url("redis://r:6379/"), "redis://r:6379/");
        let cfg = Config { redis_url: "http://:hunter2@x/".into(), ..Config::default() };
        let msg = cfg.validate().unwrap_err().to_string();
        assert!(!msg.contains("hunter2") && msg.contains("redis_url"), "{msg}");
    }

    #[test]
    fn the_example_configuration_loads_with_every_key() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grantline.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let tree = text.parse::<toml::Table>().unwrap();
        let cfg: Config = toml::Value::Table(tree).try_into().unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.queue.lease_ms, QueueSettings::default().lease_ms, "the example documents the defaults");
        assert!(cfg.graph.is_some() && cfg.servicenow.is_some());
        assert!(cfg.paging.enabled() && cfg.paging.destinations.len() == 4, "the example routes paging");
        assert_eq!(cfg.queue_config().retry_policy("alert").max_attempts, cfg.paging.max_attempts);
        cfg.ingest.validate().unwrap();
    }

    #[test]
    fn paging_validation_names_the_key() {
        let load = |text: &str| -> Result<Config> {
            let cfg: Config = toml::Value::Table(text.parse::<toml::Table>()?).try_into()?;
            cfg.validate()?;
            Ok(cfg)
        };
        let pd = "[paging]\ndefault = [\"oncall\"]\n[paging.destinations.oncall]\ntype = \"pagerduty\"\n";
        let err = load(&format!("{pd}routing_key = \"too-short\"\n")).unwrap_err().to_string();
        assert!(err.contains("paging.destinations.oncall.routing_key") && !err.contains("too-short"), "{err}");
        let ok = load(&format!("{pd}routing_key = \"{}\"\n", "k".repeat(32))).unwrap();
        assert_eq!(ok.paging.route("execute-grant", grantline_connectors::pagerduty::Severity::Error), ["oncall"]);
        let slack =
            "[paging]\ndefault = [\"desk\"]\n[paging.destinations.desk]\ntype = \"slack_channel\"\nchannel = \"#sd\"\n";
        let err = load(slack).unwrap_err().to_string();
        assert!(err.contains("ingest.slack"), "{err}");
    }

    #[test]
    fn env_overrides_nest_and_validation_names_the_key() {
        let mut t = toml::Table::new();
        overlay_env(
            &mut t,
            [
                ("GRANTLINE__QUEUE__LEASE_MS".to_owned(), "5000".to_owned()),
                ("GRANTLINE__REDIS_URL".to_owned(), "redis://10.0.0.1:6379/".to_owned()),
                ("OTHER".to_owned(), "x".to_owned()),
            ]
            .into_iter(),
        )
        .unwrap();
        let c: Config = toml::Value::Table(t).try_into().unwrap();
        assert_eq!(c.queue.lease_ms, 5000);
        assert_eq!(c.redis_url, "redis://10.0.0.1:6379/");
        let bad = Config { redis_url: "http://x".into(), ..Config::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("redis_url"));
        let bad = Config { workers: WorkerSettings { concurrency: 0, ..Default::default() }, ..Config::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("workers.concurrency"));
    }
}
