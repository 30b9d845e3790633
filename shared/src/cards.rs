//! What an approver is shown, and the same view rendered for each door: an Adaptive Card for
//! Teams (1.4, `Action.Execute`), Block Kit for Slack, plain text for the signed-link page and
//! ServiceNow. One [`ApprovalView`] is built from the request record for one stage; once the
//! stage is decided or the request moved on, the view has no buttons, so a card replaced with
//! it can no longer act.

use serde_json::{Value, json};

use crate::clock::timestamp;
use crate::policy::CheckStatus;
use crate::record::RequestRecord;
use crate::request::RequestState;

/// What the approvers of one stage of a request see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalView {
    pub request_id: String,
    /// The ticket number (`RITM0010482`).
    pub ticket: String,
    /// The person the access is for (UPN, with their display name when known).
    pub requester: String,
    /// Who filed the ticket, when someone else.
    pub filed_by: Option<String>,
    /// What is asked: "Send As on finance@contoso.com", "member of Finance BI Readers".
    pub access: String,
    pub duration: String,
    pub justification: Option<String>,
    /// The policy rule that asked for approval.
    pub rule: String,
    /// The stage asked about, 0-based.
    pub stage: usize,
    pub stages: usize,
    pub stage_name: String,
    /// The policy checks, as (passed, what was found).
    pub checks: Vec<(bool, String)>,
    pub status: ViewStatus,
}

/// Where the stage stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewStatus {
    /// Waiting for an answer until this time (RFC 3339).
    Pending { until: Option<String> },
    /// The stage got this answer (the last one counted).
    Decided { by: String, approve: bool, at: String, comment: String },
    /// The request moved on without this stage being answered here (expired, cancelled,
    /// decided by someone else's answer).
    Closed { what: String },
}

impl ViewStatus {
    pub fn is_pending(&self) -> bool {
        matches!(self, ViewStatus::Pending { .. })
    }

    /// One line for people: "Approved by mgr@contoso.com at ...".
    pub fn summary(&self) -> String {
        match self {
            ViewStatus::Pending { until: Some(u) } => format!("Waiting for a decision until {u}"),
            ViewStatus::Pending { until: None } => "Waiting for a decision".to_owned(),
            ViewStatus::Decided { by, approve, at, comment } => format!(
                "{} by {by} at {at}{}",
                if *approve { "Approved" } else { "Rejected" },
                if comment.trim().is_empty() { String::new() } else { format!(": {comment}") }
            ),
            ViewStatus::Closed { what } => what.clone(),
        }
    }
}

fn access_of(rec: &RequestRecord) -> String {
    let d = rec.decision.as_ref();
    let level = d.and_then(|d| d.level);
    let target = d.and_then(|d| d.target.as_ref());
    let name = target.map(|t| t.display_name.clone()).or_else(|| rec.target.clone()).unwrap_or_default();
    match (target.and_then(|t| t.mailbox_address.as_ref()), level) {
        (Some(addr), Some(l)) => format!("{} on {name} ({addr})", level_text(l)),
        (Some(addr), None) => format!("access to {name} ({addr})"),
        (None, _) => format!("member of {name}"),
    }
}

fn level_text(l: crate::policy::AccessLevel) -> &'static str {
    use crate::policy::AccessLevel::*;
    match l {
        Member => "Member",
        ReadOnly => "Read-only",
        FullAccess => "Full Access",
        SendAs => "Send As",
        SendOnBehalf => "Send on Behalf",
    }
}

fn duration_of(rec: &RequestRecord) -> String {
    match rec.decision.as_ref().and_then(|d| d.duration.as_ref()) {
        Some(d) => match (&d.duration, &d.ends_at) {
            (_, Some(end)) => format!("until {end}"),
            (Some(p), None) => format!("for {p}"),
            (None, None) => "permanent".to_owned(),
        },
        None => "permanent".to_owned(),
    }
}

