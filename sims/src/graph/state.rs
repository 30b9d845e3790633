//! The in-memory directory behind the Graph simulator, and [`GraphState`], its inspection handle.
//!
//! Memberships carry a visibility time: a write is applied to the primary copy at once (so a
//! duplicate add is refused at once), but reads that go through replicas (`GET
//! /groups/{id}/members[/{id}]`, `transitiveMembers`, `checkMemberGroups`, `checkMemberObjects`, `memberOf`) see the
//! previous state until the configured replication delay has passed on the simulated clock.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::delta::DeltaStore;
use super::mailbox::Mailboxes;
use crate::clock::Clock;
use crate::error::SimError;
use crate::tenant::{Group, Tenant, User};

/// Writes the throttling buckets let through and refused in one second of the simulated clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WriteSecond {
    /// Unix seconds.
    pub second: i64,
    pub accepted: u64,
    pub refused: u64,
}

/// Counters of what the Graph simulator did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GraphCounters {
    /// Requests that passed authentication (batch items count one each).
    pub requests: u64,
    /// Write requests (POST/PATCH/PUT/DELETE) that passed throttling.
    pub writes_attempted: u64,
    /// Writes that changed the directory.
    pub writes_applied: u64,
    /// Requests answered 429 by the throttling buckets.
    pub throttled: u64,
    /// Write requests answered 429 by the throttling buckets (also counted in `throttled`).
    pub writes_refused: u64,
    /// User objects deleted (by `DELETE /groups/{id}/members/{id}` without `/$ref`).
    pub users_deleted: u64,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Membership {
    present: bool,
    prev: bool,
    visible_at: Timestamp,
    seq: u64,
}

impl Membership {
    fn visible(&self, now: Timestamp) -> bool {
        if now >= self.visible_at { self.present } else { self.prev }
    }
}

/// A directory object: a user or a group.
#[derive(Clone, Debug)]
pub(crate) enum DirObject {
    User(User),
    Group(Group),
}

#[derive(Debug, Default)]
pub(crate) struct Directory {
    users: BTreeMap<String, User>,
    upn_index: HashMap<String, String>,
    groups: BTreeMap<String, Group>,
    managers: HashMap<String, String>,
    members: HashMap<String, BTreeMap<String, Membership>>,
    deleted_users: Vec<User>,
    /// Users deleted but restorable (a delta reports them `"reason": "changed"`), by key.
    soft_deleted: BTreeMap<String, User>,
    pub(crate) counters: GraphCounters,
    /// Writes per simulated second: (accepted, refused).
    pub(crate) write_log: BTreeMap<i64, (u64, u64)>,
    pub(crate) delta: DeltaStore,
    pub(crate) mailboxes: Mailboxes,
    pub(crate) replication_delay: Duration,
    seq: u64,
}

fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

impl Directory {
    pub(crate) fn from_tenant(t: &Tenant, now: Timestamp) -> Self {
        let mut d = Directory::default();
        for u in &t.users {
            d.put_user(u.clone());
        }
        for g in &t.groups {
            d.groups.insert(key(&g.id), g.clone());
        }
        for (g, m) in &t.memberships {
            d.set_member(g, m, true, now, Duration::ZERO);
        }
        for (u, m) in &t.managers {
            d.managers.insert(key(u), key(m));
        }
        d.mailboxes = Mailboxes::from_tenant(t, now);
        d
    }

    fn put_user(&mut self, u: User) {
        if let Some(old) = self.users.get(&key(&u.id)) {
            self.upn_index.remove(&old.user_principal_name.to_ascii_lowercase());
        }
        self.upn_index.insert(u.user_principal_name.to_ascii_lowercase(), key(&u.id));
        self.users.insert(key(&u.id), u);
    }

    pub(crate) fn all_users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// Live users by key (lower-case id), in key order.
    pub(crate) fn users_by_key(&self) -> &BTreeMap<String, User> {
        &self.users
    }

