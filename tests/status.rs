//! The operator status page, end to end: the real edge, workers and simulators. Requests in
//! three states and one dead letter; the page refuses anyone without an operator token or
//! session, lists and filters the requests, shows the queues and the dead letter, and one
//! request's timeline; in headless Chromium too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;
use std::time::Duration;

use grantline_shared::request::RequestState;
use grantline_sims::{FaultRule, Method, NewRitm, ids, snow_sys_id};
use serde_json::Value;
use support::*;

const MEMBER_REF: &str = "/v1.0/groups/*/members/$ref";

struct Seeded {
    stack: Stack,
    /// (ticket, request id) of: an active grant, one awaiting approval, one failed (its grant
    /// dead-lettered).
    active: (String, String),
    awaiting: (String, String),
    failed: (String, String),
}

async fn seeded() -> Seeded {
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    let active = stack.submit(NewRitm::new(&snow_sys_id(ids::ADELE_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&active.1, RequestState::AwaitingApproval, WAIT).await;
    let (status, body) = stack.decide(&active.1, ids::SARA_ID, true).await;
    assert_eq!(status, 200, "{body}");
    stack.wait_state(&active.1, RequestState::Active, WAIT).await;
    let awaiting = stack.submit(NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_FINANCE_BI_NAME)).await;
    stack.wait_state(&awaiting.1, RequestState::AwaitingApproval, WAIT).await;
    stack.sims.graph.faults().push(FaultRule::respond(503).on(Method::POST, MEMBER_REF).forever());
    let failed = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&failed.1, RequestState::Failed, WAIT).await;
    Seeded { stack, active, awaiting, failed }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn get(url: &str, cookie: Option<&str>) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = client().get(url);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// Signs in with a token; returns the session cookie (`name=value`).
async fn sign_in(base: &str, token: &str) -> (u16, Option<String>, String) {
    let resp = client().post(format!("{base}/status/sign-in")).form(&[("token", token)]).send().await.unwrap();
    let status = resp.status().as_u16();
    let cookie = resp.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned());
    (status, cookie, resp.text().await.unwrap())
}