fn state_text(s: RequestState) -> &'static str {
    match s {
        RequestState::Expired => "The approval expired",
        RequestState::Cancelled => "The request was cancelled",
        RequestState::Rejected => "The request was rejected",
        RequestState::Denied => "The request was denied by policy",
        _ => "The request was decided",
    }
}

impl ApprovalView {
    /// The view of stage `stage` of a request, as it stands.
    pub fn of(rec: &RequestRecord, stage: usize) -> ApprovalView {
        let plan = rec.decision.as_ref().and_then(|d| d.plan());
        let stages = plan.map(|p| p.stages.len()).unwrap_or(0);
        let planned = plan.and_then(|p| p.stages.get(stage));
        let requester = rec
            .requester
            .as_ref()
            .map(|r| match &r.display_name {
                Some(n) if !n.is_empty() => format!("{n} ({})", r.upn),
                _ => r.upn.clone(),
            })
            .unwrap_or_default();
        let answered = rec.approvals.iter().rev().find(|a| a.stage == Some(stage));
        let status = match (rec.state, answered) {
            (RequestState::AwaitingApproval, _) if stage_open(rec, stage) => {
                let until = match (rec.approval_clock.as_ref(), plan) {
                    (Some(c), Some(p)) => c.deadline_ms(p).map(|ms| timestamp(ms).to_string()),
                    _ => None,
                };
                ViewStatus::Pending { until }
            }
            (_, Some(a)) => ViewStatus::Decided {
                by: a.approver.clone(),
                approve: a.approve,
                at: timestamp(a.at_ms).to_string(),
                comment: a.comment.clone(),
            },
            (s, None) => ViewStatus::Closed { what: state_text(s).to_owned() },
        };
        ApprovalView {
            request_id: rec.id.clone(),
            ticket: rec.ticket.number.clone(),
            requester,
            filed_by: rec.opened_by.as_ref().map(|o| o.upn.clone().unwrap_or_else(|| o.id.clone())),
            access: access_of(rec),
            duration: duration_of(rec),
            justification: rec.justification.clone(),
            rule: rec.decision.as_ref().and_then(|d| d.rule.clone()).unwrap_or_default(),
            stage,
            stages,
            stage_name: planned.map(|s| s.name.clone()).unwrap_or_default(),
            checks: rec
                .decision
                .as_ref()
                .map(|d| d.checks.iter().map(|c| (c.status != CheckStatus::Fail, c.reason.clone())).collect())
                .unwrap_or_default(),
            status,
        }
    }

    /// "Access request RITM0010482: Send As on Finance (finance@contoso.com)".
    pub fn title(&self) -> String {
        format!("Access request {}: {}", self.ticket, self.access)
    }

    fn facts(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![("Requester", self.requester.clone())];
        if let Some(by) = &self.filed_by {
            f.push(("Filed by", by.clone()));
        }
        f.push(("Access", self.access.clone()));
        f.push(("Duration", self.duration.clone()));
        if let Some(j) = &self.justification {
            f.push(("Reason", j.clone()));
        }
        f.push(("Stage", format!("{} of {}: {}", self.stage + 1, self.stages.max(1), self.stage_name)));
        if !self.rule.is_empty() {
            f.push(("Policy rule", self.rule.clone()));
        }
        f
    }

    /// Plain text (the ServiceNow approval comment, the page's fallback).
    pub fn text(&self) -> String {
        let mut out = self.title();
        for (k, v) in self.facts() {
            out.push_str(&format!("\n{k}: {v}"));
        }
        out.push_str(&format!("\n{}", self.status.summary()));
        out
    }

