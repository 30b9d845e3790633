//! Exchange Online mailbox permissions through the REST command endpoint the management module
//! uses, within the tenant's shared Exchange budget.
//!
//! | level | check | grant | revoke |
//! | --- | --- | --- | --- |
//! | Full Access | `Get-MailboxPermission` | `Add-MailboxPermission -AccessRights FullAccess -InheritanceType All -AutoMapping` | `Remove-MailboxPermission` |
//! | Send As | `Get-RecipientPermission` | `Add-RecipientPermission -AccessRights SendAs` | `Remove-RecipientPermission` |
//! | Send on Behalf | `Get-Mailbox` (GrantSendOnBehalfTo) | `Set-Mailbox -GrantSendOnBehalfTo @{add=…}` | `@{remove=…}` |
//! | read-only | `Get-MailboxFolderPermission` (top of store, Inbox) | `Add-MailboxFolderPermission -AccessRights Reviewer` on each | `Remove-MailboxFolderPermission` on the folders grantline added |
//!
//! An ACE already present (or absent, on removal) comes back as a warning with 200: success,
//! `applied: false`. A read-only grant records which folders it added, so removal never takes
//! away a folder permission that was there before.

use grantline_connectors::ExchangeClient;
use grantline_connectors::exchange::{self as exo, ExchangeError, names_user};
use grantline_connectors::graph::Correlation;
use grantline_queue::JobError;
use grantline_shared::Clock;
use grantline_shared::policy::AccessLevel;

use super::{Access, Change, Found};
use crate::budget::Budget;
use crate::steps::{evidence, job_error};

/// The folders a read-only grant gives `Reviewer` on: the top of the mailbox and its Inbox.
pub const READ_ONLY_FOLDERS: [&str; 2] = ["", "Inbox"];
/// The folder role a read-only grant gives.
pub const READ_ONLY_ROLE: &str = "Reviewer";
/// Folder roles that include reading the folder's items: someone holding one of these already
/// has read-only access there.
const READING_ROLES: [&str; 7] =
    ["Reviewer", "Author", "NonEditingAuthor", "Editor", "PublishingAuthor", "PublishingEditor", "Owner"];

/// What Exchange says of a mailbox, for validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    pub address: String,
    pub display_name: String,
    /// `SharedMailbox`, `UserMailbox`, `RoomMailbox`, `EquipmentMailbox`.
    pub recipient_type_details: String,
}

/// The mailbox executor.
#[derive(Clone)]
pub struct MailboxExecutor {
    exchange: ExchangeClient,
    clock: Clock,
    /// None outside the workers (`policy explain --ticket` reads without a budget).
    budget: Option<Budget>,
}

struct Target<'a> {
    mailbox: &'a str,
    upn: &'a str,
    display: Option<&'a str>,
    level: AccessLevel,
    automapping: bool,
    folders: &'a [String],
    holder: String,
}

fn target(a: &Access) -> Result<Target<'_>, JobError> {
    match a {
        Access::Mailbox { address, user_upn, user_display, level, automapping, folders, .. } => Ok(Target {
            mailbox: address,
            upn: user_upn,
            display: user_display.as_deref(),
            level: *level,
            automapping: *automapping,
            folders,
            holder: format!("{}:{}:{}", address.to_ascii_lowercase(), level, user_upn.to_ascii_lowercase()),
        }),
        Access::Group { .. } => Err(JobError::permanent("grant.wrong_executor", "not a mailbox permission")),
    }
}

impl MailboxExecutor {
    pub fn new(exchange: ExchangeClient, clock: Clock, budget: Option<Budget>) -> Self {
        Self { exchange, clock, budget }
    }

    fn ev(&self, c: &Correlation) -> grantline_shared::receipt::Evidence {
        evidence(c, self.clock.now_ms())
    }

    /// An Exchange failure as the job's outcome: a refusal (429) pauses every caller of the
    /// tenant's Exchange budget and makes this job wait.
    async fn failure(&self, e: ExchangeError, write: bool) -> JobError {
        match (&self.budget, e.status()) {
            (Some(b), Some(429)) => b.refused(write, None, e.retry_after()).await,
            _ => job_error(e),
        }
    }

