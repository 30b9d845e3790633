#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::{client, header, start};
use grantline_sims::{CreatedRitm, HmacSigning, NewRitm, RateLimitRule, Sims, WebhookTarget, ids};
use hmac::Mac;
use serde_json::{Value, json};

const NOT_AUTHENTICATED: &str = r#"{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}"#;
const NO_RECORD: &str = r#"{"error":{"message":"No Record found","detail":"Record doesn't exist or ACL restricts the record retrieval"},"status":"failure"}"#;

fn ritm(sims: &Sims) -> CreatedRitm {
    sims.servicenow
        .state()
        .create_ritm(
            NewRitm::new("alexw", ids::CAT_ITEM_FINANCE_BI_NAME)
                .short_description("Access to Finance BI for Alex")
                .variable("justification", "quarterly close")
                .variable("duration_days", "30")
                .approver("sarad"),
        )
        .unwrap()
}

fn get(sims: &Sims, path_and_query: &str) -> reqwest::RequestBuilder {
    client()
        .get(format!("{}{path_and_query}", sims.servicenow.base_url()))
        .basic_auth(ids::SNOW_USER, Some(ids::SNOW_PASSWORD))
}

#[tokio::test]
async fn get_ritm_with_references() {
    let sims = start().await;
    let created = ritm(&sims);
    assert_eq!(created.number, "RITM0010001");
    assert_eq!(created.request_number, "REQ0010001");
    let base = sims.servicenow.base_url();
    let resp = get(&sims, &format!("/api/now/table/sc_req_item/{}", created.sys_id)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("application/json"));
    let body: Value = resp.json().await.unwrap();
    let r = &body["result"];
    assert_eq!(r["number"], "RITM0010001");
    assert_eq!(r["sys_id"], created.sys_id.as_str());
    assert_eq!(r["state"], "1");
    assert_eq!(r["approval"], "requested");
    assert_eq!(r["stage"], "waiting_for_approval");
    assert_eq!(r["active"], "true");
    assert_eq!(r["work_notes"], "");
    assert_eq!(r["comments"], "");
    assert_eq!(r["assigned_to"], "");
    assert_eq!(
        r["requested_for"],
        json!({ "link": format!("{base}/api/now/table/sys_user/{}", ids::ALEX_SNOW_SYS_ID), "value": ids::ALEX_SNOW_SYS_ID })
    );
    assert_eq!(
        r["cat_item"],
        json!({ "link": format!("{base}/api/now/table/sc_cat_item/{}", ids::CAT_ITEM_FINANCE_BI), "value": ids::CAT_ITEM_FINANCE_BI })
    );
    let updated = r["sys_updated_on"].as_str().unwrap();
    assert_eq!(updated.len(), 19);
    assert_eq!(&updated[10..11], " ");
    // Every value is a string or a reference object.
    for (k, v) in r.as_object().unwrap() {
        assert!(v.is_string() || v.is_object(), "{k}: {v}");
    }
    sims.shutdown().await;
}

