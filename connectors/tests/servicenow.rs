#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The ServiceNow client against fixture servers that answer with the bodies and headers of
//! apis.md section 4.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use common::*;
use grantline_connectors::Secret;
use grantline_connectors::http::HttpConfig;
use grantline_connectors::servicenow::{
    RitmPatch, ServiceNowAuth, ServiceNowClient, ServiceNowConfig, ServiceNowError, UpdateOptions, ritm_state,
};
use grantline_connectors::token::ManualClock;
use grantline_shared::ErrorClass;

const RITM: &str = "a9e30c7dc61122760116894de7bcc7bd";
const USER: &str = "62826bf03710200044e0bfc8bcbe5df1";
const PASSWORD: &str = "integration-password-value";
const OAUTH_SECRET: &str = "oauth-client-secret-value";

fn not_found() -> Reply {
    Reply::json(
        404,
        r#"{"error":{"message":"No Record found","detail":"Record doesn't exist or ACL restricts the record retrieval"},"status":"failure"}"#,
    )
}

fn unauthenticated() -> Reply {
    Reply::json(
        401,
        r#"{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}"#,
    )
}

fn ritm_all(base: &str) -> serde_json::Value {
    serde_json::json!({
        "sys_id": { "display_value": RITM, "value": RITM },
        "number": { "display_value": "RITM0010482", "value": "RITM0010482" },
        "state": { "display_value": "Open", "value": "1" },
        "stage": { "display_value": "Fulfillment", "value": "fulfillment" },
        "approval": { "display_value": "Approved", "value": "approved" },
        "cat_item": { "display_value": "Group access", "link": format!("{base}/api/now/table/sc_cat_item/0b36816197113110a24734000153af45"), "value": "0b36816197113110a24734000153af45" },
        "requested_for": { "display_value": "Alex Doe", "link": format!("{base}/api/now/table/sys_user/{USER}"), "value": USER },
        "opened_by": { "display_value": "Morgan Lee", "link": format!("{base}/api/now/table/sys_user/m1"), "value": "m1" },
        "request": { "display_value": "REQ0010001", "link": format!("{base}/api/now/table/sc_request/r1"), "value": "r1" },
        "assignment_group": { "display_value": "", "value": "" },
        "short_description": { "display_value": "Finance BI access", "value": "Finance BI access" },
        "sys_updated_on": { "display_value": "2026-01-22 06:12:37", "value": "2026-01-22 14:12:37" }
    })
}

/// A small instance: one RITM, its variables, one user, two work notes.
fn instance(base: Arc<std::sync::OnceLock<String>>) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |req| {
        let base = base.get().cloned().unwrap_or_default();
        let path = req.path.as_str();
        match (req.method.as_str(), path) {
            ("GET", p) if p == format!("/api/now/table/sc_req_item/{RITM}") => {
                Reply::json(200, serde_json::json!({ "result": ritm_all(&base) }))
            }
            ("PATCH", p) if p == format!("/api/now/table/sc_req_item/{RITM}") => {
                if req.header("x-no-response-body") == Some("true") {
                    Reply::empty(204)
                } else {
                    Reply::json(200, serde_json::json!({ "result": ritm_all(&base) }))
                }
            }
            ("GET", "/api/now/table/sc_req_item") => {
                let hit = req.query_param("sysparm_query").as_deref() == Some("number=RITM0010482");
                let result = if hit { vec![ritm_all(&base)] } else { vec![] };
                Reply::json(200, serde_json::json!({ "result": result })).header("X-Total-Count", result_len(hit))
            }
            ("GET", "/api/now/table/sc_item_option_mtom") => Reply::json(
                200,
                serde_json::json!({ "result": [
                    { "sc_item_option.item_option_new.name": "group", "sc_item_option.value": "Finance BI" },
                    { "sc_item_option.item_option_new.name": "duration_days", "sc_item_option.value": "30" },
                    { "sc_item_option.item_option_new.name": "justification", "sc_item_option.value": "quarter close" }
                ] }),
            ),
            ("GET", p) if p == format!("/api/now/table/sys_user/{USER}") => Reply::json(
                200,
                serde_json::json!({ "result": { "sys_id": USER, "user_name": "alex", "email": "alex@contoso.com", "name": "Alex Doe" } }),
            ),
            ("GET", "/api/now/table/sys_journal_field") => Reply::json(
                200,
                serde_json::json!({ "result": [
                    { "sys_id": "j2", "element": "work_notes", "element_id": RITM, "value": "granted", "sys_created_on": "2026-01-22 14:15:00", "sys_created_by": "grantline" },
                    { "sys_id": "j1", "element": "work_notes", "element_id": RITM, "value": "validated", "sys_created_on": "2026-01-22 14:12:37", "sys_created_by": "grantline" }
                ] }),
            ),
            _ => not_found(),
        }
    }
}

