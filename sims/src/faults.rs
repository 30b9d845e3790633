//! Scripted faults, per route.
//!
//! A [`FaultRule`] says "for this method and path pattern, the next N requests get this
//! treatment": a canned response (status, headers, body), an added delay before normal handling,
//! a hang (no answer for a long time, so a client's timeout fires), or an aborted connection.
//! Rules are tried in the order they were pushed; the first one that matches and has uses left is
//! consumed. A fixed latency can also be added to every request.
//!
//! When a `Respond` rule has no body, the simulator fills in its vendor's error body for that
//! status (a Graph error envelope, a ServiceNow failure envelope, ...), and the simulator's usual
//! headers (`request-id`, ...) are added unless the rule sets them.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::Method;
use serde::{Deserialize, Serialize};

/// Which request paths a rule applies to. Paths are matched as received (percent-encoded, no
/// query string), e.g. `/v1.0/groups/abc/members/$ref`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathPattern {
    /// Every path.
    Any,
    /// Exactly this path.
    Exact(String),
    /// Paths that start with this string.
    Prefix(String),
    /// A glob: `*` matches any run of characters except `/`, `**` matches anything.
    Glob(String),
}

impl PathPattern {
    /// A glob pattern (`*` within one segment, `**` across segments).
    pub fn glob(p: impl Into<String>) -> Self {
        Self::Glob(p.into())
    }

    /// A prefix pattern.
    pub fn prefix(p: impl Into<String>) -> Self {
        Self::Prefix(p.into())
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(p) => p == path,
            Self::Prefix(p) => path.starts_with(p.as_str()),
            Self::Glob(p) => glob_match(p.as_bytes(), path.as_bytes()),
        }
    }
}

impl From<&str> for PathPattern {
    /// A string with `*` is a glob; otherwise an exact path.
    fn from(s: &str) -> Self {
        if s.contains('*') { Self::Glob(s.to_owned()) } else { Self::Exact(s.to_owned()) }
    }
}

impl From<String> for PathPattern {
    fn from(s: String) -> Self {
        Self::from(s.as_str())
    }
}

fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    match pat.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => {
            if let Some((b'*', rest2)) = rest.split_first() {
                (0..=text.len()).any(|i| glob_match(rest2, &text[i..]))
            } else {
                let limit = text.iter().position(|&c| c == b'/').unwrap_or(text.len());
                (0..=limit).any(|i| glob_match(rest, &text[i..]))
            }
        }
        Some((c, rest)) => match text.split_first() {
            Some((t, trest)) if t == c => glob_match(rest, trest),
            _ => false,
        },
    }
}

/// How many times a rule fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Times {
    /// Until removed.
    Forever,
    /// The next N matching requests.
    Count(u32),
}

/// What happens to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this status, headers and body instead of handling the request. With no body the
    /// simulator renders its own error body for the status.
    Respond { status: u16, headers: Vec<(String, String)>, body: Option<Vec<u8>> },
    /// Wait this long, then handle the request normally.
    Delay(Duration),
    /// Send nothing for this long (or until shutdown), then answer 504. Longer than a client's
    /// timeout, this is a timeout.
    Hang(Duration),
    /// Send the status line and headers, then drop the connection before the body.
    Abort,
}

/// One scripted fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// `None` matches every method.
    pub method: Option<Method>,
    pub path: PathPattern,
    pub times: Times,
    pub action: FaultAction,
}

impl FaultRule {
    fn with_action(action: FaultAction) -> Self {
        Self { method: None, path: PathPattern::Any, times: Times::Count(1), action }
    }

    /// The next matching request gets `status` (and, unless set, the vendor's error body).
    pub fn respond(status: u16) -> Self {
        Self::with_action(FaultAction::Respond { status, headers: Vec::new(), body: None })
    }

    /// The next matching request is delayed, then served normally.
    pub fn delay(by: Duration) -> Self {
        Self::with_action(FaultAction::Delay(by))
    }

