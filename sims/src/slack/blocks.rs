//! Block Kit validation: the subset of Slack's rules an approval message exercises. Problems are
//! reported as Slack does, with a JSON pointer into the request.

use std::collections::HashSet;

use serde_json::Value;

const BLOCK_TYPES: &[&str] =
    &["section", "actions", "context", "divider", "header", "image", "input", "rich_text", "markdown", "file", "video"];
const ELEMENT_TYPES: &[&str] = &[
    "button",
    "static_select",
    "external_select",
    "users_select",
    "conversations_select",
    "channels_select",
    "multi_static_select",
    "overflow",
    "datepicker",
    "timepicker",
    "datetimepicker",
    "checkboxes",
    "radio_buttons",
    "image",
    "plain_text_input",
];
const MAX_BLOCKS: usize = 50;

struct Check {
    errors: Vec<String>,
    block_ids: HashSet<String>,
    action_ids: HashSet<String>,
}

impl Check {
    fn fail(&mut self, message: &str, pointer: &str) {
        self.errors.push(format!("{message} [json-pointer:{pointer}]"));
    }

    fn text_object(&mut self, v: &Value, pointer: &str, plain_only: bool, max: usize) {
        let Some(obj) = v.as_object() else {
            self.fail("must be an object", pointer);
            return;
        };
        match obj.get("type").and_then(Value::as_str) {
            Some("plain_text") => {}
            Some("mrkdwn") if !plain_only => {}
            Some("mrkdwn") => self.fail("must be plain_text", &format!("{pointer}/type")),
            _ => self.fail("must be a valid enum value", &format!("{pointer}/type")),
        }
        match obj.get("text").and_then(Value::as_str) {
            Some("") => self.fail("must be more than 0 characters", &format!("{pointer}/text")),
            Some(t) if t.chars().count() > max => {
                self.fail(&format!("must be less than {} characters", max + 1), &format!("{pointer}/text"));
            }
            Some(_) => {}
            None => self.fail("should be a string", &format!("{pointer}/text")),
        }
    }

    fn id(&mut self, v: Option<&Value>, pointer: &str, unique: bool, block: bool) {
        let Some(v) = v else {
            return;
        };
        let Some(id) = v.as_str() else {
            self.fail("should be a string", pointer);
            return;
        };
        if id.is_empty() || id.chars().count() > 255 {
            self.fail("must be between 1 and 255 characters", pointer);
        }
        let seen = if block { &mut self.block_ids } else { &mut self.action_ids };
        if unique && !seen.insert(id.to_owned()) {
            self.fail(if block { "duplicate block_id" } else { "duplicate action_id" }, pointer);
        }
    }

    fn element(&mut self, e: &Value, pointer: &str) {
        let Some(kind) = e.get("type").and_then(Value::as_str) else {
            self.fail("should have a type", pointer);
            return;
        };
        if !ELEMENT_TYPES.contains(&kind) {
            self.fail("must be a valid enum value", &format!("{pointer}/type"));
            return;
        }
        self.id(e.get("action_id"), &format!("{pointer}/action_id"), true, false);
        if kind == "button" {
            match e.get("text") {
                Some(t) => self.text_object(t, &format!("{pointer}/text"), true, 75),
                None => self.fail("must provide an object", &format!("{pointer}/text")),
            }
            if let Some(v) = e.get("value") {
                match v.as_str() {
                    Some(s) if s.chars().count() <= 2000 => {}
                    Some(_) => self.fail("must be less than 2001 characters", &format!("{pointer}/value")),
                    None => self.fail("should be a string", &format!("{pointer}/value")),
                }
            }
            if let Some(style) = e.get("style")
                && !matches!(style.as_str(), Some("primary" | "danger"))
            {
                self.fail("must be a valid enum value", &format!("{pointer}/style"));
            }
        }
    }

