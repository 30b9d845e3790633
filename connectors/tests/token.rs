#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The client-credentials token provider against a fixture token endpoint.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use grantline_connectors::http::build_client;
use grantline_connectors::token::{ManualClock, TokenError, TokenProvider};
use grantline_shared::ErrorClass;

fn provider(fixture: &Fixture, clock: Arc<ManualClock>) -> TokenProvider {
    TokenProvider::with_clock(&token_config(fixture), build_client(&fast_http()).unwrap(), clock).unwrap()
}

#[tokio::test]
async fn sends_the_documented_form_and_caches_the_token() {
    let fixture = graph_fixture(TokenBehaviour::default(), |_| Reply::empty(404)).await;
    let tokens = provider(&fixture, Arc::new(ManualClock::new()));
    for _ in 0..10 {
        assert_eq!(tokens.token().await.unwrap().secret(), "tok-1");
    }
    let calls = fixture.requests_to("/token");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, TOKEN_PATH);
    assert_eq!(call.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(call.form_field("grant_type").as_deref(), Some("client_credentials"));
    assert_eq!(call.form_field("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(call.form_field("client_secret").as_deref(), Some(CLIENT_SECRET));
    assert_eq!(call.form_field("scope").as_deref(), Some("https://graph.microsoft.com/.default"));
    assert_eq!(tokens.fetch_count(), 1);
}

#[tokio::test]
async fn refreshes_shortly_before_expiry() {
    // A 60 s token: the margin is a tenth of its lifetime (6 s), not the default 5 minutes.
    let fixture = graph_fixture(TokenBehaviour { expires_in: 60, delay: None }, |_| Reply::empty(404)).await;
    let clock = Arc::new(ManualClock::new());
    let tokens = provider(&fixture, clock.clone());
    assert_eq!(tokens.token().await.unwrap().secret(), "tok-1");
    clock.advance(Duration::from_secs(53));
    assert_eq!(tokens.token().await.unwrap().secret(), "tok-1");
    clock.advance(Duration::from_secs(2));
    assert_eq!(tokens.token().await.unwrap().secret(), "tok-2");
    assert_eq!(fixture.requests_to("/token").len(), 2);
}

#[tokio::test]
async fn long_lived_tokens_use_the_configured_margin() {
    let fixture = graph_fixture(TokenBehaviour { expires_in: 3599, delay: None }, |_| Reply::empty(404)).await;
    let clock = Arc::new(ManualClock::new());
    let tokens = provider(&fixture, clock.clone());
    tokens.token().await.unwrap();
    clock.advance(Duration::from_secs(3599 - 301));
    assert_eq!(tokens.token().await.unwrap().secret(), "tok-1");
    clock.advance(Duration::from_secs(2));
    assert_eq!(tokens.token().await.unwrap().secret(), "tok-2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_under_twenty_concurrent_callers() {
    let fixture = graph_fixture(TokenBehaviour { expires_in: 3599, delay: Some(Duration::from_millis(150)) }, |_| {
        Reply::empty(404)
    })
    .await;
    let tokens = provider(&fixture, Arc::new(ManualClock::new()));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let tokens = tokens.clone();
        set.spawn(async move { tokens.token().await });
    }
    while let Some(result) = set.join_next().await {
        assert_eq!(result.unwrap().unwrap().secret(), "tok-1");
    }
    assert_eq!(fixture.requests_to("/token").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_is_shared_by_the_callers_waiting_for_it() {
    let body = serde_json::json!({
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '00000000-0000-0000-0000-000000000000'.\r\nTrace ID: 1ac2a64a-16aa-433e-be83-c43c36ac1a01\r\nCorrelation ID: da2dd6b7-e090-459b-a2f5-1becad5c5142\r\nTimestamp: 2022-08-02 12:02:24Z",
        "error_codes": [7000215],
        "timestamp": "2022-08-02 12:02:24Z",
        "trace_id": "1ac2a64a-16aa-433e-be83-c43c36ac1a01",
        "correlation_id": "da2dd6b7-e090-459b-a2f5-1becad5c5142",
        "error_uri": "https://login.microsoftonline.com/error?code=7000215"
    });
    let fixture = Fixture::start(move |_| Reply::json(401, &body).delay(Duration::from_millis(300))).await;
    let tokens = provider(&fixture, Arc::new(ManualClock::new()));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let tokens = tokens.clone();
        set.spawn(async move { tokens.token().await });
    }
    while let Some(result) = set.join_next().await {
        let err = result.unwrap().unwrap_err();
        assert_eq!(err.code(), "token.invalid_client");
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(!err.to_string().contains(CLIENT_SECRET));
    }
    assert_eq!(fixture.requests().len(), 1);
    // A later, separate call tries again.
    assert!(tokens.token().await.is_err());
    assert_eq!(fixture.requests().len(), 2);
}

#[tokio::test]
async fn token_endpoint_errors_are_classified() {
    let unknown_tenant = serde_json::json!({"error":"invalid_request","error_description":"AADSTS90002: Tenant 'x' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.\r\nTrace ID: a","error_codes":[90002]});
    let bad_scope = serde_json::json!({"error":"invalid_scope","error_description":"AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope https://foo.microsoft.com/.default is not valid.","error_codes":[70011]});
    let unknown_app = serde_json::json!({"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier 'x' was not found in the directory 'y'.","error_codes":[700016]});
    let script = Script::new([
        Reply::json(400, unknown_tenant),
        Reply::json(400, bad_scope),
        Reply::json(400, unknown_app),
        Reply::json(429, "{}").header("Retry-After", "4"),
        Reply::json(503, "{}"),
        Reply::empty(200),
    ]);
    let fixture = Fixture::start(move |_| script.next_or(|| token_reply(1, 3599))).await;
    let tokens = provider(&fixture, Arc::new(ManualClock::new()));

    let err = tokens.token().await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("token.invalid_request", ErrorClass::Permanent));
    let TokenError::Rejected { error_codes, description, .. } = &err else { panic!("{err:?}") };
    assert_eq!(error_codes, &vec![90002]);
    assert!(description.starts_with("AADSTS90002: Tenant 'x' not found."), "{description}");

    let err = tokens.token().await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("token.invalid_scope", ErrorClass::Permanent));
    let err = tokens.token().await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("token.unauthorized_client", ErrorClass::Permanent));
    let err = tokens.token().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Throttled { retry_after: Some(Duration::from_secs(4)) });
    let err = tokens.token().await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("token.unavailable", ErrorClass::TRANSIENT));
    let err = tokens.token().await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("token.malformed", ErrorClass::Permanent));
    assert_eq!(tokens.token().await.unwrap().secret(), "tok-1");
}

