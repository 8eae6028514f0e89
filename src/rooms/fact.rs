//! The facts of shared rooms: the state a Redis script publishes after each change (a
//! [`Fact`]), read back from the channel or from the stored hash, and what a fact changes in
//! this instance's mirror of the room ([`Fact::change`]), so that it is applied like a local
//! decision.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::access::Secret;
use super::model::{Cause, Change, CommandKind, MemberId, PlayState, RoomId, RosterChange};
use super::registry::Entry;
use super::room::{Room, Settings};
use super::roster::{ControlMode, Member, MemberView, Role};
use super::views::{ClientRoom, Parts};

/// The state of a room after a change, as the scripts publish it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "RawFact")]
pub(super) struct Fact {
    /// The instance that made the change.
    pub origin: String,
    /// Room key.
    pub room: String,
    /// Room id as its creator wrote it.
    pub id: Value,
    /// Version, from a counter shared by all rooms: newer facts have larger versions.
    pub version: u64,
    /// Members in all instances.
    pub count: usize,
    pub host: MemberId,
    /// Since when the host has held the role (Unix ms).
    pub host_since: u64,
    /// What caused it: a host command's event name, `room_users` (membership), `roster`
    /// (a role), `host_changed`, `waiting` / `started` (a wait for ready members),
    /// `replaced` (a member resumed), `reconcile`, `read` (not a change), or `deleted`.
    pub event: String,
    /// The member who caused it ("" if none).
    pub sender: MemberId,
    pub play: PlayState,
    pub created_at: u64,
    pub settings: Settings,
    /// The members (rooms of up to 100 members that list them), when the fact lists them.
    pub members: Option<Vec<MemberView>>,
    /// A start waiting for members: who it waits for, and until when.
    pub wait: Option<(Vec<MemberId>, u64)>,
}

/// A fact as published: short keys, to keep every message small.
#[derive(Deserialize)]
struct RawFact {
    #[serde(rename = "o", default)]
    origin: String,
    #[serde(rename = "r")]
    room: String,
    #[serde(default)]
    id: Value,
    #[serde(rename = "v")]
    version: u64,
    #[serde(rename = "c", default)]
    count: usize,
    #[serde(rename = "h", default)]
    host: String,
    #[serde(rename = "hs", default)]
    host_since: u64,
    #[serde(rename = "e")]
    event: String,
    #[serde(rename = "x", default)]
    sender: String,
    #[serde(rename = "tr", default)]
    track: Value,
    #[serde(rename = "p", default)]
    playing: u8,
    #[serde(rename = "t", default)]
    time: f64,
    #[serde(rename = "u", default)]
    start_at: u64,
    #[serde(rename = "rt", default = "normal_rate")]
    rate: f64,
    #[serde(rename = "cr", default)]
    created_at: u64,
    #[serde(default)]
    ctl: String,
    #[serde(default)]
    wfr: u8,
    #[serde(rename = "pr", default)]
    protected: u8,
    #[serde(rename = "m", default)]
    members: Option<Vec<RawMember>>,
    #[serde(rename = "w", default)]
    wait: Option<RawWait>,
}

#[derive(Deserialize)]
struct RawMember {
    member_id: String,
    #[serde(default)]
    name: Option<String>,
    role: String,
    #[serde(default)]
    away: bool,
    #[serde(default)]
    ready: bool,
}

#[derive(Deserialize)]
struct RawWait {
    #[serde(rename = "for", default)]
    waiting_for: Vec<String>,
    #[serde(default)]
    dl: u64,
}

fn normal_rate() -> f64 {
    1.0
}

fn role_name(role: &str) -> &'static str {
    match role {
        "host" => "host",
        "cohost" => "cohost",
        _ => "member",
    }
}

impl From<RawFact> for Fact {
    fn from(raw: RawFact) -> Self {
        Fact {
            origin: raw.origin,
            room: raw.room,
            id: raw.id,
            version: raw.version,
            count: raw.count,
            host: MemberId::from(raw.host),
            host_since: raw.host_since,
            event: raw.event,
            sender: MemberId::from(raw.sender),
            play: PlayState {
                track: Arc::new(raw.track),
                is_playing: raw.playing == 1,
                time: raw.time,
                start_at: raw.start_at,
                rate: raw.rate,
            },
            created_at: raw.created_at,
            settings: Settings {
                wait_for_ready: raw.wfr == 1,
                control: if raw.ctl == "everyone" {
                    ControlMode::Everyone
                } else {
                    ControlMode::Host
                },
                // Only the protection is published, never the hash.
                password: None,
                lists_members: raw.members.is_some(),
            },
            members: raw.members.map(|list| {
                list.into_iter()
                    .map(|m| MemberView {
                        member_id: MemberId::from(m.member_id),
                        name: m.name.filter(|n| !n.is_empty()).map(Arc::from),
                        role: role_name(&m.role),
                        away: m.away,
                        ready: m.ready,
                    })
                    .collect()
            }),
            wait: raw.wait.map(|w| {
                let members = w.waiting_for.into_iter().map(MemberId::from).collect();
                (members, w.dl)
            }),
        }
        .protected(raw.protected == 1)
    }
}

