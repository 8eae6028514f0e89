//! Positions in Redis, for several instances: the newest record of each owner and kind in a
//! hash (fields `json` and `ts`), and every new record published as the seed's JSON. The
//! newest timestamp wins everywhere.
//!
//! - Global (authentication off): the hash `playsync:pos:<kind>` and the seed's channels
//!   `tts:playback`, `tts:scroll`, so a seed server on the same Redis interoperates both ways.
//! - Per user (authentication on): the hash `playsync:user:<encoded user>:pos:<kind>` and the
//!   channel `playsync:user:<encoded user>:<kind>`, received through the patterns
//!   `playsync:user:*:<kind>` (the encoding has no `:` or glob characters; see
//!   `auth::user`). Nothing is published on the seed's channels.
//!
//! [`Positions`] is a cluster [`Participant`]: it applies records published elsewhere, and
//! after an outage whichever side has the newer record gives it to the other.

use std::sync::LazyLock;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::{AsyncCommands, Script};

use super::record::{Kind, Record};
use super::{Owner, Pair, Positions};
use crate::auth::UserName;
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

/// The channel of `owner`'s records of `kind`: the seed's for the global pair.
fn channel(owner: &Owner, kind: Kind) -> String {
    match owner {
        Owner::Global => format!("tts:{}", kind.event()),
        Owner::User(user) => cluster::key(&format!("user:{}:{}", user.encoded(), kind.event())),
    }
}

/// The pattern matching every user's channel of `kind`.
fn user_pattern(kind: Kind) -> String {
    cluster::key(&format!("user:*:{}", kind.event()))
}

/// The user and kind of a user channel; `None` for anything else.
fn parse_user_channel(channel: &str) -> Option<(UserName, Kind)> {
    let rest = channel.strip_prefix(&cluster::key("user:"))?;
    Kind::ALL.into_iter().find_map(|kind| {
        let encoded = rest.strip_suffix(kind.event())?.strip_suffix(':')?;
        UserName::from_encoded(encoded).map(|user| (user, kind))
    })
}

fn store_key(owner: &Owner, kind: Kind) -> String {
    match owner {
        Owner::Global => cluster::key(&format!("pos:{}", kind.event())),
        Owner::User(user) => cluster::key(&format!("user:{}:pos:{}", user.encoded(), kind.event())),
    }
}

/// Stores `record` as `owner`'s shared newest (if it is) and publishes it. Returns the
/// shared record when it is newer than `record`.
pub(super) async fn publish(
    bp: &Backplane,
    owner: &Owner,
    record: &Record,
) -> Result<Option<Record>> {
    let kind = record.kind();
    let mut invocation = POSITION.prepare_invoke();
    invocation
        .key(store_key(owner, kind))
        .arg(record.to_json())
        .arg(record.timestamp())
        .arg(channel(owner, kind));
    let newer: Option<Vec<u8>> = bp
        .call_up(|mut c| async move { invocation.invoke_async(&mut c).await })
        .await?;
    Ok(newer.and_then(|json| Record::from_stored(kind, &json)))
}

/// `owner`'s shared newest record of `kind`.
pub(super) async fn read(bp: &Backplane, owner: &Owner, kind: Kind) -> Result<Option<Record>> {
    let k = store_key(owner, kind);
    let json: Option<Vec<u8>> = bp
        .call_up(|mut c| async move { c.hget(&k, "json").await })
        .await?;
    Ok(json.and_then(|j| Record::from_stored(kind, &j)))
}

impl Positions {
    /// A record published by another instance (or a seed server): applied if newer.
    async fn apply_remote(&self, pair: &Pair, kind: Kind, payload: &[u8]) {
        let Some(record) = Record::from_stored(kind, payload) else {
            tracing::warn!(
                kind = kind.event(),
                "unreadable position message from redis"
            );
            return;
        };
        if let Err(e) = pair.channel(kind).apply(record).await {
            tracing::error!(kind = kind.event(), error = %e, "could not store a position from redis");
        }
    }

