#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{client, graph_error, header, start};
use grantline_sims::{GraphConfig, Group, Sims, SimsConfig, Tenant, ThrottleConfig, User, ids};
use serde_json::{Value, json};

const ALREADY: &str =
    "One or more added object references already exist for the following modified properties: 'members'.";

fn not_found(what: &str) -> String {
    format!("Resource '{what}' does not exist or one of its queried reference-property objects are not present.")
}

async fn add(sims: &Sims, token: &str, group: &str, member: &str) -> reqwest::Response {
    client()
        .post(format!("{}/groups/{group}/members/$ref", sims.graph.v1_url()))
        .bearer_auth(token)
        .json(&json!({ "@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{member}") }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn get_user_returns_default_properties_only() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let resp = client()
        .get(format!("{}/users/{}", sims.graph.v1_url(), ids::ALEX_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type"),
        "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
    );
    assert_eq!(header(&resp, "odata-version"), "4.0");
    assert_eq!(header(&resp, "x-ms-resource-unit"), "2");
    assert!(header(&resp, "x-ms-ags-diagnostic").starts_with(r#"{"ServerInfo":{"DataCenter""#));
    let request_id = header(&resp, "request-id");
    assert!(uuid::Uuid::parse_str(&request_id).is_ok());
    assert_eq!(header(&resp, "client-request-id"), request_id);
    let text = resp.text().await.unwrap();
    let context = format!("{}/v1.0/$metadata#users/$entity", sims.graph.base_url());
    assert!(text.starts_with(&format!(r#"{{"@odata.context":"{context}","businessPhones""#)), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body,
        json!({
            "@odata.context": context,
            "businessPhones": ["+1 425 555 0109"],
            "displayName": "Alex Wilber",
            "givenName": "Alex",
            "jobTitle": "Financial Analyst",
            "mail": "AlexW@contoso.com",
            "mobilePhone": null,
            "officeLocation": "12/1110",
            "preferredLanguage": "en-US",
            "surname": "Wilber",
            "userPrincipalName": "AlexW@contoso.com",
            "id": ids::ALEX_ID,
        })
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn get_user_answers_select_exactly() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let select =
        "id,userPrincipalName,displayName,accountEnabled,userType,employeeType,department,employeeLeaveDateTime,mail";
    let resp = client()
        .get(format!("{}/users/{}?$select={select}", sims.graph.v1_url(), "alexw%40contoso.com"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-ms-resource-unit"), "1");
    let text = resp.text().await.unwrap();
    let context = format!("{}/v1.0/$metadata#users({select})/$entity", sims.graph.base_url());
    assert_eq!(
        text,
        format!(
            r#"{{"@odata.context":"{context}","id":"{}","userPrincipalName":"AlexW@contoso.com","displayName":"Alex Wilber","accountEnabled":true,"userType":"Member","employeeType":"Employee","department":"Finance","employeeLeaveDateTime":null,"mail":"AlexW@contoso.com"}}"#,
            ids::ALEX_ID
        )
    );

    // The guest, addressed by a UPN with an encoded #EXT#, and the leaver's leave date.
    let resp = client()
        .get(format!(
            "{}/users/jordan_fabrikam.com%23EXT%23@contoso.onmicrosoft.com?$select=id,userType,accountEnabled",
            sims.graph.v1_url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["userType"], "Guest");
    assert_eq!(body["id"], ids::GUEST_ID);

    let resp = client()
        .get(format!(
            "{}/users('{}')?$select=employeeLeaveDateTime,accountEnabled",
            sims.graph.v1_url(),
            ids::LEAVER_UPN
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let leave: jiff::Timestamp = body["employeeLeaveDateTime"].as_str().unwrap().parse().unwrap();
    assert!(leave < sims.clock().now());

    // Without User-LifeCycleInfo.Read.All the leave date reads as null.
    let ro = common::readonly_token(&sims).await;
    let resp = client()
        .get(format!("{}/users/{}?$select=employeeLeaveDateTime", sims.graph.v1_url(), ids::LEAVER_ID))
        .bearer_auth(&ro)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["employeeLeaveDateTime"], Value::Null);

    let resp = client()
        .get(format!("{}/users/{}?$select=id,shoeSize", sims.graph.v1_url(), ids::ALEX_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    graph_error(
        resp,
        400,
        "Request_BadRequest",
        "Parsing OData Select and Expand failed: Could not find a property named 'shoeSize' on type 'microsoft.graph.user'.",
    )
    .await;
    sims.shutdown().await;
}

#[tokio::test]
async fn unknown_user_is_404_naming_it() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let resp = client()
        .get(format!("{}/users/nobody@contoso.com", sims.graph.v1_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    graph_error(resp, 404, "Request_ResourceNotFound", &not_found("nobody@contoso.com")).await;
    sims.shutdown().await;
}

#[tokio::test]
async fn manager_and_no_manager() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let resp = client()
        .get(format!("{}/users/{}/manager", sims.graph.v1_url(), ids::ALEX_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["@odata.context"], format!("{}/v1.0/$metadata#directoryObjects/$entity", sims.graph.base_url()));
    assert_eq!(body["@odata.type"], "#microsoft.graph.user");
    assert_eq!(body["id"], ids::SARA_ID);
    assert_eq!(body["displayName"], "Sara Davis");
    assert_eq!(body["userPrincipalName"], ids::SARA_UPN);
    assert_eq!(body["mail"], ids::SARA_UPN);
    assert_eq!(body["jobTitle"], "Finance VP");

    let resp = client()
        .get(format!("{}/users/{}/manager", sims.graph.v1_url(), ids::PATTI_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    graph_error(resp, 404, "Request_ResourceNotFound", &not_found("manager")).await;
    sims.shutdown().await;
}

#[tokio::test]
async fn add_member_then_duplicate_is_the_exact_400() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let resp = add(&sims, &token, ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID).await;
    assert_eq!(resp.status(), 204);
    assert!(resp.headers().contains_key("request-id"));
    assert_eq!(header(&resp, "x-ms-resource-unit"), "1");
    assert_eq!(resp.text().await.unwrap(), "");
    assert!(sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID));

    let resp = add(&sims, &token, ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID).await;
    let body = graph_error(resp, 400, "Request_BadRequest", ALREADY).await;
    let keys: Vec<&String> = body["error"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["code", "innerError", "message"]);

    let counters = sims.graph.state().counters();
    assert_eq!(counters.writes_attempted, 2);
    assert_eq!(counters.writes_applied, 1);
    sims.shutdown().await;
}

#[tokio::test]
async fn missing_member_and_missing_group_are_404s_naming_them() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let ghost = "10000000-0000-4000-8000-0000000000ff";
    let resp = add(&sims, &token, ids::GROUP_TEAM_ALPHA, ghost).await;
    graph_error(resp, 404, "Request_ResourceNotFound", &not_found(ghost)).await;
    let no_group = "20000000-0000-4000-8000-0000000000ff";
    let resp = add(&sims, &token, no_group, ids::ALEX_ID).await;
    graph_error(resp, 404, "Request_ResourceNotFound", &not_found(no_group)).await;
    let resp = client()
        .post(format!("{}/groups/{}/members/$ref", sims.graph.v1_url(), ids::GROUP_TEAM_ALPHA))
        .bearer_auth(&token)
        .json(&json!({ "@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/not-a-guid" }))
        .send()
        .await
        .unwrap();
    graph_error(
        resp,
        400,
        "Request_BadRequest",
        "Invalid object identifier 'https://graph.microsoft.com/v1.0/directoryObjects/not-a-guid'.",
    )
    .await;
    sims.shutdown().await;
}

#[tokio::test]
async fn remove_member_then_404_names_the_group() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let url = format!("{}/groups/{}/members/{}/$ref", sims.graph.v1_url(), ids::GROUP_TEAM_ALPHA, ids::ADELE_ID);
    let resp = client().delete(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(!sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::ADELE_ID));
    let resp = client().delete(&url).bearer_auth(&token).send().await.unwrap();
    graph_error(resp, 404, "Request_ResourceNotFound", &not_found(ids::GROUP_TEAM_ALPHA)).await;
    assert!(sims.graph.state().user(ids::ADELE_ID).is_some());
    sims.shutdown().await;
}

#[tokio::test]
async fn delete_without_ref_deletes_the_user_object() {
    let sims = start().await;
    let url = format!("{}/groups/{}/members/{}", sims.graph.v1_url(), ids::GROUP_TEAM_ALPHA, ids::ADELE_ID);
    // Without User.ReadWrite.All the call is refused.
    let token = common::grantline_token(&sims).await;
    let resp = client().delete(&url).bearer_auth(&token).send().await.unwrap();
    graph_error(resp, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.").await;
    assert!(sims.graph.state().user(ids::ADELE_ID).is_some());

    let token = common::privileged_token(&sims).await;
    let resp = client().delete(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(sims.graph.state().user(ids::ADELE_ID).is_none());
    assert_eq!(sims.graph.state().deleted_users()[0].id, ids::ADELE_ID);
    assert_eq!(sims.graph.state().counters().users_deleted, 1);
    let resp = client()
        .get(format!("{}/users/{}", sims.graph.v1_url(), ids::ADELE_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    sims.shutdown().await;
}

#[tokio::test]
async fn group_kinds_that_graph_refuses() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;

    let resp = add(&sims, &token, ids::GROUP_ROLE_ASSIGNABLE, ids::ALEX_ID).await;
    graph_error(resp, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.").await;
    let privileged = common::privileged_token(&sims).await;
    assert_eq!(add(&sims, &privileged, ids::GROUP_ROLE_ASSIGNABLE, ids::ALEX_ID).await.status(), 204);

    for group in [ids::GROUP_MAIL_ENABLED, ids::GROUP_DISTRIBUTION] {
        let resp = add(&sims, &token, group, ids::ALEX_ID).await;
        graph_error(
            resp,
            400,
            "Request_BadRequest",
            "Cannot Update a mail-enabled security groups and or distribution list.",
        )
        .await;
    }
    let resp = add(&sims, &token, ids::GROUP_DYNAMIC, ids::ISAIAH_ID).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Request_BadRequest");
    let resp = add(&sims, &token, ids::GROUP_ON_PREM, ids::ALEX_ID).await;
    graph_error(
        resp,
        400,
        "Request_BadRequest",
        "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.",
    )
    .await;
    // A Microsoft 365 group is writable.
    assert_eq!(add(&sims, &token, ids::GROUP_M365, ids::ALEX_ID).await.status(), 204);

    let readonly = common::readonly_token(&sims).await;
    let resp = add(&sims, &readonly, ids::GROUP_TEAM_ALPHA, ids::ALEX_ID).await;
    graph_error(resp, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.").await;
    sims.shutdown().await;
}

#[tokio::test]
async fn get_group_with_select() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let resp = client()
        .get(format!(
            "{}/groups/{}?$select=id,displayName,groupTypes,mailEnabled,securityEnabled,isAssignableToRole,membershipRule,onPremisesSyncEnabled",
            sims.graph.v1_url(),
            ids::GROUP_DYNAMIC
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["displayName"], "All Finance (dynamic)");
    assert_eq!(body["groupTypes"], json!(["DynamicMembership"]));
    assert_eq!(body["mailEnabled"], false);
    assert_eq!(body["isAssignableToRole"], Value::Null);
    assert_eq!(body["membershipRule"], "(user.department -eq \"Finance\")");
    assert_eq!(body.as_object().unwrap().len(), 9);
    let resp = client()
        .get(format!("{}/groups/{}", sims.graph.v1_url(), ids::GROUP_FINANCE_BI_READ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["displayName"], "Finance BI Readers");
    assert_eq!(body["mailNickname"], "GRP-FINANCE-BI-READ");
    assert_eq!(body["securityEnabled"], true);
    sims.shutdown().await;
}

#[tokio::test]
async fn membership_reads() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let v1 = sims.graph.v1_url();
    let resp = client()
        .get(format!("{v1}/groups/{}/members/{}?$select=id", ids::GROUP_TEAM_ALPHA, ids::ADELE_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["@odata.type"], "#microsoft.graph.user");
    assert_eq!(body["id"], ids::ADELE_ID);
    let resp = client()
        .get(format!("{v1}/groups/{}/members/{}?$select=id", ids::GROUP_TEAM_ALPHA, ids::ALEX_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    graph_error(resp, 404, "Request_ResourceNotFound", &not_found(ids::GROUP_TEAM_ALPHA)).await;

    let resp = client()
        .post(format!("{v1}/users/{}/checkMemberGroups", ids::ALEX_ID))
        .bearer_auth(&token)
        .json(&json!({ "groupIds": [ids::GROUP_TEAM_ALPHA, ids::GROUP_DYNAMIC, ids::GROUP_DISTRIBUTION] }))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-ms-resource-unit"), "4");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["value"], json!([ids::GROUP_DYNAMIC, ids::GROUP_DISTRIBUTION]));

    let too_many: Vec<String> = (0..21).map(|i| format!("20000000-0000-4000-8000-0000000001{i:02}")).collect();
    let resp = client()
        .post(format!("{v1}/users/{}/checkMemberGroups", ids::ALEX_ID))
        .bearer_auth(&token)
        .json(&json!({ "groupIds": too_many }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let resp = client()
        .get(format!("{v1}/groups/{}/members?$select=id,displayName", ids::GROUP_DYNAMIC))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-ms-resource-unit"), "2");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["value"].as_array().unwrap().len(), 2);
    assert_eq!(body["value"][0]["displayName"], "Alex Wilber");
    sims.shutdown().await;
}

#[tokio::test]
async fn check_member_groups_is_transitive() {
    let tenant = Tenant::empty()
        .user(User::new("10000000-0000-4000-8000-0000000000a1", "kim@contoso.com", "Kim Akers"))
        .group(Group::security("20000000-0000-4000-8000-0000000000b1", "Inner", "inner"))
        .group(Group::security("20000000-0000-4000-8000-0000000000b2", "Outer", "outer"))
        .member("20000000-0000-4000-8000-0000000000b1", "10000000-0000-4000-8000-0000000000a1")
        .member("20000000-0000-4000-8000-0000000000b2", "20000000-0000-4000-8000-0000000000b1")
        .build();
    let sims = Sims::start(SimsConfig { tenant, ..SimsConfig::demo() }).await.unwrap();
    let token = common::grantline_token(&sims).await;
    let resp = client()
        .post(format!("{}/users/kim@contoso.com/checkMemberGroups", sims.graph.v1_url()))
        .bearer_auth(&token)
        .json(&json!({ "groupIds": ["20000000-0000-4000-8000-0000000000b2"] }))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["value"], json!(["20000000-0000-4000-8000-0000000000b2"]));
    sims.shutdown().await;
}

#[tokio::test]
async fn transitive_members_lists_the_members_of_nested_groups_once_each_page_by_page() {
    let (kim, lee, inner, outer) = (
        "10000000-0000-4000-8000-0000000000a1",
        "10000000-0000-4000-8000-0000000000a2",
        "20000000-0000-4000-8000-0000000000b1",
        "20000000-0000-4000-8000-0000000000b2",
    );
    let tenant = Tenant::empty()
        .user(User::new(kim, "kim@contoso.com", "Kim Akers"))
        .user(User::new(lee, "lee@contoso.com", "Lee Gu"))
        .group(Group::security(inner, "Inner", "inner"))
        .group(Group::security(outer, "Outer", "outer"))
        .member(inner, kim)
        .member(outer, lee)
        .member(outer, inner)
        // Kim is a member twice over (directly and through Inner): listed once
        .member(outer, kim)
        .build();
    let sims = Sims::start(SimsConfig { tenant, ..SimsConfig::demo() }).await.unwrap();
    let token = common::grantline_token(&sims).await;
    let v1 = sims.graph.v1_url();
    let direct: Value = client()
        .get(format!("{v1}/groups/{outer}/members?$select=id"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(direct["value"].as_array().unwrap().len(), 3);

    let resp = client()
        .get(format!("{v1}/groups/{outer}/transitiveMembers?$select=id,displayName&$top=2"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // base cost 5 for transitiveMembers, $select -1, $top below 20 -1
    assert_eq!(header(&resp, "x-ms-resource-unit"), "3");
    let first: Value = resp.json().await.unwrap();
    let next = first["@odata.nextLink"].as_str().expect("a next page").to_owned();
    assert!(next.contains(&format!("/groups/{outer}/transitiveMembers?")), "{next}");
    let second: Value = client().get(&next).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert!(second.get("@odata.nextLink").is_none(), "{second:#}");
    let mut all: Vec<(String, String)> = first["value"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["value"].as_array().unwrap())
        .map(|o| (o["@odata.type"].as_str().unwrap().to_owned(), o["id"].as_str().unwrap().to_owned()))
        .collect();
    all.sort();
    assert_eq!(
        all,
        [
            ("#microsoft.graph.group".to_owned(), inner.to_owned()),
            ("#microsoft.graph.user".to_owned(), kim.to_owned()),
            ("#microsoft.graph.user".to_owned(), lee.to_owned()),
        ]
    );
    let resp =
        client().get(format!("{v1}/groups/20000000-0000-4000-8000-0000000000ff/transitiveMembers")).bearer_auth(&token);
    assert_eq!(resp.send().await.unwrap().status(), 404);
    sims.shutdown().await;
}

#[tokio::test]
async fn bulk_add_fails_whole_when_one_is_already_a_member() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let bind = |ids_: &[&str]| json!({ "members@odata.bind": ids_.iter().map(|i| format!("https://graph.microsoft.com/v1.0/directoryObjects/{i}")).collect::<Vec<_>>() });
    let resp = client()
        .patch(format!("{}/groups/{}", sims.graph.v1_url(), ids::GROUP_TEAM_ALPHA))
        .bearer_auth(&token)
        .json(&bind(&[ids::ALEX_ID, ids::ADELE_ID]))
        .send()
        .await
        .unwrap();
    graph_error(resp, 400, "Request_BadRequest", ALREADY).await;
    assert!(!sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::ALEX_ID));

    let resp = client()
        .patch(format!("{}/groups/{}", sims.graph.v1_url(), ids::GROUP_TEAM_ALPHA))
        .bearer_auth(&token)
        .json(&bind(&[ids::ALEX_ID, ids::ISAIAH_ID]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(sims.graph.state().members(ids::GROUP_TEAM_ALPHA), vec![ids::ADELE_ID, ids::ALEX_ID, ids::ISAIAH_ID]);
    let many: Vec<&str> = std::iter::repeat_n(ids::PATTI_ID, 21).collect();
    let resp = client()
        .patch(format!("{}/groups/{}", sims.graph.v1_url(), ids::GROUP_HELPDESK))
        .bearer_auth(&token)
        .json(&bind(&many))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client()
        .patch(format!("{}/groups/{}/members/$ref", sims.graph.v1_url(), ids::GROUP_HELPDESK))
        .bearer_auth(&token)
        .json(&bind(&[ids::PATTI_ID]))
        .send()
        .await
        .unwrap();
    graph_error(resp, 400, "BadRequest", "The request is currently not supported on the targeted entity set").await;
    sims.shutdown().await;
}

#[tokio::test]
async fn client_request_id_is_echoed() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let mine = "6f1b3c3e-0000-4000-8000-00000000c0de";
    let resp = client()
        .get(format!("{}/users/{}/manager", sims.graph.v1_url(), ids::PATTI_ID))
        .bearer_auth(&token)
        .header("client-request-id", mine)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "client-request-id"), mine);
    assert_ne!(header(&resp, "request-id"), mine);
    let body = graph_error(resp, 404, "Request_ResourceNotFound", &not_found("manager")).await;
    assert_eq!(body["error"]["innerError"]["client-request-id"], mine);
    sims.shutdown().await;
}

#[tokio::test]
async fn write_budget_exhaustion_is_429_with_throttle_headers() {
    let mut cfg = SimsConfig::demo();
    cfg.graph = GraphConfig {
        throttle: ThrottleConfig {
            writes: 3,
            write_window: Duration::from_secs(150),
            penalize_throttled: false,
            ..ThrottleConfig::default()
        },
        ..GraphConfig::default()
    };
    let sims = Sims::start(cfg).await.unwrap();
    // the Retry-After is the refill still to come: the clock moves only when the test says
    sims.clock().freeze();
    let token = common::grantline_token(&sims).await;
    for user in [ids::ALEX_ID, ids::SARA_ID, ids::ISAIAH_ID] {
        assert_eq!(add(&sims, &token, ids::GROUP_FINANCE_BI_READ, user).await.status(), 204);
    }
    let resp = add(&sims, &token, ids::GROUP_FINANCE_BI_READ, ids::MEGAN_ID).await;
    assert_eq!(header(&resp, "retry-after"), "50");
    assert_eq!(header(&resp, "x-ms-throttle-information"), "WriteLimitExceeded");
    assert_eq!(
        header(&resp, "x-ms-throttle-scope"),
        format!("Tenant_Application/Write/{}/{}", ids::APP_GRANTLINE_ID, ids::TENANT_ID)
    );
    graph_error(
        resp,
        429,
        "Request_ThrottledTemporarily",
        "Your request is throttled temporarily. Please try after 50 seconds.",
    )
    .await;
    assert!(!sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::MEGAN_ID));
    // Reads are budgeted separately.
    let resp = client()
        .get(format!("{}/users/{}", sims.graph.v1_url(), ids::MEGAN_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Another app has its own bucket.
    let privileged = common::privileged_token(&sims).await;
    assert_eq!(add(&sims, &privileged, ids::GROUP_HELPDESK, ids::ALEX_ID).await.status(), 204);
    sims.clock().advance(Duration::from_secs(50));
    assert_eq!(add(&sims, &token, ids::GROUP_FINANCE_BI_READ, ids::MEGAN_ID).await.status(), 204);
    assert_eq!(sims.graph.state().counters().throttled, 1);
    sims.shutdown().await;
}

#[tokio::test]
async fn replication_delay_hides_writes_from_reads() {
    let sims = start().await;
    sims.graph.set_replication_delay(Duration::from_secs(30));
    let token = common::grantline_token(&sims).await;
    let v1 = sims.graph.v1_url();
    assert_eq!(add(&sims, &token, ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID).await.status(), 204);
    let member_url = format!("{v1}/groups/{}/members/{}?$select=id", ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID);
    let check = || async {
        let resp = client()
            .post(format!("{v1}/users/{}/checkMemberGroups", ids::ALEX_ID))
            .bearer_auth(&token)
            .json(&json!({ "groupIds": [ids::GROUP_FINANCE_BI_READ] }))
            .send()
            .await
            .unwrap();
        resp.json::<Value>().await.unwrap()["value"].clone()
    };
    assert_eq!(client().get(&member_url).bearer_auth(&token).send().await.unwrap().status(), 404);
    assert_eq!(check().await, json!([]));
    // The primary already has it: a second add is a duplicate.
    assert_eq!(add(&sims, &token, ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID).await.status(), 400);
    assert!(sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID));
    assert!(!sims.graph.state().is_member_visible(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID));

    sims.clock().advance(Duration::from_secs(31));
    assert_eq!(client().get(&member_url).bearer_auth(&token).send().await.unwrap().status(), 200);
    assert_eq!(check().await, json!([ids::GROUP_FINANCE_BI_READ]));
    sims.shutdown().await;
}

#[tokio::test]
async fn batch_runs_items_with_their_own_status() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let body = json!({ "requests": [
        { "id": "1", "method": "POST", "url": format!("/groups/{}/members/$ref", ids::GROUP_TEAM_ALPHA),
          "headers": { "Content-Type": "application/json" },
          "body": { "@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", ids::ALEX_ID) } },
        { "id": "2", "method": "GET", "url": format!("/users/{}?$select=id,accountEnabled", ids::DISABLED_ID) },
        { "id": "3", "method": "POST", "url": format!("/groups/{}/members/$ref", ids::GROUP_ROLE_ASSIGNABLE),
          "headers": { "Content-Type": "application/json" },
          "body": { "@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", ids::ALEX_ID) } },
        { "id": "4", "method": "GET", "url": format!("/groups/{}?$select=id", ids::GROUP_ROLE_ASSIGNABLE), "dependsOn": ["3"] }
    ]});
    let resp =
        client().post(format!("{}/$batch", sims.graph.v1_url())).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let r = body["responses"].as_array().unwrap();
    assert_eq!(r[0]["id"], "1");
    assert_eq!(r[0]["status"], 204);
    assert_eq!(r[0]["headers"]["x-ms-resource-unit"], "1");
    assert!(r[0].get("body").is_none());
    assert_eq!(r[1]["status"], 200);
    assert_eq!(r[1]["body"]["accountEnabled"], false);
    assert_eq!(r[2]["status"], 403);
    assert_eq!(r[2]["body"]["error"]["code"], "Authorization_RequestDenied");
    assert_eq!(r[2]["body"]["error"]["message"], "Insufficient privileges to complete the operation.");
    assert_eq!(r[3]["status"], 424);
    assert!(sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::ALEX_ID));

    let dup = json!({ "requests": [
        { "id": "a", "method": "GET", "url": "/users/x" },
        { "id": "A", "method": "GET", "url": "/users/y" }
    ]});
    let resp =
        client().post(format!("{}/$batch", sims.graph.v1_url())).bearer_auth(&token).json(&dup).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    sims.shutdown().await;
}

#[tokio::test]
async fn batch_items_are_throttled_one_by_one() {
    let mut cfg = SimsConfig::demo();
    cfg.graph.throttle = ThrottleConfig { writes: 1, penalize_throttled: false, ..ThrottleConfig::default() };
    let sims = Sims::start(cfg).await.unwrap();
    let token = common::grantline_token(&sims).await;
    let item = |id: &str, user: &str| {
        json!({ "id": id, "method": "POST", "url": format!("/groups/{}/members/$ref", ids::GROUP_TEAM_ALPHA),
                "headers": { "Content-Type": "application/json" },
                "body": { "@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{user}") } })
    };
    let resp = client()
        .post(format!("{}/$batch", sims.graph.v1_url()))
        .bearer_auth(&token)
        .json(&json!({ "requests": [item("1", ids::ALEX_ID), item("2", ids::ISAIAH_ID)] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["responses"][0]["status"], 204);
    assert_eq!(body["responses"][1]["status"], 429);
    assert_eq!(body["responses"][1]["headers"]["Retry-After"], "150");
    assert_eq!(body["responses"][1]["body"]["error"]["code"], "Request_ThrottledTemporarily");
    assert!(!sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::ISAIAH_ID));
    sims.shutdown().await;
}

#[tokio::test]
async fn state_helpers_change_what_graph_returns() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    assert!(sims.graph.state().disable_user(ids::ISAIAH_ID));
    sims.graph.state().set_user_field(ids::ISAIAH_ID, "department", json!("Legal")).unwrap();
    let resp = client()
        .get(format!("{}/users/{}?$select=accountEnabled,department", sims.graph.v1_url(), ids::ISAIAH_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["accountEnabled"], false);
    assert_eq!(body["department"], "Legal");
    sims.shutdown().await;
}

#[tokio::test]
async fn users_filter_by_mail_finds_a_guest_by_their_home_address() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let list = |filter: &str| {
        client()
            .get(format!("{}/users", sims.graph.v1_url()))
            .query(&[("$filter", filter), ("$select", "id,userPrincipalName,userType,mail")])
            .bearer_auth(&token)
            .send()
    };
    let resp = list("mail eq 'JORDAN@fabrikam.com'").await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let value = body["value"].as_array().unwrap();
    assert_eq!(value.len(), 1, "{body}");
    assert_eq!(value[0]["id"], ids::GUEST_ID);
    assert_eq!(value[0]["userPrincipalName"], ids::GUEST_UPN);
    assert_eq!(value[0]["userType"], "Guest");
    assert!(body.get("@odata.context").is_some());
    let none: Value = list("mail eq 'nobody@fabrikam.com'").await.unwrap().json().await.unwrap();
    assert_eq!(none["value"], json!([]));
    // other filters are not modelled, and say so
    assert_eq!(list("startswith(displayName,'A')").await.unwrap().status(), 501);
}

// ------------------------------------------------------------------------------------------
// Delta queries (apis.md 2.10).

const DELTA_SELECT: &str = "accountEnabled,employeeLeaveDateTime,userPrincipalName";

async fn get_json(url: &str, token: &str, prefer: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client().get(url).bearer_auth(token);
    if let Some(p) = prefer {
        req = req.header("Prefer", p);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

/// Follows `@odata.nextLink`s to the `@odata.deltaLink`: every item, the pages seen, the delta link.
async fn drain(first: &str, token: &str, prefer: Option<&str>) -> (Vec<Value>, usize, String) {
    let mut url = first.to_owned();
    let mut items = Vec::new();
    let mut pages = 0;
    loop {
        let (status, _, body) = get_json(&url, token, prefer).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        items.extend(body["value"].as_array().unwrap().iter().cloned());
        if let Some(next) = body["@odata.nextLink"].as_str() {
            assert!(body.get("@odata.deltaLink").is_none());
            url = next.to_owned();
            continue;
        }
        return (items, pages, body["@odata.deltaLink"].as_str().expect("a delta link at the end").to_owned());
    }
}

fn by_id<'a>(items: &'a [Value], id: &str) -> Option<&'a Value> {
    items.iter().find(|i| i["id"] == id)
}

#[tokio::test]
async fn users_delta_pages_then_reports_only_what_changed() {
    let mut cfg = SimsConfig::demo();
    cfg.graph.delta_page_size = 4;
    let sims = Sims::start(cfg).await.unwrap();
    let token = common::grantline_token(&sims).await;
    let v1 = sims.graph.v1_url();
    let first = format!("{v1}/users/delta?$select={DELTA_SELECT}");
    let (status, headers, page) = get_json(&first, &token, None).await;
    assert_eq!(status, 200);
    assert_eq!(header_of(&headers, "x-ms-resource-unit"), "1");
    assert_eq!(page["@odata.context"], format!("{}/v1.0/$metadata#users({DELTA_SELECT})", sims.graph.base_url()));
    assert_eq!(page["value"].as_array().unwrap().len(), 4);
    let next = page["@odata.nextLink"].as_str().unwrap();
    assert!(next.starts_with(&format!("{v1}/users/delta?$skiptoken=")), "{next}");

    let (items, pages, delta_link) = drain(&first, &token, None).await;
    assert_eq!(pages, 3);
    assert_eq!(items.len(), 11);
    assert!(delta_link.starts_with(&format!("{v1}/users/delta?$deltatoken=")), "{delta_link}");
    let alex = by_id(&items, ids::ALEX_ID).unwrap();
    assert_eq!(
        alex,
        &json!({ "accountEnabled": true, "employeeLeaveDateTime": null, "userPrincipalName": ids::ALEX_UPN, "id": ids::ALEX_ID })
    );
    let leaver = by_id(&items, ids::LEAVER_ID).unwrap();
    assert!(leaver["employeeLeaveDateTime"].as_str().unwrap().ends_with("T00:00:00Z"));
    assert_eq!(by_id(&items, ids::DISABLED_ID).unwrap()["accountEnabled"], false);

    // Nothing changed yet.
    let (none, _, unchanged_link) = drain(&delta_link, &token, None).await;
    assert!(none.is_empty(), "{none:?}");

    // Tracked changes appear; an untracked one (department) does not.
    assert!(sims.graph.state().disable_user(ids::ISAIAH_ID));
    let patched = client()
        .patch(format!("{}/sim/users/{}", sims.graph.base_url(), ids::ALEX_ID))
        .json(&json!({ "employeeLeaveDateTime": "2026-09-30T00:00:00Z" }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    sims.graph.state().set_user_field(ids::SARA_ID, "department", json!("Legal")).unwrap();
    let (changed, _, after_changes) = drain(&delta_link, &token, None).await;
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert_eq!(
        by_id(&changed, ids::ISAIAH_ID).unwrap(),
        &json!({ "accountEnabled": false, "employeeLeaveDateTime": null, "userPrincipalName": ids::ISAIAH_UPN, "id": ids::ISAIAH_ID })
    );
    assert_eq!(by_id(&changed, ids::ALEX_ID).unwrap()["employeeLeaveDateTime"], "2026-09-30T00:00:00Z");

    // The same link again, asking for changed properties only.
    let (status, headers, minimal) = get_json(&unchanged_link, &token, Some("return=minimal")).await;
    assert_eq!(status, 200);
    assert_eq!(header_of(&headers, "preference-applied"), "return=minimal");
    let minimal = minimal["value"].as_array().unwrap().clone();
    assert_eq!(by_id(&minimal, ids::ISAIAH_ID).unwrap(), &json!({ "accountEnabled": false, "id": ids::ISAIAH_ID }));
    assert_eq!(
        by_id(&minimal, ids::ALEX_ID).unwrap(),
        &json!({ "employeeLeaveDateTime": "2026-09-30T00:00:00Z", "id": ids::ALEX_ID })
    );

    // Deletion: restorable first ("changed"), then for good ("deleted").
    assert!(sims.graph.state().delete_user(ids::MEGAN_ID));
    let (removed, _, after_delete) = drain(&after_changes, &token, None).await;
    assert_eq!(removed, [json!({ "id": ids::MEGAN_ID, "@removed": { "reason": "changed" } })]);
    assert!(sims.graph.state().purge_user(ids::MEGAN_ID));
    let purge = client()
        .delete(format!("{}/sim/users/{}?permanent=true", sims.graph.base_url(), ids::ADELE_ID))
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 204);
    let (purged, _, after_purge) = drain(&after_delete, &token, None).await;
    assert_eq!(purged.len(), 2);
    assert_eq!(by_id(&purged, ids::MEGAN_ID).unwrap()["@removed"]["reason"], "deleted");
    assert_eq!(by_id(&purged, ids::ADELE_ID).unwrap()["@removed"]["reason"], "deleted");

    // A restored user and a new one come back whole.
    assert!(sims.graph.state().delete_user(ids::ALLAN_ID));
    assert!(sims.graph.state().restore_user(ids::ALLAN_ID));
    sims.graph.state().upsert_user(User::new(
        "10000000-0000-4000-8000-000000000099",
        "NewHire@contoso.com",
        "New Hire",
    ));
    let (added, _, _) = drain(&after_purge, &token, None).await;
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0]["userPrincipalName"], "NewHire@contoso.com");
    assert_eq!(added[0]["accountEnabled"], true);
    sims.shutdown().await;
}

fn header_of(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn users_delta_without_select_uses_the_default_properties_and_filters_by_id() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let v1 = sims.graph.v1_url();
    let (items, pages, _) = drain(&format!("{v1}/users/delta"), &token, None).await;
    assert_eq!((items.len(), pages), (11, 1));
    let keys: Vec<&String> = by_id(&items, ids::ALEX_ID).unwrap().as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 11, "{keys:?}");
    assert!(by_id(&items, ids::ALEX_ID).unwrap().get("accountEnabled").is_none());

    let filter = format!("id eq '{}' or id eq '{}'", ids::ALEX_ID, ids::SARA_ID.to_ascii_uppercase());
    let url = format!("{v1}/users/delta?$select=accountEnabled&$filter={}", urlencode(&filter));
    let (items, _, link) = drain(&url, &token, None).await;
    let mut got: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, [ids::ALEX_ID, ids::SARA_ID]);
    sims.graph.state().disable_user(ids::ISAIAH_ID);
    sims.graph.state().disable_user(ids::SARA_ID);
    let (changed, _, _) = drain(&link, &token, None).await;
    assert_eq!(changed, [json!({ "accountEnabled": false, "id": ids::SARA_ID })]);

    let many = (0..51).map(|i| format!("id eq '10000000-0000-4000-8000-0000000001{i:02}'")).collect::<Vec<_>>();
    let resp = client()
        .get(format!("{v1}/users/delta?$filter={}", urlencode(&many.join(" or "))))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client()
        .get(format!("{v1}/users/delta?$filter={}", urlencode("displayName eq 'x'")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client().get(format!("{v1}/users/delta?$select=nope")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    sims.shutdown().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn unknown_or_expired_delta_tokens_are_410_sync_state_not_found() {
    let mut cfg = SimsConfig::demo();
    cfg.graph.delta_token_lifetime = Duration::from_secs(60);
    cfg.graph.delta_page_size = 5;
    let sims = Sims::start(cfg).await.unwrap();
    let token = common::grantline_token(&sims).await;
    let v1 = sims.graph.v1_url();
    let message = "The sync state was not found: the token has expired or is unknown. Restart with a full delta query.";
    let resp = client().get(format!("{v1}/users/delta?$deltatoken=nope")).bearer_auth(&token).send().await.unwrap();
    graph_error(resp, 410, "syncStateNotFound", message).await;
    let resp = client().get(format!("{v1}/users/delta?$skiptoken=nope")).bearer_auth(&token).send().await.unwrap();
    graph_error(resp, 410, "syncStateNotFound", message).await;

    // `latest`: no users, a link from now.
    let (status, _, latest) =
        get_json(&format!("{v1}/users/delta?$deltatoken=latest&$select=accountEnabled"), &token, None).await;
    assert_eq!(status, 200);
    assert_eq!(latest["value"], json!([]));
    let from_now = latest["@odata.deltaLink"].as_str().unwrap().to_owned();
    let (_, _, first) = get_json(&format!("{v1}/users/delta"), &token, None).await;
    let skip = first["@odata.nextLink"].as_str().unwrap().to_owned();
    sims.graph.state().disable_user(ids::ALEX_ID);
    let (changed, _, _) = drain(&from_now, &token, None).await;
    assert_eq!(changed.len(), 1);

    sims.clock().advance(Duration::from_secs(61));
    for url in [&from_now, &skip] {
        let resp = client().get(url.as_str()).bearer_auth(&token).send().await.unwrap();
        graph_error(resp, 410, "syncStateNotFound", message).await;
    }
    let (_, _, link) = drain(&format!("{v1}/users/delta"), &token, None).await;
    sims.graph.state().expire_delta_tokens();
    let resp = client().get(&link).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 410);

    sims.shutdown().await;
}

// ------------------------------------------------------------------------------------------
// $expand=manager.

#[tokio::test]
async fn get_user_expands_the_manager() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let v1 = sims.graph.v1_url();
    let url = format!(
        "{v1}/users/{}?$select=id,displayName&$expand=manager($select=id,userPrincipalName,displayName)",
        ids::ALEX_ID
    );
    let resp = client().get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-ms-resource-unit"), "2");
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body,
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#users(id,displayName,manager(id,userPrincipalName,displayName))/$entity", sims.graph.base_url()),
            "id": ids::ALEX_ID,
            "displayName": "Alex Wilber",
            "manager": { "@odata.type": "#microsoft.graph.user", "id": ids::SARA_ID,
                         "userPrincipalName": ids::SARA_UPN, "displayName": "Sara Davis" },
        })
    );
    assert!(text.ends_with(r#""displayName":"Sara Davis"}}"#), "{text}");

    // No $select: default properties and a cost of 2 + 1.
    let resp = client()
        .get(format!("{v1}/users/{}?$expand=manager($select=id,userPrincipalName,displayName)", ids::ALEX_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-ms-resource-unit"), "3");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["jobTitle"], "Financial Analyst");
    assert_eq!(body["manager"]["id"], ids::SARA_ID);

    // No manager: no manager property (not an error).
    let resp = client()
        .get(format!("{v1}/users/{}?$select=id&$expand=manager", ids::PATTI_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body.get("manager").is_none(), "{body}");
    assert_eq!(body["id"], ids::PATTI_ID);

    let resp =
        client().get(format!("{v1}/users/{}?$expand=memberOf", ids::ALEX_ID)).bearer_auth(&token).send().await.unwrap();
    graph_error(
        resp,
        400,
        "Request_BadRequest",
        "Parsing OData Select and Expand failed: Could not find a property named 'memberOf' on type 'microsoft.graph.user'.",
    )
    .await;
    sims.shutdown().await;
}

// ------------------------------------------------------------------------------------------
// mailboxSettings.

/// The demo app holds MailboxSettings.Read.
async fn mailbox_token(sims: &Sims) -> String {
    common::grantline_token(sims).await
}

#[tokio::test]
async fn mailbox_settings_need_mailbox_settings_read() {
    let sims = start().await;
    // the read-only app lacks MailboxSettings.Read
    let token = common::readonly_token(&sims).await;
    let v1 = sims.graph.v1_url();
    let url = format!("{v1}/users/{}/mailboxSettings?$select=automaticRepliesSetting,userPurpose", ids::SARA_ID);
    let resp = client().get(&url).bearer_auth(&token).send().await.unwrap();
    graph_error(resp, 403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.").await;

    let token = mailbox_token(&sims).await;
    let resp = client().get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["@odata.context"],
        format!("{}/v1.0/$metadata#users('{}')/mailboxSettings", sims.graph.base_url(), ids::SARA_ID)
    );
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    assert_eq!(body["userPurpose"], "user");
    let replies = &body["automaticRepliesSetting"];
    assert_eq!(replies["status"], "disabled");
    assert_eq!(replies["externalAudience"], "all");
    assert_eq!(replies["scheduledStartDateTime"]["timeZone"], "UTC");

    // Out of office through the state helper: scheduled, with dateTimeTimeZone values.
    let start: jiff::Timestamp = "2026-03-14T07:00:00Z".parse().unwrap();
    let end: jiff::Timestamp = "2026-03-28T07:00:00Z".parse().unwrap();
    sims.graph.state().set_out_of_office(ids::SARA_UPN, start, end, "Back on the 28th.").unwrap();
    let body: Value = client().get(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        body["automaticRepliesSetting"],
        json!({ "status": "scheduled", "externalAudience": "all",
                "scheduledStartDateTime": { "dateTime": "2026-03-14T07:00:00.0000000", "timeZone": "UTC" },
                "scheduledEndDateTime": { "dateTime": "2026-03-28T07:00:00.0000000", "timeZone": "UTC" },
                "internalReplyMessage": "Back on the 28th.", "externalReplyMessage": "Back on the 28th." })
    );

    // And through the admin route; then the single-setting path.
    let resp = client()
        .put(format!("{}/sim/users/{}/automatic-replies", sims.graph.base_url(), ids::SARA_ID))
        .json(&json!({ "status": "alwaysEnabled", "externalAudience": "contactsOnly" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bad = client()
        .put(format!("{}/sim/users/{}/automatic-replies", sims.graph.base_url(), ids::SARA_ID))
        .json(&json!({ "status": "sometimes" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let one: Value = client()
        .get(format!("{v1}/users/{}/mailboxSettings/automaticRepliesSetting", ids::SARA_UPN))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["status"], "alwaysEnabled");
    assert_eq!(one["externalAudience"], "contactsOnly");
    assert_eq!(one["internalReplyMessage"], "Back on the 28th.");
    assert!(one["@odata.context"].as_str().unwrap().ends_with("/mailboxSettings/automaticRepliesSetting"));
    assert_eq!(sims.graph.state().automatic_replies(ids::SARA_ID).unwrap()["status"], "alwaysEnabled");

    // The whole object, a shared mailbox, and the Exchange-style refusals.
    let all: Value = client()
        .get(format!("{v1}/users/{}/mailboxSettings", ids::ALEX_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in ["timeZone", "automaticRepliesSetting", "language", "workingHours", "userPurpose", "dateFormat"] {
        assert!(all.get(key).is_some(), "{key}: {all}");
    }
    let shared: Value = client()
        .get(format!("{v1}/users/{}/mailboxSettings/userPurpose", ids::MAILBOX_FINANCE))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shared["value"], "shared");
    let resp =
        client().get(format!("{v1}/users/{}/mailboxSettings", ids::GUEST_ID)).bearer_auth(&token).send().await.unwrap();
    graph_error(
        resp,
        404,
        "MailboxNotEnabledForRESTAPI",
        "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
    )
    .await;
    let resp = client()
        .get(format!("{v1}/users/nobody@contoso.com/mailboxSettings"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    graph_error(resp, 404, "ErrorInvalidUser", "The requested user 'nobody@contoso.com' is invalid.").await;
    let resp = client()
        .get(format!("{v1}/users/{}/mailboxSettings?$select=colour", ids::ALEX_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    sims.shutdown().await;
}

// ------------------------------------------------------------------------------------------
// Throttling scopes.

#[tokio::test]
async fn the_tenant_write_bucket_spans_apps_and_writes_per_window_are_counted() {
    let mut cfg = SimsConfig::demo();
    cfg.graph.throttle = ThrottleConfig {
        tenant_writes: 3,
        tenant_write_window: Duration::from_secs(300),
        penalize_throttled: false,
        ..ThrottleConfig::default()
    };
    let sims = Sims::start(cfg).await.unwrap();
    // the Retry-After is the refill still to come: the clock moves only when the test says
    sims.clock().freeze();
    let grantline = common::grantline_token(&sims).await;
    let privileged = common::privileged_token(&sims).await;
    assert_eq!(add(&sims, &grantline, ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID).await.status(), 204);
    assert_eq!(add(&sims, &grantline, ids::GROUP_FINANCE_BI_READ, ids::SARA_ID).await.status(), 204);
    assert_eq!(add(&sims, &privileged, ids::GROUP_HELPDESK, ids::ALEX_ID).await.status(), 204);
    for (token, app) in [(&privileged, ids::APP_PRIVILEGED_ID), (&grantline, ids::APP_GRANTLINE_ID)] {
        let resp = add(&sims, token, ids::GROUP_FINANCE_BI_READ, ids::ISAIAH_ID).await;
        assert_eq!(header(&resp, "x-ms-throttle-scope"), format!("Tenant/Write/{app}/{}", ids::TENANT_ID));
        assert_eq!(header(&resp, "x-ms-throttle-information"), "WriteLimitExceeded");
        assert_eq!(header(&resp, "retry-after"), "100");
        graph_error(
            resp,
            429,
            "Request_ThrottledTemporarily",
            "Your request is throttled temporarily. Please try after 100 seconds.",
        )
        .await;
    }
    // Reads still pass.
    let resp = client()
        .get(format!("{}/users/{}", sims.graph.v1_url(), ids::ALEX_ID))
        .bearer_auth(&grantline)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let state = sims.graph.state();
    let histogram = state.write_histogram();
    assert_eq!(histogram.iter().map(|s| s.accepted).sum::<u64>(), 3);
    assert_eq!(histogram.iter().map(|s| s.refused).sum::<u64>(), 2);
    assert_eq!(state.max_writes_in_window(Duration::from_secs(300)), 3);
    assert_eq!(state.counters().writes_refused, 2);
    assert_eq!(state.counters().throttled, 2);

    // After the refill, one more fits; a histogram over time never exceeds the pace.
    sims.clock().advance(Duration::from_secs(100));
    assert_eq!(add(&sims, &grantline, ids::GROUP_FINANCE_BI_READ, ids::ISAIAH_ID).await.status(), 204);
    let writes: serde_json::Value =
        client().get(format!("{}/sim/writes", sims.graph.base_url())).send().await.unwrap().json().await.unwrap();
    // The simulated clock follows the wall clock, so the first three may straddle a second.
    let seconds = writes.as_array().unwrap();
    assert!(seconds.len() >= 2, "{writes}");
    assert_eq!(seconds.iter().map(|s| s["accepted"].as_u64().unwrap()).sum::<u64>(), 4);
    assert_eq!(state.max_writes_in_window(Duration::from_secs(50)), 3);
    assert_eq!(state.max_writes_in_window(Duration::from_secs(300)), 4);
    sims.shutdown().await;
}

#[tokio::test]
async fn read_throttling_names_the_read_scope() {
    let mut cfg = SimsConfig::demo();
    cfg.graph.throttle = ThrottleConfig { resource_units: 2, penalize_throttled: false, ..ThrottleConfig::default() };
    let sims = Sims::start(cfg).await.unwrap();
    let token = common::grantline_token(&sims).await;
    let get = || client().get(format!("{}/users/{}", sims.graph.v1_url(), ids::ALEX_ID)).bearer_auth(&token).send();
    assert_eq!(get().await.unwrap().status(), 200);
    let resp = get().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(
        header(&resp, "x-ms-throttle-scope"),
        format!("Tenant_Application/Read/{}/{}", ids::APP_GRANTLINE_ID, ids::TENANT_ID)
    );
    assert_eq!(header(&resp, "x-ms-throttle-information"), "ResourceUnitLimitExceeded");
    assert!(sims.graph.state().write_histogram().is_empty());
    sims.shutdown().await;
}
