//! Approval plans: the stages a request must pass, who may approve each, and whether a set of
//! recorded approvals satisfies the plan. Self-approval is impossible by construction: the
//! requester and whoever filed the ticket are removed from every approver list when the plan is
//! made, and their recorded approvals or rejections are never counted.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::decision::{Check, codes};
use super::facts::RequestFacts;
use super::model::{ApproverKind, ApproverSpec, OnTimeout, Quorum, StageSpec, Target};
use super::units::{PolicyDuration, keyword_enum, normalize};

/// The approvals a request needs, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalPlan {
    /// The rule that asked for these approvals.
    pub rule: String,
    pub stages: Vec<PlannedStage>,
    /// Ids and UPNs (lower-cased) of the people who may never approve this request: the
    /// requester and whoever filed the ticket.
    pub excluded: Vec<String>,
}

/// One stage of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStage {
    pub name: String,
    pub quorum: Quorum,
    pub approvers: Vec<PlannedApprover>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<PlannedApprover>,
    pub time_to_decide: PolicyDuration,
    pub on_timeout: OnTimeout,
    /// The fallback alone decides the stage, because its quorum cannot be reached by different
    /// people from the approvers known when the plan was made.
    #[serde(default)]
    pub fallback_decides: bool,
    /// The time to decide ran out and the stage was handed to its fallback.
    #[serde(default)]
    pub escalated: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// When to remind, as percentages of the time to decide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reminders: Vec<u8>,
    /// Approvers who are out of office are passed over to the fallback.
    #[serde(default)]
    pub skip_out_of_office: bool,
}

/// One approver entry of a stage, resolved against the facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedApprover {
    pub kind: ApproverKind,
    /// For `group`: any member of this group (object id) may approve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The people (object ids or UPNs) who may approve this entry, requester excluded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// Nobody can approve this entry (no manager, no owner declared, the only owner is the
    /// requester): the stage's fallback answers for it.
    #[serde(default)]
    pub via_fallback: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl fmt::Display for PlannedApprover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(g) = &self.group_id {
            write!(f, " {g}")?;
        }
        if !self.ids.is_empty() {
            write!(f, " ({})", self.ids.join(", "))?;
        }
        if self.via_fallback {
            f.write_str(" -> fallback")?;
        }
        Ok(())
    }
}

keyword_enum! {
    pub enum Verdict: "verdict" {
        Approve = "approve",
        Reject = "reject",
    }
}

/// A person who answered an approval request. `member_of` lists the groups (object ids) the
/// caller verified the person belongs to; it is how `group` entries are matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_of: Vec<String>,
}

/// An answer recorded for a stage (0-based) of a plan. When one person answers a stage more
/// than once, the last answer counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedApproval {
    pub stage: usize,
    pub approver: Approver,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
}

/// Where a request stands with its approvals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ApprovalProgress {
    /// Waiting for stage `stage` (0-based).
    Pending {
        stage: usize,
    },
    Approved,
    Rejected {
        stage: usize,
        by: String,
    },
}

keyword_enum! {
    pub enum IgnoreReason: "ignore reason" {
        /// The requester or the ticket's filer answered their own request.
        SelfApproval = "self-approval",
        /// The person is not an approver of that stage.
        NotEligible = "not-eligible",
        /// The stage number does not exist in the plan.
        UnknownStage = "unknown-stage",
        /// The answer carries no approver id.
        NoApproverId = "no-approver-id",
    }
}

/// A recorded answer that did not count, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredApproval {
    /// Its index in the slice given to [`approval_state`].
    pub index: usize,
    pub approver: String,
    pub reason: IgnoreReason,
}

/// The progress, plus every answer that did not count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalState {
    pub progress: ApprovalProgress,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<IgnoredApproval>,
}

impl ApprovalState {
    /// True if the requester (or the ticket's filer) tried to answer their own request.
    pub fn self_approval_attempted(&self) -> bool {
        self.ignored.iter().any(|i| i.reason == IgnoreReason::SelfApproval)
    }
}

impl ApprovalPlan {
    /// Hands stage `stage` to its fallback after its time to decide ran out (`on_timeout =
    /// "escalate"`). Returns false if the stage has no fallback or does not exist.
    pub fn escalate(&mut self, stage: usize) -> bool {
        match self.stages.get_mut(stage) {
            Some(s) if s.fallback.is_some() => {
                s.escalated = true;
                true
            }
            _ => false,
        }
    }

