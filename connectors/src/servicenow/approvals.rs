//! Approval records (`sysapproval_approver`) on a requested item, as grantline keeps them: one
//! record per approver of a stage, read back to learn what an approver decided in ServiceNow,
//! and written when the decision was taken elsewhere (or no longer needs this approver).
//!
//! The records are plain Table API rows: `sysapproval` and `document_id` name the RITM,
//! `source_table` is `sc_req_item`, `approver` references the `sys_user`. Their `comments` are a
//! journal field: every write that carries one appends an entry (so these writes are not
//! idempotent; read [`ServiceNowClient::list_approvals`] first), and reads return `""`, which is
//! why [`ServiceNowClient::approval_comments`] reads `sys_journal_field`.
//!
//! This module is a child of the client so it shares its request plumbing (authentication,
//! the 401 retry, spans, error mapping).

use reqwest::Method;

use super::{Many, One, ServiceNowClient, ServiceNowError, check_id, decode_success, traced};
use crate::servicenow::model::{
    ApprovalRecord, ApprovalState, JOURNAL_FIELDS, JournalEntry, RawRecord, ServiceNowUser, USER_FIELDS,
    parse_glide_datetime,
};

/// The fields of `sysapproval_approver` grantline reads.
const APPROVAL_FIELDS: &str = "sys_id,state,approver,comments,sys_updated_on,sys_updated_by";

/// The longest user name or address [`ServiceNowClient::find_user`] accepts (an e-mail address
/// is at most 254 characters).
const MAX_LOOKUP_LEN: usize = 254;

impl ApprovalRecord {
    fn from_raw(raw: &RawRecord) -> Self {
        ApprovalRecord {
            sys_id: raw.value("sys_id"),
            state: ApprovalState::parse(&raw.value("state")),
            approver: raw.reference("approver"),
            updated_on: parse_glide_datetime(&raw.value("sys_updated_on")),
            updated_by: raw.value("sys_updated_by"),
        }
    }
}

/// A value that goes into an encoded query as the right-hand side of `=`: refuse what would
/// change the query rather than try to escape it. `^` starts a new term (`^OR`, `^NQ`, ...) and
/// the instance evaluates a `javascript:` value as a script.
fn check_query_value<'a>(what: &str, value: &'a str) -> Result<&'a str, ServiceNowError> {
    let value = value.trim();
    let refuse = |why: &str| Err(ServiceNowError::InvalidInput { message: format!("{what} {why}") });
    if value.is_empty() {
        return refuse("is empty");
    }
    if value.len() > MAX_LOOKUP_LEN {
        return refuse(&format!("is longer than {MAX_LOOKUP_LEN} bytes"));
    }
    if value.contains('^') {
        return refuse("contains '^', which would add terms to the query");
    }
    if value.chars().any(char::is_control) {
        return refuse("contains a control character");
    }
    if value.to_ascii_lowercase().contains("javascript:") {
        return refuse("contains 'javascript:', which the instance would run as a script");
    }
    Ok(value)
}

