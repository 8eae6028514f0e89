//! Seed 2: one user's playback and scroll positions, synced across devices over Server-Sent
//! Events, with REST GET/PUT, stored durably.
//!
//! - [`record`]: the records, their validation and the seed's defaults (pure).
//! - [`store`]: the data directory, written atomically.
//! - [`channel`]: per kind: versions, group-committed writes, the broadcast to streams.
//! - [`http`]: the REST, SSE and health endpoints.

pub mod channel;
pub mod http;
pub mod record;
pub mod store;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use channel::Channel;
use record::Kind;
use store::Store;

/// Size limits of the PUT API.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_string_bytes: usize,
}

/// Both position channels and their shared settings.
pub struct Positions {
    playback: Channel,
    scroll: Channel,
    limits: Limits,
    keepalive: Duration,
    sse_clients: Arc<AtomicUsize>,
}

impl Positions {
    /// Opens the data directory and loads the stored records (the seed's files included).
    pub fn open(dir: &Path, limits: Limits, keepalive: Duration) -> std::io::Result<Arc<Self>> {
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
        }))
    }

    pub fn channel(&self, kind: Kind) -> &Channel {
        match kind {
            Kind::Playback => &self.playback,
            Kind::Scroll => &self.scroll,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn keepalive(&self) -> Duration {
        self.keepalive
    }

    /// Open SSE streams, both kinds together.
    pub fn sse_clients(&self) -> usize {
        self.sse_clients.load(Ordering::Relaxed)
    }

    fn sse_counter(&self) -> Arc<AtomicUsize> {
        self.sse_clients.clone()
    }
}
