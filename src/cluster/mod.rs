//! The Redis backplane that lets several playsync instances act as one, for both APIs.
//!
//! Owns the Redis connection, the instance's identity and liveness, and the connected /
//! degraded status. Rooms and positions hold a [`Backplane`] handle and ask it whether Redis
//! is up; when it is not, they serve from memory and nothing waits on Redis.
//!
//! The [`supervisor`] task (one per process, stopped at shutdown) keeps it all going:
//! - heartbeat: every tick it refreshes this instance's liveness key (with a TTL) and thereby
//!   checks Redis; a failure switches every instance-local structure to degraded mode;
//! - recovery: when Redis answers again it resubscribes, starts a new epoch of its instance
//!   id, and reconciles positions and rooms (the newest state wins), within a few ticks;
//! - probe: a token published through the normal path must come back through the
//!   subscription; if it does not, the subscription is rebuilt (a silent failure);
//! - sweep: members of instances whose liveness key expired (a crash) are removed from the
//!   shared rooms, which hands their host role over;
//! - delivery: messages from other instances are applied to local rooms and streams.
//!
//! Socket.IO keeps its in-process adapter, so delivery to this process's clients never fails
//! because of Redis: a room change is decided by a Redis script (which also publishes it) and
//! then emitted locally; if the script fails or misses its deadline, Redis is marked down and
//! the change is applied and emitted from memory instead. Positions are stored and delivered
//! locally first, then published.

pub mod positions;
pub mod probe;
pub mod rooms;
pub mod scripts;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::positions::Positions;
use crate::positions::record::Kind;
use crate::rooms::Rooms;
use probe::{Probe, ProbeAction};

/// Key and channel prefix of everything playsync stores (the positions channels excepted:
/// they keep the seed's names so a seed server on the same Redis interoperates).
const PREFIX: &str = "playsync:";
/// How often the supervisor checks Redis.
const TICK: Duration = Duration::from_millis(500);
/// Liveness TTL: an instance silent this long is considered dead and swept.
const ALIVE_TTL: Duration = Duration::from_secs(5);
/// Longest any Redis call may take before it counts as a failure.
const CALL_TIMEOUT: Duration = Duration::from_millis(800);
const SWEEP_EVERY: Duration = Duration::from_secs(2);
const PROBE_EVERY: Duration = Duration::from_secs(2);
const PROBE_PATIENCE: Duration = Duration::from_secs(5);

/// Why a Redis operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis is unavailable")]
    Unavailable,
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected answer from redis: {0}")]
    Protocol(String),
}

