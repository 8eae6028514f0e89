//! Socket.IO wiring of the room protocol: the `/` namespace, the `connected` greeting, and
//! one handler per connection that validates each event and queues it, in arrival order, on
//! the connection's [`SerialQueue`](crate::serial::SerialQueue).
//!
//! Handlers register synchronously inside socketioxide's callbacks (which it calls in the
//! order events arrive, before spawning their futures), so no event can overtake another.

use std::sync::Arc;

use futures_util::FutureExt;
use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};

use super::protocol::{self, ClientEvent, Invalid, Request};
use super::service::{Connection, Reply, Rooms};
use crate::clock::now_ms;

/// Installs the room protocol on the default namespace.
pub fn register(io: &SocketIo, rooms: Arc<Rooms>) {
    io.ns("/", move |s: SocketRef| {
        on_connect(&s, &rooms);
        std::future::ready(())
    });
}

fn on_connect(s: &SocketRef, rooms: &Arc<Rooms>) {
    let conn = Connection::new(s.id);
    tracing::debug!(sid = %s.id, transport = ?s.transport_type(), "socket connected");
    if let Err(e) = s.emit(
        "connected",
        &json!({"message": "connected", "server_time": now_ms()}),
    ) {
        tracing::debug!(sid = %s.id, error = %e, "could not greet socket");
    }

    let (c, r) = (conn.clone(), rooms.clone());
    s.on_fallback(
        move |s: SocketRef, Event(name): Event, TryData(data): TryData<Value>, ack: AckSender| {
            on_event(&r, &c, s, &name, data.ok(), ack)
        },
    );

    let r = rooms.clone();
    s.on_disconnect(move |s: SocketRef| {
        let queue = conn.queue.clone();
        let conn = conn.clone();
        let job = async move {
            r.leave(&conn).await;
            tracing::debug!(sid = %s.id, "socket disconnected");
        };
        queue.submit(job.boxed())
    });
}

/// Called synchronously, in arrival order: validates, then queues the work.
fn on_event(
    rooms: &Arc<Rooms>,
    conn: &Arc<Connection>,
    s: SocketRef,
    name: &str,
    data: Option<Value>,
    ack: AckSender,
) -> impl Future<Output = ()> + Send + 'static + use<> {
    let Some(event) = ClientEvent::ALL.into_iter().find(|e| e.name() == name) else {
        tracing::debug!(sid = %s.id, event = name, "unknown event ignored");
        let _ = ack.send(&Nack::from(Invalid::new(
            protocol::ErrorCode::InvalidPayload,
            format!("unknown event {name}"),
        )));
        return conn.queue.submit(std::future::ready(()).boxed());
    };
    let payload = data.unwrap_or(Value::Null);
    let request = protocol::parse(event, &payload, rooms.limits());
    let (rooms, conn2) = (rooms.clone(), conn.clone());
    let job = async move {
        let outcome = match request {
            Ok(request) => execute(&rooms, &conn2, request).await,
            Err(invalid) => Err(invalid),
        };
        match outcome {
            Ok(reply) => {
                let _ = ack.send(&Ack(reply));
            }
            Err(invalid) => {
                tracing::debug!(sid = %s.id, event = event.name(), code = ?invalid.code, "request refused");
                let report = event.reports_errors()
                    || !matches!(
                        invalid.code,
                        protocol::ErrorCode::NotHost | protocol::ErrorCode::RoomNotFound
                    );
                if report && let Err(e) = s.emit("error", &invalid) {
                    tracing::debug!(sid = %s.id, error = %e, "could not send error");
                }
                let _ = ack.send(&Nack::from(invalid));
            }
        }
    };
    conn.queue.submit(job.boxed())
}

async fn execute(rooms: &Rooms, conn: &Connection, request: Request) -> Result<Reply, Invalid> {
    match request {
        Request::CreateRoom { room, track, time } => rooms.create(conn, room, track, time).await,
        Request::JoinRoom { room } => rooms.join(conn, room).await,
        Request::GetRoomState { room } => rooms.state(conn, room).await,
        Request::Control { room, cmd } => rooms.control(conn, room, cmd).await,
    }
}

/// A successful acknowledgement: `{ok: true, ...reply}`.
struct Ack(Reply);

impl Serialize for Ack {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = match &self.0 {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        fields.insert("ok".into(), Value::Bool(true));
        fields.serialize(serializer)
    }
}

/// A refusal acknowledgement: `{ok: false, code, message}`.
#[derive(Serialize)]
struct Nack {
    ok: bool,
    #[serde(flatten)]
    invalid: Invalid,
}

impl From<Invalid> for Nack {
    fn from(invalid: Invalid) -> Self {
        Nack { ok: false, invalid }
    }
}
