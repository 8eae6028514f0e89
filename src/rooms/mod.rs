//! Seed 1: listening rooms over Socket.IO, where a host drives play, pause, seek and track
//! changes and every member follows; plus what real groups need: resuming after a dropped
//! connection, waiting for everyone to be ready, roles, passwords and limits.
//!
//! A request flows through one pipeline, whatever instance it reaches:
//! - [`socket`] receives it from our Socket.IO engine and [`protocol`] validates it into a
//!   typed request (pure);
//! - [`service`], [`commands`] and [`presence`] decide it into a typed [`model::Change`]: the
//!   pure [`room`] model decides when this instance is alone, a Redis script ([`shared`],
//!   [`scripts`]) when rooms are shared, and its [`fact`] becomes the change;
//! - [`apply`] turns the change into the room's state and the events its members get;
//! - [`mirror`] keeps this instance's rooms in step with the shared state, and carries them
//!   through a Redis outage and back.
//!
//! Around it: [`registry`] (the rooms of this process, their connections and locks),
//! [`roster`] (members, roles, readiness), [`access`] (passwords, client keys),
//! [`timing`] (when commands take effect), [`views`] (what clients see of a room) and
//! [`http`] (the HTTP endpoints).

mod access;
mod apply;
mod commands;
mod fact;
mod http;
mod ids;
mod mirror;
mod model;
mod presence;
mod protocol;
mod registry;
mod room;
mod roster;
mod scripts;
mod service;
mod shared;
mod socket;
mod timing;
mod views;

pub(crate) use http::router;
pub(crate) use presence::housekeeping;
pub(crate) use protocol::Limits;
pub(crate) use service::{Rooms, RoomsConfig};
pub(crate) use socket::RoomsHandler;
