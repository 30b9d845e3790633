#![allow(clippy::unwrap_used, clippy::expect_used)]
//! ServiceNow approval records through the client, against the ServiceNow simulator over HTTP:
//! finding approvers, creating one record per approver on a RITM, reading back a decision an
//! approver took in the ServiceNow UI (state, comment, who), closing the records nobody needs
//! to answer any more, and the failures (refused input, not found, rate limit).

use std::time::Duration;

use grantline_connectors::Secret;
use grantline_connectors::servicenow::{
    ApprovalState, ServiceNowAuth, ServiceNowClient, ServiceNowConfig, ServiceNowError,
};
use grantline_shared::ErrorClass;
use grantline_sims::{CreatedRitm, NewRitm, RateLimitRule, Sims, SimsConfig, ids};
use serde_json::{Value, json};

async fn start() -> (Sims, ServiceNowClient) {
    let sims = Sims::start(SimsConfig::demo()).await.unwrap();
    let client = ServiceNowClient::new(&ServiceNowConfig {
        instance_url: sims.servicenow.base_url(),
        auth: ServiceNowAuth::Basic { username: ids::SNOW_USER.to_owned(), password: Secret::new(ids::SNOW_PASSWORD) },
        ..ServiceNowConfig::default()
    })
    .unwrap();
    (sims, client)
}

/// A RITM with no approvals of the instance's own workflow.
fn ritm(sims: &Sims) -> CreatedRitm {
    sims.servicenow.state().create_ritm(NewRitm::new("alexw", ids::CAT_ITEM_FINANCE_BI_NAME)).unwrap()
}

#[tokio::test]
async fn finds_seeded_users_by_email_or_user_name() {
    let (sims, client) = start().await;
    let alex = client.find_user(ids::ALEX_UPN).await.unwrap().unwrap();
    assert_eq!(alex.sys_id, ids::ALEX_SNOW_SYS_ID);
    assert_eq!(alex.user_name, "alexw");
    assert_eq!(alex.email, ids::ALEX_UPN);
    assert_eq!(alex.name, "Alex Wilber");
    let by_lower_case = client.find_user("alexw@CONTOSO.com").await.unwrap().unwrap();
    assert_eq!(by_lower_case.sys_id, ids::ALEX_SNOW_SYS_ID);
    let sara = client.find_user("sarad").await.unwrap().unwrap();
    assert_eq!(sara.sys_id, ids::SARA_SNOW_SYS_ID);
    assert_eq!(sara.email, ids::SARA_UPN);
    assert_eq!(client.find_user("nobody@contoso.com").await.unwrap(), None);

    let sent = sims.servicenow.requests();
    let last = sent.last().unwrap();
    assert_eq!((last.method.as_str(), last.path.as_str()), ("GET", "/api/now/table/sys_user"));
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(last.query.as_deref().unwrap_or_default().as_bytes()).into_owned().collect();
    assert!(
        query.contains(&("sysparm_query".into(), "email=nobody@contoso.com^ORuser_name=nobody@contoso.com".into()))
    );
    assert!(query.contains(&("sysparm_limit".into(), "1".into())));

    // A `^` would add a term (here: "or any user named sarad"): refused before it is sent.
    for injection in ["nobody^ORuser_name=sarad", "x^NQuser_name=sarad", "javascript:gs.getUserID()", " "] {
        let err = client.find_user(injection).await.unwrap_err();
        assert!(matches!(err, ServiceNowError::InvalidInput { .. }), "{injection:?}: {err}");
        assert_eq!(err.code(), "servicenow.invalid_input");
        assert_eq!(err.class(), ErrorClass::Permanent);
    }
    assert_eq!(sims.servicenow.requests().len(), sent.len());
    sims.shutdown().await;
}

