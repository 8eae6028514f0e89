//! playsync: a real-time playback synchronization server.
//!
//! One process serves two APIs on the same listeners:
//! - [`rooms`]: Socket.IO listening rooms (seed 1), where a host drives playback and every
//!   member follows;
//! - [`positions`] (seed 2): one user's playback and scroll positions synced across devices over
//!   Server-Sent Events and REST.
//!
//! [`cluster`] shares both across instances through Redis. [`server`] assembles them;
//! [`bench`] is the load generator behind `playsync bench`; [`config`] holds the options;
//! [`clock`] and [`serial`] are small shared utilities.

pub mod bench;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod positions;
pub mod rooms;
pub mod serial;
pub mod server;
mod web;
