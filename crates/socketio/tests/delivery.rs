//! Fan-out, slow readers, the heartbeat and ordering, over real loopback WebSockets.
//!
//! The first two are regressions of the transport this engine replaces: its writer drained a
//! connection's whole outbox under one timeout without reading it, so a slow but steady
//! reader was closed as "stalled" and its own requests went unanswered.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use socketio::{DisconnectReason, Packet, broadcast};
use support::*;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

/// A client that never reads costs its outbox's byte bound at most; the others still get
/// every packet.
#[tokio::test]
async fn a_never_reading_client_is_bounded_while_another_gets_everything() {
    let mut config = config();
    config.outbox_bytes = 64 * 1024;
    config.ping_interval = Duration::from_secs(30);
    config.ping_timeout = Duration::from_secs(30);
    let s = serve(config).await;
    // A small receive buffer, so that the kernel holds little for the stuck client.
    let tcp = TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(s.addr).await.unwrap();
    let mut stuck = ws_open_on(tcp, s.addr, "EIO=4&transport=websocket").await;
    stuck.text().await;
    stuck.send("40").await;
    let stuck_id = connected_sid(&stuck.text().await);
    let (mut reader, reader_id) = Ws::connect(s.addr).await;
    let sockets = s.engine.sockets();
    assert_eq!(sockets.len(), 2);
    let stuck_socket = sockets
        .iter()
        .find(|x| x.id().to_string() == stuck_id)
        .unwrap()
        .clone();

    // 4000 packets of 1 KiB (4 MB), in batches the reader keeps up with.
    let payload = "x".repeat(1000);
    let mut received = 0u32;
    for batch in 0..100u32 {
        for i in 0..40u32 {
            let p = Packet::event("/", "n", &(batch * 40 + i, &payload)).unwrap();
            broadcast(&sockets, &p);
        }
        while received < (batch + 1) * 40 {
            let text = reader.text().await;
            let value: Value = serde_json::from_str(text.strip_prefix("42").unwrap()).unwrap();
            assert_eq!(value[1][0], Value::from(received), "in order, none missing");
            received += 1;
        }
        let (_, bytes) = stuck_socket.outbox();
        assert!(bytes <= 64 * 1024, "the stuck outbox holds {bytes} bytes");
    }
    let stats = s.engine.stats();
    assert!(stats.messages_dropped > 0, "{stats:?}");
    // 4000 packets to each of the two sockets, plus their greetings.
    assert_eq!(stats.messages_sent + stats.messages_dropped, 8002);
    assert!(!s.log.disconnected(&reader_id));
    assert!(
        !s.log.disconnected(&stuck_id),
        "not reading is not a reason to disconnect"
    );
    drop(stuck);
}

