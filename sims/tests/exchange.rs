#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Exchange Online admin API simulator over HTTP: every cmdlet, the idempotency warnings, the
//! error envelopes, auth and RBAC, propagation delay, throttling, paging, `$batch`, faults and the
//! request log.

mod common;

use std::time::Duration;

use common::{client, header, start};
use grantline_sims::{
    AppRegistration, EXCHANGE_RESOURCE, ExchangeThrottleConfig, FaultRule, GRAPH_RESOURCE, Method, ResultSizeMode,
    Sims, ids,
};
use serde_json::{Value, json};

const DC: &str = "NAMPR01A001DC01.NAMPR01A001.PROD.OUTLOOK.COM";
const NOT_FOUND_TYPE: &str = "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException";

fn exo_token(sims: &Sims) -> String {
    sims.login.issue_token(ids::APP_GRANTLINE_ID, EXCHANGE_RESOURCE).unwrap()
}

async fn post(url: &str, token: &str, cmdlet: &str, params: Value) -> reqwest::Response {
    client()
        .post(url)
        .bearer_auth(token)
        .header(
            "X-AnchorMailbox",
            format!("APP:SystemMailbox{{bb558c35-97f1-4cb9-8ff7-d53741dc928c}}@{}", ids::TENANT_ID),
        )
        .header("client-request-id", uuid::Uuid::new_v4().to_string())
        .json(&json!({ "CmdletInput": { "CmdletName": cmdlet, "Parameters": params } }))
        .send()
        .await
        .unwrap()
}

async fn invoke(sims: &Sims, token: &str, cmdlet: &str, params: Value) -> reqwest::Response {
    post(&sims.exchange.invoke_url(), token, cmdlet, params).await
}

/// A 200 body; checks the envelope keys.
async fn ok(resp: reqwest::Response) -> Value {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["adminapi.warnings@odata.type"], "#Collection(String)");
    assert!(body["@adminapi.warnings"].is_array(), "{body}");
    assert!(body["value"].is_array(), "{body}");
    body
}

