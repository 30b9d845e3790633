//! What every handler gets: the queue, the connectors and executors, the policy in force and
//! the clock.

use std::sync::{Arc, RwLock};

use grantline_connectors::{GraphClient, ServiceNowClient};
use grantline_queue::Queue;
use grantline_shared::policy::Policy;

use crate::executor::{Executors, GroupExecutor};

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

pub struct Services {
    pub queue: Queue,
    pub graph: GraphClient,
    pub servicenow: ServiceNowClient,
    pub executors: Executors,
    pub policy: PolicyHandle,
    pub clock: Clock,
}

impl Services {
    /// Services for the group flow; add the mailbox executor with [`Services::with_mailboxes`].
    pub fn new(queue: Queue, graph: GraphClient, servicenow: ServiceNowClient, policy: Policy, clock: Clock) -> Self {
        let executors = Executors { group: GroupExecutor::new(graph.clone(), clock.clone()), mailbox: None };
        Self { queue, graph, servicenow, executors, policy: PolicyHandle::new(policy), clock }
    }

    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}
