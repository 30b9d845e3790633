#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Graph client against fixture servers that answer with the bodies and headers of
//! apis.md section 2.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use grantline_connectors::graph::{AddOutcome, GraphError, RemoveOutcome};
use grantline_connectors::http::HttpConfig;
use grantline_connectors::token::ManualClock;
use grantline_shared::{ErrorClass, StepError};

const USER_ID: &str = "87d349ed-44d7-43e1-9a83-5f2406dee5bd";
const GROUP_ID: &str = "02bd9fd6-8f93-4758-87c3-1fb73740a315";
const ALREADY: &str =
    "One or more added object references already exist for the following modified properties: 'members'.";
const MAIL_ENABLED: &str = "Cannot Update a mail-enabled security groups and or distribution list.";
const NOT_PRESENT: &str = "does not exist or one of its queried reference-property objects are not present.";

fn adele() -> serde_json::Value {
    serde_json::json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id,userPrincipalName,displayName,accountEnabled,userType,employeeType,department,employeeLeaveDateTime,mail)/$entity",
        "id": USER_ID, "userPrincipalName": "AdeleV@contoso.com",
        "displayName": "Adele Vance", "accountEnabled": true, "userType": "Member",
        "employeeType": "Employee", "department": "Retail", "employeeLeaveDateTime": null,
        "mail": "AdeleV@contoso.com"
    })
}

fn graph_calls(fixture: &Fixture) -> Vec<Recorded> {
    fixture.requests().into_iter().filter(|r| r.path.starts_with("/v1.0/")).collect()
}

#[tokio::test]
async fn get_user_sends_select_bearer_and_client_request_id() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| graph_reply(req, Reply::json(200, adele()))).await;
    let graph = graph_client(&fixture);
    let result = graph.get_user("AdeleV@contoso.com").await.unwrap();
    let user = result.value.unwrap();
    assert_eq!(user.id, USER_ID);
    assert_eq!(user.account_enabled, Some(true));
    assert_eq!(user.user_type.as_deref(), Some("Member"));
    assert_eq!(user.employee_leave_date_time, None);

    let calls = graph_calls(&fixture);
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "GET");
    assert_eq!(call.path, "/v1.0/users/AdeleV@contoso.com");
    assert_eq!(
        call.query.as_deref(),
        Some(
            "$select=id,userPrincipalName,displayName,accountEnabled,userType,employeeType,department,employeeLeaveDateTime,mail"
        )
    );
    assert_eq!(call.header("authorization"), Some("Bearer tok-1"));
    let sent = call.header("client-request-id").unwrap();
    assert!(uuid::Uuid::parse_str(sent).is_ok(), "{sent}");
    assert_eq!(result.correlation.client_request_id, sent);
    assert!(result.correlation.request_id.as_deref().unwrap().starts_with("rid-"));
}

#[tokio::test]
async fn every_call_gets_a_fresh_client_request_id() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| graph_reply(req, Reply::json(200, adele()))).await;
    let graph = graph_client(&fixture);
    let a = graph.get_user(USER_ID).await.unwrap().correlation;
    let b = graph.get_user(USER_ID).await.unwrap().correlation;
    assert_ne!(a.client_request_id, b.client_request_id);
    assert_ne!(a.request_id, b.request_id);
    let sent: Vec<String> =
        graph_calls(&fixture).iter().map(|r| r.header("client-request-id").unwrap().to_owned()).collect();
    assert_eq!(sent, vec![a.client_request_id, b.client_request_id]);
    // One token for both calls.
    assert_eq!(fixture.requests_to("/token").len(), 1);
}

#[tokio::test]
async fn guest_upns_are_percent_encoded_and_dollar_upns_quoted() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| graph_reply(req, Reply::json(200, adele()))).await;
    let graph = graph_client(&fixture);
    graph.get_user("alex_contoso.com#EXT#@fabrikam.onmicrosoft.com").await.unwrap();
    graph.get_user("$adm@contoso.com").await.unwrap();
    let calls = graph_calls(&fixture);
    assert_eq!(calls[0].path, "/v1.0/users/alex_contoso.com%23EXT%23@fabrikam.onmicrosoft.com");
    assert_eq!(calls[1].path, "/v1.0/users('$adm@contoso.com')");
}

