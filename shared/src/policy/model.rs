//! The validated policy: what a policy file declares, after parsing and cross-checking.
//! Values of these types only come out of [`crate::policy::Policy::parse`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::facts::RequestFacts;
use super::testing::Expectation;
use super::units::{PolicyDuration, keyword_enum, normalize};
use super::window::ChangeWindow;

/// The one schema version this code reads.
pub const SCHEMA_VERSION: i64 = 1;

keyword_enum! {
    /// What the requester asks for on a target.
    pub enum AccessLevel: "access level" {
        /// Membership of an Entra group.
        Member = "member",
        /// Folder `Reviewer` on a mailbox.
        ReadOnly = "read-only",
        /// `FullAccess` mailbox permission.
        FullAccess = "full-access",
        /// `SendAs` recipient permission.
        SendAs = "send-as",
        /// `GrantSendOnBehalfTo`.
        SendOnBehalf = "send-on-behalf",
    }
}

impl AccessLevel {
    /// The kind of target this level exists on.
    pub fn target_kind(self) -> TargetKind {
        match self {
            AccessLevel::Member => TargetKind::Group,
            _ => TargetKind::Mailbox,
        }
    }

    /// Reads a level as it may come from a ticket variable: case, spaces, dashes and
    /// underscores are ignored ("Send As", "send_as", "SendAs" are all `send-as`).
    pub fn from_ticket(text: &str) -> Option<AccessLevel> {
        let squash = |s: &str| s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
        let wanted = squash(text);
        AccessLevel::ALL.iter().copied().find(|l| squash(l.as_str()) == wanted)
    }
}

keyword_enum! {
    /// Entra group or Exchange Online mailbox.
    pub enum TargetKind: "target kind" {
        Group = "group",
        Mailbox = "mailbox",
    }
}

keyword_enum! {
    /// Exchange `RecipientTypeDetails`, in short.
    pub enum MailboxType: "mailbox type" {
        Shared = "shared",
        Room = "room",
        Equipment = "equipment",
        User = "user",
    }
}

impl MailboxType {
    /// Exchange's `RecipientTypeDetails` for a mailbox of this type.
    pub fn recipient_type_details(self) -> &'static str {
        match self {
            MailboxType::Shared => "SharedMailbox",
            MailboxType::Room => "RoomMailbox",
            MailboxType::Equipment => "EquipmentMailbox",
            MailboxType::User => "UserMailbox",
        }
    }
}

keyword_enum! {
    /// What happens when a stage's time to decide runs out.
    pub enum OnTimeout: "timeout action" {
        /// The request expires and the ticket is closed.
        Expire = "expire",
        /// The stage is handed to its fallback approver.
        Escalate = "escalate",
    }
}

keyword_enum! {
    /// What happens to a request longer than the maximum duration.
    pub enum OverMax: "over-maximum action" {
        /// The grant is shortened to the maximum and the decision says so.
        Shorten = "shorten",
        /// The request is denied.
        Deny = "deny",
    }
}

keyword_enum! {
    /// Who may approve a stage entry.
    pub enum ApproverKind: "approver kind" {
        Manager = "manager",
        MailboxOwner = "mailbox-owner",
        DataOwner = "data-owner",
        AppOwner = "app-owner",
        /// Any member of a security group.
        Group = "group",
        /// Any of a list of named users.
        Users = "users",
        /// The requester's manager's manager (a fallback when the manager cannot approve).
        ManagersManager = "managers-manager",
    }
}

/// One approver entry of a stage, as written in the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ApproverSpec {
    Manager,
    MailboxOwner,
    DataOwner,
    AppOwner,
    /// Any member of this security group (object id).
    Group {
        id: String,
    },
    /// Any one of these users (object ids or UPNs).
    Users {
        ids: Vec<String>,
    },
    /// The requester's manager's manager.
    ManagersManager,
}

impl ApproverSpec {
    pub fn kind(&self) -> ApproverKind {
        match self {
            ApproverSpec::Manager => ApproverKind::Manager,
            ApproverSpec::MailboxOwner => ApproverKind::MailboxOwner,
            ApproverSpec::DataOwner => ApproverKind::DataOwner,
            ApproverSpec::AppOwner => ApproverKind::AppOwner,
            ApproverSpec::Group { .. } => ApproverKind::Group,
            ApproverSpec::Users { .. } => ApproverKind::Users,
            ApproverSpec::ManagersManager => ApproverKind::ManagersManager,
        }
    }

