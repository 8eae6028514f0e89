//! The seed-1 wire protocol: client event names, payload validation, error codes. Pure:
//! turns an untrusted JSON payload into a typed [`Request`] or an [`Invalid`] that says why.

use serde::Serialize;
use serde_json::{Map, Value};

use super::model::{CommandKind, Control, MemberId, RoomId};
use super::roster::{ControlMode, MAX_NAME_CHARS, Role};

/// Longest room id accepted, in characters.
pub const MAX_ROOM_ID_CHARS: usize = 128;

/// The events a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    CreateRoom,
    JoinRoom,
    TrackChange,
    Play,
    Pause,
    Seek,
    SyncProgress,
    SetRate,
    GetRoomState,
    TimeSync,
    LeaveRoom,
    Ready,
    TransferHost,
    SetRole,
}

impl ClientEvent {
    pub const ALL: [ClientEvent; 14] = [
        ClientEvent::CreateRoom,
        ClientEvent::JoinRoom,
        ClientEvent::TrackChange,
        ClientEvent::Play,
        ClientEvent::Pause,
        ClientEvent::Seek,
        ClientEvent::SyncProgress,
        ClientEvent::SetRate,
        ClientEvent::GetRoomState,
        ClientEvent::TimeSync,
        ClientEvent::LeaveRoom,
        ClientEvent::Ready,
        ClientEvent::TransferHost,
        ClientEvent::SetRole,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ClientEvent::CreateRoom => "create_room",
            ClientEvent::JoinRoom => "join_room",
            ClientEvent::TrackChange => "track_change",
            ClientEvent::Play => "play",
            ClientEvent::Pause => "pause",
            ClientEvent::Seek => "seek",
            ClientEvent::SyncProgress => "sync_progress",
            ClientEvent::SetRate => "set_rate",
            ClientEvent::GetRoomState => "get_room_state",
            ClientEvent::TimeSync => "time_sync",
            ClientEvent::LeaveRoom => "leave_room",
            ClientEvent::Ready => "ready",
            ClientEvent::TransferHost => "transfer_host",
            ClientEvent::SetRole => "set_role",
        }
    }

    /// Whether a refused request is answered with an `error` event. Host commands are not:
    /// seed clients send `sync_progress` from every member, and the seed ignored the
    /// non-hosts silently (an acknowledgement, when asked for, still says why).
    pub fn reports_errors(self) -> bool {
        !matches!(
            self,
            ClientEvent::TrackChange
                | ClientEvent::Play
                | ClientEvent::Pause
                | ClientEvent::Seek
                | ClientEvent::SyncProgress
                | ClientEvent::SetRate
        )
    }
}

/// The events the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    /// The greeting on connect.
    Connected,
    RoomCreated,
    RoomJoined,
    /// The member count, to every member.
    RoomUsers,
    /// A host command, relayed to the other members under its own name.
    Command(CommandKind),
    SyncState,
    BecomeHost,
    RoomState,
    Error,
    /// A wait-for-ready start waits for these members.
    Waiting,
    /// The room's host changed.
    HostChanged,
}

impl ServerEvent {
    pub fn name(self) -> &'static str {
        match self {
            ServerEvent::Connected => "connected",
            ServerEvent::RoomCreated => "room_created",
            ServerEvent::RoomJoined => "room_joined",
            ServerEvent::RoomUsers => "room_users",
            ServerEvent::Command(kind) => kind.event(),
            ServerEvent::SyncState => "sync_state",
            ServerEvent::BecomeHost => "become_host",
            ServerEvent::RoomState => "room_state",
            ServerEvent::Error => "error",
            ServerEvent::Waiting => "waiting",
            ServerEvent::HostChanged => "host_changed",
        }
    }
}

/// What `create_room` may set besides the seed's fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoomOptions {
    /// Starts wait until every present member is ready (or the ready timeout).
    pub wait_for_ready: bool,
    pub control: ControlMode,
    /// `join_room` must give it.
    pub password: Option<String>,
}

