//! End to end: the operator's commands over the operator HTTP API and the CLI, against real
//! Redis and the simulators over HTTP. Listing by state and ticket with paging; one request by
//! id and by ticket; cancel before execution (and refused after the grant); revoke now,
//! ownership-aware; extend through the policy and approval again (approved: the removal moves;
//! rejected: the original end stands); authentication, bad input, and the operator's identity
//! on every action's audit record.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use grantline::config::Config;
use grantline::requests_cmd::{RequestsCmd, execute};
use grantline_shared::audit::AuditEvent;
use grantline_shared::request::{RequestState, fields, keys};
use grantline_sims::{NewRitm, ids, snow_sys_id};
use redis::AsyncCommands;
use serde_json::{Value, json};
use support::{OPERATOR_TOKEN, Stack, WAIT, WAIT_EXPIRY, WEBHOOK_SECRET};

async fn get(stack: &Stack, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = stack.http.get(format!("{}{path}", stack.ingest_url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post(stack: &Stack, path: &str, body: Value) -> (u16, Value) {
    let resp = stack
        .http
        .post(format!("{}{path}", stack.ingest_url))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn team_alpha(user: &str) -> NewRitm {
    NewRitm::new(&snow_sys_id(user), ids::CAT_ITEM_TEAM_ALPHA_NAME)
}

fn finance_bi(duration: &str) -> NewRitm {
    NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_FINANCE_BI_NAME).variable("duration", duration)
}

fn ms_text(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64).unwrap().to_string()
}

/// The audit records of `id` with this actor.
async fn by_actor(stack: &Stack, id: &str, actor: &str) -> Vec<&'static str> {
    stack.audit(id).await.iter().filter(|r| r.actor == actor).map(|r| r.event.name()).collect()
}

/// Finance BI for Alex, approved by the data owner, active.
async fn active_finance_bi(stack: &Stack, duration: &str) -> (String, String, u64) {
    let (number, id) = stack.submit(finance_bi(duration)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    // the data owner decides once asked (a decision taken before the ask leaves nobody to ask)
    stack.notice(&id, "servicenow", ids::PATTI_ID, 0).await;
    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!(status, 200, "{body}");
    let rec = stack.wait_state(&id, RequestState::Active, WAIT).await;
    stack.wait_note(&number, "Granted and verified").await;
    (number, id, rec[fields::END_MS].parse().unwrap())
}

/// Waits until the steps that follow a state change on their own (ticket notes, approvers'
/// messages) are done, so the audit head holds still.
async fn settle(stack: &Stack) {
    for q in ["update-ticket", "notify", "schedule-removal"] {
        stack.wait_queue_idle(q, false).await;
    }
}

async fn expiring_score(stack: &Stack, id: &str) -> Option<u64> {
    let mut conn = stack.queue.connection();
    let s: Option<f64> = conn.zscore(stack.queue.namespace().key(keys::EXPIRING), id).await.unwrap();
    s.map(|s| s as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_listed_by_state_and_ticket_in_pages_and_shown_by_id_or_ticket() {
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    let mut active = Vec::new();
    for _ in 0..3 {
        let (number, id) = stack.submit(team_alpha(ids::MEGAN_ID)).await;
        stack.wait_state(&id, RequestState::Active, WAIT).await;
        active.push((number, id));
    }
    let (waiting_number, waiting) = stack.submit(finance_bi("30d")).await;
    stack.wait_state(&waiting, RequestState::AwaitingApproval, WAIT).await;

    // authentication first: nothing without an operator token, nor with another secret
    assert_eq!(get(&stack, "/v1/requests", None).await.0, 401);
    let (status, body) = get(&stack, "/v1/requests", Some(WEBHOOK_SECRET)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("auth.bad_token")), "{body}");
    assert_eq!(get(&stack, &format!("/v1/tickets/{waiting_number}/request"), None).await.0, 401);

    // by state, two per page, newest first, every one exactly once
    let (status, page1) = get(&stack, "/v1/requests?state=active&limit=2", Some(OPERATOR_TOKEN)).await;
    assert_eq!(status, 200, "{page1}");
    let first: Vec<String> =
        page1["requests"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().into()).collect();
    assert_eq!(first.len(), 2);
    let cursor = page1["next"].as_str().expect("a next page");
    let (status, page2) =
        get(&stack, &format!("/v1/requests?state=active&limit=2&after={cursor}"), Some(OPERATOR_TOKEN)).await;
    assert_eq!(status, 200, "{page2}");
    let second: Vec<String> =
        page2["requests"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().into()).collect();
    assert_eq!(second.len(), 1);
    assert!(page2["next"].is_null(), "{page2}");
    let mut all: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(all[0], active[2].1, "newest first");
    all.sort();
    let mut want: Vec<String> = active.iter().map(|(_, id)| id.clone()).collect();
    want.sort();
    assert_eq!(all, want);
    assert!(page1["requests"].as_array().unwrap().iter().all(|r| r["state"] == "active"));
    let (_, waiting_page) = get(&stack, "/v1/requests?state=awaiting_approval", Some(OPERATOR_TOKEN)).await;
    assert_eq!(waiting_page["requests"][0]["id"], waiting.as_str());
    assert_eq!(waiting_page["requests"].as_array().unwrap().len(), 1);

    // by ticket
    let (_, one) = get(&stack, &format!("/v1/requests?ticket={}", active[0].0), Some(OPERATOR_TOKEN)).await;
    assert_eq!(one["requests"].as_array().unwrap().len(), 1);
    assert_eq!(one["requests"][0]["id"], active[0].1.as_str());
    assert_eq!(one["requests"][0]["ticket"], active[0].0.as_str());

    // one request by ticket: the same body as by id, with its timeline
    let (status, shown) = get(&stack, &format!("/v1/tickets/{}/request", active[1].0), Some(OPERATOR_TOKEN)).await;
    assert_eq!(status, 200, "{shown}");
    let (_, by_id) = get(&stack, &format!("/v1/requests/{}", active[1].1), Some(OPERATOR_TOKEN)).await;
    assert_eq!(shown["id"], active[1].1.as_str());
    assert_eq!(shown["timeline"], by_id["timeline"]);
    assert_eq!(shown["audit"]["intact"], true);
    assert!(shown["grant"]["group_id"] == ids::GROUP_TEAM_ALPHA, "{shown}");

    // bad input names the field; unknown tickets and requests are 404
    for (path, status, field) in [
        ("/v1/requests?state=granted-ish", 422, Some("state")),
        ("/v1/requests?limit=0", 422, Some("limit")),
        ("/v1/requests?after=yesterday", 422, Some("after")),
        ("/v1/requests?order=asc", 422, Some("order")),
        ("/v1/tickets/RITM9999999/request", 404, Some("ticket")),
        ("/v1/requests/0194f1b2c3d4e5f60718293a4b5c6d7e", 404, None),
    ] {
        let (s, body) = get(&stack, path, Some(OPERATOR_TOKEN)).await;
        assert_eq!((s, body["field"].as_str()), (status, field), "{path}: {body}");
    }

    // the CLI shows the same request by ticket, for people and as JSON
    let cfg = cli_config(&stack, "alice@contoso.com");
    let now = stack.svc.now_ms();
    let text = execute(&cfg, &stack.queue, RequestsCmd::Show { request: active[1].0.clone(), json: false }, now)
        .await
        .unwrap();
    let trace_id = shown["trace_id"].as_str().unwrap();
    for needle in [active[1].1.as_str(), "active", trace_id, "ticket notes:", "granted", "approvals:", "chain intact"] {
        assert!(text.contains(needle), "the CLI's view lacks {needle:?}:\n{text}");
    }
    let v: Value = serde_json::from_str(
        &execute(&cfg, &stack.queue, RequestsCmd::Show { request: active[1].1.clone(), json: true }, now)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["trace_id"], trace_id);
    assert!(v["ticket_notes"].as_array().unwrap().iter().any(|n| n["update"] == "granted"), "{v:#}");
    let listed: Value = serde_json::from_str(
        &execute(
            &cfg,
            &stack.queue,
            RequestsCmd::List { state: Some("active".into()), ticket: None, limit: 2, after: None, json: true },
            now,
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(listed["requests"], page1["requests"], "the CLI lists what the API lists");
    let e = execute(
        &cfg,
        &stack.queue,
        RequestsCmd::List { state: Some("nope".into()), ticket: None, limit: 2, after: None, json: false },
        now,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("--state"), "{e}");
    stack.shutdown().await;
}

fn cli_config(stack: &Stack, identity: &str) -> Config {
    Config {
        redis_url: stack.redis.url(),
        policy: grantline::config::PolicySettings { path: stack.policy_path.display().to_string() },
        operator: grantline::config::OperatorSettings { identity: identity.into() },
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_cancelled_before_execution_and_not_after_the_grant() {
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    let (number, id) = stack.submit(finance_bi("30d")).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    stack.wait_note(&number, "Waiting for approval").await;
    settle(&stack).await;

    // bad input: nothing changes
    let head = stack.record(&id).await[fields::AUDIT_HEAD].clone();
    let (status, body) = post(&stack, &format!("/v1/requests/{id}/cancel"), json!({"reason": 7})).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("reason")), "{body}");
    let (status, body) = post(&stack, &format!("/v1/requests/{id}/cancel"), json!({"why": "x"})).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("why")), "{body}");
    let resp =
        stack.http.post(format!("{}/v1/requests/{id}/cancel", stack.ingest_url)).json(&json!({})).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(stack.record(&id).await[fields::AUDIT_HEAD], head, "nothing was written");

    let (status, body) =
        post(&stack, &format!("/v1/requests/{id}/cancel"), json!({"reason": "the project was called off"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["state"].as_str(), body["action"].as_str()), (Some("cancelled"), Some("cancel")));
    let rec = stack.wait_state(&id, RequestState::Cancelled, WAIT).await;
    assert!(rec[fields::REASON].contains("operator:e2e") && rec[fields::REASON].contains("called off"), "{rec:?}");
    let note = stack.wait_note(&number, "Not executed").await;
    assert!(note.contains("the project was called off"), "the ticket is told why: {note}");
    // the approval records the approvers were given in ServiceNow are closed
    stack
        .wait_for("approval records closed", WAIT, || async {
            let records = stack.sims.servicenow.state().approvals(&number);
            (!records.is_empty() && records.iter().all(|a| a["state"] == "no_longer_required")).then_some(())
        })
        .await;
    // nothing granted, nothing left to decide
    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("request.not_awaiting_approval")), "{body}");
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID));
    assert_eq!(stack.metrics("execute-grant").await.enqueued_total, 0);
    let mut conn = stack.queue.connection();
    let due: Option<f64> = conn.zscore(stack.queue.namespace().key(keys::APPROVALS_DUE), &id).await.unwrap();
    assert_eq!(due, None, "no approval clock rings for it");
    // audited with the operator's identity
    let trail = stack.audit(&id).await;
    let cancelled = trail.iter().find(|r| r.event.name() == "request_cancelled").expect("audited");
    assert_eq!(cancelled.actor, "operator:e2e");
    assert!(matches!(
        &cancelled.event,
        AuditEvent::RequestCancelled { reason, from_state } if reason == "the project was called off" && from_state == "awaiting_approval"
    ));
    let (status, body) = post(&stack, &format!("/v1/requests/{id}/cancel"), json!({})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("request.finished")), "{body}");

    // once granted, cancel is refused with what to do instead, and nothing changes
    let (_, granted) = stack.submit(team_alpha(ids::MEGAN_ID)).await;
    stack.wait_state(&granted, RequestState::Active, WAIT).await;
    settle(&stack).await;
    let head = stack.record(&granted).await[fields::AUDIT_HEAD].clone();
    let (status, body) = post(&stack, &format!("/v1/requests/{granted}/cancel"), json!({})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("request.already_executing")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("revoke"), "{body}");
    assert_eq!(stack.record(&granted).await[fields::AUDIT_HEAD], head);
    assert!(stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID));
    // an unknown request
    let (status, _) = post(&stack, "/v1/requests/0194f1b2c3d4e5f60718293a4b5c6d7e/cancel", json!({})).await;
    assert_eq!(status, 404);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_removes_our_membership_now_and_keeps_a_pre_existing_one() {
    let stack = Stack::start().await;
    let (number, id) = stack.submit(team_alpha(ids::MEGAN_ID)).await;
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    stack.wait_note(&number, "Granted and verified").await;
    assert!(stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID));

    let (status, body) = post(&stack, &format!("/v1/requests/{id}/revoke"), json!({"reason": "left the team"})).await;
    assert_eq!(status, 200, "{body}");
    stack.wait_state(&id, RequestState::Removed, WAIT).await;
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), "removed now, not at its end");
    let note = stack.wait_note(&number, "Access revoked by an operator").await;
    assert!(note.contains("removed and verified"), "{note}");
    let trail = stack.audit(&id).await;
    assert!(trail.iter().any(|r| r.actor == "operator:e2e"
        && matches!(&r.event, AuditEvent::RemovalRequested { trigger, reason } if trigger == "revoked" && reason == "left the team")));
    assert!(trail.iter().any(
        |r| matches!(&r.event, AuditEvent::RemovalExecuted { removed: true, trigger, .. } if trigger == "revoked")
    ));
    assert_eq!(expiring_score(&stack, &id).await, None, "out of the expiring-grants index");
    let (status, body) = post(&stack, &format!("/v1/requests/{id}/revoke"), json!({})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("request.finished")), "{body}");

    // Adele was in Team Alpha before her request: revoking it keeps her membership
    let (adele_number, adele) = stack.submit(team_alpha(ids::ADELE_ID)).await;
    stack.wait_state(&adele, RequestState::AwaitingApproval, WAIT).await;
    let (status, body) = post(&stack, &format!("/v1/requests/{adele}/revoke"), json!({})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("request.not_granted")), "{body}");
    let (status, body) = stack.decide(&adele, ids::SARA_ID, true).await;
    assert_eq!(status, 200, "{body}");
    stack.wait_state(&adele, RequestState::Active, WAIT).await;
    stack.wait_note(&adele_number, "Granted and verified").await;
    // through the CLI this time, as its configured operator
    let cfg = cli_config(&stack, "alice@contoso.com");
    let out = execute(
        &cfg,
        &stack.queue,
        RequestsCmd::Revoke { request: adele_number.clone(), reason: "audit finding".into() },
        stack.svc.now_ms(),
    )
    .await
    .unwrap();
    assert!(out.contains(&adele), "{out}");
    stack.wait_state(&adele, RequestState::Removed, WAIT).await;
    assert!(
        stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::ADELE_ID),
        "the pre-existing membership stays"
    );
    let note = stack.wait_note(&adele_number, "Access revoked by an operator").await;
    assert!(note.contains("kept (it existed before this request)"), "{note}");
    assert_eq!(by_actor(&stack, &adele, "operator:alice@contoso.com").await, ["removal_requested"]);
    assert!(!stack.sims.graph.requests().iter().any(|r| r.method == "DELETE" && r.path.contains(ids::ADELE_ID)));

    // the CLI refuses to act for nobody
    let e = execute(
        &cli_config(&stack, ""),
        &stack.queue,
        RequestsCmd::Cancel { request: adele.clone(), reason: String::new() },
        stack.svc.now_ms(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("operator.identity"), "{e}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_extension_moves_the_removal_and_bad_ends_are_refused() {
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    let (number, id, end) = active_finance_bi(&stack, "20s").await;
    settle(&stack).await;
    let path = format!("/v1/requests/{id}/extend");
    let head = stack.record(&id).await[fields::AUDIT_HEAD].clone();

    // bad ends, refused with the field named, nothing changed
    for (body, status, code) in [
        (json!({}), 422, "request.invalid_field"),
        (json!({"until": "next tuesday"}), 422, "request.invalid_field"),
        (json!({"until": "2020-01-01"}), 422, "request.invalid_end"),
        (json!({"until": ms_text(end + 200 * 86_400_000)}), 422, "policy.refused"),
    ] {
        let (s, b) = post(&stack, &path, body.clone()).await;
        assert_eq!((s, b["code"].as_str(), b["field"].as_str()), (status, Some(code), Some("until")), "{body}: {b}");
    }
    let (s, b) = post(&stack, &path, json!({"until": ms_text(end + 200 * 86_400_000)})).await;
    assert!(b["message"].as_str().unwrap().contains("180d"), "the policy's maximum is named: {s} {b}");
    assert_eq!(stack.record(&id).await[fields::AUDIT_HEAD], head, "nothing was written");

    // a day more: back to approval, the access stays meanwhile
    let until = end + 86_400_000;
    let (status, body) = post(&stack, &path, json!({"until": ms_text(until), "reason": "quarter close slipped"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "awaiting_approval");
    let asked = stack.wait_note(&number, "Extension to").await;
    assert!(asked.contains("quarter close slipped") && asked.contains("operator:e2e"), "{asked}");
    assert!(stack.sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID));
    let (status, body) = post(&stack, &path, json!({"until": ms_text(until + 1000)})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("request.extension_pending")), "{body}");
    let (status, body) = post(&stack, &format!("/v1/requests/{id}/cancel"), json!({})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("request.already_executing")), "{body}");
    // the requester still cannot approve their own access
    let (status, _) = stack.decide(&id, ids::ALEX_UPN, true).await;
    assert_eq!(status, 403);

    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["outcome"].as_str(), body["state"].as_str()), (Some("extended"), Some("active")), "{body}");
    let rec = stack.wait_state(&id, RequestState::Active, WAIT).await;
    assert_eq!(rec[fields::END_MS], until.to_string(), "the new end is on record");
    assert_eq!(expiring_score(&stack, &id).await, Some(until), "and in the expiring-grants index");
    let note = stack.wait_note(&number, "Extension approved").await;
    assert!(note.contains(&ms_text(until)) && note.contains(ids::PATTI_UPN), "{note}");

    // the original end passes: the old removal does nothing, the access stays
    let wait = Duration::from_millis(end.saturating_sub(stack.svc.now_ms())) + Duration::from_secs(7);
    tokio::time::sleep(wait.min(WAIT_EXPIRY)).await;
    stack.wait_queue_idle("remove-access", false).await;
    assert_eq!(stack.state(&id).await, Some(RequestState::Active));
    assert!(stack.sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID), "not removed at the old end");
    let m = stack.metrics("remove-access").await;
    assert_eq!(m.delayed, 1, "the removal at the new end waits: {m:?}");

    let trail = stack.audit(&id).await;
    assert!(trail.iter().any(|r| r.actor == "operator:e2e"
        && matches!(&r.event, AuditEvent::ExtensionRequested { until_ms, previous_end_ms, .. } if *until_ms == until && *previous_end_ms == end)));
    assert!(
        trail.iter().any(
            |r| matches!(&r.event, AuditEvent::ExtensionDecided { approved: true, end_ms, .. } if *end_ms == until)
        )
    );
    assert!(!trail.iter().any(|r| r.event.name() == "removal_executed"));
    // the decided extension is kept with the approvals of the grant it extended
    let mut conn = stack.queue.connection();
    let history: Vec<String> = conn
        .lrange(stack.queue.namespace().key(&grantline_store::lifecycle::extensions_key(&id)), 0, -1)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    let kept: Value = serde_json::from_str(&history[0]).unwrap();
    assert_eq!(kept["approved"], true);
    assert_eq!(kept["extension"]["previous_approvals"][0]["approver"], ids::PATTI_UPN, "{kept:#}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_extension_keeps_the_original_end() {
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    let (number, id, end) = active_finance_bi(&stack, "20s").await;
    let first_ask = stack.notice(&id, "servicenow", ids::PATTI_ID, 0).await;
    // through the CLI, with a plain date: through the end of that day
    let cfg = cli_config(&stack, "alice@contoso.com");
    let tomorrow =
        jiff::Timestamp::from_millisecond(end as i64 + 86_400_000).unwrap().to_zoned(jiff::tz::TimeZone::UTC).date();
    let e = execute(
        &cfg,
        &stack.queue,
        RequestsCmd::Extend { request: id.clone(), until: "31/12/2027".into(), reason: String::new() },
        stack.svc.now_ms(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("--until"), "{e}");
    let out = execute(
        &cfg,
        &stack.queue,
        RequestsCmd::Extend { request: number.clone(), until: tomorrow.to_string(), reason: "one more day".into() },
        stack.svc.now_ms(),
    )
    .await
    .unwrap();
    assert!(out.contains("waiting for approval"), "{out}");
    stack.wait_note(&number, "Extension to").await;
    let shown = execute(&cfg, &stack.queue, RequestsCmd::Show { request: id.clone(), json: false }, stack.svc.now_ms())
        .await
        .unwrap();
    assert!(shown.contains("extension pending"), "{shown}");

    // the data owner is asked again, with a new approval record, and rejects it there
    let ask = stack.notice(&id, "servicenow", ids::PATTI_ID, 0).await;
    assert_ne!(ask.reference, first_ask.reference, "a new approval record for the extension");
    let patti = stack.snow_user_name(ids::PATTI_SNOW_SYS_ID);
    let rang = stack.sims.servicenow.approve_in_ui(&ask.reference, &patti, false, "not this quarter").await.unwrap();
    assert_eq!(rang.expect("the doorbell rang").status, 202);
    let rec = stack.wait_state(&id, RequestState::Active, WAIT).await;
    assert_eq!(rec[fields::END_MS], end.to_string(), "the original end stands");
    let note = stack.wait_note(&number, "Extension not approved").await;
    assert!(note.contains(&ms_text(end)), "{note}");

    // and the access ends then
    stack.wait_state(&id, RequestState::Removed, WAIT_EXPIRY).await;
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID));
    let trail = stack.audit(&id).await;
    let removed = trail.iter().find(|r| r.event.name() == "removal_executed").unwrap();
    assert!(removed.at_ms >= end, "not before the original end");
    assert!(
        trail.iter().any(
            |r| matches!(&r.event, AuditEvent::ExtensionDecided { approved: false, end_ms, .. } if *end_ms == end)
        )
    );
    assert_eq!(by_actor(&stack, &id, "operator:alice@contoso.com").await, ["extension_requested"]);
    stack.shutdown().await;
}

