use serde::{Deserialize, Serialize};

use super::JobPayload;
use crate::JobKind;

/// Resolve the page raised for a dead letter: an operator redrove or discarded it, or a later
/// job did its work. Enqueued by whoever closed the letter (`grantline dlq retry|discard`, a
/// removal that finally succeeded), once per letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveAlert {
    /// The queue (job kind) of the dead job.
    pub queue: String,
    pub dead_letter_id: String,
    /// What became of the letter.
    pub how: LetterClosed,
    /// Who closed it (`operator:<id>`, `cli`).
    #[serde(default)]
    pub by: String,
}

/// What became of a dead letter: an operator redrove or discarded it, or a later job did its
/// work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LetterClosed {
    /// Put back on its queue with a fresh attempt budget.
    Redriven,
    /// Deleted for good.
    Discarded,
    /// A later job did the dead job's work (the expiry sweep tried a failed removal again and
    /// it succeeded), so the letter is dropped.
    Superseded,
}

impl LetterClosed {
    pub fn as_str(self) -> &'static str {
        match self {
            LetterClosed::Redriven => "redriven",
            LetterClosed::Discarded => "discarded",
            LetterClosed::Superseded => "superseded",
        }
    }
}

impl JobPayload for ResolveAlert {
    const KIND: JobKind = JobKind::ResolveAlert;
}
