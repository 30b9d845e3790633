//! Exchange objects as grantline reads them (from `Get-Mailbox`, `Get-MailboxPermission`,
//! `Get-RecipientPermission`, `Get-MailboxFolderPermission` rows), the outcome of a permission
//! write, and trustee matching.
//!
//! Row fields are read leniently: `AccessRights` as an array or a comma-separated string,
//! booleans also as `"True"` or `{"IsPresent": true}`, a user as a string or an object with a
//! `DisplayName`; unknown fields are ignored.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// What a permission write did. All three are success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The write changed the mailbox.
    Applied,
    /// An add found the permission already there (Exchange's "already present" warning, "no
    /// settings have been modified", or an identical folder entry).
    AlreadyPresent,
    /// A removal found nothing to remove ("the ACE doesn't exist", "no settings have been
    /// modified", or no folder entry for the user).
    NotPresent,
}

/// A delegate in `GrantSendOnBehalfTo`, with whatever Exchange said about them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegate {
    /// The name `GrantSendOnBehalfTo` shows (often the alias).
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub primary_smtp_address: Option<String>,
}

impl Delegate {
    /// Whether this delegate is the user with this UPN (and display name, when known).
    pub fn is(&self, upn: &str, display_name: Option<&str>) -> bool {
        [&self.primary_smtp_address, &self.name, &self.display_name]
            .into_iter()
            .flatten()
            .any(|n| names_user(n, upn, display_name))
    }

    /// The best single identifier: the address, else the name, else the display name.
    pub fn label(&self) -> String {
        self.primary_smtp_address
            .clone()
            .or_else(|| self.name.clone())
            .or_else(|| self.display_name.clone())
            .unwrap_or_default()
    }
}

/// `Get-Mailbox` as grantline reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// `Identity` (the mailbox's name in Exchange).
    pub identity: String,
    pub primary_smtp_address: String,
    pub display_name: String,
    /// `SharedMailbox`, `UserMailbox`, `RoomMailbox`, `EquipmentMailbox`, ...
    pub recipient_type_details: String,
    /// One entry per send-on-behalf delegate: the delegate's address when Exchange gave one, else
    /// the name it shows. Match entries with [`names_user`] (or use
    /// [`Mailbox::has_send_on_behalf`], which also looks at names and display names).
    pub grant_send_on_behalf_to: Vec<String>,
    /// Everything Exchange said about each delegate.
    pub send_on_behalf_delegates: Vec<Delegate>,
    pub alias: Option<String>,
    pub exchange_guid: Option<String>,
    pub external_directory_object_id: Option<String>,
}

impl Mailbox {
    /// `RecipientTypeDetails` is `SharedMailbox`.
    pub fn is_shared(&self) -> bool {
        self.recipient_type_details.eq_ignore_ascii_case("SharedMailbox")
    }

    /// Whether the user is a send-on-behalf delegate.
    pub fn has_send_on_behalf(&self, upn: &str, display_name: Option<&str>) -> bool {
        self.send_on_behalf_delegates.iter().any(|d| d.is(upn, display_name))
            || self.grant_send_on_behalf_to.iter().any(|n| names_user(n, upn, display_name))
    }

    /// Reads a `Get-Mailbox` row.
    pub(crate) fn from_row(row: &Value) -> Option<Mailbox> {
        let text = |key: &str| field(row, key).and_then(value_text);
        let primary_smtp_address = text("PrimarySmtpAddress").or_else(|| text("UserPrincipalName"))?;
        let names: Vec<String> = list_of(field(row, "GrantSendOnBehalfTo")).iter().filter_map(value_text).collect();
        let detailed: Vec<Delegate> =
            list_of(field(row, "GrantSendOnBehalfToWithDisplayNames")).iter().filter_map(delegate_of).collect();
        let delegates: Vec<Delegate> = if detailed.is_empty() {
            names.iter().map(|n| Delegate { name: Some(n.clone()), ..Delegate::default() }).collect()
        } else if detailed.len() == names.len() {
            detailed.into_iter().zip(&names).map(|(d, n)| Delegate { name: Some(n.clone()), ..d }).collect()
        } else {
            detailed
        };
        Some(Mailbox {
            identity: text("Identity").or_else(|| text("Name")).unwrap_or_else(|| primary_smtp_address.clone()),
            display_name: text("DisplayName").unwrap_or_default(),
            recipient_type_details: text("RecipientTypeDetails").unwrap_or_default(),
            grant_send_on_behalf_to: delegates.iter().map(Delegate::label).collect(),
            send_on_behalf_delegates: delegates,
            alias: text("Alias"),
            exchange_guid: text("ExchangeGuid"),
            external_directory_object_id: text("ExternalDirectoryObjectId"),
            primary_smtp_address,
        })
    }
}

