//! Shared test harness: [`app::spawn_app`] starts a server on a free port; [`sio::Sio`]
//! drives real Socket.IO clients.

#![allow(dead_code)]

pub mod app;
pub mod process;
pub mod redis;
pub mod sentinel;
pub mod sio;
pub mod sse;

use std::time::Duration;

/// How long a test waits for something that should happen "now" before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Fails the test with `what` if the external tool `path` is missing: CI must never skip
/// a test because a dependency is absent.
pub fn require(path: &std::path::Path, what: &str) {
    assert!(
        path.exists(),
        "{what} is missing at {}: run the README's test command (scripts/test), which installs it",
        path.display()
    );
}

/// Polls `check` until it returns `Some`, failing after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(PATIENCE, what, check).await
}

/// Polls `check` until it returns `Some`, failing after `limit`.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GETs `base` + `path` and returns the status and the JSON body.
pub async fn get_json(base: &str, path: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::get(format!("{base}{path}")).await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("response is not JSON"))
}
