//! Table-driven tests of every rule kind: targets and aliases, levels, hard rules, approval
//! stages, auto-approval, durations, change windows and AI suggestions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use grantline_shared::policy::{
    AccessLevel, ApprovalProgress, ApprovalRequirement, Approver, ApproverKind, CheckStatus, Decision, GroupFacts,
    ItemMatch, MailboxFacts, Outcome, Policy, Principal, Quorum, RecordedApproval, RequestFacts, SuggestionStatus,
    TargetSelection, UserFacts, Verdict, approval_state, codes, evaluate,
};
use jiff::Timestamp;

const POLICY: &str = r#"
schema_version = 1

[defaults]
time_to_decide = "48h"

[tags]
fin = "financial"
support = "support-owned"
priv = "privileged"
ops = "operations"

[groups.plain]
id = "00000000-0000-4000-8000-000000000001"
display_name = "Plain"
tags = ["ops"]
owners.data = ["data1@x.com"]
owners.app = ["app1@x.com", "app2@x.com"]

[groups.fin-grp]
id = "00000000-0000-4000-8000-000000000002"
display_name = "Fin"
tags = ["fin"]
owners.data = ["data1@x.com"]

[groups.quorum-grp]
id = "00000000-0000-4000-8000-000000000003"
display_name = "Quorum"
tags = ["priv"]
owners.data = ["data1@x.com"]
owners.app = ["app1@x.com"]

[groups.nobody-grp]
id = "00000000-0000-4000-8000-000000000004"
display_name = "Nobody owns this"

[groups.strict-grp]
id = "00000000-0000-4000-8000-000000000005"
display_name = "Strict"

[groups.orphan-grp]
id = "00000000-0000-4000-8000-000000000006"
display_name = "No rule covers this"
tags = ["priv"]

[mailboxes."shared@x.com"]
type = "shared"
display_name = "Shared"
tags = ["support"]
levels = ["read-only", "full-access", "send-as", "send-on-behalf"]
owners.mailbox = ["owner@x.com"]

[mailboxes."room@x.com"]
type = "room"
display_name = "Room"
levels = ["read-only"]
owners.mailbox = ["u1@x.com"]

[[catalog]]
item = "Plain access"
aliases = ["PA", "Plain"]
targets = ["plain"]

[[catalog]]
item = "Mailboxes"
targets = ["shared@x.com", "room@x.com"]

[[catalog]]
item = "Fin"
targets = ["fin-grp"]

[[catalog]]
item = "Quorum"
targets = ["quorum-grp"]

[[catalog]]
item = "Nobody"
targets = ["nobody-grp"]

[[catalog]]
item = "Strict"
targets = ["strict-grp"]

[[catalog]]
item = "Orphan"
targets = ["orphan-grp"]

[[rule]]
name = "helpers-read-support"
when = { kind = "mailbox", tags = ["support"], levels = ["read-only"], requester_member_of = ["00000000-0000-4000-8000-0000000000aa"] }
auto_approve = true

[[rule]]
name = "no-full-access"
when = { targets = ["shared@x.com"], levels = ["full-access"] }
deny = "not here"

[[rule]]
name = "sobo-any"
when = { targets = ["shared@x.com"], levels = ["send-on-behalf"] }
[[rule.stage]]
approvers = ["manager", "mailbox-owner"]
quorum = "any"

[[rule]]
name = "send-as-two-stages"
when = { levels = ["send-as"] }
[[rule.stage]]
name = "business"
approvers = ["manager", "mailbox-owner"]
quorum = "all"
[[rule.stage]]
name = "security"
approvers = [{ group = "00000000-0000-4000-8000-0000000000bb" }]
time_to_decide = "24h"

[[rule]]
name = "mailbox-owner"
when = { kind = "mailbox" }
[[rule.stage]]
approvers = ["mailbox-owner"]
fallback = { users = ["fb@x.com"] }

[[rule]]
name = "two-of-three"
when = { targets = ["quorum-grp"] }
[[rule.stage]]
approvers = ["data-owner", "app-owner", { group = "00000000-0000-4000-8000-0000000000bb" }]
quorum = "2-of-3"
on_timeout = "escalate"
fallback = { users = ["fb@x.com"] }

[[rule]]
name = "nobody-falls-back"
when = { targets = ["nobody-grp"] }
[[rule.stage]]
approvers = ["data-owner"]
fallback = { user = "fb@x.com" }

[[rule]]
name = "strict-no-fallback"
when = { targets = ["strict-grp"] }
[[rule.stage]]
approvers = ["data-owner"]

[[rule]]
name = "groups-manager"
when = { kind = "group", without_tags = ["priv"] }
[[rule.stage]]
approvers = ["manager"]
fallback = { user = "fb@x.com" }

