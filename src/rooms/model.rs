//! The room domain's values (pure): the play state and its timeline math, host
//! commands, and the typed [`Change`] a decided command makes. The room itself, its
//! membership and host choice, is [`super::room`]. No I/O, no clock reads (callers pass
//! `now_ms`), no locking. Everything else in `rooms` calls into these.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

pub use super::ids::{MemberId, RoomId};

/// What is playing and where: the room's timeline. At the server instant `start_at` (Unix
/// ms) the position to be heard is `time` (seconds); while playing it advances from there at
/// `rate`. Before `start_at` (a start scheduled ahead) the room waits at `time`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayState {
    /// The track object the host set; `Value::Null` when none. Shared: commands that keep
    /// the track do not copy it.
    pub track: Arc<Value>,
    pub is_playing: bool,
    pub time: f64,
    pub start_at: u64,
    /// Playback speed, 0.5 to 2.0.
    pub rate: f64,
}

impl PlayState {
    /// The playback position at `now_ms`: while playing, the stored time plus the time
    /// elapsed since `start_at` at `rate`; while paused (or before the start), the stored
    /// time.
    pub fn position_at(&self, now_ms: u64) -> f64 {
        if self.is_playing {
            self.time + now_ms.saturating_sub(self.start_at) as f64 / 1000.0 * self.rate
        } else {
            self.time
        }
    }

    /// The state a host command leads to when it takes effect at `start_ms` (the sender's
    /// right to send it is checked by the room). "From where we are" means the position
    /// the room reaches at `start_ms`, so the timeline does not jump.
    pub fn after(&self, cmd: Control, start_ms: u64) -> PlayState {
        let current = self.position_at(start_ms);
        let (mut track, mut is_playing, mut rate) =
            (self.track.clone(), self.is_playing, self.rate);
        let time = match cmd {
            Control::TrackChange { track: new } => {
                (track, is_playing) = (Arc::new(new), true);
                0.0
            }
            Control::Play { time } => {
                is_playing = true;
                time.unwrap_or(current)
            }
            Control::Pause { time } => {
                is_playing = false;
                time.unwrap_or(current)
            }
            Control::Seek { time } | Control::SyncProgress { time } => time,
            Control::SetRate { rate: new } => {
                rate = new;
                current
            }
        };
        PlayState {
            track,
            is_playing,
            time,
            start_at: start_ms,
            rate,
        }
    }

    /// The seed's `play_state` as of `now_ms`, plus `server_time` (the instant the
    /// position is valid at, so clients can extrapolate precisely), `start_at` and
    /// `playback_rate`.
    pub fn snapshot(&self, now_ms: u64) -> PlaySnapshot<'_> {
        PlaySnapshot {
            current_track: &self.track,
            is_playing: self.is_playing,
            current_time: self.position_at(now_ms),
            server_time: now_ms,
            start_at: self.start_at.max(now_ms),
            playback_rate: self.rate,
        }
    }
}

/// The seed's `play_state` object on the wire, with the timeline: at `start_at` (a server
/// instant, Unix ms) the position to be heard is `current_time`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlaySnapshot<'a> {
    pub current_track: &'a Value,
    pub is_playing: bool,
    pub current_time: f64,
    pub server_time: u64,
    pub start_at: u64,
    pub playback_rate: f64,
}

/// A host command.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// New track; playback restarts at 0 and plays.
    TrackChange { track: Value },
    /// Play from `time`, or from the current position when absent.
    Play { time: Option<f64> },
    /// Pause at `time`, or at the current position when absent.
    Pause { time: Option<f64> },
    /// Jump to `time`; playing or paused stays as it was.
    Seek { time: f64 },
    /// The host's periodic report of where it is.
    SyncProgress { time: f64 },
    /// New playback speed; the position carries on from where the room is.
    SetRate { rate: f64 },
}

/// The kinds of host command: each arrives as, and is broadcast as, its own event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    TrackChange,
    Play,
    Pause,
    Seek,
    SyncProgress,
    SetRate,
}

impl CommandKind {
    pub const ALL: [CommandKind; 6] = [
        CommandKind::TrackChange,
        CommandKind::Play,
        CommandKind::Pause,
        CommandKind::Seek,
        CommandKind::SyncProgress,
        CommandKind::SetRate,
    ];

    /// The event name the command arrives as and is broadcast as.
    pub fn event(self) -> &'static str {
        match self {
            CommandKind::TrackChange => "track_change",
            CommandKind::Play => "play",
            CommandKind::Pause => "pause",
            CommandKind::Seek => "seek",
            CommandKind::SyncProgress => "sync_progress",
            CommandKind::SetRate => "set_rate",
        }
    }

    /// Whether the command starts playback somewhere new, so it is scheduled ahead (every
    /// member must hear of it before it takes effect).
    pub fn starts_playback(self) -> bool {
        matches!(
            self,
            CommandKind::TrackChange | CommandKind::Play | CommandKind::Seek
        )
    }

    /// The kind named `event`, if it is a host command.
    pub fn from_event(event: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.event() == event)
    }
}