/// A row of `Get-MailboxPermission`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MailboxPermission {
    #[serde(default, deserialize_with = "name_like")]
    pub identity: String,
    /// The trustee as Exchange shows it: a UPN, `DOMAIN\alias`, a display name, ...
    #[serde(default, deserialize_with = "name_like")]
    pub user: String,
    #[serde(default, deserialize_with = "rights")]
    pub access_rights: Vec<String>,
    #[serde(default, deserialize_with = "bool_like")]
    pub is_inherited: bool,
    #[serde(default, deserialize_with = "bool_like")]
    pub deny: bool,
    #[serde(default, deserialize_with = "opt_name_like")]
    pub inheritance_type: Option<String>,
}

impl MailboxPermission {
    /// `AccessRights` include `FullAccess`.
    pub fn has_full_access(&self) -> bool {
        self.access_rights.iter().any(|r| r.eq_ignore_ascii_case("FullAccess"))
    }

    /// A direct allow entry for someone other than the mailbox itself.
    pub(crate) fn is_direct_grant(&self) -> bool {
        !self.is_inherited && !self.deny && !is_self(&self.user)
    }
}

/// A row of `Get-RecipientPermission` (Send As).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecipientPermission {
    #[serde(default, deserialize_with = "name_like")]
    pub identity: String,
    #[serde(default, deserialize_with = "name_like")]
    pub trustee: String,
    #[serde(default, deserialize_with = "rights")]
    pub access_rights: Vec<String>,
    /// `Allow` or `Deny`.
    #[serde(default, deserialize_with = "opt_name_like")]
    pub access_control_type: Option<String>,
    #[serde(default, deserialize_with = "bool_like")]
    pub is_inherited: bool,
    #[serde(default, deserialize_with = "opt_name_like")]
    pub inheritance_type: Option<String>,
}

impl RecipientPermission {
    /// `AccessRights` include `SendAs`.
    pub fn has_send_as(&self) -> bool {
        self.access_rights.iter().any(|r| r.eq_ignore_ascii_case("SendAs"))
    }

    pub(crate) fn is_direct_grant(&self) -> bool {
        let deny = self.access_control_type.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("Deny"));
        !self.is_inherited && !deny && !is_self(&self.trustee)
    }
}

/// A row of `Get-MailboxFolderPermission`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FolderPermission {
    /// `mailbox:\folder`.
    #[serde(default, deserialize_with = "name_like")]
    pub identity: String,
    #[serde(default, deserialize_with = "opt_name_like")]
    pub folder_name: Option<String>,
    /// Usually the user's display name; `Default` and `Anonymous` are the built-in entries.
    #[serde(default, deserialize_with = "name_like")]
    pub user: String,
    /// The role (`Reviewer`, ...) or the individual rights.
    #[serde(default, deserialize_with = "rights")]
    pub access_rights: Vec<String>,
}

impl FolderPermission {
    /// `Default` or `Anonymous`.
    pub fn is_built_in(&self) -> bool {
        self.user.eq_ignore_ascii_case("Default") || self.user.eq_ignore_ascii_case("Anonymous")
    }

    /// Whether the entry's rights are exactly `role` (case-insensitive).
    pub fn has_role(&self, role: &str) -> bool {
        self.access_rights.len() == 1 && self.access_rights[0].eq_ignore_ascii_case(role.trim())
    }
}

