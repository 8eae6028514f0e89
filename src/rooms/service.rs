//! [`Rooms`]: the room requests of this process, as one pipeline. Each request is *decided*
//! into a typed [`Change`]: by the room model when this instance is alone (no Redis, or
//! Redis down), by a Redis script ([`super::shared`]) when rooms are shared. Then
//! [`Rooms::apply`] (in [`super::apply`]) turns the change into state and emits, the same way
//! whoever decided it. Local and shared differ only in who decides.
//!
//! A request runs under its room's lock (see [`super::registry`]); a connection's own
//! requests arrive in order. A refused request changes nothing: a new room is claimed before
//! its creator leaves its previous room.

use std::sync::Arc;

use serde_json::Value;

use super::model::{Change, Control, Departure, MemberId, PlayState, Room, RoomId};
use super::protocol::{Invalid, Limits, ServerEvent};
use super::registry::{Connection, Entry, Registry};
use super::shared::{self, Fact, Outcome};
use super::timing;
use super::views::Reply;
use crate::clock::now_ms;
use crate::cluster::Backplane;

/// Where room events go (the transports' side).
pub(crate) type Out = Arc<super::hub::Hub>;

/// The rooms of this process.
pub(crate) struct Rooms {
    pub(super) out: Out,
    limits: Limits,
    pub(super) registry: Registry,
    pub(super) backplane: Option<Backplane>,
}

impl Rooms {
    pub(crate) fn new(out: Out, limits: Limits, backplane: Option<Backplane>) -> Arc<Self> {
        Arc::new(Self {
            out,
            limits,
            registry: Registry::default(),
            backplane,
        })
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    /// The backplane, when Redis is configured and up: then Redis decides.
    pub(super) fn shared(&self) -> Option<&Backplane> {
        self.backplane.as_ref().filter(|b| b.is_up())
    }

    /// Records that `entry` changed without Redis, so it is merged when Redis is back.
    pub(super) fn changed_locally(&self, entry: &mut Entry) {
        entry.dirty |= self.backplane.is_some();
    }

    /// Applies a shared fact to a mirrored room, if it is news to it.
    pub(super) fn apply_fact(&self, entry: &mut Entry, fact: &Fact) {
        if let Some(change) = fact.change(entry) {
            entry.version = fact.version;
            self.apply(entry, &change);
        }
    }

    /// `create_room`: claims `room` with the caller as host, then leaves the caller's
    /// previous room. Refused (`room_exists`) with nothing changed if the id is taken.
    pub(crate) async fn create(
        &self,
        conn: &Arc<Connection>,
        room: RoomId,
        track: Value,
        time: f64,
    ) -> Result<Reply, Invalid> {
        if conn.is_in(&room.key) || self.registry.contains(&room.key) {
            return Err(Invalid::room_exists(&room));
        }
        // Claimed (and locked) here first, so nobody sees the room half made.
        let Some((slot, mut guard)) = self.registry.claim(&room.key).await else {
            return Err(Invalid::room_exists(&room));
        };
        let member = conn.member().clone();
        let now = now_ms();
        let decided = match self.shared() {
            Some(bp) => match shared::create(bp, &room, &member, &track, time, now).await {
                Ok(Outcome::Done(fact)) => Some(fact),
                Ok(_) => {
                    self.registry.forget(&room.key, &slot);
                    return Err(Invalid::room_exists(&room));
                }
                Err(_) => None, // Redis failed: decided here instead
            },
            None => None,
        };
        // The claim holds: only now does the caller leave its previous room.
        self.leave(conn).await;
        let entry = guard.insert(match &decided {
            Some(fact) => {
                let mut room = Room::shared(
                    fact.room_id(),
                    fact.created_at,
                    fact.host.clone(),
                    fact.host_since,
                    fact.play.clone(),
                );
                room.join(member.clone());
                Entry::new(room)
            }
            None => Entry::new(Room::create(room.clone(), member.clone(), track, time, now)),
        });
        entry.locals.insert(member.clone(), conn.clone());
        *conn.room() = Some(room.key.clone());
        self.out.join(&member, &room.key);
        tracing::info!(room = %room.key, host = %member, shared = decided.is_some(), "room created");
        let reply = Reply::Created {
            room_id: room.raw.clone(),
            user_count: decided.as_ref().map_or(1, |f| f.count),
            host_id: member.clone(),
        };
        self.out
            .to_member(&member, ServerEvent::RoomCreated, &reply);
        match &decided {
            Some(fact) => self.apply_fact(entry, fact),
            None => {
                self.changed_locally(entry);
                self.apply(entry, &Change::membership(1, None));
            }
        }
        Ok(reply)
    }

    /// `join_room`: leaves the current room (if another), then joins `room`. Joining the
    /// room one is in again just answers `room_joined`.
    pub(crate) async fn join(
        &self,
        conn: &Arc<Connection>,
        room: RoomId,
    ) -> Result<Reply, Invalid> {
        // When Redis fails (`Err`), the join is decided here instead.
        if let Some(bp) = self.shared()
            && let Ok(result) = self.join_shared(bp, conn, &room).await
        {
            return result;
        }
        let member = conn.member();
        if !conn.is_in(&room.key) {
            // Checked first, so a refused join leaves the caller in its room.
            if !self.registry.contains(&room.key) {
                return Err(Invalid::room_not_found(&room));
            }
            self.leave(conn).await;
        }
        let slot = self.registry.slot(&room.key);
        let mut guard = match &slot {
            Some(slot) => slot.lock().await,
            None => return Err(Invalid::room_not_found(&room)),
        };
        let Some(entry) = guard.as_mut() else {
            return Err(Invalid::room_not_found(&room));
        };
        let change = entry
            .room
            .join(member.clone())
            .then(|| Change::membership(entry.room.user_count(), None));
        if change.is_some() {
            self.changed_locally(entry);
            self.entered(entry, conn, &room.key);
        }
        let mut view = entry.parts().for_client(&room.raw, now_ms());
        if let Some(count) = change.as_ref().and_then(|c| c.count) {
            view.user_count = count;
        }
        self.out.to_member(member, ServerEvent::RoomJoined, &view);
        if let Some(change) = &change {
            self.apply(entry, change);
        }
        if !view.play.current_track.is_null() {
            self.out
                .to_member(member, ServerEvent::SyncState, &view.play);
        }
        Ok(Reply::Room(view))
    }

    /// The shared decision of a join; `Err(())` when Redis failed.
    async fn join_shared(
        &self,
        bp: &Backplane,
        conn: &Arc<Connection>,
        room: &RoomId,
    ) -> Result<Result<Reply, Invalid>, ()> {
        self.reconcile_key(&room.key).await;
        if !conn.is_in(&room.key) {
            // Checked first, so a refused join leaves the caller in its room.
            match shared::read(bp, &room.key).await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(Err(Invalid::room_not_found(room))),
                Err(_) => return Err(()),
            }
            self.leave(conn).await;
        }
        let member = conn.member();
        let slot = self.registry.slot_or_empty(&room.key);
        let mut guard = slot.lock().await;
        let fact = match shared::join(bp, &room.key, member).await {
            Ok(Outcome::Done(fact) | Outcome::Unchanged(fact)) => fact,
            other => {
                if guard.is_none() {
                    self.registry.forget(&room.key, &slot);
                }
                return match other {
                    Err(_) => Err(()),
                    Ok(_) => Ok(Err(Invalid::room_not_found(room))),
                };
            }
        };
        let entry = guard.get_or_insert_with(|| {
            Entry::new(Room::shared(
                fact.room_id(),
                fact.created_at,
                fact.host.clone(),
                fact.host_since,
                fact.play.clone(),
            ))
        });
        if entry.room.join(member.clone()) {
            self.entered(entry, conn, &room.key);
        }
        let view = fact.parts().for_client(&room.raw, now_ms());
        self.out.to_member(member, ServerEvent::RoomJoined, &view);
        self.apply_fact(entry, &fact);
        if !view.play.current_track.is_null() {
            self.out
                .to_member(member, ServerEvent::SyncState, &view.play);
        }
        Ok(Ok(Reply::Room(view)))
    }

