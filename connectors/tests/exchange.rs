#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Exchange client against fixture servers that answer with the recorded shapes of
//! exchange-notes section 3.3: success envelopes with warnings (body and `X-Warnings`), the
//! cmdlet-failure envelope, the NUL-byte 403, 429 with `Retry-After`, and paging by nextLink.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use grantline_connectors::exchange::{Change, ExchangeClient, ExchangeConfig, ExchangeError, names_user};
use grantline_connectors::http::{HttpConfig, build_client};
use grantline_connectors::token::{EntraTokenConfig, ManualClock, TokenProvider};
use grantline_connectors::{ConfigError, Secret};
use grantline_shared::{ErrorClass, StepError};
use serde_json::{Value, json};

const TENANT_ID: &str = "5a0c1f00-0000-4000-8000-000000000001";
const INVOKE: &str = "/adminapi/beta/5a0c1f00-0000-4000-8000-000000000001/InvokeCommand";
const FINANCE: &str = "finance@contoso.com";
const ALEX: &str = "AlexW@contoso.com";
const ALREADY: &str = "The appropriate access control entry is already present on the object \"CN=finance,OU=contoso.onmicrosoft.com,OU=Microsoft Exchange Hosted Organizations,DC=NAMPR01A001,DC=PROD,DC=OUTLOOK,DC=COM\" for account \"NAMPR01A001\\AlexW\".";
const ABSENT: &str = "Can't remove the access control entry on the object \"CN=finance,OU=contoso.onmicrosoft.com,OU=Microsoft Exchange Hosted Organizations,DC=NAMPR01A001,DC=PROD,DC=OUTLOOK,DC=COM\" for the user account because the ACE doesn't exist on the object.";
const UNCHANGED: &str = "The command completed successfully but no settings of 'finance' have been modified.";

/// Exchange's correlation headers on any reply.
fn exo(req: &Recorded, reply: Reply) -> Reply {
    let request_id = format!("rid-{}", uuid::Uuid::new_v4());
    let client_request_id = req.header("client-request-id").unwrap_or(&request_id).to_owned();
    reply.header("request-id", &request_id).header("client-request-id", client_request_id)
}

/// A 200 with the captured envelope, warnings in the body and in `X-Warnings`.
fn success(req: &Recorded, rows: Value, warnings: &[&str]) -> Reply {
    let body = json!({
        "@odata.context": format!("https://outlook.office.com/adminapi/beta/{TENANT_ID}/$metadata#Collection(Exchange.GenericHashTable)"),
        "adminapi.warnings@odata.type": "#Collection(String)",
        "@adminapi.warnings": warnings,
        "value": rows,
    });
    let mut reply = exo(req, Reply::json(200, body));
    for w in warnings {
        reply = reply.header("X-Warnings", w);
    }
    reply
}

/// The captured cmdlet-failure envelope.
fn failure_body(code: &str, exception: &str, reason: &str) -> Value {
    json!({"error":{"code":code,"message":"Error executing cmdlet",
        "details":[{"code":"Client","target":"","message":format!("Ex6F9304|{exception}|{reason}")}],
        "innererror":{"message":"Error executing cmdlet","type":"Microsoft.Exchange.Admin.OData.Core.ODataServiceException","stacktrace":"…",
          "internalexception":{"message":"Exception of type 'Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletExecutionException' was thrown.",
            "type":"Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletExecutionException","stacktrace":"…"}}},
     "adminapi.warnings@odata.type":"#Collection(String)","@adminapi.warnings":[]})
}

fn cmdlet_failure(req: &Recorded, status: u16, exception: &str, reason: &str) -> Reply {
    let code = if status == 404 { "NotFound" } else { "BadRequest" };
    exo(req, Reply::json(status, failure_body(code, exception, reason)))
}

const NOT_FOUND_TYPE: &str = "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException";

fn not_found(req: &Recorded, what: &str) -> Reply {
    cmdlet_failure(
        req,
        404,
        NOT_FOUND_TYPE,
        &format!(
            "The operation couldn't be performed because object '{what}' couldn't be found on 'NAMPR01A001DC01.NAMPR01A001.PROD.OUTLOOK.COM'."
        ),
    )
}

fn exchange_token(fixture: &Fixture) -> EntraTokenConfig {
    EntraTokenConfig { resource: "https://outlook.office365.com".into(), ..token_config(fixture) }
}

fn client_with(fixture: &Fixture, http: HttpConfig, anchor: Option<&str>) -> ExchangeClient {
    let http_client = build_client(&http).unwrap();
    let tokens =
        TokenProvider::with_clock(&exchange_token(fixture), http_client.clone(), Arc::new(ManualClock::new())).unwrap();
    ExchangeClient::from_parts(&fixture.url, TENANT_ID, anchor, http_client, tokens).unwrap()
}

fn client(fixture: &Fixture) -> ExchangeClient {
    client_with(fixture, fast_http(), None)
}

