//! The two Socket.IO transports side by side: playsync's own WebSocket transport (clients
//! that open a WebSocket directly) and socketioxide's (long-polling and upgrades). Heartbeats,
//! namespaces and malformed packets behave the same on both, and rooms span them.
//!
//! A dead client cannot be made from socket.io-client (it always answers pings), so those
//! cases use a plain WebSocket client (tokio-tungstenite) speaking the Engine.IO framing.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::PATIENCE;
use crate::support::app::{TestApp, spawn_app};
use crate::support::sio::Sio;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client that only does what the test tells it (it never answers pings).
struct RawClient {
    ws: Ws,
}

impl RawClient {
    /// Connects and reads the Engine.IO open packet.
    async fn open(app: &TestApp) -> (RawClient, Value) {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", app.addr);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut client = RawClient { ws };
        let open = client.text().await.expect("an open packet");
        let handshake = open.strip_prefix('0').expect("open packet starts with 0");
        (client, serde_json::from_str(handshake).unwrap())
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next text frame; `None` once the server closed the connection.
    async fn text(&mut self) -> Option<String> {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("the server neither sent nor closed");
            match next {
                Some(Ok(Message::Text(t))) => return Some(t.to_string()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Reads until a frame starts with `prefix`, skipping others (pings included: they stay
    /// unanswered).
    async fn until(&mut self, prefix: &str) -> String {
        loop {
            match self.text().await {
                Some(t) if t.starts_with(prefix) => return t,
                Some(_) => continue,
                None => panic!("connection closed while waiting for {prefix}"),
            }
        }
    }

    /// Reads until the server closes the connection; returns the frames seen meanwhile.
    async fn until_closed(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(t) = self.text().await {
            seen.push(t);
        }
        seen
    }
}

async fn user_count(app: &TestApp, room: &str) -> Value {
    app.get_json(&format!("/room/{room}")).await.1["user_count"].clone()
}

#[tokio::test]
async fn clients_that_answer_pings_stay_and_a_silent_one_leaves_its_room() {
    let app = spawn_app(&["--ping-interval-ms", "200", "--ping-timeout-ms", "300"]).await;
    let sio = Sio::start().await;
    let host = sio
        .connect("host", &app.base(), json!({"transports": ["websocket"]}))
        .await;
    host.call("create_room", json!({"room_id": "hb"})).await;
    let polling = sio
        .connect("polling", &app.base(), json!({"transports": ["polling"]}))
        .await;
    polling.call("join_room", json!({"room_id": "hb"})).await;

    let (mut raw, handshake) = RawClient::open(&app).await;
    assert_eq!(handshake["pingInterval"], json!(200));
    assert_eq!(handshake["pingTimeout"], json!(300));
    assert_eq!(handshake["upgrades"], json!([]));
    raw.send("40").await;
    let connect = raw.until("40").await;
    let sid = serde_json::from_str::<Value>(&connect[2..]).unwrap()["sid"].clone();
    assert!(sid.is_string(), "{connect}");
    raw.until(r#"42["connected""#).await;
    raw.send(r#"427["join_room",{"room_id":"hb"}]"#).await;
    let ack = raw.until("437").await;
    let ack: Value = serde_json::from_str(&ack[3..]).unwrap();
    assert_eq!(ack[0]["ok"], json!(true));
    assert_eq!(ack[0]["user_count"], json!(3));
    for count in 1..=3 {
        assert_eq!(host.next("room_users").await["count"], json!(count));
    }

    // The raw client never answers: the server pings it, gives up, and it leaves the room.
    let seen = raw.until_closed().await;
    assert!(
        seen.iter().any(|t| t == "2"),
        "no ping before the close: {seen:?}"
    );
    assert_eq!(host.next("room_users").await["count"], json!(2));
    assert_eq!(polling.next("room_users").await["count"], json!(2));

    // socket.io-client answers every ping: both stay through many ping cycles.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(host.drain("$disconnect").await.is_empty());
    assert!(polling.drain("$disconnect").await.is_empty());
    assert_eq!(user_count(&app, "hb").await, json!(2));
    host.emit("seek", json!({"room_id": "hb", "current_time": 4}))
        .await;
    assert_eq!(polling.next("seek").await["current_time"], json!(4));
}

#[tokio::test]
async fn other_namespaces_are_refused_on_both_transports() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    for (i, transport) in ["websocket", "polling"].into_iter().enumerate() {
        let err = sio
            .try_connect(
                &format!("ns{i}"),
                &format!("{}/admin", app.base()),
                json!({"transports": [transport]}),
                4,
            )
            .await
            .err()
            .unwrap_or_else(|| panic!("/admin accepted over {transport}"));
        assert!(err.contains("Invalid namespace"), "{transport}: {err}");
    }
}

#[tokio::test]
async fn malformed_packets_close_only_the_sender() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let host = sio
        .connect("host", &app.base(), json!({"transports": ["websocket"]}))
        .await;
    host.call("create_room", json!({"room_id": "m"})).await;
    assert_eq!(host.next("room_users").await["count"], json!(1));

    for bad in ["42not json", r#"42[1,2]"#, "49", "0", "x"] {
        let (mut raw, _) = RawClient::open(&app).await;
        raw.send("40").await;
        raw.until(r#"42["connected""#).await;
        raw.send(r#"42["join_room",{"room_id":"m"}]"#).await;
        assert_eq!(host.next("room_users").await["count"], json!(2));
        raw.send(bad).await;
        raw.until_closed().await;
        assert_eq!(
            host.next("room_users").await["count"],
            json!(1),
            "after {bad:?}"
        );
    }
    // Events before joining the namespace are ignored, not fatal.
    let (mut raw, _) = RawClient::open(&app).await;
    raw.send(r#"421["create_room",{"room_id":"early"}]"#).await;
    raw.send("40").await;
    raw.until(r#"42["connected""#).await;
    raw.send(r#"422["get_room_state",{"room_id":"early"}]"#)
        .await;
    let ack: Value = serde_json::from_str(&raw.until("432").await[3..]).unwrap();
    assert_eq!(ack[0]["code"], json!("room_not_found"));

    let ack = host.call("get_room_state", json!({"room_id": "m"})).await;
    assert_eq!(ack["user_count"], json!(1));
}

/// A browser that cuts a title in the middle of an emoji (`'Song 😀'.slice(0, 6)`) sends a
/// lone surrogate escape, which is valid JSON: on every transport it is accepted, with the
/// lone surrogate replaced by U+FFFD, and the connection stays.
#[tokio::test]
async fn a_lone_surrogate_in_valid_json_is_accepted_on_every_transport() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let (mut raw, _) = RawClient::open(&app).await;
    raw.send("40").await;
    raw.until(r#"42["connected""#).await;
    raw.send(r#"421["create_room",{"room_id":"s","track":{"title":"Song \ud83d"}}]"#)
        .await;
    let ack: Value = serde_json::from_str(&raw.until("431").await[3..]).unwrap();
    assert_eq!(ack[0]["ok"], json!(true), "{ack}");
    let member = sio
        .connect("member", &app.base(), json!({"transports": ["polling"]}))
        .await;
    let joined = member.call("join_room", json!({"room_id": "s"})).await;
    assert_eq!(joined["current_track"]["title"], json!("Song \u{fffd}"));

    // Over WebSocket, from the host: the command goes through and the host stays.
    raw.send(r#"422["track_change",{"room_id":"s","track":{"title":"Next \udc00 one"}}]"#)
        .await;
    let ack: Value = serde_json::from_str(&raw.until("432").await[3..]).unwrap();
    assert_eq!(ack[0]["ok"], json!(true), "{ack}");
    let change = member.next("track_change").await;
    assert_eq!(change["track"]["title"], json!("Next \u{fffd} one"));

    // Over long-polling, from a JavaScript string holding the lone surrogate.
    let ack = member
        .call_json("get_room_state", r#"[{"room_id":"s","note":"\ud83d"}]"#)
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let polling_host = sio
        .connect(
            "polling-host",
            &app.base(),
            json!({"transports": ["polling"]}),
        )
        .await;
    let ack = polling_host
        .call_json(
            "create_room",
            r#"[{"room_id":"p","track":{"title":"Song \ud83d"}}]"#,
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let (_, info) = app.get_json("/room/p").await;
    assert_eq!(info["current_track"]["title"], json!("Song \u{fffd}"));
    assert_eq!(user_count(&app, "s").await, json!(2));
}

/// A raw client with a small socket receive buffer, so the server's outbox (not the kernel)
/// holds what it does not read.
async fn raw_member(base: &str, room: &str) -> RawClient {
    let addr = base.trim_start_matches("http://");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let mut raw = RawClient { ws };
    raw.text().await.expect("the open packet");
    raw.send("40").await;
    raw.until(r#"42["connected""#).await;
    raw.send(&format!(r#"421["join_room",{{"room_id":"{room}"}}]"#))
        .await;
    raw.until("431").await;
    raw
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Members that join and never read cost at most MAX_QUEUE_BYTES each: with 15 KiB tracks,
/// 20 such members used to hold ~3.2 MiB each; the member that reads gets everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_reads_costs_at_most_its_queue_bound() {
    let mut server = crate::support::process::Server::start(&[
        ("MAX_QUEUE_BYTES", (256 * 1024).to_string()),
        ("EVENT_RATE", "0".to_string()),
        ("RUST_LOG", "warn".to_string()),
    ])
    .await;
    let pid = server.child.id().unwrap();
    let sio = Sio::start().await;
    let host = sio
        .connect("host", &server.base(), json!({"transports": ["websocket"]}))
        .await;
    host.call("create_room", json!({"room_id": "big"})).await;
    let reader = sio
        .connect(
            "reader",
            &server.base(),
            json!({"transports": ["websocket"]}),
        )
        .await;
    reader.call("join_room", json!({"room_id": "big"})).await;
    let mut sleepers = Vec::new();
    for _ in 0..20 {
        sleepers.push(raw_member(&server.base(), "big").await);
    }
    let before = rss_kib(pid);
    let track = json!({"title": "t", "lyrics": "x".repeat(15 * 1024)});
    let first = host
        .call(
            "track_change",
            json!({"room_id": "big", "track": {"n": -1, "body": track}}),
        )
        .await;
    assert_eq!(first["ok"], json!(true), "{first}");
    // Paced so that the member that reads keeps up (its own queue has the same bound).
    for i in 0..200 {
        host.emit(
            "track_change",
            json!({"room_id": "big", "track": {"n": i, "body": track}}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let last = loop {
        let change = reader.next("track_change").await;
        if change["track"]["n"] == json!(199) {
            break change;
        }
    };
    assert_eq!(last["track"]["body"]["title"], json!("t"));
    let grown = rss_kib(pid).saturating_sub(before);
    println!("server RSS grew by {grown} KiB for 20 members that never read");
    // Unbounded, 20 members × 200 × 15 KiB = 59 MiB; bounded, 20 × 256 KiB = 5 MiB.
    assert!(grown < 24 * 1024, "the server grew by {grown} KiB");
    drop(sleepers);
    server.kill().await;
}

/// A member of a busy room that reads for 5 ms every 1.5 s is not dropped as stalled (with
/// PING_INTERVAL_MS=2000 PING_TIMEOUT_MS=2000 it used to be closed after ~6 s), and its own
/// request is answered meanwhile; it misses messages instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_reader_keeps_its_connection_and_gets_answers() {
    let app = spawn_app(&[
        "--ping-interval-ms",
        "2000",
        "--ping-timeout-ms",
        "2000",
        "--max-queue-bytes",
        "65536",
    ])
    .await;
    let sio = Sio::start().await;
    let host = sio
        .connect("host", &app.base(), json!({"transports": ["websocket"]}))
        .await;
    host.call("create_room", json!({"room_id": "busy"})).await;
    let mut slow = raw_member(&app.base(), "busy").await;
    let busy = tokio::spawn({
        let filler = "x".repeat(2048);
        async move {
            for i in 0..2000 {
                host.emit(
                    "sync_progress",
                    json!({"room_id": "busy", "current_time": i, "pad": filler}),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
        }
    });
    slow.send(r#"422["get_room_state",{"room_id":"busy"}]"#)
        .await;
    let mut answered = false;
    let started = tokio::time::Instant::now();
    // Read for 5 ms every 1.5 s, for 9 s; answer pings when seen.
    while started.elapsed() < Duration::from_secs(9) {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let window = tokio::time::Instant::now() + Duration::from_millis(5);
        while let Ok(next) = tokio::time::timeout_at(window, slow.ws.next()).await {
            match next {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => slow.send("3").await,
                Some(Ok(Message::Text(t))) if t.starts_with("432") => answered = true,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    panic!(
                        "the slow reader was disconnected after {:?}",
                        started.elapsed()
                    )
                }
                Some(Ok(_)) => {}
            }
        }
    }
    busy.abort();
    // Drain what is left: the answer to its own request is there.
    while !answered {
        match slow.text().await {
            Some(t) if t == "2" => slow.send("3").await,
            Some(t) if t.starts_with("432") => answered = true,
            Some(_) => {}
            None => panic!("closed before the answer"),
        }
    }
    assert_eq!(user_count(&app, "busy").await, json!(2));
}
