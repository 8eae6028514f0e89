//! Seed 2 over real HTTP and a real SSE parser: every endpoint and header, initial state,
//! channel separation, keep-alive, Last-Event-ID, bad input, concurrency, a stuck client,
//! persistence across restarts and across SIGKILL, and the seed's own data directory.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::app::{TestApp, spawn_app, spawn_app_in};
use crate::support::process::Server;
use crate::support::sse::SseClient;
use crate::support::{PATIENCE, eventually};

async fn put(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let resp = app
        .http
        .put(app.url(path))
        .json(&body)
        .send()
        .await
        .expect("PUT failed");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("PUT answer is not JSON"))
}

async fn put_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = app.http.put(app.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let resp = req.send().await.expect("PUT failed");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("answer is not JSON"))
}

#[tokio::test]
async fn nothing_stored_answers_the_seed_defaults() {
    let app = spawn_app(&[]).await;
    let resp = app
        .http
        .get(app.url("/api/playback-position"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"lastPlayedIndex": -1, "notePath": "", "noteTitle": "", "timestamp": 0, "deviceId": ""})
    );
    assert_eq!(
        app.get_json("/api/scroll-position").await.1,
        json!({"scrollTop": 0, "notePath": "", "timestamp": 0, "deviceId": ""})
    );
}

#[tokio::test]
async fn a_put_is_stored_broadcast_and_answered_like_the_seed() {
    let app = spawn_app(&[]).await;
    let mut stream = SseClient::connect(&app.url("/api/events/playback"), None).await;
    eventually("the stream to register", || async {
        (app.get_json("/health").await.1["sse_clients"] == json!(1)).then_some(())
    })
    .await;
    let (status, answer) = put(
        &app,
        "/api/playback-position",
        json!({"lastPlayedIndex": 42, "notePath": "test.md", "noteTitle": "Test Note", "deviceId": "desktop-chrome"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["success"], json!(true));
    assert_eq!(answer["broadcastCount"], json!(1));
    let ts = answer["timestamp"].as_u64().unwrap();
    let (event, data) = stream.next_json().await;
    assert_eq!(event.event, "playback");
    assert_eq!(event.id, ts.to_string());
    assert_eq!(
        data,
        json!({"lastPlayedIndex": 42, "notePath": "test.md", "noteTitle": "Test Note", "timestamp": ts, "deviceId": "desktop-chrome"})
    );
    assert_eq!(app.get_json("/api/playback-position").await.1, data);

    // Scroll: a number stored as an integer; missing strings take the seed's defaults.
    let mut scroll = SseClient::connect(&app.url("/api/events/scroll"), None).await;
    let (status, answer) = put(&app, "/api/scroll-position", json!({"scrollTop": 100.75})).await;
    assert_eq!(status, 200);
    let (event, data) = scroll.next_json().await;
    assert_eq!(event.event, "scroll");
    assert_eq!(
        data,
        json!({"scrollTop": 100, "notePath": "", "timestamp": answer["timestamp"], "deviceId": "unknown"})
    );
}

#[tokio::test]
async fn sse_responses_carry_the_seed_headers() {
    let app = spawn_app(&[]).await;
    for path in ["/api/events/playback", "/api/events/scroll"] {
        let resp = app.get_from("https://reader.example", path).await;
        let h = resp.headers();
        assert_eq!(h["content-type"], "text/event-stream");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["x-accel-buffering"], "no");
        assert_eq!(h["connection"], "keep-alive");
        assert_eq!(h["access-control-allow-origin"], "*");
    }
    // REST answers are CORS-open too.
    let resp = app
        .get_from("https://reader.example", "/api/scroll-position")
        .await;
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let preflight = app
        .preflight("https://reader.example", "/api/playback-position", "PUT")
        .await;
    assert!(preflight.status().is_success());
    let methods = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("PUT"), "{methods}");
}

