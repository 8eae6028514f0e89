//! A real `redis-server` on a free loopback port, which a test can kill and restart.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::eventually;
use super::process::free_port;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// More redis-server arguments, e.g. `--replicaof`.
    extra: Vec<String>,
    /// Its `requirepass`, if any.
    password: Option<String>,
}

impl RedisServer {
    /// Starts redis-server on a free port. Fails (never skips) when it is not installed.
    pub async fn start() -> RedisServer {
        Self::start_with(&[], None).await
    }

    /// [`RedisServer::start`] with more redis-server arguments (kept for restarts) and
    /// optionally a password (`requirepass`).
    pub async fn start_with(extra: &[String], password: Option<&str>) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            extra: extra.to_vec(),
            password: password.map(str::to_owned),
        };
        server.restart().await;
        server
    }

    /// Its URL (with the password, if it has one).
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// (Re)starts the server on its port, without persistence, and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis is already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .args(
                self.password
                    .iter()
                    .flat_map(|pw| ["--requirepass".to_owned(), pw.clone()]),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is required (apt-get install redis-server; .ci/run does)");
        self.child = Some(child);
        let url = self.url();
        eventually("redis-server to answer", || {
            let url = url.clone();
            async move {
                let client = redis::Client::open(url).ok()?;
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await;
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is answered, the
    /// hardest failure for a client to notice.
    pub fn freeze(&self, frozen: bool) {
        let pid = self
            .child
            .as_ref()
            .and_then(|c| c.id())
            .expect("redis is running");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// A plain client connection, for acting as another program on the same Redis.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis")
    }
}
