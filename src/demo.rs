//! `grantline demo`: everything on one machine. A private redis-server (or REDIS_URL), the
//! simulators with the seeded Contoso tenant, the HTTP edge, the workers and the scheduler,
//! then sample tickets rung through the real webhook; it prints each request's timeline as
//! it happens and a final table, and exits 0.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use grantline_connectors::servicenow::ServiceNowAuth;
use grantline_connectors::{
    EntraTokenConfig, GraphClient, GraphConfig, HttpConfig, Secret, ServiceNowClient, ServiceNowConfig,
};
use grantline_queue::server::RedisServer;
use grantline_queue::{Queue, QueueConfig};
use grantline_shared::request::{RequestState, fields, keys};
use grantline_sims::{NewRitm, Sims, SimsConfig, ids, snow_sys_id};
use grantline_workers::{Services, WorkerOptions};
use redis::AsyncCommands;

use crate::narrative::Narrator;

/// Connector configuration for the simulators (the same clients talk to the real services).
pub fn graph_config(sims: &Sims) -> GraphConfig {
    GraphConfig {
        base_url: sims.graph.v1_url(),
        token: EntraTokenConfig {
            authority: sims.login.base_url(),
            tenant: ids::TENANT_ID.into(),
            client_id: ids::APP_GRANTLINE_ID.into(),
            client_secret: Secret::new(ids::APP_GRANTLINE_SECRET),
            resource: "https://graph.microsoft.com".into(),
            refresh_margin_secs: 300,
        },
        http: HttpConfig::default(),
    }
}

/// Exchange Online configuration for the simulator.
pub fn exchange_config(sims: &Sims) -> grantline_connectors::ExchangeConfig {
    grantline_connectors::ExchangeConfig {
        base_url: sims.exchange.base_url(),
        tenant_id: ids::TENANT_ID.into(),
        token: EntraTokenConfig {
            authority: sims.login.base_url(),
            tenant: ids::TENANT_ID.into(),
            client_id: ids::APP_GRANTLINE_ID.into(),
            client_secret: Secret::new(ids::APP_GRANTLINE_SECRET),
            resource: "https://outlook.office365.com".into(),
            refresh_margin_secs: 300,
        },
        http: HttpConfig::default(),
        anchor: None,
    }
}

/// The services of the demo's workers: the group and mailbox executors against the simulators.
pub fn services(
    queue: Queue,
    sims: &Sims,
    policy: grantline_shared::policy::Policy,
    clock: grantline_shared::Clock,
    settings: &grantline_workers::ExecutorSettings,
) -> Result<Services> {
    let exchange = exchange_config(sims);
    Ok(Services::new(
        queue,
        GraphClient::new(&graph_config(sims))?,
        ServiceNowClient::new(&servicenow_config(sims))?,
        policy,
        clock,
        settings,
    )
    .with_mailboxes(grantline_connectors::ExchangeClient::new(&exchange)?, &exchange.tenant_id, settings))
}

/// The Teams bot as the Bot Framework simulator knows it (the same section configures the
/// messaging endpoint's token checks and the proactive messages).
pub fn bot_config(sims: &Sims) -> grantline_connectors::teams::BotConfig {
    use grantline_sims::botframework::{BOT_APP_ID, BOT_APP_SECRET};
    grantline_connectors::teams::BotConfig {
        app_id: BOT_APP_ID.to_owned(),
        app_secret: Secret::new(BOT_APP_SECRET),
        tenant: ids::TENANT_ID.to_owned(),
        authority: sims.login.base_url(),
        openid_metadata_url: sims.botframework.openid_metadata_url(),
        allowed_service_urls: vec![sims.botframework.service_url()],
        ..Default::default()
    }
}

/// The Slack app as the Slack simulator knows it.
pub fn slack_config(sims: &Sims) -> grantline_connectors::slack::SlackConfig {
    grantline_connectors::slack::SlackConfig {
        base_url: sims.slack.api_url(),
        bot_token: Secret::new(sims.slack.bot_token()),
        signing_secret: Secret::new(sims.slack.signing_secret()),
        ..Default::default()
    }
}

