//! Properties that hold for every policy file, however written: generated policies with
//! arbitrary rules (auto-approval of everything included) never allow a guest, never count a
//! self-approval, and never allow anything outside the catalog.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;

use grantline_shared::policy::{
    ApprovalProgress, Approver, GroupFacts, IgnoreReason, MailboxFacts, Outcome, Policy, Principal, RecordedApproval,
    RequestFacts, UserFacts, Verdict, approval_state, codes, evaluate,
};
use proptest::prelude::*;

const TAGS: [&str; 4] = ["fin", "support", "priv", "ops"];
const LEVELS: [&str; 4] = ["read-only", "full-access", "send-as", "send-on-behalf"];
const GROUPS: [&str; 2] = ["00000000-0000-4000-8000-0000000000a1", "00000000-0000-4000-8000-0000000000a2"];
const PEOPLE: usize = 6;

fn pid(i: usize) -> String {
    format!("p{i}")
}

fn upn(i: usize) -> String {
    format!("p{i}@x.com")
}

fn group_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{:012x}", 0x100 + i)
}

/// when, required, default days, max days, deny over max
type GenDuration = (GenWhen, bool, Option<u8>, Option<u8>, bool);

#[derive(Debug, Clone)]
struct GenTarget {
    group: bool,
    tags: Vec<usize>,
    data: Vec<usize>,
    app: Vec<usize>,
    owners: Vec<usize>,
    levels: u8,
}

#[derive(Debug, Clone)]
enum GenApprover {
    Manager,
    MailboxOwner,
    DataOwner,
    AppOwner,
    Group(usize),
    Users(Vec<usize>),
}

#[derive(Debug, Clone)]
struct GenStage {
    approvers: Vec<GenApprover>,
    quorum: u8,
    fallback: Option<GenApprover>,
    escalate: bool,
}

#[derive(Debug, Clone, Default)]
struct GenWhen {
    targets: Vec<usize>,
    kind: Option<bool>,
    tags: Vec<usize>,
    without: Vec<usize>,
    levels: Vec<usize>,
    member_of: Vec<usize>,
}

#[derive(Debug, Clone)]
enum GenOutcome {
    Auto,
    Deny,
    Stages(Vec<GenStage>),
}

#[derive(Debug, Clone)]
struct GenPolicy {
    targets: Vec<GenTarget>,
    entries: usize,
    rules: Vec<(GenWhen, GenOutcome)>,
    catch_all: bool,
    durations: Vec<GenDuration>,
    window: Option<GenWhen>,
}

fn people() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..PEOPLE, 0..3)
}

fn target() -> impl Strategy<Value = GenTarget> {
    (any::<bool>(), prop::collection::vec(0..TAGS.len(), 0..3), people(), people(), people(), 1u8..16)
        .prop_map(|(group, tags, data, app, owners, levels)| GenTarget { group, tags, data, app, owners, levels })
}

fn approver() -> impl Strategy<Value = GenApprover> {
    prop_oneof![
        Just(GenApprover::Manager),
        Just(GenApprover::MailboxOwner),
        Just(GenApprover::DataOwner),
        Just(GenApprover::AppOwner),
        (0..GROUPS.len()).prop_map(GenApprover::Group),
        prop::collection::vec(0..PEOPLE, 1..3).prop_map(GenApprover::Users),
    ]
}

fn static_approver() -> impl Strategy<Value = GenApprover> {
    prop_oneof![
        (0..GROUPS.len()).prop_map(GenApprover::Group),
        prop::collection::vec(0..PEOPLE, 1..3).prop_map(GenApprover::Users),
    ]
}

fn stage() -> impl Strategy<Value = GenStage> {
    (prop::collection::vec(approver(), 1..4), any::<u8>(), prop::option::of(static_approver()), any::<bool>())
        .prop_map(|(approvers, quorum, fallback, escalate)| GenStage { approvers, quorum, fallback, escalate })
}

fn when() -> impl Strategy<Value = GenWhen> {
    (
        prop::collection::vec(0..8usize, 0..2),
        prop::option::weighted(0.3, any::<bool>()),
        prop::collection::vec(0..TAGS.len(), 0..2),
        prop::collection::vec(0..TAGS.len(), 0..2),
        prop::collection::vec(0..5usize, 0..3),
        prop::collection::vec(0..GROUPS.len(), 0..2),
    )
        .prop_map(|(targets, kind, tags, without, levels, member_of)| GenWhen {
            targets,
            kind,
            tags,
            without,
            levels,
            member_of,
        })
}

