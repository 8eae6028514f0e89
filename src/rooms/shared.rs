//! The shared decision: rooms in Redis. While Redis is up, a script ([`super::scripts`])
//! decides each change atomically (is this the host? does the room exist? who takes over?)
//! and publishes the room's resulting [`Fact`] (see [`super::fact`]), which becomes a
//! `Change` against this instance's mirror of the room and is applied like a local decision.
//! Other instances receive the same fact through the subscription and do likewise.
//!
//! Also here: reading shared rooms for the views, finding a client's seat, and the sweeps
//! that find members a dead instance or an outage left behind; they return the facts of
//! what they removed.

use std::collections::{HashMap, HashSet};

use redis::Value as RedisValue;
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::{ClientKey, Secret};
use super::fact::stored_from_hash;
pub(super) use super::fact::{Fact, Stored};
use super::model::{Control, MemberId, RoomId};
use super::registry::Entry;
use super::room::Settings;
use super::roster::{ControlMode, Role};
use super::scripts;
use crate::cluster::{self, Backplane, ClusterError, Result};

/// The channel every room fact is published on.
pub(super) fn channel() -> String {
    cluster::key("rooms")
}

fn client_prefix() -> String {
    cluster::key("client:")
}

/// What a script answered.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The change was made; here is the room after it.
    Done(Fact),
    /// Nothing to change (`already` a member, `noted`): the room as it is, if known.
    Unchanged(Fact),
    /// Nothing to change, and no fact.
    Noted,
    /// The room was deleted (its last member left).
    Deleted,
    /// A refusal: `exists`, `not_found`, `not_host`, `not_member`, `room_full`,
    /// `too_many_rooms`.
    Refused(String),
}

/// Runs a room script on `room` with its arguments.
async fn run(bp: &Backplane, script: &redis::Script, room: &str, args: Value) -> Result<Outcome> {
    let keys = [
        cluster::key(&format!("room:{room}")),
        cluster::key(&format!("room:{room}:m")),
        cluster::key(&format!("room:{room}:o")),
        cluster::key("rooms"),
        cluster::key("seq"),
        cluster::key(&format!("room:{room}:i")),
    ];
    let mut invocation = script.prepare_invoke();
    for key in &keys {
        invocation.key(key);
    }
    invocation
        .arg(bp.instance())
        .arg(Value::from(room).to_string())
        .arg(args.to_string())
        .arg(channel());
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
        "noted" => Outcome::Noted,
        "deleted" => Outcome::Deleted,
        _ => Outcome::Refused(status),
    })
}

/// What `create_room` asks of the shared state.
pub(super) struct CreateArgs<'a> {
    pub room: &'a RoomId,
    pub member: &'a MemberId,
    pub name: Option<&'a str>,
    pub client: Option<&'a ClientKey>,
    pub track: &'a Value,
    pub time: f64,
    pub now: u64,
    pub settings: &'a Settings,
    pub max_rooms: usize,
}

pub(super) async fn create(bp: &Backplane, a: CreateArgs<'_>) -> Result<Outcome> {
    let args = json!({
        "key": a.room.key,
        "member": a.member,
        "name": a.name,
        "client": a.client.map(ClientKey::as_str),
        "client_prefix": client_prefix(),
        "instance": bp.instance(),
        "id": a.room.raw.to_string(),
        "track": a.track.to_string(),
        "time": Value::from(a.time).to_string(),
        "now": a.now,
        "ctl": match a.settings.control {
            ControlMode::Host => "host",
            ControlMode::Everyone => "everyone",
        },
        "wfr": if a.settings.wait_for_ready { "1" } else { "0" },
        "pw": a.settings.password.as_ref().map_or("", Secret::as_stored),
        "lists": a.settings.lists_members,
        "max_rooms": a.max_rooms,
    });
    run(bp, &scripts::CREATE, &a.room.key, args).await
}

/// What `join_room` asks of the shared state (the password is checked before).
pub(super) struct JoinArgs<'a> {
    pub room: &'a str,
    pub member: &'a MemberId,
    pub name: Option<&'a str>,
    pub client: Option<&'a ClientKey>,
    pub max_members: usize,
}