    /// Approvers that may stand in when a stage's own cannot decide: a group, named users, or
    /// the manager's manager.
    pub fn can_fall_back(&self) -> bool {
        matches!(self, ApproverSpec::Group { .. } | ApproverSpec::Users { .. } | ApproverSpec::ManagersManager)
    }
}

/// How many of a stage's approver entries must approve. Written "any", "all" or "N-of-M".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// One approval from any entry.
    Any,
    /// One approval for every entry, each from a different person.
    All,
    /// Approvals for at least `n` of the `m` entries, each from a different person.
    NOfM { n: usize, m: usize },
}

/// A quorum that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quorum \"{0}\", expected \"any\", \"all\" or \"N-of-M\" such as \"2-of-3\"")]
pub struct QuorumError(pub String);

impl std::str::FromStr for Quorum {
    type Err = QuorumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || QuorumError(s.to_owned());
        match s.trim() {
            "any" => Ok(Quorum::Any),
            "all" => Ok(Quorum::All),
            other => {
                let (n, m) = other.split_once("-of-").ok_or_else(bad)?;
                let n: usize = n.trim().parse().map_err(|_| bad())?;
                let m: usize = m.trim().parse().map_err(|_| bad())?;
                Ok(Quorum::NOfM { n, m })
            }
        }
    }
}

impl Serialize for Quorum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quorum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::units::from_str_value(d, "a quorum such as \"2-of-3\"")
    }
}

impl Quorum {
    /// How many entries must be satisfied, for a stage with `entries` entries.
    pub fn required(self, entries: usize) -> usize {
        match self {
            Quorum::Any => 1.min(entries),
            Quorum::All => entries,
            Quorum::NOfM { n, .. } => n,
        }
    }
}

impl std::fmt::Display for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quorum::Any => f.write_str("any"),
            Quorum::All => f.write_str("all"),
            Quorum::NOfM { n, m } => write!(f, "{n}-of-{m}"),
        }
    }
}

/// Who owns a target, by role. Entries are object ids or UPNs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owners {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mailbox: Vec<String>,
}

/// Where a target lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TargetRef {
    Group {
        id: String,
    },
    Mailbox {
        address: String,
        mailbox_type: MailboxType,
        /// Full Access grants map the mailbox in Outlook automatically (Exchange's default).
        #[serde(default = "yes")]
        automapping: bool,
    },
}

fn yes() -> bool {
    true
}

/// What reconciliation does with a member of a governed group that no request and no
/// recorded pre-existing membership explains (`unexplained_members` on a group or in
/// `[defaults]`). It is always reported (an `unexplained_member` event on the directory log and
/// the `unexplained` counter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnexplainedMembers {
    /// Reported only.
    #[default]
    Report,
    /// Reported, and on-call is paged (warning severity), the page resolved once the member is
    /// gone.
    Page,
    /// Reported, then removed from the group and verified gone.
    Remove,
}

impl UnexplainedMembers {
    pub fn as_str(self) -> &'static str {
        match self {
            UnexplainedMembers::Report => "report",
            UnexplainedMembers::Page => "page",
            UnexplainedMembers::Remove => "remove",
        }
    }
}

/// An approved group or mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The key the policy file uses for it (`GRP-FINANCE-BI-READ`, `finance@contoso.com`).
    pub key: String,
    pub target: TargetRef,
    pub display_name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub owners: Owners,
    /// The levels that may be requested on it.
    pub levels: Vec<AccessLevel>,
    /// Groups: what reconciliation does with a member no request explains.
    pub unexplained_members: UnexplainedMembers,
}

impl Target {
    pub fn kind(&self) -> TargetKind {
        match self.target {
            TargetRef::Group { .. } => TargetKind::Group,
            TargetRef::Mailbox { .. } => TargetKind::Mailbox,
        }
    }

    pub fn group_id(&self) -> Option<&str> {
        match &self.target {
            TargetRef::Group { id } => Some(id),
            TargetRef::Mailbox { .. } => None,
        }
    }

    pub fn mailbox_address(&self) -> Option<&str> {
        match &self.target {
            TargetRef::Group { .. } => None,
            TargetRef::Mailbox { address, .. } => Some(address),
        }
    }