    /// Deleted, restorable users by key.
    pub(crate) fn soft_deleted(&self) -> &BTreeMap<String, User> {
        &self.soft_deleted
    }

    /// Counts one write the throttling buckets accepted or refused.
    pub(crate) fn record_write(&mut self, now: Timestamp, accepted: bool) {
        let slot = self.write_log.entry(now.as_second()).or_default();
        if accepted {
            slot.0 += 1;
        } else {
            slot.1 += 1;
            self.counters.writes_refused += 1;
        }
    }

    /// A user by id or UPN (case-insensitive).
    pub(crate) fn user(&self, id_or_upn: &str) -> Option<&User> {
        let k = key(id_or_upn);
        self.users.get(&k).or_else(|| self.upn_index.get(&k).and_then(|id| self.users.get(id)))
    }

    pub(crate) fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(&key(id))
    }

    pub(crate) fn group_mut(&mut self, id: &str) -> Option<&mut Group> {
        self.groups.get_mut(&key(id))
    }

    pub(crate) fn object(&self, id: &str) -> Option<DirObject> {
        if let Some(u) = self.users.get(&key(id)) {
            return Some(DirObject::User(u.clone()));
        }
        self.group(id).map(|g| DirObject::Group(g.clone()))
    }

    pub(crate) fn manager_of(&self, user_id: &str) -> Option<&User> {
        self.managers.get(&key(user_id)).and_then(|m| self.users.get(m))
    }

    /// Primary (authoritative) membership.
    pub(crate) fn is_member(&self, group: &str, member: &str) -> bool {
        self.members.get(&key(group)).and_then(|m| m.get(&key(member))).is_some_and(|m| m.present)
    }

    /// Membership as replicas see it at `now`.
    pub(crate) fn is_member_visible(&self, group: &str, member: &str, now: Timestamp) -> bool {
        self.members.get(&key(group)).and_then(|m| m.get(&key(member))).is_some_and(|m| m.visible(now))
    }

    /// Members as replicas see them at `now`, in the order they were added.
    pub(crate) fn visible_members(&self, group: &str, now: Timestamp) -> Vec<String> {
        let Some(map) = self.members.get(&key(group)) else {
            return Vec::new();
        };
        let mut v: Vec<(u64, &String)> =
            map.iter().filter(|(_, m)| m.visible(now)).map(|(id, m)| (m.seq, id)).collect();
        v.sort();
        v.into_iter().map(|(_, id)| id.clone()).collect()
    }

    /// Members of `group` directly or through nested groups, as replicas see them: each
    /// direct member in order, a nested group followed by its own members (the nested groups
    /// are members too, as `transitiveMembers` lists them), every object once.
    pub(crate) fn visible_transitive_members(&self, group: &str, now: Timestamp) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::from([key(group)]);
        let mut stack: Vec<String> = self.visible_members(group, now).into_iter().rev().collect();
        while let Some(id) = stack.pop() {
            if !seen.insert(key(&id)) {
                continue;
            }
            if self.group(&id).is_some() {
                stack.extend(self.visible_members(&id, now).into_iter().rev());
            }
            out.push(id);
        }
        out
    }

    fn primary_members(&self, group: &str) -> Vec<String> {
        let Some(map) = self.members.get(&key(group)) else {
            return Vec::new();
        };
        let mut v: Vec<(u64, &String)> = map.iter().filter(|(_, m)| m.present).map(|(id, m)| (m.seq, id)).collect();
        v.sort();
        v.into_iter().map(|(_, id)| id.clone()).collect()
    }

    /// Sets primary membership; replicas follow after `delay`. Returns whether it changed.
    pub(crate) fn set_member(
        &mut self,
        group: &str,
        member: &str,
        present: bool,
        now: Timestamp,
        delay: Duration,
    ) -> bool {
        self.seq += 1;
        let seq = self.seq;
        let visible_at =
            now.checked_add(SignedDuration::try_from(delay).unwrap_or(SignedDuration::ZERO)).unwrap_or(now);
        let map = self.members.entry(key(group)).or_default();
        match map.get_mut(&key(member)) {
            Some(m) => {
                if m.present == present {
                    return false;
                }
                let seen = m.visible(now);
                m.prev = seen;
                m.present = present;
                m.visible_at = visible_at;
                if present {
                    m.seq = seq;
                }
            }
            None => {
                if !present {
                    return false;
                }
                map.insert(key(member), Membership { present, prev: false, visible_at, seq });
            }
        }
        true
    }

    /// Groups that contain `member`, directly or through nested groups, as replicas see them.
    pub(crate) fn transitive_groups(&self, member: &str, now: Timestamp) -> HashSet<String> {
        let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
        for (g, map) in &self.members {
            for (m, st) in map {
                if st.visible(now) {
                    parents.entry(m.as_str()).or_default().push(g.as_str());
                }
            }
        }
        let mut seen = HashSet::new();
        let start = key(member);
        let mut queue: VecDeque<&str> = VecDeque::from([start.as_str()]);
        while let Some(cur) = queue.pop_front() {
            for p in parents.get(cur).into_iter().flatten() {
                if seen.insert((*p).to_owned()) {
                    queue.push_back(p);
                }
            }
        }
        seen
    }

    /// Deletes a user object and every reference to it.
    pub(crate) fn delete_user(&mut self, id: &str) -> Option<User> {
        let u = self.users.remove(&key(id))?;
        self.upn_index.remove(&u.user_principal_name.to_ascii_lowercase());
        for map in self.members.values_mut() {
            map.remove(&key(id));
        }
        self.managers.remove(&key(id));
        self.managers.retain(|_, m| *m != key(id));
        self.deleted_users.push(u.clone());
        self.soft_deleted.insert(key(&u.id), u.clone());
        self.counters.users_deleted += 1;
        Some(u)
    }

    /// Deletes a user for good (from the live directory or from the deleted items).
    pub(crate) fn purge_user(&mut self, id: &str) -> bool {
        let live = self.delete_user(id).is_some();
        self.soft_deleted.remove(&key(id)).is_some() || live
    }

    /// Brings a soft-deleted user back (memberships and manager links are not restored).
    pub(crate) fn restore_user(&mut self, id: &str) -> bool {
        match self.soft_deleted.remove(&key(id)) {
            Some(u) => {
                self.put_user(u);
                true
            }
            None => false,
        }
    }

    /// Deletes a group object and its memberships.
    pub(crate) fn delete_group(&mut self, id: &str) -> Option<Group> {
        let g = self.groups.remove(&key(id))?;
        self.members.remove(&key(id));
        for map in self.members.values_mut() {
            map.remove(&key(id));
        }
        Some(g)
    }
}

