//! `bare-broadcaster`: the floor for the fan-out benchmark, a benchmark peer (see
//! `bench/peers/README.md`), not a server for users.
//!
//! It speaks just enough Engine.IO 4 / Socket.IO v5 over WebSocket for `playsync-bench fanout`:
//! the open packet, the namespace connect (and a `connected` greeting), `create_room` and
//! `join_room` answered with `room_created` / `room_joined` (ack ids answered `{ok: true}`),
//! and pings every 25 s (a socket whose previous ping is unanswered at the next one is closed).
//! Every other event a room's creator sends is that room's broadcast: the text frame it
//! arrived in is forwarded, unparsed and unchanged, to every member — one frame encoded once
//! (by the sender), shared by reference, one write per member. Nothing else happens per
//! message: no validation, no room state, no `room_users`, no Redis. That is the least work
//! any Socket.IO server can do for a room broadcast, so its CPU per delivered message is the
//! floor to compare servers against.
//!
//! WebSocket only (`/socket.io/?EIO=4&transport=websocket`; long-polling gets 400); `GET` of
//! anything else answers a small JSON status (for readiness checks). Rooms live until the
//! process ends. One thread, as the benchmark gives every server one core.
//!
//! ```sh
//! HOST=127.0.0.1 PORT=3000 bare-broadcaster
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const PING_INTERVAL: Duration = Duration::from_secs(25);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest message accepted, as the seed servers' 64 KiB `maxHttpBufferSize`.
const MAX_MESSAGE: usize = 64 * 1024;
/// Broadcasts a member may fall behind by before it misses some (counted as `lagged`).
const ROOM_BACKLOG: usize = 4096;
/// Longest request head accepted, and how long it may take to arrive.
const MAX_HEAD: usize = 8 * 1024;
const HEAD_DEADLINE: Duration = Duration::from_secs(10);

/// A room: its broadcast channel (members subscribe) and member count.
struct Room {
    tx: broadcast::Sender<Utf8Bytes>,
    members: AtomicUsize,
}

#[derive(Default)]
struct State {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    next_sid: AtomicU64,
    /// Broadcast frames members missed because they fell `ROOM_BACKLOG` behind.
    lagged: AtomicU64,
}

impl State {
    fn room(&self, id: &str) -> Option<Arc<Room>> {
        self.rooms.lock().ok()?.get(id).cloned()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = std::env::var("PORT")
        .unwrap_or_else(|_| "3000".into())
        .parse()
        .context("PORT must be a port number")?;
    let listener = TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    eprintln!("bare-broadcaster listening on http://{host}:{port}");
    let state = Arc::new(State::default());
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = serve(tcp, state).await;
        });
    }
}

/// One TCP connection: a WebSocket upgrade to `/socket.io/`, or a plain request answered
/// and closed.
async fn serve(mut tcp: TcpStream, state: Arc<State>) -> anyhow::Result<()> {
    tcp.set_nodelay(true)?;
    let (head, rest) = tokio::time::timeout(HEAD_DEADLINE, read_head(&mut tcp))
        .await
        .context("request head too slow")??;
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    let mut upgrade = false;
    let mut key = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("upgrade") && value.eq_ignore_ascii_case("websocket") {
            upgrade = true;
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(value.to_owned());
        }
    }
    if target.starts_with("/socket.io/") {
        let websocket = target.contains("transport=websocket") && target.contains("EIO=4");
        return match (websocket && upgrade, key) {
            (true, Some(key)) => {
                let accept = derive_accept_key(key.as_bytes());
                let response = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                tcp.write_all(response.as_bytes()).await?;
                let config = WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .max_message_size(Some(MAX_MESSAGE))
                    .max_frame_size(Some(MAX_MESSAGE));
                let ws =
                    WebSocketStream::from_partially_read(tcp, rest, Role::Server, Some(config))
                        .await;
                session(ws, &state).await
            }
            _ => {
                respond(
                    &mut tcp,
                    "400 Bad Request",
                    r#"{"error":"WebSocket (EIO=4) only"}"#,
                )
                .await
            }
        };
    }
    let rooms = state.rooms.lock().map(|r| r.len()).unwrap_or(0);
    let body = format!(
        r#"{{"status":"ok","server":"bare-broadcaster","rooms":{rooms},"lagged":{}}}"#,
        state.lagged.load(Ordering::Relaxed)
    );
    respond(&mut tcp, "200 OK", &body).await
}

