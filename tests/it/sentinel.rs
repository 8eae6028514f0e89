//! Redis Sentinel: two instances find the master through three sentinels and follow it
//! through a failover (SIGKILL of the master; an operator's `SENTINEL FAILOVER` of a live,
//! password-protected master), with room members, SSE streams and PUTs throughout. Plus: a
//! server that turns into a replica (READONLY) counts as down, and the flags themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::support::app::{TestApp, spawn_app};
use crate::support::redis::RedisServer;
use crate::support::sentinel::{Passwords, SentinelGroup, role};
use crate::support::sio::Sio;
use crate::support::sse::SseClient;
use crate::support::{eventually, eventually_within};

const WS: fn() -> Value = || json!({"transports": ["websocket"]});

/// The requirement: once the sentinels have promoted the replica, every instance works with
/// the new master within this.
const FOLLOW_WITHIN: Duration = Duration::from_secs(10);
/// Longest the sentinels may take to promote the replica. That is their business (about
/// 3-5 s with these settings), bounded only so that the test cannot hang.
const PROMOTION_WITHIN: Duration = Duration::from_secs(30);
/// Upper bound on the PUTs made through a failover (one every ~20 ms).
const MAX_PUTS: u64 = 3000;

async fn instance(group: &SentinelGroup) -> TestApp {
    let flags = group.flags();
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    spawn_app(&args).await
}

