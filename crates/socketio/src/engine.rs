//! [`Engine`]: answers the HTTP requests on the engine's path (handshakes, long-polling,
//! WebSocket upgrades), runs one task per Engine.IO connection, and keeps the registries
//! used for draining and shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::conn::{
    Class, Common, ConnShared, Protocol, SIG_SHUTDOWN, Stats, StatsSnapshot, Transport,
};
use crate::connection::{Connection, Link};
use crate::handler::Handler;
use crate::packet::Packet;
use crate::polling::{self, PollingSession};
use crate::registry::Registry;
use crate::sid::Sid;
use crate::socket::Socket;

/// The WebSocket stream of a connection.
pub(crate) type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Per-connection WebSocket read buffer: client messages are small and an idle connection
/// should cost little (larger messages are read in several steps).
const READ_BUFFER_BYTES: usize = 1024;

/// Bytes tungstenite collects before writing them out (a batch of frames per write).
const WRITE_BATCH_BYTES: usize = 4096;

/// A Socket.IO server engine. Cheap to clone (an `Arc`).
///
/// Serve it from axum with a route for its path that calls [`Engine::handle`]:
///
/// ```ignore
/// let io = engine.clone();
/// let app = axum::Router::new().route(
///     "/socket.io/",
///     axum::routing::any(move |req: axum::extract::Request| async move { io.handle(req).await }),
/// );
/// ```
///
/// (axum's `serve` must run with `with_upgrades` semantics, which it has by default.)
pub struct Engine<H: Handler> {
    shared: Arc<Shared<H>>,
}

impl<H: Handler> Clone for Engine<H> {
    fn clone(&self) -> Self {
        Engine {
            shared: self.shared.clone(),
        }
    }
}

pub(crate) struct Shared<H: Handler> {
    pub(crate) common: Arc<Common>,
    pub(crate) handler: H,
    accepting: AtomicBool,
    pub(crate) shutting_down: AtomicBool,
    /// Long-polling sessions (and those being upgraded), by Engine.IO session id.
    sessions: Mutex<HashMap<Sid, Arc<PollingSession>>>,
    pub(crate) sockets: Registry<Socket>,
    pub(crate) conns: Registry<Arc<ConnShared>>,
    pub(crate) tracker: TaskTracker,
    cancel: CancellationToken,
}

impl<H: Handler> Shared<H> {
    fn sessions(&self) -> MutexGuard<'_, HashMap<Sid, Arc<PollingSession>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn remove_session(&self, sid: &Sid) {
        self.sessions().remove(sid);
    }
}

/// The query parameters the engine reads.
#[derive(Default)]
struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
    jsonp: bool,
}

impl<'a> Query<'a> {
    fn parse(query: &'a str) -> Self {
        let mut q = Query::default();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "EIO" => q.eio = Some(value),
                "transport" => q.transport = Some(value),
                "sid" => q.sid = Some(value),
                "j" => q.jsonp = true,
                _ => {}
            }
        }
        q
    }
}

/// `{"code":N,"message":"..."}` with `status`: the Engine.IO error answers.
pub(crate) fn error_response(status: StatusCode, code: u8, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"code": code, "message": message}).to_string();
    json_response(status, body)
}

fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

