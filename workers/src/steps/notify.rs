//! notify: ask, remind and tell.
//!
//! - `ask {stage}`: the people of the stage (named users, the members of an approver group,
//!   the fallback when it decides), minus whoever the plan excludes; an approver whose
//!   automatic replies are on is passed over to the fallback when the stage allows it (the plan
//!   on record is changed, with the reason). Each person is asked in the first chat channel
//!   that reaches them (Teams, Slack), or gets a signed link; and a ServiceNow approval record
//!   is created for them (with the link, when there is one). Every message sent is a notice on
//!   the record, so it can be brought up to date later.
//! - `remind {stage}`: those who have not answered get the card or message again, and a
//!   reminder comment on their approval record.
//! - `update`: every notice is brought up to date with the request (who decided, when; no
//!   buttons once the stage is decided), approval records of people who answered elsewhere get
//!   their answer, those no longer needed are closed, and the requester is told a final outcome
//!   in the channel their approvers were asked in.
//!
//! Sends are external effects: each is remembered in a ledger key (request, stage, person,
//! channel) as soon as it is made, so a repeated job sends nothing twice.

use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_connectors::graph::DirectoryObject;
use grantline_connectors::servicenow::ApprovalState;
use grantline_queue::{Handoff, JobError};
use grantline_shared::audit::AuditEvent;
use grantline_shared::cards::ApprovalView;
use grantline_shared::flow::Next;
use grantline_shared::jobs::{Notify, NotifyWhat};
use grantline_shared::link::{LinkClaims, issue};
use grantline_shared::policy::{ApprovalPlan, ApprovalRequirement, PlannedApprover};
use grantline_shared::record::{Notice, RequestRecord};
use grantline_shared::request::RequestState;
use grantline_shared::{ErrorClass, JobKind, StepError};

use super::{job_error, redis_unavailable};
use crate::channels::Chat;
use crate::record::{commit, handoff, load};
use crate::services::Services;

/// How long a send is remembered (longer than any approval waits).
const LEDGER_SECS: u64 = 60 * 24 * 3600;

/// A person to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Person {
    id: String,
    upn: String,
    mail: Option<String>,
}

impl Person {
    fn address(&self) -> &str {
        self.mail.as_deref().filter(|m| m.contains('@')).unwrap_or(&self.upn)
    }
    fn from_object(o: &DirectoryObject) -> Option<Person> {
        let upn = o.user_principal_name.clone().unwrap_or_default();
        (!o.id.is_empty()).then(|| Person { id: o.id.clone(), upn, mail: o.mail.clone() })
    }
}

fn permanent(e: &StepError) -> bool {
    matches!(e.class, ErrorClass::Permanent)
}

fn ledger_key(svc: &Services, rec: &RequestRecord, what: &str) -> String {
    // a granted request awaiting approval is deciding an extension: its asks and reminders are
    // its own round, apart from those of the grant (and of an earlier extension)
    let round = match (rec.state, &rec.grant, rec.asked_ms) {
        (RequestState::AwaitingApproval, Some(_), Some(at)) => format!("extension-{at}:"),
        _ => String::new(),
    };
    svc.queue.namespace().key(&format!("ledger:{}:notify:{round}{what}", rec.id))
}

async fn ledger_get(svc: &Services, key: &str) -> Result<Option<String>, JobError> {
    let mut conn = svc.queue.connection();
    redis::cmd("GET").arg(key).query_async(&mut conn).await.map_err(redis_unavailable)
}

async fn ledger_set(svc: &Services, key: &str, value: &str) -> Result<(), JobError> {
    let mut conn = svc.queue.connection();
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("EX")
        .arg(LEDGER_SECS)
        .query_async::<()>(&mut conn)
        .await
        .map_err(redis_unavailable)
}

