//! playsync's Socket.IO server engine.
//!
//! Serves Socket.IO v5 (socket.io-client 3.x/4.x, Engine.IO 4) and v4 (socket.io-client 2.x,
//! Engine.IO 3) over WebSocket and HTTP long-polling with upgrades. The engine knows nothing
//! of rooms: an application implements [`Handler`] and keeps its own groups of [`Socket`]s,
//! to which it sends pre-encoded [`Packet`]s with [`Socket::emit`] or [`broadcast`].
//!
//! Design:
//! - **One task per Engine.IO connection**, whatever the transport, selecting by hand over
//!   its transport, its outbox, one timer and the running handler future. A long-polling
//!   connection's requests only hand packets to that task (POST) or take the outbox's
//!   contents (GET); after an upgrade nothing of the polling state stays allocated.
//! - **In-order handling by construction**: a connection's `connect`/`event`/`disconnect`
//!   futures run one at a time in arrival order (across the polling → WebSocket switch too),
//!   while the task keeps reading pongs, writing and keeping the heartbeat.
//! - **Bounded outboxes**, in frames and bytes ([`Config::outbox_frames`],
//!   [`Config::outbox_bytes`]). Writes are incremental: a slow reader leaves frames queued,
//!   then misses packets once its outbox is full; only a client that stops answering pings
//!   is disconnected. Engine.IO pings jump the queue.
//! - **Encode once**: a [`Packet`] holds shared `Bytes`; a broadcast pushes a clone into
//!   each outbox under that outbox's own short lock and wakes a writer only when its outbox
//!   was idle. No lock is held while writing to a socket or across an `.await`.
//!
//! The decoders in [`decode`] and the lenient JSON of [`json`] are pure and public.

mod config;
mod conn;
mod connection;
pub mod decode;
mod engine;
mod handler;
mod heartbeat;
pub mod json;
mod packet;
mod polling;
mod registry;
mod sid;
mod socket;

pub use config::Config;
pub use conn::{Emit, Protocol, StatsSnapshot, Transport};
pub use engine::Engine;
pub use handler::{DisconnectReason, Event, Handler, Refusal};
pub use packet::{Packet, placeholder};
pub use sid::{InvalidSid, Sid};
pub use socket::{Broadcast, Socket, broadcast};
