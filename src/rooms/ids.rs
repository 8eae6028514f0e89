//! The room domain's ids (pure): members and rooms, as the domain knows them.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

/// A member of a room, as the room domain knows it: an opaque, public id (today the id a
/// client's connection was given). Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(Arc<str>);

impl MemberId {
    #[cfg(test)]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for MemberId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for MemberId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl From<&str> for MemberId {
    fn from(id: &str) -> Self {
        MemberId(Arc::from(id))
    }
}

impl From<String> for MemberId {
    fn from(id: String) -> Self {
        MemberId(Arc::from(id))
    }
}

impl PartialEq<str> for MemberId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for MemberId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// A room id as clients send it: a non-empty string or an integer. `key` is its canonical
/// text (integer 42 and string "42" are the same room); `raw` is the JSON form the client
/// used, echoed back so a client comparing ids with `===` keeps working.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomId {
    pub key: String,
    pub raw: Value,
}

impl RoomId {
    /// A room id from its canonical key.
    #[cfg(test)]
    pub fn from_key(key: impl Into<String>) -> Self {
        let key = key.into();
        let raw = Value::String(key.clone());
        Self { key, raw }
    }
}
