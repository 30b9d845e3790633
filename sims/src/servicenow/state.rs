//! The ServiceNow simulator's tables, encoded queries, rendering, and [`ServiceNowState`], the
//! handle tests and the demo use to seed and inspect records.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::schema::{self, Kind};
use crate::clock::Clock;
use crate::error::SimError;
use crate::json::{Obj, Val};

/// One row: column name to string value.
pub type Record = BTreeMap<String, String>;

/// `sys_created_on`-style time: `2026-01-22 14:12:37` (UTC, no `T`).
pub(crate) fn glide_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

pub(crate) fn new_sys_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<Record>,
    index: HashMap<String, usize>,
}

/// How `sysparm_display_value` asks for values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DisplayMode {
    Value,
    Display,
    All,
}

/// A resolved (possibly dot-walked) column of a row.
pub(crate) struct Resolved {
    pub value: String,
    pub kind: Kind,
    pub owner_sys_id: String,
    pub field: String,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    tables: HashMap<&'static str, Table>,
    ritm_seq: u64,
    req_seq: u64,
    journal_seq: u64,
    /// Whether the simulated catalog workflow settles RITMs from their approvals
    /// ([`Store::settle_approvals`]).
    pub(crate) approval_workflow: bool,
}

fn table_name(name: &str) -> Option<&'static str> {
    schema::TABLES.iter().copied().find(|t| *t == name)
}

impl Store {
    pub(crate) fn new() -> Self {
        Self { ritm_seq: 10_000, req_seq: 10_000, ..Self::default() }
    }

    pub(crate) fn get(&self, table: &str, sys_id: &str) -> Option<&Record> {
        let t = self.tables.get(table)?;
        t.index.get(sys_id).and_then(|&i| t.rows.get(i))
    }

    fn get_mut(&mut self, table: &str, sys_id: &str) -> Option<&mut Record> {
        let t = self.tables.get_mut(table)?;
        let i = *t.index.get(sys_id)?;
        t.rows.get_mut(i)
    }

    pub(crate) fn rows(&self, table: &str) -> &[Record] {
        self.tables.get(table).map(|t| t.rows.as_slice()).unwrap_or(&[])
    }

    /// Inserts a row, filling the audit columns; returns its sys_id.
    pub(crate) fn insert(
        &mut self,
        table: &str,
        mut fields: Record,
        by: &str,
        now: Timestamp,
    ) -> Result<String, SimError> {
        let name = table_name(table).ok_or_else(|| SimError::NotFound(format!("table {table}")))?;
        let sys_id = fields.get("sys_id").filter(|s| !s.is_empty()).cloned().unwrap_or_else(new_sys_id);
        let ts = glide_time(now);
        for f in schema::all_fields(name) {
            fields.entry(f.to_owned()).or_default();
        }
        fields.insert("sys_id".into(), sys_id.clone());
        fields.insert("sys_created_on".into(), ts.clone());
        fields.insert("sys_created_by".into(), by.to_owned());
        fields.insert("sys_updated_on".into(), ts);
        fields.insert("sys_updated_by".into(), by.to_owned());
        fields.insert("sys_mod_count".into(), "0".into());
        if fields.get("sys_class_name").is_some_and(String::is_empty) {
            fields.insert("sys_class_name".into(), name.to_owned());
        }
        if name == "sc_req_item" && fields.get("number").is_none_or(String::is_empty) {
            self.ritm_seq += 1;
            fields.insert("number".into(), format!("RITM{:07}", self.ritm_seq));
        }
        if name == "sysapproval_approver" && fields.get("state").is_some_and(String::is_empty) {
            fields.insert("state".into(), "requested".into());
        }
        if name == "sc_request" && fields.get("number").is_none_or(String::is_empty) {
            self.req_seq += 1;
            fields.insert("number".into(), format!("REQ{:07}", self.req_seq));
        }
        let t = self.tables.entry(name).or_default();
        if let Some(&i) = t.index.get(&sys_id) {
            if let Some(row) = t.rows.get_mut(i) {
                *row = fields;
            }
        } else {
            t.index.insert(sys_id.clone(), t.rows.len());
            t.rows.push(fields);
        }
        Ok(sys_id)
    }

