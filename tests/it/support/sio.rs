//! Drives real `socket.io-client` instances (4.x and 2.x) hosted by `tests/js/driver.mjs`.
//!
//! One Node process per test hosts any number of named clients. Replies to commands are
//! matched by id; the events each client receives are queued per client, in order.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

use super::PATIENCE;

type Received = (String, Vec<Value>);

#[derive(Default)]
struct Routes {
    replies: HashMap<u64, oneshot::Sender<Value>>,
    clients: HashMap<String, mpsc::UnboundedSender<Received>>,
}

pub struct Sio {
    _child: Child,
    stdin: tokio::sync::Mutex<ChildStdin>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicU64,
}

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

impl Sio {
    /// Starts the Node driver. Fails (never skips) when Node or the client packages are
    /// missing.
    pub async fn start() -> Arc<Sio> {
        let dir = js_dir();
        super::require(
            &dir.join("node_modules/socket.io-client"),
            "the npm package socket.io-client",
        );
        let mut child = Command::new("node")
            .arg(dir.join("driver.mjs"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start node: install Node.js (the README's test command needs it)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let routes = Arc::new(Mutex::new(Routes::default()));
        let r = routes.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("driver: unparsable line {line}");
                    continue;
                };
                let mut routes = r.lock().unwrap();
                if let Some(id) = msg.get("id").and_then(Value::as_u64) {
                    if let Some(tx) = routes.replies.remove(&id) {
                        let _ = tx.send(msg);
                    }
                } else if let (Some(client), Some(event)) = (
                    msg.get("client").and_then(Value::as_str),
                    msg.get("event").and_then(Value::as_str),
                ) {
                    let args = msg
                        .get("args")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if let Some(tx) = routes.clients.get(client) {
                        let _ = tx.send((event.to_owned(), args));
                    }
                }
            }
        });
        Arc::new(Sio {
            _child: child,
            stdin: tokio::sync::Mutex::new(stdin),
            routes,
            next_id: AtomicU64::new(1),
        })
    }

    async fn command(&self, mut cmd: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        cmd["id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        self.routes.lock().unwrap().replies.insert(id, tx);
        {
            let mut stdin = self.stdin.lock().await;
            let mut line = cmd.to_string();
            line.push('\n');
            stdin.write_all(line.as_bytes()).await.expect("driver died");
            stdin.flush().await.expect("driver died");
        }
        tokio::time::timeout(PATIENCE, rx)
            .await
            .unwrap_or_else(|_| panic!("driver did not answer {cmd}"))
            .expect("driver died")
    }

    /// Connects a socket.io-client 4.x named `name` with `opts` (client options).
    pub async fn connect(self: &Arc<Self>, name: &str, url: &str, opts: Value) -> Client {
        self.try_connect(name, url, opts, 4)
            .await
            .unwrap_or_else(|e| panic!("client {name} could not connect: {e}"))
    }

    /// Connects a socket.io-client 2.x (Engine.IO 3 / Socket.IO protocol v4).
    pub async fn connect_v2(self: &Arc<Self>, name: &str, url: &str, opts: Value) -> Client {
        self.try_connect(name, url, opts, 2)
            .await
            .unwrap_or_else(|e| panic!("client {name} could not connect: {e}"))
    }

    pub async fn try_connect(
        self: &Arc<Self>,
        name: &str,
        url: &str,
        opts: Value,
        version: u8,
    ) -> Result<Client, String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes
            .lock()
            .unwrap()
            .clients
            .insert(name.to_owned(), tx);
        let reply = self
            .command(json!({"op": "connect", "client": name, "url": url, "opts": opts, "version": version}))
            .await;
        if reply["ok"] != json!(true) {
            return Err(reply["error"].to_string());
        }
        Ok(Client {
            name: name.to_owned(),
            sid: reply["sid"].as_str().unwrap_or_default().to_owned(),
            sio: self.clone(),
            inbox: tokio::sync::Mutex::new(Inbox {
                rx,
                backlog: VecDeque::new(),
            }),
        })
    }
}

struct Inbox {
    rx: mpsc::UnboundedReceiver<Received>,
    backlog: VecDeque<Received>,
}

