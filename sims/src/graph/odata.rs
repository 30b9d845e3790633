//! Rendering users, groups and directory objects with `$select`, and `@odata.context` values.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::errors::GraphError;
use super::state::DirObject;
use crate::json::Obj;
use crate::tenant::{Group, User};

/// Properties returned without `$select`, in Graph's order.
pub(crate) const USER_DEFAULT: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// Real user properties the simulator does not model: selectable, always null.
const USER_UNMODELED: &[&str] = &[
    "aboutMe",
    "ageGroup",
    "city",
    "companyName",
    "consentProvidedForMinor",
    "country",
    "createdDateTime",
    "creationType",
    "deletedDateTime",
    "employeeHireDate",
    "employeeId",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "faxNumber",
    "lastPasswordChangeDateTime",
    "legalAgeGroupClassification",
    "mailNickname",
    "onPremisesDistinguishedName",
    "onPremisesDomainName",
    "onPremisesImmutableId",
    "onPremisesLastSyncDateTime",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "onPremisesUserPrincipalName",
    "passwordPolicies",
    "postalCode",
    "securityIdentifier",
    "showInAddressList",
    "signInSessionsValidFromDateTime",
    "state",
    "streetAddress",
    "usageLocation",
];

/// Real collection-valued user properties the simulator does not model: always `[]`.
const USER_UNMODELED_LISTS: &[&str] = &[
    "assignedLicenses",
    "assignedPlans",
    "identities",
    "imAddresses",
    "otherMails",
    "provisionedPlans",
    "proxyAddresses",
];

const GROUP_ORDER: &[&str] = &[
    "id",
    "deletedDateTime",
    "classification",
    "createdDateTime",
    "creationOptions",
    "description",
    "displayName",
    "expirationDateTime",
    "groupTypes",
    "isAssignableToRole",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesDomainName",
    "onPremisesLastSyncDateTime",
    "onPremisesNetBiosName",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "preferredDataLocation",
    "preferredLanguage",
    "proxyAddresses",
    "renewedDateTime",
    "resourceBehaviorOptions",
    "resourceProvisioningOptions",
    "securityEnabled",
    "securityIdentifier",
    "theme",
    "visibility",
    "onPremisesProvisioningErrors",
    "serviceProvisioningErrors",
];

const CREATED: &str = "2024-01-15T09:00:00Z";

fn opt(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

fn ts(v: Option<Timestamp>) -> Value {
    v.map_or(Value::Null, |t| Value::String(t.to_string()))
}

/// A user property by name (case-insensitive): the canonical name and value, or `None` when the
/// user type has no such property. `employeeLeaveDateTime` is null unless `lifecycle` is true.
pub(crate) fn user_property(u: &User, name: &str, lifecycle: bool) -> Option<(String, Value)> {
    let lower = name.to_ascii_lowercase();
    let (n, v) = match lower.as_str() {
        "id" => ("id", json!(u.id)),
        "userprincipalname" => ("userPrincipalName", json!(u.user_principal_name)),
        "displayname" => ("displayName", json!(u.display_name)),
        "givenname" => ("givenName", opt(&u.given_name)),
        "surname" => ("surname", opt(&u.surname)),
        "mail" => ("mail", opt(&u.mail)),
        "jobtitle" => ("jobTitle", opt(&u.job_title)),
        "accountenabled" => ("accountEnabled", json!(u.account_enabled)),
        "usertype" => ("userType", json!(u.user_type)),
        "employeetype" => ("employeeType", opt(&u.employee_type)),
        "department" => ("department", opt(&u.department)),
        "employeeleavedatetime" => {
            ("employeeLeaveDateTime", if lifecycle { ts(u.employee_leave_date_time) } else { Value::Null })
        }
        "businessphones" => ("businessPhones", json!(u.business_phones)),
        "mobilephone" => ("mobilePhone", opt(&u.mobile_phone)),
        "officelocation" => ("officeLocation", opt(&u.office_location)),
        "preferredlanguage" => ("preferredLanguage", opt(&u.preferred_language)),
        _ => {
            if let Some(p) = USER_UNMODELED.iter().find(|p| p.eq_ignore_ascii_case(name)) {
                return Some(((*p).to_owned(), Value::Null));
            }
            let p = USER_UNMODELED_LISTS.iter().find(|p| p.eq_ignore_ascii_case(name))?;
            return Some(((*p).to_owned(), json!([])));
        }
    };
    Some((n.to_owned(), v))
}

fn security_identifier(id: &str) -> String {
    let hex: String = id.chars().filter(char::is_ascii_hexdigit).collect();
    let parts: Vec<u32> =
        (0..4).map(|i| hex.get(i * 8..i * 8 + 8).and_then(|h| u32::from_str_radix(h, 16).ok()).unwrap_or(0)).collect();
    format!("S-1-12-1-{}", parts.iter().map(u32::to_string).collect::<Vec<_>>().join("-"))
}

/// A group property by name (case-insensitive), or `None` when groups have no such property.
pub(crate) fn group_property(g: &Group, name: &str) -> Option<(String, Value)> {
    let canonical = *GROUP_ORDER.iter().find(|p| p.eq_ignore_ascii_case(name))?;
    let v = match canonical {
        "id" => json!(g.id),
        "createdDateTime" | "renewedDateTime" => json!(CREATED),
        "creationOptions"
        | "resourceBehaviorOptions"
        | "resourceProvisioningOptions"
        | "onPremisesProvisioningErrors"
        | "serviceProvisioningErrors" => json!([]),
        "description" => opt(&g.description),
        "displayName" => json!(g.display_name),
        "groupTypes" => json!(g.group_types),
        "isAssignableToRole" => g.is_assignable_to_role.map_or(Value::Null, Value::Bool),
        "mail" => opt(&g.mail),
        "mailEnabled" => json!(g.mail_enabled),
        "mailNickname" => json!(g.mail_nickname),
        "membershipRule" => opt(&g.membership_rule),
        "membershipRuleProcessingState" => opt(&g.membership_rule_processing_state),
        "onPremisesSyncEnabled" => g.on_premises_sync_enabled.map_or(Value::Null, Value::Bool),
        "onPremisesLastSyncDateTime" => {
            if g.on_premises_sync_enabled == Some(true) {
                json!(CREATED)
            } else {
                Value::Null
            }
        }
        "proxyAddresses" => match &g.mail {
            Some(m) => json!([format!("SMTP:{m}")]),
            None => json!([]),
        },
        "securityEnabled" => json!(g.security_enabled),
        "securityIdentifier" => json!(security_identifier(&g.id)),
        "visibility" => opt(&g.visibility),
        _ => Value::Null,
    };
    Some((canonical.to_owned(), v))
}

/// `$select` (or `select`) from the query, split on commas; `None` when absent.
pub(crate) fn select_of(pairs: &[(String, String)]) -> Option<Vec<String>> {
    let raw = pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("$select") || k.eq_ignore_ascii_case("select"))
        .map(|(_, v)| v.as_str())?;
    let mut out: Vec<String> = Vec::new();
    for p in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(p)) {
            out.push(p.to_owned());
        }
    }
    Some(out)
}

