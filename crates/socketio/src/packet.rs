//! [`Packet`]: an outgoing Socket.IO packet, encoded once and shared by every recipient.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One Engine.IO message as queued in an outbox.
#[derive(Clone, Debug)]
pub(crate) enum Frame {
    /// A text message, `4` prefix included (`42["event",...]`), or an Engine.IO packet.
    Text(Utf8Bytes),
    /// The data of a binary attachment (transports add their own framing).
    Binary(Bytes),
}

impl Frame {
    pub(crate) fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }
}

/// A pre-encoded Socket.IO packet for one namespace: `4` + the Socket.IO packet text, plus
/// its binary attachments. Build it once and [`broadcast`](crate::broadcast) or
/// [`emit`](crate::Socket::emit) it to any number of sockets of that namespace: each
/// recipient gets a reference-counted clone of the same bytes. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Packet {
    pub(crate) text: Utf8Bytes,
    pub(crate) attachments: Option<Arc<[Bytes]>>,
}

/// The JSON value that stands for attachment `num` in a binary packet's arguments
/// (`{"_placeholder":true,"num":num}`).
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({"_placeholder": true, "num": num})
}

impl Packet {
    /// `42["name",data]`: an event with one argument.
    pub fn event<T: Serialize + ?Sized>(
        nsp: &str,
        name: &str,
        data: &T,
    ) -> serde_json::Result<Packet> {
        let mut buf = head(b'2', nsp, 0, None);
        buf.push(b'[');
        serde_json::to_writer(&mut buf, name)?;
        buf.push(b',');
        serde_json::to_writer(&mut buf, data)?;
        buf.push(b']');
        Ok(Packet::new(buf, Vec::new()))
    }

    /// An event with any number of arguments and binary attachments: `42["name",...args]`,
    /// or `45<n>-["name",...args]` when `attachments` is not empty (the arguments then hold
    /// [`placeholder`]s where the attachments belong).
    pub fn event_args<T: Serialize>(
        nsp: &str,
        name: &str,
        args: &[T],
        attachments: Vec<Bytes>,
    ) -> serde_json::Result<Packet> {
        let kind = if attachments.is_empty() { b'2' } else { b'5' };
        let mut buf = head(kind, nsp, attachments.len(), None);
        buf.push(b'[');
        serde_json::to_writer(&mut buf, name)?;
        for arg in args {
            buf.push(b',');
            serde_json::to_writer(&mut buf, arg)?;
        }
        buf.push(b']');
        Ok(Packet::new(buf, attachments))
    }

    /// `43<id>[data]`: the acknowledgement of a client's event, with one argument.
    pub fn ack<T: Serialize + ?Sized>(nsp: &str, id: u64, data: &T) -> serde_json::Result<Packet> {
        let mut buf = head(b'3', nsp, 0, Some(id));
        buf.push(b'[');
        serde_json::to_writer(&mut buf, data)?;
        buf.push(b']');
        Ok(Packet::new(buf, Vec::new()))
    }

    /// An acknowledgement with any number of arguments and binary attachments:
    /// `43<id>[...args]`, or `46<n>-<id>[...args]` with attachments.
    pub fn ack_args<T: Serialize>(
        nsp: &str,
        id: u64,
        args: &[T],
        attachments: Vec<Bytes>,
    ) -> serde_json::Result<Packet> {
        let kind = if attachments.is_empty() { b'3' } else { b'6' };
        let mut buf = head(kind, nsp, attachments.len(), Some(id));
        serde_json::to_writer(&mut buf, args)?;
        Ok(Packet::new(buf, attachments))
    }

    /// A packet from its encoded Socket.IO text (without the Engine.IO `4`), for packets the
    /// constructors do not cover. The text is sent as is.
    pub fn raw(socket_io_text: &str, attachments: Vec<Bytes>) -> Packet {
        let mut buf = Vec::with_capacity(socket_io_text.len() + 1);
        buf.push(b'4');
        buf.extend_from_slice(socket_io_text.as_bytes());
        Packet::new(buf, attachments)
    }

    /// An Engine.IO packet other than a message (e.g. the open packet), sent as is.
    pub(crate) fn engine(text: String) -> Packet {
        Packet {
            text: Utf8Bytes::from(text),
            attachments: None,
        }
    }

    /// The Engine.IO message text: `4` followed by the Socket.IO packet.
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// The binary attachments.
    pub fn attachments(&self) -> &[Bytes] {
        self.attachments.as_deref().unwrap_or_default()
    }

    /// Frames this packet queues, and the bytes they count against an outbox.
    pub(crate) fn frame_count(&self) -> usize {
        1 + self.attachments().len()
    }

    pub(crate) fn byte_count(&self) -> usize {
        self.text.len() + self.attachments().iter().map(Bytes::len).sum::<usize>()
    }

