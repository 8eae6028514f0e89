//! Several instances through a real redis-server: positions and rooms across instances,
//! interop with the seed's channel format, handover after SIGKILL of the host's instance,
//! Redis killed and restarted under live clients, and instances started with Redis down.

use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::support::app::{TestApp, spawn_app};
use crate::support::eventually;
use crate::support::process::{Server, free_port};
use crate::support::redis::RedisServer;
use crate::support::sio::Sio;
use crate::support::sse::SseClient;

const WS: fn() -> Value = || json!({"transports": ["websocket"]});

async fn instance(redis: &RedisServer) -> TestApp {
    let app = spawn_app(&["--redis-url", &redis.url()]).await;
    wait_connected(&app.base(), true).await;
    app
}

/// Waits until the instance at `base` reports `redis_connected == connected`.
async fn wait_connected(base: &str, connected: bool) {
    let url = format!("{base}/health");
    eventually(&format!("redis_connected = {connected} at {base}"), || {
        let url = url.clone();
        async move {
            let health: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
            assert_eq!(health["redis_enabled"], json!(true));
            (health["redis_connected"] == json!(connected)).then_some(())
        }
    })
    .await;
}

async fn put(base: &str, path: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .put(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let resp = reqwest::get(format!("{base}{path}")).await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn positions_travel_between_instances() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let mut on_b = SseClient::connect(&b.url("/api/events/playback"), None).await;
    let answer = put(
        &a.base(),
        "/api/playback-position",
        json!({"lastPlayedIndex": 5, "deviceId": "phone"}),
    )
    .await;
    let (event, data) = on_b.next_json().await;
    assert_eq!(event.id, answer["timestamp"].to_string());
    assert_eq!(data["lastPlayedIndex"], json!(5));
    assert_eq!(get(&b.base(), "/api/playback-position").await.1, data);

    // And back, for the other kind, GET right after the PUT.
    let answer = put(&b.base(), "/api/scroll-position", json!({"scrollTop": 77})).await;
    let (_, on_a) = get(&a.base(), "/api/scroll-position").await;
    assert_eq!(on_a["scrollTop"], json!(77));
    assert_eq!(on_a["timestamp"], answer["timestamp"]);
    // Versions keep increasing across instances.
    let later = put(&a.base(), "/api/scroll-position", json!({"scrollTop": 78})).await;
    assert!(later["timestamp"].as_u64() > answer["timestamp"].as_u64());
}

#[tokio::test]
async fn the_seed_servers_channel_format_works_both_ways() {
    let redis = RedisServer::start().await;
    let a = instance(&redis).await;

    // A seed server publishes: playsync streams and stores it.
    let mut stream = SseClient::connect(&a.url("/api/events/playback"), None).await;
    let seed_json = r#"{"lastPlayedIndex": 9, "notePath": "seed.md", "noteTitle": "Seed", "timestamp": 4102444800000, "deviceId": "seed-server"}"#;
    let mut conn = redis.client().await;
    let _: () = conn.publish("tts:playback", seed_json).await.unwrap();
    let (event, data) = stream.next_json().await;
    assert_eq!(event.id, "4102444800000");
    assert_eq!(data["deviceId"], json!("seed-server"));
    assert_eq!(
        get(&a.base(), "/api/playback-position").await.1["notePath"],
        json!("seed.md")
    );

    // playsync publishes: a seed-style subscriber reads the seed's JSON.
    let client = redis::Client::open(format!("{}/?protocol=resp3", redis.url())).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let config = redis::AsyncConnectionConfig::new().set_push_sender(tx);
    let mut sub = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    sub.subscribe("tts:scroll").await.unwrap();
    let answer = put(
        &a.base(),
        "/api/scroll-position",
        json!({"scrollTop": 12, "notePath": "n.md", "deviceId": "d"}),
    )
    .await;
    let message = loop {
        let push = tokio::time::timeout(crate::support::PATIENCE, rx.recv())
            .await
            .expect("no message on tts:scroll")
            .expect("subscription closed");
        if push.kind == redis::PushKind::Message {
            let payload: String = redis::from_redis_value_ref(&push.data[1]).unwrap();
            break serde_json::from_str::<Value>(&payload).unwrap();
        }
    };
    assert_eq!(
        message,
        json!({"scrollTop": 12, "notePath": "n.md", "timestamp": answer["timestamp"], "deviceId": "d"})
    );
}

#[tokio::test]
async fn a_room_spans_instances() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let sio = Sio::start().await;
    let host = sio.connect("host", &a.base(), WS()).await;
    host.call(
        "create_room",
        json!({"room_id": "span", "track": {"name": "T"}, "current_time": 3}),
    )
    .await;
    assert_eq!(host.next("room_users").await, json!({"count": 1}));
    let m1 = sio.connect("m1", &b.base(), WS()).await;
    let joined = m1.call("join_room", json!({"room_id": "span"})).await;
    assert_eq!(joined["user_count"], json!(2));
    assert_eq!(joined["host_id"], json!(host.sid));
    assert_eq!(m1.next("room_joined").await["user_count"], json!(2));
    assert_eq!(m1.next("room_users").await, json!({"count": 2}));
    assert_eq!(
        m1.next("sync_state").await["current_track"],
        json!({"name": "T"})
    );
    assert_eq!(host.next("room_users").await, json!({"count": 2}));
    let m2 = sio.connect("m2", &a.base(), WS()).await;
    m2.call("join_room", json!({"room_id": "span"})).await;
    assert_eq!(m2.next("room_users").await, json!({"count": 3}));
    assert_eq!(m1.next("room_users").await, json!({"count": 3}));

    // Host commands reach members on both instances, not the sender.
    host.emit("pause", json!({"room_id": "span", "current_time": 0}))
        .await;
    host.emit("seek", json!({"room_id": "span", "current_time": 40}))
        .await;
    for m in [&m1, &m2] {
        assert_eq!(m.next("pause").await["current_time"].as_f64(), Some(0.0));
        assert_eq!(m.next("seek").await["current_time"].as_f64(), Some(40.0));
    }
    // Non-hosts on the other instance cannot control.
    let ack = m1
        .call("play", json!({"room_id": "span", "current_time": 1}))
        .await;
    assert_eq!(ack["code"], json!("not_host"));
    // Play without a time resumes where the room paused (the shared state decides).
    let ack = host.call("play", json!({"room_id": "span"})).await;
    assert_eq!(ack["current_time"].as_f64(), Some(40.0));
    assert_eq!(m1.next("play").await["current_time"].as_f64(), Some(40.0));
    host.call(
        "track_change",
        json!({"room_id": "span", "track": {"name": "U"}}),
    )
    .await;
    let tc = m2.next("track_change").await;
    assert_eq!(
        (tc["track"].clone(), tc["current_time"].as_f64()),
        (json!({"name": "U"}), Some(0.0))
    );
    assert!(host.drain("pause").await.is_empty() && host.drain("seek").await.is_empty());

    // Both instances agree on the HTTP view.
    for base in [a.base(), b.base()] {
        let (status, room) = get(&base, "/room/span").await;
        assert_eq!(status, 200);
        assert_eq!(room["user_count"], json!(3));
        assert_eq!(room["host_id"], json!(host.sid));
        assert_eq!(room["current_track"], json!({"name": "U"}));
        let (_, rooms) = get(&base, "/rooms").await;
        assert_eq!(rooms["count"], json!(1));
        assert_eq!(get(&base, "/").await.1["rooms"], json!(1));
        let state = m1.call("get_room_state", json!({"room_id": "span"})).await;
        assert_eq!(state["user_count"], json!(3));
    }
    // A room id is taken across instances.
    let other = sio.connect("other", &b.base(), WS()).await;
    let ack = other.call("create_room", json!({"room_id": "span"})).await;
    assert_eq!(ack["code"], json!("room_exists"));

    // The host leaves: the longest-present member, on the other instance, takes over.
    host.disconnect().await;
    assert_eq!(m1.next("become_host").await, json!({"room_id": "span"}));
    assert_eq!(m1.next("room_users").await, json!({"count": 2}));
    assert_eq!(m2.next("room_users").await, json!({"count": 2}));
    m1.emit("seek", json!({"room_id": "span", "current_time": 7}))
        .await;
    assert_eq!(m2.next("seek").await["current_time"].as_f64(), Some(7.0));
    assert!(m2.drain("become_host").await.is_empty());

    // Everyone leaves: the room is gone everywhere.
    m1.disconnect().await;
    assert_eq!(m2.next("become_host").await, json!({"room_id": "span"}));
    m2.disconnect().await;
    for base in [a.base(), b.base()] {
        eventually("the room's deletion everywhere", || {
            let base = base.clone();
            async move { (get(&base, "/room/span").await.0 == 404).then_some(()) }
        })
        .await;
    }
}

