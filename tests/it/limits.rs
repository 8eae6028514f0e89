//! Abuse limits over real HTTP and SSE. Clients are told apart by `X-Forwarded-For` from a
//! trusted proxy (the test itself, on loopback), or by user with authentication on. For each
//! limit: the abuser is limited (429 + Retry-After, nothing stored from refused requests) and
//! a well-behaved client on the same instance is not: its PUT latency p99 is measured with
//! and without the abuser and printed; only a generous sanity bound is asserted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::app::{TestApp, spawn_app};
use crate::support::eventually;
use crate::support::sse::SseClient;

async fn put_from(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = http.put(url).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let (status, h) = (resp.status().as_u16(), resp.headers().clone());
    (status, h, resp.json().await.unwrap_or(Value::Null))
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[((samples.len() * 99).div_ceil(100)).saturating_sub(1)]
}

/// The well-behaved client: `n` PUTs at `per_sec`, all of which must succeed; its latencies.
async fn polite_client(
    app: &TestApp,
    headers: &[(&str, &str)],
    n: usize,
    per_sec: u64,
) -> Vec<Duration> {
    let http = reqwest::Client::new();
    let url = app.url("/api/scroll-position");
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / per_sec));
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        tick.tick().await;
        let started = tokio::time::Instant::now();
        let (status, _, body) = put_from(
            &http,
            &url,
            headers,
            json!({"scrollTop": i, "deviceId": "polite"}),
        )
        .await;
        latencies.push(started.elapsed());
        assert_eq!(status, 200, "the well-behaved client was refused: {body}");
    }
    latencies
}

/// One answer to the abuser: status, the index it sent, the stored timestamp, Retry-After.
type Answer = (u16, i64, Option<u64>, Option<String>);

/// Abusers PUT to playback as fast as they can until `stop`; returns every (status, index,
/// timestamp) answered.
fn abuse(
    app: &TestApp,
    headers: Vec<(String, String)>,
    tasks: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Answer>> {
    let url = app.url("/api/playback-position");
    tokio::spawn(async move {
        let mut handles = Vec::new();
        for t in 0..tasks as i64 {
            let (url, headers, stop) = (url.clone(), headers.clone(), stop.clone());
            handles.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let mut answers = Vec::new();
                // Bounded in count and in time (the caller stops it after a few seconds).
                for i in 0..200_000i64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let index = t * 1_000_000 + i;
                    let (status, headers, body) =
                        put_from(&http, &url, &h, json!({"lastPlayedIndex": index})).await;
                    let retry = headers
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_owned());
                    answers.push((status, index, body["timestamp"].as_u64(), retry));
                }
                answers
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all
    })
}

