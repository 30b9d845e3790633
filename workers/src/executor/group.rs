//! Entra group membership through Microsoft Graph: check with `GET
//! /groups/{id}/members/{uid}`, grant with `POST /groups/{id}/members/$ref` ("already exists" is
//! success), revoke with `DELETE /groups/{id}/members/{uid}/$ref` (always with `/$ref`: without
//! it Graph would delete the user).

use grantline_connectors::GraphClient;
use grantline_connectors::graph::{AddOutcome, RemoveOutcome};
use grantline_queue::JobError;
use grantline_shared::Clock;

use super::{Access, Change, Found};
use crate::steps::{evidence, job_error};

/// The group executor.
#[derive(Clone)]
pub struct GroupExecutor {
    graph: GraphClient,
    clock: Clock,
}

fn parts(a: &Access) -> Result<(&str, &str), JobError> {
    match a {
        Access::Group { group_id, user_id, .. } => Ok((group_id, user_id)),
        Access::Mailbox { .. } => Err(JobError::permanent("grant.wrong_executor", "not a group membership")),
    }
}

impl GroupExecutor {
    pub fn new(graph: GraphClient, clock: Clock) -> Self {
        Self { graph, clock }
    }

    pub async fn check(&self, a: &Access) -> Result<Found, JobError> {
        let (g, u) = parts(a)?;
        let r = self.graph.is_member(g, u).await.map_err(job_error)?;
        Ok(Found { present: r.value, evidence: evidence(&r.correlation, self.clock.now_ms()) })
    }

    pub async fn grant(&self, a: &Access, _holder: &str) -> Result<Change, JobError> {
        let (g, u) = parts(a)?;
        let r = self.graph.add_member(g, u).await.map_err(job_error)?;
        Ok(Change {
            applied: r.value == AddOutcome::Added,
            evidence: evidence(&r.correlation, self.clock.now_ms()),
            batched: false,
        })
    }

    pub async fn revoke(&self, a: &Access, _holder: &str) -> Result<Change, JobError> {
        let (g, u) = parts(a)?;
        let r = self.graph.remove_member(g, u).await.map_err(job_error)?;
        Ok(Change {
            applied: r.value == RemoveOutcome::Removed,
            evidence: evidence(&r.correlation, self.clock.now_ms()),
            batched: false,
        })
    }
}
