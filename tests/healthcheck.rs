//! `playsync healthcheck`, the probe of container health checks, against the real server and
//! against sockets that misbehave: exit code 0 only on a 200, 1 on anything else, never a
//! panic, never a hang past its timeout. (A test binary of its own, so that it is a new file;
//! it can move into tests/it as a module.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test may panic

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn playsync() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_playsync"));
    // Only what a test sets: no PORT, HOST or REDIS_* from the environment running the tests.
    cmd.env_clear().env("RUST_LOG", "warn").stdin(Stdio::null());
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

struct Server {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let port = free_port();
        let data = tempfile::tempdir().unwrap();
        let child = playsync()
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("TTS_DATA_DIR", data.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start playsync");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "playsync did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            port,
            _data: data,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn probe(args: &[&str], envs: &[(&str, String)]) -> Output {
    let mut cmd = playsync();
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run playsync healthcheck");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "healthcheck panicked: {text}");
    out
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn healthy_server_answers_zero_by_default_url_and_by_explicit_url() {
    let server = Server::start();
    let port = server.port.to_string();

    // The default: /health on PORT (HOST unset: 0.0.0.0, probed on loopback).
    let out = probe(&["healthcheck"], &[("PORT", port.clone())]);
    assert_eq!(code(&out), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("healthy"));

    let out = probe(&["--port", &port, "healthcheck"], &[]);
    assert_eq!(code(&out), Some(0), "{out:?}");

    let url = format!("http://127.0.0.1:{port}/health");
    let out = probe(&["healthcheck", "--url", &url], &[]);
    assert_eq!(code(&out), Some(0), "{out:?}");

    // A path alone goes to the main listener; a 404 is unhealthy.
    let out = probe(
        &["healthcheck", "--url", "/no-such-page"],
        &[("PORT", port)],
    );
    assert_eq!(code(&out), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{out:?}"
    );
}

#[test]
fn failures_exit_one_and_say_why() {
    // Nothing listening.
    let closed = free_port();
    let out = probe(
        &[
            "healthcheck",
            "--url",
            &format!("http://127.0.0.1:{closed}/health"),
        ],
        &[],
    );
    assert_eq!(code(&out), Some(1), "{out:?}");
    assert!(!out.stderr.is_empty());

    // Not a URL it can probe.
    for url in ["https://127.0.0.1/health", "not a url", "http://[::1/"] {
        let out = probe(&["healthcheck", "--url", url], &[]);
        assert_eq!(code(&out), Some(1), "{url}: {out:?}");
    }

    // A peer that answers garbage.
    let garbage = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = garbage.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        use std::io::Write;
        if let Ok((mut s, _)) = garbage.accept() {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"SSH-2.0-nope\r\n");
        }
    });
    let out = probe(
        &["healthcheck", "--url", &format!("http://127.0.0.1:{port}/")],
        &[],
    );
    assert_eq!(code(&out), Some(1), "{out:?}");
    peer.join().unwrap();
}

#[test]
fn a_silent_peer_times_out() {
    // Accepts (the kernel's backlog does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let out = probe(
        &[
            "healthcheck",
            "--timeout-secs",
            "1",
            "--url",
            &format!("http://127.0.0.1:{port}/health"),
        ],
        &[],
    );
    let took = started.elapsed();
    assert_eq!(code(&out), Some(1), "{out:?}");
    assert!(
        took < Duration::from_secs(5),
        "the probe took {took:?} with a 1 s timeout"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("timed out"),
        "{out:?}"
    );
    drop(silent);
}

#[test]
fn help_documents_the_subcommand() {
    let out = playsync().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("healthcheck"), "{help}");
    let out = playsync().args(["healthcheck", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in ["--url", "--timeout-secs", "/ready", "exit code 0"] {
        assert!(
            help.contains(needle),
            "healthcheck --help lacks {needle}: {help}"
        );
    }
}