fn warnings(body: &Value) -> Vec<String> {
    body["@adminapi.warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_owned()).collect()
}

/// A cmdlet failure; returns (exception type, reason) from `error.details[0].message`.
async fn failure(resp: reqwest::Response, status: u16) -> (String, String) {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Error executing cmdlet", "{body}");
    assert_eq!(body["error"]["details"][0]["code"], "Client");
    assert_eq!(
        body["error"]["innererror"]["internalexception"]["message"],
        "Exception of type 'Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletExecutionException' was thrown."
    );
    let message = body["error"]["details"][0]["message"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = message.splitn(3, '|').collect();
    assert_eq!(parts.len(), 3, "{message}");
    assert!(parts[0].starts_with("Ex") && parts[0].len() == 8, "{message}");
    (parts[1].to_owned(), parts[2].to_owned())
}

fn row_for<'a>(rows: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    rows.as_array().unwrap().iter().find(|r| r[key].as_str().is_some_and(|v| v.eq_ignore_ascii_case(value)))
}

#[tokio::test]
async fn get_mailbox_answers_every_identity_form_with_the_envelope() {
    let sims = start().await;
    let token = exo_token(&sims);
    for identity in
        [ids::MAILBOX_FINANCE, "finance", "Finance", ids::MAILBOX_FINANCE_GUID, "finance@contoso.onmicrosoft.com"]
    {
        let resp = invoke(&sims, &token, "Get-Mailbox", json!({ "Identity": identity })).await;
        let request_id = header(&resp, "request-id");
        assert!(uuid::Uuid::parse_str(&request_id).is_ok());
        assert!(header(&resp, "content-type").starts_with("application/json;odata.metadata=minimal"));
        assert!(!header(&resp, "Rate-Limit-Remaining").is_empty());
        assert!(header(&resp, "Rate-Limit-Reset").ends_with('Z'));
        let text = resp.text().await.unwrap();
        let context = format!(
            "{}/adminapi/beta/{}/$metadata#Collection(Exchange.GenericHashTable)",
            sims.exchange.base_url(),
            ids::TENANT_ID
        );
        assert!(
            text.starts_with(&format!(
                r##"{{"@odata.context":"{context}","adminapi.warnings@odata.type":"#Collection(String)","@adminapi.warnings":[],"value":[{{"Identity":"finance""##
            )),
            "{text}"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        let row = &body["value"][0];
        assert_eq!(row["PrimarySmtpAddress"], ids::MAILBOX_FINANCE);
        assert_eq!(row["DisplayName"], "Finance");
        assert_eq!(row["RecipientTypeDetails"], "SharedMailbox");
        assert_eq!(row["ExchangeGuid"], ids::MAILBOX_FINANCE_GUID);
        assert_eq!(row["GrantSendOnBehalfTo"], json!([]));
        assert_eq!(body["value"].as_array().unwrap().len(), 1);
    }
    let kinds = [
        (ids::SARA_UPN, "UserMailbox"),
        (ids::MAILBOX_BOARDROOM, "RoomMailbox"),
        (ids::MAILBOX_HELPDESK, "SharedMailbox"),
    ];
    for (identity, kind) in kinds {
        let body = ok(invoke(&sims, &token, "get-mailbox", json!({ "identity": identity })).await).await;
        assert_eq!(body["value"][0]["RecipientTypeDetails"], kind, "{identity}");
    }
    let body = ok(invoke(&sims, &token, "Get-Mailbox", json!({ "Identity": ids::SARA_UPN })).await).await;
    assert_eq!(body["value"][0]["ExternalDirectoryObjectId"], ids::SARA_ID);
    assert_eq!(body["value"][0]["Alias"], "SaraD");
    sims.shutdown().await;
}

#[tokio::test]
async fn missing_identity_is_the_verbatim_not_found_envelope() {
    let sims = start().await;
    let token = exo_token(&sims);
    let resp = invoke(&sims, &token, "Get-Mailbox", json!({ "Identity": "nobody@contoso.com" })).await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NotFound");
    assert_eq!(
        body["error"]["details"][0]["message"],
        format!(
            "Ex6F9304|{NOT_FOUND_TYPE}|The operation couldn't be performed because object 'nobody@contoso.com' couldn't be found on '{DC}'."
        )
    );
    assert_eq!(body["error"]["details"][0]["target"], "");
    assert_eq!(body["error"]["innererror"]["type"], "Microsoft.Exchange.Admin.OData.Core.ODataServiceException");
    assert_eq!(
        body["error"]["innererror"]["internalexception"]["type"],
        "Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletExecutionException"
    );
    assert_eq!(body["adminapi.warnings@odata.type"], "#Collection(String)");
    assert_eq!(body["@adminapi.warnings"], json!([]));

    for (cmdlet, params) in [
        ("Get-MailboxPermission", json!({ "Identity": "ghost" })),
        (
            "Add-MailboxPermission",
            json!({ "Identity": "ghost", "User": ids::ALEX_UPN, "AccessRights": ["FullAccess"] }),
        ),
        ("Get-RecipientPermission", json!({ "Identity": "ghost" })),
        ("Set-Mailbox", json!({ "Identity": "ghost", "GrantSendOnBehalfTo": [] })),
    ] {
        let (kind, reason) = failure(invoke(&sims, &token, cmdlet, params).await, 404).await;
        assert_eq!(kind, NOT_FOUND_TYPE, "{cmdlet}");
        assert!(reason.contains("'ghost'"), "{cmdlet}: {reason}");
    }
    sims.shutdown().await;
}

#[tokio::test]
async fn full_access_add_is_idempotent_with_the_warning_and_lists_with_self_and_inherited_rows() {
    let sims = start().await;
    let token = exo_token(&sims);
    let add = json!({ "Identity": ids::MAILBOX_FINANCE, "User": ids::ALEX_UPN, "AccessRights": ["FullAccess"],
        "InheritanceType": "All", "AutoMapping": false, "Confirm": false });
    let body = ok(invoke(&sims, &token, "Add-MailboxPermission", add.clone()).await).await;
    assert!(warnings(&body).is_empty());
    assert_eq!(body["value"][0]["User"], ids::ALEX_UPN);
    assert_eq!(body["value"][0]["AccessRights"], json!(["FullAccess"]));
    let view = sims.exchange.state().mailbox(ids::MAILBOX_FINANCE).unwrap();
    assert!(view.has_full_access(ids::ALEX_UPN));
    assert!(!view.full_access[0].auto_mapping);

    let resp = invoke(&sims, &token, "Add-MailboxPermission", add).await;
    let x_warnings = header(&resp, "X-Warnings");
    let body = ok(resp).await;
    let expected = "The appropriate access control entry is already present on the object \"CN=finance,OU=contoso.onmicrosoft.com,OU=Microsoft Exchange Hosted Organizations,DC=NAMPR01A001,DC=PROD,DC=OUTLOOK,DC=COM\" for account \"NAMPR01A001\\AlexW\".".to_owned();
    assert_eq!(warnings(&body), vec![expected.clone()]);
    assert_eq!(x_warnings, expected);
    assert_eq!(body["value"], json!([]));

    let body = ok(invoke(&sims, &token, "Get-MailboxPermission", json!({ "Identity": "finance" })).await).await;
    let rows = &body["value"];
    let me = row_for(rows, "User", "NT AUTHORITY\\SELF").unwrap();
    assert_eq!(me["AccessRights"], json!(["FullAccess", "ReadPermission"]));
    assert_eq!(me["IsInherited"], false);
    let alex = row_for(rows, "User", ids::ALEX_UPN).unwrap();
    assert_eq!((alex["IsInherited"].as_bool(), alex["Deny"].as_bool()), (Some(false), Some(false)));
    assert_eq!(alex["InheritanceType"], "All");
    assert_eq!(alex["Identity"], "finance");
    assert!(rows.as_array().unwrap().iter().any(|r| r["Deny"] == true && r["IsInherited"] == true));
    assert!(rows.as_array().unwrap().iter().any(|r| r["Deny"] == false && r["IsInherited"] == true));
    let only =
        ok(invoke(&sims, &token, "Get-MailboxPermission", json!({ "Identity": "finance", "User": "AlexW" })).await)
            .await;
    assert_eq!(only["value"].as_array().unwrap().len(), 1);

    let remove = json!({ "Identity": ids::MAILBOX_FINANCE, "User": ids::ALEX_UPN, "AccessRights": ["FullAccess"],
        "InheritanceType": "All", "Confirm": false });
    let body = ok(invoke(&sims, &token, "Remove-MailboxPermission", remove.clone()).await).await;
    assert!(warnings(&body).is_empty());
    assert!(!sims.exchange.state().has_full_access(ids::MAILBOX_FINANCE, ids::ALEX_UPN));
    let body = ok(invoke(&sims, &token, "Remove-MailboxPermission", remove).await).await;
    assert_eq!(
        warnings(&body),
        vec!["Can't remove the access control entry on the object \"CN=finance,OU=contoso.onmicrosoft.com,OU=Microsoft Exchange Hosted Organizations,DC=NAMPR01A001,DC=PROD,DC=OUTLOOK,DC=COM\" for the user account because the ACE doesn't exist on the object.".to_owned()]
    );

    // The seed: Adele holds Full Access on helpdesk@, automapped.
    let seeded = sims.exchange.state().mailbox(ids::MAILBOX_HELPDESK).unwrap();
    assert!(seeded.has_full_access(ids::ADELE_UPN) && seeded.full_access[0].auto_mapping);
    assert_eq!(sims.exchange.state().counters().writes_applied, 2);
    sims.shutdown().await;
}

#[tokio::test]
async fn unknown_trustees_and_bad_parameters_fail_like_powershell() {
    let sims = start().await;
    let token = exo_token(&sims);
    let (kind, reason) = failure(
        invoke(
            &sims,
            &token,
            "Add-MailboxPermission",
            json!({ "Identity": "finance", "User": "nobody@contoso.com", "AccessRights": "FullAccess" }),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(kind, NOT_FOUND_TYPE);
    assert_eq!(
        reason,
        format!("The operation couldn't be performed because object 'nobody@contoso.com' couldn't be found on '{DC}'.")
    );
    let (kind, _) = failure(
        invoke(
            &sims,
            &token,
            "Add-RecipientPermission",
            json!({ "Identity": "finance", "Trustee": "nobody", "AccessRights": "SendAs" }),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(kind, NOT_FOUND_TYPE);

    let (kind, reason) = failure(
        invoke(&sims, &token, "Add-MailboxPermission", json!({ "Identity": "finance", "AccessRights": "FullAccess" }))
            .await,
        400,
    )
    .await;
    assert_eq!(kind, "System.Management.Automation.ParameterBindingException");
    assert_eq!(reason, "Cannot process command because of one or more missing mandatory parameters: User.");
    let (_, reason) =
        failure(invoke(&sims, &token, "Get-Mailbox", json!({ "Identity": "finance", "Filter": "x" })).await, 400).await;
    assert_eq!(reason, "A parameter cannot be found that matches parameter name 'Filter'.");
    let (_, reason) = failure(
        invoke(
            &sims,
            &token,
            "Add-MailboxPermission",
            json!({ "Identity": "finance", "User": ids::ALEX_UPN, "AccessRights": "ReadMail" }),
        )
        .await,
        400,
    )
    .await;
    assert!(reason.contains("'AccessRights'") && reason.contains("ReadMail"), "{reason}");
    sims.shutdown().await;
}

#[tokio::test]
async fn send_as_add_list_remove_and_warnings() {
    let sims = start().await;
    let token = exo_token(&sims);
    let params = json!({ "Identity": ids::MAILBOX_FINANCE, "Trustee": ids::ALEX_UPN, "AccessRights": ["SendAs"], "Confirm": false });
    let body = ok(invoke(&sims, &token, "Add-RecipientPermission", params.clone()).await).await;
    assert_eq!(body["value"][0]["Trustee"], ids::ALEX_UPN);
    assert_eq!(body["value"][0]["AccessControlType"], "Allow");
    assert!(sims.exchange.state().has_send_as(ids::MAILBOX_FINANCE, ids::ALEX_UPN));
    let body = ok(invoke(&sims, &token, "Add-RecipientPermission", params.clone()).await).await;
    assert_eq!(warnings(&body).len(), 1);
    assert!(warnings(&body)[0].starts_with("The appropriate access control entry is already present on the object"));

    let body = ok(invoke(&sims, &token, "Get-RecipientPermission", json!({ "Identity": "Finance" })).await).await;
    let rows = &body["value"];
    assert_eq!(row_for(rows, "Trustee", "NT AUTHORITY\\SELF").unwrap()["AccessRights"], json!(["SendAs"]));
    assert!(row_for(rows, "Trustee", ids::ALEX_UPN).is_some());
    let filtered = ok(invoke(
        &sims,
        &token,
        "Get-RecipientPermission",
        json!({ "Identity": "finance", "Trustee": ids::ALEX_UPN }),
    )
    .await)
    .await;
    assert_eq!(filtered["value"].as_array().unwrap().len(), 1);

    ok(invoke(&sims, &token, "Remove-RecipientPermission", params.clone()).await).await;
    assert!(!sims.exchange.state().has_send_as(ids::MAILBOX_FINANCE, ids::ALEX_UPN));
    let body = ok(invoke(&sims, &token, "Remove-RecipientPermission", params).await).await;
    assert!(warnings(&body)[0].starts_with("Can't remove the access control entry on the object"));
    let (_, reason) = failure(
        invoke(
            &sims,
            &token,
            "Add-RecipientPermission",
            json!({ "Identity": "finance", "Trustee": ids::ALEX_UPN, "AccessRights": "FullAccess" }),
        )
        .await,
        400,
    )
    .await;
    assert!(reason.contains("SendAs"), "{reason}");
    sims.shutdown().await;
}

#[tokio::test]
async fn send_on_behalf_hash_table_adds_and_removes_a_plain_array_overwrites() {
    let sims = start().await;
    let token = exo_token(&sims);
    let table = |key: &str, who: Value| json!({ "@odata.type": "#Exchange.GenericHashTable", key: who });
    let set =
        |value: Value| json!({ "Identity": ids::MAILBOX_FINANCE, "GrantSendOnBehalfTo": value, "Confirm": false });

    let body = ok(invoke(&sims, &token, "Set-Mailbox", set(table("add", json!(ids::ALEX_UPN)))).await).await;
    assert!(warnings(&body).is_empty());
    ok(invoke(&sims, &token, "Set-Mailbox", set(table("Add", json!([ids::SARA_UPN])))).await).await;
    let body = ok(invoke(
        &sims,
        &token,
        "Get-Mailbox",
        json!({ "Identity": "finance", "IncludeGrantSendOnBehalfToWithDisplayNames": true }),
    )
    .await)
    .await;
    let row = &body["value"][0];
    assert_eq!(row["GrantSendOnBehalfTo"], json!(["AlexW", "SaraD"]));
    assert_eq!(
        row["GrantSendOnBehalfToWithDisplayNames"],
        json!([{ "DisplayName": "Alex Wilber", "PrimarySmtpAddress": ids::ALEX_UPN }, { "DisplayName": "Sara Davis", "PrimarySmtpAddress": ids::SARA_UPN }])
    );

    let body = ok(invoke(&sims, &token, "Set-Mailbox", set(table("ADD", json!(ids::ALEX_UPN)))).await).await;
    assert_eq!(
        warnings(&body),
        vec!["The command completed successfully but no settings of 'finance' have been modified.".to_owned()]
    );
    ok(invoke(&sims, &token, "Set-Mailbox", set(table("remove", json!(ids::ALEX_UPN)))).await).await;
    assert!(!sims.exchange.state().has_send_on_behalf(ids::MAILBOX_FINANCE, ids::ALEX_UPN));
    assert!(sims.exchange.state().has_send_on_behalf(ids::MAILBOX_FINANCE, ids::SARA_UPN));
    let body = ok(invoke(&sims, &token, "Set-Mailbox", set(table("Remove", json!(ids::ALEX_UPN)))).await).await;
    assert_eq!(warnings(&body).len(), 1);

    // A plain array replaces every delegate.
    ok(invoke(&sims, &token, "Set-Mailbox", set(json!([ids::ISAIAH_UPN]))).await).await;
    let view = sims.exchange.state().mailbox(ids::MAILBOX_FINANCE).unwrap();
    assert_eq!(view.send_on_behalf, vec![ids::ISAIAH_UPN.to_owned()]);

    // A hash table without its type, and an unknown recipient.
    let (kind, _) =
        failure(invoke(&sims, &token, "Set-Mailbox", set(json!({ "add": ids::ALEX_UPN }))).await, 400).await;
    assert_eq!(kind, "System.Management.Automation.ParameterBindingException");
    let (kind, reason) =
        failure(invoke(&sims, &token, "Set-Mailbox", set(table("add", json!("nobody@contoso.com")))).await, 404).await;
    assert_eq!(kind, NOT_FOUND_TYPE);
    assert_eq!(
        reason,
        "Couldn't find object \"nobody@contoso.com\". Please make sure that it was spelled correctly or specify a different object."
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn folder_permissions_are_per_folder_and_add_refuses_an_existing_entry() {
    let sims = start().await;
    let token = exo_token(&sims);
    let body =
        ok(invoke(&sims, &token, "Get-MailboxFolderPermission", json!({ "Identity": "helpdesk@contoso.com:\\" }))
            .await)
        .await;
    let rows = &body["value"];
    assert_eq!(row_for(rows, "User", "Default").unwrap()["AccessRights"], json!(["None"]));
    assert_eq!(row_for(rows, "User", "Anonymous").unwrap()["AccessRights"], json!(["None"]));
    let adele = row_for(rows, "User", "Adele Vance").unwrap();
    assert_eq!(adele["AccessRights"], json!(["Reviewer"]));
    assert_eq!(adele["FolderName"], "Top of Information Store");
    assert_eq!(adele["Identity"], "helpdesk:\\");
    let calendar =
        ok(invoke(&sims, &token, "Get-MailboxFolderPermission", json!({ "Identity": "helpdesk:\\Calendar" })).await)
            .await;
    assert_eq!(row_for(&calendar["value"], "User", "Default").unwrap()["AccessRights"], json!(["AvailabilityOnly"]));

    let (kind, reason) = failure(
        invoke(
            &sims,
            &token,
            "Add-MailboxFolderPermission",
            json!({ "Identity": "helpdesk@contoso.com:\\Inbox", "User": ids::ADELE_UPN, "AccessRights": ["Reviewer"] }),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(kind, "Microsoft.Exchange.Management.StoreTasks.UserAlreadyExistsInPermissionEntryException");
    assert_eq!(reason, "An existing permission entry was found for user: Adele Vance.");

    let inbox = "finance@contoso.com:\\Inbox";
    let body = ok(invoke(
        &sims,
        &token,
        "Add-MailboxFolderPermission",
        json!({ "Identity": inbox, "User": ids::ALEX_UPN, "AccessRights": ["Reviewer"] }),
    )
    .await)
    .await;
    assert_eq!(body["value"][0]["User"], "Alex Wilber");
    assert_eq!(body["value"][0]["FolderName"], "Inbox");
    let state = sims.exchange.state();
    assert_eq!(state.folder_rights(ids::MAILBOX_FINANCE, "Inbox", ids::ALEX_UPN), Some(vec!["Reviewer".to_owned()]));
    assert_eq!(state.folder_rights(ids::MAILBOX_FINANCE, "", ids::ALEX_UPN), None, "not inherited by other folders");

    ok(invoke(
        &sims,
        &token,
        "Set-MailboxFolderPermission",
        json!({ "Identity": inbox, "User": ids::ALEX_UPN, "AccessRights": "Editor" }),
    )
    .await)
    .await;
    let one =
        ok(invoke(&sims, &token, "Get-MailboxFolderPermission", json!({ "Identity": inbox, "User": ids::ALEX_UPN }))
            .await)
        .await;
    assert_eq!(one["value"].as_array().unwrap().len(), 1);
    assert_eq!(one["value"][0]["AccessRights"], json!(["Editor"]));
    let same = ok(invoke(
        &sims,
        &token,
        "Set-MailboxFolderPermission",
        json!({ "Identity": inbox, "User": ids::ALEX_UPN, "AccessRights": "Editor" }),
    )
    .await)
    .await;
    assert_eq!(warnings(&same).len(), 1);

    ok(invoke(
        &sims,
        &token,
        "Remove-MailboxFolderPermission",
        json!({ "Identity": inbox, "User": ids::ALEX_UPN, "Confirm": false }),
    )
    .await)
    .await;
    assert_eq!(state.folder_rights(ids::MAILBOX_FINANCE, "Inbox", ids::ALEX_UPN), None);
    let (kind, reason) = failure(
        invoke(&sims, &token, "Remove-MailboxFolderPermission", json!({ "Identity": inbox, "User": ids::ALEX_UPN }))
            .await,
        400,
    )
    .await;
    assert_eq!(kind, "Microsoft.Exchange.Management.StoreTasks.UserNotFoundInPermissionEntryException");
    assert_eq!(reason, "There is no existing permission entry found for user: Alex Wilber.");
    let (kind, _) = failure(
        invoke(&sims, &token, "Get-MailboxFolderPermission", json!({ "Identity": inbox, "User": ids::ALEX_UPN })).await,
        400,
    )
    .await;
    assert_eq!(kind, "Microsoft.Exchange.Management.StoreTasks.UserNotFoundInPermissionEntryException");

    let (kind, _) = failure(
        invoke(&sims, &token, "Get-MailboxFolderPermission", json!({ "Identity": "finance:\\Nope" })).await,
        404,
    )
    .await;
    assert_eq!(kind, NOT_FOUND_TYPE);
    let (kind, _) = failure(
        invoke(
            &sims,
            &token,
            "Add-MailboxFolderPermission",
            json!({ "Identity": inbox, "User": "nobody@contoso.com", "AccessRights": "Reviewer" }),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(kind, "Microsoft.Exchange.Management.StoreTasks.InvalidExternalUserIdException");
    sims.shutdown().await;
}

#[tokio::test]
async fn unknown_cmdlet_is_a_nul_body_403_and_v1_is_405() {
    let sims = start().await;
    let token = exo_token(&sims);
    let resp = invoke(&sims, &token, "Get-TransportRule", json!({})).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(header(&resp, "content-encoding"), "gzip");
    assert!(!header(&resp, "request-id").is_empty());
    let bytes = resp.bytes().await.unwrap();
    assert!(!bytes.is_empty() && bytes.iter().all(|b| *b == 0));

    let v1 = format!("{}/adminapi/v1.0/{}/InvokeCommand", sims.exchange.base_url(), ids::TENANT_ID);
    let resp = post(&v1, &token, "Get-Mailbox", json!({})).await;
    assert_eq!(resp.status(), 405);
    let resp = client().get(sims.exchange.invoke_url()).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    sims.shutdown().await;
}

#[tokio::test]
async fn v2_endpoints_take_only_their_cmdlets_and_the_v2_role() {
    let sims = start().await;
    let v2 = |endpoint: &str| format!("{}/adminapi/v2.0/{}/{endpoint}", sims.exchange.base_url(), ids::TENANT_ID);
    // The demo app holds Exchange.ManageAsApp only.
    let token = exo_token(&sims);
    let resp = post(&v2("Mailbox"), &token, "Get-Mailbox", json!({ "Identity": "finance" })).await;
    assert_eq!(resp.status(), 401);

    sims.login.register_app(AppRegistration::new(
        "30000000-0000-4000-8000-0000000000a2",
        "v2-secret",
        &["Exchange.ManageAsAppV2"],
    ));
    let v2_token = sims.login.issue_token("30000000-0000-4000-8000-0000000000a2", EXCHANGE_RESOURCE).unwrap();
    let body = ok(post(&v2("Mailbox"), &v2_token, "Get-Mailbox", json!({ "Identity": "finance" })).await).await;
    assert_eq!(body["value"][0]["RecipientTypeDetails"], "SharedMailbox");
    assert!(body["@odata.context"].as_str().unwrap().contains("/adminapi/v2.0/"));
    let hash = json!({ "@odata.type": "#Exchange.GenericHashTable", "Add": ids::ALEX_UPN });
    ok(post(&v2("Mailbox"), &v2_token, "Set-Mailbox", json!({ "Identity": "finance", "GrantSendOnBehalfTo": hash }))
        .await)
    .await;
    ok(post(
        &v2("MailboxFolderPermission"),
        &v2_token,
        "Get-MailboxFolderPermission",
        json!({ "Identity": "finance:\\Inbox" }),
    )
    .await)
    .await;

    let resp = post(&v2("Mailbox"), &v2_token, "Add-MailboxPermission", json!({ "Identity": "finance" })).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BadRequest");
    assert!(body["error"]["message"].as_str().unwrap().contains("Add-MailboxPermission"));
    // The beta endpoint is not open to a v2-only app.
    assert_eq!(invoke(&sims, &v2_token, "Get-Mailbox", json!({})).await.status(), 401);
    sims.shutdown().await;
}

#[tokio::test]
async fn auth_failures_are_401_without_a_body() {
    let sims = start().await;
    let url = sims.exchange.invoke_url();
    let resp =
        client().post(&url).json(&json!({ "CmdletInput": { "CmdletName": "Get-Mailbox" } })).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "www-authenticate").starts_with("Bearer "));
    assert!(resp.bytes().await.unwrap().is_empty());

    let graph = sims.login.issue_token(ids::APP_GRANTLINE_ID, GRAPH_RESOURCE).unwrap();
    assert_eq!(invoke(&sims, &graph, "Get-Mailbox", json!({})).await.status(), 401);
    assert_eq!(invoke(&sims, "not.a.token", "Get-Mailbox", json!({})).await.status(), 401);
    let readonly = sims.login.issue_token(ids::APP_READONLY_ID, EXCHANGE_RESOURCE).unwrap();
    let resp = invoke(&sims, &readonly, "Get-Mailbox", json!({})).await;
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "x-ms-diagnostics").contains("isn't supported"));

    let token = exo_token(&sims);
    let vanity = format!("{}/adminapi/beta/{}/InvokeCommand", sims.exchange.base_url(), ids::TENANT_DOMAIN);
    assert_eq!(post(&vanity, &token, "Get-Mailbox", json!({})).await.status(), 401);
    let other = format!("{}/adminapi/beta/{}/InvokeCommand", sims.exchange.base_url(), uuid::Uuid::new_v4());
    assert_eq!(post(&other, &token, "Get-Mailbox", json!({})).await.status(), 401);

    // A token over HTTP from the login simulator works; once expired it does not.
    let resp = client()
        .post(sims.login.token_url())
        .form(&[
            ("client_id", ids::APP_GRANTLINE_ID),
            ("client_secret", ids::APP_GRANTLINE_SECRET),
            ("scope", "https://outlook.office365.com/.default"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap();
    let issued: Value = resp.json().await.unwrap();
    let http_token = issued["access_token"].as_str().unwrap().to_owned();
    assert_eq!(common::jwt_payload(&http_token)["roles"], json!(["Exchange.ManageAsApp"]));
    assert_eq!(invoke(&sims, &http_token, "Get-Mailbox", json!({ "Identity": "finance" })).await.status(), 200);
    sims.clock().advance(Duration::from_secs(3600));
    let resp = invoke(&sims, &http_token, "Get-Mailbox", json!({ "Identity": "finance" })).await;
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "x-ms-diagnostics").contains("expired"));
    assert_eq!(sims.exchange.state().counters().requests, 1);
    sims.shutdown().await;
}

#[tokio::test]
async fn rbac_missing_mode_refuses_valid_tokens_with_403() {
    let sims = start().await;
    let token = exo_token(&sims);
    let admin = format!("{}/sim/rbac", sims.exchange.base_url());
    assert_eq!(client().put(&admin).json(&json!({ "missing": true })).send().await.unwrap().status(), 204);
    let resp = invoke(&sims, &token, "Get-Mailbox", json!({ "Identity": "finance" })).await;
    assert_eq!(resp.status(), 403);
    assert!(resp.bytes().await.unwrap().iter().all(|b| *b == 0));
    sims.exchange.set_rbac_missing(false);
    ok(invoke(&sims, &token, "Get-Mailbox", json!({ "Identity": "finance" })).await).await;
    sims.shutdown().await;
}

#[tokio::test]
async fn propagation_delay_hides_changes_from_reads_until_it_passes() {
    let sims = start().await;
    // the delay is measured to the second: the clock moves only when the test says
    sims.clock().freeze();
    let token = exo_token(&sims);
    let admin = format!("{}/sim/propagation", sims.exchange.base_url());
    assert_eq!(client().post(&admin).json(&json!({ "delay_ms": 60_000 })).send().await.unwrap().status(), 204);
    let add =
        json!({ "Identity": "finance", "User": ids::ALEX_UPN, "AccessRights": ["FullAccess"], "AutoMapping": false });
    ok(invoke(&sims, &token, "Add-MailboxPermission", add.clone()).await).await;
    let list = || async {
        let body = ok(invoke(&sims, &token, "Get-MailboxPermission", json!({ "Identity": "finance" })).await).await;
        row_for(&body["value"], "User", ids::ALEX_UPN).is_some()
    };
    assert!(!list().await, "not visible before the delay");
    assert!(sims.exchange.state().has_full_access("finance", ids::ALEX_UPN), "the primary copy has it");
    assert_eq!(sims.exchange.state().mailbox("finance").unwrap().pending_changes, 1);
    // Writes see the primary copy at once.
    let again = ok(invoke(&sims, &token, "Add-MailboxPermission", add).await).await;
    assert_eq!(warnings(&again).len(), 1);
    sims.clock().advance(Duration::from_secs(59));
    assert!(!list().await);
    sims.clock().advance(Duration::from_secs(2));
    assert!(list().await, "visible once the delay has passed");
    assert!(sims.exchange.state().visible_mailbox("finance").unwrap().has_full_access(ids::ALEX_UPN));
    sims.shutdown().await;
}

#[tokio::test]
async fn write_throttling_is_429_with_retry_after_and_refills() {
    let sims = start().await;
    // the bucket refills by the second: the clock moves only when the test says
    sims.clock().freeze();
    let token = exo_token(&sims);
    sims.exchange.set_throttle(ExchangeThrottleConfig {
        write_per_second: 1.0,
        write_burst: 2,
        ..ExchangeThrottleConfig::default()
    });
    let add = |user: &str| json!({ "Identity": "finance", "Trustee": user, "AccessRights": "SendAs" });
    let first = invoke(&sims, &token, "Add-RecipientPermission", add(ids::ALEX_UPN)).await;
    assert_eq!(header(&first, "Rate-Limit-Remaining"), "1");
    ok(first).await;
    ok(invoke(&sims, &token, "Add-RecipientPermission", add(ids::SARA_UPN)).await).await;
    let refused = invoke(&sims, &token, "Add-RecipientPermission", add(ids::ISAIAH_UPN)).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = header(&refused, "Retry-After").parse().unwrap();
    assert_eq!(retry_after, 2, "the refused call counts");
    assert_eq!(header(&refused, "Rate-Limit-Remaining"), "0");
    assert!(!header(&refused, "Rate-Limit-Reset").is_empty());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert!(!sims.exchange.state().has_send_as("finance", ids::ISAIAH_UPN));
    // Reads have their own bucket.
    ok(invoke(&sims, &token, "Get-RecipientPermission", json!({ "Identity": "finance" })).await).await;
    // Retrying early is refused again and pushes the next success out.
    sims.clock().advance(Duration::from_secs(1));
    let early = invoke(&sims, &token, "Add-RecipientPermission", add(ids::ISAIAH_UPN)).await;
    assert_eq!(early.status(), 429);
    let wait: u64 = header(&early, "Retry-After").parse().unwrap();
    sims.clock().advance(Duration::from_secs(wait));
    ok(invoke(&sims, &token, "Add-RecipientPermission", add(ids::ISAIAH_UPN)).await).await;
    assert_eq!(sims.exchange.state().counters().throttled, 2);
    sims.shutdown().await;
}

async fn follow_pages(
    sims: &Sims,
    token: &str,
    params: Value,
    prefer: Option<&str>,
) -> (Vec<Value>, usize, Vec<String>) {
    let mut url = sims.exchange.invoke_url();
    let mut rows = Vec::new();
    let mut pages = 0;
    let mut all_warnings = Vec::new();
    loop {
        let mut req = client()
            .post(&url)
            .bearer_auth(token)
            .json(&json!({ "CmdletInput": { "CmdletName": "Get-Mailbox", "Parameters": params } }));
        if let Some(p) = prefer {
            req = req.header("Prefer", p);
        }
        let body = ok(req.send().await.unwrap()).await;
        pages += 1;
        rows.extend(body["value"].as_array().unwrap().iter().cloned());
        all_warnings.extend(warnings(&body));
        match body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&sims.exchange.base_url()), "{next}");
                url = next.to_owned();
            }
            None => break,
        }
        assert!(pages < 50);
    }
    (rows, pages, all_warnings)
}

#[tokio::test]
async fn get_results_page_with_an_absolute_next_link_and_both_result_size_behaviours() {
    let sims = start().await;
    let token = exo_token(&sims);
    let total = sims.exchange.state().mailboxes().len();
    assert_eq!(total, 13);
    let (rows, pages, w) = follow_pages(&sims, &token, json!({}), None).await;
    assert_eq!((rows.len(), pages), (total, 1));
    assert!(w.is_empty());

    sims.exchange.set_paging(5, ResultSizeMode::Ignored);
    let (rows, pages, _) = follow_pages(&sims, &token, json!({ "ResultSize": 2 }), None).await;
    assert_eq!((rows.len(), pages), (total, 3), "ResultSize is ignored");
    let (rows, pages, _) = follow_pages(&sims, &token, json!({}), Some("odata.maxpagesize=4")).await;
    assert_eq!((rows.len(), pages), (total, 4));
    let addresses: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["PrimarySmtpAddress"].as_str().unwrap()).collect();
    assert_eq!(addresses.len(), total, "no row twice");

    sims.exchange.set_paging(1000, ResultSizeMode::FirstPageOfOne);
    let body = ok(invoke(&sims, &token, "Get-Mailbox", json!({ "RecipientTypeDetails": "SharedMailbox" })).await).await;
    assert_eq!(body["value"].as_array().unwrap().len(), 1);
    assert!(body["@odata.nextLink"].is_string());
    assert!(warnings(&body)[0].starts_with("By default, only the first 1 items are returned."));
    let (rows, _, _) = follow_pages(&sims, &token, json!({ "RecipientTypeDetails": ["SharedMailbox"] }), None).await;
    assert_eq!(rows.len(), 2, "following nextLink still reaches every row");
    let (rows, pages, w) = follow_pages(&sims, &token, json!({ "ResultSize": "Unlimited" }), None).await;
    assert_eq!((rows.len(), pages), (total, 1));
    assert!(w.is_empty());
    let (rows, _, w) = follow_pages(&sims, &token, json!({ "ResultSize": 3 }), None).await;
    assert_eq!(rows.len(), 3);
    assert!(w.iter().any(|x| x.starts_with("There are more results available")));

    // $select keeps the named properties (and their annotations).
    let url = format!("{}?$select=PrimarySmtpAddress,EmailAddresses", sims.exchange.invoke_url());
    let body = ok(post(&url, &token, "Get-Mailbox", json!({ "Identity": "finance" })).await).await;
    let keys: Vec<&String> = body["value"][0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    sims.shutdown().await;
}

#[tokio::test]
async fn batch_answers_each_item_with_its_own_status() {
    let sims = start().await;
    let token = exo_token(&sims);
    let url = format!("{}/adminapi/beta/{}/$batch", sims.exchange.base_url(), ids::TENANT_ID);
    let item = |id: &str, cmdlet: &str, params: Value| {
        json!({ "id": id, "method": "POST", "url": sims.exchange.invoke_url(),
            "headers": { "X-AnchorMailbox": "UPN:finance@contoso.com", "X-CmdletName": cmdlet, "Accept": "application/json; odata.metadata=minimal" },
            "body": { "CmdletInput": { "CmdletName": cmdlet, "Parameters": params } } })
    };
    let resp = client()
        .post(&url)
        .bearer_auth(&token)
        .header("Prefer", "odata.maxpagesize = 1000;odata.continue-on-error")
        .json(&json!({ "requests": [
            item("a", "Get-Mailbox", json!({ "Identity": "finance" })),
            item("b", "Get-Mailbox", json!({ "Identity": "ghost" })),
            item("c", "Add-RecipientPermission", json!({ "Identity": "finance", "Trustee": ids::ALEX_UPN, "AccessRights": "SendAs" })),
        ] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let responses = body["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 3);
    assert_eq!((responses[0]["id"].as_str(), responses[0]["status"].as_u64()), (Some("a"), Some(200)));
    assert_eq!(responses[0]["body"]["value"][0]["PrimarySmtpAddress"], ids::MAILBOX_FINANCE);
    assert_eq!(responses[1]["status"], 404);
    assert!(
        responses[1]["body"]["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("ManagementObjectNotFoundException")
    );
    assert_eq!(responses[2]["status"], 200);
    assert!(sims.exchange.state().has_send_as("finance", ids::ALEX_UPN));

    let many: Vec<Value> = (0..11).map(|i| item(&i.to_string(), "Get-Mailbox", json!({}))).collect();
    let resp = client().post(&url).bearer_auth(&token).json(&json!({ "requests": many })).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    sims.shutdown().await;
}

#[tokio::test]
async fn scripted_faults_get_exchange_bodies_and_headers() {
    let sims = start().await;
    let token = exo_token(&sims);
    let path = format!("/adminapi/beta/{}/InvokeCommand", ids::TENANT_ID);
    sims.exchange.faults().push(FaultRule::respond(503).on(Method::POST, path.as_str()));
    sims.exchange.faults().push(FaultRule::respond(429).on(Method::POST, path.as_str()).header("Retry-After", "7"));
    sims.exchange.faults().push(FaultRule::respond(403).on(Method::POST, path.as_str()));

    let resp = invoke(&sims, &token, "Get-Mailbox", json!({ "Identity": "finance" })).await;
    assert_eq!(resp.status(), 503);
    assert!(!header(&resp, "request-id").is_empty());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ServiceUnavailable");
    let resp = invoke(&sims, &token, "Get-Mailbox", json!({ "Identity": "finance" })).await;
    assert_eq!((resp.status().as_u16(), header(&resp, "retry-after")), (429, "7".to_owned()));
    let resp = invoke(&sims, &token, "Get-Mailbox", json!({ "Identity": "finance" })).await;
    assert_eq!(resp.status(), 403);
    assert!(resp.bytes().await.unwrap().iter().all(|b| *b == 0));
    ok(invoke(&sims, &token, "Get-Mailbox", json!({ "Identity": "finance" })).await).await;
    assert!(sims.exchange.requests().iter().filter(|r| r.fault).count() == 3);
    sims.shutdown().await;
}

#[tokio::test]
async fn request_log_redacts_the_token_and_keeps_the_cmdlet() {
    let sims = start().await;
    let token = exo_token(&sims);
    ok(invoke(&sims, &token, "Get-Mailbox", json!({ "Identity": "finance" })).await).await;
    let log = sims.exchange.requests();
    assert_eq!(log.len(), 1);
    let entry = &log[0];
    assert_eq!(entry.header("authorization"), Some("Bearer [redacted]"));
    assert!(entry.header("x-anchormailbox").unwrap().starts_with("APP:SystemMailbox{"));
    assert!(entry.body.contains("\"CmdletName\":\"Get-Mailbox\""));
    assert!(!serde_json::to_string(&log).unwrap().contains(&token));
    assert_eq!(entry.status, 200);

    // The admin routes show the permissions, AutoMapping included.
    let resp =
        client().get(format!("{}/sim/mailboxes/helpdesk@contoso.com", sims.exchange.base_url())).send().await.unwrap();
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["fullAccess"][0]["user"], ids::ADELE_UPN);
    assert_eq!(view["fullAccess"][0]["autoMapping"], true);
    let list: Value =
        client().get(format!("{}/sim/mailboxes", sims.exchange.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 13);
    assert!(sims.describe().contains(&sims.exchange.invoke_url()));
    sims.shutdown().await;
}
