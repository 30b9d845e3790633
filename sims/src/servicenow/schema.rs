//! The tables the ServiceNow simulator serves, their columns and display fields.

/// The type of a column. Every value is stored and sent as a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    /// A reference to a row of the named table (the value is its sys_id).
    Ref(&'static str),
    /// A journal field (`work_notes`, `comments`): writes append to `sys_journal_field`, reads
    /// return "" (the display value is the formatted history).
    Journal,
    /// A choice list: (value, label).
    Choice(&'static [(&'static str, &'static str)]),
}

use Kind::{Choice, Journal, Ref, Str};

pub(crate) const TASK_STATE: &[(&str, &str)] = &[
    ("-5", "Pending"),
    ("1", "Open"),
    ("2", "Work in Progress"),
    ("3", "Closed Complete"),
    ("4", "Closed Incomplete"),
    ("7", "Closed Skipped"),
];

pub(crate) const APPROVAL: &[(&str, &str)] = &[
    ("not requested", "Not Yet Requested"),
    ("requested", "Requested"),
    ("approved", "Approved"),
    ("rejected", "Rejected"),
    ("cancelled", "Cancelled"),
    ("not_required", "Not Required"),
    ("duplicate", "Duplicate"),
];

pub(crate) const APPROVER_STATE: &[(&str, &str)] = &[
    ("not requested", "Not Yet Requested"),
    ("requested", "Requested"),
    ("approved", "Approved"),
    ("rejected", "Rejected"),
    ("cancelled", "Cancelled"),
    ("not_required", "No Longer Required"),
    ("no_longer_required", "No Longer Required"),
    ("duplicate", "Duplicate"),
];

pub(crate) const STAGE: &[(&str, &str)] = &[
    ("request_approved", "Request Approved"),
    ("waiting_for_approval", "Waiting for Approval"),
    ("fulfillment", "Fulfillment"),
    ("delivery", "Delivery"),
    ("complete", "Completed"),
    ("Request Cancelled", "Request Cancelled"),
];

pub(crate) const REQUEST_STATE: &[(&str, &str)] = &[
    ("requested", "Pending Approval"),
    ("in_process", "Approved"),
    ("closed_complete", "Closed Complete"),
    ("closed_incomplete", "Closed Incomplete"),
    ("closed_cancelled", "Closed Cancelled"),
    ("closed_rejected", "Closed Rejected"),
];

const SYS: &[(&str, Kind)] = &[
    ("sys_id", Str),
    ("sys_created_on", Str),
    ("sys_created_by", Str),
    ("sys_updated_on", Str),
    ("sys_updated_by", Str),
    ("sys_mod_count", Str),
];

const SC_REQ_ITEM: &[(&str, Kind)] = &[
    ("number", Str),
    ("short_description", Str),
    ("description", Str),
    ("state", Choice(TASK_STATE)),
    ("stage", Choice(STAGE)),
    ("approval", Choice(APPROVAL)),
    ("active", Str),
    ("request", Ref("sc_request")),
    ("cat_item", Ref("sc_cat_item")),
    ("requested_for", Ref("sys_user")),
    ("opened_by", Ref("sys_user")),
    ("opened_at", Str),
    ("assignment_group", Ref("sys_user_group")),
    ("assigned_to", Ref("sys_user")),
    ("quantity", Str),
    ("priority", Str),
    ("due_date", Str),
    ("closed_at", Str),
    ("close_notes", Str),
    ("work_notes", Journal),
    ("comments", Journal),
    ("sys_class_name", Str),
];

const SC_REQUEST: &[(&str, Kind)] = &[
    ("number", Str),
    ("short_description", Str),
    ("state", Choice(TASK_STATE)),
    ("request_state", Choice(REQUEST_STATE)),
    ("approval", Choice(APPROVAL)),
    ("stage", Str),
    ("active", Str),
    ("requested_for", Ref("sys_user")),
    ("opened_by", Ref("sys_user")),
    ("opened_at", Str),
    ("work_notes", Journal),
    ("comments", Journal),
    ("sys_class_name", Str),
];

const SYSAPPROVAL_APPROVER: &[(&str, Kind)] = &[
    ("sysapproval", Ref("sc_req_item")),
    ("document_id", Str),
    ("source_table", Str),
    ("approver", Ref("sys_user")),
    ("state", Choice(APPROVER_STATE)),
    ("comments", Journal),
    ("due_date", Str),
    // The workflow activity that requested the approval; empty for approvals inserted
    // through the Table API.
    ("wf_activity", Ref("wf_activity")),
];

const SC_ITEM_OPTION_MTOM: &[(&str, Kind)] =
    &[("request_item", Ref("sc_req_item")), ("sc_item_option", Ref("sc_item_option"))];

const SC_ITEM_OPTION: &[(&str, Kind)] = &[("item_option_new", Ref("item_option_new")), ("value", Str), ("order", Str)];

const ITEM_OPTION_NEW: &[(&str, Kind)] = &[
    ("name", Str),
    ("question_text", Str),
    ("cat_item", Ref("sc_cat_item")),
    ("type", Str),
    ("order", Str),
    ("active", Str),
];

const SYS_JOURNAL_FIELD: &[(&str, Kind)] = &[("element_id", Str), ("element", Str), ("name", Str), ("value", Str)];

const SYS_USER: &[(&str, Kind)] = &[
    ("user_name", Str),
    ("first_name", Str),
    ("last_name", Str),
    ("name", Str),
    ("email", Str),
    ("title", Str),
    ("department", Str),
    ("manager", Ref("sys_user")),
    ("employee_number", Str),
    ("active", Str),
    ("locked_out", Str),
];

const SYS_USER_GROUP: &[(&str, Kind)] = &[("name", Str), ("description", Str), ("email", Str), ("active", Str)];

const SC_CAT_ITEM: &[(&str, Kind)] =
    &[("name", Str), ("short_description", Str), ("active", Str), ("category", Str), ("sys_class_name", Str)];

/// Table names served.
pub(crate) const TABLES: &[&str] = &[
    "sc_req_item",
    "sc_request",
    "sysapproval_approver",
    "sc_item_option_mtom",
    "sc_item_option",
    "item_option_new",
    "sys_journal_field",
    "sys_user",
    "sys_user_group",
    "sc_cat_item",
];

/// The columns of a table, without the `sys_*` audit columns.
pub(crate) fn columns(table: &str) -> Option<&'static [(&'static str, Kind)]> {
    Some(match table {
        "sc_req_item" => SC_REQ_ITEM,
        "sc_request" => SC_REQUEST,
        "sysapproval_approver" => SYSAPPROVAL_APPROVER,
        "sc_item_option_mtom" => SC_ITEM_OPTION_MTOM,
        "sc_item_option" => SC_ITEM_OPTION,
        "item_option_new" => ITEM_OPTION_NEW,
        "sys_journal_field" => SYS_JOURNAL_FIELD,
        "sys_user" => SYS_USER,
        "sys_user_group" => SYS_USER_GROUP,
        "sc_cat_item" => SC_CAT_ITEM,
        _ => return None,
    })
}

/// Every column name of a table in output order (table columns, then `sys_*`).
pub(crate) fn all_fields(table: &str) -> Vec<&'static str> {
    columns(table).map(|cols| cols.iter().chain(SYS.iter()).map(|(n, _)| *n).collect()).unwrap_or_default()
}

/// The kind of one column.
pub(crate) fn kind(table: &str, field: &str) -> Option<Kind> {
    columns(table)?.iter().chain(SYS.iter()).find(|(n, _)| *n == field).map(|(_, k)| *k)
}

/// The column whose value is a row's display value.
pub(crate) fn display_field(table: &str) -> &'static str {
    match table {
        "sc_req_item" | "sc_request" => "number",
        "sys_user" | "sys_user_group" | "sc_cat_item" | "item_option_new" => "name",
        "sc_item_option" | "sys_journal_field" => "value",
        "sysapproval_approver" => "approver",
        _ => "sys_id",
    }
}