    /// Records that the connection is now in room `key`.
    fn entered(&self, entry: &mut Entry, conn: &Arc<Connection>, key: &str) {
        entry.locals.insert(conn.member().clone(), conn.clone());
        *conn.room() = Some(key.to_owned());
        self.out.join(conn.member(), key);
        tracing::debug!(room = %key, member = %conn.member(), "member joined");
    }

    /// A host command: applied and relayed to the other members, or refused (not the host,
    /// no such room) with nothing changed.
    pub(crate) async fn control(
        &self,
        conn: &Arc<Connection>,
        room: RoomId,
        cmd: Control,
        at: Option<f64>,
    ) -> Result<Reply, Invalid> {
        let member = conn.member();
        let kind = cmd.kind();
        if let Some(bp) = self.shared() {
            self.reconcile_key(&room.key).await;
            let slot = self.registry.slot(&room.key);
            let mut guard = match &slot {
                Some(slot) => Some(slot.lock().await),
                None => None,
            };
            let entry = guard.as_mut().and_then(|g| g.as_mut());
            let now = now_ms();
            let start = Self::start_of(kind, at, now, entry.as_deref());
            match shared::control(bp, &room.key, member, &cmd, now, start).await {
                Ok(Outcome::Done(fact)) => {
                    if let Some(entry) = entry {
                        self.apply_fact(entry, &fact);
                    }
                    return Ok(Self::command_reply(&fact.play, now));
                }
                Ok(Outcome::Refused(why)) if why == "not_host" => return Err(Invalid::not_host()),
                Ok(_) => return Err(Invalid::room_not_found(&room)),
                Err(_) => {} // Redis failed: decided here instead
            }
        }
        let Some(slot) = self.registry.slot(&room.key) else {
            return Err(Invalid::room_not_found(&room));
        };
        let mut guard = slot.lock().await;
        let Some(entry) = guard.as_mut() else {
            return Err(Invalid::room_not_found(&room));
        };
        let now = now_ms();
        let start = Self::start_of(kind, at, now, Some(entry));
        let play = entry
            .room
            .decide_control(member, cmd, start)
            .map_err(|_| Invalid::not_host())?;
        let reply = Self::command_reply(&play, now);
        self.changed_locally(entry);
        self.apply(entry, &Change::command(kind, member.clone(), play));
        Ok(reply)
    }

