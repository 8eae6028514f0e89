//! [`Sid`]: unguessable session and socket ids.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// An Engine.IO session id or a Socket.IO socket id: 120 random bits written as 20 URL-safe
/// base64 characters. `Copy`, compared and hashed by value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid([u8; 20]);

impl Sid {
    /// A new random id from the operating system's random source.
    pub fn new() -> Sid {
        let mut raw = [0u8; 15];
        if let Err(e) = getrandom::fill(&mut raw) {
            tracing::warn!(error = %e, "the system random source failed; using a keyed hash");
            fallback(&mut raw);
        }
        let mut out = [0u8; 20];
        for (chunk, dst) in raw.chunks_exact(3).zip(out.chunks_exact_mut(4)) {
            let n = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
            for (i, d) in dst.iter_mut().enumerate() {
                *d = ALPHABET[((n >> (18 - 6 * i)) & 63) as usize];
            }
        }
        Sid(out)
    }

    /// The id as text (20 characters).
    pub fn as_str(&self) -> &str {
        // Only ALPHABET bytes are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Default for Sid {
    fn default() -> Self {
        Sid::new()
    }
}

/// SipHash with the process's random keys over a counter: used only if getrandom fails.
fn fallback(raw: &mut [u8; 15]) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = std::collections::hash_map::RandomState::new();
    for (i, chunk) in raw.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_usize(i);
        let bytes = h.finish().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

/// The text is not an id this engine made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSid;

impl fmt::Display for InvalidSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a session id")
    }
}

impl std::error::Error for InvalidSid {}

impl FromStr for Sid {
    type Err = InvalidSid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes: [u8; 20] = s.as_bytes().try_into().map_err(|_| InvalidSid)?;
        if bytes.iter().all(|b| ALPHABET.contains(b)) {
            Ok(Sid(bytes))
        } else {
            Err(InvalidSid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_round_trip() {
        let a = Sid::new();
        let b = Sid::new();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 20);
        assert_eq!(a.as_str().parse::<Sid>(), Ok(a));
        assert_eq!("short".parse::<Sid>(), Err(InvalidSid));
        assert_eq!("aaaaaaaaaaaaaaaaaaa=".parse::<Sid>(), Err(InvalidSid));
    }

    #[test]
    fn fallback_fills_every_byte_differently() {
        let (mut a, mut b) = ([0u8; 15], [0u8; 15]);
        fallback(&mut a);
        fallback(&mut b);
        assert_ne!(a, b);
    }
}
