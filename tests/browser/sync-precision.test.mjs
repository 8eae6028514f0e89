// Browser precision test: do two listeners in one room hear the same moment?
//
//   node tests/browser/sync-precision.test.mjs http://127.0.0.1:3000 [--out FILE] [--duration 60] [--trace FILE]
//
// Three pages of playsync's own web client (/app/) in Debian's chromium, driven by
// playwright-core:
//   - the host, connected directly, creates the room with a generated WAV track and later
//     seeks, changes track, pauses and plays (through window.playsyncApp.room, whose calls are
//     what the page's buttons do);
//   - listeners A and B open /app/?room=ID, each through its own order-preserving TCP delay
//     proxy (A: 20 ms one way, B: 80 ms, both ±5 ms jitter; bytes are never reordered), with
//     the page's clock shifted (A: +2.5 s, B: −1.5 s: Date, Date.now and
//     performance.timeOrigin). B joins 5 s after A: the late joiner.
// Every 50 ms the test reads both <audio> elements' currentTime (page.evaluate) and maps each
// reading to its own clock at the midpoint of the evaluate round trip (±half of it: the round
// trip is reported). Skew = A's position − B's at the same instant. Reported, as p50/p95/max of
// |skew| in ms: steady state (from 3 s after a start to the next command), the first second
// after each scheduled start (seek, track change, play), 1–3 s after it, and the late joiner
// 3–4 s after its join; and the listeners' corrective seeks per minute of steady state.
//
// Assertions are sane bounds only (both listeners play, follow the host, skew under 250 ms):
// timing is measured and reported, never asserted tightly. Prints one JSON line and a summary,
// writes the JSON to --out (default target/sync-precision.json). Bounded: about 80 s in all,
// 150 s at most.
//
// Environment: PLAYSYNC_CHROMIUM overrides the browser binary (default /usr/bin/chromium).

import { createServer } from "node:http";
import net from "node:net";
import os from "node:os";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = (p) => fileURLToPath(new URL(p, import.meta.url));
const CHROMIUM = process.env.PLAYSYNC_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--autoplay-policy=no-user-gesture-required",
];
const TOTAL_TIMEOUT_MS = 150_000;
const STEP_TIMEOUT_MS = 15_000;
const SAMPLE_EVERY_MS = 50;
const ROOM = `precision-${process.pid}`;
const LISTENERS = {
  A: { oneWayMs: 20, jitterMs: 5, clockShiftMs: 2_500 },
  B: { oneWayMs: 80, jitterMs: 5, clockShiftMs: -1_500 },
};
const TARGETS = { steady_p95_ms: 5, after_start_p95_ms: 10, late_joiner_ms: 10, steady_seeks_per_min: 0 };
const BOUND_MS = 250; // the sanity bound the assertions use

const now = () => performance.timeOrigin + performance.now(); // the test's clock, Unix ms scale

function parseArgs(argv) {
  const args = { base: null, out: HERE("../../target/sync-precision.json"), duration: 60, trace: null };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--out") args.out = argv[++i];
    else if (argv[i] === "--trace") args.trace = argv[++i];
    else if (argv[i] === "--duration") args.duration = Number(argv[++i]);
    else args.base = argv[i];
  }
  return args;
}

