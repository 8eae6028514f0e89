//! A Redis Sentinel deployment on loopback: a master, one replica and three sentinels
//! (quorum 2), each a real process on a free port, tuned to fail over within seconds.
//!
//! The sentinels are `redis-server <conf> --sentinel`: Debian's `redis-sentinel` package
//! only adds a service and a symlink to that same binary, so `redis-server` is all the
//! tests need.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::eventually_within;
use super::process::free_port;
use super::redis::RedisServer;

/// The master's name in the sentinels' configuration.
pub const MASTER_NAME: &str = "playsync-test";
/// How long the sentinels take to call a silent master down.
pub const DOWN_AFTER_MS: u64 = 1000;
/// Bounds a failover attempt (and when the next attempt may start).
pub const FAILOVER_TIMEOUT_MS: u64 = 2000;
/// Longest the set-up may take: replication, then the sentinels discovering the replica
/// and each other (they say hello every 2 s).
const SETUP: Duration = Duration::from_secs(30);

/// Passwords: the master's and replica's (`requirepass`, `masterauth`, the sentinels'
/// `auth-pass`), and the sentinels' own (`requirepass`).
#[derive(Clone)]
pub struct Passwords {
    pub master: String,
    pub sentinel: String,
}

/// One `redis-server --sentinel` process.
pub struct SentinelProcess {
    pub port: u16,
    password: Option<String>,
    _child: Child,
    dir: tempfile::TempDir,
}

impl SentinelProcess {
    async fn start(master_port: u16, passwords: Option<&Passwords>) -> SentinelProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        let log = dir.path().join("sentinel.log");
        let auth = passwords.map_or(String::new(), |p| {
            format!(
                "requirepass {}\nsentinel auth-pass {MASTER_NAME} {}\n",
                p.sentinel, p.master
            )
        });
        std::fs::write(
            &conf,
            auth + &format!(
                "port {port}\n\
                 bind 127.0.0.1\n\
                 dir {dir}\n\
                 logfile {log}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = dir.path().display(),
                log = log.display(),
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is required (apt-get install redis-server; .ci/run does)");
        let sentinel = SentinelProcess {
            port,
            password: passwords.map(|p| p.sentinel.clone()),
            _child: child,
            dir,
        };
        eventually_within(SETUP, "redis-server --sentinel to answer", || {
            sentinel.master_info()
        })
        .await;
        sentinel
    }

    fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url()).ok()?;
        client.get_multiplexed_async_connection().await.ok()
    }

    /// `SENTINEL MASTER <name>`: what this sentinel knows of the master.
    pub async fn master_info(&self) -> Option<HashMap<String, String>> {
        let mut conn = self.connection().await?;
        redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(MASTER_NAME)
            .query_async(&mut conn)
            .await
            .ok()
    }

    /// The port of the server this sentinel names as master now.
    pub async fn master_port(&self) -> Option<u16> {
        let mut conn = self.connection().await?;
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME)
            .query_async(&mut conn)
            .await
            .ok()?;
        addr?.1.parse().ok()
    }

    /// Asks this sentinel to fail over now, as an operator would (the master stays up and
    /// is demoted to a replica).
    pub async fn failover(&self) {
        let mut conn = self.connection().await.expect("connect to the sentinel");
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER_NAME)
            .query_async(&mut conn)
            .await
            .expect("SENTINEL FAILOVER");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }
}

/// The whole deployment. Dropping it kills every process.
pub struct SentinelGroup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<SentinelProcess>,
    passwords: Option<Passwords>,
}

impl SentinelGroup {
    /// Starts the master, the replica and three sentinels, and waits until the replica is in
    /// sync and every sentinel knows the replica and the two other sentinels.
    pub async fn start() -> SentinelGroup {
        Self::start_with(None).await
    }

    /// [`SentinelGroup::start`], every server and sentinel with a password.
    pub async fn start_with(passwords: Option<Passwords>) -> SentinelGroup {
        let master_pw = passwords.as_ref().map(|p| p.master.as_str());
        // The master may become a replica one day: it knows the password too.
        let masterauth: Vec<String> = master_pw
            .iter()
            .flat_map(|pw| ["--masterauth".to_owned(), pw.to_string()])
            .collect();
        let master = RedisServer::start_with(&masterauth, master_pw).await;
        let mut replica_args = vec![
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            master.port.to_string(),
        ];
        replica_args.extend(masterauth.iter().cloned());
        let replica = RedisServer::start_with(&replica_args, master_pw).await;
        eventually_within(SETUP, "the replica to sync with the master", || {
            role(&replica, "slave")
        })
        .await;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(SentinelProcess::start(master.port, passwords.as_ref()).await);
        }
        let group = SentinelGroup {
            master,
            replica,
            sentinels,
            passwords,
        };
        eventually_within(
            SETUP,
            "the sentinels to know the replica and each other",
            || async {
                for s in &group.sentinels {
                    let info = s.master_info().await?;
                    let known = |field: &str| info.get(field)?.parse::<u32>().ok();
                    (known("num-slaves")? >= 1 && known("num-other-sentinels")? >= 2)
                        .then_some(())?;
                }
                Some(())
            },
        )
        .await;
        group
    }

    /// The `--redis-sentinels` and `--redis-sentinel-master` flags for playsync.
    pub fn flags(&self) -> Vec<String> {
        let addrs: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let mut flags = vec![
            "--redis-sentinels".to_owned(),
            addrs.join(","),
            "--redis-sentinel-master".to_owned(),
            MASTER_NAME.to_owned(),
        ];
        if let Some(p) = &self.passwords {
            flags.extend([
                "--redis-password".to_owned(),
                p.master.clone(),
                "--redis-sentinel-password".to_owned(),
                p.sentinel.clone(),
            ]);
        }
        flags
    }

    /// The master's port if a majority of the sentinels name the same one.
    pub async fn agreed_master_port(&self) -> Option<u16> {
        let mut named = Vec::new();
        for s in &self.sentinels {
            if let Some(port) = s.master_port().await {
                named.push(port);
            }
        }
        named
            .iter()
            .copied()
            .find(|p| named.iter().filter(|q| *q == p).count() >= 2)
    }

    /// Every sentinel's log, for a failure message.
    pub fn logs(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("--- sentinel {} ---\n{}", s.port, s.log_text()))
            .collect()
    }
}

/// `Some` once `server`'s `ROLE` is `role` ("master" or "slave") and, for a replica, its
/// link to the master is up.
pub async fn role(server: &RedisServer, role: &str) -> Option<()> {
    let mut conn = redis::Client::open(server.url())
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .ok()?;
    let is = info.lines().any(|l| l.trim() == format!("role:{role}"));
    let linked = role != "slave" || info.lines().any(|l| l.trim() == "master_link_status:up");
    (is && linked).then_some(())
}