/// Reads up to the end of the request head; returns it and whatever followed it.
async fn read_head(tcp: &mut TcpStream) -> anyhow::Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "closed before the request head ended");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        anyhow::ensure!(buf.len() <= MAX_HEAD, "request head too long");
    }
}

async fn respond(tcp: &mut TcpStream, status: &str, body: &str) -> anyhow::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(response.as_bytes()).await?;
    tcp.shutdown().await?;
    Ok(())
}

/// Where a socket stands.
enum Seat {
    Outside,
    /// Created the room: its events are the room's broadcasts.
    Host(Arc<Room>),
    /// Joined it: receives the broadcasts.
    Member(Arc<Room>, broadcast::Receiver<Utf8Bytes>),
}

/// One Socket.IO session over a WebSocket, until either side closes it.
async fn session(mut ws: WebSocketStream<TcpStream>, state: &State) -> anyhow::Result<()> {
    let sid = format!("bare{:012}", state.next_sid.fetch_add(1, Ordering::Relaxed));
    let open = format!(
        r#"0{{"sid":"{sid}","upgrades":[],"pingInterval":{},"pingTimeout":{},"maxPayload":{MAX_MESSAGE}}}"#,
        PING_INTERVAL.as_millis(),
        PING_TIMEOUT.as_millis()
    );
    ws.send(Message::text(open)).await?;
    let mut seat = Seat::Outside;
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let mut awaiting_pong = false;
    let result = loop {
        tokio::select! {
            incoming = ws.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None => break Ok(()),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break Err(e.into()),
                };
                match on_packet(&mut ws, state, &sid, &mut seat, text).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Pong) => awaiting_pong = false,
                    Ok(Flow::Close) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
            frame = next_broadcast(&mut seat) => match frame {
                Ok(frame) => {
                    if let Err(e) = deliver(&mut ws, frame, &mut seat).await {
                        break Err(e);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    state.lagged.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => break Ok(()),
            },
            _ = ping.tick() => {
                // The previous ping went unanswered for a whole interval (> pingTimeout).
                if awaiting_pong {
                    break Ok(());
                }
                if let Err(e) = ws.send(Message::text("2")).await {
                    break Err(e.into());
                }
                awaiting_pong = true;
            }
        }
    };
    if let Seat::Member(room, _) = &seat {
        room.members.fetch_sub(1, Ordering::Relaxed);
    }
    result
}

/// Writes a broadcast frame, with the ones already waiting behind it (up to 64), in one
/// flush.
async fn deliver(
    ws: &mut WebSocketStream<TcpStream>,
    frame: Utf8Bytes,
    seat: &mut Seat,
) -> anyhow::Result<()> {
    ws.feed(Message::Text(frame)).await?;
    if let Seat::Member(_, rx) = seat {
        for _ in 0..64 {
            let Ok(frame) = rx.try_recv() else { break };
            ws.feed(Message::Text(frame)).await?;
        }
    }
    ws.flush().await?;
    Ok(())
}

/// The next broadcast for a member; never resolves for anyone else.
async fn next_broadcast(seat: &mut Seat) -> Result<Utf8Bytes, broadcast::error::RecvError> {
    match seat {
        Seat::Member(_, rx) => rx.recv().await,
        _ => std::future::pending().await,
    }
}

enum Flow {
    Continue,
    Pong,
    Close,
}

