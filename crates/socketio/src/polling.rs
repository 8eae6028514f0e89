//! HTTP long-polling: the session a long-polling connection keeps between requests, and
//! the GET and POST requests. The connection's task owns the session's logic; requests only
//! hand packets over (POST) and take the outbox's contents (GET).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full, Limited};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::conn::{CloseReply, ConnShared, Out, PollAnswer, Protocol};
use crate::decode::{self, PayloadItem};
use crate::engine::{Ws, error_response};
use crate::handler::DisconnectReason;
use crate::packet::Frame;

/// How long a GET that arrives during an upgrade waits for it to complete.
const UPGRADE_PATIENCE: std::time::Duration = std::time::Duration::from_millis(100);

/// Something a client sent, in order, for the connection's task.
pub(crate) enum Inbound {
    Text(Utf8Bytes),
    Binary(Bytes),
    /// The transport failed (a bad request): end with this reason.
    Fail(DisconnectReason),
}

/// A long-polling connection's state between requests. Dropped when the connection moves
/// to WebSocket or ends: nothing of it stays with an upgraded connection.
pub(crate) struct PollingSession {
    pub(crate) conn: Arc<ConnShared>,
    inbox: Mutex<Inbox>,
}

#[derive(Default)]
struct Inbox {
    items: VecDeque<Inbound>,
    /// The WebSocket of an upgrade, once open.
    probe: Option<Box<Ws>>,
    probing: bool,
    post_active: bool,
    post: Option<Waker>,
    closed: bool,
}