fn calls(fixture: &Fixture) -> Vec<Recorded> {
    fixture.requests().into_iter().filter(|r| r.path.starts_with("/adminapi/")).collect()
}

fn cmdlet(r: &Recorded) -> String {
    r.body_json()["CmdletInput"]["CmdletName"].as_str().unwrap_or_default().to_owned()
}

fn params(r: &Recorded) -> Value {
    r.body_json()["CmdletInput"]["Parameters"].clone()
}

#[tokio::test]
async fn add_full_access_sends_the_module_shaped_request() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| {
        success(req, json!([{ "Identity": "finance", "User": ALEX, "AccessRights": ["FullAccess"] }]), &[])
    })
    .await;
    let exchange = client(&fixture);
    let first = exchange.add_full_access(FINANCE, ALEX, false).await.unwrap();
    assert_eq!(first.value, Change::Applied);
    let second = exchange.remove_full_access(FINANCE, ALEX).await.unwrap();
    assert_eq!(second.value, Change::Applied);

    let sent = calls(&fixture);
    assert_eq!(sent.len(), 2);
    let add = &sent[0];
    assert_eq!(add.method, "POST");
    assert_eq!(add.path, INVOKE);
    assert_eq!(
        add.body_json(),
        json!({ "CmdletInput": { "CmdletName": "Add-MailboxPermission", "Parameters": {
            "Identity": FINANCE, "User": ALEX, "AccessRights": ["FullAccess"], "InheritanceType": "All",
            "AutoMapping": false, "Confirm": false } } })
    );
    assert_eq!(add.header("authorization"), Some("Bearer tok-1"));
    assert_eq!(add.header("x-anchormailbox"), Some("UPN:finance@contoso.com"));
    assert_eq!(add.header("prefer"), Some("odata.maxpagesize=1000"));
    assert_eq!(add.header("x-cmdletname"), Some("Add-MailboxPermission"));
    assert!(add.header("content-type").unwrap().starts_with("application/json"));
    let crid = add.header("client-request-id").unwrap();
    assert!(uuid::Uuid::parse_str(crid).is_ok());
    assert_eq!(first.correlation.client_request_id, crid);
    assert!(first.correlation.request_id.as_deref().unwrap().starts_with("rid-"));
    // One connection-id per client, a fresh client-request-id per call.
    assert_eq!(add.header("connection-id"), sent[1].header("connection-id"));
    assert_eq!(add.header("connection-id"), Some(exchange.connection_id()));
    assert_ne!(add.header("client-request-id"), sent[1].header("client-request-id"));
    assert_eq!(cmdlet(&sent[1]), "Remove-MailboxPermission");
    assert_eq!(
        params(&sent[1]),
        json!({ "Identity": FINANCE, "User": ALEX, "AccessRights": ["FullAccess"], "InheritanceType": "All", "Confirm": false })
    );
    assert_eq!(fixture.requests_to("/token").len(), 1);
    let token_request = &fixture.requests_to("/token")[0];
    assert_eq!(token_request.form_field("scope").as_deref(), Some("https://outlook.office365.com/.default"));
}

type Answer = Box<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// Answers queued by the test, then an empty success.
#[derive(Clone, Default)]
struct Answers(Arc<Mutex<VecDeque<Answer>>>);

impl Answers {
    fn push(&self, f: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        self.0.lock().unwrap().push_back(Box::new(f));
    }

    fn answer(&self, req: &Recorded) -> Reply {
        match self.0.lock().unwrap().pop_front() {
            Some(f) => f(req),
            None => success(req, json!([]), &[]),
        }
    }
}

async fn scripted() -> (Fixture, Answers) {
    let answers = Answers::default();
    let a = answers.clone();
    let fixture = graph_fixture(TokenBehaviour::default(), move |req| a.answer(req)).await;
    (fixture, answers)
}

