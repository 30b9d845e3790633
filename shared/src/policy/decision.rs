//! The output of an evaluation: allow or deny, every check with a stable code and a reason, and
//! what an allowed request needs (approvals, duration, change window).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::approval::ApprovalPlan;
use super::model::{AccessLevel, MailboxType, TargetKind};
use super::units::{PolicyDuration, keyword_enum};

/// Stable check codes. They appear in decisions, audit events, tickets and `[[test]]` cases and
/// are never renamed.
pub mod codes {
    /// The requester has a directory id.
    pub const IDENTITY_REQUESTER: &str = "identity.requester";
    /// Hard rule: guests (userType Guest, or #EXT# in the UPN) are never granted.
    pub const IDENTITY_GUEST: &str = "identity.guest";
    /// Hard rule: disabled accounts are refused.
    pub const IDENTITY_ENABLED: &str = "identity.enabled";
    /// Hard rule: accounts whose leave date has passed, or comes before the grant would start.
    pub const IDENTITY_LEAVING: &str = "identity.leaving";
    /// The catalog item is declared (or an accepted AI suggestion named a declared one).
    pub const CATALOG_ITEM: &str = "catalog.item";
    /// The request resolves to exactly one declared target.
    pub const TARGET_RESOLVED: &str = "target.resolved";
    /// The AI-suggested target, if any: accepted, rejected or not needed.
    pub const AI_SUGGESTION: &str = "ai.suggestion";
    /// The access level is known and offered on the target.
    pub const LEVEL_ALLOWED: &str = "level.allowed";
    /// The directory facts of the target group were provided and are about that group.
    pub const GROUP_FACTS: &str = "group.facts";
    /// Hard rule: role-assignable groups go through PIM.
    pub const GROUP_ROLE_ASSIGNABLE: &str = "group.role_assignable";
    /// Hard rule: dynamic groups follow their membership rule.
    pub const GROUP_DYNAMIC: &str = "group.dynamic";
    /// Hard rule: mail-enabled security groups are managed in Exchange.
    pub const GROUP_MAIL_ENABLED_SECURITY: &str = "group.mail_enabled_security";
    /// Hard rule: distribution lists are managed in Exchange.
    pub const GROUP_DISTRIBUTION_LIST: &str = "group.distribution_list";
    /// Hard rule: groups synchronized from on-premises AD are changed there.
    pub const GROUP_ON_PREMISES_SYNCED: &str = "group.on_premises_synced";
    /// What Exchange Online says of the target mailbox was provided: it exists.
    pub const MAILBOX_FACTS: &str = "mailbox.facts";
    /// The mailbox is of the type the policy declares for it (a shared mailbox is shared).
    pub const MAILBOX_TYPE: &str = "mailbox.type";
    /// A rule covers the request (deny by default).
    pub const RULE_MATCHED: &str = "rule.matched";
    /// The matching rule denies the request.
    pub const RULE_DENY: &str = "rule.deny";
    /// The approvers of every stage can be found (fallbacks included).
    pub const APPROVAL_APPROVERS: &str = "approval.approvers";
    /// Hard rule: the requester (and whoever filed the ticket) never approves the request.
    pub const APPROVAL_SELF: &str = "approval.self";
    /// The requested duration or end date is valid.
    pub const DURATION_REQUEST: &str = "duration.request";
    /// The grant ends when the policy requires it to.
    pub const DURATION_REQUIRED: &str = "duration.required";
    /// The grant is within the maximum (or was shortened to it).
    pub const DURATION_CAP: &str = "duration.cap";
    /// The change window: open now, or the next opening the execution waits for.
    pub const WINDOW_OPEN: &str = "window.open";

    /// Every code, for validating `failing_checks` in policy tests.
    pub const ALL: &[&str] = &[
        IDENTITY_REQUESTER,
        IDENTITY_GUEST,
        IDENTITY_ENABLED,
        IDENTITY_LEAVING,
        CATALOG_ITEM,
        TARGET_RESOLVED,
        AI_SUGGESTION,
        LEVEL_ALLOWED,
        GROUP_FACTS,
        GROUP_ROLE_ASSIGNABLE,
        GROUP_DYNAMIC,
        GROUP_MAIL_ENABLED_SECURITY,
        GROUP_DISTRIBUTION_LIST,
        GROUP_ON_PREMISES_SYNCED,
        MAILBOX_FACTS,
        MAILBOX_TYPE,
        RULE_MATCHED,
        RULE_DENY,
        APPROVAL_APPROVERS,
        APPROVAL_SELF,
        DURATION_REQUEST,
        DURATION_REQUIRED,
        DURATION_CAP,
        WINDOW_OPEN,
    ];
}

keyword_enum! {
    /// Allow or deny.
    pub enum Outcome: "decision" {
        Allow = "allow",
        Deny = "deny",
    }
}

keyword_enum! {
    pub enum CheckStatus: "check status" {
        Pass = "pass",
        Fail = "fail",
        /// Not evaluated or not applicable; the reason says why.
        Skip = "skip",
    }
}

/// One check of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// A stable code from [`codes`].
    pub code: String,
    pub status: CheckStatus,
    /// For humans: what was found.
    pub reason: String,
}

