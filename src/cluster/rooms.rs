//! Rooms in Redis: the operations the room service runs while Redis is up, the [`Fact`]
//! every change publishes, and the sweeping of dead instances' members.
//!
//! Redis is the authority while it is up: a script decides (is this the host? does the room
//! exist? who takes over?) and returns the resulting fact, which the service applies to its
//! local mirror and turns into emits for its own members. Other instances receive the same
//! fact through the subscription and do likewise.

use redis::Value as RedisValue;
use serde::Deserialize;
use serde_json::Value;

use super::{Backplane, ClusterError, Result, key, scripts};
use crate::rooms::Rooms;
use crate::rooms::model::{PlayState, RoomId};

/// The state of a room after a change, as published by the scripts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Fact {
    /// Instance that made the change.
    #[serde(rename = "o")]
    pub origin: String,
    /// Room key.
    #[serde(rename = "r")]
    pub room: String,
    /// Room id as its creator wrote it.
    #[serde(default)]
    pub id: Value,
    /// Version, from a counter shared by all rooms: newer facts have larger versions.
    #[serde(rename = "v")]
    pub version: u64,
    /// Members in all instances.
    #[serde(rename = "c", default)]
    pub count: usize,
    #[serde(rename = "h", default)]
    pub host: String,
    /// Since when the host has held the role (Unix ms).
    #[serde(rename = "hs", default)]
    pub host_since: u64,
    /// What caused it: a host command's event name, `room_users` (membership),
    /// `reconcile`, or `deleted`.
    #[serde(rename = "e")]
    pub event: String,
    /// The member who caused it ("" if none).
    #[serde(rename = "x", default)]
    pub sender: String,
    #[serde(rename = "tr", default)]
    pub track: Value,
    #[serde(rename = "p", default)]
    pub playing: u8,
    #[serde(rename = "t", default)]
    pub time: f64,
    #[serde(rename = "u", default)]
    pub updated_at: u64,
    #[serde(rename = "cr", default)]
    pub created_at: u64,
}

impl Fact {
    pub fn is_deleted(&self) -> bool {
        self.event == "deleted"
    }

    pub fn play(&self) -> PlayState {
        PlayState {
            track: self.track.clone(),
            is_playing: self.playing == 1,
            time: self.time,
            updated_at: self.updated_at,
        }
    }

    pub fn room_id(&self) -> RoomId {
        RoomId {
            key: self.room.clone(),
            raw: self.id.clone(),
        }
    }
}

/// What a script answered.
#[derive(Debug)]
pub enum Outcome {
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
        room: key(&format!("room:{room}")),
        members: key(&format!("room:{room}:m")),
        owners: key(&format!("room:{room}:o")),
        rooms: key("rooms"),
        seq: key("seq"),
    }
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
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
        .arg(json(&room));
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

pub async fn create(
    bp: &Backplane,
    room: &RoomId,
    member: &str,
    track: &Value,
    time: f64,
    now: u64,
) -> Result<Outcome> {
    let args = vec![
        room.key.clone(),
        member.to_owned(),
        bp.instance(),
        json(&room.raw),
        json(track),
        json(&time),
        now.to_string(),
        Backplane::channel_rooms(),
    ];
    run(bp, &scripts::CREATE, &room.key, args).await
}

pub async fn join(bp: &Backplane, room: &str, member: &str) -> Result<Outcome> {
    let args = vec![member.to_owned(), bp.instance(), Backplane::channel_rooms()];
    run(bp, &scripts::JOIN, room, args).await
}

/// Removes `member` at `now`; with `owner`, only if that instance still owns it (sweeping).
pub async fn leave(
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
        Backplane::channel_rooms(),
    ];
    run(bp, &scripts::LEAVE, room, args).await
}

/// A host command: `time` absent means "the current position"; `track` for track_change.
pub async fn control(
    bp: &Backplane,
    room: &str,
    member: &str,
    event: &str,
    time: Option<f64>,
    track: Option<&Value>,
    now: u64,
) -> Result<Outcome> {
    let args = vec![
        member.to_owned(),
        event.to_owned(),
        time.map(|t| json(&t)).unwrap_or_default(),
        track.map(json).unwrap_or_default(),
        now.to_string(),
        Backplane::channel_rooms(),
    ];
    run(bp, &scripts::CONTROL, room, args).await
}

/// This instance's view of a room, merged into the shared one after an outage.
pub struct LocalView<'a> {
    pub id: &'a RoomId,
    pub created_at: u64,
    pub play: &'a PlayState,
    pub host: &'a str,
    pub host_since: u64,
    pub members: &'a [String],
}

pub async fn reconcile(bp: &Backplane, view: LocalView<'_>) -> Result<Outcome> {
    let mut args = vec![
        view.id.key.clone(),
        bp.instance(),
        format!("{}.", bp.base()),
        json(&view.id.raw),
        view.created_at.to_string(),
        json(&view.play.track),
        if view.play.is_playing { "1" } else { "0" }.to_owned(),
        json(&view.play.time),
        view.play.updated_at.to_string(),
        view.host.to_owned(),
        view.host_since.to_string(),
        crate::clock::now_ms().to_string(),
        Backplane::channel_rooms(),
    ];
    args.extend(view.members.iter().cloned());
    run(bp, &scripts::RECONCILE, &view.id.key, args).await
}

