//! One ticket, one request, whatever the doorbell says, and nothing done for a ticket that is
//! no longer open: end to end with the real edge, workers and simulators.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use grantline_shared::request::{RequestState, fields};
use grantline_sims::{NewRitm, ids, snow_sys_id};
use support::{Stack, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_closed_before_validation_is_cancelled_and_left_as_it_is() {
    let stack = Stack::start().await;
    let created = stack
        .sims
        .servicenow
        .state()
        .create_ritm(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME))
        .unwrap();
    // the requester withdrew it: closed skipped, before grantline read it
    stack.sims.servicenow.state().set_field("sc_req_item", &created.sys_id, "state", "7").unwrap();
    stack.sims.servicenow.state().set_field("sc_req_item", &created.sys_id, "active", "false").unwrap();
    let id = stack.ring(&created.sys_id, &created.number).await;
    let rec = stack.wait_state(&id, RequestState::Cancelled, WAIT).await;
    assert!(rec[fields::REASON].contains("closed") && rec[fields::REASON].contains("nothing was granted"), "{rec:#?}");
    // nothing granted, nothing written to Graph, the ticket's state untouched
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 0);
    assert!(
        stack
            .sims
            .graph
            .requests()
            .iter()
            .all(|r| r.method == "GET" || r.method == "POST" && r.path.ends_with("$batch"))
    );
    assert_eq!(stack.ritm_state(&created.number), "7");
    let events = stack.audit_events(&id).await;
    assert!(!events.contains(&"grant_executed") && !events.contains(&"approval_requested"), "{events:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doorbell_naming_another_tickets_number_cannot_steal_that_ticket() {
    let stack = Stack::start().await;
    let state = stack.sims.servicenow.state();
    let a = state.create_ritm(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).unwrap();
    let b = state.create_ritm(NewRitm::new(&snow_sys_id(ids::ADELE_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).unwrap();
    // B's sys_id under A's number: refused at validate, nothing granted for either
    let forged = stack.ring(&b.sys_id, &a.number).await;
    let rec = stack.wait_state(&forged, RequestState::Cancelled, WAIT).await;
    assert!(rec[fields::REASON].contains(&b.number), "{rec:#?}");
    // A's genuine delivery is a new request, not a "duplicate", and runs to its grant
    let (status, body) = stack
        .post_webhook(support::WEBHOOK_SECRET, serde_json::to_vec(&Stack::webhook_body(&a.sys_id, &a.number)).unwrap())
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["duplicate"], false, "{body}");
    let genuine = body["request_id"].as_str().unwrap().to_owned();
    assert_ne!(genuine, forged);
    stack.wait_state(&genuine, RequestState::Active, WAIT).await;
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 1);
    // and B's own genuine delivery still works too: the forged one freed its key
    let (status, body) = stack
        .post_webhook(support::WEBHOOK_SECRET, serde_json::to_vec(&Stack::webhook_body(&b.sys_id, &b.number)).unwrap())
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["duplicate"], false, "{body}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_item_rung_with_several_spellings_of_its_number_is_one_request() {
    let stack = Stack::start().await;
    let t = stack
        .sims
        .servicenow
        .state()
        .create_ritm(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME))
        .unwrap();
    let first = stack.ring(&t.sys_id, &t.number).await;
    let digits = t.number.trim_start_matches("RITM");
    for spelling in [
        format!("RITM0{digits}"),
        format!("RITM00{digits}"),
        format!("RITM{}", digits.trim_start_matches('0')),
        t.number.clone(),
    ] {
        let (status, body) = stack
            .post_webhook(
                support::WEBHOOK_SECRET,
                serde_json::to_vec(&Stack::webhook_body(&t.sys_id.to_uppercase(), &spelling)).unwrap(),
            )
            .await;
        if status == 202 {
            assert_eq!(body["request_id"], first.as_str(), "{spelling}: {body}");
            assert_eq!(body["duplicate"], true, "{spelling}: {body}");
        } else {
            assert_eq!(status, 400, "{spelling}: {body}");
        }
    }
    stack.wait_state(&first, RequestState::Active, WAIT).await;
    let mut conn = stack.queue.connection();
    let n: u64 =
        redis::AsyncCommands::zcard(&mut conn, stack.queue.namespace().key(grantline_shared::request::keys::REQUESTS))
            .await
            .unwrap();
    assert_eq!(n, 1, "one request for one item");
    assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), 1);
    stack.shutdown().await;
}