/// Approvers asked in Teams, then Slack, with ServiceNow approval records, against the
/// simulators.
pub fn channels(sims: &Sims) -> Result<grantline_workers::channels::Channels> {
    Ok(grantline_workers::channels::Channels::new(
        &grantline_workers::channels::NotifySettings::default(),
        Some(&bot_config(sims)),
        Some(&slack_config(sims)),
        ids::TENANT_ID,
    )?)
}

/// The integration key of the simulated PagerDuty service that takes critical pages (failed
/// compensations); other dead letters go to [`grantline_sims::paging::DEMO_ROUTING_KEY`].
pub const CRITICAL_ROUTING_KEY: &str = "R0GRANTLINECRITICALROUTINGKEY002";
/// The Teams channel of the service desk (a Workflows webhook in the Bot Framework simulator).
pub const SERVICE_DESK_CHANNEL: &str = "Service Desk";

/// Paging against the simulators: dead letters page the on-call PagerDuty service, failed
/// compensations the critical one; both also go to the signed alert webhook, and the service
/// desk's Teams channel hears about every dead letter of a ticket.
pub fn paging_settings(sims: &Sims) -> grantline_workers::paging::PagingSettings {
    use grantline_workers::paging::{Destination, PagingSettings, Route};
    let mut destinations = std::collections::BTreeMap::new();
    destinations.insert(
        "oncall".to_owned(),
        Destination::Pagerduty {
            events_url: sims.paging.pagerduty_url(),
            routing_key: Secret::new(grantline_sims::paging::DEMO_ROUTING_KEY),
        },
    );
    destinations.insert(
        "oncall-critical".to_owned(),
        Destination::Pagerduty {
            events_url: sims.paging.pagerduty_url(),
            routing_key: Secret::new(CRITICAL_ROUTING_KEY),
        },
    );
    destinations.insert(
        "alerts-webhook".to_owned(),
        Destination::Webhook {
            url: Secret::new(sims.paging.webhook_url()),
            secret: Secret::new(grantline_sims::paging::DEMO_WEBHOOK_SECRET),
        },
    );
    destinations.insert(
        "service-desk".to_owned(),
        Destination::TeamsChannel { url: Secret::new(sims.botframework.channel_url(SERVICE_DESK_CHANNEL)) },
    );
    PagingSettings {
        source: "grantline.demo".to_owned(),
        destinations,
        routes: vec![Route {
            kinds: Vec::new(),
            severities: vec![grantline_connectors::pagerduty::Severity::Critical],
            to: vec!["oncall-critical".to_owned(), "alerts-webhook".to_owned()],
        }],
        default: vec!["oncall".to_owned(), "alerts-webhook".to_owned()],
        service_desk: vec!["service-desk".to_owned()],
        ..PagingSettings::default()
    }
}

/// The pager of [`paging_settings`].
pub fn pager(sims: &Sims) -> Result<grantline_workers::paging::Pager> {
    grantline_workers::paging::Pager::new(&paging_settings(sims), None).map_err(anyhow::Error::msg)
}

pub fn servicenow_config(sims: &Sims) -> ServiceNowConfig {
    ServiceNowConfig {
        instance_url: sims.servicenow.base_url(),
        auth: ServiceNowAuth::Basic { username: ids::SNOW_USER.into(), password: Secret::new(ids::SNOW_PASSWORD) },
        http: HttpConfig::default(),
    }
}

struct Sample {
    label: &'static str,
    ritm: NewRitm,
}

