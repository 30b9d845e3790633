//! The metric catalogue, `deploy/metrics-catalogue.json`, is what the processes serve.
//!
//! `scripts/validate-deploy.sh` checks the Grafana dashboard, the alert rules and the KEDA
//! trigger against the catalogue; this test checks the catalogue against the code. Every role
//! (the edge, the workers, the scheduler) answers `/metrics` with `grantline_ingest::ops`: the
//! figures read from Redis, this process's own families (`grantline_shared::metrics`) and, at
//! the edge, its webhook counters. So one process is enough to see every family: a private
//! redis-server, the edge serving webhooks over TCP, its metrics listener and a worker's (the
//! scheduler's is the same), a policy status recorded by the workers' reload and a directory
//! counter, and one sample of each family the edge's traffic does not produce (job attempts,
//! upstream answers, budgets, refused and timed-out connections). Both listeners are scraped
//! over HTTP; the exposition's `# TYPE`, `# HELP` and series lines must match the catalogue
//! entry by entry, both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use grantline_ingest::ops::MetricsState;
use grantline_ingest::{AppState, IngestConfig, Secret, ServiceNowAuth};
use grantline_queue::server::RedisServer;
use grantline_queue::{Queue, QueueConfig};
use grantline_shared::metrics::{self, EdgeRefusal, EdgeTimeout, JobOutcome};

const SECRET: &str = "metrics-catalogue-shared-secret-01";
const CATALOGUE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/metrics-catalogue.json");

/// One entry of the catalogue, or one family as served.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
    help: Option<String>,
}

fn catalogue() -> BTreeMap<String, Family> {
    let text = std::fs::read_to_string(CATALOGUE).unwrap();
    let doc: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    doc.into_iter()
        .map(|(name, e)| {
            let kind = e["type"].as_str().unwrap_or_else(|| panic!("{name}: no type")).to_owned();
            let labels = e["labels"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: no labels"))
                .iter()
                .map(|l| l.as_str().unwrap().to_owned())
                .collect();
            let help = e.get("help").and_then(|h| h.as_str()).map(str::to_owned);
            (name, Family { kind, labels, help })
        })
        .collect()
}

/// The label names of one series line (`name{a="x",b="y"} 1`), or an error.
fn label_names(series: &str) -> Result<(String, BTreeSet<String>), String> {
    let (head, _value) = series.rsplit_once(' ').ok_or_else(|| format!("no value: {series:?}"))?;
    let Some((name, rest)) = head.split_once('{') else {
        return Ok((head.to_owned(), BTreeSet::new()));
    };
    let body = rest.strip_suffix('}').ok_or_else(|| format!("unclosed labels: {series:?}"))?;
    let mut names = BTreeSet::new();
    let mut chars = body.chars().peekable();
    loop {
        let label: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if label.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return Err(format!("unquoted value of {label}: {series:?}"));
        }
        // the value, with \\, \" and \n escapes
        loop {
            match chars.next() {
                Some('\\') => {
                    chars.next();
                }
                Some('"') => break,
                Some(_) => {}
                None => return Err(format!("unterminated value of {label}: {series:?}")),
            }
        }
        if !names.insert(label.clone()) {
            return Err(format!("label {label} twice: {series:?}"));
        }
        match chars.next() {
            Some(',') => {}
            None => break,
            Some(c) => return Err(format!("{c:?} after the value of {label}: {series:?}")),
        }
    }
    Ok((name.to_owned(), names))
}

