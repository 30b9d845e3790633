//! Who an approver is, as the directory says: a door brings an identifier it verified (a Teams
//! `aadObjectId`, the email of a Slack user, a ServiceNow user's email, a sign-in's `oid`) and
//! this turns it into the [`Approver`] the approval plan judges: the directory object id, the
//! UPN, and which of the plan's approver groups the person is a member of, directly or through
//! nested groups (`checkMemberGroups`). A disabled account is no one. So one person is one
//! approver whichever door and whichever of their names (object id, UPN, mail) the answer
//! came with: the plan compares the directory's id and UPN, never the string the door brought.

use grantline_shared::policy::{ApprovalPlan, Approver};
use jiff::Timestamp;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::client::{GraphClient, graph_span, traced};
use super::error::GraphError;
use super::model::DirectoryObject;
use crate::http;

/// Most members read of one approver group (the people asked to approve).
pub const MAX_GROUP_APPROVERS: usize = 200;

/// Most group ids `checkMemberGroups` takes in one call (apis.md 2.6).
const CHECK_MEMBER_GROUPS_MAX: usize = 20;

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
        let member_of = self.member_groups(&user.id, groups).await?;
        let upn = Some(user.user_principal_name.clone()).filter(|u| !u.is_empty());
        Ok(Some(Approver { id: user.id, upn, member_of }))
    }
}

#[derive(Deserialize)]
struct GroupIds {
    #[serde(default)]
    value: Vec<String>,
}

impl GraphClient {
    /// Of `groups` (object ids), those `user_id` is a member of, directly or through nested
    /// groups: `POST /users/{id}/checkMemberGroups`, at most 20 ids a call. In the order given.
    pub async fn member_groups(&self, user_id: &str, groups: &[String]) -> Result<Vec<String>, GraphError> {
        if user_id.trim().is_empty() {
            return Err(GraphError::InvalidInput { message: "user id is empty".into() });
        }
        let mut found: Vec<String> = Vec::new();
        for chunk in groups.chunks(CHECK_MEMBER_GROUPS_MAX) {
            let url = http::join_segments(self.base(), &["users", user_id, "checkMemberGroups"]);
            let body = serde_json::json!({ "groupIds": chunk });
            let span = graph_span!("graph.check_member_groups", Method::POST, url);
            let ids: GroupIds = traced(span, async {
                let reply = self.execute(Method::POST, url, Some(&body)).await?;
                if !reply.status.is_success() {
                    return Err(self.api_error(reply));
                }
                serde_json::from_slice(&reply.body)
                    .map_err(|e| GraphError::Decode { message: e.to_string(), correlation: reply.correlation })
            })
            .await?;
            found.extend(ids.value);
        }
        Ok(groups.iter().filter(|g| found.iter().any(|f| f.eq_ignore_ascii_case(g))).cloned().collect())
    }
}

#[derive(Deserialize)]
struct MembersPage {
    #[serde(default)]
    value: Vec<DirectoryObject>,
    #[serde(rename = "@odata.nextLink", default)]
    next: Option<String>,
}

/// `automaticRepliesSetting` of `mailboxSettings`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AutoReplies {
    #[serde(default)]
    status: String,
    #[serde(default)]
    scheduled_start_date_time: Option<GraphDateTime>,
    #[serde(default)]
    scheduled_end_date_time: Option<GraphDateTime>,
}

/// Graph's `dateTimeTimeZone`: a local date-time and a zone name (grantline reads UTC ones).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphDateTime {
    date_time: String,
    #[serde(default)]
    time_zone: String,
}

impl GraphDateTime {
    fn timestamp(&self) -> Option<Timestamp> {
        let zone = if self.time_zone.is_empty() { "UTC" } else { self.time_zone.as_str() };
        let civil: jiff::civil::DateTime = self.date_time.trim_end_matches('Z').parse().ok()?;
        civil.in_tz(zone).ok().map(|z| z.timestamp())
    }
}

impl GraphClient {
    /// The users among a group's members, directly or through nested groups (`GET
    /// /groups/{id}/transitiveMembers`, paged), at most [`MAX_GROUP_APPROVERS`]: the people a
    /// `group` approver entry asks, the same people its membership check lets answer.
    pub async fn list_members(&self, group_id: &str) -> Result<Vec<DirectoryObject>, GraphError> {
        if group_id.trim().is_empty() {
            return Err(GraphError::InvalidInput { message: "group id is empty".into() });
        }
        let mut url = http::join_segments(self.base(), &["groups", group_id, "transitiveMembers"]);
        url.query_pairs_mut()
            .append_pair("$select", "id,displayName,userPrincipalName,mail")
            .append_pair("$top", "100");
        let mut out = Vec::new();
        loop {
            let span = graph_span!("graph.list_members", Method::GET, url);
            let page: MembersPage = traced(span, async {
                let reply = self.execute(Method::GET, url.clone(), None).await?;
                if !reply.status.is_success() {
                    return Err(self.api_error(reply));
                }
                serde_json::from_slice(&reply.body)
                    .map_err(|e| GraphError::Decode { message: e.to_string(), correlation: reply.correlation })
            })
            .await?;
            out.extend(
                page.value.into_iter().filter(|o| {
                    o.odata_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("#microsoft.graph.user"))
                }),
            );
            match page.next.and_then(|n| url::Url::parse(&n).ok()) {
                // the next page must be on the same service
                Some(next) if next.origin() == self.base().origin() && out.len() < MAX_GROUP_APPROVERS => url = next,
                _ => break,
            }
        }
        out.truncate(MAX_GROUP_APPROVERS);
        Ok(out)
    }

    /// Whether a user's automatic replies are on at `now` (`GET
    /// /users/{id}/mailboxSettings/automaticRepliesSetting`): `alwaysEnabled`, or `scheduled`
    /// with `now` inside the window. No mailbox (404) is not out of office.
    pub async fn out_of_office(&self, user_id: &str, now: Timestamp) -> Result<bool, GraphError> {
        if user_id.trim().is_empty() {
            return Err(GraphError::InvalidInput { message: "user id is empty".into() });
        }
        let url = http::join_segments(self.base(), &["users", user_id, "mailboxSettings", "automaticRepliesSetting"]);
        let span = graph_span!("graph.out_of_office", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None).await?;
            if reply.status == StatusCode::NOT_FOUND {
                return Ok(false);
            }
            if !reply.status.is_success() {
                return Err(self.api_error(reply));
            }
            let r: AutoReplies = serde_json::from_slice(&reply.body)
                .map_err(|e| GraphError::Decode { message: e.to_string(), correlation: reply.correlation })?;
            Ok(match r.status.as_str() {
                s if s.eq_ignore_ascii_case("alwaysEnabled") => true,
                s if s.eq_ignore_ascii_case("scheduled") => {
                    let start = r.scheduled_start_date_time.as_ref().and_then(GraphDateTime::timestamp);
                    let end = r.scheduled_end_date_time.as_ref().and_then(GraphDateTime::timestamp);
                    start.is_none_or(|s| s <= now) && end.is_none_or(|e| now < e)
                }
                _ => false,
            })
        })
        .await
    }
}
