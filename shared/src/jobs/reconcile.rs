use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// Compare with the directory: every active grant (one removed out of band closes its
/// request), and the members of every governed group (one no request explains is reported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconcile {
    /// The scheduler's period the pass belongs to (one pass per period).
    pub period: u64,
}

impl JobPayload for Reconcile {
    const KIND: JobKind = JobKind::Reconcile;
}
