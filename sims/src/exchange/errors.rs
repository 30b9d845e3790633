//! Exchange Online admin API error bodies: the cmdlet-failure envelope (`error.details[].message`
//! = `<id>|<exception type>|<reason>`, the `innererror` chain, the warnings annotation), the
//! plain OData error of the REST layer, the body-less 401 and the NUL-byte 403.

use sha2::{Digest, Sha256};

use crate::json::{Obj, Val};
use crate::server::SimResponse;

/// The content type of every JSON body.
pub(crate) const CONTENT_TYPE: &str =
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// The domain controller named in "couldn't be found on '…'" messages.
pub(crate) const DOMAIN_CONTROLLER: &str = "NAMPR01A001DC01.NAMPR01A001.PROD.OUTLOOK.COM";
/// The NetBIOS-style forest prefix of account names in ACE warnings.
pub(crate) const FOREST: &str = "NAMPR01A001";

/// Exception types the simulator raises (the middle segment of `error.details[].message`).
pub(crate) mod exception {
    pub(crate) const NOT_FOUND: &str = "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException";
    pub(crate) const AMBIGUOUS: &str = "Microsoft.Exchange.Configuration.Tasks.ManagementObjectAmbiguousException";
    pub(crate) const ALREADY_IN_FOLDER: &str =
        "Microsoft.Exchange.Management.StoreTasks.UserAlreadyExistsInPermissionEntryException";
    pub(crate) const NOT_IN_FOLDER: &str =
        "Microsoft.Exchange.Management.StoreTasks.UserNotFoundInPermissionEntryException";
    pub(crate) const INVALID_FOLDER_USER: &str =
        "Microsoft.Exchange.Management.StoreTasks.InvalidExternalUserIdException";
    pub(crate) const PARAMETER: &str = "System.Management.Automation.ParameterBindingException";
    pub(crate) const INVALID_OPERATION: &str = "Microsoft.Exchange.Configuration.Tasks.TaskInvalidOperationException";
}

/// A cmdlet that ran and failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CmdletError {
    pub status: u16,
    pub exception: &'static str,
    pub message: String,
}

impl CmdletError {
    pub(crate) fn new(status: u16, exception: &'static str, message: impl Into<String>) -> Self {
        Self { status, exception, message: message.into() }
    }

    /// An `-Identity` (or `-User`/`-Trustee`) that names no object.
    pub(crate) fn object_not_found(what: &str) -> Self {
        Self::new(
            404,
            exception::NOT_FOUND,
            format!(
                "The operation couldn't be performed because object '{what}' couldn't be found on '{DOMAIN_CONTROLLER}'."
            ),
        )
    }

    /// A recipient in a multi-valued parameter (`GrantSendOnBehalfTo`) that names no object.
    pub(crate) fn recipient_not_found(what: &str) -> Self {
        Self::new(
            404,
            exception::NOT_FOUND,
            format!(
                "Couldn't find object \"{what}\". Please make sure that it was spelled correctly or specify a different object."
            ),
        )
    }

    /// A folder identity whose folder does not exist.
    pub(crate) fn folder_not_found(identity: &str) -> Self {
        Self::new(
            404,
            exception::NOT_FOUND,
            format!("The operation couldn't be performed because '{identity}' couldn't be found."),
        )
    }

    pub(crate) fn ambiguous(what: &str) -> Self {
        Self::new(
            400,
            exception::AMBIGUOUS,
            format!("The operation couldn't be performed because '{what}' matches multiple entries."),
        )
    }

    pub(crate) fn parameter(message: impl Into<String>) -> Self {
        Self::new(400, exception::PARAMETER, message)
    }

    pub(crate) fn missing(names: &[&str]) -> Self {
        Self::parameter(format!(
            "Cannot process command because of one or more missing mandatory parameters: {}.",
            names.join(" ")
        ))
    }

    pub(crate) fn unknown_parameter(name: &str) -> Self {
        Self::parameter(format!("A parameter cannot be found that matches parameter name '{name}'."))
    }

    pub(crate) fn invalid_value(parameter: &str, value: &str, allowed: &[&str]) -> Self {
        Self::parameter(format!(
            "Cannot process argument transformation on parameter '{parameter}'. Cannot convert value \"{value}\": the valid values are \"{}\".",
            allowed.join(", ")
        ))
    }

    /// The `Ex…` id that prefixes the details message: the captured id for
    /// `ManagementObjectNotFoundException`, a stable hash of the type for the others.
    fn error_id(&self) -> String {
        if self.exception == exception::NOT_FOUND {
            return "Ex6F9304".to_owned();
        }
        let digest = Sha256::digest(self.exception.as_bytes());
        format!("Ex{}", hex::encode_upper(&digest[..3]))
    }
}