fn result_len(hit: bool) -> &'static str {
    if hit { "1" } else { "0" }
}

async fn instance_fixture() -> Fixture {
    let base = Arc::new(std::sync::OnceLock::new());
    let fixture = Fixture::start(instance(base.clone())).await;
    base.set(fixture.url.clone()).unwrap();
    fixture
}

fn basic_config(fixture: &Fixture) -> ServiceNowConfig {
    ServiceNowConfig {
        instance_url: fixture.url.clone(),
        auth: ServiceNowAuth::Basic { username: "grantline.integration".into(), password: Secret::new(PASSWORD) },
        http: fast_http(),
    }
}

fn basic_client(fixture: &Fixture) -> ServiceNowClient {
    ServiceNowClient::new(&basic_config(fixture)).unwrap()
}

fn oauth_config(fixture: &Fixture) -> ServiceNowConfig {
    ServiceNowConfig {
        instance_url: fixture.url.clone(),
        auth: ServiceNowAuth::OAuth {
            client_id: "sn-client".into(),
            client_secret: Secret::new(OAUTH_SECRET),
            username: "grantline.integration".into(),
            password: Secret::new(PASSWORD),
            refresh_margin_secs: 300,
        },
        http: fast_http(),
    }
}

#[tokio::test]
async fn get_ritm_reads_values_and_display_values_with_basic_auth() {
    let fixture = instance_fixture().await;
    let sn = basic_client(&fixture);
    let ritm = sn.get_ritm(RITM).await.unwrap();
    assert_eq!(ritm.sys_id, RITM);
    assert_eq!(ritm.number, "RITM0010482");
    assert_eq!((ritm.state.value.as_str(), ritm.state.display_value.as_str()), ("1", "Open"));
    assert_eq!(ritm.stage.value, "fulfillment");
    assert_eq!(ritm.approval.value, "approved");
    let cat = ritm.cat_item.as_ref().unwrap();
    assert_eq!((cat.value.as_str(), cat.display_value.as_str()), ("0b36816197113110a24734000153af45", "Group access"));
    assert!(cat.link.as_deref().unwrap().starts_with(&fixture.url));
    let requested_for = ritm.requested_for.as_ref().unwrap();
    assert_eq!((requested_for.value.as_str(), requested_for.display_value.as_str()), (USER, "Alex Doe"));
    assert_eq!(ritm.opened_by.as_ref().unwrap().value, "m1");
    assert_eq!(ritm.assignment_group, None);
    assert_eq!(ritm.short_description, "Finance BI access");
    assert_eq!(ritm.sys_updated_on, "2026-01-22 14:12:37");
    assert_eq!(ritm.updated_at(), Some("2026-01-22T14:12:37Z".parse().unwrap()));

    let call = &fixture.requests()[0];
    assert_eq!(call.path, format!("/api/now/table/sc_req_item/{RITM}"));
    assert_eq!(call.query_param("sysparm_display_value").as_deref(), Some("all"));
    assert!(call.query_param("sysparm_fields").unwrap().contains("requested_for"));
    assert_eq!(call.header("accept"), Some("application/json"));
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("grantline.integration:{PASSWORD}"));
    assert_eq!(call.header("authorization"), Some(format!("Basic {expected}").as_str()));
}