/// A validated client request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    CreateRoom {
        room: RoomId,
        track: Value,
        time: f64,
        name: Option<String>,
        options: RoomOptions,
    },
    JoinRoom {
        room: RoomId,
        name: Option<String>,
        password: Option<String>,
    },
    LeaveRoom {
        room: RoomId,
    },
    /// The member is (or is no longer) ready to play the room's current state.
    Ready {
        room: RoomId,
        ready: bool,
    },
    TransferHost {
        room: RoomId,
        to: MemberId,
    },
    SetRole {
        room: RoomId,
        member: MemberId,
        role: Role,
    },
    GetRoomState {
        room: RoomId,
    },
    /// A host command, taking effect at `at` (server ms) if the host asked for an instant.
    Control {
        room: RoomId,
        cmd: Control,
        at: Option<f64>,
    },
    /// A clock probe: the client's send time `t0` (its clock, ms), and the round-trip time
    /// it measured for its previous probe, if any.
    TimeSync {
        t0: f64,
        rtt: Option<f64>,
    },
}

/// Machine-readable reason of a refusal, sent as `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidPayload,
    InvalidRoomId,
    InvalidCurrentTime,
    InvalidTrack,
    InvalidPlaybackRate,
    InvalidAt,
    InvalidName,
    InvalidPassword,
    InvalidControl,
    InvalidMemberId,
    InvalidRole,
    RoomNotFound,
    RoomExists,
    NotHost,
    NotMember,
    WrongPassword,
    RateLimited,
    TooManyRooms,
    RoomFull,
    /// Another connection with the same `client_id` took this member over.
    Replaced,
    /// The connection's token expired.
    Unauthorized,
}

/// A refusal: the `error` event's payload `{message, code}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Invalid {
    pub message: String,
    pub code: ErrorCode,
}

impl Invalid {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code,
        }
    }

    pub fn not_host() -> Self {
        Self::new(
            ErrorCode::NotHost,
            "only the room's host can control playback",
        )
    }

    pub fn room_exists(room: &RoomId) -> Self {
        Self::new(
            ErrorCode::RoomExists,
            format!("room {} already exists", room.key),
        )
    }

    pub fn room_not_found(room: &RoomId) -> Self {
        Self::new(
            ErrorCode::RoomNotFound,
            format!("room {} does not exist", room.key),
        )
    }
}

/// Validation limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_track_bytes: usize,
}

/// Validates the payload of `event`. Never panics, whatever the payload.
pub fn parse(event: ClientEvent, payload: &Value, limits: Limits) -> Result<Request, Invalid> {
    let Value::Object(fields) = payload else {
        return Err(Invalid::new(
            ErrorCode::InvalidPayload,
            format!("{} expects a JSON object payload", event.name()),
        ));
    };
    if event == ClientEvent::TimeSync {
        return time_sync(fields);
    }
    let room = room_id(fields)?;
    let control = |cmd| -> Result<Request, Invalid> {
        Ok(Request::Control {
            room: room.clone(),
            cmd,
            at: at(fields)?,
        })
    };
    Ok(match event {
        ClientEvent::CreateRoom => Request::CreateRoom {
            room,
            track: optional_track(fields, limits)?,
            time: optional_time(fields)?.unwrap_or(0.0),
            name: name(fields)?,
            options: RoomOptions {
                wait_for_ready: flag(fields, "wait_for_ready")?.unwrap_or(false),
                control: control_mode(fields)?,
                password: password(fields)?,
            },
        },
        ClientEvent::JoinRoom => Request::JoinRoom {
            room,
            name: name(fields)?,
            password: password(fields)?,
        },
        ClientEvent::LeaveRoom => Request::LeaveRoom { room },
        ClientEvent::Ready => Request::Ready {
            ready: flag(fields, "ready")?.ok_or_else(|| {
                Invalid::new(
                    ErrorCode::InvalidPayload,
                    "ready needs ready: true or false",
                )
            })?,
            room,
        },
        ClientEvent::TransferHost => Request::TransferHost {
            room,
            to: member_id(fields)?,
        },
        ClientEvent::SetRole => Request::SetRole {
            room,
            member: member_id(fields)?,
            role: match fields.get("role").and_then(Value::as_str) {
                Some("cohost") => Role::Cohost,
                Some("member") => Role::Member,
                _ => {
                    return Err(Invalid::new(
                        ErrorCode::InvalidRole,
                        r#"role must be "cohost" or "member""#,
                    ));
                }
            },
        },
        ClientEvent::GetRoomState => Request::GetRoomState { room },
        ClientEvent::TrackChange => {
            let track = optional_track(fields, limits)?;
            if track.is_null() {
                return Err(Invalid::new(
                    ErrorCode::InvalidTrack,
                    "track_change needs a track object",
                ));
            }
            control(Control::TrackChange { track })?
        }
        ClientEvent::Play => control(Control::Play {
            time: optional_time(fields)?,
        })?,
        ClientEvent::Pause => control(Control::Pause {
            time: optional_time(fields)?,
        })?,
        ClientEvent::Seek => control(Control::Seek {
            time: required_time(fields, event)?,
        })?,
        ClientEvent::SyncProgress => control(Control::SyncProgress {
            time: required_time(fields, event)?,
        })?,
        ClientEvent::SetRate => control(Control::SetRate {
            rate: playback_rate(fields)?,
        })?,
        ClientEvent::TimeSync => return time_sync(fields),
    })
}

