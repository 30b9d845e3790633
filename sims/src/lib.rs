//! Simulators of the Microsoft identity platform (client-credentials tokens), Microsoft Graph
//! (users, groups, membership), Exchange Online's admin API (shared-mailbox permissions) and
//! ServiceNow (Table API, OAuth, rate limits, outbound webhook), for tests, the demo and
//! benchmarks. They follow the wire facts in the project's API notes:
//! paths, bodies, exact error envelopes and messages, headers, status codes and throttling.
//!
//! Each simulator is an HTTP server on its own port with:
//! - scripted faults per route ([`Faults`]): canned responses (429 with `Retry-After`, 503 runs,
//!   ...), delays, hangs and aborted connections, plus a fixed added latency;
//! - a request log with secrets redacted ([`LoggedRequest`]);
//! - a shared controllable [`Clock`] for token expiry, `Retry-After`, throttling windows,
//!   rate-limit hours and replication delays;
//! - admin routes under `/sim/` (request log, faults, clock, and per-simulator state) for use
//!   from another process; [`Sims::describe`] lists them.
//!
//! Start them all with [`Sims::start`]; [`Tenant::demo`] and the constants in [`ids`] describe
//! the seeded tenant. Nothing here shares types with the connectors.
//!
//! # Where the simulators knowingly differ from the real services
//!
//! - Identity platform: tokens are never signature-checked and there is no clock-skew allowance;
//!   `nbf` equals `iat`. `error_uri` points at the simulator. Certificate credentials
//!   (`client_assertion`) are accepted without verification for apps that allow them.
//! - Graph: the body of a refused write to a dynamic group (400 `Request_BadRequest`) is the
//!   simulator's own wording; so are the messages for more than 20 references, for batch
//!   validation failures other than the missing `Content-Type`, and the body of a 424 batch item
//!   (`FailedDependency`). The on-premises-synced refusal reuses the directory's message for
//!   synced objects. The 429 body code is `Request_ThrottledTemporarily`. Writes are refused for
//!   dynamic, mail-enabled, distribution and on-premises-synced groups before the duplicate check.
//!   `employeeLeaveDateTime` reads as null without `User-LifeCycleInfo.Read.All` (configurable).
//!   Only direct memberships are stored; `checkMemberGroups`/`checkMemberObjects` and
//!   `/groups/{id}/transitiveMembers` walk nested groups transitively. Listing `/users` or `/groups`, `$filter`, `$count`, `$expand` (ignored
//!   apart from its cost), delta queries, subscriptions and the tenant-wide and app-wide
//!   throttling scopes are not modelled. `$batch` items run in order and a `dependsOn` must name
//!   an earlier item; scripted faults apply to items only as canned responses.
//! - ServiceNow: `sysparm_query` supports `=`, `!=`, `LIKE`, `NOT LIKE`, `STARTSWITH`,
//!   `ENDSWITH`, `IN`, `NOT IN`, `ISEMPTY`, `ISNOTEMPTY`, comparisons, `^OR` and
//!   `ORDERBY`/`ORDERBYDESC`, on dot-walked columns too; string matches ignore case; unknown
//!   parts are ignored. Rate-limit counters apply at once (the real instance commits them every
//!   30 s). The simplified catalog workflow settles a RITM only from the approvals it requested
//!   (`wf_activity` set): all approved → approved, stage `fulfillment`; one rejected → rejected,
//!   closed incomplete. Approvals inserted through the Table API are left to their creator. The
//!   403 ACL body text is unverified.
//! - Exchange Online: only the cmdlets and parameters of [`exchange`] are modelled (other real
//!   parameters are refused as unknown, `WhatIf` included); trustees are the tenant's users and
//!   mail-enabled security groups, snapshotted at start (not shared with the Graph simulator). A
//!   mailbox's `Identity`/`Name` is its alias; `GrantSendOnBehalfTo` lists delegates' aliases and
//!   `GrantSendOnBehalfToWithDisplayNames` objects with `DisplayName` and `PrimarySmtpAddress`
//!   (the real shape is disputed). `Get-MailboxPermission` shows users by UPN and has no
//!   `AutoMapping` column (the simulator keeps it; `/sim/mailboxes/{id}` shows it); its inherited
//!   rows are a fixed three. The DN and account quoted in ACE warnings, the `Ex…` ids of
//!   exception types other than `ManagementObjectNotFoundException`, the parameter-binding
//!   messages, the 401 challenge text, the 429 body, `Rate-Limit-Reset` as an RFC 3339 time (when
//!   the bucket is full again), the 405 body and the batch limit of 10 items are the simulator's
//!   own. A principal without an Exchange role (RBAC-missing switch) gets the same NUL-body 403 as
//!   an unknown cmdlet. An unknown folder user is `InvalidExternalUserIdException` (the other
//!   trustee parameters give `ManagementObjectNotFoundException`); `Default`/`Anonymous` folder
//!   entries are reset to `None` rather than removed. `Prefer: odata.maxpagesize` can lower the
//!   page size; `$skiptoken` is a plain offset. Throttling budgets are assumptions.

