//! Where approvers are asked and people are told: Teams (a proactive 1:1 message from the bot
//! with an Adaptive Card), Slack (a direct message with buttons), a signed link to the approval
//! page (delivered in the ServiceNow approval record, whose notification carries it to the
//! approver), and ServiceNow approval records themselves (`sysapproval_approver`, the source of
//! record: ServiceNow always shows who was asked and who decided).

use grantline_connectors::Secret;
use grantline_connectors::slack::{SlackClient, SlackConfig};
use grantline_connectors::teams::{BotConfig, BotConnectorClient};
use serde::Deserialize;

/// A chat channel approvers may be asked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chat {
    Teams,
    Slack,
}

/// The signed links to the approval page.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSettings {
    /// The externally visible base URL of the HTTP edge (`https://grantline.example.com`).
    pub public_url: String,
    /// The key links are signed with (the same as the edge's `web.link_secret`).
    pub secret: Secret,
}

/// How approvers are asked (`[notify]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySettings {
    /// The chat channels to ask in, in order: each approver is asked in the first that reaches
    /// them (`["teams", "slack"]`). An approver no chat reaches gets a signed link.
    pub chat: Vec<Chat>,
    /// Create a ServiceNow approval record for every approver asked (default true).
    pub servicenow_approvals: bool,
    /// The Bot Connector service URL of the tenant's region, for proactive messages
    /// (`https://smba.trafficmanager.net/emea/`).
    pub teams_service_url: String,
    /// The tenant the bot's conversations are in (default: the Graph tenant).
    pub teams_tenant_id: String,
    pub link: Option<LinkSettings>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            chat: vec![Chat::Teams, Chat::Slack],
            servicenow_approvals: true,
            teams_service_url: String::new(),
            teams_tenant_id: String::new(),
            link: None,
        }
    }
}

impl NotifySettings {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(l) = &self.link {
            let url = url::Url::parse(l.public_url.trim())
                .map_err(|e| format!("notify.link.public_url is not a URL: {e}"))?;
            if url.scheme() != "https" && url.scheme() != "http" {
                return Err("notify.link.public_url must be an http(s) URL".into());
            }
            if l.secret.expose().chars().count() < 32 {
                return Err("notify.link.secret must be at least 32 characters".into());
            }
        }
        Ok(())
    }
}

/// The Teams side of asking: the bot's outbound client and where to reach the tenant.
#[derive(Debug, Clone)]
pub struct TeamsOut {
    pub client: BotConnectorClient,
    pub service_url: String,
    pub tenant_id: String,
}

/// Everything the notify step can send through.
#[derive(Debug, Clone)]
pub struct Channels {
    pub order: Vec<Chat>,
    pub teams: Option<TeamsOut>,
    pub slack: Option<SlackClient>,
    pub link: Option<LinkSettings>,
    pub servicenow_approvals: bool,
}

impl Default for Channels {
    /// ServiceNow approval records only.
    fn default() -> Self {
        Self { order: Vec::new(), teams: None, slack: None, link: None, servicenow_approvals: true }
    }
}

impl Channels {
    /// The channels these settings and connector configurations name. `tenant` is the
    /// directory's tenant (the default for Teams conversations).
    pub fn new(
        settings: &NotifySettings,
        teams: Option<&BotConfig>,
        slack: Option<&SlackConfig>,
        tenant: &str,
    ) -> Result<Self, grantline_connectors::ConfigError> {
        let teams = match teams {
            Some(cfg) => {
                let service_url = if settings.teams_service_url.trim().is_empty() {
                    cfg.allowed_service_urls.first().cloned().unwrap_or_default()
                } else {
                    settings.teams_service_url.trim().to_owned()
                };
                let tenant_id = if settings.teams_tenant_id.trim().is_empty() {
                    tenant.to_owned()
                } else {
                    settings.teams_tenant_id.trim().to_owned()
                };
                Some(TeamsOut { client: BotConnectorClient::new(cfg)?, service_url, tenant_id })
            }
            None => None,
        };
        let slack = slack.map(SlackClient::new).transpose()?;
        Ok(Self {
            order: settings.chat.clone(),
            teams,
            slack,
            link: settings.link.clone(),
            servicenow_approvals: settings.servicenow_approvals,
        })
    }
}