impl From<redis::ParsingError> for ClusterError {
    fn from(e: redis::ParsingError) -> Self {
        ClusterError::Protocol(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, ClusterError>;

/// A cheap, cloneable handle on the shared Redis state.
#[derive(Clone)]
pub struct Backplane(Arc<Inner>);

struct Inner {
    client: redis::Client,
    /// Where Redis is, for logs (no password).
    display: String,
    /// Random per process; the instance id is `base.epoch`, a new epoch per reconnection.
    base: String,
    epoch: AtomicU64,
    conn: RwLock<Option<ConnectionManager>>,
    up: watch::Sender<bool>,
}

impl Backplane {
    /// A backplane for the Redis at `url` (not connected yet: the supervisor connects).
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let info = url
            .into_connection_info()
            .map_err(|e| anyhow::anyhow!("invalid Redis URL: {e}"))?;
        let display = format!("{}", info.addr());
        // Pub/sub on the command connection needs RESP3 push messages.
        let redis_settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(redis_settings);
        let client = redis::Client::open(info)?;
        Ok(Backplane(Arc::new(Inner {
            client,
            display,
            base: random_id(),
            epoch: AtomicU64::new(0),
            conn: RwLock::new(None),
            up: watch::Sender::new(false),
        })))
    }

    /// Whether shared state is in use now (Redis answered the last heartbeat).
    pub fn is_up(&self) -> bool {
        *self.0.up.borrow()
    }

    /// Where Redis is, for health reports and logs.
    pub fn display(&self) -> &str {
        &self.0.display
    }

    /// This instance's current id (changes with every reconnection).
    pub fn instance(&self) -> String {
        format!("{}.{}", self.0.base, self.0.epoch.load(Ordering::Relaxed))
    }

    /// The id prefix shared by every epoch of this process.
    pub fn base(&self) -> &str {
        &self.0.base
    }

    /// Switches to degraded mode at once (an operation just failed); the supervisor
    /// reconnects and reconciles.
    pub fn mark_down(&self, why: &ClusterError) {
        if self.0.up.send_replace(false) {
            tracing::warn!(error = %why, "redis unavailable: serving from memory until it is back");
        }
    }

    fn connection(&self) -> Result<ConnectionManager> {
        self.0
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(ClusterError::Unavailable)
    }

    /// Runs `op` on the connection with a deadline. Errors are returned as they are; the
    /// caller decides whether they mean Redis is down.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T>
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
    pub async fn call_up<T, F, Fut>(&self, op: F) -> Result<T>
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

    fn channel_rooms() -> String {
        format!("{PREFIX}rooms")
    }

    fn channel_probe(&self) -> String {
        format!("{PREFIX}probe:{}", self.0.base)
    }

    /// Opens a fresh connection (dropping any old one) whose pushes go to `tx`.
    fn connect(&self, tx: mpsc::UnboundedSender<PushInfo>) -> Result<()> {
        let config = ConnectionManagerConfig::new()
            .set_push_sender(tx)
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(2);
        let manager = ConnectionManager::new_lazy_with_config(self.0.client.clone(), config)?;
        *self.0.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(manager);
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

/// The Redis key of playsync `name`.
pub(crate) fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// Keeps the backplane connected and reconciled; ends at shutdown. See the module docs.
pub async fn supervisor(
    backplane: Backplane,
    rooms: Arc<Rooms>,
    positions: Arc<Positions>,
    shutdown: CancellationToken,
) {
    let mut sup = Supervisor {
        bp: backplane,
        rooms,
        positions,
        probe: Probe::new(PROBE_EVERY, PROBE_PATIENCE),
        last_sweep: None,
        subscribed: false,
    };
    let (tx, mut pushes) = mpsc::unbounded_channel();
    if let Err(e) = sup.bp.connect(tx) {
        tracing::error!(error = %e, "cannot set up the redis connection");
        return;
    }
    tracing::info!(
        redis = sup.bp.display(),
        instance = sup.bp.base(),
        "redis backplane starting"
    );
    let mut status = sup.bp.0.up.subscribe();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                if let Some(fresh) = sup.tick().await {
                    pushes = fresh;
                }
            }
            Some(push) = pushes.recv() => sup.deliver(push).await,
            Ok(()) = status.changed() => {
                let up = *status.borrow_and_update();
                if !up {
                    sup.subscribed = false;
                    sup.rooms.localize_all().await;
                }
            }
        }
    }
    sup.leave_cluster().await;
}

struct Supervisor {
    bp: Backplane,
    rooms: Arc<Rooms>,
    positions: Arc<Positions>,
    probe: Probe,
    last_sweep: Option<Instant>,
    /// Subscribed (and reconciled) since Redis last came back.
    subscribed: bool,
}

impl Supervisor {
    /// One heartbeat. Returns a new push receiver when the connection was rebuilt.
    async fn tick(&mut self) -> Option<mpsc::UnboundedReceiver<PushInfo>> {
        if let Err(e) = self.heartbeat().await {
            self.bp.mark_down(&e);
            return None;
        }
        if !self.subscribed {
            if let Err(e) = self.recover().await {
                self.bp.mark_down(&e);
                return None;
            }
            self.subscribed = true;
        }
        let now = Instant::now();
        match self.probe.tick(now) {
            ProbeAction::Nothing => {}
            ProbeAction::Send(token) => {
                let channel = self.bp.channel_probe();
                let sent = self
                    .bp
                    .call(|mut c| async move { c.publish::<_, _, ()>(channel, token).await })
                    .await;
                if let Err(e) = sent {
                    self.bp.mark_down(&e);
                }
            }
            ProbeAction::Resubscribe => {
                tracing::warn!("redis subscription stopped delivering: reconnecting");
                let (tx, rx) = mpsc::unbounded_channel();
                if let Err(e) = self.bp.connect(tx) {
                    tracing::error!(error = %e, "cannot rebuild the redis connection");
                }
                self.subscribed = false;
                self.bp
                    .mark_down(&ClusterError::Protocol("probe lost".into()));
                return Some(rx);
            }
        }
        if self.bp.is_up() {
            self.rooms.reconcile_dirty().await;
            if self
                .last_sweep
                .is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY)
            {
                self.last_sweep = Some(now);
                if let Err(e) = rooms::sweep_dead_instances(&self.bp, &self.rooms).await {
                    tracing::warn!(error = %e, "sweeping dead instances failed");
                }
            }
        }
        None
    }

