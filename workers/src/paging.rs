//! Paging on-call about dead letters: the routing configuration (`[paging]`), and the
//! [`Pager`] the `alert` and `resolve-alert` steps send through.
//!
//! A dead letter has a severity (a compensation that failed for good, `rollback-grant` or
//! `remove-access`, is `critical`; any other is `error`) and a route: the first of
//! `paging.routes` whose kinds and severities match, else `paging.default`. Every destination
//! of the route gets the page (PagerDuty Events v2 trigger, the signed alert webhook, a Teams
//! channel card, a Slack channel message), and so do the service-desk channels
//! (`paging.service_desk`) when the letter belongs to a ticket.
//!
//! Exactly one page per dead letter: the PagerDuty dedup key and the webhook event id are
//! derived from (namespace, queue, dead-letter id), and a record in Redis
//! (`{ns}:paging:<queue>:<dead-letter id>`) says which destinations took the page, which
//! refused it for good and whether the letter was closed since; a repeated alert job sends
//! nothing twice. A lock per letter keeps an alert and a resolve of the same letter from
//! interleaving. A destination that fails transiently (429, 5xx, no answer) makes the job fail
//! transiently, so the queue retries it with backoff; the destinations that already took the
//! page are not sent again. One that refuses for good (PagerDuty 400, webhook 4xx) is logged
//! with its reason and recorded; the others are still tried.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use grantline_connectors::pagerduty::{PagerDutyClient, PagerDutyConfig, Severity, TriggerEvent};
use grantline_connectors::slack::SlackClient;
use grantline_connectors::teams::TeamsChannelClient;
use grantline_connectors::webhook::{AlertEvent, AlertEventKind, AlertWebhookClient};
use grantline_connectors::{HttpConfig, Secret};
use grantline_queue::{JobError, Queue};
use grantline_shared::jobs::LetterClosed;
use grantline_shared::{JobKind, StepError};
use jiff::Timestamp;
use redis::AsyncCommands;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::steps::{job_error, redis_unavailable};

/// How long the paging record of a letter is kept after its last change.
const RECORD_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// How long one alert or resolve may hold a letter's lock.
const LOCK_TTL: Duration = Duration::from_secs(60);

/// Where pages go (`[paging.destinations.<name>]`, `type = "..."`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Destination {
    /// A PagerDuty service: the Events API v2 root and the service's integration (routing) key.
    Pagerduty {
        #[serde(default = "default_events_url")]
        events_url: String,
        routing_key: Secret,
    },
    /// The generic signed alert webhook: `X-Signature: sha256=<HMAC of the body>` with `secret`.
    Webhook { url: Secret, secret: Secret },
    /// A Teams channel through a Workflows webhook (the URL's `sig` is its credential).
    TeamsChannel { url: Secret },
    /// A Slack channel (id or `#name`), posted to by the Slack app of `ingest.slack`.
    SlackChannel { channel: String },
}

fn default_events_url() -> String {
    PagerDutyConfig::default().base_url
}

impl Destination {
    /// `pagerduty`, `webhook`, `teams_channel` or `slack_channel`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Destination::Pagerduty { .. } => "pagerduty",
            Destination::Webhook { .. } => "webhook",
            Destination::TeamsChannel { .. } => "teams_channel",
            Destination::SlackChannel { .. } => "slack_channel",
        }
    }
}

/// One route (`[[paging.routes]]`): dead letters of these kinds (any when empty) and these
/// severities (any when empty) go to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub severities: Vec<Severity>,
    pub to: Vec<String>,
}

impl Route {
    fn matches(&self, kind: &str, severity: Severity) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
            && (self.severities.is_empty() || self.severities.contains(&severity))
    }
}

/// `[paging]`: destinations, routes by job kind and severity, the default route and the
/// service-desk channels. Without destinations nobody is paged (dead letters are logged at
/// error level).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PagingSettings {
    /// What PagerDuty shows as the alert's source (`grantline.prod`).
    pub source: String,
    pub destinations: BTreeMap<String, Destination>,
    /// Tried in order; the first that matches decides.
    pub routes: Vec<Route>,
    /// The route of dead letters no other route matches.
    pub default: Vec<String>,
    /// Teams or Slack channel destinations of the service desk, told about every dead letter
    /// that belongs to a ticket (the ticket, the step, the error and the next action).
    pub service_desk: Vec<String>,
    /// Attempts of an alert (or resolve) job before it is itself dead-lettered; with the
    /// backoff cap of ten minutes the default rides out hours of an on-call tool's outage.
    pub max_attempts: u32,
}

impl Default for PagingSettings {
    fn default() -> Self {
        Self {
            source: "grantline".to_owned(),
            destinations: BTreeMap::new(),
            routes: Vec::new(),
            default: Vec::new(),
            service_desk: Vec::new(),
            max_attempts: 30,
        }
    }
}

fn http_url(key: &str, raw: &str) -> Result<(), String> {
    match url::Url::parse(raw.trim()) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host_str().is_some() => Ok(()),
        // the URL may carry a credential: say what is wrong, never echo it
        _ => Err(format!("{key} must be an http(s) URL")),
    }
}

