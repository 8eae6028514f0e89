//! The Redis backplane that lets several playsync instances act as one. Knows Redis, not
//! rooms or positions.
//!
//! Owns the Redis connection, the instance's identity and liveness, and the connected /
//! degraded status. Rooms and positions hold a [`Backplane`] handle to run their own commands
//! and scripts, and register with the [`supervisor`] as [`Participant`]s: the channels they
//! listen to and what to do on a message, when Redis goes away, when it is back, and when
//! another instance died.
//!
//! The [`supervisor`] task (one per process, stopped at shutdown) keeps it all going:
//! - heartbeat: every tick it refreshes this instance's liveness key (with a TTL) and thereby
//!   checks Redis; a failure tells every participant to serve from memory;
//! - recovery: when Redis answers again it resubscribes, starts a new epoch of its instance
//!   id, and lets every participant merge what changed meanwhile;
//! - probe: a token published through the normal path must come back through the
//!   subscription; if it does not, the subscription is rebuilt (a silent failure);
//! - dead instances: an instance whose liveness key expired (a crash) is claimed by one
//!   survivor, and every participant removes what that instance held;
//! - delivery: messages on a participant's channels are handed to it.
//!
//! Redis is one server at a fixed address, or the master that Redis Sentinel names
//! ([`sentinel`]): then the master is looked up again whenever Redis fails (and every few
//! seconds while it works), and the connection moves to wherever the sentinels point.
//!
//! Nothing waits on Redis for long: every call has a deadline, and once Redis fails the
//! participants stop asking until it answers again.

mod probe;
mod sentinel;
mod supervisor;

pub(crate) use supervisor::supervisor;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, ProtocolVersion, PushInfo};
use tokio::sync::{mpsc, watch};

use crate::config::RedisTarget;
use sentinel::Sentinels;

/// Key and channel prefix of everything playsync stores (the positions channels excepted:
/// they keep the seed's names so a seed server on the same Redis interoperates).
const PREFIX: &str = "playsync:";
/// Longest any Redis call may take before it counts as a failure.
const CALL_TIMEOUT: Duration = Duration::from_millis(800);

/// Why a Redis operation did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    #[error("redis is unavailable")]
    Unavailable,
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected answer from redis: {0}")]
    Protocol(String),
    #[error("the sentinels name another master: {0}")]
    MasterMoved(String),
}

impl ClusterError {
    /// Redis refused a write because it is a replica: a demoted master, or a replica that the
    /// connection reached by mistake.
    pub(crate) fn is_readonly(&self) -> bool {
        matches!(self, ClusterError::Redis(e) if e.code() == Some("READONLY"))
    }
}

impl From<redis::ParsingError> for ClusterError {
    fn from(e: redis::ParsingError) -> Self {
        ClusterError::Protocol(e.to_string())
    }
}

pub(crate) type Result<T> = std::result::Result<T, ClusterError>;

/// A cheap, cloneable handle on the shared Redis state.
#[derive(Clone)]
pub(crate) struct Backplane(Arc<Inner>);

struct Inner {
    source: Source,
    /// Random per process; the instance id is `base.epoch`, a new epoch per reconnection.
    base: String,
    epoch: AtomicU64,
    conn: RwLock<Option<Link>>,
    up: watch::Sender<bool>,
}

/// How the server is found.
enum Source {
    /// One server at a fixed address.
    Fixed(redis::Client),
    /// The master that the sentinels name, looked up again after every failure.
    Sentinel(Sentinels),
}

/// The connection in use and the server it goes to.
struct Link {
    client: redis::Client,
    manager: ConnectionManager,
}

impl Backplane {
    /// A backplane for the Redis at `target` (not connected yet: the supervisor connects).
    pub(crate) fn new(target: &RedisTarget) -> anyhow::Result<Self> {
        let source = match target {
            RedisTarget::Url { url, password } => {
                let info = url
                    .as_str()
                    .into_connection_info()
                    .map_err(|e| anyhow::anyhow!("invalid Redis URL: {e}"))?;
                // Pub/sub on the command connection needs RESP3 push messages.
                let mut settings = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                if let (None, Some(password)) = (settings.password(), password) {
                    settings = settings.set_password(password.expose());
                }
                Source::Fixed(redis::Client::open(info.set_redis_settings(settings))?)
            }
            RedisTarget::Sentinel {
                sentinels,
                master,
                password,
                sentinel_password,
            } => Source::Sentinel(Sentinels::new(
                sentinels,
                master,
                password.as_ref(),
                sentinel_password.as_ref(),
            )?),
        };
        Ok(Backplane(Arc::new(Inner {
            source,
            base: random_id(),
            epoch: AtomicU64::new(0),
            conn: RwLock::new(None),
            up: watch::Sender::new(false),
        })))
    }

    /// Whether shared state is in use now (Redis answered the last heartbeat).
    pub(crate) fn is_up(&self) -> bool {
        *self.0.up.borrow()
    }