    /// The next matching request hangs (default five minutes, or until shutdown).
    pub fn hang() -> Self {
        Self::with_action(FaultAction::Hang(Duration::from_secs(300)))
    }

    /// The next matching request hangs for `d`, then gets 504.
    pub fn hang_for(d: Duration) -> Self {
        Self::with_action(FaultAction::Hang(d))
    }

    /// The next matching request's connection is dropped after the headers.
    pub fn abort() -> Self {
        Self::with_action(FaultAction::Abort)
    }

    /// Restricts the rule to one method and a path pattern (a `&str` with `*` is a glob,
    /// otherwise an exact path; pass a [`PathPattern`] for a prefix).
    pub fn on(mut self, method: Method, path: impl Into<PathPattern>) -> Self {
        self.method = Some(method);
        self.path = path.into();
        self
    }

    /// Restricts the rule to a path pattern, any method.
    pub fn path(mut self, path: impl Into<PathPattern>) -> Self {
        self.path = path.into();
        self
    }

    /// Fires for the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Times::Count(n);
        self
    }

    /// Fires until removed.
    pub fn forever(mut self) -> Self {
        self.times = Times::Forever;
        self
    }

    /// Adds a response header (only for `respond`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let FaultAction::Respond { headers, .. } = &mut self.action {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// Sets the response body (only for `respond`).
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        if let FaultAction::Respond { body, .. } = &mut self.action {
            *body = Some(bytes.into());
        }
        self
    }

    /// Sets a JSON response body and its content type (only for `respond`).
    pub fn json(self, value: &serde_json::Value) -> Self {
        self.header("Content-Type", "application/json").body(serde_json::to_vec(value).unwrap_or_default())
    }
}

/// Identifies a pushed rule, for [`Faults::remove`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FaultId(pub u64);

#[derive(Debug, Default)]
struct FaultsInner {
    next_id: u64,
    rules: Vec<(FaultId, FaultRule, Option<u32>)>,
    latency: Duration,
}

/// The fault script of one simulator. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    inner: Arc<Mutex<FaultsInner>>,
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, FaultsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a rule after the existing ones.
    pub fn push(&self, rule: FaultRule) -> FaultId {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = FaultId(inner.next_id);
        let left = match rule.times {
            Times::Forever => None,
            Times::Count(n) => Some(n),
        };
        inner.rules.push((id, rule, left));
        id
    }

    /// Removes one rule; returns whether it was still there.
    pub fn remove(&self, id: FaultId) -> bool {
        let mut inner = self.lock();
        let before = inner.rules.len();
        inner.rules.retain(|(i, _, _)| *i != id);
        inner.rules.len() != before
    }

    /// Removes every rule and the added latency.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.rules.clear();
        inner.latency = Duration::ZERO;
    }

    /// Adds a fixed latency to every request (zero turns it off).
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// The added latency.
    pub fn latency(&self) -> Duration {
        self.lock().latency
    }

    /// Rules with uses left, with how many (`None` = forever).
    pub fn pending(&self) -> Vec<(FaultId, FaultRule, Option<u32>)> {
        self.lock().rules.iter().filter(|(_, _, left)| *left != Some(0)).cloned().collect()
    }

    /// Consumes one use of the first matching rule.
    pub(crate) fn take(&self, method: &Method, path: &str) -> Option<FaultAction> {
        self.take_if(method, path, |_| true)
    }

    /// Consumes one use of the first matching rule whose action passes `accept`.
    pub(crate) fn take_if(
        &self,
        method: &Method,
        path: &str,
        accept: impl Fn(&FaultAction) -> bool,
    ) -> Option<FaultAction> {
        let mut inner = self.lock();
        let pos = inner.rules.iter().position(|(_, rule, left)| {
            *left != Some(0)
                && rule.method.as_ref().is_none_or(|m| m == method)
                && rule.path.matches(path)
                && accept(&rule.action)
        })?;
        let (_, rule, left) = &mut inner.rules[pos];
        let action = rule.action.clone();
        if let Some(n) = left {
            *n -= 1;
            if *n == 0 {
                inner.rules.remove(pos);
            }
        }
        Some(action)
    }
}