pub(super) async fn join(bp: &Backplane, a: JoinArgs<'_>) -> Result<Outcome> {
    let args = json!({
        "key": a.room,
        "member": a.member,
        "name": a.name,
        "client": a.client.map(ClientKey::as_str),
        "client_prefix": client_prefix(),
        "instance": bp.instance(),
        "max_members": a.max_members,
    });
    run(bp, &scripts::JOIN, a.room, args).await
}

/// Removes `member` at `now`; with `owner`, only if that instance still owns it; with
/// `expired_before`, only if it has been away since before then.
pub(super) async fn leave(
    bp: &Backplane,
    room: &str,
    member: &str,
    owner: Option<&str>,
    now: u64,
    expired_before: Option<u64>,
) -> Result<Outcome> {
    let args = json!({
        "key": room,
        "member": member,
        "owner": owner.unwrap_or_default(),
        "now": now,
        "client_prefix": client_prefix(),
        "expired_before": expired_before,
    });
    run(bp, &scripts::LEAVE, room, args).await
}

/// A playback command decided at `now`.
pub(super) struct ControlArgs<'a> {
    pub room: &'a str,
    pub member: &'a MemberId,
    pub cmd: &'a Control,
    pub now: u64,
    /// When it takes effect, in a room that does not wait for ready members.
    pub start: u64,
    /// In a room that waits: until when, and the provisional start.
    pub deadline: u64,
    pub start_waiting: u64,
}

pub(super) async fn control(bp: &Backplane, a: ControlArgs<'_>) -> Result<Outcome> {
    let (time, track, rate) = match a.cmd {
        Control::TrackChange { track } => (None, Some(track.to_string()), None),
        Control::Play { time } | Control::Pause { time } => (*time, None, None),
        Control::Seek { time } | Control::SyncProgress { time } => (Some(*time), None, None),
        Control::SetRate { rate } => (None, None, Some(*rate)),
    };
    let args = json!({
        "member": a.member,
        "event": a.cmd.kind().event(),
        "time": time,
        "track": track,
        "rate": rate,
        "now": a.now,
        "start": a.start,
        "deadline": a.deadline,
        "start_waiting": a.start_waiting,
    });
    run(bp, &scripts::CONTROL, a.room, args).await
}

pub(super) async fn transfer(
    bp: &Backplane,
    room: &str,
    member: &MemberId,
    to: &MemberId,
    now: u64,
) -> Result<Outcome> {
    let args = json!({"member": member, "to": to, "now": now});
    run(bp, &scripts::TRANSFER, room, args).await
}

pub(super) async fn set_role(
    bp: &Backplane,
    room: &str,
    member: &MemberId,
    target: &MemberId,
    role: Role,
) -> Result<Outcome> {
    let role = match role {
        Role::Cohost => "cohost",
        Role::Member => "member",
    };
    let args = json!({"member": member, "target": target, "role": role});
    run(bp, &scripts::SET_ROLE, room, args).await
}

pub(super) async fn ready(
    bp: &Backplane,
    room: &str,
    member: &MemberId,
    ready: bool,
    start_if_all: u64,
) -> Result<Outcome> {
    let args = json!({"member": member, "ready": ready, "start_if_all": start_if_all});
    run(bp, &scripts::READY, room, args).await
}

pub(super) async fn wait_end(bp: &Backplane, room: &str, now: u64) -> Result<Outcome> {
    run(bp, &scripts::WAIT_END, room, json!({ "now": now })).await
}

pub(super) async fn away(
    bp: &Backplane,
    room: &str,
    member: &MemberId,
    now: u64,
    start_if_all: u64,
) -> Result<Outcome> {
    let args = json!({"member": member, "now": now, "start_if_all": start_if_all});
    run(bp, &scripts::AWAY, room, args).await
}

/// `member`'s client is back on this instance.
pub(super) async fn resume(bp: &Backplane, room: &str, member: &MemberId) -> Result<Outcome> {
    let args = json!({"member": member, "instance": bp.instance()});
    run(bp, &scripts::RESUME, room, args).await
}

