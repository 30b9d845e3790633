#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use grantline_sims::{Sims, SimsConfig, ids};
use serde_json::Value;

pub async fn start() -> Sims {
    Sims::start(SimsConfig::demo()).await.expect("simulators start")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// Gets a Graph token over HTTP.
pub async fn token(sims: &Sims, client_id: &str, secret: &str) -> String {
    let resp = client()
        .post(sims.login.token_url())
        .form(&[
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("token json");
    body["access_token"].as_str().expect("access_token").to_owned()
}

pub async fn grantline_token(sims: &Sims) -> String {
    token(sims, ids::APP_GRANTLINE_ID, ids::APP_GRANTLINE_SECRET).await
}

pub async fn privileged_token(sims: &Sims) -> String {
    token(sims, ids::APP_PRIVILEGED_ID, ids::APP_PRIVILEGED_SECRET).await
}

pub async fn readonly_token(sims: &Sims) -> String {
    token(sims, ids::APP_READONLY_ID, ids::APP_READONLY_SECRET).await
}

/// Decodes the payload of a JWT-shaped token.
pub fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("payload part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("json payload")
}

pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// `YYYY-MM-DDTHH:MM:SS` with no zone and no fraction.
pub fn is_graph_date(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && s.chars().enumerate().all(|(i, c)| [4, 7, 10, 13, 16].contains(&i) || c.is_ascii_digit())
}

/// Checks a Graph error body and its correlation ids against the response headers; returns the body.
pub async fn graph_error(resp: reqwest::Response, status: u16, code: &str, message: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let request_id = header(&resp, "request-id");
    let client_request_id = header(&resp, "client-request-id");
    assert!(header(&resp, "content-type").starts_with("application/json"));
    let body: Value = resp.json().await.expect("error json");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["message"], message, "{body}");
    let inner = &body["error"]["innerError"];
    assert!(is_graph_date(inner["date"].as_str().unwrap_or_default()), "{inner}");
    assert_eq!(inner["request-id"], request_id.as_str());
    assert_eq!(inner["client-request-id"], client_request_id.as_str());
    assert_eq!(inner.as_object().map(|o| o.len()), Some(3));
    body
}
