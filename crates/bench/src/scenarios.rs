//! The scenarios of `playsync-bench`, each printing one JSON result line (stdout) and a
//! human summary (stderr) per run.
//!
//! - `fanout`: M rooms × K listeners; each host sends `sync_progress` R times a second
//!   carrying its send instant; delivered msg/s, loss, latency percentiles, CPU use.
//! - `idle`: N connections held through ping cycles; alive at the end, server RSS per
//!   connection.
//! - `sse`: N subscribers, PUTs at R/s; PUT latency, delivery latency, loss.
//! - `cluster`: `fanout` and `sse` across several targets (hosts and PUTs on the first,
//!   listeners and subscribers spread over all).
//!
//! Every run is bounded in connections and time; targets are meant to be loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::client::{
    self, Connect, HttpClient, Incoming, SioClient, SseReader, number_field, target_addr,
};
use crate::stats::{CpuMeter, CpuUse, Percentiles, rss_kib};

/// Most connections a run may open, and the longest it may last.
const MAX_CONNECTIONS: usize = 20_000;
const MAX_SECONDS: u64 = 600;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Scenario {
    /// Rooms × listeners; hosts send sync_progress at a fixed rate.
    Fanout(FanoutArgs),
    /// Connections held idle through several ping cycles.
    Idle(IdleArgs),
    /// SSE subscribers while positions are PUT at a fixed rate.
    Sse(SseArgs),
    /// fanout and sse across several instances (pass one --target per instance).
    Cluster(ClusterArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Server base URL, `http://HOST:PORT`; repeat for several instances (the first one gets
    /// the hosts and the PUTs, the connections are spread over all).
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,
    /// Process id of a server, to report its CPU use (repeatable).
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Label for the result (e.g. the server's name).
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Connections opened at once while setting up.
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,
}

impl Common {
    fn addrs(&self) -> anyhow::Result<Vec<std::net::SocketAddr>> {
        self.targets.iter().map(|t| target_addr(t)).collect()
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Rooms, each with one host.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Listeners per room (besides its host).
    #[arg(long, default_value_t = 100)]
    pub listeners: usize,
    /// sync_progress messages per second per room.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// How the Socket.IO clients connect.
    #[arg(long, value_enum, default_value_t = Connect::Websocket)]
    pub connect: Connect,
}

#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    /// How the Socket.IO clients connect.
    #[arg(long, value_enum, default_value_t = Connect::Websocket)]
    pub connect: Connect,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Seconds to hold them (the Socket.IO ping interval is 25 s).
    #[arg(long, default_value_t = 60)]
    pub hold: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SseArgs {
    #[command(flatten)]
    pub common: Common,
    /// SSE streams to open.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// PUTs per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Seconds of PUTs.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// SSE streams to open for the SSE part.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// PUTs per second for the SSE part.
    #[arg(long, default_value_t = 20.0)]
    pub put_rate: f64,
}

/// Runs a scenario and prints its results. Returns the JSON results (one per run).
pub async fn run(scenario: Scenario) -> anyhow::Result<Vec<serde_json::Value>> {
    let results = match scenario {
        Scenario::Fanout(a) => vec![fanout(&a, "fanout").await?],
        Scenario::Idle(a) => vec![idle(&a).await?],
        Scenario::Sse(a) => vec![sse(&a, "sse").await?],
        Scenario::Cluster(a) => {
            let sse_args = SseArgs {
                common: a.fanout.common.clone(),
                subscribers: a.subscribers,
                rate: a.put_rate,
                duration: a.fanout.duration,
            };
            vec![
                fanout(&a.fanout, "cluster-fanout").await?,
                sse(&sse_args, "cluster-sse").await?,
            ]
        }
    };
    Ok(results)
}

fn check_bounds(connections: usize, seconds: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        connections <= MAX_CONNECTIONS,
        "at most {MAX_CONNECTIONS} connections per run"
    );
    anyhow::ensure!(seconds <= MAX_SECONDS, "at most {MAX_SECONDS} s per run");
    Ok(())
}

/// CPU meters for the servers and this generator.
struct Meters {
    servers: Vec<(u32, CpuMeter)>,
    generator: CpuMeter,
}

impl Meters {
    fn start(pids: &[u32]) -> Self {
        Meters {
            servers: pids.iter().map(|&p| (p, CpuMeter::start(p))).collect(),
            generator: CpuMeter::start(std::process::id()),
        }
    }

    /// CPU use since `start`: per server (percent of a core and CPU seconds), the servers'
    /// total CPU seconds (null unless every server could be read), and the generator's.
    fn report(&self) -> serde_json::Value {
        let used: Vec<(u32, Option<CpuUse>)> =
            self.servers.iter().map(|(p, m)| (*p, m.used())).collect();
        let total = (!used.is_empty())
            .then(|| {
                used.iter()
                    .map(|(_, u)| u.map(|u| u.cpu_s))
                    .sum::<Option<f64>>()
            })
            .flatten();
        json!({
            "server_cpu_percent": used.iter().map(|(p, u)| json!({
                "pid": p,
                "percent": u.and_then(CpuUse::percent),
                "cpu_s": u.map(|u| u.cpu_s),
            })).collect::<Vec<_>>(),
            "server_cpu_s": total,
            "window_s": self.generator.used().map(|u| u.window_s),
            "generator_cpu_percent": self.generator.percent(),
        })
    }
}

/// Microseconds since the generator's epoch, carried in messages as seconds.
fn micros_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

async fn fanout(a: &FanoutArgs, scenario: &str) -> anyhow::Result<serde_json::Value> {
    let c = &a.common;
    check_bounds(a.rooms * (a.listeners + 1), a.duration)?;
    anyhow::ensure!(
        a.rate > 0.0 && a.rate <= 10_000.0,
        "rate must be in (0, 10000]"
    );
    let addrs = c.addrs()?;
    let run_id = crate::clock::now_ms() % 1_000_000;
    let epoch = Instant::now();
    let stop = CancellationToken::new();
    let gate = Arc::new(Semaphore::new(c.connect_concurrency.max(1)));

    // Hosts create the rooms on the first target.
    let mut hosts = Vec::with_capacity(a.rooms);
    for r in 0..a.rooms {
        let mut host = SioClient::connect(addrs[0], a.connect)
            .await
            .context("host connect")?;
        host.expect("connected").await.ok();
        let room = format!("bench-{run_id}-{r}");
        host.emit(
            "create_room",
            &json!({"room_id": room, "track": {"name": "bench"}}).to_string(),
        )
        .await?;
        host.expect("room_created").await?;
        hosts.push((room, host));
    }

    // Listeners join, spread over the targets, and read from then on (as real clients do:
    // a client that stops reading fills its server-side buffer, and the server may drop it).
    let (joined_tx, mut joined_rx) = tokio::sync::mpsc::channel::<anyhow::Result<()>>(1024);
    let mut readers = Vec::with_capacity(a.rooms * a.listeners);
    for i in 0..a.rooms * a.listeners {
        let room = hosts[i % a.rooms].0.clone();
        let addr = addrs[i % addrs.len()];
        let (gate, stop, joined_tx) = (gate.clone(), stop.clone(), joined_tx.clone());
        let how = a.connect;
        readers.push(tokio::spawn(async move {
            let joined = async {
                let _permit = gate.acquire_owned().await?;
                let mut l = SioClient::connect(addr, how).await?;
                l.emit("join_room", &json!({ "room_id": room }).to_string())
                    .await?;
                l.expect("room_joined").await?;
                anyhow::Ok(l)
            }
            .await;
            let mut l = match joined {
                Ok(l) => {
                    let _ = joined_tx.send(Ok(())).await;
                    l
                }
                Err(e) => {
                    let _ = joined_tx.send(Err(e)).await;
                    return (Vec::new(), 0u64);
                }
            };
            let mut latencies: Vec<u32> = Vec::new();
            let mut received = 0u64;
            // One cancellation future for the whole loop, not one per message.
            let cancelled = stop.cancelled();
            tokio::pin!(cancelled);
            loop {
                let next = tokio::select! {
                    _ = &mut cancelled => break,
                    next = l.next() => next,
                };
                match next {
                    Some(Ok(Incoming::Event(name, data))) if name == "sync_progress" => {
                        received += 1;
                        if let Some(sent) = number_field(&data, "current_time") {
                            let now = micros_since(epoch);
                            let sent = (sent * 1e6).round() as u64;
                            latencies
                                .push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
            (latencies, received)
        }));
    }
    drop(joined_tx);
    for _ in 0..a.rooms * a.listeners {
        match joined_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e.context("listener join")),
            None => anyhow::bail!("listeners ended before joining"),
        }
    }

    // Hosts send at the rate, staggered across rooms.
    let meters = Meters::start(&c.server_pids);
    let period = Duration::from_secs_f64(1.0 / a.rate);
    let deadline = Instant::now() + Duration::from_secs(a.duration);
    let mut senders = Vec::with_capacity(hosts.len());
    for (i, (room, mut host)) in hosts.into_iter().enumerate() {
        let offset = period.mul_f64(i as f64 / a.rooms as f64);
        senders.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut sent = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                let t = micros_since(epoch) as f64 / 1e6;
                let payload = format!("{{\"room_id\":\"{room}\",\"current_time\":{t:.6}}}");
                if host.emit("sync_progress", &payload).await.is_err() {
                    break;
                }
                sent += 1;
                // Keep the host's connection answering pings.
                while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, host.next()).await {}
            }
            (sent, host)
        }));
    }
    let mut sent = 0u64;
    let mut keep = Vec::new();
    for s in senders {
        let (n, host) = s.await?;
        sent += n;
        keep.push(host);
    }
    let cpu = meters.report();
    // Let the last messages arrive, then stop the listeners.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let mut all = Vec::new();
    let mut received = 0u64;
    let mut short = 0usize;
    for r in readers {
        let (lat, n) = r.await?;
        all.extend(lat);
        received += n;
        if n < sent / a.rooms as u64 {
            short += 1;
        }
    }
    drop(keep);
    let expected = sent * a.listeners as u64;
    let latency = Percentiles::from_micros(&mut all);
    // The servers' CPU time over the sending window per message delivered.
    let cpu_per_message = cpu["server_cpu_s"]
        .as_f64()
        .filter(|_| received > 0)
        .map(|s| s * 1e6 / received as f64);
    let result = json!({
        "scenario": scenario,
        "label": c.label,
        "targets": c.targets,
        "rooms": a.rooms,
        "listeners_per_room": a.listeners,
        "rate_per_room": a.rate,
        "duration_s": a.duration,
        "connect": a.connect.name(),
        "sent": sent,
        "expected": expected,
        "received": received,
        "loss": if expected > 0 { 1.0 - received as f64 / expected as f64 } else { 0.0 },
        "listeners_short": short,
        "delivered_per_s": received as f64 / a.duration as f64,
        "latency_ms": latency,
        "server_cpu_us_per_delivered": cpu_per_message,
        "cpu": cpu,
    });
    report(
        &result,
        &format!(
            "{scenario} {} × {} @ {}/s on {} ({}): {:.0} msg/s delivered, loss {:.4}%, p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms; server CPU {} µs per delivered message; {}",
            a.rooms,
            a.listeners,
            a.rate,
            c.label,
            a.connect.name(),
            received as f64 / a.duration as f64,
            result["loss"].as_f64().unwrap_or(0.0) * 100.0,
            latency.p50,
            latency.p99,
            latency.p999,
            latency.max,
            cpu_per_message.map_or("?".into(), |v| format!("{v:.2}")),
            cpu_summary(&result["cpu"]),
        ),
    );
    Ok(result)
}

