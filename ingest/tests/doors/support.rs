//! The doors' test bed: the simulators (Graph as the directory, the Bot Framework channel,
//! Slack), a private Redis, and the edge served over HTTP on a free port so the simulators can
//! call it, all on the simulators' clock.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde_json::{Value, json};

use grantline_connectors::slack::{SlackClient, SlackConfig};
use grantline_connectors::teams::{BotConfig, BotConnectorClient};
use grantline_connectors::{EntraTokenConfig, GraphClient, GraphConfig, Secret};
use grantline_ingest::slack::SlackDoor;
use grantline_ingest::teams::TeamsDoor;
use grantline_ingest::{AppState, router};
use grantline_queue::server::RedisServer;
use grantline_queue::{Queue, QueueConfig};
use grantline_shared::audit::AuditRecord;
use grantline_shared::cards::ApprovalView;
use grantline_shared::record::RequestRecord;
use grantline_sims::botframework::{BOT_APP_ID, BOT_APP_SECRET};
use grantline_sims::{Sims, SimsConfig, ids};
use grantline_store::doors::DoorRefusal;

use crate::common::{self, Harness};

/// The test bed. Dropping it stops the edge (the simulators and Redis stop with their handles).
pub struct Bed {
    pub h: Harness,
    pub sims: Sims,
    /// `http://127.0.0.1:PORT` of the edge.
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The bot as the channel simulator knows it (inbound and outbound keys).
pub fn bot_config(sims: &Sims) -> BotConfig {
    BotConfig {
        app_id: BOT_APP_ID.to_owned(),
        app_secret: Secret::new(BOT_APP_SECRET),
        tenant: ids::TENANT_ID.to_owned(),
        authority: sims.login.base_url(),
        openid_metadata_url: sims.botframework.openid_metadata_url(),
        allowed_service_urls: vec![sims.botframework.service_url()],
        ..BotConfig::default()
    }
}

/// The Slack app as the Slack simulator knows it.
pub fn slack_config(sims: &Sims) -> SlackConfig {
    SlackConfig {
        base_url: sims.slack.api_url(),
        bot_token: Secret::new(sims.slack.bot_token()),
        signing_secret: Secret::new(sims.slack.signing_secret()),
        ..SlackConfig::default()
    }
}

fn directory(sims: &Sims) -> GraphClient {
    GraphClient::new(&GraphConfig {
        base_url: sims.graph.v1_url(),
        token: EntraTokenConfig {
            authority: sims.login.base_url(),
            tenant: ids::TENANT_ID.to_owned(),
            client_id: ids::APP_GRANTLINE_ID.to_owned(),
            client_secret: Secret::new(ids::APP_GRANTLINE_SECRET),
            resource: "https://graph.microsoft.com".to_owned(),
            ..EntraTokenConfig::default()
        },
        ..GraphConfig::default()
    })
    .unwrap()
}

/// Starts everything, with both doors configured.
pub async fn bed() -> Bed {
    bed_with(Duration::from_secs(12)).await
}

/// As [`bed`], with this time for a Teams click to be answered.
pub async fn bed_with(teams_answer_timeout: Duration) -> Bed {
    let sims = Sims::start(SimsConfig::demo()).await.unwrap();
    let redis = RedisServer::start().expect("redis-server");
    let queue =
        Queue::connect(&redis.url(), QueueConfig { namespace: "t".into(), ..QueueConfig::default() }).await.unwrap();
    let sim_clock = sims.clock().clone();
    let teams = TeamsDoor::new(&bot_config(&sims)).unwrap().with_answer_timeout(teams_answer_timeout);
    let slack = SlackDoor::new(&slack_config(&sims)).unwrap();
    let state = AppState::new(queue.clone(), common::config())
        .with_clock(grantline_shared::Clock::from_fn(move || sim_clock.now()))
        .with_directory(directory(&sims))
        .with_teams(Arc::new(teams))
        .with_slack(Arc::new(slack));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(grantline_ingest::serve_listener(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    sims.botframework.set_bot_endpoint(&format!("{base}/v1/teams/messages"));
    sims.slack.set_request_url(&format!("{base}/v1/slack/interactions"));
    let app = router(state.clone());
    let h = Harness { redis, queue, state, app, now: Arc::new(AtomicU64::new(0)) };
    Bed { h, sims, base, stop: Some(stop) }
}

/// Alex Wilber, the requester of every test request.
pub fn requester() -> Value {
    json!({"id": ids::ALEX_ID, "upn": ids::ALEX_UPN, "user_type": "Member", "account_enabled": true})
}

/// A plan stage: `name`, any one of `people` (object ids) approves.
pub fn any_of(name: &str, people: &[&str]) -> Value {
    let approvers: Vec<Value> = people.iter().map(|p| json!({"kind": "manager", "ids": [p]})).collect();
    json!({"name": name, "quorum": "any", "time_to_decide": "72h", "on_timeout": "expire", "approvers": approvers})
}

/// A request awaiting approval under a plan with these stages.
pub async fn awaiting(bed: &Bed, stages: Vec<Value>) -> String {
    let id = common::accept(&bed.h, common::NUMBER).await;
    let plan = common::decision_with_plan(json!({"type": "plan", "rule": "doors-test",
        "excluded": [ids::ALEX_ID, ids::ALEX_UPN], "stages": stages}));
    common::await_approval(&bed.h, &id, requester(), plan).await;
    id
}

pub async fn record(bed: &Bed, id: &str) -> RequestRecord {
    grantline_store::find(&bed.h.queue, id).await.unwrap().expect("the request")
}

/// The request's timeline, in order.
pub async fn timeline(bed: &Bed, id: &str) -> Vec<AuditRecord> {
    common::audit_entries(&bed.h, id).await.iter().map(|e| serde_json::from_str(&e.0).unwrap()).collect()
}

/// The doors' log, oldest first.
pub async fn door_log(bed: &Bed) -> Vec<DoorRefusal> {
    let mut v = grantline_store::doors::recent(&bed.h.queue, 1000).await.unwrap();
    v.reverse();
    v
}

/// Polls `probe` until it gives a value (at most 20 seconds).
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends the Teams approval card of `stage` to `user` (object id) the way the notify step
/// does; returns the activity id.
pub async fn send_card(bed: &Bed, id: &str, stage: usize, user: &str) -> String {
    let client = BotConnectorClient::new(&bot_config(&bed.sims)).unwrap();
    let service_url = bed.sims.botframework.service_url();
    let conversation = client.create_conversation(&service_url, user, ids::TENANT_ID).await.unwrap().value;
    let card = ApprovalView::of(&record(bed, id).await, stage).teams_card();
    client.send_card(&service_url, &conversation, &card).await.unwrap().value
}

/// Posts the Slack approval message of `stage` to #access-approvals; returns its `ts`.
pub async fn post_message(bed: &Bed, id: &str, stage: usize) -> String {
    let client = SlackClient::new(&slack_config(&bed.sims)).unwrap();
    let view = ApprovalView::of(&record(bed, id).await, stage);
    let channel = grantline_sims::slack::APPROVALS_CHANNEL_ID;
    client.post_message(channel, &view.slack_text(), &view.slack_blocks()).await.unwrap().ts
}

/// Whether a card or a block list offers buttons.
pub fn has_actions(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            m.get("actions").and_then(Value::as_array).is_some_and(|a| !a.is_empty())
                || m.get("type").and_then(Value::as_str) == Some("actions")
                || m.values().any(has_actions)
        }
        Value::Array(items) => items.iter().any(has_actions),
        _ => false,
    }
}

/// All the text of a card or a block list, joined.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => m.values().map(text_of).collect::<Vec<_>>().join(" "),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}
