//! The server the official Socket.IO protocol test suite (socketio/socket.io-protocol,
//! `test-suite/`) expects, on playsync's own engine (`crates/socketio`): 127.0.0.1:3000, path
//! `/socket.io/`, pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1,000,000, connect
//! timeout 1 s, namespaces `/` and `/custom`. On connect each socket gets `auth` with its auth
//! payload; on `/`, `message` is echoed as `message-back` (arguments and binary attachments)
//! and `message-with-ack` is acknowledged with its own arguments.
//!
//! `cargo run --release --example protocol-suite [-- ADDR]`, then `npx mocha test-suite.js`
//! in the suite's directory. crates/socketio/README.md records the last run.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use socketio::{Config, DisconnectReason, Engine, Event, Handler, Packet, Refusal, Socket};

struct Suite;

impl Handler for Suite {
    type State = ();
    type Guard = ();

    fn admit(&self, _request: &axum::http::request::Parts) -> Result<(), Refusal> {
        Ok(())
    }

    fn connect(
        &self,
        socket: &Socket,
        auth: Option<Value>,
    ) -> impl Future<Output = Result<(), Value>> + Send + 'static {
        let auth = auth.unwrap_or_else(|| Value::Object(Default::default()));
        if let Err(e) = socket.emit_event("auth", &auth) {
            eprintln!("cannot encode auth: {e}");
        }
        std::future::ready(Ok(()))
    }

    fn event(
        &self,
        socket: &Socket,
        _state: &(),
        event: Event,
    ) -> impl Future<Output = ()> + Send + 'static {
        let nsp = socket.nsp();
        let result = match (nsp, event.name.as_str(), event.ack) {
            ("/", "message", _) => {
                Packet::event_args(nsp, "message-back", &event.args, event.attachments).map(|p| {
                    socket.emit(&p);
                })
            }
            ("/", "message-with-ack", Some(id)) => {
                Packet::ack_args(nsp, id, &event.args, event.attachments).map(|p| {
                    socket.reply(&p);
                })
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            eprintln!("cannot encode a reply: {e}");
        }
        std::future::ready(())
    }

    fn disconnect(
        &self,
        _socket: &Socket,
        _state: (),
        _reason: DisconnectReason,
    ) -> impl Future<Output = ()> + Send + 'static {
        std::future::ready(())
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000)));
    let config = Config {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        connect_timeout: Duration::from_millis(1000),
        namespaces: vec!["/".into(), "/custom".into()],
        ..Config::default()
    };
    let engine = Engine::new(config, Suite);
    let io = engine.clone();
    let app = axum::Router::new().route(
        "/socket.io/",
        axum::routing::any(move |req: axum::extract::Request| async move { io.handle(req).await }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "protocol-suite server on http://{}/socket.io/",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), engine.shutdown()).await;
    Ok(())
}
