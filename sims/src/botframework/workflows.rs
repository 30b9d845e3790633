//! The Teams Workflows channel webhook ("post to a channel when a webhook request is
//! received"): the URL's `sig` is the only credential.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use uuid::Uuid;

use super::state::{Channel, ChannelMessage};
use super::{BotService, bf_error};
use crate::server::{SimRequest, SimResponse};

impl BotService {
    /// The webhook URL of a channel, made on first use.
    pub(super) fn channel_url(&self, name: &str) -> String {
        let mut records = self.records();
        let workflow_id = match records.state.channel(name) {
            Some(c) => c.workflow_id.clone(),
            None => {
                let workflow_id = Uuid::new_v4().simple().to_string();
                let sig: Vec<u8> = [Uuid::new_v4(), Uuid::new_v4()].iter().flat_map(|u| *u.as_bytes()).collect();
                records.sigs.push((workflow_id.clone(), URL_SAFE_NO_PAD.encode(sig)));
                records.state.channels.push(Channel {
                    name: name.to_owned(),
                    workflow_id: workflow_id.clone(),
                    messages: Vec::new(),
                });
                workflow_id
            }
        };
        let sig = records.sigs.iter().find(|(w, _)| *w == workflow_id).map(|(_, s)| s.clone()).unwrap_or_default();
        format!(
            "{}/workflows/{workflow_id}/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={sig}",
            self.core.base_url
        )
    }

    /// `POST /workflows/{id}/triggers/manual/paths/invoke?…&sig=…`.
    pub(super) fn workflow(&self, req: &SimRequest, workflow_id: &str) -> SimResponse {
        if req.method != http::Method::POST {
            return bf_error(
                405,
                "TriggerRequestMethodNotValid",
                &format!("The HTTP method for this request is not valid: expected 'POST' and actual '{}'.", req.method),
            );
        }
        let query = req.query_pairs();
        let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
        if param("api-version").is_none() {
            return bf_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        }
        let mut records = self.records();
        let Some(expected) = records.sigs.iter().find(|(w, _)| w == workflow_id).map(|(_, s)| s.clone()) else {
            return bf_error(404, "WorkflowNotFound", &format!("The workflow '{workflow_id}' could not be found."));
        };
        match param("sig") {
            None => {
                return bf_error(
                    401,
                    "DirectApiAuthorizationRequired",
                    "The request must be authenticated only by Shared Access scheme.",
                );
            }
            Some(sig) if sig != expected => {
                return bf_error(
                    401,
                    "DirectApiInvalidAuthorizationSignature",
                    "The provided authorization signature is not valid.",
                );
            }
            Some(_) => {}
        }
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            let kind = req.header("content-type").unwrap_or("application/octet-stream").to_owned();
            return bf_error(
                400,
                "InvalidRequestContent",
                &format!(
                    "The input body for trigger 'manual' of type 'Request' must be of type JSON, but was of type '{kind}'."
                ),
            );
        };
        let now = self.core.clock.now();
        if let Some(channel) = records.state.channels.iter_mut().find(|c| c.workflow_id == workflow_id) {
            channel.messages.push(ChannelMessage { at: now, body });
        }
        let run = Uuid::new_v4().as_u128();
        SimResponse::new(202)
            .header("x-ms-workflow-run-id", format!("08584{:024}CU{:02}", run % 10u128.pow(24), run % 100))
            .header("x-ms-correlation-id", Uuid::new_v4().to_string())
            .header("x-ms-client-tracking-id", Uuid::new_v4().to_string())
            .header("x-ms-trigger-history-name", format!("08584{:024}CU{:02}", run % 10u128.pow(24), run % 100))
            .header("x-ms-workflow-id", workflow_id.to_owned())
            .header("x-ms-request-id", Uuid::new_v4().to_string())
    }
}