/// Checks the abuser's answers: some 200, the rest 429 with Retry-After, no more accepted
/// than the bucket allows, and what is stored is one of the accepted records.
async fn check_abuser(
    app: &TestApp,
    token: Option<&str>,
    answers: &[Answer],
    rate: f64,
    burst: f64,
    secs: f64,
) {
    let accepted: Vec<_> = answers.iter().filter(|a| a.0 == 200).collect();
    let refused: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert_eq!(
        accepted.len() + refused.len(),
        answers.len(),
        "only 200 and 429 expected"
    );
    assert!(!refused.is_empty(), "the abuser was never limited");
    for r in &refused {
        let retry: u64 =
            r.3.as_deref()
                .expect("429 without Retry-After")
                .parse()
                .unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }
    let allowed = burst + rate * secs + 2.0;
    assert!(
        accepted.len() as f64 <= allowed,
        "{} accepted, at most {allowed} allowed",
        accepted.len()
    );
    println!(
        "abuser: {} PUTs, {} accepted, {} refused with 429",
        answers.len(),
        accepted.len(),
        refused.len()
    );
    // Nothing from a refused PUT was stored: the stored record is the newest accepted one.
    let mut req = app.http.get(app.url("/api/playback-position"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let stored: Value = req.send().await.unwrap().json().await.unwrap();
    let newest = accepted.iter().max_by_key(|a| a.2).unwrap();
    assert_eq!(stored["lastPlayedIndex"], json!(newest.1));
    assert_eq!(stored["timestamp"], json!(newest.2));
}

/// Authentication off: buckets per client address (from X-Forwarded-For through a trusted
/// proxy). The abuser is limited; the polite client's PUT latency is measured alone and
/// next to the abuser.
#[tokio::test]
async fn the_put_rate_limits_an_abusive_address_and_not_its_neighbour() {
    let app = spawn_app(&[
        "--put-rate",
        "20",
        "--put-burst",
        "20",
        "--trusted-proxies",
        "127.0.0.1",
    ])
    .await;
    let polite = [("X-Forwarded-For", "198.51.100.7")];
    let alone = polite_client(&app, &polite, 40, 10).await;

    let mut watcher = SseClient::connect(&app.url("/api/events/playback"), None).await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = tokio::time::Instant::now();
    let abuser = abuse(
        &app,
        vec![("X-Forwarded-For".into(), "6.6.6.6, 203.0.113.66".into())],
        4,
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let beside = polite_client(&app, &polite, 40, 10).await;
    stop.store(true, Ordering::Relaxed);
    let answers = abuser.await.unwrap();
    let secs = started.elapsed().as_secs_f64();

    let (p_alone, p_beside) = (p99(alone), p99(beside));
    println!("polite client PUT p99: alone {p_alone:?}, beside the abuser {p_beside:?}");
    assert!(
        p_beside < Duration::from_secs(2),
        "the polite client was held up: {p_beside:?}"
    );
    check_abuser(&app, None, &answers, 20.0, 20.0, secs).await;
    // The stream saw accepted records only.
    let accepted: std::collections::HashSet<i64> =
        answers.iter().filter(|a| a.0 == 200).map(|a| a.1).collect();
    let newest = answers
        .iter()
        .filter(|a| a.0 == 200)
        .max_by_key(|a| a.2)
        .unwrap()
        .2
        .unwrap();
    loop {
        let (event, data) = watcher.next_json().await;
        assert!(
            accepted.contains(&data["lastPlayedIndex"].as_i64().unwrap()),
            "a refused PUT was broadcast"
        );
        if event.id == newest.to_string() {
            break;
        }
    }
}

/// Authentication on: buckets per user, so two users behind one address do not share one.
#[tokio::test]
async fn with_authentication_the_put_rate_is_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let (noisy, quiet) = (
        "noisy-token-0123456789abcdef",
        "quiet-token-0123456789abcdef",
    );
    let file = dir.path().join("tokens");
    std::fs::write(&file, format!("noisy:{noisy}\nquiet:{quiet}\n")).unwrap();
    let app = spawn_app(&[
        "--put-rate",
        "5",
        "--put-burst",
        "10",
        "--auth-tokens-file",
        file.to_str().unwrap(),
    ])
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let started = tokio::time::Instant::now();
    let abuser = abuse(
        &app,
        vec![("Authorization".into(), format!("Bearer {noisy}"))],
        2,
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bearer = format!("Bearer {quiet}");
    let latencies = polite_client(&app, &[("Authorization", &bearer)], 10, 4).await;
    stop.store(true, Ordering::Relaxed);
    let answers = abuser.await.unwrap();
    println!(
        "quiet user beside a noisy one: PUT p99 {:?}",
        p99(latencies)
    );
    check_abuser(
        &app,
        Some(noisy),
        &answers,
        5.0,
        10.0,
        started.elapsed().as_secs_f64(),
    )
    .await;
}

async fn open(app: &TestApp, xff: Option<&str>) -> Result<SseClient, (u16, Value)> {
    let headers: Vec<(&str, &str)> = xff
        .map(|x| vec![("X-Forwarded-For", x)])
        .unwrap_or_default();
    SseClient::connect_with(&app.url("/api/events/playback"), &headers)
        .await
        .map_err(|(status, _, body)| (status, body))
}

/// Per-address and global caps on SSE streams: behind a trusted proxy the forwarded address
/// counts (the right-most untrusted one, so prepending addresses does not help); from an
/// untrusted peer the header is ignored and the peer counts.
#[tokio::test]
async fn connection_caps_per_address_and_in_all() {
    let app = spawn_app(&[
        "--max-connections-per-ip",
        "2",
        "--max-connections",
        "4",
        "--trusted-proxies",
        "127.0.0.1/32",
    ])
    .await;
    let a1 = open(&app, Some("203.0.113.1")).await.unwrap();
    let _a2 = open(&app, Some("1.1.1.1, 203.0.113.1")).await.unwrap();
    // A third from the same client, whatever it prepends: 429.
    for xff in ["203.0.113.1", "9.9.9.9, 203.0.113.1", "junk, 203.0.113.1"] {
        let (status, body) = open(&app, Some(xff))
            .await
            .err()
            .expect("per-address cap not applied");
        assert_eq!(status, 429, "{xff}: {body}");
        assert!(body["error"].is_string());
    }
    let _b1 = open(&app, Some("203.0.113.2")).await.unwrap();
    let _b2 = open(&app, Some("203.0.113.2")).await.unwrap();
    // The server is full: 503 for a newcomer, while the one at its own cap still hears 429.
    let (status, body) = open(&app, Some("203.0.113.3"))
        .await
        .err()
        .expect("global cap not applied");
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].is_string());
    assert_eq!(open(&app, Some("203.0.113.1")).await.err().unwrap().0, 429);
    // A closed stream frees its place.
    drop(a1);
    let c = eventually("a freed place", || async {
        open(&app, Some("203.0.113.3")).await.ok()
    })
    .await;
    // Health and PUTs are not connections.
    assert_eq!(app.get_json("/health").await.0, 200);
    drop(c);

    // From a peer that is not a trusted proxy, X-Forwarded-For is ignored: every stream
    // counts against the peer itself.
    let untrusted = spawn_app(&[
        "--max-connections-per-ip",
        "2",
        "--trusted-proxies",
        "10.0.0.0/8",
    ])
    .await;
    let _x = open(&untrusted, Some("203.0.113.1")).await.unwrap();
    let _y = open(&untrusted, Some("203.0.113.2")).await.unwrap();
    let (status, _) = open(&untrusted, Some("203.0.113.3"))
        .await
        .err()
        .expect("spoofed X-Forwarded-For believed");
    assert_eq!(status, 429);
    let (status, _) = open(&untrusted, None).await.err().unwrap();
    assert_eq!(status, 429);
}

/// The defaults leave a normal client alone: a few streams and a PUT a second from one
/// address, with no settings at all.
#[tokio::test]
async fn the_defaults_leave_a_normal_client_alone() {
    let app = spawn_app(&[]).await;
    let _streams = [
        open(&app, None).await.unwrap(),
        open(&app, None).await.unwrap(),
        open(&app, None).await.unwrap(),
    ];
    let latencies = polite_client(&app, &[], 12, 4).await;
    assert_eq!(latencies.len(), 12);
}

/// `EVENT_RATE`/`EVENT_BURST`: a host flooding its room with commands gets `rate_limited`
/// for the excess, which changes nothing (its listener hears exactly the accepted ones), and
/// is disconnected when it keeps on; a well-behaved client on the same instance is not
/// delayed (its acknowledgement p99 alone and beside the flood is printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_rate_limits_a_flooding_connection_and_not_its_neighbour() {
    let app = spawn_app(&["--event-rate", "10", "--event-burst", "20"]).await;
    let sio = crate::support::sio::Sio::start().await;
    let ws = || json!({"transports": ["websocket"]});

    let polite = sio.connect("polite", &app.base(), ws()).await;
    let ack = polite.call("create_room", json!({"room_id": "calm"})).await;
    assert_eq!(ack["ok"], json!(true));
    let probe = |n: usize| {
        let polite = &polite;
        async move {
            let mut latencies = Vec::new();
            for i in 0..n {
                let started = tokio::time::Instant::now();
                let ack = polite
                    .call("seek", json!({"room_id": "calm", "current_time": i}))
                    .await;
                latencies.push(started.elapsed());
                assert_eq!(
                    ack["ok"],
                    json!(true),
                    "the polite client was refused: {ack}"
                );
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            latencies
        }
    };
    let alone = p99(probe(12).await);

    let flood = sio.connect("flood", &app.base(), ws()).await;
    let ack = flood.call("create_room", json!({"room_id": "loud"})).await;
    assert_eq!(ack["ok"], json!(true));
    let listener = sio.connect("listener", &app.base(), ws()).await;
    let ack = listener.call("join_room", json!({"room_id": "loud"})).await;
    assert_eq!(ack["ok"], json!(true));
    // 40 commands at once: the burst (20, less the two events above) passes, the rest is
    // refused, each with an acknowledgement.
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..40 {
        let ack = flood
            .call("seek", json!({"room_id": "loud", "current_time": 1000 + i}))
            .await;
        match ack["ok"].as_bool() {
            Some(true) => accepted.push(json!(1000 + i)),
            _ => {
                assert_eq!(ack["code"], json!("rate_limited"), "{ack}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0 && !accepted.is_empty(), "{refused} refused");
    let mut heard = Vec::new();
    while heard.len() < accepted.len() {
        heard.push(listener.next("seek").await["current_time"].clone());
    }
    assert_eq!(heard, accepted, "refused commands changed the room");

    // Meanwhile, the polite client keeps its pace.
    let done = Arc::new(AtomicBool::new(false));
    let (beside, ()) = tokio::join!(
        async {
            let latencies = probe(12).await;
            done.store(true, Ordering::Relaxed);
            latencies
        },
        async {
            for _ in 0..5000 {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                flood
                    .emit(
                        "sync_progress",
                        json!({"room_id": "loud", "current_time": 1}),
                    )
                    .await;
            }
        }
    );
    let beside = p99(beside);
    println!("polite ack p99: alone {alone:?}, beside the flood {beside:?}");
    assert!(beside < Duration::from_secs(2));
    // Sustained flooding disconnects.
    let (event, _) = flood.next_of(&["$disconnect"]).await;
    assert_eq!(event, "$disconnect");
}

/// Socket.IO connections count against `MAX_CONNECTIONS_PER_IP` with SSE streams.
#[tokio::test]
async fn socket_io_connections_count_against_the_per_address_cap() {
    let app = spawn_app(&["--max-connections-per-ip", "2"]).await;
    let sio = crate::support::sio::Sio::start().await;
    let ws = || json!({"transports": ["websocket"]});
    let _first = sio.connect("first", &app.base(), ws()).await;
    let _stream = open(&app, None).await.expect("the second connection");
    let refused = sio.try_connect("third", &app.base(), ws(), 4).await;
    assert!(
        refused.is_err(),
        "a third connection from one address was let in"
    );
    let polling = json!({"transports": ["polling"]});
    assert!(
        sio.try_connect("fourth", &app.base(), polling, 4)
            .await
            .is_err()
    );
    drop(_stream);
    eventually("a place to free up", || async {
        sio.try_connect("later", &app.base(), ws(), 4)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
}
