//! The outbound webhook a ServiceNow business rule would send (our documented payload), fired on
//! demand: `POST` to a URL with `User-Agent: ServiceNow/1.0`, a shared-secret header, and
//! optionally an HMAC-SHA256 signature of the body.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::state::ServiceNowState;
use crate::error::SimError;
use crate::json::Obj;

/// HMAC-SHA256 signing of the webhook body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HmacSigning {
    /// Header that carries the signature.
    pub header: String,
    pub key: String,
    /// Put before the lower-case hex digest, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: String,
    /// When set, this header carries the Unix time and the signed message is `{time}.{body}`;
    /// otherwise the body alone is signed.
    #[serde(default)]
    pub timestamp_header: Option<String>,
}

/// Default webhook settings of the ServiceNow simulator (the receiver defines the contract).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Shared-secret header name.
    pub secret_header: String,
    pub secret: String,
    pub hmac: Option<HmacSigning>,
    /// Request timeout when delivering.
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            secret_header: "X-Grantline-Webhook-Secret".to_owned(),
            secret: "grantline-demo-webhook-secret".to_owned(),
            hmac: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Where and how to deliver one webhook.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookTarget {
    pub url: String,
    /// Default: `ritm.approved` when the RITM is approved, otherwise `ritm.created`.
    pub event: Option<String>,
    /// Extra headers (the shared secret goes here).
    pub headers: Vec<(String, String)>,
    pub hmac: Option<HmacSigning>,
}

/// The outcome of a delivery.
#[derive(Clone, Debug, Serialize)]
pub struct WebhookDelivery {
    /// The receiver's status.
    pub status: u16,
    /// The receiver's body.
    pub body: String,
    /// The payload sent.
    pub payload: serde_json::Value,
    /// The headers sent.
    pub headers: Vec<(String, String)>,
}

/// Builds the documented payload for a RITM.
pub(crate) fn payload(
    state: &ServiceNowState,
    instance: &str,
    ritm: &str,
    event: Option<&str>,
) -> Result<Vec<u8>, SimError> {
    let sys_id = state.resolve_ritm(ritm).ok_or_else(|| SimError::NotFound(format!("sc_req_item {ritm}")))?;
    let v = |f: &str| state.value("sc_req_item", &sys_id, f);
    let approval = v("approval");
    let event = event
        .map(str::to_owned)
        .unwrap_or_else(|| if approval == "approved" { "ritm.approved".to_owned() } else { "ritm.created".to_owned() });
    let mut variables = Obj::new();
    for (k, val) in state.variables(&sys_id) {
        variables.push(k, val);
    }
    let now = state.clock.now();
    let body = Obj::new()
        .with("source", "servicenow")
        .with("event", event)
        .with("instance", instance)
        .with(
            "ritm",
            Obj::new()
                .with("sys_id", sys_id.clone())
                .with("number", v("number"))
                .with("cat_item", Obj::new().with("sys_id", v("cat_item")).with("name", v("cat_item.name")))
                .with(
                    "requested_for",
                    Obj::new()
                        .with("sys_id", v("requested_for"))
                        .with("user_name", v("requested_for.user_name"))
                        .with("email", v("requested_for.email")),
                )
                .with("opened_by", Obj::new().with("sys_id", v("opened_by")).with("email", v("opened_by.email")))
                .with("state", v("state"))
                .with("stage", v("stage"))
                .with("approval", approval)
                .with("variables", variables),
        )
        .with("sent_at", now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    Ok(body.to_bytes())
}

/// The hex HMAC-SHA256 a webhook is signed with: over `"{unix_time}.{body}"` when the
/// timestamp is signed too, else over the body alone.
pub fn webhook_signature(key: &str, unix_time: Option<i64>, body: &[u8]) -> Result<String, SimError> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).map_err(|e| SimError::Config(format!("hmac key: {e}")))?;
    if let Some(t) = unix_time {
        mac.update(format!("{t}.").as_bytes());
    }
    mac.update(body);
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Signs and posts the payload.
pub(crate) async fn deliver(
    client: &reqwest::Client,
    target: &WebhookTarget,
    body: Vec<u8>,
    unix_time: i64,
) -> Result<WebhookDelivery, SimError> {
    let mut headers: Vec<(String, String)> = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("User-Agent".to_owned(), "ServiceNow/1.0".to_owned()),
    ];
    headers.extend(target.headers.iter().cloned());
    if let Some(h) = &target.hmac {
        let stamp = h.timestamp_header.as_ref().map(|ts_header| {
            headers.push((ts_header.clone(), unix_time.to_string()));
            unix_time
        });
        let digest = webhook_signature(&h.key, stamp, &body)?;
        headers.push((h.header.clone(), format!("{}{digest}", h.prefix)));
    }
    let mut rb = client.post(&target.url).body(body.clone());
    for (k, v) in &headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let resp = rb.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    Ok(WebhookDelivery { status, body: text, payload: serde_json::from_slice(&body).unwrap_or_default(), headers })
}
