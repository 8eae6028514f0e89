//! Mirror and reconcile: how this instance's rooms follow the shared state, and how they
//! carry on without it.
//!
//! While Redis is up, each instance mirrors the rooms that have members connected to it and
//! applies the facts every other instance publishes ([`Rooms::apply_remote`]). While it is
//! down, the mirror is the whole truth for this instance: a room whose host is connected
//! elsewhere gets a local host, and every room changed meanwhile is `dirty`: it takes no
//! remote facts until its own state is merged back by the `RECONCILE` script (newest play
//! state wins, the longest-serving host keeps the role). [`Rooms`] is a cluster
//! [`Participant`]: the supervisor tells it when Redis goes and comes back.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::Rooms;
use super::model::{Cause, Change};
use super::shared::{self, Fact, Outcome};
use crate::clock::now_ms;
use crate::cluster::{Participant, Result};

impl Rooms {
    /// A fact published by another instance (or by a sweep of a dead one).
    async fn apply_remote(&self, fact: Fact) {
        let Some(slot) = self.registry.slot(&fact.room) else {
            return;
        };
        let mut guard = slot.lock().await;
        let Some(entry) = guard.as_mut() else {
            return;
        };
        if fact.is_deleted() {
            if entry.room.user_count() > 0 {
                // Our members were removed elsewhere (we were cut off): put them back.
                entry.dirty = true;
            } else {
                self.registry.delete(&fact.room, &slot, &mut guard);
            }
            return;
        }
        if entry.dirty {
            // Changes made here without Redis are not merged yet; applying the shared state
            // now would overwrite them. The merge publishes a newer fact with both.
            return;
        }
        if fact.event == "replaced"
            && self
                .backplane
                .as_ref()
                .is_some_and(|bp| fact.origin != bp.instance())
        {
            // The member's client came back on another instance: its connection here goes.
            self.replaced_elsewhere(entry, &fact.sender);
        }
        self.apply_fact(entry, &fact);
    }

    /// Redis went away: every room is served from this process alone. A room whose host is
    /// connected elsewhere gets a local host (the longest-present local member).
    async fn localize_all(&self) {
        for (key, slot) in self.registry.slots() {
            let mut guard = slot.lock().await;
            let Some(entry) = guard.as_mut() else {
                continue;
            };
            entry.dirty = true;
            let now = now_ms();
            let host = entry.room.localize(now).map(|host| (host, now));
            if let Some((host, _)) = &host {
                tracing::info!(room = %key, %host, "host is local while redis is down");
            }
            let count = entry.room.user_count();
            let change = Change {
                count: (entry.count != count).then_some(count),
                host,
                ..Change::none(Cause::Membership)
            };
            self.apply(entry, &change);
        }
    }

    /// Marks every room for merging into the shared state.
    async fn mark_all_dirty(&self) {
        for (_, slot) in self.registry.slots() {
            if let Some(entry) = slot.lock().await.as_mut() {
                entry.dirty = true;
            }
        }
    }

    /// Merges every room changed without Redis into the shared state.
    async fn reconcile_dirty(&self) {
        for (key, _) in self.registry.slots() {
            if self.shared().is_none() {
                return;
            }
            self.reconcile_key(&key).await;
        }
    }

    /// Merges the room `key` into the shared state if it changed without Redis.
    pub(super) async fn reconcile_key(&self, key: &str) {
        let (Some(bp), Some(slot)) = (self.shared(), self.registry.slot(key)) else {
            return;
        };
        let mut guard = slot.lock().await;
        let Some(entry) = guard.as_mut().filter(|e| e.dirty) else {
            return;
        };
        match shared::reconcile(bp, entry, now_ms()).await {
            Ok(Outcome::Done(fact)) => {
                entry.dirty = false;
                tracing::info!(room = %key, users = fact.count, "room merged into the shared state");
                self.apply_fact(entry, &fact);
            }
            Ok(_) => self.registry.delete(key, &slot, &mut guard),
            Err(e) => tracing::debug!(room = %key, error = %e, "room not merged yet"),
        }
    }

    /// Applies the facts a sweep produced.
    async fn apply_all(&self, facts: Vec<Fact>) {
        for fact in facts {
            self.apply_remote(fact).await;
        }
    }
}

impl Participant for Rooms {
    fn name(&self) -> &'static str {
        "rooms"
    }

    fn channels(&self) -> Vec<String> {
        vec![shared::channel()]
    }

    fn on_message<'a>(&'a self, _channel: &'a str, payload: &'a [u8]) -> BoxFuture<'a, ()> {
        async move {
            match serde_json::from_slice::<Fact>(payload) {
                Ok(fact) => self.apply_remote(fact).await,
                Err(e) => tracing::warn!(error = %e, "unreadable room message from redis"),
            }
        }
        .boxed()
    }

    fn on_down(&self) -> BoxFuture<'_, ()> {
        self.localize_all().boxed()
    }

    fn on_up(&self) -> BoxFuture<'_, Result<()>> {
        async move {
            let Some(bp) = self.shared() else {
                return Ok(());
            };
            self.mark_all_dirty().await;
            self.reconcile_dirty().await;
            let connected = self.local_members().await;
            let released = shared::release_stale(bp, &connected, now_ms()).await?;
            self.apply_all(released).await;
            Ok(())
        }
        .boxed()
    }

    fn on_tick(&self) -> BoxFuture<'_, ()> {
        self.reconcile_dirty().boxed()
    }

    fn on_dead<'a>(&'a self, instance: &'a str) -> BoxFuture<'a, Result<()>> {
        async move {
            let Some(bp) = self.shared() else {
                return Ok(());
            };
            let removed = shared::sweep_instance(bp, instance, now_ms()).await?;
            self.apply_all(removed).await;
            Ok(())
        }
        .boxed()
    }
}