impl<H: Handler> Engine<H> {
    /// An engine with `config`, calling `handler`.
    pub fn new(config: Config, handler: H) -> Self {
        Engine {
            shared: Arc::new(Shared {
                common: Arc::new(Common {
                    config,
                    stats: Stats::default(),
                }),
                handler,
                accepting: AtomicBool::new(true),
                shutting_down: AtomicBool::new(false),
                sessions: Mutex::default(),
                sockets: Registry::new(),
                conns: Registry::new(),
                tracker: TaskTracker::new(),
                cancel: CancellationToken::new(),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.shared.common.config
    }

    pub fn handler(&self) -> &H {
        &self.shared.handler
    }

    /// Whether `path` is the engine's (with or without the trailing slash).
    pub fn handles(&self, path: &str) -> bool {
        path == self.config().path || path == self.config().base_path()
    }

    /// New handshakes are answered 503 while false; existing connections go on.
    pub fn set_accepting(&self, accepting: bool) {
        self.shared.accepting.store(accepting, Ordering::SeqCst);
    }

    pub fn is_accepting(&self) -> bool {
        self.shared.accepting.load(Ordering::SeqCst)
    }

    /// The connected sockets (a snapshot), e.g. to drain them.
    pub fn sockets(&self) -> Vec<Socket> {
        self.shared.sockets.values()
    }

    /// How many Engine.IO connections are open.
    pub fn connection_count(&self) -> usize {
        self.shared.conns.len()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.shared.common.stats.snapshot()
    }

    /// Tracks every task of the engine (one per connection, plus upgrades in progress).
    pub fn tasks(&self) -> &TaskTracker {
        &self.shared.tracker
    }

    /// Cancelled when [`Engine::shutdown`] begins.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shared.cancel
    }

    /// Stops accepting handshakes, disconnects every socket with
    /// [`crate::DisconnectReason::ServerShutdown`] (DISCONNECT is sent first), and waits for
    /// every connection's task to end (bound it with a timeout).
    pub async fn shutdown(&self) {
        self.set_accepting(false);
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        self.shared.cancel.cancel();
        for conn in self.shared.conns.values() {
            conn.signal(SIG_SHUTDOWN);
        }
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }

    /// Answers one HTTP request on the engine's path: a handshake on either transport, a
    /// long-polling GET or POST, or the WebSocket of an upgrade. The request must come from
    /// a hyper server (axum's included) for WebSocket upgrades to work.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if !self.handles(req.uri().path()) {
            return error_response(StatusCode::NOT_FOUND, 3, "Bad request");
        }
        let query = Query::parse(req.uri().query().unwrap_or(""));
        let transport = match query.transport {
            Some("polling") => Transport::Polling,
            Some("websocket") => Transport::WebSocket,
            _ => return error_response(StatusCode::BAD_REQUEST, 0, "Transport unknown"),
        };
        let protocol = match query.eio {
            Some("4") => Protocol::V5,
            Some("3") => Protocol::V4,
            _ => return error_response(StatusCode::BAD_REQUEST, 5, "Unsupported protocol version"),
        };
        if query.jsonp {
            return error_response(StatusCode::BAD_REQUEST, 3, "JSONP is not supported");
        }
        let sid = match query.sid {
            None => None,
            Some(sid) => match sid.parse::<Sid>() {
                Ok(sid) => Some(sid),
                Err(_) => return error_response(StatusCode::BAD_REQUEST, 1, "Session ID unknown"),
            },
        };
        match (sid, transport) {
            (None, _) => self.handshake(req, protocol, transport).await,
            (Some(sid), Transport::Polling) => {
                let Some(session) = self.shared.sessions().get(&sid).cloned() else {
                    return error_response(StatusCode::BAD_REQUEST, 1, "Session ID unknown");
                };
                if session.conn.protocol != protocol {
                    return error_response(StatusCode::BAD_REQUEST, 3, "Bad request");
                }
                match *req.method() {
                    Method::GET => polling::get(session).await,
                    Method::POST => polling::post(session, req.into_body()).await,
                    _ => error_response(StatusCode::BAD_REQUEST, 3, "Bad request"),
                }
            }
            (Some(sid), Transport::WebSocket) => self.upgrade(req, sid),
        }
    }

