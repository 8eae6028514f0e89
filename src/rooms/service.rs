//! [`Rooms`]: the registry of live rooms and the operations on them, with their emits.
//!
//! Owns the map of rooms and each connection's membership. Every change to a room happens
//! under that room's async lock, held across "apply + emit", so the room's members see the
//! changes in the order they were applied. A connection's own events are already in order
//! (see [`crate::serial`]); the room lock orders events from different connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;
use tokio::sync::Mutex as AsyncMutex;

use super::model::{Control, Departure, MemberId, PlaySnapshot, Refusal, Room, RoomId};
use super::protocol::{ErrorCode, Invalid, Limits};
use crate::clock::now_ms;
use crate::serial::SerialQueue;

/// A room slot: `None` once the room is deleted, so a task that looked the slot up before
/// the deletion sees that the room is gone.
type Slot = Arc<AsyncMutex<Option<Room>>>;

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

/// The live rooms of this process.
pub struct Rooms {
    io: SocketIo,
    limits: Limits,
    rooms: Mutex<HashMap<String, Slot>>,
}

/// Socket.IO room name of a playsync room (prefixed so it never collides with a socket id).
fn channel(key: &str) -> String {
    format!("room:{key}")
}

/// The payload of a host command broadcast: the seed's fields plus `server_time`.
#[derive(Serialize)]
struct ControlEvent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    track: Option<&'a Value>,
    current_time: f64,
    server_time: u64,
}

impl Rooms {
    pub fn new(io: SocketIo, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            io,
            limits,
            rooms: Mutex::new(HashMap::new()),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self, key: &str) -> Option<Slot> {
        self.map().get(key).cloned()
    }

    /// Number of live rooms.
    pub fn count(&self) -> usize {
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
        self.leave(conn).await;
        let member = conn.member_id();
        let slot: Slot = Arc::new(AsyncMutex::new(None));
        // Hold the new room's lock before publishing it, so nobody sees it half made.
        let mut guard = slot.clone().lock_owned().await;
        {
            let mut map = self.map();
            if map.contains_key(&room.key) {
                return Err(room_exists(&room));
            }
            map.insert(room.key.clone(), slot);
        }
        let created = guard.insert(Room::create(
            room.clone(),
            member.clone(),
            track,
            time,
            now_ms(),
        ));
        *conn.room() = Some(room.key.clone());
        self.join_channel(conn.sid, &room.key);
        tracing::info!(room = %room.key, host = %member, "room created");
        let reply = json!({"room_id": room.raw, "user_count": 1, "host_id": member});
        self.emit_to(conn.sid, "room_created", &reply);
        self.emit_room(
            &room.key,
            None,
            "room_users",
            &json!({"count": created.user_count()}),
        )
        .await;
        Ok(reply)
    }

    /// `join_room`: leaves the current room (if another), then joins `room`.
    pub async fn join(&self, conn: &Connection, room: RoomId) -> Result<Reply, Invalid> {
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
        let Some(r) = guard.as_mut() else {
            return Err(room_not_found(&room));
        };
        let member = conn.member_id();
        let newly_joined = r.join(member.clone());
        if newly_joined {
            *conn.room() = Some(room.key.clone());
            self.join_channel(conn.sid, &room.key);
            tracing::debug!(room = %room.key, member = %member, users = r.user_count(), "member joined");
        }
        let view = RoomView::for_client(r, &room.raw, now_ms());
        self.emit_to(conn.sid, "room_joined", &view);
        if newly_joined {
            self.emit_room(
                &room.key,
                None,
                "room_users",
                &json!({"count": r.user_count()}),
            )
            .await;
        }
        if !r.play.track.is_null() {
            self.emit_to(conn.sid, "sync_state", &view.play);
        }
        Ok(to_value(&view))
    }

    /// A host command: applied and broadcast to the other members, or refused (not the
    /// host, no such room) with nothing changed.
    pub async fn control(
        &self,
        conn: &Connection,
        room: RoomId,
        cmd: Control,
    ) -> Result<Reply, Invalid> {
        let Some(slot) = self.slot(&room.key) else {
            return Err(room_not_found(&room));
        };
        let mut guard = slot.lock().await;
        let Some(r) = guard.as_mut() else {
            return Err(room_not_found(&room));
        };
        let event = cmd.event();
        let now = now_ms();
        let time = r
            .control(conn.member_id().as_str(), cmd, now)
            .map_err(|Refusal::NotHost| {
                Invalid::new(
                    ErrorCode::NotHost,
                    "only the room's host can control playback",
                )
            })?;
        let payload = ControlEvent {
            track: (event == "track_change").then_some(&r.play.track),
            current_time: time,
            server_time: now,
        };
        tracing::trace!(room = %room.key, event, time, "host command");
        self.emit_room(&room.key, Some(conn.sid), event, &payload)
            .await;
        Ok(json!({"current_time": time, "server_time": now}))
    }

    /// `get_room_state`: the room's state as `room_state`.
    pub async fn state(&self, conn: &Connection, room: RoomId) -> Result<Reply, Invalid> {
        let Some(slot) = self.slot(&room.key) else {
            return Err(room_not_found(&room));
        };
        let guard = slot.lock().await;
        let Some(r) = guard.as_ref() else {
            return Err(room_not_found(&room));
        };
        let view = RoomView::for_client(r, &room.raw, now_ms());
        self.emit_to(conn.sid, "room_state", &view);
        Ok(to_value(&view))
    }

