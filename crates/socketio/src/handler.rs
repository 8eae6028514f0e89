//! [`Handler`]: what the application plugs into the engine.

use std::borrow::Cow;
use std::fmt;
use std::time::Instant;

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

use crate::socket::Socket;

/// A client event, as received.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event name (the first argument).
    pub name: String,
    /// The arguments after the name. Binary attachments stay as their placeholders
    /// (`{"_placeholder":true,"num":i}`) and are in [`Event::attachments`].
    pub args: Vec<Value>,
    /// The binary attachments, in order.
    pub attachments: Vec<Bytes>,
    /// The acknowledgement id, if the client asked for one ([`Socket::ack`]).
    pub ack: Option<u64>,
    /// When the engine read the packet (the last attachment, for binary events).
    pub received: Instant,
}

/// Why a socket left its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT for the namespace (`socket.disconnect()`): an explicit
    /// leave, reported as such even when the transport closes right after.
    ClientDisconnect,
    /// The transport closed: the client closed the Engine.IO connection (close packet or
    /// WebSocket close) or the TCP connection ended.
    TransportClose,
    /// The transport failed: a read or write error, a message or request body over
    /// `max_payload`, overlapping long-polling requests.
    TransportError,
    /// The client did not answer pings in time.
    PingTimeout,
    /// [`Socket::disconnect`] was called.
    ServerDisconnect,
    /// The engine shut down.
    ServerShutdown,
    /// The client sent something that is not a valid packet; the connection was closed.
    MalformedPacket,
}

impl DisconnectReason {
    /// socket.io's name for the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientDisconnect => "client namespace disconnect",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ServerDisconnect => "server namespace disconnect",
            DisconnectReason::ServerShutdown => "server shutting down",
            DisconnectReason::MalformedPacket => "parse error",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused handshake: the HTTP status and a message, sent as `{"message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

/// The application side of the engine. The engine calls it from each connection's task:
/// `connect`, `event` and `disconnect` futures of one connection run one at a time, in the
/// order the packets arrived (across the long-polling → WebSocket switch too), while the
/// connection keeps reading control packets, writing its outbox and keeping its heartbeat.
/// A slow future delays only its own connection.
///
/// The futures are `'static`: clone what they need (the socket, `Arc`s in the state) before
/// the `async` block.
pub trait Handler: Send + Sync + 'static {
    /// Per-socket state: returned by `connect`, lent to every `event`, handed back to
    /// `disconnect`. The engine keeps it in the connection's task.
    type State: Send + 'static;
    /// Returned by `admit`; dropped when that Engine.IO connection ends.
    type Guard: Send + 'static;

    /// Called at each new Engine.IO handshake (either transport) with the request head
    /// (its extensions carry e.g. axum's `ConnectInfo`). `Err` answers the handshake with
    /// the refusal's status.
    fn admit(&self, request: &http::request::Parts) -> Result<Self::Guard, Refusal>;

    /// A client connects `socket` to its namespace with the CONNECT packet's auth payload
    /// (Socket.IO v5; `None` for v4 clients and when absent). `Ok` connects it; `Err(data)`
    /// refuses with CONNECT_ERROR carrying `data` (e.g. `{"message": "unauthorized"}`).
    /// Packets emitted to the socket while this runs are sent after the CONNECT answer (and
    /// dropped if it refuses).
    fn connect(
        &self,
        socket: &Socket,
        auth: Option<Value>,
    ) -> impl Future<Output = Result<Self::State, Value>> + Send + 'static;

    /// A client event on a connected socket.
    fn event(
        &self,
        socket: &Socket,
        state: &Self::State,
        event: Event,
    ) -> impl Future<Output = ()> + Send + 'static;

    /// The socket left (see [`DisconnectReason`]); called once per connected socket, after
    /// its earlier events.
    fn disconnect(
        &self,
        socket: &Socket,
        state: Self::State,
        reason: DisconnectReason,
    ) -> impl Future<Output = ()> + Send + 'static;
}
