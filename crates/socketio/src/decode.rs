//! The pure decoders of what clients send: Engine.IO packets, Engine.IO 3/4 long-polling
//! payloads and Socket.IO packets. Every function here is total: any input gives a value or a
//! [`DecodeError`], never a panic (they are meant for fuzzing), and none allocates more than a
//! small multiple of its input.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

/// Why a client's input is not a valid packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DecodeError {}

/// An Engine.IO packet in text form (its type is the first character).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    /// `0`: the handshake (only servers send it).
    Open(&'a str),
    /// `1`: the transport is closing.
    Close,
    /// `2`, `2probe`: a ping, with its payload.
    Ping(&'a str),
    /// `3`, `3probe`: a pong, with its payload.
    Pong(&'a str),
    /// `4...`: a message (a Socket.IO packet), without the `4`.
    Message(&'a str),
    /// `5`: the upgrade to WebSocket is complete.
    Upgrade,
    /// `6`: nothing.
    Noop,
}

/// Decodes one Engine.IO packet in text form.
pub fn engine_packet(text: &str) -> Result<EnginePacket<'_>, DecodeError> {
    let Some(kind) = text.as_bytes().first() else {
        return Err(DecodeError("empty packet"));
    };
    // The type byte is ASCII in every valid case, so `1..` is a character boundary there.
    let rest = || text.get(1..).unwrap_or_default();
    match kind {
        b'0' => Ok(EnginePacket::Open(rest())),
        b'1' => Ok(EnginePacket::Close),
        b'2' => Ok(EnginePacket::Ping(rest())),
        b'3' => Ok(EnginePacket::Pong(rest())),
        b'4' => Ok(EnginePacket::Message(rest())),
        b'5' => Ok(EnginePacket::Upgrade),
        b'6' => Ok(EnginePacket::Noop),
        _ => Err(DecodeError("unknown engine.io packet type")),
    }
}

/// One packet of a long-polling payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadItem<'a> {
    /// An Engine.IO packet in text form (see [`engine_packet`]).
    Text(&'a str),
    /// The data of a binary message (a Socket.IO attachment), already decoded.
    Binary(Vec<u8>),
}

/// Decodes an Engine.IO 4 long-polling payload: packets separated by `\x1e`, binary messages
/// as `b` + base64.
pub fn payload_v4(body: &[u8]) -> Result<Vec<PayloadItem<'_>>, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|_| DecodeError("payload is not UTF-8"))?;
    let mut items = Vec::new();
    for part in text.split('\x1e') {
        if let Some(b64) = part.strip_prefix('b') {
            let data = BASE64
                .decode(b64)
                .map_err(|_| DecodeError("invalid base64"))?;
            items.push(PayloadItem::Binary(data));
        } else if part.is_empty() {
            return Err(DecodeError("empty packet"));
        } else {
            items.push(PayloadItem::Text(part));
        }
    }
    Ok(items)
}

/// Decodes an Engine.IO 3 long-polling payload, in either framing its clients POST:
/// text (`<length>:<packet>` repeated, the length counted in UTF-16 code units as JavaScript
/// counts, binary messages as `b4` + base64) or binary (`<0|1><length digits as bytes>\xff`
/// then the packet: 0 for a text packet, 1 for a binary one whose first byte is its type).
pub fn payload_v3(body: &[u8]) -> Result<Vec<PayloadItem<'_>>, DecodeError> {
    match body.first() {
        None => Err(DecodeError("empty payload")),
        Some(0 | 1) => payload_v3_binary(body),
        Some(_) => payload_v3_text(body),
    }
}

fn payload_v3_text(body: &[u8]) -> Result<Vec<PayloadItem<'_>>, DecodeError> {
    let mut rest = std::str::from_utf8(body).map_err(|_| DecodeError("payload is not UTF-8"))?;
    let mut items = Vec::new();
    while !rest.is_empty() {
        let (len, after) = rest
            .split_once(':')
            .ok_or(DecodeError("payload length without ':'"))?;
        if len.is_empty() || len.len() > 10 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError("invalid payload length"));
        }
        let units: usize = len
            .parse()
            .map_err(|_| DecodeError("invalid payload length"))?;
        let end =
            utf16_prefix(after, units).ok_or(DecodeError("payload shorter than its length"))?;
        let (packet, next) = after.split_at(end);
        if packet.is_empty() {
            return Err(DecodeError("empty packet"));
        }
        if let Some(b64) = packet.strip_prefix('b') {
            let b64 = b64
                .strip_prefix('4')
                .ok_or(DecodeError("binary packet that is not a message"))?;
            let data = BASE64
                .decode(b64)
                .map_err(|_| DecodeError("invalid base64"))?;
            items.push(PayloadItem::Binary(data));
        } else {
            items.push(PayloadItem::Text(packet));
        }
        rest = next;
    }
    Ok(items)
}