    /// Sets columns of a row (no journal handling); bumps the audit columns.
    pub(crate) fn update(
        &mut self,
        table: &str,
        sys_id: &str,
        changes: &[(String, String)],
        by: &str,
        now: Timestamp,
    ) -> bool {
        let Some(row) = self.get_mut(table, sys_id) else {
            return false;
        };
        for (k, v) in changes {
            row.insert(k.clone(), v.clone());
        }
        let count = row.get("sys_mod_count").and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
        row.insert("sys_mod_count".into(), (count + 1).to_string());
        row.insert("sys_updated_on".into(), glide_time(now));
        row.insert("sys_updated_by".into(), by.to_owned());
        true
    }

    /// Appends a journal entry.
    pub(crate) fn append_journal(
        &mut self,
        table: &str,
        sys_id: &str,
        element: &str,
        value: &str,
        by: &str,
        now: Timestamp,
    ) {
        self.journal_seq += 1;
        let mut f = Record::new();
        f.insert("element_id".into(), sys_id.to_owned());
        f.insert("element".into(), element.to_owned());
        f.insert("name".into(), table.to_owned());
        f.insert("value".into(), value.to_owned());
        let _ = self.insert("sys_journal_field", f, by, now);
    }

    /// Journal rows of a record, oldest first.
    pub(crate) fn journal(&self, sys_id: &str, element: Option<&str>) -> Vec<&Record> {
        self.rows("sys_journal_field")
            .iter()
            .filter(|r| r.get("element_id").map(String::as_str) == Some(sys_id))
            .filter(|r| element.is_none_or(|e| r.get("element").map(String::as_str) == Some(e)))
            .collect()
    }

    /// The simulated catalog workflow's approval activity, run after an approval's state
    /// changed. It settles a RITM only from the approvals it requested itself (those that carry
    /// its `wf_activity`): when all of that activity's approvals are approved, the RITM is
    /// approved and moves to fulfillment; when one is rejected, the RITM is rejected and closed
    /// incomplete. An approval without a `wf_activity` (inserted through the Table API by an
    /// integration that runs its own approval engine) is left to whoever created it.
    pub(crate) fn settle_approvals(&mut self, approval_id: &str, by: &str, now: Timestamp) {
        if !self.approval_workflow {
            return;
        }
        let Some(approval) = self.get("sysapproval_approver", approval_id) else {
            return;
        };
        let activity = approval.get("wf_activity").cloned().unwrap_or_default();
        let ritm = approval.get("sysapproval").cloned().unwrap_or_default();
        if activity.is_empty() || ritm.is_empty() {
            return;
        }
        let states: Vec<&str> = self
            .rows("sysapproval_approver")
            .iter()
            .filter(|a| a.get("sysapproval") == Some(&ritm) && a.get("wf_activity") == Some(&activity))
            .filter_map(|a| a.get("state").map(String::as_str))
            .collect();
        let changes: Vec<(String, String)> = if states.contains(&"rejected") {
            vec![
                ("approval".into(), "rejected".into()),
                ("stage".into(), "Request Cancelled".into()),
                ("state".into(), "4".into()),
                ("active".into(), "false".into()),
            ]
        } else if !states.is_empty() && states.iter().all(|s| *s == "approved") {
            vec![("approval".into(), "approved".into()), ("stage".into(), "fulfillment".into())]
        } else {
            return;
        };
        let current = self.get("sc_req_item", &ritm).and_then(|r| r.get("approval").cloned());
        if current.as_deref() != Some(changes[0].1.as_str()) {
            self.update("sc_req_item", &ritm, &changes, by, now);
        }
    }

    /// A row's display value.
    pub(crate) fn display_of(&self, table: &str, sys_id: &str, depth: u8) -> String {
        let Some(row) = self.get(table, sys_id) else {
            return String::new();
        };
        let field = schema::display_field(table);
        let value = row.get(field).cloned().unwrap_or_default();
        match schema::kind(table, field) {
            Some(Kind::Ref(t)) if depth > 0 => self.display_of(t, &value, depth - 1),
            _ => value,
        }
    }

