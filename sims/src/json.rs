//! JSON objects that keep their key order on the wire (serde_json's map sorts keys unless its
//! `preserve_order` feature is on, which would change key order for the whole workspace).

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

/// An object serialised with its keys in insertion order. Values may themselves be ordered.
#[derive(Clone, Debug, Default)]
pub(crate) struct Obj(Vec<(String, Val)>);

/// A value inside an [`Obj`].
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Json(Value),
    Obj(Obj),
    List(Vec<Val>),
    Raw(Box<serde_json::value::RawValue>),
}

impl From<Value> for Val {
    fn from(v: Value) -> Self {
        Val::Json(v)
    }
}

impl From<Obj> for Val {
    fn from(v: Obj) -> Self {
        Val::Obj(v)
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Json(Value::String(v.to_owned()))
    }
}

impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Json(Value::String(v))
    }
}

impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Json(Value::Bool(v))
    }
}

impl Obj {
    pub(crate) fn new() -> Self {
        Self(Vec::new())
    }

    pub(crate) fn with(mut self, key: impl Into<String>, value: impl Into<Val>) -> Self {
        self.push(key, value);
        self
    }

    pub(crate) fn push(&mut self, key: impl Into<String>, value: impl Into<Val>) {
        self.0.push((key.into(), value.into()));
    }

    pub(crate) fn into_pairs(self) -> Vec<(String, Val)> {
        self.0
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Serialize for Obj {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for Val {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Val::Json(v) => v.serialize(serializer),
            Val::Obj(o) => o.serialize(serializer),
            Val::List(items) => items.serialize(serializer),
            Val::Raw(raw) => raw.serialize(serializer),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keeps_insertion_order() {
        let o = Obj::new().with("z", "1").with("a", Obj::new().with("y", true).with("b", Value::Null));
        assert_eq!(String::from_utf8(o.to_bytes()).unwrap(), r#"{"z":"1","a":{"y":true,"b":null}}"#);
    }
}