/// Inspection and set-up of the Graph simulator's directory, for tests and the demo. Cloning
/// shares the state.
#[derive(Clone, Debug)]
pub struct GraphState {
    pub(crate) dir: Arc<Mutex<Directory>>,
    pub(crate) clock: Clock,
}

impl GraphState {
    pub(crate) fn new(tenant: &Tenant, clock: Clock, replication_delay: Duration) -> Self {
        let mut dir = Directory::from_tenant(tenant, clock.now());
        dir.replication_delay = replication_delay;
        Self { dir: Arc::new(Mutex::new(dir)), clock }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Directory> {
        self.dir.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `member` is a direct member of `group` (the primary copy, ignoring replication lag).
    pub fn is_member(&self, group_id: &str, member_id: &str) -> bool {
        self.lock().is_member(group_id, member_id)
    }

    /// Whether a read would show `member` in `group` now (replication lag applied).
    pub fn is_member_visible(&self, group_id: &str, member_id: &str) -> bool {
        let now = self.clock.now();
        self.lock().is_member_visible(group_id, member_id, now)
    }

    /// Direct member ids of a group (primary copy), in the order they were added.
    pub fn members(&self, group_id: &str) -> Vec<String> {
        self.lock().primary_members(group_id)
    }

    /// A user by id or UPN.
    pub fn user(&self, id_or_upn: &str) -> Option<User> {
        self.lock().user(id_or_upn).cloned()
    }

    /// A group by id.
    pub fn group(&self, id: &str) -> Option<Group> {
        self.lock().group(id).cloned()
    }

    /// The manager of a user, if set.
    pub fn manager(&self, user_id: &str) -> Option<User> {
        self.lock().manager_of(user_id).cloned()
    }

    /// Users deleted through the API, oldest first.
    pub fn deleted_users(&self) -> Vec<User> {
        self.lock().deleted_users.clone()
    }

    /// Counters of requests, writes and throttling.
    pub fn counters(&self) -> GraphCounters {
        self.lock().counters
    }

    /// Adds a membership at once, with no replication lag.
    pub fn add_member(&self, group_id: &str, member_id: &str) -> Result<bool, SimError> {
        let now = self.clock.now();
        let mut d = self.lock();
        if d.group(group_id).is_none() {
            return Err(SimError::NotFound(format!("group {group_id}")));
        }
        if d.object(member_id).is_none() {
            return Err(SimError::NotFound(format!("object {member_id}")));
        }
        Ok(d.set_member(group_id, member_id, true, now, Duration::ZERO))
    }

    /// Removes a membership at once, with no replication lag.
    pub fn remove_member(&self, group_id: &str, member_id: &str) -> bool {
        let now = self.clock.now();
        self.lock().set_member(group_id, member_id, false, now, Duration::ZERO)
    }

    /// Adds or replaces a user.
    pub fn upsert_user(&self, user: User) {
        self.lock().put_user(user);
    }

    /// Adds or replaces a group.
    pub fn upsert_group(&self, group: Group) {
        self.lock().groups.insert(key(&group.id), group);
    }

    /// Sets or clears a user's manager.
    pub fn set_manager(&self, user_id: &str, manager_id: Option<&str>) {
        let mut d = self.lock();
        match manager_id {
            Some(m) => d.managers.insert(key(user_id), key(m)),
            None => d.managers.remove(&key(user_id)),
        };
    }

    /// Changes a user with a closure; returns false when there is no such user.
    pub fn update_user(&self, id_or_upn: &str, f: impl FnOnce(&mut User)) -> bool {
        let mut d = self.lock();
        let Some(mut u) = d.user(id_or_upn).cloned() else {
            return false;
        };
        f(&mut u);
        d.put_user(u);
        true
    }

    /// Sets `accountEnabled: false`.
    pub fn disable_user(&self, id_or_upn: &str) -> bool {
        self.update_user(id_or_upn, |u| u.account_enabled = false)
    }

    /// Sets one user property by its Graph name (`accountEnabled`, `employeeLeaveDateTime`,
    /// `department`, ...) from a JSON value.
    pub fn set_user_field(&self, id_or_upn: &str, property: &str, value: serde_json::Value) -> Result<(), SimError> {
        let mut d = self.lock();
        let u = d.user(id_or_upn).cloned().ok_or_else(|| SimError::NotFound(format!("user {id_or_upn}")))?;
        let mut json = serde_json::to_value(&u).map_err(|e| SimError::Config(e.to_string()))?;
        let obj = json.as_object_mut().ok_or_else(|| SimError::Config("user is not an object".into()))?;
        let Some(k) = obj.keys().find(|k| k.eq_ignore_ascii_case(property)).cloned() else {
            return Err(SimError::Config(format!("unknown user property {property}")));
        };
        obj.insert(k, value);
        let updated: User = serde_json::from_value(json).map_err(|e| SimError::Config(e.to_string()))?;
        d.put_user(updated);
        Ok(())
    }

    /// Sets the replication delay for later writes.
    pub fn set_replication_delay(&self, delay: Duration) {
        self.lock().replication_delay = delay;
    }

    /// Deletes a user the way Entra does: the object goes to deleted items (restorable for 30
    /// days), memberships and manager links go. A delta query reports it with
    /// `"@removed": {"reason": "changed"}`. Returns false when there is no such user.
    pub fn delete_user(&self, id_or_upn: &str) -> bool {
        let mut d = self.lock();
        let Some(id) = d.user(id_or_upn).map(|u| u.id.clone()) else {
            return false;
        };
        d.delete_user(&id).is_some()
    }

    /// Deletes a user permanently (live or already soft-deleted, by id): a delta query reports
    /// `"@removed": {"reason": "deleted"}`.
    pub fn purge_user(&self, id: &str) -> bool {
        let mut d = self.lock();
        let id = d.user(id).map(|u| u.id.clone()).unwrap_or_else(|| id.to_owned());
        d.purge_user(&id)
    }

    /// Restores a soft-deleted user (by id).
    pub fn restore_user(&self, id: &str) -> bool {
        self.lock().restore_user(id)
    }

    /// Accepted and refused writes per second of the simulated clock, oldest first (seconds
    /// without writes are left out).
    pub fn write_histogram(&self) -> Vec<WriteSecond> {
        self.lock()
            .write_log
            .iter()
            .map(|(second, (accepted, refused))| WriteSecond {
                second: *second,
                accepted: *accepted,
                refused: *refused,
            })
            .collect()
    }

    /// The most writes accepted within any `window` (whole seconds, sliding by one second):
    /// compare it with a write budget.
    pub fn max_writes_in_window(&self, window: Duration) -> u64 {
        let span = i64::try_from(window.as_secs().max(1)).unwrap_or(i64::MAX);
        let d = self.lock();
        let mut best = 0;
        for start in d.write_log.keys() {
            let end = start.saturating_add(span);
            let sum: u64 = d.write_log.range(*start..end).map(|(_, (a, _))| *a).sum();
            best = best.max(sum);
        }
        best
    }

    /// Makes every delta and skip token unknown, as when Graph loses the sync state: the next
    /// poll is 410 `syncStateNotFound`.
    pub fn expire_delta_tokens(&self) {
        self.lock().delta.clear();
    }

    /// Sets the number of users per delta page.
    pub fn set_delta_page_size(&self, size: usize) {
        self.lock().delta.page_size = size.max(1);
    }

    /// Merges settings into a mailbox's `automaticRepliesSetting`, in Graph's JSON shape:
    /// `status` (`disabled`, `alwaysEnabled`, `scheduled`), `externalAudience` (`none`,
    /// `contactsOnly`, `all`), `scheduledStartDateTime` / `scheduledEndDateTime` (a
    /// `{"dateTime", "timeZone"}` object in UTC, or an RFC 3339 string), `internalReplyMessage`,
    /// `externalReplyMessage`. `mailbox` is a user's id or UPN, or a mailbox address.
    pub fn set_automatic_replies(&self, mailbox: &str, setting: serde_json::Value) -> Result<(), SimError> {
        let mut d = self.lock();
        let k = d.mailbox_key(mailbox).ok_or_else(|| SimError::NotFound(format!("mailbox {mailbox}")))?;
        d.mailboxes.set_automatic_replies(&k, &setting)
    }

    /// Turns on scheduled automatic replies (out of office) between `start` and `end`, with
    /// the same message inside and outside the organisation.
    pub fn set_out_of_office(
        &self,
        mailbox: &str,
        start: Timestamp,
        end: Timestamp,
        message: &str,
    ) -> Result<(), SimError> {
        self.set_automatic_replies(
            mailbox,
            serde_json::json!({
                "status": "scheduled",
                "scheduledStartDateTime": start.to_string(),
                "scheduledEndDateTime": end.to_string(),
                "internalReplyMessage": message,
                "externalReplyMessage": message,
            }),
        )
    }

    /// A mailbox's `automaticRepliesSetting` as Graph renders it.
    pub fn automatic_replies(&self, mailbox: &str) -> Option<serde_json::Value> {
        let d = self.lock();
        let k = d.mailbox_key(mailbox)?;
        d.mailboxes.automatic_replies_json(&k)
    }
}