impl Control {
    pub fn kind(&self) -> CommandKind {
        match self {
            Control::TrackChange { .. } => CommandKind::TrackChange,
            Control::Play { .. } => CommandKind::Play,
            Control::Pause { .. } => CommandKind::Pause,
            Control::Seek { .. } => CommandKind::Seek,
            Control::SyncProgress { .. } => CommandKind::SyncProgress,
            Control::SetRate { .. } => CommandKind::SetRate,
        }
    }
}

/// Why a room changed, which decides how members are told.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// A room was created, or a member joined or left.
    Membership,
    /// A host command: broadcast as its own event to every member but the sender.
    Command { kind: CommandKind, by: MemberId },
    /// A state this instance had not seen being made (a merge after an outage, or a change
    /// that overtook another): members get the state itself.
    Resync,
}

/// How the member list changed, for `room_users`.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RosterChange {
    /// Not at all.
    #[default]
    Unchanged,
    /// This instance's room holds the whole list (no Redis): read it from there.
    Local,
    /// As the shared state lists it (absent for rooms too large to list).
    Listed(Option<Vec<super::roster::MemberView>>),
}

/// What a decided command changed in a room: only the parts that changed, and why. The pure
/// model decides it when this instance is alone, a Redis script when rooms are shared; one
/// `apply` turns it into state and emits, whoever decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub cause: Cause,
    /// The number of members (across every instance), when it changed.
    pub count: Option<usize>,
    /// The new host and since when it holds the role (Unix ms), when it changed.
    pub host: Option<(MemberId, u64)>,
    /// The new play state, when it changed.
    pub play: Option<PlayState>,
    /// The member list (names, roles, presence), when it changed.
    pub roster: RosterChange,
    /// A start waiting for members to be ready: who it still waits for, when that changed
    /// (empty: the wait is over).
    pub waiting: Option<Vec<MemberId>>,
}

impl Change {
    /// Nothing changed, because of `cause`.
    pub fn none(cause: Cause) -> Self {
        Change {
            cause,
            count: None,
            host: None,
            play: None,
            roster: RosterChange::Unchanged,
            waiting: None,
        }
    }

    /// Membership changed: `count` members now, and maybe a new host.
    pub fn membership(count: usize, host: Option<(MemberId, u64)>) -> Self {
        Change {
            count: Some(count),
            host,
            roster: RosterChange::Local,
            ..Change::none(Cause::Membership)
        }
    }

    /// A host command by `by` that led to `play`.
    pub fn command(kind: CommandKind, by: MemberId, play: PlayState) -> Self {
        Change {
            play: Some(play),
            ..Change::none(Cause::Command { kind, by })
        }
    }
}

/// Why a command was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Only the host (or, for playback, whoever may control) may do that.
    NotHost,
    /// The member named is not in the room.
    NotMember,
}