    fn is_excluded(&self, approver: &Approver, requester_id: &str) -> bool {
        let id = normalize(&approver.id);
        let upn = approver.upn.as_deref().map(normalize);
        let requester = normalize(requester_id);
        (!requester.is_empty() && (id == requester || upn.as_deref() == Some(requester.as_str())))
            || self.excluded.iter().any(|x| *x == id || upn.as_deref() == Some(x.as_str()))
    }
}

fn names(ids: &[String], approver: &Approver) -> bool {
    let id = normalize(&approver.id);
    let upn = approver.upn.as_deref().map(normalize);
    ids.iter().map(|i| normalize(i)).any(|i| i == id || upn.as_deref() == Some(i.as_str()))
}

fn eligible_direct(entry: &PlannedApprover, approver: &Approver) -> bool {
    match &entry.group_id {
        Some(g) => approver.member_of.iter().any(|m| normalize(m) == normalize(g)),
        None => names(&entry.ids, approver),
    }
}

impl PlannedStage {
    fn fallback_active(&self) -> bool {
        self.fallback.is_some() && (self.fallback_decides || self.escalated)
    }

    fn eligible_for_entry(&self, entry: &PlannedApprover, approver: &Approver) -> bool {
        if entry.via_fallback {
            self.fallback.as_ref().is_some_and(|f| eligible_direct(f, approver))
        } else {
            eligible_direct(entry, approver)
        }
    }

    fn eligible(&self, approver: &Approver) -> bool {
        self.approvers.iter().any(|e| self.eligible_for_entry(e, approver))
            || (self.fallback_active() && self.fallback.as_ref().is_some_and(|f| eligible_direct(f, approver)))
    }

    /// Whether these approvals (distinct, eligible people) reach the stage's quorum.
    fn satisfied_by(&self, approvers: &[&Approver]) -> bool {
        if self.fallback_active()
            && let Some(f) = &self.fallback
            && approvers.iter().any(|a| eligible_direct(f, a))
        {
            return true;
        }
        let edges: Vec<Vec<usize>> = self
            .approvers
            .iter()
            .map(|e| (0..approvers.len()).filter(|p| self.eligible_for_entry(e, approvers[*p])).collect())
            .collect();
        max_matching(&edges, approvers.len()) >= self.quorum.required(self.approvers.len()).max(1)
    }
}

/// The size of a maximum matching of entries to people (each person counts for one entry).
fn max_matching(edges: &[Vec<usize>], people: usize) -> usize {
    fn augment(e: usize, edges: &[Vec<usize>], seen: &mut [bool], owner: &mut [Option<usize>]) -> bool {
        for &p in &edges[e] {
            if seen[p] {
                continue;
            }
            seen[p] = true;
            if owner[p].is_none_or(|other| augment(other, edges, seen, owner)) {
                owner[p] = Some(e);
                return true;
            }
        }
        false
    }
    let mut owner = vec![None; people];
    let mut size = 0;
    for e in 0..edges.len() {
        let mut seen = vec![false; people];
        if augment(e, edges, &mut seen, &mut owner) {
            size += 1;
        }
    }
    size
}

