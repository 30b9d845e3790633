#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Configuration: defaults, deserialization, validation, and secrets that never print.

mod common;

use common::*;
use grantline_connectors::graph::GraphClient;
use grantline_connectors::servicenow::{ServiceNowAuth, ServiceNowClient, ServiceNowConfig};
use grantline_connectors::token::TokenProvider;
use grantline_connectors::{GraphConfig, HttpConfig, Secret};

const SECRETS: &[&str] = &["graph-client-secret-xyz", "sn-password-xyz", "sn-oauth-secret-xyz"];

fn assert_redacted(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "secret leaked in: {text}");
    }
}

#[test]
fn graph_config_from_toml_with_defaults() {
    let config: GraphConfig = toml::from_str(
        r#"
        [token]
        tenant = "contoso.onmicrosoft.com"
        client_id = "535fb089-9ff3-47b6-9bfb-4f1264799865"
        client_secret = "graph-client-secret-xyz"
        "#,
    )
    .unwrap();
    assert_eq!(config.base_url, "https://graph.microsoft.com/v1.0");
    assert_eq!(config.token.authority, "https://login.microsoftonline.com");
    assert_eq!(config.token.scope(), "https://graph.microsoft.com/.default");
    assert_eq!(config.token.refresh_margin_secs, 300);
    assert_eq!(config.http, HttpConfig::default());
    assert_eq!(config.token.client_secret.expose(), "graph-client-secret-xyz");
    assert_eq!(
        config.token.token_url().unwrap().as_str(),
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    );
    assert_redacted(&format!("{config:?}"));

    let client = GraphClient::new(&config).unwrap();
    assert_redacted(&format!("{client:?}"));
    assert_redacted(&format!("{:?}", client.token_provider()));

    let bad: Result<GraphConfig, _> = toml::from_str("base_url = 'x'\nunknown = 1");
    assert!(bad.is_err());
}

#[test]
fn servicenow_config_from_toml() {
    let basic: ServiceNowConfig = toml::from_str(
        r#"
        instance_url = "https://acme.service-now.com"
        [auth]
        kind = "basic"
        username = "grantline.integration"
        password = "sn-password-xyz"
        [http]
        timeout_ms = 10000
        "#,
    )
    .unwrap();
    assert_eq!(basic.http.timeout_ms, 10_000);
    assert_eq!(basic.http.connect_timeout_ms, HttpConfig::default().connect_timeout_ms);
    assert_redacted(&format!("{basic:?}"));
    assert_redacted(&format!("{:?}", ServiceNowClient::new(&basic).unwrap()));

    let oauth: ServiceNowConfig = toml::from_str(
        r#"
        instance_url = "https://acme.service-now.com"
        [auth]
        kind = "oauth"
        client_id = "sn-client"
        client_secret = "sn-oauth-secret-xyz"
        username = "grantline.integration"
        password = "sn-password-xyz"
        "#,
    )
    .unwrap();
    let ServiceNowAuth::OAuth { refresh_margin_secs, .. } = &oauth.auth else { panic!() };
    assert_eq!(*refresh_margin_secs, 300);
    assert_redacted(&format!("{oauth:?}"));
    assert_redacted(&format!("{:#?}", ServiceNowClient::new(&oauth).unwrap()));
}

#[test]
fn graph_config_is_validated_with_the_key_named() {
    let mut config = GraphConfig::default();
    assert_eq!(GraphClient::new(&config).unwrap_err().key, "token.tenant");
    config.token.tenant = "t".into();
    assert_eq!(GraphClient::new(&config).unwrap_err().key, "token.client_id");
    config.token.client_id = "c".into();
    assert_eq!(GraphClient::new(&config).unwrap_err().key, "token.client_secret");
    config.token.client_secret = Secret::new("s");
    config.base_url = "graph.microsoft.com".into();
    assert_eq!(GraphClient::new(&config).unwrap_err().key, "graph.base_url");
    config.base_url = "https://graph.microsoft.com/v1.0".into();
    config.http.timeout_ms = 0;
    assert_eq!(GraphClient::new(&config).unwrap_err().key, "http.timeout_ms");
}

#[tokio::test]
async fn tokens_and_providers_never_print_secrets() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| graph_reply(req, Reply::empty(204))).await;
    let mut config = token_config(&fixture);
    config.client_secret = Secret::new(SECRETS[0]);
    let tokens = TokenProvider::new(&config, grantline_connectors::http::build_client(&fast_http()).unwrap()).unwrap();
    let token = tokens.token().await.unwrap();
    assert_eq!(format!("{token:?}"), "AccessToken(***)");
    let printed = format!("{tokens:?} {config:?} {}", config.client_secret);
    assert_redacted(&printed);
    assert!(!printed.contains("tok-1"));
}
