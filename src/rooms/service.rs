//! [`Rooms`]: the live rooms of this process and the operations on them, with their emits.
//!
//! Owns the map of rooms this process serves and each connection's membership. Every change
//! to a room happens under that room's async lock, held across "apply + emit", so members
//! see the changes in the order they were applied. A connection's own events are already in
//! order (see [`crate::serial`]); the room lock orders events from different connections.
//!
//! With Redis (see [`crate::cluster`]) and while it is up, the shared state decides each
//! change and this map mirrors the rooms that have members connected here: their play state
//! and host as shared, their *local* members, and the shared member count. Emits follow from
//! the published facts. While Redis is down, the map is the whole truth for this instance
//! (as without Redis); rooms changed then are marked dirty and merged back when it returns.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::socket::Sid;
use tokio::sync::Mutex as AsyncMutex;

use super::hub::Hub;
use super::model::{Control, Departure, MemberId, PlaySnapshot, PlayState, Refusal, Room, RoomId};
use super::protocol::{ErrorCode, Invalid, Limits};
use crate::clock::now_ms;
use crate::cluster::Backplane;
use crate::cluster::rooms::{self as shared, Fact, LocalView, Outcome};
use crate::serial::SerialQueue;

/// A room as this process knows it.
#[derive(Debug)]
struct Entry {
    /// Its state; `members` are the members connected to this process.
    room: Room,
    /// Members across all instances (without Redis: the local members).
    count: usize,
    /// Version of the newest shared fact applied (0: never shared).
    version: u64,
    /// Changed while Redis was unavailable: to be merged into the shared state.
    dirty: bool,
}

impl Entry {
    fn local(room: Room) -> Self {
        Entry {
            count: room.user_count(),
            room,
            version: 0,
            dirty: false,
        }
    }

    /// A mirror of a shared room, with no local members yet and a count of 0, so applying
    /// the fact announces the count to the members about to join.
    fn mirror(fact: &Fact) -> Self {
        Entry {
            room: Room::shared(
                fact.room_id(),
                fact.created_at,
                fact.host.clone(),
                fact.host_since,
                fact.play(),
            ),
            count: 0,
            version: 0,
            dirty: false,
        }
    }
}

/// A room slot: `None` once the room is deleted, so a task that looked the slot up before
/// the deletion sees that the room is gone.
type Slot = Arc<AsyncMutex<Option<Entry>>>;

/// Per-connection state: its event queue and the room it is in (at most one).
pub struct Connection {
    pub sid: Sid,
    pub queue: Arc<SerialQueue>,
    room: Mutex<Option<String>>,
}

impl Connection {
    pub fn new(sid: Sid) -> Arc<Self> {
        Arc::new(Self {
            sid,
            queue: SerialQueue::new(),
            room: Mutex::new(None),
        })
    }

    fn member_id(&self) -> MemberId {
        self.sid.to_string()
    }

    fn room(&self) -> MutexGuard<'_, Option<String>> {
        self.room.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The result of a successful request, sent back as the acknowledgement (`ok: true` added).
pub type Reply = Value;

/// The rooms of this process.
pub struct Rooms {
    hub: Arc<Hub>,
    limits: Limits,
    rooms: Mutex<HashMap<String, Slot>>,
    backplane: Option<Backplane>,
}

/// The payload of a host command broadcast: the seed's fields plus `server_time`.
#[derive(Serialize)]
struct ControlEvent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    track: Option<&'a Value>,
    current_time: f64,
    server_time: u64,
}

/// The room object of `room_joined`, `room_state` and the HTTP API.
#[derive(Serialize)]
struct RoomView<'a> {
    /// HTTP's key for the id.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    /// Socket.IO's key for the id, echoed as the client wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    room_id: Option<&'a Value>,
    host_id: &'a str,
    user_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(flatten)]
    play: PlaySnapshot<'a>,
}

