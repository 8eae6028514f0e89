//! Seed 1: listening rooms over Socket.IO, where a host drives play, pause, seek and track
//! changes and every member follows.
//!
//! A request flows through one pipeline, whatever instance or transport it comes from:
//! - [`protocol`] validates the client's payload into a typed request (pure);
//! - [`service`] decides it into a typed [`model::Change`]: the pure [`model`] decides when
//!   this instance is alone, a Redis script ([`shared`], [`scripts`]) when rooms are shared;
//! - [`apply`] turns the change into the room's state and the events its members get;
//! - [`mirror`] keeps this instance's rooms in step with the shared state, and carries them
//!   through a Redis outage and back.
//!
//! Around it: [`registry`] (the rooms of this process and their locks), [`views`] (what
//! clients see of a room), [`http`] (the HTTP endpoints and the sweep), and the transport
//! glue: [`socket`] (the Socket.IO events), [`hub`] (delivery to sockets) and [`websocket`].

mod apply;
mod http;
mod hub;
mod mirror;
mod model;
mod protocol;
mod registry;
mod scripts;
mod service;
mod shared;
mod socket;
mod timing;
mod views;
mod websocket;

pub(crate) use http::{router, sweeper};
pub(crate) use hub::Hub;
pub(crate) use protocol::Limits;
pub(crate) use service::Rooms;
pub(crate) use socket::register;
pub(crate) use websocket::{
    CONNECT_TIMEOUT, OUTBOX_FRAMES, READ_BUFFER_BYTES, Settings, Transport,
};