fn is_self(user: &str) -> bool {
    let u = user.trim();
    u.eq_ignore_ascii_case("NT AUTHORITY\\SELF") || u.eq_ignore_ascii_case("S-1-5-10")
}

/// Whether a permission row's user or trustee (`row_user`) names the user with this UPN. Exchange
/// shows trustees in several forms; all of these match, case-insensitively:
/// - the UPN (or primary address) itself, also as `smtp:<upn>`;
/// - the alias (the UPN's local part), also as `DOMAIN\alias`;
/// - the display name, when `display_name` is given;
/// - `Display Name <upn>`.
///
/// Matching by alias assumes the alias is the UPN's local part, which is Exchange Online's
/// default; two users whose UPNs share a local part in different domains are not told apart by
/// an alias-only row.
pub fn names_user(row_user: &str, upn: &str, display_name: Option<&str>) -> bool {
    let row = row_user.trim();
    let upn = upn.trim();
    if row.is_empty() || upn.is_empty() {
        return false;
    }
    let display = display_name.map(str::trim).filter(|d| !d.is_empty());
    if let Some((name, rest)) = row.rsplit_once('<')
        && let Some(addr) = rest.strip_suffix('>')
    {
        return names_user(addr, upn, None) || display.is_some_and(|d| name.trim().eq_ignore_ascii_case(d));
    }
    let row = row.strip_prefix("smtp:").or_else(|| row.strip_prefix("SMTP:")).unwrap_or(row);
    if row.eq_ignore_ascii_case(upn) {
        return true;
    }
    let alias = upn.split('@').next().unwrap_or(upn);
    let tail = row.rsplit_once('\\').map_or(row, |(_, t)| t);
    if tail.eq_ignore_ascii_case(alias) || tail.eq_ignore_ascii_case(upn) {
        return true;
    }
    display.is_some_and(|d| row.eq_ignore_ascii_case(d))
}

// ---------------------------------------------------------------------------------------------
// Lenient field readers

/// A field by name, case-insensitively.
pub(crate) fn field<'a>(row: &'a Value, key: &str) -> Option<&'a Value> {
    row.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v).filter(|v| !v.is_null())
}

fn list_of(v: Option<&Value>) -> Vec<Value> {
    match v {
        Some(Value::Array(items)) => items.clone(),
        Some(other) => vec![other.clone()],
        None => Vec::new(),
    }
}

/// A string, a number, or the name-like field of an object.
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(_) => ["DisplayName", "Name", "PrimarySmtpAddress", "UserId", "Identity"]
            .iter()
            .find_map(|k| field(v, k).and_then(value_text)),
        _ => None,
    }
}

fn delegate_of(v: &Value) -> Option<Delegate> {
    match v {
        Value::Object(_) => {
            let text = |k: &str| field(v, k).and_then(value_text);
            let d = Delegate {
                name: text("Name").or_else(|| text("Identity")),
                display_name: text("DisplayName"),
                primary_smtp_address: text("PrimarySmtpAddress").or_else(|| text("UserPrincipalName")),
            };
            (d != Delegate::default()).then_some(d)
        }
        Value::String(s) => {
            let s = s.trim();
            if let Some((name, rest)) = s.rsplit_once('<')
                && let Some(addr) = rest.strip_suffix('>')
            {
                return Some(Delegate {
                    name: None,
                    display_name: Some(name.trim().to_owned()).filter(|n| !n.is_empty()),
                    primary_smtp_address: Some(addr.trim().to_owned()),
                });
            }
            if s.is_empty() {
                None
            } else if s.contains('@') {
                Some(Delegate { primary_smtp_address: Some(s.to_owned()), ..Delegate::default() })
            } else {
                Some(Delegate { display_name: Some(s.to_owned()), ..Delegate::default() })
            }
        }
        _ => None,
    }
}

fn name_like<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(value_text(&Value::deserialize(d)?).unwrap_or_default())
}

fn opt_name_like<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(value_text(&Value::deserialize(d)?))
}