impl PollingSession {
    pub(crate) fn new(conn: Arc<ConnShared>) -> Arc<Self> {
        Arc::new(PollingSession {
            conn,
            inbox: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next packet a POST delivered; wakes the POST once all are taken.
    pub(crate) fn pop(&self) -> Option<Inbound> {
        let mut inbox = self.lock();
        let item = inbox.items.pop_front();
        if inbox.items.is_empty()
            && let Some(post) = inbox.post.take()
        {
            post.wake();
        }
        item
    }

    pub(crate) fn take_probe(&self) -> Option<Box<Ws>> {
        self.lock().probe.take()
    }

    /// A WebSocket may be offered again (the last probe failed).
    pub(crate) fn probe_ended(&self) {
        self.lock().probing = false;
    }

    /// Claims the one upgrade slot; false if an upgrade is already under way.
    pub(crate) fn begin_probe(&self) -> bool {
        let mut inbox = self.lock();
        !inbox.closed && !std::mem::replace(&mut inbox.probing, true)
    }

    pub(crate) fn is_probing(&self) -> bool {
        self.lock().probing
    }

    /// Hands the upgrade's WebSocket to the task.
    pub(crate) fn offer(&self, ws: Box<Ws>) {
        {
            let mut inbox = self.lock();
            if inbox.closed {
                return;
            }
            inbox.probe = Some(ws);
        }
        self.conn.signal(crate::conn::SIG_INBOX);
    }

    /// Ends the connection with `reason` once the packets before are handled.
    pub(crate) fn fail(&self, reason: DisconnectReason) {
        {
            let mut inbox = self.lock();
            if inbox.closed {
                return;
            }
            inbox.items.push_back(Inbound::Fail(reason));
        }
        self.conn.signal(crate::conn::SIG_INBOX);
    }

    /// The session is over (upgraded or closed): POSTs are released, nothing more is taken.
    pub(crate) fn close(&self) {
        let mut inbox = self.lock();
        inbox.closed = true;
        inbox.items.clear();
        inbox.probe = None;
        if let Some(post) = inbox.post.take() {
            post.wake();
        }
    }

    fn deliver(&self, items: Vec<Inbound>) -> bool {
        {
            let mut inbox = self.lock();
            if inbox.closed {
                return false;
            }
            inbox.items.extend(items);
        }
        self.conn.signal(crate::conn::SIG_INBOX);
        true
    }

    fn poll_delivered(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inbox = self.lock();
        if inbox.items.is_empty() || inbox.closed {
            return Poll::Ready(());
        }
        inbox.post = Some(cx.waker().clone());
        Poll::Pending
    }

    fn begin_post(&self) -> bool {
        !std::mem::replace(&mut self.lock().post_active, true)
    }

    fn end_post(&self) {
        let mut inbox = self.lock();
        inbox.post_active = false;
        inbox.post = None;
    }
}

/// A long-polling GET: waits for something to send, then sends it all (up to `max_payload`).
pub(crate) async fn get(session: Arc<PollingSession>) -> Response<Full<Bytes>> {
    let conn = session.conn.clone();
    let Some(during_upgrade) = conn.begin_get() else {
        // Two GETs at once: the reference server closes the session.
        session.fail(DisconnectReason::TransportError);
        return error_response(http::StatusCode::BAD_REQUEST, 3, "Bad request");
    };
    struct EndGet<'a>(&'a ConnShared);
    impl Drop for EndGet<'_> {
        fn drop(&mut self) {
            self.0.end_get();
        }
    }
    let _end = EndGet(&conn);
    let max = conn.config().max_payload;
    // A GET that arrives once the probe is answered waits a moment for the upgrade to
    // complete (then it is refused like any request after the upgrade); a client that
    // polled before it saw `3probe` still gets its answer (a noop) soon.
    let mut hold = during_upgrade;
    let patience = tokio::time::sleep(UPGRADE_PATIENCE);
    tokio::pin!(patience);
    let answer = std::future::poll_fn(|cx| {
        if hold && patience.as_mut().poll(cx).is_ready() {
            hold = false;
        }
        conn.poll_get(cx, max, hold)
    })
    .await;
    let (outs, last) = match answer {
        PollAnswer::Payload(outs) => (outs, None),
        PollAnswer::Upgraded => {
            let mut response =
                error_response(http::StatusCode::BAD_REQUEST, 1, "Session ID unknown");
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            return response;
        }
        PollAnswer::Closed(outs, CloseReply::Close) => (outs, Some("1")),
        PollAnswer::Closed(outs, CloseReply::Noop) => (outs, Some("6")),
    };
    let final_answer = last.is_some();
    let body = encode_payload(conn.protocol, &outs, last);
    let mut response = text_response(body);
    if final_answer || session.is_probing() {
        // The client will not poll on this HTTP connection again: let it go now.
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// A long-polling POST: decodes the payload, hands its packets to the task in order and
/// answers `ok` once the task has taken them (so one client cannot queue without bound).
pub(crate) async fn post<B>(session: Arc<PollingSession>, body: B) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !session.begin_post() {
        session.fail(DisconnectReason::TransportError);
        return error_response(http::StatusCode::BAD_REQUEST, 3, "Bad request");
    }
    struct EndPost<'a>(&'a PollingSession);
    impl Drop for EndPost<'_> {
        fn drop(&mut self) {
            self.0.end_post();
        }
    }
    let _end = EndPost(&session);
    let conn = &session.conn;
    let bytes = match Limited::new(body, conn.config().max_payload)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            session.fail(DisconnectReason::TransportError);
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return error_response(http::StatusCode::PAYLOAD_TOO_LARGE, 3, "Payload too large");
            }
            return error_response(http::StatusCode::BAD_REQUEST, 3, "Bad request");
        }
    };
    let decoded = match conn.protocol {
        Protocol::V5 => decode::payload_v4(&bytes),
        Protocol::V4 => decode::payload_v3(&bytes),
    };
    let items = match decoded {
        Ok(items) => items,
        Err(e) => {
            tracing::debug!(sid = %conn.sid, error = %e, "malformed long-polling payload");
            session.fail(DisconnectReason::MalformedPacket);
            return error_response(http::StatusCode::BAD_REQUEST, 3, "Bad request");
        }
    };
    let inbound: Vec<Inbound> = items
        .into_iter()
        .map(|item| match item {
            PayloadItem::Text(text) => {
                match Utf8Bytes::try_from(bytes.slice_ref(text.as_bytes())) {
                    Ok(text) => Inbound::Text(text),
                    Err(_) => Inbound::Fail(DisconnectReason::MalformedPacket),
                }
            }
            PayloadItem::Binary(data) => Inbound::Binary(Bytes::from(data)),
        })
        .collect();
    if !session.deliver(inbound) {
        return error_response(http::StatusCode::BAD_REQUEST, 1, "Session ID unknown");
    }
    std::future::poll_fn(|cx| session.poll_delivered(cx)).await;
    let mut response = text_response(Bytes::from_static(b"ok"));
    if session.is_probing() {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

pub(crate) fn text_response(body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    response
}

/// The length of `text` as JavaScript counts it (UTF-16 code units).
pub(crate) fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Encodes packets as a long-polling payload: Engine.IO 4 separates them with `\x1e` and
/// sends binary as `b` + base64; Engine.IO 3 prefixes each with its length in UTF-16 code
/// units and `:`, binary as `b4` + base64.
pub(crate) fn encode_payload(protocol: Protocol, outs: &[Out], last: Option<&str>) -> Bytes {
    let mut buf = String::new();
    let push = |packet: &str, buf: &mut String| match protocol {
        Protocol::V5 => {
            if !buf.is_empty() {
                buf.push('\x1e');
            }
            buf.push_str(packet);
        }
        Protocol::V4 => {
            buf.push_str(&utf16_len(packet).to_string());
            buf.push(':');
            buf.push_str(packet);
        }
    };
    for out in outs {
        match out {
            Out::Control(c) => push(c, &mut buf),
            Out::Frame(Frame::Text(t)) => push(t.as_str(), &mut buf),
            Out::Frame(Frame::Binary(b)) => {
                let prefix = match protocol {
                    Protocol::V5 => "b",
                    Protocol::V4 => "b4",
                };
                let packet = format!("{prefix}{}", BASE64.encode(b));
                push(&packet, &mut buf);
            }
        }
    }
    if let Some(last) = last {
        push(last, &mut buf);
    }
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &'static str) -> Out {
        Out::Frame(Frame::Text(Utf8Bytes::from_static(s)))
    }

    #[test]
    fn v4_payloads_are_separated_by_record_separators() {
        let outs = [
            Out::Control("2"),
            text("42[\"a\"]"),
            Out::Frame(Frame::Binary(Bytes::from_static(&[1, 2, 3]))),
        ];
        assert_eq!(
            encode_payload(Protocol::V5, &outs, None),
            Bytes::from_static(b"2\x1e42[\"a\"]\x1ebAQID")
        );
        assert_eq!(
            encode_payload(Protocol::V5, &[], Some("6")),
            Bytes::from_static(b"6")
        );
    }

    #[test]
    fn v3_payloads_count_utf16_units() {
        let outs = [
            text("42[\"é😀\"]"),
            Out::Frame(Frame::Binary(Bytes::from_static(&[1, 2, 3]))),
        ];
        assert_eq!(
            encode_payload(Protocol::V4, &outs, Some("1")),
            Bytes::from("9:42[\"é😀\"]6:b4AQID1:1")
        );
    }

    #[test]
    fn encoded_payloads_decode_back() {
        let outs = [
            text("42[\"é😀\"]"),
            text("3"),
            Out::Frame(Frame::Binary(Bytes::from_static(&[9]))),
        ];
        let v3 = encode_payload(Protocol::V4, &outs, None);
        assert_eq!(
            decode::payload_v3(&v3).unwrap(),
            vec![
                PayloadItem::Text("42[\"é😀\"]"),
                PayloadItem::Text("3"),
                PayloadItem::Binary(vec![9])
            ]
        );
        let v4 = encode_payload(Protocol::V5, &outs, None);
        assert_eq!(decode::payload_v4(&v4).unwrap().len(), 3);
    }
}