/// The people one approver entry names.
async fn people_of(svc: &Services, entry: &PlannedApprover) -> Result<Vec<Person>, JobError> {
    if let Some(g) = &entry.group_id {
        let members = svc.graph.list_members(g).await.map_err(job_error)?;
        return Ok(members.iter().filter_map(Person::from_object).collect());
    }
    let mut out = Vec::new();
    for id in &entry.ids {
        match svc.graph.get_user(id).await.map_err(job_error)?.value {
            Some(u) if u.account_enabled != Some(false) => {
                out.push(Person { id: u.id, upn: u.user_principal_name, mail: u.mail })
            }
            _ => tracing::warn!(approver = %id, "an approver the plan names is not an enabled directory user"),
        }
    }
    Ok(out)
}

/// The entries asked for a stage: the fallback when it decides; otherwise each entry, or the
/// fallback in its place.
fn asked_entries(plan: &ApprovalPlan, stage: usize) -> Vec<PlannedApprover> {
    let Some(s) = plan.stages.get(stage) else { return Vec::new() };
    let fallback_active = s.fallback.is_some() && (s.fallback_decides || s.escalated);
    if fallback_active {
        return s.fallback.iter().cloned().collect();
    }
    let mut out: Vec<PlannedApprover> = Vec::new();
    for e in &s.approvers {
        let asked = if e.via_fallback { s.fallback.clone() } else { Some(e.clone()) };
        if let Some(a) = asked
            && !out.contains(&a)
        {
            out.push(a);
        }
    }
    out
}

fn excluded(plan: &ApprovalPlan, rec: &RequestRecord, p: &Person) -> bool {
    let id = p.id.to_lowercase();
    let upn = p.upn.to_lowercase();
    rec.requester.as_ref().is_some_and(|r| r.id.eq_ignore_ascii_case(&p.id))
        || plan.excluded.iter().any(|x| *x == id || *x == upn)
}