#[tokio::test]
async fn unknown_user_is_none_with_correlation() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| {
        graph_error(req, 404, "Request_ResourceNotFound", &format!("Resource 'nobody@contoso.com' {NOT_PRESENT}"))
    })
    .await;
    let graph = graph_client(&fixture);
    let result = graph.get_user("nobody@contoso.com").await.unwrap();
    assert_eq!(result.value, None);
    assert!(result.correlation.request_id.is_some());
}

#[tokio::test]
async fn manager_present_missing_and_user_missing() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| match req.path.as_str() {
        p if p == format!("/v1.0/users/{USER_ID}/manager") => graph_reply(
            req,
            Reply::json(
                200,
                serde_json::json!({ "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects/$entity",
                  "@odata.type": "#microsoft.graph.user", "id": "7d54cb02-0000-0000-0000-000000000001", "displayName": "Sara Davis",
                  "userPrincipalName": "SaraD@contoso.com", "mail": "SaraD@contoso.com", "jobTitle": "Finance VP" }),
            ),
        ),
        "/v1.0/users/no-manager/manager" => {
            graph_error(req, 404, "Request_ResourceNotFound", &format!("Resource 'manager' {NOT_PRESENT}"))
        }
        _ => graph_error(req, 404, "Request_ResourceNotFound", &format!("Resource 'ghost' {NOT_PRESENT}")),
    })
    .await;
    let graph = graph_client(&fixture);
    let manager = graph.get_manager(USER_ID).await.unwrap().value.unwrap();
    assert_eq!(manager.display_name.as_deref(), Some("Sara Davis"));
    assert_eq!(manager.odata_type.as_deref(), Some("#microsoft.graph.user"));
    assert_eq!(graph.get_manager("no-manager").await.unwrap().value, None);
    let err = graph.get_manager("ghost").await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("graph.not_found", ErrorClass::Permanent));
}

#[tokio::test]
async fn get_group_selects_the_policy_properties() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| {
        graph_reply(
            req,
            Reply::json(
                200,
                serde_json::json!({ "id": GROUP_ID, "displayName": "Finance BI", "groupTypes": [], "mailEnabled": false,
                  "securityEnabled": true, "isAssignableToRole": null, "membershipRule": null, "onPremisesSyncEnabled": null, "mail": null }),
            ),
        )
    })
    .await;
    let graph = graph_client(&fixture);
    let group = graph.get_group(GROUP_ID).await.unwrap().value.unwrap();
    assert_eq!(group.display_name.as_deref(), Some("Finance BI"));
    assert!(group.membership_writable_in_graph());
    let call = &graph_calls(&fixture)[0];
    assert_eq!(call.path, format!("/v1.0/groups/{GROUP_ID}"));
    assert_eq!(
        call.query.as_deref(),
        Some(
            "$select=id,displayName,groupTypes,mailEnabled,securityEnabled,isAssignableToRole,membershipRule,onPremisesSyncEnabled,mail"
        )
    );
}

#[tokio::test]
async fn is_member_is_200_or_404() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| {
        if req.path.ends_with("/members/member-1") {
            graph_reply(
                req,
                Reply::json(200, serde_json::json!({ "@odata.type": "#microsoft.graph.user", "id": "member-1" })),
            )
        } else {
            graph_error(req, 404, "Request_ResourceNotFound", &format!("Resource '{GROUP_ID}' {NOT_PRESENT}"))
        }
    })
    .await;
    let graph = graph_client(&fixture);
    assert!(graph.is_member(GROUP_ID, "member-1").await.unwrap().value);
    assert!(!graph.is_member(GROUP_ID, "stranger").await.unwrap().value);
    let calls = graph_calls(&fixture);
    assert_eq!(calls[0].path, format!("/v1.0/groups/{GROUP_ID}/members/member-1"));
    assert_eq!(calls[0].query.as_deref(), Some("$select=id"));
}

#[tokio::test]
async fn add_member_posts_the_reference() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| graph_reply(req, Reply::empty(204))).await;
    let graph = graph_client(&fixture);
    let result = graph.add_member(GROUP_ID, USER_ID).await.unwrap();
    assert_eq!(result.value, AddOutcome::Added);
    let call = &graph_calls(&fixture)[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, format!("/v1.0/groups/{GROUP_ID}/members/$ref"));
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(
        call.body_json(),
        serde_json::json!({ "@odata.id": format!("{}/v1.0/directoryObjects/{USER_ID}", fixture.url) })
    );
    assert_eq!(result.correlation.client_request_id, call.header("client-request-id").unwrap());
}

