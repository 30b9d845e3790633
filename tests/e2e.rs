//! End to end: ServiceNow simulator → webhook → ingest → workers → Graph simulator → ticket.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use grantline_shared::request::{fields, RequestState};
use grantline_sims::{ids, snow_sys_id, NewRitm};
use support::Stack;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_account_is_denied_with_the_reason_on_the_ticket() {
    let stack = Stack::start().await;
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::DISABLED_ID), ids::CAT_ITEM_FINANCE_BI_NAME)).await;
    let rec = stack.wait_state(&id, RequestState::Denied, WAIT).await;
    let decision: serde_json::Value = serde_json::from_str(rec.get(fields::DECISION).unwrap_or_else(|| panic!("no decision: {rec:#?}"))).unwrap();
    assert_eq!(decision["outcome"], "deny");
    let failing: Vec<&str> = decision["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .filter_map(|c| c["code"].as_str())
        .collect();
    assert!(failing.contains(&"identity.enabled"), "{failing:?}");
    // the ticket says why, and is closed incomplete
    let notes = stack.wait_notes(&number, 1).await;
    assert!(notes.iter().any(|n| n.contains("denied") && n.to_lowercase().contains("disabled")), "{notes:?}");
    assert_eq!(stack.sims.servicenow.state().ritm(&number).unwrap().state, "4");
    // nothing was granted
    assert!(!stack.sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::DISABLED_ID));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_ticket_delivered_five_times_at_once_is_one_request() {
    let stack = Stack::start().await;
    let created = stack
        .sims
        .servicenow
        .state()
        .create_ritm(NewRitm::new(&snow_sys_id(ids::GUEST_ID), ids::CAT_ITEM_FINANCE_BI_NAME))
        .unwrap();
    let rings = (0..5).map(|_| stack.ring(&created.sys_id, &created.number));
    let ids: std::collections::HashSet<String> = futures::future::join_all(rings).await.into_iter().collect();
    assert_eq!(ids.len(), 1, "one request for one ticket: {ids:?}");
    let id = ids.into_iter().next().unwrap();
    stack.wait_state(&id, RequestState::Denied, WAIT).await;
    let m = stack.queue.metrics("validate").await.unwrap();
    assert_eq!(m.enqueued_total, 1, "one validate job");
    stack.shutdown().await;
}
