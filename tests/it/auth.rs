//! Authentication over real HTTP and SSE: 401s, `?token=`, the tokens file, HS256, RS256 and
//! ES256 JWTs (keys made by `openssl`), refused tokens (expired, not yet valid, `alg: none`,
//! algorithm confusion), streams that end when their JWT expires or their token is revoked,
//! users kept apart on disk, on streams and in GETs, on one instance and across two on a real
//! redis-server, and tokens kept out of logs.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use redis::AsyncCommands;
use serde_json::{Value, json};

use crate::support::app::{TestApp, spawn_app, spawn_app_in};
use crate::support::process::Server;
use crate::support::redis::RedisServer;
use crate::support::sse::SseClient;
use crate::support::{PATIENCE, eventually};

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-fedcba9876543210xyz";
const SECRET: &str = "an HS256 secret of at least 32 bytes!";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn write_tokens(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("tokens");
    std::fs::write(&path, text).unwrap();
    path
}

fn jwt(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn hs256(claims: Value) -> String {
    jwt(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        claims,
    )
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// A token signed with HMAC-SHA256 over `key`, with any header: for forgeries.
fn hmac_token(header: Value, claims: Value, key: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
        signing_input.as_bytes(),
    );
    format!("{signing_input}.{}", b64url(tag.as_ref()))
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is required (.ci/run installs it)");
    assert!(status.success(), "openssl {args:?}");
}

/// A key pair made by openssl: (private PEM for signing, path of the public PEM).
fn key_pair(dir: &Path, kind: &str) -> (Vec<u8>, PathBuf) {
    let (private, public) = (format!("{kind}.key"), format!("{kind}.pub"));
    match kind {
        "rsa" => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &private,
            ],
        ),
        _ => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &private,
            ],
        ),
    }
    openssl(dir, &["pkey", "-in", &private, "-pubout", "-out", &public]);
    (std::fs::read(dir.join(&private)).unwrap(), dir.join(public))
}

