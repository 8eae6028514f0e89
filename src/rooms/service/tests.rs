//! The room service with real logic and no sockets: a property test of the room
//! invariants over random sequences of requests, and the sweep.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value;

use super::Rooms;
use crate::rooms::hub::Hub;
use crate::rooms::model::{Control, MemberId, RoomId};
use crate::rooms::protocol::Limits;
use crate::rooms::registry::Connection;

fn rooms() -> Arc<Rooms> {
    // A Socket.IO instance with no sockets: emits reach nobody, the logic is real.
    let (_svc, io) = socketioxide::SocketIo::builder().build_svc();
    Rooms::new(
        Hub::new(io),
        Limits {
            max_track_bytes: 1024,
        },
        None,
    )
}

fn connection(i: usize) -> Arc<Connection> {
    Connection::new(MemberId::from(format!("member-{i}")))
}

/// A copy of every room of this process.
async fn snapshot(rooms: &Rooms) -> Vec<crate::rooms::model::Room> {
    let mut all = Vec::new();
    for (_, slot) in rooms.registry.slots() {
        if let Some(e) = slot.lock().await.as_ref() {
            all.push(e.room.clone());
        }
    }
    all
}

#[derive(Debug, Clone)]
enum Op {
    Create { conn: usize, room: u8 },
    Join { conn: usize, room: u8 },
    Leave { conn: usize },
    Command { conn: usize, room: u8, time: u16 },
    Sweep,
}

const CONNS: usize = 6;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..CONNS, 0..4u8).prop_map(|(conn, room)| Op::Create { conn, room }),
        (0..CONNS, 0..4u8).prop_map(|(conn, room)| Op::Join { conn, room }),
        (0..CONNS).prop_map(|conn| Op::Leave { conn }),
        (0..CONNS, 0..4u8, 0..1000u16).prop_map(|(conn, room, time)| Op::Command {
            conn,
            room,
            time
        }),
        Just(Op::Sweep),
    ]
}

async fn check_invariants(rooms: &Rooms, conns: &[Arc<Connection>]) {
    let snapshot = snapshot(rooms).await;
    for r in &snapshot {
        assert!(r.user_count() > 0, "empty room {} survived", r.id.key);
        assert!(
            r.is_member(r.host()),
            "host of {} is not a member",
            r.id.key
        );
    }
    for c in conns {
        let member = c.member().to_string();
        let rooms_in: Vec<&str> = snapshot
            .iter()
            .filter(|r| r.is_member(&member))
            .map(|r| r.id.key.as_str())
            .collect();
        assert!(rooms_in.len() <= 1, "{member} is in {rooms_in:?}");
        assert_eq!(
            rooms_in.first().map(|k| k.to_string()),
            c.room().clone(),
            "membership record disagrees"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn invariants_hold_for_any_sequence(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let rooms = rooms();
            let conns: Vec<Arc<Connection>> = (0..CONNS).map(connection).collect();
            for op in ops {
                match op {
                    Op::Create { conn, room } => {
                        let _ = rooms.create(&conns[conn], RoomId::from_key(room.to_string()), Value::Null, 0.0).await;
                    }
                    Op::Join { conn, room } => {
                        let _ = rooms.join(&conns[conn], RoomId::from_key(room.to_string())).await;
                    }
                    Op::Leave { conn } => rooms.leave(&conns[conn]).await,
                    Op::Command { conn, room, time } => {
                        let key = room.to_string();
                        let before = snapshot(&rooms).await.into_iter().find(|r| r.id.key == key);
                        let result = rooms
                            .control(&conns[conn], RoomId::from_key(key.clone()), Control::Seek { time: f64::from(time) }, None)
                            .await;
                        let after = snapshot(&rooms).await.into_iter().find(|r| r.id.key == key);
                        match before {
                            Some(b) if b.host() == conns[conn].member().as_str() => {
                                assert!(result.is_ok());
                                assert_eq!(after.map(|a| a.play.time), Some(f64::from(time)));
                            }
                            before => {
                                assert!(result.is_err());
                                assert_eq!(before, after, "a non-host changed the room");
                            }
                        }
                    }
                    Op::Sweep => {
                        assert_eq!(rooms.sweep().await, 0, "the sweep found an empty room");
                    }
                }
                check_invariants(&rooms, &conns).await;
            }
        });
    }
}

#[tokio::test]
async fn sweep_deletes_rooms_left_empty() {
    let rooms = rooms();
    let conn = connection(0);
    rooms
        .create(&conn, RoomId::from_key("r"), Value::Null, 0.0)
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