#[tokio::test]
async fn warnings_in_the_body_or_the_header_make_writes_idempotent() {
    let (fixture, answers) = scripted().await;
    let exchange = client(&fixture);
    let warn = |w: &'static str| move |req: &Recorded| success(req, Value::Null, &[w]);
    answers.push(warn(ALREADY));
    assert_eq!(exchange.add_full_access(FINANCE, ALEX, true).await.unwrap().value, Change::AlreadyPresent);
    answers.push(warn(ABSENT));
    assert_eq!(exchange.remove_full_access(FINANCE, ALEX).await.unwrap().value, Change::NotPresent);
    answers.push(warn(ALREADY));
    assert_eq!(exchange.add_send_as(FINANCE, ALEX).await.unwrap().value, Change::AlreadyPresent);
    answers.push(warn(ABSENT));
    assert_eq!(exchange.remove_send_as(FINANCE, ALEX).await.unwrap().value, Change::NotPresent);
    answers.push(warn(UNCHANGED));
    assert_eq!(exchange.add_send_on_behalf(FINANCE, ALEX).await.unwrap().value, Change::AlreadyPresent);
    answers.push(warn(UNCHANGED));
    assert_eq!(exchange.remove_send_on_behalf(FINANCE, ALEX).await.unwrap().value, Change::NotPresent);
    // The warning only in the X-Warnings header.
    answers.push(|req: &Recorded| {
        exo(req, Reply::json(200, json!({ "@adminapi.warnings": [], "value": [] })).header("X-Warnings", ALREADY))
    });
    assert_eq!(exchange.add_send_as(FINANCE, ALEX).await.unwrap().value, Change::AlreadyPresent);
    // No warning: the write changed something.
    assert_eq!(exchange.add_send_on_behalf(FINANCE, ALEX).await.unwrap().value, Change::Applied);
    assert_eq!(exchange.remove_send_as(FINANCE, ALEX).await.unwrap().value, Change::Applied);

    let sent = calls(&fixture);
    let sob: Vec<&Recorded> = sent.iter().filter(|r| cmdlet(r) == "Set-Mailbox").collect();
    assert_eq!(sob.len(), 3);
    assert_eq!(
        params(sob[0]),
        json!({ "Identity": FINANCE, "GrantSendOnBehalfTo": { "@odata.type": "#Exchange.GenericHashTable", "add": ALEX }, "Confirm": false })
    );
    assert_eq!(
        params(sob[1])["GrantSendOnBehalfTo"],
        json!({ "@odata.type": "#Exchange.GenericHashTable", "remove": ALEX })
    );
    assert!(sob.iter().all(|r| !params(r)["GrantSendOnBehalfTo"].is_array()), "never the overwriting list");
    let send_as = sent.iter().find(|r| cmdlet(r) == "Add-RecipientPermission").unwrap();
    assert_eq!(
        params(send_as),
        json!({ "Identity": FINANCE, "Trustee": ALEX, "AccessRights": ["SendAs"], "Confirm": false })
    );
}

/// One row of the classification table.
struct Case {
    name: &'static str,
    reply: fn(&Recorded) -> Reply,
    code: &'static str,
    class: ErrorClass,
    says: &'static str,
}

fn nul_403(req: &Recorded) -> Reply {
    exo(
        req,
        Reply {
            status: 403,
            headers: vec![("content-encoding".into(), "gzip".into())],
            body: "\0".repeat(16),
            delay: None,
        },
    )
}