/// Where the client `key` sits: its room and member.
pub(super) async fn seat_of(bp: &Backplane, key: &ClientKey) -> Result<Option<(String, MemberId)>> {
    #[derive(Deserialize)]
    struct Seat {
        r: String,
        m: String,
    }
    let k = format!("{}{}", client_prefix(), key.as_str());
    let raw: Option<String> = bp
        .call_up(|mut c| async move { redis::AsyncCommands::get(&mut c, &k).await })
        .await?;
    Ok(raw
        .and_then(|raw| serde_json::from_str::<Seat>(&raw).ok())
        .map(|s| (s.r, MemberId::from(s.m))))
}

/// Merges this instance's view of a room (`entry`) into the shared one after an outage.
pub(super) async fn reconcile(bp: &Backplane, entry: &Entry, now: u64) -> Result<Outcome> {
    let room = &entry.room;
    let play = &room.play;
    let members: Vec<Value> = room
        .roster()
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "info": {
                    "n": m.name.as_deref().unwrap_or_default(),
                    "r": if m.role == Role::Cohost { "cohost" } else { "member" },
                    "a": m.away_since.unwrap_or(0),
                    "y": u8::from(m.ready),
                    "c": m.client.as_ref().map_or("", ClientKey::as_str),
                }
            })
        })
        .collect();
    let args = json!({
        "key": room.id.key,
        "instance": bp.instance(),
        "base": format!("{}.", bp.base()),
        "id": room.id.raw.to_string(),
        "created": room.created_at,
        "track": play.track.to_string(),
        "playing": if play.is_playing { "1" } else { "0" },
        "time": play.time,
        "upd": play.start_at,
        "rate": play.rate,
        "host": room.host(),
        "host_since": room.host_since(),
        "now": now,
        "ctl": match room.settings.control {
            ControlMode::Host => "host",
            ControlMode::Everyone => "everyone",
        },
        "wfr": if room.settings.wait_for_ready { "1" } else { "0" },
        "pw": room.settings.password.as_ref().map_or("", Secret::as_stored),
        "lists": room.settings.lists_members,
        "client_prefix": client_prefix(),
        "members": members,
    });
    run(bp, &scripts::RECONCILE, &room.id.key, args).await
}

/// A room as stored, without changing anything.
pub(super) async fn read(bp: &Backplane, room: &str) -> Result<Option<Stored>> {
    let key = cluster::key(&format!("room:{room}"));
    let members = cluster::key(&format!("room:{room}:m"));
    let (fields, count): (HashMap<String, String>, usize) = bp
        .call_up(|mut c| async move {
            redis::pipe()
                .hgetall(&key)
                .zcard(&members)
                .query_async(&mut c)
                .await
        })
        .await?;
    Ok(stored_from_hash(room, &fields, count))
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
        pipe.hgetall(cluster::key(&format!("room:{k}")))
            .zcard(cluster::key(&format!("room:{k}:m")));
    }
    let replies: Vec<RedisValue> = bp
        .call_up(|mut c| async move { pipe.query_async(&mut c).await })
        .await?;
    let mut facts = Vec::with_capacity(keys.len());
    for (k, pair) in keys.iter().zip(replies.chunks(2)) {
        let [fields, count] = pair else { continue };
        let fields: HashMap<String, String> = redis::from_redis_value_ref(fields)?;
        let count: usize = redis::from_redis_value_ref(count)?;
        if let Some(s) = stored_from_hash(k, &fields, count) {
            facts.push(s.fact);
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
        pipe.hgetall(cluster::key(&format!("room:{k}:o")));
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
        if let Outcome::Done(fact) = leave(bp, &room, &member, Some(&owner), now, None).await? {
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

/// After an outage: members this process registered (under any epoch) that it does not
/// hold any more are removed. Returns the facts of what changed.
pub(super) async fn release_stale(
    bp: &Backplane,
    held: &HashSet<MemberId>,
    now: u64,
) -> Result<Vec<Fact>> {
    let base = format!("{}.", bp.base());
    let stale: Vec<_> = owned_members(bp, |o| o.starts_with(&base))
        .await?
        .into_iter()
        .filter(|(_, member, _)| !held.contains(&MemberId::from(member.as_str())))
        .collect();
    for (room, member, _) in &stale {
        tracing::debug!(%room, %member, "releasing a member that left during the outage");
    }
    remove_members(bp, stale, now).await
}
