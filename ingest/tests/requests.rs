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

fn decision_as(operator: &str, id: &str, body: Value) -> axum::http::Request<axum::body::Body> {
    post(
        &format!("/v1/requests/{id}/decision"),
        body.to_string(),
        &[("content-type", "application/json"), ("authorization", &bearer_of(operator))],
    )
}

fn requester() -> Value {
    json!({"id": "11111111-1111-1111-1111-111111111111", "upn": "alex@contoso.com", "user_type": "Member", "account_enabled": true})
}

/// One stage: the manager (by UPN or object id) decides.
fn policy_decision() -> Value {
    decision_with_plan(json!({"type": "plan", "rule": "business-groups-need-manager",
        "excluded": [ALEX_ID, "alex@contoso.com"],
        "stages": [{"name": "manager", "quorum": "any", "time_to_decide": "72h", "on_timeout": "expire",
            "approvers": [{"kind": "manager", "ids": ["mgr@contoso.com", MGR_ID]}]}]}))
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

    for missing in ["0190f0d0c0b0a0908070605040302010", "../etc"] {
        let a = call(&h.app, get(&format!("/v1/requests/{missing}"), &[("authorization", &bearer())])).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{missing}");
        assert_eq!(
            a.json["code"],
            if missing == "../etc" { "route.not_found" } else { "request.not_found" },
            "{missing}"
        );
    }
    // not an id at all: refused by its form, before it reaches any key
    for bad in ["x%7Cy", "..", &format!("{id}:audit"), &id.to_uppercase()] {
        let a = call(&h.app, get(&format!("/v1/requests/{bad}"), &[("authorization", &bearer())])).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(a.json["code"], "request.invalid_field", "{bad}");
        assert!(a.json["message"].as_str().unwrap().starts_with("id "), "{bad}: {}", a.json);
    }
}

#[tokio::test]
async fn the_requester_can_never_approve_their_own_request() {
    let h = harness().await;
    let id = awaiting(&h).await;
    let before = request_hash(&h, &id).await;
    let a = call(&h.app, decision_as("alex", &id, json!({"approve": true, "comment": "lgtm"}))).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    assert_eq!(a.json["code"], "approval.self_approval");
    // only the audit trail moved: same state, no approvals, no jobs
    let after = request_hash(&h, &id).await;
    assert_eq!(after[fields::STATE], "awaiting_approval");
    assert!(!after.contains_key(fields::APPROVALS));
    assert_ne!(after[fields::AUDIT_HEAD], before[fields::AUDIT_HEAD]);
    assert!(jobs(&h, "execute-grant").await.is_empty());
    assert!(jobs(&h, "update-ticket").await.is_empty());
    let entries = audit_entries(&h, &id).await;
    assert_eq!(audit::verify(&entries, &request_hash(&h, &id).await[fields::AUDIT_HEAD]).broken_at, None);
    let recs = records(&entries);
    assert_eq!(recs.len(), 2);
    assert_eq!(
        recs[1].event,
        AuditEvent::ApprovalRefused {
            approver: "alex@contoso.com".into(),
            approver_id: Some(ALEX_ID.into()),
            door: "operator".into(),
            reason: "approval.self_approval".into(),
        }
    );
    assert_eq!(recs[1].actor, "operator:alex");
    assert_eq!(recs[1].trace_id, recs[0].trace_id);
}

#[tokio::test]
async fn an_operator_cannot_name_an_approver_it_has_not_proved() {
    let h = harness().await;
    let id = awaiting(&h).await;
    let before = snapshot(&h).await;
    // the old body, naming the approver: refused before anything is read
    let a = call(&h.app, decision(&id, json!({"approver": "mgr@contoso.com", "approve": true}))).await;
    assert_eq!(
        (a.status, a.json["code"].as_str(), a.json["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("request.invalid_field"), Some("approver")),
        "{}",
        a.text
    );
    // an operator without a directory identity decides nothing on its own
    let a = call(&h.app, decision_as("helpdesk", &id, json!({"approve": true}))).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.json["code"], "approval.operator_without_identity");
    // on behalf of someone: only the directory can say who that is, and none is configured
    let a =
        call(&h.app, decision_as("helpdesk", &id, json!({"approve": true, "on_behalf_of": "mgr@contoso.com"}))).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text);
    assert_eq!(a.json["code"], "approval.directory_unavailable");
    assert_eq!(snapshot(&h).await, before);
}

