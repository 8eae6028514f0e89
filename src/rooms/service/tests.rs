//! The room service with real logic and recording connections: a property test of the room
//! invariants over random sequences of requests, drops, resumes and role changes, and a few
//! scenarios that read what each connection was sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;
use socketio::Packet;

use super::{Rooms, RoomsConfig};
use crate::rooms::access::ClientKey;
use crate::rooms::model::{Control, MemberId, RoomId};
use crate::rooms::protocol::{Limits, RoomOptions};
use crate::rooms::registry::{Connection, Outbound};
use crate::rooms::room::Room;
use crate::rooms::roster::Role;

/// A connection's way out that keeps what it was sent.
#[derive(Clone, Default)]
struct Recorder {
    sent: Arc<Mutex<Vec<String>>>,
    closed: Arc<Mutex<bool>>,
}

impl Outbound for Recorder {
    fn send(&self, packet: &Packet) {
        self.sent.lock().unwrap().push(packet.as_str().to_owned());
    }

    fn close(&self) {
        *self.closed.lock().unwrap() = true;
    }
}

impl Recorder {
    /// The names of the events sent so far.
    fn events(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter_map(|p| {
                let args: Value = serde_json::from_str(p.get(2..)?).ok()?;
                Some(args.get(0)?.as_str()?.to_owned())
            })
            .collect()
    }
}

fn config(grace: Duration) -> RoomsConfig {
    RoomsConfig {
        limits: Limits {
            max_track_bytes: 1024,
        },
        max_rooms: 3,
        max_members: 4,
        resume_grace: grace,
        ready_timeout: Duration::from_secs(8),
    }
}

fn rooms(grace: Duration) -> Arc<Rooms> {
    Rooms::new(config(grace), None)
}

/// Client `i`: odd clients send a `client_id`.
fn client_key(i: usize) -> Option<ClientKey> {
    (i % 2 == 1).then(|| ClientKey::of(&format!("client-id-{i}")).unwrap())
}

/// A new connection for client `i` (the `n`-th of that client).
async fn connect(rooms: &Rooms, i: usize, n: usize) -> (Arc<Connection>, Recorder) {
    let key = client_key(i);
    let member = match &key {
        Some(key) => rooms.member_for(key).await,
        None => MemberId::from(format!("socket-{i}-{n}")),
    };
    let out = Recorder::default();
    let conn = Connection::new(member, key, Box::new(out.clone()));
    rooms.resume(&conn).await;
    (conn, out)
}

/// A copy of every room of this process.
async fn snapshot(rooms: &Rooms) -> Vec<(Room, Vec<MemberId>)> {
    let mut all = Vec::new();
    for (_, slot) in rooms.registry.slots() {
        if let Some(e) = slot.lock().await.as_ref() {
            all.push((e.room.clone(), e.locals.keys().cloned().collect()));
        }
    }
    all
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        conn: usize,
        room: u8,
    },
    Join {
        conn: usize,
        room: u8,
    },
    Leave {
        conn: usize,
    },
    /// The transport drops (a member with a `client_id` goes away).
    Drop {
        conn: usize,
    },
    /// The client connects again.
    Reconnect {
        conn: usize,
    },
    Command {
        conn: usize,
        room: u8,
        time: u16,
    },
    Cohost {
        conn: usize,
        target: usize,
    },
    Transfer {
        conn: usize,
        target: usize,
    },
    /// Time passes: every grace ends (the grace is 0 here).
    Tick,
    Sweep,
}

const CONNS: usize = 6;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..CONNS, 0..4u8).prop_map(|(conn, room)| Op::Create { conn, room }),
        (0..CONNS, 0..4u8).prop_map(|(conn, room)| Op::Join { conn, room }),
        (0..CONNS).prop_map(|conn| Op::Leave { conn }),
        (0..CONNS).prop_map(|conn| Op::Drop { conn }),
        (0..CONNS).prop_map(|conn| Op::Reconnect { conn }),
        (0..CONNS, 0..4u8, 0..1000u16).prop_map(|(conn, room, time)| Op::Command {
            conn,
            room,
            time
        }),
        (0..CONNS, 0..CONNS).prop_map(|(conn, target)| Op::Cohost { conn, target }),
        (0..CONNS, 0..CONNS).prop_map(|(conn, target)| Op::Transfer { conn, target }),
        Just(Op::Tick),
        Just(Op::Sweep),
    ]
}

