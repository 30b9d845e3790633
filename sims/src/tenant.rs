//! The simulated tenant: directory users, groups, memberships and managers, Exchange Online
//! mailboxes with their permissions, plus the demo seed.
//!
//! [`Tenant::demo`] is the fixed tenant the demo, the end-to-end tests and the benchmarks use. Its
//! ids are GUID-shaped and readable: users are `10000000-…-0000000000NN`, groups `20000000-…`,
//! app registrations `30000000-…`, mailboxes (`ExchangeGuid`) `40000000-…` (a user's mailbox has
//! the user's number: [`mailbox_guid_for_user`]); the constants in [`ids`] name them. The
//! ServiceNow `sys_user` row of a directory user has the user's GUID without dashes as its
//! `sys_id` ([`snow_sys_id`]).
//!
//! Mailboxes in the demo: every member user has a `UserMailbox` at their UPN (the B2B guest has
//! none, as in Exchange Online, where a guest is a mail user), the shared mailboxes
//! `finance@contoso.com` ("Finance") and `helpdesk@contoso.com` ("Helpdesk"), and the room
//! mailbox `boardroom@contoso.com`. Adele Vance already holds Full Access (automapped) on
//! helpdesk@ and `Reviewer` on its top of store (`helpdesk@contoso.com:\`) and Inbox.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// Well-known ids, UPNs and credentials of the demo tenant.
///
/// The example policy (`deploy/policy.toml`) names these people, groups and catalog items with
/// the same values; `grantline_shared::policy::examples` mirrors them.
pub mod ids {
    /// The tenant (directory) id.
    pub const TENANT_ID: &str = "5a0c1f00-0000-4000-8000-000000000001";
    /// The tenant's initial domain, accepted in the token path like the id.
    pub const TENANT_DOMAIN: &str = "contoso.onmicrosoft.com";

    /// Alex Wilber, Financial Analyst: the usual requester. Manager: Sara Davis.
    pub const ALEX_ID: &str = "10000000-0000-4000-8000-000000000001";
    pub const ALEX_UPN: &str = "AlexW@contoso.com";
    /// Sara Davis, Finance VP: Alex's manager. Manager: Patti Fernandez.
    pub const SARA_ID: &str = "10000000-0000-4000-8000-000000000002";
    pub const SARA_UPN: &str = "SaraD@contoso.com";
    /// Patti Fernandez, CEO: has no manager (`GET /users/{id}/manager` is 404). In the example
    /// policy: data owner of Finance BI Readers and owner of the finance@ shared mailbox.
    pub const PATTI_ID: &str = "10000000-0000-4000-8000-000000000003";
    pub const PATTI_UPN: &str = "PattiF@contoso.com";
    /// Megan Bowen, Helpdesk agent, member of the Helpdesk group. Manager: Patti Fernandez. In the
    /// example policy her Helpdesk membership auto-approves read-only on helpdesk@ and Team Alpha.
    pub const MEGAN_ID: &str = "10000000-0000-4000-8000-000000000004";
    pub const MEGAN_UPN: &str = "MeganB@contoso.com";
    /// Adele Vance, Retail: already a member of Team Alpha. Manager: Sara Davis. Already holds Full
    /// Access (automapped) on the helpdesk@ shared mailbox and `Reviewer` on its top of store and
    /// Inbox.
    pub const ADELE_ID: &str = "10000000-0000-4000-8000-000000000005";
    pub const ADELE_UPN: &str = "AdeleV@contoso.com";
    /// Jordan Miller, a B2B guest (`userType` Guest, `#EXT#` UPN).
    pub const GUEST_ID: &str = "10000000-0000-4000-8000-000000000006";
    pub const GUEST_UPN: &str = "jordan_fabrikam.com#EXT#@contoso.onmicrosoft.com";
    /// Diego Siciliani: disabled account (`accountEnabled: false`).
    pub const DISABLED_ID: &str = "10000000-0000-4000-8000-000000000007";
    pub const DISABLED_UPN: &str = "DiegoS@contoso.com";
    /// Lee Gu: a leaver, `employeeLeaveDateTime` 14 days before the tenant was built.
    pub const LEAVER_ID: &str = "10000000-0000-4000-8000-000000000008";
    pub const LEAVER_UPN: &str = "LeeG@contoso.com";
    /// Johanna Lorenz: a contractor, `employeeLeaveDateTime` 60 days after the tenant was built.
    pub const CONTRACTOR_ID: &str = "10000000-0000-4000-8000-000000000009";
    pub const CONTRACTOR_UPN: &str = "JohannaL@contoso.com";
    /// Isaiah Langer, Sales: an ordinary employee with no groups. Manager: Sara Davis.
    pub const ISAIAH_ID: &str = "10000000-0000-4000-8000-000000000010";
    pub const ISAIAH_UPN: &str = "IsaiahL@contoso.com";
    /// Allan Deyoung, IT Admin: member of Access Governance (the example policy's fallback
    /// approvers) and owner of the helpdesk@ shared mailbox. Manager: Patti Fernandez.
    pub const ALLAN_ID: &str = "10000000-0000-4000-8000-000000000011";
    pub const ALLAN_UPN: &str = "AllanD@contoso.com";

