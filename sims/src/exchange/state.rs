//! The mailbox store behind the Exchange simulator, and [`ExchangeState`], its inspection handle.
//!
//! Each mailbox keeps two copies of its permissions: the primary copy, which writes change at once
//! (so a second identical add already gets the "already present" warning), and the copy `Get-*`
//! cmdlets read, which catches up with each write only after the propagation delay has passed on
//! the simulated clock. Changes made through [`ExchangeState`] skip the delay.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::errors::{CmdletError, FOREST};
use crate::clock::Clock;
use crate::error::SimError;
use crate::tenant::{Group, Mailbox, Tenant, User};

/// Counters of what the Exchange simulator did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExchangeCounters {
    /// Requests that passed authentication (batch items count one each).
    pub requests: u64,
    /// Cmdlets that ran (passed the role check and throttling), successful or not.
    pub cmdlets: u64,
    /// Write cmdlets that changed a mailbox.
    pub writes_applied: u64,
    /// Cmdlets refused with 429.
    pub throttled: u64,
}

/// Someone a permission can be granted to: a directory user or a mail-enabled security group.
#[derive(Clone, Debug)]
pub(crate) struct Principal {
    pub id: String,
    /// UPN of a user, primary address of a group.
    pub upn: String,
    pub mail: Option<String>,
    pub alias: String,
    pub display_name: String,
    pub is_group: bool,
}

impl Principal {
    fn from_user(u: &User) -> Self {
        Self {
            id: u.id.clone(),
            upn: u.user_principal_name.clone(),
            mail: u.mail.clone(),
            alias: u.user_principal_name.split('@').next().unwrap_or(&u.user_principal_name).to_owned(),
            display_name: u.display_name.clone(),
            is_group: false,
        }
    }

    fn from_group(g: &Group) -> Option<Self> {
        let unified = g.group_types.iter().any(|t| t == "Unified");
        let mail = g.mail.clone().filter(|_| g.mail_enabled && g.security_enabled && !unified)?;
        Some(Self {
            id: g.id.clone(),
            upn: mail.clone(),
            mail: Some(mail),
            alias: g.mail_nickname.clone(),
            display_name: g.display_name.clone(),
            is_group: true,
        })
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        [
            Some(self.id.as_str()),
            Some(self.upn.as_str()),
            self.mail.as_deref(),
            Some(&self.alias),
            Some(&self.display_name),
        ]
        .into_iter()
        .flatten()
    }

    /// How `Get-MailboxPermission` (`User`) and `Get-RecipientPermission` (`Trustee`) show it.
    pub(crate) fn trustee_name(&self) -> &str {
        if self.is_group { &self.alias } else { &self.upn }
    }

    /// The account an ACE warning names: `NAMPR01A001\alias`.
    pub(crate) fn account(&self) -> String {
        format!("{FOREST}\\{}", self.alias)
    }
}

/// One Full Access (or other mailbox-right) entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ace {
    pub principal: String,
    pub rights: Vec<String>,
    pub inheritance: String,
    pub auto_mapping: bool,
    pub deny: bool,
}

/// Who a folder entry is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FolderUser {
    Default,
    Anonymous,
    Principal(String),
}

/// One folder and its ACL.
#[derive(Clone, Debug)]
pub(crate) struct Folder {
    /// `""` for the top of the store, `Inbox`, `Inbox\Invoices`.
    pub path: String,
    /// `FolderName` in cmdlet output.
    pub name: String,
    pub entries: Vec<(FolderUser, Vec<String>)>,
}

impl Folder {
    fn new(path: &str) -> Self {
        let name = if path.is_empty() {
            "Top of Information Store".to_owned()
        } else {
            path.rsplit('\\').next().unwrap_or(path).to_owned()
        };
        let default = if path.eq_ignore_ascii_case("Calendar") { "AvailabilityOnly" } else { "None" };
        Self {
            path: path.to_owned(),
            name,
            entries: vec![
                (FolderUser::Default, vec![default.to_owned()]),
                (FolderUser::Anonymous, vec!["None".to_owned()]),
            ],
        }
    }

    pub(crate) fn entry(&self, who: &FolderUser) -> Option<&Vec<String>> {
        self.entries.iter().find(|(u, _)| u == who).map(|(_, r)| r)
    }
}

