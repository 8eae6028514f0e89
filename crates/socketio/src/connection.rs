//! One Engine.IO connection's task: the only task a connection has, on either transport.
//!
//! It is a hand-written poll loop over everything the connection waits for: signals from
//! other tasks (server-side disconnects, shutdown, long-polling requests), the transport
//! (WebSocket reads and incremental writes from the outbox, or the long-polling inbox and an
//! upgrade's probe), one timer (heartbeat, connect deadline, upgrade and close deadlines) and
//! the handler future that is running. Handler futures run one at a time in arrival order;
//! meanwhile the loop keeps reading control packets, writing the outbox and keeping the
//! heartbeat. Reading pauses only while [`MAX_QUEUED_WORK`] events wait for the handler.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, Stream};
use serde_json::Value;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::conn::{
    CLOSED, CLOSING, CONNECTED, Class, CloseReply, ConnShared, Out, PING, PONG, Protocol,
    SIG_SHUTDOWN, SIG_SOCKETS, Transport,
};
use crate::decode::{self, DecodeError, EnginePacket, PacketKind};
use crate::engine::{Shared, Ws};
use crate::handler::{DisconnectReason, Event, Handler};
use crate::heartbeat::{Beat, Heartbeat};
use crate::packet::{Frame, control};
use crate::polling::{Inbound, PollingSession};
use crate::socket::Socket;

/// Events waiting for the handler before the connection stops reading.
const MAX_QUEUED_WORK: usize = 256;

/// Messages read, or frames written, in one go before other work gets a turn.
const BATCH: usize = 32;

/// Rounds of the poll loop before the task yields to others.
const BUDGET: usize = 16;

/// The pause after a CONNECT answer before the packets that follow it are written.
const CONNECT_GAP: Duration = Duration::from_millis(3);

/// How long a closing WebSocket may take to flush and close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The transport under the connection. The WebSocket is kept inline: it lives in the
/// connection's task allocation rather than a second one.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Link {
    Polling {
        session: Arc<PollingSession>,
        probe: Option<Box<Probe>>,
    },
    WebSocket(Ws),
    Gone,
}

impl Link {
    pub(crate) fn polling(session: Arc<PollingSession>) -> Link {
        Link::Polling {
            session,
            probe: None,
        }
    }
}

/// The WebSocket of an upgrade in progress.
pub(crate) struct Probe {
    ws: Ws,
    by: Instant,
    /// `3probe` is owed (the WebSocket was not ready to take it).
    owe_pong: bool,
    answered: bool,
    unflushed: bool,
}

enum Work {
    Connect {
        nsp: usize,
        auth: Option<Value>,
    },
    Event {
        nsp: usize,
        event: Event,
    },
    Disconnect {
        nsp: usize,
        reason: DisconnectReason,
    },
}

enum Running<S> {
    Connect {
        nsp: usize,
        socket: Socket,
        fut: BoxFuture<Result<S, Value>>,
    },
    Other(BoxFuture<()>),
}

struct Entry<S> {
    nsp: usize,
    socket: Socket,
    state: S,
    slot: usize,
    /// A disconnect is queued for it.
    leaving: bool,
}

/// A binary packet waiting for its attachments.
struct Partial {
    nsp: Option<usize>,
    kind: PacketKind,
    args: Vec<Value>,
    id: Option<u64>,
    needed: usize,
    attachments: Vec<Bytes>,
    bytes: usize,
}

pub(crate) struct Connection<H: Handler> {
    shared: Arc<Shared<H>>,
    conn: Arc<ConnShared>,
    link: Link,
    entries: Vec<Entry<H::State>>,
    work: VecDeque<Work>,
    running: Option<Running<H::State>>,
    partial: Option<Box<Partial>>,
    beat: Heartbeat,
    /// Set until a namespace connects.
    connect_by: Option<Instant>,
    closing_by: Option<Instant>,
    /// Writing resumes then (see [`CONNECT_GAP`]).
    write_resume: Option<Instant>,
    end: Option<(DisconnectReason, CloseReply)>,
    /// The end was decided and handled: disconnects queued, the transport closing.
    ended: Option<DisconnectReason>,
    unflushed: bool,
    slot: usize,
    _guard: H::Guard,
}

