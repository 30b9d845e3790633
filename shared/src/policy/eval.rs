//! `evaluate`: request facts and a policy in, a decision out. Pure and deterministic: the same
//! facts and the same policy always give the same decision, with `facts.now` as the only clock.
//!
//! Hard rules are written here, not in the policy: guests, disabled and leaving accounts, and
//! groups whose membership grantline must not change (role-assignable, dynamic, mail-enabled
//! security, distribution lists, on-premises synced) are refused whatever the rules say, and
//! nobody approves their own request (see `approval.rs`).

use jiff::Timestamp;

use super::approval::build_plan;
use super::decision::{
    AiSuggestionOutcome, ApprovalRequirement, Check, CheckStatus, Decision, DurationOutcome, ItemMatch, Outcome,
    ResolvedTarget, SuggestionStatus, TargetSelection, WindowOutcome, codes,
};
use super::facts::{GroupFacts, MailboxFacts, RequestFacts};
use super::model::{AccessLevel, DurationRule, OverMax, Policy, RuleOutcome, Target, TargetKind, TargetRef};
use super::units::{PolicyDuration, normalize};
use super::window::WindowStatus;

/// Evaluates a request against a policy.
pub fn evaluate(facts: &RequestFacts, policy: &Policy) -> Decision {
    let now = facts.now;
    let member_of = facts.requester.member_of.as_slice();

    let mut identity = identity_checks(facts);
    let resolution = resolve_target(facts, policy);
    let target = resolution.target.as_ref().map(|(t, _)| *t);
    let (level, level_check) = resolve_level(facts, target);

    let group = match target {
        Some(t) if t.kind() == TargetKind::Group => group_checks(t, facts.target_group.as_ref()),
        Some(t) => mailbox_checks(t, facts.target_mailbox.as_ref()),
        None => Vec::new(),
    };

    // The rest needs a target and a level it offers.
    let subject = target.zip(level);

    let mut window_checks = Vec::new();
    let mut window = None;
    let mut execute_at = now;
    if let Some((t, l)) = subject
        && let Some(w) = policy.window_for(t, l, member_of)
    {
        let slots: Vec<String> = w.open.iter().map(|s| s.to_string()).collect();
        let (check, outcome) = match w.status_at(now) {
            WindowStatus::Open { closes_at } => {
                let reason = format!("inside change window \"{}\" (closes {})", w.name, w.local(closes_at));
                (
                    Check::pass(codes::WINDOW_OPEN, reason.clone()),
                    WindowOutcome {
                        name: w.name.clone(),
                        time_zone: w.time_zone.clone(),
                        open_now: true,
                        closes_at: Some(closes_at),
                        next_opening: None,
                        reason,
                    },
                )
            }
            WindowStatus::Closed { next_opening: Some(next) } => {
                execute_at = next;
                let reason = format!(
                    "outside change window \"{}\" ({} {}): execution deferred to its next opening, {} ({next})",
                    w.name,
                    slots.join(", "),
                    w.time_zone,
                    w.local(next)
                );
                (
                    Check::pass(codes::WINDOW_OPEN, reason.clone()),
                    WindowOutcome {
                        name: w.name.clone(),
                        time_zone: w.time_zone.clone(),
                        open_now: false,
                        closes_at: None,
                        next_opening: Some(next),
                        reason,
                    },
                )
            }
            WindowStatus::Closed { next_opening: None } => {
                let reason = format!("change window \"{}\" does not open in the next two weeks", w.name);
                (
                    Check::fail(codes::WINDOW_OPEN, reason.clone()),
                    WindowOutcome {
                        name: w.name.clone(),
                        time_zone: w.time_zone.clone(),
                        open_now: false,
                        closes_at: None,
                        next_opening: None,
                        reason,
                    },
                )
            }
        };
        window_checks.push(check);
        window = Some(outcome);
    }
    identity.push(leaving_check(facts, execute_at));

    let mut rule_checks = Vec::new();
    let mut rule_name = None;
    let mut approval = None;
    let mut duration = None;
    let mut duration_checks = Vec::new();
    match subject {
        Some((t, l)) => {
            match policy.rule_for(t, l, member_of) {
                None => rule_checks.push(Check::fail(
                    codes::RULE_MATCHED,
                    format!("no rule covers {l} on \"{}\"; anything not covered is denied", t.key),
                )),
                Some(rule) => {
                    rule_name = Some(rule.name.clone());
                    let mut reason = format!("rule \"{}\" applies", rule.name);
                    if let Some(d) = &rule.description {
                        reason.push_str(&format!(": {d}"));
                    }
                    rule_checks.push(Check::pass(codes::RULE_MATCHED, reason));
                    match &rule.outcome {
                        RuleOutcome::AutoApprove => {
                            approval = Some(ApprovalRequirement::Auto {
                                rule: rule.name.clone(),
                                reason: format!("auto-approved by rule \"{}\"", rule.name),
                            });
                        }
                        RuleOutcome::Deny(why) => {
                            rule_checks
                                .push(Check::fail(codes::RULE_DENY, format!("rule \"{}\" denies: {why}", rule.name)));
                        }
                        RuleOutcome::Approve(stages) => {
                            let (plan, checks) = build_plan(&rule.name, stages, t, facts, rule.filer_may_approve);
                            rule_checks.extend(checks);
                            approval = Some(ApprovalRequirement::Plan(plan));
                        }
                    }
                }
            }
            let (d, checks) = decide_duration(facts, policy.duration_for(t, l, member_of), execute_at);
            duration = Some(d);
            duration_checks = checks;
        }
        None => {
            rule_checks.push(Check::skip(codes::RULE_MATCHED, "not evaluated: no target and access level to match"))
        }
    }

    let mut checks = identity;
    checks.extend(resolution.checks);
    checks.push(level_check);
    checks.extend(group);
    checks.extend(rule_checks);
    checks.extend(duration_checks);
    checks.extend(window_checks);

    let outcome = if checks.iter().any(|c| c.status == CheckStatus::Fail) { Outcome::Deny } else { Outcome::Allow };
    Decision {
        outcome,
        policy_version: policy.version().to_owned(),
        evaluated_at: now,
        checks,
        target: resolution.target.map(|(_, r)| r),
        ai_suggestion: resolution.ai,
        level,
        rule: rule_name,
        approval,
        duration,
        window,
        execute_at,
    }
}