    /// Resolves a column, following dot-walks through references. `None` for unknown columns.
    pub(crate) fn resolve(&self, table: &'static str, row: &Record, path: &str) -> Option<Resolved> {
        let mut cur_table = table;
        let mut cur_row = row;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let kind = schema::kind(cur_table, part)?;
            let value = cur_row.get(*part).cloned().unwrap_or_default();
            if i + 1 == parts.len() {
                return Some(Resolved {
                    value,
                    kind,
                    owner_sys_id: cur_row.get("sys_id").cloned().unwrap_or_default(),
                    field: (*part).to_owned(),
                });
            }
            let Kind::Ref(next) = kind else {
                return None;
            };
            match self.get(next, &value) {
                Some(r) => {
                    cur_table = next;
                    cur_row = r;
                }
                None => {
                    let last = parts.last().copied().unwrap_or("");
                    let kind = schema::kind(next, last).unwrap_or(Kind::Str);
                    return Some(Resolved {
                        value: String::new(),
                        kind,
                        owner_sys_id: String::new(),
                        field: last.to_owned(),
                    });
                }
            }
        }
        None
    }

    fn journal_display(&self, r: &Resolved) -> String {
        let label = match r.field.as_str() {
            "work_notes" => "Work notes",
            "comments" => "Additional comments",
            other => other,
        };
        let mut entries = self.journal(&r.owner_sys_id, Some(&r.field));
        entries.reverse();
        entries
            .into_iter()
            .map(|e| {
                let by = e.get("sys_created_by").cloned().unwrap_or_default();
                let name = self
                    .rows("sys_user")
                    .iter()
                    .find(|u| u.get("user_name") == Some(&by))
                    .and_then(|u| u.get("name").cloned())
                    .unwrap_or(by);
                format!(
                    "{} - {} ({label})\n{}\n\n",
                    e.get("sys_created_on").cloned().unwrap_or_default(),
                    name,
                    e.get("value").cloned().unwrap_or_default()
                )
            })
            .collect()
    }

    /// The display value of a resolved column.
    pub(crate) fn display(&self, r: &Resolved) -> String {
        match r.kind {
            Kind::Str => r.value.clone(),
            Kind::Choice(list) => list
                .iter()
                .find(|(v, _)| *v == r.value)
                .map(|(_, l)| (*l).to_owned())
                .unwrap_or_else(|| r.value.clone()),
            Kind::Ref(t) => self.display_of(t, &r.value, 2),
            Kind::Journal => self.journal_display(r),
        }
    }

    /// Renders a column as the Table API does.
    pub(crate) fn render(&self, r: &Resolved, mode: DisplayMode, exclude_link: bool, base: &str) -> Val {
        let value = if r.kind == Kind::Journal { String::new() } else { r.value.clone() };
        match r.kind {
            Kind::Ref(t) => {
                if value.is_empty() {
                    return match mode {
                        DisplayMode::All => Val::Obj(Obj::new().with("display_value", "").with("value", "")),
                        _ => Val::from(""),
                    };
                }
                let link = format!("{base}/api/now/table/{t}/{value}");
                let display = self.display(r);
                match (mode, exclude_link) {
                    (DisplayMode::Value, true) => Val::from(value),
                    (DisplayMode::Value, false) => Val::Obj(Obj::new().with("link", link).with("value", value)),
                    (DisplayMode::Display, true) => Val::from(display),
                    (DisplayMode::Display, false) => {
                        Val::Obj(Obj::new().with("display_value", display).with("link", link))
                    }
                    (DisplayMode::All, true) => {
                        Val::Obj(Obj::new().with("display_value", display).with("value", value))
                    }
                    (DisplayMode::All, false) => {
                        Val::Obj(Obj::new().with("display_value", display).with("link", link).with("value", value))
                    }
                }
            }
            _ => match mode {
                DisplayMode::Value => Val::from(value),
                DisplayMode::Display => Val::from(self.display(r)),
                DisplayMode::All => Val::Obj(Obj::new().with("display_value", self.display(r)).with("value", value)),
            },
        }
    }

    /// Renders a row with the requested fields (all columns when `fields` is `None`).
    pub(crate) fn render_row(
        &self,
        table: &'static str,
        row: &Record,
        fields: Option<&[String]>,
        mode: DisplayMode,
        exclude_link: bool,
        base: &str,
    ) -> Obj {
        let mut out = Obj::new();
        let names: Vec<String> = match fields {
            Some(f) => f.to_vec(),
            None => schema::all_fields(table).into_iter().map(str::to_owned).collect(),
        };
        for name in names {
            if let Some(r) = self.resolve(table, row, &name) {
                out.push(name, self.render(&r, mode, exclude_link, base));
            }
        }
        out
    }

    /// Evaluates an encoded query against the rows of a table; returns matching rows in order.
    pub(crate) fn query(&self, table: &'static str, q: &EncodedQuery) -> Vec<&Record> {
        let mut rows: Vec<&Record> = self
            .rows(table)
            .iter()
            .filter(|row| {
                q.groups.iter().all(|group| {
                    let usable: Vec<&Cond> =
                        group.iter().filter(|c| self.resolve(table, row, &c.field).is_some()).collect();
                    usable.is_empty() || usable.iter().any(|c| self.matches(table, row, c))
                })
            })
            .collect();
        for (field, desc) in q.order.iter().rev() {
            rows.sort_by(|a, b| {
                let va = self.resolve(table, a, field).map(|r| r.value).unwrap_or_default();
                let vb = self.resolve(table, b, field).map(|r| r.value).unwrap_or_default();
                let ord = compare(&va, &vb);
                if *desc { ord.reverse() } else { ord }
            });
        }
        rows
    }

    fn matches(&self, table: &'static str, row: &Record, c: &Cond) -> bool {
        let Some(r) = self.resolve(table, row, &c.field) else {
            return true;
        };
        let v = r.value.to_ascii_lowercase();
        let want = c.value.to_ascii_lowercase();
        match c.op.as_str() {
            "=" => v == want,
            "!=" => v != want,
            "LIKE" => v.contains(&want),
            "NOT LIKE" => !v.contains(&want),
            "STARTSWITH" => v.starts_with(&want),
            "ENDSWITH" => v.ends_with(&want),
            "IN" => want.split(',').any(|w| w.trim() == v),
            "NOT IN" => !want.split(',').any(|w| w.trim() == v),
            "ISEMPTY" => v.is_empty(),
            "ISNOTEMPTY" => !v.is_empty(),
            ">" => compare(&r.value, &c.value).is_gt(),
            ">=" => compare(&r.value, &c.value).is_ge(),
            "<" => compare(&r.value, &c.value).is_lt(),
            "<=" => compare(&r.value, &c.value).is_le(),
            _ => true,
        }
    }
}

fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

/// One condition of an encoded query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cond {
    pub field: String,
    pub op: String,
    pub value: String,
}

/// A parsed `sysparm_query`: AND of OR-groups, plus ordering. Parts it cannot parse are
/// ignored, as ServiceNow ignores invalid query parts by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EncodedQuery {
    pub groups: Vec<Vec<Cond>>,
    pub order: Vec<(String, bool)>,
}

const OPS: &[&str] = &[
    "ISNOTEMPTY",
    "ISEMPTY",
    "NOT LIKE",
    "NOT IN",
    "LIKE",
    "STARTSWITH",
    "ENDSWITH",
    "IN",
    "!=",
    ">=",
    "<=",
    "=",
    ">",
    "<",
];

impl EncodedQuery {
    pub(crate) fn parse(q: &str) -> Self {
        let q = q.split("^NQ").next().unwrap_or("");
        let mut out = EncodedQuery::default();
        for term in q.split('^').filter(|t| !t.is_empty()) {
            if let Some(f) = term.strip_prefix("ORDERBYDESC") {
                out.order.push((f.to_owned(), true));
                continue;
            }
            if let Some(f) = term.strip_prefix("ORDERBY") {
                out.order.push((f.to_owned(), false));
                continue;
            }
            let (is_or, body) = match term.strip_prefix("OR") {
                Some(rest) if !out.groups.is_empty() => (true, rest),
                _ => (false, term),
            };
            let Some(cond) = parse_cond(body) else {
                continue;
            };
            match (is_or, out.groups.last_mut()) {
                (true, Some(g)) => g.push(cond),
                _ => out.groups.push(vec![cond]),
            }
        }
        out
    }
}

fn parse_cond(term: &str) -> Option<Cond> {
    let end = term
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'))
        .unwrap_or(term.len());
    let (field, rest) = term.split_at(end);
    if field.is_empty() {
        return None;
    }
    let op = OPS.iter().find(|op| rest.starts_with(**op))?;
    Some(Cond { field: field.to_owned(), op: (*op).to_owned(), value: rest[op.len()..].to_owned() })
}

