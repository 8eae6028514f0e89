//! playsync's own transport for Engine.IO v4 clients that open a WebSocket directly
//! (socket.io-client 3.x/4.x or python-socketio with `transports: ["websocket"]`, the usual
//! choice when many listeners connect).
//!
//! Why a second transport: socketioxide holds every socket with three tasks and a channel
//! whose first block alone is 5 KiB, about 18 KiB per idle connection. Here a connection is
//! one task and an outbox that is empty when idle. Long-polling, upgrades from polling and
//! Engine.IO v3 clients stay with socketioxide; sockets of both kinds meet in the same rooms
//! through the [`Hub`], and the room protocol is the same code ([`super::socket::dispatch`]).
//!
//! Owns: the WebSocket handshake of these requests, the Engine.IO heartbeat (the server
//! pings, the client answers), the Socket.IO packets of the default namespace, and each
//! connection's outbox.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;
use socketioxide::socket::Sid;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::hub::Hub;
use super::protocol::{Invalid, ServerEvent};
use super::service::Rooms;
use super::socket::{self, Client, Responder};

/// Frames queued for one socket before further messages to it are dropped: a client that
/// stops reading cannot make the server hoard. socketioxide's sockets get the same bound.
pub(crate) const OUTBOX_FRAMES: usize = 1024;

/// Per-connection WebSocket read buffer, on both transports: client messages are small, and
/// an idle connection should cost little (larger messages are read in several steps).
pub(crate) const READ_BUFFER_BYTES: usize = 1024;

/// How long a connection may stay without joining the default namespace (socketioxide's
/// default, used for both transports).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

/// Bytes buffered before a batch of frames is written out; also bounds what a connection
/// keeps allocated after a burst.
const WRITE_BATCH_BYTES: usize = 4096;

/// A pre-encoded Socket.IO packet, shared by every recipient of a broadcast.
#[derive(Clone)]
pub(crate) struct Frame(Utf8Bytes);

impl Frame {
    /// `42["event",data]`: an event for the default namespace.
    pub fn event<T: Serialize + ?Sized>(event: &str, data: &T) -> serde_json::Result<Self> {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(b"42[");
        serde_json::to_writer(&mut buf, event)?;
        buf.push(b',');
        serde_json::to_writer(&mut buf, data)?;
        buf.push(b']');
        Ok(Self::from_utf8(buf))
    }

    /// `43<id>[data]`: the acknowledgement of a client's event.
    fn ack<T: Serialize + ?Sized>(id: u64, data: &T) -> serde_json::Result<Self> {
        let mut buf = format!("43{id}[").into_bytes();
        serde_json::to_writer(&mut buf, data)?;
        buf.push(b']');
        Ok(Self::from_utf8(buf))
    }

    fn text(text: String) -> Self {
        Frame(Utf8Bytes::from(text))
    }

