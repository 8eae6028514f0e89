//! Opt-in authentication. Off unless `AUTH_TOKENS_FILE`, `AUTH_JWT_SECRET` or
//! `AUTH_JWT_PUBLIC_KEY` is set; then every positions request (and, once wired, every
//! Socket.IO connection) must present a token, and each user gets positions of their own.
//!
//! - [`tokens`]: static `user:token` lines, checked in constant time (pure but for hashing).
//! - [`jwt`]: JSON Web Tokens (HS256, RS256, ES256), only the configured algorithms.
//! - [`user`]: user names and their path- and key-safe encoding (pure).
//! - [`http`]: where a request carries its token, the [`http::Caller`] extractor, and log
//!   redaction of `?token=`.
//!
//! [`Auth`] is the one handle the rest of the server uses: [`Auth::is_enabled`],
//! [`Auth::verify`] (and [`Auth::verify_connect`] for a Socket.IO CONNECT payload). Tokens
//! never appear in logs, errors or `Debug` output.
//!
//! The tokens file is read at start (a malformed file stops the server with the line at
//! fault) and re-read when its contents change, checked every [`RELOAD_EVERY`]: new tokens
//! work and removed ones stop working within that time, open SSE streams of a removed token
//! end, and a malformed new version is logged and ignored (the previous tokens stay).

mod http;
mod jwt;
mod tokens;
mod user;

pub(crate) use http::{Caller, request_span};
pub(crate) use user::UserName;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use jwt::{JwtError, JwtSettings, JwtVerifier};
use tokens::TokenTable;

/// How often the tokens file is checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Authentication settings, from the configuration.
#[derive(Default)]
pub struct AuthSettings {
    pub tokens_file: Option<PathBuf>,
    pub jwt_secret: Option<Secret>,
    pub jwt_public_key: Option<PathBuf>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_leeway_secs: u64,
}

impl From<&crate::config::AuthConfig> for AuthSettings {
    fn from(c: &crate::config::AuthConfig) -> Self {
        AuthSettings {
            tokens_file: c.auth_tokens_file.clone(),
            jwt_secret: c.auth_jwt_secret.clone(),
            jwt_public_key: c.auth_jwt_public_key.clone(),
            jwt_issuer: c.auth_jwt_issuer.clone(),
            jwt_audience: c.auth_jwt_audience.clone(),
            jwt_leeway_secs: c.auth_jwt_leeway_secs,
        }
    }
}

pub use crate::config::Secret;

/// Who a valid token belongs to, and until when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserName,
    /// When the token stops being accepted (a JWT's `exp` plus the leeway); `None` for tokens
    /// from the tokens file, which last until removed from it.
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    /// Time left before the token expires (zero if it already has); `None` if it never does.
    pub fn remaining(&self) -> Option<Duration> {
        self.expires_at.map(|at| {
            at.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        })
    }
}

/// Why a request or connection was refused. Messages are safe for clients: no token and
/// nothing about which users exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send Authorization: Bearer <token> or ?token=")]
    Missing,
    #[error("invalid token")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
}

impl AuthError {
    /// The Socket.IO connect error payload for any refusal: `{"message": "unauthorized"}`.
    pub fn connect_error() -> serde_json::Value {
        serde_json::json!({ "message": "unauthorized" })
    }
}

/// The authentication handle: cheap to clone; disabled when nothing is configured.
#[derive(Clone)]
pub struct Auth(Option<Arc<Inner>>);

struct Inner {
    tokens: Option<TokensFile>,
    jwt: Option<JwtVerifier>,
    /// Bumped whenever the accepted tokens change (a reload), so long-lived connections can
    /// check their token again.
    generation: watch::Sender<u64>,
}

struct TokensFile {
    path: PathBuf,
    table: RwLock<Arc<TokenTable>>,
    /// The contents the table was built from, to notice changes.
    contents: RwLock<Vec<u8>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Auth(disabled)"),
            Some(inner) => f
                .debug_struct("Auth")
                .field("tokens_file", &inner.tokens.as_ref().map(|t| &t.path))
                .field("jwt", &inner.jwt.as_ref().map(JwtVerifier::algorithms))
                .finish(),
        }
    }
}

