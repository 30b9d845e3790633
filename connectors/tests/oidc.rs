#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Approver sign-in: the authorize URL, the code exchange and every way its id_token can be
//! refused, against a fixture identity platform on 127.0.0.1.

mod common;

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Fixture, Reply, fast_http};
use grantline_connectors::Secret;
use grantline_connectors::oidc::{OidcClient, OidcConfig, PkcePair, SignedInUser, parse_callback, random_value};
use grantline_shared::ErrorClass;
use jiff::Timestamp;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{Value, json};

const TENANT_ID: &str = "5a0c1f00-0000-4000-8000-000000000001";
const DOMAIN: &str = "contoso.onmicrosoft.com";
const CLIENT_ID: &str = "30000000-0000-4000-8000-0000000000c1";
const SECRET: &str = "signin-secret-value-xyz";
const REDIRECT: &str = "https://approvals.contoso.com/signin";
const NONCE: &str = "nonce-7f3c";
const MEGAN: &str = "10000000-0000-4000-8000-000000000004";

struct Key {
    pkey: PKey<Private>,
    kid: String,
}

impl Key {
    fn new(kid: &str) -> Self {
        Key { pkey: PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(), kid: kid.to_owned() }
    }

    fn jwk(&self) -> Value {
        let rsa = self.pkey.rsa().unwrap();
        json!({ "kty": "RSA", "use": "sig", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(rsa.n().to_vec()), "e": URL_SAFE_NO_PAD.encode(rsa.e().to_vec()) })
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({ "typ": "JWT", "alg": "RS256", "kid": self.kid });
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut s = Signer::new(MessageDigest::sha256(), &self.pkey).unwrap();
        s.update(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(s.sign_to_vec().unwrap()))
    }
}

/// The identity platform: discovery (by tenant id or domain), keys, and a token endpoint
/// that answers with whatever the test put in `token`.
struct Platform {
    fixture: Fixture,
    token: Arc<Mutex<Reply>>,
}

impl Platform {
    async fn start(key: &Key) -> Self {
        let jwks = json!({ "keys": [key.jwk()] });
        let token = Arc::new(Mutex::new(Reply::empty(500)));
        let t = token.clone();
        let fixture = Fixture::start(move |req| {
            let base = format!("http://{}", req.header("host").unwrap_or(""));
            let path = req.path.as_str();
            if path.ends_with("/v2.0/.well-known/openid-configuration") {
                return Reply::json(
                    200,
                    json!({ "issuer": format!("{base}/{TENANT_ID}/v2.0"),
                        "authorization_endpoint": format!("{base}/{TENANT_ID}/oauth2/v2.0/authorize"),
                        "token_endpoint": format!("{base}/{TENANT_ID}/oauth2/v2.0/token"),
                        "jwks_uri": format!("{base}/{TENANT_ID}/discovery/v2.0/keys"),
                        "id_token_signing_alg_values_supported": ["RS256"] }),
                );
            }
            if path == format!("/{TENANT_ID}/discovery/v2.0/keys") {
                return Reply::json(200, jwks.clone());
            }
            if path.ends_with("/oauth2/v2.0/token") {
                return t.lock().unwrap().clone();
            }
            Reply::empty(404)
        })
        .await;
        Platform { fixture, token }
    }

    fn issuer(&self) -> String {
        format!("{}/{TENANT_ID}/v2.0", self.fixture.url)
    }

    fn answer(&self, reply: Reply) {
        *self.token.lock().unwrap() = reply;
    }

    fn answer_id_token(&self, id_token: &str) {
        self.answer(Reply::json(
            200,
            json!({ "token_type": "Bearer", "scope": "openid profile email https://graph.microsoft.com/User.Read",
                "expires_in": 3599, "ext_expires_in": 3599, "access_token": "eyJ.delegated.token", "id_token": id_token }),
        ));
    }

    fn client(&self, tenant: &str) -> OidcClient {
        OidcClient::new(&OidcConfig {
            authority: self.fixture.url.clone(),
            tenant: tenant.to_owned(),
            client_id: CLIENT_ID.to_owned(),
            client_secret: Secret::new(SECRET),
            redirect_uri: REDIRECT.to_owned(),
            http: fast_http(),
        })
        .unwrap()
    }
}

