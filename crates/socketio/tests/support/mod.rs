//! Test support: an engine with a recording handler served by axum on a loopback port, a raw
//! WebSocket client (tokio-tungstenite) and a raw HTTP/1.1 client. Every wait is bounded.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use socketio::{Config, DisconnectReason, Engine, Event, Handler, Packet, Refusal, Socket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// The bound of every wait in these tests (behaviour is asserted, never timing).
pub const WAIT: Duration = Duration::from_secs(10);

/// What the handler saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Connect {
        sid: String,
        nsp: String,
        auth: Option<Value>,
    },
    Event {
        sid: String,
        name: String,
        args: Vec<Value>,
        attachments: usize,
    },
    Disconnect {
        sid: String,
        reason: DisconnectReason,
    },
}

#[derive(Default)]
pub struct Log {
    seen: Mutex<Vec<Seen>>,
    changed: tokio::sync::Notify,
}

impl Log {
    fn push(&self, seen: Seen) {
        self.seen.lock().unwrap().push(seen);
        self.changed.notify_waiters();
    }

    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `pick` finds something in the log.
    pub async fn wait_for<T>(&self, what: &str, pick: impl Fn(&[Seen]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            if let Some(found) = pick(&self.seen.lock().unwrap()) {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {what}; log: {:#?}", self.all());
            }
        }
    }

    pub async fn disconnect_of(&self, sid: &str) -> DisconnectReason {
        self.wait_for(&format!("the disconnect of {sid}"), |seen| {
            seen.iter().find_map(|s| match s {
                Seen::Disconnect { sid: s, reason } if s == sid => Some(*reason),
                _ => None,
            })
        })
        .await
    }

    pub fn disconnected(&self, sid: &str) -> bool {
        self.all()
            .iter()
            .any(|s| matches!(s, Seen::Disconnect { sid: s, .. } if s == sid))
    }

    /// The arguments of every `seq` event of `sid`, in handling order.
    pub fn seqs(&self, sid: &str) -> Vec<Value> {
        seqs_in(&self.all(), sid)
    }
}

/// The arguments of every `seq` event of `sid` in `seen`, in handling order.
pub fn seqs_in(seen: &[Seen], sid: &str) -> Vec<Value> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Event {
                sid: s, name, args, ..
            } if s == sid && name == "seq" => args.last().cloned(),
            _ => None,
        })
        .collect()
}

/// The handler of these tests:
/// - connect: refuses auth `{"refuse": true}` with `{"message":"unauthorized"}`, else emits
///   `hello` with the auth;
/// - `echo`: emits `echo` with the same arguments and attachments (acknowledged alike when
///   asked);
/// - `ack`: acknowledges with its arguments;
/// - `sleep`: waits its argument in ms, then acknowledges;
/// - `bye`: the server disconnects the socket;
/// - every event is logged (`seq` events give the order).
pub struct Recorder {
    pub log: Arc<Log>,
    pub refuse_handshakes: bool,
}

impl Handler for Recorder {
    type State = Socket;
    type Guard = ();

    fn admit(&self, _request: &http::request::Parts) -> Result<(), Refusal> {
        if self.refuse_handshakes {
            return Err(Refusal::new(http::StatusCode::FORBIDDEN, "no entry"));
        }
        Ok(())
    }

    fn connect(
        &self,
        socket: &Socket,
        auth: Option<Value>,
    ) -> impl Future<Output = Result<Socket, Value>> + Send + 'static {
        let refuse = auth.as_ref().is_some_and(|a| a["refuse"] == json!(true));
        let result = if refuse {
            Err(json!({"message": "unauthorized"}))
        } else {
            socket
                .emit_event("hello", &auth.clone().unwrap_or(Value::Null))
                .unwrap();
            self.log.push(Seen::Connect {
                sid: socket.id().to_string(),
                nsp: socket.nsp().to_owned(),
                auth,
            });
            Ok(socket.clone())
        };
        std::future::ready(result)
    }

    fn event(
        &self,
        socket: &Socket,
        _state: &Socket,
        event: Event,
    ) -> impl Future<Output = ()> + Send + 'static {
        let log = self.log.clone();
        let socket = socket.clone();
        async move {
            let nsp = socket.nsp().to_owned();
            match event.name.as_str() {
                "echo" => {
                    let attachments = event.attachments.clone();
                    match event.ack {
                        Some(id) => {
                            socket.reply(
                                &Packet::ack_args(&nsp, id, &event.args, attachments).unwrap(),
                            );
                        }
                        None => {
                            socket.emit(
                                &Packet::event_args(&nsp, "echo", &event.args, attachments)
                                    .unwrap(),
                            );
                        }
                    }
                }
                "ack" => {
                    if let Some(id) = event.ack {
                        socket.reply(&Packet::ack_args(&nsp, id, &event.args, vec![]).unwrap());
                    }
                }
                "sleep" => {
                    let ms = event.args.first().and_then(Value::as_u64).unwrap_or(10);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    if let Some(id) = event.ack {
                        socket.ack(id, &json!("slept")).unwrap();
                    }
                }
                "bye" => socket.disconnect(),
                _ => {}
            }
            log.push(Seen::Event {
                sid: socket.id().to_string(),
                name: event.name,
                args: event.args,
                attachments: event.attachments.len(),
            });
        }
    }

    fn disconnect(
        &self,
        socket: &Socket,
        _state: Socket,
        reason: DisconnectReason,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.log.push(Seen::Disconnect {
            sid: socket.id().to_string(),
            reason,
        });
        std::future::ready(())
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub engine: Engine<Recorder>,
    pub log: Arc<Log>,
}

