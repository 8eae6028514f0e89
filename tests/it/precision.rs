//! The server side of listening together precisely: `time_sync` probes, commands scheduled
//! on the server clock (`start_at`), a lead derived from the members' round-trip times, a
//! host's own instant (`at`), and the shared playback rate (`set_rate`).

use serde_json::{Value, json};

use crate::support::app::spawn_app;
use crate::support::sio::{Client, Sio};

const WS: fn() -> Value = || json!({"transports": ["websocket"]});

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// Every play-state message carries the timeline next to the seed's fields.
fn has_timeline(event: &str, v: &Value) {
    for field in ["current_time", "server_time", "start_at", "playback_rate"] {
        assert!(v[field].is_number(), "{event} lacks {field}: {v}");
    }
}

async fn probe(c: &Client, rtt: Option<f64>) -> Value {
    let mut payload = json!({"t0": unix_ms()});
    if let Some(rtt) = rtt {
        payload["rtt"] = json!(rtt);
    }
    c.call("time_sync", payload).await
}

#[tokio::test]
async fn time_sync_answers_with_the_server_clock() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let c = sio.connect("c", &app.base(), WS()).await;
    let t0 = unix_ms();
    let ack = c.call("time_sync", json!({ "t0": t0 })).await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    assert_eq!(num(&ack["t0"]), t0, "t0 is echoed");
    let (t1, t2) = (num(&ack["t1"]), num(&ack["t2"]));
    assert!(t1 <= t2, "{ack}");
    // The same machine's clock: the server's readings are close to ours.
    assert!((t1 - t0).abs() < 1000.0, "{ack}");
    // Sub-millisecond precision: the readings are not whole milliseconds (all but surely).
    let probes = [probe(&c, None).await, probe(&c, None).await, ack];
    assert!(
        probes.iter().any(|p| num(&p["t1"]).fract() != 0.0),
        "{probes:?}"
    );

    let bad = c.call("time_sync", json!({"t0": "now"})).await;
    assert_eq!(bad["ok"], json!(false));
    assert_eq!(bad["code"], json!("invalid_payload"));
    assert_eq!(c.next("error").await["code"], json!("invalid_payload"));
}

#[tokio::test]
async fn starts_are_scheduled_ahead_by_the_members_round_trip_times() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let host = sio.connect("host", &app.base(), WS()).await;
    let ack = host
        .call(
            "create_room",
            json!({"room_id": "r", "track": {"url": "a.wav", "title": "A"}}),
        )
        .await;
    assert_eq!(ack["ok"], json!(true));
    let member = sio.connect("member", &app.base(), WS()).await;
    let joined = member.call("join_room", json!({"room_id": "r"})).await;
    has_timeline("join_room ack", &joined);
    has_timeline("room_joined", &member.next("room_joined").await);
    has_timeline("sync_state", &member.next("sync_state").await);
    assert_eq!(num(&joined["playback_rate"]), 1.0);

    // Nobody has probed: the floor, 150 ms.
    let ack = host
        .call("seek", json!({"room_id": "r", "current_time": 10}))
        .await;
    let seek = member.next("seek").await;
    has_timeline("seek", &seek);
    assert_eq!(seek["start_at"], ack["start_at"]);
    assert_eq!(num(&seek["current_time"]), 10.0);
    assert_eq!(num(&ack["start_at"]) - num(&ack["server_time"]), 150.0);

    // Pausing takes effect at once.
    let ack = host
        .call("pause", json!({"room_id": "r", "current_time": 10}))
        .await;
    assert_eq!(ack["start_at"], ack["server_time"]);
    has_timeline("pause", &member.next("pause").await);

    // A member on a slow link: the lead is twice its p95 round trip.
    for _ in 0..4 {
        probe(&member, Some(400.0)).await;
    }
    let ack = host.call("play", json!({"room_id": "r"})).await;
    assert_eq!(num(&ack["start_at"]) - num(&ack["server_time"]), 800.0);
    has_timeline("play", &member.next("play").await);
    // Before the start the room waits where it is.
    let state = host.call("get_room_state", json!({"room_id": "r"})).await;
    assert_eq!(num(&state["current_time"]), 10.0);
    assert_eq!(state["start_at"], ack["start_at"]);

    // A host may name its own instant.
    let at = unix_ms() + 3000.0;
    let ack = host
        .call(
            "track_change",
            json!({"room_id": "r", "track": {"url": "b.wav"}, "at": at}),
        )
        .await;
    assert_eq!(num(&ack["start_at"]), at.round());
    let change = member.next("track_change").await;
    has_timeline("track_change", &change);
    assert_eq!(change["start_at"], ack["start_at"]);
    let far = host
        .call(
            "seek",
            json!({"room_id": "r", "current_time": 1, "at": unix_ms() + 60_000.0}),
        )
        .await;
    assert_eq!(
        num(&far["start_at"]) - num(&far["server_time"]),
        10_000.0,
        "at most 10 s ahead"
    );
    let ack = host
        .call("sync_progress", json!({"room_id": "r", "current_time": 2}))
        .await;
    assert_eq!(ack["ok"], json!(true));
    has_timeline("sync_progress", &member.next("sync_progress").await);
    has_timeline("room_state", &state);
}

#[tokio::test]
async fn the_playback_rate_is_room_state() {
    let app = spawn_app(&[]).await;
    let sio = Sio::start().await;
    let host = sio.connect("host", &app.base(), WS()).await;
    host.call(
        "create_room",
        json!({"room_id": "r", "track": {"url": "a.wav"}}),
    )
    .await;
    let member = sio.connect("member", &app.base(), WS()).await;
    member.call("join_room", json!({"room_id": "r"})).await;

    let ack = host
        .call("set_rate", json!({"room_id": "r", "playback_rate": 1.5}))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let event = member.next("set_rate").await;
    has_timeline("set_rate", &event);
    assert_eq!(num(&event["playback_rate"]), 1.5);
    // Replies extrapolate at the room's rate.
    let s1 = member.call("get_room_state", json!({"room_id": "r"})).await;
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    let s2 = member.call("get_room_state", json!({"room_id": "r"})).await;
    let elapsed = (num(&s2["server_time"]) - num(&s1["server_time"])) / 1000.0;
    let advanced = num(&s2["current_time"]) - num(&s1["current_time"]);
    assert!((advanced - 1.5 * elapsed).abs() < 1e-9, "{s1} {s2}");
    assert_eq!(num(&s2["playback_rate"]), 1.5);
    let (_, info) = app.get_json("/room/r").await;
    assert_eq!(num(&info["playback_rate"]), 1.5);

    for bad in [json!(3), json!(0.1), json!("fast"), json!(null)] {
        let nack = host
            .call("set_rate", json!({"room_id": "r", "playback_rate": bad}))
            .await;
        assert_eq!(nack["code"], json!("invalid_playback_rate"), "{bad}");
    }
    let nack = member
        .call("set_rate", json!({"room_id": "r", "playback_rate": 1.0}))
        .await;
    assert_eq!(nack["code"], json!("not_host"));
}
