//! User names (pure): which names are accepted, and their encoding for file paths and Redis
//! keys.
//!
//! A user name is any string of 1 to [`MAX_USER_BYTES`] bytes without control characters,
//! compared byte for byte (`Alice` and `alice` are two users; no Unicode normalization).
//! Its *encoded* form keeps `A-Z a-z 0-9 _ -` and writes every other byte as `%XX`
//! (uppercase hex), so it never contains `/`, `.`, `:` or a glob character: it is safe as one
//! path component (no traversal, no hidden files) and inside a Redis key or channel pattern,
//! and two distinct names never share an encoding (`%` itself is encoded).

use std::fmt;

/// Longest user name, in bytes: its encoding (at most three bytes per byte) stays below the
/// 255-byte file-name limit of common filesystems.
pub const MAX_USER_BYTES: usize = 80;

/// A valid user name and its encoding.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserName {
    name: String,
    encoded: String,
}

/// Why a string is not a user name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUser {
    #[error("the user name is empty")]
    Empty,
    #[error("the user name is longer than {MAX_USER_BYTES} bytes")]
    TooLong,
    #[error("the user name contains a control character")]
    ControlCharacter,
}

impl UserName {
    pub fn new(name: &str) -> Result<Self, InvalidUser> {
        if name.is_empty() {
            return Err(InvalidUser::Empty);
        }
        if name.len() > MAX_USER_BYTES {
            return Err(InvalidUser::TooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidUser::ControlCharacter);
        }
        Ok(UserName {
            name: name.to_owned(),
            encoded: encode(name),
        })
    }

    /// The user name from its encoding, which must be canonical (exactly what [`encode`]
    /// produces): anything else, say a Redis channel someone else published on, is refused.
    pub fn from_encoded(encoded: &str) -> Option<Self> {
        let name = decode(encoded)?;
        let user = UserName::new(&name).ok()?;
        (user.encoded == encoded).then_some(user)
    }
    #[cfg(test)]
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The path- and key-safe form.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.name)
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

fn is_kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// `A-Z a-z 0-9 _ -` as they are, every other byte as `%XX`.
pub fn encode(name: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if is_kept(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

/// The inverse of [`encode`], for its own output; `None` for anything it cannot have made.
pub fn decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let digit = |c: u8| match c {
                    b'0'..=b'9' => Some(c - b'0'),
                    b'A'..=b'F' => Some(c - b'A' + 10),
                    _ => None,
                };
                out.push(digit(hex[0])? << 4 | digit(hex[1])?);
                i += 3;
            }
            b if is_kept(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_readable_and_everything_else_is_escaped() {
        assert_eq!(encode("alice"), "alice");
        assert_eq!(encode("Bob_2-x"), "Bob_2-x");
        assert_eq!(encode("a.b"), "a%2Eb");
        assert_eq!(encode(".."), "%2E%2E");
        assert_eq!(encode("../etc/passwd"), "%2E%2E%2Fetc%2Fpasswd");
        assert_eq!(encode("a/b\\c"), "a%2Fb%5Cc");
        assert_eq!(encode("x%41"), "x%2541");
        assert_eq!(encode("me@example.com"), "me%40example%2Ecom");
        assert_eq!(encode("a:b*c?[d]"), "a%3Ab%2Ac%3F%5Bd%5D");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn encodings_are_safe_path_components_and_keys() {
        for name in [
            ".", "..", "...", "/", "a/../b", "\\", " ", "~", "%", "%2E", "CON", "a b", "x:y",
        ] {
            let e = encode(name);
            assert!(!e.is_empty());
            assert!(
                e.bytes().all(|b| is_kept(b) || b == b'%'),
                "{name:?} -> {e:?}"
            );
            assert!(!e.starts_with('.'));
            assert!(!e.contains('/') && !e.contains(':') && !e.contains('*'));
        }
    }

    #[test]
    fn distinct_names_never_collide_and_decoding_inverts() {
        let names = [
            "a", "A", "a.", "a%2E", "a%2e", "%", "%25", "a-b", "a_b", "a b", "é", "e\u{301}",
        ];
        let encoded: std::collections::HashSet<String> = names.iter().map(|n| encode(n)).collect();
        assert_eq!(encoded.len(), names.len());
        for n in names {
            assert_eq!(decode(&encode(n)).as_deref(), Some(n));
        }
    }

    #[test]
    fn only_canonical_encodings_decode_to_users() {
        assert_eq!(
            UserName::from_encoded("me%40example%2Ecom")
                .unwrap()
                .as_str(),
            "me@example.com"
        );
        for bad in [
            "", "..", "a.b", "a/b", "%2e", "%4", "%G0", "%41", "a%3", "%00", "a:b",
        ] {
            assert_eq!(UserName::from_encoded(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(UserName::new(""), Err(InvalidUser::Empty));
        assert_eq!(
            UserName::new(&"x".repeat(MAX_USER_BYTES + 1)),
            Err(InvalidUser::TooLong)
        );
        assert_eq!(UserName::new("a\nb"), Err(InvalidUser::ControlCharacter));
        assert_eq!(UserName::new("a\u{7f}"), Err(InvalidUser::ControlCharacter));
        let longest = UserName::new(&"é".repeat(MAX_USER_BYTES / 2)).unwrap();
        assert!(longest.encoded().len() <= 255);
        let worst = UserName::new(&"/".repeat(MAX_USER_BYTES)).unwrap();
        assert!(worst.encoded().len() <= 255);
    }
}