    fn from_utf8(buf: Vec<u8>) -> Self {
        // serde_json writes UTF-8; the lossy branch is never taken.
        match String::from_utf8(buf) {
            Ok(s) => Self::text(s),
            Err(e) => Self::text(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }
}

/// The sending side of one connection: frames wait here until its task writes them.
pub(crate) struct Peer {
    sid: Sid,
    outbox: Mutex<Outbox>,
    wake: Notify,
}

#[derive(Default)]
struct Outbox {
    frames: VecDeque<Frame>,
    dropped: u64,
}

impl Peer {
    fn new(sid: Sid) -> Arc<Self> {
        Arc::new(Peer {
            sid,
            outbox: Mutex::default(),
            wake: Notify::new(),
        })
    }

    pub fn sid(&self) -> Sid {
        self.sid
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame without waiting; drops it if the outbox is full.
    pub fn send(&self, frame: Frame) {
        let mut outbox = self.outbox();
        if outbox.frames.len() >= OUTBOX_FRAMES {
            outbox.dropped += 1;
            if outbox.dropped.is_power_of_two() {
                tracing::debug!(sid = %self.sid, dropped = outbox.dropped, "outbox full: messages dropped");
            }
            return;
        }
        let was_empty = outbox.frames.is_empty();
        outbox.frames.push_back(frame);
        drop(outbox);
        // The writer drains until empty, so only the first frame of a batch must wake it.
        if was_empty {
            self.wake.notify_one();
        }
    }

    fn next_frame(&self) -> Option<Frame> {
        let mut outbox = self.outbox();
        let frame = outbox.frames.pop_front();
        if frame.is_none() && outbox.frames.capacity() > 16 {
            // Give back what a burst made the queue grow to; idle connections stay small.
            outbox.frames.shrink_to(4);
        }
        frame
    }
}

/// Timing and limits of this transport (the same as socketioxide's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// How long a connection may stay without joining the default namespace.
    pub connect_timeout: Duration,
    /// Largest message accepted from a client, in bytes.
    pub max_payload: usize,
}

/// The transport: accepts the connections and runs one task per connection.
pub(crate) struct Transport {
    hub: Arc<Hub>,
    rooms: Arc<Rooms>,
    settings: Settings,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// Why a connection ended.
enum End {
    ClientClosed,
    PingTimeout,
    ConnectTimeout,
    BadPacket,
    Stalled,
    Transport(String),
    Shutdown,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ClientClosed => f.write_str("closed by the client"),
            End::PingTimeout => f.write_str("no answer to the ping"),
            End::ConnectTimeout => f.write_str("never joined the namespace"),
            End::BadPacket => f.write_str("malformed packet"),
            End::Stalled => f.write_str("the client stopped reading"),
            End::Transport(e) => write!(f, "transport error: {e}"),
            End::Shutdown => f.write_str("server shutting down"),
        }
    }
}

impl Transport {
    /// `tasks` tracks the connections (the server waits for them on shutdown); `shutdown`
    /// disconnects them.
    pub fn new(
        hub: Arc<Hub>,
        rooms: Arc<Rooms>,
        settings: Settings,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Transport {
            hub,
            rooms,
            settings,
            tasks,
            shutdown,
        })
    }

    /// Whether this transport takes the request: a WebSocket opened directly by an
    /// Engine.IO v4 client (no session id, so not an upgrade from long-polling).
    fn takes(req: &Request) -> bool {
        let path = req.uri().path();
        if req.method() != Method::GET || (path != "/socket.io/" && path != "/socket.io") {
            return false;
        }
        let (mut eio4, mut websocket, mut sid) = (false, false, false);
        for pair in req.uri().query().unwrap_or("").split('&') {
            match pair.split_once('=').unwrap_or((pair, "")) {
                ("EIO", v) => eio4 = v == "4",
                ("transport", v) => websocket = v == "websocket",
                ("sid", _) => sid = true,
                _ => {}
            }
        }
        eio4 && websocket && !sid && header_has(req.headers(), header::UPGRADE, "websocket")
    }