#[tokio::test]
async fn duplicate_add_is_already_member() {
    let fixture =
        graph_fixture(TokenBehaviour::default(), |req| graph_error(req, 400, "Request_BadRequest", ALREADY)).await;
    let graph = graph_client(&fixture);
    let result = graph.add_member(GROUP_ID, USER_ID).await.unwrap();
    assert_eq!(result.value, AddOutcome::AlreadyMember);
    assert!(result.correlation.request_id.is_some());
}

#[tokio::test]
async fn add_member_failures_are_classified() {
    let seen = AtomicUsize::new(0);
    let fixture = graph_fixture(TokenBehaviour::default(), move |req| match seen.fetch_add(1, Ordering::SeqCst) {
        0 => graph_error(req, 400, "Request_BadRequest", MAIL_ENABLED),
        1 => graph_error(req, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
        2 => graph_error(req, 404, "Request_ResourceNotFound", &format!("Resource '{USER_ID}' {NOT_PRESENT}")),
        _ => graph_error(req, 400, "Request_BadRequest", "Invalid object identifier 'x'."),
    })
    .await;
    let graph = graph_client(&fixture);

    let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("graph.mail_enabled_group", ErrorClass::Permanent));
    assert_eq!(err.graph_code(), Some("Request_BadRequest"));
    assert_eq!(err.status(), Some(400));
    let correlation = err.correlation().unwrap();
    assert!(correlation.request_id.is_some());
    let step = StepError::from(err.clone());
    assert!(step.message.contains(MAIL_ENABLED), "{}", step.message);
    assert!(step.message.contains("Request_BadRequest"));

    let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("graph.forbidden", ErrorClass::Permanent));
    assert_eq!(err.graph_code(), Some("Authorization_RequestDenied"));

    let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("graph.not_found", ErrorClass::Permanent));

    let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("graph.bad_request", ErrorClass::Permanent));
}

#[tokio::test]
async fn remove_member_always_uses_ref_and_treats_absence_as_done() {
    let seen = AtomicUsize::new(0);
    let fixture = graph_fixture(TokenBehaviour::default(), move |req| match seen.fetch_add(1, Ordering::SeqCst) {
        0 => graph_reply(req, Reply::empty(204)),
        1 => graph_error(req, 404, "Request_ResourceNotFound", &format!("Resource '{GROUP_ID}' {NOT_PRESENT}")),
        2 => graph_error(
            req,
            400,
            "Request_BadRequest",
            "One or more removed object references do not exist for the following modified properties: 'members'.",
        ),
        _ => graph_error(req, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
    })
    .await;
    let graph = graph_client(&fixture);
    assert_eq!(graph.remove_member(GROUP_ID, USER_ID).await.unwrap().value, RemoveOutcome::Removed);
    assert_eq!(graph.remove_member(GROUP_ID, USER_ID).await.unwrap().value, RemoveOutcome::NotAMember);
    assert_eq!(graph.remove_member(GROUP_ID, USER_ID).await.unwrap().value, RemoveOutcome::NotAMember);
    let err = graph.remove_member(GROUP_ID, USER_ID).await.unwrap_err();
    assert_eq!(err.code(), "graph.forbidden");

    let calls = graph_calls(&fixture);
    assert_eq!(calls.len(), 4);
    for call in calls {
        assert_eq!(call.method, "DELETE");
        assert_eq!(call.path, format!("/v1.0/groups/{GROUP_ID}/members/{USER_ID}/$ref"));
        assert!(call.path.ends_with("/$ref"));
    }
}

#[tokio::test]
async fn throttled_twice_then_added() {
    let script = Script::new([
        Reply::json(429, serde_json::json!({"error":{"code":"Request_ThrottledTemporarily","message":"Your request is throttled temporarily. Please try after 2 seconds."}}))
            .header("Retry-After", "2")
            .header("x-ms-throttle-scope", "Tenant_Application/ReadWrite/app/tenant")
            .header("x-ms-throttle-information", "WriteLimitExceeded"),
        Reply::json(429, serde_json::json!({"error":{"code":"Request_ThrottledTemporarily","message":"Your request is throttled temporarily."}}))
            .header("Retry-After", "2"),
    ]);
    let fixture =
        graph_fixture(TokenBehaviour::default(), move |req| graph_reply(req, script.next_or(|| Reply::empty(204))))
            .await;
    let graph = graph_client(&fixture);
    for _ in 0..2 {
        let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Throttled { retry_after: Some(Duration::from_secs(2)) });
        assert_eq!(err.code(), "graph.throttled");
        assert!(err.correlation().unwrap().request_id.is_some());
    }
    assert_eq!(graph.add_member(GROUP_ID, USER_ID).await.unwrap().value, AddOutcome::Added);
    // The connector does not retry by itself: one HTTP call per attempt.
    assert_eq!(graph_calls(&fixture).len(), 3);
}