    /// Security group "Finance BI Readers" (mailNickname `GRP-FINANCE-BI-READ`).
    pub const GROUP_FINANCE_BI_READ: &str = "20000000-0000-4000-8000-000000000001";
    /// Security group "Team Alpha"; Adele Vance is a member.
    pub const GROUP_TEAM_ALPHA: &str = "20000000-0000-4000-8000-000000000002";
    /// Role-assignable security group "Tier-1 Helpdesk Admins" (`isAssignableToRole: true`).
    pub const GROUP_ROLE_ASSIGNABLE: &str = "20000000-0000-4000-8000-000000000003";
    /// Dynamic security group "All Finance (dynamic)".
    pub const GROUP_DYNAMIC: &str = "20000000-0000-4000-8000-000000000004";
    /// Mail-enabled security group "Finance Team" (finance-team@contoso.com).
    pub const GROUP_MAIL_ENABLED: &str = "20000000-0000-4000-8000-000000000005";
    /// On-premises-synced security group "SG-Legacy-FileShare".
    pub const GROUP_ON_PREM: &str = "20000000-0000-4000-8000-000000000006";
    /// Security group "Helpdesk"; Megan Bowen is a member.
    pub const GROUP_HELPDESK: &str = "20000000-0000-4000-8000-000000000007";
    /// Distribution list "All Staff" (mail-enabled, not security-enabled).
    pub const GROUP_DISTRIBUTION: &str = "20000000-0000-4000-8000-000000000008";
    /// Microsoft 365 group "Project Falcon" (`groupTypes: ["Unified"]`).
    pub const GROUP_M365: &str = "20000000-0000-4000-8000-000000000009";
    /// Security group "Access Governance": the example policy's fallback approvers; Allan Deyoung
    /// is a member.
    pub const GROUP_ACCESS_GOVERNANCE: &str = "20000000-0000-4000-8000-000000000010";

    /// Shared mailbox "Finance" (alias `finance`). Owner in the example policy: Patti Fernandez.
    /// Nobody holds a permission on it in the seed.
    pub const MAILBOX_FINANCE: &str = "finance@contoso.com";
    pub const MAILBOX_FINANCE_GUID: &str = "40000000-0000-4000-8000-000000000101";
    /// Shared mailbox "Helpdesk" (alias `helpdesk`). Owner in the example policy: Allan Deyoung.
    /// Adele Vance holds Full Access (AutoMapping on) and `Reviewer` on `helpdesk@contoso.com:\`
    /// and `helpdesk@contoso.com:\Inbox`.
    pub const MAILBOX_HELPDESK: &str = "helpdesk@contoso.com";
    pub const MAILBOX_HELPDESK_GUID: &str = "40000000-0000-4000-8000-000000000102";
    /// Room mailbox "Boardroom" (alias `boardroom`): a mailbox that is not shared.
    pub const MAILBOX_BOARDROOM: &str = "boardroom@contoso.com";
    pub const MAILBOX_BOARDROOM_GUID: &str = "40000000-0000-4000-8000-000000000103";

    /// grantline's app registration: GroupMember.ReadWrite.All, User.Read.All,
    /// User-LifeCycleInfo.Read.All, MailboxSettings.Read and, for Exchange Online,
    /// Exchange.ManageAsApp (no
    /// RoleManagement.ReadWrite.Directory, no User.ReadWrite.All).
    pub const APP_GRANTLINE_ID: &str = "30000000-0000-4000-8000-000000000001";
    pub const APP_GRANTLINE_SECRET: &str = "grantline-demo-secret";
    /// A read-only app: User.Read.All, GroupMember.Read.All.
    pub const APP_READONLY_ID: &str = "30000000-0000-4000-8000-000000000002";
    pub const APP_READONLY_SECRET: &str = "readonly-demo-secret";
    /// An over-privileged app: also User.ReadWrite.All and RoleManagement.ReadWrite.Directory.
    pub const APP_PRIVILEGED_ID: &str = "30000000-0000-4000-8000-000000000003";
    pub const APP_PRIVILEGED_SECRET: &str = "privileged-demo-secret";
    /// An app whose only secret has expired (AADSTS7000222).
    pub const APP_EXPIRED_SECRET_ID: &str = "30000000-0000-4000-8000-000000000004";
    pub const APP_EXPIRED_SECRET_SECRET: &str = "expired-demo-secret";