    async fn handshake<B>(
        &self,
        req: Request<B>,
        protocol: Protocol,
        transport: Transport,
    ) -> Response<Full<Bytes>> {
        if req.method() != Method::GET {
            return error_response(StatusCode::BAD_REQUEST, 2, "Bad handshake method");
        }
        let ws_accept = match transport {
            Transport::WebSocket => match websocket_accept(req.headers()) {
                Some(accept) => Some(accept),
                None => return error_response(StatusCode::BAD_REQUEST, 3, "Bad request"),
            },
            Transport::Polling => None,
        };
        if !self.is_accepting() {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"message": "Server is not accepting connections"}).to_string(),
            );
        }
        let (mut parts, _body) = req.into_parts();
        let guard = match self.shared.handler.admit(&parts) {
            Ok(guard) => guard,
            Err(refusal) => {
                return json_response(
                    refusal.status,
                    serde_json::json!({"message": refusal.message}).to_string(),
                );
            }
        };
        match ws_accept {
            None => {
                let conn =
                    ConnShared::new(self.shared.common.clone(), protocol, Transport::Polling);
                let session = PollingSession::new(conn.clone());
                self.shared.sessions().insert(conn.sid, session.clone());
                let open = self.open_packet(&conn, true);
                let connection = Connection::new(
                    self.shared.clone(),
                    conn.clone(),
                    Link::polling(session),
                    guard,
                );
                self.shared.tracker.spawn(connection.run());
                drop(parts);
                // The open packet is the handshake's whole body (length-prefixed for EIO 3).
                let body = match protocol {
                    Protocol::V5 => Bytes::from(open),
                    Protocol::V4 => Bytes::from(format!("{}:{open}", polling::utf16_len(&open))),
                };
                polling::text_response(body)
            }
            Some(accept) => {
                let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
                    return error_response(StatusCode::BAD_REQUEST, 3, "Bad request");
                };
                // Only the upgrade handle is kept: the request head goes now.
                drop(parts);
                let engine = self.clone();
                self.shared.tracker.spawn(async move {
                    let Some(ws) = engine.accept_websocket(on_upgrade).await else {
                        drop(guard);
                        return;
                    };
                    let conn = ConnShared::new(
                        engine.shared.common.clone(),
                        protocol,
                        Transport::WebSocket,
                    );
                    let open = engine.open_packet(&conn, false);
                    conn.push(None, &Packet::engine(open), Class::Reply);
                    Connection::new(engine.shared.clone(), conn, Link::WebSocket(ws), guard)
                        .run()
                        .await;
                });
                switching_protocols(accept)
            }
        }
    }

    /// The WebSocket of an upgrade from long-polling: handed to the session's task, which
    /// answers the probe and switches transports on `5`.
    ///
    /// A WebSocket for a session that is not (or no longer) long-polling, or that is already
    /// being upgraded, is accepted and closed at once, as the reference server does.
    fn upgrade<B>(&self, mut req: Request<B>, sid: Sid) -> Response<Full<Bytes>> {
        if req.method() != Method::GET {
            return error_response(StatusCode::BAD_REQUEST, 3, "Bad request");
        }
        let Some(accept) = websocket_accept(req.headers()) else {
            return error_response(StatusCode::BAD_REQUEST, 3, "Bad request");
        };
        let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
            return error_response(StatusCode::BAD_REQUEST, 3, "Bad request");
        };
        drop(req);
        let session = self.shared.sessions().get(&sid).cloned();
        let Some(session) = session.filter(|s| s.begin_probe()) else {
            let engine = self.clone();
            self.shared.tracker.spawn(async move {
                if let Some(mut ws) = engine.accept_websocket(on_upgrade).await {
                    let close = ws.close(None);
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), close).await;
                }
            });
            return switching_protocols(accept);
        };
        let engine = self.clone();
        self.shared.tracker.spawn(async move {
            match engine.accept_websocket(on_upgrade).await {
                Some(ws) => session.offer(Box::new(ws)),
                None => session.probe_ended(),
            }
        });
        switching_protocols(accept)
    }

    async fn accept_websocket(&self, on_upgrade: OnUpgrade) -> Option<Ws> {
        let upgraded = tokio::select! {
            upgraded = on_upgrade => upgraded,
            () = self.shared.cancel.cancelled() => return None,
        };
        match upgraded {
            Ok(upgraded) => {
                let max = self.config().max_payload;
                let config = WebSocketConfig::default()
                    .read_buffer_size(READ_BUFFER_BYTES)
                    .write_buffer_size(WRITE_BATCH_BYTES)
                    .max_message_size(Some(max))
                    .max_frame_size(Some(max));
                Some(
                    WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(config),
                    )
                    .await,
                )
            }
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                None
            }
        }
    }

    fn open_packet(&self, conn: &ConnShared, polling: bool) -> String {
        let config = self.config();
        let upgrades = if polling { r#"["websocket"]"# } else { "[]" };
        let mut open = format!(
            r#"0{{"sid":"{}","upgrades":{upgrades},"pingInterval":{},"pingTimeout":{}"#,
            conn.sid,
            config.ping_interval.as_millis(),
            config.ping_timeout.as_millis(),
        );
        if conn.protocol == Protocol::V5 {
            open.push_str(&format!(r#","maxPayload":{}"#, config.max_payload));
        }
        open.push('}');
        open
    }
}

/// `Sec-WebSocket-Accept` for a valid WebSocket handshake request.
fn websocket_accept(headers: &HeaderMap) -> Option<http::HeaderValue> {
    if !header_has(headers, header::UPGRADE, "websocket")
        || !header_has(headers, header::SEC_WEBSOCKET_VERSION, "13")
    {
        return None;
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    http::HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()
}

fn switching_protocols(accept: http::HeaderValue) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
    headers.insert(
        header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q = Query::parse("EIO=4&transport=polling&t=abc&sid=xyz");
        assert_eq!(
            (q.eio, q.transport, q.sid, q.jsonp),
            (Some("4"), Some("polling"), Some("xyz"), false)
        );
        let q = Query::parse("EIO=3&transport=polling&j=0&b64");
        assert!(q.jsonp);
        let q = Query::parse("");
        assert_eq!((q.eio, q.transport), (None, None));
    }
}
