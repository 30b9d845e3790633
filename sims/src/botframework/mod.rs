//! Bot Framework channel simulator (being built).

pub mod keys;

pub use keys::{KeySet, SigningKey};

/// The bot's app registration (single-tenant Azure Bot) in the demo tenant.
pub const BOT_APP_ID: &str = "30000000-0000-4000-8000-0000000000b1";
/// The bot app's client secret.
pub const BOT_APP_SECRET: &str = "bot-demo-secret";
/// The web sign-in app registration (approval page, OpenID Connect).
pub const SIGNIN_APP_ID: &str = "30000000-0000-4000-8000-0000000000c1";
/// The web sign-in app's client secret.
pub const SIGNIN_APP_SECRET: &str = "signin-demo-secret";
/// The resource of Bot Connector tokens (scope `https://api.botframework.com/.default`) and the
/// issuer of channel tokens.
pub const BOT_FRAMEWORK_RESOURCE: &str = "https://api.botframework.com";