/// Longest room password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// `name`: absent, null or empty means none; otherwise a string of at most 64 characters.
fn name(fields: &Map<String, Value>) -> Result<Option<String>, Invalid> {
    match fields.get("name") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_NAME_CHARS => Ok(Some(s.clone())),
        Some(_) => Err(Invalid::new(
            ErrorCode::InvalidName,
            format!("name must be a string of at most {MAX_NAME_CHARS} characters"),
        )),
    }
}

/// `password`: absent or null means none; otherwise a non-empty string of bounded length.
fn password(fields: &Map<String, Value>) -> Result<Option<String>, Invalid> {
    match fields.get("password") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_PASSWORD_CHARS => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(Invalid::new(
            ErrorCode::InvalidPassword,
            format!("password must be a string of 1 to {MAX_PASSWORD_CHARS} characters"),
        )),
    }
}

/// A boolean field: absent or null means not given.
fn flag(fields: &Map<String, Value>, name: &str) -> Result<Option<bool>, Invalid> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Invalid::new(
            ErrorCode::InvalidPayload,
            format!("{name} must be true or false"),
        )),
    }
}

/// `control`: `"host"` (the default) or `"everyone"`.
fn control_mode(fields: &Map<String, Value>) -> Result<ControlMode, Invalid> {
    match fields.get("control") {
        None | Some(Value::Null) => Ok(ControlMode::Host),
        Some(Value::String(s)) if s == "host" => Ok(ControlMode::Host),
        Some(Value::String(s)) if s == "everyone" => Ok(ControlMode::Everyone),
        Some(_) => Err(Invalid::new(
            ErrorCode::InvalidControl,
            r#"control must be "host" or "everyone""#,
        )),
    }
}

/// `member_id`: a member's public id.
fn member_id(fields: &Map<String, Value>) -> Result<MemberId, Invalid> {
    match fields.get("member_id") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => Ok(MemberId::from(s.as_str())),
        _ => Err(Invalid::new(
            ErrorCode::InvalidMemberId,
            "member_id must be a member's id",
        )),
    }
}

/// Slowest and fastest playback rate accepted.
pub const RATES: std::ops::RangeInclusive<f64> = 0.5..=2.0;

/// `playback_rate`: a number from 0.5 to 2.0.
fn playback_rate(fields: &Map<String, Value>) -> Result<f64, Invalid> {
    match fields.get("playback_rate").and_then(Value::as_f64) {
        Some(rate) if RATES.contains(&rate) => Ok(rate),
        _ => Err(Invalid::new(
            ErrorCode::InvalidPlaybackRate,
            "playback_rate must be a number from 0.5 to 2.0",
        )),
    }
}

/// `at`: absent or null, or a finite number (a server instant, Unix ms).
fn at(fields: &Map<String, Value>) -> Result<Option<f64>, Invalid> {
    match fields.get("at") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(at) if at.is_finite() => Ok(Some(at)),
            _ => Err(Invalid::new(
                ErrorCode::InvalidAt,
                "at must be a server instant in Unix milliseconds",
            )),
        },
    }
}

/// `time_sync {t0, rtt?}`.
fn time_sync(fields: &Map<String, Value>) -> Result<Request, Invalid> {
    let number = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_f64)
            .filter(|n| n.is_finite())
    };
    let Some(t0) = number("t0") else {
        return Err(Invalid::new(
            ErrorCode::InvalidPayload,
            "time_sync needs t0, the client's clock in milliseconds",
        ));
    };
    Ok(Request::TimeSync {
        t0,
        rtt: number("rtt"),
    })
}