[[duration]]
name = "fin-explicit"
when = { tags = ["fin"] }
required = true
max = "30d"
over_max = "deny"

[[duration]]
name = "send-as"
when = { levels = ["send-as"] }
required = true
default = "30d"
max = "90d"

[[duration]]
name = "plain-cap"
when = { targets = ["plain"] }
max = "14d"

[[window]]
name = "fin-hours"
when = { tags = ["fin"] }
time_zone = "Europe/Amsterdam"
open = ["mon-fri 08:00-18:00"]
"#;

const HELPERS: &str = "00000000-0000-4000-8000-0000000000aa";
const SEC: &str = "00000000-0000-4000-8000-0000000000bb";
const PLAIN: &str = "00000000-0000-4000-8000-000000000001";
/// Monday 2026-03-02, 09:00 in Amsterdam.
const MONDAY: &str = "2026-03-02T08:00:00Z";

fn policy() -> Policy {
    Policy::parse("test.toml", POLICY.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn user(id: &str) -> UserFacts {
    UserFacts {
        id: id.into(),
        upn: format!("{id}@x.com"),
        display_name: None,
        user_type: "Member".into(),
        account_enabled: true,
        employee_leave_date_time: None,
        manager_id: Some("mgr".into()),
        manager_upn: None,
        managers_manager: None,
        member_of: Vec::new(),
    }
}

/// A request builder.
#[derive(Clone)]
struct Req(RequestFacts);

fn ask(item: &str) -> Req {
    Req(RequestFacts {
        now: ts(MONDAY),
        requester: user("u1"),
        opened_by: None,
        catalog_item: item.into(),
        target: None,
        level: None,
        duration: None,
        end: None,
        ai_suggested_target: None,
        target_group: None,
        target_mailbox: None,
    })
}

/// A group request with matching plain security-group facts.
fn ask_group(item: &str, group_id: &str) -> Req {
    ask(item).group(GroupFacts::security_group(group_id))
}

impl Req {
    fn target(mut self, t: &str) -> Self {
        self.0.target = Some(t.into());
        self
    }
    fn level(mut self, l: &str) -> Self {
        self.0.level = Some(l.into());
        self
    }
    fn at(mut self, now: &str) -> Self {
        self.0.now = ts(now);
        self
    }
    fn duration(mut self, d: &str) -> Self {
        self.0.duration = Some(d.into());
        self
    }
    fn end(mut self, e: &str) -> Self {
        self.0.end = Some(ts(e));
        self
    }
    fn ai(mut self, s: &str) -> Self {
        self.0.ai_suggested_target = Some(s.into());
        self
    }
    fn group(mut self, g: GroupFacts) -> Self {
        self.0.target_group = Some(g);
        self
    }
    fn mailbox(mut self, m: MailboxFacts) -> Self {
        self.0.target_mailbox = Some(m);
        self
    }
    fn who(mut self, f: impl FnOnce(&mut UserFacts)) -> Self {
        f(&mut self.0.requester);
        self
    }
    fn opened_by(mut self, id: &str) -> Self {
        self.0.opened_by = Some(Principal::new(id, Some(&format!("{id}@x.com"))));
        self
    }
}

type Then = fn(&Decision);

/// Exchange's facts for a mailbox target, as validate reads them when the mailbox exists and is
/// of its declared type; a case that sets its own facts keeps them.
fn with_mailbox_facts(mut req: Req, p: &Policy) -> Req {
    if req.0.target_mailbox.is_none()
        && let Some(address) = grantline_shared::policy::ticket_target(
            p,
            &req.0.catalog_item,
            req.0.target.as_deref(),
            req.0.ai_suggested_target.as_deref(),
        )
        .and_then(|t| t.mailbox_address().zip(t.mailbox_type()))
    {
        req.0.target_mailbox = Some(MailboxFacts {
            address: address.0.to_owned(),
            recipient_type_details: address.1.recipient_type_details().to_owned(),
            display_name: None,
        });
    }
    req
}

fn run(cases: Vec<(&str, Req, Outcome, &[&str], Then)>) {
    let p = policy();
    for (name, req, outcome, failing, then) in cases {
        let req = with_mailbox_facts(req, &p);
        let d = evaluate(&req.0, &p);
        let mut got = d.failing_codes();
        got.sort_unstable();
        let mut want = failing.to_vec();
        want.sort_unstable();
        assert_eq!((d.outcome, &got), (outcome, &want), "{name}: {:#?}", d.checks);
        then(&d);
        // Determinism: the same input gives the same decision.
        assert_eq!(evaluate(&req.0, &p), d, "{name}: not deterministic");
    }
}

fn nothing(_: &Decision) {}

fn stages(d: &Decision) -> Vec<(Quorum, Vec<ApproverKind>)> {
    d.plan()
        .map(|p| p.stages.iter().map(|s| (s.quorum, s.approvers.iter().map(|a| a.kind).collect())).collect())
        .unwrap_or_default()
}

fn reason(d: &Decision, code: &str) -> String {
    d.check(code).map(|c| c.reason.clone()).unwrap_or_default()
}

#[test]
fn targets_aliases_and_catalog() {
    use Outcome::*;
    run(vec![
        ("item name", ask_group("Plain access", PLAIN), Allow, &[], |d| {
            let t = d.target.as_ref().unwrap();
            assert_eq!(
                (t.key.as_str(), &t.item_match, &t.selection),
                ("plain", &ItemMatch::CatalogItem, &TargetSelection::OnlyTarget)
            );
            assert_eq!(d.level, Some(AccessLevel::Member));
        }),
        ("alias, any case and spacing", ask_group("  pa ", PLAIN), Allow, &[], |d| {
            assert_eq!(d.target.as_ref().unwrap().item_match, ItemMatch::Alias { alias: "PA".into() });
        }),
        ("item name with odd spacing", ask_group("plain   ACCESS", PLAIN), Allow, &[], nothing),
        ("ticket target by group id", ask_group("Plain access", PLAIN).target(PLAIN), Allow, &[], |d| {
            assert_eq!(d.target.as_ref().unwrap().selection, TargetSelection::TicketTarget { value: PLAIN.into() });
        }),
        (
            "ticket target not offered by the item",
            ask_group("Plain access", PLAIN).target("shared@x.com"),
            Deny,
            &[codes::TARGET_RESOLVED],
            nothing,
        ),
        ("unknown item", ask("Domain Admins"), Deny, &[codes::CATALOG_ITEM], |d| {
            assert!(reason(d, codes::CATALOG_ITEM).contains("not declared"));
            assert!(d.target.is_none() && d.plan().is_none());
        }),
        ("no item at all", ask(""), Deny, &[codes::CATALOG_ITEM], nothing),
        (
            "a target without a declared item",
            ask("Domain Admins").target("shared@x.com").level("read-only"),
            Deny,
            &[codes::CATALOG_ITEM],
            nothing,
        ),
        ("several targets, none named", ask("Mailboxes").level("read-only"), Deny, &[codes::TARGET_RESOLVED], nothing),
        ("mailbox by address, any case", ask("Mailboxes").target("SHARED@x.com").level("read-only"), Allow, &[], |d| {
            assert_eq!(d.target.as_ref().unwrap().key, "shared@x.com");
        }),
    ]);
}

#[test]
fn levels() {
    use Outcome::*;
    run(vec![
        (
            "ticket spelling of a level",
            ask("Mailboxes").target("shared@x.com").level("Send On Behalf"),
            Allow,
            &[],
            |d| {
                assert_eq!(d.level, Some(AccessLevel::SendOnBehalf));
            },
        ),
        ("unknown level", ask("Mailboxes").target("shared@x.com").level("write"), Deny, &[codes::LEVEL_ALLOWED], |d| {
            assert!(reason(d, codes::LEVEL_ALLOWED).contains("expected one of member, read-only"));
        }),
        ("mailbox without a level", ask("Mailboxes").target("shared@x.com"), Deny, &[codes::LEVEL_ALLOWED], nothing),
        (
            "mailbox level on a group",
            ask_group("Plain access", PLAIN).level("read-only"),
            Deny,
            &[codes::LEVEL_ALLOWED],
            nothing,
        ),
        (
            "group level on a mailbox",
            ask("Mailboxes").target("shared@x.com").level("member"),
            Deny,
            &[codes::LEVEL_ALLOWED],
            nothing,
        ),
        (
            "level not offered on the target",
            ask("Mailboxes").target("room@x.com").level("send-as"),
            Deny,
            &[codes::LEVEL_ALLOWED],
            nothing,
        ),
    ]);
}

#[test]
fn hard_rules_on_people() {
    use Outcome::*;
    let plain = || ask_group("Plain access", PLAIN);
    run(vec![
        ("guest by userType", plain().who(|u| u.user_type = "Guest".into()), Deny, &[codes::IDENTITY_GUEST], nothing),
        (
            "guest by #EXT# even if typed Member",
            plain().who(|u| u.upn = "ed_fabrikam.com#EXT#@x.onmicrosoft.com".into()),
            Deny,
            &[codes::IDENTITY_GUEST],
            nothing,
        ),
        ("unknown userType", plain().who(|u| u.user_type = "Other".into()), Deny, &[codes::IDENTITY_GUEST], nothing),
        ("disabled", plain().who(|u| u.account_enabled = false), Deny, &[codes::IDENTITY_ENABLED], nothing),
        ("no directory id", plain().who(|u| u.id = String::new()), Deny, &[codes::IDENTITY_REQUESTER], nothing),
        (
            "leave date passed",
            plain().who(|u| u.employee_leave_date_time = Some(ts("2026-03-01T00:00:00Z"))),
            Deny,
            &[codes::IDENTITY_LEAVING],
            nothing,
        ),
        (
            "leaves before the change window opens",
            ask_group("Fin", "00000000-0000-4000-8000-000000000002")
                .duration("7d")
                .at("2026-03-06T18:00:00Z")
                .who(|u| u.employee_leave_date_time = Some(ts("2026-03-07T12:00:00Z"))),
            Deny,
            &[codes::IDENTITY_LEAVING],
            |d| assert!(reason(d, codes::IDENTITY_LEAVING).contains("before the grant could start")),
        ),
        (
            "leaving later: allowed, ends on the leave date",
            plain().who(|u| u.employee_leave_date_time = Some(ts("2026-03-05T00:00:00Z"))),
            Allow,
            &[],
            |d| {
                let o = d.duration.as_ref().unwrap();
                assert!(o.ends_on_leave_date);
                assert_eq!(o.ends_at, Some(ts("2026-03-05T00:00:00Z")));
            },
        ),
        (
            "many failures are all reported",
            plain().who(|u| {
                u.user_type = "Guest".into();
                u.account_enabled = false;
            }),
            Deny,
            &[codes::IDENTITY_GUEST, codes::IDENTITY_ENABLED],
            nothing,
        ),
    ]);
}

#[test]
fn hard_rules_on_groups() {
    use Outcome::*;
    let g = GroupFacts::security_group(PLAIN);
    let with = |f: fn(&mut GroupFacts)| {
        let mut g = g.clone();
        f(&mut g);
        ask("Plain access").group(g)
    };
    run(vec![
        ("no directory facts", ask("Plain access"), Deny, &[codes::GROUP_FACTS], nothing),
        (
            "facts about another group",
            ask_group("Plain access", "00000000-0000-4000-8000-00000000ffff"),
            Deny,
            &[codes::GROUP_FACTS],
            nothing,
        ),
        (
            "role-assignable -> PIM",
            with(|g| g.is_assignable_to_role = Some(true)),
            Deny,
            &[codes::GROUP_ROLE_ASSIGNABLE],
            |d| {
                assert!(reason(d, codes::GROUP_ROLE_ASSIGNABLE).contains("Privileged Identity Management (PIM)"));
            },
        ),
        (
            "dynamic by type -> rule owner",
            with(|g| g.group_types = vec!["DynamicMembership".into()]),
            Deny,
            &[codes::GROUP_DYNAMIC],
            |d| {
                assert!(reason(d, codes::GROUP_DYNAMIC).contains("owner of its membership rule"));
            },
        ),
        (
            "dynamic by rule",
            with(|g| g.membership_rule = Some("user.department -eq \"Sales\"".into())),
            Deny,
            &[codes::GROUP_DYNAMIC],
            nothing,
        ),
        (
            "mail-enabled security -> Exchange",
            with(|g| {
                g.mail_enabled = true;
                g.security_enabled = true;
            }),
            Deny,
            &[codes::GROUP_MAIL_ENABLED_SECURITY],
            |d| assert!(reason(d, codes::GROUP_MAIL_ENABLED_SECURITY).contains("Exchange")),
        ),
        (
            "distribution list -> Exchange",
            with(|g| {
                g.mail_enabled = true;
                g.security_enabled = false;
            }),
            Deny,
            &[codes::GROUP_DISTRIBUTION_LIST],
            nothing,
        ),
        (
            "Microsoft 365 group is fine",
            with(|g| {
                g.group_types = vec!["Unified".into()];
                g.mail_enabled = true;
                g.security_enabled = true;
            }),
            Allow,
            &[],
            nothing,
        ),
        (
            "on-premises synced -> AD",
            with(|g| g.on_premises_sync_enabled = Some(true)),
            Deny,
            &[codes::GROUP_ON_PREMISES_SYNCED],
            |d| {
                assert!(reason(d, codes::GROUP_ON_PREMISES_SYNCED).contains("on-premises AD"));
            },
        ),
        (
            "group facts are not asked of mailboxes",
            ask("Mailboxes").target("room@x.com").level("read-only"),
            Allow,
            &[],
            |d| {
                assert!(d.check(codes::GROUP_FACTS).is_none());
            },
        ),
    ]);
}

#[test]
fn rules_and_approvals() {
    use Outcome::*;
    let shared = |level: &str| ask("Mailboxes").target("shared@x.com").level(level);
    run(vec![
        (
            "auto-approval when every condition holds",
            shared("read-only").who(|u| u.member_of = vec![HELPERS.into()]),
            Allow,
            &[],
            |d| {
                assert_eq!(
                    d.approval,
                    Some(ApprovalRequirement::Auto {
                        rule: "helpers-read-support".into(),
                        reason: "auto-approved by rule \"helpers-read-support\"".into()
                    })
                );
            },
        ),
        ("no auto-approval outside the group: next rule", shared("read-only"), Allow, &[], |d| {
            assert_eq!(d.rule.as_deref(), Some("mailbox-owner"));
            assert_eq!(stages(d), vec![(Quorum::All, vec![ApproverKind::MailboxOwner])]);
            assert_eq!(d.plan().unwrap().stages[0].approvers[0].ids, vec!["owner@x.com".to_owned()]);
        }),
        ("deny rule", shared("full-access"), Deny, &[codes::RULE_DENY], |d| {
            assert!(reason(d, codes::RULE_DENY).contains("not here"))
        }),
        ("any-of", shared("send-on-behalf"), Allow, &[], |d| {
            assert_eq!(stages(d), vec![(Quorum::Any, vec![ApproverKind::Manager, ApproverKind::MailboxOwner])]);
        }),
        ("two stages in order, all-of then a group", shared("send-as"), Allow, &[], |d| {
            let p = d.plan().unwrap();
            assert_eq!(
                stages(d),
                vec![
                    (Quorum::All, vec![ApproverKind::Manager, ApproverKind::MailboxOwner]),
                    (Quorum::All, vec![ApproverKind::Group])
                ]
            );
            assert_eq!(p.stages[0].approvers[0].ids, vec!["mgr".to_owned()]);
            assert_eq!(p.stages[1].approvers[0].group_id.as_deref(), Some(SEC));
            assert_eq!(p.stages[0].time_to_decide.to_string(), "48h");
            assert_eq!(p.stages[1].time_to_decide.to_string(), "24h");
            assert_eq!(p.stages[0].name, "business");
        }),
        ("2-of-3 with a fallback", ask_group("Quorum", "00000000-0000-4000-8000-000000000003"), Allow, &[], |d| {
            let s = &d.plan().unwrap().stages[0];
            assert_eq!(s.quorum, Quorum::NOfM { n: 2, m: 3 });
            assert_eq!(s.fallback.as_ref().unwrap().ids, vec!["fb@x.com".to_owned()]);
            assert!(!s.fallback_decides);
        }),
        (
            "nobody to ask: the fallback answers",
            ask_group("Nobody", "00000000-0000-4000-8000-000000000004"),
            Allow,
            &[],
            |d| {
                let s = &d.plan().unwrap().stages[0];
                assert!(s.approvers[0].via_fallback);
                assert!(s.notes[0].contains("no data owner"), "{:?}", s.notes);
            },
        ),
        (
            "nobody to ask and no fallback: denied",
            ask_group("Strict", "00000000-0000-4000-8000-000000000005"),
            Deny,
            &[codes::APPROVAL_APPROVERS],
            nothing,
        ),
        (
            "no manager: the fallback answers",
            ask_group("Plain access", PLAIN).who(|u| u.manager_id = None),
            Allow,
            &[],
            |d| {
                assert!(d.plan().unwrap().stages[0].approvers[0].via_fallback);
            },
        ),
        (
            "no rule covers it: denied by default",
            ask_group("Orphan", "00000000-0000-4000-8000-000000000006"),
            Deny,
            &[codes::RULE_MATCHED],
            nothing,
        ),
        (
            "the requester is the only mailbox owner",
            ask("Mailboxes").target("room@x.com").level("read-only"),
            Allow,
            &[],
            |d| {
                let s = &d.plan().unwrap().stages[0];
                assert!(s.approvers[0].ids.is_empty() && s.approvers[0].via_fallback);
                assert!(reason(d, codes::APPROVAL_SELF).contains("cannot approve"));
            },
        ),
        (
            "the ticket's filer is the manager: manager entry falls back",
            ask_group("Plain access", PLAIN).opened_by("mgr"),
            Allow,
            &[],
            |d| {
                let p = d.plan().unwrap();
                assert!(p.stages[0].approvers[0].via_fallback);
                assert!(p.excluded.contains(&"mgr".to_owned()) && p.excluded.contains(&"u1".to_owned()));
                assert!(reason(d, codes::APPROVAL_SELF).contains("ticket's filer"));
            },
        ),
        (
            "the manager is also the mailbox owner: all-of needs the fallback",
            shared("send-as").who(|u| u.manager_id = Some("owner@x.com".into())),
            Deny,
            &[codes::APPROVAL_APPROVERS],
            nothing,
        ),
    ]);
}

#[test]
fn durations() {
    use Outcome::*;
    let fin = || ask_group("Fin", "00000000-0000-4000-8000-000000000002");
    let send_as = || ask("Mailboxes").target("shared@x.com").level("send-as");
    let plain = || ask_group("Plain access", PLAIN);
    run(vec![
        ("required, no default, none requested", fin(), Deny, &[codes::DURATION_REQUIRED], nothing),
        ("required and requested", fin().duration("14d"), Allow, &[], |d| {
            assert_eq!(d.duration.as_ref().unwrap().duration.map(|x| x.to_string()).as_deref(), Some("14d"));
            assert_eq!(d.duration.as_ref().unwrap().ends_at, Some(ts("2026-03-16T08:00:00Z")));
        }),
        ("over the cap, deny", fin().duration("45 days"), Deny, &[codes::DURATION_CAP], nothing),
        ("default applies", send_as(), Allow, &[], |d| {
            let o = d.duration.as_ref().unwrap();
            assert_eq!(o.duration.map(|x| x.to_string()).as_deref(), Some("30d"));
            assert_eq!(o.rule.as_deref(), Some("send-as"));
            assert!(!o.shortened_to_cap);
        }),
        ("over the cap, shortened", send_as().duration("120d"), Allow, &[], |d| {
            let o = d.duration.as_ref().unwrap();
            assert_eq!(o.duration.map(|x| x.to_string()).as_deref(), Some("90d"));
            assert!(o.shortened_to_cap);
            assert!(o.notes[0].contains("shortened to 90d"), "{:?}", o.notes);
        }),
        ("end date beyond the cap, shortened", plain().end("2026-06-01T00:00:00Z"), Allow, &[], |d| {
            let o = d.duration.as_ref().unwrap();
            assert!(o.shortened_to_cap);
            assert_eq!(o.ends_at, Some(ts("2026-03-16T08:00:00Z")));
        }),
        ("end date within the cap", plain().end("2026-03-10T00:00:00Z"), Allow, &[], |d| {
            assert_eq!(d.duration.as_ref().unwrap().ends_at, Some(ts("2026-03-10T00:00:00Z")));
        }),
        ("no duration rule: permanent", ask("Mailboxes").target("room@x.com").level("read-only"), Allow, &[], |d| {
            assert!(d.duration.as_ref().unwrap().is_permanent());
        }),
        ("a duration that does not parse", plain().duration("soon"), Deny, &[codes::DURATION_REQUEST], nothing),
        ("an end in the past", plain().end("2026-01-01T00:00:00Z"), Deny, &[codes::DURATION_REQUEST], nothing),
    ]);
}

#[test]
fn change_windows() {
    use Outcome::*;
    let fin = || ask_group("Fin", "00000000-0000-4000-8000-000000000002").duration("7d");
    run(vec![
        ("inside", fin(), Allow, &[], |d| {
            let w = d.window.as_ref().unwrap();
            assert!(w.open_now);
            assert_eq!(w.closes_at, Some(ts("2026-03-02T17:00:00Z")));
            assert_eq!(d.execute_at, ts(MONDAY));
            assert!(d.deferral().is_none());
        }),
        ("before opening", fin().at("2026-03-02T06:30:00Z"), Allow, &[], |d| {
            assert_eq!(d.execute_at, ts("2026-03-02T07:00:00Z"))
        }),
        ("across a weekend", fin().at("2026-03-06T17:30:00Z"), Allow, &[], |d| {
            assert_eq!(d.execute_at, ts("2026-03-09T07:00:00Z"));
            let why = d.deferral().unwrap();
            assert!(why.contains("Mon 2026-03-09 08:00 CET"), "{why}");
            // The grant runs from the opening.
            assert_eq!(d.duration.as_ref().unwrap().ends_at, Some(ts("2026-03-16T07:00:00Z")));
        }),
        ("across a weekend with the change to summer time", fin().at("2026-03-28T10:00:00Z"), Allow, &[], |d| {
            assert_eq!(d.execute_at, ts("2026-03-30T06:00:00Z"));
            assert!(d.deferral().unwrap().contains("08:00 CEST"));
        }),
        ("no window for other targets", ask_group("Plain access", PLAIN).at("2026-03-07T12:00:00Z"), Allow, &[], |d| {
            assert!(d.window.is_none());
            assert_eq!(d.execute_at, ts("2026-03-07T12:00:00Z"));
        }),
    ]);
}

#[test]
fn ai_suggestions() {
    use Outcome::*;
    fn status(d: &Decision) -> Option<SuggestionStatus> {
        d.ai_suggestion.as_ref().map(|a| a.status)
    }
    run(vec![
        (
            "unknown item, suggestion names an item",
            ask("Other").ai("plain").group(GroupFacts::security_group(PLAIN)),
            Allow,
            &[],
            |d| {
                assert_eq!(
                    d.ai_suggestion.as_ref().map(|a| (a.status, a.resolved_to.as_deref())),
                    Some((SuggestionStatus::Accepted, Some("plain")))
                );
                assert_eq!(
                    d.target.as_ref().unwrap().item_match,
                    ItemMatch::AiSuggestion { suggestion: "plain".into() }
                );
            },
        ),
        (
            "unknown item, suggestion is a group id",
            ask("Other").ai(PLAIN).group(GroupFacts::security_group(PLAIN)),
            Allow,
            &[],
            |d| {
                assert_eq!(
                    d.target.as_ref().unwrap().selection,
                    TargetSelection::AiSuggestion { suggestion: PLAIN.into() }
                );
            },
        ),
        (
            "unknown item, suggestion is a mailbox address",
            ask("Other").ai("shared@x.com").level("read-only"),
            Allow,
            &[],
            |d| {
                assert_eq!(d.target.as_ref().unwrap().key, "shared@x.com");
            },
        ),
        (
            "unknown item, suggestion outside the catalog",
            ask("Other").ai("Global Administrators"),
            Deny,
            &[codes::CATALOG_ITEM],
            |d| {
                assert_eq!(status(d), Some(SuggestionStatus::Rejected));
                assert_eq!(d.ai_suggestion.as_ref().unwrap().suggestion, "Global Administrators");
            },
        ),
        (
            "unknown item, suggestion names a multi-target item",
            ask("Other").ai("Mailboxes").level("read-only"),
            Deny,
            &[codes::CATALOG_ITEM],
            nothing,
        ),
        (
            "unknown item, suggestion conflicts with the ticket's target",
            ask("Other").ai("plain").target("shared@x.com"),
            Deny,
            &[codes::CATALOG_ITEM],
            nothing,
        ),
        ("known item, suggestion agrees", ask_group("Plain access", PLAIN).ai(PLAIN), Allow, &[], |d| {
            assert_eq!(status(d), Some(SuggestionStatus::Agrees))
        }),
        (
            "known item, suggestion conflicts: the ticket wins",
            ask_group("Plain access", PLAIN).ai("Fin"),
            Allow,
            &[],
            |d| {
                assert_eq!(status(d), Some(SuggestionStatus::Rejected));
                assert_eq!(d.target.as_ref().unwrap().key, "plain");
                assert_eq!(d.check(codes::AI_SUGGESTION).unwrap().status, CheckStatus::Skip);
            },
        ),
        (
            "known multi-target item, suggestion picks the target",
            ask("Mailboxes").ai("room@x.com").level("read-only"),
            Allow,
            &[],
            |d| {
                assert_eq!(status(d), Some(SuggestionStatus::Accepted));
                assert_eq!(
                    d.target.as_ref().unwrap().selection,
                    TargetSelection::AiSuggestion { suggestion: "room@x.com".into() }
                );
            },
        ),
        (
            "known multi-target item, suggestion outside it",
            ask("Mailboxes").ai("plain").level("read-only"),
            Deny,
            &[codes::TARGET_RESOLVED],
            |d| {
                assert_eq!(status(d), Some(SuggestionStatus::Rejected));
            },
        ),
    ]);
}

fn person(id: &str) -> Approver {
    Approver { id: id.into(), upn: Some(format!("{id}@x.com")), member_of: Vec::new() }
}

fn said(stage: usize, approver: Approver, verdict: Verdict) -> RecordedApproval {
    RecordedApproval { stage, approver, verdict, at: None }
}

#[test]
fn approval_progress_on_a_real_plan() {
    let p = policy();
    let d = evaluate(&ask("Mailboxes").target("shared@x.com").level("send-as").0, &p);
    let plan = d.plan().unwrap();
    let owner = Approver { id: "o-id".into(), upn: Some("owner@x.com".into()), member_of: Vec::new() };
    let sec = Approver { id: "s-id".into(), upn: None, member_of: vec![SEC.into()] };
    let me = Approver { id: "u1".into(), upn: Some("u1@x.com".into()), member_of: vec![SEC.into()] };
    let cases: Vec<(&str, Vec<RecordedApproval>, ApprovalProgress, bool)> = vec![
        ("nothing yet", vec![], ApprovalProgress::Pending { stage: 0 }, false),
        ("manager only", vec![said(0, person("mgr"), Verdict::Approve)], ApprovalProgress::Pending { stage: 0 }, false),
        (
            "stage one done",
            vec![said(0, person("mgr"), Verdict::Approve), said(0, owner.clone(), Verdict::Approve)],
            ApprovalProgress::Pending { stage: 1 },
            false,
        ),
        (
            "all done",
            vec![
                said(0, person("mgr"), Verdict::Approve),
                said(0, owner.clone(), Verdict::Approve),
                said(1, sec.clone(), Verdict::Approve),
            ],
            ApprovalProgress::Approved,
            false,
        ),
        (
            "the requester in the security group cannot finish it",
            vec![
                said(0, person("mgr"), Verdict::Approve),
                said(0, owner.clone(), Verdict::Approve),
                said(1, me.clone(), Verdict::Approve),
            ],
            ApprovalProgress::Pending { stage: 1 },
            true,
        ),
        (
            "rejected in stage two",
            vec![
                said(0, person("mgr"), Verdict::Approve),
                said(0, owner.clone(), Verdict::Approve),
                said(1, sec.clone(), Verdict::Reject),
            ],
            ApprovalProgress::Rejected { stage: 1, by: "s-id".into() },
            false,
        ),
    ];
    for (name, approvals, want, self_attempt) in cases {
        let s = approval_state(plan, &approvals, "u1");
        assert_eq!((s.self_approval_attempted(), s.progress), (self_attempt, want), "{name}");
    }
}

#[test]
fn escalation_hands_the_stage_to_the_fallback() {
    let p = policy();
    let d = evaluate(&ask_group("Quorum", "00000000-0000-4000-8000-000000000003").0, &p);
    let mut plan = d.plan().unwrap().clone();
    let fb = person("fb");
    assert_eq!(
        approval_state(&plan, &[said(0, fb.clone(), Verdict::Approve)], "u1").progress,
        ApprovalProgress::Pending { stage: 0 }
    );
    assert!(plan.escalate(0));
    assert_eq!(approval_state(&plan, &[said(0, fb, Verdict::Approve)], "u1").progress, ApprovalProgress::Approved);
}

#[test]
fn decisions_round_trip_through_json() {
    let p = policy();
    let d = evaluate(&ask("Mailboxes").target("shared@x.com").level("send-as").0, &p);
    let json = serde_json::to_string(&d).unwrap();
    let back: Decision = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d);
    assert!(json.contains("\"quorum\":\"all\""), "{json}");
}

#[test]
fn request_facts_accept_graph_spellings() {
    let json = r#"{
        "now": "2026-03-02T08:00:00Z",
        "requester": { "id": "u1", "userPrincipalName": "u1@x.com", "userType": "Member", "accountEnabled": true,
                       "employeeLeaveDateTime": null, "managerId": "mgr" },
        "catalog_item": "Plain access",
        "target_group": { "id": "00000000-0000-4000-8000-000000000001", "groupTypes": [], "mailEnabled": false,
                          "securityEnabled": true, "isAssignableToRole": false, "membershipRule": null,
                          "onPremisesSyncEnabled": null }
    }"#;
    let facts: RequestFacts = serde_json::from_str(json).unwrap();
    assert!(evaluate(&facts, &policy()).is_allowed());
}