/// The families of a Prometheus text exposition, with their series' label names (`le` of a
/// histogram's buckets left out) and how many series each has. Problems with the text itself
/// (a series of no family, series of one family with different labels, a family twice) are
/// returned as well.
fn parse(text: &str) -> (BTreeMap<String, (Family, usize)>, Vec<String>) {
    let mut out: BTreeMap<String, (Family, usize)> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut help: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, h) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(name.to_owned(), h.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let family = Family { kind: kind.to_owned(), labels: BTreeSet::new(), help: help.get(name).cloned() };
            if out.insert(name.to_owned(), (family, 0)).is_some() {
                problems.push(format!("{name}: two # TYPE lines"));
            }
        } else if line.starts_with('#') {
            continue;
        } else {
            let (series, mut labels) = match label_names(line) {
                Ok(x) => x,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            let family = if out.contains_key(&series) {
                Some(series.clone())
            } else {
                ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                    let base = series.strip_suffix(suffix)?;
                    out.get(base).filter(|(f, _)| f.kind == "histogram").map(|_| base.to_owned())
                })
            };
            let Some(family) = family else {
                problems.push(format!("{series}: a series of no # TYPE'd family: {line:?}"));
                continue;
            };
            if series.ends_with("_bucket") && !labels.remove("le") {
                problems.push(format!("{series}: a bucket without le: {line:?}"));
            }
            match seen_labels.get(&family) {
                Some(prev) if *prev != labels => {
                    problems.push(format!("{family}: series with labels {prev:?} and {labels:?}"));
                }
                _ => {
                    seen_labels.insert(family.clone(), labels.clone());
                }
            }
            let entry = out.get_mut(&family).unwrap();
            entry.0.labels.extend(labels);
            entry.1 += 1;
        }
    }
    (out, problems)
}

/// What differs between the catalogue and the families the roles serve (`served`: each role's
/// families, by role).
fn differences(catalogue: &BTreeMap<String, Family>, served: &[(&str, &str)]) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut all: BTreeMap<String, (Family, &str)> = BTreeMap::new();
    for (role, text) in served {
        let (families, problems) = parse(text);
        diffs.extend(problems.into_iter().map(|p| format!("{role}: {p}")));
        for (name, (family, series)) in families {
            if series == 0 {
                // an empty family shows no labels: the test must give it a sample
                diffs.push(format!("{role}: {name} has no series (record a sample in the test)"));
            }
            if let Some((other, other_role)) = all.get(&name) {
                if *other != family {
                    diffs.push(format!("{name}: {other_role} serves {other:?}, {role} serves {family:?}"));
                }
                continue;
            }
            all.insert(name, (family, role));
        }
    }
    for (name, (family, role)) in &all {
        let Some(entry) = catalogue.get(name) else {
            diffs.push(format!(
                "{name}: served by {role} ({} with labels {:?}) but not in the catalogue",
                family.kind, family.labels
            ));
            continue;
        };
        if entry.kind != family.kind {
            diffs.push(format!("{name}: the catalogue says {}, {role} serves a {}", entry.kind, family.kind));
        }
        if entry.labels != family.labels {
            diffs.push(format!(
                "{name}: the catalogue says labels {:?}, {role} serves {:?}",
                entry.labels, family.labels
            ));
        }
        if entry.help.is_some() && entry.help != family.help {
            diffs.push(format!("{name}: the catalogue's help {:?}, {role} serves {:?}", entry.help, family.help));
        }
    }
    for name in catalogue.keys().filter(|n| !all.contains_key(*n)) {
        diffs.push(format!("{name}: in the catalogue, served by no role"));
    }
    diffs
}

