//! Entra group membership through Microsoft Graph, within the tenant's shared budget.
//!
//! - check: `GET /groups/{id}/members/{uid}?$select=id` (200 a member, 404 not);
//! - grant: `POST /groups/{id}/members/$ref` ("already exists" is success);
//! - revoke: `DELETE /groups/{id}/members/{uid}/$ref` (always with `/$ref`: without it Graph
//!   would delete the user).
//!
//! With batching on, the calls of requests for the same group that are ready at about the same
//! time in this process share one upstream call: the checks one `$batch` of reads, the grants
//! one `PATCH /groups/{id}` with `members@odata.bind` (one write for up to 20 members), the
//! removals one `$batch` of deletes. The PATCH is all or nothing (one member already there, or
//! missing, fails it for all with 400), so members are checked first, and on a 400 the batch
//! falls back to one add per member: a batch never turns one failure into a lost or wrong grant.

use std::time::Duration;

use grantline_connectors::GraphClient;
use grantline_connectors::graph::{AddOutcome, Correlation, GraphError, MAX_BATCH, RemoveOutcome};
use grantline_queue::JobError;
use grantline_shared::Clock;

use super::{Access, Change, Found};
use crate::batch::Coalescer;
use crate::budget::Budget;
use crate::steps::{evidence, job_error};

/// How the group executor calls Graph.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupOptions {
    /// Share calls for one group between requests that are ready together.
    pub batch: bool,
    /// How long the first request of a batch waits for others.
    pub linger: Duration,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self { batch: true, linger: Duration::from_millis(20) }
    }
}

type Answer<T> = Result<T, JobError>;

/// The group executor.
#[derive(Clone)]
pub struct GroupExecutor {
    batch: bool,
    graph: GraphClient,
    clock: Clock,
    budget: Budget,
    reads: Coalescer<String, Answer<Found>>,
    adds: Coalescer<String, Answer<Change>>,
    removes: Coalescer<String, Answer<Change>>,
}

fn parts(a: &Access) -> Result<(&str, &str), JobError> {
    match a {
        Access::Group { group_id, user_id, .. } => Ok((group_id, user_id)),
        Access::Mailbox { .. } => Err(JobError::permanent("grant.wrong_executor", "not a group membership")),
    }
}

fn abandoned() -> JobError {
    JobError::transient("batch.abandoned", "the batch this call joined was dropped; it will run again")
}

impl GroupExecutor {
    pub fn new(graph: GraphClient, clock: Clock, budget: Budget, opts: &GroupOptions) -> Self {
        let max = if opts.batch { MAX_BATCH } else { 1 };
        Self {
            batch: opts.batch,
            graph,
            clock,
            budget,
            reads: Coalescer::new(max, opts.linger),
            adds: Coalescer::new(max, opts.linger),
            removes: Coalescer::new(max, opts.linger),
        }
    }