function fail(message) {
  const err = new Error(message);
  err.isTestFailure = true;
  throw err;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// --- the track: a generated WAV, served with Range support (seeking needs it) ---

function wav(seconds, freq, rate = 22_050) {
  const n = seconds * rate;
  const buf = Buffer.alloc(44 + n * 2);
  buf.write("RIFF", 0);
  buf.writeUInt32LE(36 + n * 2, 4);
  buf.write("WAVEfmt ", 8);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(1, 22); // mono
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write("data", 36);
  buf.writeUInt32LE(n * 2, 40);
  for (let i = 0; i < n; i++) {
    // A tone with a 1 s click, so a listener could hear the alignment.
    const click = i % rate < rate / 100 ? 0.6 : 0.25;
    buf.writeInt16LE(Math.round(32767 * click * Math.sin((2 * Math.PI * freq * i) / rate)), 44 + i * 2);
  }
  return buf;
}

function startTrackServer(tracks) {
  const server = createServer((req, res) => {
    const body = tracks[new URL(req.url, "http://x").pathname];
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    const range = /bytes=(\d+)-(\d*)/.exec(req.headers.range || "");
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), body.length - 1) : body.length - 1;
      res.writeHead(206, {
        "content-type": "audio/wav",
        "accept-ranges": "bytes",
        "content-range": `bytes ${start}-${end}/${body.length}`,
        "content-length": end - start + 1,
      });
      res.end(body.subarray(start, end + 1));
      return;
    }
    res.writeHead(200, { "content-type": "audio/wav", "accept-ranges": "bytes", "content-length": body.length });
    res.end(body);
  });
  return listen(server);
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

// --- the network: an order-preserving TCP delay proxy per listener ---

/**
 * Forwards `from` to `to`, each chunk `oneWayMs ± jitterMs` later but never before the chunk
 * before it (so bytes are never reordered, as on one TCP connection).
 */
function delayedPipe(from, to, oneWayMs, jitterMs) {
  const queue = [];
  let last = 0;
  let timer = null;
  let ended = false;
  const flush = () => {
    timer = null;
    const t = performance.now();
    while (queue.length && queue[0].release <= t + 0.25) to.write(queue.shift().chunk);
    if (queue.length) timer = setTimeout(flush, Math.max(0, queue[0].release - performance.now()));
    else if (ended) to.end();
  };
  from.on("data", (chunk) => {
    const release = Math.max(last, performance.now() + oneWayMs + (Math.random() * 2 - 1) * jitterMs);
    last = release;
    queue.push({ release, chunk });
    if (!timer) timer = setTimeout(flush, Math.max(0, release - performance.now()));
  });
  from.on("end", () => {
    ended = true;
    if (!timer && !queue.length) to.end();
  });
}

function startDelayProxy(upstreamPort, oneWayMs, jitterMs) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
      s.on("close", () => sockets.delete(s));
    }
    delayedPipe(client, upstream, oneWayMs, jitterMs);
    delayedPipe(upstream, client, oneWayMs, jitterMs);
  });
  server.closeAll = () => {
    for (const s of sockets) s.destroy();
    server.close();
  };
  return listen(server);
}

// --- pages ---

/** Shifts the page's clocks: Date (constructor and now()) and performance.timeOrigin. */
function shiftClockScript(shiftMs) {
  return `(() => {
    const shift = ${Number(shiftMs)};
    const RealDate = Date;
    const realNow = RealDate.now.bind(RealDate);
    function ShiftedDate(...args) {
      if (!new.target) return new RealDate(realNow() + shift).toString();
      return args.length === 0 ? new RealDate(realNow() + shift) : new RealDate(...args);
    }
    ShiftedDate.prototype = RealDate.prototype;
    ShiftedDate.now = () => realNow() + shift;
    ShiftedDate.parse = RealDate.parse;
    ShiftedDate.UTC = RealDate.UTC;
    globalThis.Date = ShiftedDate;
    const realOrigin = performance.timeOrigin;
    const origin = realOrigin + shift;
    Object.defineProperty(performance, "timeOrigin", { get: () => origin, configurable: true });
    // For the test only: the machine's clock, unshifted, read in the same task as currentTime.
    Object.defineProperty(window, "__testClock", { value: () => realOrigin + performance.now() });
  })();`;
}

const problems = []; // page errors and console errors, reported on failure