    pub fn mailbox_type(&self) -> Option<MailboxType> {
        match &self.target {
            TargetRef::Group { .. } => None,
            TargetRef::Mailbox { mailbox_type, .. } => Some(*mailbox_type),
        }
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// True if `reference` names this target by key, group object id or mailbox address.
    pub fn is_named_by(&self, reference: &str) -> bool {
        let r = normalize(reference);
        if r.is_empty() {
            return false;
        }
        normalize(&self.key) == r
            || match &self.target {
                TargetRef::Group { id } => normalize(id) == r,
                TargetRef::Mailbox { address, .. } => normalize(address) == r,
            }
    }
}

/// A service-desk catalog item and the targets it may grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The catalog item name exactly as the service desk shows it.
    pub item: String,
    pub aliases: Vec<String>,
    pub description: Option<String>,
    /// Keys of the targets it offers.
    pub targets: Vec<String>,
}

/// The conditions under which a rule, duration or window applies. Every given field must hold;
/// an empty match applies to everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    /// Any of these target keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TargetKind>,
    /// Any of these mailbox types (never matches a group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mailbox_types: Vec<MailboxType>,
    /// All of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// None of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without_tags: Vec<String>,
    /// Any of these levels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<AccessLevel>,
    /// The requester is a member of any of these groups (object ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requester_member_of: Vec<String>,
}

impl Match {
    pub fn is_empty(&self) -> bool {
        *self == Match::default()
    }

    /// Whether a request for `level` on `target` by someone in `member_of` is matched.
    pub fn matches(&self, target: &Target, level: AccessLevel, member_of: &[String]) -> bool {
        (self.targets.is_empty() || self.targets.contains(&target.key))
            && self.kind.is_none_or(|k| k == target.kind())
            && (self.mailbox_types.is_empty() || target.mailbox_type().is_some_and(|t| self.mailbox_types.contains(&t)))
            && self.tags.iter().all(|t| target.has_tag(t))
            && !self.without_tags.iter().any(|t| target.has_tag(t))
            && (self.levels.is_empty() || self.levels.contains(&level))
            && (self.requester_member_of.is_empty()
                || self.requester_member_of.iter().any(|g| member_of.iter().any(|m| normalize(m) == normalize(g))))
    }
}

/// One approval stage as declared (defaults already applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    pub name: String,
    pub approvers: Vec<ApproverSpec>,
    pub quorum: Quorum,
    pub time_to_decide: PolicyDuration,
    pub on_timeout: OnTimeout,
    /// Decides when an entry has nobody to ask, when the quorum cannot be reached with
    /// distinct people, or after escalation. A group, named users, or the manager's manager.
    pub fallback: Option<ApproverSpec>,
    /// When to remind the stage's approvers, as percentages of its time to decide.
    pub reminders: Vec<u8>,
    /// An approver whose automatic replies are on (out of office) is passed over, and their
    /// entry goes to the fallback.
    pub skip_out_of_office: bool,
}

/// What a matching rule decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOutcome {
    /// Approved by the rule itself; the rule's name is recorded as the reason.
    AutoApprove,
    /// Approval by people, stage after stage.
    Approve(Vec<StageSpec>),
    /// Refused, with the rule's reason.
    Deny(String),
}

/// An approval rule. Rules are tried in file order; the first that matches decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub description: Option<String>,
    pub when: Match,
    pub outcome: RuleOutcome,
    /// Whoever filed the ticket for someone else may approve it (the person the access is for
    /// never may). Default false.
    pub filer_may_approve: bool,
}

/// Duration limits. The first entry in file order that matches applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationRule {
    pub name: String,
    pub when: Match,
    /// The grant must end: without a requested duration the default applies, without a
    /// default the request is denied.
    pub required: bool,
    pub default: Option<PolicyDuration>,
    pub max: Option<PolicyDuration>,
    pub over_max: OverMax,
}

/// A `[[test]]` case: facts in, expected decision out.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    pub name: String,
    pub description: Option<String>,
    pub facts: RequestFacts,
    pub expect: Expectation,
}

