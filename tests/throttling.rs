//! When Microsoft Graph throttles: one write budget per tenant shared by every worker process,
//! a refusal pausing every writer, a 429 storm costing latency and never requests, batched
//! membership writes that fall back when Graph refuses the batch, and no write the read
//! already answered. Real Redis, the simulators over HTTP, real worker processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::process::Stdio;
use std::time::Duration;

use grantline_shared::request::RequestState;
use grantline_sims::{FaultRule, LoggedRequest, Method, NewRitm, SimsConfig, ThrottleConfig, ids, snow_sys_id};
use grantline_workers::ExecutorSettings;
use grantline_workers::budget::BudgetConfig;
use support::{Stack, StackOptions, TempDir, bulk_tenant, bulk_user_id, sales_tenant};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_grantline");
const MEMBER_REF: &str = "/v1.0/groups/*/members/$ref";

fn is_membership_write(r: &LoggedRequest) -> bool {
    (r.method == "POST" && r.path.ends_with("/members/$ref"))
        || (r.method == "PATCH" && r.path.starts_with("/v1.0/groups/"))
}

fn writes(stack: &Stack) -> Vec<LoggedRequest> {
    stack.sims.graph.requests().into_iter().filter(is_membership_write).collect()
}

/// Submits a Team Alpha request for each of the first `n` bulk agents; returns the request ids.
async fn submit_agents(stack: &Stack, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ritm = NewRitm::new(&snow_sys_id(&bulk_user_id(i)), ids::CAT_ITEM_TEAM_ALPHA_NAME);
        out.push(stack.submit(ritm).await.1);
    }
    out
}

async fn wait_all(stack: &Stack, ids: &[String], state: RequestState, within: Duration) {
    for id in ids {
        stack.wait_state(id, state, within).await;
    }
}

fn settings(budget: BudgetConfig, batch: bool) -> ExecutorSettings {
    ExecutorSettings { graph_budget: budget, batch, batch_linger_ms: 30, ..ExecutorSettings::default() }
}

