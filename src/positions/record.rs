//! Position records and their validation (pure). A record is the seed's JSON object;
//! its `timestamp` (Unix ms, strictly increasing per kind) doubles as its version.

use serde::Serialize;
use serde_json::{Map, Value};

/// The two things a user's devices share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Playback,
    Scroll,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Playback, Kind::Scroll];

    /// SSE event name and Redis channel suffix.
    pub fn event(self) -> &'static str {
        match self {
            Kind::Playback => "playback",
            Kind::Scroll => "scroll",
        }
    }

    /// File name in the data directory (the seed's).
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::Playback => "playback-position.json",
            Kind::Scroll => "scroll-position.json",
        }
    }

    /// What GET answers when nothing is stored (the seed's defaults, in its field order).
    pub fn empty(self) -> Record {
        match self {
            Kind::Playback => Record::Playback(PlaybackPosition {
                last_played_index: -1,
                note_path: String::new(),
                note_title: String::new(),
                timestamp: 0,
                device_id: String::new(),
            }),
            Kind::Scroll => Record::Scroll(ScrollPosition {
                scroll_top: 0,
                note_path: String::new(),
                timestamp: 0,
                device_id: String::new(),
            }),
        }
    }
}

/// A stored position, exactly the seed's JSON shape for its kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    Playback(PlaybackPosition),
    Scroll(ScrollPosition),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaybackPosition {
    pub last_played_index: i64,
    pub note_path: String,
    pub note_title: String,
    pub timestamp: u64,
    pub device_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScrollPosition {
    pub scroll_top: i64,
    pub note_path: String,
    pub timestamp: u64,
    pub device_id: String,
}

impl Record {
    pub fn kind(&self) -> Kind {
        match self {
            Record::Playback(_) => Kind::Playback,
            Record::Scroll(_) => Kind::Scroll,
        }
    }

    /// The record's version: its timestamp.
    pub fn timestamp(&self) -> u64 {
        match self {
            Record::Playback(p) => p.timestamp,
            Record::Scroll(s) => s.timestamp,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain structs of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record of `kind` leniently: what the seed server wrote (or an older
    /// playsync), with missing fields defaulted and a fractional `scrollTop` truncated.
    /// `None` if it is not a JSON object with the kind's position field.
    pub fn from_stored(kind: Kind, json: &[u8]) -> Option<Record> {
        let Value::Object(fields) = socketio::json::from_slice(json).ok()? else {
            return None;
        };
        let text = |k: &str| {
            fields
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let timestamp = fields.get("timestamp").and_then(number_as_u64).unwrap_or(0);
        Some(match kind {
            Kind::Playback => Record::Playback(PlaybackPosition {
                last_played_index: fields.get("lastPlayedIndex").and_then(Value::as_i64)?,
                note_path: text("notePath"),
                note_title: text("noteTitle"),
                timestamp,
                device_id: text("deviceId"),
            }),
            Kind::Scroll => Record::Scroll(ScrollPosition {
                scroll_top: fields.get("scrollTop").and_then(truncate_to_i64)?,
                note_path: text("notePath"),
                timestamp,
                device_id: text("deviceId"),
            }),
        })
    }
}

fn number_as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// A JSON number as an integer, fractions dropped toward zero (Python's `int()`); `None` for
/// non-numbers and for magnitudes an i64 cannot hold.
fn truncate_to_i64(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?.trunc();
    (f.is_finite() && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
}

/// A validated PUT body, before the server stamps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    kind: Kind,
    position: i64,
    note_path: String,
    note_title: String,
    device_id: String,
}

impl Update {
    /// The stored record for this update at `timestamp`.
    pub fn stamp(self, timestamp: u64) -> Record {
        match self.kind {
            Kind::Playback => Record::Playback(PlaybackPosition {
                last_played_index: self.position,
                note_path: self.note_path,
                note_title: self.note_title,
                timestamp,
                device_id: self.device_id,
            }),
            Kind::Scroll => Record::Scroll(ScrollPosition {
                scroll_top: self.position,
                note_path: self.note_path,
                timestamp,
                device_id: self.device_id,
            }),
        }
    }
}

/// Why a PUT body was refused; the message is for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection(pub String);

/// Validates a PUT body (already known to be JSON text within the size limit).
pub fn parse_update(kind: Kind, body: &[u8], max_string_bytes: usize) -> Result<Update, Rejection> {
    // Lenient: a lone surrogate escape (valid JSON, half an emoji) becomes U+FFFD.
    let value: Value = socketio::json::from_slice(body)
        .map_err(|e| Rejection(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(Rejection("the body must be a JSON object".into()));
    };
    let string = |name: &str, default: &str| -> Result<String, Rejection> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(default.to_owned()),
            Some(Value::String(s)) if s.len() <= max_string_bytes => Ok(s.clone()),
            Some(Value::String(_)) => Err(Rejection(format!(
                "{name} must be at most {max_string_bytes} bytes"
            ))),
            Some(_) => Err(Rejection(format!("{name} must be a string"))),
        }
    };
    let position = match kind {
        Kind::Playback => integer(&fields, "lastPlayedIndex")?,
        Kind::Scroll => number(&fields, "scrollTop")?,
    };
    Ok(Update {
        kind,
        position,
        note_path: string("notePath", "")?,
        note_title: match kind {
            Kind::Playback => string("noteTitle", "")?,
            Kind::Scroll => String::new(),
        },
        device_id: string("deviceId", "unknown")?,
    })
}

/// An integer: a JSON integer, or a finite number with no fractional part (`1.0`, `1e2`,
/// `-0`: what clients that compute with floats send), within i64.
fn integer(fields: &Map<String, Value>, name: &str) -> Result<i64, Rejection> {
    fields
        .get(name)
        .and_then(integral)
        .ok_or_else(|| Rejection(format!("{name} must be an integer")))
}

fn integral(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    let fits = f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64;
    // `as` is exact here: an integral value inside the range. -0.0 becomes 0.
    fits.then_some(f as i64)
}

fn number(fields: &Map<String, Value>, name: &str) -> Result<i64, Rejection> {
    fields
        .get(name)
        .filter(|v| v.is_number())
        .and_then(truncate_to_i64)
        .ok_or_else(|| Rejection(format!("{name} must be a number")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(kind: Kind, body: Value) -> Result<Update, Rejection> {
        parse_update(kind, body.to_string().as_bytes(), 16)
    }

    #[test]
    fn a_playback_update_takes_the_seed_defaults() {
        let u = put(Kind::Playback, json!({"lastPlayedIndex": 42})).unwrap();
        let r = u.stamp(7);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"lastPlayedIndex": 42, "notePath": "", "noteTitle": "", "timestamp": 7, "deviceId": "unknown"})
        );
    }

    #[test]
    fn scroll_top_is_stored_as_an_integer() {
        let r = put(
            Kind::Scroll,
            json!({"scrollTop": 100.9, "notePath": "a.md", "deviceId": "d"}),
        )
        .unwrap()
        .stamp(1);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"scrollTop": 100, "notePath": "a.md", "timestamp": 1, "deviceId": "d"})
        );
        assert_eq!(
            put(Kind::Scroll, json!({"scrollTop": -3.5}))
                .unwrap()
                .position,
            -3
        );
    }

    #[test]
    fn invalid_bodies_are_rejected() {
        assert!(parse_update(Kind::Playback, b"not json", 16).is_err());
        assert!(parse_update(Kind::Playback, b"", 16).is_err());
        for body in [
            json!([1]),
            json!("x"),
            json!({}),
            json!({"lastPlayedIndex": "3"}),
            json!({"lastPlayedIndex": 3.5}),
            json!({"lastPlayedIndex": true}),
            json!({"lastPlayedIndex": null}),
            json!({"lastPlayedIndex": 1, "notePath": 5}),
            json!({"lastPlayedIndex": 1, "deviceId": ["x"]}),
            json!({"lastPlayedIndex": 1, "noteTitle": "x".repeat(17)}),
        ] {
            assert!(put(Kind::Playback, body.clone()).is_err(), "{body}");
        }
        for body in [
            json!({"scrollTop": "100"}),
            json!({"scrollTop": true}),
            json!({"scrollTop": 1e300}),
            json!({}),
        ] {
            assert!(put(Kind::Scroll, body.clone()).is_err(), "{body}");
        }
        // Exactly at the string limit is fine.
        assert!(
            put(
                Kind::Playback,
                json!({"lastPlayedIndex": 1, "notePath": "x".repeat(16)})
            )
            .is_ok()
        );
    }

    #[test]
    fn integral_floats_are_integers() {
        for (body, index) in [
            (json!({"lastPlayedIndex": 1.0}), 1),
            (json!({"lastPlayedIndex": 1e2}), 100),
            (json!({"lastPlayedIndex": -0.0}), 0),
            (json!({"lastPlayedIndex": -7.0}), -7),
        ] {
            assert_eq!(put(Kind::Playback, body).unwrap().position, index);
        }
        for body in [
            json!({"lastPlayedIndex": 0.5}),
            json!({"lastPlayedIndex": 1e19}),
            json!({"lastPlayedIndex": -1e19}),
        ] {
            assert!(put(Kind::Playback, body.clone()).is_err(), "{body}");
        }
    }

    #[test]
    fn stored_seed_files_are_read_leniently() {
        let seed = br#"{"lastPlayedIndex": 42, "notePath": "test.md", "noteTitle": "Test", "timestamp": 1738234567890, "deviceId": "desktop-chrome"}"#;
        let r = Record::from_stored(Kind::Playback, seed).unwrap();
        assert_eq!(r.timestamp(), 1_738_234_567_890);
        let r = Record::from_stored(Kind::Scroll, br#"{"scrollTop": 12.7}"#).unwrap();
        assert_eq!(
            r,
            Record::Scroll(ScrollPosition {
                scroll_top: 12,
                note_path: String::new(),
                timestamp: 0,
                device_id: String::new()
            })
        );
        assert!(Record::from_stored(Kind::Playback, b"{\"lastPlayed").is_none());
        assert!(Record::from_stored(Kind::Playback, b"[]").is_none());
        assert!(Record::from_stored(Kind::Scroll, br#"{"lastPlayedIndex": 1}"#).is_none());
    }
}
