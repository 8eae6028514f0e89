//! Seed 1 over real socket.io-client 4.x (and 2.x): every event row, host control, handover,
//! room deletion, the one-room rule, extrapolation, transports, CORS and bad input.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::support::app::{TestApp, spawn_app};
use crate::support::eventually;
use crate::support::sio::{Client, Sio};

/// A JSON number as f64 (JavaScript writes 6.0 as 6).
fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

const WS: fn() -> Value = || json!({"transports": ["websocket"]});
const POLLING: fn() -> Value = || json!({"transports": ["polling"]});

/// Host `a` creates `room` with a track; members `b`... join. Returns the clients in join
/// order, with their join notifications consumed.
async fn room_with(sio: &Arc<Sio>, app: &TestApp, room: &str, members: &[&str]) -> Vec<Client> {
    let host = sio.connect("host", &app.base(), WS()).await;
    let ack = host
        .call(
            "create_room",
            json!({"room_id": room, "track": {"name": "Song", "source": "test"}, "current_time": 0}),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    host.next("room_created").await;
    host.next("room_users").await;
    let mut clients = vec![host];
    for name in members {
        let c = sio.connect(name, &app.base(), WS()).await;
        let ack = c.call("join_room", json!({ "room_id": room })).await;
        assert_eq!(ack["ok"], json!(true), "{ack}");
        c.next("room_joined").await;
        let count = clients.len() + 1;
        for other in clients.iter().chain(std::iter::once(&c)) {
            assert_eq!(other.next("room_users").await, json!({ "count": count }));
        }
        c.next("sync_state").await;
        clients.push(c);
    }
    clients
}

/// Asks the server for the room's state through `c` and returns the `room_state` payload.
/// Also a barrier: anything the server sent `c` before this reply has arrived.
async fn state_via(c: &Client, room: &str) -> Value {
    c.emit("get_room_state", json!({ "room_id": room })).await;
    c.next("room_state").await
}

#[tokio::test]
async fn connect_greets_on_both_transports_and_upgrades() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let ws = sio.connect("ws", &app.base(), WS()).await;
    assert_eq!(ws.next("connected").await["message"], json!("connected"));
    assert_eq!(ws.transport().await, "websocket");

    let polling = sio.connect("polling", &app.base(), POLLING()).await;
    polling.next("connected").await;
    assert_eq!(polling.transport().await, "polling");

    // The default: start on long-polling, then upgrade to WebSocket.
    let upgrading = sio.connect("upgrading", &app.base(), json!({})).await;
    upgrading.next("connected").await;
    eventually("the upgrade to websocket", || async {
        (upgrading.transport().await == "websocket").then_some(())
    })
    .await;

    // Rooms work across transports.
    let ack = polling
        .call(
            "create_room",
            json!({"room_id": "mixed", "current_time": 1}),
        )
        .await;
    assert_eq!(ack["ok"], json!(true));
    let joined = ws.call("join_room", json!({"room_id": "mixed"})).await;
    assert_eq!(joined["user_count"], json!(2));
    polling
        .emit("seek", json!({"room_id": "mixed", "current_time": 7}))
        .await;
    assert_eq!(num(&ws.next("seek").await["current_time"]), 7.0);
}

