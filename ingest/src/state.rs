//! What every handler shares: the queue, the configuration, a clock and the counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use grantline_connectors::GraphClient;
use grantline_queue::Queue;

use crate::config::IngestConfig;

pub use grantline_shared::Clock;

/// The state of the router. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub queue: Queue,
    pub cfg: Arc<IngestConfig>,
    pub clock: Clock,
    pub metrics: Arc<IngestMetrics>,
    /// The directory, read (never written) to prove who an approver is: their object id and
    /// UPN, and the approver groups they belong to.
    pub directory: Option<GraphClient>,
    /// The Teams bot endpoint, when configured.
    pub teams: Option<Arc<crate::teams::TeamsDoor>>,
    /// The Slack interactivity endpoint, when configured.
    pub slack: Option<Arc<crate::slack::SlackDoor>>,
    /// The signed-link approval page, when configured.
    pub web: Option<Arc<crate::web::WebDoor>>,
    /// The policy file extensions are checked against (read at each extension, so it is the
    /// file in force).
    pub policy_file: Option<Arc<std::path::PathBuf>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("queue", &self.queue).field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl AppState {
    /// State with the wall clock and fresh counters.
    pub fn new(queue: Queue, cfg: IngestConfig) -> Self {
        Self {
            queue,
            cfg: Arc::new(cfg),
            clock: Clock::system(),
            metrics: Arc::default(),
            directory: None,
            teams: None,
            slack: None,
            web: None,
            policy_file: None,
        }
    }

    /// Checks operator extensions against this policy file.
    pub fn with_policy_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.policy_file = Some(Arc::new(path.into()));
        self
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Serves the signed-link approval page (`/v1/approvals/{token}`, `/v1/auth/callback`)
    /// with this door.
    pub fn with_web(mut self, door: Arc<crate::web::WebDoor>) -> Self {
        self.web = Some(door);
        self
    }

    /// Reads approvers' identities from this directory.
    pub fn with_directory(mut self, graph: GraphClient) -> Self {
        self.directory = Some(graph);
        self
    }

    /// Answers Teams approval card clicks at `POST /v1/teams/messages` with this door.
    pub fn with_teams(mut self, door: Arc<crate::teams::TeamsDoor>) -> Self {
        self.teams = Some(door);
        self
    }

    /// Answers Slack approval button clicks at `POST /v1/slack/interactions` with this door.
    pub fn with_slack(mut self, door: Arc<crate::slack::SlackDoor>) -> Self {
        self.slack = Some(door);
        self
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

/// What happened to one webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A new request was stored with its first job.
    Accepted,
    /// The ticket was known: the existing request id was returned, nothing written.
    Duplicate,
    /// Refused (4xx) with a stable code.
    Rejected,
    /// Failed on our side (5xx): nothing was accepted.
    Error,
}

impl WebhookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Accepted => "accepted",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Rejected => "rejected",
            WebhookOutcome::Error => "error",
        }
    }
}

/// The counters of this process, rendered at `/metrics`.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    accepted: AtomicU64,
    duplicate: AtomicU64,
    rejected: AtomicU64,
    error: AtomicU64,
    rejected_by_code: Mutex<BTreeMap<&'static str, u64>>,
}

impl IngestMetrics {
    pub fn record_webhook(&self, outcome: WebhookOutcome) {
        let c = match outcome {
            WebhookOutcome::Accepted => &self.accepted,
            WebhookOutcome::Duplicate => &self.duplicate,
            WebhookOutcome::Rejected => &self.rejected,
            WebhookOutcome::Error => &self.error,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused request (any route) by its error code.
    pub fn record_rejection(&self, code: &'static str) {
        if let Ok(mut m) = self.rejected_by_code.lock() {
            *m.entry(code).or_insert(0) += 1;
        }
    }

    /// Webhook deliveries by outcome.
    pub fn webhooks(&self, outcome: WebhookOutcome) -> u64 {
        let c = match outcome {
            WebhookOutcome::Accepted => &self.accepted,
            WebhookOutcome::Duplicate => &self.duplicate,
            WebhookOutcome::Rejected => &self.rejected,
            WebhookOutcome::Error => &self.error,
        };
        c.load(Ordering::Relaxed)
    }

    /// Refusals by code.
    pub fn rejections(&self) -> BTreeMap<&'static str, u64> {
        self.rejected_by_code.lock().map(|m| m.clone()).unwrap_or_default()
    }
}
