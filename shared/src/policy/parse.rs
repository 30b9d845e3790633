//! Reading a policy file: TOML into raw structures that keep source spans, then validation and
//! cross-references into the [`Policy`] model. Pure: bytes in, policy or errors out (time zone
//! names are looked up in the time zone database).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use jiff::tz::TimeZone;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::decision::{Outcome, SuggestionStatus, codes};
use super::error::{Diagnostic, PolicyError, locate};
use super::facts::{GroupFacts, MailboxFacts, Principal, RequestFacts, UserFacts};
use super::model::{
    AccessLevel, ApproverKind, ApproverSpec, CatalogEntry, DurationRule, MailboxType, Match, OnTimeout, OverMax,
    Owners, Policy, Quorum, Rule, RuleOutcome, SCHEMA_VERSION, StageSpec, Target, TargetKind, TargetRef, TestCase,
    UnexplainedMembers,
};
use super::testing::{Expectation, ExpectedDuration};
use super::units::{PolicyDuration, TomlTimestamp, normalize};
use super::window::{ChangeWindow, WindowSlot};

// ---------------------------------------------------------------------------------------------
// Raw file structure.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[allow(dead_code)]
    schema_version: i64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    tags: BTreeMap<Spanned<String>, String>,
    #[serde(default)]
    groups: BTreeMap<Spanned<String>, RawGroup>,
    #[serde(default)]
    mailboxes: BTreeMap<Spanned<String>, RawMailbox>,
    #[serde(default)]
    catalog: Vec<RawCatalog>,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    duration: Vec<RawDuration>,
    #[serde(default)]
    window: Vec<RawWindow>,
    #[serde(default)]
    fixtures: RawFixtures,
    #[serde(default)]
    test: Vec<RawTest>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default)]
    time_to_decide: Option<PolicyDuration>,
    #[serde(default)]
    on_timeout: Option<OnTimeout>,
    #[serde(default)]
    fallback: Option<Spanned<RawApprover>>,
    #[serde(default)]
    reminders: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    skip_out_of_office: Option<bool>,
    /// The time zone plain dates (an end date without a time) are read in.
    #[serde(default)]
    time_zone: Option<Spanned<String>>,
    /// What reconciliation does with a member of a governed group no request explains.
    #[serde(default)]
    unexplained_members: Option<UnexplainedMembers>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOwners {
    #[serde(default)]
    data: Vec<String>,
    #[serde(default)]
    app: Vec<String>,
    #[serde(default)]
    mailbox: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    id: Spanned<String>,
    display_name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    #[serde(default)]
    owners: RawOwners,
    #[serde(default)]
    levels: Option<Vec<Spanned<AccessLevel>>>,
    #[serde(default)]
    unexplained_members: Option<UnexplainedMembers>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailbox {
    #[serde(rename = "type")]
    mailbox_type: MailboxType,
    display_name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    #[serde(default)]
    owners: RawOwners,
    levels: Spanned<Vec<Spanned<AccessLevel>>>,
    /// Full Access: whether Outlook maps the mailbox automatically (default true).
    #[serde(default)]
    automapping: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    item: Spanned<String>,
    #[serde(default)]
    aliases: Vec<Spanned<String>>,
    #[serde(default)]
    description: Option<String>,
    targets: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    #[serde(default)]
    targets: Vec<Spanned<String>>,
    #[serde(default)]
    kind: Option<TargetKind>,
    #[serde(default)]
    mailbox_types: Vec<MailboxType>,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    #[serde(default)]
    without_tags: Vec<Spanned<String>>,
    #[serde(default)]
    levels: Vec<AccessLevel>,
    #[serde(default)]
    requester_member_of: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    when: RawWhen,
    #[serde(default)]
    auto_approve: Option<bool>,
    #[serde(default)]
    deny: Option<String>,
    #[serde(default)]
    stage: Vec<RawStage>,
    #[serde(default)]
    filer_may_approve: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    #[serde(default)]
    name: Option<String>,
    approvers: Spanned<Vec<Spanned<RawApprover>>>,
    #[serde(default)]
    quorum: Option<Spanned<Quorum>>,
    #[serde(default)]
    time_to_decide: Option<PolicyDuration>,
    #[serde(default)]
    on_timeout: Option<Spanned<OnTimeout>>,
    #[serde(default)]
    fallback: Option<Spanned<RawApprover>>,
    #[serde(default)]
    reminders: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    skip_out_of_office: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDuration {
    name: Spanned<String>,
    #[serde(default)]
    when: RawWhen,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<Spanned<PolicyDuration>>,
    #[serde(default)]
    max: Option<PolicyDuration>,
    #[serde(default)]
    over_max: Option<OverMax>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    name: Spanned<String>,
    #[serde(default)]
    when: RawWhen,
    time_zone: Spanned<String>,
    open: Spanned<Vec<WindowSlot>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFixtures {
    #[serde(default)]
    users: BTreeMap<String, RawUser>,
    #[serde(default)]
    groups: BTreeMap<String, RawGroupFacts>,
    #[serde(default)]
    mailboxes: BTreeMap<String, RawMailboxFacts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailboxFacts {
    address: String,
    recipient_type_details: String,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    id: String,
    upn: String,
    #[serde(default)]
    display_name: Option<String>,
    user_type: String,
    account_enabled: bool,
    #[serde(default)]
    employee_leave_date_time: Option<TomlTimestamp>,
    #[serde(default)]
    manager_id: Option<String>,
    #[serde(default)]
    manager_upn: Option<String>,
    #[serde(default)]
    managers_manager_id: Option<String>,
    #[serde(default)]
    managers_manager_upn: Option<String>,
    #[serde(default)]
    member_of: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroupFacts {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    group_types: Vec<String>,
    mail_enabled: bool,
    security_enabled: bool,
    #[serde(default)]
    is_assignable_to_role: Option<bool>,
    #[serde(default)]
    membership_rule: Option<String>,
    #[serde(default)]
    on_premises_sync_enabled: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    now: TomlTimestamp,
    requester: Spanned<String>,
    #[serde(default)]
    opened_by: Option<Spanned<String>>,
    #[serde(default)]
    catalog_item: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    end: Option<TomlTimestamp>,
    #[serde(default)]
    ai_suggested_target: Option<String>,
    #[serde(default)]
    target_group: Option<Spanned<String>>,
    #[serde(default)]
    target_mailbox: Option<Spanned<String>>,
    expect: RawExpect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    decision: Outcome,
    #[serde(default)]
    target: Option<Spanned<String>>,
    #[serde(default)]
    level: Option<AccessLevel>,
    #[serde(default)]
    rule: Option<Spanned<String>>,
    #[serde(default)]
    auto_approved_by: Option<Spanned<String>>,
    #[serde(default)]
    approvals: Option<Vec<Vec<ApproverKind>>>,
    #[serde(default)]
    duration: Option<ExpectedDuration>,
    #[serde(default)]
    ends_at: Option<TomlTimestamp>,
    #[serde(default)]
    shortened_to_cap: Option<bool>,
    #[serde(default)]
    execute_at: Option<TomlTimestamp>,
    #[serde(default)]
    failing_checks: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    ai_suggestion: Option<SuggestionStatus>,
}

/// An approver as written: `"manager"`, `"mailbox-owner"`, `"data-owner"`, `"app-owner"`,
/// `{ group = "<object id>" }`, `{ user = "<id or UPN>" }` or `{ users = [...] }`.
struct RawApprover(ApproverSpec);

const APPROVER_HELP: &str = "expected \"manager\", \"managers-manager\", \"mailbox-owner\", \"data-owner\", \"app-owner\", { group = \"<object id>\" }, { user = \"<id or UPN>\" } or { users = [...] }";

fn check_guid<E: de::Error>(what: &str, id: &str) -> Result<(), E> {
    uuid::Uuid::try_parse(id.trim()).map(|_| ()).map_err(|_| {
        E::custom(format!(
            "invalid {what} \"{id}\", expected an object id (GUID) such as 6f1c2a10-0000-4000-8000-00000000f1b1"
        ))
    })
}

impl<'de> Deserialize<'de> for RawApprover {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawApprover;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an approver")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawApprover, E> {
                Ok(RawApprover(match v {
                    "manager" => ApproverSpec::Manager,
                    "managers-manager" => ApproverSpec::ManagersManager,
                    "mailbox-owner" => ApproverSpec::MailboxOwner,
                    "data-owner" => ApproverSpec::DataOwner,
                    "app-owner" => ApproverSpec::AppOwner,
                    _ => return Err(E::custom(format!("unknown approver \"{v}\", {APPROVER_HELP}"))),
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawApprover, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(format!("empty approver, {APPROVER_HELP}")));
                };
                let spec = match key.as_str() {
                    "group" => {
                        let id: String = map.next_value()?;
                        check_guid::<A::Error>("group id", &id)?;
                        ApproverSpec::Group { id: id.trim().to_owned() }
                    }
                    "user" => {
                        let id: String = map.next_value()?;
                        if id.trim().is_empty() {
                            return Err(de::Error::custom("empty user, expected an object id or UPN"));
                        }
                        ApproverSpec::Users { ids: vec![id.trim().to_owned()] }
                    }
                    "users" => {
                        let ids: Vec<String> = map.next_value()?;
                        if ids.is_empty() || ids.iter().any(|i| i.trim().is_empty()) {
                            return Err(de::Error::custom("users must list at least one object id or UPN, none empty"));
                        }
                        ApproverSpec::Users { ids: ids.into_iter().map(|i| i.trim().to_owned()).collect() }
                    }
                    other => {
                        return Err(de::Error::custom(format!("unknown approver key \"{other}\", {APPROVER_HELP}")));
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "unexpected key \"{extra}\": an approver has exactly one key, {APPROVER_HELP}"
                    )));
                }
                Ok(RawApprover(spec))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reminders as written: percentages of a stage's time to decide, "50%", strictly between 0 and
/// 100, in increasing order.
fn parse_reminders(cx: &mut Cx<'_>, r: &Spanned<Vec<String>>) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for text in r.get_ref() {
        match text.trim().strip_suffix('%').and_then(|n| n.trim().parse::<u8>().ok()) {
            Some(p) if p > 0 && p < 100 && out.last().is_none_or(|l| *l < p) => out.push(p),
            _ => {
                cx.at(
                    Some(r.span()),
                    format!(
                        "invalid reminder \"{text}\", expected increasing percentages of the time to decide between 1% and 99%, such as [\"50%\", \"90%\"]"
                    ),
                );
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Parsing and validation.

/// Parses and validates a policy. `source` names the file in messages; `bytes` are hashed as
/// they are for [`Policy::version`].
pub fn parse_policy(source: &str, bytes: &[u8]) -> Result<Policy, PolicyError> {
    let version = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let (line, column) = locate(valid, valid.len());
            return Err(PolicyError::Invalid {
                file: source.to_owned(),
                diagnostics: vec![Diagnostic { line, column, message: "the file is not valid UTF-8".to_owned() }],
            });
        }
    };
    let mut cx = Cx { src: text, diags: Vec::new() };

    #[derive(Deserialize)]
    struct Probe {
        schema_version: Option<Spanned<toml::Value>>,
    }
    let probe: Probe = toml::from_str(text).map_err(|e| cx.toml_error(source, &e))?;
    match probe.schema_version {
        None => {
            cx.at(
                Some(0..0),
                format!("missing schema_version, expected `schema_version = {SCHEMA_VERSION}` at the top of the file"),
            );
            return Err(cx.into_error(source));
        }
        Some(v) if v.get_ref().as_integer() != Some(SCHEMA_VERSION) => {
            cx.at(Some(v.span()), format!("unsupported schema_version {}, expected {SCHEMA_VERSION}", v.get_ref()));
            return Err(cx.into_error(source));
        }
        Some(_) => {}
    }

    let raw: RawPolicy = toml::from_str(text).map_err(|e| cx.toml_error(source, &e))?;
    let policy = build(raw, &mut cx, source, version);
    if cx.diags.is_empty() { Ok(policy) } else { Err(cx.into_error(source)) }
}

struct Cx<'a> {
    src: &'a str,
    diags: Vec<Diagnostic>,
}

impl Cx<'_> {
    fn at(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let (line, column) = match span {
            Some(s) => locate(self.src, s.start),
            None => (0, 0),
        };
        self.diags.push(Diagnostic { line, column, message: message.into() });
    }

    fn toml_error(&self, source: &str, e: &toml::de::Error) -> PolicyError {
        let (line, column) = match e.span() {
            Some(s) => locate(self.src, s.start),
            None => (0, 0),
        };
        PolicyError::Invalid {
            file: source.to_owned(),
            diagnostics: vec![Diagnostic { line, column, message: e.message().trim().to_owned() }],
        }
    }

    fn into_error(self, source: &str) -> PolicyError {
        let mut diagnostics = self.diags;
        diagnostics.sort_by_key(|d| (d.line, d.column));
        PolicyError::Invalid { file: source.to_owned(), diagnostics }
    }
}

fn list(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let all: Vec<String> = items.into_iter().map(|s| s.as_ref().to_owned()).collect();
    if all.is_empty() {
        return "none declared".to_owned();
    }
    let shown: Vec<&str> = all.iter().take(12).map(String::as_str).collect();
    let more = if all.len() > 12 { format!(", ... ({} in all)", all.len()) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

/// Names declared so far, for cross-reference checks.
struct Names {
    tags: BTreeSet<String>,
    targets: BTreeSet<String>,
}

impl Names {
    fn tag(&self, cx: &mut Cx<'_>, tag: &Spanned<String>) -> String {
        if !self.tags.contains(tag.get_ref()) {
            cx.at(
                Some(tag.span()),
                format!(
                    "unknown tag \"{}\", expected one of {} (declare tags under [tags])",
                    tag.get_ref(),
                    list(&self.tags)
                ),
            );
        }
        tag.get_ref().clone()
    }

    fn target(&self, cx: &mut Cx<'_>, key: &Spanned<String>) -> String {
        if !self.targets.contains(key.get_ref()) {
            cx.at(
                Some(key.span()),
                format!(
                    "unknown target \"{}\", expected a key of [groups] or [mailboxes]: {}",
                    key.get_ref(),
                    list(&self.targets)
                ),
            );
        }
        key.get_ref().clone()
    }

    fn when(&self, cx: &mut Cx<'_>, w: RawWhen) -> Match {
        Match {
            targets: w.targets.iter().map(|t| self.target(cx, t)).collect(),
            kind: w.kind,
            mailbox_types: w.mailbox_types,
            tags: w.tags.iter().map(|t| self.tag(cx, t)).collect(),
            without_tags: w.without_tags.iter().map(|t| self.tag(cx, t)).collect(),
            levels: w.levels,
            requester_member_of: w
                .requester_member_of
                .iter()
                .map(|g| {
                    if let Err(e) = check_guid::<de::value::Error>("group id", g.get_ref()) {
                        cx.at(Some(g.span()), e.to_string());
                    }
                    g.get_ref().trim().to_owned()
                })
                .collect(),
        }
    }
}

fn unique_name(cx: &mut Cx<'_>, seen: &mut BTreeSet<String>, what: &str, name: &Spanned<String>) -> String {
    let n = name.get_ref().trim().to_owned();
    if n.is_empty() {
        cx.at(Some(name.span()), format!("empty {what} name"));
    } else if !seen.insert(n.clone()) {
        cx.at(Some(name.span()), format!("duplicate {what} name \"{n}\""));
    }
    n
}

fn build(raw: RawPolicy, cx: &mut Cx<'_>, source: &str, version: String) -> Policy {
    // Tags.
    let mut tags = BTreeMap::new();
    for (name, description) in raw.tags {
        if name.get_ref().trim().is_empty() {
            cx.at(Some(name.span()), "empty tag name");
        }
        tags.insert(name.into_inner(), description);
    }
    let mut names = Names { tags: tags.keys().cloned().collect(), targets: BTreeSet::new() };

    // Targets: groups, then mailboxes, each sorted by key.
    let mut targets: Vec<Target> = Vec::new();
    let mut spans: BTreeMap<String, Range<usize>> = BTreeMap::new();
    let mut seen_refs: BTreeMap<String, String> = BTreeMap::new();
    let mut claim = |cx: &mut Cx<'_>, key: &str, reference: &str, span: Range<usize>, what: &str| {
        let n = normalize(reference);
        match seen_refs.get(&n) {
            Some(other) if other != key => {
                cx.at(Some(span), format!("{what} \"{reference}\" is also used by target \"{other}\""));
            }
            _ => {
                seen_refs.insert(n, key.to_owned());
            }
        }
    };
    for (key, g) in raw.groups {
        let k = key.get_ref().clone();
        if k.contains('@') {
            cx.at(
                Some(key.span()),
                format!("group key \"{k}\" contains '@'; mailboxes are declared under [mailboxes]"),
            );
        }
        claim(cx, &k, &k, key.span(), "key");
        if let Err(e) = check_guid::<de::value::Error>("group id", g.id.get_ref()) {
            cx.at(Some(g.id.span()), e.to_string());
        }
        claim(cx, &k, g.id.get_ref(), g.id.span(), "group id");
        let levels = match g.levels {
            None => vec![AccessLevel::Member],
            Some(ls) => {
                for l in &ls {
                    if l.get_ref().target_kind() != TargetKind::Group {
                        cx.at(
                            Some(l.span()),
                            format!("{} is a mailbox level; a group offers only member", l.get_ref()),
                        );
                    }
                }
                ls.into_iter().map(Spanned::into_inner).collect()
            }
        };
        if let Some(m) = &g.owners.mailbox {
            cx.at(Some(m.span()), "mailbox owners belong to mailboxes; a group has data and app owners");
        }
        let t = Target {
            key: k.clone(),
            target: TargetRef::Group { id: g.id.get_ref().trim().to_owned() },
            display_name: g.display_name,
            description: g.description,
            tags: g.tags.iter().map(|t| names.tag(cx, t)).collect(),
            owners: Owners { data: g.owners.data, app: g.owners.app, mailbox: Vec::new() },
            levels,
            unexplained_members: g.unexplained_members.or(raw.defaults.unexplained_members).unwrap_or_default(),
        };
        spans.insert(k.clone(), key.span());
        names.targets.insert(k);
        targets.push(t);
    }
    for (key, m) in raw.mailboxes {
        let k = key.get_ref().clone();
        if !k.contains('@') {
            cx.at(
                Some(key.span()),
                format!("mailbox key \"{k}\" must be the mailbox's address, such as \"finance@contoso.com\""),
            );
        }
        claim(cx, &k, &k, key.span(), "address");
        let level_span = m.levels.span();
        let levels: Vec<AccessLevel> = m
            .levels
            .into_inner()
            .into_iter()
            .map(|l| {
                if l.get_ref().target_kind() != TargetKind::Mailbox {
                    cx.at(
                        Some(l.span()),
                        "member is a group level; a mailbox offers read-only, full-access, send-as or send-on-behalf",
                    );
                }
                l.into_inner()
            })
            .collect();
        if levels.is_empty() {
            cx.at(
                Some(level_span),
                "a mailbox must offer at least one level: read-only, full-access, send-as, send-on-behalf",
            );
        }
        let t = Target {
            key: k.clone(),
            target: TargetRef::Mailbox {
                address: k.trim().to_owned(),
                mailbox_type: m.mailbox_type,
                automapping: m.automapping.unwrap_or(true),
            },
            display_name: m.display_name,
            description: m.description,
            tags: m.tags.iter().map(|t| names.tag(cx, t)).collect(),
            owners: Owners {
                data: m.owners.data,
                app: m.owners.app,
                mailbox: m.owners.mailbox.map(Spanned::into_inner).unwrap_or_default(),
            },
            levels,
            unexplained_members: UnexplainedMembers::Report,
        };
        spans.insert(k.clone(), key.span());
        names.targets.insert(k);
        targets.push(t);
    }

    // Catalog.
    let mut catalog = Vec::new();
    let mut item_names: BTreeMap<String, String> = BTreeMap::new();
    let mut offered: BTreeSet<String> = BTreeSet::new();
    for c in raw.catalog {
        let item = c.item.get_ref().trim().to_owned();
        if item.is_empty() {
            cx.at(Some(c.item.span()), "empty catalog item name");
        }
        for name in std::iter::once(&c.item).chain(c.aliases.iter()) {
            let n = normalize(name.get_ref());
            if n.is_empty() {
                continue;
            }
            match item_names.get(&n) {
                Some(owner) => cx.at(
                    Some(name.span()),
                    format!(
                        "\"{}\" already names catalog item \"{owner}\"; item names and aliases must be unique",
                        name.get_ref()
                    ),
                ),
                None => {
                    item_names.insert(n, item.clone());
                }
            }
        }
        if c.targets.get_ref().is_empty() {
            cx.at(Some(c.targets.span()), format!("catalog item \"{item}\" offers no targets"));
        }
        let keys: Vec<String> = c.targets.get_ref().iter().map(|t| names.target(cx, t)).collect();
        offered.extend(keys.iter().cloned());
        catalog.push(CatalogEntry {
            item,
            aliases: c.aliases.into_iter().map(|a| a.into_inner().trim().to_owned()).collect(),
            description: c.description,
            targets: keys,
        });
    }
    for t in &targets {
        if !offered.contains(&t.key) {
            let span = spans.get(&t.key).cloned();
            cx.at(
                span,
                format!("target \"{}\" is not offered by any [[catalog]] item; add it to one or remove it", t.key),
            );
        }
    }

    // Defaults.
    let default_fallback = raw.defaults.fallback.map(|f| {
        let span = f.span();
        let spec = f.into_inner().0;
        if !spec.can_fall_back() {
            cx.at(
                Some(span),
                "a fallback must be a security group, named users or \"managers-manager\", such as { group = \"<object id>\" }",
            );
        }
        spec
    });

    // Rules.
    let mut rules = Vec::new();
    let mut rule_names = BTreeSet::new();
    for r in raw.rule {
        let name = unique_name(cx, &mut rule_names, "rule", &r.name);
        let when = names.when(cx, r.when);
        let auto = r.auto_approve == Some(true);
        let outcomes = usize::from(auto) + usize::from(r.deny.is_some()) + usize::from(!r.stage.is_empty());
        if outcomes != 1 {
            cx.at(
                Some(r.name.span()),
                format!(
                    "rule \"{name}\" must have exactly one outcome: auto_approve = true, deny = \"<reason>\", or [[rule.stage]] entries (found {outcomes})"
                ),
            );
        }
        let mut stages = Vec::new();
        for (i, s) in r.stage.into_iter().enumerate() {
            let approvers_span = s.approvers.span();
            let approvers: Vec<ApproverSpec> = s.approvers.into_inner().into_iter().map(|a| a.into_inner().0).collect();
            if approvers.is_empty() {
                cx.at(Some(approvers_span.clone()), "a stage needs at least one approver");
            }
            let quorum = match s.quorum {
                None => Quorum::All,
                Some(q) => {
                    let span = q.span();
                    let quorum = q.into_inner();
                    if let Quorum::NOfM { n, m } = quorum {
                        if n == 0 {
                            cx.at(Some(span), format!("quorum {n}-of-{m} needs at least one approval"));
                        } else if n > m {
                            cx.at(
                                Some(span),
                                format!(
                                    "quorum {n}-of-{m} asks for more approvals ({n}) than there are approvers ({m})"
                                ),
                            );
                        } else if m != approvers.len() {
                            cx.at(
                                Some(span),
                                format!(
                                    "quorum {n}-of-{m} counts {m} approvers but the stage lists {}",
                                    approvers.len()
                                ),
                            );
                        }
                    }
                    quorum
                }
            };
            let time_to_decide = match s.time_to_decide.or(raw.defaults.time_to_decide) {
                Some(t) => t,
                None => {
                    cx.at(Some(approvers_span.clone()), "this stage has no time_to_decide and [defaults] sets none");
                    PolicyDuration::PLACEHOLDER
                }
            };
            let fallback = match s.fallback {
                Some(f) => {
                    let span = f.span();
                    let spec = f.into_inner().0;
                    if !spec.can_fall_back() {
                        cx.at(
                            Some(span),
                            "a fallback must be a security group, named users or \"managers-manager\", such as { group = \"<object id>\" }",
                        );
                    }
                    Some(spec)
                }
                None => default_fallback.clone(),
            };
            let on_timeout = match s.on_timeout {
                Some(o) => {
                    if *o.get_ref() == OnTimeout::Escalate && fallback.is_none() {
                        cx.at(
                            Some(o.span()),
                            "on_timeout = \"escalate\" needs a fallback (in the stage or in [defaults])",
                        );
                    }
                    o.into_inner()
                }
                None => {
                    let o = raw.defaults.on_timeout.unwrap_or(OnTimeout::Expire);
                    if o == OnTimeout::Escalate && fallback.is_none() {
                        cx.at(
                            Some(approvers_span.clone()),
                            "[defaults] on_timeout = \"escalate\" needs a fallback for this stage",
                        );
                    }
                    o
                }
            };
            let reminders = match s.reminders.as_ref().or(raw.defaults.reminders.as_ref()) {
                Some(r) => parse_reminders(cx, r),
                None => Vec::new(),
            };
            stages.push(StageSpec {
                name: s.name.unwrap_or_else(|| format!("stage {}", i + 1)),
                approvers,
                quorum,
                time_to_decide,
                on_timeout,
                fallback,
                reminders,
                skip_out_of_office: s.skip_out_of_office.or(raw.defaults.skip_out_of_office).unwrap_or(false),
            });
        }
        let outcome = if auto {
            RuleOutcome::AutoApprove
        } else if let Some(reason) = r.deny {
            RuleOutcome::Deny(reason)
        } else {
            RuleOutcome::Approve(stages)
        };
        rules.push(Rule { name, description: r.description, when, outcome, filer_may_approve: r.filer_may_approve });
    }

    // Durations.
    let mut durations = Vec::new();
    let mut duration_names = BTreeSet::new();
    for d in raw.duration {
        let name = unique_name(cx, &mut duration_names, "duration rule", &d.name);
        let when = names.when(cx, d.when);
        if let (Some(def), Some(max)) = (&d.default, d.max)
            && *def.get_ref() > max
        {
            cx.at(Some(def.span()), format!("the default {} is longer than the max {max}", def.get_ref()));
        }
        durations.push(DurationRule {
            name,
            when,
            required: d.required,
            default: d.default.map(Spanned::into_inner),
            max: d.max,
            over_max: d.over_max.unwrap_or(OverMax::Shorten),
        });
    }

    // The policy's time zone, for plain dates.
    let time_zone = match &raw.defaults.time_zone {
        None => None,
        Some(z) => {
            let zone = z.get_ref().trim();
            match TimeZone::get(zone) {
                Ok(_) => Some(zone.to_owned()),
                Err(_) => {
                    cx.at(
                        Some(z.span()),
                        format!(
                            "unknown time zone \"{zone}\", expected an IANA time zone name such as \"Europe/Amsterdam\""
                        ),
                    );
                    None
                }
            }
        }
    };

    // Windows.
    let mut windows = Vec::new();
    let mut window_names = BTreeSet::new();
    for w in raw.window {
        let name = unique_name(cx, &mut window_names, "window", &w.name);
        let when = names.when(cx, w.when);
        if w.open.get_ref().is_empty() {
            cx.at(Some(w.open.span()), "a window needs at least one opening such as \"mon-fri 08:00-18:00\"");
        }
        let zone = w.time_zone.get_ref().trim();
        match TimeZone::get(zone) {
            Ok(tz) => {
                windows.push(ChangeWindow { name, when, time_zone: zone.to_owned(), tz, open: w.open.into_inner() })
            }
            Err(_) => cx.at(
                Some(w.time_zone.span()),
                format!("unknown time zone \"{zone}\", expected an IANA time zone name such as \"Europe/Amsterdam\""),
            ),
        }
    }

    // Fixtures and tests.
    let users: BTreeMap<String, UserFacts> = raw
        .fixtures
        .users
        .into_iter()
        .map(|(k, u)| {
            (
                k,
                UserFacts {
                    id: u.id,
                    upn: u.upn,
                    display_name: u.display_name,
                    user_type: u.user_type,
                    account_enabled: u.account_enabled,
                    employee_leave_date_time: u.employee_leave_date_time.map(|t| t.0),
                    manager_id: u.manager_id,
                    manager_upn: u.manager_upn,
                    managers_manager: u
                        .managers_manager_id
                        .map(|id| Principal::new(id, u.managers_manager_upn.as_deref())),
                    member_of: u.member_of,
                },
            )
        })
        .collect();
    let groups: BTreeMap<String, GroupFacts> = raw
        .fixtures
        .groups
        .into_iter()
        .map(|(k, g)| {
            (
                k,
                GroupFacts {
                    id: g.id,
                    display_name: g.display_name,
                    group_types: g.group_types,
                    mail_enabled: g.mail_enabled,
                    security_enabled: g.security_enabled,
                    is_assignable_to_role: g.is_assignable_to_role,
                    membership_rule: g.membership_rule,
                    on_premises_sync_enabled: g.on_premises_sync_enabled,
                },
            )
        })
        .collect();
    let mailboxes: BTreeMap<String, MailboxFacts> = raw
        .fixtures
        .mailboxes
        .into_iter()
        .map(|(k, m)| {
            (
                k,
                MailboxFacts {
                    address: m.address,
                    recipient_type_details: m.recipient_type_details,
                    display_name: m.display_name,
                },
            )
        })
        .collect();
    let mut tests = Vec::new();
    let mut test_names = BTreeSet::new();
    for t in raw.test {
        let name = unique_name(cx, &mut test_names, "test", &t.name);
        let user = |cx: &mut Cx<'_>, r: &Spanned<String>| -> Option<UserFacts> {
            let found = users.get(r.get_ref()).cloned();
            if found.is_none() {
                cx.at(
                    Some(r.span()),
                    format!(
                        "unknown user fixture \"{}\", expected one of {} (under [fixtures.users])",
                        r.get_ref(),
                        list(users.keys())
                    ),
                );
            }
            found
        };
        let requester = user(cx, &t.requester);
        let opened_by = t.opened_by.as_ref().and_then(|o| user(cx, o)).map(|u| Principal::new(u.id, Some(&u.upn)));
        let target_group = t.target_group.as_ref().and_then(|g| {
            let found = groups.get(g.get_ref()).cloned();
            if found.is_none() {
                cx.at(
                    Some(g.span()),
                    format!(
                        "unknown group fixture \"{}\", expected one of {} (under [fixtures.groups])",
                        g.get_ref(),
                        list(groups.keys())
                    ),
                );
            }
            found
        });
        let target_mailbox = t.target_mailbox.as_ref().and_then(|m| {
            let found = mailboxes.get(m.get_ref()).cloned();
            if found.is_none() {
                cx.at(
                    Some(m.span()),
                    format!(
                        "unknown mailbox fixture \"{}\", expected one of {} (under [fixtures.mailboxes])",
                        m.get_ref(),
                        list(mailboxes.keys())
                    ),
                );
            }
            found
        });
        let e = t.expect;
        if let Some(k) = &e.target {
            names.target(cx, k);
        }
        for r in e.rule.iter().chain(e.auto_approved_by.iter()) {
            if !rule_names.contains(r.get_ref()) {
                cx.at(
                    Some(r.span()),
                    format!("unknown rule \"{}\", expected one of {}", r.get_ref(), list(&rule_names)),
                );
            }
        }
        if let Some(fc) = &e.failing_checks {
            for c in fc {
                if !codes::ALL.contains(&c.get_ref().as_str()) {
                    cx.at(
                        Some(c.span()),
                        format!("unknown check code \"{}\", expected one of {}", c.get_ref(), codes::ALL.join(", ")),
                    );
                }
            }
        }
        let expect = Expectation {
            decision: Some(e.decision),
            target: e.target.map(Spanned::into_inner),
            level: e.level,
            rule: e.rule.map(Spanned::into_inner),
            auto_approved_by: e.auto_approved_by.map(Spanned::into_inner),
            approvals: e.approvals,
            duration: e.duration,
            ends_at: e.ends_at.map(|t| t.0),
            shortened_to_cap: e.shortened_to_cap,
            execute_at: e.execute_at.map(|t| t.0),
            failing_checks: e.failing_checks.map(|v| v.into_iter().map(Spanned::into_inner).collect()),
            ai_suggestion: e.ai_suggestion,
        };
        if let Some(requester) = requester {
            tests.push(TestCase {
                name,
                description: t.description,
                facts: RequestFacts {
                    now: t.now.0,
                    requester,
                    opened_by,
                    catalog_item: t.catalog_item,
                    target: t.target,
                    level: t.level,
                    duration: t.duration,
                    end: t.end.map(|x| x.0),
                    ai_suggested_target: t.ai_suggested_target,
                    target_group,
                    target_mailbox,
                },
                expect,
            });
        }
    }

    Policy {
        source: source.to_owned(),
        version,
        name: raw.name,
        description: raw.description,
        tags,
        targets,
        catalog,
        rules,
        durations,
        windows,
        tests,
        time_zone,
    }
}
