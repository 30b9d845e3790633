//! The executor contract: one executor per target kind (Entra group membership, Exchange
//! mailbox permission), each able to check the current state, grant, read back and revoke,
//! returning typed facts that become the request's receipt. execute-grant, remove-access and
//! rollback-grant hold no Graph- or Exchange-specific code: they resolve the [`Access`] a
//! request asks for and run the same algorithm through [`Executors`], which dispatches on the
//! target kind.

pub mod group;
pub mod mailbox;

use grantline_queue::JobError;
use grantline_shared::policy::{AccessLevel, TargetKind};
use grantline_shared::receipt::{
    Evidence, GroupReceipt, MailboxReceipt, Receipt, access_key_group, access_key_mailbox,
};
use grantline_shared::record::RequestRecord;

pub use group::GroupExecutor;
pub use mailbox::MailboxExecutor;

/// The access a request asks for, resolved from its decision and its requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Group {
        group_id: String,
        group_name: String,
        user_id: String,
        user_upn: String,
    },
    Mailbox {
        address: String,
        name: String,
        user_id: String,
        user_upn: String,
        /// How Exchange may show the person in permission rows.
        user_display: Option<String>,
        level: AccessLevel,
        automapping: bool,
        /// Read-only: the folders the grant covers (on revocation: the folders grantline added).
        folders: Vec<String>,
    },
}

impl Access {
    /// What `rec` asks for. A decision without a target, or with a target kind whose level
    /// does not fit, is a permanent error.
    pub fn of(rec: &RequestRecord) -> Result<Access, JobError> {
        let decision = rec.decision().map_err(|e| JobError::permanent("request.no_decision", e.to_string()))?;
        let requester = rec.requester().map_err(|e| JobError::permanent("request.no_requester", e.to_string()))?;
        let target = decision
            .target
            .as_ref()
            .ok_or_else(|| JobError::permanent("request.no_target", "the decision names no target"))?;
        match target.kind {
            TargetKind::Group => {
                let group_id = target.group_id.clone().ok_or_else(|| {
                    JobError::permanent("request.no_target", format!("{} has no group id", target.display_name))
                })?;
                Ok(Access::Group {
                    group_id,
                    group_name: target.display_name.clone(),
                    user_id: requester.id.clone(),
                    user_upn: requester.upn.clone(),
                })
            }
            TargetKind::Mailbox => {
                let address = target.mailbox_address.clone().ok_or_else(|| {
                    JobError::permanent("request.no_target", format!("{} has no mailbox address", target.display_name))
                })?;
                let level = decision
                    .level
                    .filter(|l| l.target_kind() == TargetKind::Mailbox)
                    .ok_or_else(|| JobError::permanent("request.no_level", "the decision names no mailbox level"))?;
                Ok(Access::Mailbox {
                    address,
                    name: target.display_name.clone(),
                    user_id: requester.id.clone(),
                    user_upn: requester.upn.clone(),
                    user_display: requester.display_name.clone(),
                    level,
                    automapping: target.automapping.unwrap_or(true),
                    folders: if level == AccessLevel::ReadOnly {
                        mailbox::READ_ONLY_FOLDERS.iter().map(|f| (*f).to_owned()).collect()
                    } else {
                        Vec::new()
                    },
                })
            }
        }
    }

    /// The key its lock and its holders share (the receipt's access key).
    pub fn key(&self) -> String {
        match self {
            Access::Group { group_id, user_id, .. } => access_key_group(group_id, user_id),
            Access::Mailbox { address, level, user_id, .. } => access_key_mailbox(address, *level, user_id),
        }
    }

