//! `grantline requests`: list and show requests, and the operator's lifecycle actions
//! (cancel before execution, revoke now, extend through policy and approval again). It talks
//! to Redis directly, through the same `store` functions the operator HTTP API calls, and acts
//! as `operator.identity` (audited as `operator:<identity>`).

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use grantline_queue::{Queue, validate_id};
use grantline_shared::clock::timestamp;
use grantline_shared::jobs::RemovalTrigger;
use grantline_shared::request::RequestState;
use grantline_store::index::{self, Filter};
use grantline_store::lifecycle::{self, Changed, LifecycleError};
use grantline_store::view::{self, RequestView};

use crate::config::Config;

#[derive(Subcommand, Debug, Clone)]
pub enum RequestsCmd {
    /// Requests newest first, by state or ticket, a page at a time.
    List {
        /// Only requests in this state (received, awaiting_approval, active, ...).
        #[arg(long)]
        state: Option<String>,
        /// Only the request of this ticket number.
        #[arg(long)]
        ticket: Option<String>,
        /// Requests per page (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The cursor the previous page printed.
        #[arg(long)]
        after: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One request: timeline, approvals with identities, receipts, ticket notes, trace id.
    Show {
        /// Request id or ticket number.
        request: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a request before execution (refused once execute-grant has started).
    Cancel {
        /// Request id or ticket number.
        request: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Remove a granted access now (never a pre-existing one, nor one another request holds).
    Revoke {
        /// Request id or ticket number.
        request: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Ask for a later end: checked against the policy, then back to approval.
    Extend {
        /// Request id or ticket number.
        request: String,
        /// The new end: a date (2027-03-02, through that day in the policy's time zone) or an
        /// RFC 3339 time.
        #[arg(long)]
        until: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Runs a `requests` command and prints what it says.
pub async fn run(cfg: &Config, q: &Queue, cmd: RequestsCmd) -> Result<ExitCode> {
    let now = grantline_shared::Clock::system().now_ms();
    match execute(cfg, q, cmd, now).await {
        Ok(out) => {
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("grantline: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// A request id, or the id of the request a ticket number names.
pub async fn resolve(q: &Queue, request: &str) -> Result<String> {
    let r = request.trim();
    if validate_id(r).is_ok() && grantline_store::find(q, r).await?.is_some() {
        return Ok(r.to_owned());
    }
    match index::by_ticket(q, r).await? {
        Some(id) => Ok(id),
        None => bail!("no request with id or ticket number {r:?}"),
    }
}

fn actor(cfg: &Config) -> Result<String> {
    let id = cfg.operator.identity.trim();
    if id.is_empty() {
        bail!(
            "operator.identity is not set: the operator commands act only for a named operator (set it in the configuration or GRANTLINE__OPERATOR__IDENTITY)"
        );
    }
    Ok(format!("operator:{id}"))
}

fn lifecycle_error(e: LifecycleError) -> anyhow::Error {
    match e {
        LifecycleError::NotFound => anyhow!("no such request"),
        LifecycleError::Refused { code, message } => anyhow!("refused ({code}): {message}; nothing was changed"),
        LifecycleError::Store(e) => anyhow!("the request store failed: {e}; nothing was changed"),
    }
}

fn at(ms: u64) -> String {
    timestamp(ms).to_string()
}

fn done(action: &str, c: &Changed) -> String {
    format!("{action}: request {} is {} (jobs: {})\n", c.request_id, c.state, c.jobs.join(", "))
}

/// Runs a `requests` command at `now_ms` and returns its output (the CLI prints it).
pub async fn execute(cfg: &Config, q: &Queue, cmd: RequestsCmd, now_ms: u64) -> Result<String> {
    match cmd {
        RequestsCmd::List { state, ticket, limit, after, json } => {
            let state = match state.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(s) => Some(RequestState::parse(s).ok_or_else(|| {
                    let all: Vec<&str> = RequestState::ALL.iter().map(|s| s.as_str()).collect();
                    anyhow!("--state {s:?} must be one of {}", all.join(", "))
                })?),
            };
            if !(1..=index::MAX_PAGE).contains(&limit) {
                bail!("--limit must be from 1 to {}", index::MAX_PAGE);
            }
            if let Some(a) = &after {
                index::parse_cursor(a).map_err(|e| anyhow!("--after: {e}"))?;
            }
            let page = index::list(q, &Filter { state, ticket, after, limit }).await?;
            if json {
                let requests: Vec<_> = page.requests.iter().map(grantline_ingest::operator::summary).collect();
                return Ok(format!("{}\n", serde_json::json!({ "requests": requests, "next": page.next })));
            }
            let mut out = String::new();
            writeln!(
                out,
                "{:<32}  {:<18} {:<12} {:<30} {:<24} created",
                "request", "state", "ticket", "for", "target"
            )?;
            for r in &page.requests {
                writeln!(
                    out,
                    "{:<32}  {:<18} {:<12} {:<30} {:<24} {}",
                    r.id,
                    r.state.as_str(),
                    r.ticket.number,
                    r.requester.as_ref().map(|p| p.upn.as_str()).unwrap_or("-"),
                    r.target.as_deref().unwrap_or("-"),
                    at(r.created_ms)
                )?;
            }
            if let Some(next) = page.next {
                writeln!(out, "next page: --after {next}")?;
            }
            Ok(out)
        }
        RequestsCmd::Show { request, json } => {
            let id = resolve(q, &request).await?;
            let v = view::view(q, &id).await?.ok_or_else(|| anyhow!("no such request {id}"))?;
            if json {
                return Ok(format!("{}\n", serde_json::to_string_pretty(&v)?));
            }
            render(&v)
        }
        RequestsCmd::Cancel { request, reason } => {
            let actor = actor(cfg)?;
            let id = resolve(q, &request).await?;
            let c = lifecycle::cancel(q, &id, &actor, &reason, now_ms).await.map_err(lifecycle_error)?;
            Ok(done("cancelled", &c))
        }
        RequestsCmd::Revoke { request, reason } => {
            let actor = actor(cfg)?;
            let id = resolve(q, &request).await?;
            let c = lifecycle::remove_now(q, &id, &actor, RemovalTrigger::Revoked, &reason, now_ms)
                .await
                .map_err(lifecycle_error)?;
            Ok(done("revocation requested", &c))
        }
        RequestsCmd::Extend { request, until, reason } => {
            let actor = actor(cfg)?;
            let policy = grantline_shared::policy::load_file(&cfg.policy.path).map_err(|e| anyhow!("{e}"))?;
            let until_ms = lifecycle::parse_until(&until, &policy).map_err(|e| anyhow!("--until {e}"))?;
            let id = resolve(q, &request).await?;
            let c =
                lifecycle::extend(q, &id, &actor, until_ms, &reason, now_ms, &policy).await.map_err(lifecycle_error)?;
            let what = if c.state == RequestState::AwaitingApproval {
                format!("extension to {} asked for; waiting for approval", at(until_ms))
            } else {
                format!("extended to {} (approved by the policy's rule)", at(until_ms))
            };
            Ok(done(&what, &c))
        }
    }
}

/// A request for people.
pub fn render(v: &RequestView) -> Result<String> {
    let mut out = String::new();
    writeln!(out, "request  {}  {}", v.id, v.state)?;
    writeln!(out, "ticket   {} ({} {})", v.ticket.number, v.ticket.table, v.ticket.sys_id)?;
    if let Some(r) = &v.requester {
        writeln!(out, "for      {r} ({})", v.requester_id.as_deref().unwrap_or("-"))?;
    }
    if let Some(t) = &v.target {
        writeln!(out, "target   {t}")?;
    }
    if let Some(a) = &v.access {
        writeln!(out, "access   {a}")?;
    }
    if let Some(e) = v.end_ms {
        writeln!(out, "ends     {}", at(e))?;
    }
    if let Some(r) = &v.reason {
        writeln!(out, "reason   {r}")?;
    }
    writeln!(out, "trace    {}", v.trace_id)?;
    writeln!(out, "created  {}   updated {}", at(v.created_ms), at(v.updated_ms))?;
    if let Some(x) = &v.extension {
        writeln!(
            out,
            "extension pending: until {} (now ends {}), asked by {} {}",
            at(x.until_ms),
            at(x.previous_end_ms),
            x.requested_by,
            if x.reason.is_empty() { String::new() } else { format!("({})", x.reason) }
        )?;
    }
    writeln!(out, "approvals:")?;
    if v.approvals.is_empty() {
        writeln!(out, "  none")?;
    }
    for a in &v.approvals {
        let verdict = if a.approve { "approved" } else { "rejected" };
        let id = a.approver_id.as_deref().unwrap_or("-");
        let via = a.via.as_deref().unwrap_or("-");
        let by = a.recorded_by.as_deref().map(|b| format!(", recorded by {b}")).unwrap_or_default();
        let stage = a.stage.map(|s| format!(", stage {}", s + 1)).unwrap_or_default();
        let comment = if a.comment.is_empty() { String::new() } else { format!(": {:?}", a.comment) };
        writeln!(out, "  {}  {verdict} by {} ({id}) via {via}{by}{stage}{comment}", at(a.at_ms), a.approver)?;
    }
    if let Some(g) = &v.grant {
        writeln!(out, "grant receipt: {}", serde_json::to_string(g)?)?;
    }
    if let Some(r) = &v.removal {
        writeln!(out, "removal receipt: {}", serde_json::to_string(r)?)?;
    }
    writeln!(out, "ticket notes:")?;
    if v.ticket_notes.is_empty() {
        writeln!(out, "  none")?;
    }
    for n in &v.ticket_notes {
        let state = if n.state.is_empty() { String::new() } else { format!(" (ticket state {})", n.state) };
        writeln!(out, "  {}  {}{state}", at(n.at_ms), n.update)?;
    }
    let chain = if v.audit.intact {
        "chain intact".to_owned()
    } else {
        format!("chain BROKEN at {}: {}", v.audit.broken_at.unwrap_or(0), v.audit.reason.as_deref().unwrap_or(""))
    };
    writeln!(out, "timeline ({} records, {chain}):", v.audit.records)?;
    for r in &v.timeline {
        let detail = serde_json::to_value(&r.event)?;
        writeln!(out, "  {}  {:<22} {:<28} {}", at(r.at_ms), r.event.name(), r.actor, detail)?;
    }
    Ok(out)
}
