//! A page written for the seed server works unchanged in a real browser: Debian's chromium,
//! driven by playwright-core, loads tests/browser/seed-page.html (the socket.io-client 4.x
//! browser bundle in a <script> tag, `io(SERVER_URL)` with the default transports) from
//! another origin, so long-polling goes through CORS before the upgrade to WebSocket. Two
//! browser users create and join a room, follow pause and seek, and hand the host over.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::app::spawn_app;

#[tokio::test]
async fn seed_page_works_unchanged_in_chromium() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium =
        std::env::var("PLAYSYNC_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install -y chromium (.ci/run does)"
    );
    for dep in ["playwright-core", "socket.io-client"] {
        assert!(
            dir.join("node_modules")
                .join(dep)
                .join("package.json")
                .exists(),
            "tests/browser/node_modules/{dep} is missing: npm ci --prefix tests/browser (scripts/test does)"
        );
    }
    let app = spawn_app(&[]).await;
    let run = tokio::process::Command::new("node")
        .arg(dir.join("seed-page.test.mjs"))
        .arg(app.base())
        .env("PLAYSYNC_CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    // The script bounds itself at 50 s; this is the backstop.
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser test (tests/browser/seed-page.test.mjs) ran over 90 s")
        .expect("cannot start node: install Node.js (the README's test command needs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().any(|l| l == "ok"),
        "browser test failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