    /// ServiceNow instance name used in webhook payloads.
    pub const SNOW_INSTANCE: &str = "contoso.service-now.com";
    /// ServiceNow integration user (Basic auth, or OAuth password grant), may read and write.
    pub const SNOW_USER: &str = "grantline.integration";
    pub const SNOW_PASSWORD: &str = "grantline-demo-password";
    /// sys_id of the integration user's sys_user row.
    pub const SNOW_USER_SYS_ID: &str = "90000000000040008000000000000001";
    /// ServiceNow read-only user: reads succeed, writes get 403.
    pub const SNOW_READONLY_USER: &str = "readonly.auditor";
    pub const SNOW_READONLY_PASSWORD: &str = "readonly-demo-password";
    /// OAuth client registered in ServiceNow (`/oauth_token.do`).
    pub const SNOW_OAUTH_CLIENT_ID: &str = "grantline-snow-client";
    pub const SNOW_OAUTH_CLIENT_SECRET: &str = "grantline-snow-client-secret";

    /// sys_user sys_ids of demo people (the GUID without dashes).
    pub const ALEX_SNOW_SYS_ID: &str = "10000000000040008000000000000001";
    pub const SARA_SNOW_SYS_ID: &str = "10000000000040008000000000000002";
    pub const MEGAN_SNOW_SYS_ID: &str = "10000000000040008000000000000004";
    pub const PATTI_SNOW_SYS_ID: &str = "10000000000040008000000000000003";
    pub const CONTRACTOR_SNOW_SYS_ID: &str = "10000000000040008000000000000009";
    pub const ALLAN_SNOW_SYS_ID: &str = "10000000000040008000000000000011";

    /// Catalog item "Access to Finance BI" (variables: justification, duration_days).
    pub const CAT_ITEM_FINANCE_BI: &str = "0b36816197113110a24734000153af01";
    pub const CAT_ITEM_FINANCE_BI_NAME: &str = "Access to Finance BI";
    /// Catalog item "Team Alpha" (variables: justification).
    pub const CAT_ITEM_TEAM_ALPHA: &str = "0b36816197113110a24734000153af02";
    pub const CAT_ITEM_TEAM_ALPHA_NAME: &str = "Team Alpha";
    /// Catalog item "Shared mailbox access" (variables: mailbox, access, duration,
    /// justification).
    pub const CAT_ITEM_SHARED_MAILBOX: &str = "0b36816197113110a24734000153af04";
    pub const CAT_ITEM_SHARED_MAILBOX_NAME: &str = "Shared mailbox access";
    /// Catalog item "Standing desk", mapped to nothing in the demo policy (variables: location).
    pub const CAT_ITEM_UNMAPPED: &str = "0b36816197113110a24734000153af03";
    pub const CAT_ITEM_UNMAPPED_NAME: &str = "Standing desk";
    /// Assignment group "Service Desk".
    pub const SNOW_GROUP_SERVICE_DESK: &str = "0b36816197113110a24734000153af10";
}

/// The ServiceNow `sys_id` of a directory user's `sys_user` row: the GUID without dashes.
pub fn snow_sys_id(user_id: &str) -> String {
    user_id.replace('-', "").to_ascii_lowercase()
}

/// A directory user. Field names follow Graph's properties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub user_principal_name: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub mail: Option<String>,
    pub job_title: Option<String>,
    pub account_enabled: bool,
    /// `Member` or `Guest`.
    pub user_type: String,
    pub employee_type: Option<String>,
    pub department: Option<String>,
    pub employee_leave_date_time: Option<Timestamp>,
    pub business_phones: Vec<String>,
    pub mobile_phone: Option<String>,
    pub office_location: Option<String>,
    pub preferred_language: Option<String>,
}

impl User {
    /// A member account with display name, UPN and mail; other properties empty.
    pub fn new(id: &str, upn: &str, display_name: &str) -> Self {
        let (given, surname) = match display_name.split_once(' ') {
            Some((g, s)) => (Some(g.to_owned()), Some(s.to_owned())),
            None => (Some(display_name.to_owned()), None),
        };
        Self {
            id: id.to_owned(),
            user_principal_name: upn.to_owned(),
            display_name: display_name.to_owned(),
            given_name: given,
            surname,
            mail: Some(upn.to_owned()),
            job_title: None,
            account_enabled: true,
            user_type: "Member".to_owned(),
            employee_type: Some("Employee".to_owned()),
            department: None,
            employee_leave_date_time: None,
            business_phones: Vec::new(),
            mobile_phone: None,
            office_location: None,
            preferred_language: Some("en-US".to_owned()),
        }
    }

