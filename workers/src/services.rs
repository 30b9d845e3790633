//! What every handler gets: the queue, the connectors, the policy in force and a clock.

use std::sync::{Arc, RwLock};

use grantline_connectors::{GraphClient, ServiceNowClient};
use grantline_queue::Queue;
use grantline_shared::policy::Policy;

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

pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

pub struct Services {
    pub queue: Queue,
    pub graph: GraphClient,
    pub servicenow: ServiceNowClient,
    pub policy: PolicyHandle,
    pub clock: Clock,
}

impl Services {
    pub fn now(&self) -> jiff::Timestamp {
        (self.clock)()
    }
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.now().as_millisecond()).unwrap_or(0)
    }
}