    async fn read<T, F>(&self, holder: &str, call: F) -> Result<T, JobError>
    where
        F: std::future::Future<Output = Result<T, ExchangeError>>,
    {
        if let Some(b) = &self.budget {
            b.read(&format!("read:{holder}"), 1).await?;
        }
        match call.await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.failure(e, false).await),
        }
    }

    async fn write<F>(&self, holder: &str, call: F) -> Result<(bool, Correlation), JobError>
    where
        F: std::future::Future<Output = Result<exo::Correlated<exo::Change>, ExchangeError>>,
    {
        if let Some(b) = &self.budget {
            b.write(&format!("write:{holder}")).await?;
        }
        match call.await {
            Ok(r) => Ok((r.value == exo::Change::Applied, r.correlation)),
            Err(e) => Err(self.failure(e, true).await),
        }
    }

    /// The mailbox, as Exchange has it (None: no such mailbox).
    pub async fn mailbox(&self, address: &str) -> Result<Option<MailboxInfo>, JobError> {
        let r = self.read(address, self.exchange.get_mailbox(address)).await?;
        Ok(r.value.map(|m| MailboxInfo {
            address: m.primary_smtp_address.clone(),
            display_name: m.display_name.clone(),
            recipient_type_details: m.recipient_type_details.clone(),
        }))
    }

    pub async fn check(&self, a: &Access) -> Result<Found, JobError> {
        let t = target(a)?;
        let (present, correlation) = match t.level {
            AccessLevel::FullAccess => {
                let r = self.read(&t.holder, self.exchange.full_access(t.mailbox)).await?;
                (r.value.iter().any(|p| p.has_full_access() && names_user(&p.user, t.upn, t.display)), r.correlation)
            }
            AccessLevel::SendAs => {
                let r = self.read(&t.holder, self.exchange.send_as(t.mailbox)).await?;
                (r.value.iter().any(|p| p.has_send_as() && names_user(&p.trustee, t.upn, t.display)), r.correlation)
            }
            AccessLevel::SendOnBehalf => {
                let r = self.read(&t.holder, self.exchange.get_mailbox(t.mailbox)).await?;
                let present = r.value.as_ref().is_some_and(|m| m.has_send_on_behalf(t.upn, t.display));
                (present, r.correlation)
            }
            AccessLevel::ReadOnly => {
                // present only when every folder of the grant has Reviewer (or more) for them
                let mut all = true;
                let mut last = None;
                for folder in t.folders {
                    let r = self.read(&t.holder, self.exchange.folder_permissions(t.mailbox, folder)).await?;
                    all &= r.value.iter().any(|p| {
                        READING_ROLES.iter().any(|role| p.has_role(role)) && names_user(&p.user, t.upn, t.display)
                    });
                    last = Some(r.correlation);
                }
                (
                    all && last.is_some(),
                    last.unwrap_or(Correlation { request_id: None, client_request_id: String::new() }),
                )
            }
            AccessLevel::Member => {
                return Err(JobError::permanent("grant.wrong_level", "member is a group level"));
            }
        };
        Ok(Found { present, evidence: self.ev(&correlation) })
    }

    pub async fn grant(&self, a: &Access, _holder: &str) -> Result<Change, JobError> {
        let t = target(a)?;
        let single = |(applied, c): (bool, Correlation)| Change {
            applied,
            evidence: self.ev(&c),
            batched: false,
            parts: Vec::new(),
        };
        match t.level {
            AccessLevel::FullAccess => {
                Ok(single(self.write(&t.holder, self.exchange.add_full_access(t.mailbox, t.upn, t.automapping)).await?))
            }
            AccessLevel::SendAs => {
                Ok(single(self.write(&t.holder, self.exchange.add_send_as(t.mailbox, t.upn)).await?))
            }
            AccessLevel::SendOnBehalf => {
                Ok(single(self.write(&t.holder, self.exchange.add_send_on_behalf(t.mailbox, t.upn)).await?))
            }
            AccessLevel::ReadOnly => {
                let mut added = Vec::new();
                let mut last = None;
                for folder in t.folders {
                    let call = self.exchange.add_folder_permission(t.mailbox, folder, t.upn, READ_ONLY_ROLE);
                    let (applied, c) = self.write(&format!("{}:{folder}", t.holder), call).await?;
                    if applied {
                        added.push(folder.clone());
                    }
                    last = Some(c);
                }
                let c = last.unwrap_or(Correlation { request_id: None, client_request_id: String::new() });
                Ok(Change { applied: !added.is_empty(), evidence: self.ev(&c), batched: false, parts: added })
            }
            AccessLevel::Member => Err(JobError::permanent("grant.wrong_level", "member is a group level")),
        }
    }

    pub async fn revoke(&self, a: &Access, _holder: &str) -> Result<Change, JobError> {
        let t = target(a)?;
        let single = |(applied, c): (bool, Correlation)| Change {
            applied,
            evidence: self.ev(&c),
            batched: false,
            parts: Vec::new(),
        };
        match t.level {
            AccessLevel::FullAccess => {
                Ok(single(self.write(&t.holder, self.exchange.remove_full_access(t.mailbox, t.upn)).await?))
            }
            AccessLevel::SendAs => {
                Ok(single(self.write(&t.holder, self.exchange.remove_send_as(t.mailbox, t.upn)).await?))
            }
            AccessLevel::SendOnBehalf => {
                Ok(single(self.write(&t.holder, self.exchange.remove_send_on_behalf(t.mailbox, t.upn)).await?))
            }
            AccessLevel::ReadOnly => {
                let mut removed = Vec::new();
                let mut last = None;
                for folder in t.folders {
                    let call = self.exchange.remove_folder_permission(t.mailbox, folder, t.upn);
                    let (applied, c) = self.write(&format!("{}:{folder}", t.holder), call).await?;
                    if applied {
                        removed.push(folder.clone());
                    }
                    last = Some(c);
                }
                let c = last.unwrap_or(Correlation { request_id: None, client_request_id: String::new() });
                Ok(Change { applied: !removed.is_empty(), evidence: self.ev(&c), batched: false, parts: removed })
            }
            AccessLevel::Member => Err(JobError::permanent("grant.wrong_level", "member is a group level")),
        }
    }
}
