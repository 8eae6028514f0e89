//! [`Config`]: the engine's settings.

use std::time::Duration;

/// The engine's settings. `Config::default()` is socket.io's defaults with the default
/// namespace only; change fields as needed.
#[derive(Debug, Clone)]
pub struct Config {
    /// The HTTP path the engine serves (with or without its trailing slash).
    pub path: String,
    /// How often the server pings an Engine.IO 4 client (Engine.IO 3 clients ping at this
    /// interval themselves).
    pub ping_interval: Duration,
    /// How long a client may take to answer a ping before it is disconnected.
    pub ping_timeout: Duration,
    /// The largest message or long-polling request body a client may send, in bytes; larger
    /// ones close the connection.
    pub max_payload: usize,
    /// How long an Engine.IO connection may stay without connecting any namespace.
    pub connect_timeout: Duration,
    /// How long an upgrade from long-polling to WebSocket may take once the WebSocket is open.
    pub upgrade_timeout: Duration,
    /// Frames an outbox holds before [`crate::Socket::emit`] drops further packets.
    pub outbox_frames: usize,
    /// Bytes an outbox holds before [`crate::Socket::emit`] drops further packets.
    /// Acknowledgements and the engine's own packets may use as much again.
    pub outbox_bytes: usize,
    /// The namespaces clients may connect; others get CONNECT_ERROR `Invalid namespace`.
    pub namespaces: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: "/socket.io/".to_owned(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_secs(45),
            upgrade_timeout: Duration::from_secs(10),
            outbox_frames: 1024,
            outbox_bytes: 1 << 20,
            namespaces: vec!["/".to_owned()],
        }
    }
}

impl Config {
    /// The path without its trailing slash (`/socket.io`).
    pub(crate) fn base_path(&self) -> &str {
        self.path.strip_suffix('/').unwrap_or(&self.path)
    }
}