fn identity_checks(facts: &RequestFacts) -> Vec<Check> {
    let r = &facts.requester;
    let mut out = Vec::new();
    out.push(if r.id.trim().is_empty() {
        Check::fail(codes::IDENTITY_REQUESTER, "the requester has no directory id")
    } else {
        Check::pass(codes::IDENTITY_REQUESTER, format!("requester {} ({})", r.upn, r.id))
    });
    out.push(if r.is_guest() {
        Check::fail(
            codes::IDENTITY_GUEST,
            format!("{} is a guest account (userType \"{}\"); guests are never granted access", r.upn, r.user_type),
        )
    } else if !r.is_member_type() {
        Check::fail(
            codes::IDENTITY_GUEST,
            format!("userType \"{}\" is not Member; only member accounts are granted access", r.user_type),
        )
    } else {
        Check::pass(codes::IDENTITY_GUEST, "a member account (userType Member)")
    });
    out.push(if r.account_enabled {
        Check::pass(codes::IDENTITY_ENABLED, "the account is enabled")
    } else {
        Check::fail(codes::IDENTITY_ENABLED, "the account is disabled; disabled accounts are never granted access")
    });
    out
}

fn leaving_check(facts: &RequestFacts, start: Timestamp) -> Check {
    match facts.requester.employee_leave_date_time {
        None => Check::pass(codes::IDENTITY_LEAVING, "no leave date on record"),
        Some(leave) if leave <= facts.now => Check::fail(
            codes::IDENTITY_LEAVING,
            format!("the requester's leave date {leave} has passed; leaving accounts are never granted access"),
        ),
        Some(leave) if leave <= start => Check::fail(
            codes::IDENTITY_LEAVING,
            format!("the requester leaves on {leave}, before the grant could start at {start}"),
        ),
        Some(leave) => Check::pass(codes::IDENTITY_LEAVING, format!("leaves on {leave}; any grant ends by then")),
    }
}