    fn block(&mut self, b: &Value, pointer: &str) {
        let Some(obj) = b.as_object() else {
            self.fail("must be an object", pointer);
            return;
        };
        let Some(kind) = obj.get("type").and_then(Value::as_str) else {
            self.fail("should have a type", pointer);
            return;
        };
        if !BLOCK_TYPES.contains(&kind) {
            self.fail("must be a valid enum value", &format!("{pointer}/type"));
            return;
        }
        self.id(obj.get("block_id"), &format!("{pointer}/block_id"), true, true);
        match kind {
            "section" => {
                let text = obj.get("text");
                let fields = obj.get("fields");
                if text.is_none() && fields.is_none() {
                    self.fail("must provide either text or fields", pointer);
                }
                if let Some(t) = text {
                    self.text_object(t, &format!("{pointer}/text"), false, 3000);
                }
                if let Some(f) = fields {
                    match f.as_array() {
                        Some(items) if !items.is_empty() && items.len() <= 10 => {
                            for (i, item) in items.iter().enumerate() {
                                self.text_object(item, &format!("{pointer}/fields/{i}"), false, 2000);
                            }
                        }
                        _ => self.fail("must be an array of 1 to 10 items", &format!("{pointer}/fields")),
                    }
                }
                if let Some(acc) = obj.get("accessory") {
                    self.element(acc, &format!("{pointer}/accessory"));
                }
            }
            "header" => match obj.get("text") {
                Some(t) => self.text_object(t, &format!("{pointer}/text"), true, 150),
                None => self.fail("must provide an object", &format!("{pointer}/text")),
            },
            "actions" => match obj.get("elements").and_then(Value::as_array) {
                Some(items) if !items.is_empty() && items.len() <= 25 => {
                    for (i, e) in items.iter().enumerate() {
                        self.element(e, &format!("{pointer}/elements/{i}"));
                    }
                }
                _ => self.fail("must be an array of 1 to 25 items", &format!("{pointer}/elements")),
            },
            "context" => match obj.get("elements").and_then(Value::as_array) {
                Some(items) if !items.is_empty() && items.len() <= 10 => {
                    for (i, e) in items.iter().enumerate() {
                        if e.get("type").and_then(Value::as_str) != Some("image") {
                            self.text_object(e, &format!("{pointer}/elements/{i}"), false, 3000);
                        }
                    }
                }
                _ => self.fail("must be an array of 1 to 10 items", &format!("{pointer}/elements")),
            },
            _ => {}
        }
    }
}

/// Why a `blocks` argument is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BlocksError {
    /// Not a JSON array (`invalid_blocks_format`).
    Format,
    /// An array with invalid blocks (`invalid_blocks`), with Slack-style messages.
    Invalid(Vec<String>),
}

/// Checks a `blocks` value.
pub(crate) fn validate(blocks: &Value) -> Result<(), BlocksError> {
    let Some(items) = blocks.as_array() else {
        return Err(BlocksError::Format);
    };
    let mut check = Check { errors: Vec::new(), block_ids: HashSet::new(), action_ids: HashSet::new() };
    if items.len() > MAX_BLOCKS {
        check.fail(&format!("must be less than {} items", MAX_BLOCKS + 1), "/blocks");
    }
    for (i, b) in items.iter().enumerate() {
        check.block(b, &format!("/blocks/{i}"));
    }
    if check.errors.is_empty() { Ok(()) } else { Err(BlocksError::Invalid(check.errors)) }
}

/// Every interactive element with this `action_id`, with its block's id.
pub(crate) fn find_action<'a>(blocks: &'a Value, action_id: &str) -> Option<(&'a Value, Option<&'a str>)> {
    for block in blocks.as_array()? {
        let block_id = block.get("block_id").and_then(Value::as_str);
        let mut candidates: Vec<&Value> = Vec::new();
        if let Some(items) = block.get("elements").and_then(Value::as_array) {
            candidates.extend(items);
        }
        if let Some(acc) = block.get("accessory") {
            candidates.push(acc);
        }
        if let Some(e) = candidates.into_iter().find(|e| e.get("action_id").and_then(Value::as_str) == Some(action_id))
        {
            return Some((e, block_id));
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn approval_blocks_pass_and_mistakes_are_pointed_at() {
        let ok = json!([
            { "type": "section", "text": { "type": "mrkdwn", "text": "*Alex* requests access" } },
            { "type": "actions", "block_id": "decision", "elements": [
                { "type": "button", "action_id": "approve", "style": "primary", "text": { "type": "plain_text", "text": "Approve" }, "value": "REQ-1" },
                { "type": "button", "action_id": "reject", "style": "danger", "text": { "type": "plain_text", "text": "Reject" }, "value": "REQ-1" } ] }
        ]);
        assert_eq!(validate(&ok), Ok(()));
        assert_eq!(
            find_action(&ok, "reject").map(|(e, b)| (e["value"].clone(), b)),
            Some((json!("REQ-1"), Some("decision")))
        );
        let bad = json!([
            { "type": "section", "text": { "type": "mrkdwn", "text": "" } },
            { "type": "actions", "elements": [
                { "type": "button", "action_id": "a", "text": { "type": "mrkdwn", "text": "x" } },
                { "type": "button", "action_id": "a", "style": "loud", "text": { "type": "plain_text", "text": "y" } } ] },
            { "type": "carousel" }
        ]);
        let Err(BlocksError::Invalid(errors)) = validate(&bad) else { panic!() };
        assert_eq!(
            errors,
            [
                "must be more than 0 characters [json-pointer:/blocks/0/text/text]",
                "must be plain_text [json-pointer:/blocks/1/elements/0/text/type]",
                "duplicate action_id [json-pointer:/blocks/1/elements/1/action_id]",
                "must be a valid enum value [json-pointer:/blocks/1/elements/1/style]",
                "must be a valid enum value [json-pointer:/blocks/2/type]",
            ]
        );
        assert_eq!(validate(&json!({ "type": "section" })), Err(BlocksError::Format));
    }
}