#[tokio::test]
async fn a_new_stream_gets_the_current_state_first_and_channels_stay_apart() {
    let app = spawn_app(&[]).await;
    put(
        &app,
        "/api/playback-position",
        json!({"lastPlayedIndex": 1}),
    )
    .await;
    put(&app, "/api/scroll-position", json!({"scrollTop": 5})).await;
    let mut playback = SseClient::connect(&app.url("/api/events/playback"), None).await;
    let mut scroll = SseClient::connect(&app.url("/api/events/scroll"), None).await;
    assert_eq!(playback.next_json().await.1["lastPlayedIndex"], json!(1));
    assert_eq!(scroll.next_json().await.1["scrollTop"], json!(5));

    // A scroll update does not reach playback streams, and the other way round: each
    // stream's next event is the later update of its own kind.
    put(&app, "/api/scroll-position", json!({"scrollTop": 6})).await;
    put(
        &app,
        "/api/playback-position",
        json!({"lastPlayedIndex": 2}),
    )
    .await;
    put(&app, "/api/scroll-position", json!({"scrollTop": 7})).await;
    let (e, data) = playback.next_json().await;
    assert_eq!(
        (e.event.as_str(), &data["lastPlayedIndex"]),
        ("playback", &json!(2))
    );
    let (e, data) = scroll.next_json().await;
    assert_eq!(
        (e.event.as_str(), &data["scrollTop"]),
        ("scroll", &json!(6))
    );
    assert_eq!(scroll.next_json().await.1["scrollTop"], json!(7));
}