#[tokio::test]
async fn the_host_instance_dying_hands_the_room_over_within_15_seconds() {
    let redis = RedisServer::start().await;
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = |dir: &tempfile::TempDir| {
        vec![
            ("REDIS_URL", redis.url()),
            ("TTS_DATA_DIR", dir.path().display().to_string()),
        ]
    };
    let mut a = Server::start(&env(&dirs.0)).await;
    let b = Server::start(&env(&dirs.1)).await;
    wait_connected(&a.base(), true).await;
    wait_connected(&b.base(), true).await;
    let sio = Sio::start().await;
    let host = sio.connect("host", &a.base(), WS()).await;
    host.call("create_room", json!({"room_id": "crash"})).await;
    let on_a = sio.connect("on_a", &a.base(), WS()).await;
    on_a.call("join_room", json!({"room_id": "crash"})).await;
    let first = sio.connect("first", &b.base(), WS()).await;
    first.call("join_room", json!({"room_id": "crash"})).await;
    let second = sio.connect("second", &b.base(), WS()).await;
    second.call("join_room", json!({"room_id": "crash"})).await;
    assert_eq!(second.next("room_users").await, json!({"count": 4}));
    assert_eq!(
        get(&b.base(), "/room/crash").await.1["user_count"],
        json!(4)
    );

    let killed_at = std::time::Instant::now();
    a.signal("KILL");
    a.wait_exit().await;
    // The members on A are gone with it; the longest-present survivor is host.
    assert_eq!(first.next("become_host").await, json!({"room_id": "crash"}));
    let elapsed = killed_at.elapsed();
    eprintln!("handover after SIGKILL: {elapsed:?}");
    assert!(elapsed.as_secs() < 15, "handover took {elapsed:?}");
    eventually("the count to drop to 2", || async {
        let room = get(&b.base(), "/room/crash").await.1;
        (room["user_count"] == json!(2) && room["host_id"] == json!(first.sid)).then_some(())
    })
    .await;
    let users = second.next("room_users").await["count"].clone();
    assert!(users == json!(2) || users == json!(3), "{users}");
    first
        .emit("seek", json!({"room_id": "crash", "current_time": 3}))
        .await;
    assert_eq!(
        second.next("seek").await["current_time"].as_f64(),
        Some(3.0)
    );
    assert!(second.drain("become_host").await.is_empty());
}

