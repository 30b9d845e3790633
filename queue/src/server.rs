//! A private `redis-server` on a free loopback port, and a private Redis Cluster of such
//! servers: used by tests, benchmarks and the demo, so nothing touches a shared Redis.
//! Stopped (and their files removed) on drop.

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

/// A private `redis-server` on a free loopback port, stopped on drop.
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
    #[error("redis cluster: {0}")]
    Cluster(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `n` distinct free loopback ports (all held until every one is found).
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let held = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
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

/// The shape of a private cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Masters; the 16384 slots are split evenly between them.
    pub masters: usize,
    /// Replicas of every master.
    pub replicas_per_master: usize,
    /// `cluster-node-timeout`: how long a master is unreachable before it is marked failed
    /// and a replica may take over.
    pub node_timeout: Duration,
    /// AOF on every node, so a restarted node keeps its data.
    pub persistence: Persistence,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            masters: 3,
            replicas_per_master: 0,
            node_timeout: Duration::from_secs(2),
            persistence: Persistence::AofAlways,
        }
    }
}

/// One node of a [`RedisCluster`].
#[derive(Debug)]
struct ClusterNode {
    port: u16,
    bus_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A private Redis Cluster of `redis-server` processes on free loopback ports
/// (`--cluster-enabled yes`, formed with `redis-cli --cluster create`), whose nodes can be
/// killed and restarted one by one. Every node keeps its data directory (AOF and
/// `nodes.conf`) across a restart, so a restarted master comes back with its data and its
/// identity. Stopped, and its files removed, on drop.
///
/// Nodes are set up with `cluster-require-full-coverage no`: while one shard is down, the
/// others keep serving their slots (and so their namespaces).
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
    dir: PathBuf,
    opts: ClusterOptions,
    server_bin: String,
}

/// What one node says about the cluster (`CLUSTER NODES`): per node, its port, whether it
/// is a master, whether it is flagged failed, and the slot ranges it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeView {
    port: u16,
    id: String,
    master: bool,
    failed: bool,
    master_id: Option<String>,
    slots: Vec<(u16, u16)>,
}

/// A master's port and the slot ranges it serves.
type MasterSlots = (u16, Vec<(u16, u16)>);

