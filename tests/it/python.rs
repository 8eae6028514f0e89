//! The python-socketio client (the seed's other client stack), on both transports.

use std::path::PathBuf;

use crate::support::app::spawn_app;

#[tokio::test]
async fn python_socketio_clients_work_on_both_transports() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/rooms_client.py");
    // scripts/test points this at a virtualenv holding tests/py/requirements.txt.
    let python = std::env::var("PLAYSYNC_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = std::process::Command::new(&python)
        .args(["-c", "import socketio, websocket"])
        .status()
        .expect("python3 is required (the README's test command installs the rest)");
    assert!(
        probe.success(),
        "python-socketio is missing: pip install -r tests/py/requirements.txt (scripts/test does)"
    );
    let app = spawn_app(&[]).await;
    for transport in ["websocket", "polling"] {
        let out = tokio::process::Command::new(&python)
            .arg(&script)
            .arg(app.base())
            .arg(transport)
            .output()
            .await
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("ok"),
            "{transport}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
