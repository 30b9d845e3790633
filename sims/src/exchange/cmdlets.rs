//! The cmdlets the simulator runs: their parameters, semantics, output rows and warnings.
//!
//! Parameter names are matched without regard to case; a parameter a cmdlet does not take is a
//! `ParameterBindingException`, as in PowerShell. Only the parameters listed in [`CMDLETS`] are
//! modelled (plus `Confirm`, `ErrorAction`, `WarningAction`, `Verbose` and `Debug`, accepted and
//! ignored). Writes check and change the primary copy; `Get-*` read the visible copy.

use jiff::Timestamp;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::errors::{CmdletError, exception};
use super::state::{Ace, Folder, FolderUser, MailboxRecord, Perms, Principal, Store, normalize_folder};
use crate::json::{Obj, Val};
use crate::tenant::Mailbox;

/// A cmdlet the simulator knows.
#[derive(Debug)]
pub(crate) struct CmdletSpec {
    pub name: &'static str,
    /// Counts against the write bucket and may change a mailbox.
    pub write: bool,
    pub params: &'static [&'static str],
    pub required: &'static [&'static str],
}

const COMMON: &[&str] = &["Confirm", "ErrorAction", "WarningAction", "Verbose", "Debug"];

/// Every cmdlet the simulator answers; any other name is refused with the NUL-body 403.
pub(crate) const CMDLETS: &[CmdletSpec] = &[
    CmdletSpec {
        name: "Get-Mailbox",
        write: false,
        params: &["Identity", "RecipientTypeDetails", "ResultSize", "IncludeGrantSendOnBehalfToWithDisplayNames"],
        required: &[],
    },
    CmdletSpec {
        name: "Set-Mailbox",
        write: true,
        params: &["Identity", "GrantSendOnBehalfTo"],
        required: &["Identity"],
    },
    CmdletSpec {
        name: "Get-MailboxPermission",
        write: false,
        params: &["Identity", "User", "ResultSize"],
        required: &["Identity"],
    },
    CmdletSpec {
        name: "Add-MailboxPermission",
        write: true,
        params: &["Identity", "User", "AccessRights", "InheritanceType", "AutoMapping", "Deny"],
        required: &["Identity", "User", "AccessRights"],
    },
    CmdletSpec {
        name: "Remove-MailboxPermission",
        write: true,
        params: &["Identity", "User", "AccessRights", "InheritanceType", "Deny"],
        required: &["Identity", "User", "AccessRights"],
    },
    CmdletSpec {
        name: "Get-RecipientPermission",
        write: false,
        params: &["Identity", "Trustee", "AccessRights", "ResultSize"],
        required: &[],
    },
    CmdletSpec {
        name: "Add-RecipientPermission",
        write: true,
        params: &["Identity", "Trustee", "AccessRights"],
        required: &["Identity", "Trustee", "AccessRights"],
    },
    CmdletSpec {
        name: "Remove-RecipientPermission",
        write: true,
        params: &["Identity", "Trustee", "AccessRights"],
        required: &["Identity", "Trustee", "AccessRights"],
    },
    CmdletSpec {
        name: "Get-MailboxFolderPermission",
        write: false,
        params: &["Identity", "User"],
        required: &["Identity"],
    },
    CmdletSpec {
        name: "Add-MailboxFolderPermission",
        write: true,
        params: &["Identity", "User", "AccessRights", "SharingPermissionFlags", "SendNotificationToUser"],
        required: &["Identity", "User", "AccessRights"],
    },
    CmdletSpec {
        name: "Set-MailboxFolderPermission",
        write: true,
        params: &["Identity", "User", "AccessRights", "SharingPermissionFlags", "SendNotificationToUser"],
        required: &["Identity", "User", "AccessRights"],
    },
    CmdletSpec {
        name: "Remove-MailboxFolderPermission",
        write: true,
        params: &["Identity", "User", "SendNotificationToUser"],
        required: &["Identity", "User"],
    },
];

/// The spec of a cmdlet name (case-insensitive).
pub(crate) fn spec(name: &str) -> Option<&'static CmdletSpec> {
    CMDLETS.iter().find(|c| c.name.eq_ignore_ascii_case(name.trim()))
}

const MAILBOX_RIGHTS: &[&str] =
    &["ChangeOwner", "ChangePermission", "DeleteItem", "ExternalAccount", "FullAccess", "ReadPermission"];