    /// The Teams Adaptive Card. While pending it carries Approve and Reject (`Action.Execute`,
    /// data `{requestId, stage}`) and a comment box; otherwise it only says what happened.
    pub fn teams_card(&self) -> Value {
        let mut body = vec![
            json!({"type": "TextBlock", "text": self.title(), "weight": "Bolder", "size": "Medium", "wrap": true}),
            json!({"type": "FactSet", "facts": self.facts().into_iter()
                .map(|(t, v)| json!({"title": t, "value": v})).collect::<Vec<_>>()}),
        ];
        if !self.checks.is_empty() {
            let lines: Vec<String> =
                self.checks.iter().map(|(ok, why)| format!("{} {why}", if *ok { "✔" } else { "✖" })).collect();
            body.push(json!({"type": "TextBlock", "text": lines.join("\n\n"), "wrap": true, "isSubtle": true, "size": "Small"}));
        }
        body.push(json!({"type": "TextBlock", "text": self.status.summary(), "wrap": true, "weight": "Bolder"}));
        let mut card = json!({
            "type": "AdaptiveCard",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.4",
            "body": body,
        });
        if self.status.is_pending() {
            if let Some(b) = card["body"].as_array_mut() {
                b.push(json!({"type": "Input.Text", "id": "comment", "placeholder": "Comment", "isMultiline": true, "maxLength": 4000}));
            }
            let data = json!({"requestId": self.request_id, "stage": self.stage});
            card["actions"] = json!([
                {"type": "Action.Execute", "title": "Approve", "verb": "approve", "style": "positive", "data": data},
                {"type": "Action.Execute", "title": "Reject", "verb": "reject", "style": "destructive", "data": data},
            ]);
        }
        card
    }

    /// The Slack notification text (the fallback of the blocks).
    pub fn slack_text(&self) -> String {
        if self.status.is_pending() {
            format!("{} needs your approval", self.title())
        } else {
            format!("{}: {}", self.title(), self.status.summary())
        }
    }

    /// Block Kit blocks. While pending: Approve and Reject buttons whose value is
    /// `<request id>:<stage>`.
    pub fn slack_blocks(&self) -> Value {
        let facts: Vec<String> =
            self.facts().into_iter().map(|(k, v)| format!("*{k}:* {}", escape_mrkdwn(&v))).collect();
        let mut blocks = vec![
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", escape_mrkdwn(&self.title()))}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": facts.join("\n")}}),
        ];
        if self.status.is_pending() {
            let value = format!("{}:{}", self.request_id, self.stage);
            blocks.push(json!({"type": "actions", "block_id": "decision", "elements": [
                {"type": "button", "action_id": "approve", "style": "primary", "text": {"type": "plain_text", "text": "Approve"}, "value": value},
                {"type": "button", "action_id": "reject", "style": "danger", "text": {"type": "plain_text", "text": "Reject"}, "value": value},
            ]}));
        } else {
            blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": escape_mrkdwn(&self.status.summary())}]}));
        }
        Value::Array(blocks)
    }
}

/// Whether `stage` is the stage still waiting (no counted answer has moved past it).
fn stage_open(rec: &RequestRecord, stage: usize) -> bool {
    match rec.approval_clock.as_ref() {
        Some(c) => c.stage == stage,
        None => stage == 0,
    }
}