fn outcome() -> impl Strategy<Value = GenOutcome> {
    prop_oneof![
        2 => Just(GenOutcome::Auto),
        1 => Just(GenOutcome::Deny),
        4 => prop::collection::vec(stage(), 1..3).prop_map(GenOutcome::Stages),
    ]
}

fn policy_spec() -> impl Strategy<Value = GenPolicy> {
    (
        prop::collection::vec(target(), 1..6),
        1usize..4,
        prop::collection::vec((when(), outcome()), 0..6),
        any::<bool>(),
        prop::collection::vec(
            (when(), any::<bool>(), prop::option::of(1u8..60), prop::option::of(1u8..60), any::<bool>()),
            0..3,
        ),
        prop::option::of(when()),
    )
        .prop_map(|(targets, entries, rules, catch_all, durations, window)| GenPolicy {
            entries: entries.min(targets.len()),
            targets,
            rules,
            catch_all,
            durations,
            window,
        })
}

fn key(i: usize, t: &GenTarget) -> String {
    if t.group { format!("grp-{i}") } else { format!("mbx{i}@x.com") }
}

fn quoted(items: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = items.into_iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", v.join(", "))
}

fn render_when(w: &GenWhen, targets: &[GenTarget]) -> String {
    let mut parts = Vec::new();
    if !w.targets.is_empty() {
        parts.push(format!(
            "targets = {}",
            quoted(w.targets.iter().map(|i| key(i % targets.len(), &targets[i % targets.len()])))
        ));
    }
    if let Some(g) = w.kind {
        parts.push(format!("kind = \"{}\"", if g { "group" } else { "mailbox" }));
    }
    if !w.tags.is_empty() {
        parts.push(format!("tags = {}", quoted(w.tags.iter().map(|i| TAGS[*i].to_owned()))));
    }
    if !w.without.is_empty() {
        parts.push(format!("without_tags = {}", quoted(w.without.iter().map(|i| TAGS[*i].to_owned()))));
    }
    if !w.levels.is_empty() {
        let all = ["member", LEVELS[0], LEVELS[1], LEVELS[2], LEVELS[3]];
        parts.push(format!("levels = {}", quoted(w.levels.iter().map(|i| all[*i].to_owned()))));
    }
    if !w.member_of.is_empty() {
        parts.push(format!("requester_member_of = {}", quoted(w.member_of.iter().map(|i| GROUPS[*i].to_owned()))));
    }
    format!("when = {{ {} }}\n", parts.join(", "))
}

fn render_approver(a: &GenApprover) -> String {
    match a {
        GenApprover::Manager => "\"manager\"".into(),
        GenApprover::MailboxOwner => "\"mailbox-owner\"".into(),
        GenApprover::DataOwner => "\"data-owner\"".into(),
        GenApprover::AppOwner => "\"app-owner\"".into(),
        GenApprover::Group(i) => format!("{{ group = \"{}\" }}", GROUPS[*i]),
        // Owners and named users are written by UPN or by id, to exercise both.
        GenApprover::Users(ids) => {
            format!("{{ users = {} }}", quoted(ids.iter().map(|i| if i % 2 == 0 { upn(*i) } else { pid(*i) })))
        }
    }
}