#[tokio::test]
async fn redis_down_and_back_under_live_clients() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let sio = Sio::start().await;
    let host = sio.connect("host", &a.base(), WS()).await;
    host.call("create_room", json!({"room_id": "live"})).await;
    let local_member = sio.connect("local", &a.base(), WS()).await;
    local_member
        .call("join_room", json!({"room_id": "live"}))
        .await;
    let remote_member = sio.connect("remote", &b.base(), WS()).await;
    remote_member
        .call("join_room", json!({"room_id": "live"}))
        .await;
    let mut stream_a = SseClient::connect(&a.url("/api/events/playback"), None).await;
    let mut stream_b = SseClient::connect(&b.url("/api/events/playback"), None).await;

    redis.kill().await;
    wait_connected(&a.base(), false).await;
    wait_connected(&b.base(), false).await;

    // Each instance keeps serving its own clients.
    let stored = put(
        &a.base(),
        "/api/playback-position",
        json!({"lastPlayedIndex": 31}),
    )
    .await;
    assert_eq!(stream_a.next_json().await.1["lastPlayedIndex"], json!(31));
    assert_eq!(
        get(&a.base(), "/api/playback-position").await.1["lastPlayedIndex"],
        json!(31)
    );
    host.emit("seek", json!({"room_id": "live", "current_time": 50}))
        .await;
    assert_eq!(
        local_member.next("seek").await["current_time"].as_f64(),
        Some(50.0)
    );
    let fresh = sio.connect("fresh", &a.base(), WS()).await;
    let ack = fresh
        .call("create_room", json!({"room_id": "during"}))
        .await;
    assert_eq!(ack["ok"], json!(true));
    // On B the remote host is out of reach: B's member leads its part of the room.
    assert_eq!(
        remote_member.next("become_host").await,
        json!({"room_id": "live"})
    );
    assert_eq!(get(&b.base(), "/room/live").await.1["user_count"], json!(1));

    redis.restart().await;
    let back = std::time::Instant::now();
    wait_connected(&a.base(), true).await;
    wait_connected(&b.base(), true).await;
    assert!(
        back.elapsed().as_secs() < 5,
        "reconnect took {:?}",
        back.elapsed()
    );

    // The PUT acknowledged during the outage was not lost: published when Redis returned.
    eventually("B to get the outage's PUT", || async {
        let (_, p) = get(&b.base(), "/api/playback-position").await;
        (p["timestamp"] == stored["timestamp"]).then_some(())
    })
    .await;
    assert_eq!(stream_b.next_json().await.1["lastPlayedIndex"], json!(31));
    // Rooms merged back: one room with all three members, one host, the newest state.
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    loop {
        let (_, room) = get(&b.base(), "/room/live").await;
        if room["user_count"] == json!(3) && room["host_id"] == json!(host.sid) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rooms did not merge: {room} (host {}, local {}, remote {})",
            host.sid,
            local_member.sid,
            remote_member.sid
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, room) = get(&b.base(), "/room/live").await;
    assert_eq!(room["current_time"].as_f64().map(|t| t >= 50.0), Some(true));
    assert_eq!(get(&b.base(), "/room/during").await.0, 200);
    assert_eq!(get(&b.base(), "/rooms").await.1["count"], json!(2));
    // And the room works across instances again.
    host.emit("pause", json!({"room_id": "live", "current_time": 60}))
        .await;
    assert_eq!(
        remote_member.next("pause").await["current_time"].as_f64(),
        Some(60.0)
    );
}