#[tokio::test]
async fn get_ritm_by_number_queries_and_reports_no_match() {
    let fixture = instance_fixture().await;
    let sn = basic_client(&fixture);
    let ritm = sn.get_ritm_by_number("RITM0010482").await.unwrap();
    assert_eq!(ritm.sys_id, RITM);
    let call = &fixture.requests()[0];
    assert_eq!(call.path, "/api/now/table/sc_req_item");
    assert_eq!(call.query_param("sysparm_query").as_deref(), Some("number=RITM0010482"));
    assert_eq!(call.query_param("sysparm_limit").as_deref(), Some("1"));

    let err = sn.get_ritm_by_number("RITM0000000").await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("servicenow.not_found", ErrorClass::Permanent));

    // Characters that would change the encoded query are refused before sending.
    let err = sn.get_ritm_by_number("RITM1^ORactive=true").await.unwrap_err();
    assert_eq!(err.code(), "servicenow.invalid_input");
    assert_eq!(fixture.requests().len(), 2);
}

#[tokio::test]
async fn variables_come_back_as_a_name_value_map() {
    let fixture = instance_fixture().await;
    let sn = basic_client(&fixture);
    let vars = sn.get_variables(RITM).await.unwrap();
    assert_eq!(vars.get("group").map(String::as_str), Some("Finance BI"));
    assert_eq!(vars.get("duration_days").map(String::as_str), Some("30"));
    assert_eq!(vars.len(), 3);
    let call = &fixture.requests()[0];
    assert_eq!(call.path, "/api/now/table/sc_item_option_mtom");
    assert_eq!(call.query_param("sysparm_query"), Some(format!("request_item={RITM}")));
    assert_eq!(
        call.query_param("sysparm_fields").as_deref(),
        Some("sc_item_option.item_option_new.name,sc_item_option.value")
    );
}

#[tokio::test]
async fn get_user_reads_sys_user() {
    let fixture = instance_fixture().await;
    let sn = basic_client(&fixture);
    let user = sn.get_user(USER).await.unwrap();
    assert_eq!(
        (user.user_name.as_str(), user.email.as_str(), user.name.as_str()),
        ("alex", "alex@contoso.com", "Alex Doe")
    );
    let err = sn.get_user("0000").await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("servicenow.not_found", ErrorClass::Permanent));
    assert!(err.to_string().contains("No Record found"));
}

#[tokio::test]
async fn update_ritm_patches_only_the_given_fields() {
    let fixture = instance_fixture().await;
    let sn = basic_client(&fixture);
    let patch = RitmPatch::default()
        .work_notes("Granted: Alex Doe added to Finance BI (request-id rid-1)")
        .state(ritm_state::CLOSED_COMPLETE)
        .stage("complete");
    let updated = sn.update_ritm(RITM, &patch, UpdateOptions::default()).await.unwrap().unwrap();
    assert_eq!(updated.number, "RITM0010482");

    let none = sn
        .update_ritm(RITM, &RitmPatch::default().comments("done"), UpdateOptions { no_response_body: true })
        .await
        .unwrap();
    assert_eq!(none, None);

    let calls = fixture.requests();
    assert_eq!(calls[0].method, "PATCH");
    assert_eq!(calls[0].path, format!("/api/now/table/sc_req_item/{RITM}"));
    assert_eq!(calls[0].header("content-type"), Some("application/json"));
    assert_eq!(
        calls[0].body_json(),
        serde_json::json!({ "work_notes": "Granted: Alex Doe added to Finance BI (request-id rid-1)", "state": "3", "stage": "complete" })
    );
    assert_eq!(calls[0].header("x-no-response-body"), None);
    assert_eq!(calls[1].body_json(), serde_json::json!({ "comments": "done" }));
    assert_eq!(calls[1].header("x-no-response-body"), Some("true"));

    let err = sn.update_ritm(RITM, &RitmPatch::default(), UpdateOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), "servicenow.invalid_input");
    assert_eq!(fixture.requests().len(), 2);
}

#[tokio::test]
async fn work_notes_come_from_the_journal_oldest_first() {
    let fixture = instance_fixture().await;
    let sn = basic_client(&fixture);
    let notes = sn.list_work_notes(RITM).await.unwrap();
    let values: Vec<&str> = notes.iter().map(|n| n.value.as_str()).collect();
    assert_eq!(values, vec!["validated", "granted"]);
    assert_eq!(notes[0].created_at(), Some("2026-01-22T14:12:37Z".parse().unwrap()));
    let call = &fixture.requests()[0];
    assert_eq!(call.path, "/api/now/table/sys_journal_field");
    assert_eq!(call.query_param("sysparm_query"), Some(format!("element_id={RITM}^element=work_notes")));
}

