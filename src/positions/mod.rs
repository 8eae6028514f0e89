//! Seed 2: playback and scroll positions, synced across devices over Server-Sent Events,
//! with REST GET/PUT, stored durably. Without authentication there is one global pair of
//! positions, exactly as the seed had; with authentication each user has their own.
//!
//! - [`record`]: the records, their validation and the seed's defaults (pure).
//! - [`store`]: the data directory, written atomically.
//! - [`channel`]: per owner and kind: versions, group-committed writes, the broadcast to
//!   streams.
//! - [`users`]: the users' positions, loaded when first used and forgotten when idle.
//! - [`http`]: the REST and SSE endpoints.
//! - [`shared`]: the newest record of each owner and kind in Redis, for several instances.

mod channel;
mod http;
mod record;
mod shared;
mod store;
mod users;

pub(crate) use http::router;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use channel::{Channel, StoreError};
use record::{Kind, Record, Update};
use store::Store;
use tokio_util::sync::CancellationToken;
use users::Users;

use crate::auth::UserName;
use crate::cluster::Backplane;

/// Size limits of the PUT API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_body_bytes: usize,
    pub(crate) max_string_bytes: usize,
}

/// Whose positions: the one global pair (authentication off) or a user's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    Global,
    User(UserName),
}

/// One owner's two channels.
pub(crate) struct Pair {
    owner: Owner,
    playback: Channel,
    scroll: Channel,
}

impl Pair {
    /// The owner's channels, starting from what `store` holds.
    fn load(owner: Owner, store: Store) -> std::io::Result<Self> {
        let playback = store.load(Kind::Playback)?;
        let scroll = store.load(Kind::Scroll)?;
        Ok(Pair {
            owner,
            playback: Channel::new(Kind::Playback, store.clone(), playback),
            scroll: Channel::new(Kind::Scroll, store, scroll),
        })
    }

    fn channel(&self, kind: Kind) -> &Channel {
        match kind {
            Kind::Playback => &self.playback,
            Kind::Scroll => &self.scroll,
        }
    }

    /// No stream listens to either kind.
    fn unwatched(&self) -> bool {
        self.playback.subscribers() == 0 && self.scroll.subscribers() == 0
    }
}

enum Owners {
    Global(Arc<Pair>),
    PerUser(Users),
}

/// Every owner's positions and their shared settings.
pub(crate) struct Positions {
    owners: Owners,
    limits: Limits,
    keepalive: Duration,
    sse_clients: Arc<AtomicUsize>,
    backplane: Option<Backplane>,
    /// Users with a record stored while Redis was down, to publish when it is back (the
    /// global pair is always reconciled).
    unshared: Mutex<HashSet<UserName>>,
    /// Cancelled when the server shuts down: every stream ends.
    shutdown: CancellationToken,
}

impl Positions {
    /// Opens the data directory. Without `per_user`, loads the global records (the seed's
    /// files included); with it, users' records are loaded from `<dir>/users/` when used.
    pub(crate) fn open(
        dir: &Path,
        limits: Limits,
        keepalive: Duration,
        backplane: Option<Backplane>,
        shutdown: CancellationToken,
        per_user: bool,
    ) -> std::io::Result<Arc<Self>> {
        let store = Store::open(dir)?;
        let owners = if per_user {
            let global = Kind::ALL
                .into_iter()
                .filter(|k| dir.join(k.file_name()).exists())
                .count();
            if global > 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    "authentication is on: the global positions in this directory are kept but \
                     not served; to give them to a user, copy them to users/<user>/ (see the README)"
                );
            }
            let root = dir.join("users");
            Store::open(&root)?;
            tracing::info!(dir = %root.display(), "positions per user");
            Owners::PerUser(Users::new(root))
        } else {
            let pair = Pair::load(Owner::Global, store)?;
            tracing::info!(
                dir = %dir.display(),
                playback = pair.playback.current().is_some(),
                scroll = pair.scroll.current().is_some(),
                "positions loaded"
            );
            Owners::Global(Arc::new(pair))
        };
        Ok(Arc::new(Positions {
            owners,
            limits,
            keepalive,
            sse_clients: Arc::new(AtomicUsize::new(0)),
            backplane,
            unshared: Mutex::new(HashSet::new()),
            shutdown,
        }))
    }

    /// The positions of `user` (authentication on) or the global ones (off). An error when
    /// the caller and the mode disagree, which the router never lets happen.
    async fn pair(&self, user: Option<&UserName>) -> std::io::Result<Arc<Pair>> {
        match (&self.owners, user) {
            (Owners::Global(pair), None) => Ok(pair.clone()),
            (Owners::PerUser(users), Some(user)) => users.get(user).await,
            _ => Err(std::io::Error::other(
                "a request's authentication does not match the positions mode",
            )),
        }
    }

    fn per_user(&self) -> Option<&Users> {
        match &self.owners {
            Owners::PerUser(users) => Some(users),
            Owners::Global(_) => None,
        }
    }

    /// Stores a PUT durably, delivers it to this process's streams, then shares it through
    /// Redis when Redis is up (a failure there fails nothing: the record is published when
    /// Redis is back).
    async fn put(&self, pair: &Pair, kind: Kind, update: Update) -> Result<Record, StoreError> {
        let record = pair.channel(kind).put(update).await?;
        if let Some(bp) = &self.backplane {
            let shared = if bp.is_up() {
                match shared::publish(bp, &pair.owner, &record).await {
                    Ok(Some(newer)) => {
                        pair.channel(kind).apply(newer).await.ok();
                        true
                    }
                    Ok(None) => true,
                    Err(e) => {
                        tracing::debug!(error = %e, "position not shared yet");
                        false
                    }
                }
            } else {
                false
            };
            if let (false, Owner::User(user)) = (shared, &pair.owner) {
                self.unshared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(user.clone());
            }
        }
        Ok(record)
    }

    /// The JSON of the newest record of `kind`: this process's (encoded once, when it was
    /// published), or the shared one if newer.
    async fn newest_json(&self, pair: &Pair, kind: Kind) -> Option<Bytes> {
        let local = pair.channel(kind).current();
        if let Some(bp) = self.backplane.as_ref().filter(|b| b.is_up())
            && let Ok(Some(shared)) = shared::read(bp, &pair.owner, kind).await
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

    /// Open SSE streams, every owner and kind together.
    pub(crate) fn sse_clients(&self) -> usize {
        self.sse_clients.load(Ordering::Relaxed)
    }

    fn sse_counter(&self) -> Arc<AtomicUsize> {
        self.sse_clients.clone()
    }
}