/// A client that reads in short bursts with pauses keeps its connection while it answers
/// pings, and gets the acknowledgement of its own request, however busy its outbox is.
#[tokio::test]
async fn a_slow_but_steady_reader_keeps_its_connection_and_gets_its_ack() {
    let mut config = config();
    config.outbox_bytes = 32 * 1024;
    config.ping_interval = Duration::from_millis(300);
    config.ping_timeout = Duration::from_millis(1000);
    // Small kernel buffers on both sides: what the kernel holds ahead of a ping is read in
    // one burst, so the ping's answer depends on the client, not on the backlog.
    let s = serve_full(config, false, Some(16 * 1024)).await;
    let tcp = TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(8192).unwrap();
    let tcp = tcp.connect(s.addr).await.unwrap();
    let mut slow = ws_open_on(tcp, s.addr, "EIO=4&transport=websocket").await;
    slow.text().await;
    slow.send("40").await;
    let slow_id = connected_sid(&slow.text().await);
    let (mut fast, fast_id) = Ws::connect(s.addr).await;
    let sockets = s.engine.sockets();

    // A steady stream of 1 KiB packets to both (about 1 MB/s), for a bounded count.
    const COUNT: u64 = 2000;
    let streamer = tokio::spawn(async move {
        let payload = "y".repeat(1000);
        for i in 0..COUNT {
            broadcast(&sockets, &Packet::event("/", "n", &(i, &payload)).unwrap());
            if i % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let fast_reader = tokio::spawn(async move {
        let mut last = None;
        while last != Some(COUNT - 1) {
            let text = fast.text().await;
            let value: Value = serde_json::from_str(text.strip_prefix("42").unwrap()).unwrap();
            let n = value[1][0].as_u64().unwrap();
            assert_eq!(
                n,
                last.map_or(0, |l| l + 1),
                "the fast reader gets everything in order"
            );
            last = Some(n);
        }
        fast
    });

    // The slow reader: a pause, then 5 ms of reading (answering pings), again and again.
    slow.send("4277[\"ack\",\"mine\"]").await;
    let mut got_ack = false;
    let mut bursts = 0;
    while !(got_ack && streamer.is_finished()) && bursts < 200 {
        bursts += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let burst = tokio::time::sleep(Duration::from_millis(5));
        tokio::pin!(burst);
        loop {
            tokio::select! {
                () = &mut burst => break,
                message = slow.ws.next() => match message {
                    Some(Ok(Message::Text(t))) if t.as_str() == "2" => slow.send("3").await,
                    Some(Ok(Message::Text(t))) if t.as_str() == "4377[\"mine\"]" => got_ack = true,
                    Some(Ok(_)) => {}
                    other => panic!("the slow reader was disconnected: {other:?} {:?}", s.log.all()),
                },
            }
        }
    }
    assert!(got_ack, "the slow reader got the answer to its own request");
    // (It read until now: a disconnect would have ended its reads with a panic.)
    assert!(
        !s.log.disconnected(&slow_id),
        "a steady reader is not dropped"
    );
    assert!(
        s.engine.stats().messages_dropped > 0,
        "the slow reader missed packets"
    );
    streamer.await.unwrap();
    fast_reader.await.unwrap();
    assert!(!s.log.disconnected(&fast_id));
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_disconnected() {
    let s = serve(config()).await;
    let (mut ws, sid) = Ws::connect(s.addr).await;
    // One ping answered, then silence (still reading).
    ws.pong = false;
    assert_eq!(ws.text().await, "2");
    ws.send("3").await;
    assert_eq!(ws.text().await, "2");
    ws.closed().await;
    assert_eq!(
        s.log.disconnect_of(&sid).await,
        DisconnectReason::PingTimeout
    );
}

/// Events run one at a time in arrival order, while a slow handler future keeps the
/// connection's heartbeat and control packets going.
#[tokio::test]
async fn events_are_handled_in_order_while_the_heartbeat_goes_on() {
    let s = serve(config()).await;
    let (mut ws, sid) = Ws::connect(s.addr).await;
    // A handler future longer than pingInterval + pingTimeout, then numbered events.
    ws.send("421[\"sleep\",1000]").await;
    for i in 0..50 {
        ws.send(&format!("42[\"seq\",{i}]")).await;
    }
    ws.send("422[\"ack\",\"done\"]").await;
    // Pings are answered (by `text`) while the handler sleeps; the acks come in order.
    assert_eq!(ws.text().await, "431[\"slept\"]");
    assert_eq!(ws.text().await, "432[\"done\"]");
    assert_eq!(
        s.log.seqs(&sid),
        (0..50).map(Value::from).collect::<Vec<_>>()
    );
    assert!(!s.log.disconnected(&sid));
}

/// Events POSTed over long-polling are handled in order too, across several payloads.
#[tokio::test]
async fn polling_events_are_handled_in_order() {
    let s = serve(config()).await;
    let sid = polling_open(s.addr, 4).await;
    post(s.addr, &sid, "40").await;
    let socket_id = connected_sid(&poll(s.addr, &sid).await[0]);
    for chunk in 0..5 {
        let payload: Vec<String> = (0..20)
            .map(|i| format!("42[\"seq\",{}]", chunk * 20 + i))
            .collect();
        post(s.addr, &sid, &payload.join("\x1e")).await;
    }
    s.log
        .wait_for("100 seq events", |seen| {
            (seqs_in(seen, &socket_id).len() == 100).then_some(())
        })
        .await;
    assert_eq!(
        s.log.seqs(&socket_id),
        (0..100).map(Value::from).collect::<Vec<_>>()
    );
}
