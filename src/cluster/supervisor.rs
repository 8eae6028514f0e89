//! The supervisor task: keeps the backplane connected, subscribed and probed, tells the
//! participants when Redis goes and comes back, hands them their messages, and finds dead
//! instances for them to sweep. With Sentinel it also moves the connection to each new
//! master that [`super::sentinel::watch_master`] reports. See the module docs of [`super`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{AsyncCommands, PushInfo, PushKind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::probe::{Probe, ProbeAction};
use super::sentinel::watch_master;
use super::{Backplane, ClusterError, Participant, Result, Source, key};

/// How often the supervisor checks Redis.
const TICK: Duration = Duration::from_millis(500);
/// Liveness TTL: an instance silent this long is considered dead and swept.
const ALIVE_TTL: Duration = Duration::from_secs(5);
const SWEEP_EVERY: Duration = Duration::from_secs(2);
const PROBE_EVERY: Duration = Duration::from_secs(2);
const PROBE_PATIENCE: Duration = Duration::from_secs(5);

/// Keeps the backplane connected and the participants informed; ends at shutdown.
pub(crate) async fn supervisor(
    backplane: Backplane,
    participants: Vec<Arc<dyn Participant>>,
    shutdown: CancellationToken,
) {
    // With Sentinel, the master is looked up beside the supervisor (lookups never hold up
    // message delivery); with a fixed server, `found` never changes.
    let (found, masters) = watch::channel(None);
    let up = backplane.0.up.subscribe();
    let bp = backplane.clone();
    let token = shutdown.clone();
    let lookups = async move {
        match &bp.0.source {
            Source::Sentinel(sentinels) => watch_master(sentinels, up, found, token).await,
            Source::Fixed(_) => {
                token.cancelled().await;
                drop(found);
            }
        }
    };
    let sup = Supervisor {
        bp: backplane,
        participants,
        probe: Probe::new(PROBE_EVERY, PROBE_PATIENCE),
        last_sweep: None,
        subscribed: false,
    };
    tokio::join!(sup.run(masters, shutdown), lookups);
}

struct Supervisor {
    bp: Backplane,
    participants: Vec<Arc<dyn Participant>>,
    probe: Probe,
    last_sweep: Option<Instant>,
    /// Subscribed (and reconciled) since Redis last came back.
    subscribed: bool,
}