struct Resolution<'p> {
    target: Option<(&'p Target, ResolvedTarget)>,
    checks: Vec<Check>,
    ai: Option<AiSuggestionOutcome>,
}

/// An AI suggestion resolved against the whole catalog.
struct AiHit<'p> {
    entry: usize,
    target: &'p Target,
    selection: TargetSelection,
    item_match: ItemMatch,
}

fn non_empty(s: Option<&String>) -> Option<&str> {
    s.map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn entry_targets(policy: &Policy, entry: usize) -> Vec<&Target> {
    policy.catalog[entry].targets.iter().filter_map(|k| policy.target(k)).collect()
}

fn key_list(targets: &[&Target]) -> String {
    targets.iter().map(|t| format!("\"{}\"", t.key)).collect::<Vec<_>>().join(", ")
}

/// Resolves an AI suggestion by catalog item name, alias, group id, mailbox address or target
/// key. `hint` (the ticket's target) may pick among the targets of a named item.
fn resolve_suggestion<'p>(policy: &'p Policy, suggestion: &str, hint: Option<&str>) -> Result<AiHit<'p>, String> {
    if let Some(hit) = policy.find_item(suggestion) {
        let e = hit.entry();
        let targets = entry_targets(policy, e);
        let picked = match (targets.as_slice(), hint) {
            ([only], _) => Some((*only, TargetSelection::OnlyTarget)),
            (many, Some(h)) => many
                .iter()
                .find(|t| t.is_named_by(h))
                .map(|t| (*t, TargetSelection::TicketTarget { value: h.to_owned() })),
            _ => None,
        };
        return match picked {
            Some((target, selection)) => Ok(AiHit {
                entry: e,
                target,
                selection,
                item_match: ItemMatch::AiSuggestion { suggestion: suggestion.to_owned() },
            }),
            None => Err(format!(
                "it names catalog item \"{}\", which offers several targets ({}), and the ticket picks none of them",
                policy.catalog[e].item,
                key_list(&targets)
            )),
        };
    }
    if let Some(target) = policy.targets.iter().find(|t| t.is_named_by(suggestion))
        && let Some(e) = policy.catalog.iter().position(|c| c.targets.contains(&target.key))
    {
        return Ok(AiHit {
            entry: e,
            target,
            selection: TargetSelection::AiSuggestion { suggestion: suggestion.to_owned() },
            item_match: ItemMatch::AiSuggestion { suggestion: suggestion.to_owned() },
        });
    }
    Err("it does not name a catalog item, alias, group id or mailbox address declared in the policy".to_owned())
}

fn resolved(
    policy: &Policy,
    entry: usize,
    t: &Target,
    item_match: ItemMatch,
    selection: TargetSelection,
) -> ResolvedTarget {
    let (group_id, mailbox_address, mailbox_type, automapping) = match &t.target {
        TargetRef::Group { id } => (Some(id.clone()), None, None, None),
        TargetRef::Mailbox { address, mailbox_type, automapping } => {
            (None, Some(address.clone()), Some(*mailbox_type), Some(*automapping))
        }
    };
    ResolvedTarget {
        key: t.key.clone(),
        kind: t.kind(),
        display_name: t.display_name.clone(),
        group_id,
        mailbox_address,
        mailbox_type,
        automapping,
        tags: t.tags.clone(),
        catalog_item: policy.catalog[entry].item.clone(),
        item_match,
        selection,
    }
}