fn unknown_property(name: &str, type_name: &str) -> GraphError {
    GraphError::bad_request(format!(
        "Parsing OData Select and Expand failed: Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'."
    ))
}

/// Checks that each selected name is a property of one of the types.
pub(crate) fn validate_select(select: &[String], user: bool, group: bool, type_name: &str) -> Result<(), GraphError> {
    let probe_user = crate::tenant::User::new("x", "x", "x");
    let probe_group = crate::tenant::Group::security("x", "x", "x");
    for p in select {
        if p == "*" {
            continue;
        }
        let ok = (user && user_property(&probe_user, p, true).is_some())
            || (group && group_property(&probe_group, p).is_some());
        if !ok {
            return Err(unknown_property(p, type_name));
        }
    }
    Ok(())
}

fn user_fields(u: &User, select: Option<&[String]>, lifecycle: bool, out: &mut Obj) {
    match select {
        Some(sel) if !sel.iter().any(|s| s == "*") => {
            for p in sel {
                if let Some((n, v)) = user_property(u, p, lifecycle) {
                    out.push(n, v);
                }
            }
        }
        _ => {
            for p in USER_DEFAULT {
                if let Some((n, v)) = user_property(u, p, lifecycle) {
                    out.push(n, v);
                }
            }
        }
    }
}

fn group_fields(g: &Group, select: Option<&[String]>, out: &mut Obj) {
    match select {
        Some(sel) if !sel.iter().any(|s| s == "*") => {
            for p in sel {
                if let Some((n, v)) = group_property(g, p) {
                    out.push(n, v);
                }
            }
        }
        _ => {
            for p in GROUP_ORDER {
                if let Some((n, v)) = group_property(g, p) {
                    out.push(n, v);
                }
            }
        }
    }
}

/// `{base}/v1.0/$metadata#{set}[(sel)][/$entity]`.
pub(crate) fn context(base: &str, set: &str, select: Option<&[String]>, entity: bool) -> String {
    let sel = select.filter(|s| !s.is_empty()).map(|s| format!("({})", s.join(","))).unwrap_or_default();
    let suffix = if entity { "/$entity" } else { "" };
    format!("{base}/v1.0/$metadata#{set}{sel}{suffix}")
}

pub(crate) fn user_entity(u: &User, base: &str, select: Option<&[String]>, lifecycle: bool) -> Obj {
    let mut o = Obj::new().with("@odata.context", context(base, "users", select, true));
    user_fields(u, select, lifecycle, &mut o);
    o
}

/// A user inside a collection (no `@odata.context` of its own).
pub(crate) fn user_collection_item(u: &User, select: Option<&[String]>, lifecycle: bool) -> Obj {
    let mut o = Obj::new();
    user_fields(u, select, lifecycle, &mut o);
    o
}

pub(crate) fn group_entity(g: &Group, base: &str, select: Option<&[String]>) -> Obj {
    let mut o = Obj::new().with("@odata.context", context(base, "groups", select, true));
    group_fields(g, select, &mut o);
    o
}

/// A directory object with `@odata.type`, without `@odata.context` (for collections).
pub(crate) fn directory_object(obj: &DirObject, select: Option<&[String]>, lifecycle: bool) -> Obj {
    let mut o = Obj::new();
    match obj {
        DirObject::User(u) => {
            o.push("@odata.type", "#microsoft.graph.user");
            user_fields(u, select, lifecycle, &mut o);
        }
        DirObject::Group(g) => {
            o.push("@odata.type", "#microsoft.graph.group");
            group_fields(g, select, &mut o);
        }
    }
    o
}

/// A single directory object with `@odata.context` `…#directoryObjects/$entity`.
pub(crate) fn directory_entity(obj: &DirObject, base: &str, select: Option<&[String]>, lifecycle: bool) -> Obj {
    let mut o = Obj::new().with("@odata.context", context(base, "directoryObjects", select, true));
    let inner = directory_object(obj, select, lifecycle);
    for (k, v) in inner.into_pairs() {
        o.push(k, v);
    }
    o
}