/// A room as stored: its fact-shaped state, without changing anything.
pub async fn read(bp: &Backplane, room: &str) -> Result<Option<Fact>> {
    let keys = room_keys(room);
    let (fields, count): (std::collections::HashMap<String, String>, usize) = bp
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

fn fact_from_hash(
    room: &str,
    fields: &std::collections::HashMap<String, String>,
    count: usize,
) -> Option<Fact> {
    if fields.is_empty() || count == 0 {
        return None;
    }
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    let parse = |k: &str| serde_json::from_str::<Value>(get(k)).unwrap_or(Value::Null);
    Some(Fact {
        origin: String::new(),
        room: room.to_owned(),
        id: parse("id"),
        version: get("v").parse().unwrap_or(0),
        count,
        host: get("host").to_owned(),
        host_since: get("since").parse().unwrap_or(0),
        event: "read".into(),
        sender: String::new(),
        track: parse("track"),
        playing: get("playing").parse().unwrap_or(0),
        time: get("time").parse().unwrap_or(0.0),
        updated_at: get("upd").parse().unwrap_or(0),
        created_at: get("created").parse().unwrap_or(0),
    })
}

/// The keys of every shared room.
async fn room_keys_all(bp: &Backplane) -> Result<Vec<String>> {
    let rooms_key = key("rooms");
    bp.call_up(|mut c| async move { redis::AsyncCommands::smembers(&mut c, &rooms_key).await })
        .await
}

/// Every room, as stored.
pub async fn list(bp: &Backplane) -> Result<Vec<Fact>> {
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
        let fields: std::collections::HashMap<String, String> =
            redis::from_redis_value_ref(fields)?;
        let count: usize = redis::from_redis_value_ref(count)?;
        if let Some(f) = fact_from_hash(k, &fields, count) {
            facts.push(f);
        }
    }
    Ok(facts)
}

/// Number of rooms across all instances.
pub async fn count(bp: &Backplane) -> Result<usize> {
    let rooms_key = key("rooms");
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
    let owners: Vec<std::collections::HashMap<String, String>> = bp
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

/// Removes the members of instances whose liveness key expired (crashed, or cut off for
/// longer than the TTL). One instance sweeps a given dead instance at a time.
pub async fn sweep_dead_instances(bp: &Backplane, rooms: &Rooms) -> Result<()> {
    let instances_key = key("instances");
    let instances: Vec<String> = bp
        .call_up(
            |mut c| async move { redis::AsyncCommands::smembers(&mut c, &instances_key).await },
        )
        .await?;
    let me = bp.instance();
    for dead in instances.into_iter().filter(|i| *i != me) {
        let alive_key = key(&format!("alive:{dead}"));
        let alive: bool = bp
            .call_up(|mut c| async move { redis::AsyncCommands::exists(&mut c, &alive_key).await })
            .await?;
        if alive {
            continue;
        }
        let lock = key(&format!("sweep:{dead}"));
        let me2 = me.clone();
        let got_lock: bool = bp
            .call_up(|mut c| async move {
                redis::cmd("SET")
                    .arg(&lock)
                    .arg(&me2)
                    .arg("NX")
                    .arg("PX")
                    .arg(10_000)
                    .query_async::<Option<String>>(&mut c)
                    .await
                    .map(|r| r.is_some())
            })
            .await?;
        if !got_lock {
            continue;
        }
        let members = owned_members(bp, |owner| owner == dead).await?;
        tracing::info!(instance = %dead, members = members.len(), "sweeping a dead instance");
        for (room, member, owner) in members {
            if let Outcome::Done(fact) =
                leave(bp, &room, &member, Some(&owner), crate::clock::now_ms()).await?
            {
                rooms.apply_remote(fact).await;
            }
        }
        let instances_key = key("instances");
        bp.call_up(|mut c| async move {
            redis::AsyncCommands::srem::<_, _, ()>(&mut c, &instances_key, &dead).await
        })
        .await?;
    }
    Ok(())
}

/// After an outage: members this process registered (under any epoch) that are no longer
/// connected here are removed from the shared rooms.
pub async fn release_stale_members(bp: &Backplane, rooms: &Rooms) -> Result<()> {
    let base = format!("{}.", bp.base());
    let local = rooms.local_members().await;
    for (room, member, owner) in owned_members(bp, |o| o.starts_with(&base)).await? {
        if local.contains(&member) {
            continue;
        }
        tracing::debug!(%room, %member, "releasing a member that left during the outage");
        if let Outcome::Done(fact) =
            leave(bp, &room, &member, Some(&owner), crate::clock::now_ms()).await?
        {
            rooms.apply_remote(fact).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_parse_from_the_script_output() {
        let raw = r#"{"o":"abc.1","r":"room 1","id":42,"v":7,"c":2,"h":"sid1","e":"play","x":"sid1","tr":{"name":"t"},"p":1,"t":12.5,"u":1000,"cr":900}"#;
        let f: Fact = serde_json::from_str(raw).unwrap();
        assert_eq!(f.room, "room 1");
        assert_eq!(f.id, serde_json::json!(42));
        assert_eq!(f.count, 2);
        assert!(f.play().is_playing);
        assert_eq!(f.play().position_at(2000), 13.5);
        let deleted: Fact =
            serde_json::from_str(r#"{"o":"abc.1","r":"x","e":"deleted","v":0}"#).unwrap();
        assert!(deleted.is_deleted());
    }
}