const INHERITANCE: &[&str] = &["None", "All", "Descendents", "SelfAndChildren", "Children"];
const RECIPIENT_RIGHTS: &[&str] = &["SendAs"];
const FOLDER_ROLES: &[&str] = &[
    "Author",
    "Contributor",
    "Editor",
    "NonEditingAuthor",
    "Owner",
    "PublishingAuthor",
    "PublishingEditor",
    "Reviewer",
    "None",
    "AvailabilityOnly",
    "LimitedDetails",
];
const SHARING_FLAGS: &[&str] = &["None", "Delegate", "CanViewPrivateItems"];

/// What a cmdlet produced.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub rows: Vec<Obj>,
    pub warnings: Vec<String>,
    /// A mailbox changed (counted as an applied write).
    pub changed: bool,
}

impl Output {
    fn rows(rows: Vec<Obj>) -> Self {
        Self { rows, ..Self::default() }
    }

    fn warning(text: String) -> Self {
        Self { warnings: vec![text], ..Self::default() }
    }

    fn changed(rows: Vec<Obj>) -> Self {
        Self { rows, warnings: Vec::new(), changed: true }
    }
}

/// Parameters with PowerShell's case-insensitive names.
pub(crate) struct Params<'a>(pub &'a Map<String, Value>);

fn type_error(name: &str, v: &Value) -> CmdletError {
    CmdletError::parameter(format!(
        "Cannot process argument transformation on parameter '{name}'. Cannot convert the \"{v}\" value to the expected type."
    ))
}

impl Params<'_> {
    /// The value, `null` included.
    fn raw(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.raw(name).filter(|v| !v.is_null())
    }

    /// Checks names against the spec and the mandatory ones.
    pub(crate) fn check(&self, spec: &CmdletSpec) -> Result<(), CmdletError> {
        for key in self.0.keys() {
            let known = spec.params.iter().chain(COMMON).any(|p| p.eq_ignore_ascii_case(key));
            if !known {
                return Err(CmdletError::unknown_parameter(key));
            }
        }
        let missing: Vec<&str> = spec.required.iter().copied().filter(|r| self.get(r).is_none()).collect();
        if !missing.is_empty() {
            return Err(CmdletError::missing(&missing));
        }
        Ok(())
    }

    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, CmdletError> {
        let s = match self.get(name) {
            None => return Ok(None),
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Array(items)) if items.len() == 1 => match &items[0] {
                Value::String(s) => s.trim().to_owned(),
                other => return Err(type_error(name, other)),
            },
            Some(other) => return Err(type_error(name, other)),
        };
        if s.is_empty() {
            return Err(CmdletError::parameter(format!(
                "Cannot bind argument to parameter '{name}' because it is an empty string."
            )));
        }
        Ok(Some(s))
    }

    fn required(&self, name: &str) -> Result<String, CmdletError> {
        self.string(name)?.ok_or_else(|| CmdletError::missing(&[name]))
    }

    /// A string or an array of strings; `"A, B"` is split as PowerShell splits enum lists.
    fn list(&self, name: &str) -> Result<Option<Vec<String>>, CmdletError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => value_list(name, v).map(Some),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, CmdletError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "$true" | "1" => Ok(Some(true)),
                "false" | "$false" | "0" => Ok(Some(false)),
                _ => Err(type_error(name, &Value::String(s.clone()))),
            },
            Some(other) => Err(type_error(name, other)),
        }
    }
}

fn value_list(name: &str, v: &Value) -> Result<Vec<String>, CmdletError> {
    let items: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::String(s) => out.extend(s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned)),
            other => return Err(type_error(name, other)),
        }
    }
    Ok(out)
}

fn canon(parameter: &str, value: &str, allowed: &[&str]) -> Result<String, CmdletError> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(value))
        .map(|a| (*a).to_owned())
        .ok_or_else(|| CmdletError::invalid_value(parameter, value, allowed))
}

fn canon_list(parameter: &str, values: &[String], allowed: &[&str]) -> Result<Vec<String>, CmdletError> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        let c = canon(parameter, v, allowed)?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err(CmdletError::parameter(format!(
            "Cannot bind argument to parameter '{parameter}' because it is an empty collection."
        )));
    }
    Ok(out)
}

fn push_list(o: &mut Obj, key: &str, values: &[String]) {
    o.push(format!("{key}@odata.type"), "#Collection(String)");
    o.push(key, Val::List(values.iter().map(|v| Val::from(v.as_str())).collect()));
}

fn derived_guid(seed: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, seed.as_bytes()).to_string()
}

