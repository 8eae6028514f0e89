//! The shared decision: rooms in Redis. While Redis is up, a script ([`super::scripts`])
//! decides each change atomically (is this the host? does the room exist? who takes over?)
//! and publishes the room's resulting [`Fact`]. A fact becomes a [`Change`] against this
//! instance's mirror of the room ([`Fact::change`]) and is applied like a local decision.
//! Other instances receive the same fact through the subscription and do likewise.
//!
//! Also here: reading shared rooms for the views, and the sweeps that find members a dead
//! instance or an outage left behind; they return the facts of what they removed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use redis::Value as RedisValue;
use serde::Deserialize;
use serde_json::Value;

use super::model::{Cause, Change, CommandKind, Control, MemberId, PlayState, RoomId};
use super::registry::Entry;
use super::scripts;
use super::views::Parts;
use crate::cluster::{self, Backplane, ClusterError, Result};

/// The channel every room fact is published on.
pub(super) fn channel() -> String {
    cluster::key("rooms")
}

/// The state of a room after a change, as the scripts publish it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(from = "RawFact")]
pub(super) struct Fact {
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
    /// What caused it: a host command's event name, `room_users` (membership),
    /// `reconcile`, `read` (not a change), or `deleted`.
    pub event: String,
    /// The member who caused it ("" if none).
    pub sender: MemberId,
    pub play: PlayState,
    pub created_at: u64,
}

/// A fact as published: short keys, to keep every message small.
#[derive(Deserialize)]
struct RawFact {
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
}

fn normal_rate() -> f64 {
    1.0
}

impl From<RawFact> for Fact {
    fn from(raw: RawFact) -> Self {
        Fact {
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
        }
    }
}

impl Fact {
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
        }
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
            None if self.event == "room_users" => Cause::Membership,
            None => Cause::Resync,
        };
        // A command is relayed even when it left the state as it was.
        let relay = matches!(cause, Cause::Command { .. }) || entry.room.play != self.play;
        Some(Change {
            cause,
            count: (entry.count != self.count).then_some(self.count),
            host: (*entry.room.host_id() != self.host)
                .then(|| (self.host.clone(), self.host_since)),
            play: relay.then(|| self.play.clone()),
        })
    }
}

/// What a script answered.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The change was made; here is the room after it.
    Done(Fact),
    /// Nothing to change (`already` a member): the room as it is.
    Unchanged(Fact),
    /// The room was deleted (its last member left).
    Deleted,
    /// A refusal: `exists`, `not_found`, `not_host`, `not_member`.
    Refused(String),
}

struct RoomKeys {
    room: String,
    members: String,
    owners: String,
    rooms: String,
    seq: String,
}

fn room_keys(room: &str) -> RoomKeys {
    RoomKeys {
        room: cluster::key(&format!("room:{room}")),
        members: cluster::key(&format!("room:{room}:m")),
        owners: cluster::key(&format!("room:{room}:o")),
        rooms: cluster::key("rooms"),
        seq: cluster::key("seq"),
    }
}

/// A number as JSON text (non-finite numbers cannot reach here: validation refuses them).
fn json_number(n: f64) -> String {
    Value::from(n).to_string()
}

/// Runs a room script with the standard keys and the origin/key JSON first in ARGV.
async fn run(
    bp: &Backplane,
    script: &redis::Script,
    room: &str,
    args: Vec<String>,
) -> Result<Outcome> {
    let keys = room_keys(room);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(&keys.room)
        .key(&keys.members)
        .key(&keys.owners)
        .key(&keys.rooms)
        .key(&keys.seq)
        .arg(bp.instance())
        .arg(Value::from(room).to_string());
    for a in &args {
        invocation.arg(a);
    }
    let reply: Vec<RedisValue> = bp
        .call_up(|mut c| async move { invocation.invoke_async(&mut c).await })
        .await?;
    parse_outcome(&reply)
}

fn parse_outcome(reply: &[RedisValue]) -> Result<Outcome> {
    let status: String = reply
        .first()
        .map(redis::from_redis_value_ref)
        .transpose()?
        .ok_or_else(|| ClusterError::Protocol("empty script reply".into()))?;
    let fact = || -> Result<Fact> {
        let raw: Vec<u8> = reply
            .get(1)
            .map(redis::from_redis_value_ref)
            .transpose()?
            .ok_or_else(|| ClusterError::Protocol(format!("{status} without a fact")))?;
        serde_json::from_slice(&raw).map_err(|e| ClusterError::Protocol(e.to_string()))
    };
    Ok(match status.as_str() {
        "ok" => Outcome::Done(fact()?),
        "already" => Outcome::Unchanged(fact()?),
        "deleted" => Outcome::Deleted,
        _ => Outcome::Refused(status),
    })
}

