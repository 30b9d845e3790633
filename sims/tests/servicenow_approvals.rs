#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Approval records an integration creates on a RITM: the Table API shapes of
//! `sysapproval_approver`, an approver acting in the UI (state, journal comment, `sys_updated_by`),
//! the approval doorbell, and the simplified catalog workflow leaving those records to their
//! creator.

mod common;

use std::sync::{Arc, Mutex};

use common::{client, start};
use grantline_sims::{CreatedRitm, HmacSigning, NewRitm, Sims, SimsConfig, ids};
use hmac::Mac;
use serde_json::{Value, json};

fn table(sims: &Sims, path_and_query: &str) -> String {
    format!("{}/api/now/table/{path_and_query}", sims.servicenow.base_url())
}

/// A RITM with no approvals of the workflow's own.
fn bare_ritm(sims: &Sims) -> CreatedRitm {
    sims.servicenow.state().create_ritm(NewRitm::new("alexw", ids::CAT_ITEM_FINANCE_BI_NAME)).unwrap()
}

/// `POST /api/now/table/sysapproval_approver` as the integration account, as grantline does.
async fn create_approval(sims: &Sims, ritm: &str, approver: &str, comments: &str) -> Value {
    let resp = client()
        .post(table(sims, "sysapproval_approver"))
        .basic_auth(ids::SNOW_USER, Some(ids::SNOW_PASSWORD))
        .json(&json!({
            "sysapproval": ritm, "document_id": ritm, "source_table": "sc_req_item",
            "approver": approver, "state": "requested", "comments": comments,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json::<Value>().await.unwrap()["result"].clone()
}

async fn patch_approval(sims: &Sims, sys_id: &str, body: Value) -> Value {
    let resp = client()
        .patch(table(sims, &format!("sysapproval_approver/{sys_id}")))
        .basic_auth(ids::SNOW_USER, Some(ids::SNOW_PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["result"].clone()
}

async fn get_json(sims: &Sims, path_and_query: &str) -> Value {
    let resp = client()
        .get(table(sims, path_and_query))
        .basic_auth(ids::SNOW_USER, Some(ids::SNOW_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

type Delivery = (axum::http::HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Delivery>>>);

impl Received {
    fn all(&self) -> Vec<Delivery> {
        self.0.lock().unwrap().clone()
    }
}

async fn listener() -> (String, Received) {
    let received = Received::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/hooks/servicenow",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                store.0.lock().unwrap().push((headers, body.to_vec()));
                (axum::http::StatusCode::ACCEPTED, "queued")
            }
        }),
    );
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(tcp, app).await;
    });
    (format!("http://{addr}/hooks/servicenow"), received)
}

#[tokio::test]
async fn approval_records_have_the_table_api_shape() {
    let sims = start().await;
    let base = sims.servicenow.base_url();
    let ritm = bare_ritm(&sims);
    let created =
        create_approval(&sims, &ritm.sys_id, ids::SARA_SNOW_SYS_ID, "Please review Finance BI for Alex").await;
    let id = created["sys_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(
        created["sysapproval"],
        json!({ "link": format!("{base}/api/now/table/sc_req_item/{}", ritm.sys_id), "value": ritm.sys_id })
    );
    assert_eq!(
        created["approver"],
        json!({ "link": format!("{base}/api/now/table/sys_user/{}", ids::SARA_SNOW_SYS_ID), "value": ids::SARA_SNOW_SYS_ID })
    );
    assert_eq!(created["document_id"], ritm.sys_id.as_str());
    assert_eq!(created["source_table"], "sc_req_item");
    assert_eq!(created["state"], "requested");
    assert_eq!(created["comments"], "");
    assert_eq!(created["wf_activity"], "");
    assert_eq!(created["sys_created_by"], ids::SNOW_USER);
    assert_eq!(created["sys_updated_by"], ids::SNOW_USER);
    assert_eq!(created["sys_mod_count"], "0");
    assert_eq!(sims.servicenow.state().comments(&id), ["Please review Finance BI for Alex"]);

    // A record inserted without a state is requested.
    let resp = client()
        .post(table(&sims, "sysapproval_approver?sysparm_fields=state"))
        .basic_auth(ids::SNOW_USER, Some(ids::SNOW_PASSWORD))
        .json(&json!({ "sysapproval": ritm.sys_id, "approver": ids::MEGAN_SNOW_SYS_ID }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "result": { "state": "requested" } }));

    // Read back with display values: the approver's name and the state's label.
    let fields = "sys_id,state,approver,comments,sys_updated_on,sys_updated_by";
    let list = get_json(
        &sims,
        &format!(
            "sysapproval_approver?sysparm_query=sysapproval={}&sysparm_fields={fields}&sysparm_display_value=all",
            ritm.sys_id
        ),
    )
    .await;
    let rows = list["result"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["state"], json!({ "display_value": "Requested", "value": "requested" }));
    assert_eq!(rows[0]["approver"]["display_value"], "Sara Davis");
    assert_eq!(rows[0]["approver"]["value"], ids::SARA_SNOW_SYS_ID);
    assert_eq!(rows[0]["comments"]["value"], "");
    let history = rows[0]["comments"]["display_value"].as_str().unwrap();
    assert!(history.contains("(Additional comments)\nPlease review Finance BI for Alex"), "{history}");
    assert_eq!(rows[1]["approver"]["display_value"], "Megan Bowen");

    // An update by the integration account: the journal grows, sys_updated_by names the account.
    let updated =
        patch_approval(&sims, &id, json!({ "state": "no_longer_required", "comments": "Decided in Teams" })).await;
    assert_eq!(updated["state"], "no_longer_required");
    assert_eq!(updated["comments"], "");
    assert_eq!(updated["sys_updated_by"], ids::SNOW_USER);
    assert_eq!(updated["sys_mod_count"], "1");
    let journal = get_json(
        &sims,
        &format!(
            "sys_journal_field?sysparm_query=element_id={id}^element=comments&sysparm_fields=value,sys_created_by"
        ),
    )
    .await;
    assert_eq!(
        journal["result"],
        json!([
            { "value": "Please review Finance BI for Alex", "sys_created_by": ids::SNOW_USER },
            { "value": "Decided in Teams", "sys_created_by": ids::SNOW_USER },
        ])
    );

    let resp = client()
        .patch(table(&sims, "sysapproval_approver/00000000000000000000000000000000"))
        .basic_auth(ids::SNOW_USER, Some(ids::SNOW_PASSWORD))
        .json(&json!({ "state": "approved" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    sims.shutdown().await;
}

#[tokio::test]
async fn a_decision_in_the_ui_rings_the_doorbell() {
    let mut cfg = SimsConfig::demo();
    cfg.servicenow.webhook.secret_header = "X-Doorbell-Secret".to_owned();
    cfg.servicenow.webhook.secret = "doorbell-s3cret".to_owned();
    cfg.servicenow.webhook.hmac = Some(HmacSigning {
        header: "X-Doorbell-Signature".to_owned(),
        key: "doorbell-key".to_owned(),
        prefix: "sha256=".to_owned(),
        timestamp_header: None,
    });
    let sims = Sims::start(cfg).await.unwrap();
    let ritm = bare_ritm(&sims);
    let first = create_approval(&sims, &ritm.sys_id, ids::SARA_SNOW_SYS_ID, "").await;
    let first = first["sys_id"].as_str().unwrap().to_owned();
    let second = create_approval(&sims, &ritm.sys_id, ids::MEGAN_SNOW_SYS_ID, "").await;
    let second = second["sys_id"].as_str().unwrap().to_owned();

    // Without a doorbell, the decision is taken and nothing is sent.
    let none = sims.servicenow.approve_in_ui(&second, "meganb", false, "").await.unwrap();
    assert!(none.is_none());
    assert_eq!(sims.servicenow.state().record("sysapproval_approver", &second).unwrap()["state"], "rejected");

    let (url, received) = listener().await;
    sims.servicenow.set_approval_webhook(Some(url.clone()));
    let delivery = sims.servicenow.approve_in_ui(&first, "sarad", true, "Fine by me").await.unwrap().unwrap();
    assert_eq!(delivery.status, 202);
    let got = received.all();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    assert_eq!(headers["user-agent"], "ServiceNow/1.0");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-doorbell-secret"], "doorbell-s3cret");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"doorbell-key").unwrap();
    mac.update(body);
    assert_eq!(
        headers["x-doorbell-signature"].to_str().unwrap(),
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload, delivery.payload);
    assert_eq!(payload["source"], "servicenow");
    assert_eq!(payload["event"], "approval.updated");
    assert_eq!(payload["instance"], ids::SNOW_INSTANCE);
    assert_eq!(payload["ritm"]["sys_id"], ritm.sys_id.as_str());
    assert_eq!(payload["ritm"]["number"], ritm.number.as_str());
    // The workflow did not settle the RITM from records it did not request.
    assert_eq!(payload["ritm"]["approval"], "requested");
    assert!(payload["sent_at"].as_str().unwrap().ends_with('Z'));

    // The receiver re-reads: state, the approver as sys_updated_by, the comment in the journal.
    let row = get_json(
        &sims,
        &format!("sysapproval_approver/{first}?sysparm_fields=state,sys_updated_by,comments&sysparm_display_value=all"),
    )
    .await;
    assert_eq!(row["result"]["state"], json!({ "display_value": "Approved", "value": "approved" }));
    assert_eq!(row["result"]["sys_updated_by"]["value"], "sarad");
    assert_eq!(row["result"]["comments"]["value"], "");
    let journal = get_json(
        &sims,
        &format!(
            "sys_journal_field?sysparm_query=element_id={first}^element=comments&sysparm_fields=value,sys_created_by"
        ),
    )
    .await;
    assert_eq!(journal["result"], json!([{ "value": "Fine by me", "sys_created_by": "sarad" }]));

    // Cleared: no delivery.
    sims.servicenow.set_approval_webhook(None);
    assert!(sims.servicenow.approve_in_ui(&first, "sarad", true, "").await.unwrap().is_none());
    assert_eq!(received.all().len(), 1);

    // Refusals: unknown approval, unknown user, unknown state.
    assert!(sims.servicenow.approve_in_ui("0123456789abcdef0123456789abcdef", "sarad", true, "").await.is_err());
    assert!(sims.servicenow.approve_in_ui(&first, "nobody", true, "").await.is_err());
    assert!(sims.servicenow.state().act_on_approval(&first, "sarad", "maybe", "").is_err());
    sims.shutdown().await;
}

#[tokio::test]
async fn admin_routes_set_the_doorbell_and_act() {
    let sims = start().await;
    let base = sims.servicenow.base_url();
    let ritm = bare_ritm(&sims);
    let approval = create_approval(&sims, &ritm.sys_id, ids::SARA_SNOW_SYS_ID, "").await;
    let approval = approval["sys_id"].as_str().unwrap().to_owned();
    let (url, received) = listener().await;

    let resp = client().put(format!("{base}/sim/approval-webhook")).json(&json!({ "url": url })).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    let act = |id: &str, body: Value| client().post(format!("{base}/sim/approvals/{id}/act")).json(&body).send();
    let resp = act(&approval, json!({ "user_name": "sarad", "state": "rejected", "comment": "Not this quarter" }))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["delivery"]["status"], 202);
    assert_eq!(body["delivery"]["payload"]["event"], "approval.updated");
    let got = received.all();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0["x-grantline-webhook-secret"], sims.servicenow.webhook_config().secret.as_str());
    let record = sims.servicenow.state().record("sysapproval_approver", &approval).unwrap();
    assert_eq!(record["state"], "rejected");
    assert_eq!(record["sys_updated_by"], "sarad");
    assert_eq!(sims.servicenow.state().comments(&approval), ["Not this quarter"]);

    let resp =
        act("0123456789abcdef0123456789abcdef", json!({ "user_name": "sarad", "state": "approved" })).await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = act(&approval, json!({ "user_name": "nobody", "state": "approved" })).await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = act(&approval, json!({ "user_name": "sarad", "state": "maybe" })).await.unwrap();
    assert_eq!(resp.status(), 400);

    let resp = client().put(format!("{base}/sim/approval-webhook")).json(&json!({ "url": null })).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    let resp = act(&approval, json!({ "user_name": "sarad", "state": "approved" })).await.unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "delivery": null }));
    assert_eq!(received.all().len(), 1);
    sims.shutdown().await;
}