fn claims(platform: &Platform, now: Timestamp, extra: Value) -> Value {
    let t = now.as_second();
    let mut c = json!({ "aud": CLIENT_ID, "iss": platform.issuer(), "iat": t, "nbf": t, "exp": t + 3600,
        "email": "MeganB@contoso.com", "name": "Megan Bowen", "nonce": NONCE, "oid": MEGAN,
        "preferred_username": "MeganB@contoso.com", "sub": "pairwise-sub", "tid": TENANT_ID, "ver": "2.0" });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

#[tokio::test]
async fn the_authorize_url_asks_for_a_code_with_pkce() {
    let key = Key::new("k1");
    let platform = Platform::start(&key).await;
    let client = platform.client(TENANT_ID);
    let pkce = PkcePair::generate();
    let state = random_value();
    let url = client.authorize_url(&state, NONCE, Some("MeganB@contoso.com"), &pkce.challenge);
    assert_eq!(url.path(), format!("/{TENANT_ID}/oauth2/v2.0/authorize"));
    let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("client_id"), Some(CLIENT_ID));
    assert_eq!(get("response_type"), Some("code"));
    assert_eq!(get("redirect_uri"), Some(REDIRECT));
    assert_eq!(get("response_mode"), Some("query"));
    assert_eq!(get("scope"), Some("openid profile email"));
    assert_eq!(get("state"), Some(state.as_str()));
    assert_eq!(get("nonce"), Some(NONCE));
    assert_eq!(get("code_challenge"), Some(pkce.challenge.as_str()));
    assert_eq!(get("code_challenge_method"), Some("S256"));
    assert_eq!(get("login_hint"), Some("MeganB@contoso.com"));
    assert!(!url.as_str().contains(SECRET) && !url.as_str().contains(&pkce.verifier));
    let without = client.authorize_url(&state, NONCE, None, &pkce.challenge);
    assert!(!without.as_str().contains("login_hint"));
    assert!(platform.fixture.requests().is_empty(), "building the URL calls nothing");
}