pub(super) async fn create(
    bp: &Backplane,
    room: &RoomId,
    member: &MemberId,
    track: &Value,
    time: f64,
    now: u64,
) -> Result<Outcome> {
    let args = vec![
        room.key.clone(),
        member.to_string(),
        bp.instance(),
        room.raw.to_string(),
        track.to_string(),
        json_number(time),
        now.to_string(),
        channel(),
    ];
    run(bp, &scripts::CREATE, &room.key, args).await
}

pub(super) async fn join(bp: &Backplane, room: &str, member: &MemberId) -> Result<Outcome> {
    let args = vec![member.to_string(), bp.instance(), channel()];
    run(bp, &scripts::JOIN, room, args).await
}

/// Removes `member` at `now`; with `owner`, only if that instance still owns it (sweeping).
pub(super) async fn leave(
    bp: &Backplane,
    room: &str,
    member: &str,
    owner: Option<&str>,
    now: u64,
) -> Result<Outcome> {
    let args = vec![
        room.to_owned(),
        member.to_owned(),
        owner.unwrap_or_default().to_owned(),
        now.to_string(),
        channel(),
    ];
    run(bp, &scripts::LEAVE, room, args).await
}

/// A host command decided at `now`, taking effect at `start`.
pub(super) async fn control(
    bp: &Backplane,
    room: &str,
    member: &MemberId,
    cmd: &Control,
    now: u64,
    start: u64,
) -> Result<Outcome> {
    let (time, track, rate) = match cmd {
        Control::TrackChange { track } => (None, Some(track), None),
        Control::Play { time } | Control::Pause { time } => (*time, None, None),
        Control::Seek { time } | Control::SyncProgress { time } => (Some(*time), None, None),
        Control::SetRate { rate } => (None, None, Some(*rate)),
    };
    let args = vec![
        member.to_string(),
        cmd.kind().event().to_owned(),
        time.map(json_number).unwrap_or_default(),
        track.map(Value::to_string).unwrap_or_default(),
        rate.map(json_number).unwrap_or_default(),
        now.to_string(),
        start.to_string(),
        channel(),
    ];
    run(bp, &scripts::CONTROL, room, args).await
}

/// Merges this instance's view of a room (`entry`) into the shared one after an outage.
pub(super) async fn reconcile(bp: &Backplane, entry: &Entry, now: u64) -> Result<Outcome> {
    let room = &entry.room;
    let play = &room.play;
    let mut args = vec![
        room.id.key.clone(),
        bp.instance(),
        format!("{}.", bp.base()),
        room.id.raw.to_string(),
        room.created_at.to_string(),
        play.track.to_string(),
        if play.is_playing { "1" } else { "0" }.to_owned(),
        json_number(play.time),
        play.start_at.to_string(),
        json_number(play.rate),
        room.host().to_owned(),
        room.host_since().to_string(),
        now.to_string(),
        channel(),
    ];
    args.extend(room.members().iter().map(MemberId::to_string));
    run(bp, &scripts::RECONCILE, &room.id.key, args).await
}

/// A room as stored: its fact-shaped state, without changing anything.
pub(super) async fn read(bp: &Backplane, room: &str) -> Result<Option<Fact>> {
    let keys = room_keys(room);
    let (fields, count): (HashMap<String, String>, usize) = bp
        .call_up(|mut c| async move {
            redis::pipe()
                .hgetall(&keys.room)
                .zcard(&keys.members)
                .query_async(&mut c)
                .await
        })
        .await?;
    Ok(fact_from_hash(room, &fields, count))
}

fn fact_from_hash(room: &str, fields: &HashMap<String, String>, count: usize) -> Option<Fact> {
    if fields.is_empty() || count == 0 {
        return None;
    }
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    let parse = |k: &str| serde_json::from_str::<Value>(get(k)).unwrap_or(Value::Null);
    Some(Fact {
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
    })
}

/// The keys of every shared room.
async fn room_keys_all(bp: &Backplane) -> Result<Vec<String>> {
    let rooms_key = cluster::key("rooms");
    bp.call_up(|mut c| async move { redis::AsyncCommands::smembers(&mut c, &rooms_key).await })
        .await
}