#[tokio::test]
async fn silence_is_broken_by_keep_alive_comments() {
    let app = spawn_app(&["--sse-keepalive-secs", "1"]).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /api/events/scroll HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !String::from_utf8_lossy(&seen).contains("\n: keep-alive\n") {
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("no keep-alive in time")
            .unwrap();
        assert!(n > 0, "stream closed");
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn last_event_id_skips_what_the_client_already_has() {
    let app = spawn_app(&[]).await;
    let (_, first) = put(
        &app,
        "/api/playback-position",
        json!({"lastPlayedIndex": 10}),
    )
    .await;
    let id = first["timestamp"].as_u64().unwrap().to_string();

    // Up to date: no replay; the first event is the next update.
    let mut current = SseClient::connect(&app.url("/api/events/playback"), Some(&id)).await;
    // Behind: the current state at once.
    let mut behind = SseClient::connect(&app.url("/api/events/playback"), Some("1")).await;
    assert_eq!(behind.next_json().await.1["lastPlayedIndex"], json!(10));
    // Garbage is ignored: the current state.
    let mut garbage = SseClient::connect(&app.url("/api/events/playback"), Some("nope")).await;
    assert_eq!(garbage.next_json().await.1["lastPlayedIndex"], json!(10));

    put(
        &app,
        "/api/playback-position",
        json!({"lastPlayedIndex": 11}),
    )
    .await;
    let (event, data) = current.next_json().await;
    assert_eq!(data["lastPlayedIndex"], json!(11));
    assert!(event.id.parse::<u64>().unwrap() > id.parse::<u64>().unwrap());
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let app = spawn_app(&[]).await;
    let (_, ok) = put(
        &app,
        "/api/playback-position",
        json!({"lastPlayedIndex": 7, "notePath": "a.md"}),
    )
    .await;
    let (_, ok_scroll) = put(&app, "/api/scroll-position", json!({"scrollTop": 70})).await;
    let before = app.get_json("/api/playback-position").await.1;
    let before_scroll = app.get_json("/api/scroll-position").await.1;
    let mut stream = SseClient::connect(&app.url("/api/events/playback"), None).await;
    assert_eq!(stream.next_json().await.1, before);

    let long = "x".repeat(4097);
    let playback_cases: Vec<(Option<&str>, Vec<u8>)> = vec![
        (Some("application/json"), b"{not json".to_vec()),
        (Some("application/json"), b"".to_vec()),
        (Some("application/json"), b"[1,2]".to_vec()),
        (Some("application/json"), b"\"text\"".to_vec()),
        (Some("application/json"), b"{}".to_vec()),
        (
            Some("application/json"),
            br#"{"lastPlayedIndex": "5"}"#.to_vec(),
        ),
        (
            Some("application/json"),
            br#"{"lastPlayedIndex": 5.5}"#.to_vec(),
        ),
        (
            Some("application/json"),
            br#"{"lastPlayedIndex": true}"#.to_vec(),
        ),
        (
            Some("application/json"),
            br#"{"lastPlayedIndex": 5, "notePath": 3}"#.to_vec(),
        ),
        (
            Some("application/json"),
            br#"{"lastPlayedIndex": 5, "deviceId": {"a": 1}}"#.to_vec(),
        ),
        (
            Some("application/json"),
            json!({"lastPlayedIndex": 5, "noteTitle": long})
                .to_string()
                .into_bytes(),
        ),
        (
            Some("application/x-www-form-urlencoded"),
            b"lastPlayedIndex=5".to_vec(),
        ),
        (Some("multipart/form-data; boundary=x"), b"--x--".to_vec()),
    ];
    for (ct, body) in playback_cases {
        let (status, answer) = put_raw(&app, "/api/playback-position", ct, body.clone()).await;
        assert_eq!(status, 400, "{ct:?} {}", String::from_utf8_lossy(&body));
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }
    for body in [
        json!({"scrollTop": "100"}),
        json!({"scrollTop": null}),
        json!({"scrollTop": [1]}),
    ] {
        let (status, answer) = put(&app, "/api/scroll-position", body).await;
        assert_eq!(status, 400);
        assert!(answer["error"].is_string());
    }
    // Too large: 413.
    let huge = json!({"lastPlayedIndex": 1, "pad": "x".repeat(70_000)})
        .to_string()
        .into_bytes();
    let (status, answer) = put_raw(
        &app,
        "/api/playback-position",
        Some("application/json"),
        huge,
    )
    .await;
    assert_eq!(status, 413);
    assert!(answer["error"].is_string());

    // Nothing changed, and the stream saw nothing: its next event is the next valid update.
    assert_eq!(app.get_json("/api/playback-position").await.1, before);
    assert_eq!(app.get_json("/api/scroll-position").await.1, before_scroll);
    let (_, next) = put(
        &app,
        "/api/playback-position",
        json!({"lastPlayedIndex": 8}),
    )
    .await;
    let (event, data) = stream.next_json().await;
    assert_eq!(data["lastPlayedIndex"], json!(8));
    assert_eq!(event.id, next["timestamp"].to_string());
    assert!(next["timestamp"].as_u64() > ok["timestamp"].as_u64());
    assert!(ok_scroll["success"] == json!(true));
}

#[tokio::test]
async fn json_without_a_content_type_or_as_text_plain_is_accepted() {
    let app = spawn_app(&[]).await;
    let (status, _) = put_raw(
        &app,
        "/api/scroll-position",
        None,
        br#"{"scrollTop": 3}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = put_raw(
        &app,
        "/api/scroll-position",
        Some("text/plain;charset=UTF-8"),
        br#"{"scrollTop": 4}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = put_raw(
        &app,
        "/api/scroll-position",
        Some("application/json; charset=utf-8"),
        br#"{"scrollTop": 5}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.get_json("/api/scroll-position").await.1["scrollTop"],
        json!(5)
    );
}

#[tokio::test]
async fn concurrent_puts_are_serialized_in_one_order() {
    // 200 PUTs as fast as possible from one address: no rate limit here.
    let app = spawn_app(&["--put-rate", "0"]).await;
    let mut stream = SseClient::connect(&app.url("/api/events/playback"), None).await;
    let mut tasks = Vec::new();
    for t in 0..8i64 {
        let (http, url) = (app.http.clone(), app.url("/api/playback-position"));
        tasks.push(tokio::spawn(async move {
            let mut stamps = Vec::new();
            for i in 0..25i64 {
                let resp = http
                    .put(&url)
                    .json(&json!({"lastPlayedIndex": t * 1000 + i, "deviceId": format!("d{t}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                let answer: Value = resp.json().await.unwrap();
                stamps.push((answer["timestamp"].as_u64().unwrap(), t * 1000 + i));
            }
            stamps
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    acked.sort();
    assert!(
        acked.windows(2).all(|w| w[0].0 < w[1].0),
        "versions are unique"
    );
    let newest = *acked.last().unwrap();

    // The stream sees strictly increasing versions, each one a record some PUT stored, and
    // ends on the newest.
    let mut last = 0u64;
    loop {
        let (event, data) = stream.next_json().await;
        let id: u64 = event.id.parse().unwrap();
        assert!(id > last, "ids went {last} -> {id}");
        last = id;
        assert!(acked.contains(&(id, data["lastPlayedIndex"].as_i64().unwrap())));
        if id == newest.0 {
            break;
        }
    }
    let stored = app.get_json("/api/playback-position").await.1;
    assert_eq!(stored["timestamp"], json!(newest.0));
    assert_eq!(stored["lastPlayedIndex"], json!(newest.1));
    let on_disk: Value = serde_json::from_slice(
        &std::fs::read(app.data_path().join("playback-position.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk, stored);
}

#[tokio::test]
async fn a_stuck_client_neither_delays_others_nor_queues_without_bound() {
    // 1500 PUTs as fast as possible from one address: no rate limit here.
    let app = spawn_app(&["--put-rate", "0"]).await;
    // A client that sends its request and then stops reading, with a tiny receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(app.addr).await.unwrap();
    stuck
        .write_all(b"GET /api/events/playback HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut live = SseClient::connect(&app.url("/api/events/playback"), None).await;
    eventually("both streams to register", || async {
        (app.get_json("/health").await.1["sse_clients"] == json!(2)).then_some(())
    })
    .await;

    // ~8 KiB per event, 1500 events: 12 MB, far beyond what socket buffers hold.
    let pad = "p".repeat(4000);
    let mut total_bytes = 0usize;
    let mut last = Value::Null;
    for i in 0..1500 {
        let (status, answer) = put(
            &app,
            "/api/playback-position",
            json!({"lastPlayedIndex": i, "notePath": pad, "noteTitle": pad}),
        )
        .await;
        assert_eq!(status, 200);
        total_bytes += 8100;
        last = answer;
    }
    // The live client is current.
    let newest = last["timestamp"].as_u64().unwrap().to_string();
    loop {
        let (event, _) = live.next_json().await;
        if event.id == newest {
            break;
        }
    }
    // The stuck client now reads: it gets far less than everything (superseded positions
    // were skipped, not queued) and ends on the newest state.
    let mut received = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let needle = format!("id: {newest}\n");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !String::from_utf8_lossy(&received[received.len().saturating_sub(20_000)..])
        .contains(&needle)
    {
        let n = tokio::time::timeout_at(deadline, stuck.read(&mut buf))
            .await
            .expect("the stuck client never got the newest state")
            .unwrap();
        assert!(n > 0);
        received.extend_from_slice(&buf[..n]);
    }
    assert!(
        received.len() < total_bytes / 2,
        "the stuck client was sent {} of {} bytes: updates were queued, not coalesced",
        received.len(),
        total_bytes
    );
}

#[tokio::test]
async fn positions_survive_a_restart() {
    let app = spawn_app(&[]).await;
    let (_, p) = put(
        &app,
        "/api/playback-position",
        json!({"lastPlayedIndex": 3, "notePath": "n.md", "noteTitle": "N", "deviceId": "phone"}),
    )
    .await;
    put(
        &app,
        "/api/scroll-position",
        json!({"scrollTop": 640, "notePath": "n.md"}),
    )
    .await;
    let playback = app.get_json("/api/playback-position").await.1;
    let scroll = app.get_json("/api/scroll-position").await.1;
    let data_dir = app.stop().await;
    let app = spawn_app_in(data_dir, &[]).await;
    assert_eq!(app.get_json("/api/playback-position").await.1, playback);
    assert_eq!(app.get_json("/api/scroll-position").await.1, scroll);
    let mut stream = SseClient::connect(&app.url("/api/events/playback"), None).await;
    assert_eq!(stream.next_json().await.1, playback);
    // Versions keep increasing after the restart.
    let (_, next) = put(
        &app,
        "/api/playback-position",
        json!({"lastPlayedIndex": 4}),
    )
    .await;
    assert!(next["timestamp"].as_u64() > p["timestamp"].as_u64());
}

#[tokio::test]
async fn the_seed_servers_data_directory_is_read_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // As the seed's Python json.dump wrote them.
    std::fs::write(
        dir.path().join("playback-position.json"),
        r#"{"lastPlayedIndex": 42, "notePath": "test.md", "noteTitle": "Test", "timestamp": 1738234567890, "deviceId": "desktop-chrome"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("scroll-position.json"),
        r#"{"scrollTop": 100, "notePath": "test.md", "timestamp": 1738234567891, "deviceId": "ipad"}"#,
    )
    .unwrap();
    let app = spawn_app_in(dir, &[]).await;
    assert_eq!(
        app.get_json("/api/playback-position").await.1,
        json!({"lastPlayedIndex": 42, "notePath": "test.md", "noteTitle": "Test", "timestamp": 1738234567890u64, "deviceId": "desktop-chrome"})
    );
    let mut stream = SseClient::connect(&app.url("/api/events/scroll"), None).await;
    let (event, data) = stream.next_json().await;
    assert_eq!(event.id, "1738234567891");
    assert_eq!(data["deviceId"], json!("ipad"));
}

#[tokio::test]
async fn health_counts_open_streams() {
    let app = spawn_app(&[]).await;
    let (status, h) = app.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(h["status"], json!("healthy"));
    assert_eq!(h["sse_clients"], json!(0));
    assert_eq!(h["redis_enabled"], json!(false));
    assert!(h["timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    let a = SseClient::connect(&app.url("/api/events/playback"), None).await;
    let b = SseClient::connect(&app.url("/api/events/scroll"), None).await;
    eventually("two streams", || async {
        (app.get_json("/health").await.1["sse_clients"] == json!(2)).then_some(())
    })
    .await;
    drop(a);
    drop(b);
    eventually("streams to close", || async {
        (app.get_json("/health").await.1["sse_clients"] == json!(0)).then_some(())
    })
    .await;
}

/// Kills the server with SIGKILL in the middle of a stream of PUTs, restarts it on the same
/// directory, and checks the stored record parses and is the last acknowledged one or later.
#[tokio::test]
async fn sigkill_mid_stream_keeps_the_last_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    // Thousands of PUTs as fast as possible from one address: no rate limit here.
    let envs = [
        ("TTS_DATA_DIR", dir.path().display().to_string()),
        ("PUT_RATE", "0".to_owned()),
    ];
    let mut server = Server::start(&envs).await;
    let url = format!("{}/api/playback-position", server.base());
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u64, i64)>::new()));
    let mut writers = Vec::new();
    for w in 0..4i64 {
        let (url, acked) = (url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..100_000i64 {
                let value = w * 1_000_000 + i;
                let Ok(resp) = http
                    .put(&url)
                    .json(&json!({"lastPlayedIndex": value, "notePath": "x".repeat(1000)}))
                    .send()
                    .await
                else {
                    return;
                };
                let Ok(answer) = resp.json::<Value>().await else {
                    return;
                };
                if let Some(ts) = answer["timestamp"].as_u64() {
                    acked.lock().unwrap().push((ts, value));
                }
            }
        }));
    }
    eventually("some acknowledged PUTs", || async {
        (acked.lock().unwrap().len() >= 300).then_some(())
    })
    .await;
    server.signal("KILL");
    server.wait_exit().await;
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    let newest_acked = acked.iter().max().copied().unwrap();

    // The file on disk parses by itself.
    let raw = std::fs::read(dir.path().join("playback-position.json")).unwrap();
    let on_disk: Value = serde_json::from_slice(&raw).expect("torn record");
    assert!(on_disk["timestamp"].as_u64().unwrap() >= newest_acked.0);

    let server = Server::start(&envs).await;
    let stored: Value = reqwest::get(format!("{}/api/playback-position", server.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ts = stored["timestamp"].as_u64().unwrap();
    assert!(
        ts >= newest_acked.0,
        "lost an acknowledged PUT: {ts} < {newest_acked:?}"
    );
    if ts == newest_acked.0 {
        assert_eq!(stored["lastPlayedIndex"], json!(newest_acked.1));
    }
    assert_eq!(stored, on_disk);
    // No temporary file is left behind after the restart.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

/// An id from the future (another server's, or a reset data directory) must never silence a
/// stream: it is ignored, so the stream gets the current record and every live update.
#[tokio::test]
async fn a_last_event_id_from_the_future_does_not_silence_the_stream() {
    let app = spawn_app(&[]).await;
    put(
        &app,
        "/api/playback-position",
        json!({"lastPlayedIndex": 1}),
    )
    .await;
    for future in ["9999999999999", &u64::MAX.to_string()] {
        let mut stream = SseClient::connect(&app.url("/api/events/playback"), Some(future)).await;
        assert_eq!(stream.next_json().await.1["lastPlayedIndex"], json!(1));
        let (_, answer) = put(
            &app,
            "/api/playback-position",
            json!({"lastPlayedIndex": 2}),
        )
        .await;
        let (event, data) = stream.next_json().await;
        assert_eq!(data["lastPlayedIndex"], json!(2), "Last-Event-ID {future}");
        assert_eq!(event.id, answer["timestamp"].to_string());
        put(
            &app,
            "/api/playback-position",
            json!({"lastPlayedIndex": 1}),
        )
        .await;
    }
}

/// Python clients that compute with floats send `1.0`; the Flask seed accepted it. Finite
/// numbers with no fractional part are integers, stored as such.
#[tokio::test]
async fn integral_floats_are_accepted_as_integers() {
    let app = spawn_app(&[]).await;
    for (body, stored) in [
        (&b"{\"lastPlayedIndex\": 1.0}"[..], json!(1)),
        (b"{\"lastPlayedIndex\": 1e2}", json!(100)),
        (b"{\"lastPlayedIndex\": -0}", json!(0)),
        (b"{\"lastPlayedIndex\": -0.0}", json!(0)),
        (b"{\"lastPlayedIndex\": -3.0}", json!(-3)),
    ] {
        let (status, answer) = put_raw(
            &app,
            "/api/playback-position",
            Some("application/json"),
            body.to_vec(),
        )
        .await;
        assert_eq!(status, 200, "{}: {answer}", String::from_utf8_lossy(body));
        let (_, got) = app.get_json("/api/playback-position").await;
        assert_eq!(
            got["lastPlayedIndex"],
            stored,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    for body in [
        &b"{\"lastPlayedIndex\": 1.5}"[..],
        b"{\"lastPlayedIndex\": 1e300}",
    ] {
        let (status, _) = put_raw(
            &app,
            "/api/playback-position",
            Some("application/json"),
            body.to_vec(),
        )
        .await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
    }
}

/// A lone surrogate escape (valid JSON, what `JSON.stringify` writes for half an emoji) is
/// accepted, replaced by U+FFFD, and the position is stored.
#[tokio::test]
async fn a_lone_surrogate_in_a_put_is_stored_as_a_replacement_character() {
    let app = spawn_app(&[]).await;
    let body = br#"{"lastPlayedIndex": 3, "noteTitle": "Song \ud83d", "notePath": "a\udc00b.md"}"#;
    let (status, answer) = put_raw(
        &app,
        "/api/playback-position",
        Some("application/json"),
        body.to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (_, got) = app.get_json("/api/playback-position").await;
    assert_eq!(got["noteTitle"], json!("Song \u{fffd}"));
    assert_eq!(got["notePath"], json!("a\u{fffd}b.md"));
}
