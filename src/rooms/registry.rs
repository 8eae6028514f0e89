//! The registry: the rooms this process serves, the connections in each, and which room
//! each connection is in.
//!
//! Each room sits in a [`Slot`] with its own async lock; every change to a room happens under
//! it, held across "decide + apply + emit", so members see changes in the order they were
//! applied. Emitting only queues: a packet is encoded once and a reference to it is pushed
//! into each recipient's outbox ([`Outbound`]), nothing waits and nothing writes to a socket
//! under the lock. The map's std lock only guards lookups and is never held across an
//! `.await`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use socketio::Packet;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::access::{ClientKey, Guesses};
use super::model::MemberId;
use super::protocol::ServerEvent;
use super::room::Room;
use super::roster::MemberView;
use super::timing::Rtts;
use super::views::{ClientRoom, Parts};

/// A connection's way out to its client: the transport behind it (the Socket.IO engine's
/// socket in production). Sending never waits; a client that reads too slowly misses
/// packets.
pub(crate) trait Outbound: Send + Sync + 'static {
    /// Queues a pre-encoded packet.
    fn send(&self, packet: &Packet);
    /// Disconnects the client from the server side.
    fn close(&self);
}

/// Encodes `data` as `event` once, or logs why not.
pub(super) fn packet<T: Serialize + ?Sized>(event: ServerEvent, data: &T) -> Option<Packet> {
    Packet::event("/", event.name(), data)
        .inspect_err(
            |e| tracing::error!(event = event.name(), error = %e, "cannot encode an event"),
        )
        .ok()
}

/// A room as this process knows it.
#[derive(Debug)]
pub(super) struct Entry {
    /// Its state; `members` are the members connected to this process.
    pub room: Room,
    /// Members across all instances (without Redis: the local members).
    pub count: usize,
    /// Version of the newest shared fact applied (0: never shared).
    pub version: u64,
    /// Changed while Redis was unavailable: to be merged into the shared state.
    pub dirty: bool,
    /// The connections of the members connected here.
    pub locals: HashMap<MemberId, Arc<Connection>>,
}

impl Entry {
    /// A room nobody has been told about yet: its count is 0, so applying the change that
    /// made it announces the count.
    pub fn new(room: Room) -> Self {
        Entry {
            room,
            count: 0,
            version: 0,
            dirty: false,
            locals: HashMap::new(),
        }
    }

    /// Sends `event` to every member connected here but `except`, encoded once.
    pub fn broadcast<T: Serialize + ?Sized>(
        &self,
        except: Option<&MemberId>,
        event: ServerEvent,
        data: &T,
    ) {
        if self.locals.is_empty() {
            return;
        }
        let Some(packet) = packet(event, data) else {
            return;
        };
        for (member, conn) in &self.locals {
            if Some(member) != except {
                conn.out.send(&packet);
            }
        }
    }

    /// Sends `event` to one member, if it is connected here.
    pub fn send_to<T: Serialize + ?Sized>(&self, member: &MemberId, event: ServerEvent, data: &T) {
        if let Some(conn) = self.locals.get(member) {
            conn.send(event, data);
        }
    }

    /// The highest recent p95 round-trip time among the members connected here.
    pub fn worst_rtt(&self) -> Option<f64> {
        self.locals
            .values()
            .filter_map(|c| c.rtts().p95())
            .max_by(f64::total_cmp)
    }

    pub fn parts(&self) -> Parts<'_> {
        Parts {
            id: &self.room.id.raw,
            host: self.room.host_id(),
            count: self.count,
            created_at: self.room.created_at,
            play: &self.room.play,
            protected: self.room.settings.password.is_some(),
        }
    }

    /// The member list as clients see it, when this instance holds the whole room and it is
    /// small enough to list.
    pub fn listed_members(&self) -> Option<Vec<MemberView>> {
        (self.room.user_count() <= super::roster::MAX_LISTED)
            .then(|| self.room.roster().views(self.room.host()))
    }

    /// `room_joined` / `room_state` for a client that named the room `asked_as`; `member`
    /// says whether that client is in the room (a protected room shows others its count
    /// only).
    pub fn client_view(&self, asked_as: &serde_json::Value, now: u64, member: bool) -> ClientRoom {
        let mut view = self.parts().for_client(asked_as, now, member);
        if member && self.room.settings.lists_members {
            view.members = self.listed_members();
        }
        view
    }
}

/// A room slot: `None` once the room is deleted, so a task that looked the slot up before
/// the deletion sees that the room is gone.
pub(super) type Slot = Arc<AsyncMutex<Option<Entry>>>;

/// A locked slot.
pub(super) type Locked = OwnedMutexGuard<Option<Entry>>;