impl PagingSettings {
    /// Whether any destination is configured.
    pub fn enabled(&self) -> bool {
        !self.destinations.is_empty()
    }

    /// Checks the settings; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.source.trim().is_empty() {
            return Err("paging.source must not be empty".into());
        }
        if self.max_attempts == 0 {
            return Err("paging.max_attempts must be at least 1".into());
        }
        for (name, d) in &self.destinations {
            let key = format!("paging.destinations.{name}");
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
                return Err(format!("{key}: a destination name uses only letters, digits, '-', '_' or '.'"));
            }
            match d {
                Destination::Pagerduty { events_url, routing_key } => {
                    http_url(&format!("{key}.events_url"), events_url)?;
                    let n = routing_key.expose().chars().count();
                    if n != 32 {
                        return Err(format!(
                            "{key}.routing_key must be the 32-character integration key of the PagerDuty service (it has {n})"
                        ));
                    }
                }
                Destination::Webhook { url, secret } => {
                    http_url(&format!("{key}.url"), url.expose())?;
                    if secret.expose().chars().count() < 16 {
                        return Err(format!("{key}.secret must be at least 16 characters"));
                    }
                }
                Destination::TeamsChannel { url } => http_url(&format!("{key}.url"), url.expose())?,
                Destination::SlackChannel { channel } => {
                    if channel.trim().is_empty() {
                        return Err(format!("{key}.channel must name a Slack channel (an id or #name)"));
                    }
                }
            }
        }
        let known = |key: &str, names: &[String]| -> Result<(), String> {
            for n in names {
                if !self.destinations.contains_key(n) {
                    return Err(format!("{key}: no destination {n:?} (see paging.destinations)"));
                }
            }
            Ok(())
        };
        for (i, r) in self.routes.iter().enumerate() {
            let key = format!("paging.routes[{i}]");
            for k in &r.kinds {
                if JobKind::parse(k).is_none() {
                    return Err(format!("{key}.kinds: {k:?} is not a job kind"));
                }
            }
            if r.to.is_empty() {
                return Err(format!("{key}.to must name at least one destination"));
            }
            known(&format!("{key}.to"), &r.to)?;
        }
        known("paging.default", &self.default)?;
        known("paging.service_desk", &self.service_desk)?;
        for n in &self.service_desk {
            if let Some(d @ (Destination::Pagerduty { .. } | Destination::Webhook { .. })) = self.destinations.get(n) {
                return Err(format!(
                    "paging.service_desk: {n:?} is a {} destination; the service desk is told in a teams_channel or slack_channel",
                    d.type_name()
                ));
            }
        }
        if self.enabled() && self.default.is_empty() {
            return Err(
                "paging.default must name at least one destination: the route of dead letters no other route matches"
                    .into(),
            );
        }
        Ok(())
    }

    /// The route of a dead letter of `kind` at `severity`.
    pub fn route(&self, kind: &str, severity: Severity) -> &[String] {
        self.routes.iter().find(|r| r.matches(kind, severity)).map_or(self.default.as_slice(), |r| r.to.as_slice())
    }

    /// The retry policy of the alert and resolve-alert jobs.
    pub fn retry_policy(&self, base: &grantline_queue::RetryPolicy) -> grantline_queue::RetryPolicy {
        grantline_queue::RetryPolicy {
            max_attempts: self.max_attempts,
            cap: base.cap.max(Duration::from_secs(600)),
            ..base.clone()
        }
    }
}

/// How bad a dead letter of this kind is: a compensation that failed for good leaves access
/// nobody approved in place (or one that should have ended), so it is critical.
pub fn severity_of(kind: &str) -> Severity {
    match JobKind::parse(kind) {
        Some(JobKind::RollbackGrant | JobKind::RemoveAccess) => Severity::Critical,
        _ => Severity::Error,
    }
}

/// The PagerDuty dedup key (and webhook key) of a dead letter: stable for the letter, distinct
/// for a letter of another namespace, queue or id.
pub fn dedup_key(namespace: &str, queue: &str, dead_letter_id: &str) -> String {
    format!("grantline/{namespace}/{queue}/{dead_letter_id}")
}

/// The relative key of a letter's paging record.
pub fn record_key(queue: &str, dead_letter_id: &str) -> String {
    format!("paging:{queue}:{dead_letter_id}")
}

/// The record field set once the `paged` audit event is on the request's trail.
pub const AUDITED_PAGED: &str = "audited:paged";
/// The record field set once a side channel's `dead_lettered` audit event is on the request's
/// trail.
pub const AUDITED_DEAD: &str = "audited:dead";
/// The record field set once the `page_resolved` audit event is on the request's trail.
pub const AUDITED_RESOLVED: &str = "audited:resolved";

/// What a page is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PageSubject {
    /// A job failed for good (the page's `queue` and `dead_letter_id` name its letter).
    #[default]
    DeadLetter,
    /// Reconciliation found a member of a governed group that no request explains, and the
    /// policy says to page (`unexplained_members = "page"`). The page's `queue` is
    /// `reconcile` and its `dead_letter_id` is [`unexplained_page_id`].
    UnexplainedMember { group_id: String, group_name: String, user_id: String, upn: Option<String> },
}