fn render(p: &GenPolicy) -> String {
    let mut s = String::from("schema_version = 1\n[defaults]\ntime_to_decide = \"72h\"\n[tags]\n");
    for t in TAGS {
        let _ = writeln!(s, "{t} = \"\"");
    }
    let owners = |v: &[usize]| quoted(v.iter().map(|i| if i % 2 == 0 { upn(*i) } else { pid(*i) }));
    for (i, t) in p.targets.iter().enumerate() {
        let tags = quoted(t.tags.iter().map(|x| TAGS[*x].to_owned()));
        if t.group {
            let _ = write!(
                s,
                "[groups.\"{}\"]\nid = \"{}\"\ndisplay_name = \"G{i}\"\ntags = {tags}\nowners.data = {}\nowners.app = {}\n",
                key(i, t),
                group_id(i),
                owners(&t.data),
                owners(&t.app)
            );
        } else {
            let levels = quoted((0..4).filter(|b| t.levels & (1 << b) != 0).map(|b| LEVELS[b].to_owned()));
            let _ = write!(
                s,
                "[mailboxes.\"{}\"]\ntype = \"shared\"\ndisplay_name = \"M{i}\"\ntags = {tags}\nlevels = {levels}\nowners.data = {}\nowners.mailbox = {}\n",
                key(i, t),
                owners(&t.data),
                owners(&t.owners)
            );
        }
    }
    for e in 0..p.entries {
        let keys = (0..p.targets.len()).filter(|i| i % p.entries == e).map(|i| key(i, &p.targets[i]));
        let _ = write!(s, "[[catalog]]\nitem = \"Item {e}\"\naliases = [\"alias-{e}\"]\ntargets = {}\n", quoted(keys));
    }
    for (n, (w, o)) in p.rules.iter().enumerate() {
        let _ = write!(s, "[[rule]]\nname = \"r{n}\"\n{}", render_when(w, &p.targets));
        match o {
            GenOutcome::Auto => s.push_str("auto_approve = true\n"),
            GenOutcome::Deny => s.push_str("deny = \"generated\"\n"),
            GenOutcome::Stages(stages) => {
                for st in stages {
                    let m = st.approvers.len();
                    let quorum = match st.quorum % 3 {
                        0 => "any".to_owned(),
                        1 => "all".to_owned(),
                        _ => format!("{}-of-{m}", 1 + usize::from(st.quorum) % m),
                    };
                    let list: Vec<String> = st.approvers.iter().map(render_approver).collect();
                    let _ = write!(s, "[[rule.stage]]\napprovers = [{}]\nquorum = \"{quorum}\"\n", list.join(", "));
                    if let Some(f) = &st.fallback {
                        let _ = writeln!(s, "fallback = {}", render_approver(f));
                        if st.escalate {
                            s.push_str("on_timeout = \"escalate\"\n");
                        }
                    }
                }
            }
        }
    }
    if p.catch_all {
        s.push_str("[[rule]]\nname = \"approve-everything\"\nauto_approve = true\n");
    }
    for (n, (w, required, default, max, deny)) in p.durations.iter().enumerate() {
        let _ = write!(s, "[[duration]]\nname = \"d{n}\"\n{}required = {required}\n", render_when(w, &p.targets));
        let (default, max) = match (*default, *max) {
            (Some(d), Some(m)) if d > m => (Some(m), Some(d)),
            other => other,
        };
        if let Some(d) = default {
            let _ = writeln!(s, "default = \"{d}d\"");
        }
        if let Some(m) = max {
            let _ = writeln!(s, "max = \"{m}d\"\nover_max = \"{}\"", if *deny { "deny" } else { "shorten" });
        }
    }
    if let Some(w) = &p.window {
        let _ = write!(
            s,
            "[[window]]\nname = \"w\"\n{}time_zone = \"Europe/Amsterdam\"\nopen = [\"mon-fri 08:00-18:00\"]\n",
            render_when(w, &p.targets)
        );
    }
    s
}

/// Request facts for a generated policy.
#[derive(Debug, Clone)]
struct GenRequest {
    target: usize,
    level: usize,
    requester: usize,
    guest: u8,
    manager: Option<usize>,
    opened_by: Option<usize>,
    member_of: Vec<usize>,
    alias: bool,
    minutes: i64,
    duration: Option<u8>,
    leave_days: Option<i64>,
}

fn request() -> impl Strategy<Value = GenRequest> {
    (
        (0..8usize, 0..5usize, 0..PEOPLE, 0u8..3, prop::option::of(0..PEOPLE), prop::option::of(0..PEOPLE)),
        (
            prop::collection::vec(0..GROUPS.len(), 0..3),
            any::<bool>(),
            0i64..20_160,
            prop::option::of(1u8..90),
            prop::option::of(-5i64..60),
        ),
    )
        .prop_map(
            |(
                (target, level, requester, guest, manager, opened_by),
                (member_of, alias, minutes, duration, leave_days),
            )| GenRequest {
                target,
                level,
                requester,
                guest,
                manager,
                opened_by,
                member_of,
                alias,
                minutes,
                duration,
                leave_days,
            },
        )
}

