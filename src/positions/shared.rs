//! Positions in Redis, for several instances: the newest record of each kind in a hash
//! (`playsync:pos:<kind>`, fields `json` and `ts`), and every new record published on the
//! seed's channels (`tts:playback`, `tts:scroll`) as the seed's JSON, so a seed server on the
//! same Redis interoperates both ways. The newest timestamp wins everywhere.
//!
//! [`Positions`] is a cluster [`Participant`]: it applies records published elsewhere, and
//! after an outage whichever side has the newer record gives it to the other.

use std::sync::LazyLock;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::{AsyncCommands, Script};

use super::Positions;
use super::record::{Kind, Record};
use crate::cluster::{self, Backplane, Participant, Result};

/// Stores a record if it is newer than the stored one, and publishes it (the seed's JSON, on
/// the seed's channel). KEYS: the position hash. ARGV: JSON, timestamp, channel.
/// Returns nil when stored, else the newer stored JSON.
static POSITION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local stored = tonumber(redis.call('HGET', KEYS[1], 'ts') or '0')
if tonumber(ARGV[2]) <= stored then return redis.call('HGET', KEYS[1], 'json') end
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'ts', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return false
"#,
    )
});

/// The seed's channel for `kind`.
fn channel(kind: Kind) -> String {
    format!("tts:{}", kind.event())
}

fn store_key(kind: Kind) -> String {
    cluster::key(&format!("pos:{}", kind.event()))
}

/// Stores `record` as the shared newest (if it is) and publishes it. Returns the shared
/// record when it is newer than `record`.
pub(super) async fn publish(bp: &Backplane, record: &Record) -> Result<Option<Record>> {
    let kind = record.kind();
    let mut invocation = POSITION.prepare_invoke();
    invocation
        .key(store_key(kind))
        .arg(record.to_json())
        .arg(record.timestamp())
        .arg(channel(kind));
    let newer: Option<Vec<u8>> = bp
        .call_up(|mut c| async move { invocation.invoke_async(&mut c).await })
        .await?;
    Ok(newer.and_then(|json| Record::from_stored(kind, &json)))
}

/// The shared newest record of `kind`.
pub(super) async fn read(bp: &Backplane, kind: Kind) -> Result<Option<Record>> {
    let k = store_key(kind);
    let json: Option<Vec<u8>> = bp
        .call_up(|mut c| async move { c.hget(&k, "json").await })
        .await?;
    Ok(json.and_then(|j| Record::from_stored(kind, &j)))
}

impl Positions {
    /// A record published by another instance (or a seed server): applied if newer.
    async fn apply_remote(&self, kind: Kind, payload: &[u8]) {
        let Some(record) = Record::from_stored(kind, payload) else {
            tracing::warn!(
                kind = kind.event(),
                "unreadable position message from redis"
            );
            return;
        };
        if let Err(e) = self.channel(kind).apply(record).await {
            tracing::error!(kind = kind.event(), error = %e, "could not store a position from redis");
        }
    }

    /// After an outage: whichever side has the newer record gives it to the other. A record
    /// acknowledged while Redis was down is published now.
    async fn reconcile(&self, bp: &Backplane) -> Result<()> {
        for kind in Kind::ALL {
            let channel = self.channel(kind);
            let local = channel.current().map(|p| p.record.clone());
            let shared = read(bp, kind).await?;
            match (local, shared) {
                (Some(l), s) if s.as_ref().is_none_or(|s| l.timestamp() > s.timestamp()) => {
                    tracing::info!(
                        kind = kind.event(),
                        timestamp = l.timestamp(),
                        "publishing a position stored during the outage"
                    );
                    if let Some(newer) = publish(bp, &l).await? {
                        channel.apply(newer).await.ok();
                    }
                }
                (_, Some(s)) => {
                    if let Err(e) = channel.apply(s).await {
                        tracing::error!(kind = kind.event(), error = %e, "could not store a position from redis");
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Participant for Positions {
    fn name(&self) -> &'static str {
        "positions"
    }

    fn channels(&self) -> Vec<String> {
        Kind::ALL.into_iter().map(channel).collect()
    }

    fn on_message<'a>(&'a self, channel_name: &'a str, payload: &'a [u8]) -> BoxFuture<'a, ()> {
        async move {
            if let Some(kind) = Kind::ALL.into_iter().find(|k| channel(*k) == channel_name) {
                self.apply_remote(kind, payload).await;
            }
        }
        .boxed()
    }

    fn on_down(&self) -> BoxFuture<'_, ()> {
        // PUTs are stored and delivered locally anyway; they are published on recovery.
        std::future::ready(()).boxed()
    }

    fn on_up(&self) -> BoxFuture<'_, Result<()>> {
        async move {
            match self.backplane.as_ref() {
                Some(bp) => self.reconcile(bp).await,
                None => Ok(()),
            }
        }
        .boxed()
    }

    fn on_tick(&self) -> BoxFuture<'_, ()> {
        std::future::ready(()).boxed()
    }

    fn on_dead<'a>(&'a self, _instance: &'a str) -> BoxFuture<'a, Result<()>> {
        // Positions belong to no instance: nothing to sweep.
        std::future::ready(Ok(())).boxed()
    }
}
