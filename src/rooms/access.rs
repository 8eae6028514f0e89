//! Who may enter a room and who a client is (pure but for drawing random numbers): room
//! passwords, kept only as a salted hash and compared in constant time, the limit on wrong
//! guesses, the key a client's `client_id` is known by, and fresh member ids.
//!
//! A room password is a secret shared by a group, not an account password: a salted
//! SHA-256 keeps it out of memory dumps and Redis, and costs nothing per join (a slow KDF
//! would make a join storm into a protected room a CPU storm). Guessing is bounded instead:
//! five wrong passwords from one connection within a minute get `rate_limited`.

use std::collections::VecDeque;
use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Wrong passwords one connection may try within [`GUESS_WINDOW_MS`].
pub const MAX_GUESSES: usize = 5;
/// The window of [`MAX_GUESSES`], ms.
pub const GUESS_WINDOW_MS: u64 = 60_000;

/// Longest `client_id`, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 128;
/// Shortest `client_id`, in characters.
pub const MIN_CLIENT_ID_CHARS: usize = 8;

/// What a client's `client_id` is known by: its SHA-256, hex. The `client_id` is a secret
/// (whoever has it takes the member over): it is never stored, sent to others or logged.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientKey(String);

impl ClientKey {
    /// The key of a `client_id`, if it is one (8 to 128 characters).
    pub fn of(client_id: &str) -> Option<Self> {
        let chars = client_id.chars().count();
        (MIN_CLIENT_ID_CHARS..=MAX_CLIENT_ID_CHARS)
            .contains(&chars)
            .then(|| ClientKey(digest("playsync client_id", client_id)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientKey({}..)", self.0.get(..8).unwrap_or_default())
    }
}

/// A fresh public member id for a client that sent a `client_id`: random, so it says
/// nothing about the `client_id`.
pub fn new_member_id() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes()[..12]);
    }
    format!("m{}", hex(&bytes))
}

/// A room password as stored: `salt$sha256(salt || password)`, both hex.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Hashes `password` with a fresh random salt.
    pub fn new(password: &str) -> Self {
        let mut salt = [0u8; 16];
        // Without an OS random source the salt is the clock: still unique per room.
        if getrandom::fill(&mut salt).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            salt.copy_from_slice(&nanos.to_le_bytes());
        }
        Self::with_salt(password, &hex(&salt))
    }

    fn with_salt(password: &str, salt: &str) -> Self {
        Secret(format!("{salt}${}", digest(salt, password)))
    }

    /// A secret whose hash is not known here (a shared room's is kept in Redis): the room
    /// is protected, and this never verifies.
    pub fn placeholder() -> Self {
        Secret(String::new())
    }

    /// The stored form (for Redis).
    pub fn as_stored(&self) -> &str {
        &self.0
    }

    /// A secret read back from its stored form; `None` if it is not one.
    pub fn from_stored(stored: &str) -> Option<Self> {
        let (salt, hash) = stored.split_once('$')?;
        let hexish = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hexish(salt) && hash.len() == 64 && hexish(hash)).then(|| Secret(stored.to_owned()))
    }

    /// Whether `password` is this secret, in time independent of where they differ.
    pub fn verify(&self, password: &str) -> bool {
        let Some((salt, hash)) = self.0.split_once('$') else {
            return false;
        };
        digest(salt, password)
            .as_bytes()
            .ct_eq(hash.as_bytes())
            .into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn digest(salt: &str, password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(password.as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One connection's recent wrong passwords.
#[derive(Debug, Default)]
pub struct Guesses {
    wrong: VecDeque<u64>,
}

impl Guesses {
    /// Whether another guess is allowed at `now_ms`.
    pub fn allowed(&mut self, now_ms: u64) -> bool {
        while self
            .wrong
            .front()
            .is_some_and(|&t| now_ms.saturating_sub(t) >= GUESS_WINDOW_MS)
        {
            self.wrong.pop_front();
        }
        self.wrong.len() < MAX_GUESSES
    }

    /// Records a wrong guess at `now_ms`.
    pub fn wrong(&mut self, now_ms: u64) {
        self.wrong.push_back(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_verifies_its_password_only() {
        let s = Secret::new("open sesame");
        assert!(s.verify("open sesame"));
        assert!(!s.verify("open sesame "));
        assert!(!s.verify(""));
        assert!(!s.as_stored().contains("open"), "never stored in clear");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        let again = Secret::from_stored(s.as_stored()).unwrap();
        assert!(again.verify("open sesame"));
        assert_ne!(
            Secret::new("x").as_stored(),
            Secret::new("x").as_stored(),
            "salted"
        );
        assert_eq!(
            Secret::with_salt("pw", "00").as_stored(),
            format!("00${}", digest("00", "pw"))
        );
        for bad in ["", "nohash", "zz$00", "00$short"] {
            assert!(Secret::from_stored(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn client_keys_hide_the_client_id() {
        assert_eq!(ClientKey::of("short"), None);
        assert_eq!(ClientKey::of(&"x".repeat(129)), None);
        let key = ClientKey::of("device-1234").unwrap();
        assert_eq!(key, ClientKey::of("device-1234").unwrap());
        assert_ne!(key, ClientKey::of("device-1235").unwrap());
        assert!(!key.as_str().contains("device"));
        assert!(!format!("{key:?}").contains(key.as_str()));
        let (a, b) = (new_member_id(), new_member_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 25);
    }

    #[test]
    fn five_wrong_guesses_a_minute() {
        let mut g = Guesses::default();
        for i in 0..5 {
            assert!(g.allowed(1_000 + i));
            g.wrong(1_000 + i);
        }
        assert!(!g.allowed(2_000));
        assert!(!g.allowed(60_999));
        assert!(g.allowed(61_000), "the first guess is a minute old");
    }
}
