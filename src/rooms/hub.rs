//! [`Hub`]: delivers room events to connections, whichever transport carries them.
//!
//! Sockets arrive two ways: through socketioxide (HTTP long-polling, upgrades from polling,
//! Engine.IO v3 clients) and through playsync's own WebSocket transport
//! ([`super::websocket`]: Engine.IO v4 clients that open a WebSocket directly). The rooms
//! name recipients by member id (today the connection's socket id) and room key; the hub
//! owns the WebSocket sockets' membership of rooms and finds each recipient on its side. A
//! room message is encoded once for each transport, whatever the number of recipients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;

use super::model::MemberId;
use super::protocol::ServerEvent;
use super::websocket::{Frame, Peer};

/// The recipients of room events on both transports.
pub(crate) struct Hub {
    io: SocketIo,
    own: Mutex<OwnSockets>,
}

/// The sockets of playsync's WebSocket transport and the rooms they are in.
#[derive(Default)]
struct OwnSockets {
    peers: HashMap<Sid, Arc<Peer>>,
    rooms: HashMap<String, HashMap<Sid, Arc<Peer>>>,
}

/// Socket.IO room name of a playsync room (prefixed so it never collides with a socket id).
fn channel(key: &str) -> String {
    format!("room:{key}")
}

/// The socket of a member (a member id is its connection's socket id).
fn sid_of(member: &MemberId) -> Option<Sid> {
    member.as_str().parse().ok()
}

impl Hub {
    pub fn new(io: SocketIo) -> Arc<Self> {
        Arc::new(Self {
            io,
            own: Mutex::default(),
        })
    }

    fn own(&self) -> MutexGuard<'_, OwnSockets> {
        self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a WebSocket-transport socket reachable by its id.
    pub fn attach(&self, peer: Arc<Peer>) {
        self.own().peers.insert(peer.sid(), peer);
    }

    /// Forgets a WebSocket-transport socket (once it has left its room).
    pub fn detach(&self, sid: Sid) {
        self.own().peers.remove(&sid);
    }

    /// The default namespace, `None` once the server has closed it (socketioxide's
    /// `io.to()` and `io.get_socket()` would panic then, and shutdown still runs leaves).
    fn namespace(&self) -> Option<BroadcastOperators> {
        self.io.of("/")
    }

    fn socket(&self, sid: Sid) -> Option<SocketRef> {
        self.namespace()?.get_socket(sid)
    }

    pub fn join(&self, member: &MemberId, key: &str) {
        let Some(sid) = sid_of(member) else { return };
        let mut own = self.own();
        if let Some(peer) = own.peers.get(&sid).cloned() {
            own.rooms
                .entry(key.to_owned())
                .or_default()
                .insert(sid, peer);
            return;
        }
        drop(own);
        if let Some(s) = self.socket(sid) {
            s.join(channel(key));
        }
    }

    pub fn leave(&self, member: &MemberId, key: &str) {
        let Some(sid) = sid_of(member) else { return };
        let mut own = self.own();
        if own.peers.contains_key(&sid) {
            if let Some(members) = own.rooms.get_mut(key) {
                members.remove(&sid);
                if members.is_empty() {
                    own.rooms.remove(key);
                }
            }
            return;
        }
        drop(own);
        if let Some(s) = self.socket(sid) {
            s.leave(channel(key));
        }
    }

    /// Emits `event` to one socket.
    pub fn emit_to<T: Serialize + ?Sized>(&self, sid: Sid, event: &str, data: &T) {
        let peer = self.own().peers.get(&sid).cloned();
        if let Some(peer) = peer {
            match Frame::event(event, data) {
                Ok(frame) => peer.send(frame),
                Err(e) => tracing::warn!(%sid, event, error = %e, "cannot encode an event"),
            }
        } else if let Some(s) = self.socket(sid)
            && let Err(e) = s.emit(event, data)
        {
            tracing::debug!(%sid, event, error = %e, "emit to a socket failed");
        }
    }

    /// Emits `event` to one member.
    pub fn to_member<T: Serialize + ?Sized>(
        &self,
        member: &MemberId,
        event: ServerEvent,
        data: &T,
    ) {
        match sid_of(member) {
            Some(sid) => self.emit_to(sid, event.name(), data),
            None => tracing::warn!(%member, "member id is not a socket id"),
        }
    }

    /// Emits to every local member of the room (but `except`), encoded once per transport,
    /// without waiting. A recipient whose buffer is full misses this message; the others
    /// still get it.
    pub fn to_room<T: Serialize + ?Sized>(
        &self,
        key: &str,
        except: Option<&MemberId>,
        event: ServerEvent,
        data: &T,
    ) {
        let except = except.and_then(sid_of);
        let event = event.name();
        self.emit_room_own(key, except, event, data);

        // Only a socket's own operator excludes it (socketioxide's `except` takes rooms).
        let to = match except.and_then(|sid| self.socket(sid)) {
            Some(sender) => sender.to(channel(key)),
            None => match self.namespace() {
                Some(ns) => ns.to(channel(key)),
                None => return,
            },
        };
        // socketioxide's in-process adapter completes a broadcast at once (its future is
        // `ready`), so one poll delivers it.
        match futures_util::FutureExt::now_or_never(to.emit(event, data)) {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::debug!(event, error = %e, "broadcast reached some members only")
            }
            None => tracing::error!(event, "a broadcast did not complete at once: dropped"),
        }
    }

    fn emit_room_own<T: Serialize + ?Sized>(
        &self,
        key: &str,
        except: Option<Sid>,
        event: &str,
        data: &T,
    ) {
        let own = self.own();
        let Some(members) = own.rooms.get(key) else {
            return;
        };
        let frame = match Frame::event(event, data) {
            Ok(frame) => frame,
            Err(e) => return tracing::warn!(event, error = %e, "cannot encode an event"),
        };
        // Queuing is a push under each peer's own short lock: nothing here waits.
        for (sid, peer) in members {
            if Some(*sid) != except {
                peer.send(frame.clone());
            }
        }
    }
}
