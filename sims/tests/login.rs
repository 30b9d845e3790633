#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{client, graph_error, jwt_payload, start};
use grantline_sims::botframework::{BOT_APP_ID, BOT_APP_SECRET, SIGNIN_APP_ID, SIGNIN_APP_SECRET};
use grantline_sims::ids;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::sign::Verifier;
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
        serde_json::json!([
            "GroupMember.ReadWrite.All",
            "User.Read.All",
            "User-LifeCycleInfo.Read.All",
            "MailboxSettings.Read"
        ])
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

// ---------------------------------------------------------------------------------------
// OpenID Connect: discovery, keys, the authorize endpoint and the authorization-code grant.

const REDIRECT: &str = "http://localhost/approvals/signin";

fn b64(part: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(part).unwrap()
}

/// Verifies an RS256 JWS against a JWKS; returns (header, claims).
fn verify_jws(token: &str, jwks: &Value) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&b64(parts[0])).unwrap();
    let claims: Value = serde_json::from_slice(&b64(parts[1])).unwrap();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("kid published");
    let n = BigNum::from_slice(&b64(jwk["n"].as_str().unwrap())).unwrap();
    let e = BigNum::from_slice(&b64(jwk["e"].as_str().unwrap())).unwrap();
    let key = PKey::from_rsa(Rsa::from_public_components(n, e).unwrap()).unwrap();
    let mut v = Verifier::new(MessageDigest::sha256(), &key).unwrap();
    v.update(format!("{}.{}", parts[0], parts[1]).as_bytes()).unwrap();
    assert!(v.verify(&b64(parts[2])).unwrap(), "signature");
    (header, claims)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn start_signin() -> grantline_sims::Sims {
    let sims = start().await;
    sims.login.set_redirect_uris(SIGNIN_APP_ID, &[REDIRECT, "https://approvals.contoso.com/signin"]).unwrap();
    sims
}