fn rows<'a>(html: &'a str, class: &str) -> Vec<&'a str> {
    html.split(&format!("<tr class=\"{class}\"")).skip(1).map(|r| r.split("</tr>").next().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_needs_an_operator_and_shows_queues_dead_letters_requests_and_a_timeline() {
    let s = seeded().await;
    let base = s.stack.ingest_url.clone();

    // nobody signed in: the form, and nothing else
    let (status, headers, html) = get(&format!("{base}/status"), None).await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"sign-in\"") && !html.contains(&s.active.0), "{html}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["cache-control"], "no-store");
    let (status, _, html) = get(&format!("{base}/status/requests/{}", s.active.1), None).await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"sign-in\"") && !html.contains(&s.active.0), "a request page needs a session too");

    // a wrong token is refused and on the doors' security log
    let (status, cookie, html) = sign_in(&base, "not-the-operator-token").await;
    assert_eq!(status, 401);
    assert!(cookie.is_none() && html.contains("id=\"sign-in-error\""), "{html}");
    let log = grantline_store::doors::recent(&s.stack.queue, 10).await.unwrap();
    assert!(log.iter().any(|r| r.door == "status" && r.reason == "status.bad_token"), "{log:?}");
    let bearer = client().get(format!("{base}/status")).bearer_auth("not-the-operator-token").send().await.unwrap();
    assert_eq!(bearer.status(), 401);

    // the operator token opens a session
    let (status, cookie, _) = sign_in(&base, OPERATOR_TOKEN).await;
    assert_eq!(status, 303);
    let set = cookie.expect("a session cookie");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/status"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(!set.contains(OPERATOR_TOKEN), "the cookie is not the token");
    let cookie = set.split(';').next().unwrap().to_owned();
    let (status, _, html) = get(&format!("{base}/status"), Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(html.contains("operator: e2e"), "{html}");

    // queues, with the dead letter counted and listed with its next action
    let queue_row = html.split("<tr data-queue=\"execute-grant\">").nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(queue_row.contains("<td class=\"num dead\">1</td>"), "{queue_row}");
    let letters = rows(&html, "dead-letter");
    assert_eq!(letters.len(), 1, "{html}");
    assert!(
        letters[0].contains(&s.failed.1) && letters[0].contains("grantline dlq retry execute-grant"),
        "{}",
        letters[0]
    );

    // requests, newest first
    let listed: Vec<&str> = rows(&html, "request")
        .iter()
        .map(|r| r.split("data-ticket=\"").nth(1).unwrap().split('"').next().unwrap())
        .collect();
    assert_eq!(listed, [s.failed.0.as_str(), s.awaiting.0.as_str(), s.active.0.as_str()]);

    // filters: by state, by ticket; a state that does not exist is refused
    let (_, _, html) = get(&format!("{base}/status?state=awaiting_approval"), Some(&cookie)).await;
    let r = rows(&html, "request");
    assert_eq!(r.len(), 1);
    assert!(r[0].contains(&s.awaiting.0), "{}", r[0]);
    let (_, _, html) = get(&format!("{base}/status?ticket={}", s.active.0), Some(&cookie)).await;
    let r = rows(&html, "request");
    assert_eq!(r.len(), 1);
    assert!(r[0].contains("data-state=\"active\""), "{}", r[0]);
    let (status, _, html) = get(&format!("{base}/status?state=granted-ish"), Some(&cookie)).await;
    assert_eq!(status, 400);
    assert!(html.contains("granted-ish"), "{html}");

    // one request: facts, approvals, receipts and the whole timeline
    let (status, _, html) = get(&format!("{base}/status/requests/{}", s.active.1), Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("<span id=\"ticket\">{}</span>", s.active.0)), "{html}");
    assert!(html.contains("id=\"chain\">intact"), "{html}");
    assert!(html.contains("Grant receipt") && html.contains("pre_existing"), "{html}");
    let trail = s.stack.audit(&s.active.1).await;
    let events: Vec<&str> = rows(&html, "event")
        .iter()
        .map(|r| r.split("data-event=\"").nth(1).unwrap().split('"').next().unwrap())
        .collect();
    let want: Vec<&str> = trail.iter().map(|r| r.event.name()).collect();
    assert_eq!(events, want, "every audit event, in order");
    let trace_id = s.stack.record(&s.active.1).await["trace_id"].clone();
    assert!(html.contains(&trace_id), "the trace id is shown");
    let (status, _, _) =
        get(&format!("{base}/status/requests/{}", "0b8f6a52-9b8e-4c1f-a1a0-3b5f2d9c1e7a"), Some(&cookie)).await;
    assert_eq!(status, 404);
    let (status, _, _) = get(&format!("{base}/status/requests/..%2Fx"), Some(&cookie)).await;
    assert_eq!(status, 400);

    // a bearer token works without a session (scripts)
    let resp = client().get(format!("{base}/status")).bearer_auth(OPERATOR_TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("id=\"queues\""));

    // signing out needs the session's form token, then ends the session
    let resp = client()
        .post(format!("{base}/status/sign-out"))
        .header("Cookie", &cookie)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let (_, _, html) = get(&format!("{base}/status"), Some(&cookie)).await;
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let resp = client()
        .post(format!("{base}/status/sign-out"))
        .header("Cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let (_, _, html) = get(&format!("{base}/status"), Some(&cookie)).await;
    assert!(html.contains("id=\"sign-in\"") && !html.contains("id=\"queues\""), "{html}");
    s.stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_newest_first_by_state_and_by_ticket() {
    use grantline_store::index::{Filter, list};
    let s = seeded().await;
    let q = &s.stack.queue;
    let all = list(q, &Filter { limit: 2, ..Filter::default() }).await.unwrap();
    let ids: Vec<&str> = all.requests.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [s.failed.1.as_str(), s.awaiting.1.as_str()]);
    let next = list(q, &Filter { limit: 2, after: all.next.clone(), ..Filter::default() }).await.unwrap();
    let ids: Vec<&str> = next.requests.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [s.active.1.as_str()]);
    assert!(next.next.is_none());
    for (state, want) in [
        (RequestState::Active, &s.active.1),
        (RequestState::AwaitingApproval, &s.awaiting.1),
        (RequestState::Failed, &s.failed.1),
    ] {
        let l = list(q, &Filter { state: Some(state), ..Filter::default() }).await.unwrap();
        let ids: Vec<&str> = l.requests.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, [want.as_str()], "{state:?}");
    }
    let passed = list(q, &Filter { state: Some(RequestState::Validating), ..Filter::default() }).await.unwrap();
    assert!(passed.requests.is_empty(), "a state left behind lists nothing");
    let by_ticket = list(q, &Filter { ticket: Some(s.awaiting.0.clone()), ..Filter::default() }).await.unwrap();
    assert_eq!(by_ticket.requests.len(), 1);
    assert_eq!(by_ticket.requests[0].id, s.awaiting.1);
    let none = list(q, &Filter { ticket: Some("RITM9999999".into()), ..Filter::default() }).await.unwrap();
    assert!(none.requests.is_empty());
    s.stack.shutdown().await;
}

