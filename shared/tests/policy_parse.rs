//! Malformed policy files are rejected with the file, line, column and what was expected.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use grantline_shared::policy::{Policy, PolicyError, check, load_file};

/// A small valid policy; cases below edit it. Line numbers are noted for reference.
const BASE: &str = r#"schema_version = 1
[tags]
fin = "financial"
[groups.g]
id = "00000000-0000-4000-8000-000000000001"
display_name = "G"
tags = ["fin"]
[mailboxes."m@x.com"]
type = "shared"
display_name = "M"
levels = ["read-only"]
[[catalog]]
item = "G"
targets = ["g"]
[[catalog]]
item = "M"
targets = ["m@x.com"]
"#;

const STAGE: &str = "[[rule]]\nname = \"r\"\n[[rule.stage]]\n";

fn error_of(text: &str) -> String {
    match Policy::parse("policy.toml", text.as_bytes()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn base_is_valid() {
    let p = check("policy.toml", BASE.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert!(p.summary().starts_with("policy.toml: ok, version sha256:"));
}

#[test]
fn malformed_files_name_line_and_column() {
    let with = |extra: &str| format!("{BASE}{extra}");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "syntax error",
            "schema_version = 1\n[groups.g\nid = 1\n".into(),
            "policy.toml:2:10: unclosed table, expected `]`",
        ),
        (
            "unknown top-level key",
            BASE.replace("[tags]", "colour = \"red\"\n[tags]"),
            "policy.toml:2:1: unknown field `colour`, expected one of",
        ),
        (
            "unknown key in a group",
            BASE.replace("display_name = \"G\"", "display_name = \"G\"\nownr = []"),
            "policy.toml:7:1: unknown field `ownr`",
        ),
        (
            "wrong type",
            BASE.replace("tags = [\"fin\"]", "tags = \"fin\""),
            "policy.toml:7:8: invalid type: string \"fin\", expected a sequence",
        ),
        (
            "unknown access level",
            BASE.replace("levels = [\"read-only\"]", "levels = [\"read-only\", \"sendas\"]"),
            "policy.toml:11:24: unknown access level \"sendas\", expected one of member, read-only, full-access, send-as, send-on-behalf",
        ),
        (
            "unknown tag on a target",
            BASE.replace("tags = [\"fin\"]", "tags = [\"finance\"]"),
            "policy.toml:7:9: unknown tag \"finance\", expected one of fin (declare tags under [tags])",
        ),
        (
            "catalog references an unknown target",
            BASE.replace("targets = [\"g\"]", "targets = [\"g\", \"h\"]"),
            "policy.toml:14:17: unknown target \"h\", expected a key of [groups] or [mailboxes]: g, m@x.com",
        ),
        (
            "rule references an unknown tag",
            with("[[rule]]\nname = \"r\"\nwhen = { tags = [\"nope\"] }\nauto_approve = true\n"),
            "policy.toml:20:18: unknown tag \"nope\"",
        ),
        (
            "rule references an unknown target",
            with("[[rule]]\nname = \"r\"\nwhen = { targets = [\"zz\"] }\nauto_approve = true\n"),
            "policy.toml:20:21: unknown target \"zz\"",
        ),
        (
            "duration that does not parse",
            with(&format!("{STAGE}approvers = [\"manager\"]\ntime_to_decide = \"72 hrz\"\n")),
            "policy.toml:22:18: invalid duration \"72 hrz\": the unit is not one of w, d, h, m, s, expected a number and a unit",
        ),
        (
            "unknown time zone",
            with("[[window]]\nname = \"w\"\ntime_zone = \"Europe/Amsterdm\"\nopen = [\"mon-fri 08:00-18:00\"]\n"),
            "policy.toml:20:13: unknown time zone \"Europe/Amsterdm\", expected an IANA time zone name such as \"Europe/Amsterdam\"",
        ),
        (
            "window that does not parse",
            with("[[window]]\nname = \"w\"\ntime_zone = \"UTC\"\nopen = [\"weekdays 8-18\"]\n"),
            "policy.toml:21:9: invalid window \"weekdays 8-18\"",
        ),
        (
            "N-of-M with N > M",
            with(&format!(
                "{STAGE}approvers = [\"manager\", \"data-owner\"]\nquorum = \"3-of-2\"\ntime_to_decide = \"1d\"\n"
            )),
            "policy.toml:22:10: quorum 3-of-2 asks for more approvals (3) than there are approvers (2)",
        ),
        (
            "N-of-M whose M is not the number of approvers",
            with(&format!(
                "{STAGE}approvers = [\"manager\", \"data-owner\"]\nquorum = \"1-of-3\"\ntime_to_decide = \"1d\"\n"
            )),
            "policy.toml:22:10: quorum 1-of-3 counts 3 approvers but the stage lists 2",
        ),
        (
            "quorum that does not parse",
            with(&format!("{STAGE}approvers = [\"manager\"]\nquorum = \"most\"\ntime_to_decide = \"1d\"\n")),
            "policy.toml:22:10: invalid quorum \"most\", expected \"any\", \"all\" or \"N-of-M\"",
        ),
        (
            "unknown approver",
            with(&format!("{STAGE}approvers = [\"boss\"]\ntime_to_decide = \"1d\"\n")),
            "policy.toml:21:14: unknown approver \"boss\", expected \"manager\"",
        ),
        (
            "security group approver that is not a GUID",
            with(&format!("{STAGE}approvers = [\"manager\", {{ group = \"admins\" }}]\ntime_to_decide = \"1d\"\n")),
            "policy.toml:21:25: invalid group id \"admins\", expected an object id (GUID)",
        ),
        (
            "stage without a time to decide",
            with(&format!("{STAGE}approvers = [\"manager\"]\n")),
            "policy.toml:21:13: this stage has no time_to_decide and [defaults] sets none",
        ),
        (
            "escalation without a fallback",
            with(&format!("{STAGE}approvers = [\"manager\"]\ntime_to_decide = \"1d\"\non_timeout = \"escalate\"\n")),
            "policy.toml:23:14: on_timeout = \"escalate\" needs a fallback",
        ),
        (
            "fallback that depends on the request",
            with(&format!("{STAGE}approvers = [\"data-owner\"]\ntime_to_decide = \"1d\"\nfallback = \"manager\"\n")),
            "policy.toml:23:12: a fallback must be a security group, named users or \"managers-manager\"",
        ),
        (
            "rule with no outcome",
            with("[[rule]]\nname = \"r\"\n"),
            "policy.toml:19:8: rule \"r\" must have exactly one outcome",
        ),
        (
            "rule with two outcomes",
            with("[[rule]]\nname = \"r\"\nauto_approve = true\ndeny = \"no\"\n"),
            "policy.toml:19:8: rule \"r\" must have exactly one outcome: auto_approve = true, deny = \"<reason>\", or [[rule.stage]] entries (found 2)",
        ),
        (
            "duplicate rule names",
            with("[[rule]]\nname = \"r\"\nauto_approve = true\n[[rule]]\nname = \"r\"\nauto_approve = true\n"),
            "policy.toml:22:8: duplicate rule name \"r\"",
        ),
        (
            "default longer than max",
            with("[[duration]]\nname = \"d\"\ndefault = \"90d\"\nmax = \"30d\"\n"),
            "policy.toml:20:11: the default 90d is longer than the max 30d",
        ),
        (
            "alias that collides with another item",
            BASE.replace("item = \"M\"", "item = \"M\"\naliases = [\"g\"]"),
            "policy.toml:17:12: \"g\" already names catalog item \"G\"",
        ),
        (
            "group id that is not a GUID",
            BASE.replace("00000000-0000-4000-8000-000000000001", "GRP-FINANCE"),
            "policy.toml:5:6: invalid group id \"GRP-FINANCE\", expected an object id (GUID)",
        ),
        (
            "mailbox level on a group",
            BASE.replace("tags = [\"fin\"]", "tags = [\"fin\"]\nlevels = [\"send-as\"]"),
            "policy.toml:8:11: send-as is a mailbox level; a group offers only member",
        ),
        (
            "mailbox keyed by something that is not an address",
            BASE.replace("[mailboxes.\"m@x.com\"]", "[mailboxes.finance]").replace("[\"m@x.com\"]", "[\"finance\"]"),
            "policy.toml:8:12: mailbox key \"finance\" must be the mailbox's address",
        ),
        (
            "target offered by no catalog item",
            BASE.replace("[[catalog]]\nitem = \"M\"\ntargets = [\"m@x.com\"]\n", ""),
            "policy.toml:8:12: target \"m@x.com\" is not offered by any [[catalog]] item",
        ),
        (
            "requester group that is not a GUID",
            with("[[rule]]\nname = \"r\"\nwhen = { requester_member_of = [\"helpdesk\"] }\nauto_approve = true\n"),
            "policy.toml:20:33: invalid group id \"helpdesk\"",
        ),
        (
            "test with an unknown fixture and check code",
            with(
                "[[test]]\nname = \"t\"\nnow = 2026-03-02T08:00:00Z\nrequester = \"nobody\"\nexpect = { decision = \"deny\", failing_checks = [\"identity.gust\"] }\n",
            ),
            "policy.toml:21:13: unknown user fixture \"nobody\", expected one of none declared (under [fixtures.users])",
        ),
        (
            "timestamp that does not parse",
            with(
                "[fixtures.users.a]\nid = \"a\"\nupn = \"a@x.com\"\nuser_type = \"Member\"\naccount_enabled = true\nemployee_leave_date_time = \"soon\"\n",
            ),
            "policy.toml:23:28: invalid timestamp \"soon\"",
        ),
        (
            "unsupported schema version",
            "schema_version = 2\n[tags]\n".into(),
            "policy.toml:1:18: unsupported schema_version 2, expected 1",
        ),
        (
            "missing schema version",
            "[tags]\n".into(),
            "policy.toml:1:1: missing schema_version, expected `schema_version = 1`",
        ),
        ("duplicate TOML key", with("[groups.g]\nid = \"x\"\n"), "policy.toml:18:9: duplicate key"),
    ];
    let mut wrong = Vec::new();
    for (name, text, want) in cases {
        let got = error_of(&text);
        if !got.starts_with(want) {
            wrong.push(format!("{name}:\n  want prefix: {want}\n  got:         {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_semantic_problem_is_reported_in_line_order() {
    let text = BASE
        .replace("tags = [\"fin\"]", "tags = [\"nope\"]")
        .replace("targets = [\"m@x.com\"]", "targets = [\"m@x.com\", \"zz\"]")
        + "[[rule]]\nname = \"r\"\n";
    let err = Policy::parse("policy.toml", text.as_bytes()).unwrap_err();
    let lines: Vec<usize> = err.diagnostics().iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![7, 17, 19], "{err}");
    assert_eq!(err.to_string().lines().count(), 3);
    assert!(err.to_string().lines().all(|l| l.starts_with("policy.toml:")));
}

#[test]
fn test_cases_are_cross_checked() {
    let text = format!(
        "{BASE}[fixtures.users.a]\nid = \"a\"\nupn = \"a@x.com\"\nuser_type = \"Member\"\naccount_enabled = true\n\
         [[test]]\nname = \"t\"\nnow = 2026-03-02T08:00:00Z\nrequester = \"a\"\ntarget_group = \"nope\"\n\
         expect = {{ decision = \"deny\", rule = \"missing\", target = \"zz\", failing_checks = [\"identity.gust\"] }}\n"
    );
    let err = error_of(&text);
    for needle in [
        "policy.toml:27:16: unknown group fixture \"nope\"",
        "policy.toml:28:38: unknown rule \"missing\"",
        "policy.toml:28:58: unknown target \"zz\"",
        "policy.toml:28:82: unknown check code \"identity.gust\", expected one of identity.requester",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in\n{err}");
    }
}

#[test]
fn columns_count_characters_not_bytes() {
    let text = BASE.replace("display_name = \"G\"", "display_name = \"Größe\"\nbogus = 1");
    assert!(error_of(&text).starts_with("policy.toml:7:1: unknown field `bogus`"));
    let text = BASE.replace("tags = [\"fin\"]", "description = \"é\"; tags = [\"x\"]");
    // `;` is not TOML: it is the 18th character (19th byte) of the line.
    assert!(error_of(&text).starts_with("policy.toml:7:18:"), "{}", error_of(&text));
}

#[test]
fn not_utf8() {
    let mut bytes = b"schema_version = 1\nname = \"".to_vec();
    bytes.extend_from_slice(&[0xff, b'"', b'\n']);
    let err = Policy::parse("policy.toml", &bytes).unwrap_err();
    assert_eq!(err.to_string(), "policy.toml:2:9: the file is not valid UTF-8");
}

#[test]
fn missing_file_names_the_file() {
    let err = load_file("/nonexistent/grantline/policy.toml").unwrap_err();
    assert!(matches!(err, PolicyError::Io { .. }));
    assert!(err.to_string().starts_with("/nonexistent/grantline/policy.toml: cannot read the policy file"), "{err}");
}

#[test]
fn unexplained_members_is_set_per_group_or_in_defaults_and_only_on_groups() {
    use grantline_shared::policy::UnexplainedMembers;
    let of = |text: &str| {
        let p = Policy::parse("policy.toml", text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        p.targets().iter().map(|t| (t.key.clone(), t.unexplained_members)).collect::<Vec<_>>()
    };
    let report = UnexplainedMembers::Report;
    assert!(of(BASE).iter().all(|(_, u)| *u == report), "report by default");
    let defaults = BASE.replace("[tags]", "[defaults]\nunexplained_members = \"page\"\n[tags]");
    assert!(of(&defaults).contains(&("g".to_owned(), UnexplainedMembers::Page)));
    let own = defaults.replace("display_name = \"G\"", "display_name = \"G\"\nunexplained_members = \"remove\"");
    assert!(of(&own).contains(&("g".to_owned(), UnexplainedMembers::Remove)), "the group's own setting wins");
    // a mailbox has no members to reconcile; a value out of the three is refused
    let e = error_of(&BASE.replace("display_name = \"M\"", "display_name = \"M\"\nunexplained_members = \"remove\""));
    assert!(e.contains("unknown field `unexplained_members`"), "{e}");
    let e = error_of(&BASE.replace("display_name = \"G\"", "display_name = \"G\"\nunexplained_members = \"delete\""));
    assert!(e.contains("policy.toml:7:") && e.contains("unknown variant `delete`"), "{e}");
}