#[tokio::test]
async fn only_listed_approvers_may_decide_and_bad_bodies_change_nothing() {
    let h = harness().await;
    let id = awaiting(&h).await;
    let a = call(&h.app, decision_as("stranger", &id, json!({"approve": true}))).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.json["code"], "approval.not_an_approver");
    let refused = records(&audit_entries(&h, &id).await).pop().unwrap();
    assert!(
        matches!(&refused.event, AuditEvent::ApprovalRefused { reason, approver_id: Some(oid), .. }
            if reason == "approval.not_an_approver" && oid == "33333333-3333-3333-3333-333333333333"),
        "{refused:?}"
    );
    let before = snapshot(&h).await;
    let a = call(&h.app, decision(&id, json!({"approve": "yes"}))).await;
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
            json!({"approve": true}).to_string(),
            &[("content-type", "application/json")],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = call(&h.app, decision("0190f0d0c0b0a0908070605040302010", json!({"approve": true}))).await;
    assert_eq!(a.json["code"], "request.not_found");
    assert_eq!(snapshot(&h).await, before);
}

#[tokio::test]
async fn a_request_without_a_plan_cannot_be_approved_by_anyone() {
    let h = harness().await;
    let id = accept(&h, NUMBER).await;
    let no_plan = decision_with_plan(Value::Null);
    await_approval(&h, &id, requester(), no_plan).await;
    let a = call(&h.app, decision(&id, json!({"approve": true}))).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert_eq!(a.json["code"], "approval.no_plan");
    assert!(jobs(&h, "execute-grant").await.is_empty());
    assert_eq!(request_hash(&h, &id).await[fields::STATE], "awaiting_approval");
}

