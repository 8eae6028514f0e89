//! The real Node clients (socket.io-client 4.x and 2.x, from the root package's tests/js)
//! against the engine, with default transports, websocket-only and polling-only.

mod support;

use std::time::Duration;

use socketio::DisconnectReason;
use support::*;

#[tokio::test]
async fn socket_io_client_4_and_2_on_every_transport() {
    let s = serve(socketio::Config::default()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients.mjs");
    let run = tokio::process::Command::new("node")
        .arg(script)
        .arg(format!("http://{}", s.addr))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the Node clients finish")
        .expect("node runs (npm ci --prefix tests/js installs the clients)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.ends_with("ok (websocket)") || l.ends_with("ok (polling)"))
            .count(),
        6,
        "{stdout}"
    );
    // Each client's socket.disconnect() is an explicit leave.
    s.log
        .wait_for("six client disconnects", |seen| {
            let leaves = seen
                .iter()
                .filter(|x| {
                    matches!(
                        x,
                        Seen::Disconnect {
                            reason: DisconnectReason::ClientDisconnect,
                            ..
                        }
                    )
                })
                .count();
            (leaves == 6).then_some(())
        })
        .await;
}
