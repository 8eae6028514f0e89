//! The seed-2 HTTP API: `GET /api/events/{playback,scroll}` (SSE) and `GET|PUT
//! /api/{playback,scroll}-position`. Handlers are thin: who is calling comes from
//! [`Caller`] (401 when authentication is on and the token is not valid), validation lives
//! in `record`, ordering and durability in `channel`, limits in `crate::limits`; refusals
//! are [`ApiError`]s.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{Stream, StreamExt};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::channel::Published;
use super::record::{Kind, parse_update};
use super::{Pair, Positions};
use crate::auth::{Auth, Caller, Secret, UserName};
use crate::error::ApiError;
use crate::limits::{AbuseLimits, ClientIp, ConnectionGuard, RateKey};

/// The routes, for any router state that can hand out the positions, the authentication
/// and the limits.
pub(crate) fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Positions>: FromRef<S>,
    Auth: FromRef<S>,
    Arc<AbuseLimits>: FromRef<S>,
{
    Router::new()
        .route(
            "/api/events/playback",
            get(|s, l, a, c, i, v, h| events(s, l, a, c, i, v, h, Kind::Playback)),
        )
        .route(
            "/api/events/scroll",
            get(|s, l, a, c, i, v, h| events(s, l, a, c, i, v, h, Kind::Scroll)),
        )
        .route(
            "/api/playback-position",
            get(|s, c| position(s, c, Kind::Playback))
                .put(|s, l, c, i, h, b| put_position(s, l, c, i, h, b, Kind::Playback)),
        )
        .route(
            "/api/scroll-position",
            get(|s, c| position(s, c, Kind::Scroll))
                .put(|s, l, c, i, h, b| put_position(s, l, c, i, h, b, Kind::Scroll)),
        )
}

/// The caller's positions, or a 500 when they cannot be read from disk.
async fn pair_of(positions: &Positions, caller: &Caller) -> Result<Arc<Pair>, ApiError> {
    positions.pair(caller.user()).await.map_err(|e| {
        tracing::error!(user = ?caller.user(), error = %e, "cannot load positions");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the positions could not be read",
        )
    })
}

async fn position(
    State(positions): State<Arc<Positions>>,
    caller: Caller,
    kind: Kind,
) -> Result<Response, ApiError> {
    let pair = pair_of(&positions, &caller).await?;
    let body = match positions.newest_json(&pair, kind).await {
        Some(json) => json,
        None => Bytes::from(kind.empty().to_json()),
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn put_position(
    State(positions): State<Arc<Positions>>,
    State(abuse): State<Arc<AbuseLimits>>,
    caller: Caller,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Body,
    kind: Kind,
) -> Result<Json<serde_json::Value>, ApiError> {
    // Refused before the body is read: an abuser costs as little as possible.
    abuse.check_put(RateKey::for_request(caller.user(), ip))?;
    let limits = positions.limits();
    check_content_type(&headers)?;
    let body = axum::body::to_bytes(body, limits.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body must be at most {} bytes", limits.max_body_bytes),
            )
        })?;
    let update = parse_update(kind, &body, limits.max_string_bytes)
        .map_err(|r| ApiError::bad_request(r.0))?;
    let pair = pair_of(&positions, &caller).await?;
    let record = positions.put(&pair, kind, update).await.map_err(|e| {
        tracing::error!(kind = kind.event(), error = %e, "could not store a position");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the position could not be stored",
        )
    })?;
    tracing::debug!(
        kind = kind.event(),
        timestamp = record.timestamp(),
        "position stored"
    );
    Ok(Json(json!({
        "success": true,
        "timestamp": record.timestamp(),
        "broadcastCount": pair.channel(kind).subscribers(),
    })))
}

/// JSON bodies are expected. A missing Content-Type (or `text/plain`, which browsers use to
/// avoid a CORS preflight) is read as JSON too; anything else is refused.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let mime = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || mime.ends_with("+json") || mime == "text/plain" {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Content-Type must be application/json, not {mime}"
        )))
    }
}

