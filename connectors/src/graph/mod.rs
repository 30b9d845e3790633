//! Microsoft Graph v1.0: users, managers, groups and direct group membership, the users delta
//! query and group member listings (`delta.rs`).
//!
//! Every call sends `Authorization: Bearer <token>` and a fresh `client-request-id`, and runs
//! in its own span (`graph.get_user`, `graph.add_member`, ...) with the fields `http.method`,
//! `url.path`, `http.status_code`, `request_id`, `client_request_id` and, on failure,
//! `error.code`. Results and errors carry a [`Correlation`]: the `request-id` Graph returned
//! and the `client-request-id` we sent.
//!
//! Not-found conventions: reads of a single object (`get_user`, `get_group`, `get_manager`)
//! return `Ok(None)` on 404; `is_member` returns `false` on 404 (Graph cannot tell "group
//! missing" from "not a member" there); writes treat 404 as an error, except `remove_member`,
//! where 404 means "already removed".

mod batch;
mod client;
mod delta;
mod error;
mod identity;
mod model;

use serde::Deserialize;

pub use batch::{BatchRequest, BatchResponse, DirectoryFacts, ItemResult, MAX_BATCH};
pub use client::GraphClient;
pub use delta::{DELTA_SELECT, DeltaPage, DeltaUser, Member, MemberPage};
pub use error::{GraphError, GraphErrorBody, InnerError};
pub use identity::{Claim, plan_groups};
pub use model::{AddOutcome, Correlated, Correlation, DirectoryObject, Group, RemoveOutcome, User};

use crate::http::HttpConfig;
use crate::token::EntraTokenConfig;

/// Configuration of a [`GraphClient`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphConfig {
    /// The versioned service root: `https://graph.microsoft.com/v1.0`. Also used to build the
    /// `@odata.id` of directory objects.
    pub base_url: String,
    /// The client-credentials grant used to obtain tokens.
    pub token: EntraTokenConfig,
    /// Timeouts (shared by Graph calls and token requests).
    pub http: HttpConfig,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            base_url: "https://graph.microsoft.com/v1.0".to_owned(),
            token: EntraTokenConfig::default(),
            http: HttpConfig::default(),
        }
    }
}
