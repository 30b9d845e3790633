//! A private `redis-server` on a free loopback port: used by tests, benchmarks and the
//! demo, so nothing touches a shared Redis. Stopped (and its files removed) on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// AOF settings for durability tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    None,
    AofEverySec,
    AofAlways,
}

#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    persistence: Persistence,
    binary: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "redis-server was not found ({0}); install it (Debian/Ubuntu: apt-get install redis-server) or set REDIS_URL"
    )]
    NotInstalled(String),
    #[error("redis-server did not accept connections on port {port} within {secs} s")]
    NotReady { port: u16, secs: u64 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl RedisServer {
    /// Starts `redis-server` (from PATH, or `REDIS_SERVER_BIN`) without persistence.
    pub fn start() -> Result<Self, ServerError> {
        Self::start_with(Persistence::None)
    }

    pub fn start_with(persistence: Persistence) -> Result<Self, ServerError> {
        let binary = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let dir =
            std::env::temp_dir().join(format!("grantline-redis-{}-{:08x}", std::process::id(), fastrand::u32(..)));
        std::fs::create_dir_all(&dir)?;
        let mut s = Self { child: None, port: free_port()?, dir, persistence, binary };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> Result<(), ServerError> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match self.persistence {
            Persistence::None => cmd.args(["--appendonly", "no"]),
            Persistence::AofEverySec => cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"]),
            Persistence::AofAlways => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
        };
        let child = cmd.spawn().map_err(|e| ServerError::NotInstalled(format!("{}: {e}", self.binary)))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(10))
    }

    fn wait_ready(&self, within: Duration) -> Result<(), ServerError> {
        let deadline = Instant::now() + within;
        let client = redis::Client::open(self.url()).map_err(|e| ServerError::NotInstalled(e.to_string()))?;
        while Instant::now() < deadline {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(ServerError::NotReady { port: self.port, secs: within.as_secs() })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server at once (no save) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and data directory (with AOF, the data
    /// comes back).
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.kill();
        self.spawn()
    }

    /// Stops the server for `d` (SIGSTOP, then SIGCONT): a stall, not a disconnect.
    pub fn stall(&self, d: Duration) -> std::io::Result<()> {
        let Some(pid) = self.pid() else { return Ok(()) };
        Command::new("kill").args(["-STOP", &pid.to_string()]).status()?;
        std::thread::sleep(d);
        Command::new("kill").args(["-CONT", &pid.to_string()]).status()?;
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