impl Fact {
    /// Marks a fact of a protected room (the hash itself stays in Redis).
    fn protected(mut self, protected: bool) -> Self {
        self.settings.password = protected.then(Secret::placeholder);
        self
    }

    pub fn is_deleted(&self) -> bool {
        self.event == "deleted"
    }

    pub fn room_id(&self) -> RoomId {
        RoomId {
            key: self.room.clone(),
            raw: self.id.clone(),
        }
    }

    pub fn parts(&self) -> Parts<'_> {
        Parts {
            id: &self.id,
            host: &self.host,
            count: self.count,
            created_at: self.created_at,
            play: &self.play,
            protected: self.settings.password.is_some(),
        }
    }

    /// `room_joined` / `room_state` from the shared state.
    pub fn client_view(&self, asked_as: &Value, now: u64, member: bool) -> ClientRoom {
        let mut view = self.parts().for_client(asked_as, now, member);
        if member {
            view.members = self.members.clone();
        }
        view
    }

    /// A mirror of the room, before any member of this instance is in it.
    pub fn mirror(&self) -> Room {
        Room::shared(
            self.room_id(),
            self.created_at,
            self.host.clone(),
            self.host_since,
            self.play.clone(),
        )
        .with_settings(self.settings.clone())
    }

    /// The record of `member` as the fact lists it.
    pub fn roster_record(&self, member: &MemberId) -> Option<Member> {
        let view = self
            .members
            .as_ref()?
            .iter()
            .find(|m| m.member_id == *member)?;
        Some(Member {
            role: if view.role == "cohost" {
                Role::Cohost
            } else {
                Role::Member
            },
            ready: view.ready,
            ..Member::new(member.clone(), view.name.clone())
        })
    }

    /// The deadline of a start that waits for members, if one waits.
    pub fn wait_deadline(&self) -> Option<u64> {
        self.wait.as_ref().map(|(_, deadline)| *deadline)
    }

    /// What this fact changes in `entry` (this instance's mirror of the room): the parts
    /// that differ, and why. `None` if the entry already has this fact or a newer one.
    pub fn change(&self, entry: &Entry) -> Option<Change> {
        if self.version <= entry.version {
            return None;
        }
        let cause = match CommandKind::from_event(&self.event) {
            Some(kind) => Cause::Command {
                kind,
                by: self.sender.clone(),
            },
            None if matches!(
                self.event.as_str(),
                "room_users" | "roster" | "host_changed"
            ) =>
            {
                Cause::Membership
            }
            None => Cause::Resync,
        };
        // A command is relayed even when it left the state as it was, and so is a start
        // that waited for members.
        let relay = matches!(cause, Cause::Command { .. })
            || self.event == "started"
            || entry.room.play != self.play;
        let roster = match self.event.as_str() {
            "room_users" | "roster" | "reconcile" => RosterChange::Listed(self.members.clone()),
            _ => RosterChange::Unchanged,
        };
        let waiting = match self.event.as_str() {
            "started" => Some(Vec::new()),
            _ => self.wait.as_ref().map(|(members, _)| members.clone()),
        }
        .filter(|_| self.event != "replaced");
        Some(Change {
            cause,
            count: (entry.count != self.count).then_some(self.count),
            host: (*entry.room.host_id() != self.host)
                .then(|| (self.host.clone(), self.host_since)),
            play: relay.then(|| self.play.clone()),
            roster,
            waiting,
        })
    }
}

/// A room as stored, with its password's hash: its fact-shaped state, without changing
/// anything.
pub(super) struct Stored {
    pub fact: Fact,
    pub password: Option<Secret>,
}

impl std::ops::Deref for Stored {
    type Target = Fact;
    fn deref(&self) -> &Fact {
        &self.fact
    }
}