const DEFAULT_FOLDERS: &[&str] = &["", "Inbox", "Calendar", "Contacts", "Sent Items", "Deleted Items", "Drafts"];

/// Normalises a folder path: backslashes, no leading or trailing separator.
pub(crate) fn normalize_folder(path: &str) -> String {
    path.trim().replace('/', "\\").trim_matches('\\').to_owned()
}

/// The permissions of one mailbox.
#[derive(Clone, Debug, Default)]
pub(crate) struct Perms {
    pub full_access: Vec<Ace>,
    /// Principal ids.
    pub send_as: Vec<String>,
    /// Principal ids, in the order they were added.
    pub send_on_behalf: Vec<String>,
    pub folders: Vec<Folder>,
}

impl Perms {
    pub(crate) fn folder(&self, path: &str) -> Option<&Folder> {
        let path = normalize_folder(path);
        self.folders.iter().find(|f| f.path.eq_ignore_ascii_case(&path))
    }

    pub(crate) fn folder_mut(&mut self, path: &str) -> Option<&mut Folder> {
        let path = normalize_folder(path);
        self.folders.iter_mut().find(|f| f.path.eq_ignore_ascii_case(&path))
    }
}

/// A mailbox: its identity and both copies of its permissions.
#[derive(Clone, Debug)]
pub(crate) struct MailboxRecord {
    pub guid: String,
    pub smtp: String,
    pub alias: String,
    pub display_name: String,
    pub rtd: String,
    pub user_id: Option<String>,
    /// `EmailAddresses`: `SMTP:primary`, `smtp:alias@<initial domain>`.
    pub emails: Vec<String>,
    primary: Perms,
    visible: Perms,
    pending: VecDeque<(Timestamp, Perms)>,
}

impl MailboxRecord {
    fn new(m: &Mailbox, domain: &str) -> Self {
        let perms = Perms { folders: DEFAULT_FOLDERS.iter().map(|p| Folder::new(p)).collect(), ..Perms::default() };
        let mut emails = vec![format!("SMTP:{}", m.primary_smtp_address)];
        let routing = format!("{}@{domain}", m.alias);
        if !routing.eq_ignore_ascii_case(&m.primary_smtp_address) {
            emails.push(format!("smtp:{routing}"));
        }
        Self {
            guid: m.guid.clone(),
            smtp: m.primary_smtp_address.clone(),
            alias: m.alias.clone(),
            display_name: m.display_name.clone(),
            rtd: m.recipient_type_details.clone(),
            user_id: m.user_id.clone(),
            emails,
            visible: perms.clone(),
            primary: perms,
            pending: VecDeque::new(),
        }
    }

    /// `Identity` and `Name` in cmdlet output.
    pub(crate) fn identity(&self) -> &str {
        &self.alias
    }

    /// The distinguished name ACE warnings quote.
    pub(crate) fn dn(&self, domain: &str) -> String {
        format!(
            "CN={},OU={domain},OU=Microsoft Exchange Hosted Organizations,DC={FOREST},DC=PROD,DC=OUTLOOK,DC=COM",
            self.alias
        )
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        [
            Some(self.guid.as_str()),
            Some(&self.smtp),
            Some(&self.alias),
            Some(&self.display_name),
            self.user_id.as_deref(),
        ]
        .into_iter()
        .flatten()
        .chain(self.emails.iter().map(|e| e.split_once(':').map_or(e.as_str(), |(_, a)| a)))
    }

    /// The authoritative copy that writes check and change.
    pub(crate) fn primary(&self) -> &Perms {
        &self.primary
    }

    /// What `Get-*` sees at `now`.
    pub(crate) fn visible(&mut self, now: Timestamp) -> &Perms {
        while self.pending.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, perms)) = self.pending.pop_front() {
                self.visible = perms;
            }
        }
        &self.visible
    }

    /// Replaces the primary copy; reads see it after `delay`.
    pub(crate) fn commit(&mut self, perms: Perms, now: Timestamp, delay: Duration) {
        if delay.is_zero() {
            self.pending.clear();
            self.visible = perms.clone();
        } else {
            let _ = self.visible(now);
            let at = now.checked_add(SignedDuration::try_from(delay).unwrap_or(SignedDuration::ZERO)).unwrap_or(now);
            // A newer state supersedes pending ones that would become visible later.
            self.pending.retain(|(t, _)| *t < at);
            self.pending.push_back((at, perms.clone()));
        }
        self.primary = perms;
    }

    fn settle(&mut self) {
        self.pending.clear();
        self.visible = self.primary.clone();
    }
}