#[tokio::test]
async fn failures_are_classified_from_the_recorded_shapes() {
    let secs = |n| Some(Duration::from_secs(n));
    let cases = [
        Case {
            name: "verbatim not found",
            reply: |r| not_found(r, FINANCE),
            code: "exchange.not_found",
            class: ErrorClass::Permanent,
            says: "couldn't be found on",
        },
        Case {
            name: "folder user unknown",
            reply: |r| {
                cmdlet_failure(
                    r,
                    400,
                    "Microsoft.Exchange.Management.StoreTasks.InvalidExternalUserIdException",
                    "The user \"x\" is either not valid SMTP address, or there is no matching information.",
                )
            },
            code: "exchange.not_found",
            class: ErrorClass::Permanent,
            says: "not valid SMTP address",
        },
        Case {
            name: "ambiguous",
            reply: |r| {
                cmdlet_failure(
                    r,
                    400,
                    "Microsoft.Exchange.Configuration.Tasks.ManagementObjectAmbiguousException",
                    "The operation couldn't be performed because 'Finance' matches multiple entries.",
                )
            },
            code: "exchange.ambiguous",
            class: ErrorClass::Permanent,
            says: "matches multiple entries",
        },
        Case {
            name: "parameter binding",
            reply: |r| {
                cmdlet_failure(
                    r,
                    400,
                    "System.Management.Automation.ParameterBindingException",
                    "A parameter cannot be found that matches parameter name 'Colour'.",
                )
            },
            code: "exchange.invalid_parameter",
            class: ErrorClass::Permanent,
            says: "'Colour'",
        },
        Case {
            name: "other cmdlet error",
            reply: |r| {
                cmdlet_failure(
                    r,
                    400,
                    "Microsoft.Exchange.Configuration.Tasks.TaskException",
                    "The mailbox is on hold.",
                )
            },
            code: "exchange.cmdlet_error",
            class: ErrorClass::Permanent,
            says: "TaskException: The mailbox is on hold.",
        },
        Case {
            name: "REST-cmdlet variant",
            reply: |r| {
                exo(
                    r,
                    Reply::json(
                        400,
                        json!({"error":{"code":"BadRequest","message":"An server side error occured.","innererror":{"message":"Deep reason.","type":"Microsoft.Exchange.Admin.OData.Core.ODataServiceException"}}}),
                    ),
                )
            },
            code: "exchange.bad_request",
            class: ErrorClass::Permanent,
            says: "Deep reason.",
        },
        Case {
            name: "NUL-byte 403",
            reply: nul_403,
            code: "exchange.forbidden",
            class: ErrorClass::Permanent,
            says: "the cmdlet is unknown or the app lacks the Exchange RBAC role (Exchange.ManageAsApp + a role assignment)",
        },
        Case {
            name: "empty 403",
            reply: |r| exo(r, Reply::empty(403)),
            code: "exchange.forbidden",
            class: ErrorClass::Permanent,
            says: "the app lacks the Exchange RBAC role",
        },
        Case {
            name: "403 with a body",
            reply: |r| exo(r, Reply::json(403, json!({"error":{"code":"Forbidden","message":"Access is denied."}}))),
            code: "exchange.forbidden",
            class: ErrorClass::Permanent,
            says: "Access is denied.",
        },
        Case {
            name: "429 Retry-After seconds",
            reply: |r| {
                exo(
                    r,
                    Reply::json(429, json!({"error":{"code":"TooManyRequests","message":"throttled"}}))
                        .header("Retry-After", "7"),
                )
            },
            code: "exchange.throttled",
            class: ErrorClass::Throttled { retry_after: secs(7) },
            says: "throttled",
        },
        Case {
            name: "429 Rate-Limit-Reset only",
            reply: |r| {
                exo(r, Reply::json(429, json!({})).header("Rate-Limit-Reset", "3").header("Rate-Limit-Remaining", "0"))
            },
            code: "exchange.throttled",
            class: ErrorClass::Throttled { retry_after: secs(3) },
            says: "HTTP 429",
        },
        Case {
            name: "503 Retry-After",
            reply: |r| exo(r, Reply::empty(503).header("Retry-After", "2")),
            code: "exchange.unavailable",
            class: ErrorClass::Transient { retry_after: secs(2) },
            says: "HTTP 503",
        },
        Case {
            name: "500",
            reply: |r| {
                exo(
                    r,
                    Reply::json(
                        500,
                        json!({"error":{"code":"InternalServerError","message":"An server side error occured."}}),
                    ),
                )
            },
            code: "exchange.server_error",
            class: ErrorClass::TRANSIENT,
            says: "server side error",
        },
        Case {
            name: "408",
            reply: |r| exo(r, Reply::empty(408)),
            code: "exchange.request_timeout",
            class: ErrorClass::TRANSIENT,
            says: "HTTP 408",
        },
        Case {
            name: "405 (v1.0)",
            reply: |r| {
                exo(
                    r,
                    Reply::json(
                        405,
                        json!({"error":{"code":"MethodNotAllowed","message":"The requested resource does not support http method 'POST'."}}),
                    ),
                )
            },
            code: "exchange.client_error",
            class: ErrorClass::Permanent,
            says: "does not support",
        },
    ];
    for case in cases {
        let fixture = graph_fixture(TokenBehaviour::default(), case.reply).await;
        let exchange = client(&fixture);
        let err = exchange.add_full_access(FINANCE, ALEX, true).await.unwrap_err();
        assert_eq!(err.code(), case.code, "{}: {err}", case.name);
        assert_eq!(err.class(), case.class, "{}: {err}", case.name);
        let text = err.to_string();
        assert!(text.contains(case.says), "{}: {text}", case.name);
        assert!(text.contains("request-id: rid-"), "{}: {text}", case.name);
        let step = StepError::from(err);
        assert_eq!((step.code.as_str(), step.class), (case.code, case.class), "{}", case.name);
        assert!(!step.message.contains("tok-"), "{}", case.name);
    }
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| {
        let at = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(30)).unwrap();
        exo(req, Reply::empty(429).header("Retry-After", at.strftime("%a, %d %b %Y %H:%M:%S GMT")))
    })
    .await;
    let err = client(&fixture).add_send_as(FINANCE, ALEX).await.unwrap_err();
    let ErrorClass::Throttled { retry_after: Some(wait) } = err.class() else { panic!("{err:?}") };
    assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
}

#[tokio::test]
async fn unauthorized_refreshes_once_then_is_permanent() {
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let fixture = graph_fixture(TokenBehaviour::default(), move |req| match s.fetch_add(1, Ordering::SeqCst) {
        0 => exo(req, Reply::empty(401)),
        1 => success(req, json!([]), &[]),
        _ => exo(req, Reply::empty(401)),
    })
    .await;
    let exchange = client(&fixture);
    assert_eq!(exchange.add_send_as(FINANCE, ALEX).await.unwrap().value, Change::Applied);
    let sent = calls(&fixture);
    assert_eq!(
        (sent[0].header("authorization"), sent[1].header("authorization")),
        (Some("Bearer tok-1"), Some("Bearer tok-2"))
    );
    assert_ne!(sent[0].header("client-request-id"), sent[1].header("client-request-id"));
    let err = exchange.add_send_as(FINANCE, ALEX).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("exchange.unauthorized", ErrorClass::Permanent));
    assert_eq!(calls(&fixture).len(), 4);
    assert_eq!(fixture.requests_to("/token").len(), 3);
}