/// One client connection's part in the rooms: who it is (its member id, and the key of its
/// `client_id` if it sent one), its way out, the room it is in (at most one), the
/// round-trip times its clock probes measured, and its recent wrong passwords.
pub(crate) struct Connection {
    member: MemberId,
    client: Option<super::access::ClientKey>,
    out: Box<dyn Outbound>,
    room: Mutex<Option<String>>,
    rtts: Mutex<Rtts>,
    guesses: Mutex<Guesses>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("member", &self.member)
            .field("room", &*self.room())
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(
        member: MemberId,
        client: Option<super::access::ClientKey>,
        out: Box<dyn Outbound>,
    ) -> Arc<Self> {
        Arc::new(Self {
            member,
            client,
            out,
            room: Mutex::new(None),
            rtts: Mutex::default(),
            guesses: Mutex::default(),
        })
    }

    /// Sends one event to this connection.
    pub(crate) fn send<T: Serialize + ?Sized>(&self, event: ServerEvent, data: &T) {
        if let Some(packet) = packet(event, data) {
            self.out.send(&packet);
        }
    }

    /// Disconnects the client from the server side.
    pub(crate) fn close(&self) {
        self.out.close();
    }

    /// The key of the client's `client_id`, if it sent one.
    pub(crate) fn client(&self) -> Option<&super::access::ClientKey> {
        self.client.as_ref()
    }

    pub(super) fn guesses(&self) -> MutexGuard<'_, Guesses> {
        self.guesses.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn rtts(&self) -> MutexGuard<'_, Rtts> {
        self.rtts.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn member(&self) -> &MemberId {
        &self.member
    }

    /// The key of the room it is in.
    pub(super) fn room(&self) -> MutexGuard<'_, Option<String>> {
        self.room.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn is_in(&self, key: &str) -> bool {
        self.room().as_deref() == Some(key)
    }
}

/// Where a client that sent a `client_id` sits: its room and member.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Seat {
    pub room: String,
    pub member: MemberId,
}

/// Something a room must do later.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Due {
    /// A member away since then may have outstayed its grace.
    Expire { room: String, member: MemberId },
    /// A start waiting for members reaches its deadline.
    WaitEnd { room: String },
}

/// Deadlines of the rooms, soonest first.
#[derive(Default)]
pub(super) struct Timers {
    heap: Mutex<BinaryHeap<Reverse<(u64, Due)>>>,
}

impl Timers {
    fn heap(&self) -> MutexGuard<'_, BinaryHeap<Reverse<(u64, Due)>>> {
        self.heap.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn expire(&self, room: &str, member: &MemberId, at: u64) {
        let due = Due::Expire {
            room: room.to_owned(),
            member: member.clone(),
        };
        self.heap().push(Reverse((at, due)));
    }

    pub fn wait_end(&self, room: &str, at: u64) {
        let due = Due::WaitEnd {
            room: room.to_owned(),
        };
        self.heap().push(Reverse((at, due)));
    }

    /// Everything due at `now`.
    pub fn due(&self, now: u64) -> Vec<Due> {
        let mut heap = self.heap();
        let mut due = Vec::new();
        while heap.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            if let Some(Reverse((_, d))) = heap.pop() {
                due.push(d);
            }
        }
        due
    }
}

/// The map of rooms, where clients with a `client_id` sit, and the rooms' deadlines.
#[derive(Default)]
pub(super) struct Registry {
    rooms: Mutex<HashMap<String, Slot>>,
    seats: Mutex<HashMap<ClientKey, Seat>>,
    pub timers: Timers,
}

impl Registry {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seats(&self) -> MutexGuard<'_, HashMap<ClientKey, Seat>> {
        self.seats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records where the client `key` sits.
    pub fn seat(&self, key: &ClientKey, room: &str, member: &MemberId) {
        let seat = Seat {
            room: room.to_owned(),
            member: member.clone(),
        };
        self.seats().insert(key.clone(), seat);
    }

    pub fn unseat(&self, key: &ClientKey) {
        self.seats().remove(key);
    }

    pub fn seat_of(&self, key: &ClientKey) -> Option<Seat> {
        self.seats().get(key).cloned()
    }

    pub fn slot(&self, key: &str) -> Option<Slot> {
        self.map().get(key).cloned()
    }

    /// The slot of `key`, created empty if missing (for mirroring a shared room).
    pub fn slot_or_empty(&self, key: &str) -> Slot {
        self.map()
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(AsyncMutex::new(None)))
            .clone()
    }

    pub fn slots(&self) -> Vec<(String, Slot)> {
        self.map()
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.map().contains_key(key)
    }

    /// Removes the room's slot if it is still `slot` (not a newer room of the same name).
    pub fn forget(&self, key: &str, slot: &Slot) {
        let mut map = self.map();
        if map.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            map.remove(key);
        }
    }

    /// Deletes the room held by `guard`.
    pub fn delete(&self, key: &str, slot: &Slot, guard: &mut Option<Entry>) {
        *guard = None;
        self.forget(key, slot);
    }

    /// Registers an empty slot for a new room, already locked so nobody sees the room half
    /// made. `None` if the key is taken.
    pub async fn claim(&self, key: &str) -> Option<(Slot, Locked)> {
        let slot: Slot = Arc::new(AsyncMutex::new(None));
        let guard = slot.clone().lock_owned().await;
        let mut map = self.map();
        if map.contains_key(key) {
            return None;
        }
        map.insert(key.to_owned(), slot.clone());
        Some((slot, guard))
    }
}
