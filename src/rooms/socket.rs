//! The room protocol on our Socket.IO engine (`crates/socketio`): [`RoomsHandler`] is the
//! engine's [`Handler`]. At the handshake it counts the connection against the per-address
//! and global caps; on connect it checks the token (when authentication is on), reads the
//! `client_id`, greets the client and resumes its member; each event passes the
//! connection's rate limit, is validated ([`super::protocol`]) and run ([`Rooms`]), and is
//! answered with an acknowledgement and, for refusals the client must hear of, an `error`
//! event; a disconnect is a leave only when the client asked for it.
//!
//! The engine runs a connection's events one at a time, in arrival order, so a `play` then
//! a `seek` from one client are applied in that order; the room's lock orders events from
//! different clients.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use socketio::{DisconnectReason, Event, Handler, Packet, Refusal, Socket};

use super::access::ClientKey;
use super::model::MemberId;
use super::protocol::{self, ClientEvent, ErrorCode, Invalid, Request, ServerEvent};
use super::registry::{Connection, Outbound};
use super::service::Rooms;
use super::views::Reply;
use crate::auth::{Auth, AuthError, Identity};
use crate::clock::{self, now_ms};
use crate::limits::bucket::TokenBucket;
use crate::limits::{AbuseLimits, ConnectionGuard, ConnectionRefused, Rate};

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
    auth: Auth,
    abuse: Arc<AbuseLimits>,
    event_rate: Option<Rate>,
}

impl RoomsHandler {
    pub(crate) fn new(
        rooms: Arc<Rooms>,
        auth: Auth,
        abuse: Arc<AbuseLimits>,
        event_rate: Option<Rate>,
    ) -> Self {
        RoomsHandler {
            rooms,
            auth,
            abuse,
            event_rate,
        }
    }
}

/// One client's Socket.IO connection: its part in the rooms, who it authenticated as, and
/// its event budget.
pub(crate) struct Client {
    conn: Arc<Connection>,
    identity: Option<Identity>,
    events: Option<Mutex<EventBudget>>,
}

/// A connection's event rate limit: a token bucket, and how many events in a row it refused.
struct EventBudget {
    bucket: TokenBucket,
    refused_in_a_row: u32,
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
    type State = Arc<Client>;
    type Guard = Option<ConnectionGuard>;

    /// Counts the connection against `MAX_CONNECTIONS_PER_IP` (429) and `MAX_CONNECTIONS`
    /// (503) for as long as it lasts.
    fn admit(&self, request: &axum::http::request::Parts) -> Result<Self::Guard, Refusal> {
        let Some(ConnectInfo(peer)) = request.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(None); // not served by a TCP listener (in-process tests)
        };
        let ip = self.abuse.proxies.client_ip(peer.ip(), &request.headers);
        self.abuse
            .connections
            .try_acquire(ip)
            .map(Some)
            .map_err(|refused| match refused {
                ConnectionRefused::PerIp => {
                    Refusal::new(StatusCode::TOO_MANY_REQUESTS, refused.to_string())
                }
                ConnectionRefused::Global => {
                    Refusal::new(StatusCode::SERVICE_UNAVAILABLE, refused.to_string())
                }
            })
    }

    fn connect(
        &self,
        socket: &Socket,
        auth: Option<Value>,
    ) -> impl Future<Output = Result<Arc<Client>, Value>> + Send + 'static {
        let (rooms, socket) = (self.rooms.clone(), socket.clone());
        let identity = self
            .auth
            .verify_connect(auth.as_ref())
            .map_err(|_| AuthError::connect_error());
        let client = client_key(auth.as_ref());
        let events = self.event_rate.map(|rate| {
            Mutex::new(EventBudget {
                bucket: TokenBucket::new(rate, Instant::now()),
                refused_in_a_row: 0,
            })
        });
        async move {
            let identity = identity?;
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
            Ok(Arc::new(Client {
                conn,
                identity,
                events,
            }))
        }
    }

    fn event(
        &self,
        socket: &Socket,
        client: &Arc<Client>,
        event: Event,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (rooms, client, socket) = (self.rooms.clone(), client.clone(), socket.clone());
        async move {
            if let Err(refusal) = client.admit_event(&event) {
                return refusal.answer(&client.conn, &socket, event.ack);
            }
            dispatch(&rooms, &client.conn, &socket, event).await;
        }
    }

    fn disconnect(
        &self,
        socket: &Socket,
        client: Arc<Client>,
        reason: DisconnectReason,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (rooms, sid) = (self.rooms.clone(), socket.id());
        async move {
            let explicit = reason == DisconnectReason::ClientDisconnect;
            rooms.disconnect(&client.conn, explicit).await;
            tracing::debug!(%sid, %reason, "socket disconnected");
        }
    }
}

/// An event refused before it ran.
enum Refused {
    /// Over the event rate: dropped, the client is told.
    RateLimited,
    /// The connection's token expired, or the client kept sending over its rate: it is
    /// disconnected.
    Disconnect(Invalid),
}

impl Refused {
    fn answer(self, conn: &Connection, socket: &Socket, ack: Option<u64>) {
        let invalid = match self {
            Refused::RateLimited => Invalid::new(
                ErrorCode::RateLimited,
                "too many events: slow down (this one was dropped)",
            ),
            Refused::Disconnect(invalid) => {
                conn.send(ServerEvent::Error, &invalid);
                socket.disconnect();
                return;
            }
        };
        conn.send(ServerEvent::Error, &invalid);
        Respond { conn, socket, ack }.acknowledge(&Nack::from(invalid));
    }
}

impl Client {
    /// Whether `event` may run: the token has not expired, and the event rate allows it.
    fn admit_event(&self, event: &Event) -> Result<(), Refused> {
        if self
            .identity
            .as_ref()
            .and_then(Identity::remaining)
            .is_some_and(|left| left.is_zero())
        {
            return Err(Refused::Disconnect(Invalid::new(
                ErrorCode::Unauthorized,
                "the token expired: connect again with a new one",
            )));
        }
        let Some(events) = &self.events else {
            return Ok(());
        };
        let mut budget = events.lock().unwrap_or_else(|p| p.into_inner());
        match budget.bucket.try_take(event.received) {
            Ok(()) => {
                budget.refused_in_a_row = 0;
                Ok(())
            }
            Err(_) => {
                budget.refused_in_a_row += 1;
                // A client that goes on sending a whole burst's worth past its limit is not
                // a client that lost track: it goes.
                if f64::from(budget.refused_in_a_row) > budget.bucket.burst() {
                    tracing::info!(member = %self.conn.member(), "disconnected for sending too many events");
                    Err(Refused::Disconnect(Invalid::new(
                        ErrorCode::RateLimited,
                        "too many events: disconnected",
                    )))
                } else {
                    Err(Refused::RateLimited)
                }
            }
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