/// Headless Chromium through the page. Skipped (with a message) only when
/// `GRANTLINE_BROWSER_TESTS=0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_filters_and_reads_a_timeline() {
    if std::env::var("GRANTLINE_BROWSER_TESTS").as_deref() == Ok("0") {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED chromium_signs_in_filters_and_reads_a_timeline: GRANTLINE_BROWSER_TESTS=0"
        );
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::path::Path::new("/usr/bin/chromium");
    assert!(chromium.exists(), "the browser test needs /usr/bin/chromium (or GRANTLINE_BROWSER_TESTS=0)");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "npm ci --prefix tests/browser (or GRANTLINE_BROWSER_TESTS=0)"
    );
    let s = seeded().await;
    let out_dir = match std::env::var("GRANTLINE_STATUS_SCREENSHOTS") {
        Ok(d) => std::path::PathBuf::from(d),
        Err(_) => std::env::temp_dir().join(format!("grantline-status-{}", fastrand::u64(..))),
    };
    let profile = std::env::temp_dir().join(format!("grantline-status-profile-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::create_dir_all(&profile).unwrap();
    let shot = out_dir.join("status-page.png");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("status.mjs"))
        .current_dir(&dir)
        .env("GRANTLINE_STATUS_URL", format!("{}/status", s.stack.ingest_url))
        .env("GRANTLINE_TOKEN", OPERATOR_TOKEN)
        .env("GRANTLINE_TICKET", &s.failed.0)
        .env("GRANTLINE_SCREENSHOT", &shot)
        .env("GRANTLINE_USER_DATA_DIR", &profile)
        .env("GRANTLINE_CHROMIUM", chromium)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(150), cmd.output())
        .await
        .expect("the browser finished")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let seen: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no report from the browser\nstdout: {stdout}\nstderr: {stderr}"));
    assert!(out.status.success() && seen["ok"] == true, "{seen:#}\nstderr: {stderr}");
    assert_eq!(seen["first_status"], 200);
    assert_eq!(seen["sign_in_form"], true);
    assert_eq!(seen["operator"], "operator: e2e");
    assert_eq!(seen["queues"]["execute-grant"][5], "1", "one dead letter: {seen:#}");
    assert_eq!(seen["dead_letters"].as_array().unwrap().len(), 1);
    let tickets: Vec<&str> = seen["requests"].as_array().unwrap().iter().filter_map(|r| r["ticket"].as_str()).collect();
    assert_eq!(tickets, [s.failed.0.as_str(), s.awaiting.0.as_str(), s.active.0.as_str()]);
    assert_eq!(seen["filtered"], serde_json::json!(["active"]));
    assert_eq!(seen["ticket"], s.failed.0.as_str());
    assert_eq!(seen["state"], "failed");
    assert_eq!(seen["chain"], "intact");
    let events: Vec<&str> = seen["events"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(events.first() == Some(&"request_received") && events.contains(&"dead_lettered"), "{events:?}");
    assert_eq!(seen["signed_out"], true);
    let console: Vec<&str> = seen["console"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(!console.iter().any(|m| m.contains("Content Security Policy")), "{console:?}");
    for f in [shot.clone(), out_dir.join("status-page-request.png")] {
        let png = std::fs::read(&f).expect("a screenshot");
        assert!(png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n"), "{}", f.display());
    }
    let _ = writeln!(std::io::stderr(), "status page screenshots: {}", out_dir.display());
    let _ = std::fs::remove_dir_all(&profile);
    s.stack.shutdown().await;
}