/// A RITM to create with [`ServiceNowState::create_ritm`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewRitm {
    /// `user_name` or sys_id of a sys_user.
    pub requested_for: String,
    /// `user_name` or sys_id; defaults to `requested_for`.
    pub opened_by: Option<String>,
    /// Catalog item name or sys_id.
    pub cat_item: String,
    pub short_description: Option<String>,
    /// Catalog variables (name, value), in order.
    pub variables: Vec<(String, String)>,
    /// Default `1` (Open).
    pub state: Option<String>,
    /// Default `waiting_for_approval`.
    pub stage: Option<String>,
    /// Default `requested`.
    pub approval: Option<String>,
    /// Approvers (`user_name` or sys_id): one `sysapproval_approver` row each, state `requested`.
    pub approvers: Vec<String>,
    /// Force a RITM number instead of the next one.
    pub number: Option<String>,
}

impl NewRitm {
    pub fn new(requested_for: &str, cat_item: &str) -> Self {
        Self { requested_for: requested_for.to_owned(), cat_item: cat_item.to_owned(), ..Self::default() }
    }

    pub fn opened_by(mut self, who: &str) -> Self {
        self.opened_by = Some(who.to_owned());
        self
    }

    pub fn short_description(mut self, text: &str) -> Self {
        self.short_description = Some(text.to_owned());
        self
    }

    pub fn variable(mut self, name: &str, value: &str) -> Self {
        self.variables.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn approver(mut self, who: &str) -> Self {
        self.approvers.push(who.to_owned());
        self
    }

    /// Already approved: `approval=approved`, `stage=fulfillment`.
    pub fn approved(mut self) -> Self {
        self.approval = Some("approved".into());
        self.stage = Some("fulfillment".into());
        self
    }
}

/// What [`ServiceNowState::create_ritm`] created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreatedRitm {
    pub sys_id: String,
    pub number: String,
    pub request_sys_id: String,
    pub request_number: String,
    /// sys_ids of the `sysapproval_approver` rows, in approver order.
    pub approval_sys_ids: Vec<String>,
}

/// A RITM's main fields, as raw values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RitmView {
    pub sys_id: String,
    pub number: String,
    pub state: String,
    pub stage: String,
    pub approval: String,
    pub active: String,
    pub requested_for: String,
    pub opened_by: String,
    pub cat_item: String,
    pub short_description: String,
    pub sys_updated_on: String,
}

/// One journal entry of a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JournalEntry {
    /// `work_notes` or `comments`.
    pub element: String,
    pub value: String,
    pub created_on: String,
    pub created_by: String,
}

/// Seeding and inspection of the ServiceNow simulator's records. Cloning shares the state.
#[derive(Clone, Debug)]
pub struct ServiceNowState {
    pub(crate) store: Arc<Mutex<Store>>,
    pub(crate) clock: Clock,
}

fn by_user_name_or_id(store: &Store, who: &str) -> Option<String> {
    if store.get("sys_user", who).is_some() {
        return Some(who.to_owned());
    }
    store
        .rows("sys_user")
        .iter()
        .find(|u| u.get("user_name").is_some_and(|n| n.eq_ignore_ascii_case(who)))
        .and_then(|u| u.get("sys_id").cloned())
}