/// The paging id of an unexplained member of a group: stable for the (group, user), so one
/// incident stands for them however many passes see them.
pub fn unexplained_page_id(group_id: &str, user_id: &str) -> String {
    format!("unexplained:{}:{}", group_id.to_ascii_lowercase(), user_id.to_ascii_lowercase())
}

/// What on-call is told about one dead letter (or one finding of reconciliation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterPage {
    pub subject: PageSubject,
    pub queue: String,
    pub dead_letter_id: String,
    pub job_id: String,
    pub attempts: u32,
    pub error_code: String,
    pub error_message: String,
    pub request_id: Option<String>,
    pub ticket: Option<String>,
    pub trace_id: Option<String>,
    /// When the job was dead-lettered (ms since the epoch).
    pub dead_at_ms: u64,
}

impl DeadLetterPage {
    /// The page of an unexplained member of a governed group, found `at_ms`.
    pub fn unexplained_member(group_id: &str, group_name: &str, user_id: &str, upn: Option<&str>, at_ms: u64) -> Self {
        let who = upn.unwrap_or(user_id);
        DeadLetterPage {
            subject: PageSubject::UnexplainedMember {
                group_id: group_id.to_owned(),
                group_name: group_name.to_owned(),
                user_id: user_id.to_owned(),
                upn: upn.map(str::to_owned),
            },
            queue: JobKind::Reconcile.as_str().to_owned(),
            dead_letter_id: unexplained_page_id(group_id, user_id),
            job_id: String::new(),
            attempts: 0,
            error_code: "directory.unexplained_member".to_owned(),
            error_message: format!(
                "{who} is a member of governed group {group_name} ({group_id}) that no request explains"
            ),
            request_id: None,
            ticket: None,
            trace_id: None,
            dead_at_ms: at_ms,
        }
    }

    pub fn severity(&self) -> Severity {
        match self.subject {
            PageSubject::DeadLetter => severity_of(&self.queue),
            PageSubject::UnexplainedMember { .. } => Severity::Warning,
        }
    }

    /// What the operator does next.
    pub fn next_action(&self) -> String {
        match &self.subject {
            PageSubject::DeadLetter => format!(
                "fix the cause, then `grantline dlq retry {q} {id}`; or `grantline dlq discard {q} {id}` to drop it",
                q = self.queue,
                id = self.dead_letter_id
            ),
            PageSubject::UnexplainedMember { .. } => "find out who added them; remove them from the group, or have \
                 the access requested through the service desk (the page resolves once they are gone)"
                .to_owned(),
        }
    }

    /// A channel message's title.
    fn title(&self) -> String {
        match &self.subject {
            PageSubject::DeadLetter => format!("Dead letter: {} needs on-call action", self.queue),
            PageSubject::UnexplainedMember { group_name, .. } => format!("Unexplained member of {group_name}"),
        }
    }

    /// PagerDuty's `class`.
    fn class(&self) -> &'static str {
        match self.subject {
            PageSubject::DeadLetter => "dead_letter",
            PageSubject::UnexplainedMember { .. } => "unexplained_member",
        }
    }

    /// One line: the ticket, the step, the error and the next action.
    pub fn summary(&self) -> String {
        if let PageSubject::UnexplainedMember { .. } = self.subject {
            return format!("grantline: {}. Next: {}", self.error_message, self.next_action());
        }
        let mut s = String::from("grantline: ");
        match &self.ticket {
            Some(t) => {
                let _ = write!(s, "{} failed for good on {t}", self.queue);
            }
            None => {
                let _ = write!(s, "{} job {} failed for good", self.queue, self.job_id);
            }
        }
        let _ = write!(s, " after {} attempt(s)", self.attempts);
        if !self.error_code.is_empty() {
            let _ = write!(s, ": {} ({})", self.error_message, self.error_code);
        }
        let _ = write!(s, ". Next: {}", self.next_action());
        s
    }

    fn details(&self) -> Value {
        if let PageSubject::UnexplainedMember { group_id, group_name, user_id, upn } = &self.subject {
            return json!({
                "finding": "unexplained_member",
                "group_id": group_id,
                "group_name": group_name,
                "user_id": user_id,
                "upn": upn,
                "next_action": self.next_action(),
            });
        }
        json!({
            "request_id": self.request_id,
            "ticket": self.ticket,
            "trace_id": self.trace_id,
            "queue": self.queue,
            "job_id": self.job_id,
            "dead_letter_id": self.dead_letter_id,
            "attempts": self.attempts,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "next_action": self.next_action(),
        })
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        let mut f = Vec::new();
        if let PageSubject::UnexplainedMember { group_id, group_name, user_id, upn } = &self.subject {
            f.push(("Group", format!("{group_name} ({group_id})")));
            f.push(("Member", upn.clone().map(|u| format!("{u} ({user_id})")).unwrap_or_else(|| user_id.clone())));
            f.push(("Next action", self.next_action()));
            return f;
        }
        if let Some(t) = &self.ticket {
            f.push(("Ticket", t.clone()));
        }
        f.push(("Step", self.queue.clone()));
        f.push(("Error", format!("{} ({}) after {} attempt(s)", self.error_message, self.error_code, self.attempts)));
        f.push(("Next action", self.next_action()));
        if let Some(r) = &self.request_id {
            f.push(("Request", r.clone()));
        }
        f.push(("Dead letter", format!("{} {}", self.queue, self.dead_letter_id)));
        f
    }
}