#[tokio::test]
async fn get_results_follow_next_link_with_the_same_body() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| {
        let page = req.query_param("$skiptoken");
        let base = format!("http://{}", req.header("host").unwrap());
        match page.as_deref() {
            None => {
                let mut reply = success(req, json!([
                    { "Identity": "finance", "User": "NT AUTHORITY\\SELF", "AccessRights": ["FullAccess, ReadPermission"], "IsInherited": false, "Deny": false },
                    { "Identity": "finance", "User": ALEX, "AccessRights": ["FullAccess"], "IsInherited": false, "Deny": false, "InheritanceType": "All" },
                ]), &[]);
                let mut body: Value = serde_json::from_str(&reply.body).unwrap();
                body["@odata.nextLink"] = json!(format!("{base}{INVOKE}?$skiptoken=2"));
                reply.body = body.to_string();
                reply
            }
            _ => success(req, json!([
                { "Identity": "finance", "User": "NAMPR01A001\\Administrator", "AccessRights": ["FullAccess"], "IsInherited": true, "Deny": true },
                { "Identity": "finance", "User": "NAMPR01A001\\Organization Management", "AccessRights": ["FullAccess"], "IsInherited": true, "Deny": false },
                { "Identity": "finance", "User": "SaraD@contoso.com", "AccessRights": ["ReadPermission"], "IsInherited": false, "Deny": false },
                { "Identity": "finance", "User": "NAMPR01A001\\IsaiahL", "AccessRights": ["FullAccess"], "IsInherited": false, "Deny": true },
                { "Identity": "finance", "User": "Megan Bowen", "AccessRights": "FullAccess", "IsInherited": false, "Deny": false },
            ]), &[]),
        }
    })
    .await;
    let exchange = client(&fixture);
    let grants = exchange.full_access(FINANCE).await.unwrap();
    let users: Vec<&str> = grants.value.iter().map(|g| g.user.as_str()).collect();
    assert_eq!(users, vec![ALEX, "Megan Bowen"], "SELF, inherited, Deny and non-FullAccess rows are left out");
    assert!(names_user(&grants.value[1].user, "MeganB@contoso.com", Some("Megan Bowen")));
    let sent = calls(&fixture);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].path, INVOKE);
    assert_eq!(sent[1].query.as_deref(), Some("$skiptoken=2"));
    assert_eq!(sent[0].body, sent[1].body, "the same body to the next link");
    assert_eq!(params(&sent[0]), json!({ "Identity": FINANCE, "ResultSize": "Unlimited" }));
    assert_eq!(grants.correlation.client_request_id, sent[0].header("client-request-id").unwrap());
}

#[tokio::test]
async fn a_next_link_to_another_host_is_not_followed() {
    let elsewhere = graph_fixture(TokenBehaviour::default(), |req| success(req, json!([]), &[])).await;
    let other = elsewhere.url.clone();
    let fixture = graph_fixture(TokenBehaviour::default(), move |req| {
        exo(req, Reply::json(200, json!({ "@adminapi.warnings": [], "value": [], "@odata.nextLink": format!("{other}{INVOKE}?$skiptoken=1") })))
    })
    .await;
    let err = client(&fixture).send_as(FINANCE).await.unwrap_err();
    assert!(matches!(err, ExchangeError::Decode { .. }), "{err:?}");
    assert_eq!((err.code().as_str(), err.class()), ("exchange.decode", ErrorClass::Permanent));
    assert!(elsewhere.requests().is_empty(), "the token never left the configured host");
}

