//! End to end, paging on-call about dead letters: the real workers page the PagerDuty and
//! alert-webhook simulators and the service desk's Teams channel over HTTP, exactly once per
//! dead letter; a PagerDuty outage is retried; redriving or discarding the letter resolves
//! the incident; a failed compensation goes to the critical route; `dlq list` pages through
//! every letter.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use grantline_connectors::Secret;
use grantline_shared::audit::AuditEvent;
use grantline_shared::jobs::{Alert, LetterClosed};
use grantline_shared::request::{RequestState, fields};
use grantline_sims::paging::{AlertStatus, DEMO_ROUTING_KEY, DEMO_WEBHOOK_SECRET};
use grantline_sims::{FaultRule, Method, NewRitm, ids, snow_sys_id};
use support::{Stack, WAIT};

const MEMBER_REF: &str = "/v1.0/groups/*/members/$ref";
const MEMBER_DELETE: &str = "/v1.0/groups/*/members/*/$ref";
const RITM_PATCH: &str = "/api/now/table/sc_req_item/*";

/// Megan asks for Team Alpha (auto-approved) while Graph refuses every membership write: the
/// grant is dead-lettered. Returns (ticket, request id, dead-letter id).
async fn dead_grant(stack: &Stack) -> (String, String, String) {
    stack.sims.graph.faults().push(FaultRule::respond(503).on(Method::POST, MEMBER_REF).forever());
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&id, RequestState::Failed, WAIT).await;
    let letters = stack.queue.dead_letters("execute-grant", None, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    (number, id, letters[0].id.clone())
}

/// The PagerDuty events the simulator logged for a dedup key, by action.
fn enqueue_posts(stack: &Stack, dedup_key: &str, action: &str) -> Vec<grantline_sims::LoggedRequest> {
    stack
        .sims
        .paging
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v2/enqueue" && r.body.contains(dedup_key))
        .filter(|r| r.body.contains(&format!("\"event_action\":\"{action}\"")))
        .collect()
}

/// The cards posted to the service desk's Teams channel.
fn service_desk_cards(stack: &Stack) -> Vec<serde_json::Value> {
    let state = stack.sims.botframework.state();
    let Some(channel) = state.channel(grantline::demo::SERVICE_DESK_CHANNEL) else { return Vec::new() };
    channel.messages.iter().flat_map(|m| m.cards().into_iter().cloned()).collect()
}

