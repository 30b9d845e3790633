//! Receipts: what a step read or changed in the outside world, typed per target kind. The
//! receipt of a grant is the input of its removal and of its compensation: removal undoes only
//! what the receipt says grantline added.

use serde::{Deserialize, Serialize};

use crate::policy::AccessLevel;

/// The upstream correlation ids of the call that is the evidence for a fact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The upstream's own id of the call (Graph and Exchange `request-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The id grantline sent (`client-request-id`).
    #[serde(default)]
    pub client_request_id: String,
    /// When the call was made (ms since the epoch).
    #[serde(default)]
    pub at_ms: u64,
}

/// What a read found of the access a request asks for, before anything was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentState {
    /// The person already has the access (direct membership, or the mailbox permission).
    pub present: bool,
    pub evidence: Evidence,
}

/// A grant of Entra group membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupReceipt {
    pub group_id: String,
    pub group_name: String,
    pub user_id: String,
    pub user_upn: String,
    /// The membership existed before this request: never removed by it.
    pub pre_existing: bool,
    pub granted_ms: u64,
    /// The write (or, when nothing was written, the read that showed the membership).
    pub evidence: Evidence,
    /// The write was one `PATCH` adding several members at once.
    #[serde(default)]
    pub batched: bool,
}

/// A grant of an Exchange Online mailbox permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxReceipt {
    /// The mailbox's primary SMTP address.
    pub mailbox: String,
    pub mailbox_name: String,
    pub user_id: String,
    pub user_upn: String,
    pub level: AccessLevel,
    /// Full Access only: whether Outlook maps the mailbox automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automapping: Option<bool>,
    /// Read-only only: the folders given `Reviewer` ("" is the top of the mailbox).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<String>,
    pub pre_existing: bool,
    pub granted_ms: u64,
    pub evidence: Evidence,
}

/// What execute-grant changed (or found already there), per target kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Receipt {
    Group(GroupReceipt),
    Mailbox(MailboxReceipt),
}

impl Receipt {
    pub fn pre_existing(&self) -> bool {
        match self {
            Receipt::Group(g) => g.pre_existing,
            Receipt::Mailbox(m) => m.pre_existing,
        }
    }

    pub fn granted_ms(&self) -> u64 {
        match self {
            Receipt::Group(g) => g.granted_ms,
            Receipt::Mailbox(m) => m.granted_ms,
        }
    }

    pub fn evidence(&self) -> &Evidence {
        match self {
            Receipt::Group(g) => &g.evidence,
            Receipt::Mailbox(m) => &m.evidence,
        }
    }

    pub fn user_id(&self) -> &str {
        match self {
            Receipt::Group(g) => &g.user_id,
            Receipt::Mailbox(m) => &m.user_id,
        }
    }

    pub fn user_upn(&self) -> &str {
        match self {
            Receipt::Group(g) => &g.user_upn,
            Receipt::Mailbox(m) => &m.user_upn,
        }
    }

    /// The access as one identifier: the key of its lock and of its holders, so that every
    /// request relying on one membership or one permission shares it.
    pub fn access_key(&self) -> String {
        match self {
            Receipt::Group(g) => access_key_group(&g.group_id, &g.user_id),
            Receipt::Mailbox(m) => access_key_mailbox(&m.mailbox, m.level, &m.user_id),
        }
    }

    /// What was granted, for people: "AlexW@contoso.com in Finance BI Readers (2000…01)".
    pub fn describe(&self) -> String {
        match self {
            Receipt::Group(g) => format!("{} in {} ({})", g.user_upn, g.group_name, g.group_id),
            Receipt::Mailbox(m) => format!("{} on {} ({})", m.user_upn, m.mailbox_name, describe_level(m)),
        }
    }
}

fn describe_level(m: &MailboxReceipt) -> String {
    match (m.level, m.automapping) {
        (AccessLevel::FullAccess, Some(false)) => "Full Access, no automapping".to_owned(),
        (AccessLevel::FullAccess, _) => "Full Access, automapped".to_owned(),
        (AccessLevel::SendAs, _) => "Send As".to_owned(),
        (AccessLevel::SendOnBehalf, _) => "Send on Behalf".to_owned(),
        (AccessLevel::ReadOnly, _) => "read-only: Reviewer on the mailbox and its Inbox".to_owned(),
        (AccessLevel::Member, _) => "member".to_owned(),
    }
}

/// The access key of a group membership.
pub fn access_key_group(group_id: &str, user_id: &str) -> String {
    format!("group:{}:{}", group_id.to_ascii_lowercase(), user_id.to_ascii_lowercase())
}

/// The access key of a mailbox permission.
pub fn access_key_mailbox(mailbox: &str, level: AccessLevel, user_id: &str) -> String {
    format!("mailbox:{}:{}:{}", mailbox.to_ascii_lowercase(), level, user_id.to_ascii_lowercase())
}

/// What removal (at expiry, offboarding, revocation) or compensation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovalReceipt {
    /// Removed upstream and verified gone.
    pub removed: bool,
    /// The access existed before grantline: never removed by it.
    pub kept_pre_existing: bool,
    /// Other grantline requests still rely on it (it stays until the last lets go).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_for: Vec<String>,
    /// Already gone when removal came (removed out of band).
    #[serde(default)]
    pub already_gone: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// expiry, offboarding, revoked, compensation, drift.
    pub trigger: String,
    pub at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_tagged_by_kind_and_share_one_access_key_per_access() {
        let g = Receipt::Group(GroupReceipt {
            group_id: "G1".into(),
            group_name: "Finance".into(),
            user_id: "U1".into(),
            user_upn: "a@x".into(),
            pre_existing: false,
            granted_ms: 1,
            evidence: Evidence::default(),
            batched: true,
        });
        let j = serde_json::to_value(&g).unwrap();
        assert_eq!(j["kind"], "group");
        assert_eq!(serde_json::from_value::<Receipt>(j).unwrap(), g);
        assert_eq!(g.access_key(), access_key_group("g1", "u1"));
        let m = MailboxReceipt {
            mailbox: "Finance@Contoso.com".into(),
            mailbox_name: "Finance".into(),
            user_id: "U1".into(),
            user_upn: "a@x".into(),
            level: AccessLevel::SendAs,
            automapping: None,
            folders: vec![],
            pre_existing: true,
            granted_ms: 1,
            evidence: Evidence::default(),
        };
        assert_eq!(Receipt::Mailbox(m.clone()).access_key(), "mailbox:finance@contoso.com:send-as:u1");
        assert!(Receipt::Mailbox(m).describe().contains("Send As"));
    }
}