    pub fn job_title(mut self, t: &str) -> Self {
        self.job_title = Some(t.to_owned());
        self
    }

    pub fn department(mut self, d: &str) -> Self {
        self.department = Some(d.to_owned());
        self
    }

    pub fn guest(mut self, mail: &str) -> Self {
        self.user_type = "Guest".to_owned();
        self.mail = Some(mail.to_owned());
        self.employee_type = None;
        self
    }

    pub fn disabled(mut self) -> Self {
        self.account_enabled = false;
        self
    }

    pub fn employee_type(mut self, t: &str) -> Self {
        self.employee_type = Some(t.to_owned());
        self
    }

    pub fn leaves_at(mut self, at: Timestamp) -> Self {
        self.employee_leave_date_time = Some(at);
        self
    }

    pub fn office(mut self, location: &str, phone: &str) -> Self {
        self.office_location = Some(location.to_owned());
        self.business_phones = vec![phone.to_owned()];
        self
    }
}

/// A directory group. Field names follow Graph's properties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: String,
    pub display_name: String,
    pub description: Option<String>,
    pub group_types: Vec<String>,
    pub mail_enabled: bool,
    pub mail_nickname: String,
    pub security_enabled: bool,
    pub is_assignable_to_role: Option<bool>,
    pub membership_rule: Option<String>,
    pub membership_rule_processing_state: Option<String>,
    pub on_premises_sync_enabled: Option<bool>,
    pub mail: Option<String>,
    pub visibility: Option<String>,
}

impl Group {
    /// A cloud security group (`groupTypes: []`, not mail-enabled).
    pub fn security(id: &str, display_name: &str, nickname: &str) -> Self {
        Self {
            id: id.to_owned(),
            display_name: display_name.to_owned(),
            description: None,
            group_types: Vec::new(),
            mail_enabled: false,
            mail_nickname: nickname.to_owned(),
            security_enabled: true,
            is_assignable_to_role: None,
            membership_rule: None,
            membership_rule_processing_state: None,
            on_premises_sync_enabled: None,
            mail: None,
            visibility: None,
        }
    }

    pub fn description(mut self, d: &str) -> Self {
        self.description = Some(d.to_owned());
        self
    }

    /// Makes the group role-assignable.
    pub fn role_assignable(mut self) -> Self {
        self.is_assignable_to_role = Some(true);
        self.visibility = Some("Private".to_owned());
        self
    }

    /// Makes membership rule-driven.
    pub fn dynamic(mut self, rule: &str) -> Self {
        self.group_types.push("DynamicMembership".to_owned());
        self.membership_rule = Some(rule.to_owned());
        self.membership_rule_processing_state = Some("On".to_owned());
        self
    }

    /// Makes the group mail-enabled (a mail-enabled security group, or with
    /// `security_enabled = false` a distribution list).
    pub fn mail_enabled(mut self, mail: &str) -> Self {
        self.mail_enabled = true;
        self.mail = Some(mail.to_owned());
        self
    }

    /// Marks the group as authored on-premises and synced.
    pub fn on_premises_synced(mut self) -> Self {
        self.on_premises_sync_enabled = Some(true);
        self
    }

    /// A Microsoft 365 group.
    pub fn unified(id: &str, display_name: &str, nickname: &str, mail: &str) -> Self {
        let mut g = Self::security(id, display_name, nickname);
        g.group_types = vec!["Unified".to_owned()];
        g.mail_enabled = true;
        g.security_enabled = false;
        g.mail = Some(mail.to_owned());
        g.visibility = Some("Private".to_owned());
        g
    }

    pub(crate) fn is_dynamic(&self) -> bool {
        self.group_types.iter().any(|t| t == "DynamicMembership")
    }

    pub(crate) fn is_unified(&self) -> bool {
        self.group_types.iter().any(|t| t == "Unified")
    }
}

/// A Full Access grant in a mailbox seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FullAccessGrant {
    /// The trustee: a user's UPN or mail, or a mail-enabled security group's address.
    pub user: String,
    /// Whether Outlook maps the mailbox automatically (ignored for group trustees).
    pub auto_mapping: bool,
}

/// A folder permission in a mailbox seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FolderGrant {
    /// The folder path below the mailbox: `""` is the top of the store (`mbx:\`), `"Inbox"` is
    /// `mbx:\Inbox`, `"Inbox\\Invoices"` a subfolder.
    pub folder: String,
    /// The user's UPN or mail.
    pub user: String,
    /// The folder role (`Reviewer`, `Editor`, ...).
    pub access_rights: String,
}

