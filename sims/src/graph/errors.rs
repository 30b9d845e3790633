//! Graph error bodies: `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`.

use crate::json::Obj;

/// The success and error content type of Graph JSON bodies.
pub(crate) const CONTENT_TYPE: &str =
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

pub(crate) const ALREADY_EXISTS: &str =
    "One or more added object references already exist for the following modified properties: 'members'.";
pub(crate) const MAIL_ENABLED: &str = "Cannot Update a mail-enabled security groups and or distribution list.";
/// Not confirmed against the real service: the simulator's wording for a dynamic group.
pub(crate) const DYNAMIC: &str =
    "Cannot add or remove members of a group with dynamic membership; membership is managed by its membership rule.";
pub(crate) const ON_PREM: &str = "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration.";
pub(crate) const DENIED: &str = "Insufficient privileges to complete the operation.";

/// An error a Graph route answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GraphError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub headers: Vec<(String, String)>,
}

impl GraphError {
    pub(crate) fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.to_owned(), message: message.into(), headers: Vec::new() }
    }

    pub(crate) fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_owned(), v.into()));
        self
    }

    /// 404 `Request_ResourceNotFound` naming `what`.
    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(
            404,
            "Request_ResourceNotFound",
            format!(
                "Resource '{what}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "Request_BadRequest", message)
    }

    pub(crate) fn denied() -> Self {
        Self::new(403, "Authorization_RequestDenied", DENIED)
    }

    pub(crate) fn unauthenticated(message: &str) -> Self {
        Self::new(401, "InvalidAuthenticationToken", message).header(
            "WWW-Authenticate",
            "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
        )
    }

    pub(crate) fn invalid_json() -> Self {
        Self::new(
            400,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        )
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request uri.")
    }
}

/// Renders the envelope.
pub(crate) fn envelope(code: &str, message: &str, date: &str, request_id: &str, client_request_id: &str) -> Vec<u8> {
    Obj::new()
        .with(
            "error",
            Obj::new().with("code", code).with("message", message).with(
                "innerError",
                Obj::new()
                    .with("date", date)
                    .with("request-id", request_id)
                    .with("client-request-id", client_request_id),
            ),
        )
        .to_bytes()
}

/// The generic code and message the simulator uses for a scripted fault status.
pub(crate) fn for_status(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("BadRequest", "Bad request."),
        401 => ("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
        403 => ("Authorization_RequestDenied", DENIED),
        404 => (
            "Request_ResourceNotFound",
            "Resource does not exist or one of its queried reference-property objects are not present.",
        ),
        409 => (
            "Request_MultipleObjectsWithSameKeyValue",
            "Another object with the same value for property already exists.",
        ),
        429 => ("Request_ThrottledTemporarily", "Your request is throttled temporarily. Please try after some time."),
        500 => ("InternalServerError", "An internal server error occurred."),
        502 => ("BadGateway", "The server received an invalid response."),
        503 => ("ServiceUnavailable", "The service is temporarily unavailable. Please try again later."),
        504 => ("GatewayTimeout", "The operation timed out."),
        _ => ("UnknownError", "The request failed."),
    }
}