/// The declared target a ticket's own fields (catalog item, target variable, AI suggestion)
/// resolve to, before any directory fact is known: what the validate step must read about.
/// `evaluate` resolves it again, the same way, with the facts.
pub fn ticket_target<'p>(
    policy: &'p Policy,
    catalog_item: &str,
    target: Option<&str>,
    ai_suggested_target: Option<&str>,
) -> Option<&'p Target> {
    let facts = RequestFacts {
        now: Timestamp::UNIX_EPOCH,
        requester: super::facts::UserFacts {
            id: String::new(),
            upn: String::new(),
            display_name: None,
            user_type: String::new(),
            account_enabled: false,
            employee_leave_date_time: None,
            manager_id: None,
            manager_upn: None,
            managers_manager: None,
            member_of: Vec::new(),
        },
        opened_by: None,
        catalog_item: catalog_item.to_owned(),
        target: target.map(str::to_owned),
        level: None,
        duration: None,
        end: None,
        ai_suggested_target: ai_suggested_target.map(str::to_owned),
        target_group: None,
        target_mailbox: None,
    };
    resolve_target(&facts, policy).target.map(|(t, _)| t)
}

fn resolve_target<'p>(facts: &RequestFacts, policy: &'p Policy) -> Resolution<'p> {
    let hint = non_empty(facts.target.as_ref());
    let suggestion = non_empty(facts.ai_suggested_target.as_ref());
    let item = facts.catalog_item.trim();
    let mut checks = Vec::new();
    let mut ai = None;
    let mut target = None;

    match policy.find_item(item) {
        Some(hit) => {
            let e = hit.entry();
            let entry = &policy.catalog[e];
            let item_match = match hit {
                super::model::ItemHit::Name(_) => {
                    checks
                        .push(Check::pass(codes::CATALOG_ITEM, format!("catalog item \"{}\" is declared", entry.item)));
                    ItemMatch::CatalogItem
                }
                super::model::ItemHit::Alias(_, alias) => {
                    checks.push(Check::pass(
                        codes::CATALOG_ITEM,
                        format!("\"{item}\" is an alias of catalog item \"{}\"", entry.item),
                    ));
                    ItemMatch::Alias { alias: alias.to_owned() }
                }
            };
            let targets = entry_targets(policy, e);
            let ai_hit = suggestion.map(|s| resolve_suggestion(policy, s, hint));
            let selected: Result<(&Target, TargetSelection), String> = if let Some(h) = hint {
                targets
                    .iter()
                    .find(|t| t.is_named_by(h))
                    .map(|t| (*t, TargetSelection::TicketTarget { value: h.to_owned() }))
                    .ok_or_else(|| {
                        format!(
                            "the ticket's target \"{h}\" is not offered by catalog item \"{}\" (it offers {})",
                            entry.item,
                            key_list(&targets)
                        )
                    })
            } else if let [only] = targets.as_slice() {
                Ok((*only, TargetSelection::OnlyTarget))
            } else if let (Some(s), Some(Ok(h))) = (suggestion, ai_hit.as_ref())
                && targets.iter().any(|t| t.key == h.target.key)
            {
                Ok((h.target, TargetSelection::AiSuggestion { suggestion: s.to_owned() }))
            } else {
                Err(format!(
                    "catalog item \"{}\" offers several targets ({}) and the ticket names none of them",
                    entry.item,
                    key_list(&targets)
                ))
            };
            if let (Some(s), Some(h)) = (suggestion, ai_hit) {
                ai = Some(match (&selected, h) {
                    (Ok((_, TargetSelection::AiSuggestion { .. })), Ok(h)) => AiSuggestionOutcome {
                        suggestion: s.to_owned(),
                        status: SuggestionStatus::Accepted,
                        resolved_to: Some(h.target.key.clone()),
                        reason: format!(
                            "it chose \"{}\" among the targets of catalog item \"{}\"",
                            h.target.key, entry.item
                        ),
                    },
                    (Ok((t, _)), Ok(h)) if h.target.key == t.key => AiSuggestionOutcome {
                        suggestion: s.to_owned(),
                        status: SuggestionStatus::Agrees,
                        resolved_to: Some(h.target.key.clone()),
                        reason: "it names the target the ticket already resolved to".to_owned(),
                    },
                    (Ok((t, _)), Ok(h)) => AiSuggestionOutcome {
                        suggestion: s.to_owned(),
                        status: SuggestionStatus::Rejected,
                        resolved_to: Some(h.target.key.clone()),
                        reason: format!(
                            "it names \"{}\" but the ticket asks for \"{}\"; the ticket's own fields win",
                            h.target.key, t.key
                        ),
                    },
                    (Err(_), Ok(h)) => AiSuggestionOutcome {
                        suggestion: s.to_owned(),
                        status: SuggestionStatus::Rejected,
                        resolved_to: Some(h.target.key.clone()),
                        reason: format!(
                            "it names \"{}\", which catalog item \"{}\" does not offer",
                            h.target.key, entry.item
                        ),
                    },
                    (_, Err(why)) => AiSuggestionOutcome {
                        suggestion: s.to_owned(),
                        status: SuggestionStatus::Rejected,
                        resolved_to: None,
                        reason: why,
                    },
                });
            }
            match selected {
                Ok((t, selection)) => {
                    checks.push(Check::pass(
                        codes::TARGET_RESOLVED,
                        format!("resolved to {} \"{}\" ({})", t.kind(), t.key, t.display_name),
                    ));
                    target = Some((t, resolved(policy, e, t, item_match, selection)));
                }
                Err(why) => checks.push(Check::fail(codes::TARGET_RESOLVED, why)),
            }
        }
        None => {
            let undeclared = if item.is_empty() {
                "the ticket names no catalog item".to_owned()
            } else {
                format!("catalog item \"{item}\" is not declared in the policy")
            };
            match suggestion.map(|s| (s, resolve_suggestion(policy, s, hint))) {
                Some((s, Ok(h))) if hint.is_none_or(|x| h.target.is_named_by(x)) => {
                    let entry = &policy.catalog[h.entry];
                    checks.push(Check::pass(
                        codes::CATALOG_ITEM,
                        format!("{undeclared}; the AI suggestion \"{s}\" resolved to catalog item \"{}\"", entry.item),
                    ));
                    checks.push(Check::pass(
                        codes::TARGET_RESOLVED,
                        format!("resolved to {} \"{}\" ({})", h.target.kind(), h.target.key, h.target.display_name),
                    ));
                    ai = Some(AiSuggestionOutcome {
                        suggestion: s.to_owned(),
                        status: SuggestionStatus::Accepted,
                        resolved_to: Some(h.target.key.clone()),
                        reason: format!("it resolved to catalog item \"{}\", target \"{}\"", entry.item, h.target.key),
                    });
                    target = Some((h.target, resolved(policy, h.entry, h.target, h.item_match, h.selection)));
                }
                Some((s, hit)) => {
                    let (resolved_to, why) = match hit {
                        Ok(h) => (
                            Some(h.target.key.clone()),
                            format!(
                                "it names \"{}\" but the ticket's target is \"{}\"",
                                h.target.key,
                                hint.unwrap_or_default()
                            ),
                        ),
                        Err(why) => (None, why),
                    };
                    checks.push(Check::fail(
                        codes::CATALOG_ITEM,
                        format!("{undeclared}, and the AI suggestion \"{s}\" was rejected: {why}; anything not declared is denied"),
                    ));
                    checks.push(Check::skip(codes::TARGET_RESOLVED, "not evaluated: no catalog item"));
                    ai = Some(AiSuggestionOutcome {
                        suggestion: s.to_owned(),
                        status: SuggestionStatus::Rejected,
                        resolved_to,
                        reason: why,
                    });
                }
                None => {
                    checks.push(Check::fail(
                        codes::CATALOG_ITEM,
                        format!("{undeclared}; anything not declared is denied"),
                    ));
                    checks.push(Check::skip(codes::TARGET_RESOLVED, "not evaluated: no catalog item"));
                }
            }
        }
    }
    if let Some(a) = &ai {
        let line = format!("AI suggestion \"{}\" {}: {}", a.suggestion, a.status, a.reason);
        checks.push(match a.status {
            SuggestionStatus::Accepted | SuggestionStatus::Agrees => Check::pass(codes::AI_SUGGESTION, line),
            SuggestionStatus::Rejected => Check::skip(codes::AI_SUGGESTION, line),
        });
    }
    Resolution { target, checks, ai }
}

