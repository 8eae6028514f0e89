//! [`Socket`]: one client's connection to one namespace, and [`broadcast`].

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;

use crate::conn::{CONNECTED, Class, ConnShared, Emit, Protocol, Transport};
use crate::packet::{Packet, control};
use crate::sid::Sid;

/// A client's connection to one namespace. Cheap to clone (an `Arc`); equal and hashed by
/// its id. Emitting never waits: a packet is queued in the connection's outbox, whose task
/// writes it.
#[derive(Clone)]
pub struct Socket {
    pub(crate) inner: Arc<SocketInner>,
}

pub(crate) struct SocketInner {
    pub(crate) id: Sid,
    pub(crate) nsp: usize,
    pub(crate) conn: Arc<ConnShared>,
    pub(crate) state: AtomicU8,
}

impl Socket {
    pub(crate) fn new(conn: Arc<ConnShared>, nsp: usize) -> Socket {
        Socket {
            inner: Arc::new(SocketInner {
                id: Sid::new(),
                nsp,
                conn,
                state: AtomicU8::new(crate::conn::CONNECTING),
            }),
        }
    }

    /// The socket's id (what a v5 client sees as `socket.id`).
    pub fn id(&self) -> Sid {
        self.inner.id
    }

    /// The id of the Engine.IO connection under it (shared by its namespaces).
    pub fn engine_id(&self) -> Sid {
        self.inner.conn.sid
    }

    /// The namespace (`/` or one of [`crate::Config::namespaces`]).
    pub fn nsp(&self) -> &str {
        self.inner
            .conn
            .config()
            .namespaces
            .get(self.inner.nsp)
            .map_or("/", String::as_str)
    }

    /// The Socket.IO protocol revision of the client.
    pub fn protocol(&self) -> Protocol {
        self.inner.conn.protocol
    }

    /// The transport the connection uses now.
    pub fn transport(&self) -> Transport {
        self.inner.conn.transport()
    }

    /// Whether the socket is connected (not yet disconnected by either side).
    pub fn is_connected(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == CONNECTED && !self.inner.conn.is_closed()
    }

    /// Frames and bytes waiting in the connection's outbox (shared by its namespaces).
    pub fn outbox(&self) -> (usize, usize) {
        self.inner.conn.queued()
    }

    /// Queues a packet (built for this socket's namespace). Dropped if the outbox is full.
    pub fn emit(&self, packet: &Packet) -> Emit {
        debug_assert!(packet_nsp_matches(packet, self.nsp()));
        let outcome = self.push(packet, Class::Emit);
        let stats = &self.inner.conn.common.stats;
        match outcome {
            Emit::Queued => stats.count(1, 0),
            Emit::Dropped => stats.count(0, 1),
            Emit::Closed => {}
        }
        outcome
    }

    /// Encodes and queues `42["name",data]`.
    pub fn emit_event<T: Serialize + ?Sized>(
        &self,
        name: &str,
        data: &T,
    ) -> serde_json::Result<Emit> {
        Ok(self.emit(&Packet::event(self.nsp(), name, data)?))
    }

    /// Acknowledges the client's event `id` with one argument (`43<id>[data]`). Replies may
    /// use twice the outbox budget, so a client behind a full outbox still gets them.
    pub fn ack<T: Serialize + ?Sized>(&self, id: u64, data: &T) -> serde_json::Result<Emit> {
        Ok(self.reply(&Packet::ack(self.nsp(), id, data)?))
    }

    /// Queues a reply built by the caller (e.g. [`Packet::ack_args`]) under the replies'
    /// budget (see [`Socket::ack`]).
    pub fn reply(&self, packet: &Packet) -> Emit {
        let outcome = self.push(packet, Class::Reply);
        let stats = &self.inner.conn.common.stats;
        match outcome {
            Emit::Queued => stats.count(1, 0),
            Emit::Dropped => stats.count(0, 1),
            Emit::Closed => {}
        }
        outcome
    }

    /// Disconnects the socket from the server side: DISCONNECT is sent to the client after
    /// what was emitted before, later emits are refused, and the handler's `disconnect`
    /// runs with [`crate::DisconnectReason::ServerDisconnect`] once the events already
    /// received are done. The Engine.IO connection stays open (the client closes it).
    pub fn disconnect(&self) {
        let packet = control::disconnect(self.nsp());
        self.inner.conn.disconnect(&self.inner.state, &packet);
    }

    fn push(&self, packet: &Packet, class: Class) -> Emit {
        self.inner.conn.push(Some(&self.inner.state), packet, class)
    }
}

fn packet_nsp_matches(packet: &Packet, nsp: &str) -> bool {
    let text = packet.as_str().as_bytes();
    let head = text
        .iter()
        .skip(2)
        .skip_while(|b| b.is_ascii_digit() || **b == b'-');
    let starts_with_nsp = head.clone().next() == Some(&b'/');
    if nsp == "/" {
        !starts_with_nsp
    } else {
        let rest: Vec<u8> = head.copied().collect();
        rest.starts_with(nsp.as_bytes()) && rest.get(nsp.len()) == Some(&b',')
    }
}

impl PartialEq for Socket {
    fn eq(&self, other: &Self) -> bool {
        self.inner.id == other.inner.id
    }
}

impl Eq for Socket {}

impl Hash for Socket {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.id.hash(state);
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.inner.id)
            .field("nsp", &self.nsp())
            .field("engine_id", &self.inner.conn.sid)
            .finish()
    }
}

/// What [`broadcast`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Broadcast {
    pub queued: usize,
    pub dropped: usize,
    pub closed: usize,
}

/// Queues `packet` (encoded once) for every socket, without waiting: each recipient's outbox
/// gets a reference-counted clone under that outbox's own short lock, and its writer is woken
/// only if its outbox was idle. A full outbox drops the packet for that recipient only.
pub fn broadcast<'a>(sockets: impl IntoIterator<Item = &'a Socket>, packet: &Packet) -> Broadcast {
    let mut result = Broadcast::default();
    let mut counted: Option<(&Arc<crate::conn::Common>, u64, u64)> = None;
    for socket in sockets {
        let outcome = socket.push(packet, Class::Emit);
        match outcome {
            Emit::Queued => result.queued += 1,
            Emit::Dropped => result.dropped += 1,
            Emit::Closed => result.closed += 1,
        }
        // One counter update per engine and broadcast, not per recipient.
        let common = &socket.inner.conn.common;
        let (sent, dropped) = match outcome {
            Emit::Queued => (1, 0),
            Emit::Dropped => (0, 1),
            Emit::Closed => (0, 0),
        };
        match &mut counted {
            Some((c, s, d)) if Arc::ptr_eq(c, common) => {
                *s += sent;
                *d += dropped;
            }
            _ => {
                if let Some((c, s, d)) = counted.take() {
                    c.stats.count(s, d);
                }
                counted = Some((common, sent, dropped));
            }
        }
    }
    if let Some((c, s, d)) = counted {
        c.stats.count(s, d);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_check() {
        let p = Packet::event("/", "a", &1).unwrap();
        assert!(packet_nsp_matches(&p, "/"));
        assert!(!packet_nsp_matches(&p, "/x"));
        let p = Packet::event("/x", "a", &1).unwrap();
        assert!(packet_nsp_matches(&p, "/x"));
        assert!(!packet_nsp_matches(&p, "/"));
        assert!(!packet_nsp_matches(&p, "/xy"));
        let p = Packet::ack_args("/x", 5, &[1], vec![bytes::Bytes::new()]).unwrap();
        assert!(packet_nsp_matches(&p, "/x"));
    }
}
