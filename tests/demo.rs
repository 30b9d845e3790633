//! The demo as a newcomer runs it: the real binary, on the embedded defaults. It exits 0, its
//! terminal carries the readable timeline (no log lines: they go to the file it names), the
//! final table and where to look next.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_demo_tells_a_readable_story_and_exits_zero() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_grantline"))
        .arg("demo")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("REDIS_URL")
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(started.elapsed() < Duration::from_secs(300));

    // the log lines went to the file it named, not to the terminal
    let first = stdout.lines().next().unwrap();
    let path = first.strip_prefix("logs: ").unwrap_or_else(|| panic!("first line names the log file: {first}"));
    let log = std::fs::read_to_string(path).expect("the log file");
    assert!(log.contains("INFO"), "the log file has the log lines");
    for line in stdout.lines().chain(stderr.lines()) {
        assert!(!line.contains(" INFO ") && !line.contains(" WARN "), "a log line on the terminal: {line}");
    }

    // one line per outcome: passed checks are counted, failures and decisions spelled out
    assert!(!stdout.contains("check_evaluated"), "raw events are not printed");
    assert!(stdout.contains("checks passed; policy"), "{stdout}");
    assert!(stdout.contains("check FAILED identity.enabled"), "{stdout}");
    assert!(stdout.contains("APPROVED by PattiF@contoso.com"), "{stdout}");
    assert!(stdout.contains("GRANTED: member of Finance BI Readers"), "{stdout}");
    assert!(stdout.contains("REMOVED from Team Alpha (expiry)"), "{stdout}");
    // one early offboarding: the contractor's grant goes long before its end, the ticket says why
    assert!(stdout.contains("REMOVED from Team Alpha (offboarding)"), "{stdout}");
    assert!(stdout.contains("work note: [grantline") && stdout.contains("leaver: contract ended early"), "{stdout}");
    assert!(stdout.contains("... waiting:"), "a progress line while it waits: {stdout}");

    // the table, then where to look next
    let table = stdout.split("\nticket ").nth(1).expect("the final table");
    for (ticket, state) in [("RITM0010001", "active"), ("RITM0010002", "removed"), ("RITM0010005", "denied")] {
        let row = table.lines().find(|l| l.starts_with(ticket)).unwrap_or_else(|| panic!("{ticket} in {table}"));
        assert!(row.split_whitespace().any(|w| w == state), "{row}");
    }
    let next = stdout.split("where to look next").nth(1).expect("where to look next");
    assert!(next.contains("grantline requests show") && next.contains("grantline audit verify"), "{next}");
    assert!(next.contains("/status"), "{next}");
    let _ = std::fs::remove_file(path);
}
