//! A request's audit trail told in sentences, for people: one line per step outcome, passed
//! checks collapsed into a count, failures and decisions spelled out. The demo and
//! `grantline requests show` print it; the trail itself stays the record.

use grantline_shared::audit::{AuditEvent, AuditRecord};

/// Tells one request's trail, record by record (it remembers what earlier records said, such
/// as the target's name and the checks passed so far).
#[derive(Debug, Default, Clone)]
pub struct Narrator {
    passed: usize,
    target: Option<String>,
}

fn list(v: &[String]) -> String {
    if v.is_empty() { "nobody".to_owned() } else { v.join(", ") }
}

fn when(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// The event's fields as `key=value` (for events without a sentence of their own).
fn fields(e: &AuditEvent) -> String {
    let v = serde_json::to_value(e).unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            if k == "type" {
                continue;
            }
            let s = match val {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            if !s.is_empty() {
                parts.push(format!("{k}={}", s.chars().take(80).collect::<String>()));
            }
        }
    }
    parts.join(" ")
}

impl Narrator {
    pub fn new() -> Self {
        Self::default()
    }

    fn target(&self, fallback: &str) -> String {
        self.target.clone().unwrap_or_else(|| fallback.to_owned())
    }

    /// The line for this record, or None when it only adds to a count (a passed check).
    pub fn line(&mut self, r: &AuditRecord) -> Option<String> {
        use AuditEvent as E;
        let s = match &r.event {
            E::RequestReceived { system, .. } => format!("received from {system}"),
            E::TicketRead { catalog_item, requested_for, opened_by, .. } => {
                if opened_by.is_empty() || opened_by == requested_for {
                    format!("ticket read: \"{catalog_item}\" for {requested_for}")
                } else {
                    format!("ticket read: \"{catalog_item}\" for {requested_for}, filed by {opened_by}")
                }
            }
            E::CheckEvaluated { passed: true, .. } => {
                self.passed += 1;
                return None;
            }
            E::CheckEvaluated { passed: false, code, reason } => format!("check FAILED {code}: {reason}"),
            E::DecisionMade { allow, policy_version, target, level, reason } => {
                self.target = Some(target.clone());
                let checks = std::mem::take(&mut self.passed);
                let verdict = if *allow { "ALLOWS" } else { "DENIES" };
                let version = policy_version.split(':').next_back().unwrap_or(policy_version);
                let version: String = version.chars().take(12).collect();
                if target.is_empty() {
                    format!("{checks} checks passed; policy {version} {verdict}: {reason}")
                } else {
                    format!("{checks} checks passed; policy {version} {verdict} {level} on {target}: {reason}")
                }
            }
            E::ApprovalRequested { approvers, reason } => format!("approval asked of {}: {reason}", list(approvers)),
            E::ApproversNotified { stage, sent, failed } => {
                let mut s = format!("stage {} approvers told: {}", stage + 1, list(sent));
                if !failed.is_empty() {
                    s.push_str(&format!(" (could not reach: {})", failed.join(", ")));
                }
                s
            }
            E::ApprovalRecorded { approver, approve, comment } => {
                let verdict = if *approve { "APPROVED" } else { "REJECTED" };
                let by =
                    if r.actor.starts_with("grantline:") || r.actor.to_lowercase().contains(&approver.to_lowercase()) {
                        approver.clone()
                    } else {
                        format!("{approver} ({})", r.actor)
                    };
                if comment.is_empty() {
                    format!("{verdict} by {by}")
                } else {
                    format!("{verdict} by {by}: \"{comment}\"")
                }
            }
            E::SelfApprovalRefused { approver } => format!("refused: {approver} may not approve their own access"),
            E::ApprovalRefused { approver, door, reason, .. } => {
                format!("refused an answer from {approver} in {door}: {reason}")
            }
            E::ApproverSkipped { approver, reason, to, .. } => format!("passed over {approver} ({reason}); asked {to}"),
            E::ApprovalReminded { percent, to, .. } => {
                format!("reminded {} ({percent} % of the time to decide gone)", list(to))
            }
            E::ApprovalEscalated { to, reason, .. } => format!("escalated to {to}: {reason}"),
            E::ApprovalExpired { reason, .. } => format!("approval EXPIRED: {reason}"),
            E::GrantExecuted { group_id, pre_existing, graph_request_id, .. } => {
                let t = self.target(group_id);
                if *pre_existing {
                    format!("already a member of {t}: recorded as pre-existing, nothing written")
                } else {
                    let rid =
                        graph_request_id.as_deref().map(|id| format!(" (Graph request-id {id})")).unwrap_or_default();
                    format!("GRANTED: member of {t}, read back{rid}")
                }
            }
            E::PermissionGranted { mailbox, level, pre_existing, .. } => {
                if *pre_existing {
                    format!("already had {level} on {mailbox}: recorded as pre-existing, nothing written")
                } else {
                    format!("GRANTED: {level} on {mailbox}, read back")
                }
            }
            E::TicketUpdated { update, state } if state.is_empty() => {
                format!("ticket updated: {}", update.replace('_', " "))
            }
            E::TicketUpdated { update, state } => {
                format!("ticket updated: {} (state {state})", update.replace('_', " "))
            }
            E::RemovalScheduled { remove_at_ms } => format!("removal scheduled for {}", when(*remove_at_ms)),
            E::RemovalExecuted { group_id, removed, kept_pre_existing, kept_for, trigger, .. } => {
                let t = self.target(group_id);
                if *removed {
                    format!("REMOVED from {t} ({trigger}), read back")
                } else if *kept_pre_existing {
                    format!("kept in {t}: the membership existed before grantline ({trigger})")
                } else if !kept_for.is_empty() {
                    format!("kept in {t}: {} other request(s) rely on it ({trigger})", kept_for.len())
                } else {
                    format!("nothing to remove from {t}: already gone ({trigger})")
                }
            }
            E::PermissionRemoved { mailbox, level, removed, kept_pre_existing, kept_for, trigger, .. } => {
                if *removed {
                    format!("REMOVED {level} on {mailbox} ({trigger}), read back")
                } else if *kept_pre_existing {
                    format!("kept {level} on {mailbox}: it existed before grantline ({trigger})")
                } else if !kept_for.is_empty() {
                    format!("kept {level} on {mailbox}: {} other request(s) rely on it ({trigger})", kept_for.len())
                } else {
                    format!("nothing to remove on {mailbox}: already gone ({trigger})")
                }
            }
            E::StepFailed { kind, attempt, code, message } => {
                format!("{kind} attempt {attempt} failed: {message} ({code})")
            }
            E::Compensated { group_id, removed, .. } => {
                let t = self.target(group_id);
                if *removed {
                    format!("ROLLED BACK: removed from {t}")
                } else {
                    format!("rolled back: nothing to undo in {t}")
                }
            }
            E::DeadLettered { queue, dead_letter_id, .. } => {
                format!("{queue} DEAD-LETTERED (letter {dead_letter_id}): manual intervention")
            }
            #[allow(unreachable_patterns)]
            other => format!("{}: {}", other.name().replace('_', " "), fields(other)),
        };
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(actor: &str, event: AuditEvent) -> AuditRecord {
        AuditRecord { request_id: "r".into(), at_ms: 0, actor: actor.into(), trace_id: String::new(), event }
    }

    #[test]
    fn passed_checks_collapse_into_the_decision_and_failures_are_spelled_out() {
        let mut n = Narrator::new();
        let check = |passed, code: &str| {
            rec(
                "grantline:validate",
                AuditEvent::CheckEvaluated { code: code.into(), passed, reason: format!("{code} said so") },
            )
        };
        assert_eq!(n.line(&check(true, "a")), None);
        assert_eq!(n.line(&check(true, "b")), None);
        assert_eq!(
            n.line(&check(false, "identity.enabled")).unwrap(),
            "check FAILED identity.enabled: identity.enabled said so"
        );
        let d = n
            .line(&rec(
                "grantline:validate",
                AuditEvent::DecisionMade {
                    allow: true,
                    policy_version: "sha256:0123456789abcdef0123".into(),
                    target: "Team Alpha".into(),
                    level: "member".into(),
                    reason: "rule x".into(),
                },
            ))
            .unwrap();
        assert_eq!(d, "2 checks passed; policy 0123456789ab ALLOWS member on Team Alpha: rule x");
        let g = n
            .line(&rec(
                "grantline:execute-grant",
                AuditEvent::GrantExecuted {
                    group_id: "g".into(),
                    user_id: "u".into(),
                    before_member: false,
                    after_member: true,
                    pre_existing: false,
                    graph_request_id: Some("rid".into()),
                    client_request_id: "c".into(),
                },
            ))
            .unwrap();
        assert_eq!(
            g, "GRANTED: member of Team Alpha, read back (Graph request-id rid)",
            "the target's name is remembered"
        );
        let a = n
            .line(&rec(
                "approver:10000000-0000-4000-8000-000000000003",
                AuditEvent::ApprovalRecorded {
                    approver: "patti@contoso.com".into(),
                    approve: true,
                    comment: "ok".into(),
                },
            ))
            .unwrap();
        assert_eq!(a, "APPROVED by patti@contoso.com (approver:10000000-0000-4000-8000-000000000003): \"ok\"");
    }
}