fn pseudo_sid(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let rid = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % 9_000_000 + 1_000_000;
    format!("S-1-5-21-3150411296-2145632071-1836425419-{rid}")
}

const SELF: &str = "NT AUTHORITY\\SELF";

fn already_present(dn: &str, account: &str) -> String {
    format!("The appropriate access control entry is already present on the object \"{dn}\" for account \"{account}\".")
}

fn ace_absent(dn: &str) -> String {
    format!(
        "Can't remove the access control entry on the object \"{dn}\" for the user account because the ACE doesn't exist on the object."
    )
}

fn unchanged(identity: &str) -> String {
    format!("The command completed successfully but no settings of '{identity}' have been modified.")
}

/// Runs one cmdlet whose parameters passed [`Params::check`].
pub(crate) fn run(spec: &CmdletSpec, p: &Params<'_>, store: &mut Store, now: Timestamp) -> Result<Output, CmdletError> {
    match spec.name {
        "Get-Mailbox" => get_mailbox(p, store, now),
        "Set-Mailbox" => set_mailbox(p, store, now),
        "Get-MailboxPermission" => get_mailbox_permission(p, store, now),
        "Add-MailboxPermission" => add_mailbox_permission(p, store, now),
        "Remove-MailboxPermission" => remove_mailbox_permission(p, store, now),
        "Get-RecipientPermission" => get_recipient_permission(p, store, now),
        "Add-RecipientPermission" => change_recipient_permission(p, store, now, true),
        "Remove-RecipientPermission" => change_recipient_permission(p, store, now, false),
        "Get-MailboxFolderPermission" => get_folder_permission(p, store, now),
        "Add-MailboxFolderPermission" => add_folder_permission(p, store, now),
        "Set-MailboxFolderPermission" => set_folder_permission(p, store, now),
        "Remove-MailboxFolderPermission" => remove_folder_permission(p, store, now),
        other => {
            Err(CmdletError::new(400, exception::INVALID_OPERATION, format!("The cmdlet {other} is not modelled.")))
        }
    }
}

fn principal_or(
    store: &Store,
    name: &str,
    missing: impl FnOnce(&str) -> CmdletError,
) -> Result<Principal, CmdletError> {
    store.find_principal(name)?.cloned().ok_or_else(|| missing(name))
}

fn commit(store: &mut Store, i: usize, perms: Perms, now: Timestamp) {
    let delay = store.delay;
    store.mailboxes[i].commit(perms, now, delay);
}

// ---------------------------------------------------------------------------------------------
// Get-Mailbox, Set-Mailbox

fn mailbox_row(store: &Store, m: &MailboxRecord, perms: &Perms, with_names: bool) -> Obj {
    let delegates: Vec<&Principal> = perms.send_on_behalf.iter().filter_map(|id| store.principal(id)).collect();
    let mut o = Obj::new()
        .with("Identity", m.identity())
        .with("Name", m.alias.as_str())
        .with("Alias", m.alias.as_str())
        .with("DisplayName", m.display_name.as_str())
        .with("PrimarySmtpAddress", m.smtp.as_str())
        .with("UserPrincipalName", m.smtp.as_str());
    push_list(&mut o, "EmailAddresses", &m.emails);
    o.push("RecipientType", "UserMailbox");
    o.push("RecipientTypeDetails", m.rtd.as_str());
    let resource = match m.rtd.as_str() {
        Mailbox::ROOM => Value::from("Room"),
        Mailbox::EQUIPMENT => Value::from("Equipment"),
        _ => Value::Null,
    };
    o.push("ResourceType", resource);
    o.push("ExchangeGuid", m.guid.as_str());
    o.push("ExternalDirectoryObjectId", m.user_id.clone().unwrap_or_else(|| derived_guid(&format!("eido:{}", m.guid))));
    o.push("Guid", derived_guid(&format!("ad:{}", m.guid)));
    let names: Vec<String> = delegates.iter().map(|d| d.alias.clone()).collect();
    push_list(&mut o, "GrantSendOnBehalfTo", &names);
    if with_names {
        let items = delegates
            .iter()
            .map(|d| {
                Val::Obj(
                    Obj::new()
                        .with("DisplayName", d.display_name.as_str())
                        .with("PrimarySmtpAddress", d.mail.clone().unwrap_or_else(|| d.upn.clone())),
                )
            })
            .collect();
        o.push("GrantSendOnBehalfToWithDisplayNames", Val::List(items));
    }
    o.push("HiddenFromAddressListsEnabled", false);
    o.push("MessageCopyForSentAsEnabled", false);
    o.push("MessageCopyForSendOnBehalfEnabled", false);
    o.push("IsMailboxEnabled", true);
    o
}