#[tokio::test]
async fn get_mailbox_reads_the_row_and_not_found_is_none() {
    let (fixture, answers) = scripted().await;
    let exchange = client(&fixture);
    answers.push(|req| {
        success(req, json!([{ "Identity": "finance", "Name": "finance", "Alias": "finance", "DisplayName": "Finance",
            "PrimarySmtpAddress": FINANCE, "UserPrincipalName": FINANCE, "RecipientTypeDetails": "SharedMailbox",
            "ExchangeGuid": "40000000-0000-4000-8000-000000000101", "GrantSendOnBehalfTo@odata.type": "#Collection(String)",
            "GrantSendOnBehalfTo": ["AlexW"],
            "GrantSendOnBehalfToWithDisplayNames": [{ "DisplayName": "Alex Wilber", "PrimarySmtpAddress": ALEX }] }]), &[])
    });
    let mailbox = exchange.get_mailbox(FINANCE).await.unwrap().value.unwrap();
    assert!(mailbox.is_shared());
    assert_eq!((mailbox.identity.as_str(), mailbox.display_name.as_str()), ("finance", "Finance"));
    assert_eq!(mailbox.primary_smtp_address, FINANCE);
    assert_eq!(mailbox.grant_send_on_behalf_to, vec![ALEX]);
    assert!(mailbox.has_send_on_behalf(ALEX, None));
    assert!(!mailbox.has_send_on_behalf("SaraD@contoso.com", None));
    answers.push(|req| {
        success(req, json!([{ "Identity": "SaraD", "DisplayName": "Sara Davis", "PrimarySmtpAddress": "SaraD@contoso.com", "RecipientTypeDetails": "UserMailbox", "GrantSendOnBehalfTo": [] }]), &[])
    });
    assert!(!exchange.get_mailbox("SaraD@contoso.com").await.unwrap().value.unwrap().is_shared());
    answers.push(|req| not_found(req, "nobody@contoso.com"));
    let missing = exchange.get_mailbox("nobody@contoso.com").await.unwrap();
    assert_eq!(missing.value, None);
    assert!(missing.correlation.request_id.is_some());

    let sent = calls(&fixture);
    assert_eq!(cmdlet(&sent[0]), "Get-Mailbox");
    assert_eq!(params(&sent[0]), json!({ "Identity": FINANCE, "IncludeGrantSendOnBehalfToWithDisplayNames": true }));
    // Any other failure stays an error.
    answers.push(nul_403);
    let err = exchange.get_mailbox(FINANCE).await.unwrap_err();
    assert_eq!(err.code(), "exchange.forbidden");
}

#[tokio::test]
async fn send_as_lists_direct_grants_only() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| {
        success(req, json!([
            { "Identity": "finance", "Trustee": "NT AUTHORITY\\SELF", "AccessControlType": "Allow", "AccessRights": ["SendAs"], "IsInherited": false },
            { "Identity": "finance", "Trustee": ALEX, "AccessControlType": "Allow", "AccessRights": ["SendAs"], "IsInherited": false },
            { "Identity": "finance", "Trustee": "SaraD@contoso.com", "AccessControlType": "Deny", "AccessRights": ["SendAs"], "IsInherited": false },
            { "Identity": "finance", "Trustee": "NAMPR01A001\\Org", "AccessControlType": "Allow", "AccessRights": ["SendAs"], "IsInherited": true },
        ]), &[])
    })
    .await;
    let exchange = client(&fixture);
    let rows = exchange.send_as(FINANCE).await.unwrap().value;
    assert_eq!(rows.iter().map(|r| r.trustee.as_str()).collect::<Vec<_>>(), vec![ALEX]);
    assert_eq!(
        params(&calls(&fixture)[0]),
        json!({ "Identity": FINANCE, "AccessRights": ["SendAs"], "ResultSize": "Unlimited" })
    );
}

#[tokio::test]
async fn folder_permissions_are_per_folder_and_an_existing_entry_is_compared() {
    let (fixture, answers) = scripted().await;
    let exchange = client(&fixture);
    answers.push(|req| {
        success(req, json!([
            { "Identity": "finance:\\", "FolderName": "Top of Information Store", "User": "Default", "AccessRights": ["None"] },
            { "Identity": "finance:\\", "FolderName": "Top of Information Store", "User": "Anonymous", "AccessRights": ["None"] },
            { "Identity": "finance:\\", "FolderName": "Top of Information Store", "User": { "DisplayName": "Alex Wilber" }, "AccessRights": ["Reviewer"] },
        ]), &[])
    });
    let top = exchange.folder_permissions(FINANCE, "").await.unwrap().value;
    assert_eq!(top.len(), 3);
    assert!(top[0].is_built_in() && top[2].has_role("Reviewer"));
    assert!(names_user(&top[2].user, ALEX, Some("Alex Wilber")));

    answers.push(|req| {
        success(
            req,
            json!([{ "Identity": "finance:\\Inbox", "User": "Alex Wilber", "AccessRights": ["Reviewer"] }]),
            &[],
        )
    });
    let added = exchange.add_folder_permission(FINANCE, "Inbox", ALEX, "Reviewer").await.unwrap();
    assert_eq!(added.value, Change::Applied);

    // An entry exists: the same role is AlreadyPresent, another role a conflict.
    let exists = |req: &Recorded| {
        cmdlet_failure(
            req,
            400,
            "Microsoft.Exchange.Management.StoreTasks.UserAlreadyExistsInPermissionEntryException",
            "An existing permission entry was found for user: Alex Wilber.",
        )
    };
    answers.push(exists);
    answers.push(|req| {
        success(
            req,
            json!([{ "Identity": "finance:\\Inbox", "User": "Alex Wilber", "AccessRights": ["Reviewer"] }]),
            &[],
        )
    });
    assert_eq!(
        exchange.add_folder_permission(FINANCE, "Inbox", ALEX, "reviewer").await.unwrap().value,
        Change::AlreadyPresent
    );
    answers.push(exists);
    answers.push(|req| {
        success(req, json!([{ "Identity": "finance:\\Inbox", "User": "Alex Wilber", "AccessRights": ["Editor"] }]), &[])
    });
    let err = exchange.add_folder_permission(FINANCE, "Inbox", ALEX, "Reviewer").await.unwrap_err();
    assert!(matches!(err, ExchangeError::Conflict { .. }), "{err:?}");
    assert_eq!((err.code().as_str(), err.class()), ("exchange.conflict", ErrorClass::Permanent));
    assert!(err.to_string().contains("Editor"), "{err}");

    answers.push(|req| success(req, json!([]), &[]));
    assert_eq!(exchange.remove_folder_permission(FINANCE, "Inbox", ALEX).await.unwrap().value, Change::Applied);
    answers.push(|req| {
        cmdlet_failure(
            req,
            400,
            "Microsoft.Exchange.Management.StoreTasks.UserNotFoundInPermissionEntryException",
            "There is no existing permission entry found for user: Alex Wilber.",
        )
    });
    assert_eq!(exchange.remove_folder_permission(FINANCE, "Inbox", ALEX).await.unwrap().value, Change::NotPresent);

    let sent = calls(&fixture);
    let shapes: Vec<(String, Value)> = sent.iter().map(|r| (cmdlet(r), params(r))).collect();
    assert_eq!(shapes[0], ("Get-MailboxFolderPermission".to_owned(), json!({ "Identity": "finance@contoso.com:\\" })));
    assert_eq!(
        shapes[1],
        (
            "Add-MailboxFolderPermission".to_owned(),
            json!({ "Identity": "finance@contoso.com:\\Inbox", "User": ALEX, "AccessRights": ["Reviewer"] })
        )
    );
    assert_eq!(
        shapes[3],
        ("Get-MailboxFolderPermission".to_owned(), json!({ "Identity": "finance@contoso.com:\\Inbox", "User": ALEX }))
    );
    assert_eq!(
        shapes[6],
        (
            "Remove-MailboxFolderPermission".to_owned(),
            json!({ "Identity": "finance@contoso.com:\\Inbox", "User": ALEX, "Confirm": false })
        )
    );
}

