//! Static tokens: the `AUTH_TOKENS_FILE` format (parsed purely) and the table that checks a
//! presented token in constant time.
//!
//! Format, one entry per line: `user:token`. The user is everything before the first `:`,
//! the token everything after it; spaces and tabs around either are ignored. Blank lines and
//! lines whose first non-blank character is `#` are skipped. A user may have several tokens
//! (one per device, say); a token may belong to one user only. Tokens must be at least
//! [`MIN_TOKEN_BYTES`] bytes long and contain no whitespace.
//!
//! Lookup: only SHA-256 digests of the tokens are kept. A presented token is hashed and
//! compared with *every* digest with `subtle`'s constant-time equality, the matching index
//! being selected without a branch, so neither whether a token matched nor which user's it
//! was shows in the time taken. Error messages name line numbers, never tokens.

use aws_lc_rs::digest::{SHA256, digest};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::user::UserName;

/// Shortest token accepted: 128 bits of hex.
pub const MIN_TOKEN_BYTES: usize = 16;

type Digest = [u8; 32];

/// Why a tokens file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokensFileError {
    #[error("line {line}: expected `user:token`")]
    MissingColon { line: usize },
    #[error("line {line}: invalid user name: {why}")]
    BadUser {
        line: usize,
        why: super::user::InvalidUser,
    },
    #[error(
        "line {line}: the token is shorter than {MIN_TOKEN_BYTES} bytes (generate one with `openssl rand -hex 32`)"
    )]
    ShortToken { line: usize },
    #[error("line {line}: the token contains whitespace")]
    Whitespace { line: usize },
    #[error(
        "line {line}: this token is already listed on line {first} (a token belongs to one user)"
    )]
    Duplicate { line: usize, first: usize },
    #[error("the file lists no tokens")]
    Empty,
}

/// The parsed file: users and token digests, in file order.
#[derive(Clone, Default)]
pub struct TokenTable {
    entries: Vec<(Digest, UserName)>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTable")
            .field("tokens", &self.entries.len())
            .finish()
    }
}

fn sha256(token: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token).as_ref());
    out
}

/// Parses a tokens file. An empty file (no entries) is an error: authentication with no
/// way in is surely a mistake.
pub fn parse(text: &str) -> Result<TokenTable, TokensFileError> {
    let mut entries: Vec<(Digest, UserName)> = Vec::new();
    let mut lines_of: Vec<usize> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (user, token) = trimmed
            .split_once(':')
            .ok_or(TokensFileError::MissingColon { line })?;
        let user =
            UserName::new(user.trim()).map_err(|why| TokensFileError::BadUser { line, why })?;
        let token = token.trim();
        if token.len() < MIN_TOKEN_BYTES {
            return Err(TokensFileError::ShortToken { line });
        }
        if token.chars().any(char::is_whitespace) {
            return Err(TokensFileError::Whitespace { line });
        }
        let d = sha256(token.as_bytes());
        if let Some(i) = entries.iter().position(|(e, _)| *e == d) {
            return Err(TokensFileError::Duplicate {
                line,
                first: lines_of[i],
            });
        }
        entries.push((d, user));
        lines_of.push(line);
    }
    if entries.is_empty() {
        return Err(TokensFileError::Empty);
    }
    Ok(TokenTable { entries })
}

impl TokenTable {
    /// The user `token` belongs to. Takes the same time whichever entry matches, or none.
    pub fn lookup(&self, token: &str) -> Option<&UserName> {
        let presented = sha256(token.as_bytes());
        let mut found = 0u32.ct_eq(&1); // false
        let mut index = 0u32;
        for (i, (d, _)) in self.entries.iter().enumerate() {
            let hit = d.ct_eq(&presented);
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            index.conditional_assign(&i, hit);
            found |= hit;
        }
        if bool::from(found) {
            self.entries.get(index as usize).map(|(_, user)| user)
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "0123456789abcdef0123";
    const T2: &str = "fedcba9876543210fedc";

    #[test]
    fn comments_blank_lines_and_spaces_are_ignored() {
        let table = parse(&format!(
            "# playsync tokens\n\n  alice : {T1}  \n\t# bob's phone\nbob:{T2}\nalice:{T2}x\n"
        ))
        .unwrap();
        assert_eq!(table.len(), 3);
        assert_eq!(table.lookup(T1).unwrap().as_str(), "alice");
        assert_eq!(table.lookup(T2).unwrap().as_str(), "bob");
        assert_eq!(table.lookup(&format!("{T2}x")).unwrap().as_str(), "alice");
        assert!(table.lookup("").is_none());
        assert!(table.lookup(&T1[..T1.len() - 1]).is_none());
        assert!(table.lookup(&format!("{T1} ")).is_none());
    }

    #[test]
    fn a_token_may_contain_colons_and_the_user_is_before_the_first() {
        let table = parse("svc:abc:def:0123456789abcdef\n").unwrap();
        assert_eq!(
            table.lookup("abc:def:0123456789abcdef").unwrap().as_str(),
            "svc"
        );
    }

    #[test]
    fn malformed_files_are_refused_with_the_line_and_without_the_token() {
        let cases = [
            ("alice\n", TokensFileError::MissingColon { line: 1 }),
            (
                &format!("# c\n:{T1}\n")[..],
                TokensFileError::BadUser {
                    line: 2,
                    why: crate::auth::user::InvalidUser::Empty,
                },
            ),
            ("alice:short\n", TokensFileError::ShortToken { line: 1 }),
            ("alice:\n", TokensFileError::ShortToken { line: 1 }),
            (
                "alice:0123456789 abcdef0123\n",
                TokensFileError::Whitespace { line: 1 },
            ),
            (
                &format!("alice:{T1}\n\nbob:{T1}\n")[..],
                TokensFileError::Duplicate { line: 3, first: 1 },
            ),
            ("", TokensFileError::Empty),
            ("# only comments\n\n", TokensFileError::Empty),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err, expected, "{text:?}");
            assert!(!err.to_string().contains(T1));
        }
    }

    #[test]
    fn debug_shows_no_tokens_or_digests() {
        let table = parse(&format!("alice:{T1}\n")).unwrap();
        assert_eq!(format!("{table:?}"), "TokenTable { tokens: 1 }");
    }
}