/// Slack's three control characters.
fn escape_mrkdwn(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Parses the value of a Slack button: `<request id>:<stage>`.
pub fn parse_slack_value(v: &str) -> Option<(&str, usize)> {
    let (id, stage) = v.rsplit_once(':')?;
    Some((id, stage.parse().ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::{ApprovalClock, ApprovalEntry};
    use crate::request::TicketRef;

    fn record() -> RequestRecord {
        let ticket = TicketRef {
            system: "servicenow".into(),
            table: "sc_req_item".into(),
            sys_id: "a9e30c7dc61122760116894de7bcc7bd".into(),
            number: "RITM0010482".into(),
        };
        let mut rec = RequestRecord::received("r1", ticket, "tp", "t", 1_000, "h");
        let decision = serde_json::json!({
            "outcome": "allow", "policy_version": "sha256:x", "evaluated_at": "2027-01-15T08:00:00Z",
            "checks": [{"code": "requester.enabled", "status": "pass", "reason": "the account is enabled"},
                       {"code": "target.sensitive", "status": "pass", "reason": "needs the data owner"}],
            "execute_at": "2027-01-15T08:00:00Z", "rule": "finance",
            "approval": {"type": "plan", "rule": "finance", "excluded": [], "stages": [
                {"name": "data owner", "quorum": "any", "time_to_decide": "72h", "on_timeout": "expire",
                 "approvers": [{"kind": "users", "ids": ["patti@contoso.com"]}]},
                {"name": "security", "quorum": "any", "time_to_decide": "24h", "on_timeout": "expire",
                 "approvers": [{"kind": "users", "ids": ["sec@contoso.com"]}]}]}
        });
        rec.decision = Some(serde_json::from_value(decision).unwrap());
        rec.requester = Some(
            serde_json::from_value(
                serde_json::json!({"id": "u1", "upn": "alex@contoso.com", "display_name": "Alex Wilber",
                "user_type": "Member", "account_enabled": true}),
            )
            .unwrap(),
        );
        rec.target = Some("Finance BI".into());
        rec.justification = Some("quarter <close> & audit".into());
        rec.state = RequestState::AwaitingApproval;
        rec.approval_clock = Some(ApprovalClock::start(0, 1_000));
        rec
    }

    #[test]
    fn a_pending_stage_has_buttons_that_name_the_request_and_stage() {
        let v = ApprovalView::of(&record(), 0);
        assert!(v.status.is_pending());
        assert_eq!(v.stages, 2);
        let card = v.teams_card();
        assert_eq!(card["version"], "1.4");
        let actions = card["actions"].as_array().unwrap();
        assert_eq!(actions.len(), 2);
        for (a, verb) in actions.iter().zip(["approve", "reject"]) {
            assert_eq!(a["type"], "Action.Execute");
            assert_eq!(a["verb"], verb);
            assert_eq!(a["data"], serde_json::json!({"requestId": "r1", "stage": 0}));
        }
        let text = card.to_string();
        assert!(text.contains("Alex Wilber (alex@contoso.com)") && text.contains("RITM0010482"), "{text}");
        let blocks = v.slack_blocks();
        let buttons = &blocks[2]["elements"];
        assert_eq!(buttons[0]["value"], "r1:0");
        assert_eq!(parse_slack_value(buttons[1]["value"].as_str().unwrap()), Some(("r1", 0)));
        // Slack's control characters are escaped
        assert!(blocks.to_string().contains("quarter &lt;close&gt; &amp; audit"), "{blocks}");
    }

    #[test]
    fn once_decided_or_moved_on_no_view_can_act() {
        let mut rec = record();
        rec.approvals.push(ApprovalEntry {
            approver: "patti@contoso.com".into(),
            approver_id: Some("p1".into()),
            approve: true,
            comment: "ok".into(),
            at_ms: 2_000,
            stage: Some(0),
            via: Some("teams".into()),
            recorded_by: None,
            approver_upn: None,
            member_of: vec![],
            reference: None,
        });
        rec.approval_clock = Some(ApprovalClock::start(1, 2_000));
        let v = ApprovalView::of(&rec, 0);
        assert!(matches!(&v.status, ViewStatus::Decided { by, approve: true, .. } if by == "patti@contoso.com"));
        assert!(v.teams_card().get("actions").is_none());
        assert!(v.slack_blocks().as_array().unwrap().iter().all(|b| b["type"] != "actions"));
        // the second stage is the one waiting now
        assert!(ApprovalView::of(&rec, 1).status.is_pending());
        rec.state = RequestState::Expired;
        let v = ApprovalView::of(&rec, 1);
        assert_eq!(v.status, ViewStatus::Closed { what: "The approval expired".into() });
        assert!(v.teams_card().get("actions").is_none());
    }
}
