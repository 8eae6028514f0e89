//! A smoke run of every `playsync-bench` scenario against a real playsync server (in this
//! process) with a few connections for a few seconds, so the load generator keeps working.
//! Results are checked for completeness, never timing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test may panic

mod support;

use support::{BareBroadcaster, RedisServer, bench, delivered_everything, eventually, spawn_app};

#[tokio::test]
async fn every_scenario_runs_against_a_real_server() {
    let app = spawn_app(&[]).await;
    let target = app.base();
    let pid = std::process::id().to_string();
    let common = [
        "--target",
        &target,
        "--server-pid",
        &pid,
        "--label",
        "smoke",
    ];

    // Both ways of connecting: a WebSocket straight away, and socket.io-client's default
    // (long-polling, then the upgrade), which playsync serves through socketioxide.
    for connect in ["websocket", "default"] {
        let fanout = bench(
            &[
                &["fanout"][..],
                &common,
                &[
                    "--rooms",
                    "2",
                    "--listeners",
                    "3",
                    "--rate",
                    "5",
                    "--duration",
                    "1",
                    "--connect",
                    connect,
                ],
            ]
            .concat(),
        )
        .await;
        assert_eq!(fanout[0]["scenario"], "fanout");
        assert_eq!(fanout[0]["connect"], connect);
        delivered_everything(&fanout[0]);
        assert!(fanout[0]["latency_ms"]["p99"].as_f64().is_some());
        assert!(
            fanout[0]["server_cpu_us_per_delivered"].as_f64().is_some(),
            "{}",
            fanout[0]
        );

        let idle = bench(
            &[
                &["idle"][..],
                &common,
                &["--connections", "20", "--hold", "1", "--connect", connect],
            ]
            .concat(),
        )
        .await;
        assert_eq!(idle[0]["connect"], connect);
        assert_eq!(idle[0]["failed_to_connect"], 0, "{}", idle[0]);
        assert_eq!(idle[0]["alive"], 20, "{}", idle[0]);
        assert!(idle[0]["rss_kib_per_connection"].as_f64().is_some());
    }

    let sse = bench(
        &[
            &["sse"][..],
            &common,
            &["--subscribers", "5", "--rate", "10", "--duration", "1"],
        ]
        .concat(),
    )
    .await;
    delivered_everything(&sse[0]);
    assert!(sse[0]["put_ms"]["p99"].as_f64().is_some());
}

#[tokio::test]
async fn the_cluster_scenario_spans_two_instances() {
    let redis = RedisServer::start().await;
    let a = spawn_app(&["--redis-url", &redis.url()]).await;
    let b = spawn_app(&["--redis-url", &redis.url()]).await;
    for app in [&a, &b] {
        eventually("redis to connect", || async {
            let h = app.get_json("/health").await;
            (h["redis_connected"] == true).then_some(())
        })
        .await;
    }
    let results = bench(&[
        "cluster",
        "--target",
        &a.base(),
        "--target",
        &b.base(),
        "--rooms",
        "1",
        "--listeners",
        "4",
        "--rate",
        "5",
        "--duration",
        "1",
        "--subscribers",
        "4",
        "--put-rate",
        "10",
        "--connect",
        "default",
    ])
    .await;
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["scenario"], "cluster-fanout");
    assert_eq!(results[0]["connect"], "default");
    assert_eq!(results[1]["scenario"], "cluster-sse");
    for r in &results {
        delivered_everything(r);
    }
}

/// The bare broadcaster peer delivers every broadcast, across several rooms, and reports the
/// broadcasts its members missed (none) on `GET /`.
#[tokio::test]
async fn the_bare_broadcaster_delivers_everything() {
    let peer = BareBroadcaster::start().await;
    let pid = peer.pid().to_string();
    let results = bench(&[
        "fanout",
        "--target",
        &peer.base(),
        "--server-pid",
        &pid,
        "--label",
        "bare",
        "--rooms",
        "2",
        "--listeners",
        "20",
        "--rate",
        "20",
        "--duration",
        "1",
    ])
    .await;
    delivered_everything(&results[0]);
    assert_eq!(results[0]["listeners_short"], 0, "{}", results[0]);
    let status: serde_json::Value = reqwest::get(format!("{}/", peer.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["rooms"], 2, "{status}");
    assert_eq!(status["lagged"], 0, "{status}");
}