impl ServiceNowState {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a request (`sc_request`), its RITM, catalog variables and approval rows.
    pub fn create_ritm(&self, new: NewRitm) -> Result<CreatedRitm, SimError> {
        let now = self.clock.now();
        let mut s = self.lock();
        let by = "system";
        let requested_for = by_user_name_or_id(&s, &new.requested_for)
            .ok_or_else(|| SimError::NotFound(format!("sys_user {}", new.requested_for)))?;
        let opened_by = match &new.opened_by {
            Some(o) => by_user_name_or_id(&s, o).ok_or_else(|| SimError::NotFound(format!("sys_user {o}")))?,
            None => requested_for.clone(),
        };
        let cat_item = if s.get("sc_cat_item", &new.cat_item).is_some() {
            new.cat_item.clone()
        } else {
            s.rows("sc_cat_item")
                .iter()
                .find(|c| c.get("name").is_some_and(|n| n.eq_ignore_ascii_case(&new.cat_item)))
                .and_then(|c| c.get("sys_id").cloned())
                .ok_or_else(|| SimError::NotFound(format!("sc_cat_item {}", new.cat_item)))?
        };
        let cat_name = s.display_of("sc_cat_item", &cat_item, 0);
        let short = new.short_description.clone().unwrap_or_else(|| cat_name.clone());
        let opened_at = glide_time(now);
        let approval = new.approval.clone().unwrap_or_else(|| "requested".into());

        let mut req = Record::new();
        req.insert("short_description".into(), short.clone());
        req.insert("state".into(), "1".into());
        req.insert("request_state".into(), if approval == "approved" { "in_process" } else { "requested" }.into());
        req.insert("approval".into(), approval.clone());
        req.insert("active".into(), "true".into());
        req.insert("requested_for".into(), requested_for.clone());
        req.insert("opened_by".into(), opened_by.clone());
        req.insert("opened_at".into(), opened_at.clone());
        let request_sys_id = s.insert("sc_request", req, by, now)?;
        let request_number =
            s.get("sc_request", &request_sys_id).and_then(|r| r.get("number").cloned()).unwrap_or_default();

        let mut ritm = Record::new();
        if let Some(n) = &new.number {
            ritm.insert("number".into(), n.clone());
        }
        ritm.insert("short_description".into(), short);
        ritm.insert("state".into(), new.state.clone().unwrap_or_else(|| "1".into()));
        ritm.insert("stage".into(), new.stage.clone().unwrap_or_else(|| "waiting_for_approval".into()));
        ritm.insert("approval".into(), approval);
        ritm.insert("active".into(), "true".into());
        ritm.insert("request".into(), request_sys_id.clone());
        ritm.insert("cat_item".into(), cat_item.clone());
        ritm.insert("requested_for".into(), requested_for);
        ritm.insert("opened_by".into(), opened_by);
        ritm.insert("opened_at".into(), opened_at);
        ritm.insert("quantity".into(), "1".into());
        ritm.insert("priority".into(), "4".into());
        if let Some(g) = s.rows("sys_user_group").first().and_then(|g| g.get("sys_id").cloned()) {
            ritm.insert("assignment_group".into(), g);
        }
        let sys_id = s.insert("sc_req_item", ritm, by, now)?;
        let number = s.get("sc_req_item", &sys_id).and_then(|r| r.get("number").cloned()).unwrap_or_default();

        for (order, (name, value)) in new.variables.iter().enumerate() {
            let question = s
                .rows("item_option_new")
                .iter()
                .find(|q| q.get("cat_item") == Some(&cat_item) && q.get("name") == Some(name))
                .and_then(|q| q.get("sys_id").cloned());
            let question = match question {
                Some(q) => q,
                None => {
                    let mut q = Record::new();
                    q.insert("name".into(), name.clone());
                    q.insert("question_text".into(), name.clone());
                    q.insert("cat_item".into(), cat_item.clone());
                    q.insert("type".into(), "6".into());
                    q.insert("order".into(), ((order + 1) * 100).to_string());
                    q.insert("active".into(), "true".into());
                    s.insert("item_option_new", q, by, now)?
                }
            };
            let mut opt = Record::new();
            opt.insert("item_option_new".into(), question);
            opt.insert("value".into(), value.clone());
            opt.insert("order".into(), ((order + 1) * 100).to_string());
            let opt_id = s.insert("sc_item_option", opt, by, now)?;
            let mut m2m = Record::new();
            m2m.insert("request_item".into(), sys_id.clone());
            m2m.insert("sc_item_option".into(), opt_id);
            s.insert("sc_item_option_mtom", m2m, by, now)?;
        }

        let mut approval_sys_ids = Vec::new();
        let activity = new_sys_id();
        for who in &new.approvers {
            let approver = by_user_name_or_id(&s, who).ok_or_else(|| SimError::NotFound(format!("sys_user {who}")))?;
            let mut a = Record::new();
            a.insert("sysapproval".into(), sys_id.clone());
            a.insert("document_id".into(), sys_id.clone());
            a.insert("source_table".into(), "sc_req_item".into());
            a.insert("approver".into(), approver);
            a.insert("state".into(), "requested".into());
            a.insert("wf_activity".into(), activity.clone());
            approval_sys_ids.push(s.insert("sysapproval_approver", a, by, now)?);
        }
        Ok(CreatedRitm { sys_id, number, request_sys_id, request_number, approval_sys_ids })
    }

    fn ritm_id(&self, s: &Store, sys_id_or_number: &str) -> Option<String> {
        if s.get("sc_req_item", sys_id_or_number).is_some() {
            return Some(sys_id_or_number.to_owned());
        }
        s.rows("sc_req_item")
            .iter()
            .find(|r| r.get("number").is_some_and(|n| n.eq_ignore_ascii_case(sys_id_or_number)))
            .and_then(|r| r.get("sys_id").cloned())
    }