/// Every room, as stored.
pub(super) async fn list(bp: &Backplane) -> Result<Vec<Fact>> {
    let keys = room_keys_all(bp).await?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for k in &keys {
        let rk = room_keys(k);
        pipe.hgetall(rk.room).zcard(rk.members);
    }
    let replies: Vec<RedisValue> = bp
        .call_up(|mut c| async move { pipe.query_async(&mut c).await })
        .await?;
    let mut facts = Vec::with_capacity(keys.len());
    for (k, pair) in keys.iter().zip(replies.chunks(2)) {
        let [fields, count] = pair else { continue };
        let fields: HashMap<String, String> = redis::from_redis_value_ref(fields)?;
        let count: usize = redis::from_redis_value_ref(count)?;
        if let Some(f) = fact_from_hash(k, &fields, count) {
            facts.push(f);
        }
    }
    Ok(facts)
}

/// Number of rooms across all instances.
pub(super) async fn count(bp: &Backplane) -> Result<usize> {
    let rooms_key = cluster::key("rooms");
    bp.call_up(|mut c| async move { redis::AsyncCommands::scard(&mut c, &rooms_key).await })
        .await
}

/// Members owned by instances matching `is_owner`, per room: `(room, member, owner)`.
async fn owned_members(
    bp: &Backplane,
    is_owner: impl Fn(&str) -> bool,
) -> Result<Vec<(String, String, String)>> {
    let keys = room_keys_all(bp).await?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.hgetall(room_keys(k).owners);
    }
    let owners: Vec<HashMap<String, String>> = bp
        .call_up(|mut c| async move { pipe.query_async(&mut c).await })
        .await?;
    let mut found = Vec::new();
    for (k, owners) in keys.iter().zip(owners) {
        for (member, owner) in owners {
            if is_owner(&owner) {
                found.push((k.clone(), member, owner));
            }
        }
    }
    Ok(found)
}

/// Removes the given members (each only if its owner still holds it); returns the facts of
/// what changed.
async fn remove_members(
    bp: &Backplane,
    members: Vec<(String, String, String)>,
    now: u64,
) -> Result<Vec<Fact>> {
    let mut facts = Vec::new();
    for (room, member, owner) in members {
        if let Outcome::Done(fact) = leave(bp, &room, &member, Some(&owner), now).await? {
            facts.push(fact);
        }
    }
    Ok(facts)
}

/// Removes every member the dead instance `dead` owned; returns the facts of what changed.
pub(super) async fn sweep_instance(bp: &Backplane, dead: &str, now: u64) -> Result<Vec<Fact>> {
    let members = owned_members(bp, |owner| owner == dead).await?;
    tracing::info!(instance = %dead, members = members.len(), "removing a dead instance's members");
    remove_members(bp, members, now).await
}

/// After an outage: members this process registered (under any epoch) that are not in
/// `connected` any more are removed. Returns the facts of what changed.
pub(super) async fn release_stale(
    bp: &Backplane,
    connected: &HashSet<MemberId>,
    now: u64,
) -> Result<Vec<Fact>> {
    let base = format!("{}.", bp.base());
    let stale: Vec<_> = owned_members(bp, |o| o.starts_with(&base))
        .await?
        .into_iter()
        .filter(|(_, member, _)| !connected.contains(&MemberId::from(member.as_str())))
        .collect();
    for (room, member, _) in &stale {
        tracing::debug!(%room, %member, "releasing a member that left during the outage");
    }
    remove_members(bp, stale, now).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::model::Room;

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
    }

    #[test]
    fn a_fact_changes_only_what_differs_from_the_mirror() {
        let mirror = fact(
            r#"{"r":"r","id":"r","v":5,"c":2,"h":"a","hs":1,"e":"room_users","x":"b","tr":null,"p":1,"t":0,"u":100,"cr":100}"#,
        );
        let mut entry = Entry::new(Room::shared(
            mirror.room_id(),
            mirror.created_at,
            mirror.host.clone(),
            mirror.host_since,
            mirror.play.clone(),
        ));
        entry.room.absorb(&mirror.change(&entry).unwrap());
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

        let handover = fact(
            r#"{"r":"r","id":"r","v":7,"c":1,"h":"b","hs":300,"e":"room_users","x":"a","tr":null,"p":1,"t":0,"u":100,"cr":100}"#,
        );
        let change = handover.change(&entry).unwrap();
        assert_eq!(change.cause, Cause::Membership);
        assert_eq!(change.count, Some(1));
        assert_eq!(change.host, Some(("b".into(), 300)));
        assert_eq!(change.play, None);
    }
}
