//! Reading the directory for offboarding and reconciliation: the users delta query
//! (apis.md 2.10) and the direct members of a group, both paged.
//!
//! Delta: a first call `GET /users/delta?$select=...` starts a full sync; every page but the
//! last carries `@odata.nextLink`, the last `@odata.deltaLink`, which the caller stores and
//! polls later for what changed since. An expired or unknown token is 410
//! (`syncStateNotFound`, `resyncRequired`): [`GraphError::is_sync_reset`] says so, and the
//! caller restarts from a full sync. Links are followed only when they point at the configured
//! service root, so the bearer token never goes anywhere else.

use jiff::Timestamp;
use reqwest::Method;
use serde::Deserialize;
use url::Url;

use super::client::{GraphClient, graph_span, traced};
use super::error::GraphError;
use super::model::Correlated;

/// The properties the delta query tracks.
pub const DELTA_SELECT: &str = "id,userPrincipalName,accountEnabled,employeeLeaveDateTime";

/// One user as a delta page shows it. With a delta link only what changed is guaranteed to be
/// there; a property left out is `None`, one that is `null` is `Some(None)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaUser {
    pub id: String,
    pub user_principal_name: Option<String>,
    pub account_enabled: Option<bool>,
    pub employee_leave_date_time: Option<Option<Timestamp>>,
    /// `@removed.reason`: `changed` (soft-deleted, restorable) or `deleted` (gone for good).
    pub removed: Option<String>,
}

/// One page of a delta round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaPage {
    pub users: Vec<DeltaUser>,
    /// Another page of this round follows.
    pub next_link: Option<String>,
    /// The round is complete: poll this link next time.
    pub delta_link: Option<String>,
}

/// A direct member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    /// `#microsoft.graph.user`, `#microsoft.graph.group`, ...
    pub odata_type: Option<String>,
    pub user_principal_name: Option<String>,
}

