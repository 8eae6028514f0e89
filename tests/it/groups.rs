//! Rooms for real networks and real groups, over real socket.io-client 4.x, on one instance
//! and across two instances on a real redis-server: resuming after a dropped connection,
//! replaced connections, wait-for-ready, handing the host role over, `control: everyone`,
//! co-hosts, passwords and limits.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::support::app::{TestApp, spawn_app};
use crate::support::eventually;
use crate::support::redis::RedisServer;
use crate::support::sio::{Client, Sio};

/// Servers for a scenario: `[a, b]`, the same instance twice or two instances on Redis.
struct Servers {
    apps: Vec<TestApp>,
    _redis: Option<RedisServer>,
}

impl Servers {
    async fn one(args: &[&str]) -> Servers {
        Servers {
            apps: vec![spawn_app(args).await],
            _redis: None,
        }
    }

    async fn two(args: &[&str]) -> Servers {
        let redis = RedisServer::start().await;
        let url = redis.url();
        let mut all = vec!["--redis-url", url.as_str()];
        all.extend_from_slice(args);
        let mut apps = Vec::new();
        for _ in 0..2 {
            let app = spawn_app(&all).await;
            let health = app.url("/health");
            eventually("the instance to reach redis", || {
                let health = health.clone();
                async move {
                    let h: Value = reqwest::get(&health).await.ok()?.json().await.ok()?;
                    (h["redis_connected"] == json!(true)).then_some(())
                }
            })
            .await;
            apps.push(app);
        }
        Servers {
            apps,
            _redis: Some(redis),
        }
    }

    /// The base URL of server `i` (the only one, if there is one).
    fn base(&self, i: usize) -> String {
        self.apps[i % self.apps.len()].base()
    }
}

fn ws(client_id: Option<&str>) -> Value {
    match client_id {
        Some(id) => json!({"transports": ["websocket"], "auth": {"client_id": id}}),
        None => json!({"transports": ["websocket"]}),
    }
}

/// Connects `name` to `base` (with `client_id`) and reads its greeting: its member id.
async fn member(
    sio: &Arc<Sio>,
    name: &str,
    base: &str,
    client_id: Option<&str>,
) -> (Client, Value) {
    let c = sio.connect(name, base, ws(client_id)).await;
    let hello = c.next("connected").await;
    let id = hello["member_id"].clone();
    assert!(id.is_string(), "{hello}");
    (c, id)
}

/// The next `event` that satisfies `pred` (earlier ones are skipped).
async fn next_where(c: &Client, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = c.next(event).await;
        if pred(&v) {
            return v;
        }
    }
}

async fn call_ok(c: &Client, event: &str, payload: Value) -> Value {
    let ack = c.call(event, payload).await;
    assert_eq!(ack["ok"], json!(true), "{event}: {ack}");
    ack
}