#[tokio::test]
async fn an_instance_started_with_redis_down_serves_and_joins_later() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let a = spawn_app(&["--redis-url", &url]).await;
    let (status, health) = get(&a.base(), "/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["redis_enabled"], json!(true));
    assert_eq!(health["redis_connected"], json!(false));
    // Everything answers, promptly, from memory.
    let started = std::time::Instant::now();
    let stored = put(&a.base(), "/api/scroll-position", json!({"scrollTop": 8})).await;
    assert_eq!(
        get(&a.base(), "/api/scroll-position").await.1["scrollTop"],
        json!(8)
    );
    let sio = Sio::start().await;
    let c = sio.connect("c", &a.base(), WS()).await;
    assert_eq!(
        c.call("create_room", json!({"room_id": "early"})).await["ok"],
        json!(true)
    );
    assert_eq!(get(&a.base(), "/rooms").await.1["count"], json!(1));
    assert!(started.elapsed().as_secs() < 3, "requests waited on redis");

    // Redis appears on that port: the instance connects and shares what it has.
    let mut redis = RedisServer::start().await;
    redis.kill().await;
    redis.port = port;
    redis.restart().await;
    wait_connected(&a.base(), true).await;
    let b = instance(&redis).await;
    eventually("B to see A's position", || async {
        let (_, p) = get(&b.base(), "/api/scroll-position").await;
        (p["timestamp"] == stored["timestamp"]).then_some(())
    })
    .await;
    eventually("B to see A's room", || async {
        (get(&b.base(), "/room/early").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_frozen_redis_never_holds_requests_for_long() {
    let redis = RedisServer::start().await;
    let a = instance(&redis).await;
    let sio = Sio::start().await;
    let host = sio.connect("host", &a.base(), WS()).await;
    host.call("create_room", json!({"room_id": "ice"})).await;
    let member = sio.connect("member", &a.base(), WS()).await;
    member.call("join_room", json!({"room_id": "ice"})).await;

    redis.freeze(true);
    // Requests made while Redis hangs are answered after at most one Redis timeout, and
    // the instance soon stops asking Redis at all.
    let started = std::time::Instant::now();
    put(
        &a.base(),
        "/api/playback-position",
        json!({"lastPlayedIndex": 1}),
    )
    .await;
    host.emit("seek", json!({"room_id": "ice", "current_time": 9}))
        .await;
    assert_eq!(
        member.next("seek").await["current_time"].as_f64(),
        Some(9.0)
    );
    assert!(
        started.elapsed().as_secs() < 3,
        "waited {:?}",
        started.elapsed()
    );
    wait_connected(&a.base(), false).await;
    // Once Redis is known to be down, nothing asks it: no request waits for its deadline
    // (800 ms), so each one finishes well before it, however busy the machine is.
    for i in 0..5 {
        let quick = std::time::Instant::now();
        put(
            &a.base(),
            "/api/playback-position",
            json!({"lastPlayedIndex": 10 + i}),
        )
        .await;
        host.emit("seek", json!({"room_id": "ice", "current_time": i}))
            .await;
        assert_eq!(
            member.next("seek").await["current_time"].as_f64(),
            Some(i as f64)
        );
        assert!(
            quick.elapsed().as_millis() < 700,
            "a degraded request took {:?}",
            quick.elapsed()
        );
    }
    assert_eq!(get(&a.base(), "/room/ice").await.1["user_count"], json!(2));

    redis.freeze(false);
    wait_connected(&a.base(), true).await;
    assert_eq!(
        get(&a.base(), "/api/playback-position").await.1["lastPlayedIndex"],
        json!(14)
    );
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is required for the TLS test");
    assert!(status.success(), "openssl {args:?} failed");
}

#[tokio::test]
async fn redis_over_tls_with_a_password() {
    // A private CA and a server certificate for 127.0.0.1.
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=playsync test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );

    let port = free_port();
    let _redis = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args([
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
        .args([
            "--requirepass",
            "s3cret",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server");

    // The CA is trusted through the system trust store's SSL_CERT_FILE override.
    let ca = dir.join("ca.pem").display().to_string();
    let data = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = |url: String, d: &tempfile::TempDir| {
        vec![
            ("REDIS_URL", url),
            ("SSL_CERT_FILE", ca.clone()),
            ("TTS_DATA_DIR", d.path().display().to_string()),
        ]
    };
    let good = format!("rediss://:s3cret@127.0.0.1:{port}");
    let a = Server::start(&env(good.clone(), &data.0)).await;
    let b = Server::start(&env(good, &data.1)).await;
    wait_connected(&a.base(), true).await;
    wait_connected(&b.base(), true).await;
    let answer = put(&a.base(), "/api/scroll-position", json!({"scrollTop": 404})).await;
    let (_, on_b) = get(&b.base(), "/api/scroll-position").await;
    assert_eq!(on_b["timestamp"], answer["timestamp"]);

    // A wrong password never connects, and the instance serves on its own.
    let data3 = tempfile::tempdir().unwrap();
    let wrong = Server::start(&env(format!("rediss://:wrong@127.0.0.1:{port}"), &data3)).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    wait_connected(&wrong.base(), false).await;
    put(
        &wrong.base(),
        "/api/scroll-position",
        json!({"scrollTop": 1}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_room_changes_nothing_across_instances() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    crate::rooms::racing_creates_leave_the_loser_in_its_room([a.base(), b.base()]).await;
}

#[tokio::test]
async fn the_timeline_and_rate_are_shared_state() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let sio = Sio::start().await;
    let host = sio.connect("host", &a.base(), WS()).await;
    host.call(
        "create_room",
        json!({"room_id": "tl", "track": {"url": "a.wav"}}),
    )
    .await;
    let member = sio.connect("member", &b.base(), WS()).await;
    member.call("join_room", json!({"room_id": "tl"})).await;

    let ack = host
        .call("set_rate", json!({"room_id": "tl", "playback_rate": 0.75}))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    assert_eq!(member.next("set_rate").await["playback_rate"], json!(0.75));
    let ack = host
        .call("seek", json!({"room_id": "tl", "current_time": 30}))
        .await;
    let seek = member.next("seek").await;
    assert_eq!(
        seek["start_at"], ack["start_at"],
        "one instant on both instances"
    );
    assert!(ack["start_at"].as_u64() > ack["server_time"].as_u64());
    assert_eq!(seek["playback_rate"], json!(0.75));
    let state = member
        .call("get_room_state", json!({"room_id": "tl"}))
        .await;
    assert_eq!(state["playback_rate"], json!(0.75));
    let (_, info) = get(&a.base(), "/room/tl").await;
    assert_eq!(info["playback_rate"], json!(0.75));
}