impl<H: Handler> Connection<H> {
    pub(crate) fn new(
        shared: Arc<Shared<H>>,
        conn: Arc<ConnShared>,
        link: Link,
        guard: H::Guard,
    ) -> Self {
        let now = Instant::now();
        let config = &shared.common.config;
        let beat = Heartbeat::new(
            now,
            conn.protocol,
            config.ping_interval,
            config.ping_timeout,
        );
        let mut work = VecDeque::new();
        if conn.protocol == Protocol::V4 {
            // Socket.IO v4 clients are connected to the default namespace implicitly.
            work.push_back(Work::Connect { nsp: 0, auth: None });
        }
        Connection {
            connect_by: Some(now + config.connect_timeout),
            shared,
            conn,
            link,
            entries: Vec::new(),
            work,
            running: None,
            partial: None,
            beat,
            closing_by: None,
            write_resume: None,
            end: None,
            ended: None,
            unflushed: false,
            slot: usize::MAX,
            _guard: guard,
        }
    }

    pub(crate) async fn run(mut self) {
        self.slot = self.shared.conns.insert(self.conn.clone());
        self.shared
            .common
            .stats
            .opened(self.conn.transport(), self.conn.protocol);
        // Registered first, then the flag: a shutdown either sees this connection or is seen.
        if self.shared.shutting_down.load(Ordering::SeqCst) {
            self.finish(DisconnectReason::ServerShutdown, CloseReply::Close);
        }
        let sleep = tokio::time::sleep_until(self.deadline());
        tokio::pin!(sleep);
        std::future::poll_fn(|cx| self.poll(cx, sleep.as_mut())).await;
        tracing::debug!(sid = %self.conn.sid, reason = ?self.ended, "connection ended");
    }

    fn config(&self) -> &crate::Config {
        &self.shared.common.config
    }

