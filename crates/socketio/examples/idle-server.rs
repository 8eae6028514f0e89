//! A minimal engine server for measuring idle memory per connection: `/` only, the default
//! heartbeat (25 s / 20 s), a handler that keeps nothing. `cargo run --release -p
//! playsync-socketio --example idle-server [ADDR]`; open connections, then read the
//! process's VmRSS (see crates/socketio/README.md).

use std::net::SocketAddr;

use serde_json::Value;
use socketio::{Config, DisconnectReason, Engine, Event, Handler, Refusal, Socket};

struct Idle;

impl Handler for Idle {
    type State = ();
    type Guard = ();

    fn admit(&self, _request: &http::request::Parts) -> Result<(), Refusal> {
        Ok(())
    }

    fn connect(
        &self,
        _socket: &Socket,
        _auth: Option<Value>,
    ) -> impl Future<Output = Result<(), Value>> + Send + 'static {
        std::future::ready(Ok(()))
    }

    fn event(
        &self,
        _socket: &Socket,
        _state: &(),
        _event: Event,
    ) -> impl Future<Output = ()> + Send + 'static {
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
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3001)));
    let engine = Engine::new(Config::default(), Idle);
    let io = engine.clone();
    let app = axum::Router::new().route(
        "/socket.io/",
        axum::routing::any(move |req: axum::extract::Request| async move { io.handle(req).await }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
