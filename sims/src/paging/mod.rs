//! On-call alerting simulators on one port: the PagerDuty Events API v2 and a receiver of our
//! generic signed alert webhook.
//!
//! - PagerDuty ([`pagerduty`]): `POST /v2/enqueue` (trigger, acknowledge, resolve; no auth
//!   header, the 32-character `routing_key` in the body is the credential) and
//!   `POST /v2/change/enqueue`. Alerts are keyed by (routing key, dedup key) and move
//!   triggered → acknowledged → resolved; [`PagingState::incidents`] lists them with every
//!   event. Configure clients with [`PagingSims::pagerduty_url`] as the base URL.
//! - Webhook receiver ([`webhook`]): `POST /webhook` checks `X-Signature: sha256=<hex HMAC of the
//!   raw body>` with the configured secret (401 when missing or wrong), `X-Timestamp` (400 when
//!   missing or more than five minutes from the simulated clock), `X-Event-Id` (a repeat is
//!   answered 200 and not recorded twice) and the body's shape (400), then answers 202 and
//!   records the delivery. [`PagingSims::webhook_url`] is its URL.
//!
//! Both share the simulators' plumbing: scripted faults per route (429, 5xx, delays, hangs,
//! aborts: the way to make PagerDuty throttle), the request log, the controllable clock and the
//! admin routes `GET /sim/state` and `PUT /sim/webhook-secret {"secret"}` besides the common
//! ones.
//!
//! Where it differs from the real services: the only PagerDuty 400 message confirmed against
//! the service is the routing-key length one; the other `errors` texts, the 429 and 5xx bodies
//! of scripted faults and the change-event answer are the simulator's wording. Any well-formed
//! routing key is accepted (no integration registry), events are processed synchronously, no
//! incident is created beyond the alert record, and the request log shows the routing key
//! (the shared log redacts fields by name and `routing_key` is not among them). The webhook
//! receiver is our own contract, so its answers are ours by definition.

pub mod pagerduty;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;

pub use self::pagerduty::{Alert, AlertStatus, ChangeEvent, EventOutcome, PagerDutyEvent};
pub use self::webhook::{AlertDelivery, RejectedDelivery};
use crate::clock::Clock;
use crate::error::SimError;
use crate::faults::Faults;
use crate::log::LoggedRequest;
use crate::server::{self, Core, ServerTask, Service, SimRequest, SimResponse, admin_error, admin_ok};

/// A well-formed (32-character) routing key for tests and the demo.
pub const DEMO_ROUTING_KEY: &str = "R0GRANTLINEDEMOROUTINGKEY0000001";
/// The demo webhook receiver's secret.
pub const DEMO_WEBHOOK_SECRET: &str = "grantline-demo-alert-webhook-secret";

/// Settings of the paging simulators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PagingConfig {
    /// The secret the webhook receiver verifies `X-Signature` with.
    pub webhook_secret: String,
    /// How far `X-Timestamp` may be from the simulated clock (default five minutes).
    pub webhook_max_skew: Duration,
    /// The largest PagerDuty event accepted (default 512 KB).
    pub max_event_bytes: usize,
}

impl Default for PagingConfig {
    fn default() -> Self {
        Self::demo()
    }
}

impl PagingConfig {
    /// [`DEMO_WEBHOOK_SECRET`], five minutes, 512 KB.
    pub fn demo() -> Self {
        Self {
            webhook_secret: DEMO_WEBHOOK_SECRET.to_owned(),
            webhook_max_skew: Duration::from_secs(300),
            max_event_bytes: 512 * 1024,
        }
    }
}

/// Everything the paging simulators recorded.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PagingState {
    /// PagerDuty alerts in the order they were opened.
    pub alerts: Vec<Alert>,
    /// Acknowledge and resolve events for no open alert (answered 202, then dropped).
    pub dropped: Vec<PagerDutyEvent>,
    /// Change events (`/v2/change/enqueue`).
    pub change_events: Vec<ChangeEvent>,
    /// Webhook deliveries accepted, first delivery of each event id.
    pub deliveries: Vec<AlertDelivery>,
    /// Webhook requests refused (bad signature, stale, malformed).
    pub rejected: Vec<RejectedDelivery>,
}

impl PagingState {
    /// Every PagerDuty alert with its event history, oldest first.
    pub fn incidents(&self) -> &[Alert] {
        &self.alerts
    }

    /// The most recent alert with this dedup key (any routing key).
    pub fn alert(&self, dedup_key: &str) -> Option<&Alert> {
        self.alerts.iter().rev().find(|a| a.dedup_key == dedup_key)
    }

    /// Alerts not yet resolved.
    pub fn open_alerts(&self) -> Vec<&Alert> {
        self.alerts.iter().filter(|a| a.status != AlertStatus::Resolved).collect()
    }