/// A channel message: a Teams card and Slack blocks with one title and a list of facts.
fn teams_card(title: &str, facts: &[(&str, String)]) -> Value {
    json!({
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": [
            { "type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": true },
            { "type": "FactSet", "facts": facts.iter().map(|(t, v)| json!({ "title": t, "value": v })).collect::<Vec<_>>() }
        ]
    })
}

fn slack_text(title: &str, facts: &[(&str, String)]) -> String {
    let mut s = title.to_owned();
    for (t, v) in facts {
        let _ = write!(s, "\n{t}: {v}");
    }
    s
}

fn slack_blocks(title: &str, facts: &[(&str, String)]) -> Value {
    let lines: Vec<String> = facts.iter().map(|(t, v)| format!("*{t}:* {v}")).collect();
    json!([
        { "type": "header", "text": { "type": "plain_text", "text": title.chars().take(150).collect::<String>() } },
        { "type": "section", "text": { "type": "mrkdwn", "text": lines.join("\n") } }
    ])
}

enum Sender {
    PagerDuty { client: PagerDutyClient, routing_key: Secret },
    Webhook { client: AlertWebhookClient, url: Secret, secret: Secret },
    Teams { client: TeamsChannelClient, url: Secret },
    Slack { client: SlackClient, channel: String },
}

impl Sender {
    fn type_name(&self) -> &'static str {
        match self {
            Sender::PagerDuty { .. } => "pagerduty",
            Sender::Webhook { .. } => "webhook",
            Sender::Teams { .. } => "teams_channel",
            Sender::Slack { .. } => "slack_channel",
        }
    }
}

/// What a page did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageReport {
    pub dedup_key: String,
    pub severity: String,
    /// The destinations that have the page (`<type>:<name>`), this time or before.
    pub sent: Vec<String>,
    /// The destinations that refused it for good, with the reason.
    pub refused: Vec<String>,
    /// The letter was redriven or discarded before this alert ran: nothing new was sent
    /// (`sent` lists what earlier attempts sent).
    pub closed: bool,
}

/// What a resolve did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolveReport {
    pub dedup_key: String,
    /// The request the letter belongs to, when it was paged about.
    pub request_id: Option<String>,
    /// The destinations told that the page is resolved.
    pub resolved: Vec<String>,
}

/// Sends pages and their resolution to the configured destinations.
pub struct Pager {
    settings: PagingSettings,
    senders: BTreeMap<String, Sender>,
}

impl std::fmt::Debug for Pager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pager").field("destinations", &self.senders.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

/// The letter's lock, released on drop of the guard by [`Pager::unlock`].
struct Lock {
    key: String,
    token: String,
}

impl Pager {
    /// A pager for these settings (validated first). `slack` is the Slack app's client, needed
    /// by `slack_channel` destinations.
    pub fn new(settings: &PagingSettings, slack: Option<&SlackClient>) -> Result<Pager, String> {
        settings.validate()?;
        let http = HttpConfig::default();
        let mut senders = BTreeMap::new();
        for (name, d) in &settings.destinations {
            let sender = match d {
                Destination::Pagerduty { events_url, routing_key } => Sender::PagerDuty {
                    client: PagerDutyClient::new(&PagerDutyConfig { base_url: events_url.clone(), http: http.clone() })
                        .map_err(|e| format!("paging.destinations.{name}.events_url: {}", e.reason))?,
                    routing_key: routing_key.clone(),
                },
                Destination::Webhook { url, secret } => Sender::Webhook {
                    client: AlertWebhookClient::new(&http)
                        .map_err(|e| format!("paging.destinations.{name}: {}", e.reason))?,
                    url: url.clone(),
                    secret: secret.clone(),
                },
                Destination::TeamsChannel { url } => {
                    let client = TeamsChannelClient::new(&http)
                        .map_err(|e| format!("paging.destinations.{name}: {}", e.reason))?;
                    Sender::Teams { client, url: url.clone() }
                }
                Destination::SlackChannel { channel } => {
                    let client = slack.cloned().ok_or_else(|| {
                        format!(
                            "paging.destinations.{name}: a slack_channel destination needs the Slack app (ingest.slack)"
                        )
                    })?;
                    Sender::Slack { client, channel: channel.trim().to_owned() }
                }
            };
            senders.insert(name.clone(), sender);
        }
        Ok(Pager { settings: settings.clone(), senders })
    }

    pub fn settings(&self) -> &PagingSettings {
        &self.settings
    }

    fn label(&self, name: &str) -> String {
        match self.senders.get(name) {
            Some(s) => format!("{}:{name}", s.type_name()),
            None => name.to_owned(),
        }
    }