/// An Exchange Online mailbox and the permissions on it when the simulator starts. Field names
/// follow `Get-Mailbox`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mailbox {
    /// `ExchangeGuid`.
    pub guid: String,
    pub primary_smtp_address: String,
    /// `Alias`; also the mailbox's `Name` and `Identity` in cmdlet output.
    pub alias: String,
    pub display_name: String,
    /// `SharedMailbox`, `UserMailbox`, `RoomMailbox` or `EquipmentMailbox`.
    pub recipient_type_details: String,
    /// The directory user a user mailbox belongs to (`ExternalDirectoryObjectId`).
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub full_access: Vec<FullAccessGrant>,
    /// Send As trustees (UPN or mail).
    #[serde(default)]
    pub send_as: Vec<String>,
    /// `GrantSendOnBehalfTo` (UPN or mail).
    #[serde(default)]
    pub send_on_behalf: Vec<String>,
    #[serde(default)]
    pub folder_grants: Vec<FolderGrant>,
}

impl Mailbox {
    pub const SHARED: &'static str = "SharedMailbox";
    pub const USER: &'static str = "UserMailbox";
    pub const ROOM: &'static str = "RoomMailbox";
    pub const EQUIPMENT: &'static str = "EquipmentMailbox";

    /// A mailbox of the given `RecipientTypeDetails`; the alias is the address's local part.
    pub fn new(guid: &str, primary_smtp_address: &str, display_name: &str, recipient_type_details: &str) -> Self {
        let alias = primary_smtp_address.split('@').next().unwrap_or(primary_smtp_address).to_owned();
        Self {
            guid: guid.to_owned(),
            primary_smtp_address: primary_smtp_address.to_owned(),
            alias,
            display_name: display_name.to_owned(),
            recipient_type_details: recipient_type_details.to_owned(),
            user_id: None,
            full_access: Vec::new(),
            send_as: Vec::new(),
            send_on_behalf: Vec::new(),
            folder_grants: Vec::new(),
        }
    }

    /// A shared mailbox.
    pub fn shared(guid: &str, primary_smtp_address: &str, display_name: &str) -> Self {
        Self::new(guid, primary_smtp_address, display_name, Self::SHARED)
    }

    /// A room mailbox.
    pub fn room(guid: &str, primary_smtp_address: &str, display_name: &str) -> Self {
        Self::new(guid, primary_smtp_address, display_name, Self::ROOM)
    }

    /// An equipment mailbox.
    pub fn equipment(guid: &str, primary_smtp_address: &str, display_name: &str) -> Self {
        Self::new(guid, primary_smtp_address, display_name, Self::EQUIPMENT)
    }

    /// The user mailbox of a directory user, at their UPN.
    pub fn for_user(user: &User) -> Self {
        let mut m =
            Self::new(&mailbox_guid_for_user(&user.id), &user.user_principal_name, &user.display_name, Self::USER);
        m.user_id = Some(user.id.clone());
        m
    }

    /// Grants Full Access to a user (or a mail-enabled security group).
    pub fn full_access(mut self, user: &str, auto_mapping: bool) -> Self {
        self.full_access.push(FullAccessGrant { user: user.to_owned(), auto_mapping });
        self
    }

    /// Grants Send As.
    pub fn send_as(mut self, user: &str) -> Self {
        self.send_as.push(user.to_owned());
        self
    }

    /// Adds a `GrantSendOnBehalfTo` delegate.
    pub fn send_on_behalf(mut self, user: &str) -> Self {
        self.send_on_behalf.push(user.to_owned());
        self
    }

    /// Grants a folder role (`""` is the top of the store).
    pub fn folder_permission(mut self, folder: &str, user: &str, role: &str) -> Self {
        self.folder_grants.push(FolderGrant {
            folder: folder.to_owned(),
            user: user.to_owned(),
            access_rights: role.to_owned(),
        });
        self
    }
}

/// The `ExchangeGuid` of a user's mailbox: the user's id with the `40000000` prefix for the demo's
/// readable ids, a name-based UUID for any other id.
pub fn mailbox_guid_for_user(user_id: &str) -> String {
    match user_id.strip_prefix("10000000-") {
        Some(rest) => format!("40000000-{rest}"),
        None => uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("mailbox:{user_id}").as_bytes()).to_string(),
    }
}