    pub(crate) fn frames(&self) -> impl Iterator<Item = Frame> + '_ {
        std::iter::once(Frame::Text(self.text.clone()))
            .chain(self.attachments().iter().cloned().map(Frame::Binary))
    }

    fn new(buf: Vec<u8>, attachments: Vec<Bytes>) -> Packet {
        // serde_json and the heads write UTF-8 only: the lossy branch is never taken.
        let text = match String::from_utf8(buf) {
            Ok(s) => Utf8Bytes::from(s),
            Err(e) => Utf8Bytes::from(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        };
        let attachments = (!attachments.is_empty()).then(|| Arc::from(attachments));
        Packet { text, attachments }
    }
}

/// `4<kind>[<n>-][<nsp>,][<id>]`
fn head(kind: u8, nsp: &str, attachments: usize, id: Option<u64>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    buf.push(b'4');
    buf.push(kind);
    if kind == b'5' || kind == b'6' {
        buf.extend_from_slice(attachments.to_string().as_bytes());
        buf.push(b'-');
    }
    if nsp != "/" {
        buf.extend_from_slice(nsp.as_bytes());
        buf.push(b',');
    }
    if let Some(id) = id {
        buf.extend_from_slice(id.to_string().as_bytes());
    }
    buf
}

/// The engine's own Socket.IO packets.
pub(crate) mod control {
    use super::*;

    /// CONNECT's answer: `40<nsp,>{"sid":"..."}` (v5) or `40<nsp,>` (v4).
    pub(crate) fn connect(nsp: &str, sid: Option<&str>) -> Packet {
        let mut buf = head(b'0', nsp, 0, None);
        if let Some(sid) = sid {
            buf.extend_from_slice(b"{\"sid\":\"");
            buf.extend_from_slice(sid.as_bytes());
            buf.extend_from_slice(b"\"}");
        }
        Packet::new(buf, Vec::new())
    }

    /// CONNECT_ERROR: `44<nsp,><data>`.
    pub(crate) fn connect_error(nsp: &str, data: &Value) -> Packet {
        let mut buf = head(b'4', nsp, 0, None);
        if serde_json::to_writer(&mut buf, data).is_err() {
            buf.extend_from_slice(b"{}");
        }
        Packet::new(buf, Vec::new())
    }

    /// DISCONNECT: `41<nsp,>`.
    pub(crate) fn disconnect(nsp: &str) -> Packet {
        Packet::new(head(b'1', nsp, 0, None), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events() {
        let p = Packet::event("/", "sync_state", &json!({"t": 1.5})).unwrap();
        assert_eq!(p.as_str(), r#"42["sync_state",{"t":1.5}]"#);
        let p = Packet::event("/custom", "auth", &json!({})).unwrap();
        assert_eq!(p.as_str(), r#"42/custom,["auth",{}]"#);
        let p = Packet::event_args("/", "m", &[json!(1), json!("2")], vec![]).unwrap();
        assert_eq!(p.as_str(), r#"42["m",1,"2"]"#);
        let p = Packet::event_args::<Value>("/", "m", &[], vec![]).unwrap();
        assert_eq!(p.as_str(), r#"42["m"]"#);
    }

    #[test]
    fn binary_events_and_acks() {
        let att = vec![Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[4])];
        let p =
            Packet::event_args("/", "m", &[placeholder(0), placeholder(1)], att.clone()).unwrap();
        assert_eq!(
            p.as_str(),
            r#"452-["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(p.frame_count(), 3);
        assert_eq!(p.byte_count(), p.as_str().len() + 4);
        let p = Packet::ack_args("/", 789, &[placeholder(0)], att[..1].to_vec()).unwrap();
        assert_eq!(p.as_str(), r#"461-789[{"_placeholder":true,"num":0}]"#);
        let p = Packet::ack("/x", 7, &json!({"ok": true})).unwrap();
        assert_eq!(p.as_str(), r#"43/x,7[{"ok":true}]"#);
        let p = Packet::ack_args("/", 456, &[json!(1), json!("2")], vec![]).unwrap();
        assert_eq!(p.as_str(), r#"43456[1,"2"]"#);
    }

    #[test]
    fn control_packets() {
        assert_eq!(
            control::connect("/", Some("abc")).as_str(),
            r#"40{"sid":"abc"}"#
        );
        assert_eq!(control::connect("/custom", None).as_str(), "40/custom,");
        assert_eq!(
            control::connect_error("/random", &json!({"message": "Invalid namespace"})).as_str(),
            r#"44/random,{"message":"Invalid namespace"}"#
        );
        assert_eq!(control::disconnect("/").as_str(), "41");
        assert_eq!(control::disconnect("/a").as_str(), "41/a,");
        assert_eq!(Packet::raw("2[\"x\"]", vec![]).as_str(), "42[\"x\"]");
    }
}