/// Moves the simulators' clock to the next Sunday noon in Amsterdam: outside the example
/// policy's finance change window, so an approved Finance BI grant is deferred.
fn set_clock_to_sunday(stack: &Stack) {
    let tz = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap();
    let now = jiff::Timestamp::now();
    let mut t = now;
    loop {
        let local = t.to_zoned(tz.clone());
        if local.weekday() == jiff::civil::Weekday::Sunday && local.hour() == 12 {
            stack.sims.clock().set_offset(t.duration_since(now));
            return;
        }
        t = t.checked_add(jiff::SignedDuration::from_mins(30)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_grant_is_cancelled_unless_execution_has_started() {
    let stack = Stack::start().await;
    set_clock_to_sunday(&stack);
    let (number, id) = stack.submit(finance_bi("30d")).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!(status, 200, "{body}");
    stack.wait_state(&id, RequestState::Deferred, WAIT).await;
    stack.wait_note(&number, "execution deferred").await;
    settle(&stack).await;

    // execute-grant marks its start before it changes anything: a cancel then is refused
    let rec = grantline_store::load(&stack.queue, &id).await.unwrap();
    let access = grantline_store::lifecycle::access_key(&rec).expect("the access is resolved");
    let ledger = stack.queue.namespace().key(&grantline_store::lifecycle::grant_ledger_key(&id, &access));
    let mut conn = stack.queue.connection();
    let _: () = conn.set(&ledger, "1").await.unwrap();
    let (status, body) = post(&stack, &format!("/v1/requests/{id}/cancel"), json!({})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("request.already_executing")), "{body}");
    assert_eq!(stack.state(&id).await, Some(RequestState::Deferred), "nothing changed");
    let _: () = conn.del(&ledger).await.unwrap();

    // before it starts, the cancel lands and a later execute-grant finds nothing to do
    let (status, body) = post(&stack, &format!("/v1/requests/{id}/cancel"), json!({"reason": "not needed"})).await;
    assert_eq!(status, 200, "{body}");
    stack.wait_state(&id, RequestState::Cancelled, WAIT).await;
    stack.wait_note(&number, "Not executed").await;
    stack.set_clock_to_finance_business_hours();
    let job =
        grantline_store::job(&id, "", grantline_shared::flow::Next::ExecuteGrant { at_ms: None }, stack.svc.now_ms())
            .unwrap();
    stack.queue.push(job).await.unwrap();
    stack.wait_queue_idle("execute-grant", false).await;
    assert_eq!(stack.state(&id).await, Some(RequestState::Cancelled));
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID), "nothing granted");
    assert!(!stack.audit(&id).await.iter().any(|r| r.event.name() == "grant_executed"));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_grant_whose_extension_waits_ends_both() {
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    let (number, id, end) = active_finance_bi(&stack, "30d").await;
    let (status, body) =
        post(&stack, &format!("/v1/requests/{id}/extend"), json!({"until": ms_text(end + 86_400_000)})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("awaiting_approval")), "{body}");
    stack.wait_note(&number, "Extension to").await;

    let (status, body) = post(&stack, &format!("/v1/requests/{id}/revoke"), json!({"reason": "moved on"})).await;
    assert_eq!(status, 200, "{body}");
    stack.wait_state(&id, RequestState::Removed, WAIT).await;
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID), "removed now");
    stack.wait_note(&number, "Access revoked by an operator").await;
    let trail = stack.audit(&id).await;
    assert!(trail.iter().any(|r| r.actor == "operator:e2e"
        && matches!(&r.event, AuditEvent::ExtensionDecided { approved: false, how, .. } if how == "revoked")));
    // the extension's approvers can no longer extend anything
    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("request.not_awaiting_approval")), "{body}");
    stack.shutdown().await;
}