#[allow(clippy::too_many_arguments)] // one per extractor
async fn events(
    State(positions): State<Arc<Positions>>,
    State(abuse): State<Arc<AbuseLimits>>,
    State(auth): State<Auth>,
    caller: Caller,
    ClientIp(ip): ClientIp,
    version: Version,
    headers: HeaderMap,
    kind: Kind,
) -> Result<Response, ApiError> {
    let connection = abuse.connect(ip)?;
    let pair = pair_of(&positions, &caller).await?;
    let channel = pair.channel(kind);
    // A reconnecting EventSource sends the id of the last event it saw; it gets the current
    // state only if that is newer. An id from the future (another server's, or from before
    // the data was reset) says nothing about what the client has: it is ignored.
    let current = channel.current().map_or(0, |p| p.version());
    let seen = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&id| id <= current)
        .unwrap_or(0);
    // With authentication, the stream ends when its token expires, and when the tokens file
    // changes and its token is no longer valid.
    let expires = caller
        .identity
        .as_ref()
        .and_then(|i| i.remaining())
        .map(|left| Instant::now() + left);
    let recheck = match (caller.identity, caller.token, auth.changes()) {
        (Some(identity), Some(token), Some(changes)) => Some(Recheck {
            auth,
            token,
            user: identity.user,
            changes: WatchStream::from_changes(changes),
        }),
        _ => None,
    };
    let stream = sse_stream(
        channel.subscribe(),
        seen,
        positions.keepalive(),
        positions.shutdown.clone(),
        Guards {
            _client: ClientGuard::new(positions.sse_counter()),
            _connection: connection,
        },
        expires,
        recheck,
    );
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    // As the seed sent it; HTTP/2 forbids connection-specific headers.
    if version <= Version::HTTP_11 {
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    tracing::debug!(kind = kind.event(), "SSE stream opened");
    Ok(response)
}

/// What a stream checks when the accepted tokens change.
struct Recheck {
    auth: Auth,
    token: Secret,
    user: UserName,
    changes: WatchStream<u64>,
}

impl Recheck {
    /// Whether the token still proves the same user.
    fn still_valid(&self) -> bool {
        self.auth
            .verify(self.token.expose())
            .is_ok_and(|identity| identity.user == self.user)
    }
}

/// What a stream holds for as long as it is open.
struct Guards {
    _client: ClientGuard,
    _connection: ConnectionGuard,
}

const KEEPALIVE: Bytes = Bytes::from_static(b": keep-alive\n\n");

/// Counts open streams for `/health`; decremented when the stream is dropped.
struct ClientGuard(Arc<AtomicUsize>);

impl ClientGuard {
    fn new(counter: Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        ClientGuard(counter)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An SSE stream: the current state first (if newer than what the client has), then the
/// newest state whenever it changes, `: keep-alive` after each `keepalive` of silence, and
/// the end at shutdown, when its token expires, or when its token is revoked.
///
/// Written out as a `Stream` so its futures persist across events: with a thousand streams
/// per update, creating a timer and a cancellation waiter per event and stream is the
/// largest cost of a broadcast after the writes themselves.
struct SseStream {
    changes: WatchStream<Option<Arc<Published>>>,
    /// Version the client already has; nothing at or below it is sent.
    seen: u64,
    keepalive: Duration,
    /// When the last bytes went out; the keep-alive timer is re-armed from it lazily.
    last_sent: Instant,
    idle: Pin<Box<Sleep>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// When the stream's token expires.
    expiry: Option<Pin<Box<Sleep>>>,
    recheck: Option<Recheck>,
    _guards: Guards,
}

fn sse_stream(
    rx: watch::Receiver<Option<Arc<Published>>>,
    seen: u64,
    keepalive: Duration,
    shutdown: CancellationToken,
    guards: Guards,
    expires: Option<Instant>,
    recheck: Option<Recheck>,
) -> SseStream {
    let now = Instant::now();
    SseStream {
        changes: WatchStream::new(rx),
        seen,
        keepalive,
        last_sent: now,
        idle: Box::pin(tokio::time::sleep_until(now + keepalive)),
        shutdown: Box::pin(shutdown.cancelled_owned()),
        expiry: expires.map(|at| Box::pin(tokio::time::sleep_until(at))),
        recheck,
        _guards: guards,
    }
}

impl Stream for SseStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        if let Some(expiry) = self.expiry.as_mut()
            && expiry.as_mut().poll(cx).is_ready()
        {
            tracing::debug!("SSE stream ended: its token expired");
            return Poll::Ready(None);
        }
        if let Some(recheck) = self.recheck.as_mut() {
            let mut changed = false;
            while let Poll::Ready(Some(_)) = recheck.changes.poll_next_unpin(cx) {
                changed = true;
            }
            if changed && !recheck.still_valid() {
                tracing::debug!("SSE stream ended: its token was revoked");
                return Poll::Ready(None);
            }
        }
        loop {
            match self.changes.poll_next_unpin(cx) {
                Poll::Ready(Some(Some(p))) if p.version() > self.seen => {
                    self.seen = p.version();
                    self.last_sent = Instant::now();
                    return Poll::Ready(Some(Ok(p.sse.clone())));
                }
                // Nothing stored yet, or not newer than what the client has.
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        while self.idle.as_mut().poll(cx).is_ready() {
            let due = self.last_sent + self.keepalive;
            let now = Instant::now();
            if now >= due {
                self.last_sent = now;
                let next = now + self.keepalive;
                self.idle.as_mut().reset(next);
                return Poll::Ready(Some(Ok(KEEPALIVE)));
            }
            // Events went out meanwhile: wait until the silence is long enough.
            self.idle.as_mut().reset(due);
        }
        Poll::Pending
    }
}
