//! The Lua scripts, each prefixed with the shared helpers. redis-rs sends EVALSHA and
//! reloads a script on NOSCRIPT, so a restarted Redis needs nothing from us.

use std::sync::LazyLock;

use redis::Script;

const COMMON: &str = include_str!("lua/common.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

pub(crate) struct Scripts {
    pub exec: Script,
    pub push: Script,
    pub fetch: Script,
    pub fail: Script,
    pub reap: Script,
    pub release: Script,
    pub renew: Script,
    pub redrive: Script,
    pub janitor: Script,
    pub admit: Script,
    pub throttle: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    exec: script(include_str!("lua/exec.lua")),
    push: script(include_str!("lua/push.lua")),
    fetch: script(include_str!("lua/fetch.lua")),
    fail: script(include_str!("lua/fail.lua")),
    reap: script(include_str!("lua/reap.lua")),
    release: script(include_str!("lua/release.lua")),
    renew: script(include_str!("lua/renew.lua")),
    redrive: script(include_str!("lua/redrive.lua")),
    janitor: script(include_str!("lua/janitor.lua")),
    admit: script(include_str!("lua/admit.lua")),
    throttle: script(include_str!("lua/throttle.lua")),
});