/// What a departure did to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Departure {
    /// The member was not in the room; nothing changed.
    NotMember,
    /// The member left; `new_host` is set when it was the host.
    Left { new_host: Option<MemberId> },
    /// The member was the last one: the room is empty and must be deleted.
    Emptied,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::room::Room;
    use serde_json::json;

    fn room() -> Room {
        Room::create(
            RoomId::from_key("r"),
            "a".into(),
            json!({"name": "song"}),
            10.0,
            1_000,
        )
    }

    #[test]
    fn a_new_room_plays_with_its_creator_as_host() {
        let r = room();
        assert_eq!(r.host(), "a");
        assert_eq!(r.members(), ["a"]);
        assert!(r.play.is_playing);
        assert_eq!(r.play.time, 10.0);
    }

    #[test]
    fn position_extrapolates_only_while_playing() {
        let mut r = room();
        assert_eq!(r.play.position_at(3_500), 12.5);
        r.control("a", Control::Pause { time: Some(20.0) }, 4_000)
            .unwrap();
        assert_eq!(r.play.position_at(60_000), 20.0);
        // A clock that went backwards never rewinds the position.
        r.control("a", Control::Play { time: None }, 5_000).unwrap();
        assert_eq!(r.play.position_at(4_000), 20.0);
    }

    #[test]
    fn zero_is_a_real_time() {
        let mut r = room();
        let t = r
            .control("a", Control::Play { time: Some(0.0) }, 9_000)
            .unwrap();
        assert_eq!(t, 0.0);
        assert_eq!(r.play.position_at(9_000), 0.0);
        let t = r
            .control("a", Control::Pause { time: Some(0.0) }, 9_500)
            .unwrap();
        assert_eq!(t, 0.0);
    }

    #[test]
    fn play_and_pause_without_time_use_the_current_position() {
        let mut r = room();
        let t = r
            .control("a", Control::Pause { time: None }, 3_000)
            .unwrap();
        assert_eq!(t, 12.0);
        assert!(!r.play.is_playing);
        let t = r
            .control("a", Control::Play { time: None }, 10_000)
            .unwrap();
        assert_eq!(t, 12.0);
        assert!(r.play.is_playing);
    }

    #[test]
    fn track_change_restarts_at_zero_and_plays() {
        let mut r = room();
        r.control("a", Control::Pause { time: None }, 2_000)
            .unwrap();
        let t = r
            .control(
                "a",
                Control::TrackChange {
                    track: json!({"name": "next"}),
                },
                3_000,
            )
            .unwrap();
        assert_eq!(t, 0.0);
        assert_eq!(*r.play.track, json!({"name": "next"}));
        assert!(r.play.is_playing);
    }

    #[test]
    fn seek_keeps_playing_or_paused() {
        let mut r = room();
        r.control("a", Control::Seek { time: 42.0 }, 2_000).unwrap();
        assert!(r.play.is_playing);
        assert_eq!(r.play.position_at(3_000), 43.0);
        r.control("a", Control::Pause { time: None }, 3_000)
            .unwrap();
        r.control("a", Control::Seek { time: 5.0 }, 4_000).unwrap();
        assert!(!r.play.is_playing);
        assert_eq!(r.play.position_at(9_000), 5.0);
    }

    #[test]
    fn only_the_host_controls() {
        let mut r = room();
        r.join("b".into());
        let before = r.clone();
        assert_eq!(
            r.control("b", Control::Seek { time: 1.0 }, 2_000),
            Err(Refusal::NotHost)
        );
        assert_eq!(
            r.control("stranger", Control::Pause { time: None }, 2_000),
            Err(Refusal::NotHost)
        );
        assert_eq!(r, before);
    }

    #[test]
    fn the_longest_present_member_becomes_host() {
        let mut r = room();
        assert!(r.join("b".into()));
        assert!(r.join("c".into()));
        assert!(!r.join("b".into()), "joining twice is a no-op");
        assert_eq!(r.user_count(), 3);
        assert_eq!(r.leave("c", 2), Departure::Left { new_host: None });
        assert!(r.join("d".into()));
        assert_eq!(
            r.leave("a", 3),
            Departure::Left {
                new_host: Some("b".into())
            }
        );
        assert_eq!((r.host(), r.host_since()), ("b", 3));
        assert_eq!(
            r.leave("b", 4),
            Departure::Left {
                new_host: Some("d".into())
            }
        );
        assert_eq!(r.leave("zz", 5), Departure::NotMember);
        assert_eq!(r.leave("d", 6), Departure::Emptied);
        assert_eq!(r.user_count(), 0);
    }

    #[test]
    fn localize_promotes_a_member_when_the_host_is_elsewhere() {
        let mut r = room();
        r.join("b".into());
        r.join("c".into());
        assert_eq!(r.localize(9), None, "a local host stays");
        r.set_host("remote".into(), 5);
        assert!(r.drop_member("b"));
        assert!(!r.drop_member("b"));
        assert_eq!(r.localize(9), Some("a".into()));
        assert_eq!((r.host(), r.host_since()), ("a", 9));
    }

    #[test]
    fn a_scheduled_start_waits_then_advances_at_the_rate() {
        let mut r = room();
        r.play = r
            .decide_control("a", Control::Pause { time: Some(5.0) }, 1_000)
            .unwrap();
        // Play decided at 1 000, taking effect at 1 300: the room waits until then.
        r.play = r
            .decide_control("a", Control::Play { time: None }, 1_300)
            .unwrap();
        assert_eq!(r.play.position_at(1_200), 5.0);
        assert_eq!(r.play.position_at(2_300), 6.0);
        // A new rate carries on from where the room is when it takes effect.
        r.play = r
            .decide_control("a", Control::SetRate { rate: 2.0 }, 2_300)
            .unwrap();
        assert_eq!((r.play.time, r.play.rate), (6.0, 2.0));
        assert_eq!(r.play.position_at(3_300), 8.0);
        // Play while playing, effective later, continues the timeline without a jump.
        let next = r.play.after(Control::Play { time: None }, 4_300);
        assert_eq!(next.time, r.play.position_at(4_300));
        let snap = next.snapshot(4_000);
        assert_eq!((snap.current_time, snap.start_at), (10.0, 4_300));
        assert_eq!(next.snapshot(5_000).start_at, 5_000, "a past start is now");
    }

    #[test]
    fn only_starts_are_scheduled_ahead() {
        let ahead: Vec<_> = CommandKind::ALL
            .into_iter()
            .filter(|k| k.starts_playback())
            .collect();
        assert_eq!(
            ahead,
            [
                CommandKind::TrackChange,
                CommandKind::Play,
                CommandKind::Seek
            ]
        );
        for kind in CommandKind::ALL {
            assert_eq!(CommandKind::from_event(kind.event()), Some(kind));
        }
    }

    #[test]
    fn snapshot_carries_the_seed_fields() {
        let r = room();
        let v = serde_json::to_value(r.play.snapshot(2_000)).unwrap();
        assert_eq!(
            v,
            json!({"current_track": {"name": "song"}, "is_playing": true,
                   "current_time": 11.0, "server_time": 2_000,
                   "start_at": 2_000, "playback_rate": 1.0})
        );
    }
}