/// The parts a [`RoomView`] is made of, from a local entry or a shared fact.
struct Described<'a> {
    id: &'a Value,
    host: &'a str,
    count: usize,
    created_at: u64,
    play: PlayState,
}

impl<'a> Described<'a> {
    fn of_entry(e: &'a Entry) -> Self {
        Described {
            id: &e.room.id.raw,
            host: e.room.host(),
            count: e.count,
            created_at: e.room.created_at,
            play: e.room.play.clone(),
        }
    }

    fn of_fact(f: &'a Fact) -> Self {
        Described {
            id: &f.id,
            host: &f.host,
            count: f.count,
            created_at: f.created_at,
            play: f.play(),
        }
    }

    /// The view for a client that named the room `asked_as`.
    fn for_client(&'a self, asked_as: &'a Value, now: u64) -> RoomView<'a> {
        RoomView {
            id: None,
            room_id: Some(asked_as),
            host_id: self.host,
            user_count: self.count,
            created_at: None,
            play: self.play.snapshot(now),
        }
    }

    /// The seed's HTTP room object.
    fn for_http(&'a self, now: u64) -> RoomView<'a> {
        RoomView {
            id: Some(self.id),
            room_id: None,
            host_id: self.host,
            user_count: self.count,
            created_at: Some(crate::clock::rfc3339_ms(self.created_at)),
            play: self.play.snapshot(now),
        }
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn is_command(event: &str) -> bool {
    matches!(
        event,
        "track_change" | "play" | "pause" | "seek" | "sync_progress"
    )
}

/// What to do after a shared operation: its result, or "serve it from memory".
enum Shared<T> {
    Done(T),
    Local,
}

impl Rooms {
    pub fn new(hub: Arc<Hub>, limits: Limits, backplane: Option<Backplane>) -> Arc<Self> {
        Arc::new(Self {
            hub,
            limits,
            rooms: Mutex::new(HashMap::new()),
            backplane,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The backplane, when Redis is configured and up.
    fn shared(&self) -> Option<&Backplane> {
        self.backplane.as_ref().filter(|b| b.is_up())
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self, key: &str) -> Option<Slot> {
        self.map().get(key).cloned()
    }

    fn slots(&self) -> Vec<(String, Slot)> {
        self.map()
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }

    /// Removes the room's slot if it is still `slot` (not a newer room of the same name).
    fn forget(&self, key: &str, slot: &Slot) {
        let mut map = self.map();
        if map.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            map.remove(key);
        }
    }

    /// Records that `entry` changed without Redis, so it is merged when Redis is back.
    fn changed_locally(&self, entry: &mut Entry) {
        entry.dirty |= self.backplane.is_some();
    }

    /// Registers an empty slot for a new room, already locked so nobody sees the room half
    /// made. `None` if the key is taken.
    async fn claim_slot(
        &self,
        key: &str,
    ) -> Option<(Slot, tokio::sync::OwnedMutexGuard<Option<Entry>>)> {
        let slot: Slot = Arc::new(AsyncMutex::new(None));
        let guard = slot.clone().lock_owned().await;
        let mut map = self.map();
        if map.contains_key(key) {
            return None;
        }
        map.insert(key.to_owned(), slot.clone());
        Some((slot, guard))
    }

    /// Number of live rooms (across instances while Redis is up).
    pub async fn count(&self) -> usize {
        if let Some(bp) = self.shared()
            && let Ok(n) = shared::count(bp).await
        {
            return n;
        }
        self.map().len()
    }

    /// `create_room`: leaves the current room, then creates `room` with the caller as host.
    pub async fn create(
        &self,
        conn: &Connection,
        room: RoomId,
        track: Value,
        time: f64,
    ) -> Result<Reply, Invalid> {
        if conn.room().as_deref() == Some(room.key.as_str()) || self.slot(&room.key).is_some() {
            return Err(room_exists(&room));
        }
        if let Shared::Done(result) = self.create_shared(conn, &room, &track, time).await {
            return result;
        }
        self.leave(conn).await;
        let member = conn.member_id();
        let Some((_, mut guard)) = self.claim_slot(&room.key).await else {
            return Err(room_exists(&room));
        };
        let created = Room::create(room.clone(), member.clone(), track, time, now_ms());
        let entry = guard.insert(Entry::local(created));
        self.changed_locally(entry);
        *conn.room() = Some(room.key.clone());
        self.hub.join(conn.sid, &room.key);
        tracing::info!(room = %room.key, host = %member, "room created");
        let reply = json!({"room_id": room.raw, "user_count": 1, "host_id": member});
        self.hub.emit_to(conn.sid, "room_created", &reply);
        self.announce_users(&room.key, entry.count).await;
        Ok(reply)
    }

    async fn create_shared(
        &self,
        conn: &Connection,
        room: &RoomId,
        track: &Value,
        time: f64,
    ) -> Shared<Result<Reply, Invalid>> {
        let Some(bp) = self.shared() else {
            return Shared::Local;
        };
        // Checked first, so a refused create leaves the caller in its room.
        match shared::read(bp, &room.key).await {
            Ok(Some(_)) => return Shared::Done(Err(room_exists(room))),
            Ok(None) => {}
            Err(_) => return Shared::Local,
        }
        self.leave(conn).await;
        let member = conn.member_id();
        // The room's lock is held across the script, so its published fact, coming back
        // through the subscription, waits until this instance has applied it.
        let Some((slot, mut guard)) = self.claim_slot(&room.key).await else {
            return Shared::Done(Err(room_exists(room)));
        };
        let fact = match shared::create(bp, room, &member, track, time, now_ms()).await {
            Ok(Outcome::Done(fact)) => fact,
            other => {
                self.forget(&room.key, &slot);
                return match other {
                    Err(_) => Shared::Local,
                    Ok(_) => Shared::Done(Err(room_exists(room))),
                };
            }
        };
        let entry = guard.insert(Entry::mirror(&fact));
        entry.room.join(member.clone());
        *conn.room() = Some(room.key.clone());
        self.hub.join(conn.sid, &room.key);
        tracing::info!(room = %room.key, host = %member, "room created (shared)");
        let reply = json!({"room_id": room.raw, "user_count": fact.count, "host_id": member});
        self.hub.emit_to(conn.sid, "room_created", &reply);
        self.apply_fact(entry, &fact).await;
        Shared::Done(Ok(reply))
    }

    /// `join_room`: leaves the current room (if another), then joins `room`.
    pub async fn join(&self, conn: &Connection, room: RoomId) -> Result<Reply, Invalid> {
        if let Shared::Done(result) = self.join_shared(conn, &room).await {
            return result;
        }
        let already_in = conn.room().as_deref() == Some(room.key.as_str());
        if !already_in {
            if self.slot(&room.key).is_none() {
                return Err(room_not_found(&room));
            }
            self.leave(conn).await;
        }
        let Some(slot) = self.slot(&room.key) else {
            return Err(room_not_found(&room));
        };
        let mut guard = slot.lock().await;
        let Some(entry) = guard.as_mut() else {
            return Err(room_not_found(&room));
        };
        let member = conn.member_id();
        let newly_joined = entry.room.join(member.clone());
        if newly_joined {
            entry.count = entry.room.user_count();
            self.changed_locally(entry);
            *conn.room() = Some(room.key.clone());
            self.hub.join(conn.sid, &room.key);
            tracing::debug!(room = %room.key, member = %member, users = entry.count, "member joined");
        }
        let described = Described::of_entry(entry);
        let view = described.for_client(&room.raw, now_ms());
        self.hub.emit_to(conn.sid, "room_joined", &view);
        if newly_joined {
            self.announce_users(&room.key, entry.count).await;
        }
        if !entry.room.play.track.is_null() {
            self.hub.emit_to(conn.sid, "sync_state", &view.play);
        }
        Ok(to_value(&view))
    }

    async fn join_shared(
        &self,
        conn: &Connection,
        room: &RoomId,
    ) -> Shared<Result<Reply, Invalid>> {
        let Some(bp) = self.shared() else {
            return Shared::Local;
        };
        self.reconcile_key(&room.key).await;
        if conn.room().as_deref() != Some(room.key.as_str()) {
            // Checked first, so a refused join leaves the caller in its room.
            match shared::read(bp, &room.key).await {
                Ok(Some(_)) => {}
                Ok(None) => return Shared::Done(Err(room_not_found(room))),
                Err(_) => return Shared::Local,
            }
            self.leave(conn).await;
        }
        let member = conn.member_id();
        let slot = self
            .map()
            .entry(room.key.clone())
            .or_insert_with(|| Arc::new(AsyncMutex::new(None)))
            .clone();
        let mut guard = slot.lock().await;
        let fact = match shared::join(bp, &room.key, &member).await {
            Ok(Outcome::Done(fact) | Outcome::Unchanged(fact)) => fact,
            other => {
                if guard.is_none() {
                    self.forget(&room.key, &slot);
                }
                return match other {
                    Err(_) => Shared::Local,
                    Ok(_) => Shared::Done(Err(room_not_found(room))),
                };
            }
        };
        let entry = guard.get_or_insert_with(|| Entry::mirror(&fact));
        if entry.room.join(member.clone()) {
            *conn.room() = Some(room.key.clone());
            self.hub.join(conn.sid, &room.key);
            tracing::debug!(room = %room.key, member = %member, users = fact.count, "member joined (shared)");
        }
        let described = Described::of_fact(&fact);
        let view = described.for_client(&room.raw, now_ms());
        self.hub.emit_to(conn.sid, "room_joined", &view);
        self.apply_fact(entry, &fact).await;
        if !fact.track.is_null() {
            self.hub.emit_to(conn.sid, "sync_state", &view.play);
        }
        Shared::Done(Ok(to_value(&view)))
    }

    /// A host command: applied and broadcast to the other members, or refused (not the
    /// host, no such room) with nothing changed.
    pub async fn control(
        &self,
        conn: &Connection,
        room: RoomId,
        cmd: Control,
    ) -> Result<Reply, Invalid> {
        if let Shared::Done(result) = self.control_shared(conn, &room, &cmd).await {
            return result;
        }
        let Some(slot) = self.slot(&room.key) else {
            return Err(room_not_found(&room));
        };
        let mut guard = slot.lock().await;
        let Some(entry) = guard.as_mut() else {
            return Err(room_not_found(&room));
        };
        let event = cmd.event();
        let now = now_ms();
        let time = entry
            .room
            .control(conn.member_id().as_str(), cmd, now)
            .map_err(|Refusal::NotHost| not_host())?;
        self.changed_locally(entry);
        let payload = ControlEvent {
            track: (event == "track_change").then_some(&entry.room.play.track),
            current_time: time,
            server_time: now,
        };
        tracing::trace!(room = %room.key, event, time, "host command");
        self.hub
            .emit_room(&room.key, Some(conn.sid), event, &payload)
            .await;
        Ok(json!({"current_time": time, "server_time": now}))
    }

    async fn control_shared(
        &self,
        conn: &Connection,
        room: &RoomId,
        cmd: &Control,
    ) -> Shared<Result<Reply, Invalid>> {
        let Some(bp) = self.shared() else {
            return Shared::Local;
        };
        self.reconcile_key(&room.key).await;
        let (time, track) = match cmd {
            Control::TrackChange { track } => (None, Some(track)),
            Control::Play { time } | Control::Pause { time } => (*time, None),
            Control::Seek { time } | Control::SyncProgress { time } => (Some(*time), None),
        };
        let member = conn.member_id();
        let slot = self.slot(&room.key);
        let mut guard = match &slot {
            Some(slot) => Some(slot.lock().await),
            None => None,
        };
        let outcome =
            shared::control(bp, &room.key, &member, cmd.event(), time, track, now_ms()).await;
        let fact = match outcome {
            Ok(Outcome::Done(fact)) => fact,
            Ok(Outcome::Refused(why)) if why == "not_host" => return Shared::Done(Err(not_host())),
            Ok(_) => return Shared::Done(Err(room_not_found(room))),
            Err(_) => return Shared::Local,
        };
        if let Some(entry) = guard.as_mut().and_then(|g| g.as_mut()) {
            self.apply_fact(entry, &fact).await;
        }
        Shared::Done(Ok(
            json!({"current_time": fact.time, "server_time": fact.updated_at}),
        ))
    }

    /// `get_room_state`: the room's state as `room_state`.
    pub async fn state(&self, conn: &Connection, room: RoomId) -> Result<Reply, Invalid> {
        let now = now_ms();
        let reply = match self.read_shared(&room.key).await {
            Shared::Done(Some(fact)) => {
                to_value(&Described::of_fact(&fact).for_client(&room.raw, now))
            }
            Shared::Done(None) => return Err(room_not_found(&room)),
            Shared::Local => {
                let Some(slot) = self.slot(&room.key) else {
                    return Err(room_not_found(&room));
                };
                let guard = slot.lock().await;
                let Some(entry) = guard.as_ref() else {
                    return Err(room_not_found(&room));
                };
                to_value(&Described::of_entry(entry).for_client(&room.raw, now))
            }
        };
        self.hub.emit_to(conn.sid, "room_state", &reply);
        Ok(reply)
    }

    async fn read_shared(&self, key: &str) -> Shared<Option<Fact>> {
        match self.shared() {
            Some(bp) => match shared::read(bp, key).await {
                Ok(found) => Shared::Done(found),
                Err(_) => Shared::Local,
            },
            None => Shared::Local,
        }
    }

    /// Removes the connection from its room (on disconnect, or before it creates or joins
    /// another one): hands the host role over and deletes the room if it is now empty.
    pub async fn leave(&self, conn: &Connection) {
        let Some(key) = conn.room().take() else {
            return;
        };
        self.hub.leave(conn.sid, &key);
        let member = conn.member_id();
        let Some(slot) = self.slot(&key) else {
            return;
        };
        let mut guard = slot.lock().await;
        let Some(entry) = guard.as_mut() else {
            return;
        };
        if let Some(bp) = self.shared()
            && let Ok(outcome) = shared::leave(bp, &key, &member, None, now_ms()).await
        {
            entry.room.drop_member(&member);
            if let Outcome::Done(fact) = &outcome {
                self.apply_fact(entry, fact).await;
            }
            if entry.room.user_count() == 0 {
                *guard = None;
                self.forget(&key, &slot);
                if matches!(outcome, Outcome::Deleted) {
                    tracing::info!(room = %key, "room deleted: its last member left");
                }
            }
            return;
        }
        match entry.room.leave(&member, now_ms()) {
            Departure::NotMember => {}
            Departure::Emptied => {
                *guard = None;
                self.forget(&key, &slot);
                tracing::info!(room = %key, "room deleted: its last member left");
            }
            Departure::Left { new_host } => {
                entry.count = entry.room.user_count();
                self.changed_locally(entry);
                tracing::debug!(room = %key, member = %member, users = entry.count, "member left");
                if let Some(host) = new_host {
                    tracing::info!(room = %key, host = %host, "host handed over");
                    self.hub.emit_to_member(
                        &host,
                        "become_host",
                        &json!({"room_id": entry.room.id.raw}),
                    );
                }
                self.announce_users(&key, entry.count).await;
            }
        }
    }

    /// Applies a shared fact to a local entry and tells the local members what changed.
    /// Facts older than the entry's state are ignored.
    async fn apply_fact(&self, entry: &mut Entry, fact: &Fact) {
        if fact.version <= entry.version {
            return;
        }
        entry.version = fact.version;
        let count_changed = entry.count != fact.count;
        let host_changed = entry.room.host() != fact.host;
        let play = fact.play();
        let play_changed = entry.room.play != play;
        entry.count = fact.count;
        entry.room.set_host(fact.host.clone(), fact.host_since);
        entry.room.play = play;
        let key = &fact.room;
        if host_changed && entry.room.is_member(&fact.host) {
            tracing::info!(room = %key, host = %fact.host, "host handed over");
            self.hub.emit_to_member(
                &fact.host,
                "become_host",
                &json!({"room_id": entry.room.id.raw}),
            );
        }
        if count_changed {
            self.announce_users(key, fact.count).await;
        }
        if is_command(&fact.event) {
            let payload = ControlEvent {
                track: (fact.event == "track_change").then_some(&fact.track),
                current_time: fact.time,
                server_time: fact.updated_at,
            };
            let sender = fact.sender.parse::<Sid>().ok();
            self.hub.emit_room(key, sender, &fact.event, &payload).await;
        } else if play_changed {
            // A command this instance did not see (it was overtaken): the state itself.
            self.hub
                .emit_room(key, None, "sync_state", &entry.room.play.snapshot(now_ms()))
                .await;
        }
    }

    /// A fact published by another instance (or by a sweep of a dead one).
    pub async fn apply_remote(&self, fact: Fact) {
        let Some(slot) = self.slot(&fact.room) else {
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
                *guard = None;
                self.forget(&fact.room, &slot);
            }
            return;
        }
        if entry.dirty {
            // Changes made here without Redis are not merged yet; applying the shared state
            // now would overwrite them. The merge publishes a newer fact with both.
            return;
        }
        self.apply_fact(entry, &fact).await;
    }

    /// Redis went away: every room is served from this process alone. A room whose host is
    /// connected elsewhere gets a local host (the longest-present local member).
    pub async fn localize_all(&self) {
        for (key, slot) in self.slots() {
            let mut guard = slot.lock().await;
            let Some(entry) = guard.as_mut() else {
                continue;
            };
            entry.dirty = true;
            let count = entry.room.user_count();
            if let Some(host) = entry.room.localize(now_ms()) {
                tracing::info!(room = %key, host = %host, "host is local while redis is down");
                self.hub.emit_to_member(
                    &host,
                    "become_host",
                    &json!({"room_id": entry.room.id.raw}),
                );
            }
            if entry.count != count {
                entry.count = count;
                self.announce_users(&key, count).await;
            }
        }
    }

    /// Marks every room for merging into the shared state.
    pub async fn mark_all_dirty(&self) {
        for (_, slot) in self.slots() {
            if let Some(entry) = slot.lock().await.as_mut() {
                entry.dirty = true;
            }
        }
    }

    /// Merges every room changed without Redis into the shared state.
    pub async fn reconcile_dirty(&self) {
        for (key, _) in self.slots() {
            if self.shared().is_none() {
                return;
            }
            self.reconcile_key(&key).await;
        }
    }

    /// Merges the room `key` into the shared state if it changed without Redis.
    async fn reconcile_key(&self, key: &str) {
        let (Some(bp), Some(slot)) = (self.shared(), self.slot(key)) else {
            return;
        };
        let mut guard = slot.lock().await;
        let Some(entry) = guard.as_mut().filter(|e| e.dirty) else {
            return;
        };
        let view = LocalView {
            id: &entry.room.id,
            created_at: entry.room.created_at,
            play: &entry.room.play,
            host: entry.room.host(),
            host_since: entry.room.host_since(),
            members: entry.room.members(),
        };
        match shared::reconcile(bp, view).await {
            Ok(Outcome::Done(fact)) => {
                entry.dirty = false;
                tracing::info!(room = %key, users = fact.count, "room merged into the shared state");
                self.apply_fact(entry, &fact).await;
            }
            Ok(_) => {
                *guard = None;
                self.forget(key, &slot);
            }
            Err(e) => tracing::debug!(room = %key, error = %e, "room not merged yet"),
        }
    }

    /// Every member connected to this process, in any room.
    pub async fn local_members(&self) -> HashSet<MemberId> {
        let mut members = HashSet::new();
        for (_, slot) in self.slots() {
            if let Some(entry) = slot.lock().await.as_ref() {
                members.extend(entry.room.members().iter().cloned());
            }
        }
        members
    }

    /// The seed's room object for HTTP: `{id, host_id, user_count, created_at,
    /// current_track, is_playing, current_time}` plus `server_time`.
    pub async fn info(&self, key: &str) -> Option<Value> {
        let now = now_ms();
        match self.read_shared(key).await {
            Shared::Done(found) => found.map(|f| to_value(&Described::of_fact(&f).for_http(now))),
            Shared::Local => {
                let slot = self.slot(key)?;
                let guard = slot.lock().await;
                guard
                    .as_ref()
                    .map(|e| to_value(&Described::of_entry(e).for_http(now)))
            }
        }
    }

    /// Every live room, as [`Rooms::info`].
    pub async fn list(&self) -> Vec<Value> {
        let now = now_ms();
        if let Some(bp) = self.shared()
            && let Ok(facts) = shared::list(bp).await
        {
            return facts
                .iter()
                .map(|f| to_value(&Described::of_fact(f).for_http(now)))
                .collect();
        }
        let mut rooms = Vec::new();
        for (_, slot) in self.slots() {
            if let Some(e) = slot.lock().await.as_ref() {
                rooms.push(to_value(&Described::of_entry(e).for_http(now)));
            }
        }
        rooms
    }

    /// A copy of every room of this process (local members only, with Redis).
    pub async fn snapshot(&self) -> Vec<Room> {
        let mut rooms = Vec::new();
        for (_, slot) in self.slots() {
            if let Some(e) = slot.lock().await.as_ref() {
                rooms.push(e.room.clone());
            }
        }
        rooms
    }

    /// The room the connection is in, if any.
    pub fn room_of(&self, conn: &Connection) -> Option<String> {
        conn.room().clone()
    }

    /// Deletes rooms left without members. Rooms are deleted when their last member leaves,
    /// so this only catches what slipped through; returns how many it removed.
    /// `room_users`: the room's member count, to every local member.
    async fn announce_users(&self, key: &str, count: usize) {
        self.hub
            .emit_room(key, None, "room_users", &json!({"count": count}))
            .await;
    }

    pub async fn sweep(&self) -> usize {
        let mut removed = 0;
        for (key, slot) in self.slots() {
            let mut guard = slot.lock().await;
            if guard.as_ref().is_none_or(|e| e.room.user_count() == 0) {
                *guard = None;
                self.forget(&key, &slot);
                removed += 1;
                tracing::info!(room = %key, "room deleted by the sweep: it was empty");
            }
        }
        removed
    }
}

fn not_host() -> Invalid {
    Invalid::new(
        ErrorCode::NotHost,
        "only the room's host can control playback",
    )
}

fn room_exists(room: &RoomId) -> Invalid {
    Invalid::new(
        ErrorCode::RoomExists,
        format!("room {} already exists", room.key),
    )
}

fn room_not_found(room: &RoomId) -> Invalid {
    Invalid::new(
        ErrorCode::RoomNotFound,
        format!("room {} does not exist", room.key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rooms() -> Arc<Rooms> {
        // A Socket.IO instance with no sockets: emits reach nobody, the logic is real.
        let (_svc, io) = socketioxide::SocketIo::builder().build_svc();
        Rooms::new(
            Hub::new(io),
            Limits {
                max_track_bytes: 1024,
            },
            None,
        )
    }

    #[derive(Debug, Clone)]
    enum Op {
        Create { conn: usize, room: u8 },
        Join { conn: usize, room: u8 },
        Leave { conn: usize },
        Command { conn: usize, room: u8, time: u16 },
        Sweep,
    }

    const CONNS: usize = 6;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..CONNS, 0..4u8).prop_map(|(conn, room)| Op::Create { conn, room }),
            (0..CONNS, 0..4u8).prop_map(|(conn, room)| Op::Join { conn, room }),
            (0..CONNS).prop_map(|conn| Op::Leave { conn }),
            (0..CONNS, 0..4u8, 0..1000u16).prop_map(|(conn, room, time)| Op::Command {
                conn,
                room,
                time
            }),
            Just(Op::Sweep),
        ]
    }

    async fn check_invariants(rooms: &Rooms, conns: &[Arc<Connection>]) {
        let snapshot = rooms.snapshot().await;
        for r in &snapshot {
            assert!(r.user_count() > 0, "empty room {} survived", r.id.key);
            assert!(
                r.is_member(r.host()),
                "host of {} is not a member",
                r.id.key
            );
        }
        for c in conns {
            let member = c.sid.to_string();
            let rooms_in: Vec<&str> = snapshot
                .iter()
                .filter(|r| r.is_member(&member))
                .map(|r| r.id.key.as_str())
                .collect();
            assert!(rooms_in.len() <= 1, "{member} is in {rooms_in:?}");
            assert_eq!(
                rooms_in.first().map(|k| k.to_string()),
                rooms.room_of(c),
                "membership record disagrees"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn invariants_hold_for_any_sequence(ops in proptest::collection::vec(op(), 1..60)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let rooms = rooms();
                let conns: Vec<Arc<Connection>> = (0..CONNS).map(|_| Connection::new(Sid::new())).collect();
                for op in ops {
                    match op {
                        Op::Create { conn, room } => {
                            let _ = rooms.create(&conns[conn], RoomId::from_key(room.to_string()), Value::Null, 0.0).await;
                        }
                        Op::Join { conn, room } => {
                            let _ = rooms.join(&conns[conn], RoomId::from_key(room.to_string())).await;
                        }
                        Op::Leave { conn } => rooms.leave(&conns[conn]).await,
                        Op::Command { conn, room, time } => {
                            let key = room.to_string();
                            let before = rooms.snapshot().await.into_iter().find(|r| r.id.key == key);
                            let result = rooms
                                .control(&conns[conn], RoomId::from_key(key.clone()), Control::Seek { time: f64::from(time) })
                                .await;
                            let after = rooms.snapshot().await.into_iter().find(|r| r.id.key == key);
                            match before {
                                Some(b) if b.host() == conns[conn].sid.to_string() => {
                                    assert!(result.is_ok());
                                    assert_eq!(after.map(|a| a.play.time), Some(f64::from(time)));
                                }
                                before => {
                                    assert!(result.is_err());
                                    assert_eq!(before, after, "a non-host changed the room");
                                }
                            }
                        }
                        Op::Sweep => {
                            assert_eq!(rooms.sweep().await, 0, "the sweep found an empty room");
                        }
                    }
                    check_invariants(&rooms, &conns).await;
                }
            });
        }
    }

    #[tokio::test]
    async fn sweep_deletes_rooms_left_empty() {
        let rooms = rooms();
        let conn = Connection::new(Sid::new());
        rooms
            .create(&conn, RoomId::from_key("r"), Value::Null, 0.0)
            .await
            .unwrap();
        // Empty the room behind the service's back, as a bug elsewhere might.
        let slot = rooms.slot("r").unwrap();
        slot.lock()
            .await
            .as_mut()
            .unwrap()
            .room
            .leave(&conn.member_id(), 0);
        assert_eq!(rooms.count().await, 1);
        assert_eq!(rooms.sweep().await, 1);
        assert_eq!(rooms.count().await, 0);
        assert_eq!(rooms.sweep().await, 0);
    }
}