    fn poll(&mut self, cx: &mut Context<'_>, mut sleep: Pin<&mut Sleep>) -> Poll<()> {
        for _ in 0..BUDGET {
            let mut progress = false;
            let signals = self.conn.begin_poll(cx.waker());
            if signals & SIG_SHUTDOWN != 0 {
                self.finish(DisconnectReason::ServerShutdown, CloseReply::Close);
            }
            if signals & SIG_SOCKETS != 0 {
                self.queue_server_disconnects();
            }
            if self.ended.is_none() {
                progress |= match self.link {
                    Link::Polling { .. } => self.poll_polling(cx),
                    Link::WebSocket(_) => self.poll_read(cx),
                    Link::Gone => false,
                };
            }
            if let Some((reason, reply)) = self.end.take() {
                self.begin_end(reason, reply);
                progress = true;
            }
            progress |= self.poll_work(cx);
            progress |= self.poll_write(cx);
            if self.ended.is_some() {
                progress |= self.poll_close(cx);
            }
            let deadline = self.deadline();
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            if sleep.as_mut().poll(cx).is_ready() {
                self.on_deadline(Instant::now());
                progress = true;
            }
            if self.ended.is_some()
                && matches!(self.link, Link::Gone)
                && self.running.is_none()
                && self.work.is_empty()
            {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn can_read(&self) -> bool {
        self.ended.is_none() && self.end.is_none() && self.work.len() < MAX_QUEUED_WORK
    }

    /// Decides the end (the first reason wins); handled at the next step of the loop.
    fn finish(&mut self, reason: DisconnectReason, reply: CloseReply) {
        if self.end.is_none() && self.ended.is_none() {
            self.end = Some((reason, reply));
        }
    }

    fn malformed(&mut self, error: DecodeError) {
        tracing::debug!(sid = %self.conn.sid, %error, "malformed packet: closing");
        self.finish(DisconnectReason::MalformedPacket, CloseReply::Close);
    }

    // ---- transports ----

    fn poll_read(&mut self, cx: &mut Context<'_>) -> bool {
        let mut read = 0;
        while read < BATCH && self.can_read() {
            let Link::WebSocket(ws) = &mut self.link else {
                return false;
            };
            match Pin::new(ws).poll_next(cx) {
                Poll::Pending => return read > 0,
                Poll::Ready(None) => {
                    self.finish(DisconnectReason::TransportClose, CloseReply::Close)
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(sid = %self.conn.sid, error = %e, "websocket read failed");
                    self.finish(DisconnectReason::TransportError, CloseReply::Close);
                }
                Poll::Ready(Some(Ok(message))) => self.on_message(message),
            }
            read += 1;
        }
        read > 0
    }

    fn on_message(&mut self, message: Message) {
        match message {
            Message::Text(text) => self.on_text(text.as_str()),
            Message::Binary(data) => match self.conn.protocol {
                Protocol::V5 => self.on_binary(data),
                // Engine.IO 3 puts the packet type (4, a message) before binary data.
                Protocol::V4 => match data.first() {
                    Some(4) => self.on_binary(data.slice(1..)),
                    _ => self.malformed(DecodeError("binary packet that is not a message")),
                },
            },
            Message::Close(_) => self.finish(DisconnectReason::TransportClose, CloseReply::Close),
            // WebSocket pings are answered by tungstenite.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }

    fn poll_polling(&mut self, cx: &mut Context<'_>) -> bool {
        let Link::Polling { session, probe } = &mut self.link else {
            return false;
        };
        let session = session.clone();
        let mut progress = false;
        if probe.is_none()
            && let Some(ws) = session.take_probe()
        {
            *probe = Some(Box::new(Probe {
                ws: *ws,
                by: Instant::now() + self.shared.common.config.upgrade_timeout,
                owe_pong: false,
                answered: false,
                unflushed: false,
            }));
            progress = true;
        }
        let mut read = 0;
        while read < BATCH && self.can_read() {
            let Some(item) = session.pop() else {
                break;
            };
            self.on_inbound(item);
            read += 1;
        }
        progress |= read > 0;
        progress | self.poll_probe(cx)
    }

    fn on_inbound(&mut self, item: Inbound) {
        match item {
            Inbound::Text(text) => self.on_text(text.as_str()),
            Inbound::Binary(data) => self.on_binary(data),
            Inbound::Fail(reason) => self.finish(reason, CloseReply::Close),
        }
    }

    /// Reads the probe WebSocket of an upgrade: `2probe` → `3probe` (and a noop for the
    /// pending GET), then `5` completes the upgrade.
    fn poll_probe(&mut self, cx: &mut Context<'_>) -> bool {
        enum Next {
            Wait,
            Upgrade,
            Drop,
        }
        let Link::Polling {
            probe: Some(probe), ..
        } = &mut self.link
        else {
            return false;
        };
        let mut progress = false;
        let mut noop = false;
        let mut next = Next::Wait;
        for _ in 0..4 {
            if probe.owe_pong {
                match Pin::new(&mut probe.ws).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if Pin::new(&mut probe.ws)
                            .start_send(Message::text("3probe"))
                            .is_err()
                        {
                            next = Next::Drop;
                            break;
                        }
                        probe.owe_pong = false;
                        probe.unflushed = true;
                    }
                    Poll::Ready(Err(_)) => {
                        next = Next::Drop;
                        break;
                    }
                    Poll::Pending => {}
                }
            }
            if probe.unflushed {
                match Pin::new(&mut probe.ws).poll_flush(cx) {
                    Poll::Ready(Ok(())) => probe.unflushed = false,
                    Poll::Ready(Err(_)) => {
                        next = Next::Drop;
                        break;
                    }
                    Poll::Pending => {}
                }
            }
            match Pin::new(&mut probe.ws).poll_next(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(Message::Text(text)))) => {
                    progress = true;
                    match text.as_str() {
                        "2probe" if !probe.answered => {
                            probe.answered = true;
                            probe.owe_pong = true;
                            noop = true;
                        }
                        "5" if probe.answered => {
                            next = Next::Upgrade;
                            break;
                        }
                        _ => {
                            next = Next::Drop;
                            break;
                        }
                    }
                }
                Poll::Ready(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => progress = true,
                Poll::Ready(_) => {
                    next = Next::Drop;
                    break;
                }
            }
        }
        if noop {
            // The client pauses polling once its GET returns: make the pending one return.
            self.conn.set_upgrading(true);
        }
        match next {
            Next::Wait => progress,
            Next::Upgrade => {
                self.upgrade();
                true
            }
            Next::Drop => {
                self.drop_probe();
                true
            }
        }
    }

    fn drop_probe(&mut self) {
        if let Link::Polling { session, probe } = &mut self.link
            && probe.take().is_some()
        {
            tracing::debug!(sid = %self.conn.sid, "upgrade abandoned");
            self.conn.set_upgrading(false);
            session.probe_ended();
        }
    }

    /// `5` on the probe: the packets POSTed before are handled first, then the connection
    /// moves to the WebSocket with its outbox as it is (nothing lost, nothing twice).
    fn upgrade(&mut self) {
        let Link::Polling { session, probe } = std::mem::replace(&mut self.link, Link::Gone) else {
            return;
        };
        let Some(probe) = probe else {
            self.link = Link::polling(session);
            return;
        };
        while let Some(item) = session.pop() {
            self.on_inbound(item);
        }
        if self.end.is_some() {
            self.link = Link::polling(session);
            return;
        }
        session.close();
        self.shared.remove_session(&self.conn.sid);
        self.conn.upgraded();
        let stats = &self.shared.common.stats;
        stats.closed(Transport::Polling, self.conn.protocol);
        stats.opened(Transport::WebSocket, self.conn.protocol);
        tracing::debug!(sid = %self.conn.sid, "upgraded to websocket");
        let Probe { ws, .. } = *probe;
        self.link = Link::WebSocket(ws);
    }

    /// Writes the outbox to the WebSocket as far as it takes it, then flushes.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> bool {
        let Link::WebSocket(ws) = &mut self.link else {
            return false;
        };
        if self.closing_by.is_some_and(|by| Instant::now() >= by) {
            return false;
        }
        if let Some(at) = self.write_resume {
            if Instant::now() < at {
                return false;
            }
            self.write_resume = None;
        }
        let mut written = 0;
        let mut failed = None;
        while written < BATCH {
            match Pin::new(&mut *ws).poll_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => {
                    failed = Some(e);
                    break;
                }
                Poll::Ready(Ok(())) => {}
            }
            let Some(out) = self.conn.pop() else {
                break;
            };
            // A CONNECT answer goes out in a write of its own, and what follows a moment
            // later, as from the reference server (which writes them in different event-loop
            // turns): the protocol test suite reads the packet after it with a listener it
            // only adds once it has seen the CONNECT answer.
            let boundary =
                matches!(&out, Out::Frame(Frame::Text(t)) if t.as_str().starts_with("40"));
            let message = match out {
                Out::Control(text) => Message::Text(Utf8Bytes::from_static(text)),
                Out::Frame(Frame::Text(text)) => Message::Text(text),
                Out::Frame(Frame::Binary(data)) => match self.conn.protocol {
                    Protocol::V5 => Message::Binary(data),
                    Protocol::V4 => {
                        let mut framed = Vec::with_capacity(data.len() + 1);
                        framed.push(4);
                        framed.extend_from_slice(&data);
                        Message::Binary(Bytes::from(framed))
                    }
                },
            };
            if let Err(e) = Pin::new(&mut *ws).start_send(message) {
                failed = Some(e);
                break;
            }
            written += 1;
            self.unflushed = true;
            if boundary {
                self.write_resume = Some(Instant::now() + CONNECT_GAP);
                break;
            }
        }
        if failed.is_none() && self.unflushed {
            match Pin::new(&mut *ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => failed = Some(e),
                Poll::Pending => {}
            }
        }
        if let Some(e) = failed {
            tracing::debug!(sid = %self.conn.sid, error = %e, "websocket write failed");
            if self.ended.is_some() {
                self.link = Link::Gone;
            } else {
                self.finish(DisconnectReason::TransportError, CloseReply::Close);
            }
            return true;
        }
        written > 0
    }