#[tokio::test]
async fn error_envelopes_are_classified() {
    let script = Script::new([
        Reply::json(
            403,
            r#"{"error":{"message":"Operation Failed","detail":"ACL Exception Update Failed due to security constraints"},"status":"failure"}"#,
        ),
        Reply::json(400, r#"{"error":{"message":"Invalid table","detail":null},"status":"failure"}"#),
        Reply::json(500, r#"{"error":{"message":"Internal error","detail":""},"status":"failure"}"#),
        Reply::empty(503).header("Retry-After", "12"),
        unauthenticated(),
    ]);
    let fixture = Fixture::start(move |_| script.next_or(not_found)).await;
    let sn = basic_client(&fixture);
    let patch = RitmPatch::default().work_notes("x");

    let err = sn.update_ritm(RITM, &patch, UpdateOptions::default()).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("servicenow.forbidden", ErrorClass::Permanent));
    assert!(err.to_string().contains("ACL Exception Update Failed"), "{err}");
    let err = sn.get_ritm(RITM).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("servicenow.bad_request", ErrorClass::Permanent));
    let err = sn.get_ritm(RITM).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("servicenow.server_error", ErrorClass::TRANSIENT));
    let err = sn.get_ritm(RITM).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient { retry_after: Some(Duration::from_secs(12)) });
    // Basic auth cannot refresh: a 401 is final, and sent once.
    let err = sn.get_ritm(RITM).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("servicenow.unauthorized", ErrorClass::Permanent));
    assert_eq!(fixture.requests().len(), 5);
    let err = sn.get_ritm(RITM).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("servicenow.not_found", ErrorClass::Permanent));
}

#[tokio::test]
async fn rate_limited_is_throttled_with_the_rate_limit_headers() {
    let fixture = Fixture::start(|_| {
        Reply::json(
            429,
            r#"{ "error": { "message": "Rate limit exceeded", "detail": "Rate limit of 10 requests per hour for Table API exceeded" }, "status": "failure" }"#,
        )
        .header("Retry-After", "30")
        .header("X-RateLimit-Limit", "10")
        .header("X-RateLimit-Reset", "1769094000")
        .header("X-RateLimit-Rule", "9a8f3c0e1b2d4f6a8c0e2b4d6f8a0c2e")
    })
    .await;
    let sn = basic_client(&fixture);
    let err = sn.get_ritm(RITM).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Throttled { retry_after: Some(Duration::from_secs(30)) });
    assert_eq!(err.code(), "servicenow.throttled");
    let ServiceNowError::Api { rate_limit: Some(limit), body, .. } = &err else { panic!("{err:?}") };
    assert_eq!(limit.limit, Some(10));
    assert_eq!(limit.reset, Some(jiff::Timestamp::from_second(1769094000).unwrap()));
    assert_eq!(limit.rule.as_deref(), Some("9a8f3c0e1b2d4f6a8c0e2b4d6f8a0c2e"));
    assert_eq!(body.message, "Rate limit exceeded");
}