fn facts(p: &GenPolicy, r: &GenRequest) -> RequestFacts {
    let t = r.target % p.targets.len();
    let target = &p.targets[t];
    let entry = t % p.entries;
    let now: jiff::Timestamp = "2026-03-02T00:00:00Z".parse().unwrap();
    let now = now.checked_add(jiff::SignedDuration::from_mins(r.minutes)).unwrap();
    let all_levels = ["member", LEVELS[0], LEVELS[1], LEVELS[2], LEVELS[3]];
    RequestFacts {
        now,
        requester: UserFacts {
            id: pid(r.requester),
            upn: if r.guest == 2 { format!("p{}_ext#EXT#@x.onmicrosoft.com", r.requester) } else { upn(r.requester) },
            display_name: None,
            user_type: if r.guest == 1 { "Guest".into() } else { "Member".into() },
            account_enabled: true,
            employee_leave_date_time: r
                .leave_days
                .map(|d| now.checked_add(jiff::SignedDuration::from_hours(24 * d)).unwrap()),
            manager_id: r.manager.map(pid),
            manager_upn: None,
            managers_manager: None,
            member_of: r.member_of.iter().map(|g| GROUPS[*g].to_owned()).collect(),
        },
        opened_by: r.opened_by.map(|o| Principal::new(pid(o), Some(&upn(o)))),
        catalog_item: if r.alias { format!("ALIAS-{entry}") } else { format!("item {entry}") },
        target: Some(key(t, target)),
        // Mostly a level the target offers; sometimes any level at all.
        level: Some(if r.level == 4 {
            all_levels[r.guest as usize % 5].to_owned()
        } else if target.group {
            "member".to_owned()
        } else {
            let offered: Vec<&str> = (0..4).filter(|b| target.levels & (1 << b) != 0).map(|b| LEVELS[b]).collect();
            offered[r.level % offered.len()].to_owned()
        }),
        duration: r.duration.map(|d| format!("{d}d")),
        end: None,
        ai_suggested_target: None,
        target_group: target.group.then(|| GroupFacts::security_group(group_id(t))),
        target_mailbox: (!target.group).then(|| MailboxFacts::shared(key(t, target))),
    }
}

fn approvals() -> impl Strategy<Value = Vec<(usize, usize, bool, bool, Vec<usize>)>> {
    // (stage, person, approve?, by upn only?, groups)
    prop::collection::vec(
        (0..3usize, 0..PEOPLE, any::<bool>(), any::<bool>(), prop::collection::vec(0..GROUPS.len(), 0..3)),
        0..10,
    )
}

fn to_recorded(raw: &[(usize, usize, bool, bool, Vec<usize>)]) -> Vec<RecordedApproval> {
    raw.iter()
        .map(|(stage, person, approve, by_upn, groups)| RecordedApproval {
            stage: *stage,
            approver: Approver {
                // Identified by UPN only: the id is an unrelated value.
                id: if *by_upn { format!("other-{person}") } else { pid(*person) },
                upn: Some(upn(*person)),
                member_of: groups.iter().map(|g| GROUPS[*g].to_owned()).collect(),
            },
            verdict: if *approve { Verdict::Approve } else { Verdict::Reject },
            at: None,
        })
        .collect()
}

