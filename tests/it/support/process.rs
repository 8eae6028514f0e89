//! The real `playsync` binary as a child process, for what only a process can show: exit
//! codes, signals, SIGKILL, several instances.

use std::net::TcpListener as StdListener;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{PATIENCE, eventually};

/// A free loopback port (bound and released; the OS does not hand it out again at once).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: std::path::PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Server {
    /// Starts `playsync` on a free port with `envs` and waits until it answers HTTP.
    pub async fn start(envs: &[(&str, String)]) -> Server {
        let port = free_port();
        let server = Self::spawn(port, envs);
        server.wait_ready().await;
        server
    }

    /// Starts `playsync` on `port` without waiting.
    pub fn spawn(port: u16, envs: &[(&str, String)]) -> Server {
        let log_dir = tempfile::tempdir().expect("tempdir");
        let log = log_dir.path().join("server.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_playsync"));
        cmd.env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("RUST_LOG", "info,playsync=debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("cannot start playsync");
        Server {
            child,
            port,
            log,
            _log_dir: log_dir,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn wait_ready(&self) {
        let url = format!("{}/", self.base());
        let http = reqwest::Client::new();
        eventually("the server to answer", || {
            let (http, url) = (http.clone(), url.clone());
            async move { http.get(&url).send().await.ok().map(|_| ()) }
        })
        .await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `libc`'s SIGTERM number) through the `kill` command.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; fails after [`PATIENCE`].
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("playsync did not exit")
            .expect("wait")
    }

    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}