/// The people of a stage, each once.
async fn stage_people(
    svc: &Services,
    rec: &RequestRecord,
    plan: &ApprovalPlan,
    stage: usize,
) -> Result<Vec<Person>, JobError> {
    let mut out: Vec<Person> = Vec::new();
    for entry in asked_entries(plan, stage) {
        for p in people_of(svc, &entry).await? {
            if !excluded(plan, rec, &p) && !out.iter().any(|o| o.id.eq_ignore_ascii_case(&p.id)) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Passes over approvers who are out of office, when the stage allows it and has a fallback:
/// their entry goes to the fallback. Returns the skip events (the plan is changed in place).
async fn skip_out_of_office(
    svc: &Services,
    plan: &mut ApprovalPlan,
    stage: usize,
) -> Result<Vec<AuditEvent>, JobError> {
    let Some(s) = plan.stages.get(stage) else { return Ok(Vec::new()) };
    if !s.skip_out_of_office || s.fallback_decides || s.escalated {
        return Ok(Vec::new());
    }
    let Some(fallback) = s.fallback.clone() else { return Ok(Vec::new()) };
    let now = svc.now();
    let mut events = Vec::new();
    let entries = s.approvers.clone();
    for (i, e) in entries.iter().enumerate() {
        if e.via_fallback || e.group_id.is_some() {
            continue;
        }
        let people = people_of(svc, e).await?;
        if people.is_empty() {
            continue;
        }
        let mut away = Vec::new();
        for p in &people {
            if svc.graph.out_of_office(&p.id, now).await.map_err(job_error)? {
                away.push(p.upn.clone());
            }
        }
        if away.len() == people.len() {
            let reason = format!("{} out of office (automatic replies on)", away.join(", "));
            if let Some(entry) = plan.stages[stage].approvers.get_mut(i) {
                entry.via_fallback = true;
                entry.note = Some(format!("{reason}: asked the fallback instead"));
            }
            for a in away {
                events.push(AuditEvent::ApproverSkipped {
                    stage,
                    approver: a,
                    reason: reason.clone(),
                    to: fallback.to_string(),
                });
            }
        }
    }
    Ok(events)
}

/// Sends, or finds in the ledger, the Teams card for one person.
async fn ask_teams(svc: &Services, p: &Person, card: &serde_json::Value) -> Result<Option<String>, StepError> {
    let Some(t) = &svc.channels.teams else { return Ok(None) };
    let conv = t.client.create_conversation(&t.service_url, &p.id, &t.tenant_id).await?.value;
    let activity = t.client.send_card(&t.service_url, &conv, card).await?.value;
    Ok(Some(format!("{}|{conv}|{activity}", t.service_url)))
}

async fn ask_slack(svc: &Services, p: &Person, view: &ApprovalView) -> Result<Option<String>, StepError> {
    let Some(slack) = &svc.channels.slack else { return Ok(None) };
    let Some(user) = slack.lookup_by_email(p.address()).await? else { return Ok(None) };
    if user.deleted {
        return Ok(None);
    }
    let posted = slack.post_message(&user.id, &view.slack_text(), &view.slack_blocks()).await?;
    Ok(Some(format!("{}|{}", posted.channel, posted.ts)))
}

/// One channel's attempt at a person, through the ledger: `Ok(Some(reference))` sent (now or
/// before), `Ok(None)` this channel does not reach them.
async fn through_ledger<F, Fut>(svc: &Services, key: &str, send: F) -> Result<Option<String>, JobError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, StepError>>,
{
    if let Some(r) = ledger_get(svc, key).await? {
        return Ok(Some(r));
    }
    match send().await {
        Ok(Some(reference)) => {
            ledger_set(svc, key, &reference).await?;
            Ok(Some(reference))
        }
        Ok(None) => Ok(None),
        Err(e) if permanent(&e) => {
            tracing::info!(code = %e.code, message = %e.message, "channel does not reach this approver");
            Ok(None)
        }
        Err(e) => Err(job_error(e)),
    }
}

async fn ask(svc: &Services, rec: &RequestRecord, stage: usize) -> Result<Handoff, JobError> {
    let c = commit(svc, rec, JobKind::Notify);
    let mut decision = match rec.decision.clone() {
        Some(d) => d,
        None => return Ok(Handoff::done()),
    };
    let Some(ApprovalRequirement::Plan(plan)) = decision.approval.as_mut() else { return Ok(Handoff::done()) };
    let pending =
        rec.state == RequestState::AwaitingApproval && rec.approval_clock.as_ref().is_none_or(|c| c.stage == stage);
    let skipped = if pending { skip_out_of_office(svc, plan, stage).await? } else { Vec::new() };
    let plan_changed = !skipped.is_empty();
    let people = stage_people(svc, rec, plan, stage).await?;
    // the view as approvers will see it (with the plan as changed here)
    let mut shown = rec.clone();
    if plan_changed {
        shown.decision = Some(decision.clone());
    }
    let view = ApprovalView::of(&shown, stage);
    let card = view.teams_card();
    let deadline = match (rec.approval_clock.as_ref(), decision.plan()) {
        (Some(c), Some(p)) => c.deadline_ms(p),
        _ => None,
    };
    let mut notices: Vec<Notice> = Vec::new();
    let mut sent: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let now = svc.now_ms();
    for p in &people {
        if rec.notices.iter().any(|n| n.stage == Some(stage) && n.to.eq_ignore_ascii_case(&p.id)) {
            continue;
        }
        let mut found = |channel: &str, reference: String| {
            notices.push(Notice {
                channel: channel.into(),
                to: p.id.clone(),
                reference,
                stage: Some(stage),
                at_ms: now,
            });
            sent.push(format!("{channel}:{}", p.upn));
        };
        // once the stage is no longer pending nothing new is sent, but what was sent before
        // (a run cut short) is still recorded so it can be brought up to date
        let mut chat = false;
        for ch in &svc.channels.order {
            let name = match ch {
                Chat::Teams => "teams",
                Chat::Slack => "slack",
            };
            let key = ledger_key(svc, rec, &format!("{stage}:{}:{name}", p.id));
            let reference = if pending {
                match ch {
                    Chat::Teams => through_ledger(svc, &key, || ask_teams(svc, p, &card)).await?,
                    Chat::Slack => through_ledger(svc, &key, || ask_slack(svc, p, &view)).await?,
                }
            } else {
                ledger_get(svc, &key).await?
            };
            if let Some(r) = reference {
                found(name, r);
                chat = true;
                break;
            }
        }
        let mut link_url = None;
        if !chat && let Some(link) = &svc.channels.link {
            let key = ledger_key(svc, rec, &format!("{stage}:{}:link", p.id));
            // the ledger keeps "<nonce> <token>": the notice names the link by its nonce,
            // never by the credential itself
            let issued = match ledger_get(svc, &key).await? {
                Some(t) => Some(t),
                None if pending => {
                    let claims = LinkClaims {
                        request_id: rec.id.clone(),
                        stage,
                        approver: p.id.clone(),
                        nonce: format!("{:032x}", fastrand::u128(..)),
                        exp_ms: deadline.unwrap_or(now + 72 * 3600 * 1000),
                    };
                    let t = format!("{} {}", claims.nonce, issue(link.secret.expose().as_bytes(), &claims));
                    ledger_set(svc, &key, &t).await?;
                    Some(t)
                }
                None => None,
            };
            if let Some((nonce, token)) = issued.as_deref().and_then(|t| t.split_once(' ')) {
                link_url = Some(format!("{}/v1/approvals/{token}", link.public_url.trim_end_matches('/')));
                found("link", nonce.to_owned());
            }
        }
        if svc.channels.servicenow_approvals {
            let key = ledger_key(svc, rec, &format!("{stage}:{}:servicenow", p.id));
            let comments = match &link_url {
                Some(url) => format!("{}\n\nApprove or reject (sign-in required): {url}", view.text()),
                None => view.text(),
            };
            let reference = if pending {
                through_ledger(svc, &key, || async {
                    let Some(user) = svc.servicenow.find_user(p.address()).await? else { return Ok(None) };
                    let record = svc.servicenow.create_approval(&rec.ticket.sys_id, &user.sys_id, &comments).await?;
                    Ok(Some(record.sys_id))
                })
                .await?
            } else {
                ledger_get(svc, &key).await?
            };
            match reference {
                Some(r) => found("servicenow", r),
                None if pending => failed.push(format!("servicenow:{}: no ServiceNow user with this address", p.upn)),
                None => {}
            }
        }
        if pending && !sent.iter().any(|s| s.ends_with(&format!(":{}", p.upn))) {
            failed.push(format!("{}: no channel reaches this approver", p.upn));
        }
    }
    if people.is_empty() && pending {
        failed.push(format!("stage {}: nobody to ask", stage + 1));
    }
    let mut all = rec.notices.clone();
    all.extend(notices);
    let mut c = c.events(skipped).set(|mut u| {
        u = u.notices(&all);
        if plan_changed {
            u = u.decision(&decision);
        }
        u
    });
    if !sent.is_empty() || !failed.is_empty() {
        if !failed.is_empty() {
            tracing::warn!(request_id = %rec.id, stage, ?failed, "some approvers could not be asked");
        }
        c = c.event(AuditEvent::ApproversNotified { stage, sent, failed });
    }
    if !pending {
        // cards went out for a stage that was decided meanwhile: bring them up to date
        c = c.then(Next::Notify(NotifyWhat::Update));
    }
    handoff(c)
}

async fn remind(svc: &Services, rec: &RequestRecord, stage: usize) -> Result<Handoff, JobError> {
    if rec.state != RequestState::AwaitingApproval || rec.approval_clock.as_ref().is_some_and(|c| c.stage != stage) {
        return Ok(Handoff::done());
    }
    let percent = rec.approval_clock.as_ref().and_then(|c| c.reminded.iter().max().copied()).unwrap_or(0);
    let view = ApprovalView::of(rec, stage);
    let answered =
        |to: &str| rec.approvals.iter().any(|a| a.stage == Some(stage) && a.approver_id.as_deref() == Some(to));
    let now = svc.now_ms();
    let mut added: Vec<Notice> = Vec::new();
    let reminder = format!("Reminder: {}", view.text());
    for n in rec.notices.iter().filter(|n| n.stage == Some(stage) && !answered(&n.to)) {
        let key = ledger_key(svc, rec, &format!("remind:{stage}:{percent}:{}:{}", n.to, n.channel));
        let reference = match n.channel.as_str() {
            "teams" => {
                let parts: Vec<&str> = n.reference.splitn(3, '|').collect();
                let [service_url, conv, _] = parts[..] else { continue };
                let Some(t) = &svc.channels.teams else { continue };
                let card = view.teams_card();
                through_ledger(svc, &key, || async {
                    let a = t.client.send_card(service_url, conv, &card).await?.value;
                    Ok(Some(format!("{service_url}|{conv}|{a}")))
                })
                .await?
            }
            "slack" => {
                let Some((channel, _)) = n.reference.split_once('|') else { continue };
                let Some(slack) = &svc.channels.slack else { continue };
                through_ledger(svc, &key, || async {
                    let p = slack
                        .post_message(channel, &format!("Reminder: {}", view.slack_text()), &view.slack_blocks())
                        .await?;
                    Ok(Some(format!("{}|{}", p.channel, p.ts)))
                })
                .await?
            }
            "servicenow" => {
                through_ledger(svc, &key, || async {
                    svc.servicenow.set_approval(&n.reference, ApprovalState::Requested, &reminder).await?;
                    Ok(Some(n.reference.clone()))
                })
                .await?;
                None
            }
            _ => None,
        };
        if let Some(r) = reference
            && !rec.notices.iter().chain(added.iter()).any(|x| x.reference == r)
        {
            added.push(Notice {
                channel: n.channel.clone(),
                to: n.to.clone(),
                reference: r,
                stage: Some(stage),
                at_ms: now,
            });
        }
    }
    if added.is_empty() {
        return Ok(Handoff::done());
    }
    let mut all = rec.notices.clone();
    all.extend(added);
    handoff(commit(svc, rec, JobKind::Notify).set(|u| u.notices(&all)))
}

/// The approval record state a notice's person should show now, if it should change.
fn wanted_state(rec: &RequestRecord, n: &Notice) -> Option<(ApprovalState, String)> {
    let stage = n.stage.unwrap_or(0);
    if let Some(a) =
        rec.approvals.iter().rev().find(|a| a.stage == Some(stage) && a.approver_id.as_deref() == Some(&n.to))
    {
        if a.via.as_deref() == Some("servicenow") {
            return None;
        }
        let door = a.via.clone().unwrap_or_default();
        let verdict = if a.approve { ApprovalState::Approved } else { ApprovalState::Rejected };
        let comment = if a.comment.trim().is_empty() { String::new() } else { format!(": {}", a.comment) };
        return Some((verdict, format!("Answered in {door} by {}{comment}", a.approver)));
    }
    let view = ApprovalView::of(rec, stage);
    if view.status.is_pending() {
        return None;
    }
    Some((ApprovalState::NoLongerRequired, format!("No longer required: {}", view.status.summary())))
}

async fn update(svc: &Services, rec: &RequestRecord) -> Result<Handoff, JobError> {
    let mut records = None;
    for n in &rec.notices {
        let view = ApprovalView::of(rec, n.stage.unwrap_or(0));
        let result: Result<(), StepError> = match n.channel.as_str() {
            "teams" => match (&svc.channels.teams, &n.reference.splitn(3, '|').collect::<Vec<_>>()[..]) {
                (Some(t), [service_url, conv, activity]) => t
                    .client
                    .update_card(service_url, conv, activity, &view.teams_card())
                    .await
                    .map(|_| ())
                    .map_err(Into::into),
                _ => Ok(()),
            },
            "slack" => match (&svc.channels.slack, n.reference.split_once('|')) {
                (Some(s), Some((channel, ts))) => s
                    .update_message(channel, ts, &view.slack_text(), &view.slack_blocks())
                    .await
                    .map(|_| ())
                    .map_err(Into::into),
                _ => Ok(()),
            },
            "servicenow" => match wanted_state(rec, n) {
                Some((state, comment)) => {
                    if records.is_none() {
                        records = Some(svc.servicenow.list_approvals(&rec.ticket.sys_id).await.map_err(job_error)?);
                    }
                    let current = records
                        .as_ref()
                        .and_then(|r| r.iter().find(|a| a.sys_id == n.reference))
                        .map(|a| a.state.clone());
                    // a record already decided or closed (by its approver, or by us before) stays as it is
                    if current.as_ref().is_some_and(|s| *s != ApprovalState::Requested) {
                        Ok(())
                    } else {
                        svc.servicenow.set_approval(&n.reference, state, &comment).await.map(|_| ()).map_err(Into::into)
                    }
                }
                None => Ok(()),
            },
            _ => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(e) if permanent(&e) => {
                tracing::warn!(request_id = %rec.id, channel = %n.channel, code = %e.code, "a notice could not be brought up to date")
            }
            Err(e) => return Err(job_error(e)),
        }
    }
    tell_requester(svc, rec).await?;
    Ok(Handoff::done())
}

/// Tells the requester a final outcome in the chat channel their approvers were asked in.
async fn tell_requester(svc: &Services, rec: &RequestRecord) -> Result<(), JobError> {
    let outcome = match rec.state {
        RequestState::Approved => "approved: the access is being granted; the ticket will say when it is done",
        RequestState::Rejected => "rejected",
        RequestState::Expired => "not decided in time and has expired",
        RequestState::Cancelled => "cancelled",
        _ => return Ok(()),
    };
    let Some(requester) = rec.requester.as_ref() else { return Ok(()) };
    let view = ApprovalView::of(rec, rec.approval_clock.as_ref().map(|c| c.stage).unwrap_or(0));
    let text = format!("Your request {} is {outcome}. {}", view.title(), view.status.summary());
    let key = ledger_key(svc, rec, &format!("requester:{}", rec.state));
    let person = Person { id: requester.id.clone(), upn: requester.upn.clone(), mail: None };
    let used = |ch: &str| rec.notices.iter().any(|n| n.channel == ch);
    if used("teams") && svc.channels.teams.is_some() {
        let card = serde_json::json!({
            "type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "version": "1.4",
            "body": [{"type": "TextBlock", "text": text, "wrap": true}],
        });
        through_ledger(svc, &key, || ask_teams(svc, &person, &card)).await?;
    } else if used("slack")
        && let Some(slack) = &svc.channels.slack
    {
        through_ledger(svc, &key, || async {
            let Some(user) = slack.lookup_by_email(person.address()).await? else { return Ok(None) };
            let p = slack.post_message(&user.id, &text, &serde_json::Value::Null).await?;
            Ok(Some(format!("{}|{}", p.channel, p.ts)))
        })
        .await?;
    }
    Ok(())
}

pub async fn run(job: Notify, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    let Some(rec) = load(&svc, JobKind::Notify, &job.request_id).await? else { return Ok(Handoff::done()) };
    match job.what {
        NotifyWhat::Ask { stage } => ask(&svc, &rec, stage).await,
        NotifyWhat::Remind { stage } => remind(&svc, &rec, stage).await,
        NotifyWhat::Update => update(&svc, &rec).await,
    }
}