#[tokio::test]
async fn the_workflow_leaves_external_approvals_to_their_creator() {
    let sims = start().await;
    let state = sims.servicenow.state();

    // Only records an integration created: approving all of them, or rejecting one, through
    // the Table API or the UI, leaves the RITM as it was.
    let ritm = bare_ritm(&sims);
    let a =
        create_approval(&sims, &ritm.sys_id, ids::SARA_SNOW_SYS_ID, "").await["sys_id"].as_str().unwrap().to_owned();
    let b =
        create_approval(&sims, &ritm.sys_id, ids::MEGAN_SNOW_SYS_ID, "").await["sys_id"].as_str().unwrap().to_owned();
    patch_approval(&sims, &a, json!({ "state": "approved" })).await;
    sims.servicenow.approve_in_ui(&b, "meganb", true, "").await.unwrap();
    let view = state.ritm(&ritm.sys_id).unwrap();
    assert_eq!((view.approval.as_str(), view.stage.as_str()), ("requested", "waiting_for_approval"));
    sims.servicenow.approve_in_ui(&b, "meganb", false, "changed my mind").await.unwrap();
    let view = state.ritm(&ritm.sys_id).unwrap();
    assert_eq!((view.approval.as_str(), view.state.as_str(), view.active.as_str()), ("requested", "1", "true"));

    // A RITM with an approval of the workflow's own and an external one: the external record's
    // rejection does not count; the workflow's approval settles the RITM.
    let mixed = state.create_ritm(NewRitm::new("alexw", ids::CAT_ITEM_TEAM_ALPHA_NAME).approver("pattif")).unwrap();
    let own = &mixed.approval_sys_ids[0];
    assert_ne!(state.record("sysapproval_approver", own).unwrap()["wf_activity"], "");
    let external =
        create_approval(&sims, &mixed.sys_id, ids::SARA_SNOW_SYS_ID, "").await["sys_id"].as_str().unwrap().to_owned();
    sims.servicenow.approve_in_ui(&external, "sarad", false, "").await.unwrap();
    assert_eq!(state.ritm(&mixed.sys_id).unwrap().approval, "requested");
    sims.servicenow.approve_in_ui(own, "pattif", true, "ok").await.unwrap();
    let view = state.ritm(&mixed.sys_id).unwrap();
    assert_eq!((view.approval.as_str(), view.stage.as_str()), ("approved", "fulfillment"));
    assert_eq!(state.record("sc_req_item", &mixed.sys_id).unwrap()["sys_updated_by"], "pattif");
    sims.shutdown().await;
}