/// `Some` once `app` reports Redis connected under an instance id other than `old_id`, and
/// that id's liveness key is on `server`: it writes to that server. (A new id, because a
/// replica holds copies of the keys written to its master; the id changes with every
/// reconnection.)
async fn follows(app: &TestApp, server: &RedisServer, old_id: &str) -> Option<()> {
    let health: Value = app
        .http
        .get(app.url("/health"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    if health["redis_connected"] != json!(true) {
        return None;
    }
    let id = health["instance"].as_str()?.to_owned();
    if id == old_id {
        return None;
    }
    let mut conn = redis::Client::open(server.url())
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    let alive: bool = conn.exists(format!("playsync:alive:{id}")).await.ok()?;
    alive.then_some(())
}

/// When each event of a failover happened, counted from its start.
#[derive(Debug, Default)]
struct Timeline {
    /// The replica answers `ROLE` as a master.
    promoted: Option<Duration>,
    /// Two of the three sentinels name it.
    named: Option<Duration>,
    /// Each instance is connected to it (its liveness key is there).
    followed: [Option<Duration>; 2],
}

/// The instance id `app` reports now.
async fn instance_id(app: &TestApp) -> String {
    let (_, health) = app.get_json("/health").await;
    health["instance"].as_str().unwrap_or_default().to_owned()
}

/// Polls (every 20 ms, bounded) until the replica is promoted and both instances follow it.
/// `started` is when the failover began, `ids` the instances' ids before it.
async fn watch_failover(
    group: &SentinelGroup,
    apps: [&TestApp; 2],
    ids: [String; 2],
    started: Instant,
) -> Timeline {
    let mut t = Timeline::default();
    let new_port = group.replica.port;
    loop {
        let now = started.elapsed();
        if t.promoted.is_none() && role(&group.replica, "master").await.is_some() {
            t.promoted = Some(now);
        }
        if t.named.is_none() && group.agreed_master_port().await == Some(new_port) {
            t.named = Some(now);
        }
        for (i, app) in apps.iter().enumerate() {
            if t.followed[i].is_none() && follows(app, &group.replica, &ids[i]).await.is_some() {
                t.followed[i] = Some(now);
            }
        }
        if t.promoted.is_some() && t.named.is_some() && t.followed.iter().all(Option::is_some) {
            return t;
        }
        assert!(
            now < PROMOTION_WITHIN + FOLLOW_WITHIN,
            "no failover to the replica (port {new_port}) in time: {t:?}\n{}",
            group.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks the requirement on `t` and prints the figures.
fn report(what: &str, t: &Timeline) {
    let promoted = t.promoted.unwrap_or_default();
    let followed: Vec<Duration> = t.followed.iter().map(|f| f.unwrap_or_default()).collect();
    eprintln!(
        "{what}: replica promoted after {promoted:?}, named by the sentinels after {:?}, \
         instances following after {:?} and {:?} (all from the start of the failover)",
        t.named.unwrap_or_default(),
        followed[0],
        followed[1],
    );
    for f in followed {
        let after_promotion = f.saturating_sub(promoted);
        assert!(
            after_promotion < FOLLOW_WITHIN,
            "an instance followed the new master {after_promotion:?} after the promotion: {t:?}"
        );
    }
}

/// An acknowledged PUT.
#[derive(Debug)]
struct Ack {
    index: u64,
    timestamp: u64,
}

/// What [`put_continuously`] saw.
struct Writes {
    acks: Vec<Ack>,
    failures: Vec<String>,
    /// PUTs that took over 100 ms: (sent at, from the writer's start; took).
    slow: Vec<(Duration, Duration)>,
}

/// PUTs a playback position every ~20 ms, alternating between `bases`, until `stop` (at
/// most [`MAX_PUTS`], and for at most 90 s).
async fn put_continuously(bases: [String; 2], stop: Arc<AtomicBool>) -> Writes {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let origin = Instant::now();
    let deadline = origin + Duration::from_secs(90);
    let mut w = Writes {
        acks: Vec::new(),
        failures: Vec::new(),
        slow: Vec::new(),
    };
    for index in 0..MAX_PUTS {
        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
            break;
        }
        let base = &bases[(index % 2) as usize];
        let started = Instant::now();
        let sent = http
            .put(format!("{base}/api/playback-position"))
            .json(&json!({"lastPlayedIndex": index, "deviceId": format!("writer-{}", index % 2)}))
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status() == 200 => match resp.json::<Value>().await {
                Ok(body) => w.acks.push(Ack {
                    index,
                    timestamp: body["timestamp"].as_u64().unwrap_or_default(),
                }),
                Err(e) => w.failures.push(format!("PUT {index}: {e}")),
            },
            Ok(resp) => w.failures.push(format!("PUT {index}: {}", resp.status())),
            Err(e) => w.failures.push(format!("PUT {index}: {e}")),
        }
        if started.elapsed() > Duration::from_millis(100) {
            w.slow.push((started - origin, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w
}

async fn put(base: &str, path: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .put(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

/// Reads `stream` until the event whose id is `timestamp` (bounded), and returns its data.
async fn until_event(stream: &mut SseClient, timestamp: u64) -> Value {
    for _ in 0..(MAX_PUTS + 100) {
        let (event, data) = stream.next_json().await;
        let id: u64 = event.id.parse().expect("numeric SSE id");
        if id >= timestamp {
            assert_eq!(id, timestamp, "the stream skipped past the record: {data}");
            return data;
        }
    }
    panic!("no SSE event with id {timestamp}");
}

/// What two instances must agree on in `GET /rooms`.
fn rooms_view(rooms: &Value) -> Value {
    let mut list: Vec<Value> = rooms["rooms"]
        .as_array()
        .map(|rooms| {
            rooms
                .iter()
                .map(|r| json!([r["id"], r["host_id"], r["user_count"], r["created_at"]]))
                .collect()
        })
        .unwrap_or_default();
    list.sort_by_key(|r| r.to_string());
    json!({"count": rooms["count"], "rooms": list})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_instances_follow_the_master_through_a_failover() {
    let mut group = SentinelGroup::start().await;
    let (a, b) = (instance(&group).await, instance(&group).await);
    for app in [&a, &b] {
        eventually("the instance to use the master the sentinels name", || {
            follows(app, &group.master, "")
        })
        .await;
    }

    // A room across the instances, and a position stream on each.
    let sio = Sio::start().await;
    let host = sio.connect("host", &a.base(), WS()).await;
    host.call(
        "create_room",
        json!({"room_id": "ha", "track": {"name": "T"}}),
    )
    .await;
    let member = sio.connect("member", &b.base(), WS()).await;
    let joined = member.call("join_room", json!({"room_id": "ha"})).await;
    assert_eq!(joined["user_count"], json!(2), "{joined}");
    assert_eq!(joined["host_id"], json!(host.sid));
    let mut stream_a = SseClient::connect(&a.url("/api/events/playback"), None).await;
    let mut stream_b = SseClient::connect(&b.url("/api/events/playback"), None).await;

    // PUTs on both instances all through the failover.
    let stop = Arc::new(AtomicBool::new(false));
    let writes_from = Instant::now();
    let writer = tokio::spawn(put_continuously([a.base(), b.base()], stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ids = [instance_id(&a).await, instance_id(&b).await];
    let killed = Instant::now();
    let killed_after = killed - writes_from;
    group.master.kill().await;
    let timeline = watch_failover(&group, [&a, &b], ids, killed).await;
    report("SIGKILL of the master", &timeline);

    // A few more PUTs with the new master in use, then stop writing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(
        writes.failures.is_empty(),
        "PUTs failed during the failover: {:?}",
        writes.failures
    );
    eprintln!(
        "{} PUTs acknowledged through the failover; the master was killed {killed_after:?} \
         after the first; PUTs over 100 ms (sent at, took): {:?}",
        writes.acks.len(),
        writes.slow
    );

    // Every acknowledged PUT is kept: the newest one is what both instances return, what
    // both streams end on, and what the new master holds.
    let newest = writes.acks.iter().max_by_key(|a| a.timestamp).unwrap();
    for (app, stream) in [(&a, &mut stream_a), (&b, &mut stream_b)] {
        let record = eventually("the newest acknowledged PUT on both instances", || async {
            let (_, p) = app.get_json("/api/playback-position").await;
            (p["timestamp"] == json!(newest.timestamp)).then_some(p)
        })
        .await;
        assert_eq!(record["lastPlayedIndex"], json!(newest.index), "{record}");
        let streamed = until_event(stream, newest.timestamp).await;
        assert_eq!(streamed, record);
    }
    let mut new_master = group.replica.client().await;
    let stored: Option<u64> = new_master
        .hget("playsync:pos:playback", "ts")
        .await
        .unwrap();
    assert_eq!(stored, Some(newest.timestamp));

    // Positions travel between the instances again, both ways: SSE and GET.
    let answer = put(
        &a.base(),
        "/api/playback-position",
        json!({"lastPlayedIndex": 100_001}),
    )
    .await;
    let on_b = until_event(&mut stream_b, answer["timestamp"].as_u64().unwrap()).await;
    assert_eq!(on_b["lastPlayedIndex"], json!(100_001));
    assert_eq!(b.get_json("/api/playback-position").await.1, on_b);
    let answer = put(
        &b.base(),
        "/api/playback-position",
        json!({"lastPlayedIndex": 100_002}),
    )
    .await;
    let on_a = until_event(&mut stream_a, answer["timestamp"].as_u64().unwrap()).await;
    assert_eq!(on_a["lastPlayedIndex"], json!(100_002));

    // Rooms merge back into one room on the new master: both members, the original host.
    eventually("the room to merge on the new master", || async {
        let mut agreed = true;
        for app in [&a, &b] {
            let (_, room) = app.get_json("/room/ha").await;
            agreed &= room["user_count"] == json!(2) && room["host_id"] == json!(host.sid);
        }
        agreed.then_some(())
    })
    .await;
    // A room command crosses instances again, and non-hosts are refused everywhere.
    host.emit("pause", json!({"room_id": "ha", "current_time": 12}))
        .await;
    assert_eq!(
        member.next("pause").await["current_time"].as_f64(),
        Some(12.0)
    );
    let ack = member
        .call("seek", json!({"room_id": "ha", "current_time": 1}))
        .await;
    assert_eq!(ack["code"], json!("not_host"), "{ack}");
    // Both instances list the same rooms.
    let (view_a, view_b) = eventually("GET /rooms to agree", || async {
        let view_a = rooms_view(&a.get_json("/rooms").await.1);
        let view_b = rooms_view(&b.get_json("/rooms").await.1);
        (view_a == view_b).then_some((view_a, view_b))
    })
    .await;
    assert_eq!(view_a["count"], json!(1), "{view_a} / {view_b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_failover_of_a_live_master_with_passwords() {
    let passwords = Passwords {
        master: "master-secret".to_owned(),
        sentinel: "sentinel-secret".to_owned(),
    };
    let group = SentinelGroup::start_with(Some(passwords)).await;
    let (a, b) = (instance(&group).await, instance(&group).await);
    for app in [&a, &b] {
        eventually("the instance to use the password-protected master", || {
            follows(app, &group.master, "")
        })
        .await;
    }
    let sio = Sio::start().await;
    let host = sio.connect("host", &a.base(), WS()).await;
    host.call("create_room", json!({"room_id": "op"})).await;
    let member = sio.connect("member", &b.base(), WS()).await;
    member.call("join_room", json!({"room_id": "op"})).await;

    // The old master stays up: it is replaced, then demoted to a replica of the new one.
    let ids = [instance_id(&a).await, instance_id(&b).await];
    let started = Instant::now();
    group.sentinels[0].failover().await;
    let timeline = watch_failover(&group, [&a, &b], ids, started).await;
    report("SENTINEL FAILOVER", &timeline);

    let answer = put(&a.base(), "/api/scroll-position", json!({"scrollTop": 321})).await;
    eventually("B to read A's PUT", || async {
        let (_, p) = b.get_json("/api/scroll-position").await;
        (p["timestamp"] == answer["timestamp"]).then_some(())
    })
    .await;
    eventually("the room to merge on the new master", || async {
        let (_, room) = b.get_json("/room/op").await;
        (room["user_count"] == json!(2) && room["host_id"] == json!(host.sid)).then_some(())
    })
    .await;
    host.emit("seek", json!({"room_id": "op", "current_time": 5}))
        .await;
    assert_eq!(
        member.next("seek").await["current_time"].as_f64(),
        Some(5.0)
    );

    // Once the sentinels demote the old master (it answers READONLY to writes then), the
    // instances are still on the new one.
    eventually_within(
        Duration::from_secs(30),
        "the sentinels to demote the old master",
        || role(&group.master, "slave"),
    )
    .await;
    for app in [&a, &b] {
        assert!(
            follows(app, &group.replica, "").await.is_some(),
            "an instance left the new master"
        );
    }
}

#[tokio::test]
async fn a_server_turned_replica_counts_as_down() {
    // Without Sentinel too: a Redis that answers READONLY is not "connected".
    let redis = RedisServer::start().await;
    let other = RedisServer::start().await;
    let app = spawn_app(&["--redis-url", &redis.url()]).await;
    eventually("redis connected", || follows(&app, &redis, "")).await;

    let mut conn = redis.client().await;
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(other.port)
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually("READONLY to count as down", || async {
        let (_, health) = app.get_json("/health").await;
        (health["redis_connected"] == json!(false)).then_some(())
    })
    .await;
    // Served from memory meanwhile.
    let stored = put(&app.base(), "/api/scroll-position", json!({"scrollTop": 9})).await;

    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually("a master again: connected", || follows(&app, &redis, "")).await;
    let ts: Option<u64> = conn.hget("playsync:pos:scroll", "ts").await.unwrap();
    assert_eq!(ts, stored["timestamp"].as_u64());
}

#[test]
fn the_sentinel_flags_are_documented_and_checked() {
    let bin = env!("CARGO_BIN_EXE_playsync");
    let out = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--redis-sentinels",
        "[env: REDIS_SENTINELS=]",
        "--redis-sentinel-master",
        "[env: REDIS_SENTINEL_MASTER=]",
        "--redis-sentinel-password",
        "[env: REDIS_SENTINEL_PASSWORD]",
        "--redis-password",
        "[env: REDIS_PASSWORD]",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
    // Secrets from the environment are not echoed by --help.
    let out = std::process::Command::new(bin)
        .arg("--help")
        .env("REDIS_PASSWORD", "do-not-print")
        .output()
        .expect("run --help");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("do-not-print"));

    // Sentinels without the master's name: refused at start, naming what is missing.
    let out = std::process::Command::new(bin)
        .env("REDIS_SENTINELS", "127.0.0.1:26379")
        .env_remove("REDIS_SENTINEL_MASTER")
        .output()
        .expect("run playsync");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--redis-sentinel-master"), "{err}");
}