    /// Whether grants to one group share writes.
    pub fn batches(&self) -> bool {
        self.batch
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// A Graph failure as the job's outcome: a refusal (429, or 503 with Retry-After) pauses
    /// every caller of the budget it spent and makes this job wait; anything else is classified
    /// where it was born.
    async fn failure(&self, e: GraphError, write: bool) -> JobError {
        let refused = match e.status() {
            Some(429) => true,
            Some(503) => matches!(&e, GraphError::Api { retry_after: Some(_), .. }),
            _ => false,
        };
        if refused {
            let after = match &e {
                GraphError::Api { retry_after, .. } => *retry_after,
                _ => None,
            };
            self.budget.refused(write, e.throttle_scope(), after).await
        } else {
            job_error(e)
        }
    }

    pub async fn check(&self, a: &Access) -> Result<Found, JobError> {
        let (g, u) = parts(a)?;
        let group = g.to_owned();
        self.reads
            .submit(g, u.to_owned(), |users| async move { self.flush_checks(&group, users).await })
            .await
            .map_err(|_| abandoned())?
    }

    async fn flush_checks(&self, group: &str, users: Vec<String>) -> Vec<Answer<Found>> {
        let n = users.len();
        if let Err(wait) = self.budget.read(&format!("read:{group}"), n as u32).await {
            return vec![Err(wait); n];
        }
        if n == 1 {
            let r = match self.graph.is_member(group, &users[0]).await {
                Ok(r) => Ok(Found { present: r.value, evidence: evidence(&r.correlation, self.now()) }),
                Err(e) => Err(self.failure(e, false).await),
            };
            return vec![r];
        }
        match self.graph.check_members(group, &users).await {
            Ok(r) => {
                let ev = evidence(&r.correlation, self.now());
                let mut out = Vec::with_capacity(n);
                for item in r.value {
                    out.push(match item {
                        Ok(present) => Ok(Found { present, evidence: ev.clone() }),
                        Err(e) => Err(self.failure(e, false).await),
                    });
                }
                out
            }
            Err(e) => vec![Err(self.failure(e, false).await); n],
        }
    }

    pub async fn grant(&self, a: &Access, _holder: &str) -> Result<Change, JobError> {
        let (g, u) = parts(a)?;
        let group = g.to_owned();
        self.adds
            .submit(g, u.to_owned(), |users| async move { self.flush_adds(&group, users).await })
            .await
            .map_err(|_| abandoned())?
    }

    async fn add_one(&self, group: &str, user: &str, batched: bool) -> Answer<Change> {
        self.budget.write(&format!("add:{group}:{user}")).await?;
        match self.graph.add_member(group, user).await {
            Ok(r) => Ok(Change {
                applied: r.value == AddOutcome::Added,
                evidence: evidence(&r.correlation, self.now()),
                batched,
                parts: Vec::new(),
            }),
            Err(e) => Err(self.failure(e, true).await),
        }
    }

    async fn flush_adds(&self, group: &str, users: Vec<String>) -> Vec<Answer<Change>> {
        let n = users.len();
        if n == 1 {
            return vec![self.add_one(group, &users[0], false).await];
        }
        if let Err(wait) = self.budget.write(&format!("add:{group}")).await {
            return vec![Err(wait); n];
        }
        match self.graph.add_members(group, &users).await {
            Ok(r) => {
                let change = Change {
                    applied: true,
                    evidence: evidence(&r.correlation, self.now()),
                    batched: true,
                    parts: Vec::new(),
                };
                vec![Ok(change); n]
            }
            // all or nothing: someone is already a member, or missing; one add each tells who
            Err(e) if e.status() == Some(400) => {
                tracing::info!(group, members = n, error = %e, "batched add refused; adding one by one");
                let mut out = Vec::with_capacity(n);
                for u in &users {
                    out.push(self.add_one(group, u, false).await);
                }
                out
            }
            Err(e) => vec![Err(self.failure(e, true).await); n],
        }
    }

    pub async fn revoke(&self, a: &Access, _holder: &str) -> Result<Change, JobError> {
        let (g, u) = parts(a)?;
        let group = g.to_owned();
        self.removes
            .submit(g, u.to_owned(), |users| async move { self.flush_removes(&group, users).await })
            .await
            .map_err(|_| abandoned())?
    }

    async fn flush_removes(&self, group: &str, users: Vec<String>) -> Vec<Answer<Change>> {
        let n = users.len();
        let removed = |o: RemoveOutcome, c: &Correlation, batched: bool| Change {
            applied: o == RemoveOutcome::Removed,
            evidence: evidence(c, self.now()),
            batched,
            parts: Vec::new(),
        };
        if n == 1 {
            if let Err(wait) = self.budget.write(&format!("remove:{group}:{}", users[0])).await {
                return vec![Err(wait)];
            }
            return vec![match self.graph.remove_member(group, &users[0]).await {
                Ok(r) => Ok(removed(r.value, &r.correlation, false)),
                Err(e) => Err(self.failure(e, true).await),
            }];
        }
        // every request of a $batch is a write of its own
        if let Err(wait) = self.budget.writes(&format!("remove:{group}"), n as u32).await {
            return vec![Err(wait); n];
        }
        match self.graph.remove_members(group, &users).await {
            Ok(r) => {
                let mut out = Vec::with_capacity(n);
                for item in r.value {
                    out.push(match item {
                        Ok(o) => Ok(removed(o, &r.correlation, true)),
                        Err(e) => Err(self.failure(e, true).await),
                    });
                }
                out
            }
            Err(e) => vec![Err(self.failure(e, true).await); n],
        }
    }
}