#[tokio::test]
async fn anchors_follow_the_mailbox_or_the_configuration() {
    let fixture = graph_fixture(TokenBehaviour::default(), |req| success(req, json!([]), &[])).await;
    client(&fixture).send_as("Finance").await.unwrap();
    let fixed = "APP:SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}@5a0c1f00-0000-4000-8000-000000000001";
    client_with(&fixture, fast_http(), Some(fixed)).add_send_as(FINANCE, ALEX).await.unwrap();
    let sent = calls(&fixture);
    assert_eq!(sent[0].header("x-anchormailbox"), Some(fixed), "no address: the system mailbox");
    assert_eq!(sent[1].header("x-anchormailbox"), Some(fixed), "configured: always");
}

#[tokio::test]
async fn transport_failures_and_empty_input() {
    let fixture =
        graph_fixture(TokenBehaviour::default(), |req| success(req, json!([]), &[]).delay(Duration::from_secs(3)))
            .await;
    let http = HttpConfig { connect_timeout_ms: 1_000, timeout_ms: 300, ..HttpConfig::default() };
    let err = client_with(&fixture, http, None).add_send_as(FINANCE, ALEX).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("exchange.timeout", ErrorClass::TRANSIENT));
    assert!(err.correlation().unwrap().request_id.is_none());

    let exchange = client(&fixture);
    let err = exchange.add_full_access(" ", ALEX, true).await.unwrap_err();
    assert_eq!((err.code().as_str(), err.class()), ("exchange.invalid_input", ErrorClass::Permanent));
    let err = exchange.remove_folder_permission("finance@contoso.com:\\Inbox", "", ALEX).await.unwrap_err();
    assert_eq!(err.code(), "exchange.invalid_input");
    assert_eq!(calls(&fixture).len(), 1, "refused before sending");
}

#[test]
fn config_defaults_validation_and_secrets() {
    let config: ExchangeConfig = toml::from_str(
        r#"
        tenant_id = "5a0c1f00-0000-4000-8000-000000000001"
        [token]
        client_id = "535fb089-9ff3-47b6-9bfb-4f1264799865"
        client_secret = "exchange-secret-xyz"
        "#,
    )
    .unwrap();
    assert_eq!(config.base_url, "https://outlook.office365.com");
    assert_eq!(
        config.token.resource, "https://outlook.office365.com",
        "a present [token] section still defaults to Exchange"
    );
    assert_eq!(config.token.scope(), "https://outlook.office365.com/.default");
    assert_eq!(config.anchor, None);
    assert!(config.validate().is_ok());
    let client = ExchangeClient::new(&config).unwrap();
    assert!(!format!("{config:?}{client:?}").contains("exchange-secret-xyz"));
    assert_eq!(ExchangeConfig::default().token.resource, "https://outlook.office365.com");

    let key = |c: &ExchangeConfig| -> &'static str { c.validate().unwrap_err().key };
    let bad_tenant = ExchangeConfig { tenant_id: "contoso.onmicrosoft.com".into(), ..config.clone() };
    assert_eq!(key(&bad_tenant), "exchange.tenant_id");
    let bad_base = ExchangeConfig { base_url: "outlook".into(), ..config.clone() };
    assert_eq!(key(&bad_base), "exchange.base_url");
    let mut graph_token = config.clone();
    graph_token.token.resource = "https://graph.microsoft.com".into();
    assert_eq!(key(&graph_token), "exchange.token.resource");
    let e: ConfigError = ExchangeClient::new(&bad_tenant).unwrap_err();
    assert_eq!(e.key, "exchange.tenant_id");
    assert!(toml::from_str::<ExchangeConfig>("tenant_id = 'x'\nunknown = 1").is_err());
    assert!(toml::from_str::<ExchangeConfig>("[token]\nnope = 1").is_err());
}