async fn scrape(http: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    let resp = http.get(format!("http://{addr}/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

async fn listen() -> (tokio::net::TcpListener, std::net::SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

fn ritm(number: &str) -> String {
    serde_json::json!({
        "source": "servicenow", "event": "ritm.created", "instance": "contoso.service-now.com",
        "ritm": {"sys_id": "a9e30c7dc61122760116894de7bcc7bd", "number": number},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_is_what_the_roles_serve() {
    let redis = RedisServer::start().expect("redis-server");
    let queue = Queue::connect(&redis.url(), QueueConfig { namespace: "catalogue".into(), ..QueueConfig::default() })
        .await
        .unwrap();
    let cfg = IngestConfig {
        servicenow: ServiceNowAuth { shared_secret: Some(Secret::new(SECRET)), hmac_secret: None },
        ..IngestConfig::default()
    };
    cfg.validate().unwrap();
    let state = AppState::new(queue.clone(), cfg);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let (edge_l, edge) = listen().await;
    let (edge_metrics_l, edge_metrics) = listen().await;
    let (worker_metrics_l, worker_metrics) = listen().await;
    let servers = [
        tokio::spawn({
            let (state, stop) = (state.clone(), until_stopped());
            async move { grantline_ingest::serve_listener(edge_l, state, stop).await.map_err(|e| e.to_string()) }
        }),
        tokio::spawn({
            let (state, stop) = (MetricsState::of_edge(&state), until_stopped());
            async move { grantline_ingest::ops::serve_metrics(edge_metrics_l, state, stop).await.map_err(|e| e.to_string()) }
        }),
        tokio::spawn({
            let (state, stop) = (MetricsState::new(queue.clone()), until_stopped());
            async move {
                grantline_ingest::ops::serve_metrics(worker_metrics_l, state, stop).await.map_err(|e| e.to_string())
            }
        }),
    ];

    // the edge's traffic: a ticket accepted, the same ticket again, a malformed body
    let http = reqwest::Client::new();
    let webhook = |body: String| {
        http.post(format!("http://{edge}/v1/webhooks/servicenow"))
            .header("content-type", "application/json")
            .header("x-grantline-secret", SECRET)
            .body(body)
            .send()
    };
    assert_eq!(webhook(ritm("RITM0020001")).await.unwrap().status(), 202);
    assert_eq!(webhook(ritm("RITM0020001")).await.unwrap().status(), 202);
    assert_eq!(webhook("{".into()).await.unwrap().status(), 400);

    // what the workers write to Redis: the policy in force, a directory sweep's counter
    let policy_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/policy.toml");
    let policy = grantline_shared::policy::load_file(&policy_path).unwrap();
    let handle = grantline_workers::PolicyHandle::new(policy);
    let reload = grantline_workers::policy_reload::reload_once(&handle, &policy_path, &queue).await;
    assert_eq!(reload, grantline_workers::policy_reload::Reload::Unchanged);
    grantline_store::directory::count(&queue, "delta_pages", 1).await.unwrap();

    // one sample of each family this process counts that the traffic above did not produce
    metrics::job_finished("validate", JobOutcome::Completed, Duration::from_millis(12));
    metrics::upstream_response("graph", 200);
    metrics::budget_rate("graph", "app_writes", 20.0);
    metrics::budget_paused("graph", "app_writes", 0);
    metrics::connection_refused(EdgeRefusal::Cap);
    metrics::connection_evicted();
    metrics::connection_timeout(EdgeTimeout::Header);

    let edge_text = scrape(&http, edge_metrics).await;
    let worker_text = scrape(&http, worker_metrics).await;
    assert!(edge_text.contains("grantline_queue_scrape_ok 1"), "{edge_text}");
    assert!(edge_text.contains("grantline_ingest_requests_total{outcome=\"accepted\"} 1"), "{edge_text}");
    let served = [("ingest", edge_text.as_str()), ("worker", worker_text.as_str())];
    let catalogue = catalogue();
    let diffs = differences(&catalogue, &served);
    assert!(
        diffs.is_empty(),
        "deploy/metrics-catalogue.json and /metrics differ:\n  {}\n\nthe edge served:\n{edge_text}",
        diffs.join("\n  ")
    );

    // and the comparison sees a family renamed and a label added
    let renamed = edge_text.replace("grantline_removals_pending", "grantline_removals_due");
    let diffs = differences(&catalogue, &[("ingest", &renamed)]);
    assert!(diffs.iter().any(|d| d.starts_with("grantline_removals_due: served by ingest")), "{diffs:?}");
    assert!(diffs.iter().any(|d| d.starts_with("grantline_removals_pending: in the catalogue, served by no")));
    let relabelled = edge_text.replace("\ngrantline_approvals_pending ", "\ngrantline_approvals_pending{stage=\"1\"} ");
    let diffs = differences(&catalogue, &[("ingest", &relabelled)]);
    assert!(diffs.iter().any(|d| d.starts_with("grantline_approvals_pending: the catalogue says labels")), "{diffs:?}");

    stop.send(true).unwrap();
    for s in servers {
        tokio::time::timeout(Duration::from_secs(10), s).await.unwrap().unwrap().unwrap();
    }
}

#[test]
fn the_catalogue_is_well_formed() {
    let text = std::fs::read_to_string(CATALOGUE).unwrap();
    let doc: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    for (name, e) in &doc {
        assert!(name.starts_with("grantline_"), "{name}");
        let obj = e.as_object().unwrap();
        for k in obj.keys() {
            assert!(["type", "labels", "help"].contains(&k.as_str()), "{name}: unknown field {k}");
        }
        let kind = obj["type"].as_str().unwrap();
        assert!(["counter", "gauge", "histogram"].contains(&kind), "{name}: type {kind}");
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name}: a counter's name ends in _total");
        let labels: Vec<&str> = obj["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        assert!(!labels.contains(&"le"), "{name}: le is the histogram's own");
    }
}
