//! The room protocol's Socket.IO events, for both transports: the `connected` greeting,
//! [`dispatch`] (validates each event and queues it, in arrival order, on the connection's
//! [`SerialQueue`](crate::serial::SerialQueue)), and socketioxide's wiring of the `/`
//! namespace. playsync's own WebSocket transport ([`super::websocket`]) calls the same
//! functions.
//!
//! socketioxide calls our handlers synchronously in the order events arrive, before spawning
//! their futures, and `dispatch` queues the work right there, so no event can overtake another.

use std::sync::Arc;

use futures_util::FutureExt;
use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::socket::Sid;

use super::protocol::{self, ClientEvent, Invalid, Request, ServerEvent};
use super::registry::Connection;
use super::service::Rooms;
use super::views::Reply;
use crate::clock::now_ms;
use crate::serial::SerialQueue;

/// Installs the room protocol on the default namespace.
pub(crate) fn register(io: &SocketIo, rooms: Arc<Rooms>) {
    io.ns("/", move |s: SocketRef| {
        on_connect(&s, &rooms);
        std::future::ready(())
    });
}

/// A connection of either transport: its part in the rooms and its event queue.
pub(super) struct Client {
    pub conn: Arc<Connection>,
    queue: Arc<SerialQueue>,
}

impl Client {
    pub fn new(sid: Sid) -> Arc<Self> {
        Arc::new(Client {
            conn: Connection::new(sid.to_string().into()),
            queue: SerialQueue::new(),
        })
    }
}

fn on_connect(s: &SocketRef, rooms: &Arc<Rooms>) {
    let conn = Client::new(s.id);
    tracing::debug!(sid = %s.id, transport = ?s.transport_type(), "socket connected");
    greet(|event, data| {
        if let Err(e) = s.emit(event, data) {
            tracing::debug!(sid = %s.id, error = %e, "could not greet socket");
        }
    });

    let (c, r) = (conn.clone(), rooms.clone());
    s.on_fallback(
        move |s: SocketRef, Event(name): Event, TryData(data): TryData<Value>, ack: AckSender| {
            dispatch(&r, &c, &name, data.ok(), SocketReply { socket: s, ack })
        },
    );

    let r = rooms.clone();
    s.on_disconnect(move |s: SocketRef| {
        let (r, conn) = (r.clone(), conn.clone());
        async move {
            disconnect(&r, &conn).await;
            tracing::debug!(sid = %s.id, "socket disconnected");
        }
    });
}

/// Sends the seed's greeting to a socket that just connected, through `emit`.
pub(super) fn greet(emit: impl FnOnce(&str, &Value)) {
    emit(
        ServerEvent::Connected.name(),
        &json!({"message": "connected", "server_time": now_ms()}),
    );
}

/// Leaves the connection's room once the events it sent before are done.
pub(super) async fn disconnect(rooms: &Arc<Rooms>, client: &Arc<Client>) {
    let (r, c) = (rooms.clone(), client.conn.clone());
    let job = async move { r.leave(&c).await };
    client.queue.submit(job.boxed()).await
}

/// Where the outcome of one client event goes: the socket's `error` event and the
/// acknowledgement the client asked for (if it did).
pub(super) trait Responder: Send + 'static {
    fn sid(&self) -> Sid;
    fn emit_error(&self, invalid: &Invalid);
    fn acknowledge<T: Serialize>(self, reply: &T);
}

/// A socketioxide socket's responder.
struct SocketReply {
    socket: SocketRef,
    ack: AckSender,
}

impl Responder for SocketReply {
    fn sid(&self) -> Sid {
        self.socket.id
    }

    fn emit_error(&self, invalid: &Invalid) {
        if let Err(e) = self.socket.emit(ServerEvent::Error.name(), invalid) {
            tracing::debug!(sid = %self.socket.id, error = %e, "could not send error");
        }
    }

    fn acknowledge<T: Serialize>(self, reply: &T) {
        let _ = self.ack.send(reply);
    }
}

/// Called synchronously, in arrival order, on either transport: validates, then queues the
/// work on the connection's queue. The returned future drives the queue.
pub(super) fn dispatch<R: Responder>(
    rooms: &Arc<Rooms>,
    client: &Arc<Client>,
    name: &str,
    data: Option<Value>,
    respond: R,
) -> impl Future<Output = ()> + Send + 'static + use<R> {
    let received = crate::clock::precise_ms();
    let Some(event) = ClientEvent::ALL.into_iter().find(|e| e.name() == name) else {
        tracing::debug!(sid = %respond.sid(), event = name, "unknown event ignored");
        respond.acknowledge(&Nack::from(Invalid::new(
            protocol::ErrorCode::InvalidPayload,
            format!("unknown event {name}"),
        )));
        return client.queue.submit(std::future::ready(()).boxed());
    };
    let payload = data.unwrap_or(Value::Null);
    let request = protocol::parse(event, &payload, rooms.limits());
    if let Ok(Request::TimeSync { t0, rtt }) = request {
        // A clock probe is answered at once: waiting behind other requests would only add
        // to its round trip.
        respond.acknowledge(&Ack::from(rooms.time_sync(&client.conn, t0, rtt, received)));
        return client.queue.submit(std::future::ready(()).boxed());
    }
    let (rooms, conn2) = (rooms.clone(), client.conn.clone());
    let job = async move {
        let outcome = match request {
            Ok(request) => execute(&rooms, &conn2, request).await,
            Err(invalid) => Err(invalid),
        };
        answer(event, outcome, respond);
    };
    client.queue.submit(job.boxed())
}

/// Sends the outcome of a request: the acknowledgement, and the `error` event for refusals
/// the client must hear of.
fn answer<R: Responder>(event: ClientEvent, outcome: Result<Reply, Invalid>, respond: R) {
    match outcome {
        Ok(reply) => respond.acknowledge(&Ack::from(reply)),
        Err(invalid) => {
            tracing::debug!(sid = %respond.sid(), event = event.name(), code = ?invalid.code, "request refused");
            let report = event.reports_errors()
                || !matches!(
                    invalid.code,
                    protocol::ErrorCode::NotHost | protocol::ErrorCode::RoomNotFound
                );
            if report {
                respond.emit_error(&invalid);
            }
            respond.acknowledge(&Nack::from(invalid));
        }
    }
}

async fn execute(
    rooms: &Rooms,
    conn: &Arc<Connection>,
    request: Request,
) -> Result<Reply, Invalid> {
    match request {
        Request::CreateRoom { room, track, time } => rooms.create(conn, room, track, time).await,
        Request::JoinRoom { room } => rooms.join(conn, room).await,
        Request::GetRoomState { room } => rooms.state(conn, room).await,
        Request::Control { room, cmd, at } => rooms.control(conn, room, cmd, at).await,
        Request::TimeSync { t0, rtt } => {
            Ok(rooms.time_sync(conn, t0, rtt, crate::clock::precise_ms()))
        }
    }
}

/// A successful acknowledgement: `{ok: true, ...reply}`.
#[derive(Serialize)]
struct Ack {
    ok: bool,
    #[serde(flatten)]
    reply: Reply,
}

impl From<Reply> for Ack {
    fn from(reply: Reply) -> Self {
        Ack { ok: true, reply }
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