/// The requested level, if it is known and offered on the target.
fn resolve_level(facts: &RequestFacts, target: Option<&Target>) -> (Option<AccessLevel>, Check) {
    let asked = non_empty(facts.level.as_ref());
    let parsed = match asked {
        Some(text) => match AccessLevel::from_ticket(text) {
            Some(l) => Some(l),
            None => {
                let known = AccessLevel::KEYWORDS.join(", ");
                return (
                    None,
                    Check::fail(
                        codes::LEVEL_ALLOWED,
                        format!("unknown access level \"{text}\", expected one of {known}"),
                    ),
                );
            }
        },
        None => None,
    };
    let Some(t) = target else {
        return (None, Check::skip(codes::LEVEL_ALLOWED, "not evaluated: no target"));
    };
    let level = match (parsed, t.kind()) {
        (Some(l), _) => l,
        (None, TargetKind::Group) => AccessLevel::Member,
        (None, TargetKind::Mailbox) => {
            return (
                None,
                Check::fail(
                    codes::LEVEL_ALLOWED,
                    format!("the ticket names no access level for mailbox \"{}\"", t.key),
                ),
            );
        }
    };
    if level.target_kind() != t.kind() {
        return (
            None,
            Check::fail(
                codes::LEVEL_ALLOWED,
                format!("{level} is a {} level, but \"{}\" is a {}", level.target_kind(), t.key, t.kind()),
            ),
        );
    }
    if !t.levels.contains(&level) {
        let offered: Vec<&str> = t.levels.iter().map(|l| l.as_str()).collect();
        return (
            None,
            Check::fail(
                codes::LEVEL_ALLOWED,
                format!("\"{}\" does not offer {level} (it offers {})", t.key, offered.join(", ")),
            ),
        );
    }
    let how = if parsed.is_some() { "" } else { " (the only level of a group)" };
    (Some(level), Check::pass(codes::LEVEL_ALLOWED, format!("{level} is offered on \"{}\"{how}", t.key)))
}

