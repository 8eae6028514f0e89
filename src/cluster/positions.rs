//! Positions in Redis: the newest record of each kind in a hash (`playsync:pos:<kind>`,
//! fields `json` and `ts`), and every new record published on the seed's channels
//! (`tts:playback`, `tts:scroll`) as the seed's JSON, so a seed server on the same Redis
//! interoperates both ways. The newest timestamp wins everywhere.

use redis::AsyncCommands;

use super::{Backplane, Result, key, scripts};
use crate::positions::Positions;
use crate::positions::record::{Kind, Record};

/// The seed's channel for `kind`.
pub fn channel(kind: Kind) -> String {
    format!("tts:{}", kind.event())
}

fn store_key(kind: Kind) -> String {
    key(&format!("pos:{}", kind.event()))
}

/// Stores `record` as the shared newest (if it is) and publishes it. Returns the shared
/// record when it is newer than `record`.
pub async fn publish(bp: &Backplane, record: &Record) -> Result<Option<Record>> {
    let kind = record.kind();
    let mut invocation = scripts::POSITION.prepare_invoke();
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
pub async fn read(bp: &Backplane, kind: Kind) -> Result<Option<Record>> {
    let k = store_key(kind);
    let json: Option<Vec<u8>> = bp
        .call_up(|mut c| async move { c.hget(&k, "json").await })
        .await?;
    Ok(json.and_then(|j| Record::from_stored(kind, &j)))
}

/// A record published by another instance (or a seed server): applied if newer.
pub async fn apply_remote(positions: &Positions, kind: Kind, payload: &[u8]) {
    let Some(record) = Record::from_stored(kind, payload) else {
        tracing::warn!(
            kind = kind.event(),
            "unreadable position message from redis"
        );
        return;
    };
    if let Err(e) = positions.channel(kind).apply(record).await {
        tracing::error!(kind = kind.event(), error = %e, "could not store a position from redis");
    }
}

/// After an outage: whichever side has the newer record gives it to the other. A record
/// acknowledged while Redis was down is published now.
pub async fn reconcile(bp: &Backplane, positions: &Positions) -> Result<()> {
    for kind in Kind::ALL {
        let channel = positions.channel(kind);
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
