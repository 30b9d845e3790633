//! reconcile: compare what grantline believes with the directory (drift).
//!
//! 1. Every active grant (`active`, `completed`) older than the settle time is checked
//!    through its executor (group membership, mailbox permission). An access that is gone
//!    though grantline did not remove it was removed out of band: the request is closed
//!    (`removed`, reason "removed out of band", a `removed_out_of_band` event on its timeline,
//!    its hold on the access released, its ticket noted) and the directory log records it.
//!    The check runs under the access's lock, so a removal in progress is never mistaken for
//!    drift.
//! 2. The direct members of every group the policy governs (its group targets) are listed. The
//!    first pass over a group records its members as pre-existing (the baseline); a grant whose
//!    receipt says the membership existed before is recorded too. A later member that no
//!    request in the person index and no recorded pre-existing membership explains is reported
//!    once (an `unexplained_member` event on the directory log, the `unexplained` counter in
//!    `/metrics`, a warning log line). What else happens is the policy's
//!    `unexplained_members` for that group: `report` (nothing more, the default), `page`
//!    (on-call is paged at warning severity, one incident per member, resolved once they are
//!    gone) or `remove` (removed under the membership's lock after looking again for a request
//!    that explains them, verified gone, an `unexplained_member_removed` event).

use std::collections::HashSet;
use std::sync::Arc;

use apalis_core::task::data::Data;
use grantline_queue::{Handoff, JobError, Write, WriteCmd};
use grantline_shared::JobKind;
use grantline_shared::audit::AuditEvent;
use grantline_shared::flow::Outcome;
use grantline_shared::jobs::{LetterClosed, Reconcile};
use grantline_shared::policy::UnexplainedMembers;
use grantline_shared::receipt::{Receipt, RemovalReceipt, access_key_group};
use grantline_shared::record::RequestRecord;
use grantline_shared::request::{RequestState, keys};
use grantline_store::directory::{self, DirectoryEvent};
use grantline_store::{Applied, Commit};
use redis::AsyncCommands;

use super::{job_error, redis_unavailable};
use crate::executor::Access;
use crate::membership::{MembershipLock, forget_write, holders};
use crate::paging::{self, DeadLetterPage};
use crate::record::store_error;
use crate::services::Services;

/// The audit actor of what reconciliation changes.
pub const ACTOR: &str = "grantline:reconcile";

/// A grant younger than this is not checked yet (directory replication, apis.md 2.9).
pub const SETTLE_MS: u64 = 5 * 60 * 1000;

/// The most grants one pass checks per state.
const MAX_GRANTS: isize = 5_000;

/// The most member pages read per group.
const MAX_MEMBER_PAGES: usize = 1_000;

/// The reason a request closed by drift carries.
pub const OUT_OF_BAND: &str = "removed out of band";

pub async fn run(job: Reconcile, svc: Data<Arc<Services>>) -> Result<Handoff, JobError> {
    // requests recorded before the person index existed are added to it first (once)
    grantline_store::person::ensure_backfilled(&svc.queue, svc.now_ms()).await.map_err(store_error)?;
    let closed = check_grants(&svc).await?;
    let reported = check_groups(&svc).await?;
    tracing::info!(period = job.period, closed, reported, "reconciled with the directory");
    Ok(Handoff::done())
}

// about a person (or the whole directory), not one request: the span names that instead
impl crate::runtime::JobSpan for Reconcile {
    fn job_span(&self) -> tracing::Span {
        tracing::info_span!(
            "reconcile",
            otel.kind = "consumer",
            period = self.period,
            attempt = tracing::field::Empty,
            job_id = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        )
    }
}

/// Part 1: active grants against the directory. Returns how many requests it closed.
async fn check_grants(svc: &Services) -> Result<usize, JobError> {
    let mut conn = svc.queue.connection();
    let mut ids: Vec<String> = Vec::new();
    for state in [RequestState::Active, RequestState::Completed] {
        let some: Vec<String> = conn
            .zrange(svc.queue.namespace().key(&keys::by_state(state)), 0, MAX_GRANTS - 1)
            .await
            .map_err(redis_unavailable)?;
        ids.extend(some);
    }
    let mut closed = 0;
    for id in ids {
        let Some(rec) = grantline_store::find(&svc.queue, &id).await.map_err(store_error)? else { continue };
        let Some(grant) = rec.grant.clone() else { continue };
        if grant.pre_existing()
            && let Receipt::Group(g) = &grant
        {
            // a recorded pre-existing membership explains the member later on
            let _: i64 = conn
                .sadd(svc.queue.namespace().key(&directory::baseline_key(&g.group_id)), g.user_id.to_ascii_lowercase())
                .await
                .map_err(redis_unavailable)?;
        }
        if grant.granted_ms().saturating_add(SETTLE_MS) > svc.now_ms() {
            continue;
        }
        if close_if_gone(svc, &rec, &grant).await? {
            closed += 1;
        }
    }
    Ok(closed)
}