/// One socket.io-client instance.
pub struct Client {
    pub name: String,
    pub sid: String,
    sio: Arc<Sio>,
    inbox: tokio::sync::Mutex<Inbox>,
}

impl Client {
    /// Emits `event` with the given arguments (no acknowledgement).
    pub async fn emit_args(&self, event: &str, args: Vec<Value>) {
        let reply = self
            .sio
            .command(json!({"op": "emit", "client": self.name, "event": event, "args": args, "ack": false}))
            .await;
        assert_eq!(reply["ok"], json!(true), "emit failed: {reply}");
    }

    /// Emits `event` with one payload (no acknowledgement).
    pub async fn emit(&self, event: &str, payload: Value) {
        self.emit_args(event, vec![payload]).await;
    }

    /// Emits `event` with the arguments given as JSON text (parsed by the JavaScript client,
    /// so it may hold what a Rust string cannot, such as a lone surrogate escape) and returns
    /// the server's acknowledgement.
    pub async fn call_json(&self, event: &str, args_json: &str) -> Value {
        let reply = self
            .sio
            .command(json!({"op": "emit", "client": self.name, "event": event, "args_json": args_json, "ack": true}))
            .await;
        assert_eq!(reply["ok"], json!(true), "no acknowledgement: {reply}");
        reply["ack"][0].clone()
    }

    /// Emits `event` with one payload and returns the server's acknowledgement.
    pub async fn call(&self, event: &str, payload: Value) -> Value {
        self.call_args(event, vec![payload]).await
    }

    pub async fn call_args(&self, event: &str, args: Vec<Value>) -> Value {
        let reply = self
            .sio
            .command(json!({"op": "emit", "client": self.name, "event": event, "args": args, "ack": true}))
            .await;
        assert_eq!(reply["ok"], json!(true), "no acknowledgement: {reply}");
        reply["ack"][0].clone()
    }

    /// The next `event` this client received (events of other names stay queued), as its
    /// first argument.
    pub async fn next(&self, event: &str) -> Value {
        self.next_of(&[event]).await.1
    }

    /// The next event among `events`, as (name, first argument).
    pub async fn next_of(&self, events: &[&str]) -> (String, Value) {
        let mut inbox = self.inbox.lock().await;
        if let Some(pos) = inbox
            .backlog
            .iter()
            .position(|(e, _)| events.contains(&e.as_str()))
        {
            let (e, args) = inbox.backlog.remove(pos).expect("position is valid");
            return (e, args.into_iter().next().unwrap_or(Value::Null));
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, inbox.rx.recv()).await {
                Ok(Some((e, args))) if events.contains(&e.as_str()) => {
                    return (e, args.into_iter().next().unwrap_or(Value::Null));
                }
                Ok(Some(other)) => inbox.backlog.push_back(other),
                Ok(None) => panic!("driver gone while {} waited for {events:?}", self.name),
                Err(_) => panic!(
                    "{} did not receive any of {events:?}; it got {:?}",
                    self.name, inbox.backlog
                ),
            }
        }
    }

    /// Every event received so far (already delivered to this process) named `event`.
    pub async fn drain(&self, event: &str) -> Vec<Value> {
        let mut inbox = self.inbox.lock().await;
        while let Ok(item) = inbox.rx.try_recv() {
            inbox.backlog.push_back(item);
        }
        let mut found = Vec::new();
        inbox.backlog.retain(|(e, args)| {
            if e == event {
                found.push(args.first().cloned().unwrap_or(Value::Null));
                false
            } else {
                true
            }
        });
        found
    }

    /// The transport in use now ("polling" or "websocket").
    pub async fn transport(&self) -> String {
        let reply = self
            .sio
            .command(json!({"op": "transport", "client": self.name}))
            .await;
        reply["transport"].as_str().unwrap_or_default().to_owned()
    }

    /// Closes the transport under the socket without a Socket.IO disconnect, as a dropped
    /// network does (the client does not reconnect by itself).
    pub async fn drop_transport(&self) {
        self.sio
            .command(json!({"op": "drop", "client": self.name}))
            .await;
    }

    pub async fn disconnect(&self) {
        self.sio
            .command(json!({"op": "disconnect", "client": self.name}))
            .await;
    }
}
