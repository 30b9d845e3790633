//! Many membership changes and reads in few calls: `PATCH /groups/{id}` with
//! `members@odata.bind` (up to 20 members, one write, all or nothing), and JSON batching
//! (`POST /$batch`, up to 20 requests, each answered and throttled on its own).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{GraphClient, graph_span, traced};
use super::error::{GraphError, GraphErrorBody};
use super::model::{Correlated, Correlation, DirectoryObject, Group, RemoveOutcome, User};
use crate::http;

/// Most members one `members@odata.bind` PATCH, and most requests one `$batch`, may carry.
pub const MAX_BATCH: usize = 20;

/// One request of a `$batch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchRequest {
    /// Unique within the batch.
    pub id: String,
    pub method: String,
    /// Relative to the service root, without the version: `/groups/{id}/members/{uid}`.
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

impl BatchRequest {
    pub fn get(id: impl Into<String>, url: impl Into<String>) -> Self {
        Self { id: id.into(), method: "GET".into(), url: url.into(), headers: None, body: None }
    }

    pub fn delete(id: impl Into<String>, url: impl Into<String>) -> Self {
        Self { id: id.into(), method: "DELETE".into(), url: url.into(), headers: None, body: None }
    }

    pub fn post(id: impl Into<String>, url: impl Into<String>, body: Value) -> Self {
        let headers = BTreeMap::from([("Content-Type".to_owned(), "application/json".to_owned())]);
        Self { id: id.into(), method: "POST".into(), url: url.into(), headers: Some(headers), body: Some(body) }
    }
}

/// One answer of a `$batch`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BatchResponse {
    pub id: String,
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<Value>,
}

impl BatchResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The item's own `Retry-After`, when it was throttled.
    pub fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after").and_then(|v| http::parse_retry_after(v, jiff::Timestamp::now()))
    }

    /// The item's error body.
    pub fn error_body(&self) -> GraphErrorBody {
        match &self.body {
            Some(b) => GraphErrorBody::parse(b.to_string().as_bytes()),
            None => GraphErrorBody::default(),
        }
    }

    /// The item's failure as a classified error, carrying the batch's correlation ids.
    pub fn to_error(&self, correlation: &Correlation) -> GraphError {
        GraphError::Api {
            status: self.status,
            body: self.error_body(),
            retry_after: self.retry_after(),
            throttle_scope: self.header("x-ms-throttle-scope").map(str::to_owned),
            correlation: correlation.clone(),
        }
    }
}

#[derive(Deserialize)]
struct BatchEnvelope {
    #[serde(default)]
    responses: Vec<BatchResponse>,
}

/// The outcome of one item of a batched operation.
pub type ItemResult<T> = Result<T, GraphError>;

impl GraphClient {
    /// `POST /$batch` with at most 20 requests. The envelope's 200 says nothing about the
    /// items: each answer carries its own status. Answers are returned in request order.
    pub async fn batch(&self, requests: &[BatchRequest]) -> Result<Correlated<Vec<BatchResponse>>, GraphError> {
        if requests.is_empty() || requests.len() > MAX_BATCH {
            return Err(GraphError::InvalidInput {
                message: format!("a batch holds 1 to {MAX_BATCH} requests, not {}", requests.len()),
            });
        }
        let url = http::join_segments(self.base(), &["$batch"]);
        let body = serde_json::json!({ "requests": requests });
        let span = graph_span!("graph.batch", Method::POST, url);
        span.record("batch.size", requests.len());
        traced(span, async {
            let reply = self.execute(Method::POST, url, Some(&body)).await?;
            if !reply.status.is_success() {
                return Err(self.api_error(reply));
            }
            let correlation = reply.correlation.clone();
            let env: BatchEnvelope = serde_json::from_slice(&reply.body)
                .map_err(|e| GraphError::Decode { message: e.to_string(), correlation: correlation.clone() })?;
            // each answer inside the envelope is an upstream answer of its own
            for r in &env.responses {
                grantline_shared::metrics::upstream_response("graph_batch_item", r.status);
            }
            // answers may come in any order: match them on id
            let mut by_id: BTreeMap<String, BatchResponse> =
                env.responses.into_iter().map(|r| (r.id.to_ascii_lowercase(), r)).collect();
            let mut out = Vec::with_capacity(requests.len());
            for r in requests {
                match by_id.remove(&r.id.to_ascii_lowercase()) {
                    Some(a) => out.push(a),
                    None => {
                        return Err(GraphError::Decode {
                            message: format!("the batch answer has no response for request {}", r.id),
                            correlation,
                        });
                    }
                }
            }
            Ok(Correlated { value: out, correlation })
        })
        .await
    }