#[test]
fn mailboxes_must_exist_and_be_of_their_declared_type() {
    let p = policy();
    let ask_mailbox = || ask("Mailboxes").target("shared@x.com").level("send-on-behalf");
    let status = |d: &Decision, code: &str| d.check(code).map(|c| c.status);
    // no facts: Exchange did not find it
    let d = evaluate(&ask_mailbox().0, &p);
    assert_eq!(status(&d, "mailbox.facts"), Some(CheckStatus::Fail), "{:#?}", d.checks);
    assert_eq!(status(&d, "mailbox.type"), Some(CheckStatus::Skip));
    assert!(!d.is_allowed());
    // facts about another mailbox
    let d = evaluate(&ask_mailbox().mailbox(MailboxFacts::shared("other@x.com")).0, &p);
    assert_eq!(status(&d, "mailbox.facts"), Some(CheckStatus::Fail));
    // a user's own mailbox declared shared
    let personal = MailboxFacts {
        address: "Shared@X.com".into(),
        recipient_type_details: "UserMailbox".into(),
        display_name: None,
    };
    let d = evaluate(&ask_mailbox().mailbox(personal).0, &p);
    assert_eq!(
        (status(&d, "mailbox.facts"), status(&d, "mailbox.type")),
        (Some(CheckStatus::Pass), Some(CheckStatus::Fail))
    );
    assert!(d.check("mailbox.type").unwrap().reason.contains("UserMailbox"));
    assert!(!d.is_allowed());
    // the real thing (the address compares without case)
    let d = evaluate(&ask_mailbox().mailbox(MailboxFacts::shared("SHARED@x.com")).0, &p);
    assert_eq!(
        (status(&d, "mailbox.facts"), status(&d, "mailbox.type")),
        (Some(CheckStatus::Pass), Some(CheckStatus::Pass))
    );
}