#[tokio::test]
async fn create_room_answers_the_creator_and_counts_the_room() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let a = sio.connect("a", &app.base(), WS()).await;
    a.emit(
        "create_room",
        json!({"room_id": "r1", "track": {"name": "x"}, "current_time": 3}),
    )
    .await;
    let created = a.next("room_created").await;
    assert_eq!(created["room_id"], json!("r1"));
    assert_eq!(created["user_count"], json!(1));
    assert_eq!(a.next("room_users").await, json!({"count": 1}));

    let (status, info) = app.get_json("/room/r1").await;
    assert_eq!(status, 200);
    assert_eq!(info["id"], json!("r1"));
    assert_eq!(info["host_id"], json!(a.sid));
    assert_eq!(info["user_count"], json!(1));
    assert_eq!(info["current_track"], json!({"name": "x"}));
    assert_eq!(info["is_playing"], json!(true));
    assert!(info["current_time"].as_f64().unwrap() >= 3.0);
    assert!(info["created_at"].as_str().unwrap().ends_with('Z'));

    // Creating it again is an error, and the room is unchanged.
    let b = sio.connect("b", &app.base(), WS()).await;
    let ack = b.call("create_room", json!({"room_id": "r1"})).await;
    assert_eq!(ack["ok"], json!(false));
    assert_eq!(ack["code"], json!("room_exists"));
    let err = b.next("error").await;
    assert_eq!(err["code"], json!("room_exists"));
    assert!(err["message"].as_str().is_some());
    assert_eq!(app.get_json("/room/r1").await.1["user_count"], json!(1));
}

#[tokio::test]
async fn join_room_sends_joined_then_users_then_sync_state() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let a = sio.connect("a", &app.base(), WS()).await;
    a.call(
        "create_room",
        json!({"room_id": "r", "track": {"name": "t"}, "current_time": 10}),
    )
    .await;
    a.emit("pause", json!({"room_id": "r", "current_time": 12.5}))
        .await;
    let b = sio.connect("b", &app.base(), WS()).await;
    b.emit("join_room", json!({"room_id": "r"})).await;
    let (first, joined) = b
        .next_of(&["room_joined", "room_users", "sync_state"])
        .await;
    assert_eq!(first, "room_joined");
    assert_eq!(joined["room_id"], json!("r"));
    assert_eq!(joined["user_count"], json!(2));
    assert_eq!(joined["current_track"], json!({"name": "t"}));
    assert_eq!(joined["is_playing"], json!(false));
    assert_eq!(num(&joined["current_time"]), 12.5);
    let (second, users) = b.next_of(&["room_users", "sync_state"]).await;
    assert_eq!(
        (second.as_str(), users),
        ("room_users", json!({"count": 2}))
    );
    let sync = b.next("sync_state").await;
    assert_eq!(sync["current_track"], json!({"name": "t"}));
    assert_eq!(sync["is_playing"], json!(false));
    assert_eq!(num(&sync["current_time"]), 12.5);
    // The members already there hear about the new count too.
    assert_eq!(a.next("room_users").await, json!({"count": 1}));
    assert_eq!(a.next("room_users").await, json!({"count": 2}));

    // No track: no sync_state (the room_state reply comes first).
    let c = sio.connect("c", &app.base(), WS()).await;
    c.call("create_room", json!({"room_id": "silent"})).await;
    let d = sio.connect("d", &app.base(), WS()).await;
    d.call("join_room", json!({"room_id": "silent"})).await;
    d.emit("get_room_state", json!({"room_id": "silent"})).await;
    let (e, _) = d.next_of(&["sync_state", "room_state"]).await;
    assert_eq!(e, "room_state");

    // Unknown room.
    let ack = d.call("join_room", json!({"room_id": "nope"})).await;
    assert_eq!(ack["code"], json!("room_not_found"));
    assert_eq!(d.next("error").await["code"], json!("room_not_found"));
}