fn get_mailbox(p: &Params<'_>, store: &mut Store, now: Timestamp) -> Result<Output, CmdletError> {
    let with_names = p.bool("IncludeGrantSendOnBehalfToWithDisplayNames")?.unwrap_or(false);
    let types = p.list("RecipientTypeDetails")?;
    let indices: Vec<usize> = match p.string("Identity")? {
        Some(identity) => vec![store.find_mailbox(&identity)?],
        None => (0..store.mailboxes.len()).collect(),
    };
    let mut rows = Vec::new();
    for i in indices {
        let m = &store.mailboxes[i];
        if types.as_ref().is_some_and(|t| !t.iter().any(|x| x.eq_ignore_ascii_case(&m.rtd))) {
            continue;
        }
        let perms = store.mailboxes[i].visible(now).clone();
        rows.push(mailbox_row(store, &store.mailboxes[i], &perms, with_names));
    }
    Ok(Output::rows(rows))
}

/// `GrantSendOnBehalfTo`: a `#Exchange.GenericHashTable` with `add`/`remove` changes the list; a
/// plain value (string, array or null) replaces it.
fn set_mailbox(p: &Params<'_>, store: &mut Store, now: Timestamp) -> Result<Output, CmdletError> {
    let identity = p.required("Identity")?;
    let i = store.find_mailbox(&identity)?;
    let shown = store.mailboxes[i].identity().to_owned();
    let Some(value) = p.raw("GrantSendOnBehalfTo") else {
        return Ok(Output::warning(unchanged(&shown)));
    };
    let mut list = store.mailboxes[i].primary().send_on_behalf.clone();
    let resolve = |store: &Store, names: &[String]| -> Result<Vec<String>, CmdletError> {
        names.iter().map(|n| principal_or(store, n, CmdletError::recipient_not_found).map(|p| p.id)).collect()
    };
    match value {
        Value::Object(table) => {
            let typed = table.iter().find(|(k, _)| k.eq_ignore_ascii_case("@odata.type")).map(|(_, v)| v);
            if typed.and_then(Value::as_str) != Some("#Exchange.GenericHashTable") {
                return Err(CmdletError::parameter(
                    "Cannot process argument transformation on parameter 'GrantSendOnBehalfTo'. A hashtable value needs \"@odata.type\": \"#Exchange.GenericHashTable\".",
                ));
            }
            let mut adds = Vec::new();
            let mut removes = Vec::new();
            for (k, v) in table {
                if k.eq_ignore_ascii_case("@odata.type") {
                    continue;
                }
                if k.eq_ignore_ascii_case("add") {
                    adds = resolve(store, &value_list("GrantSendOnBehalfTo", v)?)?;
                } else if k.eq_ignore_ascii_case("remove") {
                    removes = resolve(store, &value_list("GrantSendOnBehalfTo", v)?)?;
                } else {
                    return Err(CmdletError::parameter(format!(
                        "Cannot process argument transformation on parameter 'GrantSendOnBehalfTo'. The key '{k}' is not valid; use Add or Remove."
                    )));
                }
            }
            list.retain(|id| !removes.contains(id));
            for id in adds {
                if !list.contains(&id) {
                    list.push(id);
                }
            }
        }
        Value::Null => list.clear(),
        other => {
            let mut replaced: Vec<String> = Vec::new();
            for id in resolve(store, &value_list("GrantSendOnBehalfTo", other)?)? {
                if !replaced.contains(&id) {
                    replaced.push(id);
                }
            }
            list = replaced;
        }
    }
    if list == store.mailboxes[i].primary().send_on_behalf {
        return Ok(Output::warning(unchanged(&shown)));
    }
    let mut perms = store.mailboxes[i].primary().clone();
    perms.send_on_behalf = list;
    commit(store, i, perms, now);
    Ok(Output::changed(Vec::new()))
}

// ---------------------------------------------------------------------------------------------
// Mailbox permissions (Full Access and the other mailbox rights)