#[tokio::test]
async fn approvals_are_created_read_back_and_closed() {
    let (sims, client) = start().await;
    let ritm = ritm(&sims);
    let sara = client.find_user(ids::SARA_UPN).await.unwrap().unwrap();
    let patti = client.find_user("pattif").await.unwrap().unwrap();

    let first = client
        .create_approval(&ritm.sys_id, &sara.sys_id, "Finance BI for Alex Wilber: approve here or in Teams")
        .await
        .unwrap();
    assert_eq!(first.state, ApprovalState::Requested);
    let approver = first.approver.clone().unwrap();
    assert_eq!((approver.value.as_str(), approver.display_value.as_str()), (sara.sys_id.as_str(), "Sara Davis"));
    assert_eq!(approver.link, Some(format!("{}/api/now/table/sys_user/{}", sims.servicenow.base_url(), sara.sys_id)));
    assert_eq!(first.updated_by, ids::SNOW_USER);
    assert!(first.updated_on.is_some());
    let second = client.create_approval(&ritm.sys_id, &patti.sys_id, "").await.unwrap();
    assert_ne!(first.sys_id, second.sys_id);

    // What the instance received: the documented record, one POST each.
    let posts: Vec<Value> = sims
        .servicenow
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/api/now/table/sysapproval_approver")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert_eq!(
        posts,
        [
            json!({ "sysapproval": ritm.sys_id, "document_id": ritm.sys_id, "source_table": "sc_req_item",
                    "approver": sara.sys_id, "state": "requested",
                    "comments": "Finance BI for Alex Wilber: approve here or in Teams" }),
            json!({ "sysapproval": ritm.sys_id, "document_id": ritm.sys_id, "source_table": "sc_req_item",
                    "approver": patti.sys_id, "state": "requested" }),
        ]
    );

    let listed = client.list_approvals(&ritm.sys_id).await.unwrap();
    assert_eq!(listed, [first.clone(), second.clone()]);
    assert!(listed.iter().all(|a| a.state.is_pending()));

    // Sara approves in the ServiceNow UI.
    sims.servicenow.approve_in_ui(&first.sys_id, "sarad", true, "Fine by me").await.unwrap();
    let listed = client.list_approvals(&ritm.sys_id).await.unwrap();
    let decided = listed.iter().find(|a| a.sys_id == first.sys_id).unwrap();
    assert_eq!(decided.state, ApprovalState::Approved);
    assert!(decided.state.is_decided());
    assert_eq!(decided.updated_by, "sarad");
    assert_eq!(decided.approver.as_ref().unwrap().value, sara.sys_id);
    let comments = client.approval_comments(&first.sys_id).await.unwrap();
    let said: Vec<(&str, &str)> = comments.iter().map(|c| (c.value.as_str(), c.sys_created_by.as_str())).collect();
    assert_eq!(
        said,
        [("Finance BI for Alex Wilber: approve here or in Teams", ids::SNOW_USER), ("Fine by me", "sarad")]
    );
    assert!(comments.iter().all(|c| c.element == "comments" && c.created_at().is_some()));

    // Patti no longer needs to answer: grantline closes her record.
    let closed = client
        .set_approval(&second.sys_id, ApprovalState::NoLongerRequired, "Approved by Sara Davis in ServiceNow")
        .await
        .unwrap();
    assert_eq!(closed.state, ApprovalState::NoLongerRequired);
    assert!(!closed.state.is_decided() && !closed.state.is_pending());
    assert_eq!(closed.updated_by, ids::SNOW_USER);
    assert_eq!(client.get_approval(&second.sys_id).await.unwrap(), closed);
    let notes = client.approval_comments(&second.sys_id).await.unwrap();
    assert_eq!(notes.iter().map(|c| c.value.as_str()).collect::<Vec<_>>(), ["Approved by Sara Davis in ServiceNow"]);
    let patch = sims.servicenow.requests().into_iter().rfind(|r| r.method == "PATCH").unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&patch.body).unwrap(),
        json!({ "state": "no_longer_required", "comments": "Approved by Sara Davis in ServiceNow" })
    );
    // Without a comment, only the state is sent.
    client.set_approval(&second.sys_id, ApprovalState::Cancelled, "").await.unwrap();
    let patch = sims.servicenow.requests().into_iter().rfind(|r| r.method == "PATCH").unwrap();
    assert_eq!(serde_json::from_str::<Value>(&patch.body).unwrap(), json!({ "state": "cancelled" }));

    // The instance's own workflow left the RITM to grantline.
    let item = client.get_ritm(&ritm.sys_id).await.unwrap();
    assert_eq!((item.approval.value.as_str(), item.stage.value.as_str()), ("requested", "waiting_for_approval"));
    sims.shutdown().await;
}

#[tokio::test]
async fn unknown_records_are_not_found() {
    let (sims, client) = start().await;
    let unknown = "0123456789abcdef0123456789abcdef";
    let err = client.create_approval(unknown, ids::SARA_SNOW_SYS_ID, "").await.unwrap_err();
    assert_eq!(err.code(), "servicenow.not_found");
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(sims.servicenow.state().records("sysapproval_approver").is_empty());

    let err = client.set_approval(unknown, ApprovalState::Approved, "").await.unwrap_err();
    assert_eq!((err.code().as_str(), err.status()), ("servicenow.not_found", Some(404)));
    let err = client.get_approval(unknown).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.status()), ("servicenow.not_found", Some(404)));
    assert_eq!(client.list_approvals(unknown).await.unwrap(), []);
    assert_eq!(client.approval_comments(unknown).await.unwrap(), []);

    let err = client.create_approval("not^an^id", ids::SARA_SNOW_SYS_ID, "").await.unwrap_err();
    assert_eq!(err.code(), "servicenow.invalid_input");
    let err = client.set_approval(unknown, ApprovalState::Other(String::new()), "").await.unwrap_err();
    assert_eq!(err.code(), "servicenow.invalid_input");
    sims.shutdown().await;
}

#[tokio::test]
async fn a_rate_limit_rule_is_throttled_with_retry_after() {
    let (sims, client) = start().await;
    let ritm = ritm(&sims);
    sims.servicenow.set_rate_limits(vec![RateLimitRule {
        sys_id: "c0ffee00c0ffee00c0ffee00c0ffee00".to_owned(),
        user_name: Some(ids::SNOW_USER.to_owned()),
        requests_per_hour: 2,
    }]);
    client.list_approvals(&ritm.sys_id).await.unwrap();
    client.find_user("sarad").await.unwrap();
    let err = client.list_approvals(&ritm.sys_id).await.unwrap_err();
    assert_eq!(err.code(), "servicenow.throttled");
    assert_eq!(err.status(), Some(429));
    let now = sims.servicenow.clock().unix_seconds();
    let reset = (now.div_euclid(3600) + 1) * 3600;
    let ErrorClass::Throttled { retry_after: Some(wait) } = err.class() else { panic!("{:?}", err.class()) };
    // The simulator's clock may tick between the answer and this line.
    let expected = u64::try_from(reset - now).unwrap();
    assert!(
        wait <= Duration::from_secs(expected.max(1)) && wait + Duration::from_secs(2) >= Duration::from_secs(expected)
    );
    let ServiceNowError::Api { rate_limit: Some(rule), body, .. } = &err else { panic!("{err:?}") };
    assert_eq!(rule.limit, Some(2));
    assert_eq!(rule.rule.as_deref(), Some("c0ffee00c0ffee00c0ffee00c0ffee00"));
    assert_eq!(body.message, "Rate limit exceeded");
    sims.shutdown().await;
}