fn mailbox_checks(t: &Target, facts: Option<&MailboxFacts>) -> Vec<Check> {
    let TargetRef::Mailbox { address, mailbox_type, .. } = &t.target else { return Vec::new() };
    let m = match facts {
        None => {
            return vec![
                Check::fail(
                    codes::MAILBOX_FACTS,
                    format!("the mailbox {address} was not found in Exchange Online (or its facts were not provided)"),
                ),
                Check::skip(codes::MAILBOX_TYPE, "not evaluated without the mailbox's facts"),
            ];
        }
        Some(m) if normalize(&m.address) != normalize(address) => {
            return vec![
                Check::fail(codes::MAILBOX_FACTS, format!("the facts are about mailbox {}, not {address}", m.address)),
                Check::skip(codes::MAILBOX_TYPE, "not evaluated without the mailbox's facts"),
            ];
        }
        Some(m) => m,
    };
    let wanted = mailbox_type.recipient_type_details();
    vec![
        Check::pass(codes::MAILBOX_FACTS, format!("Exchange Online has mailbox {address}")),
        if m.recipient_type_details.eq_ignore_ascii_case(wanted) {
            Check::pass(codes::MAILBOX_TYPE, format!("{address} is a {wanted}, as declared"))
        } else {
            Check::fail(
                codes::MAILBOX_TYPE,
                format!(
                    "the policy declares {address} a {mailbox_type} mailbox but Exchange Online says {}: access to it is not granted here",
                    m.recipient_type_details
                ),
            )
        },
    ]
}

