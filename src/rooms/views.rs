//! What clients see of a room: the objects of `room_joined`, `room_state`, the relayed host
//! commands and the HTTP API, and the acknowledgements of requests. Built from this
//! instance's entry or from a shared fact alike ([`Parts`]).

use serde::Serialize;
use serde_json::Value;

use super::model::{CommandKind, MemberId, PlaySnapshot, PlayState};
use super::roster::MemberView;
use crate::clock::rfc3339_ms;

/// The parts every view is made of.
pub(super) struct Parts<'a> {
    /// The id as the room's creator wrote it.
    pub id: &'a Value,
    pub host: &'a MemberId,
    pub count: usize,
    pub created_at: u64,
    pub play: &'a PlayState,
    /// Password-protected: outsiders see the count only.
    pub protected: bool,
}

/// The play state as clients see it: the seed's `play_state` plus `server_time`,
/// `start_at` and `playback_rate` (see [`PlaySnapshot`]).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Playing {
    pub current_track: Value,
    pub is_playing: bool,
    pub current_time: f64,
    pub server_time: u64,
    pub start_at: u64,
    pub playback_rate: f64,
}

impl Playing {
    fn of(play: &PlayState, now: u64) -> Self {
        let PlaySnapshot {
            current_track,
            is_playing,
            current_time,
            server_time,
            start_at,
            playback_rate,
        } = play.snapshot(now);
        Playing {
            current_track: current_track.clone(),
            is_playing,
            current_time,
            server_time,
            start_at,
            playback_rate,
        }
    }
}

/// `room_joined` and `room_state`: the room under the id the client used. Outsiders of a
/// password-protected room see its count only.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClientRoom {
    pub room_id: Value,
    /// The receiving client's own member id (it is in the room).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<MemberId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<MemberId>,
    pub user_count: usize,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub play: Option<Playing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberView>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

/// The seed's HTTP room object; a password-protected room shows its count only.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HttpRoom {
    pub id: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_id: Option<MemberId>,
    pub user_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub play: Option<Playing>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

impl Parts<'_> {
    /// The view for a client that named the room `asked_as`, as of `now`; `member` says
    /// whether that client is in the room.
    pub fn for_client(&self, asked_as: &Value, now: u64, member: bool) -> ClientRoom {
        let open = member || !self.protected;
        ClientRoom {
            room_id: asked_as.clone(),
            member_id: None,
            host_id: open.then(|| self.host.clone()),
            user_count: self.count,
            play: open.then(|| Playing::of(self.play, now)),
            members: None,
            protected: self.protected,
        }
    }

    /// The seed's HTTP room object, as of `now`.
    pub fn for_http(&self, now: u64) -> HttpRoom {
        let open = !self.protected;
        HttpRoom {
            id: self.id.clone(),
            host_id: open.then(|| self.host.clone()),
            user_count: self.count,
            created_at: open.then(|| rfc3339_ms(self.created_at)),
            play: open.then(|| Playing::of(self.play, now)),
            protected: self.protected,
        }
    }
}

/// A relayed host command: the seed's fields, plus the instant the message was built
/// (`server_time`) and the timeline: at `start_at` the position to be heard is
/// `current_time`, advancing at `playback_rate` while playing.
#[derive(Serialize)]
pub(super) struct CommandEvent<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track: Option<&'a Value>,
    pub is_playing: bool,
    pub current_time: f64,
    pub server_time: u64,
    pub start_at: u64,
    pub playback_rate: f64,
}

impl<'a> CommandEvent<'a> {
    pub fn of(kind: CommandKind, play: &'a PlayState, now: u64) -> Self {
        CommandEvent {
            track: (kind == CommandKind::TrackChange).then_some(&play.track),
            is_playing: play.is_playing,
            current_time: play.time,
            server_time: now,
            start_at: play.start_at,
            playback_rate: play.rate,
        }
    }
}

/// `room_users`: the count, and the members in rooms that use the group features.
#[derive(Serialize)]
pub(super) struct Users {
    pub count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberView>>,
}

/// `host_changed`.
#[derive(Serialize)]
pub(super) struct HostChanged<'a> {
    pub room_id: &'a Value,
    pub host_id: &'a MemberId,
}

/// `waiting`: the members a start still waits for.
#[derive(Serialize)]
pub(super) struct Waiting<'a> {
    pub room_id: &'a Value,
    pub members: &'a [MemberId],
}

/// `become_host`.
#[derive(Serialize)]
pub(super) struct BecomeHost<'a> {
    pub room_id: &'a Value,
}

/// The result of a successful request: sent as the acknowledgement, with `ok: true`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Reply {
    /// `create_room`: also the payload of `room_created`.
    Created {
        room_id: Value,
        user_count: usize,
        host_id: MemberId,
        member_id: MemberId,
    },
    /// `join_room`, `get_room_state`.
    Room(ClientRoom),
    /// `leave_room`.
    Left { room_id: Value },
    /// `transfer_host`, `set_role`, `ready`: done, nothing more to say.
    Done { room_id: Value },
    /// A host command: the timeline it set, as relayed to the other members.
    Command {
        is_playing: bool,
        current_time: f64,
        server_time: u64,
        start_at: u64,
        playback_rate: f64,
    },
    /// `time_sync`: the client's `t0`, and the server's clock (Unix ms, sub-ms precision)
    /// when the probe arrived (`t1`) and when the answer left (`t2`).
    Time { t0: f64, t1: f64, t2: f64 },
}