#[allow(clippy::too_many_arguments)]
fn permission_row(
    m: &MailboxRecord,
    user: &str,
    sid: &str,
    rights: &[String],
    inherited: bool,
    deny: bool,
    inheritance: &str,
) -> Obj {
    let mut o = Obj::new().with("Identity", m.identity()).with("User", user).with("UserSid", sid);
    push_list(&mut o, "AccessRights", rights);
    o.push("IsInherited", inherited);
    o.push("Deny", deny);
    o.push("InheritanceType", inheritance);
    o.push("IsValid", true);
    o.push("ObjectState", "Unchanged");
    o
}

/// The inherited rows every mailbox shows (two denies and one inherited allow).
fn inherited_rows(m: &MailboxRecord) -> Vec<Obj> {
    [
        ("Administrator", vec!["FullAccess"], true),
        ("Domain Admins", vec!["FullAccess"], true),
        (
            "Organization Management",
            vec!["FullAccess", "DeleteItem", "ReadPermission", "ChangePermission", "ChangeOwner"],
            false,
        ),
    ]
    .into_iter()
    .map(|(who, rights, deny)| {
        let user = format!("{}\\{who}", super::errors::FOREST);
        let rights: Vec<String> = rights.into_iter().map(str::to_owned).collect();
        permission_row(m, &user, &pseudo_sid(&user), &rights, true, deny, "All")
    })
    .collect()
}

fn ace_row(store: &Store, m: &MailboxRecord, ace: &Ace, rights: &[String]) -> Obj {
    let (name, sid) = match store.principal(&ace.principal) {
        Some(p) => (p.trustee_name().to_owned(), pseudo_sid(&p.id)),
        None => (ace.principal.clone(), pseudo_sid(&ace.principal)),
    };
    permission_row(m, &name, &sid, rights, false, ace.deny, &ace.inheritance)
}

fn get_mailbox_permission(p: &Params<'_>, store: &mut Store, now: Timestamp) -> Result<Output, CmdletError> {
    let identity = p.required("Identity")?;
    let i = store.find_mailbox(&identity)?;
    let filter = match p.string("User")? {
        Some(u) => Some(principal_or(store, &u, CmdletError::object_not_found)?),
        None => None,
    };
    let perms = store.mailboxes[i].visible(now).clone();
    let m = &store.mailboxes[i];
    let mut rows = Vec::new();
    if filter.is_none() {
        let rights = vec!["FullAccess".to_owned(), "ReadPermission".to_owned()];
        rows.push(permission_row(m, SELF, "S-1-5-10", &rights, false, false, "All"));
    }
    for ace in &perms.full_access {
        if filter.as_ref().is_some_and(|f| f.id != ace.principal) {
            continue;
        }
        rows.push(ace_row(store, m, ace, &ace.rights));
    }
    if filter.is_none() {
        rows.extend(inherited_rows(m));
    }
    Ok(Output::rows(rows))
}

fn add_mailbox_permission(p: &Params<'_>, store: &mut Store, now: Timestamp) -> Result<Output, CmdletError> {
    let i = store.find_mailbox(&p.required("Identity")?)?;
    let user = principal_or(store, &p.required("User")?, CmdletError::object_not_found)?;
    let rights = canon_list("AccessRights", &p.list("AccessRights")?.unwrap_or_default(), MAILBOX_RIGHTS)?;
    let inheritance = match p.string("InheritanceType")? {
        Some(v) => canon("InheritanceType", &v, INHERITANCE)?,
        None => "All".to_owned(),
    };
    let auto_mapping = p.bool("AutoMapping")?.unwrap_or(true) && !user.is_group;
    let deny = p.bool("Deny")?.unwrap_or(false);
    let mut perms = store.mailboxes[i].primary().clone();
    let existing =
        perms.full_access.iter_mut().find(|a| a.principal == user.id && a.deny == deny && a.inheritance == inheritance);
    let ace = match existing {
        Some(ace) => {
            let missing: Vec<String> = rights.iter().filter(|r| !ace.rights.contains(r)).cloned().collect();
            if missing.is_empty() {
                let dn = store.mailboxes[i].dn(&store.domain);
                return Ok(Output::warning(already_present(&dn, &user.account())));
            }
            if missing.iter().any(|r| r == "FullAccess") {
                ace.auto_mapping = auto_mapping && !deny;
            }
            ace.rights.extend(missing);
            ace.clone()
        }
        None => {
            let ace = Ace {
                principal: user.id.clone(),
                rights: rights.clone(),
                inheritance,
                auto_mapping: auto_mapping && !deny && rights.iter().any(|r| r == "FullAccess"),
                deny,
            };
            perms.full_access.push(ace.clone());
            ace
        }
    };
    commit(store, i, perms, now);
    let row = ace_row(store, &store.mailboxes[i], &ace, &rights);
    Ok(Output::changed(vec![row]))
}