fn samples() -> Vec<Sample> {
    vec![
        Sample {
            label: "Alex: Finance BI",
            ritm: NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_FINANCE_BI_NAME),
        },
        Sample {
            label: "Megan: Team Alpha for 20 seconds",
            ritm: NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME).variable("duration", "20s"),
        },
        Sample {
            label: "Contractor: Team Alpha",
            ritm: NewRitm::new(&snow_sys_id(ids::CONTRACTOR_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME),
        },
        Sample {
            label: "Adele: Team Alpha (already a member)",
            ritm: NewRitm::new(&snow_sys_id(ids::ADELE_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME),
        },
        Sample {
            label: "Diego (disabled): Finance BI",
            ritm: NewRitm::new(&snow_sys_id(ids::DISABLED_ID), ids::CAT_ITEM_FINANCE_BI_NAME),
        },
        Sample {
            label: "Lee (left): Team Alpha",
            ritm: NewRitm::new(&snow_sys_id(ids::LEAVER_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME),
        },
        Sample {
            label: "Isaiah: Standing desk (not in the catalog)",
            ritm: NewRitm::new(&snow_sys_id(ids::ISAIAH_ID), ids::CAT_ITEM_UNMAPPED_NAME),
        },
        Sample {
            label: "Alex: Send As on finance@",
            ritm: NewRitm::new(&snow_sys_id(ids::ALEX_ID), ids::CAT_ITEM_SHARED_MAILBOX_NAME)
                .variable("mailbox", ids::MAILBOX_FINANCE)
                .variable("access", "Send As")
                .variable("justification", "sending the month-end statements for Finance"),
        },
        Sample {
            label: "Megan: read-only on helpdesk@",
            ritm: NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_SHARED_MAILBOX_NAME)
                .variable("mailbox", ids::MAILBOX_HELPDESK)
                .variable("access", "read-only")
                .variable("justification", "working the helpdesk queue"),
        },
        Sample {
            label: REFUSED_WRITE_BACK,
            ritm: NewRitm::new(&snow_sys_id(ids::GUEST_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME),
        },
    ]
}

/// The sample whose ticket refuses grantline's write-back for good (a ServiceNow ACL says 403):
/// the update-ticket job is dead-lettered and on-call is paged.
const REFUSED_WRITE_BACK: &str = "Jordan (guest): write-back refused, paged";

const SECRET: &str = "demo-webhook-secret-0123456789";
const OPERATOR: &str = "demo-operator-token-0123456789";

pub async fn run(policy_path: &str) -> Result<()> {
    let redis_kept = std::env::var("REDIS_URL").is_ok_and(|u| !u.is_empty());
    let (_server, url) = match std::env::var("REDIS_URL") {
        Ok(u) if !u.is_empty() => (None, u),
        _ => {
            let s = RedisServer::start().map_err(|e| anyhow!("{e}"))?;
            let url = s.url();
            (Some(s), url)
        }
    };
    let mut sims_cfg = SimsConfig::demo();
    // ServiceNow's business rule authenticates its doorbell with our shared secret
    sims_cfg.servicenow.webhook.secret_header = "X-Grantline-Secret".into();
    sims_cfg.servicenow.webhook.secret = SECRET.into();
    let sims = Sims::start(sims_cfg).await.map_err(|e| anyhow!("simulators: {e}"))?;
    println!(
        "simulators: login {}  graph {}  servicenow {}",
        sims.login.base_url(),
        sims.graph.v1_url(),
        sims.servicenow.base_url()
    );
    let cfg = QueueConfig {
        namespace: format!("demo{:06x}", fastrand::u32(..0xffffff)),
        dead_letter_queue: Some("alert".into()),
        ..QueueConfig::default()
    };
    let queue = Queue::connect(&url, cfg).await.with_context(|| format!("redis at {url}"))?;
    let policy = grantline_shared::policy::load_file(policy_path).map_err(|e| anyhow!("{e}"))?;
    println!("policy: {policy_path} ({})", policy.version());
    // the simulated tenant lives in the Finance change window's hours, whenever the demo runs
    let offset = finance_business_hours_offset(jiff::Timestamp::now())?;
    if !offset.is_zero() {
        sims.clock().set_offset(offset);
        println!(
            "clock: the simulated tenant's clock is set to {} (a weekday in Finance's change window)",
            sims.clock().now()
        );
    }
    let clock = sims.clock().clone();
    // approvers are asked in Teams, then Slack, with a ServiceNow approval record each
    let svc = Arc::new(
        services(
            queue.clone(),
            &sims,
            policy,
            grantline_shared::Clock::from_fn(move || clock.now()),
            &grantline_workers::ExecutorSettings::default(),
        )?
        .with_channels(channels(&sims)?)
        // dead letters page the simulated PagerDuty (and the webhook, and the service desk)
        .with_pager(pager(&sims)?),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut rx = stop_rx.clone();
    let workers = tokio::spawn(grantline_workers::run_workers(svc.clone(), WorkerOptions::default(), async move {
        let _ = rx.wait_for(|v| *v).await;
    }));
    let ingest_cfg = grantline_ingest::IngestConfig {
        servicenow: grantline_ingest::ServiceNowAuth {
            shared_secret: Some(grantline_ingest::Secret::new(SECRET)),
            hmac_secret: None,
        },
        operator_tokens: vec![grantline_ingest::OperatorToken {
            id: "demo".into(),
            token: grantline_ingest::Secret::new(OPERATOR),
            directory_id: None,
            upn: None,
        }],
        ..Default::default()
    };
    let app = grantline_ingest::router(
        grantline_ingest::AppState::new(queue.clone(), ingest_cfg)
            .with_clock(svc.clock.clone())
            .with_directory(GraphClient::new(&graph_config(&sims))?)
            .with_teams(Arc::new(grantline_ingest::teams::TeamsDoor::new(&bot_config(&sims))?))
            .with_slack(Arc::new(grantline_ingest::slack::SlackDoor::new(&slack_config(&sims))?)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ingest_url = format!("http://{}", listener.local_addr()?);
    sims.botframework.set_bot_endpoint(&format!("{ingest_url}/v1/teams/messages"));
    sims.slack.set_request_url(&format!("{ingest_url}/v1/slack/interactions"));
    sims.servicenow.set_approval_webhook(Some(format!("{ingest_url}/v1/webhooks/servicenow")));
    // Sara has not installed the Teams bot: she is asked in Slack
    sims.botframework.set_installed(ids::SARA_UPN, false).map_err(|e| anyhow!("{e}"))?;
    let scheduler_opts = grantline_scheduler::SchedulerOptions {
        sweep_every: Duration::from_secs(1),
        clock: svc.clock.clone(),
        ..Default::default()
    };
    let mut rx = stop_rx.clone();
    let scheduler = tokio::spawn(grantline_scheduler::run(queue.clone(), scheduler_opts, async move {
        let _ = rx.wait_for(|v| *v).await;
    }));
    let mut rx = stop_rx.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|v| *v).await;
            })
            .await;
    });
    println!("ingest: {ingest_url}  (status page: {ingest_url}/status, operator token {OPERATOR})\n");

    let http = reqwest::Client::new();
    let mut requests: Vec<(&str, String, String)> = Vec::new();
    for s in samples() {
        let created = sims.servicenow.state().create_ritm(s.ritm).map_err(|e| anyhow!("{e}"))?;
        if s.label == REFUSED_WRITE_BACK {
            let path = format!("/api/now/table/sc_req_item/{}", created.sys_id);
            sims.servicenow
                .faults()
                .push(grantline_sims::FaultRule::respond(403).on(grantline_sims::Method::PATCH, path));
        }
        let body = serde_json::json!({"source": "servicenow", "event": "ritm.created",
            "ritm": {"sys_id": created.sys_id, "number": created.number}});
        let resp = http
            .post(format!("{ingest_url}/v1/webhooks/servicenow"))
            .header("X-Grantline-Secret", SECRET)
            .json(&body)
            .send()
            .await?;
        let v: serde_json::Value = resp.json().await?;
        let id = v["request_id"].as_str().ok_or_else(|| anyhow!("webhook refused: {v}"))?.to_owned();
        println!("{}  {:<44} request {id}", created.number, s.label);
        requests.push((s.label, created.number, id));
    }
    println!();

    // live timeline until every request rests; then the data owner approves Alex's request
    // through the decision API, and the timeline runs until the short grant has expired
    let mut seen: HashMap<String, (usize, Narrator)> = HashMap::new();
    follow(&svc.clock, &queue, &requests, &mut seen, &|s, _| {
        s.is_terminal() || matches!(s, RequestState::AwaitingApproval | RequestState::Active)
    })
    .await?;
    // approvers answer where they work: each door proves who answered
    let (_, number, id) = &requests[0];
    println!("\n{number}: Patti, the data owner of Finance BI, approves on her Teams card\n");
    let n = notice(&queue, id, "teams", ids::PATTI_ID).await?;
    let activity = n.reference.rsplit('|').next().unwrap_or_default().to_owned();
    let click = grantline_sims::botframework::Click::new(ids::PATTI_UPN, &activity, "approve")
        .input("comment", "approved for the quarter close");
    let r = sims.botframework.click(click).await.map_err(|e| anyhow!("teams click: {e}"))?;
    println!("teams: the bot answered {} and {} the card", r.status, if r.card_replaced { "replaced" } else { "kept" });

    let (_, number, id) = &requests[2];
    println!("\n{number}: Patti, the contractor's manager, approves the approval record in ServiceNow\n");
    let n = notice(&queue, id, "servicenow", ids::PATTI_ID).await?;
    let user_name = sims
        .servicenow
        .state()
        .record("sys_user", ids::PATTI_SNOW_SYS_ID)
        .and_then(|u| u.get("user_name").cloned())
        .unwrap_or_default();
    let rang = sims
        .servicenow
        .approve_in_ui(&n.reference, &user_name, true, "she starts on Monday")
        .await
        .map_err(|e| anyhow!("servicenow approval: {e}"))?;
    println!("servicenow: approval {} approved; the doorbell answered {:?}", n.reference, rang.map(|d| d.status));

    let (_, number, id) = &requests[7];
    println!(
        "\n{number}: Send As needs Alex's manager and the mailbox owner: Sara in Slack, Patti through the operator API\n"
    );
    let n = notice(&queue, id, "slack", ids::SARA_ID).await?;
    let (channel, ts) = n.reference.split_once('|').unwrap_or_default();
    let r =
        sims.slack.click(ids::SARA_UPN, channel, ts, "approve", None).await.map_err(|e| anyhow!("slack click: {e}"))?;
    println!("slack: the app answered {}", r.status);
    let resp = http
        .post(format!("{ingest_url}/v1/requests/{id}/decision"))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"on_behalf_of": ids::PATTI_UPN, "approve": true, "comment": "confirmed by phone"}))
        .send()
        .await?;
    println!("operator on behalf of Patti: {}", resp.status());
    // now a short grant rests only once removed; a long one once active
    let soon = svc.clock.now_ms() + 60_000;
    follow(&svc.clock, &queue, &requests, &mut seen, &|s, end| {
        s.is_terminal()
            || matches!(s, RequestState::AwaitingApproval | RequestState::Completed | RequestState::Deferred)
            || (s == RequestState::Active && end.is_some_and(|e| e > soon))
    })
    .await?;
    offboard_early(&http, &ingest_url, &queue, &sims, &requests[2]).await?;
    follow(&svc.clock, &queue, &requests, &mut seen, &|s, end| {
        s.is_terminal()
            || matches!(s, RequestState::AwaitingApproval | RequestState::Completed | RequestState::Deferred)
            || (s == RequestState::Active && end.is_some_and(|e| e > soon))
    })
    .await?;
    if let Some(note) =
        sims.servicenow.state().work_notes(&requests[2].1).into_iter().find(|n| n.contains("person left"))
    {
        println!("\n{} work note: {note}", requests[2].1);
    }
    print_table(&queue, &sims, &requests).await?;
    print_pages(&queue, &sims).await?;
    where_next(&ingest_url, &queue.config().namespace, redis_kept, &requests);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), workers).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), scheduler).await;
    sims.shutdown().await;
    Ok(())
}