fn read_tokens(path: &Path) -> anyhow::Result<(Vec<u8>, TokenTable)> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read AUTH_TOKENS_FILE {}", path.display()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("AUTH_TOKENS_FILE {} is not UTF-8", path.display()))?;
    let table = tokens::parse(text)
        .with_context(|| format!("AUTH_TOKENS_FILE {} is malformed", path.display()))?;
    Ok((bytes, table))
}

impl Auth {
    /// No authentication: everyone shares the global positions, as with the seed.
    pub fn disabled() -> Self {
        Auth(None)
    }

    /// Authentication as configured (disabled when nothing is). Reads the tokens file and the
    /// public key; refuses malformed ones, short secrets and a leeway over 5 s.
    pub fn new(settings: AuthSettings) -> anyhow::Result<Self> {
        let tokens = match &settings.tokens_file {
            None => None,
            Some(path) => {
                let (contents, table) = read_tokens(path)?;
                Some(TokensFile {
                    path: path.clone(),
                    table: RwLock::new(Arc::new(table)),
                    contents: RwLock::new(contents),
                })
            }
        };
        let public_key_pem =
            match &settings.jwt_public_key {
                None => None,
                Some(path) => Some(std::fs::read(path).with_context(|| {
                    format!("cannot read AUTH_JWT_PUBLIC_KEY {}", path.display())
                })?),
            };
        let jwt = if settings.jwt_secret.is_some() || public_key_pem.is_some() {
            Some(JwtVerifier::new(JwtSettings {
                secret: settings.jwt_secret.map(|s| s.expose().as_bytes().to_vec()),
                public_key_pem,
                issuer: settings.jwt_issuer.filter(|s| !s.is_empty()),
                audience: settings.jwt_audience.filter(|s| !s.is_empty()),
                leeway_secs: settings.jwt_leeway_secs,
            })?)
        } else {
            None
        };
        if tokens.is_none() && jwt.is_none() {
            return Ok(Auth::disabled());
        }
        let auth = Auth(Some(Arc::new(Inner {
            tokens,
            jwt,
            generation: watch::Sender::new(0),
        })));
        tracing::info!(?auth, "authentication enabled");
        Ok(auth)
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The identity `token` proves. Tokens-file tokens are checked first (in constant time),
    /// then JWTs. With authentication disabled every token is [`AuthError::Invalid`]: ask
    /// [`Auth::is_enabled`] first.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let Some(inner) = &self.0 else {
            return Err(AuthError::Invalid);
        };
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if let Some(tokens) = &inner.tokens {
            let table = tokens
                .table
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(user) = table.lookup(token) {
                return Ok(Identity {
                    user: user.clone(),
                    expires_at: None,
                });
            }
        }
        match &inner.jwt {
            Some(jwt) => match jwt.verify(token) {
                Ok((user, expires_at)) => Ok(Identity {
                    user,
                    expires_at: Some(expires_at),
                }),
                Err(JwtError::Expired) => Err(AuthError::Expired),
                Err(JwtError::NotYetValid) => Err(AuthError::NotYetValid),
                Err(JwtError::Invalid) => Err(AuthError::Invalid),
            },
            None => Err(AuthError::Invalid),
        }
    }

    /// For a Socket.IO CONNECT: `auth` is the packet's auth payload (`{"token": "..."}`), if
    /// any. `Ok(None)`: authentication is off, let it in anonymously. `Ok(Some(identity))`:
    /// let it in as that user. `Err(_)`: refuse with [`AuthError::connect_error`].
    pub fn verify_connect(
        &self,
        auth: Option<&serde_json::Value>,
    ) -> Result<Option<Identity>, AuthError> {
        if !self.is_enabled() {
            return Ok(None);
        }
        let token = auth
            .and_then(|a| a.get("token"))
            .and_then(serde_json::Value::as_str)
            .ok_or(AuthError::Missing)?;
        self.verify(token).map(Some)
    }

    /// A receiver that changes whenever the accepted tokens change: a long-lived connection
    /// then calls [`Auth::verify`] again with its token and ends if it fails.
    pub fn changes(&self) -> Option<watch::Receiver<u64>> {
        self.0.as_ref().map(|i| i.generation.subscribe())
    }

    /// Re-reads the tokens file if its contents changed. A malformed new version is logged
    /// (line number only) and the previous tokens stay in force.
    pub(crate) async fn reload(&self) {
        let Some(inner) = &self.0 else { return };
        let Some(tokens) = &inner.tokens else { return };
        let path = tokens.path.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read(&path)).await;
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                tracing::warn!(path = %tokens.path.display(), error = %e, "cannot read the tokens file; keeping the previous tokens");
                return;
            }
            Err(_) => return,
        };
        if *tokens.contents.read().unwrap_or_else(|p| p.into_inner()) == bytes {
            return;
        }
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|_| anyhow::anyhow!("not UTF-8"))
            .and_then(|text| tokens::parse(text).map_err(anyhow::Error::from));
        match parsed {
            Ok(table) => {
                let count = table.len();
                *tokens.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
                *tokens.contents.write().unwrap_or_else(|p| p.into_inner()) = bytes;
                inner.generation.send_modify(|g| *g += 1);
                tracing::info!(path = %tokens.path.display(), tokens = count, "tokens file reloaded");
            }
            Err(e) => {
                // Remember the contents so the error is logged once per change.
                *tokens.contents.write().unwrap_or_else(|p| p.into_inner()) = bytes;
                tracing::error!(path = %tokens.path.display(), error = %e, "the changed tokens file is malformed; keeping the previous tokens");
            }
        }
    }

    /// Re-reads the tokens file every [`RELOAD_EVERY`] until `shutdown`; `None` when there
    /// is no tokens file.
    pub(crate) fn reloader(
        &self,
        shutdown: CancellationToken,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let has_file = self.0.as_ref().is_some_and(|i| i.tokens.is_some());
        let auth = self.clone();
        has_file.then_some(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => auth.reload().await,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "0123456789abcdef0123";

    fn with_file(text: &str) -> (tempfile::NamedTempFile, Auth) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        let auth = Auth::new(AuthSettings {
            tokens_file: Some(file.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        (file, auth)
    }

    #[test]
    fn nothing_configured_means_disabled() {
        let auth = Auth::new(AuthSettings::default()).unwrap();
        assert!(!auth.is_enabled());
        assert_eq!(auth.verify_connect(None), Ok(None));
        assert_eq!(auth.verify(T1), Err(AuthError::Invalid));
    }

    #[test]
    fn connect_payloads() {
        let (_f, auth) = with_file(&format!("alice:{T1}\n"));
        assert_eq!(auth.verify_connect(None), Err(AuthError::Missing));
        assert_eq!(
            auth.verify_connect(Some(&serde_json::json!({"token": 5}))),
            Err(AuthError::Missing)
        );
        assert_eq!(
            auth.verify_connect(Some(&serde_json::json!({"token": "nope"}))),
            Err(AuthError::Invalid)
        );
        let id = auth
            .verify_connect(Some(&serde_json::json!({"token": T1})))
            .unwrap()
            .unwrap();
        assert_eq!(id.user.as_str(), "alice");
        assert_eq!(id.expires_at, None);
        assert_eq!(id.remaining(), None);
        assert_eq!(
            AuthError::connect_error(),
            serde_json::json!({"message": "unauthorized"})
        );
    }

    #[tokio::test]
    async fn reload_takes_new_tokens_and_keeps_old_ones_on_a_bad_file() {
        let (file, auth) = with_file(&format!("alice:{T1}\n"));
        let mut changes = auth.changes().unwrap();
        std::fs::write(file.path(), "bob:fedcba9876543210fedc\n").unwrap();
        auth.reload().await;
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert_eq!(auth.verify(T1), Err(AuthError::Invalid));
        assert_eq!(
            auth.verify("fedcba9876543210fedc").unwrap().user.as_str(),
            "bob"
        );
        std::fs::write(file.path(), "bob\n").unwrap();
        auth.reload().await;
        assert!(!changes.has_changed().unwrap());
        assert!(auth.verify("fedcba9876543210fedc").is_ok());
    }

    #[test]
    fn a_malformed_file_stops_the_start_with_the_line() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), format!("alice:{T1}\nbob {T1}\n")).unwrap();
        let err = Auth::new(AuthSettings {
            tokens_file: Some(file.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("line 2"), "{text}");
        assert!(!text.contains(T1), "{text}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Secret::new("hunter2-hunter2-hunter2-hunter2!");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let (_f, auth) = with_file(&format!("alice:{T1}\n"));
        assert!(!format!("{auth:?}").contains(T1));
    }
}