#[tokio::test]
async fn display_values_fields_and_reference_links() {
    let sims = start().await;
    let created = ritm(&sims);
    let base = sims.servicenow.base_url();
    let path = format!("/api/now/table/sc_req_item/{}", created.sys_id);

    let body: Value =
        get(&sims, &format!("{path}?sysparm_display_value=true&sysparm_fields=number,state,requested_for,approval"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        body["result"],
        json!({
            "number": "RITM0010001",
            "state": "Open",
            "requested_for": { "display_value": "Alex Wilber", "link": format!("{base}/api/now/table/sys_user/{}", ids::ALEX_SNOW_SYS_ID) },
            "approval": "Requested",
        })
    );

    let body: Value = get(&sims, &format!("{path}?sysparm_display_value=all&sysparm_fields=state,requested_for"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["result"],
        json!({
            "state": { "display_value": "Open", "value": "1" },
            "requested_for": {
                "display_value": "Alex Wilber",
                "link": format!("{base}/api/now/table/sys_user/{}", ids::ALEX_SNOW_SYS_ID),
                "value": ids::ALEX_SNOW_SYS_ID,
            },
        })
    );

    let body: Value = get(
        &sims,
        &format!(
            "{path}?sysparm_exclude_reference_link=true&sysparm_fields=requested_for,requested_for.email,cat_item.name"
        ),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        body["result"],
        json!({
            "requested_for": ids::ALEX_SNOW_SYS_ID,
            "requested_for.email": "AlexW@contoso.com",
            "cat_item.name": "Access to Finance BI",
        })
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn catalog_variables_and_queries() {
    let sims = start().await;
    let created = ritm(&sims);
    let resp = get(
        &sims,
        &format!(
            "/api/now/table/sc_item_option_mtom?sysparm_query=request_item={}&sysparm_fields=sc_item_option.item_option_new.name,sc_item_option.value",
            created.sys_id
        ),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(header(&resp, "x-total-count"), "2");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "result": [
            { "sc_item_option.item_option_new.name": "justification", "sc_item_option.value": "quarterly close" },
            { "sc_item_option.item_option_new.name": "duration_days", "sc_item_option.value": "30" },
        ]})
    );

    // Query by number; then by dot-walked fields with paging.
    let body: Value = get(&sims, "/api/now/table/sc_req_item?sysparm_query=number=RITM0010001&sysparm_fields=sys_id")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["result"][0]["sys_id"], created.sys_id.as_str());
    let second = ritm(&sims);
    let resp = get(&sims, "/api/now/table/sc_req_item?sysparm_query=requested_for.user_name=alexw^cat_item.name=Access%20to%20Finance%20BI&sysparm_fields=number&sysparm_limit=1")
        .send().await.unwrap();
    assert_eq!(header(&resp, "x-total-count"), "2");
    let link = header(&resp, "link");
    assert!(link.contains(r#"sysparm_limit=1&sysparm_offset=1>;rel="next""#), "{link}");
    assert!(link.contains(r#"rel="first""#) && link.contains(r#"rel="last""#));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"], json!([{ "number": "RITM0010001" }]));
    assert_eq!(second.number, "RITM0010002");

    let body: Value = get(
        &sims,
        &format!(
            "/api/now/table/sysapproval_approver?sysparm_query=sysapproval={}&sysparm_fields=sys_id,state,approver",
            created.sys_id
        ),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(body["result"][0]["state"], "requested");
    assert_eq!(body["result"][0]["approver"]["value"], ids::SARA_SNOW_SYS_ID);

    let resp = get(&sims, "/api/now/table/sc_req_item?sysparm_query=number=RITM9999999").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "result": [] }));
    let resp = get(&sims, "/api/now/v1/table/sc_req_item?sysparm_query=number=RITM9999999").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    sims.shutdown().await;
}

#[tokio::test]
async fn work_notes_append_to_the_journal() {
    let sims = start().await;
    let created = ritm(&sims);
    let url = format!("{}/api/now/table/sc_req_item/{}", sims.servicenow.base_url(), created.sys_id);
    let patch =
        |body: Value| client().patch(&url).basic_auth(ids::SNOW_USER, Some(ids::SNOW_PASSWORD)).json(&body).send();
    let resp = patch(json!({ "work_notes": "Granted Finance BI Readers", "state": "3", "u_unknown": "x", "sys_id": "hijack", "number": "RITM7" }))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"]["state"], "3");
    assert_eq!(body["result"]["work_notes"], "");
    assert_eq!(body["result"]["sys_id"], created.sys_id.as_str());
    assert_eq!(body["result"]["number"], "RITM7");
    assert_eq!(body["result"]["sys_updated_by"], ids::SNOW_USER);
    assert!(body["result"].get("u_unknown").is_none());
    assert_eq!(patch(json!({ "work_notes": "Removal scheduled" })).await.unwrap().status(), 200);

    let notes = sims.servicenow.state().work_notes(&created.sys_id);
    assert_eq!(notes, ["Granted Finance BI Readers", "Removal scheduled"]);
    let journal = sims.servicenow.state().journal(&created.sys_id);
    assert_eq!(journal[0].element, "work_notes");
    assert_eq!(journal[0].created_by, ids::SNOW_USER);

    let body: Value = get(&sims, &format!("/api/now/table/sys_journal_field?sysparm_query=element_id={}^element=work_notes&sysparm_fields=value,element,sys_created_by", created.sys_id))
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(
        body["result"][1],
        json!({ "value": "Removal scheduled", "element": "work_notes", "sys_created_by": ids::SNOW_USER })
    );

    let body: Value = get(
        &sims,
        &format!("/api/now/table/sc_req_item/{}?sysparm_display_value=true&sysparm_fields=work_notes", created.sys_id),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let shown = body["result"]["work_notes"].as_str().unwrap();
    assert!(shown.contains("grantline Integration (Work notes)\nRemoval scheduled"), "{shown}");

    let resp = client()
        .patch(&url)
        .basic_auth(ids::SNOW_USER, Some(ids::SNOW_PASSWORD))
        .header("X-no-response-body", "true")
        .json(&json!({ "comments": "done" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "");
    assert_eq!(sims.servicenow.state().comments("RITM7"), ["done"]);
    sims.shutdown().await;
}

#[tokio::test]
async fn approving_every_approval_approves_the_ritm() {
    let sims = start().await;
    let created = ritm(&sims);
    let resp = client()
        .patch(format!(
            "{}/api/now/table/sysapproval_approver/{}",
            sims.servicenow.base_url(),
            created.approval_sys_ids[0]
        ))
        .basic_auth(ids::SNOW_USER, Some(ids::SNOW_PASSWORD))
        .json(&json!({ "state": "approved", "comments": "ok" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let view = sims.servicenow.state().ritm(&created.sys_id).unwrap();
    assert_eq!(view.approval, "approved");
    assert_eq!(view.stage, "fulfillment");
    sims.shutdown().await;
}

#[tokio::test]
async fn error_envelopes() {
    let sims = start().await;
    let created = ritm(&sims);
    let url = format!("{}/api/now/table/sc_req_item/{}", sims.servicenow.base_url(), created.sys_id);
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.text().await.unwrap(), NOT_AUTHENTICATED);
    let resp = client().get(&url).basic_auth(ids::SNOW_USER, Some("wrong")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.text().await.unwrap(), NOT_AUTHENTICATED);

    let resp = get(&sims, "/api/now/table/sc_req_item/00000000000000000000000000000000").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), NO_RECORD);

    let resp = client()
        .patch(&url)
        .basic_auth(ids::SNOW_READONLY_USER, Some(ids::SNOW_READONLY_PASSWORD))
        .json(&json!({ "state": "3" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"error":{"message":"Operation Failed","detail":"ACL Exception Update Failed due to security constraints"},"status":"failure"}"#
    );
    let resp = client()
        .patch(&url)
        .basic_auth(ids::SNOW_USER, Some(ids::SNOW_PASSWORD))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "failure");
    sims.shutdown().await;
}

#[tokio::test]
async fn oauth_password_grant_and_bearer_tokens() {
    let sims = start().await;
    let base = sims.servicenow.base_url();
    let resp = client()
        .post(format!("{base}/oauth_token.do"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", ids::SNOW_OAUTH_CLIENT_ID),
            ("client_secret", ids::SNOW_OAUTH_CLIENT_SECRET),
            ("username", ids::SNOW_USER),
            ("password", ids::SNOW_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with(r#"{"scope":"useraccount","token_type":"Bearer","expires_in":1799,"refresh_token":""#),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    let token = body["access_token"].as_str().unwrap();
    let resp = client()
        .get(format!("{base}/api/now/table/sys_user?sysparm_query=user_name=alexw&sysparm_fields=email,name"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({ "result": [{ "email": "AlexW@contoso.com", "name": "Alex Wilber" }] })
    );

    let resp = client()
        .post(format!("{base}/oauth_token.do"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", ids::SNOW_OAUTH_CLIENT_ID),
            ("client_secret", ids::SNOW_OAUTH_CLIENT_SECRET),
            ("refresh_token", body["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    sims.clock().advance(std::time::Duration::from_secs(1800));
    let resp = client().get(format!("{base}/api/now/table/sys_user")).bearer_auth(token).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    let resp = client()
        .post(format!("{base}/oauth_token.do"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", ids::SNOW_OAUTH_CLIENT_ID),
            ("client_secret", ids::SNOW_OAUTH_CLIENT_SECRET),
            ("username", ids::SNOW_USER),
            ("password", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.text().await.unwrap(), r#"{"error_description":"access_denied","error":"server_error"}"#);
    let log = sims.servicenow.requests();
    assert!(log[0].body.contains("password=%5Bredacted%5D"));
    assert!(!log[0].body.contains(ids::SNOW_PASSWORD));
    sims.shutdown().await;
}

#[tokio::test]
async fn rate_limit_rule_gives_429_with_headers() {
    let sims = start().await;
    // the budget is per clock hour: the clock moves only when the test says
    sims.clock().freeze();
    sims.servicenow.set_rate_limits(vec![RateLimitRule {
        sys_id: "a1b2c3d4e5f60718293a4b5c6d7e8f90".into(),
        user_name: None,
        requests_per_hour: 3,
    }]);
    for _ in 0..3 {
        let resp = get(&sims, "/api/now/table/sys_user?sysparm_limit=1").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit"), "3");
        assert_eq!(header(&resp, "x-ratelimit-rule"), "a1b2c3d4e5f60718293a4b5c6d7e8f90");
    }
    let resp = get(&sims, "/api/now/table/sys_user?sysparm_limit=1").send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let reset: i64 = header(&resp, "x-ratelimit-reset").parse().unwrap();
    let retry_after: i64 = header(&resp, "retry-after").parse().unwrap();
    let now = sims.clock().unix_seconds();
    assert_eq!(reset % 3600, 0);
    assert!((1..=3600).contains(&retry_after) && (now + retry_after - reset).abs() <= 1);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"error":{"message":"Rate limit exceeded","detail":"Rate limit of 3 requests per hour for Table API exceeded"},"status":"failure"}"#
    );
    // The next hour has a fresh budget.
    sims.clock().advance(std::time::Duration::from_secs(u64::try_from(retry_after).unwrap()));
    assert_eq!(get(&sims, "/api/now/table/sys_user?sysparm_limit=1").send().await.unwrap().status(), 200);
    sims.shutdown().await;
}

type Delivery = (axum::http::HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Delivery>>>);

async fn listener() -> (String, Received) {
    let received = Received::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/hooks/servicenow",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                store.0.lock().unwrap().push((headers, body.to_vec()));
                (axum::http::StatusCode::ACCEPTED, "queued")
            }
        }),
    );
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(tcp, app).await;
    });
    (format!("http://{addr}/hooks/servicenow"), received)
}

#[tokio::test]
async fn fires_the_webhook_to_a_local_listener() {
    let sims = start().await;
    let created = sims
        .servicenow
        .state()
        .create_ritm(
            NewRitm::new("alexw", ids::CAT_ITEM_TEAM_ALPHA_NAME)
                .opened_by("sarad")
                .variable("justification", "joining the team")
                .approved(),
        )
        .unwrap();
    let (url, received) = listener().await;
    let delivery = sims.servicenow.fire_webhook(&created.sys_id, &url, "X-Shared-Secret", "s3cret").await.unwrap();
    assert_eq!(delivery.status, 202);
    assert_eq!(delivery.body, "queued");
    let got = received.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    assert_eq!(headers["user-agent"], "ServiceNow/1.0");
    assert_eq!(headers["x-shared-secret"], "s3cret");
    assert_eq!(headers["content-type"], "application/json");
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload["source"], "servicenow");
    assert_eq!(payload["event"], "ritm.approved");
    assert_eq!(payload["instance"], ids::SNOW_INSTANCE);
    assert_eq!(payload["ritm"]["sys_id"], created.sys_id.as_str());
    assert_eq!(payload["ritm"]["number"], created.number.as_str());
    assert_eq!(payload["ritm"]["cat_item"], json!({ "sys_id": ids::CAT_ITEM_TEAM_ALPHA, "name": "Team Alpha" }));
    assert_eq!(
        payload["ritm"]["requested_for"],
        json!({ "sys_id": ids::ALEX_SNOW_SYS_ID, "user_name": "alexw", "email": "AlexW@contoso.com" })
    );
    assert_eq!(payload["ritm"]["opened_by"], json!({ "sys_id": ids::SARA_SNOW_SYS_ID, "email": "SaraD@contoso.com" }));
    assert_eq!(payload["ritm"]["approval"], "approved");
    assert_eq!(payload["ritm"]["stage"], "fulfillment");
    assert_eq!(payload["ritm"]["variables"], json!({ "justification": "joining the team" }));
    assert!(payload["sent_at"].as_str().unwrap().ends_with('Z'));

    // Signed delivery, via the HTTP admin endpoint.
    let resp = client()
        .post(format!("{}/sim/webhooks/fire", sims.servicenow.base_url()))
        .json(&json!({
            "ritm": created.number,
            "url": url,
            "event": "ritm.created",
            "secret_header": "X-Shared-Secret",
            "secret": "other",
            "hmac": { "header": "X-Signature", "key": "k", "prefix": "sha256=", "timestamp_header": "X-Timestamp" },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = received.0.lock().unwrap().clone();
    let (headers, body) = &got[1];
    assert_eq!(headers["x-shared-secret"], "other");
    let ts = headers["x-timestamp"].to_str().unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"k").unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    assert_eq!(
        headers["x-signature"].to_str().unwrap(),
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    assert_eq!(serde_json::from_slice::<Value>(body).unwrap()["event"], "ritm.created");

    let target = WebhookTarget {
        url: url.clone(),
        event: Some("ritm.approved".into()),
        headers: vec![],
        hmac: Some(HmacSigning {
            header: "X-Sig".into(),
            key: "k2".into(),
            prefix: String::new(),
            timestamp_header: None,
        }),
    };
    let d = sims.servicenow.fire_webhook_to(&created.sys_id, &target).await.unwrap();
    assert_eq!(d.status, 202);
    assert!(sims.servicenow.fire_webhook("RITM404", &url, "a", "b").await.is_err());
    sims.shutdown().await;
}

#[tokio::test]
async fn admin_creates_ritms_over_http() {
    let sims = start().await;
    let base = sims.servicenow.base_url();
    let resp = client()
        .post(format!("{base}/sim/ritms"))
        .json(&json!({ "requested_for": "alexw", "cat_item": "Standing desk", "variables": [["location", "Building 4"]] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let resp = client().get(format!("{base}/sim/ritms/{}", created["number"].as_str().unwrap())).send().await.unwrap();
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["ritm"]["cat_item"], ids::CAT_ITEM_UNMAPPED);
    assert_eq!(view["ritm"]["approval"], "requested");
    sims.shutdown().await;
}