impl Member {
    pub fn is_user(&self) -> bool {
        self.odata_type.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("#microsoft.graph.user"))
    }
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Timestamp>>, D::Error> {
    Option::<Timestamp>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct RawRemoved {
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawUser {
    id: String,
    #[serde(default)]
    user_principal_name: Option<String>,
    #[serde(default)]
    account_enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    employee_leave_date_time: Option<Option<Timestamp>>,
    #[serde(rename = "@removed", default)]
    removed: Option<RawRemoved>,
}

#[derive(Deserialize)]
struct RawPage<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMember {
    id: String,
    #[serde(rename = "@odata.type", default)]
    odata_type: Option<String>,
    #[serde(default)]
    user_principal_name: Option<String>,
}

/// A member page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPage {
    pub members: Vec<Member>,
    pub next_link: Option<String>,
}

impl GraphError {
    /// The delta token expired or is unknown: restart from a full sync.
    pub fn is_sync_reset(&self) -> bool {
        match self {
            GraphError::Api { status, body, .. } => {
                *status == 410
                    || ["syncStateNotFound", "resyncRequired", "syncStateInvalid"]
                        .iter()
                        .any(|c| body.code.eq_ignore_ascii_case(c))
            }
            _ => false,
        }
    }
}

impl GraphClient {
    /// A link Graph returned, accepted only under the configured service root.
    fn own_link(&self, link: &str) -> Result<Url, GraphError> {
        let url = Url::parse(link).map_err(|e| GraphError::InvalidInput { message: format!("link: {e}") })?;
        let base = self.base();
        let same_origin = url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default()
            && url.path().starts_with(base.path().trim_end_matches('/'));
        if !same_origin {
            return Err(GraphError::InvalidInput {
                message: format!(
                    "a link outside the configured Graph root was not followed: {}",
                    url.origin().ascii_serialization()
                ),
            });
        }
        Ok(url)
    }

    /// One page of the users delta: the first page of a full sync when `link` is `None`, else
    /// the page a stored `@odata.nextLink` or `@odata.deltaLink` names.
    pub async fn users_delta(&self, link: Option<&str>) -> Result<Correlated<DeltaPage>, GraphError> {
        let url = match link {
            Some(l) => self.own_link(l)?,
            None => {
                let mut url = crate::http::join_segments(self.base(), &["users", "delta"]);
                url.query_pairs_mut().append_pair("$select", DELTA_SELECT);
                url
            }
        };
        let span = graph_span!("graph.users_delta", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None).await?;
            if !reply.status.is_success() {
                return Err(self.api_error(reply));
            }
            let correlation = reply.correlation.clone();
            let raw: RawPage<RawUser> = serde_json::from_slice(&reply.body)
                .map_err(|e| GraphError::Decode { message: e.to_string(), correlation: correlation.clone() })?;
            if raw.next_link.is_none() && raw.delta_link.is_none() {
                return Err(GraphError::Decode {
                    message: "a delta page carries neither @odata.nextLink nor @odata.deltaLink".into(),
                    correlation,
                });
            }
            let users = raw
                .value
                .into_iter()
                .map(|u| DeltaUser {
                    id: u.id,
                    user_principal_name: u.user_principal_name,
                    account_enabled: u.account_enabled,
                    employee_leave_date_time: u.employee_leave_date_time,
                    removed: u.removed.map(|r| r.reason),
                })
                .collect();
            Ok(Correlated {
                value: DeltaPage { users, next_link: raw.next_link, delta_link: raw.delta_link },
                correlation,
            })
        })
        .await
    }

    /// One page of a group's direct members (`GET /groups/{id}/members?$select=id,userPrincipalName`),
    /// from the start or from a `@odata.nextLink`. A group Graph does not know is `Ok(None)`.
    pub async fn group_members(
        &self,
        group_id: &str,
        link: Option<&str>,
    ) -> Result<Correlated<Option<MemberPage>>, GraphError> {
        let url = match link {
            Some(l) => self.own_link(l)?,
            None => {
                if group_id.trim().is_empty() {
                    return Err(GraphError::InvalidInput { message: "group id is empty".into() });
                }
                let mut url = crate::http::join_segments(self.base(), &["groups", group_id, "members"]);
                url.query_pairs_mut().append_pair("$select", "id,userPrincipalName").append_pair("$top", "999");
                url
            }
        };
        let span = graph_span!("graph.group_members", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None).await?;
            if reply.status == reqwest::StatusCode::NOT_FOUND {
                return Ok(Correlated { value: None, correlation: reply.correlation });
            }
            if !reply.status.is_success() {
                return Err(self.api_error(reply));
            }
            let correlation = reply.correlation.clone();
            let raw: RawPage<RawMember> = serde_json::from_slice(&reply.body)
                .map_err(|e| GraphError::Decode { message: e.to_string(), correlation: correlation.clone() })?;
            let members = raw
                .value
                .into_iter()
                .map(|m| Member { id: m.id, odata_type: m.odata_type, user_principal_name: m.user_principal_name })
                .collect();
            Ok(Correlated { value: Some(MemberPage { members, next_link: raw.next_link }), correlation })
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_page_tells_left_out_from_null() {
        let raw: RawPage<RawUser> = serde_json::from_str(
            r#"{"value":[
                {"id":"a","accountEnabled":false},
                {"id":"b","employeeLeaveDateTime":null},
                {"id":"c","employeeLeaveDateTime":"2026-01-02T00:00:00Z"},
                {"id":"d","@removed":{"reason":"deleted"}}
            ],"@odata.deltaLink":"https://graph/v1.0/users/delta?$deltatoken=x"}"#,
        )
        .unwrap();
        assert_eq!(raw.value[0].account_enabled, Some(false));
        assert_eq!(raw.value[0].employee_leave_date_time, None);
        assert_eq!(raw.value[1].employee_leave_date_time, Some(None));
        assert!(raw.value[2].employee_leave_date_time.flatten().is_some());
        assert_eq!(raw.value[3].removed.as_ref().map(|r| r.reason.as_str()), Some("deleted"));
        assert!(raw.next_link.is_none() && raw.delta_link.is_some());
    }
}
