//! The queue's connection to Redis: one node through a reconnecting manager, or a Redis
//! Cluster through redis-rs's async cluster client (which follows MOVED and ASK, refreshes
//! its slot map after a failover and reconnects to restarted nodes by itself). Callers get
//! one type, [`QueueConnection`], and use it with `redis::AsyncCommands`, pipelines and
//! scripts as with any async connection.
//!
//! Where Redis is comes from one URL:
//! - `redis://[user:password@]host:port[/db]`: one Redis;
//! - `redis+cluster://[user:password@]host1:port1,host2:port2,...[/]`: the seed nodes of a
//!   cluster (any reachable subset of the nodes; the rest is discovered). Credentials apply to
//!   every node; a cluster has database 0 only.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::watch;

use crate::QueueError;
use crate::config::QueueConfig;

/// The URL scheme that names a Redis Cluster by its seed nodes.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Attempts the cluster client makes for one command (redirects, reconnects, `TRYAGAIN`,
/// `CLUSTERDOWN`) before the error reaches the queue's own retry loops.
const CLUSTER_RETRIES: u32 = 12;

/// How often the cluster connection's watchdog checks that the connection still answers.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long the watchdog waits for a PING before it replaces the cluster connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long opening a replacement cluster connection may take.
const REOPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the queue's Redis, one node or a cluster. Cheap to clone (clones share the
/// underlying multiplexed connections); on a cluster every command of a namespace goes to
/// the master that owns the namespace's hash slot.
#[derive(Clone)]
pub struct QueueConnection(Conn);

#[derive(Clone)]
enum Conn {
    /// One Redis, through a manager that reconnects after a restart.
    Single(ConnectionManager),
    /// A Redis Cluster: commands are routed by key slot and retried across redirects,
    /// reconnects and failovers, on a connection a watchdog replaces if it stops answering.
    Cluster(Arc<ClusterShared>),
}

impl std::fmt::Debug for QueueConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match &self.0 {
            Conn::Single(_) => "QueueConnection::Single",
            Conn::Cluster(_) => "QueueConnection::Cluster",
        })
    }
}

impl QueueConnection {
    /// Whether this is a connection to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Conn::Cluster(_))
    }

    /// How many times the cluster connection was replaced because it stopped answering
    /// (always 0 for a single Redis).
    pub fn replacements(&self) -> u64 {
        match &self.0 {
            Conn::Single(_) => 0,
            Conn::Cluster(shared) => *shared.generation.borrow(),
        }
    }
}

impl QueueConnection {
    /// `WAIT replicas timeout` on the node that holds `slot` (on a single Redis, that Redis):
    /// how many replicas acknowledged every write this connection sent there so far.
    pub(crate) async fn wait_replicas(&mut self, slot: u16, replicas: u32, timeout: Duration) -> RedisResult<u32> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas).arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1));
        let v = match &mut self.0 {
            Conn::Single(c) => cmd.query_async::<Value>(c).await?,
            Conn::Cluster(shared) => {
                let master =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)));
                on_cluster(shared, |mut c| async move { c.route_command(cmd, master).await }).await?
            }
        };
        Ok(redis::from_redis_value(v)?)
    }
}

/// The cluster connection in use, and the client to open a new one with.
///
/// redis-rs's cluster connection recovers from a failover by refreshing its slot map while
/// it holds back every request; a request that was already waiting for the connection map at
/// that moment can keep the refresh from ever taking it, and then the connection answers
/// nothing again (observed with a master killed under load). A watchdog PINGs through the
/// connection and, when no answer comes within [`PROBE_TIMEOUT`], opens a new one, swaps it
/// in and fails the commands still pending on the old one, whose callers retry as after any
/// lost connection (every queue script is safe to repeat).
struct ClusterShared {
    client: ClusterClient,
    current: Mutex<ClusterConnection>,
    /// Bumped at every replacement; pending commands watch it.
    generation: watch::Sender<u64>,
}

impl ClusterShared {
    /// The connection in use, and a receiver that fires when it is replaced.
    fn current(&self) -> (ClusterConnection, watch::Receiver<u64>) {
        let guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (guard.clone(), self.generation.subscribe())
    }

    fn replace(&self, fresh: ClusterConnection) {
        let mut guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *guard = fresh;
        self.generation.send_modify(|g| *g += 1);
    }
}

fn replaced() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "the cluster connection stopped answering and was replaced; this command's outcome is unknown",
    ))
}

/// Runs `request` on the cluster connection in use; fails it if the connection is replaced
/// before it answers.
async fn on_cluster<T, F, Fut>(shared: &ClusterShared, request: F) -> RedisResult<T>
where
    F: FnOnce(ClusterConnection) -> Fut,
    Fut: Future<Output = RedisResult<T>>,
{
    let (conn, mut generation) = shared.current();
    tokio::select! {
        r = request(conn) => r,
        _ = generation.changed() => Err(replaced()),
    }
}