#[tokio::test]
async fn server_errors_are_transient_with_retry_after() {
    let in_30s = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(30);
    let http_date = jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&in_30s).unwrap();
    let script = Script::new([
        Reply::json(503, serde_json::json!({"error":{"code":"serviceNotAvailable","message":"Service unavailable"}})),
        Reply::json(503, "{}").header("Retry-After", &http_date),
        Reply::empty(504).header("Retry-After", "5"),
        Reply::empty(500),
        Reply::empty(408),
    ]);
    let fixture =
        graph_fixture(TokenBehaviour::default(), move |req| graph_reply(req, script.next_or(|| Reply::empty(204))))
            .await;
    let graph = graph_client(&fixture);

    let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("graph.unavailable", ErrorClass::TRANSIENT));

    let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
    let ErrorClass::Transient { retry_after: Some(wait) } = err.class() else { panic!("{err:?}") };
    assert!(wait > Duration::from_secs(27) && wait <= Duration::from_secs(30), "{wait:?}");

    let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient { retry_after: Some(Duration::from_secs(5)) });
    assert_eq!(err.code(), "graph.gateway_timeout");

    let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("graph.server_error", ErrorClass::TRANSIENT));
    let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("graph.request_timeout", ErrorClass::TRANSIENT));
}

#[tokio::test]
async fn a_slow_response_is_a_transient_timeout() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| {
        graph_reply(req, Reply::empty(204).delay(Duration::from_secs(3)))
    })
    .await;
    let http = HttpConfig { connect_timeout_ms: 1_000, timeout_ms: 300, ..HttpConfig::default() };
    let graph = graph_client_with(&fixture, http, Arc::new(ManualClock::new()));
    let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
    assert!(matches!(err, GraphError::Transport { .. }), "{err:?}");
    assert_eq!((err.code().as_str(), err.class()), ("graph.timeout", ErrorClass::TRANSIENT));
    let correlation = err.correlation().unwrap();
    assert_eq!(correlation.request_id, None);
    assert_eq!(graph_calls(&fixture)[0].header("client-request-id"), Some(correlation.client_request_id.as_str()));
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| graph_reply(req, Reply::empty(204))).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1.0", listener.local_addr().unwrap());
    drop(listener);
    let http = grantline_connectors::http::build_client(&fast_http()).unwrap();
    let tokens = grantline_connectors::TokenProvider::new(&token_config(&fixture), http.clone()).unwrap();
    let graph = grantline_connectors::GraphClient::from_parts(&dead, http, tokens).unwrap();
    let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("graph.connect", ErrorClass::TRANSIENT));
}

#[tokio::test]
async fn unauthorized_once_refreshes_the_token_and_succeeds() {
    let seen = AtomicUsize::new(0);
    let fixture = graph_fixture(TokenBehaviour::default(), move |req| match seen.fetch_add(1, Ordering::SeqCst) {
        0 => graph_error(req, 401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
        _ => graph_reply(req, Reply::empty(204)),
    })
    .await;
    let graph = graph_client(&fixture);
    let result = graph.add_member(GROUP_ID, USER_ID).await.unwrap();
    assert_eq!(result.value, AddOutcome::Added);
    let calls = graph_calls(&fixture);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].header("authorization"), Some("Bearer tok-1"));
    assert_eq!(calls[1].header("authorization"), Some("Bearer tok-2"));
    assert_ne!(calls[0].header("client-request-id"), calls[1].header("client-request-id"));
    assert_eq!(result.correlation.client_request_id, calls[1].header("client-request-id").unwrap());
    assert_eq!(fixture.requests_to("/token").len(), 2);
    // The new token stays cached.
    graph.add_member(GROUP_ID, USER_ID).await.unwrap();
    assert_eq!(fixture.requests_to("/token").len(), 2);
}