    /// After an outage: whichever side has the newer record gives it to the other. A record
    /// acknowledged while Redis was down is published now.
    async fn reconcile(&self, bp: &Backplane, pair: &Pair) -> Result<()> {
        for kind in Kind::ALL {
            let channel = pair.channel(kind);
            let local = channel.current().map(|p| p.record.clone());
            let shared = read(bp, &pair.owner, kind).await?;
            match (local, shared) {
                (Some(l), s) if s.as_ref().is_none_or(|s| l.timestamp() > s.timestamp()) => {
                    tracing::info!(
                        kind = kind.event(),
                        timestamp = l.timestamp(),
                        "publishing a position stored during the outage"
                    );
                    if let Some(newer) = publish(bp, &pair.owner, &l).await? {
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

    /// Reconciles the global pair, or every user in memory and every user who stored a
    /// record while Redis was down.
    async fn reconcile_all(&self, bp: &Backplane) -> Result<()> {
        let Some(users) = self.per_user() else {
            if let Ok(pair) = self.pair(None).await {
                self.reconcile(bp, &pair).await?;
            }
            return Ok(());
        };
        let unshared: Vec<UserName> = self
            .unshared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let mut pairs = users.loaded();
        for user in &unshared {
            match users.get(user).await {
                Ok(pair) => pairs.push(pair),
                Err(e) => tracing::error!(%user, error = %e, "cannot load a user's positions"),
            }
        }
        for pair in pairs {
            self.reconcile(bp, &pair).await?;
            if let Owner::User(user) = &pair.owner {
                self.unshared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(user);
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
        match self.per_user() {
            None => Kind::ALL
                .into_iter()
                .map(|k| channel(&Owner::Global, k))
                .collect(),
            Some(_) => Vec::new(),
        }
    }

    fn patterns(&self) -> Vec<String> {
        match self.per_user() {
            None => Vec::new(),
            Some(_) => Kind::ALL.into_iter().map(user_pattern).collect(),
        }
    }

    fn on_message<'a>(&'a self, channel_name: &'a str, payload: &'a [u8]) -> BoxFuture<'a, ()> {
        async move {
            let (user, kind) = match self.per_user() {
                None => match Kind::ALL
                    .into_iter()
                    .find(|k| channel(&Owner::Global, *k) == channel_name)
                {
                    Some(kind) => (None, kind),
                    None => return,
                },
                Some(_) => match parse_user_channel(channel_name) {
                    Some((user, kind)) => (Some(user), kind),
                    None => {
                        tracing::debug!(
                            channel = channel_name,
                            "ignoring a message on an unknown user channel"
                        );
                        return;
                    }
                },
            };
            match self.pair(user.as_ref()).await {
                Ok(pair) => self.apply_remote(&pair, kind, payload).await,
                Err(e) => {
                    tracing::error!(error = %e, "cannot load positions for a message from redis")
                }
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
                Some(bp) => self.reconcile_all(bp).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_names_are_the_seeds_and_user_names_are_their_own() {
        assert_eq!(channel(&Owner::Global, Kind::Playback), "tts:playback");
        assert_eq!(channel(&Owner::Global, Kind::Scroll), "tts:scroll");
        assert_eq!(
            store_key(&Owner::Global, Kind::Scroll),
            "playsync:pos:scroll"
        );
        let bob = Owner::User(UserName::new("b.o:b*").unwrap());
        assert_eq!(
            channel(&bob, Kind::Playback),
            "playsync:user:b%2Eo%3Ab%2A:playback"
        );
        assert_eq!(
            store_key(&bob, Kind::Playback),
            "playsync:user:b%2Eo%3Ab%2A:pos:playback"
        );
        assert_eq!(user_pattern(Kind::Scroll), "playsync:user:*:scroll");
    }

    #[test]
    fn user_channels_parse_back_and_nothing_else_does() {
        let user = UserName::new("me@example.com").unwrap();
        for kind in Kind::ALL {
            let owner = Owner::User(user.clone());
            assert_eq!(
                parse_user_channel(&channel(&owner, kind)),
                Some((user.clone(), kind))
            );
        }
        for bad in [
            "tts:playback",
            "playsync:user::playback",
            "playsync:user:a:pos:playback",
            "playsync:user:..:scroll",
            "playsync:user:a%2Fb:scroll:x",
            "playsync:user:alice:volume",
            "playsync:user:alicescroll",
        ] {
            assert_eq!(parse_user_channel(bad), None, "{bad}");
        }
    }
}