/// The byte length of the first `units` UTF-16 code units of `text`, if it has that many and
/// they do not end inside a character.
fn utf16_prefix(text: &str, units: usize) -> Option<usize> {
    let mut count = 0;
    for (at, c) in text.char_indices() {
        if count == units {
            return Some(at);
        }
        count += c.len_utf16();
        if count > units {
            return None;
        }
    }
    (count == units).then_some(text.len())
}

fn payload_v3_binary(mut body: &[u8]) -> Result<Vec<PayloadItem<'_>>, DecodeError> {
    let mut items = Vec::new();
    while let Some((&kind, rest)) = body.split_first() {
        let digits = rest
            .iter()
            .position(|&b| b == 0xff)
            .ok_or(DecodeError("binary payload length without terminator"))?;
        if digits == 0 || digits > 10 {
            return Err(DecodeError("invalid binary payload length"));
        }
        let mut len = 0usize;
        for &d in &rest[..digits] {
            if d > 9 {
                return Err(DecodeError("invalid binary payload length"));
            }
            len = len * 10 + usize::from(d);
        }
        let data = &rest[digits + 1..];
        if data.len() < len {
            return Err(DecodeError("payload shorter than its length"));
        }
        let (packet, next) = data.split_at(len);
        match kind {
            0 => {
                let text = std::str::from_utf8(packet)
                    .map_err(|_| DecodeError("text packet is not UTF-8"))?;
                if text.is_empty() {
                    return Err(DecodeError("empty packet"));
                }
                items.push(PayloadItem::Text(text));
            }
            1 => match packet.split_first() {
                Some((4, data)) => items.push(PayloadItem::Binary(data.to_vec())),
                _ => return Err(DecodeError("binary packet that is not a message")),
            },
            _ => return Err(DecodeError("invalid binary payload framing")),
        }
        body = next;
    }
    Ok(items)
}

/// The type of a Socket.IO packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// `0`: connect to a namespace (with the auth payload in v5).
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event.
    Event,
    /// `3`: the acknowledgement of an event.
    Ack,
    /// `4`: a refused connection (only servers send it).
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck,
}

/// The structure of one Socket.IO packet; its data is still JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketPacket<'a> {
    pub kind: PacketKind,
    /// `/` unless the packet names another namespace (a v4 query string after `?` is cut).
    pub nsp: &'a str,
    /// How many binary attachments follow (binary packets only).
    pub attachments: usize,
    /// The acknowledgement id.
    pub id: Option<u64>,
    /// The JSON data, if any.
    pub data: Option<&'a str>,
}

/// Most binary attachments one packet may announce.
pub const MAX_ATTACHMENTS: usize = 1000;

/// Decodes the structure of a Socket.IO packet (an Engine.IO message's text).
/// [`SocketPacket::payload`] parses and checks its data.
pub fn socket_packet(text: &str) -> Result<SocketPacket<'_>, DecodeError> {
    let bytes = text.as_bytes();
    let kind = match bytes.first() {
        Some(b'0') => PacketKind::Connect,
        Some(b'1') => PacketKind::Disconnect,
        Some(b'2') => PacketKind::Event,
        Some(b'3') => PacketKind::Ack,
        Some(b'4') => PacketKind::ConnectError,
        Some(b'5') => PacketKind::BinaryEvent,
        Some(b'6') => PacketKind::BinaryAck,
        Some(_) => return Err(DecodeError("unknown socket.io packet type")),
        None => return Err(DecodeError("empty socket.io packet")),
    };
    let mut rest = text.get(1..).unwrap_or_default();
    let mut attachments = 0;
    if matches!(kind, PacketKind::BinaryEvent | PacketKind::BinaryAck) {
        let (count, after) = rest
            .split_once('-')
            .ok_or(DecodeError("binary packet without attachment count"))?;
        if count.is_empty() || count.len() > 4 || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError("invalid attachment count"));
        }
        attachments = count
            .parse()
            .map_err(|_| DecodeError("invalid attachment count"))?;
        if attachments > MAX_ATTACHMENTS {
            return Err(DecodeError("too many attachments"));
        }
        rest = after;
    }
    let mut nsp = "/";
    if rest.starts_with('/') {
        let (full, after) = match rest.find(',') {
            Some(comma) => (&rest[..comma], &rest[comma + 1..]),
            None => (rest, ""),
        };
        nsp = full.split('?').next().unwrap_or(full);
        rest = after;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = match digits {
        0 => None,
        _ => Some(
            rest[..digits]
                .parse::<u64>()
                .map_err(|_| DecodeError("invalid ack id"))?,
        ),
    };
    rest = &rest[digits..];
    let data = (!rest.is_empty()).then_some(rest);
    Ok(SocketPacket {
        kind,
        nsp,
        attachments,
        id,
        data,
    })
}

