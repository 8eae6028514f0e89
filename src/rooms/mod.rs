//! Seed 1: listening rooms over Socket.IO, where a host drives play, pause, seek and track
//! changes and every member follows.
//!
//! - [`model`]: the pure room state machine (membership, host choice, play state).
//! - [`protocol`]: event names, payload validation, error codes (pure).
//! - [`service`]: the live rooms of this process, their locking and their emits.
//! - [`hub`]: delivery of events to sockets on either transport.
//! - [`socket`]: the Socket.IO events and socketioxide's wiring; [`websocket`]: playsync's
//!   own transport for clients that open a WebSocket directly.
//! - [`http`]: the HTTP endpoints.

pub mod http;
pub mod hub;
pub mod model;
pub mod protocol;
pub mod service;
pub mod socket;
pub mod websocket;

pub use service::Rooms;
