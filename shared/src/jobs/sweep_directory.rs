use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// Read the directory's users delta (from the stored delta link, or a full sync) and offboard
/// the people it shows disabled, deleted or past their leave date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepDirectory {
    /// The scheduler's period the sweep belongs to (one sweep per period).
    pub period: u64,
}

impl JobPayload for SweepDirectory {
    const KIND: JobKind = JobKind::SweepDirectory;
}