    /// When a command of `kind` decided at `now` takes effect: the host's `at`, or far
    /// enough ahead that every member here hears of a new start in time (see [`timing`]).
    fn start_of(
        kind: super::model::CommandKind,
        at: Option<f64>,
        now: u64,
        entry: Option<&Entry>,
    ) -> u64 {
        let lead = kind
            .starts_playback()
            .then(|| timing::lead_ms(entry.and_then(Entry::worst_rtt)));
        timing::schedule(now, at, lead)
    }

    /// The acknowledgement of a host command: the timeline it set.
    fn command_reply(play: &PlayState, now: u64) -> Reply {
        Reply::Command {
            current_time: play.time,
            server_time: now,
            start_at: play.start_at,
            playback_rate: play.rate,
        }
    }

    /// `time_sync`: records the client's last round-trip time and answers with the server's
    /// clock when the probe arrived (`received`) and now.
    pub(crate) fn time_sync(
        &self,
        conn: &Connection,
        t0: f64,
        rtt: Option<f64>,
        received: f64,
    ) -> Reply {
        if let Some(rtt) = rtt {
            conn.rtts().record(rtt);
        }
        Reply::Time {
            t0,
            t1: received,
            t2: crate::clock::precise_ms(),
        }
    }

    /// `get_room_state`: the room's state, sent as `room_state`.
    pub(crate) async fn state(
        &self,
        conn: &Arc<Connection>,
        room: RoomId,
    ) -> Result<Reply, Invalid> {
        let view = match self.read_shared(&room.key).await {
            Some(Ok(Some(fact))) => fact.parts().for_client(&room.raw, now_ms()),
            Some(Ok(None)) => return Err(Invalid::room_not_found(&room)),
            Some(Err(_)) | None => {
                let slot = self.registry.slot(&room.key);
                let guard = match &slot {
                    Some(slot) => slot.lock().await,
                    None => return Err(Invalid::room_not_found(&room)),
                };
                let Some(entry) = guard.as_ref() else {
                    return Err(Invalid::room_not_found(&room));
                };
                entry.parts().for_client(&room.raw, now_ms())
            }
        };
        self.out
            .to_member(conn.member(), ServerEvent::RoomState, &view);
        Ok(Reply::Room(view))
    }

    /// The shared room `key` (`None` when rooms are not shared now).
    pub(super) async fn read_shared(
        &self,
        key: &str,
    ) -> Option<crate::cluster::Result<Option<Fact>>> {
        let bp = self.shared()?;
        Some(shared::read(bp, key).await)
    }

    /// Removes the connection from its room (on disconnect, or before it creates or joins
    /// another one): hands the host role over and deletes the room if it is now empty.
    pub(crate) async fn leave(&self, conn: &Arc<Connection>) {
        let Some(key) = conn.room().take() else {
            return;
        };
        let member = conn.member();
        self.out.leave(member, &key);
        let Some(slot) = self.registry.slot(&key) else {
            return;
        };
        let mut guard = slot.lock().await;
        let Some(entry) = guard.as_mut() else {
            return;
        };
        let now = now_ms();
        if let Some(bp) = self.shared()
            && let Ok(outcome) = shared::leave(bp, &key, member, None, now).await
        {
            entry.room.drop_member(member);
            entry.locals.remove(member);
            if let Outcome::Done(fact) = &outcome {
                self.apply_fact(entry, fact);
            }
            if entry.room.user_count() == 0 {
                self.registry.delete(&key, &slot, &mut guard);
                if matches!(outcome, Outcome::Deleted) {
                    tracing::info!(room = %key, "room deleted: its last member left");
                }
            }
            return;
        }
        entry.locals.remove(member);
        match entry.room.leave(member, now) {
            Departure::NotMember => {}
            Departure::Emptied => {
                self.registry.delete(&key, &slot, &mut guard);
                tracing::info!(room = %key, "room deleted: its last member left");
            }
            Departure::Left { new_host } => {
                self.changed_locally(entry);
                tracing::debug!(room = %key, %member, "member left");
                let change =
                    Change::membership(entry.room.user_count(), new_host.map(|host| (host, now)));
                self.apply(entry, &change);
            }
        }
    }

    /// The member ids of every connection this process has in a room.
    pub(super) async fn local_members(&self) -> std::collections::HashSet<MemberId> {
        let mut members = std::collections::HashSet::new();
        for (_, slot) in self.registry.slots() {
            if let Some(entry) = slot.lock().await.as_ref() {
                members.extend(entry.room.members().iter().cloned());
            }
        }
        members
    }
}

#[cfg(test)]
mod tests;
