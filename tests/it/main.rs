//! Integration tests: the real server on loopback, driven by real clients (the Node
//! `socket.io-client` package, python-socketio, reqwest + an SSE parser, redis-server).
//! One test binary, so it links once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test may panic

mod support;

mod auth;
mod browser;
mod cli;
mod cluster;
mod groups;
mod limits;
mod positions;
mod precision;
mod python;
mod rooms;
mod sentinel;
mod sync_precision;
mod transports;
mod web_client;
