//! Graph resources as grantline reads them, and the outcomes of membership writes.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The ids that let Microsoft support find one call: the `request-id` Graph returned (from the
/// response header, or from the error body's `innerError` when the header is missing) and the
/// `client-request-id` we sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correlation {
    pub request_id: Option<String>,
    pub client_request_id: String,
}

impl fmt::Display for Correlation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request-id: {}, client-request-id: {}",
            self.request_id.as_deref().unwrap_or("-"),
            self.client_request_id
        )
    }
}

/// A result and the correlation ids of the call that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correlated<T> {
    pub value: T,
    pub correlation: Correlation,
}

impl<T> Correlated<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Correlated<U> {
        Correlated { value: f(self.value), correlation: self.correlation }
    }
}

/// `GET /users/{id}` with the properties grantline selects. Properties Graph leaves out or
/// returns as `null` are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub user_principal_name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub account_enabled: Option<bool>,
    /// `Member` or `Guest`.
    #[serde(default)]
    pub user_type: Option<String>,
    #[serde(default)]
    pub employee_type: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub employee_leave_date_time: Option<Timestamp>,
    #[serde(default)]
    pub mail: Option<String>,
}

impl User {
    pub fn is_guest(&self) -> bool {
        self.user_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("guest"))
            || self.user_principal_name.contains("#EXT#")
    }
}

/// A directory object, as `GET /users/{id}/manager` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryObject {
    /// `#microsoft.graph.user`, `#microsoft.graph.orgContact`, ...
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub mail: Option<String>,
}

/// `GET /groups/{id}` with the properties that decide whether grantline may change its
/// membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub group_types: Vec<String>,
    #[serde(default)]
    pub mail_enabled: Option<bool>,
    #[serde(default)]
    pub security_enabled: Option<bool>,
    #[serde(default)]
    pub is_assignable_to_role: Option<bool>,
    #[serde(default)]
    pub membership_rule: Option<String>,
    #[serde(default)]
    pub on_premises_sync_enabled: Option<bool>,
    #[serde(default)]
    pub mail: Option<String>,
}

impl Group {
    /// A Microsoft 365 group (`groupTypes` contains `Unified`).
    pub fn is_unified(&self) -> bool {
        self.group_types.iter().any(|t| t.eq_ignore_ascii_case("Unified"))
    }

    /// Membership is rule-driven (`groupTypes` contains `DynamicMembership`, or a rule is set).
    pub fn is_dynamic(&self) -> bool {
        self.group_types.iter().any(|t| t.eq_ignore_ascii_case("DynamicMembership"))
            || self.membership_rule.as_deref().is_some_and(|r| !r.trim().is_empty())
    }

    /// A mail-enabled security group or a distribution list: membership is read-only in Graph
    /// and must be changed through Exchange.
    pub fn is_mail_enabled_non_unified(&self) -> bool {
        self.mail_enabled == Some(true) && !self.is_unified()
    }

    pub fn is_role_assignable(&self) -> bool {
        self.is_assignable_to_role == Some(true)
    }

    pub fn is_on_premises_synced(&self) -> bool {
        self.on_premises_sync_enabled == Some(true)
    }

    /// Whether Graph can change this group's membership at all: not dynamic, not a
    /// mail-enabled security group or distribution list, not synced from on-premises AD.
    /// (Role-assignable groups are writable with an extra permission; policy decides.)
    pub fn membership_writable_in_graph(&self) -> bool {
        !self.is_dynamic() && !self.is_mail_enabled_non_unified() && !self.is_on_premises_synced()
    }
}

/// The outcome of `add_member`. Both are success: the user is a member afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddOutcome {
    /// Graph answered 204: this call added the member.
    Added,
    /// Graph answered 400 "One or more added object references already exist": the user was
    /// a member already.
    AlreadyMember,
}

/// The outcome of `remove_member`. Both are success: the user is not a member afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoveOutcome {
    /// Graph answered 204: this call removed the member.
    Removed,
    /// Graph answered 404, or 400 "removed object references do not exist": the user was not
    /// a member (or the group does not exist; Graph's body cannot tell the two apart).
    NotAMember,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_from_documented_body() {
        let body = r#"{ "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id,userPrincipalName,displayName,accountEnabled,userType,employeeType,department,employeeLeaveDateTime,mail)/$entity",
          "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd", "userPrincipalName": "AdeleV@contoso.com",
          "displayName": "Adele Vance", "accountEnabled": true, "userType": "Member",
          "employeeType": "Employee", "department": "Retail", "employeeLeaveDateTime": null,
          "mail": "AdeleV@contoso.com" }"#;
        let u: User = serde_json::from_str(body).unwrap();
        assert_eq!(u.id, "87d349ed-44d7-43e1-9a83-5f2406dee5bd");
        assert_eq!(u.account_enabled, Some(true));
        assert_eq!(u.employee_leave_date_time, None);
        assert!(!u.is_guest());
        let body = r#"{"id":"x","userPrincipalName":"a_b.com#EXT#@t.onmicrosoft.com","userType":"Guest","employeeLeaveDateTime":"2026-03-31T00:00:00Z"}"#;
        let u: User = serde_json::from_str(body).unwrap();
        assert!(u.is_guest());
        assert_eq!(u.employee_leave_date_time, Some("2026-03-31T00:00:00Z".parse().unwrap()));
    }

    #[test]
    fn group_kinds() {
        let g: Group = serde_json::from_str(
            r#"{"id":"g","groupTypes":[],"mailEnabled":true,"securityEnabled":true,"isAssignableToRole":null,"membershipRule":null,"onPremisesSyncEnabled":null}"#,
        )
        .unwrap();
        assert!(g.is_mail_enabled_non_unified());
        assert!(!g.membership_writable_in_graph());
        let g: Group =
            serde_json::from_str(r#"{"id":"g","groupTypes":["Unified","DynamicMembership"],"mailEnabled":true}"#)
                .unwrap();
        assert!(g.is_unified() && g.is_dynamic());
        let g: Group =
            serde_json::from_str(r#"{"id":"g","groupTypes":[],"mailEnabled":false,"securityEnabled":true}"#).unwrap();
        assert!(g.membership_writable_in_graph());
    }
}
