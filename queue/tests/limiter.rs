//! The shared rate budget against a real Redis: callers in two processes (two clients) draw from
//! one budget, waiting callers get spread slots, reservations are honoured once, a refusal
//! pauses everyone and lowers the rate, and the rate climbs back when refusals stop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use grantline_queue::{Admission, Limit, Queue};

fn wait_of(a: Admission) -> Option<Duration> {
    match a {
        Admission::Granted { .. } => None,
        Admission::Wait { after, .. } => Some(after),
    }
}

#[tokio::test]
async fn two_clients_share_one_budget_and_waiting_callers_get_spread_slots() {
    let e = env(fast_config()).await;
    let other = Queue::connect(&e.url, e.queue.config().clone()).await.unwrap();
    let limit = Limit::new("budget:test", 20.0, 1.0); // one unit every 50 ms, no burst
    // each answer is relative to when Redis evaluated the call, somewhere between the call's
    // start and its end: the slot it gives is known within that span, however slow the machine
    let t0 = std::time::Instant::now();
    let mut calls = Vec::new();
    for i in 0..40 {
        let q = if i % 2 == 0 { &e.queue } else { &other };
        let before = t0.elapsed();
        let wait = wait_of(q.admit(&format!("job-{i}"), 1, std::slice::from_ref(&limit)).await.unwrap());
        calls.push((before, t0.elapsed(), wait));
    }
    let granted: Vec<_> = calls.iter().filter(|c| c.2.is_none()).collect();
    assert_eq!(granted.len(), 1, "one call fits the budget now: {calls:?}");
    let (g_lo, g_hi) = (granted[0].0.as_millis(), granted[0].1.as_millis());
    let mut slots: Vec<(u128, u128)> =
        calls.iter().filter_map(|(b, a, w)| w.map(|w| ((*b + w).as_millis(), (*a + w).as_millis()))).collect();
    slots.sort_unstable();
    // the k-th waiting caller is given the slot k × 50 ms after the granted call, whichever
    // client asked
    for (k, (lo, hi)) in slots.iter().enumerate() {
        let expected = (k as u128 + 1) * 50;
        assert!(
            *lo <= g_hi + expected + 5 && *hi + 5 >= g_lo + expected,
            "slot {k}: {lo}..{hi} ms, expected about {expected} ms after {g_lo}..{g_hi} ms ({slots:?})"
        );
    }
}

#[tokio::test]
async fn a_reservation_is_honoured_once_and_does_not_spend_the_budget_again() {
    let e = env(fast_config()).await;
    let q = &e.queue;
    let limit = Limit::new("budget:resv", 10.0, 1.0); // 100 ms apart
    assert!(wait_of(q.admit("a", 1, std::slice::from_ref(&limit)).await.unwrap()).is_none());
    let wb = wait_of(q.admit("b", 1, std::slice::from_ref(&limit)).await.unwrap()).unwrap();
    // asking again before the slot gives the same slot, not a new one further out
    let again = wait_of(q.admit("b", 1, std::slice::from_ref(&limit)).await.unwrap()).unwrap();
    assert!(again <= wb, "{again:?} <= {wb:?}");
    let wc = wait_of(q.admit("c", 1, std::slice::from_ref(&limit)).await.unwrap()).unwrap();
    assert!(wc.as_millis() >= 180, "c is behind b: {wc:?}");
    tokio::time::sleep(wb).await; // b comes back at its slot, as a rescheduled job would
    assert!(matches!(q.admit("b", 1, std::slice::from_ref(&limit)).await.unwrap(), Admission::Granted { .. }));
    // b's grant was its reservation: c's slot did not move, and d queues behind c
    let wd = wait_of(q.admit("d", 1, std::slice::from_ref(&limit)).await.unwrap()).unwrap();
    assert!(wd.as_millis() + wb.as_millis() >= wc.as_millis() + 80, "d after c: d {wd:?}, c {wc:?}");
}

#[tokio::test]
async fn several_budgets_at_once_give_the_slot_of_the_tightest() {
    let e = env(fast_config()).await;
    let q = &e.queue;
    let app = Limit::new("budget:app", 100.0, 1.0);
    let tenant = Limit::new("budget:tenant", 10.0, 1.0);
    let both = [app.clone(), tenant.clone()];
    assert!(wait_of(q.admit("x1", 1, &both).await.unwrap()).is_none());
    let w = wait_of(q.admit("x2", 1, &both).await.unwrap()).unwrap();
    assert!(w.as_millis() >= 80, "the tenant's 10/s decides: {w:?}");
}

#[tokio::test]
async fn a_refusal_pauses_every_caller_and_lowers_the_rate_once() {
    let e = env(fast_config()).await;
    let other = Queue::connect(&e.url, e.queue.config().clone()).await.unwrap();
    let limit = Limit { recover: Duration::from_secs(3600), ..Limit::new("budget:pause", 20.0, 5.0) };
    assert!(wait_of(e.queue.admit("first", 1, std::slice::from_ref(&limit)).await.unwrap()).is_none());
    // five in-flight calls all come back 429 with Retry-After 1 s
    let mut last = None;
    for _ in 0..5 {
        last = Some(e.queue.throttled(&limit, Duration::from_secs(1)).await.unwrap());
    }
    let (_, rate) = last.unwrap();
    assert!((rate - 14.0).abs() < 0.01, "one decrease for one pause (20 × 0.7): {rate}");
    // nobody, in either client, may call before the pause ends
    let w = wait_of(other.admit("later", 1, std::slice::from_ref(&limit)).await.unwrap()).unwrap();
    assert!(w.as_millis() >= 900, "paused: {w:?}");
    let state = other.limit_state(&limit.key).await.unwrap();
    assert!(state.paused_until_ms.is_some());
    assert!((state.rate.unwrap() - 14.0).abs() < 0.01);
}

#[tokio::test]
async fn the_rate_climbs_back_when_refusals_stop() {
    let e = env(fast_config()).await;
    let q = &e.queue;
    let limit = Limit {
        recover: Duration::from_millis(100),
        step: 100.0, // fast, for the test: 100 units/s gained per second
        ..Limit::new("budget:climb", 20.0, 1.0)
    };
    q.throttled(&limit, Duration::from_millis(1)).await.unwrap();
    let low = q.limit_state(&limit.key).await.unwrap().rate.unwrap();
    assert!(low < 20.0);
    eventually(Duration::from_secs(5), "the rate back at its maximum", || {
        let q = q.clone();
        let limit = limit.clone();
        async move {
            let _ = q.admit("probe", 1, std::slice::from_ref(&limit)).await.unwrap();
            let r = q.limit_state(&limit.key).await.unwrap().rate.unwrap();
            (r >= 20.0).then_some(())
        }
    })
    .await;
}