    /// Adds up to 20 members at once: `PATCH /groups/{id}` with `members@odata.bind`. One write
    /// for all of them, but all or nothing: one member that is already there (or does not
    /// exist) fails the whole call with 400 and adds nobody, so callers check membership first
    /// and fall back to one add per member on a 400.
    pub async fn add_members(&self, group_id: &str, user_ids: &[String]) -> Result<Correlated<()>, GraphError> {
        if user_ids.is_empty() || user_ids.len() > MAX_BATCH {
            return Err(GraphError::InvalidInput {
                message: format!("members@odata.bind takes 1 to {MAX_BATCH} members, not {}", user_ids.len()),
            });
        }
        if group_id.trim().is_empty() || user_ids.iter().any(|u| u.trim().is_empty()) {
            return Err(GraphError::InvalidInput { message: "a group or member id is empty".into() });
        }
        let url = http::join_segments(self.base(), &["groups", group_id]);
        let binds: Vec<String> = user_ids.iter().map(|u| self.directory_object_ref(u)).collect();
        let body = serde_json::json!({ "members@odata.bind": binds });
        let span = graph_span!("graph.add_members", Method::PATCH, url);
        span.record("batch.size", user_ids.len());
        traced(span, async {
            let reply = self.execute(Method::PATCH, url, Some(&body)).await?;
            if reply.status.is_success() {
                Ok(Correlated { value: (), correlation: reply.correlation })
            } else {
                Err(self.api_error(reply))
            }
        })
        .await
    }

    /// Direct membership of up to 20 users in one group, in one `$batch` of
    /// `GET /groups/{gid}/members/{uid}?$select=id` (200 a member, 404 not). Per user: the
    /// answer, or the item's own failure (a throttled item carries its Retry-After).
    pub async fn check_members(
        &self,
        group_id: &str,
        user_ids: &[String],
    ) -> Result<Correlated<Vec<ItemResult<bool>>>, GraphError> {
        let requests: Vec<BatchRequest> = user_ids
            .iter()
            .enumerate()
            .map(|(i, u)| {
                BatchRequest::get(i.to_string(), format!("/groups/{}/members/{}?$select=id", seg(group_id), seg(u)))
            })
            .collect();
        let r = self.batch(&requests).await?;
        let correlation = r.correlation.clone();
        let value = r
            .value
            .iter()
            .map(|a| match a.status {
                s if (200..300).contains(&s) => Ok(true),
                404 => Ok(false),
                _ => Err(a.to_error(&correlation)),
            })
            .collect();
        Ok(Correlated { value, correlation })
    }

    /// Removes up to 20 members of one group in one `$batch` of `DELETE
    /// /groups/{gid}/members/{uid}/$ref` (always with `/$ref`). Per user: removed, not a
    /// member (404, or the 400 "do not exist"), or the item's own failure.
    pub async fn remove_members(
        &self,
        group_id: &str,
        user_ids: &[String],
    ) -> Result<Correlated<Vec<ItemResult<RemoveOutcome>>>, GraphError> {
        let requests: Vec<BatchRequest> = user_ids
            .iter()
            .enumerate()
            .map(|(i, u)| {
                BatchRequest::delete(i.to_string(), format!("/groups/{}/members/{}/$ref", seg(group_id), seg(u)))
            })
            .collect();
        let r = self.batch(&requests).await?;
        let correlation = r.correlation.clone();
        let value = r
            .value
            .iter()
            .map(|a| match a.status {
                s if (200..300).contains(&s) => Ok(RemoveOutcome::Removed),
                404 => Ok(RemoveOutcome::NotAMember),
                400 if a.error_body().is_references_do_not_exist() => Ok(RemoveOutcome::NotAMember),
                _ => Err(a.to_error(&correlation)),
            })
            .collect();
        Ok(Correlated { value, correlation })
    }
}

/// What the directory says of a person and the group they ask for, read in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryFacts {
    /// `None`: no user has that UPN (404).
    pub user: Option<User>,
    /// `None`: no manager is set.
    pub manager: Option<DirectoryObject>,
    /// Of the groups asked about, those the user is a member of (transitively).
    pub member_of: Vec<String>,
    /// The target group; `None` when it does not exist (or none was asked for).
    pub group: Option<Group>,
    /// Whether the user is a direct member of the target group.
    pub direct_member: Option<bool>,
    /// The other person asked about (whoever filed the ticket), when found.
    pub other: Option<User>,
}