/// The built binary, pointed at the stack's Redis namespace, as `operator.identity` (when given).
fn grantline(stack: &Stack, identity: Option<&str>, args: &[&str]) -> std::process::Output {
    let tagged = stack.queue.namespace().key("");
    let namespace = tagged.trim_start_matches('{').split('}').next().unwrap().to_owned();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_grantline"));
    cmd.args(args)
        .env_remove("GRANTLINE_CONFIG")
        .env("GRANTLINE__REDIS_URL", stack.redis.url())
        .env("GRANTLINE__QUEUE__NAMESPACE", namespace)
        .env("GRANTLINE__POLICY__PATH", &stack.policy_path);
    match identity {
        Some(i) => cmd.env("GRANTLINE__OPERATOR__IDENTITY", i),
        None => cmd.env_remove("GRANTLINE__OPERATOR__IDENTITY"),
    };
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grantline_binary_lists_shows_and_revokes() {
    let stack = Stack::start().await;
    let (number, id) = stack.submit(team_alpha(ids::MEGAN_ID)).await;
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    settle(&stack).await;

    let out = grantline(&stack, None, &["requests", "list", "--state", "active", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["requests"][0]["id"], id.as_str());
    let out = grantline(&stack, None, &["requests", "show", &number]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(&id) && text.contains("grant_executed"), "{text}");

    // no identity, no action: exit 1 with the key named, nothing changed
    let out = grantline(&stack, None, &["requests", "revoke", &number]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("operator.identity"));
    assert_eq!(stack.state(&id).await, Some(RequestState::Active));
    let out = grantline(&stack, Some("bob@contoso.com"), &["requests", "revoke", &number, "--reason", "done"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    stack.wait_state(&id, RequestState::Removed, WAIT).await;
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID));
    assert_eq!(by_actor(&stack, &id, "operator:bob@contoso.com").await, ["removal_requested"]);
    let out = grantline(&stack, Some("bob@contoso.com"), &["requests", "cancel", &number]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("request.finished"));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_nobody_decides_in_time_keeps_the_original_end() {
    let stack = Stack::start_opts(support::StackOptions {
        scheduler: Some(Duration::from_millis(200)),
        ..support::StackOptions::default()
    })
    .await;
    stack.set_clock_to_finance_business_hours();
    let (number, id, end) = active_finance_bi(&stack, "30d").await;
    let (status, body) =
        post(&stack, &format!("/v1/requests/{id}/extend"), json!({"until": ms_text(end + 86_400_000)})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("awaiting_approval")), "{body}");
    stack.wait_note(&number, "Extension to").await;

    // the data owner's five days pass without an answer
    stack.sims.clock().advance(Duration::from_secs(6 * 86_400));
    let rec = stack.wait_state(&id, RequestState::Active, WAIT).await;
    assert_eq!(rec[fields::END_MS], end.to_string(), "the original end stands");
    assert_eq!(expiring_score(&stack, &id).await, Some(end));
    let note = stack.wait_note(&number, "Extension not approved").await;
    assert!(note.contains("was not decided within"), "{note}");
    assert!(stack.sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID), "the grant runs to its end");
    let trail = stack.audit(&id).await;
    assert!(trail.iter().any(|r| matches!(&r.event, AuditEvent::ExtensionDecided { approved: false, how, end_ms } if how == "expired" && *end_ms == end)));
    assert_ne!(stack.state(&id).await, Some(RequestState::Expired), "an active grant never becomes expired");
    stack.shutdown().await;
}