#[tokio::test]
async fn approving_enqueues_one_grant_however_often_it_is_sent() {
    let h = harness().await;
    let id = awaiting(&h).await;
    h.now.store(NOW_MS + 60_000, std::sync::atomic::Ordering::SeqCst);
    let a = call(&h.app, decision(&id, json!({"approve": true, "comment": "ok for Q1"}))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);

    let rec = request_hash(&h, &id).await;
    // the jobs are named after the request and the audit head the decision was based on
    let entries = audit_entries(&h, &id).await;
    let based_on = entries[entries.len() - 2].2.clone();
    let grant_id = successor_id(&format!("{id}/{based_on}"), "execute-grant", 0);
    let notify_id = successor_id(&format!("{id}/{based_on}"), "notify", 1);
    assert_eq!(
        a.json,
        json!({"request_id": id, "state": "approved", "outcome": "approved", "stage": 1,
            "approver": {"id": MGR_ID, "upn": "mgr@contoso.com"}, "jobs": [grant_id, notify_id]})
    );
    assert_eq!(rec[fields::STATE], "approved");
    assert_eq!(rec[fields::UPDATED_MS], (NOW_MS + 60_000).to_string());
    let approvals: Value = serde_json::from_str(&rec[fields::APPROVALS]).unwrap();
    assert_eq!(
        approvals,
        json!([{"approver": "mgr@contoso.com", "approver_id": MGR_ID, "approver_upn": "mgr@contoso.com",
            "approve": true, "comment": "ok for Q1", "at_ms": NOW_MS + 60_000, "stage": 0, "via": "operator"}])
    );
    let grants = jobs(&h, "execute-grant").await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[&grant_id]["p"], json!({"request_id": id}));
    assert_eq!(grants[&grant_id]["m"]["traceparent"], rec[fields::TRACEPARENT].as_str());
    assert_eq!(h.queue.metrics("execute-grant").await.unwrap().ready, 1);
    let entries = audit_entries(&h, &id).await;
    assert_eq!(audit::verify(&entries, &rec[fields::AUDIT_HEAD]).broken_at, None);
    let last = records(&entries).pop().unwrap();
    assert_eq!(
        last.event,
        AuditEvent::ApprovalRecorded { approver: "mgr@contoso.com".into(), approve: true, comment: "ok for Q1".into() }
    );
    assert_eq!(last.actor, "operator:ops");

    // a second click: refused (and audited), still one job
    let a = call(&h.app, decision(&id, json!({"approve": true}))).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(a.json["code"], "request.not_awaiting_approval");
    assert_eq!(request_hash(&h, &id).await[fields::STATE], "approved");
    assert_eq!(jobs(&h, "execute-grant").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_decisions_record_exactly_one() {
    let h = harness().await;
    let id = awaiting(&h).await;
    let tasks: Vec<_> = [true, false, true, true]
        .into_iter()
        .map(|approve| {
            let app = h.app.clone();
            let req = decision(&id, json!({"approve": approve}));
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
    let a = call(&h.app, decision(&id, json!({"approve": false, "comment": "not needed"}))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["state"], "rejected");
    assert_eq!(a.json["outcome"], "rejected");
    assert_eq!(request_hash(&h, &id).await[fields::STATE], "rejected");
    let updates = jobs(&h, "update-ticket").await;
    assert_eq!(updates.len(), 1);
    let (job_id, env) = updates.iter().next().unwrap();
    assert_eq!(a.json["jobs"][0], json!(job_id));
    assert_eq!(env["p"], json!({"request_id": id, "update": "rejected"}));
    assert_eq!(jobs(&h, "notify").await.len(), 1);
    assert!(jobs(&h, "execute-grant").await.is_empty());
}

#[tokio::test]
async fn a_request_not_awaiting_approval_cannot_be_decided() {
    let h = harness().await;
    let id = accept(&h, NUMBER).await;
    let a = call(&h.app, decision(&id, json!({"approve": true}))).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(a.json["code"], "request.not_awaiting_approval");
    assert_eq!(request_hash(&h, &id).await[fields::STATE], "received");
    assert!(jobs(&h, "execute-grant").await.is_empty());
}

#[tokio::test]
async fn a_policy_plan_needs_its_quorum_before_the_grant() {
    let h = harness().await;
    let id = accept(&h, NUMBER).await;
    let plan = decision_with_plan(
        json!({"type": "plan", "rule": "finance", "excluded": [ALEX_ID, "alex@contoso.com"], "stages": [
            {"name": "owners", "quorum": "all", "time_to_decide": "72h", "on_timeout": "expire", "approvers": [
                {"kind": "data-owner", "ids": ["own1@contoso.com"]}, {"kind": "manager", "ids": ["mgr@contoso.com"]}]}
        ]}),
    );
    await_approval(&h, &id, requester(), plan).await;
    let a = call(&h.app, decision_as("stranger", &id, json!({"approve": true}))).await;
    assert_eq!(a.json["code"], "approval.not_an_approver");
    let a = call(&h.app, decision_as("own1", &id, json!({"approve": true}))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["outcome"], "counted");
    assert_eq!(a.json["state"], "awaiting_approval");
    assert!(jobs(&h, "execute-grant").await.is_empty());
    let a = call(&h.app, decision(&id, json!({"approve": true}))).await;
    assert_eq!(a.json["outcome"], "approved", "{}", a.text);
    assert_eq!(jobs(&h, "execute-grant").await.len(), 1);
    let rec = request_hash(&h, &id).await;
    let approvals: Vec<Value> = serde_json::from_str(&rec[fields::APPROVALS]).unwrap();
    assert_eq!(approvals.iter().map(|a| a["stage"].clone()).collect::<Vec<_>>(), [json!(0), json!(0)]);
}