    /// The destinations a letter goes to: its route, then the service desk when it belongs to
    /// a ticket; each once.
    pub fn destinations(&self, page: &DeadLetterPage) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let desk: &[String] = if page.ticket.is_some() { &self.settings.service_desk } else { &[] };
        for n in self.settings.route(&page.queue, page.severity()).iter().chain(desk) {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        out
    }

    async fn lock(&self, queue: &Queue, key: &str) -> Result<Lock, JobError> {
        let lock_key = format!("{key}:lock");
        let token = grantline_queue::new_id();
        let mut conn = queue.connection();
        let set: Option<String> = redis::cmd("SET")
            .arg(&lock_key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(redis_unavailable)?;
        if set.is_none() {
            // another alert or resolve of this letter is sending: not a failure
            return Err(JobError::wait(
                "paging.busy",
                "another job is paging about this dead letter",
                Duration::from_millis(150 + u64::from(fastrand::u8(..))),
            ));
        }
        Ok(Lock { key: lock_key, token })
    }

    async fn unlock(&self, queue: &Queue, lock: Lock) {
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
        );
        let mut conn = queue.connection();
        let released: Result<i64, _> = script.key(&lock.key).arg(&lock.token).invoke_async(&mut conn).await;
        if let Err(e) = released {
            // it expires by itself
            tracing::warn!(error = %e, "could not release the paging lock");
        }
    }

    /// Pages about one dead letter: every destination of its route (and the service desk)
    /// that does not have the page yet. Fails transiently when a destination could not be
    /// reached (the queue retries; those that took the page are not sent again); a refusal for
    /// good is in the report.
    pub async fn page(&self, queue: &Queue, now: Timestamp, page: &DeadLetterPage) -> Result<PageReport, JobError> {
        let key = queue.namespace().key(&record_key(&page.queue, &page.dead_letter_id));
        let lock = self.lock(queue, &key).await?;
        let result = self.page_locked(queue, &key, now, page).await;
        self.unlock(queue, lock).await;
        result
    }

    async fn page_locked(
        &self,
        queue: &Queue,
        key: &str,
        now: Timestamp,
        page: &DeadLetterPage,
    ) -> Result<PageReport, JobError> {
        let ns = queue.config().namespace.clone();
        let dedup = dedup_key(&ns, &page.queue, &page.dead_letter_id);
        let severity = page.severity();
        let mut report =
            PageReport { dedup_key: dedup.clone(), severity: severity.as_str().to_owned(), ..PageReport::default() };
        let mut conn = queue.connection();
        let rec: HashMap<String, String> = conn.hgetall(key).await.map_err(redis_unavailable)?;
        if rec.contains_key("closed") {
            // redriven or discarded already: no new page; report what was sent before
            let mut sent: Vec<String> =
                rec.keys().filter_map(|k| k.strip_prefix("sent:")).map(|n| self.label(n)).collect();
            sent.sort_unstable();
            report.sent = sent;
            report.closed = true;
            return Ok(report);
        }
        let mut base: Vec<(&str, String)> = vec![
            ("queue", page.queue.clone()),
            ("dead_letter_id", page.dead_letter_id.clone()),
            ("dedup_key", dedup.clone()),
            ("severity", severity.as_str().to_owned()),
            ("summary", page.summary()),
        ];
        if let Some(r) = &page.request_id {
            base.push(("request_id", r.clone()));
        }
        if let Some(t) = &page.ticket {
            base.push(("ticket", t.clone()));
        }
        let _: () = conn.hset_multiple(key, &base).await.map_err(redis_unavailable)?;
        let _: bool = conn.pexpire(key, RECORD_TTL.as_millis() as i64).await.map_err(redis_unavailable)?;
        let mut transient: Option<StepError> = None;
        for name in self.destinations(page) {
            let label = self.label(&name);
            if rec.contains_key(&format!("sent:{name}")) {
                report.sent.push(label);
                continue;
            }
            if let Some(why) = rec.get(&format!("refused:{name}")) {
                report.refused.push(format!("{label}: {why}"));
                continue;
            }
            let Some(sender) = self.senders.get(&name) else { continue };
            match self.trigger(sender, &dedup, now, page).await {
                Ok(()) => {
                    let _: () = conn
                        .hset(key, format!("sent:{name}"), now.as_millisecond())
                        .await
                        .map_err(redis_unavailable)?;
                    tracing::info!(destination = %label, dedup_key = %dedup, queue = %page.queue, dead_letter = %page.dead_letter_id, "paged");
                    report.sent.push(label);
                }
                Err(e) if e.class.is_retryable() => {
                    tracing::warn!(destination = %label, code = %e.code, error = %e.message, dead_letter = %page.dead_letter_id, "paging failed; the alert will be retried");
                    transient.get_or_insert(e);
                }
                Err(e) => {
                    tracing::error!(destination = %label, code = %e.code, error = %e.message, dead_letter = %page.dead_letter_id, "the destination refused the page for good");
                    let why = format!("{}: {}", e.code, e.message);
                    let _: () = conn.hset(key, format!("refused:{name}"), &why).await.map_err(redis_unavailable)?;
                    report.refused.push(format!("{label}: {why}"));
                }
            }
        }
        // a resolve that came while we were sending found nothing to resolve: do it now
        let closed: Option<String> = conn.hget(key, "closed").await.map_err(redis_unavailable)?;
        if let Some(how) = closed {
            let how = match how.as_str() {
                "discarded" => LetterClosed::Discarded,
                "superseded" => LetterClosed::Superseded,
                _ => LetterClosed::Redriven,
            };
            self.resolve_locked(queue, key, now, &page.queue, &page.dead_letter_id, how).await?;
        }
        match transient {
            Some(e) => Err(job_error(e)),
            None => Ok(report),
        }
    }