/// A whole tenant: directory contents. Build one with [`Tenant::builder`] or use [`Tenant::demo`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: String,
    /// The initial domain (`contoso.onmicrosoft.com`), accepted in token paths like the id.
    pub domain: String,
    pub display_name: String,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    /// Direct memberships as (group id, member id); a member may be a user or a group.
    pub memberships: Vec<(String, String)>,
    /// Managers as (user id, manager id).
    pub managers: Vec<(String, String)>,
    /// Exchange Online mailboxes.
    #[serde(default)]
    pub mailboxes: Vec<Mailbox>,
}

impl Default for Tenant {
    fn default() -> Self {
        Self::demo()
    }
}

/// Builds a [`Tenant`].
#[derive(Clone, Debug)]
pub struct TenantBuilder {
    tenant: Tenant,
}

impl TenantBuilder {
    pub fn user(mut self, user: User) -> Self {
        self.tenant.users.push(user);
        self
    }

    pub fn group(mut self, group: Group) -> Self {
        self.tenant.groups.push(group);
        self
    }

    pub fn member(mut self, group_id: &str, member_id: &str) -> Self {
        self.tenant.memberships.push((group_id.to_owned(), member_id.to_owned()));
        self
    }

    pub fn manager(mut self, user_id: &str, manager_id: &str) -> Self {
        self.tenant.managers.push((user_id.to_owned(), manager_id.to_owned()));
        self
    }

    pub fn mailbox(mut self, mailbox: Mailbox) -> Self {
        self.tenant.mailboxes.push(mailbox);
        self
    }

    /// Gives every member user added so far a `UserMailbox` at their UPN (guests get none).
    pub fn user_mailboxes(mut self) -> Self {
        let missing: Vec<Mailbox> = self
            .tenant
            .users
            .iter()
            .filter(|u| u.user_type == "Member")
            .filter(|u| !self.tenant.mailboxes.iter().any(|m| m.user_id.as_deref() == Some(u.id.as_str())))
            .map(Mailbox::for_user)
            .collect();
        self.tenant.mailboxes.extend(missing);
        self
    }

    pub fn build(self) -> Tenant {
        self.tenant
    }
}

impl Tenant {
    /// An empty tenant with the given id and domain.
    pub fn builder(id: &str, domain: &str) -> TenantBuilder {
        TenantBuilder {
            tenant: Tenant {
                id: id.to_owned(),
                domain: domain.to_owned(),
                display_name: "Contoso".to_owned(),
                users: Vec::new(),
                groups: Vec::new(),
                memberships: Vec::new(),
                managers: Vec::new(),
                mailboxes: Vec::new(),
            },
        }
    }

    /// An empty tenant with the demo tenant's id and domain, for tests that seed their own objects.
    pub fn empty() -> TenantBuilder {
        Self::builder(ids::TENANT_ID, ids::TENANT_DOMAIN)
    }

    /// The demo tenant, with leave dates relative to the wall clock at midnight UTC today.
    pub fn demo() -> Tenant {
        Self::demo_at(Timestamp::now())
    }