/// Decides whether recorded answers satisfy a plan. Stages are taken in order: a counted
/// rejection in the current stage rejects the request; otherwise the first stage whose quorum
/// is not met is pending. An answer by `requester_id`, or by anyone the plan excludes, never
/// counts and is reported in `ignored`.
pub fn approval_state(plan: &ApprovalPlan, approvals: &[RecordedApproval], requester_id: &str) -> ApprovalState {
    let mut ignored = Vec::new();
    // Last answer per (stage, person).
    let mut latest: Vec<BTreeMap<String, &RecordedApproval>> = vec![BTreeMap::new(); plan.stages.len()];
    for (index, a) in approvals.iter().enumerate() {
        let who = a.approver.upn.clone().unwrap_or_else(|| a.approver.id.clone());
        let reason = if a.approver.id.trim().is_empty() {
            Some(IgnoreReason::NoApproverId)
        } else if plan.is_excluded(&a.approver, requester_id) {
            Some(IgnoreReason::SelfApproval)
        } else if a.stage >= plan.stages.len() {
            Some(IgnoreReason::UnknownStage)
        } else if !plan.stages[a.stage].eligible(&a.approver) {
            Some(IgnoreReason::NotEligible)
        } else {
            None
        };
        match reason {
            Some(reason) => ignored.push(IgnoredApproval { index, approver: who, reason }),
            None => {
                latest[a.stage].insert(normalize(&a.approver.id), a);
            }
        }
    }
    for (k, stage) in plan.stages.iter().enumerate() {
        let answers = &latest[k];
        if let Some(r) = answers.values().find(|a| a.verdict == Verdict::Reject) {
            let by = r.approver.upn.clone().unwrap_or_else(|| r.approver.id.clone());
            return ApprovalState { progress: ApprovalProgress::Rejected { stage: k, by }, ignored };
        }
        let approving: Vec<&Approver> = answers.values().map(|a| &a.approver).collect();
        if !stage.satisfied_by(&approving) {
            return ApprovalState { progress: ApprovalProgress::Pending { stage: k }, ignored };
        }
    }
    ApprovalState { progress: ApprovalProgress::Approved, ignored }
}

/// The people who may not approve: the requester always, the filer unless the rule lets them,
/// by id and UPN, lower-cased.
fn excluded_ids(facts: &RequestFacts, filer_may_approve: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        let n = normalize(s);
        if !n.is_empty() && !out.contains(&n) {
            out.push(n);
        }
    };
    add(&facts.requester.id);
    add(&facts.requester.upn);
    if let Some(o) = facts.opened_by.as_ref().filter(|_| !filer_may_approve) {
        add(&o.id);
        if let Some(u) = &o.upn {
            add(u);
        }
    }
    out
}

fn resolve(spec: &ApproverSpec, target: &Target, facts: &RequestFacts, excluded: &[String]) -> PlannedApprover {
    let kind = spec.kind();
    let (group_id, listed, missing) = match spec {
        ApproverSpec::Manager => (
            None,
            facts
                .requester
                .manager_id
                .iter()
                .chain(facts.requester.manager_upn.iter())
                .filter(|m| !m.trim().is_empty())
                .cloned()
                .collect::<Vec<_>>(),
            "the requester has no manager on record",
        ),
        ApproverSpec::MailboxOwner => (None, target.owners.mailbox.clone(), "the target declares no mailbox owner"),
        ApproverSpec::DataOwner => (None, target.owners.data.clone(), "the target declares no data owner"),
        ApproverSpec::AppOwner => (None, target.owners.app.clone(), "the target declares no app owner"),
        ApproverSpec::Group { id } => (Some(id.clone()), Vec::new(), ""),
        ApproverSpec::Users { ids } => (None, ids.clone(), "no users are named"),
        ApproverSpec::ManagersManager => (
            None,
            facts
                .requester
                .managers_manager
                .iter()
                .flat_map(|p| std::iter::once(p.id.clone()).chain(p.upn.clone()))
                .filter(|m| !m.trim().is_empty())
                .collect::<Vec<_>>(),
            "the requester's manager has no manager on record",
        ),
    };
    if group_id.is_some() {
        return PlannedApprover { kind, group_id, ids: Vec::new(), via_fallback: false, note: None };
    }
    let (kept, dropped): (Vec<String>, Vec<String>) =
        listed.into_iter().partition(|i| !excluded.contains(&normalize(i)));
    let note = if kept.is_empty() && !dropped.is_empty() {
        Some(format!("the only {kind} is the requester or the ticket's filer, who cannot approve"))
    } else if kept.is_empty() {
        Some(missing.to_owned())
    } else if !dropped.is_empty() {
        Some(format!("{} excluded: cannot approve their own request", dropped.join(", ")))
    } else {
        None
    };
    PlannedApprover { kind, group_id: None, via_fallback: kept.is_empty(), ids: kept, note }
}