#[tokio::test]
async fn the_token_tenant_defaults_to_the_tenant_id() {
    let issued = Arc::new(AtomicUsize::new(0));
    let n = issued.clone();
    let fixture = Fixture::start(move |req| {
        if req.path.ends_with("/oauth2/v2.0/token") {
            return token_reply(n.fetch_add(1, Ordering::SeqCst) + 1, 3599);
        }
        success(req, json!([]), &[])
    })
    .await;
    let config = ExchangeConfig {
        base_url: fixture.url.clone(),
        tenant_id: TENANT_ID.into(),
        token: EntraTokenConfig {
            authority: fixture.url.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: Secret::new(CLIENT_SECRET),
            resource: "https://outlook.office365.com".into(),
            ..EntraTokenConfig::default()
        },
        http: fast_http(),
        anchor: None,
    };
    ExchangeClient::new(&config).unwrap().add_send_as(FINANCE, ALEX).await.unwrap();
    assert_eq!(fixture.requests_to("/token")[0].path, format!("/{TENANT_ID}/oauth2/v2.0/token"));
}

// ---------------------------------------------------------------------------------------
// Spans: one per call, with the cmdlet and correlation fields, and never a token.

type SpanLog = Arc<Mutex<Vec<(String, std::collections::HashMap<String, String>)>>>;

#[derive(Clone, Default)]
struct Spans(SpanLog, Arc<Mutex<std::collections::HashMap<u64, usize>>>);

struct Fields<'a>(&'a mut std::collections::HashMap<String, String>);

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
        let mut fields = std::collections::HashMap::new();
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
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = std::collections::HashMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push((format!("event {}", event.metadata().name()), fields));
    }
}

/// One process-wide subscriber: a thread-local one can miss callsites that tests running at the
/// same time register first. Spans are told apart by their client-request-id.
fn global_spans() -> Spans {
    static SPANS: std::sync::OnceLock<Spans> = std::sync::OnceLock::new();
    SPANS
        .get_or_init(|| {
            use tracing_subscriber::layer::SubscriberExt;
            let spans = Spans::default();
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone())).unwrap();
            spans
        })
        .clone()
}

#[tokio::test]
async fn each_call_has_a_span_and_no_field_carries_a_token() {
    let spans = global_spans();
    let (fixture, answers) = scripted().await;
    let exchange = client(&fixture);
    answers.push(|req| success(req, Value::Null, &[ALREADY]));
    let added = exchange.add_full_access(FINANCE, ALEX, true).await.unwrap();
    answers.push(nul_403);
    let err = exchange.remove_send_as(FINANCE, ALEX).await.unwrap_err();

    let spans = spans.0.lock().unwrap().clone();
    let of_call = |name: &str, crid: &str| {
        spans
            .iter()
            .find(|(n, f)| n == name && f.get("client_request_id").map(String::as_str) == Some(crid))
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("no {name} span for {crid}"))
    };
    let add = of_call("exchange.add_full_access", &added.correlation.client_request_id);
    assert_eq!(add["exchange.cmdlet"], "Add-MailboxPermission");
    assert_eq!(add["http.method"], "POST");
    assert_eq!(add["url.path"], INVOKE);
    assert_eq!(add["http.status_code"], "200");
    assert_eq!(add["request_id"], added.correlation.request_id.clone().unwrap());
    assert_eq!(add["exchange.warnings"], "1");
    assert!(!add.contains_key("error.code"));
    let remove = of_call("exchange.remove_send_as", &err.correlation().unwrap().client_request_id);
    assert_eq!(remove["exchange.cmdlet"], "Remove-RecipientPermission");
    assert_eq!(remove["http.status_code"], "403");
    assert_eq!(remove["error.code"], "exchange.forbidden");
    // No span or event field of any test in this binary carries a token or the client secret.
    for (_, fields) in &spans {
        for value in fields.values() {
            assert!(!value.contains("tok-") && !value.contains(CLIENT_SECRET), "{value}");
        }
    }
}