/// Checks one grant under its access's lock; closes the request when the access is gone.
async fn close_if_gone(svc: &Services, rec: &RequestRecord, grant: &Receipt) -> Result<bool, JobError> {
    let key = grant.access_key();
    let lock = match MembershipLock::acquire(&svc.queue, &key, &rec.id, "reconcile").await {
        Ok(l) => l,
        // the access is being changed right now: the next pass looks again
        Err(JobError::Wait { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    let result = async {
        let access = Access::from_receipt(grant);
        let found = svc.executors.check(&access).await?;
        if found.present {
            return Ok(false);
        }
        let now = svc.now_ms();
        let receipt = RemovalReceipt {
            removed: false,
            kept_pre_existing: false,
            kept_for: Vec::new(),
            already_gone: true,
            evidence: Some(found.evidence),
            trigger: "drift".to_owned(),
            at_ms: now,
        };
        let commit = Commit::new(rec, ACTOR, now)
            .event(AuditEvent::RemovedOutOfBand { access: key.clone(), checked_ms: now })
            .set(|u| u.reason(&OUT_OF_BAND.to_owned()).removal(&receipt))
            .write(forget_write(&key, &rec.id))
            .write(Write::new(WriteCmd::ZRem, keys::EXPIRING, [rec.id.clone()]))
            .outcome(Outcome::Removed);
        match commit.apply(&svc.queue).await.map_err(store_error)? {
            Applied::Done { .. } => {
                let event = DirectoryEvent::RemovedOutOfBand { request_id: rec.id.clone(), access: key.clone() };
                directory::record(&svc.queue, ACTOR, now, event).await.map_err(store_error)?;
                Ok(true)
            }
            // the request changed meanwhile (a removal, an extension): the next pass decides
            Applied::Conflict => Ok(false),
        }
    }
    .await;
    lock.release(&svc.queue).await;
    result
}

/// Whether a request of this person explains their membership of `group_id`.
fn explains(r: &RequestRecord, access: &str) -> bool {
    if let Some(g) = &r.grant {
        return g.access_key() == access;
    }
    grantline_store::lifecycle::access_key(r).is_some_and(|k| k == access)
}

/// Part 2: members of governed groups no request explains. Returns how many it reported.
async fn check_groups(svc: &Services) -> Result<usize, JobError> {
    let policy = svc.policy.get();
    // each governed group once, with its name and what the policy says of unexplained members
    let groups: Vec<(String, String, UnexplainedMembers)> = {
        let mut g: Vec<(String, String, UnexplainedMembers)> = policy
            .targets()
            .iter()
            .filter_map(|t| {
                t.group_id().map(|g| (g.to_ascii_lowercase(), t.display_name.clone(), t.unexplained_members))
            })
            .collect();
        g.sort_by(|a, b| a.0.cmp(&b.0));
        g.dedup_by(|a, b| a.0 == b.0);
        g
    };
    let ns = svc.queue.namespace();
    let mut conn = svc.queue.connection();
    let mut reported = 0;
    for (gid, group_name, action) in groups {
        let Some(members) = members(svc, &gid).await? else {
            tracing::warn!(group_id = %gid, "a governed group is not in the directory");
            continue;
        };
        let baseline_key = ns.key(&directory::baseline_key(&gid));
        let first: bool = conn.sadd(ns.key(directory::BASELINED), &gid).await.map_err(redis_unavailable)?;
        if first {
            // the first look at a group: who is there now was there before grantline governed it
            let ids: Vec<String> = members.iter().map(|(id, _)| id.clone()).collect();
            if !ids.is_empty() {
                let _: i64 = conn.sadd(&baseline_key, &ids).await.map_err(redis_unavailable)?;
            }
            tracing::info!(group_id = %gid, members = ids.len(), "recorded the members of a governed group as pre-existing");
            continue;
        }
        let baseline: HashSet<String> = conn.smembers(&baseline_key).await.map_err(redis_unavailable)?;
        let reported_key = ns.key(directory::REPORTED);
        let already: HashSet<String> = conn.smembers(&reported_key).await.map_err(redis_unavailable)?;
        let present: HashSet<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
        // a reported member who left the group is reported again if they come back; their
        // page, if any, is resolved
        for gone in already.iter().filter(|k| k.split_once('|').is_some_and(|(g, u)| g == gid && !present.contains(u)))
        {
            if let (Some(pager), Some((_, user))) = (svc.pager.as_ref(), gone.split_once('|'))
                && conn
                    .exists::<_, bool>(ns.key(&paging::record_key(
                        JobKind::Reconcile.as_str(),
                        &paging::unexplained_page_id(&gid, user),
                    )))
                    .await
                    .map_err(redis_unavailable)?
            {
                pager
                    .resolve(
                        &svc.queue,
                        svc.now(),
                        JobKind::Reconcile.as_str(),
                        &paging::unexplained_page_id(&gid, user),
                        LetterClosed::Superseded,
                    )
                    .await?;
            }
            let _: i64 = conn.srem(&reported_key, gone).await.map_err(redis_unavailable)?;
        }
        for (user, upn) in &members {
            let mark = format!("{gid}|{user}");
            if baseline.contains(user) || already.contains(&mark) {
                continue;
            }
            let access = access_key_group(&gid, user);
            if explained(svc, user, &access).await? {
                continue;
            }
            match action {
                UnexplainedMembers::Report => {}
                UnexplainedMembers::Page => {
                    // paged before it is recorded: a page that could not be sent fails the
                    // pass, and the next try pages again (one incident per member)
                    if let Some(pager) = svc.pager.as_ref() {
                        let page =
                            DeadLetterPage::unexplained_member(&gid, &group_name, user, upn.as_deref(), svc.now_ms());
                        pager.page(&svc.queue, svc.now(), &page).await?;
                    }
                }
                UnexplainedMembers::Remove => {
                    if !remove_unexplained(svc, &gid, &group_name, user, upn.as_deref()).await? {
                        // explained meanwhile, or its access being changed: the next pass looks again
                        continue;
                    }
                }
            }
            let event = DirectoryEvent::UnexplainedMember {
                group_id: gid.clone(),
                user_id: user.clone(),
                upn: upn.clone(),
                action: Some(action.as_str().to_owned()),
            };
            directory::record(&svc.queue, ACTOR, svc.now_ms(), event).await.map_err(store_error)?;
            if action != UnexplainedMembers::Remove {
                let _: i64 = conn.sadd(&reported_key, &mark).await.map_err(redis_unavailable)?;
            }
            tracing::warn!(group_id = %gid, user_id = %user, action = action.as_str(), "a member of a governed group that no request explains");
            reported += 1;
        }
    }
    Ok(reported)
}

/// Whether a request of this person, or a holder of the access, explains the membership.
async fn explained(svc: &Services, user: &str, access: &str) -> Result<bool, JobError> {
    let requests = grantline_store::person::requests(&svc.queue, user, 1_000).await.map_err(store_error)?;
    Ok(requests.iter().any(|r| explains(r, access)) || !holders(&svc.queue, access).await?.is_empty())
}

/// Removes an unexplained member as the policy says, under the membership's lock (so a grant
/// in progress is never undone), looking again whether a request explains them first; then
/// verifies they are gone and records the removal on the directory log. Returns false when it
/// removed nothing (explained meanwhile, or the membership is being changed right now).
async fn remove_unexplained(
    svc: &Services,
    gid: &str,
    group_name: &str,
    user: &str,
    upn: Option<&str>,
) -> Result<bool, JobError> {
    let key = access_key_group(gid, user);
    let lock = match MembershipLock::acquire(&svc.queue, &key, ACTOR, "reconcile").await {
        Ok(l) => l,
        Err(JobError::Wait { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    let result = async {
        if explained(svc, user, &key).await? {
            return Ok(false);
        }
        let access = Access::Group {
            group_id: gid.to_owned(),
            group_name: group_name.to_owned(),
            user_id: user.to_owned(),
            user_upn: upn.unwrap_or(user).to_owned(),
        };
        let change = svc.executors.revoke(&access, ACTOR).await?;
        if svc.executors.read_back(&access).await?.present {
            return Err(JobError::transient(
                "removal.not_visible",
                "the unexplained member is still visible; the next pass looks again",
            ));
        }
        let event = DirectoryEvent::UnexplainedMemberRemoved {
            group_id: gid.to_owned(),
            user_id: user.to_owned(),
            upn: upn.map(str::to_owned),
            graph_request_id: change.evidence.request_id.clone(),
        };
        directory::record(&svc.queue, ACTOR, svc.now_ms(), event).await.map_err(store_error)?;
        tracing::warn!(group_id = %gid, user_id = %user, "removed a member of a governed group that no request explains (policy: remove)");
        Ok(true)
    }
    .await;
    lock.release(&svc.queue).await;
    result
}

/// The user members of a group (lower-case ids, with UPNs); `None` when the group is unknown.
async fn members(svc: &Services, gid: &str) -> Result<Option<Vec<(String, Option<String>)>>, JobError> {
    let mut out = Vec::new();
    let mut link: Option<String> = None;
    for _ in 0..MAX_MEMBER_PAGES {
        let Some(page) = svc.graph.group_members(gid, link.as_deref()).await.map_err(job_error)?.value else {
            return Ok(None);
        };
        out.extend(
            page.members
                .into_iter()
                .filter(|m| m.is_user())
                .map(|m| (m.id.to_ascii_lowercase(), m.user_principal_name)),
        );
        match page.next_link {
            Some(n) => link = Some(n),
            None => break,
        }
    }
    Ok(Some(out))
}