fn authorize_query(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut q: Vec<(String, String)> = [
        ("client_id", SIGNIN_APP_ID),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile email"),
        ("state", "st-1"),
        ("nonce", "no-1"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in extra {
        q.retain(|(n, _)| n != k);
        if !v.is_empty() {
            q.push(((*k).to_owned(), (*v).to_owned()));
        }
    }
    q
}

async fn authorize(sims: &grantline_sims::Sims, extra: &[(&str, &str)]) -> reqwest::Response {
    no_redirects().get(sims.login.authorize_url()).query(&authorize_query(extra)).send().await.unwrap()
}

/// The query of a redirect's `Location`, after checking where it points.
fn redirected(resp: &reqwest::Response, to: &str) -> std::collections::HashMap<String, String> {
    assert_eq!(resp.status(), 302);
    let location = url::Url::parse(&common::header(resp, "location")).unwrap();
    assert_eq!(format!("{}://{}{}", location.scheme(), location.host_str().unwrap(), location.path()), to);
    location.query_pairs().into_owned().collect()
}

async fn code_for(sims: &grantline_sims::Sims, extra: &[(&str, &str)]) -> String {
    let resp = authorize(sims, extra).await;
    redirected(&resp, REDIRECT)["code"].clone()
}

async fn redeem(sims: &grantline_sims::Sims, form: &[(&str, &str)]) -> reqwest::Response {
    let mut fields: Vec<(&str, &str)> = vec![
        ("client_id", SIGNIN_APP_ID),
        ("client_secret", SIGNIN_APP_SECRET),
        ("grant_type", "authorization_code"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile email"),
    ];
    for (k, v) in form {
        fields.retain(|(n, _)| n != k);
        if !v.is_empty() {
            fields.push((k, v));
        }
    }
    post_token(&sims.login.token_url(), &fields).await
}

fn html_of(text: &str) -> bool {
    text.starts_with("<!DOCTYPE html>")
}

#[tokio::test]
async fn openid_discovery_and_keys() {
    let sims = start().await;
    let issuer = format!("{}/{}/v2.0", sims.login.base_url(), ids::TENANT_ID);
    assert_eq!(sims.login.issuer(), issuer);
    for tenant in [ids::TENANT_ID, ids::TENANT_DOMAIN] {
        let url = format!("{}/{tenant}/v2.0/.well-known/openid-configuration", sims.login.base_url());
        let doc: Value = client().get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(doc["issuer"], issuer.as_str(), "the issuer names the tenant id, whichever way it was asked");
        assert_eq!(doc["authorization_endpoint"], sims.login.authorize_url());
        assert_eq!(doc["token_endpoint"], sims.login.token_url());
        assert_eq!(doc["jwks_uri"], sims.login.jwks_url());
        assert_eq!(doc["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));
        assert!(doc["response_types_supported"].as_array().unwrap().contains(&serde_json::json!("code")));
        assert!(doc["scopes_supported"].as_array().unwrap().contains(&serde_json::json!("openid")));
    }
    assert_eq!(sims.login.openid_configuration_url(), format!("{issuer}/.well-known/openid-configuration"));
    let resp = client()
        .get(format!("{}/nobody.onmicrosoft.com/v2.0/.well-known/openid-configuration", sims.login.base_url()))
        .send()
        .await
        .unwrap();
    aad_error(
        resp,
        400,
        "invalid_tenant",
        90002,
        "Tenant 'nobody.onmicrosoft.com' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.",
    )
    .await;

    let jwks: Value = client().get(sims.login.jwks_url()).send().await.unwrap().json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["use"], "sig");
    assert_eq!(keys[0]["kid"], sims.login.keys().active().kid());
    assert_eq!(keys[0]["issuer"], issuer.as_str());
    sims.shutdown().await;
}

#[tokio::test]
async fn the_authorization_code_flow_issues_a_signed_id_token() {
    let sims = start_signin().await;
    let resp = client()
        .put(format!("{}/sim/signin", sims.login.base_url()))
        .json(&serde_json::json!({ "user": ids::MEGAN_UPN }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(sims.login.signed_in_user().as_deref(), Some(ids::MEGAN_ID));

    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    // A loopback redirect URI matches on any port.
    let redirect = "http://localhost:49152/approvals/signin";
    let resp = authorize(
        &sims,
        &[("redirect_uri", redirect), ("code_challenge", challenge), ("code_challenge_method", "S256")],
    )
    .await;
    let q = redirected(&resp, "http://localhost/approvals/signin");
    assert_eq!(q["state"], "st-1");
    assert!(!q["session_state"].is_empty());
    let code = q["code"].clone();

    let resp = redeem(&sims, &[("code", &code), ("redirect_uri", redirect), ("code_verifier", verifier)]).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with(r#"{"token_type":"Bearer","scope":"openid profile email https://graph.microsoft.com/User.Read","expires_in":3599,"ext_expires_in":3599,"access_token":""#), "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let jwks: Value = client().get(sims.login.jwks_url()).send().await.unwrap().json().await.unwrap();
    let (header, claims) = verify_jws(body["id_token"].as_str().unwrap(), &jwks);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["iss"], sims.login.issuer());
    assert_eq!(claims["aud"], SIGNIN_APP_ID);
    assert_eq!(claims["tid"], ids::TENANT_ID);
    assert_eq!(claims["oid"], ids::MEGAN_ID);
    assert_eq!(claims["preferred_username"], ids::MEGAN_UPN);
    assert_eq!(claims["email"], ids::MEGAN_UPN);
    assert_eq!(claims["name"], "Megan Bowen");
    assert_eq!(claims["nonce"], "no-1");
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(claims["sub"].as_str().unwrap().len(), 43);
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 3600);
    // The access token is a delegated Graph token in the shared table.
    let access = body["access_token"].as_str().unwrap();
    let issued = sims.login.tokens().lookup(access).unwrap();
    assert_eq!(issued.audience, "https://graph.microsoft.com");
    assert!(issued.roles.is_empty());
    assert_eq!(jwt_payload(access)["scp"], "openid profile email User.Read");

    // A code is single use.
    let resp = redeem(&sims, &[("code", &code), ("redirect_uri", redirect), ("code_verifier", verifier)]).await;
    aad_error(resp, 400, "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.").await;

    // A rotated key signs the next id_token, and the JWKS lists both.
    let new = sims.login.keys().rotate().unwrap();
    let code = code_for(&sims, &[]).await;
    let body: Value = redeem(&sims, &[("code", &code)]).await.json().await.unwrap();
    let jwks: Value = client().get(sims.login.jwks_url()).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let (header, claims) = verify_jws(body["id_token"].as_str().unwrap(), &jwks);
    assert_eq!(header["kid"], new.kid());
    assert_eq!(claims["nonce"], "no-1");

    // Without openid there is no id_token; without profile and email, no such claims.
    let code = code_for(&sims, &[("scope", "openid")]).await;
    let body: Value = redeem(&sims, &[("code", &code)]).await.json().await.unwrap();
    let (_, claims) = verify_jws(body["id_token"].as_str().unwrap(), &jwks);
    assert!(claims.get("preferred_username").is_none() && claims.get("email").is_none());
    let code = code_for(&sims, &[("scope", "User.Read")]).await;
    let body: Value = redeem(&sims, &[("code", &code)]).await.json().await.unwrap();
    assert!(body.get("id_token").is_none());
    sims.shutdown().await;
}

#[tokio::test]
async fn the_authorize_endpoint_signs_in_only_someone_it_knows() {
    let sims = start_signin().await;
    // Nobody chosen and no hint: a sign-in page, no code.
    let resp = authorize(&sims, &[]).await;
    assert_eq!(resp.status(), 200);
    assert!(common::header(&resp, "content-type").starts_with("text/html"));
    let text = resp.text().await.unwrap();
    assert!(html_of(&text) && text.contains("Sign-in is required"), "{text}");
    // prompt=none cannot show a page.
    let resp = authorize(&sims, &[("prompt", "none")]).await;
    let q = redirected(&resp, REDIRECT);
    assert_eq!(q["error"], "login_required");
    assert!(q["error_description"].starts_with("AADSTS50058: "));
    assert_eq!(q["state"], "st-1");
    // login_hint naming a tenant user signs them in.
    let resp = authorize(&sims, &[("login_hint", ids::SARA_UPN)]).await;
    assert!(redirected(&resp, REDIRECT).contains_key("code"));
    let resp = authorize(&sims, &[("login_hint", "nobody@contoso.com")]).await;
    assert_eq!(resp.status(), 200);
    // A disabled account is refused on the page.
    let resp = authorize(&sims, &[("login_hint", ids::DISABLED_UPN)]).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("AADSTS50057"));

    sims.login.sign_in(ids::ALLAN_ID).unwrap();
    assert!(sims.login.sign_in("nobody@contoso.com").is_err());
    // Errors that cannot trust the redirect URI are pages, never redirects.
    for (extra, code) in [
        (vec![("client_id", "00000000-0000-0000-0000-00000000dead")], "AADSTS700016"),
        (vec![("client_id", "")], "AADSTS900144"),
        (vec![("redirect_uri", "https://evil.example.com/signin")], "AADSTS50011"),
        (vec![("redirect_uri", "http://localhost/other")], "AADSTS50011"),
        (vec![("redirect_uri", "https://approvals.contoso.com:8443/signin")], "AADSTS50011"),
    ] {
        let resp = authorize(&sims, &extra).await;
        assert_eq!(resp.status(), 200, "{extra:?}");
        assert!(resp.headers().get("location").is_none());
        let text = resp.text().await.unwrap();
        assert!(html_of(&text) && text.contains(code), "{extra:?}: {text}");
    }
    let resp = no_redirects()
        .get(format!("{}/nobody.onmicrosoft.com/oauth2/v2.0/authorize", sims.login.base_url()))
        .query(&authorize_query(&[]))
        .send()
        .await
        .unwrap();
    assert!(resp.text().await.unwrap().contains("AADSTS90002"));
    // Errors after the redirect URI is trusted go back to it.
    for (extra, error, code) in [
        (vec![("response_type", "token")], "unsupported_response_type", "AADSTS700054"),
        (vec![("response_type", "")], "invalid_request", "AADSTS900144"),
        (vec![("scope", "")], "invalid_request", "AADSTS900144"),
        (vec![("code_challenge", "abc"), ("code_challenge_method", "S512")], "invalid_request", "AADSTS90000"),
    ] {
        let resp = authorize(&sims, &extra).await;
        let q = redirected(&resp, REDIRECT);
        assert_eq!(q["error"], error, "{extra:?}");
        assert!(q["error_description"].starts_with(&format!("{code}: ")), "{q:?}");
        assert_eq!(q["state"], "st-1");
        assert!(!q.contains_key("code"));
    }
    // The chosen user wins over the hint; DELETE clears the choice.
    let code = code_for(&sims, &[("login_hint", ids::SARA_UPN)]).await;
    let body: Value = redeem(&sims, &[("code", &code)]).await.json().await.unwrap();
    assert_eq!(jwt_payload(body["id_token"].as_str().unwrap())["oid"], ids::ALLAN_ID);
    let resp = client().delete(format!("{}/sim/signin", sims.login.base_url())).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(authorize(&sims, &[]).await.status(), 200);
    // Redirect URIs can be set over HTTP.
    let resp = client()
        .put(format!("{}/sim/apps/{SIGNIN_APP_ID}/redirect_uris", sims.login.base_url()))
        .json(&serde_json::json!({ "redirect_uris": ["https://elsewhere.contoso.com/cb"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(authorize(&sims, &[("login_hint", ids::SARA_UPN)]).await.text().await.unwrap().contains("AADSTS50011"));
    sims.shutdown().await;
}

#[tokio::test]
async fn code_redemption_errors_match_the_identity_platform() {
    let sims = start_signin().await;
    sims.login.sign_in(ids::MEGAN_UPN).unwrap();
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let pkce = [("code_challenge", challenge), ("code_challenge_method", "S256")];

    let code = code_for(&sims, &pkce).await;
    let resp = redeem(&sims, &[("code", &code), ("code_verifier", "not-the-verifier")]).await;
    aad_error(
        resp,
        400,
        "invalid_grant",
        50148,
        "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
    )
    .await;
    let resp = redeem(&sims, &[("code", &code)]).await;
    aad_error(
        resp,
        400,
        "invalid_request",
        900144,
        "The request body must contain the following parameter: 'code_verifier'.",
    )
    .await;
    let resp = redeem(&sims, &[("code", &code), ("redirect_uri", "https://approvals.contoso.com/signin")]).await;
    let body = aad_error(resp, 400, "invalid_grant", 500112, &format!("The reply address 'https://approvals.contoso.com/signin' does not match the reply address '{REDIRECT}' provided when requesting Authorization code.")).await;
    assert_eq!(body["error_codes"], serde_json::json!([500112]));
    let resp = redeem(&sims, &[("code", &code), ("client_secret", "wrong")]).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Value>().await.unwrap()["error_codes"], serde_json::json!([7000215]));
    let resp = redeem(&sims, &[("code", &code), ("client_id", BOT_APP_ID), ("client_secret", BOT_APP_SECRET)]).await;
    aad_error(
        resp,
        400,
        "invalid_grant",
        70000,
        "The provided value for the 'code' parameter is not valid. The code was issued to a different client.",
    )
    .await;
    let resp = redeem(&sims, &[("code", "1.Agarbage")]).await;
    aad_error(resp, 400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.").await;
    let resp = redeem(&sims, &[]).await;
    aad_error(resp, 400, "invalid_request", 900144, "The request body must contain the following parameter: 'code'.")
        .await;
    // Failed attempts do not spend the code.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    assert_eq!(redeem(&sims, &[("code", &code), ("code_verifier", verifier)]).await.status(), 200);

    // Ten minutes later a code has expired.
    let code = code_for(&sims, &[]).await;
    sims.clock().advance(Duration::from_secs(601));
    let resp = redeem(&sims, &[("code", &code)]).await;
    aad_error(resp, 400, "invalid_grant", 70008, "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.").await;

    // The log never holds the client secret.
    assert!(sims.login.requests().iter().all(|r| !r.body.contains(SIGNIN_APP_SECRET)));
    sims.shutdown().await;
}

#[tokio::test]
async fn the_bot_app_gets_bot_framework_tokens() {
    let sims = start().await;
    let resp = post_token(
        &sims.login.token_url(),
        &[
            ("client_id", BOT_APP_ID),
            ("client_secret", BOT_APP_SECRET),
            ("scope", "https://api.botframework.com/.default"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let claims = jwt_payload(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://api.botframework.com");
    assert_eq!(claims["appid"], BOT_APP_ID);
    assert_eq!(claims["tid"], ids::TENANT_ID);
    assert!(sims.login.apps().iter().any(|a| a.client_id == SIGNIN_APP_ID && a.redirect_uris.is_empty()));
    sims.shutdown().await;
}