    async fn trigger(
        &self,
        sender: &Sender,
        dedup: &str,
        now: Timestamp,
        page: &DeadLetterPage,
    ) -> Result<(), StepError> {
        let occurred = Timestamp::from_millisecond(i64::try_from(page.dead_at_ms).unwrap_or(0)).unwrap_or(now);
        match sender {
            Sender::PagerDuty { client, routing_key } => {
                let mut event = TriggerEvent::new(page.summary(), self.settings.source.clone(), page.severity())
                    .dedup_key(dedup.to_owned());
                event.component = Some(page.queue.clone());
                event.group = Some("grantline".to_owned());
                event.class = Some(page.class().to_owned());
                event.custom_details = page.details();
                client.trigger(routing_key, &event).await.map(|_| ()).map_err(StepError::from)
            }
            Sender::Webhook { client, url, secret } => {
                let event = AlertEvent {
                    event: AlertEventKind::Trigger,
                    dedup_key: dedup.to_owned(),
                    severity: page.severity(),
                    summary: page.summary(),
                    details: page.details(),
                    occurred_at: occurred,
                };
                client
                    .send(url.expose(), secret, &event, &format!("{dedup}/trigger"), now)
                    .await
                    .map_err(StepError::from)
            }
            Sender::Teams { client, url } => {
                let title = page.title();
                client.post_card(url, &teams_card(&title, &page.facts())).await.map(|_| ()).map_err(StepError::from)
            }
            Sender::Slack { client, channel } => {
                let title = page.title();
                let facts = page.facts();
                client
                    .post_message(channel, &slack_text(&title, &facts), &slack_blocks(&title, &facts))
                    .await
                    .map(|_| ())
                    .map_err(StepError::from)
            }
        }
    }

    /// The letter was redriven or discarded: marks it closed (so a late alert pages nobody)
    /// and resolves the page at every destination that took it.
    pub async fn resolve(
        &self,
        queue: &Queue,
        now: Timestamp,
        letter_queue: &str,
        dead_letter_id: &str,
        how: LetterClosed,
    ) -> Result<ResolveReport, JobError> {
        let key = queue.namespace().key(&record_key(letter_queue, dead_letter_id));
        let lock = self.lock(queue, &key).await?;
        let result = self.resolve_locked(queue, &key, now, letter_queue, dead_letter_id, how).await;
        self.unlock(queue, lock).await;
        result
    }

