//! The policy tooling through the real binary: check, test, explain from facts and from a
//! live ticket (which writes nothing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use grantline_sims::{NewRitm, Sims, SimsConfig, ids, snow_sys_id};

const BIN: &str = env!("CARGO_BIN_EXE_grantline");
const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/policy.toml");

fn grantline(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).env("RUST_LOG", "off").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("grantline-cli-{}-{}", std::process::id(), name));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_accepts_the_example_and_rejects_a_malformed_file_with_its_line() {
    let (code, out, _) = grantline(&["policy", "check", POLICY]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ok: ") && out.contains("sha256:"), "{out}");
    let bad =
        temp("bad.toml", "schema_version = 1\n\n[groups.finance]\nid = \"not-a-guid\"\ndisplay_name = \"Finance\"\n");
    let (code, _, err) = grantline(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.toml:4:"), "names file and line: {err}");
}

#[test]
fn test_runs_the_cases_the_policy_carries() {
    let (code, out, _) = grantline(&["policy", "test", POLICY]);
    assert_eq!(code, 0, "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(last.ends_with("passed, 0 failed"), "{last}");
}

#[test]
fn explain_from_facts_prints_the_checks_decision_and_plan() {
    let facts = serde_json::json!({
        "now": "2026-03-02T10:00:00Z",
        "requester": { "id": ids::ALEX_ID, "upn": ids::ALEX_UPN, "user_type": "Member", "account_enabled": true, "manager_id": ids::SARA_ID },
        "catalog_item": ids::CAT_ITEM_TEAM_ALPHA_NAME,
        "target_group": { "id": ids::GROUP_TEAM_ALPHA, "group_types": [], "mail_enabled": false, "security_enabled": true }
    });
    let path = temp("facts.json", &facts.to_string());
    let (code, out, err) =
        grantline(&["policy", "explain", "--policy", POLICY, "--request", path.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let text = v.to_string();
    assert!(text.contains("business-groups-need-manager"), "{text}");
    assert!(text.contains(ids::SARA_ID), "the manager is the approver: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_a_live_ticket_reads_servicenow_and_graph_and_changes_nothing() {
    let sims = Sims::start(SimsConfig::demo()).await.unwrap();
    let created = sims
        .servicenow
        .state()
        .create_ritm(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME))
        .unwrap();
    let writes_before = sims.graph.state().counters().writes_applied;
    let notes_before = sims.servicenow.state().work_notes(&created.number).len();
    let env = [
        ("GRANTLINE__GRAPH__BASE_URL", sims.graph.v1_url()),
        ("GRANTLINE__GRAPH__TOKEN__AUTHORITY", sims.login.base_url()),
        ("GRANTLINE__GRAPH__TOKEN__TENANT", ids::TENANT_ID.to_owned()),
        ("GRANTLINE__GRAPH__TOKEN__CLIENT_ID", ids::APP_GRANTLINE_ID.to_owned()),
        ("GRANTLINE__GRAPH__TOKEN__CLIENT_SECRET", ids::APP_GRANTLINE_SECRET.to_owned()),
        ("GRANTLINE__SERVICENOW__INSTANCE_URL", sims.servicenow.base_url()),
        ("GRANTLINE__SERVICENOW__AUTH__KIND", "basic".to_owned()),
        ("GRANTLINE__SERVICENOW__AUTH__USERNAME", ids::SNOW_USER.to_owned()),
        ("GRANTLINE__SERVICENOW__AUTH__PASSWORD", ids::SNOW_PASSWORD.to_owned()),
    ];
    let number = created.number.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["policy", "explain", "--policy", POLICY, "--ticket", &number, "--json"])
            .envs(env)
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ticket"], created.number.as_str());
    assert_eq!(v["facts"]["requester"]["id"], ids::MEGAN_ID);
    assert!(
        v["facts"]["requester"]["member_of"].to_string().contains(ids::GROUP_HELPDESK),
        "membership was read: {stdout}"
    );
    assert!(stdout.contains("helpdesk-joins-team-alpha"), "{stdout}");
    // nothing changed: no directory write, no ticket note
    assert_eq!(sims.graph.state().counters().writes_applied, writes_before);
    assert_eq!(sims.servicenow.state().work_notes(&created.number).len(), notes_before);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_a_live_mailbox_ticket_reads_exchange_and_changes_nothing() {
    let sims = Sims::start(SimsConfig::demo()).await.unwrap();
    let created = sims
        .servicenow
        .state()
        .create_ritm(
            NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_SHARED_MAILBOX_NAME)
                .variable("mailbox", ids::MAILBOX_FINANCE)
                .variable("access", "Send As"),
        )
        .unwrap();
    let env = [
        ("GRANTLINE__GRAPH__BASE_URL", sims.graph.v1_url()),
        ("GRANTLINE__GRAPH__TOKEN__AUTHORITY", sims.login.base_url()),
        ("GRANTLINE__GRAPH__TOKEN__TENANT", ids::TENANT_ID.to_owned()),
        ("GRANTLINE__GRAPH__TOKEN__CLIENT_ID", ids::APP_GRANTLINE_ID.to_owned()),
        ("GRANTLINE__GRAPH__TOKEN__CLIENT_SECRET", ids::APP_GRANTLINE_SECRET.to_owned()),
        ("GRANTLINE__SERVICENOW__INSTANCE_URL", sims.servicenow.base_url()),
        ("GRANTLINE__SERVICENOW__AUTH__KIND", "basic".to_owned()),
        ("GRANTLINE__SERVICENOW__AUTH__USERNAME", ids::SNOW_USER.to_owned()),
        ("GRANTLINE__SERVICENOW__AUTH__PASSWORD", ids::SNOW_PASSWORD.to_owned()),
        ("GRANTLINE__EXCHANGE__BASE_URL", sims.exchange.base_url()),
        ("GRANTLINE__EXCHANGE__TENANT_ID", ids::TENANT_ID.to_owned()),
        ("GRANTLINE__EXCHANGE__TOKEN__AUTHORITY", sims.login.base_url()),
        ("GRANTLINE__EXCHANGE__TOKEN__TENANT", ids::TENANT_ID.to_owned()),
        ("GRANTLINE__EXCHANGE__TOKEN__CLIENT_ID", ids::APP_GRANTLINE_ID.to_owned()),
        ("GRANTLINE__EXCHANGE__TOKEN__CLIENT_SECRET", ids::APP_GRANTLINE_SECRET.to_owned()),
    ];
    let number = created.number.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["policy", "explain", "--policy", POLICY, "--ticket", &number, "--json"])
            .envs(env)
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["facts"]["target_mailbox"]["recipient_type_details"], "SharedMailbox", "{stdout}");
    assert!(stdout.contains("send-as-needs-manager-and-owner"), "{stdout}");
    let cmdlets: Vec<String> = sims
        .exchange
        .requests()
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
        .filter_map(|b| b["CmdletInput"]["CmdletName"].as_str().map(str::to_owned))
        .collect();
    assert!(!cmdlets.is_empty() && cmdlets.iter().all(|c| c.starts_with("Get-")), "reads only: {cmdlets:?}");
    sims.shutdown().await;
}