#[tokio::test]
async fn host_commands_reach_the_other_members_and_not_the_sender() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let c = room_with(&sio, &app, "r", &["b", "c"]).await;
    let (host, b, cc) = (&c[0], &c[1], &c[2]);

    let ack = host
        .call(
            "track_change",
            json!({"room_id": "r", "track": {"name": "Next"}}),
        )
        .await;
    assert_eq!(ack["ok"], json!(true));
    host.emit("play", json!({"room_id": "r", "current_time": 1.5}))
        .await;
    host.emit("pause", json!({"room_id": "r", "current_time": 2}))
        .await;
    host.emit("seek", json!({"room_id": "r", "current_time": 30}))
        .await;
    host.emit(
        "sync_progress",
        json!({"room_id": "r", "current_time": 31.25}),
    )
    .await;
    for member in [b, cc] {
        let tc = member.next("track_change").await;
        assert_eq!(tc["track"], json!({"name": "Next"}));
        assert_eq!(num(&tc["current_time"]), 0.0);
        assert!(tc["server_time"].as_u64().is_some());
        assert_eq!(num(&member.next("play").await["current_time"]), 1.5);
        assert_eq!(num(&member.next("pause").await["current_time"]), 2.0);
        assert_eq!(num(&member.next("seek").await["current_time"]), 30.0);
        assert_eq!(
            num(&member.next("sync_progress").await["current_time"]),
            31.25
        );
    }
    // The sender got none of its own commands back.
    let state = state_via(host, "r").await;
    for e in ["track_change", "play", "pause", "seek", "sync_progress"] {
        assert!(host.drain(e).await.is_empty(), "host got its own {e}");
    }
    assert_eq!(state["current_track"], json!({"name": "Next"}));
    assert_eq!(state["is_playing"], json!(false));
    assert_eq!(num(&state["current_time"]), 31.25);
}

#[tokio::test]
async fn non_hosts_cannot_control_and_are_not_spammed() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let c = room_with(&sio, &app, "r", &["b"]).await;
    let (host, b) = (&c[0], &c[1]);
    host.emit("pause", json!({"room_id": "r", "current_time": 5}))
        .await;
    b.next("pause").await;

    // Without an acknowledgement: silence, as in the seed.
    b.emit("play", json!({"room_id": "r", "current_time": 99}))
        .await;
    b.emit("sync_progress", json!({"room_id": "r", "current_time": 99}))
        .await;
    b.emit(
        "track_change",
        json!({"room_id": "r", "track": {"name": "evil"}}),
    )
    .await;
    // With one: the reason.
    let ack = b
        .call("seek", json!({"room_id": "r", "current_time": 99}))
        .await;
    assert_eq!(ack["ok"], json!(false));
    assert_eq!(ack["code"], json!("not_host"));

    let state = state_via(b, "r").await;
    assert_eq!(state["is_playing"], json!(false));
    assert_eq!(num(&state["current_time"]), 5.0);
    assert_eq!(
        state["current_track"],
        json!({"name": "Song", "source": "test"})
    );
    assert!(
        b.drain("error").await.is_empty(),
        "non-host got error events"
    );
    // The host heard nothing of it: its next command event is its own state reply.
    state_via(host, "r").await;
    for e in ["play", "seek", "sync_progress", "track_change"] {
        assert!(
            host.drain(e).await.is_empty(),
            "host received a non-host {e}"
        );
    }
}

#[tokio::test]
async fn zero_is_a_real_time_not_a_missing_one() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let c = room_with(&sio, &app, "r", &["b"]).await;
    let (host, b) = (&c[0], &c[1]);
    host.emit("pause", json!({"room_id": "r", "current_time": 42}))
        .await;
    assert_eq!(num(&b.next("pause").await["current_time"]), 42.0);
    host.emit("play", json!({"room_id": "r", "current_time": 0}))
        .await;
    assert_eq!(num(&b.next("play").await["current_time"]), 0.0);
    host.emit("pause", json!({"room_id": "r", "current_time": 0}))
        .await;
    assert_eq!(num(&b.next("pause").await["current_time"]), 0.0);
    assert_eq!(num(&state_via(b, "r").await["current_time"]), 0.0);
}

