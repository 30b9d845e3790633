#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{client, graph_error, jwt_payload, start};
use grantline_sims::ids;
use serde_json::Value;

async fn post_token(url: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client().post(url).form(form).send().await.expect("send")
}

#[tokio::test]
async fn issues_a_jwt_shaped_token_with_claims() {
    let sims = start().await;
    let resp = post_token(
        &sims.login.token_url(),
        &[
            ("client_id", ids::APP_GRANTLINE_ID),
            ("scope", "https://graph.microsoft.com/.default"),
            ("client_secret", ids::APP_GRANTLINE_SECRET),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with(r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":""#),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 4);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);
    let claims = jwt_payload(token);
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert_eq!(claims["tid"], ids::TENANT_ID);
    assert_eq!(claims["appid"], ids::APP_GRANTLINE_ID);
    assert_eq!(
        claims["roles"],
        serde_json::json!(["GroupMember.ReadWrite.All", "User.Read.All", "User-LifeCycleInfo.Read.All"])
    );
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 3599);
    sims.shutdown().await;
}

#[tokio::test]
async fn accepts_basic_auth_the_domain_and_the_exchange_resource() {
    let sims = start().await;
    let url = format!("{}/{}/oauth2/v2.0/token", sims.login.base_url(), ids::TENANT_DOMAIN);
    let resp = client()
        .post(url)
        .basic_auth(ids::APP_GRANTLINE_ID, Some(ids::APP_GRANTLINE_SECRET))
        .form(&[("scope", "https://outlook.office365.com/.default"), ("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let claims = jwt_payload(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://outlook.office365.com");
    sims.shutdown().await;
}

/// Checks the identity platform's error body and returns it.
async fn aad_error(resp: reqwest::Response, status: u16, error: &str, code: i64, message: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.unwrap();
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected =
        vec!["correlation_id", "error", "error_codes", "error_description", "error_uri", "timestamp", "trace_id"];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(body["error"], error);
    assert_eq!(body["error_codes"], serde_json::json!([code]));
    let ts = body["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), "2022-08-02 12:02:24Z".len());
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b' ');
    let trace = body["trace_id"].as_str().unwrap();
    let correlation = body["correlation_id"].as_str().unwrap();
    assert_eq!(
        body["error_description"],
        format!("AADSTS{code}: {message}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}")
    );
    assert!(body["error_uri"].as_str().unwrap().ends_with(&format!("/error?code={code}")));
    body
}

#[tokio::test]
async fn error_bodies_match_the_identity_platform() {
    let sims = start().await;
    let url = sims.login.token_url();
    let graph = "https://graph.microsoft.com/.default";

    let wrong_secret = post_token(
        &url,
        &[
            ("client_id", ids::APP_GRANTLINE_ID),
            ("client_secret", "nope"),
            ("scope", graph),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    aad_error(
        wrong_secret,
        401,
        "invalid_client",
        7000215,
        &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.", ids::APP_GRANTLINE_ID),
    )
    .await;

    let unknown_app = "99999999-0000-4000-8000-000000000000";
    let resp = post_token(
        &url,
        &[("client_id", unknown_app), ("client_secret", "x"), ("scope", graph), ("grant_type", "client_credentials")],
    )
    .await;
    aad_error(
        resp,
        400,
        "unauthorized_client",
        700016,
        &format!("Application with identifier '{unknown_app}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", ids::TENANT_ID),
    )
    .await;

    let bad_tenant = "00000000-1111-4000-8000-000000000000";
    let resp = post_token(
        &format!("{}/{bad_tenant}/oauth2/v2.0/token", sims.login.base_url()),
        &[
            ("client_id", ids::APP_GRANTLINE_ID),
            ("client_secret", ids::APP_GRANTLINE_SECRET),
            ("scope", graph),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    aad_error(
        resp,
        400,
        "invalid_request",
        90002,
        &format!("Tenant '{bad_tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."),
    )
    .await;

    let resp = post_token(
        &url,
        &[
            ("client_id", ids::APP_GRANTLINE_ID),
            ("client_secret", ids::APP_GRANTLINE_SECRET),
            ("scope", "https://foo.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    aad_error(
        resp,
        400,
        "invalid_scope",
        70011,
        "The provided value for the input parameter 'scope' is not valid. The scope https://foo.microsoft.com/.default is not valid.",
    )
    .await;

    let resp = post_token(
        &url,
        &[("client_id", ids::APP_GRANTLINE_ID), ("scope", graph), ("grant_type", "client_credentials")],
    )
    .await;
    aad_error(
        resp,
        400,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    )
    .await;

    let resp = post_token(
        &url,
        &[
            ("client_id", ids::APP_EXPIRED_SECRET_ID),
            ("client_secret", ids::APP_EXPIRED_SECRET_SECRET),
            ("scope", graph),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    let body = aad_error(
        resp,
        401,
        "invalid_client",
        7000222,
        &format!("The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.", ids::APP_EXPIRED_SECRET_ID),
    )
    .await;
    assert_eq!(body["error_codes"][0], 7000222);

    let resp = post_token(
        &url,
        &[
            ("client_id", ids::APP_GRANTLINE_ID),
            ("client_secret", ids::APP_GRANTLINE_SECRET),
            ("scope", graph),
            ("grant_type", "password"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 400);
    sims.shutdown().await;
}

#[tokio::test]
async fn graph_rejects_missing_and_expired_tokens() {
    let sims = start().await;
    let user_url = format!("{}/users/{}", sims.graph.v1_url(), ids::ALEX_ID);

    let resp = client().get(&user_url).send().await.unwrap();
    assert!(resp.headers().contains_key("www-authenticate"));
    graph_error(resp, 401, "InvalidAuthenticationToken", "Access token is empty.").await;

    let resp = client().get(&user_url).bearer_auth("not-a-jwt").send().await.unwrap();
    graph_error(resp, 401, "InvalidAuthenticationToken", "CompactToken parsing failed with error code: 80049217").await;

    let token = common::grantline_token(&sims).await;
    let resp = client().get(&user_url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    sims.clock().advance(Duration::from_secs(3599));
    let resp = client().get(&user_url).bearer_auth(&token).send().await.unwrap();
    graph_error(resp, 401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.").await;

    let exchange = sims.login.issue_token(ids::APP_GRANTLINE_ID, grantline_sims::EXCHANGE_RESOURCE).unwrap();
    let resp = client().get(&user_url).bearer_auth(&exchange).send().await.unwrap();
    graph_error(resp, 401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.").await;
    sims.shutdown().await;
}

#[tokio::test]
async fn short_token_lifetimes_are_configurable() {
    let mut cfg = grantline_sims::SimsConfig::demo();
    cfg.login.token_lifetime = Duration::from_secs(5);
    let sims = grantline_sims::Sims::start(cfg).await.unwrap();
    let resp = post_token(
        &sims.login.token_url(),
        &[
            ("client_id", ids::APP_GRANTLINE_ID),
            ("client_secret", ids::APP_GRANTLINE_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["expires_in"], 5);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let url = format!("{}/users/{}", sims.graph.v1_url(), ids::ALEX_ID);
    assert_eq!(client().get(&url).bearer_auth(&token).send().await.unwrap().status(), 200);
    sims.clock().advance(Duration::from_secs(6));
    assert_eq!(client().get(&url).bearer_auth(&token).send().await.unwrap().status(), 401);
    sims.shutdown().await;
}

#[tokio::test]
async fn request_log_redacts_secrets() {
    let sims = start().await;
    let _ = common::grantline_token(&sims).await;
    let _ = client()
        .post(sims.login.token_url())
        .basic_auth(ids::APP_GRANTLINE_ID, Some(ids::APP_GRANTLINE_SECRET))
        .header("Cookie", "session=abc")
        .form(&[("scope", "https://graph.microsoft.com/.default"), ("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let log = sims.login.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path, format!("/{}/oauth2/v2.0/token", ids::TENANT_ID));
    assert_eq!(log[0].status, 200);
    assert!(log[0].body.contains("client_secret=%5Bredacted%5D"), "{}", log[0].body);
    assert!(!log[0].body.contains(ids::APP_GRANTLINE_SECRET));
    assert_eq!(log[1].header("authorization"), Some("Basic [redacted]"));
    assert_eq!(log[1].header("cookie"), Some("[redacted]"));
    sims.shutdown().await;
}
