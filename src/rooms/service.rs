//! [`Rooms`]: the room requests of this process, as one pipeline. Each request is *decided*
//! into a typed [`Change`]: by the room model when this instance is alone (no Redis, or
//! Redis down), by a Redis script ([`super::shared`]) when rooms are shared. Then
//! [`Rooms::apply`] (in [`super::apply`]) turns the change into state and emits, the same way
//! whoever decided it. Local and shared differ only in who decides.
//!
//! This file holds entering and leaving rooms; [`super::commands`] the requests of members
//! in a room; [`super::presence`] connections that drop and come back.
//!
//! A request runs under its room's lock (see [`super::registry`]); a connection's own
//! requests arrive in order. A refused request changes nothing: a new room is claimed before
//! its creator leaves its previous room.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::access::Secret;
use super::model::{Change, Departure, MemberId, RoomId};
use super::protocol::{ErrorCode, Invalid, Limits, RoomOptions, ServerEvent};
use super::registry::{Connection, Entry, Registry};
use super::room::{Room, Settings};
use super::roster::Member;
use super::shared::{self, Fact, Outcome};
use super::views::Reply;
use crate::clock::now_ms;
use crate::cluster::Backplane;

/// What rooms allow, and how long they wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoomsConfig {
    pub(crate) limits: Limits,
    /// Rooms at most (across every instance with Redis).
    pub(crate) max_rooms: usize,
    /// Members per room at most.
    pub(crate) max_members: usize,
    /// How long a member whose connection dropped (with a `client_id`) stays, away.
    pub(crate) resume_grace: Duration,
    /// How long a start in a wait-for-ready room waits for members to be ready.
    pub(crate) ready_timeout: Duration,
}

/// The rooms of this process.
pub(crate) struct Rooms {
    pub(super) config: RoomsConfig,
    pub(super) registry: Registry,
    pub(super) backplane: Option<Backplane>,
}

impl Rooms {
    pub(crate) fn new(config: RoomsConfig, backplane: Option<Backplane>) -> Arc<Self> {
        Arc::new(Self {
            config,
            registry: Registry::default(),
            backplane,
        })
    }