    /// A RITM by sys_id or number.
    pub fn ritm(&self, sys_id_or_number: &str) -> Option<RitmView> {
        let s = self.lock();
        let id = self.ritm_id(&s, sys_id_or_number)?;
        let r = s.get("sc_req_item", &id)?;
        let f = |k: &str| r.get(k).cloned().unwrap_or_default();
        Some(RitmView {
            sys_id: f("sys_id"),
            number: f("number"),
            state: f("state"),
            stage: f("stage"),
            approval: f("approval"),
            active: f("active"),
            requested_for: f("requested_for"),
            opened_by: f("opened_by"),
            cat_item: f("cat_item"),
            short_description: f("short_description"),
            sys_updated_on: f("sys_updated_on"),
        })
    }

    /// Journal entries of a record (any table), oldest first.
    pub fn journal(&self, sys_id_or_number: &str) -> Vec<JournalEntry> {
        let s = self.lock();
        let id = self.ritm_id(&s, sys_id_or_number).unwrap_or_else(|| sys_id_or_number.to_owned());
        s.journal(&id, None)
            .into_iter()
            .map(|e| {
                let f = |k: &str| e.get(k).cloned().unwrap_or_default();
                JournalEntry {
                    element: f("element"),
                    value: f("value"),
                    created_on: f("sys_created_on"),
                    created_by: f("sys_created_by"),
                }
            })
            .collect()
    }

    /// Work notes of a record, oldest first.
    pub fn work_notes(&self, sys_id_or_number: &str) -> Vec<String> {
        self.journal(sys_id_or_number).into_iter().filter(|e| e.element == "work_notes").map(|e| e.value).collect()
    }

    /// Additional comments of a record, oldest first.
    pub fn comments(&self, sys_id_or_number: &str) -> Vec<String> {
        self.journal(sys_id_or_number).into_iter().filter(|e| e.element == "comments").map(|e| e.value).collect()
    }

    /// Any row, raw.
    pub fn record(&self, table: &str, sys_id: &str) -> Option<Record> {
        self.lock().get(table, sys_id).cloned()
    }

    /// Rows of a table, raw, in insertion order.
    pub fn records(&self, table: &str) -> Vec<Record> {
        self.lock().rows(table).to_vec()
    }

    /// Inserts a row into a served table; returns its sys_id.
    pub fn insert(&self, table: &str, fields: &[(&str, &str)]) -> Result<String, SimError> {
        let rec: Record = fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let now = self.clock.now();
        self.lock().insert(table, rec, "system", now)
    }

    /// Sets one column of a row.
    pub fn set_field(&self, table: &str, sys_id: &str, field: &str, value: &str) -> Result<(), SimError> {
        let now = self.clock.now();
        let ok = self.lock().update(table, sys_id, &[(field.to_owned(), value.to_owned())], "system", now);
        if ok { Ok(()) } else { Err(SimError::NotFound(format!("{table} {sys_id}"))) }
    }

    /// What a fulfiller or the requester does in the ServiceNow form when they close a
    /// requested item: its `state` becomes `state` (`3` closed complete, `4` closed incomplete,
    /// `7` closed skipped) and it is no longer `active`, as the platform's business rule sets
    /// for a closed task, recorded as `by` (a `sys_user` user_name). Nothing is journalled.
    pub fn close_ritm(&self, sys_id_or_number: &str, state: &str, by: &str) -> Result<(), SimError> {
        let now = self.clock.now();
        let mut s = self.lock();
        let id = self
            .ritm_id(&s, sys_id_or_number)
            .ok_or_else(|| SimError::NotFound(format!("sc_req_item {sys_id_or_number}")))?;
        let changes = [("state".to_owned(), state.to_owned()), ("active".to_owned(), "false".to_owned())];
        s.update("sc_req_item", &id, &changes, by, now);
        Ok(())
    }

    /// The `sysapproval_approver` rows of a RITM.
    pub fn approvals(&self, ritm: &str) -> Vec<Record> {
        let s = self.lock();
        let Some(id) = self.ritm_id(&s, ritm) else {
            return Vec::new();
        };
        s.rows("sysapproval_approver").iter().filter(|a| a.get("sysapproval") == Some(&id)).cloned().collect()
    }

