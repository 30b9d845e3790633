//! Exchange Online mailbox permissions through the Exchange REST command endpoint.

use grantline_queue::JobError;

use super::{Access, Change, Found};

/// The folders a read-only grant gives `Reviewer` on: the top of the mailbox and its Inbox.
pub const READ_ONLY_FOLDERS: [&str; 2] = ["", "Inbox"];

/// The mailbox executor.
#[derive(Clone)]
pub struct MailboxExecutor {}

impl MailboxExecutor {
    pub async fn check(&self, _a: &Access) -> Result<Found, JobError> {
        Err(unavailable())
    }
    pub async fn grant(&self, _a: &Access, _holder: &str) -> Result<Change, JobError> {
        Err(unavailable())
    }
    pub async fn revoke(&self, _a: &Access, _holder: &str) -> Result<Change, JobError> {
        Err(unavailable())
    }
}

fn unavailable() -> JobError {
    JobError::permanent("grant.executor_unavailable", "the mailbox executor is not configured")
}