    pub(crate) fn limits(&self) -> Limits {
        self.config.limits
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
            if let Some(deadline) = fact.wait_deadline() {
                self.registry.timers.wait_end(&entry.room.id.key, deadline);
            }
            self.apply(entry, &change);
        }
    }

    /// `create_room`: claims `room` with the caller as host, then leaves the caller's
    /// previous room. Refused (`room_exists`, `too_many_rooms`) with nothing changed.
    pub(crate) async fn create(
        &self,
        conn: &Arc<Connection>,
        room: RoomId,
        track: Value,
        time: f64,
        name: Option<String>,
        options: RoomOptions,
    ) -> Result<Reply, Invalid> {
        if conn.is_in(&room.key) || self.registry.contains(&room.key) {
            return Err(Invalid::room_exists(&room));
        }
        if self.shared().is_none() && self.registry.len() >= self.config.max_rooms {
            return Err(too_many_rooms());
        }
        // Claimed (and locked) here first, so nobody sees the room half made.
        let Some((slot, mut guard)) = self.registry.claim(&room.key).await else {
            return Err(Invalid::room_exists(&room));
        };
        let member = conn.member().clone();
        let now = now_ms();
        let settings = Settings {
            wait_for_ready: options.wait_for_ready,
            control: options.control,
            password: options.password.as_deref().map(Secret::new),
            lists_members: options != RoomOptions::default()
                || name.is_some()
                || conn.client().is_some(),
        };
        let name = name.map(Arc::from);
        let decided = match self.shared() {
            Some(bp) => {
                let args = shared::CreateArgs {
                    room: &room,
                    member: &member,
                    name: name.as_deref(),
                    client: conn.client(),
                    track: &track,
                    time,
                    now,
                    settings: &settings,
                    max_rooms: self.config.max_rooms,
                };
                match shared::create(bp, args).await {
                    Ok(Outcome::Done(fact)) => Some(fact),
                    Ok(refused) => {
                        self.registry.forget(&room.key, &slot);
                        return Err(match refused {
                            Outcome::Refused(why) if why == "too_many_rooms" => too_many_rooms(),
                            _ => Invalid::room_exists(&room),
                        });
                    }
                    Err(_) => None, // Redis failed: decided here instead
                }
            }
            None => None,
        };
        // The claim holds: only now does the caller leave its previous room.
        self.leave(conn).await;
        let mut new_room = match &decided {
            Some(fact) => fact.mirror(),
            None => Room::create(room.clone(), member.clone(), track, time, now),
        };
        new_room.settings = settings;
        new_room.drop_member(&member);
        new_room.join_as(record(conn, name));
        let entry = guard.insert(Entry::new(new_room));
        self.entered(entry, conn, &room.key);
        tracing::info!(room = %room.key, host = %member, shared = decided.is_some(), "room created");
        let reply = Reply::Created {
            room_id: room.raw.clone(),
            user_count: decided.as_ref().map_or(1, |f| f.count),
            host_id: member.clone(),
            member_id: member.clone(),
        };
        conn.send(ServerEvent::RoomCreated, &reply);
        match &decided {
            Some(fact) => self.apply_fact(entry, fact),
            None => {
                self.changed_locally(entry);
                self.apply(entry, &Change::membership(1, None));
            }
        }
        Ok(reply)
    }

    /// `join_room`: checks the password and the room's size, leaves the current room (if
    /// another), then joins `room`. Joining the room one is in again just answers
    /// `room_joined`.
    pub(crate) async fn join(
        &self,
        conn: &Arc<Connection>,
        room: RoomId,
        name: Option<String>,
        password: Option<String>,
    ) -> Result<Reply, Invalid> {
        // When Redis fails (`Err`), the join is decided here instead.
        if let Some(bp) = self.shared()
            && let Ok(result) = self
                .join_shared(bp, conn, &room, name.clone(), password.as_deref())
                .await
        {
            return result;
        }
        if !conn.is_in(&room.key) {
            // Checked first, so a refused join leaves the caller in its room.
            let slot = self
                .registry
                .slot(&room.key)
                .ok_or_else(|| Invalid::room_not_found(&room))?;
            {
                let guard = slot.lock().await;
                let entry = guard
                    .as_ref()
                    .ok_or_else(|| Invalid::room_not_found(&room))?;
                self.admit(
                    conn,
                    entry.room.settings.password.as_ref(),
                    password.as_deref(),
                )?;
                if entry.room.user_count() >= self.config.max_members {
                    return Err(room_full(&room));
                }
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
        let joined = entry
            .room
            .join_as(record(conn, name.clone().map(Arc::from)));
        let change = joined.then(|| Change::membership(entry.room.user_count(), None));
        if joined {
            entry.room.settings.lists_members |= name.is_some() || conn.client().is_some();
            self.changed_locally(entry);
            self.entered(entry, conn, &room.key);
        }
        let mut view = entry.client_view(&room.raw, now_ms(), true);
        view.member_id = Some(conn.member().clone());
        if let Some(count) = change.as_ref().and_then(|c| c.count) {
            view.user_count = count;
        }
        conn.send(ServerEvent::RoomJoined, &view);
        if let Some(change) = &change {
            self.apply(entry, change);
        }
        if let Some(play) = view.play.as_ref().filter(|p| !p.current_track.is_null()) {
            conn.send(ServerEvent::SyncState, play);
        }
        Ok(Reply::Room(view))
    }

    /// The shared decision of a join; `Err(())` when Redis failed.
    async fn join_shared(
        &self,
        bp: &Backplane,
        conn: &Arc<Connection>,
        room: &RoomId,
        name: Option<String>,
        password: Option<&str>,
    ) -> Result<Result<Reply, Invalid>, ()> {
        self.reconcile_key(&room.key).await;
        if !conn.is_in(&room.key) {
            // Checked first, so a refused join leaves the caller in its room.
            let stored = match shared::read(bp, &room.key).await {
                Ok(Some(stored)) => stored,
                Ok(None) => return Ok(Err(Invalid::room_not_found(room))),
                Err(_) => return Err(()),
            };
            if let Err(refused) = self.admit(conn, stored.password.as_ref(), password) {
                return Ok(Err(refused));
            }
            self.leave(conn).await;
        }
        let member = conn.member();
        let slot = self.registry.slot_or_empty(&room.key);
        let mut guard = slot.lock().await;
        let args = shared::JoinArgs {
            room: &room.key,
            member,
            name: name.as_deref(),
            client: conn.client(),
            max_members: self.config.max_members,
        };
        let fact = match shared::join(bp, args).await {
            Ok(Outcome::Done(fact) | Outcome::Unchanged(fact)) => fact,
            other => {
                if guard.is_none() {
                    self.registry.forget(&room.key, &slot);
                }
                return match other {
                    Err(_) => Err(()),
                    Ok(Outcome::Refused(why)) if why == "room_full" => Ok(Err(room_full(room))),
                    Ok(_) => Ok(Err(Invalid::room_not_found(room))),
                };
            }
        };
        let entry = guard.get_or_insert_with(|| Entry::new(fact.mirror()));
        if entry.room.join_as(record(conn, name.map(Arc::from))) {
            self.entered(entry, conn, &room.key);
        }
        let mut view = fact.client_view(&room.raw, now_ms(), true);
        view.member_id = Some(member.clone());
        conn.send(ServerEvent::RoomJoined, &view);
        self.apply_fact(entry, &fact);
        if let Some(play) = view.play.as_ref().filter(|p| !p.current_track.is_null()) {
            conn.send(ServerEvent::SyncState, play);
        }
        Ok(Ok(Reply::Room(view)))
    }

    /// Whether `conn` may enter a room protected by `secret` with `password`: a wrong
    /// password is refused, and so is a connection that guessed wrong too often.
    fn admit(
        &self,
        conn: &Connection,
        secret: Option<&Secret>,
        password: Option<&str>,
    ) -> Result<(), Invalid> {
        let Some(secret) = secret else {
            return Ok(());
        };
        let now = now_ms();
        let mut guesses = conn.guesses();
        if !guesses.allowed(now) {
            return Err(Invalid::new(
                ErrorCode::RateLimited,
                "too many wrong passwords: try again in a minute",
            ));
        }
        if password.is_some_and(|p| secret.verify(p)) {
            return Ok(());
        }
        guesses.wrong(now);
        Err(Invalid::new(
            ErrorCode::WrongPassword,
            "this room needs the right password",
        ))
    }

    /// Records that the connection is now in room `key`.
    pub(super) fn entered(&self, entry: &mut Entry, conn: &Arc<Connection>, key: &str) {
        let member = conn.member();
        entry.locals.insert(member.clone(), conn.clone());
        *conn.room() = Some(key.to_owned());
        if let Some(client) = conn.client() {
            self.registry.seat(client, key, member);
        }
        tracing::debug!(room = %key, %member, "member joined");
    }

    /// `leave_room`: leaves `room`, which must be the caller's. The connection stays open.
    pub(crate) async fn leave_room(
        &self,
        conn: &Arc<Connection>,
        room: RoomId,
    ) -> Result<Reply, Invalid> {
        if !conn.is_in(&room.key) {
            return Err(Invalid::new(
                ErrorCode::NotMember,
                format!("not in room {}", room.key),
            ));
        }
        self.leave(conn).await;
        Ok(Reply::Left { room_id: room.raw })
    }

    /// `get_room_state`: the room's state, sent as `room_state`. A password-protected room
    /// shows a non-member its member count and nothing more.
    pub(crate) async fn state(
        &self,
        conn: &Arc<Connection>,
        room: RoomId,
    ) -> Result<Reply, Invalid> {
        let member = conn.is_in(&room.key);
        let view = match self.read_shared(&room.key).await {
            Some(Ok(Some(fact))) => fact.client_view(&room.raw, now_ms(), member),
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
                entry.client_view(&room.raw, now_ms(), member)
            }
        };
        let mut view = view;
        if member {
            view.member_id = Some(conn.member().clone());
        }
        conn.send(ServerEvent::RoomState, &view);
        Ok(Reply::Room(view))
    }

    /// The shared room `key` (`None` when rooms are not shared now).
    pub(super) async fn read_shared(
        &self,
        key: &str,
    ) -> Option<crate::cluster::Result<Option<Fact>>> {
        let bp = self.shared()?;
        Some(shared::read(bp, key).await.map(|s| s.map(|s| s.fact)))
    }

    /// Removes the connection from its room (`leave_room`, a client's own disconnect, a
    /// dropped connection without a `client_id`, or before it creates or joins another
    /// room): hands the host role over and deletes the room if it is now empty.
    pub(crate) async fn leave(&self, conn: &Arc<Connection>) {
        let Some(key) = conn.room().take() else {
            return;
        };
        let member = conn.member();
        let Some(slot) = self.registry.slot(&key) else {
            return;
        };
        let mut guard = slot.lock().await;
        let Some(entry) = guard.as_mut() else {
            return;
        };
        if !entry
            .locals
            .get(member)
            .is_some_and(|c| Arc::ptr_eq(c, conn))
        {
            return; // another connection took this member over
        }
        entry.locals.remove(member);
        if let Some(client) = conn.client() {
            self.registry.unseat(client);
        }
        self.remove_member(&key, &slot, &mut guard, member, None)
            .await;
    }

    /// Removes `member` from the room held by `guard`: hands the host role over and deletes
    /// the room when it empties. With `expired_before`, only if the member has been away
    /// since before that instant (the end of its grace).
    pub(super) async fn remove_member(
        &self,
        key: &str,
        slot: &super::registry::Slot,
        guard: &mut Option<Entry>,
        member: &MemberId,
        expired_before: Option<u64>,
    ) {
        let Some(entry) = guard.as_mut() else {
            return;
        };
        let now = now_ms();
        if let Some(bp) = self.shared() {
            let owner = expired_before.map(|_| bp.instance());
            let outcome =
                shared::leave(bp, key, member, owner.as_deref(), now, expired_before).await;
            if let Ok(outcome) = outcome {
                entry.room.drop_member(member);
                if let Outcome::Done(fact) = &outcome {
                    self.apply_fact(entry, fact);
                }
                if entry.room.user_count() == 0 {
                    self.registry.delete(key, slot, guard);
                    if matches!(outcome, Outcome::Deleted) {
                        tracing::info!(room = %key, "room deleted: its last member left");
                    }
                }
                return;
            }
        }
        if expired_before.is_some_and(|before| {
            entry
                .room
                .roster()
                .get(member)
                .and_then(|m| m.away_since)
                .is_none_or(|since| since >= before)
        }) {
            return;
        }
        match entry.room.leave(member, now) {
            Departure::NotMember => {}
            Departure::Emptied => {
                self.registry.delete(key, slot, guard);
                tracing::info!(room = %key, "room deleted: its last member left");
            }
            Departure::Left { new_host } => {
                self.changed_locally(entry);
                tracing::debug!(room = %key, %member, "member left");
                let change =
                    Change::membership(entry.room.user_count(), new_host.map(|host| (host, now)));
                self.apply(entry, &change);
                self.settle_wait(entry, now);
            }
        }
    }

    /// The member ids of every member this process holds in a room.
    pub(super) async fn local_members(&self) -> std::collections::HashSet<MemberId> {
        let mut members = std::collections::HashSet::new();
        for (_, slot) in self.registry.slots() {
            if let Some(entry) = slot.lock().await.as_ref() {
                members.extend(entry.room.members().into_iter().cloned());
            }
        }
        members
    }
}

/// The room record of the member behind `conn`.
fn record(conn: &Connection, name: Option<Arc<str>>) -> Member {
    Member {
        client: conn.client().cloned(),
        ..Member::new(conn.member().clone(), name)
    }
}

fn too_many_rooms() -> Invalid {
    Invalid::new(
        ErrorCode::TooManyRooms,
        "the server has as many rooms as it allows",
    )
}

fn room_full(room: &RoomId) -> Invalid {
    Invalid::new(ErrorCode::RoomFull, format!("room {} is full", room.key))
}

#[cfg(test)]
mod tests;