async fn watchdog(shared: Weak<ClusterShared>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(shared) = shared.upgrade() else { return };
        let (mut conn, _) = shared.current();
        // one node at random: the probe is about the connection's own request loop, not the nodes
        let ping = conn.route_command(redis::cmd("PING"), RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random));
        let probe = tokio::time::timeout(PROBE_TIMEOUT, ping).await;
        drop(conn);
        if probe.is_ok() {
            // an answer, or an error (nodes unreachable): either way the connection is alive
            continue;
        }
        tracing::warn!(timeout = ?PROBE_TIMEOUT, "the cluster connection stopped answering; opening a new one");
        match tokio::time::timeout(REOPEN_TIMEOUT, shared.client.get_async_connection()).await {
            Ok(Ok(fresh)) => shared.replace(fresh),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not open a new cluster connection; will try again"),
            Err(_) => tracing::warn!("opening a new cluster connection timed out; will try again"),
        }
    }
}

/// `SCRIPT LOAD` is sent to every node by the cluster client and fails if one of them is
/// unreachable, although only the master of the script's slot needs it. Loading on the
/// masters that answer lets a namespace keep running while another shard is down.
fn is_script_load(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter();
    let mut next = || match args.next() {
        Some(redis::Arg::Simple(a)) => Some(a),
        _ => None,
    };
    matches!((next(), next()), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b"SCRIPT") && b.eq_ignore_ascii_case(b"LOAD"))
}

impl ConnectionLike for QueueConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(shared) => {
                let shared = shared.clone();
                Box::pin(async move {
                    on_cluster(&shared, |mut c| async move {
                        if is_script_load(cmd) {
                            let everywhere = (MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::OneSucceeded));
                            c.route_command(cmd.clone(), RoutingInfo::MultiNode(everywhere)).await
                        } else {
                            c.req_packed_command(cmd).await
                        }
                    })
                    .await
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(shared) => {
                let shared = shared.clone();
                Box::pin(async move {
                    on_cluster(&shared, |mut c| async move { c.req_packed_commands(pipeline, offset, count).await })
                        .await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(_) => 0,
        }
    }
}

/// Where the queue's Redis is, parsed from its URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Single(String),
    /// Seed nodes, each as a `redis://` URL.
    Cluster(Vec<String>),
}

// URLs may carry a password: never printed.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(_) => f.write_str("Target::Single"),
            Self::Cluster(nodes) => write!(f, "Target::Cluster({} seed nodes)", nodes.len()),
        }
    }
}

impl Target {
    /// Reads `redis://...` (one Redis) or `redis+cluster://h1:p1,h2:p2/` (a cluster).
    pub(crate) fn parse(url: &str) -> Result<Target, QueueError> {
        let Some(rest) = strip_prefix_ignore_case(url, CLUSTER_SCHEME) else {
            return Ok(Target::Single(url.to_owned()));
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if !matches!(path, "" | "/" | "/0") {
            return Err(QueueError::Config(format!(
                "a {CLUSTER_SCHEME} URL names hosts only (a cluster has database 0 only, and takes no options)"
            )));
        }
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let mut nodes = Vec::new();
        for host in hosts.split(',') {
            let host = host.trim();
            if host.is_empty() {
                continue;
            }
            let port_ok = host.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(QueueError::Config(format!(
                    "{CLUSTER_SCHEME} seed node {host:?} must be host:port (for example 10.0.0.5:6379)"
                )));
            }
            nodes.push(match userinfo {
                Some(u) => format!("redis://{u}@{host}/"),
                None => format!("redis://{host}/"),
            });
        }
        if nodes.is_empty() {
            return Err(QueueError::Config(format!(
                "a {CLUSTER_SCHEME} URL names at least one seed node: {CLUSTER_SCHEME}host1:port1,host2:port2"
            )));
        }
        Ok(Target::Cluster(nodes))
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Opens the queue's connections: the shared one, and one per idle consumer for its
/// blocking wait (a blocked command would hold up every command behind it on a shared
/// connection).
#[derive(Clone)]
pub(crate) enum Connector {
    Single(redis::Client),
    /// The cluster client for blocking waits: its response timeout covers the wait.
    Cluster(Box<ClusterClient>),
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "Connector::Single",
            Self::Cluster(_) => "Connector::Cluster",
        })
    }
}

fn manager_config(cfg: &QueueConfig) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(cfg.response_timeout))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
        .set_number_of_retries(3)
}

/// A cluster client whose single attempts may take `response_timeout` and whose whole
/// request (redirects and retries included) may take twice that, so one stalled attempt
/// still leaves room for a retry. Retries back off from 25 ms to 1 s with jitter; a node
/// that does not accept a connection within 1 s counts as down (the slot map refresh after a
/// failover waits for that, so it must stay well under the watchdog's [`PROBE_TIMEOUT`]).
fn cluster_client(nodes: &[String], response_timeout: Duration) -> RedisResult<ClusterClient> {
    ClusterClientBuilder::new(nodes.iter().map(String::as_str))
        .connection_timeout(Duration::from_secs(1))
        .response_timeout(response_timeout)
        .overall_response_timeout(Some(response_timeout.saturating_mul(2)))
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(25)
        .max_retry_wait(1000)
        .retry_wait_formula(25, 2)
        .build()
}

