//! The identifiers of the example policy (`deploy/policy.toml`), so the simulator seed and the
//! demo use the same tenant. Readable, valid GUIDs: groups start `6f1c2a10-`, users `8e2b4c20-`.
//! A test checks that the example policy uses exactly these values.

/// Where the example policy lives, relative to the repository root.
pub const POLICY_PATH: &str = "deploy/policy.toml";

/// Group `GRP-FINANCE-BI-READ`, display name "Finance BI Readers".
pub const FINANCE_BI_READ_GROUP_ID: &str = "6f1c2a10-0000-4000-8000-00000000f1b1";
/// Group "Team Alpha" (a Microsoft 365 group).
pub const TEAM_ALPHA_GROUP_ID: &str = "6f1c2a10-0000-4000-8000-0000000a1fa0";
/// Group "Helpdesk": its members read support-owned mailboxes without approval.
pub const HELPDESK_GROUP_ID: &str = "6f1c2a10-0000-4000-8000-00000000de5c";
/// Group "Access Governance": the fallback approvers.
pub const ACCESS_GOVERNANCE_GROUP_ID: &str = "6f1c2a10-0000-4000-8000-0000000acce5";

/// The Finance shared mailbox.
pub const FINANCE_MAILBOX: &str = "finance@contoso.com";
/// The Helpdesk shared mailbox (support-owned).
pub const HELPDESK_MAILBOX: &str = "helpdesk@contoso.com";

/// Alex Wilber, finance analyst; manager Sara.
pub const ALEX_ID: &str = "8e2b4c20-0000-4000-8000-000000000a1e";
pub const ALEX_UPN: &str = "alex@contoso.com";
/// Sara Davis, manager of Alex, Bea and Casey.
pub const SARA_ID: &str = "8e2b4c20-0000-4000-8000-000000005a2a";
pub const SARA_UPN: &str = "sara@contoso.com";
/// Bea, helpdesk agent (member of the Helpdesk group).
pub const BEA_ID: &str = "8e2b4c20-0000-4000-8000-000000000bea";
pub const BEA_UPN: &str = "bea@contoso.com";
/// Casey, contractor with an end date (employeeLeaveDateTime 2026-03-20T17:00:00Z).
pub const CASEY_ID: &str = "8e2b4c20-0000-4000-8000-00000000ca5e";
pub const CASEY_UPN: &str = "casey@contoso.com";
/// Dana, data owner of Finance BI.
pub const DANA_ID: &str = "8e2b4c20-0000-4000-8000-00000000da7a";
pub const DANA_UPN: &str = "dana@contoso.com";
/// Fiona, owner of the Finance mailbox.
pub const FIONA_ID: &str = "8e2b4c20-0000-4000-8000-00000000f10a";
pub const FIONA_UPN: &str = "fiona@contoso.com";
/// Bob, owner of the Helpdesk mailbox.
pub const BOB_ID: &str = "8e2b4c20-0000-4000-8000-000000000b0b";
pub const BOB_UPN: &str = "bob@contoso.com";
/// Ed, a guest from Fabrikam.
pub const ED_GUEST_ID: &str = "8e2b4c20-0000-4000-8000-0000000000ed";
pub const ED_GUEST_UPN: &str = "ed_fabrikam.com#EXT#@contoso.onmicrosoft.com";

/// Every group id above, with its name in the policy.
pub const GROUPS: &[(&str, &str)] = &[
    ("GRP-FINANCE-BI-READ", FINANCE_BI_READ_GROUP_ID),
    ("Team Alpha", TEAM_ALPHA_GROUP_ID),
    ("Helpdesk", HELPDESK_GROUP_ID),
    ("Access Governance", ACCESS_GOVERNANCE_GROUP_ID),
];

/// Every user above: (UPN, object id).
pub const USERS: &[(&str, &str)] = &[
    (ALEX_UPN, ALEX_ID),
    (SARA_UPN, SARA_ID),
    (BEA_UPN, BEA_ID),
    (CASEY_UPN, CASEY_ID),
    (DANA_UPN, DANA_ID),
    (FIONA_UPN, FIONA_ID),
    (BOB_UPN, BOB_ID),
    (ED_GUEST_UPN, ED_GUEST_ID),
];
