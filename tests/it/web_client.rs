//! The web client (web/, served at /app/): its library's unit tests under Node, its Socket.IO
//! client against the real server, and its pages in Debian's chromium. The scripts live in
//! tests/browser; each bounds itself, and each run here has a backstop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::app::spawn_app;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Runs `node args...` with a backstop, and fails with its output unless it succeeds.
async fn node(
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    backstop: Duration,
    what: &str,
) -> String {
    let mut command = tokio::process::Command::new("node");
    command.args(args).kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = tokio::time::timeout(backstop, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} ran over {} s", backstop.as_secs()))
        .expect("cannot start node: install Node.js (the README's test command needs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn client_library_unit_tests() {
    let script = browser_dir().join("playsync.unit.test.mjs");
    node(
        &["--test".as_ref(), script.as_os_str()],
        &[],
        Duration::from_secs(60),
        "tests/browser/playsync.unit.test.mjs",
    )
    .await;
}

#[tokio::test]
async fn client_socket_against_the_server() {
    // Pings every 200 ms, 300 ms to answer: the heartbeat and the client's watchdog in ~1 s.
    let app = spawn_app(&["--ping-interval-ms", "200", "--ping-timeout-ms", "300"]).await;
    let script = browser_dir().join("playsync-socket.test.mjs");
    node(
        &[
            "--experimental-websocket".as_ref(),
            "--test".as_ref(),
            script.as_os_str(),
        ],
        &[("PLAYSYNC_BASE", &app.base())],
        Duration::from_secs(90),
        "tests/browser/playsync-socket.test.mjs",
    )
    .await;
}

#[tokio::test]
async fn pages_in_chromium() {
    let dir = browser_dir();
    let chromium =
        std::env::var("PLAYSYNC_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install -y chromium (.ci/run does)"
    );
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .exists(),
        "tests/browser/node_modules/playwright-core is missing: npm ci --prefix tests/browser (scripts/test does)"
    );
    let app = spawn_app(&[]).await;
    let script = dir.join("web-pages.test.mjs");
    let base = app.base();
    let stdout = node(
        &[script.as_os_str(), base.as_ref()],
        &[("PLAYSYNC_CHROMIUM", &chromium)],
        Duration::from_secs(120),
        "tests/browser/web-pages.test.mjs",
    )
    .await;
    assert!(stdout.lines().any(|l| l == "ok"), "{stdout}");
}