    /// Removes the connection from its room (on disconnect, or before it creates or joins
    /// another one): hands the host role over and deletes the room if it is now empty.
    pub async fn leave(&self, conn: &Connection) {
        let Some(key) = conn.room().take() else {
            return;
        };
        self.leave_channel(conn.sid, &key);
        let Some(slot) = self.slot(&key) else {
            return;
        };
        let mut guard = slot.lock().await;
        let Some(r) = guard.as_mut() else {
            return;
        };
        let member = conn.member_id();
        match r.leave(&member) {
            Departure::NotMember => {}
            Departure::Emptied => {
                *guard = None;
                self.map().remove(&key);
                tracing::info!(room = %key, "room deleted: its last member left");
            }
            Departure::Left { new_host } => {
                tracing::debug!(room = %key, member = %member, users = r.user_count(), "member left");
                if let Some(host) = new_host {
                    tracing::info!(room = %key, host = %host, "host handed over");
                    self.emit_to_member(&host, "become_host", &json!({"room_id": r.id.raw}));
                }
                self.emit_room(&key, None, "room_users", &json!({"count": r.user_count()}))
                    .await;
            }
        }
    }

    /// The seed's room object for HTTP: `{id, host_id, user_count, created_at,
    /// current_track, is_playing, current_time}` plus `server_time`.
    pub async fn info(&self, key: &str) -> Option<Value> {
        let slot = self.slot(key)?;
        let guard = slot.lock().await;
        guard
            .as_ref()
            .map(|r| to_value(&RoomView::for_http(r, now_ms())))
    }

    /// Every live room, as [`Rooms::info`].
    pub async fn list(&self) -> Vec<Value> {
        let now = now_ms();
        self.snapshot()
            .await
            .iter()
            .map(|r| to_value(&RoomView::for_http(r, now)))
            .collect()
    }

    /// A copy of every live room (for inspection: tests, diagnostics, reconciliation).
    pub async fn snapshot(&self) -> Vec<Room> {
        let slots: Vec<Slot> = self.map().values().cloned().collect();
        let mut rooms = Vec::with_capacity(slots.len());
        for slot in slots {
            if let Some(r) = slot.lock().await.as_ref() {
                rooms.push(r.clone());
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
    pub async fn sweep(&self) -> usize {
        let slots: Vec<(String, Slot)> = self
            .map()
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        let mut removed = 0;
        for (key, slot) in slots {
            let mut guard = slot.lock().await;
            if guard.as_ref().is_none_or(|r| r.user_count() == 0) {
                *guard = None;
                let mut map = self.map();
                if map.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                    map.remove(&key);
                    removed += 1;
                    tracing::info!(room = %key, "room deleted by the sweep: it was empty");
                }
            }
        }
        removed
    }

    /// The default namespace, `None` once the server has closed it (socketioxide's
    /// `io.to()` and `io.get_socket()` would panic then, and shutdown still runs leaves).
    fn namespace(&self) -> Option<BroadcastOperators> {
        self.io.of("/")
    }

    fn socket(&self, sid: Sid) -> Option<SocketRef> {
        self.namespace()?.get_socket(sid)
    }

    fn join_channel(&self, sid: Sid, key: &str) {
        if let Some(s) = self.socket(sid) {
            s.join(channel(key));
        }
    }

    fn leave_channel(&self, sid: Sid, key: &str) {
        if let Some(s) = self.socket(sid) {
            s.leave(channel(key));
        }
    }

    fn emit_to<T: Serialize + ?Sized>(&self, sid: Sid, event: &str, data: &T) {
        if let Some(s) = self.socket(sid)
            && let Err(e) = s.emit(event, data)
        {
            tracing::debug!(%sid, event, error = %e, "emit to a socket failed");
        }
    }

    fn emit_to_member<T: Serialize + ?Sized>(&self, member: &str, event: &str, data: &T) {
        match member.parse::<Sid>() {
            Ok(sid) => self.emit_to(sid, event, data),
            Err(_) => tracing::warn!(member, "member id is not a socket id"),
        }
    }

    /// Emits to every member of the room (but `except`), encoded once for all of them. A
    /// recipient whose buffer is full misses this message; the others still get it.
    async fn emit_room<T: Serialize + ?Sized>(
        &self,
        key: &str,
        except: Option<Sid>,
        event: &str,
        data: &T,
    ) {
        // Only a socket's own operator excludes it (socketioxide's `except` takes rooms).
        let to = match except.and_then(|sid| self.socket(sid)) {
            Some(sender) => sender.to(channel(key)),
            None => match self.namespace() {
                Some(ns) => ns.to(channel(key)),
                None => return,
            },
        };
        if let Err(e) = to.emit(event, data).await {
            tracing::debug!(event, error = %e, "broadcast reached some members only");
        }
    }
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

impl<'a> RoomView<'a> {
    /// The view for a client that named the room `asked_as`.
    fn for_client(r: &'a Room, asked_as: &'a Value, now: u64) -> Self {
        RoomView {
            id: None,
            room_id: Some(asked_as),
            host_id: r.host(),
            user_count: r.user_count(),
            created_at: None,
            play: r.play.snapshot(now),
        }
    }

    /// The seed's HTTP room object.
    fn for_http(r: &'a Room, now: u64) -> Self {
        RoomView {
            id: Some(&r.id.raw),
            room_id: None,
            host_id: r.host(),
            user_count: r.user_count(),
            created_at: Some(crate::clock::rfc3339_ms(r.created_at)),
            play: r.play.snapshot(now),
        }
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
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
        let (_svc, io) = SocketIo::builder().build_svc();
        Rooms::new(
            io,
            Limits {
                max_track_bytes: 1024,
            },
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
        slot.lock().await.as_mut().unwrap().leave(&conn.member_id());
        assert_eq!(rooms.count(), 1);
        assert_eq!(rooms.sweep().await, 1);
        assert_eq!(rooms.count(), 0);
        assert_eq!(rooms.sweep().await, 0);
    }
}