/// One early offboarding: the contractor's contract ends early, HR sends a leaver event, and
/// the active grant is removed now, long before its end, the ticket noted with the reason.
async fn offboard_early(
    http: &reqwest::Client,
    ingest_url: &str,
    queue: &Queue,
    sims: &Sims,
    (_, number, id): &(&str, String, String),
) -> Result<()> {
    let rec = grantline_store::load(queue, id).await?;
    let end = rec.end_ms.and_then(|e| jiff::Timestamp::from_millisecond(e as i64).ok());
    println!(
        "\n{number}: the contractor's contract ends early; a leaver event removes the grant now ({}, ends {})\n",
        rec.state,
        end.map(|e| e.to_string()).unwrap_or_else(|| "never".into())
    );
    let resp = http
        .post(format!("{ingest_url}/v1/events/leaver"))
        .header("X-Grantline-Secret", SECRET)
        .json(&serde_json::json!({"user": ids::CONTRACTOR_UPN, "reason": "contract ended early"}))
        .send()
        .await?;
    println!("leaver event: {}", resp.status());
    // the removal and its ticket note follow through the queue
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let removed = grantline_store::load(queue, id).await?.state == RequestState::Removed;
        if removed && sims.servicenow.state().work_notes(number).iter().any(|n| n.contains("person left")) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!("the contractor's grant was not removed within 30 s of the leaver event"))
}