async fn idle(a: &IdleArgs) -> anyhow::Result<serde_json::Value> {
    let c = &a.common;
    check_bounds(a.connections, a.hold)?;
    let addrs = c.addrs()?;
    let pid = c.server_pids.first().copied();
    let rss_before = pid.and_then(rss_kib);
    let gate = Arc::new(Semaphore::new(c.connect_concurrency.max(1)));
    let stop = CancellationToken::new();
    let pings = Arc::new(AtomicU64::new(0));
    // Each connection answers pings from the moment it opens, as a real client does (the
    // server may ping at once and drop a client that stays silent).
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel::<bool>(1024);
    let mut holders = Vec::with_capacity(a.connections);
    for i in 0..a.connections {
        let addr = addrs[i % addrs.len()];
        let (gate, stop, pings, opened_tx) =
            (gate.clone(), stop.clone(), pings.clone(), opened_tx.clone());
        let how = a.connect;
        holders.push(tokio::spawn(async move {
            let conn = {
                let _permit = gate.acquire_owned().await;
                SioClient::connect(addr, how).await
            };
            let Ok(mut conn) = conn else {
                let _ = opened_tx.send(false).await;
                return false;
            };
            let _ = opened_tx.send(true).await;
            let cancelled = stop.cancelled();
            tokio::pin!(cancelled);
            loop {
                tokio::select! {
                    _ = &mut cancelled => return true,
                    next = conn.next() => match next {
                        Some(Ok(_)) => {
                            pings.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Err(_)) | None => return false,
                    },
                }
            }
        }));
    }
    drop(opened_tx);
    let mut failed = 0usize;
    for _ in 0..a.connections {
        if !opened_rx.recv().await.unwrap_or(false) {
            failed += 1;
        }
    }
    // Let the server settle before reading its memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = pid.and_then(rss_kib);
    let meters = Meters::start(&c.server_pids);
    tokio::time::sleep(Duration::from_secs(a.hold)).await;
    stop.cancel();
    let mut alive = 0usize;
    for h in holders {
        if h.await? {
            alive += 1;
        }
    }
    let rss_end = pid.and_then(rss_kib);
    let per_conn = match (rss_before, rss_connected) {
        (Some(b), Some(c)) if a.connections > failed => {
            Some(c.saturating_sub(b) as f64 / (a.connections - failed) as f64)
        }
        _ => None,
    };
    let result = json!({
        "scenario": "idle",
        "label": c.label,
        "targets": c.targets,
        "connections": a.connections,
        "connect": a.connect.name(),
        "failed_to_connect": failed,
        "hold_s": a.hold,
        "alive": alive,
        "rss_kib_before": rss_before,
        "rss_kib_connected": rss_connected,
        "rss_kib_end": rss_end,
        "rss_kib_per_connection": per_conn,
        "cpu": meters.report(),
    });
    report(
        &result,
        &format!(
            "idle {} connections ({}) on {} for {} s: {} alive, {} failed to connect, server RSS {} KiB per connection; {}",
            a.connections,
            a.connect.name(),
            c.label,
            a.hold,
            alive,
            failed,
            per_conn.map_or("?".into(), |v| format!("{v:.2}")),
            cpu_summary(&result["cpu"]),
        ),
    );
    Ok(result)
}