const STACK_ODATA: &str = "   at Microsoft.Exchange.AdminApi.CommandInvocation.CommandInvoker.Invoke(CmdletInput input)\r\n   at Microsoft.Exchange.AdminApi.Controllers.InvokeCommandController.Post(CmdletInput input)";
const STACK_DIRECT: &str = "   at Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletExecutor.Execute(String cmdletName, IDictionary parameters)";
const DIRECT_INVOKE: &str = "Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletExecutionException";

fn warnings_list(warnings: &[String]) -> Val {
    Val::List(warnings.iter().map(|w| Val::from(w.as_str())).collect())
}

/// The body of a failed cmdlet (exchange-notes 3.3, "Cmdlet failure").
pub(crate) fn cmdlet_failure(e: &CmdletError, warnings: &[String]) -> SimResponse {
    let code = if e.status == 404 { "NotFound" } else { "BadRequest" };
    let details = Obj::new()
        .with("code", "Client")
        .with("target", "")
        .with("message", format!("{}|{}|{}", e.error_id(), e.exception, e.message));
    let internal = Obj::new()
        .with("message", format!("Exception of type '{DIRECT_INVOKE}' was thrown."))
        .with("type", DIRECT_INVOKE)
        .with("stacktrace", STACK_DIRECT);
    let inner = Obj::new()
        .with("message", "Error executing cmdlet")
        .with("type", "Microsoft.Exchange.Admin.OData.Core.ODataServiceException")
        .with("stacktrace", STACK_ODATA)
        .with("internalexception", internal);
    let body = Obj::new()
        .with(
            "error",
            Obj::new()
                .with("code", code)
                .with("message", "Error executing cmdlet")
                .with("details", Val::List(vec![Val::Obj(details)]))
                .with("innererror", inner),
        )
        .with("adminapi.warnings@odata.type", "#Collection(String)")
        .with("@adminapi.warnings", warnings_list(warnings));
    SimResponse::json_bytes(e.status, CONTENT_TYPE, body.to_bytes())
}

/// A plain OData error from the REST layer (no cmdlet ran).
pub(crate) fn odata_error(status: u16, code: &str, message: &str) -> SimResponse {
    let body = Obj::new().with("error", Obj::new().with("code", code).with("message", message));
    SimResponse::json_bytes(status, CONTENT_TYPE, body.to_bytes())
}

/// The OData code and message the simulator uses for a status with no more specific body.
pub(crate) fn for_status(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("BadRequest", "The request is invalid."),
        404 => ("NotFound", "The requested resource was not found."),
        405 => ("MethodNotAllowed", "The requested resource does not support http method 'POST'."),
        408 => ("RequestTimeout", "The request timed out."),
        429 => ("TooManyRequests", "The request was throttled. Retry after the interval in the Retry-After header."),
        500 => ("InternalServerError", "An server side error occured."),
        502 => ("BadGateway", "The server received an invalid response."),
        503 => ("ServiceUnavailable", "The service is temporarily unavailable. Please try again later."),
        504 => ("GatewayTimeout", "The operation timed out."),
        _ => ("UnknownError", "The request failed."),
    }
}

/// 401 with no body and the bearer challenge.
pub(crate) fn unauthorized(reason: &str) -> SimResponse {
    SimResponse::new(401)
        .header(
            "WWW-Authenticate",
            "Bearer client_id=\"00000002-0000-0ff1-ce00-000000000000\", trusted_issuers=\"00000001-0000-0000-c000-000000000000@*\", token_types=\"app_asserted_user_v1 service_asserted_app_v1\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", error=\"invalid_token\"",
        )
        .header("x-ms-diagnostics", format!("2000001;reason=\"{reason}\";error_category=\"invalid_token\""))
}

/// How many NUL bytes the measured 403 carries.
const NUL_BODY_LEN: usize = 16;

/// 403 with a body of NUL bytes declared as gzip: the measured answer to an unknown cmdlet (and,
/// in the simulator, to a principal without an Exchange role assignment).
pub(crate) fn forbidden_nul() -> SimResponse {
    SimResponse::new(403)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Content-Encoding", "gzip")
        .body(vec![0u8; NUL_BODY_LEN])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn failure_envelope_matches_the_captured_shape() {
        let e = CmdletError::object_not_found("nobody@contoso.com");
        let resp = cmdlet_failure(&e, &[]);
        assert_eq!(resp.status, 404);
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["error"]["code"], "NotFound");
        assert_eq!(v["error"]["message"], "Error executing cmdlet");
        assert_eq!(
            v["error"]["details"][0]["message"],
            format!(
                "Ex6F9304|Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException|The operation couldn't be performed because object 'nobody@contoso.com' couldn't be found on '{DOMAIN_CONTROLLER}'."
            )
        );
        assert_eq!(
            v["error"]["innererror"]["internalexception"]["type"],
            "Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletExecutionException"
        );
        assert_eq!(v["adminapi.warnings@odata.type"], "#Collection(String)");
        assert_eq!(v["@adminapi.warnings"], serde_json::json!([]));
        let other = CmdletError::ambiguous("x").error_id();
        assert!(other.starts_with("Ex") && other.len() == 8, "{other}");
    }
}