impl Check {
    pub fn pass(code: &str, reason: impl Into<String>) -> Self {
        Check { code: code.to_owned(), status: CheckStatus::Pass, reason: reason.into() }
    }
    pub fn fail(code: &str, reason: impl Into<String>) -> Self {
        Check { code: code.to_owned(), status: CheckStatus::Fail, reason: reason.into() }
    }
    pub fn skip(code: &str, reason: impl Into<String>) -> Self {
        Check { code: code.to_owned(), status: CheckStatus::Skip, reason: reason.into() }
    }
}

/// How the catalog item was recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum ItemMatch {
    /// The ticket's catalog item is a declared item name.
    CatalogItem,
    /// The ticket's catalog item is an alias of a declared item.
    Alias { alias: String },
    /// The ticket's catalog item is not declared; the accepted AI suggestion named the entry.
    AiSuggestion { suggestion: String },
}

/// How the target was chosen among the entry's targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum TargetSelection {
    /// The entry offers exactly one target.
    OnlyTarget,
    /// The ticket's target variable named it.
    TicketTarget { value: String },
    /// The accepted AI suggestion named it.
    AiSuggestion { suggestion: String },
}

/// The declared target a request resolved to, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedTarget {
    /// The target's key in the policy.
    pub key: String,
    pub kind: TargetKind,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_type: Option<MailboxType>,
    /// Mailboxes: whether a Full Access grant is automapped in Outlook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automapping: Option<bool>,
    pub tags: Vec<String>,
    /// The declared catalog item that offers it.
    pub catalog_item: String,
    pub item_match: ItemMatch,
    pub selection: TargetSelection,
}

keyword_enum! {
    pub enum SuggestionStatus: "suggestion status" {
        /// Used to find the target.
        Accepted = "accepted",
        /// Names the same target the ticket already resolved to.
        Agrees = "agrees",
        /// Not used: it does not resolve to a catalog entry, is ambiguous, or conflicts with
        /// the ticket.
        Rejected = "rejected",
    }
}

/// What happened to an AI-suggested target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiSuggestionOutcome {
    /// The suggestion as received.
    pub suggestion: String,
    pub status: SuggestionStatus,
    /// The target key it resolved to, when it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_to: Option<String>,
    pub reason: String,
}

/// Who must approve, or why nobody needs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApprovalRequirement {
    /// Approved by the rule itself.
    Auto { rule: String, reason: String },
    /// People must approve, stage after stage.
    Plan(ApprovalPlan),
}

/// The effective duration of a grant.
///
/// The grant ends at `duration` after it starts, but never after `not_after`
/// (a requested end date, or the requester's leave date). Use [`DurationOutcome::end_for_start`]
/// at execution time; `ends_at` is that end for a start at the decision's `execute_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationOutcome {
    /// The duration rule that applied, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<PolicyDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_end: Option<Timestamp>,
    /// `None` with `not_after` `None`: a permanent grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<PolicyDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    /// The request was longer than the maximum and was shortened to it.
    #[serde(default)]
    pub shortened_to_cap: bool,
    /// The grant ends on the requester's leave date, which comes first.
    #[serde(default)]
    pub ends_on_leave_date: bool,
    /// How the duration was chosen, for humans.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl DurationOutcome {
    pub fn is_permanent(&self) -> bool {
        self.duration.is_none() && self.not_after.is_none()
    }

    /// When a grant that starts at `start` ends.
    pub fn end_for_start(&self, start: Timestamp) -> Option<Timestamp> {
        let by_duration = self.duration.map(|d| d.after(start));
        match (by_duration, self.not_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The change window that applies, and where `now` stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowOutcome {
    pub name: String,
    pub time_zone: String,
    pub open_now: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_opening: Option<Timestamp>,
    pub reason: String,
}

/// The result of [`crate::policy::evaluate`]. When `outcome` is `Deny`, the other fields are
/// what could be worked out, for explanation only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    /// `sha256:<hex>` of the policy file.
    pub policy_version: String,
    pub evaluated_at: Timestamp,
    pub checks: Vec<Check>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ResolvedTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_suggestion: Option<AiSuggestionOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<AccessLevel>,
    /// The approval rule that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRequirement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<DurationOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowOutcome>,
    /// The earliest moment the change may run: `evaluated_at`, or the next window opening.
    pub execute_at: Timestamp,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }

    pub fn failing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == CheckStatus::Fail)
    }

    /// The codes of the failing checks, in order.
    pub fn failing_codes(&self) -> Vec<&str> {
        self.failing().map(|c| c.code.as_str()).collect()
    }

    pub fn check(&self, code: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.code == code)
    }

    pub fn is_auto_approved(&self) -> bool {
        matches!(self.approval, Some(ApprovalRequirement::Auto { .. }))
    }

    pub fn plan(&self) -> Option<&ApprovalPlan> {
        match &self.approval {
            Some(ApprovalRequirement::Plan(p)) => Some(p),
            _ => None,
        }
    }

    /// The deferral reason for the ticket, when the change waits for a window.
    pub fn deferral(&self) -> Option<&str> {
        self.window.as_ref().filter(|w| !w.open_now).map(|w| w.reason.as_str())
    }
}
