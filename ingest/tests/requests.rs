//! The operator API against a real Redis: request status, and approval decisions (self-
//! approval refused, approvers checked, one grant job however often a decision is sent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use serde_json::{Value, json};

use common::*;
use grantline_queue::successor_id;
use grantline_shared::audit::{self, AuditEvent, AuditRecord};
use grantline_shared::request::fields;

fn decision(id: &str, body: Value) -> axum::http::Request<axum::body::Body> {
    post(
        &format!("/v1/requests/{id}/decision"),
        body.to_string(),
        &[("content-type", "application/json"), ("authorization", &bearer())],
    )
}

fn requester() -> Value {
    json!({"id": "11111111-1111-1111-1111-111111111111", "upn": "alex@contoso.com", "user_type": "Member", "account_enabled": true})
}

/// One stage: the manager (by UPN or object id) decides.
fn policy_decision() -> Value {
    decision_with_plan(json!({"type": "plan", "rule": "business-groups-need-manager",
        "excluded": ["11111111-1111-1111-1111-111111111111", "alex@contoso.com"],
        "stages": [{"name": "manager", "quorum": "any", "time_to_decide": "72h", "on_timeout": "expire",
            "approvers": [{"kind": "manager", "ids": ["mgr@contoso.com", "22222222-2222-2222-2222-222222222222"]}]}]}))
}

async fn awaiting(h: &Harness) -> String {
    let id = accept(h, NUMBER).await;
    await_approval(h, &id, requester(), policy_decision()).await;
    id
}

fn records(entries: &[(String, String, String)]) -> Vec<AuditRecord> {
    entries.iter().map(|e| serde_json::from_str(&e.0).unwrap()).collect()
}

#[tokio::test]
async fn status_needs_an_operator_token_and_shows_the_record_and_timeline() {
    let h = harness().await;
    let id = accept(&h, NUMBER).await;
    let uri = format!("/v1/requests/{id}");

    let a = call(&h.app, get(&uri, &[])).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json["code"], "auth.missing");
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    let a = call(&h.app, get(&uri, &[("authorization", "Bearer not-a-token-of-ours")])).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json["code"], "auth.bad_token");
    let a = call(&h.app, get(&uri, &[("authorization", "Basic b3BzOm9wcw==")])).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    let a = call(&h.app, get(&uri, &[("authorization", &bearer())])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let rec = request_hash(&h, &id).await;
    assert_eq!(a.json["id"], id.as_str());
    assert_eq!(a.json["state"], "received");
    assert_eq!(
        a.json["ticket"],
        json!({"system": "servicenow", "table": "sc_req_item", "sys_id": SYS_ID, "number": NUMBER})
    );
    assert_eq!(a.json["trace_id"], rec[fields::TRACE_ID].as_str());
    assert_eq!(a.json["created_ms"], NOW_MS);
    assert_eq!(a.json["updated_ms"], NOW_MS);
    assert_eq!(a.json["decision"], Value::Null);
    assert_eq!(a.json["approvals"], json!([]));
    assert_eq!(a.json["grant"], Value::Null);
    assert_eq!(a.json["reason"], Value::Null);
    let timeline = a.json["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0]["type"], "request_received");
    assert_eq!(timeline[0]["ticket"], NUMBER);
    assert_eq!(a.json["audit"]["intact"], true);

    for missing in ["0190f0d0c0b0a0908070605040302010", "x%7Cy", "../etc"] {
        let a = call(&h.app, get(&format!("/v1/requests/{missing}"), &[("authorization", &bearer())])).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{missing}");
        assert_eq!(
            a.json["code"],
            if missing == "../etc" { "route.not_found" } else { "request.not_found" },
            "{missing}"
        );
    }
}

#[tokio::test]
async fn the_requester_can_never_approve_their_own_request() {
    let h = harness().await;
    let id = awaiting(&h).await;
    for who in ["ALEX@contoso.com", "11111111-1111-1111-1111-111111111111"] {
        let before = request_hash(&h, &id).await;
        let a = call(&h.app, decision(&id, json!({"approver": who, "approve": true, "comment": "lgtm"}))).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
        assert_eq!(a.json["code"], "approval.self_approval");
        // only the audit trail moved: same state, no approvals, no jobs
        let after = request_hash(&h, &id).await;
        assert_eq!(after[fields::STATE], "awaiting_approval");
        assert!(!after.contains_key(fields::APPROVALS));
        assert_eq!(after[fields::UPDATED_MS], before[fields::UPDATED_MS]);
        assert_ne!(after[fields::AUDIT_HEAD], before[fields::AUDIT_HEAD]);
        let mut only_head = after.clone();
        only_head.insert(fields::AUDIT_HEAD.into(), before[fields::AUDIT_HEAD].clone());
        assert_eq!(only_head, before);
    }
    assert!(jobs(&h, "execute-grant").await.is_empty());
    assert!(jobs(&h, "update-ticket").await.is_empty());
    let entries = audit_entries(&h, &id).await;
    assert_eq!(audit::verify(&entries, &request_hash(&h, &id).await[fields::AUDIT_HEAD]).broken_at, None);
    let recs = records(&entries);
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[1].event, AuditEvent::SelfApprovalRefused { approver: "ALEX@contoso.com".into() });
    assert_eq!(recs[1].actor, "operator:ops");
    assert_eq!(recs[1].trace_id, recs[0].trace_id);
}