impl SocketPacket<'_> {
    /// Parses the data (with [`crate::json`]) and checks it fits the packet type, as the
    /// reference parser does: CONNECT takes an object or nothing, DISCONNECT nothing, events a
    /// non-empty array starting with a string or number, acknowledgements an array.
    pub fn payload(&self) -> Result<Option<Value>, DecodeError> {
        let value = match self.data {
            None => None,
            Some(text) => Some(
                crate::json::from_str::<Value>(text).map_err(|_| DecodeError("invalid JSON"))?,
            ),
        };
        let valid = match (self.kind, &value) {
            (PacketKind::Connect, None | Some(Value::Object(_))) => true,
            (PacketKind::Disconnect, None) => true,
            (PacketKind::ConnectError, Some(Value::Object(_) | Value::String(_))) => true,
            (PacketKind::Event | PacketKind::BinaryEvent, Some(Value::Array(args))) => {
                matches!(args.first(), Some(Value::String(_) | Value::Number(_)))
            }
            (PacketKind::Ack | PacketKind::BinaryAck, Some(Value::Array(_))) => true,
            _ => false,
        };
        if !valid {
            return Err(DecodeError("invalid payload for the packet type"));
        }
        Ok(value)
    }
}

/// Splits an event's arguments into its name and the rest. The name must be a string (the
/// JavaScript server also lets numbers through; no client library sends one, so a number is
/// taken for what it most likely is: a malformed packet).
pub fn event_name(args: Vec<Value>) -> Result<(String, Vec<Value>), DecodeError> {
    let mut args = args.into_iter();
    let name = match args.next() {
        Some(Value::String(name)) => name,
        _ => return Err(DecodeError("event without a name")),
    };
    Ok((name, args.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn engine_packets() {
        assert_eq!(engine_packet("1"), Ok(EnginePacket::Close));
        assert_eq!(engine_packet("2"), Ok(EnginePacket::Ping("")));
        assert_eq!(engine_packet("2probe"), Ok(EnginePacket::Ping("probe")));
        assert_eq!(engine_packet("3probe"), Ok(EnginePacket::Pong("probe")));
        assert_eq!(
            engine_packet("42[\"a\"]"),
            Ok(EnginePacket::Message("2[\"a\"]"))
        );
        assert_eq!(engine_packet("5"), Ok(EnginePacket::Upgrade));
        assert_eq!(engine_packet("6"), Ok(EnginePacket::Noop));
        assert_eq!(engine_packet("0{}"), Ok(EnginePacket::Open("{}")));
        assert!(engine_packet("").is_err());
        assert!(engine_packet("7").is_err());
        assert!(engine_packet("é").is_err());
    }

    #[test]
    fn v4_payloads() {
        assert_eq!(
            payload_v4(b"42[\"a\"]\x1e3\x1ebAQID").unwrap(),
            vec![
                PayloadItem::Text("42[\"a\"]"),
                PayloadItem::Text("3"),
                PayloadItem::Binary(vec![1, 2, 3])
            ]
        );
        assert_eq!(payload_v4(b"b").unwrap(), vec![PayloadItem::Binary(vec![])]);
        assert!(payload_v4(b"").is_err());
        assert!(payload_v4(b"4\x1e").is_err());
        assert!(payload_v4(b"b!!").is_err());
        assert!(payload_v4(b"\xff").is_err());
    }

    #[test]
    fn v3_text_payloads_count_utf16_units() {
        // "4é😀" is 1 + 1 + 2 UTF-16 units.
        assert_eq!(
            payload_v3("4:4é😀2:40".as_bytes()).unwrap(),
            vec![PayloadItem::Text("4é😀"), PayloadItem::Text("40")]
        );
        assert_eq!(
            payload_v3(b"1:26:b4AQID").unwrap(),
            vec![PayloadItem::Text("2"), PayloadItem::Binary(vec![1, 2, 3])]
        );
        assert!(payload_v3("2:4😀".as_bytes()).is_err()); // ends inside the pair
        assert!(payload_v3(b"5:42").is_err());
        assert!(payload_v3(b"x:1").is_err());
        assert!(payload_v3(b":1").is_err());
        assert!(payload_v3(b"0:").is_err());
        assert!(payload_v3(b"99999999999:1").is_err());
        assert!(payload_v3(b"2:b2").is_err());
        assert!(payload_v3(b"").is_err());
    }

    #[test]
    fn v3_binary_payloads() {
        let mut body = vec![0, 2, 0xff];
        body.extend_from_slice(b"40");
        body.extend_from_slice(&[1, 4, 0xff, 4, 1, 2, 3]);
        assert_eq!(
            payload_v3(&body).unwrap(),
            vec![PayloadItem::Text("40"), PayloadItem::Binary(vec![1, 2, 3])]
        );
        assert!(payload_v3(&[0, 9, 0xff, b'4']).is_err());
        assert!(payload_v3(&[0, 12, 0xff]).is_err());
        assert!(payload_v3(&[1, 1, 0xff, 2]).is_err());
        assert!(payload_v3(&[0, 1]).is_err());
        assert!(payload_v3(&[0, 0xff]).is_err());
        assert!(payload_v3(&[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0xff]).is_err());
    }

    #[test]
    fn socket_packets() {
        let p = socket_packet("0").unwrap();
        assert_eq!((p.kind, p.nsp, p.data), (PacketKind::Connect, "/", None));
        let p = socket_packet("0/custom,{\"token\":\"abc\"}").unwrap();
        assert_eq!((p.nsp, p.data), ("/custom", Some("{\"token\":\"abc\"}")));
        assert_eq!(p.payload().unwrap(), Some(json!({"token": "abc"})));
        let p = socket_packet("0/random").unwrap();
        assert_eq!((p.nsp, p.data), ("/random", None));
        let p = socket_packet("0/admin?token=1,").unwrap();
        assert_eq!(p.nsp, "/admin");
        let p = socket_packet("2456[\"message-with-ack\",1]").unwrap();
        assert_eq!((p.kind, p.id), (PacketKind::Event, Some(456)));
        assert_eq!(p.payload().unwrap(), Some(json!(["message-with-ack", 1])));
        let p = socket_packet("52-789[\"m\",{\"_placeholder\":true,\"num\":0}]").unwrap();
        assert_eq!(
            (p.kind, p.attachments, p.id),
            (PacketKind::BinaryEvent, 2, Some(789))
        );
        let p = socket_packet("62-/custom,7[]").unwrap();
        assert_eq!(
            (p.kind, p.nsp, p.id),
            (PacketKind::BinaryAck, "/custom", Some(7))
        );
        let p = socket_packet("1/custom,").unwrap();
        assert_eq!((p.kind, p.nsp), (PacketKind::Disconnect, "/custom"));
        assert_eq!(p.payload().unwrap(), None);
    }

    #[test]
    fn malformed_socket_packets() {
        assert!(socket_packet("").is_err());
        assert!(socket_packet("abc").is_err());
        assert!(socket_packet("9").is_err());
        assert!(socket_packet("5[]").is_err());
        assert!(socket_packet("5x-[]").is_err());
        assert!(socket_packet("59999-[]").is_err());
        assert!(socket_packet("299999999999999999999999[]").is_err());
        // `42{}`: an event needs an array.
        assert!(socket_packet("2{}").unwrap().payload().is_err());
        // `42abc[...]`: not an ack id, not JSON.
        assert!(socket_packet("2abc[\"m\"]").unwrap().payload().is_err());
        assert!(socket_packet("2[]").unwrap().payload().is_err());
        assert!(socket_packet("2[{}]").unwrap().payload().is_err());
        assert!(socket_packet("2").unwrap().payload().is_err());
        assert!(socket_packet("0[1]").unwrap().payload().is_err());
        assert!(socket_packet("1{}").unwrap().payload().is_err());
        assert!(socket_packet("3{}").unwrap().payload().is_err());
        assert!(socket_packet("2[\"a\"").unwrap().payload().is_err());
    }

    #[test]
    fn lone_surrogates_in_events_are_accepted() {
        let p = socket_packet(r#"2["title","Song \ud83d"]"#).unwrap();
        assert_eq!(
            p.payload().unwrap(),
            Some(json!(["title", "Song \u{FFFD}"]))
        );
    }

    #[test]
    fn event_names() {
        assert_eq!(
            event_name(vec![json!("a"), json!(1)]).unwrap(),
            ("a".to_string(), vec![json!(1)])
        );
        assert!(event_name(vec![json!(7)]).is_err());
        assert!(event_name(vec![json!({})]).is_err());
        assert!(event_name(vec![]).is_err());
    }

    #[test]
    fn decoders_never_panic_on_awkward_bytes() {
        let samples: [&[u8]; 12] = [
            b"",
            b"\x1e",
            b"\x1e\x1e",
            b"b",
            b"0:",
            b"1:",
            b"\x00",
            b"\x01\xff",
            b"\x00\x00\xff",
            b"4:\xe2\x82",
            "2:😀".as_bytes(),
            b"\x01\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\xff",
        ];
        for s in samples {
            let _ = payload_v4(s);
            let _ = payload_v3(s);
            if let Ok(text) = std::str::from_utf8(s) {
                let _ = engine_packet(text);
                if let Ok(p) = socket_packet(text) {
                    let _ = p.payload();
                }
            }
        }
    }
}
