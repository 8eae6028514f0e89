//! The engine over real loopback HTTP and WebSocket: handshakes, long-polling payloads, the
//! upgrade, Engine.IO 3, binary attachments, malformed input, disconnect reasons.

mod support;

use serde_json::{Value, json};
use socketio::{DisconnectReason, Packet};
use support::*;

#[tokio::test]
async fn polling_handshake_post_and_get_with_multi_packet_payloads() {
    let s = serve(config()).await;
    let r = http(s.addr, "GET", "/socket.io/?EIO=4&transport=polling", b"").await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers.contains("text/plain; charset=UTF-8"),
        "{}",
        r.headers
    );
    let open: Value = serde_json::from_str(r.text().strip_prefix('0').unwrap()).unwrap();
    assert_eq!(open["upgrades"], json!(["websocket"]));
    assert_eq!(open["pingInterval"], json!(300));
    assert_eq!(open["maxPayload"], json!(1_000_000));
    let sid = open["sid"].as_str().unwrap();

    post(s.addr, sid, "40{\"token\":\"t\"}").await;
    let packets = poll(s.addr, sid).await;
    let socket_id = connected_sid(&packets[0]);
    assert_eq!(packets[1], r#"42["hello",{"token":"t"}]"#);

    // Two events in one POST, both echoes in one GET, in order.
    post(s.addr, sid, "42[\"echo\",1]\x1e42[\"echo\",\"é😀\"]").await;
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(poll(s.addr, sid).await);
        if got.len() >= 2 {
            break;
        }
    }
    assert_eq!(got, [r#"42["echo",1]"#, r#"42["echo","é😀"]"#]);

    // An ack and a multi-argument ack.
    post(s.addr, sid, "4212[\"ack\",{\"a\":1},2]").await;
    assert_eq!(poll(s.addr, sid).await, [r#"4312[{"a":1},2]"#]);
    assert!(!s.log.disconnected(&socket_id));
}

#[tokio::test]
async fn the_upgrade_loses_nothing_duplicates_nothing_and_keeps_order() {
    // Room for the whole stream: this is about order and loss, not outbox bounds.
    let mut config = config();
    config.outbox_frames = 10_000;
    let s = serve(config).await;
    let sid = polling_open(s.addr, 4).await;
    post(s.addr, &sid, "40").await;
    let first = poll(s.addr, &sid).await;
    let socket_id = connected_sid(&first[0]);

    // The server streams numbered packets to the socket all through the upgrade.
    const N: u64 = 3000;
    let socket = s
        .engine
        .sockets()
        .into_iter()
        .find(|x| x.id().to_string() == socket_id)
        .unwrap();
    let streamer = tokio::spawn(async move {
        for i in 0..N {
            let p = Packet::event("/", "n", &i).unwrap();
            assert_eq!(socket.emit(&p), socketio::Emit::Queued);
            if i % 50 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    });

    let mut received: Vec<u64> = Vec::new();
    let collect = |packets: Vec<String>, received: &mut Vec<u64>| {
        for p in packets {
            if let Some(n) = p
                .strip_prefix("42[\"n\",")
                .and_then(|r| r.strip_suffix(']'))
            {
                received.push(n.parse().unwrap());
            }
        }
    };
    // A few polls, and client events numbered 0.. over polling.
    for i in 0..3 {
        post(s.addr, &sid, &format!("42[\"seq\",{i}]")).await;
        let packets = poll(s.addr, &sid).await;
        collect(packets, &mut received);
    }
    // The upgrade: probe, the pending GET is released, then `5`.
    let mut ws = ws_open(s.addr, &format!("EIO=4&transport=websocket&sid={sid}")).await;
    ws.send("2probe").await;
    let pending = tokio::spawn({
        let addr = s.addr;
        let sid = sid.clone();
        async move { http(addr, "GET", &poll_path(4, &sid), b"").await }
    });
    assert_eq!(ws.text().await, "3probe");
    let last_poll = pending.await.unwrap();
    assert_eq!(last_poll.status, 200);
    let packets: Vec<String> = last_poll.text().split('\x1e').map(str::to_owned).collect();
    assert!(
        packets.iter().any(|p| p == "6"),
        "the pending GET gets a noop: {packets:?}"
    );
    let pinged = packets.iter().any(|p| p == "2");
    collect(packets, &mut received);
    ws.send("5").await;
    if pinged {
        ws.send("3").await; // a ping that came in the last poll is answered on the WebSocket
    }
    for i in 3..6 {
        ws.send(&format!("42[\"seq\",{i}]")).await;
    }
    while received.last() != Some(&(N - 1)) {
        let text = ws.text().await;
        collect(vec![text], &mut received);
    }
    streamer.await.unwrap();
    assert_eq!(received, (0..N).collect::<Vec<_>>());

    // Polling is over for this session.
    let r = http(s.addr, "GET", &poll_path(4, &sid), b"").await;
    assert_eq!(r.status, 400);
    s.log
        .wait_for("six seq events", |seen| {
            (seqs_in(seen, &socket_id).len() == 6).then_some(())
        })
        .await;
    assert_eq!(
        s.log.seqs(&socket_id),
        (0..6).map(Value::from).collect::<Vec<_>>()
    );
    assert_eq!(s.engine.stats().websocket_v4, 1);
    assert_eq!(s.engine.stats().polling_v4, 0);
}

#[tokio::test]
async fn engine_io_3_over_polling_frames_with_lengths_and_answers_client_pings() {
    let s = serve(config()).await;
    let r = http(s.addr, "GET", "/socket.io/?EIO=3&transport=polling", b"").await;
    let text = r.text();
    let (len, open) = text.split_once(':').unwrap();
    assert_eq!(len.parse::<usize>().unwrap(), open.encode_utf16().count());
    let open: Value = serde_json::from_str(open.strip_prefix('0').unwrap()).unwrap();
    assert!(open.get("maxPayload").is_none());
    let sid = open["sid"].as_str().unwrap().to_owned();
    let path = poll_path(3, &sid);

    // The default namespace is connected implicitly: `40`, then the greeting.
    let r = http(s.addr, "GET", &path, b"").await;
    let mut body = r.text();
    if !body.contains("hello") {
        body.push_str(&http(s.addr, "GET", &path, b"").await.text());
    }
    assert_eq!(body, "2:4016:42[\"hello\",null]");

    // A client ping and an event with non-ASCII text in one text payload.
    let event = "42[\"echo\",\"é😀\"]";
    let payload = format!("1:2{}:{event}", event.encode_utf16().count());
    let r = http(s.addr, "POST", &path, payload.as_bytes()).await;
    assert_eq!((r.status, r.text()), (200, "ok".into()));
    let mut body = http(s.addr, "GET", &path, b"").await.text();
    if !body.contains("echo") {
        body.push_str(&http(s.addr, "GET", &path, b"").await.text());
    }
    assert_eq!(body, format!("1:3{}:{event}", event.encode_utf16().count()));

    // The binary framing a 2.x client POSTs: a binary event with one attachment.
    let header = "451-[\"echo\",{\"_placeholder\":true,\"num\":0}]";
    let mut framed = vec![0u8];
    framed.extend(header.len().to_string().bytes().map(|d| d - b'0'));
    framed.push(0xff);
    framed.extend_from_slice(header.as_bytes());
    framed.extend_from_slice(&[1, 4, 0xff, 4, 7, 8, 9]);
    let r = http(s.addr, "POST", &path, &framed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut body = http(s.addr, "GET", &path, b"").await.text();
    if !body.contains("b4") {
        body.push_str(&http(s.addr, "GET", &path, b"").await.text());
    }
    // Answered as text: the attachment as `b4` + base64.
    assert_eq!(body, format!("{}:{header}6:b4BwgJ", header.len()));
}

#[tokio::test]
async fn engine_io_3_over_websocket_pings_from_the_client_and_prefixed_binary() {
    let s = serve(config()).await;
    let mut ws = ws_open(s.addr, "EIO=3&transport=websocket").await;
    assert!(ws.text().await.starts_with("0{"));
    assert_eq!(ws.text().await, "40");
    assert_eq!(ws.text().await, r#"42["hello",null]"#);
    ws.send("2").await;
    assert_eq!(ws.text().await, "3");
    ws.send(r#"451-["echo",{"_placeholder":true,"num":0}]"#)
        .await;
    ws.send_binary(&[4, 1, 2, 3]).await;
    assert_eq!(
        ws.text().await,
        r#"451-["echo",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(ws.binary().await, [4, 1, 2, 3]);
    // Engine.IO 3 clients must ping: one that stops is timed out (pingInterval + pingTimeout).
    let socket = s.engine.sockets().pop().unwrap().id().to_string();
    assert_eq!(
        s.log.disconnect_of(&socket).await,
        DisconnectReason::PingTimeout
    );
}

#[tokio::test]
async fn binary_attachments_both_ways() {
    let s = serve(config()).await;
    let (mut ws, _) = Ws::connect(s.addr).await;
    ws.send(r#"452-7["echo",{"_placeholder":true,"num":0},"x",{"_placeholder":true,"num":1}]"#)
        .await;
    ws.send_binary(&[1, 2, 3]).await;
    ws.send_binary(&[]).await;
    assert_eq!(
        ws.text().await,
        r#"462-7[{"_placeholder":true,"num":0},"x",{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(ws.binary().await, [1, 2, 3]);
    assert_eq!(ws.binary().await, Vec::<u8>::new());
    s.log
        .wait_for("the binary event", |seen| {
            seen.iter()
                .any(|x| matches!(x, Seen::Event { name, attachments: 2, .. } if name == "echo"))
                .then_some(())
        })
        .await;

    // Over polling: `b` + base64 both ways.
    let sid = polling_open(s.addr, 4).await;
    post(s.addr, &sid, "40").await;
    let _ = poll(s.addr, &sid).await;
    post(
        s.addr,
        &sid,
        "451-[\"echo\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID",
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(poll(s.addr, &sid).await);
        if got.len() >= 2 {
            break;
        }
    }
    assert_eq!(
        got,
        [r#"451-["echo",{"_placeholder":true,"num":0}]"#, "bAQID"]
    );
}

#[tokio::test]
async fn namespaces_auth_refusals_and_admission() {
    let s = serve(config()).await;
    let mut ws = ws_open(s.addr, "EIO=4&transport=websocket").await;
    ws.text().await;
    ws.send("40/random,").await;
    assert_eq!(
        ws.text().await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    ws.send(r#"40{"refuse":true}"#).await;
    assert_eq!(ws.text().await, r#"44{"message":"unauthorized"}"#);
    ws.send(r#"40/custom,{"token":"abc"}"#).await;
    assert!(ws.text().await.starts_with("40/custom,{\"sid\":"));
    assert_eq!(ws.text().await, r#"42/custom,["hello",{"token":"abc"}]"#);
    ws.send("40").await;
    connected_sid(&ws.text().await);
    assert_eq!(ws.text().await, r#"42["hello",null]"#);

    s.engine.set_accepting(false);
    let r = http(s.addr, "GET", "/socket.io/?EIO=4&transport=polling", b"").await;
    assert_eq!(r.status, 503);
    s.engine.set_accepting(true);

    let refusing = serve_with(config(), true).await;
    let r = http(
        refusing.addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        b"",
    )
    .await;
    assert_eq!(
        (r.status, r.text()),
        (403, r#"{"message":"no entry"}"#.into())
    );
}

#[tokio::test]
async fn bad_requests_get_the_spec_answers() {
    let s = serve(config()).await;
    let cases = [
        ("GET", "/socket.io/?EIO=4", 400, 0),
        ("GET", "/socket.io/?EIO=4&transport=abc", 400, 0),
        ("GET", "/socket.io/?transport=polling", 400, 5),
        ("GET", "/socket.io/?EIO=abc&transport=polling", 400, 5),
        (
            "GET",
            "/socket.io/?EIO=4&transport=polling&sid=aaaaaaaaaaaaaaaaaaaa",
            400,
            1,
        ),
        (
            "GET",
            "/socket.io/?EIO=4&transport=polling&sid=nope",
            400,
            1,
        ),
        ("POST", "/socket.io/?EIO=4&transport=polling", 400, 2),
        ("PUT", "/socket.io/?EIO=4&transport=polling", 400, 2),
        ("GET", "/socket.io/?EIO=3&transport=polling&j=0", 400, 3),
        ("GET", "/socket.io/?EIO=4&transport=websocket", 400, 3),
    ];
    for (method, path, status, code) in cases {
        let r = http(s.addr, method, path, b"").await;
        assert_eq!(r.status, status, "{method} {path}");
        let body: Value = serde_json::from_str(&r.text()).unwrap();
        assert_eq!(body["code"], json!(code), "{method} {path}: {}", r.text());
    }
}

/// Each malformed input closes its sender's connection, and only that one.
#[tokio::test]
async fn malformed_input_closes_only_the_sender() {
    let mut config = config();
    config.max_payload = 10_000;
    let s = serve(config).await;
    let (mut bystander, bystander_id) = Ws::connect(s.addr).await;

    let oversize = format!("42[\"echo\",\"{}\"]", "x".repeat(20_000));
    let bad: [(&str, &str, DisconnectReason); 8] = [
        (
            "unknown packet type",
            "4abc",
            DisconnectReason::MalformedPacket,
        ),
        (
            "unknown engine.io type",
            "9",
            DisconnectReason::MalformedPacket,
        ),
        (
            "bad JSON",
            "42[\"echo\",",
            DisconnectReason::MalformedPacket,
        ),
        ("not an array", "42{}", DisconnectReason::MalformedPacket),
        (
            "bad ack id",
            "42abc[\"echo\"]",
            DisconnectReason::MalformedPacket,
        ),
        (
            "ack id overflow",
            "4299999999999999999999[\"echo\"]",
            DisconnectReason::MalformedPacket,
        ),
        (
            "nameless event",
            "42[{}]",
            DisconnectReason::MalformedPacket,
        ),
        (
            "oversize message",
            &oversize,
            DisconnectReason::TransportError,
        ),
    ];
    for (what, input, reason) in bad {
        let (mut ws, sid) = Ws::connect(s.addr).await;
        ws.send(input).await;
        ws.closed().await;
        assert_eq!(s.log.disconnect_of(&sid).await, reason, "{what}");
        // The bystander still works.
        bystander.send(&format!("42[\"echo\",\"{what}\"]")).await;
        assert_eq!(bystander.text().await, format!("42[\"echo\",\"{what}\"]"));
    }
    // Binary data that no packet announced.
    let (mut ws, sid) = Ws::connect(s.addr).await;
    ws.send_binary(&[1]).await;
    ws.closed().await;
    assert_eq!(
        s.log.disconnect_of(&sid).await,
        DisconnectReason::MalformedPacket
    );

    // Long-polling: a malformed payload, an oversize body, a duplicate GET.
    for (what, reason) in [
        ("malformed payload", DisconnectReason::MalformedPacket),
        ("oversize body", DisconnectReason::TransportError),
        ("duplicate GET", DisconnectReason::TransportError),
    ] {
        let sid = polling_open(s.addr, 4).await;
        post(s.addr, &sid, "40").await;
        let socket_id = connected_sid(&poll(s.addr, &sid).await[0]);
        match what {
            "malformed payload" => {
                // Not even a payload (invalid base64): refused at once.
                let r = http(s.addr, "POST", &poll_path(4, &sid), b"b!!").await;
                assert_eq!(r.status, 400);
            }
            "oversize body" => {
                let r = http(s.addr, "POST", &poll_path(4, &sid), oversize.as_bytes()).await;
                assert_eq!(r.status, 413);
            }
            _ => {
                // Two GETs at once: one is refused, the other answered with the close.
                let get = |addr, sid: String| async move {
                    http(addr, "GET", &poll_path(4, &sid), b"").await
                };
                let (a, b) = tokio::join!(get(s.addr, sid.clone()), get(s.addr, sid.clone()));
                let mut answers = [(a.status, a.text()), (b.status, b.text())];
                answers.sort();
                assert_eq!(answers[0].0, 200, "{answers:?}");
                assert!(answers[0].1.ends_with('1'), "{answers:?}");
                assert_eq!(answers[1].0, 400, "{answers:?}");
            }
        }
        assert_eq!(s.log.disconnect_of(&socket_id).await, reason, "{what}");
        let r = http(s.addr, "GET", &poll_path(4, &sid), b"").await;
        assert_eq!(r.status, 400, "{what}: the session is gone");
        bystander.send(&format!("42[\"echo\",\"{what}\"]")).await;
        assert_eq!(bystander.text().await, format!("42[\"echo\",\"{what}\"]"));
    }
    assert!(!s.log.disconnected(&bystander_id));
}

#[tokio::test]
async fn client_disconnect_is_told_from_transport_close() {
    let s = serve(config()).await;
    // socket.disconnect(): DISCONNECT, then the transport closes right after.
    let (mut a, a_id) = Ws::connect(s.addr).await;
    a.send("41").await;
    a.ws.close(None).await.unwrap();
    assert_eq!(
        s.log.disconnect_of(&a_id).await,
        DisconnectReason::ClientDisconnect
    );
    // The transport just closes.
    let (mut b, b_id) = Ws::connect(s.addr).await;
    b.ws.close(None).await.unwrap();
    assert_eq!(
        s.log.disconnect_of(&b_id).await,
        DisconnectReason::TransportClose
    );
    // An Engine.IO close packet.
    let (mut c, c_id) = Ws::connect(s.addr).await;
    c.send("1").await;
    c.closed().await;
    assert_eq!(
        s.log.disconnect_of(&c_id).await,
        DisconnectReason::TransportClose
    );
    // Over polling: DISCONNECT and close in one POST.
    let sid = polling_open(s.addr, 4).await;
    post(s.addr, &sid, "40").await;
    let d_id = connected_sid(&poll(s.addr, &sid).await[0]);
    post(s.addr, &sid, "41\x1e1").await;
    assert_eq!(
        s.log.disconnect_of(&d_id).await,
        DisconnectReason::ClientDisconnect
    );
    // Leaving one namespace keeps the connection and its other namespaces.
    let (mut e, e_id) = Ws::connect(s.addr).await;
    e.send("40/custom,").await;
    let custom_id = connected_sid(&e.text().await.replacen("40/custom,", "40", 1));
    e.text().await;
    e.send("41/custom,").await;
    assert_eq!(
        s.log.disconnect_of(&custom_id).await,
        DisconnectReason::ClientDisconnect
    );
    e.send("42[\"echo\",1]").await;
    assert_eq!(e.text().await, "42[\"echo\",1]");
    assert!(!s.log.disconnected(&e_id));
}

#[tokio::test]
async fn server_disconnect_then_shutdown() {
    let s = serve(config()).await;
    let (mut a, a_id) = Ws::connect(s.addr).await;
    a.send("42[\"echo\",1]").await;
    a.send("42[\"bye\"]").await;
    // What was emitted before comes first, then DISCONNECT.
    assert_eq!(a.text().await, "42[\"echo\",1]");
    assert_eq!(a.text().await, "41");
    assert_eq!(
        s.log.disconnect_of(&a_id).await,
        DisconnectReason::ServerDisconnect
    );
    // The Engine.IO connection stays; events to the gone socket are ignored.
    a.send("42[\"echo\",2]").await;

    let (mut b, b_id) = Ws::connect(s.addr).await;
    let sid = polling_open(s.addr, 4).await;
    post(s.addr, &sid, "40").await;
    let c_id = connected_sid(&poll(s.addr, &sid).await[0]);
    let pending = tokio::spawn({
        let (addr, sid) = (s.addr, sid.clone());
        async move { http(addr, "GET", &poll_path(4, &sid), b"").await }
    });
    tokio::time::timeout(WAIT, s.engine.shutdown())
        .await
        .expect("shutdown ends");
    assert_eq!(b.text().await, "41");
    b.closed().await;
    assert_eq!(
        s.log.disconnect_of(&b_id).await,
        DisconnectReason::ServerShutdown
    );
    assert_eq!(
        s.log.disconnect_of(&c_id).await,
        DisconnectReason::ServerShutdown
    );
    // A GET waiting at shutdown gets DISCONNECT and close; one that arrives after, a 400.
    let last = pending.await.unwrap();
    assert!(
        last.text() == "41\x1e1" || last.status == 400,
        "{} {}",
        last.status,
        last.text()
    );
    assert!(s.engine.sockets().is_empty());
    assert_eq!(s.engine.connection_count(), 0);
    let r = http(s.addr, "GET", "/socket.io/?EIO=4&transport=polling", b"").await;
    assert_eq!(r.status, 503);
}

#[tokio::test]
async fn lone_surrogates_from_clients_are_accepted() {
    let s = serve(config()).await;
    let (mut ws, sid) = Ws::connect(s.addr).await;
    // JSON.stringify('Song 😀'.slice(0, 6))
    ws.send(r#"42["echo","Song \ud83d"]"#).await;
    assert_eq!(ws.text().await, "42[\"echo\",\"Song \u{FFFD}\"]");
    assert!(!s.log.disconnected(&sid));
}