#[tokio::test]
async fn only_listed_approvers_may_decide_and_bad_bodies_change_nothing() {
    let h = harness().await;
    let id = awaiting(&h).await;
    let before = snapshot(&h).await;
    let a = call(&h.app, decision(&id, json!({"approver": "stranger@contoso.com", "approve": true}))).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.json["code"], "approval.not_an_approver");
    let a = call(&h.app, decision(&id, json!({"approver": "mgr@contoso.com", "approve": "yes"}))).await;
    assert_eq!(
        (a.status, a.json["code"].as_str(), a.json["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("request.invalid_field"), Some("approve"))
    );
    let a = call(
        &h.app,
        post(
            &format!("/v1/requests/{id}/decision"),
            "{",
            &[("content-type", "application/json"), ("authorization", &bearer())],
        ),
    )
    .await;
    assert_eq!(a.json["code"], "request.malformed_json");
    let a = call(
        &h.app,
        post(
            &format!("/v1/requests/{id}/decision"),
            "approve",
            &[("content-type", "text/plain"), ("authorization", &bearer())],
        ),
    )
    .await;
    assert_eq!(a.json["code"], "request.unsupported_media_type");
    let a = call(
        &h.app,
        post(
            &format!("/v1/requests/{id}/decision"),
            json!({"approver": "mgr@contoso.com", "approve": true}).to_string(),
            &[("content-type", "application/json")],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = call(
        &h.app,
        decision("0190f0d0c0b0a0908070605040302010", json!({"approver": "mgr@contoso.com", "approve": true})),
    )
    .await;
    assert_eq!(a.json["code"], "request.not_found");
    assert_eq!(snapshot(&h).await, before);
}

#[tokio::test]
async fn approving_enqueues_one_grant_however_often_it_is_sent() {
    let h = harness().await;
    let id = awaiting(&h).await;
    h.now.store(NOW_MS + 60_000, std::sync::atomic::Ordering::SeqCst);
    let a =
        call(&h.app, decision(&id, json!({"approver": "Mgr@Contoso.com", "approve": true, "comment": "ok for Q1"})))
            .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);

    let rec = request_hash(&h, &id).await;
    // the job is named after the request and the audit head the decision was based on
    let entries = audit_entries(&h, &id).await;
    let based_on = entries[entries.len() - 2].2.clone();
    let grant_id = successor_id(&format!("{id}/{based_on}"), "execute-grant", 0);
    assert_eq!(a.json, json!({"request_id": id, "state": "approved", "outcome": "approved", "jobs": [grant_id]}));
    assert_eq!(rec[fields::STATE], "approved");
    assert_eq!(rec[fields::UPDATED_MS], (NOW_MS + 60_000).to_string());
    let approvals: Value = serde_json::from_str(&rec[fields::APPROVALS]).unwrap();
    assert_eq!(
        approvals,
        json!([{"approver": "Mgr@Contoso.com", "approve": true, "comment": "ok for Q1", "at_ms": NOW_MS + 60_000, "stage": 0, "via": "ops"}])
    );
    let grants = jobs(&h, "execute-grant").await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[&grant_id]["p"], json!({"request_id": id}));
    assert_eq!(grants[&grant_id]["m"]["traceparent"], rec[fields::TRACEPARENT].as_str());
    assert_eq!(h.queue.metrics("execute-grant").await.unwrap().ready, 1);
    let entries = audit_entries(&h, &id).await;
    assert_eq!(audit::verify(&entries, &rec[fields::AUDIT_HEAD]).broken_at, None);
    assert_eq!(
        records(&entries)[1].event,
        AuditEvent::ApprovalRecorded { approver: "Mgr@Contoso.com".into(), approve: true, comment: "ok for Q1".into() }
    );

    // a second click: refused, nothing changes, still one job
    let before = snapshot(&h).await;
    let a = call(&h.app, decision(&id, json!({"approver": "mgr@contoso.com", "approve": true}))).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(a.json["code"], "request.not_awaiting_approval");
    assert_eq!(snapshot(&h).await, before);
    assert_eq!(jobs(&h, "execute-grant").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_decisions_record_exactly_one() {
    let h = harness().await;
    let id = awaiting(&h).await;
    let tasks: Vec<_> = [
        ("mgr@contoso.com", true),
        ("22222222-2222-2222-2222-222222222222", false),
        ("mgr@contoso.com", true),
        ("mgr@contoso.com", true),
    ]
    .into_iter()
    .map(|(who, approve)| {
        let app = h.app.clone();
        let req = decision(&id, json!({"approver": who, "approve": approve}));
        tokio::spawn(async move { call(&app, req).await })
    })
    .collect();
    let mut ok = 0;
    for t in tasks {
        let a = t.await.unwrap();
        match a.status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => assert_eq!(a.json["code"], "request.not_awaiting_approval", "{}", a.text),
            other => panic!("{other}: {}", a.text),
        }
    }
    assert_eq!(ok, 1);
    let grants = jobs(&h, "execute-grant").await.len();
    let updates = jobs(&h, "update-ticket").await.len();
    assert_eq!(grants + updates, 1);
    let rec = request_hash(&h, &id).await;
    let approvals: Vec<Value> = serde_json::from_str(&rec[fields::APPROVALS]).unwrap();
    assert_eq!(approvals.len(), 1);
    assert_eq!(audit::verify(&audit_entries(&h, &id).await, &rec[fields::AUDIT_HEAD]).broken_at, None);
}

#[tokio::test]
async fn rejecting_closes_the_request_and_updates_the_ticket() {
    let h = harness().await;
    let id = awaiting(&h).await;
    let a = call(
        &h.app,
        decision(
            &id,
            json!({"approver": "22222222-2222-2222-2222-222222222222", "approve": false, "comment": "not needed"}),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["state"], "rejected");
    assert_eq!(a.json["outcome"], "rejected");
    assert_eq!(request_hash(&h, &id).await[fields::STATE], "rejected");
    let updates = jobs(&h, "update-ticket").await;
    assert_eq!(updates.len(), 1);
    let (job_id, env) = updates.iter().next().unwrap();
    assert_eq!(a.json["jobs"], json!([job_id]));
    assert_eq!(env["p"], json!({"request_id": id, "update": "rejected"}));
    assert!(jobs(&h, "execute-grant").await.is_empty());
}

#[tokio::test]
async fn a_request_not_awaiting_approval_cannot_be_decided() {
    let h = harness().await;
    let id = accept(&h, NUMBER).await;
    let before = snapshot(&h).await;
    let a = call(&h.app, decision(&id, json!({"approver": "mgr@contoso.com", "approve": true}))).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(a.json["code"], "request.not_awaiting_approval");
    assert_eq!(snapshot(&h).await, before);
}

#[tokio::test]
async fn a_policy_plan_needs_its_quorum_before_the_grant() {
    let h = harness().await;
    let id = accept(&h, NUMBER).await;
    let plan = decision_with_plan(
        json!({"type": "plan", "rule": "finance", "excluded": ["11111111-1111-1111-1111-111111111111", "alex@contoso.com"], "stages": [
            {"name": "owners", "quorum": "all", "time_to_decide": "72h", "on_timeout": "expire", "approvers": [
                {"kind": "data-owner", "ids": ["own1@contoso.com"]}, {"kind": "manager", "ids": ["mgr@contoso.com"]}]}
        ]}),
    );
    await_approval(&h, &id, requester(), plan).await;
    let a = call(&h.app, decision(&id, json!({"approver": "stranger@contoso.com", "approve": true}))).await;
    assert_eq!(a.json["code"], "approval.not_an_approver");
    let a = call(&h.app, decision(&id, json!({"approver": "own1@contoso.com", "approve": true}))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["outcome"], "stage_approved");
    assert_eq!(a.json["state"], "awaiting_approval");
    assert!(jobs(&h, "execute-grant").await.is_empty());
    let a = call(&h.app, decision(&id, json!({"approver": "mgr@contoso.com", "approve": true}))).await;
    assert_eq!(a.json["outcome"], "approved", "{}", a.text);
    assert_eq!(jobs(&h, "execute-grant").await.len(), 1);
    let rec = request_hash(&h, &id).await;
    let approvals: Vec<Value> = serde_json::from_str(&rec[fields::APPROVALS]).unwrap();
    assert_eq!(approvals.iter().map(|a| a["stage"].clone()).collect::<Vec<_>>(), [json!(0), json!(0)]);
}