pub mod botframework;
mod clock;
mod error;
pub mod exchange;
pub mod faults;
mod graph;
mod json;
mod log;
mod login;
pub mod paging;
mod server;
mod servicenow;
pub mod slack;
pub mod tenant;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub use botframework::{BotFrameworkConfig, BotFrameworkSim};
pub use clock::Clock;
pub use error::SimError;
pub use exchange::{
    ExchangeConfig, ExchangeCounters, ExchangeSim, ExchangeState, ExchangeThrottleConfig, FolderEntry, FolderView,
    FullAccessEntry, MailboxView, ResultSizeMode,
};
pub use faults::{FaultAction, FaultId, FaultRule, Faults, PathPattern, Times};
pub use graph::{GraphConfig, GraphCounters, GraphSim, GraphState, ThrottleConfig, WriteSecond};
/// The method type [`FaultRule::on`] takes (re-exported from `http`).
pub use http::Method;
pub use log::{LoggedRequest, REDACTED};
pub use login::{AppRegistration, EXCHANGE_RESOURCE, GRAPH_RESOURCE, IssuedToken, LoginConfig, LoginSim, TokenTable};
pub use paging::{PagingConfig, PagingSims};
pub use servicenow::{
    CatalogItem, CreatedRitm, HmacSigning, JournalEntry, NewRitm, OAuthClient, RateLimitRule, Record, RitmView,
    ServiceNowAccount, ServiceNowConfig, ServiceNowSim, ServiceNowState, WebhookConfig, WebhookDelivery, WebhookTarget,
    snow_user_name, webhook_signature,
};
pub use slack::{SlackConfig, SlackSim};
pub use tenant::{
    FolderGrant, FullAccessGrant, Group, Mailbox, Tenant, TenantBuilder, User, ids, mailbox_guid_for_user, snow_sys_id,
};

/// Ports to bind; 0 picks a free port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ports {
    pub login: u16,
    pub graph: u16,
    pub servicenow: u16,
    pub exchange: u16,
    /// The Bot Framework channel (Teams) simulator.
    pub botframework: u16,
    pub slack: u16,
    /// PagerDuty Events v2 and the signed alert webhook receiver.
    pub paging: u16,
}

/// Everything the simulators need.
#[derive(Clone, Debug)]
pub struct SimsConfig {
    pub tenant: Tenant,
    pub login: LoginConfig,
    pub graph: GraphConfig,
    pub servicenow: ServiceNowConfig,
    pub exchange: ExchangeConfig,
    pub botframework: BotFrameworkConfig,
    pub slack: SlackConfig,
    pub paging: PagingConfig,
    /// Address to bind (default 127.0.0.1).
    pub host: IpAddr,
    pub ports: Ports,
}

impl Default for SimsConfig {
    fn default() -> Self {
        Self::demo()
    }
}

impl SimsConfig {
    /// The demo tenant and credentials on 127.0.0.1, free ports.
    pub fn demo() -> Self {
        Self {
            tenant: Tenant::demo(),
            login: LoginConfig::demo(),
            graph: GraphConfig::default(),
            servicenow: ServiceNowConfig::demo(),
            exchange: ExchangeConfig::default(),
            botframework: BotFrameworkConfig::demo(),
            slack: SlackConfig::demo(),
            paging: PagingConfig::demo(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Ports::default(),
        }
    }
}

/// The running simulators, sharing one clock and one token table.
#[derive(Clone, Debug)]
pub struct Sims {
    pub login: LoginSim,
    pub graph: GraphSim,
    pub servicenow: ServiceNowSim,
    pub exchange: ExchangeSim,
    /// Microsoft Teams through the Bot Framework: the Bot Connector API and the channel that
    /// sends approvers' clicks.
    pub botframework: BotFrameworkSim,
    /// The Slack Web API and the interactivity sender.
    pub slack: SlackSim,
    /// PagerDuty Events v2 and the signed alert webhook receiver, on one port.
    pub paging: PagingSims,
}

impl Sims {
    /// Starts the simulators.
    pub async fn start(cfg: SimsConfig) -> Result<Sims, SimError> {
        let clock = Clock::new();
        let tokens = TokenTable::default();
        let login = LoginSim::start(
            cfg.login,
            &cfg.tenant,
            clock.clone(),
            tokens.clone(),
            SocketAddr::new(cfg.host, cfg.ports.login),
        )
        .await?;
        let graph = GraphSim::start(
            cfg.graph,
            &cfg.tenant,
            clock.clone(),
            tokens.clone(),
            SocketAddr::new(cfg.host, cfg.ports.graph),
        )
        .await?;
        let exchange = ExchangeSim::start(
            cfg.exchange,
            &cfg.tenant,
            clock.clone(),
            tokens.clone(),
            SocketAddr::new(cfg.host, cfg.ports.exchange),
        )
        .await?;
        let botframework = BotFrameworkSim::start(
            cfg.botframework,
            &cfg.tenant,
            clock.clone(),
            tokens,
            SocketAddr::new(cfg.host, cfg.ports.botframework),
        )
        .await?;
        let slack =
            SlackSim::start(cfg.slack, &cfg.tenant, clock.clone(), SocketAddr::new(cfg.host, cfg.ports.slack)).await?;
        let paging = PagingSims::start(cfg.paging, clock.clone(), SocketAddr::new(cfg.host, cfg.ports.paging)).await?;
        let servicenow =
            ServiceNowSim::start(cfg.servicenow, &cfg.tenant, clock, SocketAddr::new(cfg.host, cfg.ports.servicenow))
                .await?;
        Ok(Sims { login, graph, servicenow, exchange, botframework, slack, paging })
    }

