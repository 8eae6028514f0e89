//! The room protocol on our Socket.IO engine (`crates/socketio`): [`RoomsHandler`] is the
//! engine's [`Handler`]. On connect it reads the CONNECT auth payload (`client_id`), greets
//! the client and resumes its member; each event is validated ([`super::protocol`]) and run
//! ([`Rooms`]), and answered with an acknowledgement and, for refusals the client must hear
//! of, an `error` event; a disconnect is a leave only when the client asked for it.
//!
//! The engine runs a connection's events one at a time, in arrival order, so a `play` then
//! a `seek` from one client are applied in that order; the room's lock orders events from
//! different clients.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use socketio::{DisconnectReason, Event, Handler, Packet, Refusal, Socket};

use super::access::ClientKey;
use super::model::MemberId;
use super::protocol::{self, ClientEvent, ErrorCode, Invalid, Request, ServerEvent};
use super::registry::{Connection, Outbound};
use super::service::Rooms;
use super::views::Reply;
use crate::clock::{self, now_ms};

/// The engine's socket is a connection's way out.
impl Outbound for Socket {
    fn send(&self, packet: &Packet) {
        self.emit(packet);
    }

    fn close(&self) {
        self.disconnect();
    }
}

/// The rooms, as the engine's handler of the `/` namespace.
pub(crate) struct RoomsHandler {
    rooms: Arc<Rooms>,
}

impl RoomsHandler {
    pub(crate) fn new(rooms: Arc<Rooms>) -> Self {
        RoomsHandler { rooms }
    }
}

/// The `client_id` of a CONNECT auth payload: absent, or a string of 8 to 128 characters.
fn client_key(auth: Option<&Value>) -> Result<Option<ClientKey>, Value> {
    match auth.and_then(|a| a.get("client_id")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) => ClientKey::of(id)
            .map(Some)
            .ok_or_else(|| json!({"message": "client_id must be a string of 8 to 128 characters"})),
        Some(_) => Err(json!({"message": "client_id must be a string of 8 to 128 characters"})),
    }
}

impl Handler for RoomsHandler {
    type State = Arc<Connection>;
    type Guard = ();

    fn admit(&self, _request: &axum::http::request::Parts) -> Result<(), Refusal> {
        Ok(())
    }

    fn connect(
        &self,
        socket: &Socket,
        auth: Option<Value>,
    ) -> impl Future<Output = Result<Arc<Connection>, Value>> + Send + 'static {
        let (rooms, socket) = (self.rooms.clone(), socket.clone());
        let client = client_key(auth.as_ref());
        async move {
            let client = client?;
            let member = match &client {
                Some(key) => rooms.member_for(key).await,
                None => MemberId::from(socket.id().to_string()),
            };
            tracing::debug!(sid = %socket.id(), transport = ?socket.transport(), "socket connected");
            let conn = Connection::new(member, client, Box::new(socket));
            conn.send(
                ServerEvent::Connected,
                &json!({"message": "connected", "server_time": now_ms(), "member_id": conn.member()}),
            );
            rooms.resume(&conn).await;
            Ok(conn)
        }
    }

    fn event(
        &self,
        socket: &Socket,
        conn: &Arc<Connection>,
        event: Event,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (rooms, conn, socket) = (self.rooms.clone(), conn.clone(), socket.clone());
        async move { dispatch(&rooms, &conn, &socket, event).await }
    }

    fn disconnect(
        &self,
        socket: &Socket,
        conn: Arc<Connection>,
        reason: DisconnectReason,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (rooms, sid) = (self.rooms.clone(), socket.id());
        async move {
            let explicit = reason == DisconnectReason::ClientDisconnect;
            rooms.disconnect(&conn, explicit).await;
            tracing::debug!(%sid, %reason, "socket disconnected");
        }
    }
}

/// Validates one client event and runs it; answers with the acknowledgement the client
/// asked for and, for refusals it must hear of, an `error` event.
async fn dispatch(rooms: &Rooms, conn: &Arc<Connection>, socket: &Socket, event: Event) {
    let respond = Respond {
        conn,
        socket,
        ack: event.ack,
    };
    let Some(kind) = ClientEvent::ALL
        .into_iter()
        .find(|e| e.name() == event.name)
    else {
        tracing::debug!(sid = %socket.id(), event = event.name, "unknown event ignored");
        return respond.acknowledge(&Nack::from(Invalid::new(
            ErrorCode::InvalidPayload,
            format!("unknown event {}", event.name),
        )));
    };
    let payload = event.args.into_iter().next().unwrap_or(Value::Null);
    let outcome = match protocol::parse(kind, &payload, rooms.limits()) {
        Ok(Request::TimeSync { t0, rtt }) => {
            // The probe's arrival is when the engine read it, not when its turn came.
            Ok(rooms.time_sync(conn, t0, rtt, clock::at(event.received)))
        }
        Ok(request) => execute(rooms, conn, request).await,
        Err(invalid) => Err(invalid),
    };
    match outcome {
        Ok(reply) => respond.acknowledge(&Ack::from(reply)),
        Err(invalid) => {
            tracing::debug!(sid = %socket.id(), event = kind.name(), code = ?invalid.code, "request refused");
            let report = kind.reports_errors()
                || !matches!(invalid.code, ErrorCode::NotHost | ErrorCode::RoomNotFound);
            if report {
                conn.send(ServerEvent::Error, &invalid);
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
        Request::CreateRoom {
            room,
            track,
            time,
            name,
            options,
        } => rooms.create(conn, room, track, time, name, options).await,
        Request::JoinRoom {
            room,
            name,
            password,
        } => rooms.join(conn, room, name, password).await,
        Request::LeaveRoom { room } => rooms.leave_room(conn, room).await,
        Request::GetRoomState { room } => rooms.state(conn, room).await,
        Request::Control { room, cmd, at } => rooms.control(conn, room, cmd, at).await,
        Request::Ready { room, ready } => rooms.ready(conn, room, ready).await,
        Request::TransferHost { room, to } => rooms.transfer_host(conn, room, to).await,
        Request::SetRole { room, member, role } => rooms.set_role(conn, room, member, role).await,
        Request::TimeSync { t0, rtt } => Ok(rooms.time_sync(conn, t0, rtt, clock::precise_ms())),
    }
}

/// Where the outcome of one event goes.
struct Respond<'a> {
    conn: &'a Connection,
    socket: &'a Socket,
    ack: Option<u64>,
}

impl Respond<'_> {
    /// Sends the acknowledgement, if the client asked for one.
    fn acknowledge<T: Serialize>(&self, reply: &T) {
        let Some(id) = self.ack else {
            return;
        };
        if let Err(e) = self.socket.ack(id, reply) {
            tracing::error!(member = %self.conn.member(), error = %e, "cannot encode an acknowledgement");
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