#[tokio::test]
async fn current_time_extrapolates_while_playing_only() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let a = sio.connect("a", &app.base(), WS()).await;
    a.call("create_room", json!({"room_id": "r", "current_time": 100}))
        .await;
    let s1 = state_via(&a, "r").await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let s2 = state_via(&a, "r").await;
    let (t1, t2) = (
        s1["current_time"].as_f64().unwrap(),
        s2["current_time"].as_f64().unwrap(),
    );
    let (m1, m2) = (
        s1["server_time"].as_u64().unwrap(),
        s2["server_time"].as_u64().unwrap(),
    );
    assert!(m2 > m1);
    // Playing: the position advanced by exactly the server time that passed.
    assert!(
        ((t2 - t1) - (m2 - m1) as f64 / 1000.0).abs() < 1e-9,
        "{t1} {t2} {m1} {m2}"
    );
    assert!(t1 >= 100.0);

    a.call("pause", json!({"room_id": "r", "current_time": 200}))
        .await;
    let p1 = state_via(&a, "r").await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let p2 = state_via(&a, "r").await;
    assert!(p2["server_time"].as_u64() > p1["server_time"].as_u64());
    assert_eq!(num(&p1["current_time"]), 200.0);
    assert_eq!(num(&p2["current_time"]), 200.0);

    // Play without a time resumes from where it paused.
    let ack = a.call("play", json!({"room_id": "r"})).await;
    assert_eq!(num(&ack["current_time"]), 200.0);
}

#[tokio::test]
async fn the_longest_present_member_takes_over_when_the_host_leaves() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let c = room_with(&sio, &app, "r", &["b", "c"]).await;
    let (host, b, cc) = (&c[0], &c[1], &c[2]);
    host.disconnect().await;
    assert_eq!(b.next("become_host").await, json!({"room_id": "r"}));
    assert_eq!(b.next("room_users").await, json!({"count": 2}));
    assert_eq!(cc.next("room_users").await, json!({"count": 2}));
    let (status, info) = app.get_json("/room/r").await;
    assert_eq!(status, 200);
    assert_eq!(info["host_id"], json!(b.sid));
    assert_eq!(info["user_count"], json!(2));

    // The new host controls; the others follow.
    b.emit("seek", json!({"room_id": "r", "current_time": 12}))
        .await;
    assert_eq!(num(&cc.next("seek").await["current_time"]), 12.0);
    // c was never told it is host.
    state_via(cc, "r").await;
    assert!(cc.drain("become_host").await.is_empty());

    b.disconnect().await;
    assert_eq!(cc.next("become_host").await, json!({"room_id": "r"}));
    assert_eq!(cc.next("room_users").await, json!({"count": 1}));
}

#[tokio::test]
async fn a_room_is_deleted_when_its_last_member_leaves() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let c = room_with(&sio, &app, "gone", &["b"]).await;
    assert_eq!(app.get_json("/rooms").await.1["count"], json!(1));
    c[0].disconnect().await;
    c[1].next("become_host").await;
    c[1].disconnect().await;
    eventually("the room's deletion", || async {
        (app.get_json("/room/gone").await.0 == 404).then_some(())
    })
    .await;
    let (_, rooms) = app.get_json("/rooms").await;
    assert_eq!(rooms, json!({"rooms": [], "count": 0}));
    assert_eq!(app.get_json("/").await.1["rooms"], json!(0));

    // The id is free again.
    let d = sio.connect("d", &app.base(), WS()).await;
    assert_eq!(
        d.call("create_room", json!({"room_id": "gone"})).await["ok"],
        json!(true)
    );
}

#[tokio::test]
async fn a_connection_is_in_one_room_at_most() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let c = room_with(&sio, &app, "r1", &["b"]).await;
    let (host, b) = (&c[0], &c[1]);
    let other = sio.connect("other", &app.base(), WS()).await;
    other.call("create_room", json!({"room_id": "r2"})).await;

    // b joins r2: it leaves r1 first.
    let ack = b.call("join_room", json!({"room_id": "r2"})).await;
    assert_eq!(ack["user_count"], json!(2));
    assert_eq!(host.next("room_users").await, json!({"count": 1}));
    assert_eq!(app.get_json("/room/r1").await.1["user_count"], json!(1));
    // ...and no longer hears r1's host.
    host.emit("seek", json!({"room_id": "r1", "current_time": 5}))
        .await;
    other
        .emit("seek", json!({"room_id": "r2", "current_time": 6}))
        .await;
    let seek = b.next("seek").await;
    assert_eq!(num(&seek["current_time"]), 6.0);
    assert!(b.drain("seek").await.is_empty());

    // The host of r2 joins r1: r2's host role passes to b, r1 gains a member.
    other.call("join_room", json!({"room_id": "r1"})).await;
    assert_eq!(b.next("become_host").await, json!({"room_id": "r2"}));
    assert_eq!(app.get_json("/room/r2").await.1["host_id"], json!(b.sid));
    assert_eq!(app.get_json("/room/r1").await.1["user_count"], json!(2));

    // b creates r3 as the last member of r2: r2 is deleted at once.
    b.call("create_room", json!({"room_id": "r3"})).await;
    assert_eq!(app.get_json("/room/r2").await.0, 404);
    let (_, rooms) = app.get_json("/rooms").await;
    assert_eq!(rooms["count"], json!(2));
    let mut ids: Vec<String> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["r1", "r3"]);

    // Joining the room one is already in changes nothing.
    let ack = host.call("join_room", json!({"room_id": "r1"})).await;
    assert_eq!(ack["user_count"], json!(2));
}