/// Handles one Engine.IO packet from the client.
async fn on_packet(
    ws: &mut WebSocketStream<TcpStream>,
    state: &State,
    sid: &str,
    seat: &mut Seat,
    text: Utf8Bytes,
) -> anyhow::Result<Flow> {
    let packet = text.as_str();
    if packet == "3" {
        return Ok(Flow::Pong);
    }
    if packet == "1" || packet.starts_with("41") {
        return Ok(Flow::Close);
    }
    if packet.starts_with("40") {
        ws.send(Message::text(format!(r#"40{{"sid":"{sid}"}}"#)))
            .await?;
        ws.send(Message::text(
            r#"42["connected",{"message":"Connected to the bare broadcaster"}]"#,
        ))
        .await?;
        return Ok(Flow::Continue);
    }
    let Some(event) = packet.strip_prefix("42") else {
        return Ok(Flow::Continue);
    };
    // `42<ack id>["name",...]`
    let args_at = event.find('[').unwrap_or(event.len());
    let ack = &event[..args_at];
    let args = &event[args_at..];
    let name = args
        .strip_prefix("[\"")
        .and_then(|a| a.split('"').next())
        .unwrap_or("");

    // The hot path: a host's event is its room's broadcast, forwarded as it came.
    if let Seat::Host(room) = seat
        && name != "create_room"
        && name != "join_room"
    {
        let frame = if ack.is_empty() {
            text.clone()
        } else {
            Utf8Bytes::from(format!("42{args}"))
        };
        let _ = room.tx.send(frame); // no members yet: nobody to send to
        return answer_ack(ws, ack).await;
    }

    let room_id = serde_json::from_str::<serde_json::Value>(args)
        .ok()
        .and_then(|v| v.get(1)?.get("room_id").cloned())
        .unwrap_or(serde_json::Value::Null);
    let key = match &room_id {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match name {
        "create_room" => {
            let room = Arc::new(Room {
                tx: broadcast::channel(ROOM_BACKLOG).0,
                members: AtomicUsize::new(0),
            });
            let created = match state.rooms.lock() {
                Ok(mut rooms) if !rooms.contains_key(&key) => {
                    rooms.insert(key, room.clone());
                    true
                }
                _ => false,
            };
            if !created {
                return error(ws, "Room already exists").await;
            }
            *seat = Seat::Host(room);
            let reply = serde_json::json!(["room_created", {"room_id": room_id, "user_count": 1}]);
            ws.send(Message::text(format!("42{reply}"))).await?;
        }
        "join_room" => {
            let Some(room) = state.room(&key) else {
                return error(ws, "Room does not exist").await;
            };
            if !matches!(seat, Seat::Member(..)) {
                let rx = room.tx.subscribe();
                room.members.fetch_add(1, Ordering::Relaxed);
                *seat = Seat::Member(room.clone(), rx);
            }
            // The creator counts as a member of the room, as in the seed.
            let count = room.members.load(Ordering::Relaxed) + 1;
            let reply =
                serde_json::json!(["room_joined", {"room_id": room_id, "user_count": count}]);
            ws.send(Message::text(format!("42{reply}"))).await?;
        }
        _ => {} // anything else from a non-host is ignored, as the seed does
    }
    answer_ack(ws, ack).await
}

async fn answer_ack(ws: &mut WebSocketStream<TcpStream>, ack: &str) -> anyhow::Result<Flow> {
    if !ack.is_empty() {
        ws.send(Message::text(format!(r#"43{ack}[{{"ok":true}}]"#)))
            .await?;
    }
    Ok(Flow::Continue)
}

async fn error(ws: &mut WebSocketStream<TcpStream>, message: &str) -> anyhow::Result<Flow> {
    let reply = serde_json::json!(["error", {"message": message}]);
    ws.send(Message::text(format!("42{reply}"))).await?;
    Ok(Flow::Continue)
}