    /// The demo tenant with leave dates relative to `now` (the leaver left 14 days before, the
    /// contractor leaves 60 days after, both at midnight UTC).
    pub fn demo_at(now: Timestamp) -> Tenant {
        use ids::*;
        let day = 86_400;
        let midnight = Timestamp::from_second(now.as_second().div_euclid(day) * day).unwrap_or(now);
        let leaver_date = midnight.checked_sub(SignedDuration::from_hours(14 * 24)).unwrap_or(midnight);
        let contractor_date = midnight.checked_add(SignedDuration::from_hours(60 * 24)).unwrap_or(midnight);
        Self::builder(TENANT_ID, TENANT_DOMAIN)
            .user(
                User::new(ALEX_ID, ALEX_UPN, "Alex Wilber")
                    .job_title("Financial Analyst")
                    .department("Finance")
                    .office("12/1110", "+1 425 555 0109"),
            )
            .user(
                User::new(SARA_ID, SARA_UPN, "Sara Davis")
                    .job_title("Finance VP")
                    .department("Finance")
                    .office("12/1120", "+1 425 555 0110"),
            )
            .user(
                User::new(PATTI_ID, PATTI_UPN, "Patti Fernandez")
                    .job_title("President")
                    .department("Executive Management"),
            )
            .user(User::new(MEGAN_ID, MEGAN_UPN, "Megan Bowen").job_title("Helpdesk Agent").department("IT"))
            .user(User::new(ADELE_ID, ADELE_UPN, "Adele Vance").job_title("Retail Manager").department("Retail"))
            .user(User::new(GUEST_ID, GUEST_UPN, "Jordan Miller").guest("jordan@fabrikam.com"))
            .user(
                User::new(DISABLED_ID, DISABLED_UPN, "Diego Siciliani")
                    .job_title("HR Manager")
                    .department("HR")
                    .disabled(),
            )
            .user(
                User::new(LEAVER_ID, LEAVER_UPN, "Lee Gu")
                    .job_title("Director")
                    .department("Manufacturing")
                    .leaves_at(leaver_date),
            )
            .user(
                User::new(CONTRACTOR_ID, CONTRACTOR_UPN, "Johanna Lorenz")
                    .job_title("Senior Engineer")
                    .department("Engineering")
                    .employee_type("Contractor")
                    .leaves_at(contractor_date),
            )
            .user(User::new(ISAIAH_ID, ISAIAH_UPN, "Isaiah Langer").job_title("Sales Rep").department("Sales"))
            .user(User::new(ALLAN_ID, ALLAN_UPN, "Allan Deyoung").job_title("IT Admin").department("IT"))
            .group(
                Group::security(GROUP_FINANCE_BI_READ, "Finance BI Readers", "GRP-FINANCE-BI-READ")
                    .description("Read access to the Finance BI workspace"),
            )
            .group(Group::security(GROUP_TEAM_ALPHA, "Team Alpha", "TeamAlpha").description("Team Alpha"))
            .group(
                Group::security(GROUP_ROLE_ASSIGNABLE, "Tier-1 Helpdesk Admins", "Tier1HelpdeskAdmins")
                    .description("Holds the Helpdesk Administrator role")
                    .role_assignable(),
            )
            .group(
                Group::security(GROUP_DYNAMIC, "All Finance (dynamic)", "AllFinance")
                    .dynamic("(user.department -eq \"Finance\")"),
            )
            .group(
                Group::security(GROUP_MAIL_ENABLED, "Finance Team", "finance-team")
                    .mail_enabled("finance-team@contoso.com"),
            )
            .group(
                Group::security(GROUP_ON_PREM, "SG-Legacy-FileShare", "SG-Legacy-FileShare")
                    .description("Synced from on-premises Active Directory")
                    .on_premises_synced(),
            )
            .group(Group::security(GROUP_HELPDESK, "Helpdesk", "Helpdesk").description("Service desk agents"))
            .group({
                let mut g =
                    Group::security(GROUP_DISTRIBUTION, "All Staff", "allstaff").mail_enabled("allstaff@contoso.com");
                g.security_enabled = false;
                g
            })
            .group(Group::unified(GROUP_M365, "Project Falcon", "ProjectFalcon", "ProjectFalcon@contoso.com"))
            .group(
                Group::security(GROUP_ACCESS_GOVERNANCE, "Access Governance", "AccessGovernance")
                    .description("Decides access requests nobody else can"),
            )
            .member(GROUP_TEAM_ALPHA, ADELE_ID)
            .member(GROUP_HELPDESK, MEGAN_ID)
            .member(GROUP_ACCESS_GOVERNANCE, ALLAN_ID)
            .member(GROUP_DYNAMIC, ALEX_ID)
            .member(GROUP_DYNAMIC, SARA_ID)
            .member(GROUP_MAIL_ENABLED, SARA_ID)
            .member(GROUP_DISTRIBUTION, ALEX_ID)
            .member(GROUP_DISTRIBUTION, SARA_ID)
            .manager(ALEX_ID, SARA_ID)
            .manager(SARA_ID, PATTI_ID)
            .manager(MEGAN_ID, PATTI_ID)
            .manager(ADELE_ID, SARA_ID)
            .manager(ISAIAH_ID, SARA_ID)
            .manager(CONTRACTOR_ID, PATTI_ID)
            .manager(ALLAN_ID, PATTI_ID)
            .user_mailboxes()
            .mailbox(Mailbox::shared(MAILBOX_FINANCE_GUID, MAILBOX_FINANCE, "Finance"))
            .mailbox(
                Mailbox::shared(MAILBOX_HELPDESK_GUID, MAILBOX_HELPDESK, "Helpdesk")
                    .full_access(ADELE_UPN, true)
                    .folder_permission("", ADELE_UPN, "Reviewer")
                    .folder_permission("Inbox", ADELE_UPN, "Reviewer"),
            )
            .mailbox(Mailbox::room(MAILBOX_BOARDROOM_GUID, MAILBOX_BOARDROOM, "Boardroom"))
            .build()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn demo_dates_are_relative() {
        let now: Timestamp = "2026-05-10T15:30:00Z".parse().unwrap();
        let t = Tenant::demo_at(now);
        let leaver = t.users.iter().find(|u| u.id == ids::LEAVER_ID).unwrap();
        assert_eq!(leaver.employee_leave_date_time.unwrap().to_string(), "2026-04-26T00:00:00Z");
        let c = t.users.iter().find(|u| u.id == ids::CONTRACTOR_ID).unwrap();
        assert_eq!(c.employee_leave_date_time.unwrap().to_string(), "2026-07-09T00:00:00Z");
        for (id, sys_id) in [
            (ids::ALEX_ID, ids::ALEX_SNOW_SYS_ID),
            (ids::SARA_ID, ids::SARA_SNOW_SYS_ID),
            (ids::PATTI_ID, ids::PATTI_SNOW_SYS_ID),
            (ids::MEGAN_ID, ids::MEGAN_SNOW_SYS_ID),
            (ids::CONTRACTOR_ID, ids::CONTRACTOR_SNOW_SYS_ID),
            (ids::ALLAN_ID, ids::ALLAN_SNOW_SYS_ID),
        ] {
            assert_eq!(snow_sys_id(id), sys_id);
            assert!(t.users.iter().any(|u| u.id == id), "{id} is not seeded");
        }
    }

    #[test]
    fn demo_has_the_relationships_the_example_policy_relies_on() {
        let t = Tenant::demo_at("2026-03-02T08:00:00Z".parse().unwrap());
        let manager = |u: &str| t.managers.iter().find(|(user, _)| user == u).map(|(_, m)| m.as_str());
        let member = |g: &str, u: &str| t.memberships.iter().any(|(group, m)| group == g && m == u);
        let group = |id: &str| t.groups.iter().find(|g| g.id == id).unwrap();
        assert_eq!(manager(ids::ALEX_ID), Some(ids::SARA_ID));
        assert_eq!(manager(ids::MEGAN_ID), Some(ids::PATTI_ID));
        assert_eq!(manager(ids::CONTRACTOR_ID), Some(ids::PATTI_ID));
        assert!(member(ids::GROUP_HELPDESK, ids::MEGAN_ID));
        assert!(!member(ids::GROUP_TEAM_ALPHA, ids::MEGAN_ID), "Megan joins Team Alpha in the demo");
        assert!(member(ids::GROUP_ACCESS_GOVERNANCE, ids::ALLAN_ID));
        for id in [ids::GROUP_FINANCE_BI_READ, ids::GROUP_TEAM_ALPHA, ids::GROUP_HELPDESK, ids::GROUP_ACCESS_GOVERNANCE]
        {
            let g = group(id);
            assert!(
                g.security_enabled && !g.mail_enabled && g.group_types.is_empty(),
                "{} is a cloud security group",
                g.display_name
            );
        }
        assert_eq!(group(ids::GROUP_FINANCE_BI_READ).display_name, "Finance BI Readers");
        assert_eq!(group(ids::GROUP_FINANCE_BI_READ).mail_nickname, "GRP-FINANCE-BI-READ");
        let contractor = t.users.iter().find(|u| u.id == ids::CONTRACTOR_ID).unwrap();
        assert_eq!(contractor.employee_leave_date_time.unwrap().to_string(), "2026-05-01T00:00:00Z");
    }

    #[test]
    fn demo_mailboxes() {
        let t = Tenant::demo_at("2026-03-02T08:00:00Z".parse().unwrap());
        let mbx = |addr: &str| t.mailboxes.iter().find(|m| m.primary_smtp_address == addr).unwrap();
        assert_eq!(mbx(ids::MAILBOX_FINANCE).recipient_type_details, Mailbox::SHARED);
        assert_eq!(mbx(ids::MAILBOX_FINANCE).display_name, "Finance");
        assert_eq!(mbx(ids::MAILBOX_FINANCE).guid, ids::MAILBOX_FINANCE_GUID);
        let helpdesk = mbx(ids::MAILBOX_HELPDESK);
        assert_eq!(helpdesk.alias, "helpdesk");
        assert_eq!(helpdesk.full_access, vec![FullAccessGrant { user: ids::ADELE_UPN.into(), auto_mapping: true }]);
        assert_eq!(helpdesk.folder_grants.len(), 2);
        assert_eq!(mbx(ids::MAILBOX_BOARDROOM).recipient_type_details, Mailbox::ROOM);
        let sara = mbx(ids::SARA_UPN);
        assert_eq!(sara.recipient_type_details, Mailbox::USER);
        assert_eq!(sara.user_id.as_deref(), Some(ids::SARA_ID));
        assert_eq!(sara.guid, "40000000-0000-4000-8000-000000000002");
        assert_eq!(sara.alias, "SaraD");
        assert!(!t.mailboxes.iter().any(|m| m.user_id.as_deref() == Some(ids::GUEST_ID)));
        assert_eq!(t.mailboxes.len(), 10 + 3);
    }
}