#[tokio::test]
async fn commands_from_one_socket_are_applied_in_the_order_sent() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let c = room_with(&sio, &app, "r", &["b"]).await;
    let (host, b) = (&c[0], &c[1]);
    // Fire without waiting: socketioxide would run these handlers concurrently.
    for i in 0..200 {
        let event = ["seek", "sync_progress", "play", "pause"][i % 4];
        host.emit(event, json!({"room_id": "r", "current_time": i}))
            .await;
    }
    for i in 0..200 {
        let (event, payload) = b.next_of(&["seek", "sync_progress", "play", "pause"]).await;
        assert_eq!(event, ["seek", "sync_progress", "play", "pause"][i % 4]);
        assert_eq!(num(&payload["current_time"]), i as f64);
    }
    let state = state_via(b, "r").await;
    assert_eq!(num(&state["current_time"]), 199.0);
    assert_eq!(state["is_playing"], json!(false));
}

#[tokio::test]
async fn integer_room_ids_are_echoed_as_sent() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let a = sio.connect("a", &app.base(), WS()).await;
    a.emit("create_room", json!({"room_id": 42})).await;
    assert_eq!(a.next("room_created").await["room_id"], json!(42));
    let b = sio.connect("b", &app.base(), WS()).await;
    // The same room by its text form.
    b.emit("join_room", json!({"room_id": "42"})).await;
    let joined = b.next("room_joined").await;
    assert_eq!(joined["room_id"], json!("42"));
    assert_eq!(joined["user_count"], json!(2));
    assert_eq!(app.get_json("/room/42").await.1["id"], json!(42));
    a.disconnect().await;
    assert_eq!(b.next("become_host").await, json!({"room_id": 42}));
}

#[tokio::test]
async fn get_room_state_reports_the_room_or_an_error() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let c = room_with(&sio, &app, "r", &["b"]).await;
    let state = state_via(&c[1], "r").await;
    assert_eq!(state["room_id"], json!("r"));
    assert_eq!(state["user_count"], json!(2));
    assert_eq!(
        state["current_track"],
        json!({"name": "Song", "source": "test"})
    );
    assert_eq!(state["is_playing"], json!(true));
    assert!(state["current_time"].as_f64().is_some());
    let ack = c[1]
        .call("get_room_state", json!({"room_id": "missing"}))
        .await;
    assert_eq!(ack["code"], json!("room_not_found"));
    assert_eq!(c[1].next("error").await["code"], json!("room_not_found"));
}