    async fn resolve_locked(
        &self,
        queue: &Queue,
        key: &str,
        now: Timestamp,
        letter_queue: &str,
        dead_letter_id: &str,
        how: LetterClosed,
    ) -> Result<ResolveReport, JobError> {
        let mut conn = queue.connection();
        // closed first, then read what was sent: an alert sending at the same time reads
        // `closed` after it records a send, so one of the two resolves it
        let _: bool = conn.hset_nx(key, "closed", how.as_str()).await.map_err(redis_unavailable)?;
        let _: bool = conn.pexpire(key, RECORD_TTL.as_millis() as i64).await.map_err(redis_unavailable)?;
        let rec: HashMap<String, String> = conn.hgetall(key).await.map_err(redis_unavailable)?;
        let ns = queue.config().namespace.clone();
        let dedup = rec.get("dedup_key").cloned().unwrap_or_else(|| dedup_key(&ns, letter_queue, dead_letter_id));
        let mut report = ResolveReport {
            dedup_key: dedup.clone(),
            request_id: rec.get("request_id").cloned(),
            resolved: Vec::new(),
        };
        let mut transient: Option<StepError> = None;
        let mut sent: Vec<&str> = rec.keys().filter_map(|k| k.strip_prefix("sent:")).collect();
        sent.sort_unstable();
        for name in sent {
            let label = self.label(name);
            if rec.contains_key(&format!("resolved:{name}")) || rec.contains_key(&format!("resolve_refused:{name}")) {
                report.resolved.push(label);
                continue;
            }
            let Some(sender) = self.senders.get(name) else {
                tracing::warn!(
                    destination = name,
                    "a paged destination is no longer configured; it cannot be resolved"
                );
                continue;
            };
            match self.send_resolve(sender, &dedup, now, &rec, letter_queue, dead_letter_id, how).await {
                Ok(()) => {
                    let _: () = conn
                        .hset(key, format!("resolved:{name}"), now.as_millisecond())
                        .await
                        .map_err(redis_unavailable)?;
                    tracing::info!(destination = %label, dedup_key = %dedup, how = how.as_str(), "page resolved");
                    report.resolved.push(label);
                }
                Err(e) if e.class.is_retryable() => {
                    tracing::warn!(destination = %label, code = %e.code, error = %e.message, "resolving the page failed; it will be retried");
                    transient.get_or_insert(e);
                }
                Err(e) => {
                    tracing::error!(destination = %label, code = %e.code, error = %e.message, "the destination refused the resolve for good");
                    let why = format!("{}: {}", e.code, e.message);
                    let _: () =
                        conn.hset(key, format!("resolve_refused:{name}"), &why).await.map_err(redis_unavailable)?;
                }
            }
        }
        match transient {
            Some(e) => Err(job_error(e)),
            None => Ok(report),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_resolve(
        &self,
        sender: &Sender,
        dedup: &str,
        now: Timestamp,
        rec: &HashMap<String, String>,
        letter_queue: &str,
        dead_letter_id: &str,
        how: LetterClosed,
    ) -> Result<(), StepError> {
        let severity = match rec.get("severity").map(String::as_str) {
            Some("critical") => Severity::Critical,
            Some("warning") => Severity::Warning,
            _ => Severity::Error,
        };
        let title = if dead_letter_id.starts_with("unexplained:") {
            "Resolved: the unexplained member is no longer in the group".to_owned()
        } else {
            format!("Resolved: the dead letter {letter_queue} {dead_letter_id} was {}", how.as_str())
        };
        let mut facts: Vec<(&str, String)> = Vec::new();
        if let Some(t) = rec.get("ticket") {
            facts.push(("Ticket", t.clone()));
        }
        facts.push(("Step", letter_queue.to_owned()));
        if let Some(r) = rec.get("request_id") {
            facts.push(("Request", r.clone()));
        }
        match sender {
            Sender::PagerDuty { client, routing_key } => {
                client.resolve(routing_key, dedup).await.map(|_| ()).map_err(StepError::from)
            }
            Sender::Webhook { client, url, secret } => {
                let event = AlertEvent {
                    event: AlertEventKind::Resolve,
                    dedup_key: dedup.to_owned(),
                    severity,
                    summary: title,
                    details: json!({
                        "queue": letter_queue,
                        "dead_letter_id": dead_letter_id,
                        "how": how.as_str(),
                        "request_id": rec.get("request_id"),
                        "ticket": rec.get("ticket"),
                    }),
                    occurred_at: now,
                };
                client
                    .send(url.expose(), secret, &event, &format!("{dedup}/resolve"), now)
                    .await
                    .map_err(StepError::from)
            }
            Sender::Teams { client, url } => {
                client.post_card(url, &teams_card(&title, &facts)).await.map(|_| ()).map_err(StepError::from)
            }
            Sender::Slack { client, channel } => client
                .post_message(channel, &slack_text(&title, &facts), &slack_blocks(&title, &facts))
                .await
                .map(|_| ())
                .map_err(StepError::from),
        }
    }
}

/// Closes a dead letter the operator's way and queues the resolve of its page: redrives or
/// discards it, then enqueues one `resolve-alert` job for it (its id derives from the letter,
/// so running the command again queues nothing twice). Returns what the queue said: the
/// redriven job's id, or whether a letter was discarded; `None` when there was no such letter.
/// A letter already gone whose page is still open gets its resolve queued all the same.
pub async fn close_letter(
    queue: &Queue,
    letter_queue: &str,
    dead_letter_id: &str,
    how: LetterClosed,
    by: &str,
) -> Result<Option<String>, grantline_queue::QueueError> {
    let done = match how {
        LetterClosed::Redriven => queue.redrive(letter_queue, dead_letter_id).await?,
        LetterClosed::Discarded | LetterClosed::Superseded => {
            queue.discard(letter_queue, dead_letter_id).await?.then(|| dead_letter_id.to_owned())
        }
    };
    let record = queue.namespace().key(&record_key(letter_queue, dead_letter_id));
    let mut conn = queue.connection();
    let paged: bool = conn.exists(&record).await?;
    if done.is_some() || paged {
        queue.push(resolve_job(&queue.config().namespace, letter_queue, dead_letter_id, how, by)?).await?;
    }
    Ok(done)
}

/// The one `resolve-alert` job of a dead letter: its id derives from the letter, so whoever
/// closes the letter (an operator, a removal that finally succeeded) queues it only once.
pub fn resolve_job(
    namespace: &str,
    letter_queue: &str,
    dead_letter_id: &str,
    how: LetterClosed,
    by: &str,
) -> Result<grantline_queue::NewJob, grantline_queue::QueueError> {
    Ok(grantline_queue::NewJob::new(
        JobKind::ResolveAlert.as_str(),
        &grantline_shared::jobs::ResolveAlert {
            queue: letter_queue.to_owned(),
            dead_letter_id: dead_letter_id.to_owned(),
            how,
            by: by.to_owned(),
        },
    )?
    .with_id(grantline_queue::successor_id(
        &format!("{namespace}/{letter_queue}/{dead_letter_id}"),
        JobKind::ResolveAlert.as_str(),
        0,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> Result<PagingSettings, String> {
        let s: PagingSettings = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        s.validate()?;
        Ok(s)
    }

    const GOOD: &str = r#"
        source = "grantline.test"
        default = ["oncall"]
        service_desk = ["desk"]
        [destinations.oncall]
        type = "pagerduty"
        routing_key = "R0GRANTLINEDEMOROUTINGKEY0000001"
        [destinations.critical]
        type = "pagerduty"
        events_url = "https://events.eu.pagerduty.com"
        routing_key = "R0GRANTLINECRITICALROUTINGKEY002"
        [destinations.soc]
        type = "webhook"
        url = "https://soc.example.com/hooks/grantline"
        secret = "a-long-enough-signing-secret"
        [destinations.desk]
        type = "teams_channel"
        url = "https://prod.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=abc"
        [[routes]]
        severities = ["critical"]
        to = ["critical", "soc"]
        [[routes]]
        kinds = ["update-ticket"]
        to = ["soc"]
    "#;

    #[test]
    fn routes_by_kind_and_severity_with_a_default() {
        let s = settings(GOOD).unwrap();
        assert_eq!(severity_of("rollback-grant"), Severity::Critical);
        assert_eq!(severity_of("remove-access"), Severity::Critical);
        assert_eq!(severity_of("execute-grant"), Severity::Error);
        assert_eq!(s.route("rollback-grant", Severity::Critical), ["critical", "soc"]);
        assert_eq!(s.route("update-ticket", Severity::Error), ["soc"]);
        assert_eq!(s.route("execute-grant", Severity::Error), ["oncall"]);
        assert_eq!(
            s.destinations.get("critical"),
            Some(&Destination::Pagerduty {
                events_url: "https://events.eu.pagerduty.com".into(),
                routing_key: Secret::new("R0GRANTLINECRITICALROUTINGKEY002"),
            })
        );
        assert_eq!(
            s.destinations.get("oncall").map(|d| matches!(d, Destination::Pagerduty { events_url, .. } if events_url == "https://events.pagerduty.com")),
            Some(true)
        );
        let pager = Pager::new(&s, None).unwrap();
        let page = DeadLetterPage {
            subject: Default::default(),
            queue: "execute-grant".into(),
            dead_letter_id: "1-0".into(),
            job_id: "j".into(),
            attempts: 4,
            error_code: "graph.unavailable".into(),
            error_message: "Graph answered 503".into(),
            request_id: Some("r".into()),
            ticket: Some("RITM0010001".into()),
            trace_id: None,
            dead_at_ms: 0,
        };
        assert_eq!(pager.destinations(&page), ["oncall", "desk"]);
        let no_ticket = DeadLetterPage { ticket: None, ..page.clone() };
        assert_eq!(pager.destinations(&no_ticket), ["oncall"]);
        let summary = page.summary();
        for part in
            ["execute-grant", "RITM0010001", "graph.unavailable", "grantline dlq retry execute-grant 1-0", "discard"]
        {
            assert!(summary.contains(part), "{part} missing from {summary}");
        }
        assert_eq!(dedup_key("ns", "execute-grant", "1-0"), "grantline/ns/execute-grant/1-0");
    }

    #[test]
    fn validation_names_the_key_and_never_echoes_a_secret() {
        let cases = [
            (GOOD.replace("R0GRANTLINEDEMOROUTINGKEY0000001", "short"), "paging.destinations.oncall.routing_key"),
            (GOOD.replace("default = [\"oncall\"]", "default = [\"nobody\"]"), "paging.default"),
            (GOOD.replace("default = [\"oncall\"]", "default = []"), "paging.default"),
            (GOOD.replace("kinds = [\"update-ticket\"]", "kinds = [\"update-tickets\"]"), "paging.routes[1].kinds"),
            (GOOD.replace("service_desk = [\"desk\"]", "service_desk = [\"oncall\"]"), "paging.service_desk"),
            (GOOD.replace("a-long-enough-signing-secret", "short"), "paging.destinations.soc.secret"),
            (
                GOOD.replace(
                    "https://prod.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=abc",
                    "ftp://x?sig=abc",
                ),
                "paging.destinations.desk.url",
            ),
        ];
        for (text, key) in cases {
            let err = settings(&text).unwrap_err();
            assert!(err.contains(key), "{key}: {err}");
            assert!(!err.contains("sig=abc") && !err.contains("a-long-enough"), "{err}");
        }
        let unknown = GOOD.replace("type = \"teams_channel\"", "type = \"carrier_pigeon\"");
        assert!(settings(&unknown).unwrap_err().contains("carrier_pigeon"));
        let slack = GOOD.replace("type = \"teams_channel\"\n        url = \"https://prod.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=abc\"", "type = \"slack_channel\"\n        channel = \"#service-desk\"");
        let s = settings(&slack).unwrap();
        let err = Pager::new(&s, None).unwrap_err();
        assert!(err.contains("paging.destinations.desk") && err.contains("ingest.slack"), "{err}");
        assert!(!PagingSettings::default().enabled());
        PagingSettings::default().validate().unwrap();
    }
}