/// The JSON form of a rule accepted by `POST /sim/faults` on every simulator.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct FaultSpec {
    method: Option<String>,
    /// Exact path, or a glob if it contains `*`.
    path: Option<String>,
    prefix: Option<String>,
    /// Omitted: once. Zero or negative: forever.
    times: Option<i64>,
    status: Option<u16>,
    headers: Vec<(String, String)>,
    body: Option<serde_json::Value>,
    delay_ms: Option<u64>,
    hang_ms: Option<u64>,
    abort: bool,
    latency_ms: Option<u64>,
}

impl FaultSpec {
    /// Applies the spec: a latency setting, a rule, or both. Returns the rule id when one was added.
    pub(crate) fn apply(self, faults: &Faults) -> Result<Option<FaultId>, String> {
        if let Some(ms) = self.latency_ms {
            faults.set_latency(Duration::from_millis(ms));
        }
        let mut rule = if let Some(status) = self.status {
            let mut r = FaultRule::respond(status);
            for (k, v) in self.headers {
                r = r.header(k, v);
            }
            match self.body {
                Some(serde_json::Value::String(s)) => r.body(s.into_bytes()),
                Some(v) => r.json(&v),
                None => r,
            }
        } else if let Some(ms) = self.delay_ms {
            FaultRule::delay(Duration::from_millis(ms))
        } else if let Some(ms) = self.hang_ms {
            FaultRule::hang_for(Duration::from_millis(ms))
        } else if self.abort {
            FaultRule::abort()
        } else if self.latency_ms.is_some() {
            return Ok(None);
        } else {
            return Err("one of status, delay_ms, hang_ms, abort or latency_ms is required".into());
        };
        if let Some(m) = self.method {
            let method =
                Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| format!("invalid method {m:?}"))?;
            rule.method = Some(method);
        }
        if let Some(p) = self.prefix {
            rule.path = PathPattern::Prefix(p);
        } else if let Some(p) = self.path {
            rule.path = PathPattern::from(p);
        }
        rule.times = match self.times {
            None => Times::Count(1),
            Some(n) if n <= 0 => Times::Forever,
            Some(n) => Times::Count(u32::try_from(n).unwrap_or(u32::MAX)),
        };
        Ok(Some(faults.push(rule)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn glob_matching() {
        let p = PathPattern::glob("/v1.0/groups/*/members/$ref");
        assert!(p.matches("/v1.0/groups/abc/members/$ref"));
        assert!(!p.matches("/v1.0/groups/abc/def/members/$ref"));
        assert!(PathPattern::glob("/v1.0/**").matches("/v1.0/groups/a/members/b/$ref"));
        assert!(PathPattern::glob("/v1.0/users/*").matches("/v1.0/users/"));
        assert!(PathPattern::prefix("/v1.0/").matches("/v1.0/x"));
        assert!(PathPattern::from("/a/b").matches("/a/b"));
        assert!(!PathPattern::from("/a/b").matches("/a/bc"));
    }

    #[test]
    fn counted_rules_are_consumed_in_order() {
        let f = Faults::default();
        f.push(FaultRule::respond(429).on(Method::POST, "/x").times(2));
        f.push(FaultRule::respond(503).path("/x").forever());
        assert!(matches!(f.take(&Method::POST, "/x"), Some(FaultAction::Respond { status: 429, .. })));
        assert!(matches!(f.take(&Method::POST, "/x"), Some(FaultAction::Respond { status: 429, .. })));
        assert!(matches!(f.take(&Method::POST, "/x"), Some(FaultAction::Respond { status: 503, .. })));
        assert!(matches!(f.take(&Method::GET, "/x"), Some(FaultAction::Respond { status: 503, .. })));
        assert!(f.take(&Method::GET, "/y").is_none());
        assert_eq!(f.pending().len(), 1);
    }
}