fn rights<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(list_of(Some(&v))
        .iter()
        .filter_map(|item| item.as_str())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

fn bool_like<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => b,
        Value::String(s) => s.trim().eq_ignore_ascii_case("true"),
        Value::Object(m) => m.iter().any(|(k, v)| k.eq_ignore_ascii_case("IsPresent") && v.as_bool() == Some(true)),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_user_accepts_the_forms_exchange_shows() {
        let upn = "AdeleV@contoso.com";
        for row in [
            "AdeleV@contoso.com",
            "adelev@CONTOSO.com",
            "AdeleV",
            "NAMPR01A001\\AdeleV",
            "smtp:adelev@contoso.com",
            "Adele Vance <AdeleV@contoso.com>",
        ] {
            assert!(names_user(row, upn, None), "{row}");
        }
        assert!(names_user("Adele Vance", upn, Some("Adele Vance")));
        assert!(!names_user("Adele Vance", upn, None));
        assert!(!names_user("AlexW@contoso.com", upn, Some("Adele Vance")));
        assert!(!names_user("NT AUTHORITY\\SELF", upn, None));
        assert!(!names_user("", upn, None));
        assert!(!names_user("Default", upn, Some("")));
    }

    #[test]
    fn rows_are_read_leniently() {
        let row: MailboxPermission = serde_json::from_value(serde_json::json!({
            "Identity": "finance", "User": "NT AUTHORITY\\SELF", "AccessRights@odata.type": "#Collection(String)",
            "AccessRights": ["FullAccess, ReadPermission"], "IsInherited": "False", "Deny": { "IsPresent": false },
            "InheritanceType": "All", "UserSid": "S-1-5-10"
        }))
        .unwrap();
        assert_eq!(row.access_rights, vec!["FullAccess", "ReadPermission"]);
        assert!(!row.is_inherited && !row.deny && !row.is_direct_grant());
        let folder: FolderPermission = serde_json::from_value(serde_json::json!({
            "Identity": "helpdesk:\\", "FolderName": "Top of Information Store",
            "User": { "DisplayName": "Adele Vance", "UserType": "Internal" }, "AccessRights": "Reviewer"
        }))
        .unwrap();
        assert_eq!(folder.user, "Adele Vance");
        assert!(folder.has_role("reviewer") && !folder.is_built_in());
    }

    #[test]
    fn mailbox_delegates_from_both_shapes() {
        let objects = serde_json::json!({ "Identity": "finance", "PrimarySmtpAddress": "finance@contoso.com",
            "DisplayName": "Finance", "RecipientTypeDetails": "SharedMailbox", "GrantSendOnBehalfTo": ["AlexW"],
            "GrantSendOnBehalfToWithDisplayNames": [{ "DisplayName": "Alex Wilber", "PrimarySmtpAddress": "AlexW@contoso.com" }] });
        let m = Mailbox::from_row(&objects).unwrap();
        assert!(m.is_shared());
        assert_eq!(m.grant_send_on_behalf_to, vec!["AlexW@contoso.com"]);
        assert_eq!(m.send_on_behalf_delegates[0].name.as_deref(), Some("AlexW"));
        assert!(m.has_send_on_behalf("alexw@contoso.com", None));
        let strings = serde_json::json!({ "PrimarySmtpAddress": "s@example.com", "RecipientTypeDetails": "UserMailbox",
            "GrantSendOnBehalfTo": ["delegate@example.com", "two"],
            "GrantSendOnBehalfToWithDisplayNames": ["Delegate User", "Delegate Two <two@example.com>"] });
        let m = Mailbox::from_row(&strings).unwrap();
        assert!(!m.is_shared());
        assert_eq!(m.identity, "s@example.com");
        assert_eq!(m.grant_send_on_behalf_to, vec!["delegate@example.com", "two@example.com"]);
        assert!(m.has_send_on_behalf("two@example.com", None));
        assert!(m.has_send_on_behalf("delegate@example.com", None));
        let bare = serde_json::json!({ "PrimarySmtpAddress": "x@example.com", "GrantSendOnBehalfTo": null });
        assert!(Mailbox::from_row(&bare).unwrap().grant_send_on_behalf_to.is_empty());
    }
}
