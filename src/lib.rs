//! playsync: a real-time playback synchronization server.
//!
//! One process serves two APIs on the same listeners:
//! - `rooms`: Socket.IO listening rooms (seed 1), where a host drives playback and every
//!   member follows;
//! - `positions` (seed 2): one user's playback and scroll positions synced across devices
//!   over Server-Sent Events and REST.
//!
//! `cluster` shares both across instances through Redis, as a leaf that knows Redis only:
//! rooms and positions register with it as participants. [`server`] is the composition
//! root: it builds every part from the [`config`] and wires them into one router. `error`
//! is the one HTTP refusal type; `clock` is the server clock; `auth` (opt-in
//! authentication) and `limits` (abuse limits) guard both APIs; [`healthcheck`] is the probe
//! behind `playsync healthcheck`. The load generator is a crate of its own,
//! `playsync-bench` (`crates/bench`).
//!
//! Imports go downward only: `server` → `rooms`, `positions` → `auth`, `limits`, `cluster`
//! → `clock`.

mod auth;
mod clock;
mod cluster;
pub mod config;
mod error;
pub mod healthcheck;
mod limits;
mod positions;
mod rooms;
pub mod server;
mod web;