impl ServiceNowClient {
    /// The user whose `email` or `user_name` is `email_or_user_name` (the instance compares
    /// without regard to case), from
    /// `sys_user?sysparm_query=email=<x>^ORuser_name=<x>&sysparm_limit=1`; `None` when no user
    /// matches. Input that would change the query (`^`, control characters, `javascript:`) is
    /// refused as `servicenow.invalid_input` before anything is sent.
    pub async fn find_user(&self, email_or_user_name: &str) -> Result<Option<ServiceNowUser>, ServiceNowError> {
        let key = check_query_value("email_or_user_name", email_or_user_name)?;
        let mut url = self.table_url("sys_user", None);
        url.query_pairs_mut()
            .append_pair("sysparm_query", &format!("email={key}^ORuser_name={key}"))
            .append_pair("sysparm_limit", "1")
            .append_pair("sysparm_fields", USER_FIELDS);
        let span = sn_span!("servicenow.find_user", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None, false).await?;
            let many: Many = decode_success(reply)?;
            Ok(many.result.first().map(ServiceNowUser::from_raw))
        })
        .await
    }

    /// Creates one approval record for `approver_user_sys_id` on the RITM, state `requested`:
    /// `POST /api/now/table/sysapproval_approver`. `comments` (when not empty) becomes the
    /// record's first journal comment, e.g. what is asked and where else it can be answered.
    ///
    /// The RITM is read first, so an unknown one is `servicenow.not_found` rather than a record
    /// that points nowhere. Each call creates a new record: list the RITM's approvals first
    /// when retrying.
    pub async fn create_approval(
        &self,
        ritm_sys_id: &str,
        approver_user_sys_id: &str,
        comments: &str,
    ) -> Result<ApprovalRecord, ServiceNowError> {
        check_id("ritm sys_id", ritm_sys_id)?;
        check_id("approver sys_id", approver_user_sys_id)?;
        self.get_ritm(ritm_sys_id).await?;
        let mut body = serde_json::json!({
            "sysapproval": ritm_sys_id,
            "document_id": ritm_sys_id,
            "source_table": "sc_req_item",
            "approver": approver_user_sys_id,
            "state": ApprovalState::Requested.as_str(),
        });
        if !comments.trim().is_empty() {
            body["comments"] = serde_json::Value::from(comments);
        }
        let mut url = self.table_url("sysapproval_approver", None);
        url.query_pairs_mut()
            .append_pair("sysparm_display_value", "all")
            .append_pair("sysparm_fields", APPROVAL_FIELDS);
        let span = sn_span!("servicenow.create_approval", Method::POST, url);
        traced(span, async {
            let reply = self.execute(Method::POST, url, Some(&body), false).await?;
            let one: One = decode_success(reply)?;
            Ok(ApprovalRecord::from_raw(&one.result))
        })
        .await
    }

    /// The approval records of a RITM, oldest first:
    /// `sysapproval_approver?sysparm_query=sysapproval=<ritm>` with display values, so each
    /// approver reference carries the user's name. Empty when the RITM has none (or does not
    /// exist: the Table API answers an empty list).
    pub async fn list_approvals(&self, ritm_sys_id: &str) -> Result<Vec<ApprovalRecord>, ServiceNowError> {
        check_id("ritm sys_id", ritm_sys_id)?;
        let mut url = self.table_url("sysapproval_approver", None);
        url.query_pairs_mut()
            .append_pair("sysparm_query", &format!("sysapproval={ritm_sys_id}^ORDERBYsys_created_on"))
            .append_pair("sysparm_fields", APPROVAL_FIELDS)
            .append_pair("sysparm_display_value", "all");
        let span = sn_span!("servicenow.list_approvals", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None, false).await?;
            let many: Many = decode_success(reply)?;
            Ok(many.result.iter().map(ApprovalRecord::from_raw).collect())
        })
        .await
    }

    /// One approval record: `GET /api/now/table/sysapproval_approver/{sys_id}`. A 404 is
    /// `servicenow.not_found`.
    pub async fn get_approval(&self, approval_sys_id: &str) -> Result<ApprovalRecord, ServiceNowError> {
        check_id("approval sys_id", approval_sys_id)?;
        let mut url = self.table_url("sysapproval_approver", Some(approval_sys_id));
        url.query_pairs_mut()
            .append_pair("sysparm_display_value", "all")
            .append_pair("sysparm_fields", APPROVAL_FIELDS);
        let span = sn_span!("servicenow.get_approval", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None, false).await?;
            let one: One = decode_success(reply)?;
            Ok(ApprovalRecord::from_raw(&one.result))
        })
        .await
    }

    /// The comments journal of an approval record, oldest first, from
    /// `sys_journal_field?sysparm_query=element_id=<sys_id>^element=comments`: what the
    /// approver wrote when answering in ServiceNow (`sys_created_by` names who wrote each).
    pub async fn approval_comments(&self, approval_sys_id: &str) -> Result<Vec<JournalEntry>, ServiceNowError> {
        check_id("approval sys_id", approval_sys_id)?;
        let mut url = self.table_url("sys_journal_field", None);
        url.query_pairs_mut()
            .append_pair("sysparm_query", &format!("element_id={approval_sys_id}^element=comments"))
            .append_pair("sysparm_fields", JOURNAL_FIELDS);
        let span = sn_span!("servicenow.approval_comments", Method::GET, url);
        traced(span, async {
            let reply = self.execute(Method::GET, url, None, false).await?;
            let many: Many = decode_success(reply)?;
            let mut entries: Vec<JournalEntry> = many.result.iter().map(JournalEntry::from_raw).collect();
            entries.sort_by(|a, b| a.sys_created_on.cmp(&b.sys_created_on));
            Ok(entries)
        })
        .await
    }

    /// Writes a decision taken elsewhere, or closes a record nobody needs to answer any more:
    /// `PATCH /api/now/table/sysapproval_approver/{sys_id}` with `state` and, when not empty,
    /// `comments` (appended to the journal on every call). Returns the updated record; a 404
    /// is `servicenow.not_found`.
    pub async fn set_approval(
        &self,
        approval_sys_id: &str,
        state: ApprovalState,
        comments: &str,
    ) -> Result<ApprovalRecord, ServiceNowError> {
        check_id("approval sys_id", approval_sys_id)?;
        if state.as_str().trim().is_empty() || state.as_str().chars().any(char::is_control) {
            return Err(ServiceNowError::InvalidInput {
                message: "the approval state is empty or has control characters".to_owned(),
            });
        }
        let mut body = serde_json::json!({ "state": state.as_str() });
        if !comments.trim().is_empty() {
            body["comments"] = serde_json::Value::from(comments);
        }
        let mut url = self.table_url("sysapproval_approver", Some(approval_sys_id));
        url.query_pairs_mut()
            .append_pair("sysparm_display_value", "all")
            .append_pair("sysparm_fields", APPROVAL_FIELDS);
        let span = sn_span!("servicenow.set_approval", Method::PATCH, url);
        traced(span, async {
            let reply = self.execute(Method::PATCH, url, Some(&body), false).await?;
            let one: One = decode_success(reply)?;
            Ok(ApprovalRecord::from_raw(&one.result))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_that_would_change_the_query_are_refused() {
        assert_eq!(check_query_value("x", "  AlexW@contoso.com ").unwrap(), "AlexW@contoso.com");
        assert_eq!(check_query_value("x", "o'brien+it@contoso.com").unwrap(), "o'brien+it@contoso.com");
        for bad in ["", "   ", "a@b.c^ORactive=true", "^NQuser_name=admin", "alex\nw", "JavaScript:gs.getUserID()"] {
            let err = check_query_value("x", bad).unwrap_err();
            assert_eq!(err.code(), "servicenow.invalid_input", "{bad:?}");
        }
        assert!(check_query_value("x", &"a".repeat(MAX_LOOKUP_LEN + 1)).is_err());
    }

    #[test]
    fn approval_from_display_value_all() {
        let raw: RawRecord = serde_json::from_str(
            r#"{
              "sys_id": {"display_value": "ap1", "value": "ap1"},
              "state": {"display_value": "Approved", "value": "approved"},
              "approver": {"display_value": "Sara Davis", "link": "https://x/api/now/table/sys_user/u2", "value": "u2"},
              "comments": {"display_value": "2026-01-22 14:12:37 - Sara Davis (Additional comments)\nok\n\n", "value": ""},
              "sys_updated_on": {"display_value": "2026-01-22 06:12:37", "value": "2026-01-22 14:12:37"},
              "sys_updated_by": {"display_value": "sarad", "value": "sarad"}
            }"#,
        )
        .unwrap();
        let a = ApprovalRecord::from_raw(&raw);
        assert_eq!(a.sys_id, "ap1");
        assert_eq!(a.state, ApprovalState::Approved);
        let approver = a.approver.unwrap();
        assert_eq!((approver.value.as_str(), approver.display_value.as_str()), ("u2", "Sara Davis"));
        assert_eq!(a.updated_on, Some("2026-01-22T14:12:37Z".parse().unwrap()));
        assert_eq!(a.updated_by, "sarad");

        let raw: RawRecord = serde_json::from_str(r#"{"sys_id":"ap2","state":"u_custom","approver":""}"#).unwrap();
        let a = ApprovalRecord::from_raw(&raw);
        assert_eq!(a.state, ApprovalState::Other("u_custom".into()));
        assert_eq!(a.approver, None);
        assert_eq!(a.updated_on, None);
    }
}