#[tokio::test]
async fn bad_input_is_refused_without_changing_anything() {
    let app = spawn_app(&["--max-track-bytes", "1024"]).await;
    let sio = Sio::start().await;
    let c = room_with(&sio, &app, "r", &["b"]).await;
    let (host, b) = (&c[0], &c[1]);
    let before = app.get_json("/room/r").await.1;
    let big_track = json!({"name": "x".repeat(2000)});
    let long_id = "r".repeat(129);

    // (event, args, expected code); args are the Socket.IO arguments as sent.
    let cases: Vec<(&str, Vec<Value>, &str)> = vec![
        ("create_room", vec![json!("r9")], "invalid_payload"),
        ("create_room", vec![json!(17)], "invalid_payload"),
        ("create_room", vec![json!([1, 2])], "invalid_payload"),
        ("create_room", vec![json!(null)], "invalid_payload"),
        ("create_room", vec![], "invalid_payload"),
        ("create_room", vec![json!({})], "invalid_room_id"),
        (
            "create_room",
            vec![json!({"room_id": ""})],
            "invalid_room_id",
        ),
        (
            "create_room",
            vec![json!({"room_id": 1.5})],
            "invalid_room_id",
        ),
        (
            "create_room",
            vec![json!({"room_id": {"x": 1}})],
            "invalid_room_id",
        ),
        (
            "create_room",
            vec![json!({"room_id": [1]})],
            "invalid_room_id",
        ),
        (
            "create_room",
            vec![json!({ "room_id": long_id })],
            "invalid_room_id",
        ),
        (
            "create_room",
            vec![json!({"room_id": "n", "current_time": -1})],
            "invalid_current_time",
        ),
        (
            "create_room",
            vec![json!({"room_id": "n", "current_time": "3"})],
            "invalid_current_time",
        ),
        (
            "create_room",
            vec![json!({"room_id": "n", "track": "song"})],
            "invalid_track",
        ),
        (
            "create_room",
            vec![json!({"room_id": "n", "track": [1]})],
            "invalid_track",
        ),
        (
            "create_room",
            vec![json!({"room_id": "n", "track": big_track})],
            "invalid_track",
        ),
        ("join_room", vec![json!("r")], "invalid_payload"),
        ("join_room", vec![json!({"room_id": ""})], "invalid_room_id"),
        (
            "join_room",
            vec![json!({"room_id": false})],
            "invalid_room_id",
        ),
        ("get_room_state", vec![json!(5)], "invalid_payload"),
        (
            "get_room_state",
            vec![json!({"room_id": null})],
            "invalid_room_id",
        ),
    ];
    for (event, args, code) in &cases {
        let ack = b.call_args(event, args.clone()).await;
        assert_eq!(ack["ok"], json!(false), "{event} {args:?}");
        assert_eq!(ack["code"], json!(code), "{event} {args:?}: {ack}");
        let err = b.next("error").await;
        assert_eq!(err["code"], json!(code), "{event} {args:?}");
        assert!(!err["message"].as_str().unwrap_or_default().is_empty());
    }
    // The same without acknowledgements: error events only.
    for (event, args, code) in &cases {
        b.emit_args(event, args.clone()).await;
        assert_eq!(b.next("error").await["code"], json!(code));
    }

    // Invalid host commands are refused and not broadcast.
    let bad_controls: Vec<(&str, Value, &str)> = vec![
        ("play", json!("r"), "invalid_payload"),
        (
            "play",
            json!({"room_id": "r", "current_time": -5}),
            "invalid_current_time",
        ),
        (
            "pause",
            json!({"room_id": "r", "current_time": "1"}),
            "invalid_current_time",
        ),
        ("seek", json!({"room_id": "r"}), "invalid_current_time"),
        (
            "seek",
            json!({"room_id": "r", "current_time": {"t": 1}}),
            "invalid_current_time",
        ),
        (
            "sync_progress",
            json!({"room_id": "r", "current_time": true}),
            "invalid_current_time",
        ),
        (
            "track_change",
            json!({"room_id": "r", "track": 7}),
            "invalid_track",
        ),
        ("track_change", json!({"room_id": "r"}), "invalid_track"),
        (
            "track_change",
            json!({"room_id": "r", "track": {"name": "x".repeat(2000)}}),
            "invalid_track",
        ),
        ("seek", json!({"current_time": 1}), "invalid_room_id"),
    ];
    for (event, payload, code) in &bad_controls {
        let ack = host.call(event, payload.clone()).await;
        assert_eq!(ack["code"], json!(code), "{event} {payload}: {ack}");
    }
    // Unknown events are ignored (and say so when asked).
    let ack = b.call("launch_missiles", json!({})).await;
    assert_eq!(ack["ok"], json!(false));

    // Nothing changed, nothing was broadcast, and the server still answers.
    let state = state_via(b, "r").await;
    for e in ["play", "pause", "seek", "sync_progress", "track_change"] {
        assert!(b.drain(e).await.is_empty(), "an invalid {e} was broadcast");
    }
    let after = app.get_json("/room/r").await.1;
    assert_eq!(after["host_id"], before["host_id"]);
    assert_eq!(after["user_count"], before["user_count"]);
    assert_eq!(after["current_track"], before["current_track"]);
    assert_eq!(after["is_playing"], before["is_playing"]);
    assert_eq!(state["user_count"], json!(2));
    assert_eq!(app.get_json("/rooms").await.1["count"], json!(1));
    host.emit("seek", json!({"room_id": "r", "current_time": 8}))
        .await;
    assert_eq!(num(&b.next("seek").await["current_time"]), 8.0);
}