fn spawn_worker(stack: &Stack, dir: &TempDir, n: usize) -> tokio::process::Child {
    let log = std::fs::File::create(dir.path().join(format!("worker-{n}.log"))).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("worker");
    for (k, _) in std::env::vars() {
        if k.starts_with("GRANTLINE") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(stack.worker_env())
        .env("HOSTNAME", format!("throttle-worker-{n}"))
        .env("RUST_LOG", "info")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    cmd.spawn().expect("spawn grantline worker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_keep_to_one_budget_and_pause_together() {
    let dir = TempDir::new("budget");
    let budget = BudgetConfig {
        writes_per_second: 4.0,
        tenant_writes_per_second: 0.0,
        write_burst: 1.0,
        reads_per_second: 1000.0,
        read_burst: 1000.0,
        default_retry_after_ms: 1000,
    };
    let mut sims = SimsConfig { tenant: bulk_tenant(24), ..SimsConfig::demo() };
    sims.graph.throttle = ThrottleConfig::disabled();
    let stack = Stack::start_opts(StackOptions {
        workers: false,
        sims,
        executors: settings(budget, false),
        ..StackOptions::default()
    })
    .await;
    let mut workers = vec![spawn_worker(&stack, &dir, 1), spawn_worker(&stack, &dir, 2)];
    let ids = submit_agents(&stack, 24).await;
    // once writing is under way, the next write is refused with Retry-After 2: every writer of
    // the tenant, in both processes, must pause
    stack.wait_for("two writes", Duration::from_secs(30), || async { (writes(&stack).len() >= 2).then_some(()) }).await;
    stack
        .sims
        .graph
        .faults()
        .push(FaultRule::respond(429).on(Method::POST, MEMBER_REF).header("Retry-After", "2").times(1));
    wait_all(&stack, &ids, RequestState::Active, Duration::from_secs(60)).await;
    for w in &mut workers {
        let _ = w.start_kill();
    }

    let log = writes(&stack);
    let refused: Vec<&LoggedRequest> = log.iter().filter(|r| r.status == 429).collect();
    assert_eq!(refused.len(), 1, "one scripted refusal: {log:#?}");
    let pause_until = refused[0].at.checked_add(jiff::SignedDuration::from_secs(2)).unwrap();
    let during: Vec<_> = log.iter().filter(|r| r.at > refused[0].at && r.at < pause_until).collect();
    assert!(during.is_empty(), "no process wrote while the pause was in force: {during:#?}");
    // never more writes in a second than the budget allows (4/s, no burst: at most 5 in any
    // one-second span, counting both ends)
    let accepted: Vec<jiff::Timestamp> = log.iter().filter(|r| r.status == 204).map(|r| r.at).collect();
    assert_eq!(accepted.len(), 24, "every grant written once");
    for (i, t) in accepted.iter().enumerate() {
        let within =
            accepted[i..].iter().take_while(|u| u.duration_since(*t) < jiff::SignedDuration::from_secs(1)).count();
        assert!(within <= 5, "{within} writes within one second from {t}");
    }
    for id in &ids {
        assert_eq!(stack.audit(id).await.iter().filter(|r| r.event.name() == "grant_executed").count(), 1);
    }
    let m = stack.metrics("execute-grant").await;
    assert_eq!((m.dead_total, m.retried_total), (0, 0), "waiting for the budget is not failing: {m:?}");
    assert!(m.waited_total > 0, "{m:?}");
    assert_eq!(stack.queue.dead_letters("execute-grant", None, 10).await.unwrap().len(), 0);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_ends_with_every_request_granted_and_no_dead_letter() {
    // the budget believes 30 writes/s; Graph allows 3 per second and counts refused calls too
    let budget = BudgetConfig {
        writes_per_second: 30.0,
        tenant_writes_per_second: 0.0,
        write_burst: 10.0,
        reads_per_second: 1000.0,
        read_burst: 1000.0,
        default_retry_after_ms: 1000,
    };
    let mut sims = SimsConfig { tenant: bulk_tenant(30), ..SimsConfig::demo() };
    sims.graph.throttle = ThrottleConfig {
        writes: 3,
        write_window: Duration::from_secs(1),
        resource_units: 1_000_000,
        ..ThrottleConfig::default()
    };
    let stack =
        Stack::start_opts(StackOptions { sims, executors: settings(budget, false), ..StackOptions::default() }).await;
    let ids = submit_agents(&stack, 30).await;
    wait_all(&stack, &ids, RequestState::Active, Duration::from_secs(90)).await;
    let log = writes(&stack);
    let refused = log.iter().filter(|r| r.status == 429).count();
    assert_eq!(log.iter().filter(|r| r.status == 204).count(), 30, "each granted exactly once");
    assert!(refused > 0, "the storm happened: {refused} refusals");
    for i in 0..30 {
        assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, &bulk_user_id(i)), 1);
    }
    let m = stack.metrics("execute-grant").await;
    assert_eq!((m.dead_total, m.retried_total), (0, 0), "{m:?}");
    // the budget learned a lower rate from the refusals
    let state = stack
        .queue
        .limit_state(&format!(
            "budget:graph:{}:{}:writes",
            ids::TENANT_ID.to_ascii_lowercase(),
            ids::APP_GRANTLINE_ID.to_ascii_lowercase()
        ))
        .await
        .unwrap();
    assert!(state.rate.unwrap() < 30.0, "{state:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_grants_use_one_write_and_a_refused_batch_falls_back_to_single_adds() {
    let mut sims = SimsConfig { tenant: sales_tenant(6), ..SimsConfig::demo() };
    sims.graph.throttle = ThrottleConfig::disabled();
    let stack = Stack::start_opts(StackOptions {
        sims,
        executors: ExecutorSettings { batch_linger_ms: 400, ..ExecutorSettings::default() },
        ..StackOptions::default()
    })
    .await;
    // six people ask for Team Alpha; their manager's approval is needed
    let mut reqs = Vec::new();
    for i in 0..6 {
        let user = format!("41000000-0000-4000-8000-{i:012}");
        let (_, id) = stack.submit(NewRitm::new(&snow_sys_id(&user), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
        reqs.push((user, id));
    }
    for (_, id) in &reqs {
        stack.wait_state(id, RequestState::AwaitingApproval, support::WAIT).await;
    }
    // meanwhile someone adds the fourth person by hand, after validate read the group
    stack.sims.graph.state().add_member(ids::GROUP_TEAM_ALPHA, &reqs[3].0).unwrap();
    stack.sims.graph.clear_requests();
    for (_, id) in &reqs {
        let (status, body) = stack.decide(id, ids::SARA_UPN, true).await;
        assert_eq!(status, 200, "{body}");
    }
    for (_, id) in &reqs {
        stack.wait_state(id, RequestState::Active, support::WAIT).await;
    }
    let log = writes(&stack);
    let patches: Vec<&LoggedRequest> = log.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 1, "one batch: {log:#?}");
    assert_eq!(patches[0].status, 400, "Graph refuses the whole batch for the member already there");
    let singles: Vec<&LoggedRequest> = log.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(singles.len(), 6, "then one add each: {singles:#?}");
    assert_eq!(singles.iter().filter(|r| r.status == 204).count(), 5);
    assert_eq!(singles.iter().filter(|r| r.status == 400).count(), 1, "the one already there");
    for (i, (user, id)) in reqs.iter().enumerate() {
        assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, user), 1);
        let grant = stack.json_field(id, "grant").await;
        assert_eq!(
            grant["pre_existing"],
            i == 3,
            "only the hand-made membership is pre-existing: {grant} {:#?}",
            stack.audit(id).await
        );
    }

    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_to_one_group_that_are_ready_together_share_one_write() {
    let mut sims = SimsConfig { tenant: bulk_tenant(12), ..SimsConfig::demo() };
    sims.graph.throttle = ThrottleConfig::disabled();
    let stack = Stack::start_opts(StackOptions {
        sims,
        executors: ExecutorSettings { batch_linger_ms: 300, ..ExecutorSettings::default() },
        ..StackOptions::default()
    })
    .await;
    let ids = submit_agents(&stack, 12).await;
    wait_all(&stack, &ids, RequestState::Active, support::WAIT).await;
    let log = writes(&stack);
    assert!(log.iter().all(|r| r.method == "PATCH" && r.status == 204), "{log:#?}");
    assert!(log.len() <= 3, "12 grants in at most 3 writes: {}", log.len());
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, &bulk_user_id(i)), 1);
        let grant = stack.json_field(id, "grant").await;
        assert_eq!((grant["batched"].as_bool(), grant["pre_existing"].as_bool()), (Some(true), Some(false)), "{grant}");
        // each request keeps its own trail and read-back
        let trail = stack.audit_events(id).await;
        assert_eq!(trail.iter().filter(|e| **e == "grant_executed").count(), 1);
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_the_read_already_showed_is_not_written() {
    let stack = Stack::start().await;
    // Adele is already in Team Alpha; her manager approves her request
    let (_, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::ADELE_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&id, RequestState::AwaitingApproval, support::WAIT).await;
    let (status, body) = stack.decide(&id, ids::SARA_ID, true).await;
    assert_eq!(status, 200, "{body}");
    stack.wait_state(&id, RequestState::Active, support::WAIT).await;
    assert!(writes(&stack).is_empty(), "no membership write at all: {:#?}", writes(&stack));
    let grant = stack.json_field(&id, "grant").await;
    assert_eq!(grant["pre_existing"], true);
    // the evidence is the read that showed the membership: validate's one directory call
    let read = stack
        .sims
        .graph
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1.0/$batch" && r.body.contains(&format!("/memberOf/{}", ids::GROUP_TEAM_ALPHA)))
        .expect("the membership read");
    assert_eq!(grant["evidence"]["client_request_id"].as_str(), read.header("client-request-id"), "{grant}");
    assert!(grant["evidence"]["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{grant}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_of_one_group_due_together_share_one_batch() {
    let mut sims = SimsConfig { tenant: bulk_tenant(6), ..SimsConfig::demo() };
    sims.graph.throttle = ThrottleConfig::disabled();
    let stack = Stack::start_opts(StackOptions {
        sims,
        executors: ExecutorSettings { batch_linger_ms: 400, ..ExecutorSettings::default() },
        ..StackOptions::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let ritm =
            NewRitm::new(&snow_sys_id(&bulk_user_id(i)), ids::CAT_ITEM_TEAM_ALPHA_NAME).variable("duration", "3s");
        ids.push(stack.submit(ritm).await.1);
    }
    wait_all(&stack, &ids, RequestState::Active, support::WAIT).await;
    stack.sims.graph.clear_requests();
    wait_all(&stack, &ids, RequestState::Removed, support::WAIT_EXPIRY).await;
    let log = stack.sims.graph.requests();
    let deletes: Vec<&LoggedRequest> = log.iter().filter(|r| r.method == "DELETE").collect();
    assert!(deletes.is_empty(), "no single removals: {deletes:#?}");
    let batches: Vec<&LoggedRequest> =
        log.iter().filter(|r| r.path == "/v1.0/$batch" && r.body.contains("\"DELETE\"")).collect();
    assert!(!batches.is_empty() && batches.len() <= 2, "removals shared one or two $batch calls: {}", batches.len());
    for i in 0..6 {
        assert_eq!(stack.memberships(ids::GROUP_TEAM_ALPHA, &bulk_user_id(i)), 0);
    }
    for id in &ids {
        let removal = stack.json_field(id, "removal").await;
        assert_eq!(removal["removed"], true, "{removal}");
    }
    stack.shutdown().await;
}