/// Everything the simulator knows, behind one lock.
#[derive(Debug)]
pub(crate) struct Store {
    pub mailboxes: Vec<MailboxRecord>,
    pub principals: Vec<Principal>,
    /// The tenant's initial domain.
    pub domain: String,
    pub delay: Duration,
    pub counters: ExchangeCounters,
    pub rbac_missing: bool,
}

fn matches_any<'a>(mut names: impl Iterator<Item = &'a str>, wanted: &str) -> bool {
    names.any(|n| n.eq_ignore_ascii_case(wanted))
}

impl Store {
    pub(crate) fn from_tenant(t: &Tenant, delay: Duration) -> Result<Self, SimError> {
        let mut store = Store {
            mailboxes: Vec::new(),
            principals: Vec::new(),
            domain: t.domain.clone(),
            delay,
            counters: ExchangeCounters::default(),
            rbac_missing: false,
        };
        for u in &t.users {
            store.principals.push(Principal::from_user(u));
        }
        store.principals.extend(t.groups.iter().filter_map(Principal::from_group));
        for m in &t.mailboxes {
            store.upsert_mailbox(m)?;
        }
        Ok(store)
    }

    /// Adds or replaces a mailbox with the permissions of its seed.
    pub(crate) fn upsert_mailbox(&mut self, m: &Mailbox) -> Result<(), SimError> {
        let mut record = MailboxRecord::new(m, &self.domain);
        let mut perms = record.primary.clone();
        let resolve = |store: &Store, who: &str| -> Result<String, SimError> {
            match store.find_principal(who) {
                Ok(Some(p)) => Ok(p.id.clone()),
                _ => Err(SimError::Config(format!(
                    "mailbox {}: no user or mail-enabled group {who}",
                    m.primary_smtp_address
                ))),
            }
        };
        for g in &m.full_access {
            let principal = resolve(self, &g.user)?;
            let group = self.principal(&principal).is_some_and(|p| p.is_group);
            perms.full_access.push(Ace {
                principal,
                rights: vec!["FullAccess".to_owned()],
                inheritance: "All".to_owned(),
                auto_mapping: g.auto_mapping && !group,
                deny: false,
            });
        }
        for who in &m.send_as {
            perms.send_as.push(resolve(self, who)?);
        }
        for who in &m.send_on_behalf {
            perms.send_on_behalf.push(resolve(self, who)?);
        }
        for g in &m.folder_grants {
            let principal = resolve(self, &g.user)?;
            if perms.folder(&g.folder).is_none() {
                perms.folders.push(Folder::new(&normalize_folder(&g.folder)));
            }
            if let Some(folder) = perms.folder_mut(&g.folder) {
                folder.entries.retain(|(u, _)| *u != FolderUser::Principal(principal.clone()));
                folder.entries.push((FolderUser::Principal(principal), vec![g.access_rights.clone()]));
            }
        }
        record.primary = perms.clone();
        record.visible = perms;
        self.mailboxes.retain(|r| !r.guid.eq_ignore_ascii_case(&m.guid));
        self.mailboxes.push(record);
        Ok(())
    }

    /// The mailbox an `-Identity` names (any of its names, case-insensitive).
    pub(crate) fn find_mailbox(&self, identity: &str) -> Result<usize, CmdletError> {
        let wanted = identity.trim();
        let hits: Vec<usize> =
            self.mailboxes.iter().enumerate().filter(|(_, m)| matches_any(m.names(), wanted)).map(|(i, _)| i).collect();
        match hits.as_slice() {
            [] => Err(CmdletError::object_not_found(wanted)),
            [one] => Ok(*one),
            _ => Err(CmdletError::ambiguous(wanted)),
        }
    }

