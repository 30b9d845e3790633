//! The example policy in deploy/policy.toml: it parses, its own test cases pass, and its
//! identifiers are the ones exported for the simulator seed and the demo.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use grantline_shared::policy::{self, Policy, TargetRef, examples, run_tests};

fn example() -> Policy {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/policy.toml");
    policy::load_file(path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn example_policy_tests_pass() {
    let p = example();
    let report = run_tests(&p);
    assert!(report.all_passed(), "{report}");
    assert!(report.passed() >= 4, "{report}");
    let names: Vec<&str> = report.cases.iter().map(|c| c.name.as_str()).collect();
    for seed in [
        "send-as on finance@ needs the manager and the mailbox owner, 30 days",
        "read-only on helpdesk@ auto-approves for the Helpdesk group",
        "Finance BI needs the data owner",
        "Team Alpha needs the manager and ends on the contractor's end date",
    ] {
        assert!(names.contains(&seed), "missing seed case {seed}");
    }
    assert!(report.to_string().ends_with(&format!("{} passed, 0 failed", report.passed())));
}

#[test]
fn example_policy_uses_the_exported_ids() {
    let p = example();
    let group = |key: &str| match &p.target(key).unwrap_or_else(|| panic!("{key}")).target {
        TargetRef::Group { id } => id.clone(),
        TargetRef::Mailbox { .. } => panic!("{key} is a mailbox"),
    };
    assert_eq!(group("GRP-FINANCE-BI-READ"), examples::FINANCE_BI_READ_GROUP_ID);
    assert_eq!(p.target("GRP-FINANCE-BI-READ").map(|t| t.display_name.as_str()), Some("Finance BI Readers"));
    assert_eq!(group("team-alpha"), examples::TEAM_ALPHA_GROUP_ID);
    assert!(p.target(examples::FINANCE_MAILBOX).is_some());
    assert!(p.target(examples::HELPDESK_MAILBOX).is_some());
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/policy.toml")).unwrap();
    for (_, id) in examples::GROUPS.iter().chain(examples::USERS.iter()) {
        assert!(uuid::Uuid::try_parse(id).is_ok(), "{id} is not a GUID");
        assert!(text.contains(id), "{id} does not appear in the example policy");
    }
    for (upn, _) in examples::USERS {
        assert!(text.contains(upn), "{upn} does not appear in the example policy");
    }
}

#[test]
fn example_policy_declares_the_simulator_catalog_items() {
    let p = example();
    let entry = |name: &str| p.catalog().iter().find(|c| c.item == name);
    let targets =
        |name: &str| entry(name).unwrap_or_else(|| panic!("catalog item {name:?} is not declared")).targets.clone();
    assert_eq!(targets(examples::CATALOG_ITEM_FINANCE_BI), ["GRP-FINANCE-BI-READ"]);
    assert_eq!(targets(examples::CATALOG_ITEM_TEAM_ALPHA), ["team-alpha"]);
    let undeclared = examples::CATALOG_ITEM_UNDECLARED.to_lowercase();
    assert!(
        !p.catalog()
            .iter()
            .any(|c| c.item.to_lowercase() == undeclared || c.aliases.iter().any(|a| a.to_lowercase() == undeclared)),
        "{undeclared:?} must stay undeclared"
    );
}

/// `pub const NAME: &str = "value";` lines of a source file.
fn string_consts(source: &str) -> std::collections::BTreeMap<String, String> {
    source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const ")?.split_once(": &str = \""))
        .filter_map(|(name, rest)| Some((name.to_owned(), rest.strip_suffix("\";")?.to_owned())))
        .collect()
}