/// A parsed, validated policy. Cheap to share behind an `Arc`; [`Policy::version`] is the
/// content hash of the exact bytes it was parsed from.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) source: String,
    pub(crate) version: String,
    pub(crate) name: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) targets: Vec<Target>,
    pub(crate) catalog: Vec<CatalogEntry>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) durations: Vec<DurationRule>,
    pub(crate) windows: Vec<ChangeWindow>,
    pub(crate) tests: Vec<TestCase>,
    /// `[defaults] time_zone`: where plain dates are read (an end date "2027-03-02" means the
    /// end of that day there).
    pub(crate) time_zone: Option<String>,
}

impl Policy {
    /// Whether any rule asks the manager's manager (as an approver or a fallback), so the
    /// directory read must include them.
    pub fn uses_managers_manager(&self) -> bool {
        self.rules.iter().any(|r| match &r.outcome {
            RuleOutcome::Approve(stages) => stages.iter().any(|s| {
                s.approvers.iter().chain(s.fallback.iter()).any(|a| matches!(a, ApproverSpec::ManagersManager))
            }),
            _ => false,
        })
    }
}

/// Which catalog entry a name chose, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemHit<'a> {
    Name(usize),
    Alias(usize, &'a str),
}

impl ItemHit<'_> {
    pub(crate) fn entry(self) -> usize {
        match self {
            ItemHit::Name(i) | ItemHit::Alias(i, _) => i,
        }
    }
}

impl Policy {
    /// `sha256:<hex>` of the exact bytes the policy was parsed from.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The name the policy was loaded under (a file name), used in messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Declared tags and their descriptions.
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.tags
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    pub fn catalog(&self) -> &[CatalogEntry] {
        &self.catalog
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn durations(&self) -> &[DurationRule] {
        &self.durations
    }

    pub fn windows(&self) -> &[ChangeWindow] {
        &self.windows
    }

    pub fn tests(&self) -> &[TestCase] {
        &self.tests
    }

    pub fn target(&self, key: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.key == key)
    }

    /// The time zone plain dates are read in (UTC when the policy names none).
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        self.time_zone.as_deref().and_then(|z| jiff::tz::TimeZone::get(z).ok()).unwrap_or(jiff::tz::TimeZone::UTC)
    }

    /// The end of a plain date's day in the policy's time zone: the first instant of the next
    /// day there. Access "until 2027-03-02" lasts through that whole day.
    pub fn end_of_day(&self, date: jiff::civil::Date) -> Option<jiff::Timestamp> {
        let next = date.tomorrow().ok()?;
        next.to_zoned(self.time_zone()).ok().map(|z| z.timestamp())
    }

    pub fn window(&self, name: &str) -> Option<&ChangeWindow> {
        self.windows.iter().find(|w| w.name == name)
    }

    /// The catalog entry whose item name or alias is `name` (case and spacing ignored).
    pub(crate) fn find_item(&self, name: &str) -> Option<ItemHit<'_>> {
        let wanted = normalize(name);
        if wanted.is_empty() {
            return None;
        }
        for (i, entry) in self.catalog.iter().enumerate() {
            if normalize(&entry.item) == wanted {
                return Some(ItemHit::Name(i));
            }
        }
        for (i, entry) in self.catalog.iter().enumerate() {
            if let Some(alias) = entry.aliases.iter().find(|a| normalize(a) == wanted) {
                return Some(ItemHit::Alias(i, alias));
            }
        }
        None
    }

    /// The first matching rule, duration rule and window, in file order.
    pub fn rule_for(&self, target: &Target, level: AccessLevel, member_of: &[String]) -> Option<&Rule> {
        self.rules.iter().find(|r| r.when.matches(target, level, member_of))
    }

    pub fn duration_for(&self, target: &Target, level: AccessLevel, member_of: &[String]) -> Option<&DurationRule> {
        self.durations.iter().find(|r| r.when.matches(target, level, member_of))
    }

    pub fn window_for(&self, target: &Target, level: AccessLevel, member_of: &[String]) -> Option<&ChangeWindow> {
        self.windows.iter().find(|w| w.when.matches(target, level, member_of))
    }

    /// A one-line summary for `grantline policy check`.
    pub fn summary(&self) -> String {
        format!(
            "{}: ok, version {}: {} catalog items, {} targets, {} rules, {} duration rules, {} windows, {} tests",
            self.source,
            self.version,
            self.catalog.len(),
            self.targets.len(),
            self.rules.len(),
            self.durations.len(),
            self.windows.len(),
            self.tests.len()
        )
    }
}