/// The host drops and comes back with its `client_id` on the other server within the
/// grace: it is still host, nobody saw `room_users` change, and its commands work.
async fn resume_within_grace(servers: &Servers) {
    let sio = Sio::start().await;
    let (host, host_id) = member(&sio, "host", &servers.base(0), Some("host-device-1")).await;
    let ack = call_ok(
        &host,
        "create_room",
        json!({"room_id": "r", "track": {"url": "a.wav"}, "name": "Hana"}),
    )
    .await;
    assert_eq!(ack["host_id"], host_id);
    let (listener, _) = member(&sio, "listener", &servers.base(1), None).await;
    let joined = call_ok(
        &listener,
        "join_room",
        json!({"room_id": "r", "name": "Lee"}),
    )
    .await;
    assert_eq!(joined["host_id"], host_id);
    let users = listener.next("room_users").await;
    assert_eq!(users["count"], json!(2));
    let names: Vec<&Value> = users["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["name"])
        .collect();
    assert_eq!(names, [&json!("Hana"), &json!("Lee")], "{users}");

    host.drop_transport().await;
    let (back, back_id) = member(&sio, "host-again", &servers.base(1), Some("host-device-1")).await;
    assert_eq!(back_id, host_id, "the same member");
    let rejoined = back.next("room_joined").await;
    assert_eq!(rejoined["host_id"], host_id, "{rejoined}");
    assert_eq!(rejoined["member_id"], host_id);
    back.next("sync_state").await;
    // Its commands work; the listener heard no room_users during the drop and resume.
    call_ok(&back, "seek", json!({"room_id": "r", "current_time": 12})).await;
    assert_eq!(listener.next("seek").await["current_time"], json!(12));
    assert!(
        listener.drain("room_users").await.is_empty(),
        "the room saw the drop"
    );
    assert!(listener.drain("become_host").await.is_empty());
    // Joining again changes nothing.
    call_ok(&back, "join_room", json!({"room_id": "r"})).await;
    assert_eq!(back.next("room_joined").await["user_count"], json!(2));
}

#[tokio::test]
async fn a_host_resumes_within_the_grace() {
    resume_within_grace(&Servers::one(&[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_resumes_within_the_grace_on_another_instance() {
    resume_within_grace(&Servers::two(&[]).await).await;
}

/// After the grace, the away host leaves as any member would: the longest-present member
/// becomes host.
async fn leaves_after_the_grace(servers: &Servers) {
    let sio = Sio::start().await;
    let (host, _) = member(&sio, "host", &servers.base(0), Some("host-device-2")).await;
    call_ok(&host, "create_room", json!({"room_id": "g"})).await;
    let (first, first_id) = member(&sio, "first", &servers.base(1), None).await;
    call_ok(&first, "join_room", json!({"room_id": "g"})).await;
    let (second, _) = member(&sio, "second", &servers.base(0), None).await;
    call_ok(&second, "join_room", json!({"room_id": "g"})).await;
    host.drop_transport().await;
    assert_eq!(first.next("become_host").await, json!({"room_id": "g"}));
    assert_eq!(second.next("host_changed").await["host_id"], first_id);
    let state = call_ok(&second, "get_room_state", json!({"room_id": "g"})).await;
    assert_eq!(state["user_count"], json!(2));
    assert_eq!(state["host_id"], first_id);
    // Too late to resume: the client is a newcomer.
    let (late, _) = member(&sio, "late", &servers.base(1), Some("host-device-2")).await;
    call_ok(&late, "join_room", json!({"room_id": "g"})).await;
    assert_eq!(late.next("room_joined").await["host_id"], first_id);
}

#[tokio::test]
async fn an_away_host_leaves_after_the_grace() {
    leaves_after_the_grace(&Servers::one(&["--resume-grace-secs", "1"]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_away_host_leaves_after_the_grace_across_instances() {
    leaves_after_the_grace(&Servers::two(&["--resume-grace-secs", "1"]).await).await;
}

/// A second live connection with the same `client_id` takes the member over.
async fn replaced(servers: &Servers) {
    let sio = Sio::start().await;
    let (first, id) = member(&sio, "first", &servers.base(0), Some("phone-and-laptop")).await;
    call_ok(&first, "create_room", json!({"room_id": "rep"})).await;
    let (second, second_id) =
        member(&sio, "second", &servers.base(1), Some("phone-and-laptop")).await;
    assert_eq!(second_id, id);
    let joined = second.next("room_joined").await;
    assert_eq!(joined["host_id"], id, "it keeps the role");
    let error = first.next("error").await;
    assert_eq!(error["code"], json!("replaced"), "{error}");
    let (event, _) = first.next_of(&["$disconnect"]).await;
    assert_eq!(event, "$disconnect");
    call_ok(&second, "pause", json!({"room_id": "rep"})).await;
}

#[tokio::test]
async fn a_second_connection_replaces_the_first() {
    replaced(&Servers::one(&[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_on_another_instance_replaces_the_first() {
    replaced(&Servers::two(&[]).await).await;
}

/// A start in a wait-for-ready room waits for the members; one is ready, one never is: the
/// start goes ahead after the timeout, and `waiting` names the member it waited for.
async fn wait_for_ready(servers: &Servers) {
    let sio = Sio::start().await;
    let (host, host_id) = member(&sio, "host", &servers.base(0), Some("wfr-host-01")).await;
    call_ok(
        &host,
        "create_room",
        json!({"room_id": "w", "track": {"url": "a.wav"}, "wait_for_ready": true}),
    )
    .await;
    let (ready, ready_id) = member(&sio, "ready", &servers.base(1), None).await;
    call_ok(&ready, "join_room", json!({"room_id": "w"})).await;
    let (slow, slow_id) = member(&sio, "slow", &servers.base(0), None).await;
    call_ok(&slow, "join_room", json!({"room_id": "w"})).await;

    let ack = call_ok(&host, "seek", json!({"room_id": "w", "current_time": 30})).await;
    let waiting = ready.next("waiting").await;
    let mut all = waiting["members"].as_array().unwrap().clone();
    all.sort_by_key(|v| v.to_string());
    let mut expected = vec![host_id.clone(), ready_id.clone(), slow_id.clone()];
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(
        all, expected,
        "every present member is waited for: {waiting}"
    );
    call_ok(&host, "ready", json!({"room_id": "w", "ready": true})).await;
    call_ok(&ready, "ready", json!({"room_id": "w", "ready": true})).await;
    let still = eventually("waiting to name only the slow member", || async {
        let last = ready.drain("waiting").await.pop()?;
        (last["members"] == json!([slow_id.clone()])).then_some(last)
    })
    .await;
    assert_eq!(still["room_id"], json!("w"));
    // The timeout (1 s here): the start goes ahead without the slow member.
    let started = next_where(&ready, "sync_state", |s| s["current_time"] == json!(30)).await;
    assert_eq!(started["current_time"], json!(30));
    assert!(
        started["start_at"].as_u64() <= ack["start_at"].as_u64(),
        "{started} {ack}"
    );
    assert!(started["start_at"].as_u64() > ack["server_time"].as_u64());
}

#[tokio::test]
async fn wait_for_ready_starts_without_a_member_that_never_is() {
    wait_for_ready(&Servers::one(&["--ready-timeout-ms", "1000"]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_ready_across_instances() {
    wait_for_ready(&Servers::two(&["--ready-timeout-ms", "1000"]).await).await;
}

/// `transfer_host`, `control: everyone`, and co-hosts first in line at a handover.
async fn roles(servers: &Servers) {
    let sio = Sio::start().await;
    let (host, _) = member(&sio, "host", &servers.base(0), None).await;
    call_ok(
        &host,
        "create_room",
        json!({"room_id": "roles", "name": "H"}),
    )
    .await;
    let (a, a_id) = member(&sio, "a", &servers.base(1), None).await;
    call_ok(&a, "join_room", json!({"room_id": "roles"})).await;
    let (b, b_id) = member(&sio, "b", &servers.base(0), None).await;
    call_ok(&b, "join_room", json!({"room_id": "roles"})).await;

    // A plain member may not control; a co-host may.
    assert_eq!(
        b.call("play", json!({"room_id": "roles"})).await["code"],
        json!("not_host")
    );
    call_ok(
        &host,
        "set_role",
        json!({"room_id": "roles", "member_id": b_id, "role": "cohost"}),
    )
    .await;
    let roster = next_where(&a, "room_users", |u| {
        u["count"] == json!(3) && u["members"].to_string().contains("cohost")
    })
    .await;
    assert!(
        roster["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["member_id"] == b_id && m["role"] == json!("cohost")),
        "{roster}"
    );
    call_ok(&b, "play", json!({"room_id": "roles", "current_time": 3})).await;
    assert_eq!(a.next("play").await["current_time"], json!(3));
    // Only the host names roles.
    assert_eq!(
        b.call(
            "set_role",
            json!({"room_id": "roles", "member_id": a_id, "role": "cohost"})
        )
        .await["code"],
        json!("not_host")
    );
    // The host leaves: the co-host, though it joined after `a`, takes over.
    host.disconnect().await;
    assert_eq!(b.next("become_host").await, json!({"room_id": "roles"}));
    assert_eq!(a.next("host_changed").await["host_id"], b_id);
    // And hands it over.
    call_ok(
        &b,
        "transfer_host",
        json!({"room_id": "roles", "member_id": a_id}),
    )
    .await;
    assert_eq!(a.next("become_host").await, json!({"room_id": "roles"}));
    next_where(&b, "host_changed", |h| h["host_id"] == a_id).await;
    assert_eq!(
        b.call(
            "transfer_host",
            json!({"room_id": "roles", "member_id": "nobody"})
        )
        .await["code"],
        json!("not_host")
    );
    assert_eq!(
        a.call(
            "transfer_host",
            json!({"room_id": "roles", "member_id": "nobody"})
        )
        .await["code"],
        json!("not_member")
    );

    // Everyone controls in a `control: everyone` room.
    let (c, _) = member(&sio, "c", &servers.base(1), None).await;
    call_ok(
        &c,
        "create_room",
        json!({"room_id": "all", "control": "everyone"}),
    )
    .await;
    let (d, _) = member(&sio, "d", &servers.base(0), None).await;
    call_ok(&d, "join_room", json!({"room_id": "all"})).await;
    call_ok(&d, "pause", json!({"room_id": "all", "current_time": 8})).await;
    assert_eq!(c.next("pause").await["current_time"], json!(8));
}

#[tokio::test]
async fn roles_transfer_everyone_and_cohosts() {
    roles(&Servers::one(&[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_across_instances() {
    roles(&Servers::two(&[]).await).await;
}

/// Passwords (with the wrong-guess limit) and the room and member limits.
async fn access_and_limits(servers: &Servers) {
    let sio = Sio::start().await;
    let (host, _) = member(&sio, "host", &servers.base(0), None).await;
    call_ok(
        &host,
        "create_room",
        json!({"room_id": "secret", "password": "hunter2", "track": {"title": "private"}}),
    )
    .await;
    let (guest, _) = member(&sio, "guest", &servers.base(1), None).await;
    for _ in 0..5 {
        let nack = guest
            .call(
                "join_room",
                json!({"room_id": "secret", "password": "guess"}),
            )
            .await;
        assert_eq!(nack["code"], json!("wrong_password"), "{nack}");
    }
    let nack = guest
        .call(
            "join_room",
            json!({"room_id": "secret", "password": "hunter2"}),
        )
        .await;
    assert_eq!(
        nack["code"],
        json!("rate_limited"),
        "five wrong guesses a minute"
    );
    let (friend, _) = member(&sio, "friend", &servers.base(1), None).await;
    assert_eq!(
        friend.call("join_room", json!({"room_id": "secret"})).await["code"],
        json!("wrong_password")
    );
    // Outsiders see the count, never the track.
    let outside = friend
        .call("get_room_state", json!({"room_id": "secret"}))
        .await;
    assert_eq!(outside["user_count"], json!(1));
    assert!(outside.get("current_track").is_none(), "{outside}");
    let (_, listing) = crate::support::get_json(&servers.base(1), "/rooms").await;
    assert!(!listing.to_string().contains("private"), "{listing}");
    let (_, one) = crate::support::get_json(&servers.base(0), "/room/secret").await;
    assert_eq!(one["user_count"], json!(1));
    assert!(one.get("current_track").is_none(), "{one}");
    call_ok(
        &friend,
        "join_room",
        json!({"room_id": "secret", "password": "hunter2"}),
    )
    .await;
    let inside = call_ok(&friend, "get_room_state", json!({"room_id": "secret"})).await;
    assert_eq!(inside["current_track"], json!({"title": "private"}));

    // MAX_MEMBERS_PER_ROOM=2 and MAX_ROOMS=2 here.
    let (third, _) = member(&sio, "third", &servers.base(0), None).await;
    let full = third
        .call(
            "join_room",
            json!({"room_id": "secret", "password": "hunter2"}),
        )
        .await;
    assert_eq!(full["code"], json!("room_full"), "{full}");
    call_ok(&third, "create_room", json!({"room_id": "second"})).await;
    let (fourth, _) = member(&sio, "fourth", &servers.base(1), None).await;
    let many = fourth
        .call("create_room", json!({"room_id": "third"}))
        .await;
    assert_eq!(many["code"], json!("too_many_rooms"), "{many}");
    assert_eq!(fourth.next("error").await["code"], json!("too_many_rooms"));
    // leave_room keeps the connection: it can create a room now that one is gone.
    call_ok(&third, "leave_room", json!({"room_id": "second"})).await;
    call_ok(&fourth, "create_room", json!({"room_id": "third"})).await;
    call_ok(&third, "get_room_state", json!({"room_id": "third"})).await;
}

#[tokio::test]
async fn passwords_and_limits() {
    access_and_limits(&Servers::one(&["--max-members-per-room", "2", "--max-rooms", "2"]).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_limits_across_instances() {
    access_and_limits(&Servers::two(&["--max-members-per-room", "2", "--max-rooms", "2"]).await)
        .await;
}
