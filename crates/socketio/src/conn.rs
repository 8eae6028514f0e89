//! The state an Engine.IO connection shares between its task, its sockets, the senders of
//! broadcasts and (while it long-polls) its HTTP requests: mostly the bounded outbox.
//!
//! One short mutex guards it; nothing is ever awaited or written to the network under it.
//! A sender pushes frames and wakes the connection's writer only when the outbox was idle
//! (the first frame of a batch); the writer takes frames one by one as the transport accepts
//! them, so writes are incremental and a slow reader simply leaves frames queued until the
//! outbox is full, after which [`Class::Emit`] packets to it are dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::config::Config;
use crate::packet::{Frame, Packet};
use crate::sid::Sid;

/// Where a packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Queued in the socket's outbox.
    Queued,
    /// Not queued: the outbox is full (the client does not read fast enough).
    Dropped,
    /// Not queued: the socket is disconnected.
    Closed,
}

/// The Socket.IO protocol revision a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Socket.IO v4 over Engine.IO 3 (socket.io-client 2.x).
    V4,
    /// Socket.IO v5 over Engine.IO 4 (socket.io-client 3.x and 4.x).
    V5,
}

impl Protocol {
    /// The Engine.IO revision under it: 3 or 4.
    pub fn engine_io(self) -> u8 {
        match self {
            Protocol::V4 => 3,
            Protocol::V5 => 4,
        }
    }
}

/// The transport a connection currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Polling,
    WebSocket,
}

/// Counters for metrics, updated with relaxed atomics.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connections: [AtomicUsize; 4],
    pub(crate) sent: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

/// A copy of the engine's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Open Engine.IO connections by transport and Engine.IO revision.
    pub websocket_v4: usize,
    pub websocket_v3: usize,
    pub polling_v4: usize,
    pub polling_v3: usize,
    /// Packets accepted into an outbox (each recipient of a broadcast counts).
    pub messages_sent: u64,
    /// Packets dropped because the recipient's outbox was full (slow readers).
    pub messages_dropped: u64,
}

impl Stats {
    fn slot(transport: Transport, protocol: Protocol) -> usize {
        match (transport, protocol) {
            (Transport::WebSocket, Protocol::V5) => 0,
            (Transport::WebSocket, Protocol::V4) => 1,
            (Transport::Polling, Protocol::V5) => 2,
            (Transport::Polling, Protocol::V4) => 3,
        }
    }