    /// Where Redis is, for logs (no password).
    pub(crate) fn display(&self) -> String {
        let current = self.server();
        match &self.0.source {
            Source::Fixed(client) => client.get_connection_info().addr().to_string(),
            Source::Sentinel(s) => match current {
                Some(addr) => format!("{addr} ({s})"),
                None => format!("no master yet ({s})"),
            },
        }
    }

    /// The server the connection goes to, if there is a connection.
    fn server(&self) -> Option<ConnectionAddr> {
        self.0
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|link| link.client.get_connection_info().addr().clone())
    }

    /// This instance's current id (changes with every reconnection).
    pub(crate) fn instance(&self) -> String {
        format!("{}.{}", self.0.base, self.0.epoch.load(Ordering::Relaxed))
    }

    /// Starts the next epoch of this instance's id (after a reconnection); returns the old id.
    fn next_epoch(&self) -> String {
        let old = self.instance();
        self.0.epoch.fetch_add(1, Ordering::Relaxed);
        old
    }

    /// The id prefix shared by every epoch of this process.
    pub(crate) fn base(&self) -> &str {
        &self.0.base
    }

    /// Switches to degraded mode at once (an operation just failed); the supervisor
    /// reconnects and reconciles.
    pub(crate) fn mark_down(&self, why: &ClusterError) {
        if self.0.up.send_replace(false) {
            if why.is_readonly() {
                tracing::warn!(
                    error = %why,
                    "redis is a read-only replica now (a failover?): serving from memory until \
                     the master answers"
                );
            } else {
                tracing::warn!(error = %why, "redis unavailable: serving from memory until it is back");
            }
        }
    }

    fn connection(&self) -> Result<ConnectionManager> {
        self.0
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|link| link.manager.clone())
            .ok_or(ClusterError::Unavailable)
    }

    /// Runs `op` on the connection with a deadline. Errors are returned as they are; the
    /// caller decides whether they mean Redis is down.
    pub(crate) async fn call<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection()?;
        match tokio::time::timeout(CALL_TIMEOUT, op(conn)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClusterError::Timeout(CALL_TIMEOUT)),
        }
    }

    /// [`Backplane::call`], but only while Redis is up, and a failure marks it down.
    pub(crate) async fn call_up<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return Err(ClusterError::Unavailable);
        }
        let result = self.call(op).await;
        if let Err(e) = &result {
            self.mark_down(e);
        }
        result
    }

    fn channel_probe(&self) -> String {
        format!("{PREFIX}probe:{}", self.0.base)
    }

    /// Opens a fresh connection to the same server (dropping the old one) whose pushes go
    /// to `tx`. Without a server yet, there is nothing to rebuild: the supervisor connects
    /// when the sentinels name one.
    fn reconnect(&self, tx: mpsc::UnboundedSender<PushInfo>) -> Result<()> {
        let client = match &self.0.source {
            Source::Fixed(client) => Some(client.clone()),
            Source::Sentinel(_) => self
                .0
                .conn
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|link| link.client.clone()),
        };
        match client {
            Some(client) => self.connect(client, tx),
            None => Ok(()),
        }
    }

    /// Opens a fresh connection to `client`'s server (dropping any old one) whose pushes go
    /// to `tx`.
    fn connect(&self, client: redis::Client, tx: mpsc::UnboundedSender<PushInfo>) -> Result<()> {
        let config = ConnectionManagerConfig::new()
            .set_push_sender(tx)
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(2);
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        *self.0.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(Link { client, manager });
        Ok(())
    }
}

/// 16 hex digits from the standard library's per-process random hasher keys.
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::clock::now_ms());
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// The Redis key (or channel) of playsync `name`.
pub(crate) fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// A part of the server that shares its state through Redis (rooms, positions). The
/// supervisor calls it; it calls the [`Backplane`] for its own commands and scripts.
pub(crate) trait Participant: Send + Sync + 'static {
    /// What it is, for logs.
    fn name(&self) -> &'static str;

    /// The channels it listens to.
    fn channels(&self) -> Vec<String>;

    /// The channel patterns (`PSUBSCRIBE`) it listens to; a message on a channel matching
    /// one goes to [`Participant::on_message`] with the channel's own name.
    fn patterns(&self) -> Vec<String> {
        Vec::new()
    }

    /// A message on one of its channels.
    fn on_message<'a>(&'a self, channel: &'a str, payload: &'a [u8]) -> BoxFuture<'a, ()>;

    /// Redis went away: from now on it serves from memory alone.
    fn on_down(&self) -> BoxFuture<'_, ()>;

    /// Redis is back (subscribed, under a new instance epoch): merge what changed meanwhile.
    fn on_up(&self) -> BoxFuture<'_, Result<()>>;

    /// Every supervisor tick while Redis is up.
    fn on_tick(&self) -> BoxFuture<'_, ()>;

    /// `instance` died (its liveness key expired) and this instance sweeps it: remove what
    /// it held.
    fn on_dead<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Result<()>>;
}