#[tokio::test]
async fn oversized_messages_are_refused_on_both_transports() {
    let app = spawn_app(&["--max-message-bytes", "8192"]).await;
    let sio = Sio::start().await;
    let huge = json!({"room_id": "big", "track": {"blob": "x".repeat(20_000)}});
    for (name, opts) in [("ws", WS()), ("polling", POLLING())] {
        let c = sio.connect(name, &app.base(), opts).await;
        c.next("connected").await;
        c.emit("create_room", huge.clone()).await;
        // The server drops a connection that sends an oversized message.
        let (event, _) = c.next_of(&["$disconnect", "room_created"]).await;
        assert_eq!(event, "$disconnect", "{name}");
    }
    assert_eq!(app.get_json("/rooms").await.1["count"], json!(0));
    // Others are served as before.
    let d = sio.connect("d", &app.base(), WS()).await;
    let ack = d.call("create_room", json!({"room_id": "small"})).await;
    assert_eq!(ack["ok"], json!(true));
}

#[tokio::test]
async fn http_status_and_room_endpoints_have_the_seed_shapes() {
    let app = spawn_app(&[]).await;
    let (status, body) = app.get_json("/").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], json!("ok"));
    assert_eq!(body["rooms"], json!(0));
    assert!(body["message"].is_string());
    assert!(body["timestamp"].as_str().unwrap().starts_with("20"));

    let (status, body) = app.get_json("/room/none").await;
    assert_eq!(status, 404);
    assert!(body["error"].is_string());

    let sio = Sio::start().await;
    let _c = room_with(&sio, &app, "r", &["b"]).await;
    let (_, rooms) = app.get_json("/rooms").await;
    assert_eq!(rooms["count"], json!(1));
    let r = &rooms["rooms"][0];
    for key in [
        "id",
        "host_id",
        "user_count",
        "created_at",
        "current_track",
        "is_playing",
        "current_time",
    ] {
        assert!(r.get(key).is_some(), "missing {key} in {r}");
    }
    assert_eq!(r["user_count"], json!(2));
    assert_eq!(app.get_json("/").await.1["rooms"], json!(1));
}