async function openPage(browser, who, url, shiftMs = 0) {
  const context = await browser.newContext();
  if (shiftMs) await context.addInitScript(shiftClockScript(shiftMs));
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("pageerror", (err) => problems.push(`${who}: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`${who} console: ${msg.text()}`);
  });
  await page.goto(url, { waitUntil: "load" });
  return page;
}

async function waitFor(page, who, what, fn, arg) {
  await page
    .waitForFunction(fn, arg, { timeout: STEP_TIMEOUT_MS, polling: 20 })
    .catch(() => fail(`${who}: ${what} did not happen within ${STEP_TIMEOUT_MS / 1000} s`));
}

/** One reading of a page: currentTime and what the client knows, mapped to the test clock. */
async function read(page) {
  const before = now();
  const r = await page.evaluate(() => {
    const app = window.playsyncApp;
    const f = app.room.follower;
    const c = app.room.clock;
    const ct = app.audio.currentTime;
    const t = window.__testClock();
    return {
      ct,
      t,
      paused: app.audio.paused,
      src: app.audio.currentSrc,
      rate: app.audio.playbackRate,
      phase: f.phase,
      seeks: f.correctiveSeeks,
      error: f.error,
      offset: c.synced ? c.offsetAt() : null,
      clock: c.state,
    };
  });
  const after = now();
  return { ...r, at: (before + after) / 2, rtt: after - before };
}

// --- statistics ---

function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

function round3(x) {
  return Math.round(x * 1000) / 1000;
}

function summary(values) {
  const abs = values.map(Math.abs).sort((a, b) => a - b);
  const round = (x) => (x === null ? null : Math.round(x * 100) / 100);
  return {
    n: abs.length,
    p50: round(quantile(abs, 0.5)),
    p95: round(quantile(abs, 0.95)),
    max: round(abs.length ? abs[abs.length - 1] : null),
    mean_signed: round(values.length ? values.reduce((a, b) => a + b, 0) / values.length : null),
  };
}

// --- the run ---

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!args.base || !/^https?:\/\/[^/]+$/.test(args.base.replace(/\/+$/, ""))) {
    fail(`usage: node sync-precision.test.mjs <playsync base URL, e.g. http://127.0.0.1:3000> [--out FILE] [--duration 60] (got ${JSON.stringify(args.base)})`);
  }
  if (!(args.duration >= 30 && args.duration <= 120)) fail("--duration must be between 30 and 120 s");
  if (!existsSync(CHROMIUM)) fail(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  if (!existsSync(HERE("node_modules/playwright-core/package.json"))) {
    fail("tests/browser/node_modules/playwright-core is missing: npm ci --prefix tests/browser (scripts/test does)");
  }
  const base = args.base.replace(/\/+$/, "");
  const upstream = new URL(base);
  const started = now();

  const tracks = { "/one.wav": wav(150, 440), "/two.wav": wav(150, 660) };
  const trackServer = await startTrackServer(tracks);
  const trackBase = `http://127.0.0.1:${trackServer.address().port}`;
  const TRACK_ONE = { title: "Tone one (440 Hz)", url: `${trackBase}/one.wav` };
  const TRACK_TWO = { title: "Tone two (660 Hz)", url: `${trackBase}/two.wav` };
  const proxies = {};
  for (const [who, net_] of Object.entries(LISTENERS)) {
    proxies[who] = await startDelayProxy(Number(upstream.port), net_.oneWayMs, net_.jitterMs);
  }

  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
  const cleanup = async () => {
    await Promise.race([browser.close().catch(() => {}), sleep(5_000)]);
    for (const p of Object.values(proxies)) p.closeAll();
    trackServer.closeAllConnections?.();
    trackServer.close();
  };

  try {
    // The host: creates the room from the page's form.
    const host = await openPage(browser, "host", `${base}/app/`);
    await host.fill("#create-form input[name=room]", ROOM);
    await host.fill("#create-form input[name=url]", TRACK_ONE.url);
    await host.fill("#create-form input[name=title]", TRACK_ONE.title);
    await host.click("#create-form button[type=submit]");
    await waitFor(host, "host", "creating the room", () => window.playsyncApp.room.state.isHost && window.playsyncApp.room.state.timeline?.playing);
    const protocol = await host.evaluate(async () => {
      const room = window.playsyncApp.room;
      // Wait for the clock's first burst to settle (or be refused).
      for (let i = 0; i < 100 && room.clock.state === "syncing"; i++) await new Promise((r) => setTimeout(r, 50));
      return { time_sync: room.clock.state === "synced", start_at: room.state.supports.startAt === true };
    });

    // Listener A, then the late joiner B 5 s later.
    const pages = {};
    const joinedAt = {};
    const sessionStart = now();
    const join = async (who) => {
      const l = LISTENERS[who];
      const url = `http://127.0.0.1:${proxies[who].address().port}/app/?room=${encodeURIComponent(ROOM)}`;
      pages[who] = await openPage(browser, who, url, l.clockShiftMs);
      await waitFor(pages[who], who, "joining the room", () => window.playsyncApp?.room.state.joined);
      joinedAt[who] = now();
    };

    const samples = [];
    const events = []; // {kind, at (test clock), start (test clock)}
    let sampling = true;
    const sampler = (async () => {
      // Every loop is bounded by the session's end (sampling = false) or the watchdog.
      while (sampling) {
        const next = now() + SAMPLE_EVERY_MS;
        const who = Object.keys(pages);
        const reads = await Promise.all(who.map((w) => read(pages[w]).catch(() => null)));
        const entry = { at: now() };
        who.forEach((w, i) => (entry[w] = reads[i]));
        samples.push(entry);
        await sleep(Math.max(0, next - now()));
      }
    })();

    await join("A");
    await sleep(5_000);
    await join("B");

    // The host's commands. start: when the command's new timeline begins, on the test clock
    // (start_at, or server_time from a server without it; the server's clock is this
    // machine's, as is the test's).
    const command = async (kind, call, arg) => {
      const at = now();
      const ack = await host.evaluate(call, arg);
      if (!ack?.ok) fail(`host: ${kind} was refused: ${JSON.stringify(ack)}`);
      const start = Number.isFinite(ack.start_at) ? ack.start_at : ack.server_time;
      events.push({ kind, at, start, lead: start - at });
      return ack;
    };
    const d = args.duration * 1000;
    const at = (fraction) => sessionStart + fraction * d;
    const until = async (t) => sleep(Math.max(0, t - now()));

    await until(at(0.33));
    await command("seek", () => window.playsyncApp.room.seek(40));
    await until(at(0.53));
    await command("track_change", (track) => window.playsyncApp.room.changeTrack(track), TRACK_TWO);
    await until(at(0.73));
    await command("pause", () => window.playsyncApp.room.pause());
    await sleep(2_000);
    await command("play", () => window.playsyncApp.room.play());
    await until(at(1));
    sampling = false;
    await sampler;

    // Both listeners followed the host: on track two, playing, and paused while the room was.
    const final = {};
    for (const who of Object.keys(LISTENERS)) {
      final[who] = await read(pages[who]);
      if (final[who].src !== TRACK_TWO.url) fail(`${who} is not on the new track: ${final[who].src}`);
      if (final[who].paused) fail(`${who} is not playing at the end`);
    }
    const pause = events.find((e) => e.kind === "pause");
    const play = events.find((e) => e.kind === "play");
    for (const who of Object.keys(LISTENERS)) {
      const pausedSeen = samples.some((s) => s.at > pause.start + 500 && s.at < play.at && s[who]?.paused);
      if (!pausedSeen) fail(`${who} did not pause with the host`);
    }

    if (args.trace) {
      // The listeners' decisions (starts, nudges, seeks) and clocks, for diagnosis.
      const traces = {};
      for (const who of Object.keys(LISTENERS)) {
        traces[who] = await pages[who].evaluate(() => ({
          now: window.playsyncApp.localNow(),
          test: window.__testClock(),
          trace: window.playsyncApp.room.follower.trace,
          clock: window.playsyncApp.room.clock.points,
        }));
      }
      const series = samples.map((x) => [x.at, x.A?.ct, x.A?.t, x.B?.ct, x.B?.t, x.A?.paused, x.B?.paused]);
      writeFileSync(args.trace, JSON.stringify({ events, joinedAt, traces, series }, null, 1));
    }

    const report = analyse({ samples, events, joinedAt, protocol, sessionStart, args, browser, started });
    for (const who of Object.keys(LISTENERS)) {
      if (report.listeners[who].played_s < args.duration * 0.5) fail(`${who} played only ${report.listeners[who].played_s} s`);
    }
    if (report.skew_ms.steady.n < 100) fail(`too few steady-state samples (${report.skew_ms.steady.n})`);
    if (report.skew_ms.steady.p95 > BOUND_MS) fail(`steady-state skew p95 ${report.skew_ms.steady.p95} ms is over the ${BOUND_MS} ms sanity bound`);
    if (report.skew_ms.late_joiner_3s.n === 0 || report.skew_ms.late_joiner_3s.p95 > BOUND_MS) {
      fail(`late joiner: ${JSON.stringify(report.skew_ms.late_joiner_3s)} (bound ${BOUND_MS} ms)`);
    }
    if (problems.length) fail(`errors in the pages: ${problems.slice(0, 5).join("; ")}`);

    mkdirSync(dirname(args.out), { recursive: true });
    writeFileSync(args.out, `${JSON.stringify(report, null, 2)}\n`);
    console.log(JSON.stringify({ sync_precision: report }));
    console.log(humanSummary(report, args.out));
    console.log("ok");
  } finally {
    await cleanup();
  }
}

/** Turns the samples into the report. */
function analyse({ samples, events, joinedAt, protocol, sessionStart, args, browser, started }) {
  const starts = events.filter((e) => e.kind !== "pause").map((e) => e.start);
  const commands = events.map((e) => e.at);
  const end = samples.length ? samples[samples.length - 1].at : now();
  // Steady: both listeners in, 3 s after the last start or join (4 s after a join, whose
  // first 3–4 s are the late-joiner figure), until the next command is sent, while playing.
  const quiet = [];
  const marks = [joinedAt.B + 4_000, ...starts.map((s) => s + 3_000)].sort((a, b) => a - b);
  for (const from of marks) {
    const to = Math.min(end, ...commands.filter((c) => c > from - 3_000 && c >= from), ...marks.filter((m) => m > from));
    if (to > from) quiet.push([from, to]);
  }
  const inQuiet = (t) => quiet.some(([a, b]) => t >= a && t < b);

  // Each reading's instant on the test clock. The page's timestamp (read in the same task as
  // currentTime, on the machine's clock) is mapped to the test clock by the median of
  // (page timestamp − evaluate midpoint) over the quicker half of the round trips; the
  // midpoint itself (±half the round trip) is the cross-check.
  const mapping = {};
  for (const who of ["A", "B"]) {
    const reads = samples.map((s) => s[who]).filter(Boolean);
    const quick = quantile(reads.map((r) => r.rtt).sort((x, y) => x - y), 0.5);
    const deltas = reads.filter((r) => r.rtt <= quick).map((r) => r.t - r.at).sort((x, y) => x - y);
    const inside = reads.filter((r) => r.t >= r.at - r.rtt / 2 - 0.2 && r.t <= r.at + r.rtt / 2 + 0.2).length;
    mapping[who] = { delta: quantile(deltas, 0.5) ?? 0, inside: reads.length ? inside / reads.length : 0 };
  }
  const byPage = (r, who) => r.t - mapping[who].delta;
  const byMidpoint = (r) => r.at;
  const skewOf = (a, b, instant) => {
    const ta = instant(a, "A");
    const tb = instant(b, "B");
    // B's position at A's reading instant (B runs at its rate between the two).
    return { value: (a.ct - (b.ct + ((ta - tb) / 1000) * b.rate)) * 1000, t: ta };
  };

  const skew = { steady: [], first_second: [], one_to_three_s: [], late_joiner_3s: [] };
  const midpointSteady = [];
  const rtts = [];
  const clockErrors = { A: [], B: [] };
  const played = { A: 0, B: 0 };
  let steadySeeks = 0;
  let steadyMs = 0;
  let previous = null;
  for (const s of samples) {
    const a = s.A;
    const b = s.B;
    for (const who of ["A", "B"]) {
      const r = s[who];
      if (!r) continue;
      rtts.push(r.rtt);
      if (r.offset !== null) clockErrors[who].push(r.offset + LISTENERS[who].clockShiftMs);
      if (previous?.[who] && !r.paused && !previous[who].paused) played[who] += (s.at - previous.at) / 1000;
    }
    if (previous && inQuiet(s.at) && inQuiet(previous.at)) {
      steadyMs += s.at - previous.at;
      for (const who of ["A", "B"]) {
        if (s[who] && previous[who]) steadySeeks += s[who].seeks - previous[who].seeks;
      }
    }
    previous = s;
    if (!a || !b || a.paused || b.paused || a.src !== b.src) continue;
    const { value, t } = skewOf(a, b, byPage);
    if (inQuiet(t)) {
      skew.steady.push(value);
      midpointSteady.push(skewOf(a, b, byMidpoint).value);
    }
    for (const start of starts) {
      if (t >= start && t < start + 1_000) skew.first_second.push(value);
      if (t >= start + 1_000 && t < start + 3_000) skew.one_to_three_s.push(value);
    }
    if (t >= joinedAt.B + 3_000 && t < joinedAt.B + 4_000) skew.late_joiner_3s.push(value);
  }
  const minutes = steadyMs / 60_000;
  const stats = Object.fromEntries(Object.entries(skew).map(([k, v]) => [k, summary(v)]));
  const seeksPerMin = minutes > 0 ? Math.round((steadySeeks / minutes) * 100) / 100 : null;
  return {
    when: new Date().toISOString(),
    protocol,
    browser: `chromium ${browser.version()}`,
    machine: { cpus: os.cpus().length, loadavg_1m: Math.round(os.loadavg()[0] * 100) / 100 },
    network: Object.fromEntries(Object.entries(LISTENERS).map(([w, l]) => [w, { one_way_ms: l.oneWayMs, jitter_ms: l.jitterMs, clock_shift_ms: l.clockShiftMs }])),
    host: "a third page, connected directly (no proxy, unshifted clock)",
    session_s: Math.round((end - sessionStart) / 100) / 10,
    runtime_s: Math.round((now() - started) / 100) / 10,
    events: events.map((e) => ({ kind: e.kind, lead_ms: Math.round(e.lead) })),
    skew_ms: stats,
    steady_s: Math.round(steadyMs / 100) / 10,
    steady_seeks: steadySeeks,
    steady_seeks_per_min: seeksPerMin,
    clock_error_ms: { A: summary(clockErrors.A), B: summary(clockErrors.B) },
    sample_rtt_ms: summary(rtts),
    sampling: {
      every_ms: SAMPLE_EVERY_MS,
      page_clock_minus_test_clock_ms: { A: round3(mapping.A.delta), B: round3(mapping.B.delta) },
      page_timestamps_inside_round_trip: { A: round3(mapping.A.inside), B: round3(mapping.B.inside) },
      steady_by_midpoint_ms: summary(midpointSteady),
    },
    listeners: { A: { played_s: Math.round(played.A) }, B: { played_s: Math.round(played.B) } },
    targets: TARGETS,
    met: {
      steady_p95: stats.steady.p95 !== null && stats.steady.p95 <= TARGETS.steady_p95_ms,
      after_start_p95: stats.one_to_three_s.p95 !== null && stats.one_to_three_s.p95 <= TARGETS.after_start_p95_ms,
      late_joiner: stats.late_joiner_3s.p95 !== null && stats.late_joiner_3s.p95 <= TARGETS.late_joiner_ms,
      steady_seeks: seeksPerMin === TARGETS.steady_seeks_per_min,
    },
  };
}

function humanSummary(r, out) {
  const line = (name, s, target) => `  ${name.padEnd(34)} p50 ${fmt(s.p50)}  p95 ${fmt(s.p95)}  max ${fmt(s.max)}  (n ${s.n})${target === undefined ? "" : `  target p95 ≤ ${target} ms: ${s.p95 !== null && s.p95 <= target ? "met" : "NOT met"}`}`;
  const fmt = (x) => (x === null ? "   –" : `${x.toFixed(1).padStart(6)} ms`);
  const proto = `${r.protocol.time_sync ? "time_sync" : "no time_sync"}, ${r.protocol.start_at ? "start_at" : "no start_at"}`;
  return [
    `sync precision (${r.browser}, ${r.machine.cpus} cpus, load ${r.machine.loadavg_1m}; server: ${proto})`,
    `  A: ${r.network.A.one_way_ms} ms one way ±${r.network.A.jitter_ms}, clock ${r.network.A.clock_shift_ms > 0 ? "+" : ""}${r.network.A.clock_shift_ms} ms; B: ${r.network.B.one_way_ms} ms ±${r.network.B.jitter_ms}, clock ${r.network.B.clock_shift_ms} ms (B joins 5 s after A)`,
    `pairwise skew |A − B|, sampled every ${SAMPLE_EVERY_MS} ms; each reading timed in its page's task, mapped to the test clock`,
    `  (page − test clock: A ${r.sampling.page_clock_minus_test_clock_ms.A} ms, B ${r.sampling.page_clock_minus_test_clock_ms.B} ms; inside the evaluate round trip: A ${(r.sampling.page_timestamps_inside_round_trip.A * 100).toFixed(1)} %, B ${(r.sampling.page_timestamps_inside_round_trip.B * 100).toFixed(1)} %; round trip p50 ${r.sample_rtt_ms.p50} ms, p95 ${r.sample_rtt_ms.p95} ms):`,
    line(`steady state (${r.steady_s} s)`, r.skew_ms.steady, r.targets.steady_p95_ms),
    line("first second after a start", r.skew_ms.first_second),
    line("1–3 s after a start", r.skew_ms.one_to_three_s, r.targets.after_start_p95_ms),
    line("late joiner, 3–4 s after joining", r.skew_ms.late_joiner_3s, r.targets.late_joiner_ms),
    line("steady, timed by round-trip midpoints", r.sampling.steady_by_midpoint_ms),
    `  corrective seeks in steady state: ${r.steady_seeks} (${r.steady_seeks_per_min}/min; target 0)`,
    `  clock offset error: A p50 ${fmt(r.clock_error_ms.A.p50)}, B p50 ${fmt(r.clock_error_ms.B.p50)}`,
    `  starts scheduled ahead by: ${r.events.map((e) => `${e.kind} ${e.lead_ms} ms`).join(", ")}`,
    ...(r.protocol.time_sync && r.protocol.start_at ? [] : ["  (the targets assume a server with time_sync and start_at: without them, network delay shows up as skew)"]),
    `written to ${out}; ${r.runtime_s} s`,
  ].join("\n");
}

const watchdog = setTimeout(() => {
  console.error(`FAIL: the precision test took longer than ${TOTAL_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);
watchdog.unref();

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`FAIL: ${err.isTestFailure ? err.message : err.stack || String(err)}`);
    if (problems.length) console.error(problems.slice(0, 10).join("\n"));
    process.exit(1);
  },
);