async fn check_invariants(rooms: &Rooms, conns: &[Option<Arc<Connection>>], ticked: bool) {
    let snapshot = snapshot(rooms).await;
    for (r, locals) in &snapshot {
        assert!(r.user_count() > 0, "empty room {} survived", r.id.key);
        assert!(
            r.is_member(r.host()),
            "host of {} is not a member",
            r.id.key
        );
        for m in r.roster().iter() {
            if m.is_present() {
                assert!(
                    locals.contains(&m.id),
                    "{} is present without a connection",
                    m.id
                );
            } else {
                assert!(
                    !locals.contains(&m.id),
                    "{} is away with a connection",
                    m.id
                );
                assert!(m.client.is_some(), "{} is away without a client_id", m.id);
            }
        }
        if ticked {
            assert!(
                r.roster().expired(u64::MAX, 0).is_empty(),
                "a member outstayed its grace"
            );
        }
    }
    for c in conns.iter().flatten() {
        let member = c.member();
        let rooms_in: Vec<&str> = snapshot
            .iter()
            .filter(|(r, locals)| r.is_member(member) && locals.contains(member))
            .map(|(r, _)| r.id.key.as_str())
            .collect();
        assert!(rooms_in.len() <= 1, "{member} is in {rooms_in:?}");
        assert_eq!(
            rooms_in.first().map(|k| k.to_string()),
            c.room().clone(),
            "membership record of {member} disagrees"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn invariants_hold_for_any_sequence(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let rooms = rooms(Duration::ZERO);
            let mut conns = Vec::new();
            for i in 0..CONNS {
                conns.push(Some(connect(&rooms, i, 0).await.0));
            }
            let mut generation = 1;
            for op in ops {
                let mut ticked = false;
                match op {
                    Op::Create { conn, room } => if let Some(c) = &conns[conn] {
                        let _ = rooms.create(c, RoomId::from_key(room.to_string()), Value::Null, 0.0, None, RoomOptions::default()).await;
                    },
                    Op::Join { conn, room } => if let Some(c) = &conns[conn] {
                        let _ = rooms.join(c, RoomId::from_key(room.to_string()), None, None).await;
                    },
                    Op::Leave { conn } => if let Some(c) = &conns[conn] {
                        rooms.leave(c).await;
                    },
                    Op::Drop { conn } => if let Some(c) = conns[conn].take() {
                        rooms.disconnect(&c, false).await;
                    },
                    Op::Reconnect { conn } => {
                        if let Some(old) = conns[conn].take() {
                            // The old connection is still live: the new one replaces it.
                            let (new, _) = connect(&rooms, conn, generation).await;
                            rooms.disconnect(&old, false).await;
                            conns[conn] = Some(new);
                        } else {
                            conns[conn] = Some(connect(&rooms, conn, generation).await.0);
                        }
                        generation += 1;
                    }
                    Op::Command { conn, room, time } => if let Some(c) = &conns[conn] {
                        let key = room.to_string();
                        let before = snapshot(&rooms).await.into_iter().find(|(r, _)| r.id.key == key);
                        let result = rooms
                            .control(c, RoomId::from_key(key.clone()), Control::Seek { time: f64::from(time) }, None)
                            .await;
                        let after = snapshot(&rooms).await.into_iter().find(|(r, _)| r.id.key == key);
                        match before {
                            Some((b, _)) if b.may_control(c.member()) => {
                                assert!(result.is_ok());
                                assert_eq!(after.map(|(a, _)| a.play.time), Some(f64::from(time)));
                            }
                            before => {
                                assert!(result.is_err());
                                assert_eq!(before, after, "a member who may not control changed the room");
                            }
                        }
                    },
                    Op::Cohost { conn, target } => if let (Some(c), Some(t)) = (&conns[conn], &conns[target]) {
                        let room = c.room().clone();
                        if let Some(room) = room {
                            let _ = rooms.set_role(c, RoomId::from_key(room), t.member().clone(), Role::Cohost).await;
                        }
                    },
                    Op::Transfer { conn, target } => if let (Some(c), Some(t)) = (&conns[conn], &conns[target]) {
                        let room = c.room().clone();
                        if let Some(room) = room {
                            let _ = rooms.transfer_host(c, RoomId::from_key(room), t.member().clone()).await;
                        }
                    },
                    Op::Tick => {
                        rooms.run_due().await;
                        ticked = true;
                    }
                    Op::Sweep => {
                        assert_eq!(rooms.sweep().await, 0, "the sweep found an empty room");
                    }
                }
                check_invariants(&rooms, &conns, ticked).await;
            }
        });
    }
}