    /// The receipt of a grant of this access; `change` is the write (None: nothing was written).
    pub fn receipt(&self, pre_existing: bool, granted_ms: u64, evidence: Evidence, change: Option<&Change>) -> Receipt {
        let batched = change.is_some_and(|c| c.batched);
        match self {
            Access::Group { group_id, group_name, user_id, user_upn } => Receipt::Group(GroupReceipt {
                group_id: group_id.clone(),
                group_name: group_name.clone(),
                user_id: user_id.clone(),
                user_upn: user_upn.clone(),
                pre_existing,
                granted_ms,
                evidence,
                batched,
            }),
            Access::Mailbox { address, name, user_id, user_upn, level, automapping, .. } => {
                Receipt::Mailbox(MailboxReceipt {
                    mailbox: address.clone(),
                    mailbox_name: name.clone(),
                    user_id: user_id.clone(),
                    user_upn: user_upn.clone(),
                    level: *level,
                    automapping: (*level == AccessLevel::FullAccess).then_some(*automapping),
                    // only the folders this grant added: a folder permission that was there
                    // before is never removed by it
                    folders: change.map(|c| c.parts.clone()).unwrap_or_default(),
                    pre_existing,
                    granted_ms,
                    evidence,
                })
            }
        }
    }

    /// The access a receipt records (for revocation).
    pub fn from_receipt(r: &Receipt) -> Access {
        match r {
            Receipt::Group(g) => Access::Group {
                group_id: g.group_id.clone(),
                group_name: g.group_name.clone(),
                user_id: g.user_id.clone(),
                user_upn: g.user_upn.clone(),
            },
            Receipt::Mailbox(m) => Access::Mailbox {
                address: m.mailbox.clone(),
                name: m.mailbox_name.clone(),
                user_id: m.user_id.clone(),
                user_upn: m.user_upn.clone(),
                user_display: None,
                level: m.level,
                automapping: m.automapping.unwrap_or(true),
                folders: m.folders.clone(),
            },
        }
    }
}

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The person has the access.
    pub present: bool,
    pub evidence: Evidence,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// True when the write changed something; false when the upstream said it was already so
    /// ("already a member", the ACE already present; "not a member" on removal).
    pub applied: bool,
    pub evidence: Evidence,
    /// The write carried several requests' changes at once.
    pub batched: bool,
    /// The parts of the access the write changed, when it has parts (the folders of a read-only
    /// grant).
    pub parts: Vec<String>,
}

/// The executors of every target kind.
#[derive(Clone)]
pub struct Executors {
    pub group: GroupExecutor,
    pub mailbox: Option<MailboxExecutor>,
    /// How long after a request was made a "not found" answer to its grant is taken for
    /// replication and retried (`executors.not_found_grace_secs`).
    pub not_found_grace: std::time::Duration,
}

impl Executors {
    fn mailbox(&self) -> Result<&MailboxExecutor, JobError> {
        self.mailbox.as_ref().ok_or_else(|| {
            JobError::permanent(
                "grant.executor_unavailable",
                "mailbox permissions need the Exchange Online connector (configure `exchange`)",
            )
        })
    }

    /// Whether a grant must know the current state before it writes. A single write that
    /// answers "already there" needs no read first (its answer is the check); a batched write
    /// that one member already present would fail for all does.
    pub fn checks_before_grant(&self, a: &Access) -> bool {
        match a {
            Access::Group { .. } => self.group.batches(),
            Access::Mailbox { .. } => false,
        }
    }

    /// Whether the person has the access now.
    pub async fn check(&self, a: &Access) -> Result<Found, JobError> {
        match a {
            Access::Group { .. } => self.group.check(a).await,
            Access::Mailbox { .. } => self.mailbox()?.check(a).await,
        }
    }

    /// Gives the access (idempotent: "already there" is success, `applied: false`).
    pub async fn grant(&self, a: &Access, holder: &str) -> Result<Change, JobError> {
        match a {
            Access::Group { .. } => self.group.grant(a, holder).await,
            Access::Mailbox { .. } => self.mailbox()?.grant(a, holder).await,
        }
    }

    /// Reads the access back after a write (the server-side truth).
    pub async fn read_back(&self, a: &Access) -> Result<Found, JobError> {
        match a {
            Access::Group { .. } => self.group.check(a).await,
            Access::Mailbox { .. } => self.mailbox()?.check(a).await,
        }
    }

    /// Takes the access away (idempotent: "not there" is success, `applied: false`).
    pub async fn revoke(&self, a: &Access, holder: &str) -> Result<Change, JobError> {
        match a {
            Access::Group { .. } => self.group.revoke(a, holder).await,
            Access::Mailbox { .. } => self.mailbox()?.revoke(a, holder).await,
        }
    }
}