fn group_checks(t: &Target, facts: Option<&GroupFacts>) -> Vec<Check> {
    let id = t.group_id().unwrap_or_default();
    let hard = [
        codes::GROUP_ROLE_ASSIGNABLE,
        codes::GROUP_DYNAMIC,
        codes::GROUP_MAIL_ENABLED_SECURITY,
        codes::GROUP_DISTRIBUTION_LIST,
        codes::GROUP_ON_PREMISES_SYNCED,
    ];
    let unverified = |first: Check| {
        let mut out = vec![first];
        out.extend(hard.iter().map(|c| Check::skip(c, "not evaluated without the group's directory facts")));
        out
    };
    let g = match facts {
        None => {
            return unverified(Check::fail(
                codes::GROUP_FACTS,
                format!("the directory facts of group {id} were not provided, so its type cannot be verified"),
            ));
        }
        Some(g) if normalize(&g.id) != normalize(id) => {
            return unverified(Check::fail(
                codes::GROUP_FACTS,
                format!("the directory facts are about group {}, not {id}", g.id),
            ));
        }
        Some(g) => g,
    };
    let mut out = vec![Check::pass(codes::GROUP_FACTS, format!("directory facts of group {id} provided"))];
    out.push(if g.is_assignable_to_role == Some(true) {
        Check::fail(
            codes::GROUP_ROLE_ASSIGNABLE,
            "the group is role-assignable: request the role through Privileged Identity Management (PIM) instead",
        )
    } else {
        Check::pass(codes::GROUP_ROLE_ASSIGNABLE, "not role-assignable")
    });
    out.push(if g.is_dynamic() {
        let rule = g.membership_rule.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        Check::fail(
            codes::GROUP_DYNAMIC,
            format!("the group has dynamic membership{rule}: ask the owner of its membership rule to change the rule instead"),
        )
    } else {
        Check::pass(codes::GROUP_DYNAMIC, "assigned membership")
    });
    out.push(if g.is_mail_enabled_security() {
        Check::fail(
            codes::GROUP_MAIL_ENABLED_SECURITY,
            "the group is a mail-enabled security group, read-only in Graph: change its membership in Exchange Online (Add-DistributionGroupMember) instead",
        )
    } else {
        Check::pass(codes::GROUP_MAIL_ENABLED_SECURITY, "not a mail-enabled security group")
    });
    out.push(if g.is_distribution_list() {
        Check::fail(
            codes::GROUP_DISTRIBUTION_LIST,
            "the group is a distribution list, read-only in Graph: change its membership in Exchange Online (Add-DistributionGroupMember) instead",
        )
    } else {
        Check::pass(codes::GROUP_DISTRIBUTION_LIST, "not a distribution list")
    });
    out.push(if g.on_premises_sync_enabled == Some(true) {
        Check::fail(
            codes::GROUP_ON_PREMISES_SYNCED,
            "the group is synchronized from on-premises Active Directory: change its membership in on-premises AD instead",
        )
    } else {
        Check::pass(codes::GROUP_ON_PREMISES_SYNCED, "cloud-managed")
    });
    out
}

