#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{client, graph_error, header, start};
use grantline_sims::{FaultRule, PathPattern, ids};
use http::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn twice_429_then_success() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    sims.graph.faults().push(
        FaultRule::respond(429).on(Method::POST, "/v1.0/groups/*/members/$ref").header("Retry-After", "2").times(2),
    );
    let send = || {
        client()
            .post(format!("{}/groups/{}/members/$ref", sims.graph.v1_url(), ids::GROUP_TEAM_ALPHA))
            .bearer_auth(&token)
            .json(
                &json!({ "@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", ids::ALEX_ID) }),
            )
            .send()
    };
    for _ in 0..2 {
        let resp = send().await.unwrap();
        assert_eq!(header(&resp, "retry-after"), "2");
        assert!(resp.headers().contains_key("request-id"));
        graph_error(
            resp,
            429,
            "Request_ThrottledTemporarily",
            "Your request is throttled temporarily. Please try after some time.",
        )
        .await;
    }
    assert!(!sims.graph.state().is_member(ids::GROUP_TEAM_ALPHA, ids::ALEX_ID));
    assert_eq!(send().await.unwrap().status(), 204);
    let log = sims.graph.requests();
    let statuses: Vec<(u16, bool)> = log.iter().map(|r| (r.status, r.fault)).collect();
    assert_eq!(statuses, [(429, true), (429, true), (204, false)]);
    assert_eq!(log[0].header("authorization"), Some("Bearer [redacted]"));
    sims.shutdown().await;
}

#[tokio::test]
async fn a_503_run_forever_until_removed() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    let id = sims.graph.faults().push(FaultRule::respond(503).path(PathPattern::prefix("/v1.0/users")).forever());
    let url = format!("{}/users/{}", sims.graph.v1_url(), ids::ALEX_ID);
    for _ in 0..3 {
        let resp = client().get(&url).bearer_auth(&token).send().await.unwrap();
        graph_error(resp, 503, "ServiceUnavailable", "The service is temporarily unavailable. Please try again later.")
            .await;
    }
    // Other paths are unaffected.
    let resp = client()
        .get(format!("{}/groups/{}", sims.graph.v1_url(), ids::GROUP_TEAM_ALPHA))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(sims.graph.faults().remove(id));
    assert_eq!(client().get(&url).bearer_auth(&token).send().await.unwrap().status(), 200);
    sims.shutdown().await;
}

#[tokio::test]
async fn custom_body_and_latency() {
    let sims = start().await;
    sims.servicenow.faults().push(
        FaultRule::respond(500)
            .on(Method::GET, "/api/now/table/sc_req_item")
            .json(&json!({ "error": { "message": "boom", "detail": null }, "status": "failure" })),
    );
    let url = format!("{}/api/now/table/sc_req_item", sims.servicenow.base_url());
    let resp = client().get(&url).basic_auth(ids::SNOW_USER, Some(ids::SNOW_PASSWORD)).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "boom");

    sims.servicenow.faults().set_latency(Duration::from_millis(300));
    let started = Instant::now();
    let resp = client().get(&url).basic_auth(ids::SNOW_USER, Some(ids::SNOW_PASSWORD)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    sims.servicenow.faults().set_latency(Duration::ZERO);
    sims.shutdown().await;
}

#[tokio::test]
async fn hang_trips_client_timeouts_and_abort_breaks_the_connection() {
    let sims = start().await;
    let token = common::grantline_token(&sims).await;
    sims.graph.faults().push(FaultRule::hang().path("/v1.0/users/*"));
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let err = impatient
        .get(format!("{}/users/{}", sims.graph.v1_url(), ids::ALEX_ID))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    let log = sims.graph.requests();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, 0);

    sims.graph.faults().push(FaultRule::abort().path("/v1.0/users/*"));
    let result = async {
        let resp =
            client().get(format!("{}/users/{}", sims.graph.v1_url(), ids::ALEX_ID)).bearer_auth(&token).send().await?;
        resp.bytes().await
    }
    .await;
    assert!(result.is_err());
    let started = Instant::now();
    sims.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn admin_routes_script_faults_and_the_clock() {
    let sims = start().await;
    let base = sims.servicenow.base_url();
    let resp = client()
        .post(format!("{base}/sim/faults"))
        .json(&json!({ "method": "GET", "path": "/api/now/table/*", "status": 429, "headers": [["Retry-After", "7"]], "times": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = client()
        .get(format!("{base}/api/now/table/sys_user"))
        .basic_auth(ids::SNOW_USER, Some(ids::SNOW_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after"), "7");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "failure");
    assert_eq!(body["error"]["message"], "Rate limit exceeded");

    let before = sims.clock().now();
    let resp =
        client().post(format!("{base}/sim/clock")).json(&json!({ "advance_seconds": 120 })).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(sims.graph.clock().now().duration_since(before).as_secs() >= 120);

    let log: Value = client().get(format!("{base}/sim/requests")).send().await.unwrap().json().await.unwrap();
    assert_eq!(log.as_array().unwrap().len(), 1);
    assert_eq!(log[0]["status"], 429);
    assert_eq!(log[0]["fault"], true);
    sims.shutdown().await;
}

#[tokio::test]
async fn describe_lists_urls_and_credentials() {
    let sims = start().await;
    let text = sims.describe();
    assert!(text.contains(&sims.login.token_url()));
    assert!(text.contains(&sims.graph.v1_url()));
    assert!(text.contains(&sims.servicenow.base_url()));
    assert!(text.contains(ids::APP_GRANTLINE_SECRET));
    assert!(text.contains(ids::SNOW_USER));
    sims.shutdown().await;
}