#[tokio::test]
async fn a_failed_refresh_keeps_serving_the_unexpired_token() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let fixture = Fixture::start(move |_| match seen.fetch_add(1, Ordering::SeqCst) {
        0 => token_reply(1, 3599),
        _ => Reply::json(503, "{}"),
    })
    .await;
    let clock = Arc::new(ManualClock::new());
    let tokens = provider(&fixture, clock.clone());
    tokens.token().await.unwrap();
    // Inside the refresh margin: the refresh fails, the old token is still valid for 100 s.
    clock.advance(Duration::from_secs(3599 - 100));
    assert_eq!(tokens.token().await.unwrap().secret(), "tok-1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Past expiry there is nothing left to hand out.
    clock.advance(Duration::from_secs(200));
    let err = tokens.token().await.unwrap_err();
    assert_eq!(err.code(), "token.unavailable");
}

#[tokio::test]
async fn invalidate_forces_a_new_token() {
    let fixture = graph_fixture(TokenBehaviour::default(), |_| Reply::empty(404)).await;
    let tokens = provider(&fixture, Arc::new(ManualClock::new()));
    let first = tokens.token().await.unwrap();
    tokens.invalidate();
    let second = tokens.token().await.unwrap();
    assert_eq!(second.secret(), "tok-2");
    // Invalidating a token that is no longer cached does nothing.
    tokens.invalidate_if_current(&first);
    assert_eq!(tokens.token().await.unwrap().secret(), "tok-2");
    tokens.invalidate_if_current(&second);
    assert_eq!(tokens.token().await.unwrap().secret(), "tok-3");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_transient() {
    // Bind and drop a listener to find a port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let config = grantline_connectors::token::EntraTokenConfig {
        authority: format!("http://{addr}"),
        tenant: TENANT.into(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        ..Default::default()
    };
    let tokens = TokenProvider::new(&config, build_client(&fast_http()).unwrap()).unwrap();
    let err = tokens.token().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::TRANSIENT);
    assert_eq!(err.code(), "token.connect");
}