#[tokio::test]
async fn unauthorized_twice_is_permanent() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| {
        graph_error(req, 401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
    })
    .await;
    let graph = graph_client(&fixture);
    let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("graph.unauthorized", ErrorClass::Permanent));
    assert_eq!(err.graph_code(), Some("InvalidAuthenticationToken"));
    assert_eq!(graph_calls(&fixture).len(), 2);
    assert_eq!(fixture.requests_to("/token").len(), 2);
}

#[tokio::test]
async fn request_id_falls_back_to_the_lower_case_innererror() {
    let fixture = graph_fixture(TokenBehaviour::default(), |_req| {
        Reply::json(
            403,
            r#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation.","innererror":{"date":"2021-06-22T06:41:55","request-id":"54ec78e8-0000-0000-0000-000000000000","client-request-id":"90b324a1"}}}"#,
        )
    })
    .await;
    let graph = graph_client(&fixture);
    let err = graph.add_member(GROUP_ID, USER_ID).await.unwrap_err();
    assert_eq!(err.correlation().unwrap().request_id.as_deref(), Some("54ec78e8-0000-0000-0000-000000000000"));
    assert_eq!(err.graph_code(), Some("Authorization_RequestDenied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_calls_share_one_token_request() {
    let fixture = graph_fixture(TokenBehaviour { expires_in: 3599, delay: Some(Duration::from_millis(150)) }, |req| {
        graph_reply(req, Reply::json(200, adele()))
    })
    .await;
    let graph = graph_client(&fixture);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let graph = graph.clone();
        set.spawn(async move { graph.get_user(USER_ID).await });
    }
    while let Some(result) = set.join_next().await {
        assert!(result.unwrap().unwrap().value.is_some());
    }
    assert_eq!(fixture.requests_to("/token").len(), 1);
    assert_eq!(graph_calls(&fixture).len(), 20);
}

#[tokio::test]
async fn empty_ids_are_refused_before_sending() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| graph_reply(req, Reply::empty(204))).await;
    let graph = graph_client(&fixture);
    let err = graph.remove_member(GROUP_ID, " ").await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("graph.invalid_input", ErrorClass::Permanent));
    assert!(fixture.requests().is_empty());
}

// ---------------------------------------------------------------------------------------
// Spans: one per call, with the documented fields.

/// Closed spans (name and fields), and span id -> index while open.
type SpanLog = Arc<Mutex<Vec<(String, HashMap<String, String>)>>>;

#[derive(Clone, Default)]
struct Spans(SpanLog, Arc<Mutex<HashMap<u64, usize>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> tracing_subscriber::Layer<S>
    for Spans
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push((attrs.metadata().name().to_owned(), fields));
        self.1.lock().unwrap().insert(id.into_u64(), spans.len() - 1);
    }
    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(&index) = self.1.lock().unwrap().get(&id.into_u64()) else { return };
        values.record(&mut Fields(&mut self.0.lock().unwrap()[index].1));
    }
}

#[tokio::test]
async fn each_call_has_a_span_with_correlation_fields() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = Spans::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));

    let script = Script::new([Reply::empty(204)]);
    let fixture = graph_fixture(TokenBehaviour::default(), move |req| {
        script.next_or(|| {
            graph_error(req, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        })
    })
    .await;
    let graph = graph_client(&fixture);
    let added = graph.add_member(GROUP_ID, USER_ID).await.unwrap();
    let err = graph.remove_member(GROUP_ID, USER_ID).await.unwrap_err();

    let spans = spans.0.lock().unwrap().clone();
    let add = &spans.iter().find(|(name, _)| name == "graph.add_member").unwrap().1;
    assert_eq!(add["http.method"], "POST");
    assert_eq!(add["url.path"], format!("/v1.0/groups/{GROUP_ID}/members/$ref"));
    assert_eq!(add["http.status_code"], "204");
    assert_eq!(add["client_request_id"], added.correlation.client_request_id);
    assert!(!add.contains_key("error.code"));
    let remove = &spans.iter().find(|(name, _)| name == "graph.remove_member").unwrap().1;
    assert_eq!(remove["http.method"], "DELETE");
    assert_eq!(remove["http.status_code"], "403");
    assert_eq!(remove["error.code"], "graph.forbidden");
    assert_eq!(remove["request_id"], err.correlation().unwrap().request_id.clone().unwrap());
    assert!(spans.iter().any(|(name, _)| name == "token.fetch"));
    // No span field carries a token or the client secret.
    for (_, fields) in &spans {
        for value in fields.values() {
            assert!(!value.contains("tok-") && !value.contains(CLIENT_SECRET), "{value}");
        }
    }
}
