//! What clients see of a room: the objects of `room_joined`, `room_state`, the relayed host
//! commands and the HTTP API, and the acknowledgements of requests. Built from this
//! instance's entry or from a shared fact alike ([`Parts`]).

use serde::Serialize;
use serde_json::Value;

use super::model::{CommandKind, MemberId, PlaySnapshot, PlayState};
use crate::clock::rfc3339_ms;

/// The parts every view is made of.
pub(super) struct Parts<'a> {
    /// The id as the room's creator wrote it.
    pub id: &'a Value,
    pub host: &'a MemberId,
    pub count: usize,
    pub created_at: u64,
    pub play: &'a PlayState,
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

/// `room_joined` and `room_state`: the room under the id the client used.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClientRoom {
    pub room_id: Value,
    pub host_id: MemberId,
    pub user_count: usize,
    #[serde(flatten)]
    pub play: Playing,
}

/// The seed's HTTP room object.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HttpRoom {
    pub id: Value,
    pub host_id: MemberId,
    pub user_count: usize,
    pub created_at: String,
    #[serde(flatten)]
    pub play: Playing,
}

impl Parts<'_> {
    /// The view for a client that named the room `asked_as`, as of `now`.
    pub fn for_client(&self, asked_as: &Value, now: u64) -> ClientRoom {
        ClientRoom {
            room_id: asked_as.clone(),
            host_id: self.host.clone(),
            user_count: self.count,
            play: Playing::of(self.play, now),
        }
    }

    /// The seed's HTTP room object, as of `now`.
    pub fn for_http(&self, now: u64) -> HttpRoom {
        HttpRoom {
            id: self.id.clone(),
            host_id: self.host.clone(),
            user_count: self.count,
            created_at: rfc3339_ms(self.created_at),
            play: Playing::of(self.play, now),
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
    pub current_time: f64,
    pub server_time: u64,
    pub start_at: u64,
    pub playback_rate: f64,
}

impl<'a> CommandEvent<'a> {
    pub fn of(kind: CommandKind, play: &'a PlayState, now: u64) -> Self {
        CommandEvent {
            track: (kind == CommandKind::TrackChange).then_some(&play.track),
            current_time: play.time,
            server_time: now,
            start_at: play.start_at,
            playback_rate: play.rate,
        }
    }
}

/// `room_users`.
#[derive(Serialize)]
pub(super) struct Users {
    pub count: usize,
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
    },
    /// `join_room`, `get_room_state`.
    Room(ClientRoom),
    /// A host command: the timeline it set, as relayed to the other members.
    Command {
        current_time: f64,
        server_time: u64,
        start_at: u64,
        playback_rate: f64,
    },
    /// `time_sync`: the client's `t0`, and the server's clock (Unix ms, sub-ms precision)
    /// when the probe arrived (`t1`) and when the answer left (`t2`).
    Time { t0: f64, t1: f64, t2: f64 },
}