#[test]
fn example_ids_are_the_simulator_seed_ids() {
    // The demo and the end-to-end tests run the example policy against the simulator's demo
    // tenant; the two crates do not depend on each other, so compare the seed's source.
    let seed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../sims/src/tenant.rs")).unwrap();
    let ids = string_consts(&seed);
    for (ours, theirs) in [
        (examples::FINANCE_BI_READ_GROUP_ID, "GROUP_FINANCE_BI_READ"),
        (examples::TEAM_ALPHA_GROUP_ID, "GROUP_TEAM_ALPHA"),
        (examples::HELPDESK_GROUP_ID, "GROUP_HELPDESK"),
        (examples::ACCESS_GOVERNANCE_GROUP_ID, "GROUP_ACCESS_GOVERNANCE"),
        (examples::CATALOG_ITEM_FINANCE_BI, "CAT_ITEM_FINANCE_BI_NAME"),
        (examples::CATALOG_ITEM_TEAM_ALPHA, "CAT_ITEM_TEAM_ALPHA_NAME"),
        (examples::CATALOG_ITEM_UNDECLARED, "CAT_ITEM_UNMAPPED_NAME"),
        (examples::ALEX_ID, "ALEX_ID"),
        (examples::ALEX_UPN, "ALEX_UPN"),
        (examples::SARA_ID, "SARA_ID"),
        (examples::SARA_UPN, "SARA_UPN"),
        (examples::PATTI_ID, "PATTI_ID"),
        (examples::PATTI_UPN, "PATTI_UPN"),
        (examples::MEGAN_ID, "MEGAN_ID"),
        (examples::MEGAN_UPN, "MEGAN_UPN"),
        (examples::CONTRACTOR_ID, "CONTRACTOR_ID"),
        (examples::CONTRACTOR_UPN, "CONTRACTOR_UPN"),
        (examples::ALLAN_ID, "ALLAN_ID"),
        (examples::ALLAN_UPN, "ALLAN_UPN"),
        (examples::GUEST_ID, "GUEST_ID"),
        (examples::GUEST_UPN, "GUEST_UPN"),
    ] {
        assert_eq!(ids.get(theirs).map(String::as_str), Some(ours), "grantline_sims::ids::{theirs}");
    }
}

#[test]
fn version_is_the_hash_of_the_bytes() {
    let p = example();
    assert!(p.version().starts_with("sha256:"));
    assert_eq!(p.version().len(), "sha256:".len() + 64);
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/policy.toml")).unwrap();
    let same = Policy::parse("other-name.toml", &bytes).unwrap();
    assert_eq!(same.version(), p.version());
    let mut changed = bytes.clone();
    changed.extend_from_slice(b"\n# a comment changes the version\n");
    assert_ne!(Policy::parse("x.toml", &changed).unwrap().version(), p.version());
}

#[test]
fn explain_shows_checks_decision_and_plan() {
    let p = example();
    let case = &p.tests()[0];
    let e = policy::explain(&case.facts, &p);
    let text = e.to_string();
    for needle in [
        "decision  ALLOW, once approved",
        "pass  identity.guest",
        "pass  catalog.item",
        "rule      send-as-needs-manager-and-owner",
        "stage 1 \"manager and mailbox owner\": all of",
        &format!("- manager ({})", examples::SARA_ID),
        &format!("- mailbox-owner ({})", examples::PATTI_UPN),
        "decide within 72h, then escalate",
        "duration  30d, ends 2026-04-01T08:00:00Z",
        "window    inside change window \"finance-business-hours\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["decision"]["outcome"], "allow");
    assert_eq!(json["decision"]["policy_version"], p.version());
    assert_eq!(json["decision"]["approval"]["stages"][0]["quorum"], "all");
    assert_eq!(json["request"]["level"], "Send As");

    let guest = p.tests().iter().find(|c| c.name == "guests are never granted").unwrap();
    let text = policy::explain(&guest.facts, &p).to_string();
    assert!(text.contains("decision  DENY"), "{text}");
    assert!(text.contains("FAIL  identity.guest"), "{text}");
}

#[test]
fn a_failing_case_shows_what_differed() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/policy.toml");
    let text = std::fs::read_to_string(path).unwrap().replace(
        "approvals = [[\"data-owner\"]], duration = \"90d\"",
        "approvals = [[\"manager\"]], duration = \"30d\"",
    );
    let p = Policy::parse("policy.toml", text.as_bytes()).unwrap();
    let report = run_tests(&p);
    assert_eq!(report.failed(), 1);
    let shown = report.to_string();
    assert!(shown.contains("FAIL Finance BI needs the data owner"), "{shown}");
    assert!(shown.contains("    approvals: expected [[manager]], got [[data-owner]]"), "{shown}");
    assert!(shown.contains("    duration: expected 30d, got 90d"), "{shown}");
    assert!(shown.ends_with(&format!("{} passed, 1 failed", report.passed())), "{shown}");
}
