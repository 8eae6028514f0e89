//! What the smoke test needs from the real world: a playsync server in this process on a free
//! loopback port, a real `redis-server` on another, and the `playsync-bench` binary.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// How long the test waits for something that should happen "now" before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `check` until it returns `Some`, failing after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
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

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A playsync server running in this process, stopped when dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    _data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl TestApp {
    /// The base URL, as `playsync-bench --target` takes it.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn get_json(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.base()))
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts playsync with its own data directory plus `args` (command-line style).
pub async fn spawn_app(args: &[&str]) -> TestApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let dir = data_dir.path().to_str().expect("utf-8 path").to_owned();
    let mut all = vec!["--data-dir", dir.as_str()];
    all.extend_from_slice(args);
    let config = playsync::config::Config::from_args(all).expect("bad test config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(playsync::server::run(config, vec![listener], async move {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        _data_dir: data_dir,
        stop: Some(stop),
    }
}

/// A real `redis-server` on a free loopback port, without persistence, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts it and waits until it answers PING. Fails (never skips) when it is missing.
    pub async fn start() -> RedisServer {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is required (apt-get install redis-server; .ci/run does)");
        eventually("redis-server to answer", || async move {
            let mut conn = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            conn.write_all(b"PING\r\n").await.ok()?;
            let mut reply = [0u8; 7];
            conn.read_exact(&mut reply).await.ok()?;
            (&reply == b"+PONG\r\n").then_some(())
        })
        .await;
        RedisServer {
            port,
            _child: child,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// The `bare-broadcaster` peer on a free loopback port, killed when dropped.
pub struct BareBroadcaster {
    pub port: u16,
    child: Child,
}

impl BareBroadcaster {
    /// Starts it and waits until it answers `GET /`.
    pub async fn start() -> BareBroadcaster {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_bare-broadcaster"))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start bare-broadcaster");
        let server = BareBroadcaster { port, child };
        eventually("bare-broadcaster to answer", || async {
            reqwest::get(format!("{}/", server.base())).await.ok()?;
            Some(())
        })
        .await;
        server
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }
}

/// Runs `playsync-bench ARGS` and returns its JSON results (one per stdout line); fails the
/// test when it exits unsuccessfully.
pub async fn bench(args: &[&str]) -> Vec<Value> {
    let run = Command::new(env!("CARGO_BIN_EXE_playsync-bench"))
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("playsync-bench ran longer than 90 s")
        .expect("run playsync-bench");
    assert!(
        out.status.success(),
        "playsync-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON result per line"))
        .collect()
}

/// Every expected message arrived.
pub fn delivered_everything(r: &Value) {
    assert!(r["expected"].as_u64().expect("expected") > 0, "{r}");
    assert_eq!(r["received"], r["expected"], "{r}");
    assert_eq!(r["loss"].as_f64(), Some(0.0), "{r}");
}