    /// After the end: the WebSocket sends what is left of the outbox, then closes.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> bool {
        let expired = self.closing_by.is_some_and(|by| Instant::now() >= by);
        let ws = match &mut self.link {
            Link::WebSocket(ws) => ws,
            Link::Polling { .. } => {
                if expired || self.conn.close_answered() {
                    self.shared.remove_session(&self.conn.sid);
                    self.link = Link::Gone;
                    return true;
                }
                return false;
            }
            Link::Gone => return false,
        };
        if !expired && self.unflushed {
            return false;
        }
        if !expired && self.conn.has_pending() {
            return false;
        }
        match Pin::new(ws).poll_close(cx) {
            Poll::Pending if !expired => false,
            _ => {
                self.link = Link::Gone;
                true
            }
        }
    }

    // ---- packets ----

    fn on_text(&mut self, text: &str) {
        self.beat.on_packet(Instant::now());
        match decode::engine_packet(text) {
            Err(e) => self.malformed(e),
            Ok(EnginePacket::Message(packet)) => self.on_socket_packet(packet),
            Ok(EnginePacket::Pong(_)) => self.beat.on_pong(Instant::now()),
            Ok(EnginePacket::Ping(_)) => {
                if self.conn.protocol == Protocol::V4 {
                    self.conn.control(PONG);
                }
            }
            Ok(EnginePacket::Close) => {
                self.finish(DisconnectReason::TransportClose, CloseReply::Noop)
            }
            Ok(EnginePacket::Noop | EnginePacket::Upgrade) => {}
            Ok(EnginePacket::Open(_)) => {
                self.malformed(DecodeError("clients do not send open packets"))
            }
        }
    }

    fn on_socket_packet(&mut self, text: &str) {
        if self.partial.is_some() {
            return self.malformed(DecodeError("text while waiting for attachments"));
        }
        let packet = match decode::socket_packet(text) {
            Ok(packet) => packet,
            Err(e) => return self.malformed(e),
        };
        let payload = match packet.payload() {
            Ok(payload) => payload,
            Err(e) => return self.malformed(e),
        };
        let config = &self.shared.common.config;
        let nsp = config.namespaces.iter().position(|n| n == packet.nsp);
        match packet.kind {
            PacketKind::Connect => {
                let Some(nsp) = nsp else {
                    let data = match self.conn.protocol {
                        Protocol::V5 => serde_json::json!({"message": "Invalid namespace"}),
                        Protocol::V4 => Value::from("Invalid namespace"),
                    };
                    let refusal = control::connect_error(packet.nsp, &data);
                    self.conn.push(None, &refusal, Class::Reply);
                    return;
                };
                let auth = match self.conn.protocol {
                    Protocol::V5 => payload,
                    Protocol::V4 => None,
                };
                self.work.push_back(Work::Connect { nsp, auth });
            }
            PacketKind::Disconnect => {
                if let Some(nsp) = nsp {
                    if let Some(entry) = self.entries.iter_mut().find(|e| e.nsp == nsp) {
                        if entry.leaving {
                            return;
                        }
                        entry.leaving = true;
                    }
                    self.work.push_back(Work::Disconnect {
                        nsp,
                        reason: DisconnectReason::ClientDisconnect,
                    });
                }
            }
            PacketKind::ConnectError => {
                self.malformed(DecodeError("clients do not send CONNECT_ERROR"))
            }
            PacketKind::Event
            | PacketKind::Ack
            | PacketKind::BinaryEvent
            | PacketKind::BinaryAck => {
                let Some(Value::Array(args)) = payload else {
                    return self.malformed(DecodeError("arguments are not an array"));
                };
                if packet.attachments > 0 {
                    self.partial = Some(Box::new(Partial {
                        nsp,
                        kind: packet.kind,
                        args,
                        id: packet.id,
                        needed: packet.attachments,
                        attachments: Vec::with_capacity(packet.attachments.min(16)),
                        bytes: text.len(),
                    }));
                } else {
                    self.dispatch(nsp, packet.kind, args, packet.id, Vec::new());
                }
            }
        }
    }

    fn on_binary(&mut self, data: Bytes) {
        let max = self.config().max_payload;
        let Some(partial) = &mut self.partial else {
            return self.malformed(DecodeError("binary data without a binary packet"));
        };
        partial.bytes += data.len();
        if partial.bytes > max {
            tracing::debug!(sid = %self.conn.sid, "binary packet over maxPayload: closing");
            return self.finish(DisconnectReason::TransportError, CloseReply::Close);
        }
        partial.attachments.push(data);
        if partial.attachments.len() == partial.needed
            && let Some(p) = self.partial.take()
        {
            self.dispatch(p.nsp, p.kind, p.args, p.id, p.attachments);
        }
    }

    fn dispatch(
        &mut self,
        nsp: Option<usize>,
        kind: PacketKind,
        args: Vec<Value>,
        ack: Option<u64>,
        attachments: Vec<Bytes>,
    ) {
        if matches!(kind, PacketKind::Ack | PacketKind::BinaryAck) {
            return; // the engine never asks clients for acknowledgements
        }
        let (name, args) = match decode::event_name(args) {
            Ok(split) => split,
            Err(e) => return self.malformed(e),
        };
        let Some(nsp) = nsp else {
            return; // a namespace the client cannot have joined
        };
        let event = Event {
            name,
            args,
            attachments,
            ack,
            received: std::time::Instant::now(),
        };
        self.work.push_back(Work::Event { nsp, event });
    }

    // ---- the handler's work ----

    fn poll_work(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        loop {
            match &mut self.running {
                Some(Running::Other(fut)) => match fut.as_mut().poll(cx) {
                    Poll::Pending => return progress,
                    Poll::Ready(()) => self.running = None,
                },
                Some(Running::Connect { fut, .. }) => match fut.as_mut().poll(cx) {
                    Poll::Pending => return progress,
                    Poll::Ready(result) => {
                        if let Some(Running::Connect { nsp, socket, .. }) = self.running.take() {
                            self.connected(nsp, socket, result);
                        }
                    }
                },
                None => {}
            }
            progress = true;
            let Some(work) = self.work.pop_front() else {
                if self.work.capacity() > 0 {
                    // An idle connection keeps no queue.
                    self.work = VecDeque::new();
                }
                return progress;
            };
            self.start(work);
        }
    }

    fn start(&mut self, work: Work) {
        let handler = &self.shared.handler;
        match work {
            Work::Connect { nsp, auth } => {
                if self.ended.is_some() || self.entries.iter().any(|e| e.nsp == nsp) {
                    return;
                }
                let socket = Socket::new(self.conn.clone(), nsp);
                let fut = Box::pin(handler.connect(&socket, auth));
                self.running = Some(Running::Connect { nsp, socket, fut });
            }
            Work::Event { nsp, event } => {
                let Some(entry) = self.entries.iter().find(|e| e.nsp == nsp) else {
                    return;
                };
                if entry.socket.inner.state.load(Ordering::Acquire) != CONNECTED {
                    return; // disconnected by the server: no more events
                }
                let fut = Box::pin(handler.event(&entry.socket, &entry.state, event));
                self.running = Some(Running::Other(fut));
            }
            Work::Disconnect { nsp, reason } => {
                let Some(i) = self.entries.iter().position(|e| e.nsp == nsp) else {
                    return;
                };
                let entry = self.entries.swap_remove(i);
                self.conn
                    .settle(&entry.socket.inner.state, CLOSED, None, false);
                self.shared.sockets.remove(entry.slot);
                tracing::debug!(sid = %entry.socket.id(), nsp = entry.socket.nsp(), %reason, "socket disconnected");
                let fut = Box::pin(handler.disconnect(&entry.socket, entry.state, reason));
                self.running = Some(Running::Other(fut));
            }
        }
    }

    fn connected(&mut self, nsp: usize, socket: Socket, result: Result<H::State, Value>) {
        let nsp_name = socket.nsp().to_owned();
        match result {
            Ok(state) => {
                let sid = socket.id();
                let reply = match self.conn.protocol {
                    Protocol::V5 => control::connect(&nsp_name, Some(sid.as_str())),
                    Protocol::V4 => control::connect(&nsp_name, None),
                };
                let closing = socket.inner.state.load(Ordering::Acquire) == CLOSING;
                let to = if closing { CLOSING } else { CONNECTED };
                self.conn
                    .settle(&socket.inner.state, to, Some(&reply), true);
                let slot = self.shared.sockets.insert(socket.clone());
                let queued = self
                    .work
                    .iter()
                    .any(|w| matches!(w, Work::Disconnect { nsp: n, .. } if *n == nsp));
                let mut leaving = queued;
                if !leaving && closing {
                    self.work.push_back(Work::Disconnect {
                        nsp,
                        reason: DisconnectReason::ServerDisconnect,
                    });
                    leaving = true;
                }
                if !leaving && let Some(reason) = self.ended {
                    self.work.push_back(Work::Disconnect { nsp, reason });
                    leaving = true;
                }
                tracing::debug!(%sid, nsp = nsp_name, transport = ?self.conn.transport(), "socket connected");
                // Most connections have one namespace: no spare slots.
                self.entries.reserve_exact(1);
                self.entries.push(Entry {
                    nsp,
                    socket,
                    state,
                    slot,
                    leaving,
                });
                self.connect_by = None;
            }
            Err(data) => {
                let refusal = control::connect_error(&nsp_name, &data);
                self.conn
                    .settle(&socket.inner.state, CLOSED, Some(&refusal), false);
            }
        }
    }

    fn queue_server_disconnects(&mut self) {
        for entry in &mut self.entries {
            if !entry.leaving && entry.socket.inner.state.load(Ordering::Acquire) == CLOSING {
                entry.leaving = true;
                self.work.push_back(Work::Disconnect {
                    nsp: entry.nsp,
                    reason: DisconnectReason::ServerDisconnect,
                });
            }
        }
    }

    // ---- the end ----

    fn begin_end(&mut self, reason: DisconnectReason, reply: CloseReply) {
        if self.ended.is_some() {
            return;
        }
        self.ended = Some(reason);
        tracing::debug!(sid = %self.conn.sid, %reason, "closing connection");
        for entry in &mut self.entries {
            if reason == DisconnectReason::ServerShutdown
                && entry.socket.inner.state.load(Ordering::Acquire) == CONNECTED
            {
                self.conn
                    .push(None, &control::disconnect(entry.socket.nsp()), Class::Reply);
            }
            if !entry.leaving {
                entry.leaving = true;
                self.work.push_back(Work::Disconnect {
                    nsp: entry.nsp,
                    reason,
                });
            }
        }
        self.conn.close(reply);
        self.shared.conns.remove(self.slot);
        self.shared
            .common
            .stats
            .closed(self.conn.transport(), self.conn.protocol);
        match std::mem::replace(&mut self.link, Link::Gone) {
            Link::Polling { session, .. } => {
                session.close();
                if reply == CloseReply::Noop {
                    // The client closed (a POST of `1`): its GET may still be on its way;
                    // the session answers it `6` for a moment before it is forgotten.
                    self.link = Link::polling(session);
                    self.closing_by = Some(Instant::now() + CLOSE_GRACE);
                } else {
                    self.shared.remove_session(&self.conn.sid);
                }
            }
            Link::WebSocket(ws) => {
                self.link = Link::WebSocket(ws);
                self.closing_by = Some(Instant::now() + CLOSE_GRACE);
            }
            Link::Gone => {}
        }
    }

    // ---- time ----

    fn deadline(&self) -> Instant {
        let mut deadline = self.beat.deadline();
        if let Some(by) = self.connect_by {
            deadline = deadline.min(by);
        }
        if let Some(by) = self.closing_by {
            deadline = deadline.min(by);
        }
        if let Some(at) = self.write_resume {
            deadline = deadline.min(at);
        }
        if let Link::Polling {
            probe: Some(probe), ..
        } = &self.link
        {
            deadline = deadline.min(probe.by);
        }
        deadline
    }

    fn on_deadline(&mut self, now: Instant) {
        if self.closing_by.is_some_and(|by| now >= by) {
            self.closing_by = None;
            if let Link::Polling { .. } = self.link {
                self.shared.remove_session(&self.conn.sid);
            }
            self.link = Link::Gone;
        }
        if let Link::Polling {
            probe: Some(probe), ..
        } = &self.link
            && now >= probe.by
        {
            self.drop_probe();
        }
        if self.connect_by.is_some_and(|by| now >= by) {
            self.connect_by = None;
            if self.entries.is_empty() && self.ended.is_none() {
                tracing::debug!(sid = %self.conn.sid, "no namespace connected in time: closing");
                self.finish(DisconnectReason::TransportClose, CloseReply::Close);
            }
        }
        let paused = self.work.len() >= MAX_QUEUED_WORK;
        match self.beat.on_deadline(now, paused || self.ended.is_some()) {
            Beat::Wait => {}
            Beat::Ping => self.conn.control(PING),
            Beat::Dead => self.finish(DisconnectReason::PingTimeout, CloseReply::Close),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nop;

    impl Handler for Nop {
        type State = ();
        type Guard = ();
        fn admit(&self, _: &http::request::Parts) -> Result<(), crate::Refusal> {
            Ok(())
        }
        fn connect(
            &self,
            _: &Socket,
            _: Option<Value>,
        ) -> impl Future<Output = Result<(), Value>> + Send + 'static {
            std::future::ready(Ok(()))
        }
        fn event(&self, _: &Socket, _: &(), _: Event) -> impl Future<Output = ()> + Send + 'static {
            std::future::ready(())
        }
        fn disconnect(
            &self,
            _: &Socket,
            _: (),
            _: DisconnectReason,
        ) -> impl Future<Output = ()> + Send + 'static {
            std::future::ready(())
        }
    }

    /// The connection's state lives in its task for its whole life: keep it compact.
    #[test]
    fn the_connection_state_stays_small() {
        let (connection, ws) = (
            std::mem::size_of::<Connection<Nop>>(),
            std::mem::size_of::<Ws>(),
        );
        assert!(
            connection <= 640,
            "Connection is {connection} bytes (WebSocket {ws})"
        );
        assert!(std::mem::size_of::<ConnShared>() <= 192);
    }
}
