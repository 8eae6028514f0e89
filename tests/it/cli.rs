//! The binary: its help text, listeners, refusal of a busy port, graceful shutdown.

use serde_json::json;

use crate::support::process::{Server, free_port};
use crate::support::sio::Sio;

#[test]
fn help_documents_every_option_and_its_environment_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_playsync"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--port",
        "[env: PORT=]",
        "--host",
        "[env: HOST=]",
        "--tts-proxy-port",
        "[env: TTS_PROXY_PORT=]",
        "--listen",
        "--cors-origins",
        "[env: CORS_ORIGINS=]",
        "--room-sweep-secs",
        "--max-track-bytes",
        "--max-message-bytes",
        "--ping-interval-ms",
        "[env: PING_INTERVAL_MS=]",
        "--ping-timeout-ms",
        "[env: PING_TIMEOUT_MS=]",
        "--data-dir",
        "[env: TTS_DATA_DIR=]",
        "--sse-keepalive-secs",
        "[env: SSE_KEEPALIVE_SECS=]",
        "--max-body-bytes",
        "--max-string-bytes",
        "--redis-enabled",
        "[env: REDIS_ENABLED=]",
        "--redis-host",
        "[env: REDIS_HOST=]",
        "--redis-port",
        "[env: REDIS_PORT=]",
        "--redis-url",
        "[env: REDIS_URL=]",
        "RUST_LOG",
        "serve",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    // The load generator is its own binary now (playsync-bench).
    assert!(
        !help.to_lowercase().contains("bench"),
        "--help still mentions the load generator:\n{help}"
    );
}

#[tokio::test]
async fn a_busy_port_is_an_error_not_a_silent_move() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::spawn(port, &[("TTS_DATA_DIR", data.path().display().to_string())]);
    let status = server.wait_exit().await;
    assert!(!status.success(), "playsync started on a busy port");
    let log = server.log_text();
    assert!(
        log.contains(&format!("127.0.0.1:{port}")) && log.contains("cannot listen"),
        "unclear error: {log}"
    );
}

#[tokio::test]
async fn tts_proxy_port_serves_the_same_api() {
    let second = free_port();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&[
        ("TTS_PROXY_PORT", second.to_string()),
        ("TTS_DATA_DIR", data.path().display().to_string()),
    ])
    .await;
    let sio = Sio::start().await;
    let a = sio
        .connect("a", &server.base(), json!({"transports": ["websocket"]}))
        .await;
    a.call("create_room", json!({"room_id": "both"})).await;
    // The room made through the main port is visible through the second one.
    let other = format!("http://127.0.0.1:{second}");
    let info: serde_json::Value = reqwest::get(format!("{other}/room/both"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["user_count"], json!(1));
    let b = sio
        .connect("b", &other, json!({"transports": ["websocket"]}))
        .await;
    assert_eq!(
        b.call("join_room", json!({"room_id": "both"})).await["user_count"],
        json!(2)
    );
    // And the positions API on both ports: PUT on one, GET on the other.
    let http = reqwest::Client::new();
    let answer: serde_json::Value = http
        .put(format!("{other}/api/scroll-position"))
        .json(&json!({"scrollTop": 9}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["success"], json!(true));
    let stored: serde_json::Value = reqwest::get(format!("{}/api/scroll-position", server.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["scrollTop"], json!(9));
}

#[tokio::test]
async fn sigterm_and_sigint_shut_down_gracefully() {
    for signal in ["TERM", "INT"] {
        let data = tempfile::tempdir().unwrap();
        let mut server =
            Server::start(&[("TTS_DATA_DIR", data.path().display().to_string())]).await;
        let sio = Sio::start().await;
        let a = sio
            .connect("a", &server.base(), json!({"transports": ["websocket"]}))
            .await;
        a.call("create_room", json!({"room_id": "r"})).await;
        let b = sio
            .connect("b", &server.base(), json!({"transports": ["polling"]}))
            .await;
        b.call("join_room", json!({"room_id": "r"})).await;
        server.signal(signal);
        let status = server.wait_exit().await;
        assert!(status.success(), "exit after SIG{signal}: {status:?}");
        // Clients were told the server went away.
        a.next("$disconnect").await;
        b.next("$disconnect").await;
        let log = server.log_text();
        assert!(log.contains("shutting down"), "{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
}
