//! `POST /v1.0/$batch`: up to 20 requests, unique ids, per-item status, headers and body,
//! `dependsOn` (a failed dependency gives 424), per-item throttling and per-item scripted faults.
//! Items run in the order given; a `dependsOn` must name an earlier item.

use std::collections::HashMap;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Deserialize;
use serde_json::Value;

use super::GraphService;
use super::errors::{CONTENT_TYPE, GraphError};
use crate::faults::FaultAction;
use crate::json::{Obj, Val};
use crate::server::{Service, SimRequest, SimResponse};

const MAX_REQUESTS: usize = 20;

/// Inner response headers not copied into a batch item.
const DROPPED_HEADERS: &[&str] =
    &["request-id", "client-request-id", "x-ms-ags-diagnostic", "strict-transport-security"];

#[derive(Deserialize)]
struct BatchBody {
    requests: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    id: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default, rename = "dependsOn")]
    depends_on: Vec<String>,
}

fn bad(message: impl Into<String>) -> GraphError {
    GraphError::new(400, "BadRequest", message)
}

pub(crate) fn run(svc: &GraphService, req: &SimRequest) -> Result<SimResponse, GraphError> {
    let parsed: BatchBody = serde_json::from_slice(&req.body).map_err(|_| bad("Invalid batch payload format."))?;
    if parsed.requests.is_empty() {
        return Err(bad("Invalid batch payload format."));
    }
    if parsed.requests.len() > MAX_REQUESTS {
        return Err(bad(format!("The batch request exceeds the limit of {MAX_REQUESTS} requests.")));
    }
    let mut seen: Vec<String> = Vec::new();
    for item in &parsed.requests {
        let id = item.id.to_ascii_lowercase();
        if item.id.is_empty() || seen.contains(&id) {
            return Err(bad(format!("Batch request contains a missing or duplicate id '{}'.", item.id)));
        }
        for dep in &item.depends_on {
            if !seen.contains(&dep.to_ascii_lowercase()) {
                return Err(bad(format!(
                    "Request id '{}' depends on '{dep}', which is not an earlier request of the batch.",
                    item.id
                )));
            }
        }
        let has_ct = item.headers.as_ref().is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("content-type")));
        if item.body.is_some() && !has_ct {
            return Err(bad(format!("Write request id : {} does not contain Content-Type header or body.", item.id)));
        }
        if Method::from_bytes(item.method.to_ascii_uppercase().as_bytes()).is_err() {
            return Err(bad(format!("Invalid method '{}'.", item.method)));
        }
        seen.push(id);
    }

    let mut statuses: HashMap<String, u16> = HashMap::new();
    let mut responses: Vec<Val> = Vec::new();
    for item in parsed.requests {
        let failed_dep = item
            .depends_on
            .iter()
            .any(|d| statuses.get(&d.to_ascii_lowercase()).is_none_or(|s| !(200..300).contains(s)));
        let resp = if failed_dep {
            svc.standalone_error(
                req,
                GraphError::new(
                    424,
                    "FailedDependency",
                    "The request was not run because a request it depends on failed.",
                ),
            )
        } else {
            run_item(svc, req, &item)
        };
        statuses.insert(item.id.to_ascii_lowercase(), resp.status);
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
    Ok(SimResponse::json_bytes(200, CONTENT_TYPE, body.to_bytes()))
}

fn run_item(svc: &GraphService, outer: &SimRequest, item: &BatchItem) -> SimResponse {
    let method = Method::from_bytes(item.method.to_ascii_uppercase().as_bytes()).unwrap_or(Method::GET);
    let url = item.url.trim_start_matches('/');
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (format!("/v1.0/{p}"), Some(q.to_owned())),
        None => (format!("/v1.0/{url}"), None),
    };
    let mut headers = HeaderMap::new();
    if let Some(auth) = outer.headers.get("authorization") {
        headers.insert(http::header::AUTHORIZATION, auth.clone());
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
    let body = match &item.body {
        None => Vec::new(),
        Some(v) => serde_json::to_vec(v).unwrap_or_default(),
    };
    let inner = SimRequest { method, path, query, headers, body: body.into() };
    let fault = svc.core().faults.take_if(&inner.method, &inner.path, |a| matches!(a, FaultAction::Respond { .. }));
    match fault {
        Some(FaultAction::Respond { status, headers, body }) => svc.fault_response(&inner, status, headers, body),
        _ => svc.process(&inner, true),
    }
}