    /// Answers the handshake and starts the connection's task once hyper hands it over.
    fn accept(self: &Arc<Self>, mut req: Request) -> Response {
        let headers = req.headers();
        let key = match headers.get(header::SEC_WEBSOCKET_KEY) {
            Some(key) if header_has(headers, header::SEC_WEBSOCKET_VERSION, "13") => {
                derive_accept_key(key.as_bytes())
            }
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    "a WebSocket handshake needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13",
                )
                    .into_response();
            }
        };
        // Only the upgrade handle is kept: the request head is dropped now.
        let upgrade = hyper::upgrade::on(&mut req);
        drop(req);
        let transport = self.clone();
        self.tasks.spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let config = WebSocketConfig::default()
                        .read_buffer_size(READ_BUFFER_BYTES)
                        .write_buffer_size(WRITE_BATCH_BYTES)
                        .max_message_size(Some(transport.settings.max_payload))
                        .max_frame_size(Some(transport.settings.max_payload));
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(config),
                    )
                    .await;
                    transport.serve(ws).await;
                }
                Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header(header::SEC_WEBSOCKET_ACCEPT, key)
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }

    async fn serve<S>(&self, mut ws: WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let sid = Sid::new();
        let peer = Peer::new(sid);
        let open = format!(
            r#"0{{"sid":"{sid}","upgrades":[],"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
            self.settings.ping_interval.as_millis(),
            self.settings.ping_timeout.as_millis(),
            self.settings.max_payload,
        );
        if ws.send(Message::text(open)).await.is_err() {
            return;
        }
        self.hub.attach(peer.clone());
        let mut session = Session::new(Instant::now(), &self.settings);
        let end = self.run(&mut ws, &peer, &mut session).await;
        tracing::debug!(%sid, reason = %end, "websocket connection ended");

        // Leaving the room also takes the socket out of the hub's room; then it goes.
        if let Some(conn) = session.conn.take() {
            socket::disconnect(&self.rooms, &conn).await;
        }
        self.hub.detach(sid);
        if matches!(end, End::Shutdown) {
            let _ = ws.feed(Message::text("41")).await;
        }
        // A client that does not read any more cannot hold the task.
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    }

    async fn run<S>(&self, ws: &mut WebSocketStream<S>, peer: &Arc<Peer>, s: &mut Session) -> End
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let timer = tokio::time::sleep_until(s.deadline());
        let shutdown = self.shutdown.cancelled();
        tokio::pin!(timer, shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return End::Shutdown,
                () = peer.wake.notified() => {
                    let stall_limit = self.settings.ping_interval + self.settings.ping_timeout;
                    match tokio::time::timeout(stall_limit, write_outbox(ws, peer)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return End::Transport(e.to_string()),
                        Err(_) => return End::Stalled,
                    }
                }
                message = ws.next() => {
                    let text = match message {
                        None | Some(Ok(Message::Close(_))) => return End::ClientClosed,
                        Some(Err(e)) => return End::Transport(e.to_string()),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            // Attachments of binary events: the room protocol has none.
                            s.attachments = s.attachments.saturating_sub(1);
                            continue;
                        }
                        Some(Ok(_)) => continue, // WebSocket ping/pong: tungstenite answers.
                    };
                    if let Some(end) = self.on_text(&text, peer, s).await {
                        return end;
                    }
                }
                () = &mut timer => {
                    if let Some(end) = s.on_deadline(Instant::now(), peer) {
                        return end;
                    }
                }
            }
            // A fired timer must be re-armed even for the same instant, or it fires forever.
            if timer.is_elapsed() || timer.deadline() != s.deadline() {
                timer.as_mut().reset(s.deadline());
            }
        }
    }

    async fn on_text(&self, text: &str, peer: &Arc<Peer>, s: &mut Session) -> Option<End> {
        let Some(packet) = Inbound::parse(text) else {
            tracing::debug!(sid = %peer.sid, "malformed packet: closing");
            return Some(End::BadPacket);
        };
        match packet {
            Inbound::Pong => s.beat.on_pong(),
            Inbound::Close | Inbound::Disconnect { nsp: "/" } => return Some(End::ClientClosed),
            Inbound::Connect { nsp: "/" } if s.conn.is_none() => {
                peer.send(Frame::text(format!(r#"40{{"sid":"{}"}}"#, peer.sid)));
                let conn = Client::new(peer.sid);
                socket::greet(|event, data| match Frame::event(event, data) {
                    Ok(frame) => peer.send(frame),
                    Err(e) => tracing::warn!(error = %e, "cannot encode the greeting"),
                });
                tracing::debug!(sid = %peer.sid, transport = "websocket", "socket connected");
                s.conn = Some(conn);
            }
            Inbound::Connect { nsp } if nsp != "/" => {
                let refusal = serde_json::json!({"message": "Invalid namespace"});
                peer.send(Frame::text(format!("44{nsp},{refusal}")));
            }
            Inbound::Event {
                nsp: "/",
                ack,
                args,
                attachments,
            } => {
                s.attachments = attachments;
                let Some(conn) = &s.conn else {
                    return None; // not connected to the namespace yet: ignored
                };
                let Some((name, data)) = event_args(args) else {
                    tracing::debug!(sid = %peer.sid, "malformed event: closing");
                    return Some(End::BadPacket);
                };
                let reply = Reply {
                    peer: peer.clone(),
                    ack,
                };
                socket::dispatch(&self.rooms, conn, &name, data, reply).await;
            }
            // Pings from clients (v4 clients do not send them), no-ops, acknowledgements of
            // server emits (none are requested) and packets for other namespaces.
            _ => {}
        }
        None
    }

    /// The middleware that routes direct WebSocket connections here and everything else on.
    pub async fn intercept(
        State(transport): State<Arc<Transport>>,
        req: Request,
        next: Next,
    ) -> Response {
        if Self::takes(&req) {
            transport.accept(req)
        } else {
            next.run(req).await
        }
    }
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Writes every queued frame, then flushes once.
async fn write_outbox<S>(
    ws: &mut WebSocketStream<S>,
    peer: &Peer,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Frame(text)) = peer.next_frame() {
        ws.feed(Message::Text(text)).await?;
    }
    ws.flush().await
}

/// Where the outcome of one client event goes.
struct Reply {
    peer: Arc<Peer>,
    ack: Option<u64>,
}

impl Responder for Reply {
    fn sid(&self) -> Sid {
        self.peer.sid
    }

    fn emit_error(&self, invalid: &Invalid) {
        match Frame::event(ServerEvent::Error.name(), invalid) {
            Ok(frame) => self.peer.send(frame),
            Err(e) => tracing::warn!(error = %e, "cannot encode an error"),
        }
    }

    fn acknowledge<T: Serialize>(self, reply: &T) {
        if let Some(id) = self.ack {
            match Frame::ack(id, reply) {
                Ok(frame) => self.peer.send(frame),
                Err(e) => tracing::warn!(error = %e, "cannot encode an acknowledgement"),
            }
        }
    }
}

/// `["name", data, ...]` → the name and the first argument.
fn event_args(args: &str) -> Option<(String, Option<Value>)> {
    let mut args = match serde_json::from_str::<Value>(args).ok()? {
        Value::Array(args) => args.into_iter(),
        _ => return None,
    };
    match args.next()? {
        Value::String(name) => Some((name, args.next())),
        _ => None,
    }
}

/// What one connection has said so far.
struct Session {
    conn: Option<Arc<Client>>,
    beat: Heartbeat,
    /// Binary frames still to come for the last binary event.
    attachments: usize,
    connect_by: Instant,
}

impl Session {
    fn new(now: Instant, settings: &Settings) -> Self {
        Session {
            conn: None,
            beat: Heartbeat::new(now, settings.ping_interval, settings.ping_timeout),
            attachments: 0,
            connect_by: now + settings.connect_timeout,
        }
    }

    fn deadline(&self) -> Instant {
        match self.conn {
            None => self.beat.deadline().min(self.connect_by),
            Some(_) => self.beat.deadline(),
        }
    }

    fn on_deadline(&mut self, now: Instant, peer: &Peer) -> Option<End> {
        if self.conn.is_none() && now >= self.connect_by {
            return Some(End::ConnectTimeout);
        }
        if now < self.beat.deadline() {
            return None;
        }
        match self.beat.on_deadline(now) {
            Beat::SendPing => {
                peer.send(Frame(Utf8Bytes::from_static("2")));
                None
            }
            Beat::Dead => Some(End::PingTimeout),
        }
    }
}

/// The Engine.IO v4 heartbeat: the server pings every `interval`; a client that has not
/// answered within `timeout` is gone.
#[derive(Debug)]
struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    next: Instant,
    ping_sent: Option<Instant>,
}

#[derive(Debug, PartialEq, Eq)]
enum Beat {
    SendPing,
    Dead,
}

impl Heartbeat {
    fn new(now: Instant, interval: Duration, timeout: Duration) -> Self {
        Heartbeat {
            interval,
            timeout,
            next: now + interval,
            ping_sent: None,
        }
    }

    fn deadline(&self) -> Instant {
        self.next
    }

    /// Called at the deadline: ping now, or the unanswered ping's time is up.
    fn on_deadline(&mut self, now: Instant) -> Beat {
        if self.ping_sent.is_some() {
            return Beat::Dead;
        }
        self.ping_sent = Some(now);
        self.next = now + self.timeout;
        Beat::SendPing
    }

    fn on_pong(&mut self) {
        if let Some(sent) = self.ping_sent.take() {
            self.next = sent + self.interval;
        }
    }
}

/// A client packet: Engine.IO framing with a Socket.IO packet inside messages.
#[derive(Debug, PartialEq, Eq)]
enum Inbound<'a> {
    Close,
    Ping,
    Pong,
    Noop,
    Connect {
        nsp: &'a str,
    },
    Disconnect {
        nsp: &'a str,
    },
    Event {
        nsp: &'a str,
        ack: Option<u64>,
        args: &'a str,
        attachments: usize,
    },
    Ack,
}

