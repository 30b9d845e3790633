//! `POST /adminapi/beta/{tenant}/$batch`, the undocumented batch shape one open-source client
//! uses: `{"requests":[{"id","method","url","headers","body"}]}` where `url` is the full
//! InvokeCommand URL (or a path), answered with `{"responses":[{"id","status","headers","body"}]}`.
//! Items run in order, each authenticated with the outer `Authorization`, each throttled on its
//! own; scripted `Respond` faults apply to items by their path.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;
use serde_json::Value;

use super::ExchangeService;
use super::errors::{self, CONTENT_TYPE};
use crate::faults::FaultAction;
use crate::json::{Obj, Val};
use crate::server::{Service, SimRequest, SimResponse};

/// Most items one batch may carry (the client that uses the endpoint sends ten at a time; the
/// service's own limit is not known).
pub(crate) const MAX_REQUESTS: usize = 10;

/// Item response headers not copied into the batch response.
const DROPPED_HEADERS: &[&str] =
    &["request-id", "client-request-id", "strict-transport-security", "x-calculatedbetarget", "x-beserver"];

#[derive(Deserialize)]
struct BatchBody {
    requests: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    id: String,
    #[serde(default)]
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    body: Option<Value>,
}

pub(crate) fn run(svc: &ExchangeService, outer: &SimRequest, tenant: &str) -> SimResponse {
    let Ok(parsed) = serde_json::from_slice::<BatchBody>(&outer.body) else {
        return errors::odata_error(400, "BadRequest", "The batch request body is invalid.");
    };
    if parsed.requests.is_empty() || parsed.requests.len() > MAX_REQUESTS {
        return errors::odata_error(
            400,
            "BadRequest",
            &format!("A batch request must contain between 1 and {MAX_REQUESTS} requests."),
        );
    }
    let mut responses = Vec::new();
    for item in parsed.requests {
        let inner = item_request(outer, &item, tenant);
        let fault = svc.core().faults.take_if(&inner.method, &inner.path, |a| matches!(a, FaultAction::Respond { .. }));
        let resp = match fault {
            Some(FaultAction::Respond { status, headers, body }) => svc.fault_response(&inner, status, headers, body),
            _ => svc.process(&inner, true),
        };
        let mut headers = Obj::new();
        for (k, v) in &resp.headers {
            if !DROPPED_HEADERS.iter().any(|d| d.eq_ignore_ascii_case(k)) {
                headers.push(k.clone(), v.clone());
            }
        }
        let mut out =
            Obj::new().with("id", item.id.clone()).with("status", Value::from(resp.status)).with("headers", headers);
        if !resp.body.is_empty() {
            let text = String::from_utf8_lossy(&resp.body).into_owned();
            match serde_json::value::RawValue::from_string(text.clone()) {
                Ok(raw) => out.push("body", Val::Raw(raw)),
                Err(_) => out.push("body", text),
            }
        }
        responses.push(Val::Obj(out));
    }
    let body = Obj::new().with("responses", Val::List(responses));
    SimResponse::json_bytes(200, CONTENT_TYPE, body.to_bytes())
}

/// The item as a request of its own: its path and query from `url`, the outer `Authorization`
/// and `Prefer`, then its own headers.
fn item_request(outer: &SimRequest, item: &BatchItem, tenant: &str) -> SimRequest {
    let method = item
        .method
        .as_deref()
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .unwrap_or(Method::POST);
    let (path, query) = match url::Url::parse(&item.url) {
        Ok(u) => (u.path().to_owned(), u.query().map(str::to_owned)),
        Err(_) => {
            let raw = item.url.trim();
            let (p, q) = raw.split_once('?').map_or((raw, None), |(p, q)| (p, Some(q.to_owned())));
            let path = if p.starts_with('/') { p.to_owned() } else { format!("/adminapi/beta/{tenant}/{p}") };
            (path, q)
        }
    };
    let mut headers = HeaderMap::new();
    for name in [http::header::AUTHORIZATION, HeaderName::from_static("prefer")] {
        if let Some(v) = outer.headers.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    for (k, v) in item.headers.iter().flatten() {
        let value = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&value)) {
            headers.insert(name, value);
        }
    }
    let body = item.body.as_ref().map(|v| serde_json::to_vec(v).unwrap_or_default()).unwrap_or_default();
    SimRequest { method, path, query, headers, body: body.into() }
}