/// Test timings: fast heartbeats so that timeouts show within the wait bound.
pub fn config() -> Config {
    Config {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(300),
        namespaces: vec!["/".into(), "/custom".into()],
        ..Config::default()
    }
}

pub async fn serve(config: Config) -> Server {
    serve_with(config, false).await
}

pub async fn serve_with(config: Config, refuse_handshakes: bool) -> Server {
    serve_full(config, refuse_handshakes, None).await
}

/// `send_buffer`: the server sockets' SO_SNDBUF (the kernel's share of a slow reader's
/// backlog, ahead of any ping), as a deployment may set it.
pub async fn serve_full(
    config: Config,
    refuse_handshakes: bool,
    send_buffer: Option<usize>,
) -> Server {
    let log = Arc::new(Log::default());
    let engine = Engine::new(
        config,
        Recorder {
            log: log.clone(),
            refuse_handshakes,
        },
    );
    let io = engine.clone();
    let app = axum::Router::new().route(
        "/socket.io/",
        axum::routing::any(move |req: axum::extract::Request| async move { io.handle(req).await }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp| {
        let _ = tcp.set_nodelay(true);
        if let Some(size) = send_buffer {
            socket2::SockRef::from(&*tcp)
                .set_send_buffer_size(size)
                .unwrap();
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { addr, engine, log }
}

// ---- raw WebSocket ----

pub struct Ws {
    pub ws: WebSocketStream<TcpStream>,
    /// Answer the server's pings (`2` → `3`) while reading.
    pub pong: bool,
}

pub async fn ws_open(addr: SocketAddr, query: &str) -> Ws {
    ws_open_on(TcpStream::connect(addr).await.unwrap(), addr, query).await
}

pub async fn ws_open_on(tcp: TcpStream, addr: SocketAddr, query: &str) -> Ws {
    tcp.set_nodelay(true).unwrap();
    let url = format!("ws://{addr}/socket.io/?{query}");
    let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    Ws { ws, pong: true }
}

impl Ws {
    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.ws
            .send(Message::binary(Bytes::copy_from_slice(data)))
            .await
            .unwrap();
    }

    /// The next data message (pings answered and skipped if `pong`), `None` once closed.
    pub async fn next(&mut self) -> Option<Message> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a message");
            match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Text(t))) if self.pong && t.as_str() == "2" => {
                    // (The server may be closing the connection already.)
                    let _ = self.ws.send(Message::text("3")).await;
                }
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return Some(m),
                Some(Ok(_)) => {}
            }
        }
    }

    pub async fn text(&mut self) -> String {
        match self.next().await {
            Some(Message::Text(t)) => t.to_string(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    pub async fn binary(&mut self) -> Vec<u8> {
        match self.next().await {
            Some(Message::Binary(b)) => b.to_vec(),
            other => panic!("expected a binary message, got {other:?}"),
        }
    }

    /// Reads until the connection closes (skipping messages); panics if it stays open.
    pub async fn closed(&mut self) {
        for _ in 0..100_000 {
            if self.next().await.is_none() {
                return;
            }
        }
        panic!("the connection stayed open");
    }

    /// Engine.IO 4 open + Socket.IO CONNECT to `/`: returns the socket id.
    pub async fn connect(addr: SocketAddr) -> (Ws, String) {
        let mut ws = ws_open(addr, "EIO=4&transport=websocket").await;
        let open = ws.text().await;
        assert!(open.starts_with("0{"), "{open}");
        ws.send("40").await;
        let sid = connected_sid(&ws.text().await);
        assert_eq!(ws.text().await, r#"42["hello",null]"#);
        (ws, sid)
    }
}

/// The socket id in `40{"sid":"..."}`.
pub fn connected_sid(packet: &str) -> String {
    let json = packet
        .strip_prefix("40")
        .unwrap_or_else(|| panic!("not a CONNECT answer: {packet}"));
    let value: Value = serde_json::from_str(json).unwrap();
    value["sid"].as_str().unwrap().to_owned()
}

// ---- raw HTTP ----

pub struct HttpResponse {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on its own connection.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> HttpResponse {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let head = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw))
        .await
        .expect("timed out waiting for an HTTP response")
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of HTTP head");
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = headers[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16)
            .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw = &raw[line_end + 2 + size + 2..];
    }
}

/// A long-polling session: its sid after the handshake.
pub async fn polling_open(addr: SocketAddr, eio: u8) -> String {
    let r = http(
        addr,
        "GET",
        &format!("/socket.io/?EIO={eio}&transport=polling"),
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let open = match eio {
        4 => text.strip_prefix('0').unwrap().to_owned(),
        _ => text.split_once(":0").unwrap().1.to_owned(),
    };
    let value: Value = serde_json::from_str(&open).unwrap();
    value["sid"].as_str().unwrap().to_owned()
}

pub fn poll_path(eio: u8, sid: &str) -> String {
    format!("/socket.io/?EIO={eio}&transport=polling&sid={sid}")
}

/// A GET's packets (Engine.IO 4 payload), pings answered by a POST of `3`.
pub async fn poll(addr: SocketAddr, sid: &str) -> Vec<String> {
    let r = http(addr, "GET", &poll_path(4, sid), b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let packets: Vec<String> = r.text().split('\x1e').map(str::to_owned).collect();
    if packets.iter().any(|p| p == "2") {
        post(addr, sid, "3").await;
    }
    packets.into_iter().filter(|p| p != "2").collect()
}

pub async fn post(addr: SocketAddr, sid: &str, payload: &str) {
    let r = http(addr, "POST", &poll_path(4, sid), payload.as_bytes()).await;
    assert_eq!((r.status, r.text()), (200, "ok".to_owned()));
}