impl<'a> Inbound<'a> {
    /// `None` if the text is not a packet a client may send.
    fn parse(text: &'a str) -> Option<Self> {
        let (kind, rest) = split_first(text)?;
        match kind {
            '1' => Some(Inbound::Close),
            '2' => Some(Inbound::Ping),
            '3' => Some(Inbound::Pong),
            '6' => Some(Inbound::Noop),
            '4' => Self::parse_socket_io(rest),
            _ => None,
        }
    }

    fn parse_socket_io(text: &'a str) -> Option<Self> {
        let (kind, mut rest) = split_first(text)?;
        let mut attachments = 0;
        if kind == '5' || kind == '6' {
            let (count, after) = rest.split_once('-')?;
            attachments = count.parse().ok()?;
            rest = after;
        }
        let nsp = if rest.starts_with('/') {
            match rest.split_once(',') {
                Some((nsp, after)) => {
                    rest = after;
                    nsp
                }
                None => std::mem::take(&mut rest),
            }
        } else {
            "/"
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let ack = match digits {
            0 => None,
            _ => Some(rest[..digits].parse().ok()?),
        };
        let args = &rest[digits..];
        match kind {
            '0' => Some(Inbound::Connect { nsp }),
            '1' => Some(Inbound::Disconnect { nsp }),
            '2' | '5' => Some(Inbound::Event {
                nsp,
                ack,
                args,
                attachments,
            }),
            '3' | '6' => Some(Inbound::Ack),
            _ => None,
        }
    }
}

fn split_first(text: &str) -> Option<(char, &str)> {
    let mut chars = text.chars();
    let first = chars.next()?;
    Some((first, chars.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_engine_io_packets() {
        assert_eq!(Inbound::parse("3"), Some(Inbound::Pong));
        assert_eq!(Inbound::parse("2"), Some(Inbound::Ping));
        assert_eq!(Inbound::parse("1"), Some(Inbound::Close));
        assert_eq!(Inbound::parse("6"), Some(Inbound::Noop));
        assert_eq!(Inbound::parse(""), None);
        assert_eq!(Inbound::parse("0"), None);
        assert_eq!(Inbound::parse("x"), None);
    }

    #[test]
    fn parses_socket_io_packets() {
        assert_eq!(Inbound::parse("40"), Some(Inbound::Connect { nsp: "/" }));
        assert_eq!(
            Inbound::parse(r#"40{"token":"x"}"#),
            Some(Inbound::Connect { nsp: "/" })
        );
        assert_eq!(
            Inbound::parse("40/admin,"),
            Some(Inbound::Connect { nsp: "/admin" })
        );
        assert_eq!(Inbound::parse("41"), Some(Inbound::Disconnect { nsp: "/" }));
        assert_eq!(
            Inbound::parse("41/admin"),
            Some(Inbound::Disconnect { nsp: "/admin" })
        );
        assert_eq!(
            Inbound::parse(r#"42["play",{"time":1}]"#),
            Some(Inbound::Event {
                nsp: "/",
                ack: None,
                args: r#"["play",{"time":1}]"#,
                attachments: 0
            })
        );
        assert_eq!(
            Inbound::parse(r#"4217["join_room",{"room_id":"a"}]"#),
            Some(Inbound::Event {
                nsp: "/",
                ack: Some(17),
                args: r#"["join_room",{"room_id":"a"}]"#,
                attachments: 0
            })
        );
        assert_eq!(
            Inbound::parse(r#"42/admin,3["x"]"#),
            Some(Inbound::Event {
                nsp: "/admin",
                ack: Some(3),
                args: r#"["x"]"#,
                attachments: 0
            })
        );
        assert_eq!(
            Inbound::parse(r#"451-["up",{"_placeholder":true,"num":0}]"#),
            Some(Inbound::Event {
                nsp: "/",
                ack: None,
                args: r#"["up",{"_placeholder":true,"num":0}]"#,
                attachments: 1
            })
        );
        assert_eq!(Inbound::parse("431[]"), Some(Inbound::Ack));
        assert_eq!(Inbound::parse("4"), None);
        assert_eq!(Inbound::parse("49"), None);
        assert_eq!(Inbound::parse("45x-[]"), None);
        assert_eq!(Inbound::parse("4299999999999999999999[]"), None);
    }

    #[test]
    fn event_args_take_the_name_and_first_argument() {
        assert_eq!(
            event_args(r#"["seek",{"time":3},"extra"]"#),
            Some(("seek".into(), Some(serde_json::json!({"time": 3}))))
        );
        assert_eq!(event_args(r#"["pause"]"#), Some(("pause".into(), None)));
        assert_eq!(event_args(r#"[1,2]"#), None);
        assert_eq!(event_args(r#"{"a":1}"#), None);
        assert_eq!(event_args(r#"["x""#), None);
        assert_eq!(event_args(""), None);
    }

    #[test]
    fn frames_are_socket_io_packets() {
        let frame = Frame::event("sync_state", &serde_json::json!({"t": 1.5})).ok();
        assert_eq!(
            frame.map(|f| f.0.to_string()),
            Some(r#"42["sync_state",{"t":1.5}]"#.to_string())
        );
        let ack = Frame::ack(7, &serde_json::json!({"ok": true})).ok();
        assert_eq!(
            ack.map(|f| f.0.to_string()),
            Some(r#"437[{"ok":true}]"#.to_string())
        );
    }

    #[test]
    fn heartbeat_pings_then_waits_for_the_pong() {
        let (interval, timeout) = (Duration::from_secs(25), Duration::from_secs(20));
        let start = Instant::now();
        let mut beat = Heartbeat::new(start, interval, timeout);
        assert_eq!(beat.deadline(), start + interval);

        let first_ping = start + interval;
        assert_eq!(beat.on_deadline(first_ping), Beat::SendPing);
        assert_eq!(beat.deadline(), first_ping + timeout);
        // The pong puts the next ping one interval after the last one, not after the pong.
        beat.on_pong();
        assert_eq!(beat.deadline(), first_ping + interval);

        let second_ping = first_ping + interval;
        assert_eq!(beat.on_deadline(second_ping), Beat::SendPing);
        assert_eq!(beat.on_deadline(second_ping + timeout), Beat::Dead);
    }

    #[test]
    fn an_unsolicited_pong_changes_nothing() {
        let start = Instant::now();
        let mut beat = Heartbeat::new(start, Duration::from_secs(25), Duration::from_secs(20));
        beat.on_pong();
        assert_eq!(beat.deadline(), start + Duration::from_secs(25));
    }

    #[test]
    fn a_full_outbox_drops_new_frames() {
        let peer = Peer::new(Sid::new());
        for _ in 0..OUTBOX_FRAMES + 5 {
            peer.send(Frame(Utf8Bytes::from_static("2")));
        }
        assert_eq!(peer.outbox().frames.len(), OUTBOX_FRAMES);
        assert_eq!(peer.outbox().dropped, 5);
        let mut drained = 0;
        while peer.next_frame().is_some() {
            drained += 1;
        }
        assert_eq!(drained, OUTBOX_FRAMES);
        assert!(peer.outbox().frames.capacity() <= 16);
    }
}