    /// What an approver does in the ServiceNow UI: sets the approval's `state`, appends
    /// `comment` (when not empty) to its `comments` journal as that user, and records the user
    /// in `sys_updated_by`, as the approval form does. `user_name` is a `sys_user` user_name
    /// (or sys_id); `state` one of the approver states (`approved`, `rejected`, ...). The
    /// simulated catalog workflow then runs as after a Table API update (it ignores approvals
    /// it did not request). Anyone may act, as an administrator or delegate may; nothing
    /// checks that the user is the approver.
    pub fn act_on_approval(
        &self,
        approval_sys_id: &str,
        user_name: &str,
        state: &str,
        comment: &str,
    ) -> Result<(), SimError> {
        if !schema::APPROVER_STATE.iter().any(|(value, _)| *value == state) {
            let known: Vec<&str> = schema::APPROVER_STATE.iter().map(|(value, _)| *value).collect();
            return Err(SimError::Config(format!("`{state}` is not an approval state (one of: {})", known.join(", "))));
        }
        let now = self.clock.now();
        let mut s = self.lock();
        if s.get("sysapproval_approver", approval_sys_id).is_none() {
            return Err(SimError::NotFound(format!("sysapproval_approver {approval_sys_id}")));
        }
        let by = by_user_name_or_id(&s, user_name)
            .and_then(|id| s.get("sys_user", &id).and_then(|u| u.get("user_name").cloned()))
            .ok_or_else(|| SimError::NotFound(format!("sys_user {user_name}")))?;
        if !comment.trim().is_empty() {
            s.append_journal("sysapproval_approver", approval_sys_id, "comments", comment, &by, now);
        }
        s.update("sysapproval_approver", approval_sys_id, &[("state".to_owned(), state.to_owned())], &by, now);
        s.settle_approvals(approval_sys_id, &by, now);
        Ok(())
    }

    /// The RITM (`sysapproval`) an approval belongs to, when it names one that exists.
    pub fn approval_ritm(&self, approval_sys_id: &str) -> Option<String> {
        let s = self.lock();
        let ritm = s.get("sysapproval_approver", approval_sys_id)?.get("sysapproval")?.clone();
        s.get("sc_req_item", &ritm).map(|_| ritm)
    }

    /// The sys_id of a sys_user by `user_name`.
    pub fn user_sys_id(&self, user_name: &str) -> Option<String> {
        by_user_name_or_id(&self.lock(), user_name)
    }

    /// Renders a row as the Table API would (for webhook payloads and admin routes).
    pub(crate) fn value(&self, table: &'static str, sys_id: &str, field: &str) -> String {
        let s = self.lock();
        s.get(table, sys_id).and_then(|r| s.resolve(table, r, field)).map(|r| r.value).unwrap_or_default()
    }

    pub(crate) fn variables(&self, ritm_sys_id: &str) -> Vec<(String, String)> {
        let s = self.lock();
        s.rows("sc_item_option_mtom")
            .iter()
            .filter(|m| m.get("request_item").map(String::as_str) == Some(ritm_sys_id))
            .filter_map(|m| {
                let name = s.resolve("sc_item_option_mtom", m, "sc_item_option.item_option_new.name")?;
                let value = s.resolve("sc_item_option_mtom", m, "sc_item_option.value")?;
                Some((name.value, value.value))
            })
            .collect()
    }

    pub(crate) fn resolve_ritm(&self, sys_id_or_number: &str) -> Option<String> {
        let s = self.lock();
        self.ritm_id(&s, sys_id_or_number)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_encoded_queries() {
        let q = EncodedQuery::parse(
            "request_item=abc^element=work_notes^ORelement=comments^ORDERBYDESCsys_created_on^stateIN1,2",
        );
        assert_eq!(q.groups.len(), 3);
        assert_eq!(q.groups[1].len(), 2);
        assert_eq!(q.groups[2][0].op, "IN");
        assert_eq!(q.order, vec![("sys_created_on".to_owned(), true)]);
        let q = EncodedQuery::parse("sysapproval.number=RITM0010001^approver.user_nameISNOTEMPTY");
        assert_eq!(q.groups[0][0].field, "sysapproval.number");
        assert_eq!(q.groups[1][0].op, "ISNOTEMPTY");
    }
}