    /// The shared clock.
    pub fn clock(&self) -> &Clock {
        self.login.clock()
    }

    /// A human-readable summary: base URLs, tenant, credentials and admin routes.
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "grantline simulators");
        let _ = writeln!(out, "  identity platform  {}", self.login.base_url());
        let _ = writeln!(out, "    token endpoint   {}", self.login.token_url());
        let _ = writeln!(out, "    tenant           {}", self.login.tenant_id());
        for app in self.login.apps() {
            let _ = writeln!(
                out,
                "    app              {} ({})  secret {}  roles {}",
                app.client_id,
                app.display_name,
                app.secret,
                app.roles.join(",")
            );
        }
        let _ = writeln!(out, "  graph              {}", self.graph.v1_url());
        let _ = writeln!(out, "  exchange online    {}", self.exchange.base_url());
        let _ = writeln!(out, "    invoke command   {}", self.exchange.invoke_url());
        let _ = writeln!(out, "  servicenow         {}", self.servicenow.base_url());
        let (accounts, clients) = self.servicenow.credentials();
        for a in accounts {
            let _ = writeln!(
                out,
                "    user             {} / {}{}",
                a.user_name,
                a.password,
                if a.can_write { "" } else { " (read-only)" }
            );
        }
        for c in clients {
            let _ = writeln!(out, "    oauth client     {} / {}", c.client_id, c.client_secret);
        }
        let wh = self.servicenow.webhook_config();
        let _ = writeln!(out, "    webhook secret   {}: {}", wh.secret_header, wh.secret);
        let _ = writeln!(
            out,
            "  admin (each)       GET|DELETE /sim/requests, GET|POST|DELETE /sim/faults, GET|POST /sim/clock"
        );
        let _ = writeln!(
            out,
            "  admin (graph)      GET /sim/counters, GET /sim/groups/{{id}}/members, GET|PATCH /sim/users/{{id}}, POST /sim/throttle, POST /sim/replication"
        );
        let _ = writeln!(
            out,
            "  admin (servicenow) POST /sim/ritms, GET /sim/ritms/{{id}}, POST /sim/webhooks/fire, PUT /sim/rate-limits, PUT /sim/approval-webhook, POST /sim/approvals/{{id}}/act"
        );
        let _ = writeln!(
            out,
            "  admin (exchange)   GET /sim/mailboxes, GET /sim/mailboxes/{{identity}}, GET /sim/counters, POST /sim/throttle, POST /sim/propagation, PUT /sim/rbac, PUT /sim/paging"
        );
        let _ = writeln!(out, "  teams service url  {}", self.botframework.service_url());
        let _ = writeln!(out, "    bot metadata     {}", self.botframework.openid_metadata_url());
        let _ = writeln!(out, "    sign-in config   {}", self.login.openid_configuration_url());
        let _ = writeln!(out, "  slack web api      {}", self.slack.api_url());
        let _ = writeln!(out, "  pagerduty events   {}", self.paging.enqueue_url());
        let _ = writeln!(out, "  alert webhook      {}", self.paging.webhook_url());
        let _ = writeln!(
            out,
            "  admin (teams)      GET /sim/state, PUT /sim/bot-endpoint, POST /sim/click, POST /sim/channels, PUT /sim/installed, POST /sim/keys/rotate"
        );
        let _ = writeln!(
            out,
            "  admin (slack)      GET /sim/state, PUT /sim/request-url, POST /sim/click, POST /sim/replay, PUT /sim/scopes, POST /sim/channels"
        );
        out
    }

    /// Stops all servers.
    pub async fn shutdown(self) {
        self.login.shutdown().await;
        self.graph.shutdown().await;
        self.servicenow.shutdown().await;
        self.exchange.shutdown().await;
        self.botframework.shutdown().await;
        self.slack.shutdown().await;
        self.paging.shutdown().await;
    }
}

/// Starts the simulators, prints their URLs and credentials to stdout, and runs until Ctrl-C or
/// SIGTERM.
pub async fn run_standalone(cfg: SimsConfig) -> Result<(), SimError> {
    let sims = Sims::start(cfg).await?;
    println!("{}", sims.describe());
    println!("Press Ctrl-C to stop.");
    wait_for_stop_signal().await;
    sims.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