#[tokio::test]
async fn sweep_deletes_rooms_left_empty() {
    let rooms = rooms(Duration::from_secs(15));
    let (conn, _) = connect(&rooms, 0, 0).await;
    rooms
        .create(
            &conn,
            RoomId::from_key("r"),
            Value::Null,
            0.0,
            None,
            RoomOptions::default(),
        )
        .await
        .unwrap();
    // Empty the room behind the service's back, as a bug elsewhere might.
    let slot = rooms.registry.slot("r").unwrap();
    slot.lock()
        .await
        .as_mut()
        .unwrap()
        .room
        .leave(conn.member(), 0);
    assert_eq!(rooms.count().await, 1);
    assert_eq!(rooms.sweep().await, 1);
    assert_eq!(rooms.count().await, 0);
    assert_eq!(rooms.sweep().await, 0);
}

#[tokio::test]
async fn a_resumed_member_keeps_its_place_and_nobody_hears_of_the_drop() {
    let rooms = rooms(Duration::from_secs(15));
    let (host, _) = connect(&rooms, 1, 0).await;
    rooms
        .create(
            &host,
            RoomId::from_key("r"),
            Value::Null,
            0.0,
            None,
            RoomOptions::default(),
        )
        .await
        .unwrap();
    let (listener, heard) = connect(&rooms, 0, 0).await;
    rooms
        .join(&listener, RoomId::from_key("r"), None, None)
        .await
        .unwrap();
    let before = heard.events().len();
    rooms.disconnect(&host, false).await;
    let (again, got) = connect(&rooms, 1, 1).await;
    assert_eq!(again.member(), host.member(), "the same member");
    assert_eq!(again.room().as_deref(), Some("r"));
    assert_eq!(
        got.events(),
        ["room_joined"],
        "the room comes back by itself"
    );
    assert_eq!(heard.events().len(), before, "the room heard nothing");
    let room = &snapshot(&rooms).await[0].0;
    assert_eq!(room.host(), host.member().as_str());
    // A second live connection replaces the first.
    let (third, _) = connect(&rooms, 1, 2).await;
    assert_eq!(third.room().as_deref(), Some("r"));
    assert!(
        *got.closed.lock().unwrap(),
        "the replaced connection is closed"
    );
    assert!(got.events().iter().any(|e| e == "error"));
}

#[tokio::test]
async fn limits_refuse_and_change_nothing() {
    let rooms = rooms(Duration::from_secs(15));
    let mut conns = Vec::new();
    for i in 0..6 {
        conns.push(connect(&rooms, i * 2, 0).await.0);
    }
    for (i, c) in conns.iter().take(3).enumerate() {
        rooms
            .create(
                c,
                RoomId::from_key(i.to_string()),
                Value::Null,
                0.0,
                None,
                RoomOptions::default(),
            )
            .await
            .unwrap();
    }
    let refused = rooms
        .create(
            &conns[3],
            RoomId::from_key("3"),
            Value::Null,
            0.0,
            None,
            RoomOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused.code,
        crate::rooms::protocol::ErrorCode::TooManyRooms
    );
    for c in &conns[3..6] {
        rooms
            .join(c, RoomId::from_key("0"), None, None)
            .await
            .unwrap();
    }
    let (late, _) = connect(&rooms, 20, 0).await;
    let refused = rooms
        .join(&late, RoomId::from_key("0"), None, None)
        .await
        .unwrap_err();
    assert_eq!(refused.code, crate::rooms::protocol::ErrorCode::RoomFull);
    assert_eq!(late.room().as_deref(), None);
}