fn decide_duration(
    facts: &RequestFacts,
    rule: Option<&DurationRule>,
    start: Timestamp,
) -> (DurationOutcome, Vec<Check>) {
    let mut checks = Vec::new();
    let mut out = DurationOutcome {
        rule: rule.map(|r| r.name.clone()),
        requested: None,
        requested_end: facts.end,
        duration: None,
        not_after: None,
        ends_at: None,
        shortened_to_cap: false,
        ends_on_leave_date: false,
        notes: Vec::new(),
    };
    let mut request_ok = true;
    if let Some(text) = non_empty(facts.duration.as_ref()) {
        match text.parse::<PolicyDuration>() {
            Ok(d) => out.requested = Some(d),
            Err(e) => {
                request_ok = false;
                checks.push(Check::fail(codes::DURATION_REQUEST, e.to_string()));
            }
        }
    }
    let mut from_end = None;
    if let Some(end) = facts.end {
        match PolicyDuration::between(start, end) {
            Some(d) => from_end = Some(d),
            None => {
                request_ok = false;
                checks.push(Check::fail(
                    codes::DURATION_REQUEST,
                    format!("the requested end {end} is not after the start of the grant ({start})"),
                ));
            }
        }
    }
    let requested_len = match (out.requested, from_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if request_ok {
        checks.push(match (out.requested, facts.end) {
            (None, None) => Check::skip(codes::DURATION_REQUEST, "no duration or end date requested"),
            (Some(d), None) => Check::pass(codes::DURATION_REQUEST, format!("requested {d}")),
            (None, Some(e)) => Check::pass(codes::DURATION_REQUEST, format!("requested until {e}")),
            (Some(d), Some(e)) => {
                Check::pass(codes::DURATION_REQUEST, format!("requested {d}, until {e} at the latest"))
            }
        });
    }
    let name = rule.map(|r| r.name.as_str()).unwrap_or_default();
    match requested_len {
        Some(len) if request_ok => {
            match rule.and_then(|r| r.max.map(|m| (m, r.over_max))) {
                Some((max, over)) if len > max => match over {
                    OverMax::Shorten => {
                        out.duration = Some(max);
                        out.shortened_to_cap = true;
                        out.notes.push(format!("requested {len}, longer than the maximum {max} of duration rule \"{name}\": shortened to {max}"));
                        checks.push(Check::pass(
                            codes::DURATION_CAP,
                            format!("shortened to the maximum {max} (requested {len})"),
                        ));
                    }
                    OverMax::Deny => checks.push(Check::fail(
                        codes::DURATION_CAP,
                        format!("requested {len} is longer than the maximum {max} of duration rule \"{name}\""),
                    )),
                },
                cap => {
                    out.duration = out.requested;
                    out.not_after = facts.end;
                    out.notes.push(format!("as requested ({len})"));
                    if let Some((max, _)) = cap {
                        checks.push(Check::pass(
                            codes::DURATION_CAP,
                            format!("requested {len} is within the maximum {max}"),
                        ));
                    }
                }
            }
            if rule.is_some_and(|r| r.required) {
                checks.push(Check::pass(
                    codes::DURATION_REQUIRED,
                    format!("an end is required by duration rule \"{name}\" and the request has one"),
                ));
            }
        }
        Some(_) => {}
        None => match rule {
            Some(r) if r.default.is_some() => {
                out.duration = r.default;
                let d = r.default.map(|d| d.to_string()).unwrap_or_default();
                out.notes.push(format!("no duration requested: the default {d} of duration rule \"{name}\" applies"));
                if r.required {
                    checks.push(Check::pass(
                        codes::DURATION_REQUIRED,
                        format!("an end is required by duration rule \"{name}\"; the default {d} applies"),
                    ));
                }
                if let Some(max) = r.max {
                    checks
                        .push(Check::pass(codes::DURATION_CAP, format!("the default {d} is within the maximum {max}")));
                }
            }
            Some(r) if r.required => checks.push(Check::fail(
                codes::DURATION_REQUIRED,
                format!("duration rule \"{name}\" requires an end date or duration and the request has none"),
            )),
            _ => out.notes.push("permanent: no duration requested and none required".to_owned()),
        },
    }
    if let Some(leave) = facts.requester.employee_leave_date_time
        && leave > start
        && out.end_for_start(start).is_none_or(|end| leave < end)
    {
        out.not_after = Some(leave);
        out.ends_on_leave_date = true;
        out.notes.push(format!("ends on the requester's leave date {leave}, which comes first"));
    }
    out.ends_at = out.end_for_start(start);
    (out, checks)
}