fn room_id(fields: &Map<String, Value>) -> Result<RoomId, Invalid> {
    let raw = fields.get("room_id").unwrap_or(&Value::Null);
    let key = match raw {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Null => {
            return Err(Invalid::new(
                ErrorCode::InvalidRoomId,
                "room_id is required",
            ));
        }
        _ => {
            return Err(Invalid::new(
                ErrorCode::InvalidRoomId,
                "room_id must be a string or an integer",
            ));
        }
    };
    if key.is_empty() {
        return Err(Invalid::new(
            ErrorCode::InvalidRoomId,
            "room_id must not be empty",
        ));
    }
    if key.chars().count() > MAX_ROOM_ID_CHARS {
        return Err(Invalid::new(
            ErrorCode::InvalidRoomId,
            format!("room_id must be at most {MAX_ROOM_ID_CHARS} characters"),
        ));
    }
    Ok(RoomId {
        key,
        raw: raw.clone(),
    })
}

/// `current_time`: absent or null means "not given"; otherwise a finite number ≥ 0.
fn optional_time(fields: &Map<String, Value>) -> Result<Option<f64>, Invalid> {
    match fields.get("current_time") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(t)),
            _ => Err(time_error()),
        },
        Some(_) => Err(time_error()),
    }
}

fn required_time(fields: &Map<String, Value>, event: ClientEvent) -> Result<f64, Invalid> {
    optional_time(fields)?.ok_or_else(|| {
        Invalid::new(
            ErrorCode::InvalidCurrentTime,
            format!("{} needs current_time", event.name()),
        )
    })
}

fn time_error() -> Invalid {
    Invalid::new(
        ErrorCode::InvalidCurrentTime,
        "current_time must be a finite number >= 0",
    )
}

/// `track`: absent or null means none; otherwise an object of bounded size.
fn optional_track(fields: &Map<String, Value>, limits: Limits) -> Result<Value, Invalid> {
    match fields.get("track") {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(track @ Value::Object(_)) => {
            if serialized_len(track) > limits.max_track_bytes {
                return Err(Invalid::new(
                    ErrorCode::InvalidTrack,
                    format!(
                        "track must be at most {} bytes of JSON",
                        limits.max_track_bytes
                    ),
                ));
            }
            Ok(track.clone())
        }
        Some(_) => Err(Invalid::new(
            ErrorCode::InvalidTrack,
            "track must be an object",
        )),
    }
}