    /// The user or group a trustee parameter names; `Ok(None)` when nothing matches.
    pub(crate) fn find_principal(&self, name: &str) -> Result<Option<&Principal>, CmdletError> {
        let wanted = name.trim();
        let hits: Vec<&Principal> = self.principals.iter().filter(|p| matches_any(p.names(), wanted)).collect();
        match hits.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => Err(CmdletError::ambiguous(wanted)),
        }
    }

    pub(crate) fn principal(&self, id: &str) -> Option<&Principal> {
        self.principals.iter().find(|p| p.id.eq_ignore_ascii_case(id))
    }

    /// How a principal id shows in state views (UPN, or a group's address).
    fn label(&self, id: &str) -> String {
        self.principal(id).map_or_else(|| id.to_owned(), |p| p.upn.clone())
    }

    fn view(&self, m: &MailboxRecord, perms: &Perms) -> MailboxView {
        MailboxView {
            guid: m.guid.clone(),
            primary_smtp_address: m.smtp.clone(),
            alias: m.alias.clone(),
            display_name: m.display_name.clone(),
            recipient_type_details: m.rtd.clone(),
            full_access: perms
                .full_access
                .iter()
                .map(|a| FullAccessEntry {
                    user: self.label(&a.principal),
                    access_rights: a.rights.clone(),
                    inheritance_type: a.inheritance.clone(),
                    auto_mapping: a.auto_mapping,
                    deny: a.deny,
                })
                .collect(),
            send_as: perms.send_as.iter().map(|p| self.label(p)).collect(),
            send_on_behalf: perms.send_on_behalf.iter().map(|p| self.label(p)).collect(),
            folders: perms
                .folders
                .iter()
                .map(|f| FolderView {
                    folder: f.path.clone(),
                    entries: f
                        .entries
                        .iter()
                        .map(|(u, rights)| FolderEntry {
                            user: match u {
                                FolderUser::Default => "Default".to_owned(),
                                FolderUser::Anonymous => "Anonymous".to_owned(),
                                FolderUser::Principal(id) => self.label(id),
                            },
                            access_rights: rights.clone(),
                        })
                        .collect(),
                })
                .collect(),
            pending_changes: m.pending.len(),
        }
    }
}

/// A mailbox and its permissions, as the simulator holds them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MailboxView {
    pub guid: String,
    pub primary_smtp_address: String,
    pub alias: String,
    pub display_name: String,
    pub recipient_type_details: String,
    pub full_access: Vec<FullAccessEntry>,
    /// Send As trustees (UPNs; a group's address).
    pub send_as: Vec<String>,
    /// `GrantSendOnBehalfTo` (UPNs; a group's address).
    pub send_on_behalf: Vec<String>,
    pub folders: Vec<FolderView>,
    /// Writes not yet visible to `Get-*` (propagation delay).
    pub pending_changes: usize,
}

impl MailboxView {
    /// The rights of `user` (UPN, case-insensitive) on a folder (`""` = top of store).
    pub fn folder_rights(&self, folder: &str, user: &str) -> Option<Vec<String>> {
        let folder = normalize_folder(folder);
        self.folders
            .iter()
            .find(|f| f.folder.eq_ignore_ascii_case(&folder))?
            .entries
            .iter()
            .find(|e| e.user.eq_ignore_ascii_case(user))
            .map(|e| e.access_rights.clone())
    }

    /// Whether `user` (UPN) holds an allow entry with FullAccess.
    pub fn has_full_access(&self, user: &str) -> bool {
        self.full_access
            .iter()
            .any(|a| a.user.eq_ignore_ascii_case(user) && !a.deny && a.access_rights.iter().any(|r| r == "FullAccess"))
    }
}

/// One mailbox-right entry in a [`MailboxView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FullAccessEntry {
    pub user: String,
    pub access_rights: Vec<String>,
    pub inheritance_type: String,
    pub auto_mapping: bool,
    pub deny: bool,
}

/// One folder's ACL in a [`MailboxView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderView {
    /// `""` for the top of the store, `Inbox`, ...
    pub folder: String,
    pub entries: Vec<FolderEntry>,
}

/// One folder ACL entry: `Default`, `Anonymous`, or a user's UPN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderEntry {
    pub user: String,
    pub access_rights: Vec<String>,
}

/// Inspection and set-up of the Exchange simulator's mailboxes, for tests and the demo. Cloning
/// shares the state. Changes made here are visible at once (no propagation delay).
#[derive(Clone, Debug)]
pub struct ExchangeState {
    pub(crate) store: Arc<Mutex<Store>>,
    pub(crate) clock: Clock,
}