pub(super) fn stored_from_hash(
    room: &str,
    fields: &HashMap<String, String>,
    count: usize,
) -> Option<Stored> {
    if fields.is_empty() || count == 0 {
        return None;
    }
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    let parse = |k: &str| serde_json::from_str::<Value>(get(k)).unwrap_or(Value::Null);
    let password = Secret::from_stored(get("pw"));
    let fact = Fact {
        origin: String::new(),
        room: room.to_owned(),
        id: parse("id"),
        version: get("v").parse().unwrap_or(0),
        count,
        host: MemberId::from(get("host")),
        host_since: get("since").parse().unwrap_or(0),
        event: "read".into(),
        sender: MemberId::from(""),
        play: PlayState {
            track: Arc::new(parse("track")),
            is_playing: get("playing") == "1",
            time: get("time").parse().unwrap_or(0.0),
            start_at: get("upd").parse().unwrap_or(0),
            rate: get("rate").parse().unwrap_or(1.0),
        },
        created_at: get("created").parse().unwrap_or(0),
        settings: Settings {
            wait_for_ready: get("wfr") == "1",
            control: if get("ctl") == "everyone" {
                ControlMode::Everyone
            } else {
                ControlMode::Host
            },
            password: password.clone(),
            lists_members: get("lists") == "1",
        },
        members: None,
        wait: None,
    };
    Some(Stored { fact, password })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(raw: &str) -> Fact {
        serde_json::from_str(raw).unwrap()
    }

    #[test]
    fn facts_parse_from_the_script_output() {
        let f = fact(
            r#"{"o":"abc.1","r":"room 1","id":42,"v":7,"c":2,"h":"sid1","e":"play","x":"sid1","tr":{"name":"t"},"p":1,"t":12.5,"u":1000,"cr":900}"#,
        );
        assert_eq!(f.room, "room 1");
        assert_eq!(f.id, serde_json::json!(42));
        assert_eq!(f.count, 2);
        assert!(f.play.is_playing);
        assert_eq!(f.play.position_at(2000), 13.5);
        let deleted = fact(r#"{"o":"abc.1","r":"x","e":"deleted","v":0}"#);
        assert!(deleted.is_deleted());
        let grouped = fact(
            r#"{"r":"g","v":1,"e":"room_users","ctl":"everyone","wfr":1,"pr":1,"m":[{"member_id":"a","name":"Ann","role":"host","away":false,"ready":true}],"w":{"for":["a"],"dl":99}}"#,
        );
        assert_eq!(grouped.settings.control, ControlMode::Everyone);
        assert!(grouped.settings.wait_for_ready);
        assert!(grouped.parts().protected);
        assert_eq!(grouped.members.as_ref().map(Vec::len), Some(1));
        assert_eq!(grouped.wait_deadline(), Some(99));
        assert_eq!(
            grouped.roster_record(&"a".into()).map(|m| m.name),
            Some(Some(Arc::from("Ann")))
        );
    }

    #[test]
    fn a_fact_changes_only_what_differs_from_the_mirror() {
        let mirror = fact(
            r#"{"r":"r","id":"r","v":5,"c":2,"h":"a","hs":1,"e":"room_users","x":"b","tr":null,"p":1,"t":0,"u":100,"cr":100}"#,
        );
        let mut entry = Entry::new(mirror.mirror());
        entry.count = 2;
        entry.version = 5;
        assert_eq!(mirror.change(&entry), None, "an old fact changes nothing");

        let play = fact(
            r#"{"r":"r","id":"r","v":6,"c":2,"h":"a","hs":1,"e":"seek","x":"a","tr":null,"p":1,"t":30,"u":200,"cr":100}"#,
        );
        let change = play.change(&entry).unwrap();
        assert_eq!(
            change.cause,
            Cause::Command {
                kind: CommandKind::Seek,
                by: "a".into()
            }
        );
        assert_eq!((change.count, change.host), (None, None));
        assert_eq!(change.play.map(|p| p.time), Some(30.0));
        assert_eq!(change.roster, RosterChange::Unchanged);

        let handover = fact(
            r#"{"r":"r","id":"r","v":7,"c":1,"h":"b","hs":300,"e":"room_users","x":"a","tr":null,"p":1,"t":0,"u":100,"cr":100}"#,
        );
        let change = handover.change(&entry).unwrap();
        assert_eq!(change.cause, Cause::Membership);
        assert_eq!(change.count, Some(1));
        assert_eq!(change.host, Some(("b".into(), 300)));
        assert_eq!(change.play, None);
        assert_eq!(change.roster, RosterChange::Listed(None));
    }
}
