//! Who an approver is, as the directory says: a door brings an identifier it verified (a Teams
//! `aadObjectId`, the email of a Slack user, a ServiceNow user's email, a sign-in's `oid`) and
//! this turns it into the [`Approver`] the approval plan judges: the directory object id, the
//! UPN, and which of the plan's approver groups the person is a member of. A disabled account
//! is no one.

use grantline_shared::policy::{ApprovalPlan, Approver};

use super::client::GraphClient;
use super::error::GraphError;

/// How a door names the person it verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim<'a> {
    /// A directory object id (Teams `from.aadObjectId`, the sign-in's `oid`).
    ObjectId(&'a str),
    /// A UPN or mail address (Slack's profile email, a ServiceNow user's email).
    Name(&'a str),
}

impl Claim<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            Claim::ObjectId(s) | Claim::Name(s) => s,
        }
    }
}

/// The groups (object ids) a plan lets approve: its `group` entries and group fallbacks.
pub fn plan_groups(plan: &ApprovalPlan) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for stage in &plan.stages {
        for g in stage.approvers.iter().chain(stage.fallback.iter()).filter_map(|a| a.group_id.as_ref()) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(g)) {
                out.push(g.clone());
            }
        }
    }
    out
}

impl GraphClient {
    /// The approver a claim names, with their membership of `groups` checked. `Ok(None)`: the
    /// directory knows no enabled account by that name.
    pub async fn approver(&self, claim: Claim<'_>, groups: &[String]) -> Result<Option<Approver>, GraphError> {
        let raw = claim.as_str().trim();
        if raw.is_empty() {
            return Ok(None);
        }
        let mut user = self.get_user(raw).await?.value;
        if user.is_none()
            && let Claim::Name(name) = claim
            && name.contains('@')
        {
            user = self.find_user_by_mail(name.trim()).await?.value;
        }
        let Some(user) = user else { return Ok(None) };
        if user.account_enabled == Some(false) {
            return Ok(None);
        }
        if let Claim::ObjectId(id) = claim
            && !user.id.eq_ignore_ascii_case(id.trim())
        {
            return Ok(None);
        }
        let mut member_of = Vec::new();
        for g in groups {
            if self.is_member(g, &user.id).await?.value {
                member_of.push(g.clone());
            }
        }
        let upn = Some(user.user_principal_name.clone()).filter(|u| !u.is_empty());
        Ok(Some(Approver { id: user.id, upn, member_of }))
    }
}