impl GraphClient {
    /// Everything validate needs from the directory about one person, in one `$batch`: the
    /// user (by UPN), their manager, which of `groups` they belong to (`checkMemberGroups`,
    /// transitive), and the target group with their direct membership of it
    /// (`/users/{upn}/memberOf/{gid}`). An item that fails with anything but "not found" fails
    /// the whole read, classified (a throttled item carries its Retry-After).
    pub async fn directory_facts(
        &self,
        upn: &str,
        groups: &[String],
        target_group: Option<&str>,
        other_upn: Option<&str>,
    ) -> Result<Correlated<DirectoryFacts>, GraphError> {
        super::client::non_empty("user", upn)?;
        if let Some(g) = target_group {
            super::client::non_empty("group id", g)?;
        }
        if let Some(o) = other_upn {
            super::client::non_empty("user", o)?;
        }
        let u = seg(upn);
        let mut requests = vec![
            BatchRequest::get("user", format!("/users/{u}?{}", super::client::USER_SELECT)),
            BatchRequest::get("manager", format!("/users/{u}/manager?$select=id,userPrincipalName,displayName")),
        ];
        let asked: Vec<String> = groups.iter().take(MAX_BATCH).cloned().collect();
        if !asked.is_empty() {
            requests.push(BatchRequest::post(
                "groups",
                format!("/users/{u}/checkMemberGroups"),
                serde_json::json!({ "groupIds": asked }),
            ));
        }
        if let Some(g) = target_group {
            let g = seg(g);
            requests.push(BatchRequest::get("group", format!("/groups/{g}?{}", super::client::GROUP_SELECT)));
            requests.push(BatchRequest::get("direct", format!("/users/{u}/memberOf/{g}?$select=id")));
        }
        if let Some(o) = other_upn.filter(|o| !o.trim().is_empty()) {
            requests.push(BatchRequest::get("other", format!("/users/{}?{}", seg(o), super::client::USER_SELECT)));
        }
        let r = self.batch(&requests).await?;
        let correlation = r.correlation.clone();
        let mut facts = DirectoryFacts {
            user: None,
            manager: None,
            member_of: Vec::new(),
            group: None,
            direct_member: None,
            other: None,
        };
        let decode = |a: &BatchResponse| -> Result<Value, GraphError> {
            a.body.clone().ok_or_else(|| GraphError::Decode {
                message: format!("batch item {} has no body", a.id),
                correlation: correlation.clone(),
            })
        };
        for a in &r.value {
            let found = a.is_success();
            if !found && a.status != 404 {
                return Err(a.to_error(&correlation));
            }
            match a.id.as_str() {
                "user" if found => facts.user = Some(typed(decode(a)?, &correlation)?),
                "manager" if found => facts.manager = Some(typed(decode(a)?, &correlation)?),
                "groups" if found => {
                    #[derive(Deserialize)]
                    struct Ids {
                        #[serde(default)]
                        value: Vec<String>,
                    }
                    facts.member_of = typed::<Ids>(decode(a)?, &correlation)?.value;
                }
                "group" if found => facts.group = Some(typed(decode(a)?, &correlation)?),
                "direct" => facts.direct_member = Some(found),
                "other" if found => facts.other = Some(typed(decode(a)?, &correlation)?),
                _ => {}
            }
        }
        if facts.user.is_none() {
            // the other items asked about a user that does not exist
            facts.manager = None;
            facts.member_of.clear();
            facts.direct_member = None;
        }
        Ok(Correlated { value: facts, correlation })
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: Value, correlation: &Correlation) -> Result<T, GraphError> {
    serde_json::from_value(v)
        .map_err(|e| GraphError::Decode { message: e.to_string(), correlation: correlation.clone() })
}

/// One path segment of a batch URL, percent-encoded.
fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_report_their_own_retry_after_and_scope() {
        let r: BatchResponse = serde_json::from_value(serde_json::json!({
            "id": "3", "status": 429,
            "headers": {"Retry-After": "7", "x-ms-throttle-scope": "Tenant_Application/Write/a/t"},
            "body": {"error": {"code": "Request_ThrottledTemporarily", "message": "slow down"}}
        }))
        .unwrap();
        assert!(!r.is_success());
        assert_eq!(r.retry_after(), Some(Duration::from_secs(7)));
        let e = r.to_error(&Correlation { request_id: Some("b".into()), client_request_id: "c".into() });
        assert_eq!(e.code(), "graph.throttled");
        assert_eq!(e.throttle_scope(), Some("Tenant_Application/Write/a/t"));
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
    }
}
