//! Retention of finished requests on a real stack: a denied request's record is compacted
//! after `retention.records_days` (its trail still verifies, listings still show it), and after
//! `retention.audit_days` its trail is archived to a file that verifies offline before every
//! key of the request leaves Redis. A request that still holds access is never touched.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use grantline::retention::{PassReport, RetentionSettings, pass};
use grantline_shared::record::fields;
use grantline_shared::request::{RequestState, keys};
use grantline_sims::{NewRitm, ids, snow_sys_id};
use grantline_store::retention::{ArchiveLine, verify_archive};
use redis::AsyncCommands;
use support::{OPERATOR_TOKEN, Stack, TempDir, WAIT};

const DAY: u64 = 86_400_000;

async fn hash(stack: &Stack, id: &str) -> std::collections::HashMap<String, String> {
    let mut conn = stack.queue.connection();
    conn.hgetall(stack.queue.namespace().key(&keys::request(id))).await.unwrap()
}

async fn exists(stack: &Stack, key: &str) -> bool {
    let mut conn = stack.queue.connection();
    conn.exists(stack.queue.namespace().key(key)).await.unwrap()
}

async fn in_set(stack: &Stack, set: &str, id: &str) -> bool {
    let mut conn = stack.queue.connection();
    let score: Option<f64> = conn.zscore(stack.queue.namespace().key(set), id).await.unwrap();
    score.is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_requests_are_compacted_then_archived_and_trimmed() {
    let dir = TempDir::new("retention");
    let stack = Stack::start().await;
    // a guest is denied: finished at once; Megan's Team Alpha is granted and stays active
    let (denied_number, denied) =
        stack.submit(NewRitm::new(&snow_sys_id(ids::GUEST_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    let (_, active) = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&denied, RequestState::Denied, WAIT).await;
    stack.wait_state(&active, RequestState::Active, WAIT).await;
    stack.wait_note(&denied_number, "denied").await;
    assert!(in_set(&stack, keys::FINISHED, &denied).await, "the commit that denied it records when it finished");
    assert!(!in_set(&stack, keys::FINISHED, &active).await);
    let trail_before = grantline_store::trail::entries(&stack.queue, &denied).await.unwrap();
    let head = hash(&stack, &denied).await[fields::AUDIT_HEAD].clone();
    let active_before = hash(&stack, &active).await;

    let archive = dir.path().join("archive");
    let cfg = RetentionSettings {
        records_days: 30,
        audit_days: 365,
        archive_dir: archive.display().to_string(),
        ..RetentionSettings::default()
    };
    cfg.validate().unwrap();
    cfg.prepare().unwrap();
    let now = stack.svc.clock.now_ms();

    // a day later: nothing is due
    assert_eq!(pass(&stack.queue, &cfg, now + DAY).await.unwrap(), PassReport::default());

    // a month later: the record keeps its summary, the trail is untouched
    let r = pass(&stack.queue, &cfg, now + 31 * DAY).await.unwrap();
    assert_eq!((r.compacted, r.trimmed), (1, 0), "{r:?}");
    let compacted = hash(&stack, &denied).await;
    for gone in [fields::DECISION, fields::REQUESTER, fields::CURRENT, fields::NOTED] {
        assert!(!compacted.contains_key(gone), "{gone} is still stored: {compacted:#?}");
    }
    assert_eq!(compacted[fields::STATE], "denied");
    assert_eq!(compacted[fields::AUDIT_HEAD], head);
    assert!(compacted.contains_key(fields::COMPACTED_MS) && compacted.contains_key(fields::REASON));
    let rec = grantline_store::load(&stack.queue, &denied).await.unwrap();
    assert!(rec.decision.is_none() && rec.compacted_ms.is_some(), "the typed record reads the summary");
    let after = grantline_store::trail::entries(&stack.queue, &denied).await.unwrap();
    assert_eq!(after, trail_before, "compaction leaves the trail alone");
    let triples: Vec<_> = after.iter().map(|e| e.triple()).collect();
    assert!(grantline_shared::audit::verify(&triples, &head).broken_at.is_none());
    // the operator API still answers for it
    let resp = stack
        .http
        .get(format!("{}/v1/requests/{denied}", stack.ingest_url))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // the active grant is untouched, and a second pass does nothing again
    assert_eq!(hash(&stack, &active).await, active_before);
    assert_eq!(pass(&stack.queue, &cfg, now + 32 * DAY).await.unwrap().compacted, 0);

    // a year later: archived first, then gone
    let r = pass(&stack.queue, &cfg, now + 366 * DAY).await.unwrap();
    assert_eq!(r.trimmed, 1, "{r:?}");
    assert_eq!(r.archived_records, trail_before.len());
    let file = r.archive.clone().expect("an archive file");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<ArchiveLine> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), trail_before.len() + 1);
    match lines.last().unwrap() {
        ArchiveLine::End { request_id, head: h, records, state, ticket } => {
            assert_eq!((request_id, h, *records), (&denied, &head, trail_before.len()));
            assert_eq!((state.as_str(), ticket.as_str()), ("denied", denied_number.as_str()));
        }
        other => panic!("the trail ends with its head, not {other:?}"),
    }
    let check = verify_archive(std::io::BufReader::new(std::fs::File::open(&file).unwrap())).unwrap();
    assert!(check.problems.is_empty(), "{check:?}");
    assert_eq!((check.trails, check.records), (1, trail_before.len()));
    for key in [keys::request(&denied), keys::audit(&denied), keys::ticket("servicenow", &denied_number)] {
        assert!(!exists(&stack, &key).await, "{key} is still in Redis");
    }
    for set in [
        keys::REQUESTS.to_owned(),
        keys::FINISHED.to_owned(),
        keys::COMPACTED.to_owned(),
        keys::by_state(RequestState::Denied),
    ] {
        assert!(!in_set(&stack, &set, &denied).await, "{denied} is still in {set}");
    }
    assert_eq!(hash(&stack, &active).await, active_before, "retention never touches a grant that holds access");

    // the command an auditor runs, and what it says of an edited archive
    let verify = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_grantline"))
            .args(["audit", "verify-archive"])
            .arg(path)
            .output()
            .unwrap()
    };
    let ok = verify(&file);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1 trails"));
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, text.replacen("identity.guest", "identity.member", 1)).unwrap();
    let bad = verify(&tampered);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("edited"), "{}", String::from_utf8_lossy(&bad.stdout));
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, text.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
    assert!(String::from_utf8_lossy(&verify(&cut).stdout).contains("cut off"));
    stack.shutdown().await;
}

#[test]
fn an_audit_retention_without_an_archive_is_refused() {
    let cfg = RetentionSettings { audit_days: 365, ..RetentionSettings::default() };
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("retention.archive_dir"), "{err}");
    let cfg =
        RetentionSettings { records_days: 400, audit_days: 365, archive_dir: "/tmp/x".into(), ..Default::default() };
    assert!(cfg.validate().unwrap_err().to_string().contains("retention.records_days"));
}
