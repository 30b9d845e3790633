//! End to end: a request approved by its data owner, granted, noted on the ticket and removed at
//! expiry; its evidence pack made by the real binary (`grantline audit evidence`), verified
//! offline (`grantline audit verify-evidence`, with no Redis), then tampered with: one flipped
//! byte, an edited approval, a removed trail record, each refused with its reason, also when
//! the forger signs again with a key of their own. Finally an approval deleted from the stored
//! trail makes the next pack record a broken chain.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use grantline::evidence::{SigningKey, reseal};
use grantline_shared::audit::AuditEvent;
use grantline_shared::request::{RequestState, fields, keys};
use grantline_sims::{NewRitm, ids, snow_sys_id};
use redis::AsyncCommands;
use serde_json::Value;
use support::{POLICY, Stack, TempDir, WAIT, WAIT_EXPIRY};

const BIN: &str = env!("CARGO_BIN_EXE_grantline");
const JUSTIFICATION: &str = "Quarter-end close for the finance team";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Runs the binary in `dir`; with `stack`, pointed at its Redis namespace, otherwise with no
/// configuration at all (as on an auditor's machine).
async fn grantline(stack: Option<&Stack>, dir: &Path, args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("GRANTLINE") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    if let Some(s) = stack {
        cmd.env("GRANTLINE__REDIS_URL", s.redis.url()).env("GRANTLINE__QUEUE__NAMESPACE", &s.queue.config().namespace);
    }
    let out = cmd
        .args(args)
        .env("RUST_LOG", "warn")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run grantline");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn verify(dir: &Path, file: &Path, public_key: Option<&Path>) -> Run {
    let file = file.display().to_string();
    let mut args = vec!["audit", "verify-evidence", file.as_str()];
    let key = public_key.map(|k| k.display().to_string());
    if let Some(k) = &key {
        args.extend(["--public-key", k.as_str()]);
    }
    grantline(None, dir, &args).await
}

