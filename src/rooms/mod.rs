//! Seed 1: listening rooms over Socket.IO, where a host drives play, pause, seek and track
//! changes and every member follows.
//!
//! - [`model`]: the pure room state machine (membership, host choice, play state).
//! - [`protocol`]: event names, payload validation, error codes (pure).
//! - [`service`]: the live rooms of this process, their locking and their emits.
//! - [`socket`]: the Socket.IO handlers; [`http`]: the HTTP endpoints.

pub mod http;
pub mod model;
pub mod protocol;
pub mod service;
pub mod socket;

pub use service::Rooms;