#[tokio::test]
async fn a_code_exchange_returns_the_verified_approver() {
    let key = Key::new("k1");
    let platform = Platform::start(&key).await;
    let client = platform.client(TENANT_ID);
    let now = Timestamp::now();
    platform.answer_id_token(&key.sign(&claims(&platform, now, json!({}))));
    let pkce = PkcePair::generate();

    let cb = parse_callback(&format!("code=1.Acode&state=s1&session_state={}", random_value())).unwrap();
    let user = client.exchange_code(cb.code.expose(), &pkce.verifier, NONCE, now).await.unwrap();
    assert_eq!(
        user,
        SignedInUser {
            oid: MEGAN.to_owned(),
            tid: TENANT_ID.to_owned(),
            upn: Some("MeganB@contoso.com".to_owned()),
            email: Some("MeganB@contoso.com".to_owned()),
            name: Some("Megan Bowen".to_owned()),
        }
    );
    let req = &platform.fixture.requests_to("/oauth2/v2.0/token")[0];
    assert_eq!(req.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(req.form_field("grant_type").as_deref(), Some("authorization_code"));
    assert_eq!(req.form_field("code").as_deref(), Some("1.Acode"));
    assert_eq!(req.form_field("redirect_uri").as_deref(), Some(REDIRECT));
    assert_eq!(req.form_field("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(req.form_field("client_secret").as_deref(), Some(SECRET));
    assert_eq!(req.form_field("code_verifier").as_deref(), Some(pkce.verifier.as_str()));
    assert_eq!(req.form_field("scope").as_deref(), Some("openid profile email"));

    // Optional claims may be missing; the keys stay cached across sign-ins.
    platform.answer_id_token(&key.sign(&claims(
        &platform,
        now,
        json!({ "email": null, "name": null, "aud": [CLIENT_ID] }),
    )));
    let user = client.exchange_code("c2", &pkce.verifier, NONCE, now).await.unwrap();
    assert_eq!((user.email, user.name), (None, None));
    assert_eq!(platform.fixture.requests_to("/discovery/v2.0/keys").len(), 1);

    // Configured by domain, the tenant id and the issuer come from the discovery document.
    let by_domain = platform.client(DOMAIN);
    let user = by_domain.exchange_code("c3", &pkce.verifier, NONCE, now).await.unwrap();
    assert_eq!(user.tid, TENANT_ID);
    assert!(
        platform
            .fixture
            .requests()
            .iter()
            .any(|r| r.path == format!("/{DOMAIN}/v2.0/.well-known/openid-configuration"))
    );
    assert!(platform.fixture.requests().iter().any(|r| r.path == format!("/{DOMAIN}/oauth2/v2.0/token")));
}

#[tokio::test]
async fn id_tokens_that_do_not_belong_to_this_sign_in_are_refused() {
    let key = Key::new("k1");
    let platform = Platform::start(&key).await;
    let client = platform.client(TENANT_ID);
    let now = Timestamp::now();
    let t = now.as_second();
    let verifier = PkcePair::generate().verifier;
    let refused = |token: String| {
        platform.answer_id_token(&token);
        let client = client.clone();
        let verifier = verifier.clone();
        async move { client.exchange_code("code", &verifier, NONCE, now).await.unwrap_err() }
    };
    let signed = |extra: Value| key.sign(&claims(&platform, now, extra));

    let e = refused(signed(json!({ "nonce": "someone-elses" }))).await;
    assert_eq!((e.code().as_str(), e.class()), ("oidc.nonce_mismatch", ErrorClass::Permanent));
    assert_eq!(refused(signed(json!({ "nonce": null }))).await.code(), "oidc.nonce_mismatch");
    let forger = Key::new("k1");
    assert_eq!(refused(forger.sign(&claims(&platform, now, json!({})))).await.code(), "jwt.bad_signature");
    assert_eq!(refused(Key::new("k9").sign(&claims(&platform, now, json!({})))).await.code(), "jwt.unknown_key");
    assert_eq!(refused(signed(json!({ "aud": "another-app" }))).await.code(), "jwt.wrong_audience");
    let other_issuer = format!("{}/00000000-0000-0000-0000-000000000bad/v2.0", platform.fixture.url);
    assert_eq!(refused(signed(json!({ "iss": other_issuer }))).await.code(), "jwt.wrong_issuer");
    assert_eq!(refused(signed(json!({ "exp": t - 400 }))).await.code(), "jwt.expired");
    assert_eq!(refused(signed(json!({ "nbf": t + 400 }))).await.code(), "jwt.not_yet_valid");
    assert_eq!(
        refused(signed(json!({ "tid": "00000000-0000-0000-0000-000000000bad" }))).await.code(),
        "oidc.wrong_tenant"
    );
    assert_eq!(refused(signed(json!({ "oid": null }))).await.code(), "oidc.missing_claim");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims(&platform, now, json!({})).to_string())
    );
    assert_eq!(refused(unsigned).await.code(), "jwt.unsupported_alg");
    // An empty expected nonce never matches (a session that lost its nonce).
    platform.answer_id_token(&signed(json!({ "nonce": "" })));
    assert_eq!(client.exchange_code("code", &verifier, "", now).await.unwrap_err().code(), "oidc.nonce_mismatch");
}

#[tokio::test]
async fn token_endpoint_refusals_keep_their_oauth_codes() {
    let key = Key::new("k1");
    let platform = Platform::start(&key).await;
    let client = platform.client(TENANT_ID);
    let now = Timestamp::now();
    let exchange = || client.exchange_code("used-code", "verifier", NONCE, now);

    platform.answer(Reply::json(
        400,
        json!({ "error": "invalid_grant",
            "error_description": "AADSTS54005: OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.\r\nTrace ID: t\r\nCorrelation ID: c\r\nTimestamp: 2026-01-22 14:12:37Z",
            "error_codes": [54005] }),
    ));
    let e = exchange().await.unwrap_err();
    assert_eq!((e.code().as_str(), e.class()), ("token.invalid_grant", ErrorClass::Permanent));
    assert!(e.to_string().contains("AADSTS54005") && !e.to_string().contains("Trace ID"), "{e}");
    platform.answer(Reply::json(401, json!({ "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215] })));
    assert_eq!(exchange().await.unwrap_err().code(), "token.invalid_client");
    platform.answer(Reply::json(503, json!({ "error": "temporarily_unavailable" })));
    let e = exchange().await.unwrap_err();
    assert_eq!((e.code().as_str(), e.class().is_retryable()), ("token.unavailable", true));
    platform.answer(Reply::json(200, json!({ "token_type": "Bearer", "access_token": "a", "expires_in": 3599 })));
    assert_eq!(exchange().await.unwrap_err().code(), "oidc.malformed_response");
    platform.answer(Reply::json(200, "not json"));
    assert_eq!(exchange().await.unwrap_err().code(), "oidc.malformed_response");
    assert_eq!(client.exchange_code(" ", "v", NONCE, now).await.unwrap_err().code(), "oidc.invalid_callback");
    // Nothing secret leaks into errors or the client's Debug.
    let e = exchange().await.unwrap_err();
    for text in [e.to_string(), format!("{e:?}"), format!("{client:?}")] {
        assert!(!text.contains(SECRET) && !text.contains("used-code"), "{text}");
    }
}