    /// The accepted webhook delivery with this event id.
    pub fn delivery(&self, event_id: &str) -> Option<&AlertDelivery> {
        self.deliveries.iter().find(|d| d.event_id == event_id)
    }
}

#[derive(Debug)]
struct PagingService {
    core: Core,
    cfg: Mutex<PagingConfig>,
    state: Mutex<PagingState>,
}

impl PagingService {
    fn cfg(&self) -> MutexGuard<'_, PagingConfig> {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, PagingState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Deserialize)]
struct SecretBody {
    secret: String,
}

impl Service for PagingService {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn handle(&self, req: &SimRequest) -> SimResponse {
        let post = req.method == http::Method::POST;
        match req.path.as_str() {
            "/v2/enqueue" if post => {
                let max = self.cfg().max_event_bytes;
                pagerduty::enqueue(req, max, self.core.clock.now(), &mut self.state())
            }
            "/v2/change/enqueue" if post => {
                let max = self.cfg().max_event_bytes;
                pagerduty::change(req, max, self.core.clock.now(), &mut self.state())
            }
            "/v2/enqueue" | "/v2/change/enqueue" => pagerduty::not_allowed(),
            "/webhook" if post => {
                let (secret, skew) = {
                    let cfg = self.cfg();
                    (cfg.webhook_secret.clone(), cfg.webhook_max_skew)
                };
                webhook::receive(req, &secret, skew, self.core.clock.now(), &mut self.state())
            }
            "/webhook" => webhook::error(405, "method_not_allowed", "use POST"),
            _ => webhook::error(404, "not_found", "no such route"),
        }
    }

    fn fault_response(
        &self,
        req: &SimRequest,
        status: u16,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> SimResponse {
        let mut resp = match body {
            Some(b) => SimResponse::new(status).body(b),
            None if req.path.starts_with("/v2/") => pagerduty::fault_body(status),
            None => webhook::fault_body(status),
        };
        let defaults = std::mem::take(&mut resp.headers);
        resp.headers = headers;
        for (k, v) in defaults {
            resp.default_header(&k, v);
        }
        resp
    }

    async fn admin(&self, req: &SimRequest) -> Option<SimResponse> {
        let resp = match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/sim/state") => admin_ok(&*self.state()),
            ("PUT", "/sim/webhook-secret") => match serde_json::from_slice::<SecretBody>(&req.body) {
                Ok(b) => {
                    self.cfg().webhook_secret = b.secret;
                    SimResponse::new(204)
                }
                Err(_) => admin_error(400, "expected {\"secret\": \"<webhook secret>\"}"),
            },
            _ => return None,
        };
        Some(resp)
    }
}

/// The running paging simulators (PagerDuty and the webhook receiver, one port). Cloning shares
/// them.
#[derive(Clone, Debug)]
pub struct PagingSims {
    svc: Arc<PagingService>,
    server: Arc<ServerTask>,
}

impl PagingSims {
    /// Starts both simulators on `addr` (port 0 picks a free port).
    pub async fn start(cfg: PagingConfig, clock: Clock, addr: SocketAddr) -> Result<Self, SimError> {
        let (listener, base_url) = server::bind(addr).await?;
        let (core, shutdown) = server::core(clock, base_url);
        let svc = Arc::new(PagingService { core, cfg: Mutex::new(cfg), state: Mutex::new(PagingState::default()) });
        let server = server::spawn(svc.clone(), listener, shutdown);
        Ok(Self { svc, server: Arc::new(server) })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.svc.core.base_url.clone()
    }

    /// The PagerDuty Events API root to configure clients with (`/v2/enqueue` is below it).
    pub fn pagerduty_url(&self) -> String {
        self.svc.core.base_url.clone()
    }

    /// The full `POST /v2/enqueue` URL.
    pub fn enqueue_url(&self) -> String {
        format!("{}/v2/enqueue", self.svc.core.base_url)
    }

    /// The webhook receiver's URL: `{base}/webhook`.
    pub fn webhook_url(&self) -> String {
        format!("{}/webhook", self.svc.core.base_url)
    }

    /// Replaces the webhook receiver's secret.
    pub fn set_webhook_secret(&self, secret: &str) {
        self.svc.cfg().webhook_secret = secret.to_owned();
    }

    /// A snapshot of the alerts, change events and webhook deliveries.
    pub fn state(&self) -> PagingState {
        self.svc.state().clone()
    }

    pub fn faults(&self) -> &Faults {
        &self.svc.core.faults
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.svc.core.log.snapshot()
    }

    pub fn clear_requests(&self) {
        self.svc.core.log.clear();
    }

    pub fn clock(&self) -> &Clock {
        &self.svc.core.clock
    }

    /// Stops the server (waits at most a few seconds for requests in flight).
    pub async fn shutdown(&self) {
        self.server.stop().await;
    }
}
