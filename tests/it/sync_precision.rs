//! Two listeners hear the same moment: the browser precision test
//! (tests/browser/sync-precision.test.mjs) runs playsync's own web client (/app/) in Debian's
//! chromium against `spawn_app()`: a host page and two listeners, each behind its own
//! order-preserving TCP delay proxy (20 and 80 ms one way, ±5 ms) with its clock shifted
//! (+2.5 s, −1.5 s), for 60 s of play, seeks, a track change, pause and play. It samples both
//! `<audio>` elements and reports the pairwise skew (steady state, after each scheduled start,
//! the late joiner) and the corrective seeks per minute as one JSON line and a summary, also
//! written to target/sync-precision.json. Assertions are sane bounds only (both listeners
//! play and follow the host; skew under 250 ms): the figures are reported, not asserted.
//!
//! `cargo test --test it sync_precision -- --nocapture` shows the figures; for figures worth
//! publishing, run it alone on a quiet machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::app::spawn_app;

#[tokio::test]
async fn two_listeners_hear_the_same_moment() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/browser");
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
    let out = root.join("target/sync-precision.json");
    let app = spawn_app(&[]).await;
    let run = tokio::process::Command::new("node")
        .arg(dir.join("sync-precision.test.mjs"))
        .arg(app.base())
        .arg("--out")
        .arg(&out)
        .env("PLAYSYNC_CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    // The script bounds itself at 150 s (about 70 s normally); this is the backstop.
    let result = tokio::time::timeout(Duration::from_secs(200), run)
        .await
        .expect("the precision test (tests/browser/sync-precision.test.mjs) ran over 200 s")
        .expect("cannot start node: install Node.js (the README's test command needs it)");
    let stdout = String::from_utf8_lossy(&result.stdout);
    println!("{stdout}");
    assert!(
        result.status.success() && stdout.lines().any(|l| l == "ok"),
        "precision test failed ({}):\n{stdout}\n{}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&out).expect("the precision test wrote no report"),
    )
    .expect("the report is not JSON");
    for figure in ["steady", "first_second", "one_to_three_s", "late_joiner_3s"] {
        assert!(
            report["skew_ms"][figure]["n"].as_u64().unwrap_or(0) > 0,
            "no samples for {figure}: {report}"
        );
    }
}