fn serialized_len(value: &Value) -> usize {
    /// Counts bytes without keeping them.
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: Limits = Limits {
        max_track_bytes: 100,
    };

    fn code(event: ClientEvent, payload: Value) -> ErrorCode {
        parse(event, &payload, LIMITS).unwrap_err().code
    }

    #[test]
    fn payload_must_be_an_object() {
        for p in [
            json!(null),
            json!("r1"),
            json!(42),
            json!([1, 2]),
            json!(true),
        ] {
            for e in ClientEvent::ALL {
                assert_eq!(code(e, p.clone()), ErrorCode::InvalidPayload, "{e:?} {p}");
            }
        }
    }

    #[test]
    fn room_id_rules() {
        let e = ClientEvent::JoinRoom;
        assert_eq!(code(e, json!({})), ErrorCode::InvalidRoomId);
        assert_eq!(code(e, json!({"room_id": ""})), ErrorCode::InvalidRoomId);
        assert_eq!(code(e, json!({"room_id": 1.5})), ErrorCode::InvalidRoomId);
        assert_eq!(code(e, json!({"room_id": ["a"]})), ErrorCode::InvalidRoomId);
        assert_eq!(
            code(e, json!({"room_id": {"a": 1}})),
            ErrorCode::InvalidRoomId
        );
        assert_eq!(code(e, json!({"room_id": true})), ErrorCode::InvalidRoomId);
        let long = "é".repeat(MAX_ROOM_ID_CHARS + 1);
        assert_eq!(
            code(e, json!({ "room_id": long })),
            ErrorCode::InvalidRoomId
        );
        let max = "é".repeat(MAX_ROOM_ID_CHARS);
        assert!(parse(e, &json!({ "room_id": max }), LIMITS).is_ok());
        assert_eq!(
            parse(e, &json!({"room_id": 42}), LIMITS).unwrap(),
            Request::JoinRoom {
                room: RoomId {
                    key: "42".into(),
                    raw: json!(42)
                },
                name: None,
                password: None
            }
        );
    }

    #[test]
    fn current_time_rules() {
        let e = ClientEvent::Seek;
        assert_eq!(
            code(e, json!({"room_id": "r", "current_time": -1})),
            ErrorCode::InvalidCurrentTime
        );
        assert_eq!(
            code(e, json!({"room_id": "r", "current_time": "5"})),
            ErrorCode::InvalidCurrentTime
        );
        assert_eq!(
            code(e, json!({"room_id": "r"})),
            ErrorCode::InvalidCurrentTime
        );
        assert_eq!(
            parse(e, &json!({"room_id": "r", "current_time": 0}), LIMITS).unwrap(),
            Request::Control {
                room: RoomId::from_key("r"),
                cmd: Control::Seek { time: 0.0 },
                at: None
            }
        );
        // play and pause may omit it: "from where we are".
        assert_eq!(
            parse(ClientEvent::Pause, &json!({"room_id": "r"}), LIMITS).unwrap(),
            Request::Control {
                room: RoomId::from_key("r"),
                cmd: Control::Pause { time: None },
                at: None
            }
        );
    }

    #[test]
    fn track_rules() {
        assert_eq!(
            code(
                ClientEvent::CreateRoom,
                json!({"room_id": "r", "track": "song"})
            ),
            ErrorCode::InvalidTrack
        );
        assert_eq!(
            code(ClientEvent::TrackChange, json!({"room_id": "r"})),
            ErrorCode::InvalidTrack
        );
        let big = json!({"room_id": "r", "track": {"name": "x".repeat(100)}});
        assert_eq!(code(ClientEvent::TrackChange, big), ErrorCode::InvalidTrack);
        assert_eq!(
            parse(
                ClientEvent::CreateRoom,
                &json!({"room_id": "r", "current_time": 3}),
                LIMITS
            )
            .unwrap(),
            Request::CreateRoom {
                room: RoomId::from_key("r"),
                track: Value::Null,
                time: 3.0,
                name: None,
                options: RoomOptions::default()
            }
        );
    }

    #[test]
    fn set_rate_at_and_time_sync_rules() {
        let e = ClientEvent::SetRate;
        assert_eq!(
            parse(e, &json!({"room_id": "r", "playback_rate": 0.5}), LIMITS).unwrap(),
            Request::Control {
                room: RoomId::from_key("r"),
                cmd: Control::SetRate { rate: 0.5 },
                at: None
            }
        );
        for bad in [json!(2.01), json!(0.49), json!("1"), json!(null)] {
            assert_eq!(
                code(e, json!({"room_id": "r", "playback_rate": bad})),
                ErrorCode::InvalidPlaybackRate
            );
        }
        assert_eq!(
            parse(
                ClientEvent::Play,
                &json!({"room_id": "r", "at": 1_800_000_000_000u64}),
                LIMITS
            )
            .unwrap(),
            Request::Control {
                room: RoomId::from_key("r"),
                cmd: Control::Play { time: None },
                at: Some(1_800_000_000_000.0)
            }
        );
        assert_eq!(
            code(
                ClientEvent::Seek,
                json!({"room_id": "r", "current_time": 1, "at": "soon"})
            ),
            ErrorCode::InvalidAt
        );
        assert_eq!(
            parse(
                ClientEvent::TimeSync,
                &json!({"t0": 12.5, "rtt": 30}),
                LIMITS
            )
            .unwrap(),
            Request::TimeSync {
                t0: 12.5,
                rtt: Some(30.0)
            }
        );
        assert_eq!(
            parse(ClientEvent::TimeSync, &json!({"t0": 1, "rtt": "x"}), LIMITS).unwrap(),
            Request::TimeSync { t0: 1.0, rtt: None }
        );
        assert_eq!(
            code(ClientEvent::TimeSync, json!({})),
            ErrorCode::InvalidPayload
        );
    }

    #[test]
    fn serialized_len_counts_json_bytes() {
        let v = json!({"a": "é"});
        assert_eq!(serialized_len(&v), serde_json::to_vec(&v).unwrap().len());
    }
}