    /// Refreshes this instance's liveness; fails if Redis does not answer.
    async fn heartbeat(&self) -> Result<()> {
        let (alive, instances, id) = (
            key(&format!("alive:{}", self.bp.instance())),
            key("instances"),
            self.bp.instance(),
        );
        self.bp
            .call(|mut c| async move {
                redis::pipe()
                    .set_options(
                        &alive,
                        1,
                        redis::SetOptions::default()
                            .with_expiration(redis::SetExpiry::PX(ALIVE_TTL.as_millis() as u64)),
                    )
                    .ignore()
                    .sadd(&instances, &id)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    /// Redis answers again: subscribe, take a new epoch, reconcile, then go live.
    async fn recover(&mut self) -> Result<()> {
        let channels = vec![
            Backplane::channel_rooms(),
            self.bp.channel_probe(),
            positions::channel(Kind::Playback),
            positions::channel(Kind::Scroll),
        ];
        self.bp
            .call(|mut c| async move { c.subscribe(channels).await })
            .await?;
        let old = self.bp.instance();
        self.bp.0.epoch.fetch_add(1, Ordering::Relaxed);
        self.heartbeat().await?;
        self.probe.reset();
        // Live first, so new requests use the shared state; rooms changed meanwhile are
        // dirty and reconcile before their next shared operation.
        self.bp.0.up.send_replace(true);
        self.rooms.mark_all_dirty().await;
        positions::reconcile(&self.bp, &self.positions).await?;
        self.rooms.reconcile_dirty().await;
        rooms::release_stale_members(&self.bp, &self.rooms).await?;
        let (instances, old_alive) = (key("instances"), key(&format!("alive:{old}")));
        self.bp
            .call(|mut c| async move {
                redis::pipe()
                    .srem(&instances, &old)
                    .ignore()
                    .del(&old_alive)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        tracing::info!(
            redis = self.bp.display(),
            instance = self.bp.instance(),
            "redis connected: shared rooms and positions in use"
        );
        Ok(())
    }

    /// A message from Redis.
    async fn deliver(&mut self, push: PushInfo) {
        if push.kind != PushKind::Message {
            return;
        }
        let [channel, payload] = push.data.as_slice() else {
            return;
        };
        let (Ok(channel), Ok(payload)) = (
            redis::from_redis_value_ref::<String>(channel),
            redis::from_redis_value_ref::<Vec<u8>>(payload),
        ) else {
            return;
        };
        if channel == Backplane::channel_rooms() {
            match serde_json::from_slice::<rooms::Fact>(&payload) {
                Ok(fact) => self.rooms.apply_remote(fact).await,
                Err(e) => tracing::warn!(error = %e, "unreadable room message from redis"),
            }
        } else if channel == self.bp.channel_probe() {
            if let Some(token) = std::str::from_utf8(&payload)
                .ok()
                .and_then(|t| t.parse().ok())
            {
                self.probe.received(token);
            }
        } else if let Some(kind) = Kind::ALL
            .into_iter()
            .find(|k| positions::channel(*k) == channel)
        {
            positions::apply_remote(&self.positions, kind, &payload).await;
        }
    }

    /// At shutdown: drop the liveness key at once, so another instance sweeps whatever
    /// members the closing sockets did not remove themselves, without waiting for the TTL.
    /// (The instance stays listed: the sweeper finds dead instances through that list.)
    async fn leave_cluster(&self) {
        if !self.bp.is_up() {
            return;
        }
        let alive = key(&format!("alive:{}", self.bp.instance()));
        let _ = self
            .bp
            .call(|mut c| async move { c.del::<_, ()>(&alive).await })
            .await;
    }
}