fn card_text(card: &serde_json::Value) -> String {
    card.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_pages_once_even_when_its_alert_runs_twice() {
    let stack = Stack::start().await;
    let (number, id, letter) = dead_grant(&stack).await;
    let key = stack.dedup_key("execute-grant", &letter);
    let incident = stack.wait_incident("execute-grant", Some(&id)).await;

    // what on-call receives
    assert_eq!(incident.dedup_key, key);
    assert_eq!(incident.routing_key, DEMO_ROUTING_KEY, "the default route");
    assert_eq!((incident.status, incident.severity.as_str()), (AlertStatus::Triggered, "error"));
    for part in
        [number.as_str(), "execute-grant", "graph.", &format!("grantline dlq retry execute-grant {letter}"), "discard"]
    {
        assert!(incident.summary.contains(part), "{part:?} missing from the summary {:?}", incident.summary);
    }
    let rec = stack.record(&id).await;
    let d = &incident.custom_details;
    assert_eq!(d["request_id"], id.as_str());
    assert_eq!(d["ticket"], number.as_str());
    assert_eq!(d["trace_id"], rec[fields::TRACE_ID].as_str());
    assert_eq!(d["dead_letter_id"], letter.as_str());

    // the alert job runs again (a second copy of it): nothing is sent twice
    let again = grantline_queue::NewJob::new(
        "alert",
        &Alert {
            queue: "execute-grant".into(),
            job_id: d["job_id"].as_str().unwrap().into(),
            dead_letter_id: letter.clone(),
        },
    )
    .unwrap();
    stack.queue.push(again).await.unwrap();
    stack
        .wait_for("both alert jobs to complete", WAIT, || async {
            let m = stack.metrics("alert").await;
            (m.completed_total == 2 && m.ready == 0 && m.in_flight == 0).then_some(())
        })
        .await;
    let incidents: Vec<_> = stack.incidents().into_iter().filter(|a| a.dedup_key == key).collect();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0].events.len(), 1, "one trigger, nothing merged: {:#?}", incidents[0].events);
    assert_eq!(enqueue_posts(&stack, &key, "trigger").len(), 1);
    let webhook = stack.sims.paging.state().deliveries;
    assert_eq!(webhook.len(), 1, "{webhook:#?}");
    assert_eq!((webhook[0].kind(), webhook[0].dedup_key(), webhook[0].duplicates), ("alert.trigger", key.as_str(), 0));

    // the webhook's signature is verifiable with the shared secret, and only with it
    let logged = stack.sims.paging.requests().into_iter().find(|r| r.path == "/webhook").unwrap();
    let signature = logged.headers.iter().find(|(n, _)| n == "x-signature").map(|(_, v)| v.clone()).unwrap();
    let raw = webhook[0].raw_body.as_bytes();
    assert_eq!(signature, grantline_connectors::webhook::sign(&Secret::new(DEMO_WEBHOOK_SECRET), raw));
    assert_ne!(signature, grantline_connectors::webhook::sign(&Secret::new("another-secret-0123456789"), raw));
    assert!(stack.sims.paging.state().rejected.is_empty());

    // the service desk's channel is told: the ticket, the step, the error, the next action
    let cards = service_desk_cards(&stack);
    assert_eq!(cards.len(), 1, "{cards:#?}");
    let text = card_text(&cards[0]);
    for part in [number.as_str(), "execute-grant", "graph.", "grantline dlq retry execute-grant", "Next action"] {
        assert!(text.contains(part), "{part:?} missing from the card {text}");
    }

    // the request's trail says who was paged, once
    let trail = stack.audit(&id).await;
    let paged: Vec<_> = trail.iter().filter(|r| r.event.name() == "paged").collect();
    assert_eq!(paged.len(), 1, "{trail:#?}");
    match &paged[0].event {
        AuditEvent::Paged { dedup_key, severity, destinations, refused, .. } => {
            assert_eq!((dedup_key.as_str(), severity.as_str()), (key.as_str(), "error"));
            assert_eq!(
                destinations,
                &["pagerduty:oncall", "webhook:alerts-webhook", "teams_channel:service-desk"].map(str::to_owned)
            );
            assert!(refused.is_empty());
        }
        other => panic!("{other:?}"),
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pagerduty_outage_is_retried_and_pages_once_and_a_refusal_still_reaches_the_others() {
    let stack = Stack::start().await;
    // PagerDuty answers 500 to the first trigger
    stack.sims.paging.faults().push(FaultRule::respond(500).on(Method::POST, "/v2/enqueue").times(1));
    let (_number, id, letter) = dead_grant(&stack).await;
    let key = stack.dedup_key("execute-grant", &letter);
    let incident = stack.wait_incident("execute-grant", Some(&id)).await;
    assert_eq!(incident.dedup_key, key);
    let alerts = stack.wait_queue_idle("alert", false).await;
    assert_eq!((alerts.retried_total, alerts.completed_total, alerts.dead), (1, 1, 0), "{alerts:?}");
    let posts = enqueue_posts(&stack, &key, "trigger");
    assert_eq!(posts.iter().map(|p| p.status).collect::<Vec<_>>(), [500, 202]);
    assert_eq!(stack.incidents().iter().filter(|a| a.dedup_key == key).count(), 1);
    // the webhook and the channel took the page on the first attempt and were not sent again
    assert_eq!(stack.sims.paging.requests().iter().filter(|r| r.path == "/webhook").count(), 1);
    assert_eq!(service_desk_cards(&stack).len(), 1);

    // a second dead letter while PagerDuty refuses for good (400): the others are still paged,
    // the refusal is logged and recorded with its reason, and the alert is not retried
    stack.sims.paging.faults().push(FaultRule::respond(400).on(Method::POST, "/v2/enqueue").forever());
    let (_, id2) = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    let paged = stack
        .wait_for("the second request's page", WAIT, || async {
            stack.audit(&id2).await.into_iter().find(|r| r.event.name() == "paged")
        })
        .await;
    match paged.event {
        AuditEvent::Paged { destinations, refused, .. } => {
            assert_eq!(destinations, ["webhook:alerts-webhook", "teams_channel:service-desk"].map(str::to_owned));
            assert_eq!(refused.len(), 1, "{refused:?}");
            assert!(refused[0].starts_with("pagerduty:oncall: pagerduty.bad_request"), "{refused:?}");
        }
        other => panic!("{other:?}"),
    }
    let alerts = stack.wait_queue_idle("alert", false).await;
    assert_eq!((alerts.retried_total, alerts.completed_total, alerts.dead), (1, 2, 0), "{alerts:?}");
    assert_eq!(stack.sims.paging.state().deliveries.len(), 2);
    stack.shutdown().await;
}

async fn wait_resolved(stack: &Stack, key: &str) -> grantline_sims::paging::Alert {
    stack
        .wait_for("the incident to be resolved", WAIT, || async {
            stack.incidents().into_iter().find(|a| a.dedup_key == key && a.status == AlertStatus::Resolved)
        })
        .await
}

async fn wait_page_resolved(stack: &Stack, id: &str) -> AuditEvent {
    stack
        .wait_for("page_resolved on the trail", WAIT, || async {
            stack.audit(id).await.into_iter().find(|r| r.event.name() == "page_resolved").map(|r| r.event)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redriving_the_letter_resolves_the_incident_everywhere() {
    let stack = Stack::start().await;
    let (number, id, letter) = dead_grant(&stack).await;
    let key = stack.dedup_key("execute-grant", &letter);
    stack.wait_incident("execute-grant", Some(&id)).await;
    stack.wait_queue_idle("alert", false).await;

    let job = grantline::dlq::close(&stack.queue, "execute-grant", &letter, LetterClosed::Redriven).await.unwrap();
    assert!(job.is_some(), "redriven");
    let resolved = wait_resolved(&stack, &key).await;
    assert_eq!(resolved.events.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["trigger", "resolve"]);
    match wait_page_resolved(&stack, &id).await {
        AuditEvent::PageResolved { how, dedup_key, destinations, .. } => {
            assert_eq!((how.as_str(), dedup_key.as_str()), ("redriven", key.as_str()));
            assert_eq!(destinations.len(), 3, "{destinations:?}");
        }
        other => panic!("{other:?}"),
    }
    let deliveries = stack.sims.paging.state().deliveries;
    assert_eq!(deliveries.iter().map(|d| d.kind()).collect::<Vec<_>>(), ["alert.trigger", "alert.resolve"]);
    assert!(deliveries.iter().all(|d| d.dedup_key() == key));
    let cards = service_desk_cards(&stack);
    assert_eq!(cards.len(), 2);
    assert!(card_text(&cards[1]).contains("redriven") && card_text(&cards[1]).contains(&number));

    // closing it again (the command run twice) queues nothing new and resolves nothing twice
    assert!(
        grantline::dlq::close(&stack.queue, "execute-grant", &letter, LetterClosed::Redriven).await.unwrap().is_none()
    );
    let m = stack.wait_queue_idle("resolve-alert", false).await;
    assert_eq!((m.enqueued_total, m.completed_total), (1, 1), "{m:?}");
    assert_eq!(enqueue_posts(&stack, &key, "resolve").len(), 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discarding_the_letter_with_the_cli_resolves_the_incident() {
    let stack = Stack::start().await;
    let (_number, id, letter) = dead_grant(&stack).await;
    let key = stack.dedup_key("execute-grant", &letter);
    stack.wait_incident("execute-grant", Some(&id)).await;
    stack.wait_queue_idle("alert", false).await;

    // the real command, pointed at this stack's Redis namespace
    let dir = support::TempDir::new("paging-cli");
    let cfg = dir.path().join("grantline.toml");
    std::fs::write(
        &cfg,
        format!("redis_url = \"{}\"\n[queue]\nnamespace = \"{}\"\n", stack.redis.url(), stack.queue.config().namespace),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        use clap::Parser;
        let mut argv = vec!["grantline", "--config", cfg.to_str().unwrap()];
        argv.extend_from_slice(args);
        grantline::cli::Cli::parse_from(argv)
    };
    grantline::cli::run(cli(&["dlq", "discard", "execute-grant", &letter])).await.unwrap();
    assert!(stack.queue.dead_letter("execute-grant", &letter).await.unwrap().is_none(), "discarded");
    wait_resolved(&stack, &key).await;
    match wait_page_resolved(&stack, &id).await {
        AuditEvent::PageResolved { how, .. } => assert_eq!(how, "discarded"),
        other => panic!("{other:?}"),
    }
    let kinds: Vec<String> = stack.sims.paging.state().deliveries.iter().map(|d| d.kind().to_owned()).collect();
    assert_eq!(kinds, ["alert.trigger", "alert.resolve"]);
    // an unknown letter is a clear error and changes nothing
    let err = grantline::cli::run(cli(&["dlq", "discard", "execute-grant", "1-1"])).await.unwrap_err();
    assert!(err.to_string().contains("no dead letter 1-1 on execute-grant"), "{err}");
    assert_eq!(stack.metrics("resolve-alert").await.enqueued_total, 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_compensation_pages_the_critical_route() {
    let stack = Stack::start().await;
    // the grant succeeds; writing it back to the ticket is refused for good, so compensation
    // starts, and removing the membership again fails on every attempt
    stack.sims.servicenow.faults().push(FaultRule::respond(403).on(Method::PATCH, RITM_PATCH).forever());
    stack.sims.graph.faults().push(FaultRule::respond(503).on(Method::DELETE, MEMBER_DELETE).forever());
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    let critical = stack.wait_incident("rollback-grant", Some(&id)).await;
    assert_eq!(critical.routing_key, grantline::demo::CRITICAL_ROUTING_KEY, "the critical route");
    assert_eq!(critical.severity, "critical");
    assert!(critical.summary.contains(&number) && critical.summary.contains("rollback-grant"), "{}", critical.summary);
    // the write-back's own dead letter is an ordinary error on the default route
    let error = stack.wait_incident("update-ticket", Some(&id)).await;
    assert_eq!((error.routing_key.as_str(), error.severity.as_str()), (DEMO_ROUTING_KEY, "error"));
    // the webhook carries the severity too
    let deliveries = stack
        .wait_for("both webhook deliveries", WAIT, || async {
            let d = stack.sims.paging.state().deliveries;
            (d.len() >= 2).then_some(d)
        })
        .await;
    let severity_of = |q: &str| {
        deliveries
            .iter()
            .find(|d| d.event["details"]["queue"] == q)
            .map(|d| d.event["severity"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(severity_of("rollback-grant").as_deref(), Some("critical"));
    assert_eq!(severity_of("update-ticket").as_deref(), Some("error"));
    assert_eq!(stack.state(&id).await, Some(RequestState::Compensating));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_pages_through_every_letter() {
    let stack = Stack::start_opts(support::StackOptions { workers: false, ..Default::default() }).await;
    // 1,234 letters in a queue's dead-letter stream, as the fail script writes them
    let dead = stack.queue.keys("bulk").dead;
    let mut conn = stack.queue.connection();
    let mut pipe = redis::pipe();
    for i in 0..1234u32 {
        pipe.cmd("XADD")
            .arg(&dead)
            .arg("*")
            .arg("id")
            .arg(format!("job-{i:04}"))
            .arg("queue")
            .arg("bulk")
            .arg("attempts")
            .arg("4")
            .arg("reason")
            .arg("retries exhausted")
            .ignore();
    }
    let _: () = pipe.query_async(&mut conn).await.unwrap();
    let list = |after: Option<String>, limit: Option<usize>| {
        let q = stack.queue.clone();
        async move {
            let mut out = Vec::new();
            let n = grantline::dlq::list(&q, "bulk", after.as_deref(), limit, &mut out).await.unwrap();
            let lines: Vec<serde_json::Value> =
                String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!(n, lines.len());
            lines
        }
    };
    let all = list(None, None).await;
    assert_eq!(all.len(), 1234, "every letter, no silent cap");
    assert_eq!(all[1233]["job_id"], "job-1233");
    let first = list(None, Some(10)).await;
    assert_eq!(first.len(), 10);
    let next = list(Some(first[9]["id"].as_str().unwrap().to_owned()), Some(600)).await;
    assert_eq!(next.len(), 600);
    assert_eq!(next[0]["job_id"], "job-0010");
    assert_eq!(next[599]["job_id"], "job-0609");
    let tail = list(Some(all[1230]["id"].as_str().unwrap().to_owned()), None).await;
    assert_eq!(
        tail.iter().map(|l| l["job_id"].as_str().unwrap()).collect::<Vec<_>>(),
        ["job-1231", "job-1232", "job-1233"]
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_closed_before_its_alert_ran_pages_nobody() {
    use grantline_workers::paging::DeadLetterPage;
    let stack = Stack::start_opts(support::StackOptions { workers: false, ..Default::default() }).await;
    let pager = grantline::demo::pager(&stack.sims).unwrap();
    let page = DeadLetterPage {
        subject: Default::default(),
        queue: "execute-grant".into(),
        dead_letter_id: "1700000000000-0".into(),
        job_id: "job-1".into(),
        attempts: 4,
        error_code: "graph.unavailable".into(),
        error_message: "Graph answered 503".into(),
        request_id: None,
        ticket: Some("RITM0099999".into()),
        trace_id: None,
        dead_at_ms: 1_700_000_000_000,
    };
    let now = stack.svc.now();
    // the operator discards the letter while its alert waits: the resolve finds nothing sent
    let resolved =
        pager.resolve(&stack.queue, now, &page.queue, &page.dead_letter_id, LetterClosed::Discarded).await.unwrap();
    assert!(resolved.resolved.is_empty(), "{resolved:?}");
    // the alert runs afterwards and pages nobody
    let report = pager.page(&stack.queue, now, &page).await.unwrap();
    assert!(report.closed && report.sent.is_empty(), "{report:?}");
    assert!(stack.incidents().is_empty());
    assert!(stack.sims.paging.state().deliveries.is_empty());
    assert!(service_desk_cards(&stack).is_empty());

    // an open letter pages; a second alert sends nothing; the resolve resolves everything once
    let open = DeadLetterPage { dead_letter_id: "1700000000001-0".into(), ..page.clone() };
    let first = pager.page(&stack.queue, now, &open).await.unwrap();
    let second = pager.page(&stack.queue, now, &open).await.unwrap();
    assert_eq!(first.sent, second.sent);
    assert_eq!(first.sent.len(), 3, "{first:?}");
    assert_eq!(stack.incidents().len(), 1);
    assert_eq!(stack.incidents()[0].events.len(), 1);
    let r = pager.resolve(&stack.queue, now, &open.queue, &open.dead_letter_id, LetterClosed::Redriven).await.unwrap();
    assert_eq!(r.resolved.len(), 3, "{r:?}");
    let again =
        pager.resolve(&stack.queue, now, &open.queue, &open.dead_letter_id, LetterClosed::Redriven).await.unwrap();
    assert_eq!(again.resolved.len(), 3);
    assert_eq!(stack.incidents()[0].status, AlertStatus::Resolved);
    assert_eq!(enqueue_posts(&stack, &first.dedup_key, "resolve").len(), 1, "resolved once");
    // after the resolve, an alert that runs late opens nothing new
    let late = pager.page(&stack.queue, now, &open).await.unwrap();
    assert!(late.closed);
    assert_eq!(stack.incidents().len(), 1);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_service_desk_channel_is_told_and_told_of_the_resolve() {
    use grantline_sims::slack::APPROVALS_CHANNEL;
    use grantline_workers::paging::{DeadLetterPage, Destination, Pager};
    let stack = Stack::start_opts(support::StackOptions { workers: false, ..Default::default() }).await;
    let mut settings = grantline::demo::paging_settings(&stack.sims);
    settings
        .destinations
        .insert("desk-slack".into(), Destination::SlackChannel { channel: format!("#{APPROVALS_CHANNEL}") });
    settings.service_desk = vec!["desk-slack".into()];
    let slack = grantline_connectors::slack::SlackClient::new(&grantline::demo::slack_config(&stack.sims)).unwrap();
    assert!(Pager::new(&settings, None).unwrap_err().contains("ingest.slack"), "a Slack channel needs the Slack app");
    let pager = Pager::new(&settings, Some(&slack)).unwrap();
    let page = DeadLetterPage {
        subject: Default::default(),
        queue: "update-ticket".into(),
        dead_letter_id: "1700000000002-0".into(),
        job_id: "job-2".into(),
        attempts: 1,
        error_code: "servicenow.forbidden".into(),
        error_message: "servicenow answered HTTP 403".into(),
        request_id: Some("req-2".into()),
        ticket: Some("RITM0012345".into()),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        dead_at_ms: 1_700_000_000_000,
    };
    let now = stack.svc.now();
    let report = pager.page(&stack.queue, now, &page).await.unwrap();
    assert!(report.sent.contains(&"slack_channel:desk-slack".to_owned()), "{report:?}");
    pager.page(&stack.queue, now, &page).await.unwrap();
    let messages = stack.sims.slack.state().messages(APPROVALS_CHANNEL);
    assert_eq!(messages.len(), 1, "told once: {messages:#?}");
    let text = messages[0].text().to_owned();
    for part in
        ["RITM0012345", "update-ticket", "servicenow.forbidden", "grantline dlq retry update-ticket 1700000000002-0"]
    {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }
    pager.resolve(&stack.queue, now, &page.queue, &page.dead_letter_id, LetterClosed::Discarded).await.unwrap();
    let messages = stack.sims.slack.state().messages(APPROVALS_CHANNEL);
    assert_eq!(messages.len(), 2);
    assert!(messages[1].text().contains("discarded") && messages[1].text().contains("RITM0012345"), "{messages:#?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_record_that_cannot_be_brought_up_to_date_is_paged_and_the_grant_stands() {
    let stack = Stack::start().await;
    stack.set_clock_to_finance_business_hours();
    let (number, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_FINANCE_BI_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, WAIT).await;
    stack.wait_event(&id, "approvers_notified").await;
    // from now on ServiceNow's approval table answers 503: the approval record cannot be
    // brought up to date with the decision taken through the API
    let fault = stack
        .sims
        .servicenow
        .faults()
        .push(FaultRule::respond(503).on(Method::GET, "/api/now/table/sysapproval_approver").forever());
    let (status, body) = stack.decide(&id, ids::PATTI_UPN, true).await;
    assert_eq!(status, 200, "{body}");

    // the notice step fails for good and on-call is paged about it; the grant stands
    let incident = stack.wait_incident("notify", Some(&id)).await;
    assert!(incident.summary.contains("notify") && incident.summary.contains(&number), "{}", incident.summary);
    let trail = stack
        .wait_for("the letter and its page on the trail", WAIT, || async {
            let trail = stack.audit(&id).await;
            let names: Vec<&str> = trail.iter().map(|r| r.event.name()).collect();
            (names.contains(&"dead_lettered") && names.contains(&"paged")).then_some(trail)
        })
        .await;
    let letters = support::dead_lettered(&trail);
    assert_eq!(letters, ["notify"], "{trail:#?}");
    stack.wait_state(&id, RequestState::Active, WAIT).await;
    stack.wait_queue_idle("alert", false).await;
    assert_eq!(stack.state(&id).await, Some(RequestState::Active), "a notice does not decide the request");
    assert!(stack.sims.graph.state().is_member(ids::GROUP_FINANCE_BI_READ, ids::ALEX_ID));
    assert_eq!(stack.metrics("rollback-grant").await.enqueued_total, 0, "nothing was compensated");
    let patti_record = stack.notice(&id, "servicenow", ids::PATTI_ID, 0).await.reference;
    assert_eq!(stack.approval_state(&number, &patti_record), "requested");

    // ServiceNow is back: redriving the letter brings the record up to date
    assert!(stack.sims.servicenow.faults().remove(fault));
    let letter = stack.queue.dead_letters("notify", None, 10).await.unwrap().remove(0);
    let job = grantline::dlq::close(&stack.queue, "notify", &letter.id, LetterClosed::Redriven).await.unwrap();
    assert!(job.is_some(), "redriven");
    stack.wait_approval_state(&number, &patti_record, "approved").await;
    assert_eq!(stack.state(&id).await, Some(RequestState::Active));
    stack.shutdown().await;
}
