//! "What would happen to this request under this policy": the decision with its checks,
//! approval plan, duration and window, as text for people and as JSON.

use std::fmt;

use serde::Serialize;

use super::decision::{ApprovalRequirement, CheckStatus, Decision, ItemMatch, TargetSelection};
use super::eval::evaluate;
use super::facts::RequestFacts;
use super::model::Policy;

/// An evaluation with its input, for `grantline policy explain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub policy_source: String,
    pub policy_version: String,
    pub request: RequestFacts,
    pub decision: Decision,
}

/// Evaluates and keeps the input alongside, for display. Changes nothing.
pub fn explain(facts: &RequestFacts, policy: &Policy) -> Explanation {
    Explanation {
        policy_source: policy.source().to_owned(),
        policy_version: policy.version().to_owned(),
        request: facts.clone(),
        decision: evaluate(facts, policy),
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.decision;
        let r = &self.request;
        writeln!(f, "policy    {} ({})", self.policy_source, self.policy_version)?;
        let mut asked = format!("\"{}\"", r.catalog_item);
        if let Some(t) = &r.target {
            asked.push_str(&format!(", target \"{t}\""));
        }
        if let Some(l) = &r.level {
            asked.push_str(&format!(", level \"{l}\""));
        }
        if let Some(s) = &r.ai_suggested_target {
            asked.push_str(&format!(", AI suggestion \"{s}\""));
        }
        writeln!(f, "request   {} asks for {asked} at {}", r.requester.upn, r.now)?;
        let verdict = match (&d.outcome, &d.approval) {
            (super::decision::Outcome::Deny, _) => "DENY".to_owned(),
            (_, Some(ApprovalRequirement::Auto { rule, .. })) => format!("ALLOW, auto-approved by rule \"{rule}\""),
            (_, Some(ApprovalRequirement::Plan(_))) => "ALLOW, once approved".to_owned(),
            (_, None) => "ALLOW".to_owned(),
        };
        writeln!(f, "decision  {verdict}")?;
        writeln!(f)?;
        writeln!(f, "checks")?;
        let width = d.checks.iter().map(|c| c.code.len()).max().unwrap_or(0);
        for c in &d.checks {
            let status = match c.status {
                CheckStatus::Pass => "pass",
                CheckStatus::Fail => "FAIL",
                CheckStatus::Skip => "skip",
            };
            writeln!(f, "  {status}  {:width$}  {}", c.code, c.reason)?;
        }
        writeln!(f)?;
        if let Some(t) = &d.target {
            let place = t.group_id.clone().or_else(|| t.mailbox_address.clone()).unwrap_or_default();
            let mut line = format!("{} \"{}\" ({}, {place})", t.kind, t.key, t.display_name);
            if let Some(mt) = t.mailbox_type {
                line.push_str(&format!(", {mt} mailbox"));
            }
            if !t.tags.is_empty() {
                line.push_str(&format!(", tags {}", t.tags.join(", ")));
            }
            writeln!(f, "target    {line}")?;
            let item = match &t.item_match {
                ItemMatch::CatalogItem => format!("catalog item \"{}\"", t.catalog_item),
                ItemMatch::Alias { alias } => format!("catalog item \"{}\" (by its alias \"{alias}\")", t.catalog_item),
                ItemMatch::AiSuggestion { suggestion } => {
                    format!("catalog item \"{}\" (named by the AI suggestion \"{suggestion}\")", t.catalog_item)
                }
            };
            let how = match &t.selection {
                TargetSelection::OnlyTarget => "its only target".to_owned(),
                TargetSelection::TicketTarget { value } => format!("chosen by the ticket's target \"{value}\""),
                TargetSelection::AiSuggestion { suggestion } => format!("chosen by the AI suggestion \"{suggestion}\""),
            };
            writeln!(f, "          from {item}; {how}")?;
        }
        if let Some(a) = &d.ai_suggestion {
            writeln!(f, "ai        suggestion \"{}\" {}: {}", a.suggestion, a.status, a.reason)?;
        }
        if let Some(l) = d.level {
            writeln!(f, "level     {l}")?;
        }
        if let Some(rule) = &d.rule {
            writeln!(f, "rule      {rule}")?;
        }
        match &d.approval {
            Some(ApprovalRequirement::Auto { reason, .. }) => writeln!(f, "approval  none needed: {reason}")?,
            Some(ApprovalRequirement::Plan(p)) => {
                for (i, s) in p.stages.iter().enumerate() {
                    let lead = if i == 0 { "approval " } else { "         " };
                    writeln!(f, "{lead} stage {} \"{}\": {} of", i + 1, s.name, s.quorum)?;
                    for a in &s.approvers {
                        writeln!(f, "            - {a}")?;
                    }
                    let mut tail = format!("decide within {}, then {}", s.time_to_decide, s.on_timeout);
                    if let Some(fb) = &s.fallback {
                        tail.push_str(&format!("; fallback {fb}"));
                    }
                    writeln!(f, "            {tail}")?;
                    for n in &s.notes {
                        writeln!(f, "            note: {n}")?;
                    }
                }
            }
            None => {}
        }
        if let Some(o) = &d.duration {
            let length = if o.is_permanent() {
                "permanent".to_owned()
            } else {
                o.duration.map_or_else(|| "until a fixed date".to_owned(), |x| x.to_string())
            };
            let mut line = length;
            if let Some(end) = o.ends_at {
                line.push_str(&format!(", ends {end} if it starts at {}", d.execute_at));
            }
            if o.shortened_to_cap {
                line.push_str(" (shortened to the cap)");
            }
            writeln!(f, "duration  {line}")?;
            for n in &o.notes {
                writeln!(f, "          {n}")?;
            }
        }
        match &d.window {
            Some(w) => writeln!(f, "window    {}", w.reason)?,
            None => writeln!(f, "window    none applies")?,
        }
        write!(f, "execute   from {}", d.execute_at)
    }
}