async fn get(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app.http.get(app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

async fn put(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = app.http.put(app.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn stream(app: &TestApp, kind: &str, token: &str) -> SseClient {
    SseClient::connect_with(
        &app.url(&format!("/api/events/{kind}")),
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .await
    .unwrap_or_else(|(s, _, b)| panic!("stream refused: {s} {b}"))
}

/// A server with the two users' tokens file (and `args`), and the directory holding it.
async fn with_tokens(args: &[&str]) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = write_tokens(
        dir.path(),
        &format!("# test users\nalice:{ALICE}\n\nbob:{BOB}\n"),
    );
    let mut all = vec!["--auth-tokens-file", file.to_str().unwrap()];
    all.extend_from_slice(args);
    (spawn_app(&all).await, dir)
}

fn assert_401(status: u16, headers: &reqwest::header::HeaderMap, body: &Value) {
    assert_eq!(status, 401, "{body}");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with(r#"Bearer realm="playsync""#),
        "{challenge}"
    );
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn without_a_valid_token_positions_are_refused_and_health_stays_open() {
    let (app, _dir) = with_tokens(&[]).await;
    for token in [
        None,
        Some("wrong-token-0123456789abcdef"),
        Some(""),
        Some(&ALICE[1..]),
    ] {
        for path in ["/api/playback-position", "/api/scroll-position"] {
            let (status, headers, body) = get(&app, path, token).await;
            assert_401(status, &headers, &body);
            assert!(!body.to_string().contains(ALICE));
        }
        let (status, _) = put(
            &app,
            "/api/playback-position",
            token,
            json!({"lastPlayedIndex": 1}),
        )
        .await;
        assert_eq!(status, 401);
        let auth = token.map(|t| format!("Bearer {t}")).unwrap_or_default();
        let headers: Vec<(&str, &str)> = if token.is_some() {
            vec![("Authorization", auth.as_str())]
        } else {
            vec![]
        };
        let (status, h, body) = SseClient::connect_with(&app.url("/api/events/playback"), &headers)
            .await
            .err()
            .expect("stream opened without a valid token");
        assert_401(status, &h, &body);
    }
    // Another scheme is no token.
    let resp = app
        .http
        .get(app.url("/api/playback-position"))
        .basic_auth("alice", Some(ALICE))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Liveness and the rooms' HTTP API stay open.
    assert_eq!(app.get_json("/health").await.0, 200);
    assert_eq!(app.get_json("/").await.0, 200);
    // Nothing was stored by the refused PUTs.
    assert_eq!(
        get(&app, "/api/playback-position", Some(ALICE)).await.2["lastPlayedIndex"],
        json!(-1)
    );
}

#[tokio::test]
async fn a_token_in_the_query_serves_event_source() {
    let (app, _dir) = with_tokens(&[]).await;
    let mut s =
        SseClient::connect(&app.url(&format!("/api/events/scroll?token={ALICE}")), None).await;
    let (status, answer) = put(
        &app,
        "/api/scroll-position",
        Some(ALICE),
        json!({"scrollTop": 9}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(s.next_json().await.1["scrollTop"], json!(9));
    let (status, body) = app
        .get_json(&format!("/api/scroll-position?token={ALICE}"))
        .await;
    assert_eq!((status, &body["scrollTop"]), (200, &json!(9)));
    let (status, _) = app
        .get_json("/api/scroll-position?token=nope-nope-nope-nope")
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn tokens_file_hs256_and_rs256_together_and_es256() {
    let keys = tempfile::tempdir().unwrap();
    let (rsa_private, rsa_public) = key_pair(keys.path(), "rsa");
    let (ec_private, ec_public) = key_pair(keys.path(), "ec");
    let (app, _dir) = with_tokens(&[
        "--auth-jwt-secret",
        SECRET,
        "--auth-jwt-public-key",
        rsa_public.to_str().unwrap(),
        "--auth-jwt-leeway-secs",
        "0",
    ])
    .await;
    let exp = now() + 300;
    let rs = jwt(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(&rsa_private).unwrap(),
        json!({"sub": "carol", "exp": exp}),
    );
    let hs = hs256(json!({"sub": "dave", "exp": exp}));
    for (token, user, index) in [
        (ALICE, "alice", 1),
        (hs.as_str(), "dave", 2),
        (rs.as_str(), "carol", 3),
    ] {
        let (status, answer) = put(
            &app,
            "/api/playback-position",
            Some(token),
            json!({"lastPlayedIndex": index}),
        )
        .await;
        assert_eq!(status, 200, "{user}: {answer}");
        assert_eq!(
            std::fs::read_to_string(
                app.data_path()
                    .join(format!("users/{user}/playback-position.json"))
            )
            .map(|s| serde_json::from_str::<Value>(&s).unwrap()["lastPlayedIndex"].clone())
            .unwrap(),
            json!(index)
        );
    }

    // Refused: expired, not yet valid, alg none, the wrong key, algorithm confusion (an
    // HS256 token whose HMAC key is the RSA public key), an ES256 token when RS256 is set.
    let t = now();
    let rsa_pem = std::fs::read(&rsa_public).unwrap();
    let refused = [
        ("expired", hs256(json!({"sub": "dave", "exp": t - 60}))),
        (
            "not yet valid",
            hs256(json!({"sub": "dave", "exp": t + 600, "nbf": t + 300})),
        ),
        ("no exp", hs256(json!({"sub": "dave"}))),
        ("no sub", hs256(json!({"exp": t + 60}))),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64url(br#"{"alg":"none","typ":"JWT"}"#),
                b64url(json!({"sub": "dave", "exp": t + 60}).to_string().as_bytes())
            ),
        ),
        (
            "other secret",
            hmac_token(
                json!({"alg": "HS256"}),
                json!({"sub": "dave", "exp": t + 60}),
                b"another secret, 32 bytes or more.....",
            ),
        ),
        (
            "algorithm confusion",
            hmac_token(
                json!({"alg": "HS256"}),
                json!({"sub": "carol", "exp": t + 60}),
                &rsa_pem,
            ),
        ),
        (
            "HS384",
            hmac_token(
                json!({"alg": "HS384"}),
                json!({"sub": "dave", "exp": t + 60}),
                SECRET.as_bytes(),
            ),
        ),
        (
            "ES256 not configured",
            jwt(
                Algorithm::ES256,
                &EncodingKey::from_ec_pem(&ec_private).unwrap(),
                json!({"sub": "carol", "exp": exp}),
            ),
        ),
    ];
    for (what, token) in &refused {
        let (status, headers, body) = get(&app, "/api/playback-position", Some(token)).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_401(status, &headers, &body);
        let (status, _) = put(
            &app,
            "/api/playback-position",
            Some(token),
            json!({"lastPlayedIndex": 99}),
        )
        .await;
        assert_eq!(status, 401, "{what}");
    }
    let (_, _, body) = get(&app, "/api/playback-position", Some(&refused[0].1)).await;
    assert_eq!(body["error"], json!("token expired"));
    let (_, _, body) = get(&app, "/api/playback-position", Some(&refused[1].1)).await;
    assert_eq!(body["error"], json!("token not yet valid"));
    assert_eq!(
        get(&app, "/api/playback-position", Some(&hs)).await.2["lastPlayedIndex"],
        json!(2)
    );

    // ES256 on its own.
    let es_app = spawn_app(&["--auth-jwt-public-key", ec_public.to_str().unwrap()]).await;
    let es = jwt(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(&ec_private).unwrap(),
        json!({"sub": "erin", "exp": exp}),
    );
    let (status, body) = put(
        &es_app,
        "/api/scroll-position",
        Some(&es),
        json!({"scrollTop": 5}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        es_app
            .data_path()
            .join("users/erin/scroll-position.json")
            .exists()
    );
    assert_eq!(get(&es_app, "/api/scroll-position", Some(&rs)).await.0, 401);
}

#[tokio::test]
async fn an_sse_stream_ends_when_its_jwt_expires() {
    let app = spawn_app(&["--auth-jwt-secret", SECRET, "--auth-jwt-leeway-secs", "0"]).await;
    let short = hs256(json!({"sub": "dave", "exp": now() + 2}));
    let long = hs256(json!({"sub": "dave", "exp": now() + 600}));
    let started = tokio::time::Instant::now();
    let mut expiring = stream(&app, "playback", &short).await;
    let mut lasting = stream(&app, "playback", &long).await;
    // It delivers while valid.
    let (status, _) = put(
        &app,
        "/api/playback-position",
        Some(&long),
        json!({"lastPlayedIndex": 4}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(expiring.next_json().await.1["lastPlayedIndex"], json!(4));
    assert_eq!(lasting.next_json().await.1["lastPlayedIndex"], json!(4));
    assert!(
        expiring.ends_within(Duration::from_secs(5)).await,
        "the stream outlived its token"
    );
    let lived = started.elapsed();
    println!("stream of a token valid for ≤ 2 s ended after {lived:?}");
    assert!(
        lived >= Duration::from_millis(900),
        "ended too early: {lived:?}"
    );
    // The other stream goes on.
    put(
        &app,
        "/api/playback-position",
        Some(&long),
        json!({"lastPlayedIndex": 5}),
    )
    .await;
    assert_eq!(lasting.next_json().await.1["lastPlayedIndex"], json!(5));
    // And the expired token opens nothing new.
    let (status, _, _) = SseClient::connect_with(
        &app.url(&format!("/api/events/playback?token={short}")),
        &[],
    )
    .await
    .err()
    .expect("an expired token opened a stream");
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_tokens_file_is_reloaded_and_a_revoked_token_ends_its_streams() {
    let (app, dir) = with_tokens(&[]).await;
    let mut alice = stream(&app, "scroll", ALICE).await;
    let mut bob = stream(&app, "scroll", BOB).await;
    let carol = "carol-token-0123456789abcdef";
    assert_eq!(get(&app, "/api/scroll-position", Some(carol)).await.0, 401);
    // Bob's token is removed, Carol's added; Alice's stays.
    write_tokens(dir.path(), &format!("alice:{ALICE}\ncarol:{carol}\n"));
    assert!(
        bob.ends_within(PATIENCE).await,
        "a revoked token's stream stayed open"
    );
    eventually("carol's new token to work", || async {
        (get(&app, "/api/scroll-position", Some(carol)).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(get(&app, "/api/scroll-position", Some(BOB)).await.0, 401);
    put(
        &app,
        "/api/scroll-position",
        Some(ALICE),
        json!({"scrollTop": 3}),
    )
    .await;
    assert_eq!(alice.next_json().await.1["scrollTop"], json!(3));
    // A malformed new version is ignored: the tokens in force stay.
    write_tokens(dir.path(), &format!("alice {ALICE}\n"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(get(&app, "/api/scroll-position", Some(ALICE)).await.0, 200);
    assert_eq!(get(&app, "/api/scroll-position", Some(carol)).await.0, 200);
}

/// Alice and Bob on one instance: their own files, their own streams, their own GETs; the
/// global files are neither served nor touched.
#[tokio::test]
async fn two_users_positions_are_kept_apart() {
    let data = tempfile::tempdir().unwrap();
    let global = r#"{"lastPlayedIndex": 42, "notePath": "old.md", "noteTitle": "", "timestamp": 1738234567890, "deviceId": "seed"}"#;
    std::fs::write(data.path().join("playback-position.json"), global).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let file = write_tokens(keys.path(), &format!("alice:{ALICE}\n../bob:{BOB}\n"));
    let app = spawn_app_in(data, &["--auth-tokens-file", file.to_str().unwrap()]).await;
    let mut alice_stream = stream(&app, "playback", ALICE).await;
    let mut bob_stream = stream(&app, "playback", BOB).await;
    // Neither sees the global record.
    assert_eq!(
        get(&app, "/api/playback-position", Some(ALICE)).await.2["lastPlayedIndex"],
        json!(-1)
    );

    let (_, a) = put(
        &app,
        "/api/playback-position",
        Some(ALICE),
        json!({"lastPlayedIndex": 1, "deviceId": "a"}),
    )
    .await;
    let (_, b) = put(
        &app,
        "/api/playback-position",
        Some(BOB),
        json!({"lastPlayedIndex": 2, "deviceId": "b"}),
    )
    .await;
    assert_eq!(a["broadcastCount"], json!(1));
    let (event, data) = alice_stream.next_json().await;
    assert_eq!(
        (event.id, data["lastPlayedIndex"].clone()),
        (a["timestamp"].to_string(), json!(1))
    );
    let (event, data) = bob_stream.next_json().await;
    assert_eq!(
        (event.id, data["lastPlayedIndex"].clone()),
        (b["timestamp"].to_string(), json!(2))
    );
    // Alice's next update is the next thing Alice's stream sees; Bob's stream sees nothing
    // of it (its next event is Bob's own next update).
    put(
        &app,
        "/api/playback-position",
        Some(ALICE),
        json!({"lastPlayedIndex": 10}),
    )
    .await;
    put(
        &app,
        "/api/playback-position",
        Some(BOB),
        json!({"lastPlayedIndex": 20}),
    )
    .await;
    assert_eq!(
        alice_stream.next_json().await.1["lastPlayedIndex"],
        json!(10)
    );
    assert_eq!(bob_stream.next_json().await.1["lastPlayedIndex"], json!(20));
    assert_eq!(
        get(&app, "/api/playback-position", Some(ALICE)).await.2["lastPlayedIndex"],
        json!(10)
    );
    assert_eq!(
        get(&app, "/api/playback-position", Some(BOB)).await.2["lastPlayedIndex"],
        json!(20)
    );

    // On disk: one directory per user, the name encoded, nothing outside users/.
    let read = |p: &str| {
        serde_json::from_str::<Value>(&std::fs::read_to_string(app.data_path().join(p)).unwrap())
            .unwrap()
    };
    assert_eq!(
        read("users/alice/playback-position.json")["lastPlayedIndex"],
        json!(10)
    );
    assert_eq!(
        read("users/%2E%2E%2Fbob/playback-position.json")["lastPlayedIndex"],
        json!(20)
    );
    assert!(!app.data_path().join("bob").exists());
    assert_eq!(
        std::fs::read_to_string(app.data_path().join("playback-position.json")).unwrap(),
        global
    );
    let mut users: Vec<String> = std::fs::read_dir(app.data_path().join("users"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    users.sort();
    assert_eq!(users, ["%2E%2E%2Fbob", "alice"]);

    // After a restart each user gets their own records back, the global one stays unserved.
    let data = app.stop().await;
    let app = spawn_app_in(data, &["--auth-tokens-file", file.to_str().unwrap()]).await;
    assert_eq!(
        get(&app, "/api/playback-position", Some(BOB)).await.2["lastPlayedIndex"],
        json!(20)
    );
    let mut s = stream(&app, "playback", ALICE).await;
    assert_eq!(s.next_json().await.1["lastPlayedIndex"], json!(10));
}

/// Two instances on one redis-server, authentication on: a user's PUT on one reaches that
/// user's streams on the other and nobody else's, under per-user keys and channels; the
/// seed's global channel and keys are not used.
#[tokio::test]
async fn users_stay_apart_across_instances_on_redis() {
    let redis = RedisServer::start().await;
    let keys = tempfile::tempdir().unwrap();
    let file = write_tokens(keys.path(), &format!("alice:{ALICE}\nbob:{BOB}\n"));
    let args = [
        "--auth-tokens-file",
        file.to_str().unwrap(),
        "--redis-url",
        &redis.url(),
    ];
    let (a, b) = (spawn_app(&args).await, spawn_app(&args).await);
    for app in [&a, &b] {
        eventually("redis to connect", || async {
            (app.get_json("/health").await.1["redis_connected"] == json!(true)).then_some(())
        })
        .await;
    }
    // A listener on the seed's channels and on every playsync channel.
    let client = redis::Client::open(format!("{}/?protocol=resp3", redis.url())).unwrap();
    let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
    let config = redis::AsyncConnectionConfig::new().set_push_sender(tx);
    let mut listener = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    listener
        .psubscribe(&["tts:*", "playsync:user:*"])
        .await
        .unwrap();

    let mut alice_on_b = stream(&b, "scroll", ALICE).await;
    let mut bob_on_b = stream(&b, "scroll", BOB).await;
    let (status, answer) = put(
        &a,
        "/api/scroll-position",
        Some(ALICE),
        json!({"scrollTop": 111}),
    )
    .await;
    assert_eq!(status, 200);
    let (event, data) = alice_on_b.next_json().await;
    assert_eq!(event.id, answer["timestamp"].to_string());
    assert_eq!(data["scrollTop"], json!(111));
    assert_eq!(
        get(&b, "/api/scroll-position", Some(ALICE)).await.2["scrollTop"],
        json!(111)
    );
    assert_eq!(
        get(&b, "/api/scroll-position", Some(BOB)).await.2["scrollTop"],
        json!(0)
    );
    // Bob's stream on B sees Bob's update next, not Alice's.
    put(
        &a,
        "/api/scroll-position",
        Some(BOB),
        json!({"scrollTop": 222}),
    )
    .await;
    assert_eq!(bob_on_b.next_json().await.1["scrollTop"], json!(222));
    // B stored Alice's record in Alice's own directory.
    eventually("alice's record on B's disk", || async {
        std::fs::read_to_string(b.data_path().join("users/alice/scroll-position.json"))
            .ok()
            .filter(|s| s.contains("111"))
    })
    .await;

    // Redis: per-user keys, no global key, and messages only on per-user channels.
    let mut conn = redis.client().await;
    let stored: String = conn
        .hget("playsync:user:alice:pos:scroll", "json")
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&stored).unwrap()["scrollTop"],
        json!(111)
    );
    assert!(!conn.exists::<_, bool>("playsync:pos:scroll").await.unwrap());
    let mut channels = Vec::new();
    while channels.len() < 2 {
        let push = tokio::time::timeout(PATIENCE, pushes.recv())
            .await
            .unwrap()
            .unwrap();
        if push.kind == redis::PushKind::PMessage {
            channels.push(redis::from_redis_value_ref::<String>(&push.data[1]).unwrap());
        }
    }
    assert_eq!(
        channels,
        ["playsync:user:alice:scroll", "playsync:user:bob:scroll"]
    );
    // Someone publishing on a malformed user channel changes nothing.
    conn.publish::<_, _, ()>(
        "playsync:user:..%2F:scroll",
        r#"{"scrollTop": 666, "timestamp": 99999999999999}"#,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        get(&b, "/api/scroll-position", Some(ALICE)).await.2["scrollTop"],
        json!(111)
    );
}

/// The real binary with debug logging: tokens (as bearer tokens and in the query, valid or
/// not) never appear in its log.
#[tokio::test]
async fn tokens_never_appear_in_logs() {
    let keys = tempfile::tempdir().unwrap();
    let file = write_tokens(keys.path(), &format!("alice:{ALICE}\n"));
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&[
        ("AUTH_TOKENS_FILE", file.display().to_string()),
        ("AUTH_JWT_SECRET", SECRET.to_owned()),
        ("TTS_DATA_DIR", data.path().display().to_string()),
        ("RUST_LOG", "debug".to_owned()),
    ])
    .await;
    let jwt = hs256(json!({"sub": "dave", "exp": now() + 60}));
    let expired = hs256(json!({"sub": "dave", "exp": now() - 60}));
    let wrong = "wrong-token-9876543210zyxwvu";
    let http = reqwest::Client::new();
    for token in [ALICE, jwt.as_str(), expired.as_str(), wrong] {
        let url = format!("{}/api/playback-position", server.base());
        let _ = http.get(&url).bearer_auth(token).send().await.unwrap();
        let _ = http
            .get(format!("{url}?token={token}"))
            .send()
            .await
            .unwrap();
        let _ = http
            .put(&url)
            .bearer_auth(token)
            .json(&json!({"lastPlayedIndex": 1}))
            .send()
            .await
            .unwrap();
        let mut s = http
            .get(format!("{}/api/events/scroll?token={token}", server.base()))
            .send()
            .await
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(200), s.chunk()).await;
    }
    let log = eventually("the request log", || async {
        let log = server.log_text();
        log.contains("token=[redacted]").then_some(log)
    })
    .await;
    for secret in [ALICE, jwt.as_str(), expired.as_str(), wrong, SECRET] {
        assert!(!log.contains(secret), "a secret is in the log");
    }
}

#[tokio::test]
async fn bad_authentication_settings_stop_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_tokens(dir.path(), &format!("alice:{ALICE}\nbob {BOB}\n"));
    let short_pem = dir.path().join("bad.pem");
    std::fs::write(
        &short_pem,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    for (envs, expected) in [
        (
            vec![("AUTH_TOKENS_FILE", file.display().to_string())],
            "line 2",
        ),
        (
            vec![(
                "AUTH_TOKENS_FILE",
                dir.path().join("missing").display().to_string(),
            )],
            "cannot read AUTH_TOKENS_FILE",
        ),
        (
            vec![("AUTH_JWT_SECRET", "short".to_owned())],
            "at least 32 bytes",
        ),
        (
            vec![("AUTH_JWT_PUBLIC_KEY", short_pem.display().to_string())],
            "AUTH_JWT_PUBLIC_KEY",
        ),
        (
            vec![("TRUSTED_PROXIES", "10.0.0.0/33".to_owned())],
            "TRUSTED_PROXIES",
        ),
    ] {
        let mut server = Server::spawn(crate::support::process::free_port(), &envs);
        let status = server.wait_exit().await;
        assert_eq!(status.code(), Some(1), "{envs:?}");
        let log = server.log_text();
        assert!(log.contains(expected), "{expected:?} not in: {log}");
        assert!(
            !log.contains(BOB) && !log.contains(ALICE),
            "a token is in the error: {log}"
        );
    }
}

/// Browser clients on another origin: the preflight allows `Authorization` (which `*` never
/// covers), and refusals let scripts read `WWW-Authenticate` and `Retry-After`.
#[tokio::test]
async fn browsers_on_other_origins_may_send_bearer_tokens() {
    let (app, _dir) = with_tokens(&[]).await;
    let resp = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/playback-position"))
        .header("Origin", "https://reader.example")
        .header("Access-Control-Request-Method", "PUT")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let allowed = resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    let resp = app
        .get_from("https://reader.example", "/api/playback-position")
        .await;
    assert_eq!(resp.status(), 401);
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("www-authenticate") && exposed.contains("retry-after"),
        "{exposed}"
    );
}

/// Redis down with authentication on: a user's PUT is stored and acknowledged by its
/// instance, and reaches the other instance (and only that user) once Redis is back.
#[tokio::test]
async fn a_users_position_stored_while_redis_was_down_is_shared_when_it_is_back() {
    let mut redis = RedisServer::start().await;
    let keys = tempfile::tempdir().unwrap();
    let file = write_tokens(keys.path(), &format!("alice:{ALICE}\nbob:{BOB}\n"));
    let args = [
        "--auth-tokens-file",
        file.to_str().unwrap(),
        "--redis-url",
        &redis.url(),
    ];
    let (a, b) = (spawn_app(&args).await, spawn_app(&args).await);
    let connected = |app: &TestApp, up: bool| {
        let url = app.url("/health");
        async move {
            eventually(&format!("redis_connected = {up}"), || {
                let url = url.clone();
                async move {
                    let health: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
                    (health["redis_connected"] == json!(up)).then_some(())
                }
            })
            .await
        }
    };
    connected(&a, true).await;
    connected(&b, true).await;
    redis.kill().await;
    connected(&a, false).await;
    let (status, answer) = put(
        &a,
        "/api/playback-position",
        Some(ALICE),
        json!({"lastPlayedIndex": 77}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    redis.restart().await;
    connected(&a, true).await;
    connected(&b, true).await;
    eventually("alice's record on B", || async {
        (get(&b, "/api/playback-position", Some(ALICE)).await.2["lastPlayedIndex"] == json!(77))
            .then_some(())
    })
    .await;
    assert_eq!(
        get(&b, "/api/playback-position", Some(BOB)).await.2["lastPlayedIndex"],
        json!(-1)
    );
}

/// With authentication on, a Socket.IO client sends its token in the CONNECT auth payload
/// (`io(url, {auth: {token}})`); without one, or with a bad one, it gets the connect error
/// `{message: "unauthorized"}` and no session. A connection whose JWT expired is
/// disconnected at its next event.
#[tokio::test]
async fn socket_io_connections_need_a_token_when_authentication_is_on() {
    let (app, _dir) =
        with_tokens(&["--auth-jwt-secret", SECRET, "--auth-jwt-leeway-secs", "0"]).await;
    let sio = crate::support::sio::Sio::start().await;
    let ws = |auth: Value| json!({"transports": ["websocket"], "auth": auth});
    for (name, auth) in [
        ("none", json!({})),
        ("wrong", json!({"token": "not-a-token-at-all"})),
        (
            "expired",
            json!({"token": hs256(json!({"sub": "alice", "exp": now() - 10}))}),
        ),
    ] {
        let refused = sio.try_connect(name, &app.base(), ws(auth), 4).await;
        assert_eq!(refused.err().as_deref(), Some("\"unauthorized\""), "{name}");
    }
    // Long-polling first, as browsers connect by default.
    let polling = json!({"transports": ["polling"], "auth": {}});
    assert!(
        sio.try_connect("polling", &app.base(), polling, 4)
            .await
            .is_err()
    );

    let alice = sio
        .connect("alice", &app.base(), ws(json!({"token": ALICE})))
        .await;
    let ack = alice.call("create_room", json!({"room_id": "auth"})).await;
    assert_eq!(ack["ok"], json!(true), "{ack}");

    let short = hs256(json!({"sub": "bob", "exp": now() + 1}));
    let bob = sio
        .connect("bob", &app.base(), ws(json!({"token": short})))
        .await;
    let ack = bob.call("join_room", json!({"room_id": "auth"})).await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bob.emit("get_room_state", json!({"room_id": "auth"})).await;
    assert_eq!(bob.next("error").await["code"], json!("unauthorized"));
    let (event, _) = bob.next_of(&["$disconnect"]).await;
    assert_eq!(event, "$disconnect");
}