    pub(crate) fn opened(&self, transport: Transport, protocol: Protocol) {
        self.connections[Self::slot(transport, protocol)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, transport: Transport, protocol: Protocol) {
        self.connections[Self::slot(transport, protocol)].fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self, sent: u64, dropped: u64) {
        if sent > 0 {
            self.sent.fetch_add(sent, Ordering::Relaxed);
        }
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let c = |i: usize| self.connections[i].load(Ordering::Relaxed);
        StatsSnapshot {
            websocket_v4: c(0),
            websocket_v3: c(1),
            polling_v4: c(2),
            polling_v3: c(3),
            messages_sent: self.sent.load(Ordering::Relaxed),
            messages_dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// What every connection of an engine shares (not generic over the handler).
pub(crate) struct Common {
    pub(crate) config: Config,
    pub(crate) stats: Stats,
}

/// Which budget a packet is queued under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Emits and broadcasts: `outbox_frames` / `outbox_bytes`.
    Emit,
    /// Acknowledgements and the engine's own packets: twice that, so that a client reading
    /// slowly behind a full outbox still gets the answers to its own requests.
    Reply,
}

/// Socket states (in [`crate::socket`]'s `AtomicU8`), changed under the connection's lock.
pub(crate) const CONNECTING: u8 = 0;
pub(crate) const CONNECTED: u8 = 1;
pub(crate) const CLOSING: u8 = 2;
pub(crate) const CLOSED: u8 = 3;

/// Engine.IO packets that jump the queue (bits of `ConnState::control`).
pub(crate) const PONG: u8 = 1;
pub(crate) const PING: u8 = 2;
pub(crate) const NOOP: u8 = 4;

/// Reasons to wake the connection's task (bits of `ConnState::signals`).
pub(crate) const SIG_SOCKETS: u8 = 1;
pub(crate) const SIG_SHUTDOWN: u8 = 2;
pub(crate) const SIG_INBOX: u8 = 4;

/// What a pending long-polling GET answers once the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReply {
    /// `6`: the client closed it.
    Noop,
    /// `1`: the server closed it.
    Close,
}

/// Something for a transport to write.
#[derive(Debug)]
pub(crate) enum Out {
    Control(&'static str),
    Frame(Frame),
}

/// What a long-polling GET answers.
#[derive(Debug)]
pub(crate) enum PollAnswer {
    Payload(Vec<Out>),
    /// The connection moved to WebSocket while the GET waited.
    Upgraded,
    Closed(Vec<Out>, CloseReply),
}

pub(crate) struct ConnShared {
    pub(crate) common: Arc<Common>,
    pub(crate) sid: Sid,
    pub(crate) protocol: Protocol,
    transport: AtomicU8,
    state: Mutex<ConnState>,
}

#[derive(Default)]
struct ConnState {
    frames: VecDeque<Frame>,
    bytes: usize,
    /// Frames emitted to a socket whose CONNECT is still being decided (sent after the
    /// CONNECT answer, or dropped with a refusal). One connect runs at a time.
    held: Vec<Frame>,
    control: u8,
    signals: u8,
    closed: Option<CloseReply>,
    /// `2probe` was answered on an upgrade's WebSocket.
    upgrading: bool,
    upgraded: bool,
    /// A GET has answered with the close.
    close_answered: bool,
    get_active: bool,
    dropped: u64,
    task: Option<Waker>,
    get: Option<Waker>,
}

impl ConnState {
    fn wake_writers(&mut self) {
        if let Some(task) = &self.task {
            task.wake_by_ref();
        }
        if let Some(get) = self.get.take() {
            get.wake();
        }
    }

    fn pop(&mut self) -> Option<Out> {
        for (bit, text) in [(PONG, "3"), (PING, "2"), (NOOP, "6")] {
            if self.control & bit != 0 {
                self.control &= !bit;
                return Some(Out::Control(text));
            }
        }
        match self.frames.pop_front() {
            Some(frame) => {
                self.bytes = self.bytes.saturating_sub(frame.len());
                Some(Out::Frame(frame))
            }
            None => {
                if self.frames.capacity() > 0 {
                    // An idle connection keeps no queue (one allocation per batch of frames).
                    self.frames = VecDeque::new();
                }
                None
            }
        }
    }
}

impl ConnShared {
    pub(crate) fn new(common: Arc<Common>, protocol: Protocol, transport: Transport) -> Arc<Self> {
        Arc::new(ConnShared {
            common,
            sid: Sid::new(),
            protocol,
            transport: AtomicU8::new(transport as u8),
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn config(&self) -> &Config {
        &self.common.config
    }

    pub(crate) fn transport(&self) -> Transport {
        if self.transport.load(Ordering::Relaxed) == Transport::WebSocket as u8 {
            Transport::WebSocket
        } else {
            Transport::Polling
        }
    }

    /// Queues a packet for a socket in state `socket` (or for the connection itself).
    pub(crate) fn push(&self, socket: Option<&AtomicU8>, packet: &Packet, class: Class) -> Emit {
        let mut st = self.lock();
        if st.closed.is_some() {
            return Emit::Closed;
        }
        let holding = match socket.map(|s| s.load(Ordering::Acquire)) {
            None | Some(CONNECTED) => false,
            Some(CONNECTING) => true,
            Some(_) => return Emit::Closed,
        };
        let config = self.config();
        let (max_frames, max_bytes) = match class {
            Class::Emit => (config.outbox_frames, config.outbox_bytes),
            Class::Reply => (
                config.outbox_frames.saturating_mul(2),
                config.outbox_bytes.saturating_mul(2),
            ),
        };
        let queued = st.frames.len() + st.held.len();
        let bytes = packet.byte_count();
        // An empty outbox takes any one packet, whatever its size.
        if queued > 0
            && (queued + packet.frame_count() > max_frames || st.bytes + bytes > max_bytes)
        {
            st.dropped += 1;
            if st.dropped.is_power_of_two() {
                tracing::debug!(sid = %self.sid, dropped = st.dropped, "outbox full: packets dropped");
            }
            return Emit::Dropped;
        }
        st.bytes += bytes;
        if holding {
            st.held.extend(packet.frames());
            return Emit::Queued;
        }
        let was_idle = st.frames.is_empty() && st.control == 0;
        st.frames.extend(packet.frames());
        if was_idle {
            st.wake_writers();
        }
        Emit::Queued
    }

    /// Changes a socket's state under the connection's lock, queuing `reply` first; the
    /// frames held while it connected are queued after it (`flush_held`) or dropped.
    pub(crate) fn settle(
        &self,
        socket: &AtomicU8,
        to: u8,
        reply: Option<&Packet>,
        flush_held: bool,
    ) {
        let mut st = self.lock();
        socket.store(to, Ordering::Release);
        let held = std::mem::take(&mut st.held);
        if st.closed.is_some() {
            return;
        }
        let was_idle = st.frames.is_empty() && st.control == 0;
        if let Some(reply) = reply {
            st.bytes += reply.byte_count();
            st.frames.extend(reply.frames());
        }
        if flush_held {
            st.frames.extend(held);
        } else {
            let freed: usize = held.iter().map(Frame::len).sum();
            st.bytes = st.bytes.saturating_sub(freed);
        }
        if was_idle && !st.frames.is_empty() {
            st.wake_writers();
        }
    }

    /// Frames and bytes waiting in the outbox.
    pub(crate) fn queued(&self) -> (usize, usize) {
        let st = self.lock();
        (st.frames.len() + st.held.len(), st.bytes)
    }

    /// Whether anything is queued for the transport.
    pub(crate) fn has_pending(&self) -> bool {
        let st = self.lock();
        st.control != 0 || !st.frames.is_empty()
    }

    /// Server-side disconnect of a socket: CLOSING, and DISCONNECT queued after whatever
    /// was emitted to it before. False if it was not connected (or connecting).
    pub(crate) fn disconnect(&self, socket: &AtomicU8, packet: &Packet) -> bool {
        let mut st = self.lock();
        let state = socket.load(Ordering::Acquire);
        if state != CONNECTED && state != CONNECTING {
            return false;
        }
        socket.store(CLOSING, Ordering::Release);
        if st.closed.is_none() {
            st.bytes += packet.byte_count();
            if state == CONNECTING {
                st.held.extend(packet.frames());
            } else {
                let was_idle = st.frames.is_empty() && st.control == 0;
                st.frames.extend(packet.frames());
                if was_idle {
                    st.wake_writers();
                }
            }
        }
        st.signals |= SIG_SOCKETS;
        if let Some(task) = &st.task {
            task.wake_by_ref();
        }
        true
    }

    /// Queues Engine.IO control packets (`PING`, `PONG`, `NOOP`), ahead of the frames.
    pub(crate) fn control(&self, bits: u8) {
        let mut st = self.lock();
        if st.closed.is_some() {
            return;
        }
        let was_idle = st.frames.is_empty() && st.control == 0;
        st.control |= bits;
        if was_idle {
            st.wake_writers();
        }
    }

    /// Wakes the task with `signals`.
    pub(crate) fn signal(&self, signals: u8) {
        let mut st = self.lock();
        st.signals |= signals;
        if let Some(task) = &st.task {
            task.wake_by_ref();
        }
    }

    /// The task's first step on every poll: remembers its waker, takes the signals.
    pub(crate) fn begin_poll(&self, waker: &Waker) -> u8 {
        let mut st = self.lock();
        match &st.task {
            Some(w) if w.will_wake(waker) => {}
            _ => st.task = Some(waker.clone()),
        }
        std::mem::take(&mut st.signals)
    }

    /// The next thing a WebSocket writer should write.
    pub(crate) fn pop(&self) -> Option<Out> {
        self.lock().pop()
    }

    /// No more frames are accepted; a waiting GET answers with what is left and `reply`.
    pub(crate) fn close(&self, reply: CloseReply) {
        let mut st = self.lock();
        if st.closed.is_none() {
            st.closed = Some(reply);
        }
        if let Some(get) = st.get.take() {
            get.wake();
        }
    }

    /// Whether a long-polling GET has answered with the close.
    pub(crate) fn close_answered(&self) -> bool {
        self.lock().close_answered
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// The switch from long-polling to WebSocket: GETs now answer `6`, the writer is the
    /// task. Frames still queued go out on the WebSocket, in order.
    pub(crate) fn upgraded(&self) {
        let mut st = self.lock();
        st.upgraded = true;
        st.upgrading = false;
        st.control &= !NOOP;
        self.transport
            .store(Transport::WebSocket as u8, Ordering::Relaxed);
        if let Some(get) = st.get.take() {
            get.wake();
        }
    }

    /// An upgrade's probe was answered (`true`, with a noop for the pending GET) or dropped.
    pub(crate) fn set_upgrading(&self, upgrading: bool) {
        let mut st = self.lock();
        st.upgrading = upgrading;
        if upgrading {
            let was_idle = st.frames.is_empty() && st.control == 0;
            st.control |= NOOP;
            if was_idle {
                st.wake_writers();
            }
        } else {
            st.control &= !NOOP;
        }
    }

    /// Starts a long-polling GET: `None` if one is already waiting (the client misbehaves),
    /// else whether an upgrade was under way when it arrived.
    pub(crate) fn begin_get(&self) -> Option<bool> {
        let mut st = self.lock();
        if std::mem::replace(&mut st.get_active, true) {
            return None;
        }
        Some(st.upgrading)
    }

    pub(crate) fn end_get(&self) {
        let mut st = self.lock();
        st.get_active = false;
        st.get = None;
    }

    /// A GET's wait: ready with what to answer once there is something to send. With
    /// `hold`, a GET that arrived during an upgrade leaves the outbox alone while the upgrade
    /// is under way (the WebSocket will carry it).
    pub(crate) fn poll_get(
        &self,
        cx: &mut Context<'_>,
        max_bytes: usize,
        hold: bool,
    ) -> Poll<PollAnswer> {
        let mut st = self.lock();
        if st.upgraded {
            return Poll::Ready(PollAnswer::Upgraded);
        }
        if let Some(reply) = st.closed {
            let outs = take_payload(&mut st, usize::MAX);
            st.close_answered = true;
            if let Some(task) = &st.task {
                task.wake_by_ref();
            }
            return Poll::Ready(PollAnswer::Closed(outs, reply));
        }
        if !(hold && st.upgrading) && (st.control != 0 || !st.frames.is_empty()) {
            return Poll::Ready(PollAnswer::Payload(take_payload(&mut st, max_bytes)));
        }
        st.get = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Control packets, then frames up to `max_bytes` (at least one).
fn take_payload(st: &mut ConnState, max_bytes: usize) -> Vec<Out> {
    let mut outs = Vec::new();
    let mut bytes = 0;
    for _ in 0..3 {
        if st.control == 0 {
            break;
        }
        if let Some(out) = st.pop() {
            outs.push(out);
        }
    }
    while let Some(frame) = st.frames.front() {
        if bytes > 0 && bytes + frame.len() > max_bytes {
            break;
        }
        bytes += frame.len();
        if let Some(out) = st.pop() {
            outs.push(out);
        }
    }
    outs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conn(frames: usize, bytes: usize) -> Arc<ConnShared> {
        let config = Config {
            outbox_frames: frames,
            outbox_bytes: bytes,
            ..Config::default()
        };
        let common = Arc::new(Common {
            config,
            stats: Stats::default(),
        });
        ConnShared::new(common, Protocol::V5, Transport::WebSocket)
    }

    fn texts(conn: &ConnShared) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(o) = conn.pop() {
            out.push(match o {
                Out::Control(c) => c.to_owned(),
                Out::Frame(Frame::Text(t)) => t.to_string(),
                Out::Frame(Frame::Binary(b)) => format!("<{} bytes>", b.len()),
            });
        }
        out
    }

    #[test]
    fn the_outbox_is_bounded_in_frames() {
        let c = conn(3, 1 << 20);
        let p = Packet::event("/", "m", &1).unwrap();
        let socket = AtomicU8::new(CONNECTED);
        let outcomes: Vec<Emit> = (0..5)
            .map(|_| c.push(Some(&socket), &p, Class::Emit))
            .collect();
        assert_eq!(
            outcomes,
            [
                Emit::Queued,
                Emit::Queued,
                Emit::Queued,
                Emit::Dropped,
                Emit::Dropped
            ]
        );
        // Replies may use twice the budget.
        assert_eq!(c.push(Some(&socket), &p, Class::Reply), Emit::Queued);
        assert_eq!(texts(&c).len(), 4);
    }

    #[test]
    fn the_outbox_is_bounded_in_bytes() {
        let c = conn(1000, 100);
        let p = Packet::event("/", "m", &"x".repeat(40)).unwrap(); // 50 bytes
        let socket = AtomicU8::new(CONNECTED);
        assert_eq!(c.push(Some(&socket), &p, Class::Emit), Emit::Queued);
        assert_eq!(c.push(Some(&socket), &p, Class::Emit), Emit::Queued);
        assert_eq!(c.push(Some(&socket), &p, Class::Emit), Emit::Dropped);
        assert!(c.pop().is_some());
        assert_eq!(c.push(Some(&socket), &p, Class::Emit), Emit::Queued);
        // An empty outbox takes one packet of any size.
        let big = Packet::event("/", "m", &"x".repeat(500)).unwrap();
        let c = conn(1000, 100);
        assert_eq!(c.push(Some(&socket), &big, Class::Emit), Emit::Queued);
        assert_eq!(c.push(Some(&socket), &big, Class::Emit), Emit::Dropped);
    }

    #[test]
    fn control_packets_jump_the_queue() {
        let c = conn(10, 1000);
        let socket = AtomicU8::new(CONNECTED);
        c.push(
            Some(&socket),
            &Packet::event("/", "a", &1).unwrap(),
            Class::Emit,
        );
        c.control(PING);
        assert_eq!(texts(&c), ["2", r#"42["a",1]"#]);
    }

    #[test]
    fn frames_of_a_connecting_socket_wait_for_its_connect_answer() {
        let c = conn(10, 1000);
        let socket = AtomicU8::new(CONNECTING);
        c.push(
            Some(&socket),
            &Packet::event("/", "auth", &json!({})).unwrap(),
            Class::Emit,
        );
        assert!(texts(&c).is_empty());
        c.settle(
            &socket,
            CONNECTED,
            Some(&crate::packet::control::connect("/", Some("s"))),
            true,
        );
        assert_eq!(texts(&c), [r#"40{"sid":"s"}"#, r#"42["auth",{}]"#]);

        let refused = AtomicU8::new(CONNECTING);
        c.push(
            Some(&refused),
            &Packet::event("/", "auth", &json!({})).unwrap(),
            Class::Emit,
        );
        let error = crate::packet::control::connect_error("/", &json!({"message": "no"}));
        c.settle(&refused, CLOSED, Some(&error), false);
        assert_eq!(texts(&c), [r#"44{"message":"no"}"#]);
        assert_eq!(c.push(Some(&refused), &error, Class::Emit), Emit::Closed);
    }

    #[test]
    fn a_closed_connection_takes_nothing() {
        let c = conn(10, 1000);
        c.close(CloseReply::Close);
        let socket = AtomicU8::new(CONNECTED);
        assert_eq!(
            c.push(
                Some(&socket),
                &Packet::event("/", "a", &1).unwrap(),
                Class::Emit
            ),
            Emit::Closed
        );
    }

    #[test]
    fn a_poll_takes_control_then_frames_up_to_the_byte_limit() {
        let c = conn(10, 1000);
        let socket = AtomicU8::new(CONNECTED);
        for _ in 0..3 {
            c.push(
                Some(&socket),
                &Packet::event("/", "a", &1).unwrap(),
                Class::Emit,
            );
        }
        c.control(PING);
        let mut st = c.lock();
        let outs = take_payload(&mut st, 12);
        assert_eq!(outs.len(), 2); // the ping and one 9-byte frame
        let outs = take_payload(&mut st, 1);
        assert_eq!(outs.len(), 1); // always at least one
    }
}