fn parse_nodes(text: &str) -> Vec<NodeView> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let addr = f[1].split(['@', ',']).next()?;
            let port = addr.rsplit_once(':')?.1.parse().ok()?;
            let flags: Vec<&str> = f[2].split(',').collect();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|a| (a, a)),
                })
                .collect();
            Some(NodeView {
                port,
                id: f[0].to_owned(),
                master: flags.contains(&"master"),
                failed: flags.contains(&"fail") || flags.contains(&"fail?"),
                master_id: (f[3] != "-").then(|| f[3].to_owned()),
                slots,
            })
        })
        .collect()
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas_per_master` replicas each, AOF (`appendfsync
    /// always`) on every node, and waits until the cluster is healthy.
    pub fn start(masters: usize, replicas_per_master: usize) -> Result<Self, ServerError> {
        Self::start_with(ClusterOptions { masters, replicas_per_master, ..ClusterOptions::default() })
    }

    /// Starts a cluster of the given shape and waits until it is healthy.
    pub fn start_with(opts: ClusterOptions) -> Result<Self, ServerError> {
        if opts.masters < 3 {
            return Err(ServerError::Cluster("redis-cli --cluster create needs at least 3 masters".into()));
        }
        let server_bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let cli_bin = std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".into());
        let dir =
            std::env::temp_dir().join(format!("grantline-cluster-{}-{:08x}", std::process::id(), fastrand::u32(..)));
        let count = opts.masters * (1 + opts.replicas_per_master);
        let ports = free_ports(count * 2)?;
        let mut cluster = Self { nodes: Vec::with_capacity(count), dir, opts, server_bin };
        for pair in ports.chunks_exact(2) {
            let node_dir = cluster.dir.join(pair[0].to_string());
            std::fs::create_dir_all(&node_dir)?;
            cluster.nodes.push(ClusterNode { port: pair[0], bus_port: pair[1], dir: node_dir, child: None });
        }
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        let out = Command::new(&cli_bin)
            .arg("--cluster")
            .arg("create")
            .args(cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", &opts.replicas_per_master.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| ServerError::NotInstalled(format!("{cli_bin}: {e}")))?;
        if !out.status.success() {
            return Err(ServerError::Cluster(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        cluster.wait_healthy(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<(), ServerError> {
        let node = &self.nodes[i];
        let mut cmd = Command::new(&self.server_bin);
        cmd.arg("--port")
            .arg(node.port.to_string())
            .arg("--cluster-port")
            .arg(node.bus_port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no", "--loglevel", "warning"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
            .arg("--cluster-node-timeout")
            .arg(self.opts.node_timeout.as_millis().to_string())
            .args(["--cluster-require-full-coverage", "no"])
            // a replica may always take over, however long it was cut off
            .args(["--cluster-replica-validity-factor", "0"])
            .arg("--dir")
            .arg(&node.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match self.opts.persistence {
            Persistence::None => cmd.args(["--appendonly", "no"]),
            Persistence::AofEverySec => cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"]),
            Persistence::AofAlways => cmd.args(["--appendonly", "yes", "--appendfsync", "always"]),
        };
        let child = cmd.spawn().map_err(|e| ServerError::NotInstalled(format!("{}: {e}", self.server_bin)))?;
        let port = node.port;
        self.nodes[i].child = Some(child);
        wait_ping(port, Duration::from_secs(20))
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...`: every node as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        format!("{}{}/", crate::CLUSTER_SCHEME, hosts.join(","))
    }

    /// `redis://127.0.0.1:port/` of one node.
    pub fn node_url(port: u16) -> String {
        format!("redis://127.0.0.1:{port}/")
    }

    /// The client ports of every node.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Whether the node on `port` is running (not killed).
    pub fn is_running(&self, port: u16) -> bool {
        self.nodes.iter().any(|n| n.port == port && n.child.is_some())
    }

    fn index(&self, port: u16) -> Result<usize, ServerError> {
        self.nodes.iter().position(|n| n.port == port).ok_or_else(|| ServerError::Cluster(format!("no node on {port}")))
    }

    /// The pid of the node on `port`, while it runs.
    pub fn pid(&self, port: u16) -> Option<u32> {
        self.nodes.iter().find(|n| n.port == port).and_then(|n| n.child.as_ref()).map(Child::id)
    }

    /// Kills one node at once (SIGKILL, no save) and waits for it to exit.
    pub fn kill(&mut self, port: u16) -> Result<(), ServerError> {
        let i = self.index(port)?;
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }

    /// Starts a node again on the same ports and data directory (killing it first if it
    /// runs). It comes back with its AOF data and its `nodes.conf`: a master whose slots a
    /// replica took over meanwhile rejoins as that replica's replica. Returns once the node
    /// answers PING (its data loaded).
    pub fn restart(&mut self, port: u16) -> Result<(), ServerError> {
        self.kill(port)?;
        let i = self.index(port)?;
        self.spawn(i)
    }

    /// `CLUSTER NODES` as one running node sees it, parsed.
    fn view(&self, port: u16) -> Result<Vec<NodeView>, ServerError> {
        Ok(parse_nodes(&query(port, redis::cmd("CLUSTER").arg("NODES"))?))
    }

    /// The port of the master serving `slot`, as the running nodes agree on it (an error
    /// while they disagree or no live master serves it).
    pub fn master_of_slot(&self, slot: u16) -> Result<u16, ServerError> {
        let mut owner = None;
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let view = self.view(n.port)?;
            let serving = view
                .iter()
                .find(|v| v.master && !v.failed && v.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
                .map(|v| v.port);
            match (owner, serving) {
                (_, None) => {
                    return Err(ServerError::Cluster(format!("node {} sees no live master of slot {slot}", n.port)));
                }
                (None, Some(p)) => owner = Some(p),
                (Some(o), Some(p)) if o != p => {
                    return Err(ServerError::Cluster(format!(
                        "nodes disagree on the master of slot {slot}: {o} and {p}"
                    )));
                }
                _ => {}
            }
        }
        let port = owner.ok_or_else(|| ServerError::Cluster("no node is running".into()))?;
        if !self.is_running(port) {
            return Err(ServerError::Cluster(format!("the master of slot {slot} ({port}) is not running")));
        }
        Ok(port)
    }

    /// The port of the master that carries a namespace (the owner of its hash slot).
    pub fn master_of(&self, namespace: &str) -> Result<u16, ServerError> {
        self.master_of_slot(crate::Namespace::new(namespace).slot())
    }

    /// The ports of the masters, in slot order.
    pub fn masters(&self) -> Result<Vec<u16>, ServerError> {
        let live = self
            .nodes
            .iter()
            .find(|n| n.child.is_some())
            .ok_or_else(|| ServerError::Cluster("no node is running".into()))?;
        let mut masters: Vec<NodeView> =
            self.view(live.port)?.into_iter().filter(|v| v.master && !v.slots.is_empty()).collect();
        masters.sort_by_key(|v| v.slots.first().map(|s| s.0).unwrap_or(u16::MAX));
        Ok(masters.into_iter().map(|v| v.port).collect())
    }

    /// Whether the node on `port` is a replica of the node on `master`, as it says itself.
    pub fn is_replica_of(&self, port: u16, master: u16) -> Result<bool, ServerError> {
        let view = self.view(port)?;
        let master_id = view.iter().find(|v| v.port == master).map(|v| v.id.clone());
        Ok(view.iter().any(|v| v.port == port && !v.master && v.master_id.is_some() && v.master_id == master_id))
    }

    /// Ports of the replicas of the master on `master`.
    pub fn replicas_of(&self, master: u16) -> Result<Vec<u16>, ServerError> {
        let view = self.view(master)?;
        let Some(id) = view.iter().find(|v| v.port == master).map(|v| v.id.clone()) else { return Ok(Vec::new()) };
        Ok(view.iter().filter(|v| v.master_id.as_deref() == Some(id.as_str())).map(|v| v.port).collect())
    }

    /// Waits until every running node says `cluster_state:ok` with all slots served, knows
    /// every node, agrees with the others on the master of every slot, and every replica's
    /// link to its master is up.
    pub fn wait_healthy(&self, within: Duration) -> Result<(), ServerError> {
        let deadline = Instant::now() + within;
        loop {
            let why = match self.health() {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(ServerError::Cluster(format!("not healthy within {within:?}: {why}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn health(&self) -> Result<(), String> {
        let mut layout: Option<Vec<MasterSlots>> = None;
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let info = query(n.port, redis::cmd("CLUSTER").arg("INFO")).map_err(|e| e.to_string())?;
            let field = |name: &str| info.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or("");
            if field("cluster_state:") != "ok" || field("cluster_slots_ok:") != "16384" {
                return Err(format!(
                    "node {} says state {:?}, slots ok {:?}",
                    n.port,
                    field("cluster_state:"),
                    field("cluster_slots_ok:")
                ));
            }
            if field("cluster_known_nodes:") != self.nodes.len().to_string() {
                return Err(format!("node {} knows {} nodes", n.port, field("cluster_known_nodes:")));
            }
            let view = self.view(n.port).map_err(|e| e.to_string())?;
            let mut masters: Vec<MasterSlots> = view
                .iter()
                .filter(|v| v.master && !v.failed && !v.slots.is_empty())
                .map(|v| (v.port, v.slots.clone()))
                .collect();
            masters.sort();
            if masters.iter().any(|(p, _)| !self.is_running(*p)) {
                return Err(format!("node {} still names a stopped node as a master", n.port));
            }
            match &layout {
                None => layout = Some(masters),
                Some(l) if *l != masters => return Err(format!("node {} disagrees on the slot layout", n.port)),
                Some(_) => {}
            }
            let me = view.iter().find(|v| v.port == n.port);
            if me.is_some_and(|v| !v.master) {
                let repl = query(n.port, redis::cmd("INFO").arg("replication")).map_err(|e| e.to_string())?;
                if !repl.lines().any(|l| l.trim() == "master_link_status:up") {
                    return Err(format!("replica {} is not linked to its master yet", n.port));
                }
            }
        }
        Ok(())
    }

    /// Sends one command to one node and returns its reply as text.
    pub fn query_node(port: u16, cmd: &redis::Cmd) -> Result<String, ServerError> {
        query(port, cmd)
    }
}

fn query(port: u16, cmd: &redis::Cmd) -> Result<String, ServerError> {
    let client = redis::Client::open(RedisCluster::node_url(port)).map_err(|e| ServerError::Cluster(e.to_string()))?;
    let mut c = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .map_err(|e| ServerError::Cluster(format!("node {port}: {e}")))?;
    c.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| ServerError::Cluster(e.to_string()))?;
    let v: redis::Value = cmd.query(&mut c).map_err(|e| ServerError::Cluster(format!("node {port}: {e}")))?;
    Ok(match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        redis::Value::SimpleString(s) => s,
        redis::Value::Okay => "OK".into(),
        redis::Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    })
}

fn wait_ping(port: u16, within: Duration) -> Result<(), ServerError> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if query(port, &redis::cmd("PING")).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(ServerError::NotReady { port, secs: within.as_secs() })
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cluster_nodes_lines_are_read_with_their_roles_and_slots() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 master,fail - 1426238316232 0 5 disconnected 10923
";
        let v = parse_nodes(text);
        assert_eq!(v.len(), 4);
        assert_eq!((v[0].port, v[0].master, v[0].master_id.as_deref()), (30004, false, Some(v[2].id.as_str())));
        assert_eq!((v[1].port, v[1].master, v[1].slots.clone()), (30002, true, vec![(5461, 10922)]));
        assert_eq!(v[2].slots, vec![(0, 5460)]);
        assert_eq!((v[3].failed, v[3].slots.clone()), (true, vec![(10923, 10923)]));
    }
}