/// Opens the shared connection and the connector for blocking waits. The first connection
/// must succeed; afterwards the clients reconnect by themselves.
pub(crate) async fn open(target: &Target, cfg: &QueueConfig) -> Result<(QueueConnection, Connector), QueueError> {
    match target {
        Target::Single(url) => {
            let client = redis::Client::open(url.as_str())?;
            let conn = ConnectionManager::new_with_config(client.clone(), manager_config(cfg)).await?;
            Ok((QueueConnection(Conn::Single(conn)), Connector::Single(client)))
        }
        Target::Cluster(nodes) => {
            let client = cluster_client(nodes, cfg.response_timeout)?;
            let conn = client.get_async_connection().await?;
            let shared =
                Arc::new(ClusterShared { client, current: Mutex::new(conn), generation: watch::Sender::new(0) });
            tokio::spawn(watchdog(Arc::downgrade(&shared)));
            let blocking = cluster_client(nodes, cfg.response_timeout + cfg.idle_wait)?;
            Ok((QueueConnection(Conn::Cluster(shared)), Connector::Cluster(Box::new(blocking))))
        }
    }
}

/// A connection that an idle consumer blocks on.
pub(crate) enum Blocker {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// How much longer than its own timeout a blocking wait on a cluster may take before its
/// connection is given up and a new one opened.
const WAIT_SLACK: Duration = Duration::from_secs(2);

impl Blocker {
    /// `BLPOP key timeout` (on a cluster, on the master that owns the key's slot). Returns the
    /// connection to wait on next time, or None when a new one should be opened: a single
    /// connection is replaced after any error; a cluster connection repairs itself
    /// (reconnects, refreshes its slot map), unless it does not even answer in time.
    pub(crate) async fn wait(mut self, key: &str, timeout: Duration) -> Option<Blocker> {
        let secs = timeout.as_secs_f64().max(0.005);
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(key).arg(secs);
        let r: RedisResult<Option<(String, String)>> = match &mut self {
            Self::Single(c) => cmd.query_async(c).await,
            Self::Cluster(c) => match tokio::time::timeout(timeout + WAIT_SLACK, cmd.query_async(c)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::debug!("the wake-up wait did not return in time; opening a new connection");
                    return None;
                }
            },
        };
        match r {
            Ok(_) => Some(self),
            Err(e) => {
                // a failover unblocks waiters with an error, a restart drops them
                tracing::debug!(error = %e, "wake-up wait failed; waiting again");
                tokio::time::sleep(Duration::from_millis(100)).await;
                matches!(self, Self::Cluster(_)).then_some(self)
            }
        }
    }
}

impl Connector {
    /// A new connection for blocking waits of up to `wait`.
    pub(crate) async fn blocker(&self, wait: Duration, response_timeout: Duration) -> RedisResult<Blocker> {
        match self {
            Self::Single(client) => {
                let cfg = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(response_timeout + wait));
                Ok(Blocker::Single(client.get_multiplexed_async_connection_with_config(&cfg).await?))
            }
            Self::Cluster(client) => match tokio::time::timeout(REOPEN_TIMEOUT, client.get_async_connection()).await {
                Ok(conn) => Ok(Blocker::Cluster(conn?)),
                Err(_) => Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "opening a cluster connection timed out",
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_plain_url_is_one_redis() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379/2").unwrap(),
            Target::Single("redis://127.0.0.1:6379/2".into())
        );
    }

    #[test]
    fn a_cluster_url_lists_seed_nodes_with_shared_credentials() {
        assert_eq!(
            Target::parse("redis+cluster://10.0.0.1:7000,10.0.0.2:7001/").unwrap(),
            Target::Cluster(vec!["redis://10.0.0.1:7000/".into(), "redis://10.0.0.2:7001/".into()])
        );
        assert_eq!(
            Target::parse("REDIS+CLUSTER://app:s3cret@a:1,b:2").unwrap(),
            Target::Cluster(vec!["redis://app:s3cret@a:1/".into(), "redis://app:s3cret@b:2/".into()])
        );
        assert_eq!(
            Target::parse("redis+cluster://[::1]:7000").unwrap(),
            Target::Cluster(vec!["redis://[::1]:7000/".into()])
        );
    }

    #[test]
    fn a_bad_cluster_url_names_the_problem_without_the_password() {
        for (url, says) in [
            ("redis+cluster://", "at least one seed node"),
            ("redis+cluster://a:1/3", "database 0"),
            ("redis+cluster://u:hunter2@a", "host:port"),
            ("redis+cluster://a:1,b:x", "host:port"),
        ] {
            let e = Target::parse(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert!(!format!("{:?}", Target::parse("redis+cluster://u:hunter2@a:1").unwrap()).contains("hunter2"));
    }

    #[test]
    fn only_script_load_is_spread_over_the_reachable_masters() {
        assert!(is_script_load(redis::cmd("SCRIPT").arg("LOAD").arg("return 1")));
        assert!(is_script_load(redis::cmd("script").arg("load").arg("return 1")));
        assert!(!is_script_load(redis::cmd("SCRIPT").arg("FLUSH")));
        assert!(!is_script_load(redis::cmd("EVALSHA").arg("abc").arg(0)));
    }
}
