//! What every handler gets: the queue, the connectors and executors, the policy in force and
//! the clock.

use std::sync::{Arc, RwLock};

use grantline_connectors::{ExchangeClient, GraphClient, ServiceNowClient};
use grantline_queue::Queue;
use grantline_shared::policy::Policy;
use serde::Deserialize;

use crate::budget::{Budget, BudgetConfig};
use crate::channels::Channels;
use crate::executor::group::GroupOptions;
use crate::executor::{Executors, GroupExecutor, MailboxExecutor};
use crate::paging::Pager;

pub use grantline_shared::Clock;

/// The policy in force; replaced whole on reload, so a handler sees one version throughout.
#[derive(Clone)]
pub struct PolicyHandle(Arc<RwLock<Arc<Policy>>>);

impl PolicyHandle {
    pub fn new(p: Policy) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(p))))
    }
    pub fn get(&self) -> Arc<Policy> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
    pub fn set(&self, p: Policy) {
        match self.0.write() {
            Ok(mut g) => *g = Arc::new(p),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(p),
        }
    }
}

/// How the executors call the directory: the shared budgets and batching.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorSettings {
    /// Microsoft Graph budgets per tenant and app (documented limits by default).
    pub graph_budget: BudgetConfig,
    /// Exchange Online budgets per tenant and app (about 2 write cmdlets per second).
    pub exchange_budget: BudgetConfig,
    /// Share one Graph call between requests for the same group that are ready together.
    pub batch: bool,
    /// How long the first request of a batch waits for others (ms).
    pub batch_linger_ms: u64,
    /// How long a request may wait for its tenant's budget before it goes to manual
    /// intervention (seconds).
    pub max_wait_secs: u64,
    /// How long after a request was made a user, group or mailbox the grant's write is told
    /// does not exist is retried as not yet replicated before it counts as not found (seconds;
    /// 0: at once).
    pub not_found_grace_secs: u64,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        Self {
            graph_budget: BudgetConfig::graph(),
            exchange_budget: BudgetConfig::exchange(),
            batch: true,
            batch_linger_ms: 20,
            max_wait_secs: 24 * 3600,
            not_found_grace_secs: 300,
        }
    }
}

impl ExecutorSettings {
    pub fn validate(&self) -> Result<(), String> {
        self.graph_budget.validate("executors.graph_budget")?;
        self.exchange_budget.validate("executors.exchange_budget")?;
        if self.batch_linger_ms > 1_000 {
            return Err("executors.batch_linger_ms must be at most 1000".into());
        }
        if self.max_wait_secs == 0 {
            return Err("executors.max_wait_secs must be at least 1".into());
        }
        // the grace is waited out, and a wait longer than max_wait_secs is buried first
        if self.not_found_grace_secs > self.max_wait_secs {
            return Err("executors.not_found_grace_secs must be at most executors.max_wait_secs".into());
        }
        Ok(())
    }
}

pub struct Services {
    pub queue: Queue,
    pub graph: GraphClient,
    pub servicenow: ServiceNowClient,
    pub executors: Executors,
    /// The tenant's shared Graph budget (the group executor holds a clone).
    pub graph_budget: Budget,
    pub policy: PolicyHandle,
    pub clock: Clock,
    /// Where approvers are asked and people told.
    pub channels: Channels,
    /// Where on-call is paged about dead letters (none: the alert is an error-level log line).
    pub pager: Option<Arc<Pager>>,
}

impl Services {
    /// Services for the group flow; add the mailbox executor with [`Services::with_mailboxes`].
    pub fn new(
        queue: Queue,
        graph: GraphClient,
        servicenow: ServiceNowClient,
        policy: Policy,
        clock: Clock,
        settings: &ExecutorSettings,
    ) -> Self {
        let tokens = graph.token_provider();
        let budget = Budget::new(queue.clone(), "graph", tokens.tenant(), tokens.client_id(), &settings.graph_budget);
        let opts =
            GroupOptions { batch: settings.batch, linger: std::time::Duration::from_millis(settings.batch_linger_ms) };
        let group = GroupExecutor::new(graph.clone(), clock.clone(), budget.clone(), &opts);
        let executors = Executors {
            group,
            mailbox: None,
            not_found_grace: std::time::Duration::from_secs(settings.not_found_grace_secs),
        };
        Self {
            queue,
            graph,
            servicenow,
            executors,
            graph_budget: budget,
            policy: PolicyHandle::new(policy),
            clock,
            channels: Channels::default(),
            pager: None,
        }
    }

    /// Adds the mailbox executor: Exchange Online within the tenant's shared Exchange budget.
    pub fn with_mailboxes(mut self, exchange: ExchangeClient, tenant_id: &str, settings: &ExecutorSettings) -> Self {
        let budget = Budget::new(
            self.queue.clone(),
            "exchange",
            tenant_id,
            exchange.token_provider().client_id(),
            &settings.exchange_budget,
        );
        self.executors.mailbox = Some(MailboxExecutor::new(exchange, self.clock.clone(), Some(budget)));
        self
    }

    /// Asks approvers through these channels (default: ServiceNow approval records only).
    pub fn with_channels(mut self, channels: Channels) -> Self {
        self.channels = channels;
        self
    }

    /// Pages on-call about dead letters through this pager.
    pub fn with_pager(mut self, pager: Pager) -> Self {
        self.pager = Some(Arc::new(pager));
        self
    }

    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::ExecutorSettings;

    #[test]
    fn the_not_found_grace_is_bounded_by_the_longest_wait() {
        assert_eq!(ExecutorSettings::default().not_found_grace_secs, 300);
        ExecutorSettings::default().validate().unwrap();
        let s = ExecutorSettings { not_found_grace_secs: 0, ..ExecutorSettings::default() };
        s.validate().unwrap();
        let s = ExecutorSettings { not_found_grace_secs: 601, max_wait_secs: 600, ..ExecutorSettings::default() };
        let e = s.validate().unwrap_err();
        assert!(e.contains("executors.not_found_grace_secs"), "{e}");
    }
}
