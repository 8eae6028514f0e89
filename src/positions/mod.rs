//! Seed 2: one user's playback and scroll positions, synced across devices over Server-Sent
//! Events, with REST GET/PUT, stored durably.
//!
//! - [`record`]: the records, their validation and the seed's defaults (pure).
//! - [`store`]: the data directory, written atomically.
//! - [`channel`]: per kind: versions, group-committed writes, the broadcast to streams.
//! - [`http`]: the REST and SSE endpoints.
//! - [`shared`]: the newest record of each kind in Redis, for several instances.

mod channel;
mod http;
mod record;
mod shared;
mod store;

pub(crate) use http::router;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use channel::{Channel, StoreError};
use record::{Kind, Record, Update};
use store::Store;
use tokio_util::sync::CancellationToken;

use crate::cluster::Backplane;

/// Size limits of the PUT API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_body_bytes: usize,
    pub(crate) max_string_bytes: usize,
}

/// Both position channels and their shared settings.
pub(crate) struct Positions {
    playback: Channel,
    scroll: Channel,
    limits: Limits,
    keepalive: Duration,
    sse_clients: Arc<AtomicUsize>,
    backplane: Option<Backplane>,
    /// Cancelled when the server shuts down: every stream ends.
    shutdown: CancellationToken,
}

impl Positions {
    /// Opens the data directory and loads the stored records (the seed's files included).
    pub(crate) fn open(
        dir: &Path,
        limits: Limits,
        keepalive: Duration,
        backplane: Option<Backplane>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Arc<Self>> {
        let store = Store::open(dir)?;
        let playback = store.load(Kind::Playback)?;
        let scroll = store.load(Kind::Scroll)?;
        tracing::info!(
            dir = %dir.display(),
            playback = playback.is_some(),
            scroll = scroll.is_some(),
            "positions loaded"
        );
        Ok(Arc::new(Positions {
            playback: Channel::new(Kind::Playback, store.clone(), playback),
            scroll: Channel::new(Kind::Scroll, store, scroll),
            limits,
            keepalive,
            sse_clients: Arc::new(AtomicUsize::new(0)),
            backplane,
            shutdown,
        }))
    }

    fn channel(&self, kind: Kind) -> &Channel {
        match kind {
            Kind::Playback => &self.playback,
            Kind::Scroll => &self.scroll,
        }
    }

    /// Stores a PUT durably, delivers it to this process's streams, then shares it through
    /// Redis when Redis is up (a failure there fails nothing: the record is published when
    /// Redis is back).
    async fn put(&self, kind: Kind, update: Update) -> Result<Record, StoreError> {
        let record = self.channel(kind).put(update).await?;
        if let Some(bp) = self.backplane.as_ref().filter(|b| b.is_up()) {
            match shared::publish(bp, &record).await {
                Ok(Some(newer)) => {
                    self.channel(kind).apply(newer).await.ok();
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "position not shared yet"),
            }
        }
        Ok(record)
    }

    /// The JSON of the newest record of `kind`: this process's (encoded once, when it was
    /// published), or the shared one if newer.
    async fn newest_json(&self, kind: Kind) -> Option<Bytes> {
        let local = self.channel(kind).current();
        if let Some(bp) = self.backplane.as_ref().filter(|b| b.is_up())
            && let Ok(Some(shared)) = shared::read(bp, kind).await
            && local
                .as_ref()
                .is_none_or(|l| shared.timestamp() > l.version())
        {
            return Some(Bytes::from(shared.to_json()));
        }
        local.map(|p| p.json.clone())
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn keepalive(&self) -> Duration {
        self.keepalive
    }

    /// Open SSE streams, both kinds together.
    pub(crate) fn sse_clients(&self) -> usize {
        self.sse_clients.load(Ordering::Relaxed)
    }

    fn sse_counter(&self) -> Arc<AtomicUsize> {
        self.sse_clients.clone()
    }
}