fn remove_mailbox_permission(p: &Params<'_>, store: &mut Store, now: Timestamp) -> Result<Output, CmdletError> {
    let i = store.find_mailbox(&p.required("Identity")?)?;
    let user = principal_or(store, &p.required("User")?, CmdletError::object_not_found)?;
    let rights = canon_list("AccessRights", &p.list("AccessRights")?.unwrap_or_default(), MAILBOX_RIGHTS)?;
    let inheritance = match p.string("InheritanceType")? {
        Some(v) => Some(canon("InheritanceType", &v, INHERITANCE)?),
        None => None,
    };
    let deny = p.bool("Deny")?.unwrap_or(false);
    let mut perms = store.mailboxes[i].primary().clone();
    let mut removed = false;
    for ace in perms.full_access.iter_mut() {
        if ace.principal != user.id || ace.deny != deny || inheritance.as_ref().is_some_and(|h| *h != ace.inheritance) {
            continue;
        }
        let before = ace.rights.len();
        ace.rights.retain(|r| !rights.contains(r));
        if ace.rights.len() != before {
            removed = true;
            if !ace.rights.iter().any(|r| r == "FullAccess") {
                ace.auto_mapping = false;
            }
        }
    }
    if !removed {
        let dn = store.mailboxes[i].dn(&store.domain);
        return Ok(Output::warning(ace_absent(&dn)));
    }
    perms.full_access.retain(|a| !a.rights.is_empty());
    commit(store, i, perms, now);
    Ok(Output::changed(Vec::new()))
}

// ---------------------------------------------------------------------------------------------
// Send As (recipient permissions)

fn recipient_row(m: &MailboxRecord, trustee: &str) -> Obj {
    let mut o = Obj::new().with("Identity", m.identity()).with("Trustee", trustee).with("AccessControlType", "Allow");
    push_list(&mut o, "AccessRights", &["SendAs".to_owned()]);
    o.push("IsInherited", false);
    o.push("InheritanceType", "None");
    o.push("IsValid", true);
    o.push("ObjectState", "Unchanged");
    o
}

fn get_recipient_permission(p: &Params<'_>, store: &mut Store, now: Timestamp) -> Result<Output, CmdletError> {
    if let Some(rights) = p.list("AccessRights")? {
        canon_list("AccessRights", &rights, RECIPIENT_RIGHTS)?;
    }
    let indices: Vec<usize> = match p.string("Identity")? {
        Some(identity) => vec![store.find_mailbox(&identity)?],
        None => (0..store.mailboxes.len()).collect(),
    };
    let filter = match p.string("Trustee")? {
        Some(t) => Some(principal_or(store, &t, CmdletError::object_not_found)?),
        None => None,
    };
    let mut rows = Vec::new();
    for i in indices {
        let perms = store.mailboxes[i].visible(now).clone();
        let m = &store.mailboxes[i];
        if filter.is_none() {
            rows.push(recipient_row(m, SELF));
        }
        for id in &perms.send_as {
            if filter.as_ref().is_some_and(|f| f.id != *id) {
                continue;
            }
            let name = store.principal(id).map_or(id.as_str(), Principal::trustee_name);
            rows.push(recipient_row(m, name));
        }
    }
    Ok(Output::rows(rows))
}