fn not_found(what: &str, e: CmdletError) -> SimError {
    SimError::NotFound(format!("{what}: {}", e.message))
}

impl ExchangeState {
    pub(crate) fn new(tenant: &Tenant, clock: Clock, delay: Duration) -> Result<Self, SimError> {
        Ok(Self { store: Arc::new(Mutex::new(Store::from_tenant(tenant, delay)?)), clock })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every mailbox (primary copy), in seed order.
    pub fn mailboxes(&self) -> Vec<MailboxView> {
        let s = self.lock();
        s.mailboxes.iter().map(|m| s.view(m, m.primary())).collect()
    }

    /// A mailbox by any identity form (address, alias, display name, GUID), primary copy.
    pub fn mailbox(&self, identity: &str) -> Option<MailboxView> {
        let s = self.lock();
        let i = s.find_mailbox(identity).ok()?;
        let m = &s.mailboxes[i];
        Some(s.view(m, m.primary()))
    }

    /// A mailbox as `Get-*` cmdlets see it now (propagation delay applied).
    pub fn visible_mailbox(&self, identity: &str) -> Option<MailboxView> {
        let now = self.clock.now();
        let mut s = self.lock();
        let i = s.find_mailbox(identity).ok()?;
        let perms = s.mailboxes[i].visible(now).clone();
        Some(s.view(&s.mailboxes[i], &perms))
    }

    /// Whether `user` holds Full Access on `mailbox` (primary copy).
    pub fn has_full_access(&self, mailbox: &str, user: &str) -> bool {
        self.mailbox(mailbox).is_some_and(|m| m.has_full_access(user))
    }

    /// Whether `user` holds Send As on `mailbox` (primary copy).
    pub fn has_send_as(&self, mailbox: &str, user: &str) -> bool {
        self.mailbox(mailbox).is_some_and(|m| m.send_as.iter().any(|u| u.eq_ignore_ascii_case(user)))
    }

    /// Whether `user` is in `GrantSendOnBehalfTo` of `mailbox` (primary copy).
    pub fn has_send_on_behalf(&self, mailbox: &str, user: &str) -> bool {
        self.mailbox(mailbox).is_some_and(|m| m.send_on_behalf.iter().any(|u| u.eq_ignore_ascii_case(user)))
    }

    /// The rights of `user` on a folder of `mailbox` (`""` = top of store), primary copy.
    pub fn folder_rights(&self, mailbox: &str, folder: &str, user: &str) -> Option<Vec<String>> {
        self.mailbox(mailbox)?.folder_rights(folder, user)
    }

    /// Counters of requests, cmdlets, writes and throttling.
    pub fn counters(&self) -> ExchangeCounters {
        self.lock().counters
    }

    /// Adds or replaces a mailbox (by GUID) with the permissions of its seed.
    pub fn upsert_mailbox(&self, mailbox: &Mailbox) -> Result<(), SimError> {
        self.lock().upsert_mailbox(mailbox)
    }

    /// Adds or replaces a directory user that permissions may name.
    pub fn upsert_user(&self, user: &User) {
        let mut s = self.lock();
        s.principals.retain(|p| !p.id.eq_ignore_ascii_case(&user.id));
        s.principals.push(Principal::from_user(user));
    }

    /// Sets the propagation delay for later writes.
    pub fn set_propagation_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// The delay later writes will have before `Get-*` sees them.
    pub fn propagation_delay(&self) -> Duration {
        self.lock().delay
    }

    /// Applies `f` to the primary copy of a mailbox's permissions and makes it visible at once.
    fn change(
        &self,
        mailbox: &str,
        user: Option<&str>,
        f: impl FnOnce(&mut Perms, Option<&Principal>) -> bool,
    ) -> Result<bool, SimError> {
        let mut s = self.lock();
        let i = s.find_mailbox(mailbox).map_err(|e| not_found("mailbox", e))?;
        let principal = match user {
            Some(u) => Some(
                s.find_principal(u)
                    .map_err(|e| not_found("user", e))?
                    .cloned()
                    .ok_or_else(|| SimError::NotFound(format!("user {u}")))?,
            ),
            None => None,
        };
        let m = &mut s.mailboxes[i];
        let mut perms = m.primary().clone();
        let changed = f(&mut perms, principal.as_ref());
        m.primary = perms;
        m.settle();
        Ok(changed)
    }

    /// Grants Full Access (returns whether it changed anything).
    pub fn grant_full_access(&self, mailbox: &str, user: &str, auto_mapping: bool) -> Result<bool, SimError> {
        self.change(mailbox, Some(user), |perms, p| {
            let Some(p) = p else { return false };
            if perms.full_access.iter().any(|a| a.principal == p.id && !a.deny) {
                return false;
            }
            perms.full_access.push(Ace {
                principal: p.id.clone(),
                rights: vec!["FullAccess".to_owned()],
                inheritance: "All".to_owned(),
                auto_mapping: auto_mapping && !p.is_group,
                deny: false,
            });
            true
        })
    }

    /// Removes every allow entry of `user` (returns whether one was there).
    pub fn revoke_full_access(&self, mailbox: &str, user: &str) -> Result<bool, SimError> {
        self.change(mailbox, Some(user), |perms, p| {
            let Some(p) = p else { return false };
            let before = perms.full_access.len();
            perms.full_access.retain(|a| a.principal != p.id || a.deny);
            perms.full_access.len() != before
        })
    }

    /// Grants Send As.
    pub fn grant_send_as(&self, mailbox: &str, user: &str) -> Result<bool, SimError> {
        self.change(mailbox, Some(user), |perms, p| {
            let Some(p) = p else { return false };
            if perms.send_as.contains(&p.id) {
                return false;
            }
            perms.send_as.push(p.id.clone());
            true
        })
    }

    /// Removes Send As.
    pub fn revoke_send_as(&self, mailbox: &str, user: &str) -> Result<bool, SimError> {
        self.change(mailbox, Some(user), |perms, p| {
            let Some(p) = p else { return false };
            let before = perms.send_as.len();
            perms.send_as.retain(|id| *id != p.id);
            perms.send_as.len() != before
        })
    }

    /// Adds a `GrantSendOnBehalfTo` delegate.
    pub fn grant_send_on_behalf(&self, mailbox: &str, user: &str) -> Result<bool, SimError> {
        self.change(mailbox, Some(user), |perms, p| {
            let Some(p) = p else { return false };
            if perms.send_on_behalf.contains(&p.id) {
                return false;
            }
            perms.send_on_behalf.push(p.id.clone());
            true
        })
    }

    /// Removes a `GrantSendOnBehalfTo` delegate.
    pub fn revoke_send_on_behalf(&self, mailbox: &str, user: &str) -> Result<bool, SimError> {
        self.change(mailbox, Some(user), |perms, p| {
            let Some(p) = p else { return false };
            let before = perms.send_on_behalf.len();
            perms.send_on_behalf.retain(|id| *id != p.id);
            perms.send_on_behalf.len() != before
        })
    }

    /// Sets (`Some(role)`) or removes (`None`) `user`'s entry on a folder (`""` = top of store),
    /// creating the folder if it does not exist.
    pub fn set_folder_permission(
        &self,
        mailbox: &str,
        folder: &str,
        user: &str,
        role: Option<&str>,
    ) -> Result<bool, SimError> {
        self.change(mailbox, Some(user), |perms, p| {
            let Some(p) = p else { return false };
            if perms.folder(folder).is_none() {
                perms.folders.push(Folder::new(&normalize_folder(folder)));
            }
            let Some(f) = perms.folder_mut(folder) else { return false };
            let who = FolderUser::Principal(p.id.clone());
            let before = f.entry(&who).cloned();
            f.entries.retain(|(u, _)| *u != who);
            if let Some(role) = role {
                f.entries.push((who, vec![role.to_owned()]));
            }
            before != role.map(|r| vec![r.to_owned()])
        })
    }

    /// Adds a folder (e.g. `Inbox\Invoices`) with the default ACL; false if it exists.
    pub fn add_folder(&self, mailbox: &str, folder: &str) -> Result<bool, SimError> {
        self.change(mailbox, None, |perms, _| {
            if perms.folder(folder).is_some() {
                return false;
            }
            perms.folders.push(Folder::new(&normalize_folder(folder)));
            true
        })
    }
}