#[tokio::test]
async fn cors_is_open_by_default_and_restricted_by_cors_origins() {
    let app = spawn_app(&[]).await;
    let resp = app.get_from("https://anywhere.example", "/rooms").await;
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let preflight = app
        .preflight(
            "https://anywhere.example",
            "/socket.io/?EIO=4&transport=polling",
            "POST",
        )
        .await;
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    // Socket.IO long-polling responses carry the header too.
    let handshake = app
        .get_from(
            "https://anywhere.example",
            "/socket.io/?EIO=4&transport=polling",
        )
        .await;
    assert_eq!(handshake.headers()["access-control-allow-origin"], "*");

    let app = spawn_app(&["--cors-origins", "https://ok.example"]).await;
    let ok = app.get_from("https://ok.example", "/rooms").await;
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://ok.example"
    );
    let other = app.get_from("https://evil.example", "/rooms").await;
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn socket_io_2_clients_work_too() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    for transports in [json!(["websocket"]), json!(["polling"])] {
        let opts = json!({ "transports": transports });
        let host = sio.connect_v2("v2host", &app.base(), opts.clone()).await;
        assert_eq!(host.next("connected").await["message"], json!("connected"));
        let ack = host
            .call(
                "create_room",
                json!({"room_id": "old", "track": {"name": "t"}}),
            )
            .await;
        assert_eq!(ack["ok"], json!(true));
        let member = sio.connect_v2("v2member", &app.base(), opts).await;
        member.emit("join_room", json!({"room_id": "old"})).await;
        assert_eq!(member.next("room_joined").await["user_count"], json!(2));
        member.next("sync_state").await;
        host.emit("pause", json!({"room_id": "old", "current_time": 4}))
            .await;
        assert_eq!(num(&member.next("pause").await["current_time"]), 4.0);
        host.disconnect().await;
        assert_eq!(member.next("become_host").await, json!({"room_id": "old"}));
        member.disconnect().await;
        eventually("room deletion", || async {
            (app.get_json("/room/old").await.0 == 404).then_some(())
        })
        .await;
    }
}

/// Two hosts, each with a listener in its own room, race to create the same new room. The
/// loser is refused with `room_exists` and nothing else changes: it is still in its room,
/// still its host, and its listener never saw a handover. Several rounds, since it is a race;
/// the same check runs across two instances in `cluster.rs`.
pub(crate) async fn racing_creates_leave_the_loser_in_its_room(bases: [String; 2]) {
    let sio = Sio::start().await;
    for round in 0..5 {
        race_once(&sio, &bases, round).await;
    }
}

async fn race_once(sio: &Arc<Sio>, bases: &[String; 2], round: usize) {
    let mut pairs = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        let host = sio.connect(&format!("host{round}.{i}"), base, WS()).await;
        let room = format!("own{round}.{i}");
        let ack = host
            .call(
                "create_room",
                json!({"room_id": room, "track": {"name": "t"}}),
            )
            .await;
        assert_eq!(ack["ok"], json!(true), "{ack}");
        let listener = sio
            .connect(&format!("listener{round}.{i}"), base, WS())
            .await;
        let ack = listener.call("join_room", json!({ "room_id": room })).await;
        assert_eq!(ack["ok"], json!(true), "{ack}");
        pairs.push((host, listener, room));
    }
    let contested = json!({ "room_id": format!("contested{round}") });
    let (first, second) = tokio::join!(
        pairs[0].0.call("create_room", contested.clone()),
        pairs[1].0.call("create_room", contested.clone()),
    );
    let acks = [first, second];
    let winners: Vec<usize> = (0..2).filter(|&i| acks[i]["ok"] == json!(true)).collect();
    assert_eq!(winners.len(), 1, "exactly one create wins: {acks:?}");
    let loser = 1 - winners[0];
    assert_eq!(
        acks[loser]["code"],
        json!("room_exists"),
        "{:?}",
        acks[loser]
    );

    let (host, listener, room) = &pairs[loser];
    let (status, info) = crate::support::get_json(&bases[loser], &format!("/room/{room}")).await;
    assert_eq!(status, 200, "the loser's room is gone: {info}");
    assert_eq!(info["host_id"], json!(host.sid));
    assert_eq!(info["user_count"], json!(2));
    // Still the host: its commands reach its listener.
    let ack = host
        .call("play", json!({"room_id": room, "current_time": 4}))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    assert_eq!(num(&listener.next("play").await["current_time"]), 4.0);
    assert!(
        listener.drain("become_host").await.is_empty(),
        "the listener was made host"
    );
}

// The server runs on several threads, as in production, so the two creates really race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_create_room_changes_nothing_for_the_sender() {
    let app = spawn_app(&[]).await;
    racing_creates_leave_the_loser_in_its_room([app.base(), app.base()]).await;
}