async fn sse(a: &SseArgs, scenario: &str) -> anyhow::Result<serde_json::Value> {
    let c = &a.common;
    check_bounds(a.subscribers + 1, a.duration)?;
    anyhow::ensure!(
        a.rate > 0.0 && a.rate <= 10_000.0,
        "rate must be in (0, 10000]"
    );
    let addrs = c.addrs()?;
    let epoch = Instant::now();
    let total = (a.rate * a.duration as f64).ceil() as usize;
    // Send instants by sequence number (the PUT's lastPlayedIndex), in µs since `epoch`.
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let base = 1_000_000_000i64;
    // One PUT first, so servers that send no headers before the first event answer at once.
    let mut http = HttpClient::new(addrs[0]);
    http.request(
        "PUT",
        "/api/playback-position",
        &json!({"lastPlayedIndex": 0, "deviceId": "bench"}).to_string(),
    )
    .await
    .context("first PUT")?;

    let stop = CancellationToken::new();
    let gate = Arc::new(Semaphore::new(c.connect_concurrency.max(1)));
    let mut opens = Vec::with_capacity(a.subscribers);
    for i in 0..a.subscribers {
        let addr = addrs[i % addrs.len()];
        let gate = gate.clone();
        opens.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let mut r = SseReader::open(addr, "/api/events/playback").await?;
            // The current state comes first.
            tokio::time::timeout(client::DEADLINE, r.next_data())
                .await
                .context("no initial state on the stream")??;
            anyhow::Ok(r)
        }));
    }
    let mut readers = Vec::with_capacity(a.subscribers);
    for o in opens {
        let mut r = o.await??;
        let (stop, sent_at) = (stop.clone(), sent_at.clone());
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let cancelled = stop.cancelled();
            tokio::pin!(cancelled);
            loop {
                let next = tokio::select! {
                    _ = &mut cancelled => break,
                    next = r.next_data() => next,
                };
                match next {
                    Ok(Some(data)) => {
                        let now = micros_since(epoch);
                        if let Some(index) = number_field(&data, "lastPlayedIndex") {
                            let seq = index as i64 - base;
                            if seq >= 0 && (seq as usize) < sent_at.len() && seen.insert(seq) {
                                let sent = sent_at[seq as usize].load(Ordering::Relaxed);
                                latencies
                                    .push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                            }
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            latencies
        }));
    }

    let meters = Meters::start(&c.server_pids);
    let period = Duration::from_secs_f64(1.0 / a.rate);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut put_latencies = Vec::with_capacity(total);
    let mut failed = 0usize;
    for seq in 0..total {
        tick.tick().await;
        let body = json!({"lastPlayedIndex": base + seq as i64, "notePath": "bench.md", "noteTitle": "Bench", "deviceId": "bench"}).to_string();
        let start = Instant::now();
        sent_at[seq].store(micros_since(epoch), Ordering::Relaxed);
        match http.request("PUT", "/api/playback-position", &body).await {
            Ok((200, _)) => {
                put_latencies.push(start.elapsed().as_micros().min(u128::from(u32::MAX)) as u32)
            }
            _ => failed += 1,
        }
    }
    let cpu = meters.report();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let mut delivery = Vec::new();
    for r in readers {
        delivery.extend(r.await?);
    }
    let expected = (total - failed) * a.subscribers;
    let received = delivery.len();
    let delivery_p = Percentiles::from_micros(&mut delivery);
    let put_p = Percentiles::from_micros(&mut put_latencies);
    let result = json!({
        "scenario": scenario,
        "label": c.label,
        "targets": c.targets,
        "subscribers": a.subscribers,
        "put_rate": a.rate,
        "duration_s": a.duration,
        "puts": total,
        "puts_failed": failed,
        "expected": expected,
        "received": received,
        "loss": if expected > 0 { 1.0 - received as f64 / expected as f64 } else { 0.0 },
        "delivery_ms": delivery_p,
        "put_ms": put_p,
        "cpu": cpu,
    });
    report(
        &result,
        &format!(
            "{scenario} {} subscribers @ {} PUT/s on {}: loss {:.4}%, delivery p50 {:.1} ms p99 {:.1} ms max {:.1} ms, PUT p50 {:.1} ms p99 {:.1} ms; {}",
            a.subscribers,
            a.rate,
            c.label,
            result["loss"].as_f64().unwrap_or(0.0) * 100.0,
            delivery_p.p50,
            delivery_p.p99,
            delivery_p.max,
            put_p.p50,
            put_p.p99,
            cpu_summary(&result["cpu"]),
        ),
    );
    Ok(result)
}

fn cpu_summary(cpu: &serde_json::Value) -> String {
    let servers: Vec<String> = cpu["server_cpu_percent"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| format!("{:.0}%", s["percent"].as_f64().unwrap_or(f64::NAN)))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "CPU server {} generator {:.0}%",
        if servers.is_empty() {
            "?".into()
        } else {
            servers.join("+")
        },
        cpu["generator_cpu_percent"].as_f64().unwrap_or(f64::NAN)
    )
}

/// One JSON line on stdout, a human summary on stderr.
fn report(result: &serde_json::Value, summary: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{result}");
    let _ = writeln!(std::io::stderr(), "{summary}");
}
