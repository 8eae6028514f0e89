//! Integration tests: the real server on loopback, driven by real clients (the Node
//! `socket.io-client` package, python-socketio, reqwest + an SSE parser, redis-server).
//! One test binary, so it links once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test may panic

mod support;

mod bench;
mod browser;
mod cli;
mod cluster;
mod positions;
mod python;
mod rooms;
mod sync_precision;
mod transports;
mod web_client;
