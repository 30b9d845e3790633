//! The Teams and Slack approval doors against the real simulators over HTTP and a private
//! Redis: a verified click decides as the person who clicked, every forged, stale or replayed
//! call is refused before anything is believed (and lands in the doors' log, not on the
//! request's timeline), and the card or message is replaced with the request as it stands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/mod.rs"]
mod common;
#[path = "doors/support.rs"]
mod support;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use grantline_shared::audit::AuditEvent;
use grantline_shared::request::RequestState;
use grantline_sims::botframework::{BOT_APP_ID, Click, Tamper};
use grantline_sims::slack::{self as slack_sim, APPROVALS_CHANNEL_ID, EXTERNAL_USER_EMAIL, EXTERNAL_USER_ID};
use grantline_sims::{FaultRule, Method, PathPattern, ids};

use support::*;

const INVOKE_ERROR: &str = "application/vnd.microsoft.error";
const CARD: &str = "application/vnd.microsoft.card.adaptive";

#[tokio::test]
async fn unconfigured_doors_do_not_exist() {
    let h = common::harness().await;
    for route in ["/v1/teams/messages", "/v1/slack/interactions"] {
        let a = common::call(&h.app, common::post(route, "{}", &[("content-type", "application/json")])).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{route}: {}", a.text);
        assert_eq!(a.json["code"], "route.not_found");
    }
    assert!(grantline_store::doors::recent(&h.queue, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teams_click_approves_as_the_clicking_user_and_replaces_the_card() {
    let bed = bed().await;
    let id = awaiting(&bed, vec![any_of("manager", &[ids::SARA_ID])]).await;
    let activity = send_card(&bed, &id, 0, ids::SARA_ID).await;

    let r = bed
        .sims
        .botframework
        .click(Click::new(ids::SARA_UPN, &activity, "approve").input("comment", "ok for Q1"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.body["statusCode"].as_u64(), r.body["type"].as_str()), (Some(200), Some(CARD)), "{}", r.body);
    assert!(!has_actions(&r.body["value"]), "a decided card has no buttons: {}", r.body);
    assert!(text_of(&r.body["value"]).contains(&format!("Approved by {}", ids::SARA_UPN)), "{}", r.body);
    assert!(r.card_replaced);
    let shown = bed.sims.botframework.state().activity(&activity).unwrap().card().cloned().unwrap();
    assert!(!has_actions(&shown));

    let rec = record(&bed, &id).await;
    assert_eq!(rec.state, RequestState::Approved);
    assert_eq!(rec.approvals.len(), 1);
    let a = &rec.approvals[0];
    assert_eq!((a.approver_id.as_deref(), a.approver_upn.as_deref()), (Some(ids::SARA_ID), Some(ids::SARA_UPN)));
    assert_eq!((a.via.as_deref(), a.comment.as_str(), a.stage), (Some("teams"), "ok for Q1", Some(0)));
    let last = timeline(&bed, &id).await.pop().unwrap();
    assert_eq!(
        last.event,
        AuditEvent::ApprovalRecorded { approver: ids::SARA_UPN.into(), approve: true, comment: "ok for Q1".into() }
    );
    assert_eq!(last.actor, format!("approver:{}", ids::SARA_ID));
    assert_eq!(common::jobs(&bed.h, "execute-grant").await.len(), 1);

    // Teams sending the same click again: refused by the decision model, answered with the
    // decided card, nothing more enqueued
    let again = Click::new(ids::SARA_UPN, &activity, "approve").data("requestId", id.as_str()).data("stage", 0);
    let r = bed.sims.botframework.click(again).await.unwrap();
    assert_eq!((r.status, r.body["type"].as_str()), (200, Some(CARD)), "{}", r.body);
    assert!(!has_actions(&r.body["value"]));
    assert_eq!(record(&bed, &id).await.approvals.len(), 1);
    assert_eq!(common::jobs(&bed.h, "execute-grant").await.len(), 1);
    assert!(door_log(&bed).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_teams_tokens_are_refused_before_anything_is_believed() {
    let bed = bed().await;
    let id = awaiting(&bed, vec![any_of("manager", &[ids::SARA_ID])]).await;
    let activity = send_card(&bed, &id, 0, ids::SARA_ID).await;
    let before = timeline(&bed, &id).await.len();

    let cases = [
        (Tamper::ForeignKey, "auth.bad_token"),
        (Tamper::UnpublishedKey, "auth.bad_token"),
        (Tamper::WrongAudience, "auth.wrong_audience"),
        (Tamper::Expired, "auth.token_expired"),
        (Tamper::WrongServiceUrl, "auth.service_url_mismatch"),
        (Tamper::NoAuthorization, "auth.missing"),
    ];
    for (tamper, code) in cases {
        let r = bed.sims.botframework.click(Click::new(ids::SARA_UPN, &activity, "approve").tamper(tamper)).await;
        let r = r.unwrap();
        assert_eq!(r.status, 401, "{tamper:?}: {}", r.body);
        assert_eq!(r.body["code"], code, "{tamper:?}");
        assert!(!r.card_replaced);
    }
    let rec = record(&bed, &id).await;
    assert_eq!(rec.state, RequestState::AwaitingApproval);
    assert!(rec.approvals.is_empty());
    assert_eq!(timeline(&bed, &id).await.len(), before, "nothing unverified reaches the timeline");
    assert!(common::jobs(&bed.h, "execute-grant").await.is_empty());
    let log = door_log(&bed).await;
    assert_eq!(log.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>(), cases.map(|c| c.1));
    for r in &log {
        assert_eq!(r.door, "teams");
        assert_eq!(r.claimed.as_deref(), Some(ids::SARA_ID), "what the call claimed");
        assert_eq!(r.request_id.as_deref(), Some(id.as_str()));
    }
    // a genuine click still works afterwards
    let r = bed.sims.botframework.click(Click::new(ids::SARA_UPN, &activity, "reject")).await.unwrap();
    assert_eq!(r.body["statusCode"], 200, "{}", r.body);
    assert_eq!(record(&bed, &id).await.state, RequestState::Rejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_directory_gets_a_prompt_invoke_answer_and_the_decision_still_lands() {
    let bed = bed_with(Duration::from_millis(300)).await;
    let id = awaiting(&bed, vec![any_of("manager", &[ids::SARA_ID])]).await;
    let activity = send_card(&bed, &id, 0, ids::SARA_ID).await;
    bed.sims.graph.faults().set_latency(Duration::from_millis(1500));
    let r = bed.sims.botframework.click(Click::new(ids::SARA_UPN, &activity, "approve")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body["type"], "application/vnd.microsoft.activity.message", "{}", r.body);
    assert!(!r.card_replaced);
    eventually("the decision to be recorded", || async {
        (record(&bed, &id).await.state == RequestState::Approved).then_some(())
    })
    .await;
    assert_eq!(common::jobs(&bed.h, "execute-grant").await.len(), 1);
    // the card offers buttons until it is clicked again; then it shows the decision
    bed.sims.graph.faults().set_latency(Duration::ZERO);
    let r = bed.sims.botframework.click(Click::new(ids::SARA_UPN, &activity, "approve")).await.unwrap();
    assert!(r.card_replaced && !has_actions(&r.body["value"]), "{}", r.body);
}

/// A channel token the simulator's published key signs, for activities its click does not make.
fn channel_token(bed: &Bed) -> String {
    let now = bed.sims.clock().unix_seconds();
    let claims = json!({"serviceurl": bed.sims.botframework.service_url(), "nbf": now, "exp": now + 300,
        "iss": "https://api.botframework.com", "aud": BOT_APP_ID});
    bed.sims.botframework.keys().active().sign(&claims).unwrap()
}

async fn post_activity(bed: &Bed, activity: &Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/teams/messages", bed.base))
        .bearer_auth(channel_token(bed))
        .json(activity)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_activities_change_nothing_and_a_click_must_name_its_user() {
    let bed = bed().await;
    let id = awaiting(&bed, vec![any_of("manager", &[ids::SARA_ID])]).await;
    let before = timeline(&bed, &id).await.len();
    let service_url = bed.sims.botframework.service_url();
    for kind in ["message", "conversationUpdate", "installationUpdate"] {
        let activity = json!({"type": kind, "channelId": "msteams", "serviceUrl": service_url, "text": "hello",
            "from": {"id": "29:1x", "aadObjectId": ids::SARA_ID}});
        let (status, body) = post_activity(&bed, &activity).await;
        assert_eq!((status, body.as_str()), (200, ""), "{kind}");
    }
    let click = json!({"type": "invoke", "name": "adaptiveCard/action", "channelId": "msteams",
        "serviceUrl": service_url, "from": {"id": "29:1x"},
        "value": {"action": {"type": "Action.Execute", "verb": "approve", "data": {"requestId": id, "stage": 0}}}});
    let (status, body) = post_activity(&bed, &click).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200);
    assert_eq!((body["statusCode"].as_u64(), body["type"].as_str()), (Some(401), Some(INVOKE_ERROR)), "{body}");
    assert_eq!(body["value"]["code"], "auth.no_identity");
    // ids in the card's data never stand in for the clicker
    let mut spoofed = click.clone();
    spoofed["value"]["action"]["data"]["aadObjectId"] = json!(ids::SARA_ID);
    let (_, body) = post_activity(&bed, &spoofed).await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["value"]["code"], "auth.no_identity");

    assert!(record(&bed, &id).await.approvals.is_empty());
    assert_eq!(timeline(&bed, &id).await.len(), before);
    let log = door_log(&bed).await;
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|r| r.reason == "auth.no_identity" && r.request_id.as_deref() == Some(id.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requester_clicking_in_teams_is_refused_and_audited() {
    let bed = bed().await;
    let id = awaiting(&bed, vec![any_of("manager", &[ids::SARA_ID])]).await;
    let activity = send_card(&bed, &id, 0, ids::ALEX_ID).await;
    let r = bed.sims.botframework.click(Click::new(ids::ALEX_UPN, &activity, "approve")).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!((r.body["statusCode"].as_u64(), r.body["type"].as_str()), (Some(403), Some(INVOKE_ERROR)), "{}", r.body);
    assert_eq!(r.body["value"]["code"], "approval.self_approval");
    assert!(!r.card_replaced, "the card stays for the real approver");

    let rec = record(&bed, &id).await;
    assert_eq!(rec.state, RequestState::AwaitingApproval);
    assert!(rec.approvals.is_empty());
    let last = timeline(&bed, &id).await.pop().unwrap();
    assert_eq!(
        last.event,
        AuditEvent::ApprovalRefused {
            approver: ids::ALEX_UPN.into(),
            approver_id: Some(ids::ALEX_ID.into()),
            door: "teams".into(),
            reason: "approval.self_approval".into(),
        }
    );
    assert_eq!(last.actor, format!("approver:{}", ids::ALEX_ID));
    assert!(common::jobs(&bed.h, "execute-grant").await.is_empty());
    // someone the plan does not name is refused the same way
    let r = bed.sims.botframework.click(Click::new(ids::ISAIAH_UPN, &activity, "approve")).await.unwrap();
    assert_eq!(r.body["value"]["code"], "approval.not_an_approver", "{}", r.body);
    assert!(record(&bed, &id).await.approvals.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_teams_card_cannot_act_and_stops_offering_buttons() {
    let bed = bed().await;
    let id =
        awaiting(&bed, vec![any_of("managers", &[ids::SARA_ID, ids::ALLAN_ID]), any_of("owner", &[ids::PATTI_ID])])
            .await;
    let sara_card = send_card(&bed, &id, 0, ids::SARA_ID).await;
    let allan_card = send_card(&bed, &id, 0, ids::ALLAN_ID).await;

    let r = bed.sims.botframework.click(Click::new(ids::SARA_UPN, &sara_card, "approve")).await.unwrap();
    assert_eq!(r.body["type"], CARD, "{}", r.body);
    assert!(!has_actions(&r.body["value"]));
    let rec = record(&bed, &id).await;
    assert_eq!((rec.state, rec.approvals.len()), (RequestState::AwaitingApproval, 1));

    // Allan's card still asks about stage 1 of 2, which is decided
    let r = bed.sims.botframework.click(Click::new(ids::ALLAN_UPN, &allan_card, "reject")).await.unwrap();
    assert_eq!((r.status, r.body["type"].as_str()), (200, Some(CARD)), "{}", r.body);
    assert!(r.card_replaced && !has_actions(&r.body["value"]), "{}", r.body);
    assert!(text_of(&r.body["value"]).contains(&format!("Approved by {}", ids::SARA_UPN)));
    let rec = record(&bed, &id).await;
    assert_eq!((rec.state, rec.approvals.len()), (RequestState::AwaitingApproval, 1), "the stale card did nothing");
    let last = timeline(&bed, &id).await.pop().unwrap();
    assert!(
        matches!(&last.event, AuditEvent::ApprovalRefused { reason, door, .. } if reason == "approval.wrong_stage" && door == "teams"),
        "{:?}",
        last.event
    );

    // the second stage's card decides the request
    let patti_card = send_card(&bed, &id, 1, ids::PATTI_ID).await;
    let r = bed.sims.botframework.click(Click::new(ids::PATTI_UPN, &patti_card, "approve")).await.unwrap();
    assert!(!has_actions(&r.body["value"]), "{}", r.body);
    let rec = record(&bed, &id).await;
    assert_eq!((rec.state, rec.approvals.len()), (RequestState::Approved, 2));
    assert_eq!(common::jobs(&bed.h, "execute-grant").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_of_an_all_of_stage_sees_their_answer_while_the_stage_waits() {
    let bed = bed().await;
    let all = json!({"name": "owners", "quorum": "all", "time_to_decide": "72h", "on_timeout": "expire",
        "approvers": [{"kind": "manager", "ids": [ids::SARA_ID]}, {"kind": "data-owner", "ids": [ids::PATTI_ID]}]});
    let id = awaiting(&bed, vec![all]).await;
    let sara_card = send_card(&bed, &id, 0, ids::SARA_ID).await;
    let r = bed.sims.botframework.click(Click::new(ids::SARA_UPN, &sara_card, "approve")).await.unwrap();
    assert_eq!(r.body["type"], CARD, "{}", r.body);
    assert!(!has_actions(&r.body["value"]), "{}", r.body);
    assert!(text_of(&r.body["value"]).contains("You approved this"), "{}", r.body);
    let rec = record(&bed, &id).await;
    assert_eq!((rec.state, rec.approvals.len()), (RequestState::AwaitingApproval, 1));
    assert!(common::jobs(&bed.h, "execute-grant").await.is_empty());
    let patti_card = send_card(&bed, &id, 0, ids::PATTI_ID).await;
    let r = bed.sims.botframework.click(Click::new(ids::PATTI_UPN, &patti_card, "approve")).await.unwrap();
    assert!(text_of(&r.body["value"]).contains("Approved by"), "{}", r.body);
    assert_eq!(record(&bed, &id).await.state, RequestState::Approved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_approvers_racing_on_one_stage_count_once() {
    let bed = bed().await;
    let id = awaiting(&bed, vec![any_of("either", &[ids::SARA_ID, ids::PATTI_ID])]).await;
    let sara_card = send_card(&bed, &id, 0, ids::SARA_ID).await;
    let patti_card = send_card(&bed, &id, 0, ids::PATTI_ID).await;
    let bf = &bed.sims.botframework;
    let (a, b) = tokio::join!(
        bf.click(Click::new(ids::SARA_UPN, &sara_card, "approve")),
        bf.click(Click::new(ids::PATTI_UPN, &patti_card, "approve"))
    );
    for r in [a.unwrap(), b.unwrap()] {
        assert_eq!((r.status, r.body["type"].as_str()), (200, Some(CARD)), "{}", r.body);
        assert!(!has_actions(&r.body["value"]), "neither card keeps its buttons: {}", r.body);
    }
    let rec = record(&bed, &id).await;
    assert_eq!((rec.state, rec.approvals.len()), (RequestState::Approved, 1));
    assert_eq!(common::jobs(&bed.h, "execute-grant").await.len(), 1);
    let events: Vec<AuditEvent> = timeline(&bed, &id).await.into_iter().map(|r| r.event).collect();
    let recorded = events.iter().filter(|e| matches!(e, AuditEvent::ApprovalRecorded { .. })).count();
    let refused: Vec<&AuditEvent> = events.iter().filter(|e| matches!(e, AuditEvent::ApprovalRefused { .. })).collect();
    assert_eq!(recorded, 1);
    assert!(
        matches!(refused.as_slice(), [AuditEvent::ApprovalRefused { reason, .. }] if reason == "request.not_awaiting_approval"),
        "{refused:?}"
    );
}

/// The message as people see it now: (versions, current blocks).
fn message(bed: &Bed, ts: &str) -> (usize, Value) {
    let state = bed.sims.slack.state();
    let m = state.message(APPROVALS_CHANNEL_ID, ts).unwrap();
    (m.versions.len(), m.blocks().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_click_approves_and_replaces_the_message() {
    let bed = bed().await;
    let id = awaiting(&bed, vec![any_of("manager", &[ids::SARA_ID])]).await;
    let ts = post_message(&bed, &id, 0).await;
    assert!(has_actions(&message(&bed, &ts).1));

    let r = bed.sims.slack.click(ids::SARA_ID, APPROVALS_CHANNEL_ID, &ts, "approve", None).await.unwrap();
    assert_eq!((r.status, &r.body), (200, &Value::Null), "acknowledged at once, with an empty body");
    let blocks = eventually("the message to be replaced", || async {
        let (versions, blocks) = message(&bed, &ts);
        (versions > 1).then_some(blocks)
    })
    .await;
    assert!(!has_actions(&blocks), "{blocks}");
    assert!(text_of(&blocks).contains(&format!("Approved by {}", ids::SARA_UPN)), "{blocks}");
    let state = bed.sims.slack.state();
    let versions = &state.message(APPROVALS_CHANNEL_ID, &ts).unwrap().versions;
    assert_eq!(versions.last().unwrap().source, slack_sim::MessageSource::ResponseUrl);

    let rec = record(&bed, &id).await;
    assert_eq!(rec.state, RequestState::Approved);
    let a = &rec.approvals[0];
    assert_eq!((a.approver_id.as_deref(), a.via.as_deref()), (Some(ids::SARA_ID), Some("slack")));
    let email = bed.sims.slack.user(ids::SARA_ID).unwrap().email.unwrap();
    let last = timeline(&bed, &id).await.pop().unwrap();
    assert_eq!(
        last.event,
        AuditEvent::ApprovalRecorded { approver: ids::SARA_UPN.into(), approve: true, comment: String::new() }
    );
    assert_eq!(last.actor, format!("approver:{email}"));
    assert_eq!(common::jobs(&bed.h, "execute-grant").await.len(), 1);
    assert!(door_log(&bed).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_response_url_fails_the_message_is_updated_with_chat_update() {
    let bed = bed().await;
    let id = awaiting(&bed, vec![any_of("manager", &[ids::SARA_ID])]).await;
    let ts = post_message(&bed, &id, 0).await;
    bed.sims.slack.faults().push(FaultRule::respond(404).on(Method::POST, PathPattern::prefix("/actions/")).forever());
    let r = bed.sims.slack.click(ids::SARA_ID, APPROVALS_CHANNEL_ID, &ts, "reject", None).await.unwrap();
    assert_eq!(r.status, 200);
    let blocks = eventually("the message to be updated", || async {
        let (versions, blocks) = message(&bed, &ts);
        (versions > 1).then_some(blocks)
    })
    .await;
    assert!(!has_actions(&blocks) && text_of(&blocks).contains("Rejected by"), "{blocks}");
    let state = bed.sims.slack.state();
    let versions = &state.message(APPROVALS_CHANNEL_ID, &ts).unwrap().versions;
    assert_eq!(versions.last().unwrap().source, slack_sim::MessageSource::Updated);
    assert_eq!(record(&bed, &id).await.state, RequestState::Rejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_replayed_slack_requests_are_refused() {
    let bed = bed().await;
    let id = awaiting(&bed, vec![any_of("manager", &[ids::SARA_ID])]).await;
    let ts = post_message(&bed, &id, 0).await;
    let before = timeline(&bed, &id).await.len();
    let click = |tamper| slack_sim::Click::new(ids::SARA_ID, APPROVALS_CHANNEL_ID, &ts, "approve").tamper(tamper);
    for (tamper, code) in [
        (slack_sim::Tamper::BadSignature, "auth.bad_signature"),
        (slack_sim::Tamper::TamperedBody, "auth.bad_signature"),
        (slack_sim::Tamper::StaleTimestamp, "auth.stale"),
        (slack_sim::Tamper::FutureTimestamp, "auth.stale"),
        (slack_sim::Tamper::MissingHeaders, "auth.missing"),
    ] {
        let r = bed.sims.slack.click_with(click(tamper)).await.unwrap();
        assert_eq!((r.status, r.body["code"].as_str()), (401, Some(code)), "{tamper:?}: {}", r.body);
    }
    assert!(record(&bed, &id).await.approvals.is_empty());
    assert_eq!(timeline(&bed, &id).await.len(), before, "nothing unverified reaches the timeline");
    assert_eq!(message(&bed, &ts).0, 1, "the message is untouched");

    // a genuine click, then the same bytes again
    let r = bed.sims.slack.click(ids::SARA_ID, APPROVALS_CHANNEL_ID, &ts, "approve", None).await.unwrap();
    assert_eq!(r.status, 200);
    eventually("the message to be replaced", || async { (message(&bed, &ts).0 > 1).then_some(()) }).await;
    let after = timeline(&bed, &id).await.len();
    let r = bed.sims.slack.replay(None).await.unwrap();
    assert_eq!((r.status, r.body["code"].as_str()), (401, Some("auth.replayed")), "{}", r.body);
    // and once the window has passed, the same bytes are simply stale
    bed.sims.clock().advance(Duration::from_secs(301));
    let r = bed.sims.slack.replay(None).await.unwrap();
    assert_eq!((r.status, r.body["code"].as_str()), (401, Some("auth.stale")), "{}", r.body);

    assert_eq!(record(&bed, &id).await.approvals.len(), 1);
    assert_eq!(timeline(&bed, &id).await.len(), after, "replays reach nothing");
    assert_eq!(common::jobs(&bed.h, "execute-grant").await.len(), 1);
    let log = door_log(&bed).await;
    let reasons: Vec<&str> = log.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "auth.bad_signature",
            "auth.bad_signature",
            "auth.stale",
            "auth.stale",
            "auth.missing",
            "auth.replayed",
            "auth.stale"
        ]
    );
    let sara = bed.sims.slack.user(ids::SARA_ID).unwrap().id;
    for r in &log {
        assert_eq!((r.door.as_str(), r.claimed.as_deref()), ("slack", Some(sara.as_str())));
        assert_eq!(r.request_id.as_deref(), Some(id.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_user_the_directory_does_not_know_is_refused() {
    let bed = bed().await;
    let id = awaiting(&bed, vec![any_of("manager", &[ids::SARA_ID])]).await;
    let ts = post_message(&bed, &id, 0).await;
    let r = bed.sims.slack.click(EXTERNAL_USER_ID, APPROVALS_CHANNEL_ID, &ts, "approve", None).await.unwrap();
    assert_eq!(r.status, 200);
    let told = eventually("the clicker to be told", || async {
        bed.sims.slack.state().ephemeral.into_iter().find(|m| m.user == EXTERNAL_USER_ID)
    })
    .await;
    assert!(told.text.contains("no enabled account"), "{}", told.text);
    let last = timeline(&bed, &id).await.pop().unwrap();
    assert_eq!(
        last.event,
        AuditEvent::ApprovalRefused {
            approver: EXTERNAL_USER_EMAIL.into(),
            approver_id: None,
            door: "slack".into(),
            reason: "approval.unknown_approver".into(),
        }
    );
    let rec = record(&bed, &id).await;
    assert_eq!((rec.state, rec.approvals.len()), (RequestState::AwaitingApproval, 0));
    assert_eq!(message(&bed, &ts).0, 1, "a refusal does not replace the message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_user_without_a_visible_email_is_refused_at_the_door() {
    let bed = bed().await;
    let id = awaiting(&bed, vec![any_of("manager", &[ids::SARA_ID])]).await;
    let ts = post_message(&bed, &id, 0).await;
    let before = timeline(&bed, &id).await.len();
    bed.sims.slack.set_scopes(&["chat:write", "users:read"]);
    let r = bed.sims.slack.click(ids::SARA_ID, APPROVALS_CHANNEL_ID, &ts, "approve", None).await.unwrap();
    assert_eq!(r.status, 200);
    let sara = bed.sims.slack.user(ids::SARA_ID).unwrap().id;
    let told = eventually("the clicker to be told", || async {
        bed.sims.slack.state().ephemeral.into_iter().find(|m| m.user == sara)
    })
    .await;
    assert!(told.text.contains("cannot tell who you are"), "{}", told.text);
    let log = door_log(&bed).await;
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].reason.as_str(), log[0].claimed.as_deref()), ("auth.no_identity", Some(sara.as_str())));
    assert_eq!(log[0].request_id.as_deref(), Some(id.as_str()));
    assert_eq!(timeline(&bed, &id).await.len(), before, "nobody was identified, so nothing is on the timeline");
    assert!(record(&bed, &id).await.approvals.is_empty());
}
