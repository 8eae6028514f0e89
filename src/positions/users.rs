//! Users' positions (authentication on): `<data>/users/<encoded user>/` per user, each with
//! the same two files as the global directory, and a [`Pair`] of channels per user in memory.
//!
//! A user's pair is loaded from disk the first time it is used and kept in a map. Memory is
//! bounded by forgetting idle pairs: a pair nobody holds (no request in flight) and no stream
//! watches is exactly what its files say, so it can be dropped and loaded again later. The
//! map is swept when it reaches [`SWEEP_AT_LEAST`] entries, or twice the size it had after
//! the last sweep, so sweeping costs O(1) per lookup amortized. What stays is at most the
//! larger of that threshold and twice the users that were busy at the last sweep, and busy
//! users are bounded by the connection caps (each stream watches one user) and the requests
//! in flight.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::store::Store;
use super::{Owner, Pair};
use crate::auth::UserName;

/// The map is first swept at this size.
pub(super) const SWEEP_AT_LEAST: usize = 1024;

pub(super) struct Users {
    root: PathBuf,
    state: Mutex<State>,
}

struct State {
    pairs: HashMap<UserName, Arc<Pair>>,
    sweep_at: usize,
}

impl Users {
    pub(super) fn new(root: PathBuf) -> Self {
        Users {
            root,
            state: Mutex::new(State {
                pairs: HashMap::new(),
                sweep_at: SWEEP_AT_LEAST,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `user`'s pair, loaded from disk if it is not in memory.
    pub(super) async fn get(&self, user: &UserName) -> std::io::Result<Arc<Pair>> {
        if let Some(pair) = self.state().pairs.get(user) {
            return Ok(pair.clone());
        }
        let dir = self.root.join(user.encoded());
        let owner = Owner::User(user.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            Store::open_lazily(&dir).and_then(|store| Pair::load(owner, store))
        })
        .await
        .map_err(std::io::Error::other)??;
        let mut state = self.state();
        if state.pairs.len() >= state.sweep_at {
            state
                .pairs
                .retain(|_, pair| Arc::strong_count(pair) > 1 || !pair.unwatched());
            state.sweep_at = (state.pairs.len() * 2).max(SWEEP_AT_LEAST);
        }
        // Someone else may have loaded it meanwhile: theirs is the one in use.
        Ok(state
            .pairs
            .entry(user.clone())
            .or_insert_with(|| Arc::new(loaded))
            .clone())
    }

    /// The pairs in memory now.
    pub(super) fn loaded(&self) -> Vec<Arc<Pair>> {
        self.state().pairs.values().cloned().collect()
    }

    /// Number of pairs in memory.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.state().pairs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positions::record::{Kind, parse_update};

    fn user(name: &str) -> UserName {
        UserName::new(name).unwrap()
    }

    #[tokio::test]
    async fn each_user_has_a_directory_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::new(dir.path().join("users"));
        let update = |i: i64| {
            parse_update(
                Kind::Playback,
                format!(r#"{{"lastPlayedIndex": {i}}}"#).as_bytes(),
                100,
            )
            .unwrap()
        };
        let a = users.get(&user("alice")).await.unwrap();
        let b = users.get(&user("../bob")).await.unwrap();
        a.channel(Kind::Playback).put(update(1)).await.unwrap();
        b.channel(Kind::Playback).put(update(2)).await.unwrap();
        assert!(
            dir.path()
                .join("users/alice/playback-position.json")
                .exists()
        );
        assert!(
            dir.path()
                .join("users/%2E%2E%2Fbob/playback-position.json")
                .exists()
        );
        assert!(!dir.path().join("bob").exists());
        // Reading a user who never wrote creates nothing.
        let c = users.get(&user("carol")).await.unwrap();
        assert!(c.channel(Kind::Scroll).current().is_none());
        assert!(!dir.path().join("users/carol").exists());
        // The same user gets the same pair while it is in memory.
        assert!(Arc::ptr_eq(&a, &users.get(&user("alice")).await.unwrap()));
    }

    #[tokio::test]
    async fn idle_users_are_forgotten_and_busy_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::new(dir.path().join("users"));
        let held = users.get(&user("held")).await.unwrap();
        let watched = users.get(&user("watched")).await.unwrap();
        let rx = watched.channel(Kind::Scroll).subscribe();
        drop(watched);
        for i in 0..3 * SWEEP_AT_LEAST {
            users.get(&user(&format!("u{i}"))).await.unwrap();
            assert!(users.len() <= 2 * SWEEP_AT_LEAST, "{}", users.len());
        }
        let names: Vec<String> = users
            .loaded()
            .iter()
            .filter_map(|p| match &p.owner {
                Owner::User(u) => Some(u.as_str().to_owned()),
                Owner::Global => None,
            })
            .collect();
        assert!(names.contains(&"held".to_owned()));
        assert!(names.contains(&"watched".to_owned()));
        assert!(Arc::ptr_eq(&held, &users.get(&user("held")).await.unwrap()));
        drop(rx);
    }
}