/// Writes a variant of the pack and returns its path.
fn write_variant(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.evidence.json"));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_grant_yields_a_signed_pack_that_verifies_offline_and_refuses_tampering() {
    let dir = TempDir::new("evidence");
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    let ritm = NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_FINANCE_BI_NAME)
        .variable("duration", "5s")
        .variable("justification", JUSTIFICATION);
    let (number, id) = stack.submit(ritm).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!(status, 200, "{body}");
    stack.wait_state(&id, RequestState::Removed, WAIT_EXPIRY).await;
    // the removal's ticket note is the last step of the chain
    stack
        .wait_for("the removal's ticket update", WAIT, || async {
            let trail = stack.audit(&id).await;
            trail
                .iter()
                .any(|r| matches!(&r.event, AuditEvent::TicketUpdated { update, .. } if update == "removed"))
                .then_some(())
        })
        .await;
    let trail = stack.audit(&id).await;
    let grant = stack.json_field(&id, fields::GRANT).await;
    let decision = stack.json_field(&id, fields::DECISION).await;

    // a signing key
    let key_path = dir.path().join("signing.pem");
    let run = grantline(None, dir.path(), &["audit", "keygen", "--out", "signing.pem"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("-----BEGIN PUBLIC KEY-----"), "{run}");
    assert!(!run.stdout.contains("PRIVATE KEY") && !run.stderr.contains("PRIVATE KEY"), "never print it: {run}");
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is its owner's only");
    let public_path = dir.path().join("signing.pem.pub");
    let key_id = run.stdout.lines().find_map(|l| l.strip_prefix("key id:")).unwrap().trim().to_owned();
    let again = grantline(None, dir.path(), &["audit", "keygen", "--out", "signing.pem"]).await;
    assert_ne!(again.code, Some(0), "an existing key is not overwritten: {again}");

    // the pack, through the binary, by ticket number
    let out = dir.path().join("packs");
    let (out_s, key_s) = (out.display().to_string(), key_path.display().to_string());
    let run = grantline(
        Some(&stack),
        dir.path(),
        &["audit", "evidence", &number, "--out", &out_s, "--key", &key_s, "--policy", POLICY],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run}");
    let json_path = out.join(format!("{number}-{id}.evidence.json"));
    let html_path = out.join(format!("{number}-{id}.evidence.html"));
    assert!(run.stdout.contains(&json_path.display().to_string()), "{run}");
    let text = std::fs::read_to_string(&json_path).unwrap();
    let pack: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(pack["format"], "grantline-evidence/1");
    assert_eq!(pack["signature"]["alg"], "Ed25519");
    assert_eq!(pack["signature"]["key_id"], key_id.as_str());
    let c = &pack["content"];
    assert_eq!(c["format"], "grantline-evidence/1");
    assert_eq!(c["request_id"], id.as_str());
    assert_eq!(c["ticket"]["number"], number.as_str());
    assert_eq!(c["state"], "removed");
    assert!(c["tool"]["version"].is_string() && c["generated_ms"].is_u64());

    // what the ticket asked
    assert_eq!(c["inputs"]["catalog_item"], ids::CAT_ITEM_FINANCE_BI_NAME);
    assert_eq!(c["inputs"]["justification"], JUSTIFICATION);
    assert_eq!(c["inputs"]["target"], "Finance BI Readers");
    assert_eq!(c["inputs"]["level"], "member");
    assert_eq!(c["inputs"]["duration_requested"], "5s");

    // every check of the trail, the decision and the policy it was made under
    let check_records = trail.iter().filter(|r| r.event.name() == "check_evaluated").count();
    let checks = c["checks"].as_array().unwrap();
    assert_eq!(checks.len(), check_records);
    assert!(checks.iter().all(|k| k["passed"].is_boolean() && k["reason"].is_string() && k["code"].is_string()));
    assert_eq!(c["decision"]["outcome"], "allow");
    assert_eq!(c["decision"]["rule"], "financial-groups-need-data-owner");
    assert_eq!(c["decision"]["policy_version"], decision["policy_version"]);
    assert_eq!(c["policy"]["sha256"], decision["policy_version"], "the policy in force is the decision's");
    assert_eq!(c["policy"]["matches_decision"], true);

    // who approved, when, through what
    let approvals = c["approvals"].as_array().unwrap();
    assert_eq!(approvals.len(), 1, "{approvals:#?}");
    assert_eq!(approvals[0]["approver"], ids::PATTI_UPN);
    assert_eq!(approvals[0]["approve"], true);
    assert_eq!(approvals[0]["actor"], "operator:e2e");
    let approved_at = trail.iter().find(|r| r.event.name() == "approval_recorded").unwrap().at_ms;
    assert_eq!(approvals[0]["at_ms"], approved_at);

    // what changed: before and after, the upstream's ids, the ticket, the removal
    let g = &c["grant"];
    assert_eq!(
        (g["before"].as_bool(), g["after"].as_bool(), g["pre_existing"].as_bool()),
        (Some(false), Some(true), Some(false))
    );
    assert_eq!(g["upstream_request_id"], grant["evidence"]["request_id"]);
    assert_eq!(g["client_request_id"], grant["evidence"]["client_request_id"]);
    assert_eq!(g["target_id"], ids::GROUP_FINANCE_BI_READ);
    let updates: Vec<&str> =
        c["ticket_updates"].as_array().unwrap().iter().map(|u| u["update"].as_str().unwrap()).collect();
    assert!(updates.contains(&"granted") && updates.contains(&"removed"), "{updates:?}");
    assert_eq!(c["removal"]["removed"], true);
    assert_eq!(c["removal"]["trigger"], "expiry");

    // the complete trail, verified
    assert_eq!(c["audit"]["records"], trail.len());
    assert_eq!(c["audit"]["trail"].as_array().unwrap().len(), trail.len());
    assert_eq!(c["audit"]["verification"]["intact"], true);
    assert_eq!(c["audit"]["head"].as_str(), stack.record(&id).await.get(fields::AUDIT_HEAD).map(String::as_str));

    // the page: self-contained and printable
    let html = std::fs::read_to_string(&html_path).unwrap();
    for needle in
        [number.as_str(), id.as_str(), ids::PATTI_UPN, JUSTIFICATION, "Policy checks", "Audit trail", "@media print"]
    {
        assert!(html.contains(needle), "the page lacks {needle:?}");
    }
    for external in ["<script", "<link", "src=", "url(", "@import", "<iframe"] {
        assert!(!html.contains(external), "the page loads nothing from outside: {external}");
    }

    // verified offline: the given key proves origin, the embedded one integrity only
    let run = verify(dir.path(), &json_path, Some(&public_path)).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.starts_with("VALID"), "{run}");
    assert!(run.stdout.contains("checked with the given public key"), "{run}");
    assert!(run.stdout.contains(ids::PATTI_UPN) && run.stdout.contains("removed and verified gone"), "{run}");
    let run = verify(dir.path(), &json_path, None).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("key embedded in the pack") && run.stdout.contains("not who signed it"), "{run}");

    // one flipped byte of the content
    let at = text.find(JUSTIFICATION).unwrap();
    let mut bytes = text.clone().into_bytes();
    bytes[at] ^= 0x20; // 'Q' -> 'q'
    let flipped = write_variant(dir.path(), "flipped", std::str::from_utf8(&bytes).unwrap());
    let run = verify(dir.path(), &flipped, Some(&public_path)).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stdout.starts_with("INVALID: the signature does not verify with the given public key"), "{run}");
    let run = verify(dir.path(), &flipped, None).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stdout.contains("the content was changed after it was signed"), "{run}");

    // an edited approval, as is and signed again by a forger
    let forger = SigningKey::generate().unwrap();
    let mut edited = pack.clone();
    edited["content"]["approvals"][0]["approver"] = "mallory@contoso.com".into();
    let path = write_variant(dir.path(), "approval", &serde_json::to_string_pretty(&edited).unwrap());
    let run = verify(dir.path(), &path, Some(&public_path)).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stdout.contains("signature does not verify"), "{run}");
    let forged = reseal(edited["content"].clone(), &forger).unwrap();
    let path = write_variant(dir.path(), "approval-forged", &serde_json::to_string_pretty(&forged).unwrap());
    let run = verify(dir.path(), &path, None).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stdout.contains("the approval by mallory@contoso.com (approved)")
            && run.stdout.contains("has no approval_recorded record in the audit trail"),
        "{run}"
    );
    let run = verify(dir.path(), &path, Some(&public_path)).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stdout.contains("not by the given public key"), "{run}");

    // a trail record removed (the approval's), as is and signed again
    let position = trail.iter().position(|r| r.event.name() == "approval_recorded").unwrap();
    let mut cut = pack.clone();
    cut["content"]["audit"]["trail"].as_array_mut().unwrap().remove(position);
    let path = write_variant(dir.path(), "cut", &serde_json::to_string_pretty(&cut).unwrap());
    let run = verify(dir.path(), &path, None).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stdout.contains("signature does not verify"), "{run}");
    let forged = reseal(cut["content"].clone(), &forger).unwrap();
    let path = write_variant(dir.path(), "cut-forged", &serde_json::to_string_pretty(&forged).unwrap());
    let run = verify(dir.path(), &path, None).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stdout.starts_with(&format!(
            "INVALID: the audit chain is broken at record {position} of {}: a record is missing before this one",
            trail.len() - 1
        )),
        "{run}"
    );

    // an approval deleted from the stored trail: the next pack records the broken chain
    let mut conn = stack.queue.connection();
    let stream = stack.queue.namespace().key(&keys::audit(&id));
    let entries: redis::streams::StreamRangeReply = conn.xrange_all(&stream).await.unwrap();
    let _: i64 = conn.xdel(&stream, &[entries.ids[position].id.clone()]).await.unwrap();
    let run = grantline(
        Some(&stack),
        dir.path(),
        &["audit", "evidence", &id, "--out", &out_s, "--key", &key_s, "--policy", POLICY],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stdout.contains("BROKEN: the audit chain is broken at record"), "{run}");
    let run = verify(dir.path(), &json_path, Some(&public_path)).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stdout.starts_with(&format!("INVALID: the audit chain is broken at record {position}")), "{run}");
    stack.shutdown().await;
}
