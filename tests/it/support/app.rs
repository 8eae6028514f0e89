//! `spawn_app()`: a playsync server in this process on a free loopback port, with its own
//! data directory, stopped when the [`TestApp`] is dropped.

use std::net::SocketAddr;

use playsync::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    data_dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The Socket.IO server URL for clients.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .get(self.url(path))
            .send()
            .await
            .expect("GET failed");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("response is not JSON"))
    }

    /// A GET sent with an `Origin` header, as a browser on another site sends it.
    pub async fn get_from(&self, origin: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header("Origin", origin)
            .send()
            .await
            .expect("GET failed")
    }

    /// The CORS preflight a browser sends before `method` on `path` from `origin`.
    pub async fn preflight(&self, origin: &str, path: &str, method: &str) -> reqwest::Response {
        self.http
            .request(reqwest::Method::OPTIONS, self.url(path))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method)
            .header("Access-Control-Request-Headers", "content-type")
            .send()
            .await
            .expect("OPTIONS failed")
    }

    pub fn data_path(&self) -> &std::path::Path {
        self.data_dir.as_ref().expect("data dir").path()
    }

    /// Stops the server gracefully, waits for it, and hands back its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task panicked")
                .expect("server failed");
        }
        self.data_dir.take().expect("data dir")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a server with default settings plus `args` (command-line style).
pub async fn spawn_app(args: &[&str]) -> TestApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    spawn_app_in(data_dir, args).await
}

/// Server logs go to the test output when RUST_LOG is set (e.g. RUST_LOG=playsync=debug).
fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}

/// Starts a server on an existing data directory.
pub async fn spawn_app_in(data_dir: tempfile::TempDir, args: &[&str]) -> TestApp {
    init_tracing();
    let dir = data_dir.path().to_str().expect("utf-8 path").to_owned();
    let mut all = vec!["--data-dir", dir.as_str()];
    all.extend_from_slice(args);
    let config = Config::from_args(all).expect("bad test config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(playsync::server::run(config, vec![listener], async move {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        http: reqwest::Client::new(),
        data_dir: Some(data_dir),
        stop: Some(stop),
        task: Some(task),
    }
}
