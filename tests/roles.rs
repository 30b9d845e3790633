//! The roles as processes: each serves its own `/metrics` on `metrics.bind`, and a process
//! whose role cannot start (a listener it cannot bind, a configuration it refuses) exits at
//! once, non-zero, naming the key, instead of idling until someone sends SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use grantline_shared::request::RequestState;
use grantline_sims::{NewRitm, ids, snow_sys_id};
use support::{Stack, StackOptions, TempDir, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_grantline");
const SECRET: &str = "roles-test-shared-secret-0123456789";
/// How long a process that cannot start may take to say so (it connects to Redis and the
/// token endpoint first); far below "until SIGTERM".
const EXIT_WITHIN: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn command(stack: &Stack, dir: &TempDir, role: &str, extra: &[(&str, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg(role);
    for (k, _) in std::env::vars() {
        if k.starts_with("GRANTLINE") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(stack.worker_env())
        .env("GRANTLINE__INGEST__SERVICENOW__SHARED_SECRET", SECRET)
        .env("RUST_LOG", "info")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `role` and expects it to exit by itself, non-zero; returns its standard error.
async fn exits_at_once(stack: &Stack, dir: &TempDir, role: &str, extra: &[(&str, String)]) -> String {
    let child = command(stack, dir, role, extra).spawn().unwrap();
    let out = tokio::time::timeout(EXIT_WITHIN, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("grantline {role} kept running although it could not start"))
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "grantline {role} exited 0:\n{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_cannot_start_stops_the_process_at_once() {
    let dir = TempDir::new("roles-start");
    let stack = Stack::start_opts(StackOptions { workers: false, ..StackOptions::default() }).await;

    // the edge's port is taken: `run` does not start the workers and idle
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = exits_at_once(
        &stack,
        &dir,
        "run",
        &[("GRANTLINE__INGEST__BIND", format!("127.0.0.1:{port}")), ("GRANTLINE__METRICS__BIND", "127.0.0.1:0".into())],
    )
    .await;
    assert!(err.contains("ingest.bind") && err.contains(&port.to_string()), "{err}");

    // the metrics port is taken: a worker refuses to start without it
    let err = exits_at_once(&stack, &dir, "worker", &[("GRANTLINE__METRICS__BIND", format!("127.0.0.1:{port}"))]).await;
    assert!(err.contains("metrics.bind"), "{err}");

    // the edge's configuration is checked before anything starts
    let err = exits_at_once(
        &stack,
        &dir,
        "run",
        &[("GRANTLINE__INGEST__BIND", "127.0.0.1:0".into()), ("GRANTLINE__INGEST__REPLAY_WINDOW_SECS", "0".into())],
    )
    .await;
    assert!(err.contains("ingest.replay_window_secs"), "{err}");
    // and no worker ever took a job from this namespace
    let mut conn = stack.queue.connection();
    let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut conn).await.unwrap();
    assert!(!clients.lines().any(|l| l.contains("cmd=blpop")), "a worker started:\n{clients}");
    drop(taken);
    stack.shutdown().await;
}

async fn scrape(http: &reqwest::Client, port: u16) -> String {
    let resp = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    resp.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_and_the_scheduler_serve_their_own_metrics() {
    let dir = TempDir::new("roles-metrics");
    let stack = Stack::start_opts(StackOptions { workers: false, ..StackOptions::default() }).await;
    let (wport, sport) = (free_port(), free_port());
    let mut worker =
        command(&stack, &dir, "worker", &[("GRANTLINE__METRICS__BIND", format!("127.0.0.1:{wport}"))]).spawn().unwrap();
    let mut scheduler =
        command(&stack, &dir, "scheduler", &[("GRANTLINE__METRICS__BIND", format!("127.0.0.1:{sport}"))])
            .spawn()
            .unwrap();

    // Megan's Team Alpha request auto-approves: the worker runs the whole chain
    let (_, id) = stack.submit(NewRitm::new(&snow_sys_id(ids::MEGAN_ID), ids::CAT_ITEM_TEAM_ALPHA_NAME)).await;
    stack.wait_state(&id, RequestState::Active, WAIT).await;

    let text = stack
        .wait_for("the worker's metrics to count the chain", WAIT, || async {
            let t = scrape(&stack.http, wport).await;
            t.contains("grantline_job_outcomes_total{kind=\"schedule-removal\",outcome=\"completed\"} 1").then_some(t)
        })
        .await;
    for line in [
        "grantline_job_outcomes_total{kind=\"validate\",outcome=\"completed\"} 1",
        "grantline_job_outcomes_total{kind=\"execute-grant\",outcome=\"completed\"} 1",
        "grantline_job_duration_seconds_count{kind=\"execute-grant\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("grantline_upstream_responses_total{connector=\"graph\",status=\"200\"}"), "{text}");
    assert!(text.contains("grantline_upstream_responses_total{connector=\"servicenow\",status=\"200\"}"), "{text}");
    // the figures read from Redis are in every role's exposition
    assert!(text.contains("grantline_queue_completed_total{queue=\"validate\"} 1"), "{text}");

    let text = scrape(&stack.http, sport).await;
    assert!(text.contains("grantline_queue_completed_total{queue=\"validate\"} 1"), "{text}");
    assert!(!text.contains("grantline_job_outcomes_total{"), "the scheduler runs no jobs:\n{text}");
    for port in [wport, sport] {
        let health = stack.http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }

    for child in [&mut worker, &mut scheduler] {
        let pid = child.id().unwrap();
        assert!(std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap().success());
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "{pid} exited {status}");
    }
    stack.shutdown().await;
}