fn parse(text: &str) -> Policy {
    Policy::parse("generated.toml", text.as_bytes())
        .unwrap_or_else(|e| panic!("generated policy rejected: {e}\n{text}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn no_policy_ever_allows_a_guest(spec in policy_spec(), req in request()) {
        let text = render(&spec);
        let policy = parse(&text);
        let mut req = req;
        if req.guest == 0 {
            req.guest = 1;
        }
        let d = evaluate(&facts(&spec, &req), &policy);
        prop_assert_eq!(d.outcome, Outcome::Deny);
        prop_assert!(d.failing_codes().contains(&codes::IDENTITY_GUEST), "{:?}", d.failing_codes());
    }

    #[test]
    fn no_policy_ever_counts_a_self_approval(spec in policy_spec(), req in request(), raw in approvals()) {
        let text = render(&spec);
        let policy = parse(&text);
        let f = facts(&spec, &req);
        let d = evaluate(&f, &policy);
        if d.outcome == Outcome::Allow {
            prop_assert!(f.requester.is_member_type());
        }
        let Some(plan) = d.plan() else { return Ok(()) };
        let all = to_recorded(&raw);
        let barred = |a: &RecordedApproval| a.approver.upn.as_deref() == Some(f.requester.upn.as_str())
            || a.approver.id == f.requester.id
            || f.opened_by.as_ref().is_some_and(|o| o.upn == a.approver.upn || o.id == a.approver.id);
        let others: Vec<RecordedApproval> = all.iter().filter(|a| !barred(a)).cloned().collect();
        let only_self: Vec<RecordedApproval> = all.iter().filter(|a| barred(a)).cloned().collect();

        let with_self = approval_state(plan, &all, &f.requester.id);
        let without = approval_state(plan, &others, &f.requester.id);
        // Self-approvals change nothing ...
        prop_assert_eq!(&with_self.progress, &without.progress);
        // ... are reported ...
        let reported = with_self.ignored.iter().filter(|i| i.reason == IgnoreReason::SelfApproval).count();
        prop_assert_eq!(reported, only_self.len());
        // ... and alone never approve or reject anything.
        let alone = approval_state(plan, &only_self, &f.requester.id);
        prop_assert_eq!(alone.progress, ApprovalProgress::Pending { stage: 0 });
        // Even after every stage is escalated to its fallback.
        let mut escalated = plan.clone();
        for k in 0..escalated.stages.len() {
            escalated.escalate(k);
        }
        prop_assert_eq!(approval_state(&escalated, &only_self, &f.requester.id).progress, ApprovalProgress::Pending { stage: 0 });
    }

    #[test]
    fn nothing_outside_the_catalog_is_allowed(
        spec in policy_spec(),
        req in request(),
        item in "[A-Za-z0-9 @._-]{0,24}",
        suggestion in prop::option::of("[A-Za-z0-9 @._-]{0,24}"),
        hint in prop::option::of(0..8usize),
    ) {
        let text = render(&spec);
        let policy = parse(&text);
        let declared = |s: &str| {
            let n = s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
            policy.catalog().iter().any(|c| c.item.to_lowercase() == n || c.aliases.iter().any(|a| a.to_lowercase() == n))
                || policy.targets().iter().any(|t| t.is_named_by(s))
        };
        prop_assume!(!declared(&item));
        prop_assume!(suggestion.as_deref().is_none_or(|s| !declared(s)));
        let mut f = facts(&spec, &req);
        f.catalog_item = item;
        f.ai_suggested_target = suggestion;
        // The ticket may still name a declared target: that alone never opens the door.
        f.target = hint.map(|h| key(h % spec.targets.len(), &spec.targets[h % spec.targets.len()]));
        let d = evaluate(&f, &policy);
        prop_assert_eq!(d.outcome, Outcome::Deny);
        prop_assert!(d.failing_codes().contains(&codes::CATALOG_ITEM));
    }

    #[test]
    fn the_example_policy_allows_nothing_outside_its_catalog(
        item in "[A-Za-z0-9 @._-]{0,30}",
        suggestion in prop::option::of("[A-Za-z0-9 @._-]{0,30}"),
        target in prop::option::of(prop_oneof![Just("finance@contoso.com".to_owned()), Just("helpdesk@contoso.com".to_owned()), "[a-z@.]{0,20}"]),
        level in prop::option::of(prop_oneof![Just("read-only"), Just("send-as"), Just("member"), Just("full-access")]),
    ) {
        static EXAMPLE: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(|| {
            grantline_shared::policy::load_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/policy.toml")).unwrap()
        });
        let policy = &*EXAMPLE;
        let declared = |s: &str| {
            let n = s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
            policy.catalog().iter().any(|c| c.item.to_lowercase() == n || c.aliases.iter().any(|a| a.to_lowercase() == n))
                || policy.targets().iter().any(|t| t.is_named_by(s))
        };
        prop_assume!(!declared(&item));
        prop_assume!(suggestion.as_deref().is_none_or(|s| !declared(s)));
        let mut f = policy.tests()[0].facts.clone();
        f.catalog_item = item;
        f.ai_suggested_target = suggestion;
        f.target = target;
        f.level = level.map(str::to_owned);
        prop_assert_eq!(evaluate(&f, policy).outcome, Outcome::Deny);
    }
}