fn change_recipient_permission(
    p: &Params<'_>,
    store: &mut Store,
    now: Timestamp,
    add: bool,
) -> Result<Output, CmdletError> {
    let i = store.find_mailbox(&p.required("Identity")?)?;
    let trustee = principal_or(store, &p.required("Trustee")?, CmdletError::object_not_found)?;
    canon_list("AccessRights", &p.list("AccessRights")?.unwrap_or_default(), RECIPIENT_RIGHTS)?;
    let mut perms = store.mailboxes[i].primary().clone();
    let present = perms.send_as.contains(&trustee.id);
    let dn = store.mailboxes[i].dn(&store.domain);
    match (add, present) {
        (true, true) => Ok(Output::warning(already_present(&dn, &trustee.account()))),
        (false, false) => Ok(Output::warning(ace_absent(&dn))),
        (true, false) => {
            perms.send_as.push(trustee.id.clone());
            commit(store, i, perms, now);
            Ok(Output::changed(vec![recipient_row(&store.mailboxes[i], trustee.trustee_name())]))
        }
        (false, true) => {
            perms.send_as.retain(|id| *id != trustee.id);
            commit(store, i, perms, now);
            Ok(Output::changed(Vec::new()))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Folder permissions

/// Splits `mailbox:\folder` (no `:\` means the top of the store).
fn split_folder_identity(identity: &str) -> (String, String) {
    match identity.split_once(":\\").or_else(|| identity.split_once(":/")) {
        Some((mbx, folder)) => (mbx.trim().to_owned(), normalize_folder(folder)),
        None => (identity.trim().trim_end_matches(':').to_owned(), String::new()),
    }
}

fn folder_user(store: &Store, name: &str) -> Result<FolderUser, CmdletError> {
    if name.eq_ignore_ascii_case("Default") {
        return Ok(FolderUser::Default);
    }
    if name.eq_ignore_ascii_case("Anonymous") {
        return Ok(FolderUser::Anonymous);
    }
    let p = principal_or(store, name, |n| {
        CmdletError::new(
            400,
            exception::INVALID_FOLDER_USER,
            format!("The user \"{n}\" is either not valid SMTP address, or there is no matching information."),
        )
    })?;
    Ok(FolderUser::Principal(p.id))
}

fn folder_label(store: &Store, who: &FolderUser) -> String {
    match who {
        FolderUser::Default => "Default".to_owned(),
        FolderUser::Anonymous => "Anonymous".to_owned(),
        FolderUser::Principal(id) => store.principal(id).map_or_else(|| id.clone(), |p| p.display_name.clone()),
    }
}

fn folder_row(store: &Store, m: &MailboxRecord, folder: &Folder, who: &FolderUser, rights: &[String]) -> Obj {
    let identity = if folder.path.is_empty() {
        format!("{}:\\", m.identity())
    } else {
        format!("{}:\\{}", m.identity(), folder.path)
    };
    let mut o = Obj::new()
        .with("Identity", identity)
        .with("FolderName", folder.name.as_str())
        .with("User", folder_label(store, who));
    push_list(&mut o, "AccessRights", rights);
    o.push("SharingPermissionFlags", Value::Null);
    o.push("IsValid", true);
    o.push("ObjectState", "Unchanged");
    o
}

fn no_entry(store: &Store, who: &FolderUser) -> CmdletError {
    CmdletError::new(
        400,
        exception::NOT_IN_FOLDER,
        format!("There is no existing permission entry found for user: {}.", folder_label(store, who)),
    )
}

/// Resolves `-Identity mailbox:\folder` to the mailbox index, the folder path and the identity text.
fn locate_folder(p: &Params<'_>, store: &Store) -> Result<(usize, String, String), CmdletError> {
    let identity = p.required("Identity")?;
    let (mbx, folder) = split_folder_identity(&identity);
    let i = store.find_mailbox(&mbx)?;
    if store.mailboxes[i].primary().folder(&folder).is_none() {
        return Err(CmdletError::folder_not_found(&identity));
    }
    Ok((i, folder, identity))
}

fn folder_rights(p: &Params<'_>) -> Result<Vec<String>, CmdletError> {
    if let Some(flags) = p.list("SharingPermissionFlags")? {
        for f in &flags {
            canon("SharingPermissionFlags", f, SHARING_FLAGS)?;
        }
    }
    p.bool("SendNotificationToUser")?;
    canon_list("AccessRights", &p.list("AccessRights")?.unwrap_or_default(), FOLDER_ROLES)
}

fn get_folder_permission(p: &Params<'_>, store: &mut Store, now: Timestamp) -> Result<Output, CmdletError> {
    let (i, path, identity) = locate_folder(p, store)?;
    let who = match p.string("User")? {
        Some(u) => Some(folder_user(store, &u)?),
        None => None,
    };
    let perms = store.mailboxes[i].visible(now).clone();
    let folder = perms.folder(&path).ok_or_else(|| CmdletError::folder_not_found(&identity))?;
    let m = &store.mailboxes[i];
    let rows: Vec<Obj> = match &who {
        Some(w) => {
            let rights = folder.entry(w).ok_or_else(|| no_entry(store, w))?;
            vec![folder_row(store, m, folder, w, rights)]
        }
        None => folder.entries.iter().map(|(u, r)| folder_row(store, m, folder, u, r)).collect(),
    };
    Ok(Output::rows(rows))
}

fn add_folder_permission(p: &Params<'_>, store: &mut Store, now: Timestamp) -> Result<Output, CmdletError> {
    let (i, path, _) = locate_folder(p, store)?;
    let who = folder_user(store, &p.required("User")?)?;
    let rights = folder_rights(p)?;
    let mut perms = store.mailboxes[i].primary().clone();
    let Some(folder) = perms.folder_mut(&path) else {
        return Err(CmdletError::folder_not_found(&path));
    };
    if folder.entry(&who).is_some() {
        return Err(CmdletError::new(
            400,
            exception::ALREADY_IN_FOLDER,
            format!("An existing permission entry was found for user: {}.", folder_label(store, &who)),
        ));
    }
    folder.entries.push((who.clone(), rights.clone()));
    let shown = folder.clone();
    commit(store, i, perms, now);
    Ok(Output::changed(vec![folder_row(store, &store.mailboxes[i], &shown, &who, &rights)]))
}

fn set_folder_permission(p: &Params<'_>, store: &mut Store, now: Timestamp) -> Result<Output, CmdletError> {
    let (i, path, identity) = locate_folder(p, store)?;
    let who = folder_user(store, &p.required("User")?)?;
    let rights = folder_rights(p)?;
    let mut perms = store.mailboxes[i].primary().clone();
    let Some(folder) = perms.folder_mut(&path) else {
        return Err(CmdletError::folder_not_found(&identity));
    };
    let Some(entry) = folder.entries.iter_mut().find(|(u, _)| *u == who) else {
        return Err(no_entry(store, &who));
    };
    if entry.1 == rights {
        return Ok(Output::warning(unchanged(&identity)));
    }
    entry.1 = rights;
    commit(store, i, perms, now);
    Ok(Output::changed(Vec::new()))
}

/// Removes a user's entry; `Default` and `Anonymous` cannot be removed and are reset to `None`.
fn remove_folder_permission(p: &Params<'_>, store: &mut Store, now: Timestamp) -> Result<Output, CmdletError> {
    let (i, path, identity) = locate_folder(p, store)?;
    let who = folder_user(store, &p.required("User")?)?;
    p.bool("SendNotificationToUser")?;
    let mut perms = store.mailboxes[i].primary().clone();
    let Some(folder) = perms.folder_mut(&path) else {
        return Err(CmdletError::folder_not_found(&identity));
    };
    match &who {
        FolderUser::Principal(_) => {
            if folder.entry(&who).is_none() {
                return Err(no_entry(store, &who));
            }
            folder.entries.retain(|(u, _)| *u != who);
        }
        _ => {
            let none = vec!["None".to_owned()];
            let Some(entry) = folder.entries.iter_mut().find(|(u, _)| *u == who) else {
                return Err(no_entry(store, &who));
            };
            if entry.1 == none {
                return Ok(Output::warning(unchanged(&identity)));
            }
            entry.1 = none;
        }
    }
    commit(store, i, perms, now);
    Ok(Output::changed(Vec::new()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn folder_identities() {
        assert_eq!(split_folder_identity("finance@contoso.com:\\"), ("finance@contoso.com".into(), String::new()));
        assert_eq!(split_folder_identity("finance:\\Inbox\\"), ("finance".into(), "Inbox".into()));
        assert_eq!(split_folder_identity("finance:\\Inbox\\Sub"), ("finance".into(), "Inbox\\Sub".into()));
        assert_eq!(split_folder_identity("finance"), ("finance".into(), String::new()));
    }

    #[test]
    fn parameters_are_case_insensitive_and_lists_split() {
        let map = serde_json::json!({ "identity": "x", "ACCESSRIGHTS": "FullAccess, readpermission", "AutoMapping": "$false" });
        let p = Params(map.as_object().unwrap());
        let spec = spec("add-mailboxpermission").unwrap();
        assert_eq!(
            p.check(spec).unwrap_err().message,
            "Cannot process command because of one or more missing mandatory parameters: User."
        );
        assert_eq!(
            canon_list("AccessRights", &p.list("AccessRights").unwrap().unwrap(), MAILBOX_RIGHTS).unwrap(),
            vec!["FullAccess".to_owned(), "ReadPermission".to_owned()]
        );
        assert_eq!(p.bool("automapping").unwrap(), Some(false));
        let map = serde_json::json!({ "Identity": "x", "Colour": "red" });
        let e = Params(map.as_object().unwrap()).check(spec).unwrap_err();
        assert_eq!(e.message, "A parameter cannot be found that matches parameter name 'Colour'.");
    }
}
