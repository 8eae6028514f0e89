//! The registry: the rooms this process serves and which room each connection is in.
//!
//! Each room sits in a [`Slot`] with its own async lock; every change to a room happens under
//! it, held across "decide + apply + emit", so members see changes in the order they were
//! applied. The map's std lock only guards lookups and is never held across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::model::{MemberId, Room};
use super::timing::Rtts;
use super::views::Parts;

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
        }
    }
}

/// A room slot: `None` once the room is deleted, so a task that looked the slot up before
/// the deletion sees that the room is gone.
pub(super) type Slot = Arc<AsyncMutex<Option<Entry>>>;

/// A locked slot.
pub(super) type Locked = OwnedMutexGuard<Option<Entry>>;

/// One client connection's part in the rooms: who it is, the room it is in (at most one),
/// and the round-trip times its clock probes measured.
#[derive(Debug)]
pub(crate) struct Connection {
    member: MemberId,
    room: Mutex<Option<String>>,
    rtts: Mutex<Rtts>,
}

impl Connection {
    pub(crate) fn new(member: MemberId) -> Arc<Self> {
        Arc::new(Self {
            member,
            room: Mutex::new(None),
            rtts: Mutex::default(),
        })
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

/// The map of rooms.
#[derive(Default)]
pub(super) struct Registry {
    rooms: Mutex<HashMap<String, Slot>>,
}

impl Registry {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
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
