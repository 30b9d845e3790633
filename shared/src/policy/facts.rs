//! The input of an evaluation: what the ticket asks for and what the directory says about the
//! people and the group involved. The worker fills these from the ITSM and Graph before it
//! evaluates; `grantline policy explain --request FILE.json` reads them as JSON. Field names are
//! snake_case; the Graph spellings (`userPrincipalName`, `groupTypes`, ...) are accepted too.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Everything [`crate::policy::evaluate`] looks at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFacts {
    /// The evaluation time. The policy has no clock of its own.
    pub now: Timestamp,
    /// Who the access is for.
    pub requester: UserFacts,
    /// Who filed the ticket, when not the requester. Neither may approve the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_by: Option<Principal>,
    /// The catalog item name as the service desk sent it.
    #[serde(default)]
    pub catalog_item: String,
    /// The ticket's target variable: a group id, a mailbox address or a target key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The requested access level as the ticket wrote it ("Send As", "read-only", ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// A requested duration such as "30d" or "2 weeks".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// A requested end date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
    /// A target suggested by AI triage: accepted only if it resolves to a catalog entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_suggested_target: Option<String>,
    /// The directory facts of the target group, read from Graph (`GET /groups/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group: Option<GroupFacts>,
    /// What Exchange Online says of the target mailbox (`Get-Mailbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_mailbox: Option<MailboxFacts>,
}

/// What Exchange Online says of a mailbox (`Get-Mailbox`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxFacts {
    /// The primary SMTP address.
    #[serde(alias = "primarySmtpAddress", alias = "PrimarySmtpAddress")]
    pub address: String,
    /// `SharedMailbox`, `UserMailbox`, `RoomMailbox`, `EquipmentMailbox`, ...
    #[serde(alias = "recipientTypeDetails", alias = "RecipientTypeDetails")]
    pub recipient_type_details: String,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "displayName", alias = "DisplayName")]
    pub display_name: Option<String>,
}

impl MailboxFacts {
    /// A shared mailbox at `address`.
    pub fn shared(address: impl Into<String>) -> Self {
        MailboxFacts { address: address.into(), recipient_type_details: "SharedMailbox".into(), display_name: None }
    }
}

/// A directory principal: object id and, when known, UPN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "userPrincipalName")]
    pub upn: Option<String>,
}

impl Principal {
    pub fn new(id: impl Into<String>, upn: Option<&str>) -> Self {
        Principal { id: id.into(), upn: upn.map(str::to_owned) }
    }
}

/// What Graph says about the requester (`GET /users/{id}?$select=...` and `/manager`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserFacts {
    pub id: String,
    #[serde(alias = "userPrincipalName")]
    pub upn: String,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "displayName")]
    pub display_name: Option<String>,
    /// `Member` or `Guest`. Anything but `Member` is refused.
    #[serde(alias = "userType")]
    pub user_type: String,
    #[serde(alias = "accountEnabled")]
    pub account_enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "employeeLeaveDateTime")]
    pub employee_leave_date_time: Option<Timestamp>,
    /// The manager's object id; `None` when Graph answered 404 (no manager).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "managerId")]
    pub manager_id: Option<String>,
    /// The manager's UPN, so a manager may answer by either identifier.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "managerUpn")]
    pub manager_upn: Option<String>,
    /// The manager's manager (read only when the policy names `managers-manager`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managers_manager: Option<Principal>,
    /// Object ids of the groups the requester is a (transitive) member of.
    #[serde(default, skip_serializing_if = "Vec::is_empty", alias = "memberOf")]
    pub member_of: Vec<String>,
}

impl UserFacts {
    pub fn principal(&self) -> Principal {
        Principal::new(self.id.clone(), Some(&self.upn))
    }

    /// A guest by type, or by the `#EXT#` marker Entra puts in guest UPNs.
    pub fn is_guest(&self) -> bool {
        self.user_type.eq_ignore_ascii_case("guest") || self.upn.to_ascii_uppercase().contains("#EXT#")
    }

    pub fn is_member_type(&self) -> bool {
        self.user_type.eq_ignore_ascii_case("member") && !self.is_guest()
    }
}

/// What Graph says about the target group (`GET /groups/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupFacts {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "displayName")]
    pub display_name: Option<String>,
    #[serde(default, alias = "groupTypes")]
    pub group_types: Vec<String>,
    #[serde(alias = "mailEnabled")]
    pub mail_enabled: bool,
    #[serde(alias = "securityEnabled")]
    pub security_enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "isAssignableToRole")]
    pub is_assignable_to_role: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "membershipRule")]
    pub membership_rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "onPremisesSyncEnabled")]
    pub on_premises_sync_enabled: Option<bool>,
}

impl GroupFacts {
    /// A plain cloud security group, the only kind grantline changes through Graph besides
    /// Microsoft 365 groups.
    pub fn security_group(id: impl Into<String>) -> Self {
        GroupFacts {
            id: id.into(),
            display_name: None,
            group_types: Vec::new(),
            mail_enabled: false,
            security_enabled: true,
            is_assignable_to_role: Some(false),
            membership_rule: None,
            on_premises_sync_enabled: None,
        }
    }

    fn has_type(&self, t: &str) -> bool {
        self.group_types.iter().any(|g| g.eq_ignore_ascii_case(t))
    }

    pub fn is_unified(&self) -> bool {
        self.has_type("Unified")
    }

    pub fn is_dynamic(&self) -> bool {
        self.has_type("DynamicMembership") || self.membership_rule.as_deref().is_some_and(|r| !r.trim().is_empty())
    }

    pub fn is_mail_enabled_security(&self) -> bool {
        self.mail_enabled && self.security_enabled && !self.is_unified()
    }

    pub fn is_distribution_list(&self) -> bool {
        self.mail_enabled && !self.security_enabled && !self.is_unified()
    }
}