/// Prints new audit records of every request until each rests in a state `rests` accepts
/// (a time-bound grant rests only once removed) or a minute passes.
/// The notice of `channel` sent to `to` about a request, once the notify step has sent it.
async fn notice(queue: &Queue, id: &str, channel: &str, to: &str) -> Result<grantline_shared::record::Notice> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(rec) = grantline_store::load(queue, id).await
            && let Some(n) = rec.notices.into_iter().find(|n| n.channel == channel && n.to.eq_ignore_ascii_case(to))
        {
            return Ok(n);
        }
        if Instant::now() > deadline {
            return Err(anyhow!("no {channel} message was sent to {to} about request {id}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn follow(
    clock: &grantline_shared::Clock,
    queue: &Queue,
    requests: &[(&str, String, String)],
    seen: &mut HashMap<String, (usize, Narrator)>,
    rests: &dyn Fn(RequestState, Option<u64>) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let tty = std::io::stdout().is_terminal();
    let mut last_progress = Instant::now();
    let mut progress_shown = false;
    loop {
        let mut resting = 0;
        let mut printed = false;
        let (mut awaiting, mut expiring) = (0usize, Vec::new());
        for (_, number, id) in requests {
            let entries = grantline_store::trail::entries(queue, id).await?;
            let (n, narrator) = seen.entry(id.clone()).or_default();
            for e in entries.iter().skip(*n) {
                if let Ok(r) = e.parse()
                    && let Some(line) = narrator.line(&r)
                {
                    if progress_shown && tty {
                        print!("\r\x1b[K");
                        progress_shown = false;
                    }
                    println!("{number}  {line}");
                    printed = true;
                }
            }
            *n = entries.len();
            let rec = grantline_store::find(queue, id).await?;
            let state = rec.as_ref().map(|r| r.state);
            let end = rec.as_ref().and_then(|r| r.end_ms);
            match state {
                Some(RequestState::AwaitingApproval) => awaiting += 1,
                Some(RequestState::Active) => expiring.extend(end),
                _ => {}
            }
            let idle = queue.metrics("update-ticket").await?.ready == 0;
            if state.is_some_and(|s| rests(s, end)) && idle {
                resting += 1;
            }
        }
        if resting == requests.len() || Instant::now() > deadline {
            if progress_shown && tty {
                println!();
            }
            return Ok(());
        }
        if printed {
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= Duration::from_secs(if tty { 1 } else { 5 }) {
            let now = clock.now_ms();
            let soonest = expiring.iter().copied().filter(|e| *e > now).min();
            let mut what = vec![format!("{} of {} requests settled", resting, requests.len())];
            if awaiting > 0 {
                what.push(format!("{awaiting} awaiting approval"));
            }
            if let Some(e) = soonest.filter(|e| e - now < 3_600_000) {
                what.push(format!("next expiry in {} s", (e - now).div_ceil(1000)));
            }
            let line = format!("... waiting: {}", what.join(", "));
            if tty {
                print!("\r\x1b[K{line}");
                let _ = std::io::stdout().flush();
            } else {
                println!("{line}");
            }
            progress_shown = true;
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What on-call and the service desk received: the PagerDuty simulator's incidents and the
/// service desk channel's cards.
async fn print_pages(queue: &Queue, sims: &Sims) -> Result<()> {
    // the alert of a late dead letter may still be sending
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let alerts = queue.metrics("alert").await?;
        if alerts.ready == 0 && alerts.in_flight == 0 && alerts.delayed == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let incidents = sims.paging.state().alerts;
    println!("\npagerduty (simulated): {} incident(s)", incidents.len());
    for a in &incidents {
        let status =
            serde_json::to_value(a.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        println!("  #{} {status} {} dedup_key={}", a.number, a.severity, a.dedup_key);
        println!("     {}", a.summary);
    }
    let desk = sims.botframework.state().channel(SERVICE_DESK_CHANNEL).map(|c| c.messages.len()).unwrap_or(0);
    let hooks = sims.paging.state().deliveries.len();
    println!(
        "service desk channel \"{SERVICE_DESK_CHANNEL}\": {desk} card(s); alert webhook: {hooks} signed delivery(ies)"
    );
    Ok(())
}

async fn print_table(queue: &Queue, sims: &Sims, requests: &[(&str, String, String)]) -> Result<()> {
    println!("\n{:<11} {:<43} {:<18} outcome", "ticket", "request", "state");
    let mut table = BTreeMap::new();
    for (label, number, id) in requests {
        let mut conn = queue.connection();
        let rec: HashMap<String, String> = conn.hgetall(queue.namespace().key(&keys::request(id))).await?;
        let state = rec.get(fields::STATE).cloned().unwrap_or_default();
        let mut reason = rec.get(fields::REASON).cloned().unwrap_or_default();
        if state == "active"
            && let Some(end) = rec.get(fields::END_MS).and_then(|e| e.parse::<i64>().ok())
        {
            let end = jiff::Timestamp::from_millisecond(end).map(|t| t.to_string()).unwrap_or_default();
            reason = format!("granted until {end}; {reason}");
        }
        let ticket = sims
            .servicenow
            .state()
            .ritm(number)
            .map(|r| match r.state.as_str() {
                "1" => "ticket open".to_owned(),
                "2" => "ticket work in progress".to_owned(),
                "3" => "ticket closed complete".to_owned(),
                "4" => "ticket closed incomplete".to_owned(),
                other => format!("ticket state {other}"),
            })
            .unwrap_or_default();
        table.insert(number.clone(), format!("{:<11} {:<43} {:<18} {ticket}: {reason}", number, label, state));
    }
    for line in table.values() {
        println!("{line}");
    }
    Ok(())
}

/// Where a newcomer looks after the run.
fn where_next(ingest_url: &str, namespace: &str, redis_kept: bool, requests: &[(&str, String, String)]) {
    let first = requests.first().map(|(_, n, _)| n.as_str()).unwrap_or("RITM0010001");
    println!("\nwhere to look next");
    if crate::telemetry::export_configured() {
        println!(
            "  traces      every request is one trace in your OTLP backend; its trace id is on the request's status page"
        );
    } else {
        println!(
            "  traces      set OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 (deploy/compose.yaml starts Jaeger, UI on :16686) to see each request as one trace"
        );
    }
    println!("  status      {ingest_url}/status served while the demo ran (a screenshot: docs/status-page.png)");
    if redis_kept {
        println!("  the records stay in your Redis under namespace {namespace}:");
        println!("              GRANTLINE__QUEUE__NAMESPACE={namespace} grantline requests show {first}");
        println!("              GRANTLINE__QUEUE__NAMESPACE={namespace} grantline audit verify {first}");
    } else {
        println!(
            "  records     the demo's Redis is private and gone now; run REDIS_URL=redis://127.0.0.1:6379/ scripts/demo.sh to keep them, then"
        );
        println!(
            "              GRANTLINE__QUEUE__NAMESPACE=<namespace> grantline requests show {first}   and   grantline audit verify {first}"
        );
    }
}


/// How far from `now` the next weekday between 09:00 and 16:00 in Amsterdam is (the example
/// policy's Finance change window), zero when `now` is in it: the demo and the tests move the
/// simulated clock there, so a Finance grant runs at once whatever day they run.
pub fn finance_business_hours_offset(now: jiff::Timestamp) -> Result<jiff::SignedDuration> {
    let tz = jiff::tz::TimeZone::get("Europe/Amsterdam").context("time zone Europe/Amsterdam")?;
    let mut t = now;
    for _ in 0..(8 * 24 * 4) {
        let local = t.to_zoned(tz.clone());
        if local.weekday().to_monday_one_offset() <= 5 && (9..16).contains(&local.hour()) {
            return Ok(t.duration_since(now));
        }
        t = t.checked_add(jiff::SignedDuration::from_mins(15)).context("time out of range")?;
    }
    Err(anyhow!("no weekday business hour within eight days of {now}"))
}