/// Makes the plan for a rule's stages. Returns the plan and the checks
/// `approval.approvers` and `approval.self`.
pub(crate) fn build_plan(
    rule: &str,
    specs: &[StageSpec],
    target: &Target,
    facts: &RequestFacts,
    filer_may_approve: bool,
) -> (ApprovalPlan, Vec<Check>) {
    let excluded = excluded_ids(facts, filer_may_approve);
    let mut problems: Vec<String> = Vec::new();
    let mut stages = Vec::with_capacity(specs.len());
    for (k, spec) in specs.iter().enumerate() {
        let label = format!("stage {} \"{}\"", k + 1, spec.name);
        let mut approvers: Vec<PlannedApprover> =
            spec.approvers.iter().map(|a| resolve(a, target, facts, &excluded)).collect();
        let mut fallback = spec.fallback.as_ref().map(|f| resolve(f, target, facts, &excluded));
        let fallback_usable = fallback.as_ref().is_some_and(|f| !f.via_fallback);
        let mut notes: Vec<String> = Vec::new();
        if let Some(f) = fallback.as_mut()
            && !fallback_usable
        {
            notes.push(format!("the fallback cannot be used: {}", f.note.clone().unwrap_or_default()));
            f.via_fallback = false;
        }
        for a in &mut approvers {
            if a.via_fallback {
                if fallback_usable {
                    notes.push(format!(
                        "{}: {}; the fallback answers for it",
                        a.kind,
                        a.note.clone().unwrap_or_default()
                    ));
                } else {
                    problems.push(format!(
                        "{label}: nobody can approve as {} ({})",
                        a.kind,
                        a.note.clone().unwrap_or_default()
                    ));
                }
            }
        }
        // Can the quorum be met by different people? Group entries (and entries handed to a
        // group fallback) can always find another member; named people are finite.
        let fallback_ids: Option<&[String]> =
            fallback.as_ref().filter(|f| f.group_id.is_none()).map(|f| f.ids.as_slice());
        let mut open_ended = 0usize;
        let mut people: Vec<String> = Vec::new();
        let mut edges: Vec<Vec<usize>> = Vec::new();
        for a in &approvers {
            let ids: Option<&[String]> = if a.via_fallback {
                if fallback_usable { fallback_ids } else { Some(&[]) }
            } else if a.group_id.is_some() {
                None
            } else {
                Some(a.ids.as_slice())
            };
            match ids {
                None => open_ended += 1,
                Some(ids) => {
                    let mut row = Vec::new();
                    for id in ids {
                        let n = normalize(id);
                        let p = match people.iter().position(|x| *x == n) {
                            Some(p) => p,
                            None => {
                                people.push(n);
                                people.len() - 1
                            }
                        };
                        row.push(p);
                    }
                    edges.push(row);
                }
            }
        }
        let reachable = open_ended + max_matching(&edges, people.len());
        let required = spec.quorum.required(approvers.len()).max(1);
        let mut fallback_decides = false;
        if reachable < required {
            if fallback_usable {
                fallback_decides = true;
                notes.push(format!(
                    "quorum {} cannot be reached by different people from the known approvers; the fallback decides this stage",
                    spec.quorum
                ));
            } else if !approvers.iter().any(|a| a.via_fallback) {
                problems.push(format!(
                    "{label}: quorum {} cannot be reached by different people and there is no fallback",
                    spec.quorum
                ));
            }
        }
        stages.push(PlannedStage {
            name: spec.name.clone(),
            quorum: spec.quorum,
            approvers,
            fallback,
            time_to_decide: spec.time_to_decide,
            on_timeout: spec.on_timeout,
            fallback_decides,
            escalated: false,
            notes,
            reminders: spec.reminders.clone(),
            skip_out_of_office: spec.skip_out_of_office,
        });
    }
    let plan = ApprovalPlan { rule: rule.to_owned(), stages, excluded };
    let mut checks = Vec::new();
    if problems.is_empty() {
        checks.push(Check::pass(
            codes::APPROVAL_APPROVERS,
            format!("every stage of rule \"{rule}\" has someone to approve it"),
        ));
    } else {
        checks.push(Check::fail(codes::APPROVAL_APPROVERS, problems.join("; ")));
    }
    let who = match &facts.opened_by {
        Some(o) if normalize(&o.id) != normalize(&facts.requester.id) => {
            format!(
                "the requester {} and the ticket's filer {}",
                facts.requester.upn,
                o.upn.as_deref().unwrap_or(&o.id)
            )
        }
        _ => format!("the requester {}", facts.requester.upn),
    };
    let dropped: Vec<String> = plan
        .stages
        .iter()
        .flat_map(|s| s.approvers.iter().chain(s.fallback.iter()))
        .filter_map(|a| a.note.as_ref().filter(|n| n.contains("cannot approve")).cloned())
        .collect();
    let mut reason = format!("{who} cannot approve this request; their answers are never counted");
    if !dropped.is_empty() {
        reason.push_str(&format!(" ({})", dropped.join("; ")));
    }
    checks.push(Check::pass(codes::APPROVAL_SELF, reason));
    (plan, checks)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn person(id: &str) -> Approver {
        Approver { id: id.to_owned(), upn: Some(format!("{id}@contoso.com")), member_of: Vec::new() }
    }

    fn member(id: &str, group: &str) -> Approver {
        Approver { member_of: vec![group.to_owned()], ..person(id) }
    }

    fn entry(kind: ApproverKind, ids: &[&str]) -> PlannedApprover {
        PlannedApprover {
            kind,
            group_id: None,
            ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            via_fallback: false,
            note: None,
        }
    }

    fn group_entry(group: &str) -> PlannedApprover {
        PlannedApprover {
            kind: ApproverKind::Group,
            group_id: Some(group.to_owned()),
            ids: Vec::new(),
            via_fallback: false,
            note: None,
        }
    }

    fn stage(quorum: Quorum, approvers: Vec<PlannedApprover>, fallback: Option<PlannedApprover>) -> PlannedStage {
        PlannedStage {
            name: "s".into(),
            quorum,
            approvers,
            fallback,
            time_to_decide: PolicyDuration::hours(72).unwrap(),
            on_timeout: OnTimeout::Expire,
            fallback_decides: false,
            escalated: false,
            notes: Vec::new(),
            reminders: Vec::new(),
            skip_out_of_office: false,
        }
    }

    fn plan(stages: Vec<PlannedStage>) -> ApprovalPlan {
        ApprovalPlan { rule: "r".into(), stages, excluded: vec!["req".into(), "req@contoso.com".into()] }
    }

    fn said(stage: usize, who: Approver, verdict: Verdict) -> RecordedApproval {
        RecordedApproval { stage, approver: who, verdict, at: None }
    }

    use ApprovalProgress::*;
    use Verdict::*;

    #[test]
    fn quorum_table() {
        let mgr = || entry(ApproverKind::Manager, &["mgr"]);
        let owner = || entry(ApproverKind::MailboxOwner, &["own1", "own2"]);
        let sec = || group_entry("g-sec");
        let fb = || Some(entry(ApproverKind::Users, &["fb"]));
        let cases: Vec<(&str, ApprovalPlan, Vec<RecordedApproval>, ApprovalProgress)> = vec![
            (
                "any: one is enough",
                plan(vec![stage(Quorum::Any, vec![mgr(), owner()], None)]),
                vec![said(0, person("own2"), Approve)],
                Approved,
            ),
            (
                "all: one of two pending",
                plan(vec![stage(Quorum::All, vec![mgr(), owner()], None)]),
                vec![said(0, person("mgr"), Approve)],
                Pending { stage: 0 },
            ),
            (
                "all: both",
                plan(vec![stage(Quorum::All, vec![mgr(), owner()], None)]),
                vec![said(0, person("mgr"), Approve), said(0, person("own1"), Approve)],
                Approved,
            ),
            (
                "2-of-3 with a group member",
                plan(vec![stage(Quorum::NOfM { n: 2, m: 3 }, vec![mgr(), owner(), sec()], None)]),
                vec![said(0, member("x", "g-sec"), Approve), said(0, person("own1"), Approve)],
                Approved,
            ),
            (
                "2-of-3: one person cannot fill two entries",
                plan(vec![stage(
                    Quorum::NOfM { n: 2, m: 3 },
                    vec![mgr(), entry(ApproverKind::DataOwner, &["mgr"]), sec()],
                    None,
                )]),
                vec![said(0, person("mgr"), Approve)],
                Pending { stage: 0 },
            ),
            (
                "a rejection by an eligible approver rejects",
                plan(vec![stage(Quorum::Any, vec![mgr(), owner()], None)]),
                vec![said(0, person("own1"), Reject), said(0, person("mgr"), Approve)],
                Rejected { stage: 0, by: "own1@contoso.com".into() },
            ),
            (
                "the last answer of a person counts",
                plan(vec![stage(Quorum::Any, vec![mgr()], None)]),
                vec![said(0, person("mgr"), Reject), said(0, person("mgr"), Approve)],
                Approved,
            ),
            (
                "stages in order: second pending",
                plan(vec![stage(Quorum::Any, vec![mgr()], None), stage(Quorum::Any, vec![owner()], None)]),
                vec![said(0, person("mgr"), Approve)],
                Pending { stage: 1 },
            ),
            (
                "stages in order: both",
                plan(vec![stage(Quorum::Any, vec![mgr()], None), stage(Quorum::Any, vec![owner()], None)]),
                vec![said(1, person("own1"), Approve), said(0, person("mgr"), Approve)],
                Approved,
            ),
            (
                "fallback does not count before escalation",
                plan(vec![stage(Quorum::Any, vec![mgr()], fb())]),
                vec![said(0, person("fb"), Approve)],
                Pending { stage: 0 },
            ),
            (
                "fallback counts after escalation",
                {
                    let mut p = plan(vec![stage(Quorum::All, vec![mgr(), owner()], fb())]);
                    assert!(p.escalate(0));
                    p
                },
                vec![said(0, person("fb"), Approve)],
                Approved,
            ),
            (
                "fallback answers for an entry with nobody to ask",
                plan(vec![stage(
                    Quorum::All,
                    vec![PlannedApprover { via_fallback: true, ..entry(ApproverKind::Manager, &[]) }, owner()],
                    fb(),
                )]),
                vec![said(0, person("fb"), Approve), said(0, person("own1"), Approve)],
                Approved,
            ),
            (
                "a stranger does not count",
                plan(vec![stage(Quorum::Any, vec![mgr()], None)]),
                vec![said(0, person("stranger"), Approve), said(0, person("stranger"), Reject)],
                Pending { stage: 0 },
            ),
        ];
        for (name, plan, approvals, want) in cases {
            assert_eq!(approval_state(&plan, &approvals, "req").progress, want, "{name}");
        }
    }

    #[test]
    fn self_approval_never_counts_and_is_reported() {
        let mut p =
            plan(vec![stage(Quorum::Any, vec![entry(ApproverKind::Users, &["req", "other"]), group_entry("g")], None)]);
        // Even a plan that (wrongly) lists the requester, and a requester in the group:
        let me = Approver { id: "REQ".into(), upn: None, member_of: vec!["g".into()] };
        let state = approval_state(&p, &[said(0, me.clone(), Approve)], "req");
        assert_eq!(state.progress, Pending { stage: 0 });
        assert!(state.self_approval_attempted());
        // By UPN only, through the plan's exclusion list:
        let by_upn =
            Approver { id: "someone-else-id".into(), upn: Some("Req@Contoso.com".into()), member_of: vec!["g".into()] };
        assert!(approval_state(&p, &[said(0, by_upn, Approve)], "req").self_approval_attempted());
        // A self-rejection does not reject either.
        assert_eq!(approval_state(&p, &[said(0, me, Reject)], "req").progress, Pending { stage: 0 });
        p.excluded.clear();
        let by_param = Approver { id: "req".into(), upn: None, member_of: vec!["g".into()] };
        assert!(approval_state(&p, &[said(0, by_param, Approve)], "req").self_approval_attempted());
    }

    #[test]
    fn unknown_stage_and_missing_id_are_ignored() {
        let p = plan(vec![stage(Quorum::Any, vec![entry(ApproverKind::Manager, &["mgr"])], None)]);
        let s = approval_state(
            &p,
            &[
                said(3, person("mgr"), Approve),
                said(0, Approver { id: " ".into(), upn: None, member_of: vec![] }, Approve),
            ],
            "req",
        );
        assert_eq!(s.progress, Pending { stage: 0 });
        let reasons: Vec<IgnoreReason> = s.ignored.iter().map(|i| i.reason).collect();
        assert_eq!(reasons, vec![IgnoreReason::UnknownStage, IgnoreReason::NoApproverId]);
    }
}