impl Supervisor {
    async fn run(
        mut self,
        mut masters: watch::Receiver<Option<redis::Client>>,
        shutdown: CancellationToken,
    ) {
        let (tx, mut pushes) = mpsc::unbounded_channel();
        if let Err(e) = self.bp.reconnect(tx) {
            tracing::error!(error = %e, "cannot set up the redis connection");
            return;
        }
        tracing::info!(
            redis = self.bp.display(),
            instance = self.bp.base(),
            "redis backplane starting"
        );
        let mut status = self.bp.0.up.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    // While Redis is down the heartbeat may wait on a dead master (the
                    // connection retries it): a master named meanwhile is followed at once.
                    let beat = tokio::select! {
                        beat = self.heartbeat() => Some(beat),
                        Ok(()) = masters.changed(), if !self.bp.is_up() => None,
                    };
                    match beat {
                        Some(beat) => {
                            if let Some(fresh) = self.tick(beat).await {
                                pushes = fresh;
                            }
                        }
                        None => {
                            if let Some(fresh) = self.follow(&mut masters) {
                                pushes = fresh;
                            }
                            tick.reset_immediately();
                        }
                    }
                }
                Some(push) = pushes.recv() => self.deliver(push).await,
                Ok(()) = status.changed() => {
                    let up = *status.borrow_and_update();
                    if !up {
                        self.subscribed = false;
                        for p in &self.participants {
                            p.on_down().await;
                        }
                    }
                }
                Ok(()) = masters.changed() => {
                    if let Some(fresh) = self.follow(&mut masters) {
                        pushes = fresh;
                        // Heartbeat (and recover) on the new master now.
                        tick.reset_immediately();
                    }
                }
            }
        }
        self.leave_cluster().await;
    }

    /// The sentinels name a master: unless the connection already goes there, move it
    /// (Redis counts as down until the heartbeat on the new master recovers). Returns the
    /// new connection's push receiver.
    fn follow(
        &mut self,
        masters: &mut watch::Receiver<Option<redis::Client>>,
    ) -> Option<mpsc::UnboundedReceiver<PushInfo>> {
        let master = masters.borrow_and_update().clone()?;
        let addr = master.get_connection_info().addr().clone();
        let previous = self.bp.server();
        if previous.as_ref() == Some(&addr) {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        if let Err(e) = self.bp.connect(master, tx) {
            tracing::error!(error = %e, master = %addr, "cannot set up the redis connection");
            return None;
        }
        self.subscribed = false;
        match previous {
            Some(previous) => {
                tracing::warn!(from = %previous, to = %addr, "the redis master moved: following it");
                self.bp
                    .mark_down(&ClusterError::MasterMoved(addr.to_string()));
            }
            None => tracing::info!(master = %addr, "connecting to the redis master"),
        }
        Some(rx)
    }

    /// After one heartbeat: recover, probe, sweep. Returns a new push receiver when the
    /// connection was rebuilt.
    async fn tick(&mut self, beat: Result<()>) -> Option<mpsc::UnboundedReceiver<PushInfo>> {
        if let Err(e) = beat {
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
                if let Err(e) = self.bp.reconnect(tx) {
                    tracing::error!(error = %e, "cannot rebuild the redis connection");
                }
                self.subscribed = false;
                self.bp
                    .mark_down(&ClusterError::Protocol("probe lost".into()));
                return Some(rx);
            }
        }
        if self.bp.is_up() {
            for p in &self.participants {
                p.on_tick().await;
            }
            if self
                .last_sweep
                .is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY)
            {
                self.last_sweep = Some(now);
                if let Err(e) = self.sweep_dead_instances().await {
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

    /// Redis answers again: subscribe, take a new epoch, let the participants merge, then
    /// retire the old epoch.
    async fn recover(&mut self) -> Result<()> {
        let mut channels = vec![self.bp.channel_probe()];
        let mut patterns = Vec::new();
        for p in &self.participants {
            channels.extend(p.channels());
            patterns.extend(p.patterns());
        }
        self.bp
            .call(|mut c| async move { c.subscribe(channels).await })
            .await?;
        if !patterns.is_empty() {
            self.bp
                .call(|mut c| async move { c.psubscribe(patterns).await })
                .await?;
        }
        let old = self.bp.next_epoch();
        self.heartbeat().await?;
        self.probe.reset();
        // Live first, so new requests use the shared state; what changed meanwhile is
        // merged by the participants before it is used.
        self.bp.0.up.send_replace(true);
        for p in &self.participants {
            if let Err(e) = p.on_up().await {
                tracing::warn!(participant = p.name(), error = %e, "merging after the outage failed");
                return Err(e);
            }
        }
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

    /// Instances whose liveness key expired (crashed, or cut off for longer than the TTL):
    /// one survivor claims each, lets every participant remove what it held, then forgets it.
    async fn sweep_dead_instances(&self) -> Result<()> {
        let instances_key = key("instances");
        let instances: Vec<String> = self
            .bp
            .call_up(|mut c| async move { c.smembers(&instances_key).await })
            .await?;
        let me = self.bp.instance();
        for dead in instances.into_iter().filter(|i| *i != me) {
            let alive_key = key(&format!("alive:{dead}"));
            let alive: bool = self
                .bp
                .call_up(|mut c| async move { c.exists(&alive_key).await })
                .await?;
            if alive {
                continue;
            }
            let (lock, me) = (key(&format!("sweep:{dead}")), me.clone());
            let claimed: Option<String> = self
                .bp
                .call_up(|mut c| async move {
                    redis::cmd("SET")
                        .arg(&lock)
                        .arg(&me)
                        .arg("NX")
                        .arg("PX")
                        .arg(10_000)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            if claimed.is_none() {
                continue;
            }
            tracing::info!(instance = %dead, "sweeping a dead instance");
            for p in &self.participants {
                if let Err(e) = p.on_dead(&dead).await {
                    tracing::warn!(participant = p.name(), instance = %dead, error = %e, "sweep failed");
                    return Err(e);
                }
            }
            let instances_key = key("instances");
            self.bp
                .call_up(|mut c| async move { c.srem::<_, _, ()>(&instances_key, &dead).await })
                .await?;
        }
        Ok(())
    }

    /// A message from Redis: the probe's, or one for a participant.
    async fn deliver(&mut self, push: PushInfo) {
        let (pattern, channel, payload) = match (&push.kind, push.data.as_slice()) {
            (PushKind::Message, [channel, payload]) => (None, channel, payload),
            (PushKind::PMessage, [pattern, channel, payload]) => (Some(pattern), channel, payload),
            _ => return,
        };
        if let Some(pattern) = pattern {
            let (Ok(pattern), Ok(channel), Ok(payload)) = (
                redis::from_redis_value_ref::<String>(pattern),
                redis::from_redis_value_ref::<String>(channel),
                redis::from_redis_value_ref::<Vec<u8>>(payload),
            ) else {
                return;
            };
            for p in &self.participants {
                if p.patterns().contains(&pattern) {
                    p.on_message(&channel, &payload).await;
                }
            }
            return;
        }
        let (Ok(channel), Ok(payload)) = (
            redis::from_redis_value_ref::<String>(channel),
            redis::from_redis_value_ref::<Vec<u8>>(payload),
        ) else {
            return;
        };
        if channel == self.bp.channel_probe() {
            if let Some(token) = std::str::from_utf8(&payload)
                .ok()
                .and_then(|t| t.parse().ok())
            {
                self.probe.received(token);
            }
            return;
        }
        for p in &self.participants {
            if p.channels().contains(&channel) {
                p.on_message(&channel, &payload).await;
            }
        }
    }

    /// At shutdown: drop the liveness key at once, so another instance sweeps whatever
    /// the closing connections did not remove themselves, without waiting for the TTL.
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
