//! The identifiers of the example policy (`deploy/policy.toml`): the people, groups and catalog
//! items of the simulator's demo tenant (`grantline_sims::ids`), which the demo and the
//! end-to-end tests run the policy against. Users are `10000000-…-0000000000NN`, groups
//! `20000000-…`. Tests check that the example policy uses exactly these values and that the
//! simulator seed defines them.

/// Where the example policy lives, relative to the repository root.
pub const POLICY_PATH: &str = "deploy/policy.toml";

/// Group `GRP-FINANCE-BI-READ`, display name "Finance BI Readers" (a cloud security group).
pub const FINANCE_BI_READ_GROUP_ID: &str = "20000000-0000-4000-8000-000000000001";
/// Group "Team Alpha" (a cloud security group).
pub const TEAM_ALPHA_GROUP_ID: &str = "20000000-0000-4000-8000-000000000002";
/// Group "Helpdesk": its members read support-owned mailboxes and join Team Alpha without approval.
pub const HELPDESK_GROUP_ID: &str = "20000000-0000-4000-8000-000000000007";
/// Group "Access Governance": the fallback approvers.
pub const ACCESS_GOVERNANCE_GROUP_ID: &str = "20000000-0000-4000-8000-000000000010";

/// The Finance shared mailbox.
pub const FINANCE_MAILBOX: &str = "finance@contoso.com";
/// The Helpdesk shared mailbox (support-owned).
pub const HELPDESK_MAILBOX: &str = "helpdesk@contoso.com";

/// ServiceNow catalog item that grants `GRP-FINANCE-BI-READ`.
pub const CATALOG_ITEM_FINANCE_BI: &str = "Access to Finance BI";
/// ServiceNow catalog item that grants Team Alpha.
pub const CATALOG_ITEM_TEAM_ALPHA: &str = "Team Alpha";
/// A ServiceNow catalog item the policy does not declare: always denied.
pub const CATALOG_ITEM_UNDECLARED: &str = "Standing desk";

/// Alex Wilber, Financial Analyst; manager Sara Davis.
pub const ALEX_ID: &str = "10000000-0000-4000-8000-000000000001";
pub const ALEX_UPN: &str = "AlexW@contoso.com";
/// Sara Davis, Finance VP, manager of Alex; app owner of Team Alpha.
pub const SARA_ID: &str = "10000000-0000-4000-8000-000000000002";
pub const SARA_UPN: &str = "SaraD@contoso.com";
/// Patti Fernandez, CEO, manager of Sara, Megan, Johanna and Allan; data owner of Finance BI
/// and owner of the Finance mailbox.
pub const PATTI_ID: &str = "10000000-0000-4000-8000-000000000003";
pub const PATTI_UPN: &str = "PattiF@contoso.com";
/// Megan Bowen, Helpdesk agent (member of the Helpdesk group).
pub const MEGAN_ID: &str = "10000000-0000-4000-8000-000000000004";
pub const MEGAN_UPN: &str = "MeganB@contoso.com";
/// Johanna Lorenz, contractor with an end date (the demo seed sets employeeLeaveDateTime 60 days
/// ahead); manager Patti.
pub const CONTRACTOR_ID: &str = "10000000-0000-4000-8000-000000000009";
pub const CONTRACTOR_UPN: &str = "JohannaL@contoso.com";
/// Allan Deyoung, IT Admin: owner of the Helpdesk mailbox, member of Access Governance.
pub const ALLAN_ID: &str = "10000000-0000-4000-8000-000000000011";
pub const ALLAN_UPN: &str = "AllanD@contoso.com";
/// Jordan Miller, a guest from Fabrikam.
pub const GUEST_ID: &str = "10000000-0000-4000-8000-000000000006";
pub const GUEST_UPN: &str = "jordan_fabrikam.com#EXT#@contoso.onmicrosoft.com";

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
    (PATTI_UPN, PATTI_ID),
    (MEGAN_UPN, MEGAN_ID),
    (CONTRACTOR_UPN, CONTRACTOR_ID),
    (ALLAN_UPN, ALLAN_ID),
    (GUEST_UPN, GUEST_ID),
];