#[tokio::test]
async fn a_slow_instance_is_a_transient_timeout() {
    let fixture = Fixture::start(|_| Reply::json(200, r#"{"result":{}}"#).delay(Duration::from_secs(3))).await;
    let config = ServiceNowConfig {
        http: HttpConfig { connect_timeout_ms: 1_000, timeout_ms: 300, ..HttpConfig::default() },
        ..basic_config(&fixture)
    };
    let sn = ServiceNowClient::new(&config).unwrap();
    let err = sn.get_ritm(RITM).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("servicenow.timeout", ErrorClass::TRANSIENT));
}

/// An instance with `/oauth_token.do` (tokens `sn-1`, `sn-2`, ...) whose Table API answers
/// `table` for requests carrying a bearer token.
async fn oauth_fixture(table: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Fixture {
    let issued = AtomicUsize::new(0);
    Fixture::start(move |req| {
        if req.path == "/oauth_token.do" {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            return Reply::json(
                200,
                serde_json::json!({ "scope": "useraccount", "token_type": "Bearer", "expires_in": 1799,
                    "refresh_token": format!("refresh-{n}"), "access_token": format!("sn-{n}") }),
            );
        }
        table(req)
    })
    .await
}

#[tokio::test]
async fn oauth_password_grant_caches_and_refreshes_once_on_401() {
    let seen = AtomicUsize::new(0);
    let fixture = oauth_fixture(move |_| match seen.fetch_add(1, Ordering::SeqCst) {
        1 => unauthenticated(),
        _ => Reply::json(200, serde_json::json!({ "result": { "sys_id": USER, "user_name": "alex", "email": "alex@contoso.com", "name": "Alex Doe" } })),
    })
    .await;
    let sn = ServiceNowClient::with_clock(&oauth_config(&fixture), Arc::new(ManualClock::new())).unwrap();
    sn.get_user(USER).await.unwrap();
    // The second table call gets 401 with sn-1, the client refreshes and repeats with sn-2.
    sn.get_user(USER).await.unwrap();
    sn.get_user(USER).await.unwrap();

    let token_calls = fixture.requests_to("/oauth_token.do");
    assert_eq!(token_calls.len(), 2);
    assert_eq!(sn.token_fetch_count(), 2);
    let form = &token_calls[0];
    assert_eq!(form.method, "POST");
    assert_eq!(form.form_field("grant_type").as_deref(), Some("password"));
    assert_eq!(form.form_field("client_id").as_deref(), Some("sn-client"));
    assert_eq!(form.form_field("client_secret").as_deref(), Some(OAUTH_SECRET));
    assert_eq!(form.form_field("username").as_deref(), Some("grantline.integration"));
    assert_eq!(form.form_field("password").as_deref(), Some(PASSWORD));

    let table: Vec<Option<String>> = fixture
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/"))
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(
        table,
        vec![
            Some("Bearer sn-1".to_owned()),
            Some("Bearer sn-1".to_owned()),
            Some("Bearer sn-2".to_owned()),
            Some("Bearer sn-2".to_owned())
        ]
    );
}

#[tokio::test]
async fn oauth_401_twice_is_unauthorized() {
    let fixture = oauth_fixture(|_| unauthenticated()).await;
    let sn = ServiceNowClient::new(&oauth_config(&fixture)).unwrap();
    let err = sn.get_ritm(RITM).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("servicenow.unauthorized", ErrorClass::Permanent));
    assert_eq!(fixture.requests_to("/oauth_token.do").len(), 2);
    assert_eq!(fixture.requests().iter().filter(|r| r.path.starts_with("/api/")).count(), 2);
}

#[tokio::test]
async fn oauth_bad_credentials_are_permanent() {
    let fixture = Fixture::start(|req| {
        if req.path == "/oauth_token.do" {
            Reply::json(401, r#"{"error_description":"access_denied","error":"server_error"}"#)
        } else {
            Reply::json(200, r#"{"result":{}}"#)
        }
    })
    .await;
    let sn = ServiceNowClient::new(&oauth_config(&fixture)).unwrap();
    let err = sn.get_ritm(RITM).await.unwrap_err();
    assert!(matches!(err, ServiceNowError::Token(_)), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(err.code(), "servicenow.token.rejected");
    assert!(!err.to_string().contains(OAUTH_SECRET) && !err.to_string().contains(PASSWORD));
    assert!(fixture.requests().iter().all(|r| !r.path.starts_with("/api/")));
}

#[tokio::test]
async fn configuration_is_validated_with_the_key_named() {
    let config = ServiceNowConfig { instance_url: "not a url".into(), ..ServiceNowConfig::default() };
    assert_eq!(ServiceNowClient::new(&config).unwrap_err().key, "servicenow.instance_url");
    let config =
        ServiceNowConfig { instance_url: "https://acme.service-now.com".into(), ..ServiceNowConfig::default() };
    assert_eq!(ServiceNowClient::new(&config).unwrap_err().key, "servicenow.auth.username");
}
