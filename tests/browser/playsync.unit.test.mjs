// Unit tests of web/playsync.js's pure parts and its packet handling (node --test).
//
//   node --test tests/browser/playsync.unit.test.mjs
//
// The Socket is driven through a fake WebSocket here; playsync-socket.test.mjs drives it
// against the real server, and sync-precision.test.mjs runs the whole client in chromium.

import { test } from "node:test";
import assert from "node:assert/strict";

import {
  Clock,
  CLOCK_DEFAULTS,
  DEFAULTS,
  Emitter,
  Socket,
  burstPoint,
  fitClock,
  nudgeFor,
  positionAt,
  probeSample,
  timelineOf,
} from "../../web/playsync.js";

const close = (actual, expected, within, what) =>
  assert.ok(Math.abs(actual - expected) <= within, `${what}: ${actual} is not within ${within} of ${expected}`);

test("a probe gives the offset and the round trip without the server's own time", () => {
  // Local clock 1000 ms behind the server; 10 ms each way; the server held it 2 ms.
  const s = probeSample(0, 1010, 1012, 22);
  assert.equal(s.offset, 1000);
  assert.equal(s.rtt, 20);
  assert.equal(s.local, 11);
  // Asymmetric delays (15 up, 5 down) bias the offset by half the difference: unseeable.
  assert.equal(probeSample(0, 1015, 1015, 20).offset, 1005);
});

test("a burst is summarised by the median offset of its lowest-RTT third", () => {
  const samples = [
    { local: 0, offset: 50, rtt: 90 }, // queued: biased
    { local: 1, offset: 10.2, rtt: 20 },
    { local: 2, offset: 9.8, rtt: 21 },
    { local: 3, offset: 10.0, rtt: 22 },
    { local: 4, offset: -30, rtt: 80 },
    { local: 5, offset: 12, rtt: 40 },
    { local: 6, offset: 8, rtt: 45 },
    { local: 7, offset: 25, rtt: 60 },
  ];
  const p = burstPoint(samples);
  assert.equal(p.offset, 10.0);
  assert.equal(p.rtt, 20);
  assert.equal(p.n, 8);
});

test("until drift can be seen, the offset is the weighted mean of recent bursts", () => {
  const points = [0, 10_000, 20_000, 30_000].map((local, i) => ({ local, offset: 100 + [1, -1, 0.5, -0.5][i], rtt: 20 }));
  const m = fitClock(points, CLOCK_DEFAULTS);
  assert.equal(m.drift, 0);
  close(m.offset, 100, 1e-9, "mean offset");
  // A burst slowed down by load (high RTT) counts less.
  const loaded = [...points, { local: 40_000, offset: 110, rtt: 200 }];
  close(fitClock(loaded, CLOCK_DEFAULTS).offset, 100, 0.2, "weighted mean");
});

test("over a long span, drift is fitted and outliers are dropped", () => {
  const drift = 40e-6; // 40 ppm
  const points = [];
  for (let i = 0; i <= 20; i++) {
    const local = i * 10_000;
    points.push({ local, offset: 500 + drift * local + (i % 2 ? 0.3 : -0.3), rtt: 30 });
  }
  points[7] = { ...points[7], offset: points[7].offset + 40 }; // one burst far off
  const m = fitClock(points, CLOCK_DEFAULTS);
  close(m.drift, drift, 5e-6, "drift");
  close(m.offset, 500 + drift * 200_000, 0.5, "offset at the newest burst");
});

test("an implausible drift (a clock step) is not extrapolated", () => {
  const points = [];
  for (let i = 0; i <= 15; i++) points.push({ local: i * 10_000, offset: i < 8 ? 0 : 300, rtt: 10 });
  const m = fitClock(points, CLOCK_DEFAULTS);
  assert.ok(Math.abs(m.drift) <= CLOCK_DEFAULTS.maxDrift, `drift ${m.drift}`);
});

/** A socket stand-in for the Clock: answers time_sync as a server `offset` ms ahead would. */
class FakeSocket extends Emitter {
  constructor(answer) {
    super();
    this.connected = true;
    this.answer = answer;
    this.sent = [];
  }

  request(event, data) {
    this.sent.push([event, data]);
    return Promise.resolve(this.answer(event, data));
  }
}

test("the clock adopts its first estimate at once and slews later changes in", async () => {
  let offset = 2_500;
  const socket = new FakeSocket((event, { t0 }) => ({ ok: true, t0, t1: t0 + offset, t2: t0 + offset }));
  const clock = new Clock(socket, { spacing: 0 });
  await clock.burst(8);
  assert.equal(clock.state, "synced");
  close(clock.offsetAt(), 2_500, 0.5, "first estimate");
  // The second probe onwards carries the previous round trip as a hint.
  assert.ok(socket.sent.slice(1).every(([, data]) => typeof data.rtt === "number"));
  offset = 2_510; // a new estimate 10 ms away: slewed in at 2 ms/s, not jumped to
  await clock.burst(8);
  const now = clock.points[clock.points.length - 1].local;
  assert.ok(clock.offsetAt(now) < 2_502, `slewing starts from the old estimate: ${clock.offsetAt(now)}`);
  const target = clock.model.offset;
  close(clock.offsetAt(now + 1_000), Math.min(target, clock.offsetAt(now) + 2), 0.2, "after 1 s");
  close(clock.offsetAt(now + 60_000), target, 1e-9, "after the slew");
  // serverNow and toLocal are inverses.
  const local = now + 123.4;
  close(clock.toLocal(clock.serverNow(local)), local, 1e-6, "toLocal(serverNow(x))");
});

test("a server that refuses time_sync makes the clock unsupported", async () => {
  const socket = new FakeSocket(() => ({ ok: false, code: "invalid_payload", message: "unknown event time_sync" }));
  const clock = new Clock(socket, { spacing: 0 });
  await clock.burst(8);
  assert.equal(clock.state, "unsupported");
  assert.equal(clock.serverNow(), null);
  assert.equal(clock.synced, false);
});

test("lost probes are not a refusal", async () => {
  const socket = new FakeSocket(() => ({ ok: false, code: "timeout", message: "no acknowledgement" }));
  const clock = new Clock(socket, { spacing: 0 });
  clock.model = { offset: 5, drift: 0, ref: 0, rtt: 10, spread: 0, points: 1 };
  clock.state = "synced";
  await clock.burst(4);
  assert.equal(clock.state, "synced");
});

test("timelines: start_at when given, else server_time; fields inferred from the event", () => {
  const track = { title: "t", url: "/a.wav" };
  const joined = timelineOf("room_joined", { current_track: track, is_playing: true, current_time: 12, server_time: 1000 }, null, 50);
  assert.deepEqual(
    { track: joined.track, playing: joined.playing, position: joined.position, startAt: joined.startAt, rate: joined.rate, scheduled: joined.scheduled },
    { track, playing: true, position: 12, startAt: 1000, rate: 1, scheduled: false },
  );
  const seek = timelineOf("seek", { current_time: 40, server_time: 2000, start_at: 2400.5, playback_rate: 1.25 }, joined);
  assert.equal(seek.playing, true, "a seek keeps the playing state");
  assert.equal(seek.track, track, "and the track");
  assert.equal(seek.startAt, 2400.5);
  assert.equal(seek.rate, 1.25);
  assert.equal(seek.scheduled, true);
  assert.equal(timelineOf("pause", { current_time: 3, server_time: 1 }, seek).playing, false);
  assert.equal(timelineOf("play", { current_time: 3, server_time: 1 }, null).playing, true);
  const change = timelineOf("track_change", { track: { title: "u" }, current_time: 0, server_time: 5 }, seek);
  assert.deepEqual(change.track, { title: "u" });
  assert.equal(change.playing, true);
  assert.equal(change.rate, 1.25, "the rate carries over");
  assert.equal(timelineOf("sync_progress", { current_time: 1, server_time: 1 }, timelineOf("pause", {}, null)).playing, false);
});

test("positions: waiting before start_at, then at the room's rate; paused stays", () => {
  const tl = { playing: true, position: 10, startAt: 1_000, rate: 1.5 };
  assert.equal(positionAt(tl, 500), 10);
  assert.equal(positionAt(tl, 1_000), 10);
  assert.equal(positionAt(tl, 3_000), 13);
  assert.equal(positionAt({ ...tl, playing: false }, 3_000), 10);
});

test("nudges: a dead band with hysteresis, proportional, bounded, in steps", () => {
  const o = { ...DEFAULTS, catchUp: false, deadBand: DEFAULTS.deadBand };
  assert.equal(nudgeFor(1.0, 0, o), 0, "inside the dead band");
  assert.ok(nudgeFor(1.0, -0.001, o) < 0, "already nudging: continues down to the release level");
  assert.equal(nudgeFor(0.3, -0.001, o), 0, "released");
  assert.equal(nudgeFor(4, 0, o), -0.002, "4 ms ahead over 2 s: 0.2 % slower");
  assert.equal(nudgeFor(-4, 0, o), 0.002, "behind: faster");
  assert.equal(nudgeFor(40, 0, o), -DEFAULTS.maxNudge, "bounded");
  assert.equal(nudgeFor(40, 0, { ...o, catchUp: true }), -DEFAULTS.catchUpMaxNudge, "catch-up bound");
  assert.equal(nudgeFor(1.6, 0, o), -0.001, "1.6 ms over 2 s: 0.08 %, rounded to 0.1 %");
  assert.equal(nudgeFor(1.6, 0, { ...o, horizon: 10_000 }), -DEFAULTS.nudgeStep, "at least one step outside the band");
  const n = nudgeFor(7.3, 0, o);
  close(n / DEFAULTS.nudgeStep, Math.round(n / DEFAULTS.nudgeStep), 1e-9, "a whole number of steps");
  assert.equal(nudgeFor(NaN, 0, o), 0);
});

/** A WebSocket stand-in: records what the client sends; the test plays the server. */
class FakeWebSocket {
  static last = null;

  constructor(url) {
    this.url = url;
    this.readyState = 1;
    this.sent = [];
    FakeWebSocket.last = this;
  }

  send(text) {
    this.sent.push(text);
  }

  close() {
    this.readyState = 3;
  }

  receive(text) {
    this.onmessage({ data: text });
  }
}

test("socket: handshake with auth, pongs, events, acknowledgements both ways", async () => {
  globalThis.WebSocket = FakeWebSocket;
  try {
    const socket = new Socket("https://example.test:8443", { auth: { name: "Ada" }, reconnect: false });
    const ws = FakeWebSocket.last;
    assert.equal(ws.url, "wss://example.test:8443/socket.io/?EIO=4&transport=websocket");
    ws.receive('0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":65536}');
    assert.deepEqual(ws.sent, ['40{"name":"Ada"}']);
    let connected = 0;
    socket.on("connect", () => connected++);
    ws.receive('40{"sid":"s1"}');
    assert.equal(connected, 1);
    assert.equal(socket.id, "s1");
    ws.receive("2");
    assert.equal(ws.sent.at(-1), "3", "answers the server's ping");

    const got = [];
    socket.on("play", (data) => got.push(data));
    ws.receive('42["play",{"current_time":1.5}]');
    assert.deepEqual(got, [{ current_time: 1.5 }]);
    ws.receive('42/other,["play",{"current_time":9}]');
    assert.equal(got.length, 1, "other namespaces are not ours");

    const acks = [];
    socket.emit("join_room", { room_id: "r" }, (ack) => acks.push(ack));
    assert.equal(ws.sent.at(-1), '420["join_room",{"room_id":"r"}]');
    ws.receive('430[{"ok":true,"room_id":"r"}]');
    assert.deepEqual(acks, [{ ok: true, room_id: "r" }]);

    socket.on("ask", (data, reply) => reply({ answer: data.q * 2 }));
    ws.receive('427["ask",{"q":21}]');
    assert.equal(ws.sent.at(-1), '437[{"answer":42}]', "answers a server's acknowledgement request");

    // Pending acknowledgements fail when the connection goes; disconnect says why.
    const pending = socket.request("get_room_state", { room_id: "r" });
    const reasons = [];
    socket.on("disconnect", (reason) => reasons.push(reason));
    ws.onclose();
    assert.deepEqual(await pending, { ok: false, code: "disconnected", message: "connection lost (transport close)" });
    assert.deepEqual(reasons, ["transport close"]);
    assert.equal(socket.connected, false);
    assert.deepEqual(await socket.request("play", {}), { ok: false, code: "disconnected", message: "not connected" });
    socket.close();
  } finally {
    delete globalThis.WebSocket;
  }
});

test("socket: acknowledgement timeout, refusal, clean close", async () => {
  globalThis.WebSocket = FakeWebSocket;
  try {
    const socket = new Socket("http://example.test", { reconnect: false, ackTimeout: 30 });
    const ws = FakeWebSocket.last;
    assert.equal(ws.url, "ws://example.test/socket.io/?EIO=4&transport=websocket");
    ws.receive('0{"sid":"e1","pingInterval":25000,"pingTimeout":20000}');
    assert.deepEqual(ws.sent, ["40"]);
    ws.receive('40{"sid":"s1"}');
    const ack = await socket.request("seek", { current_time: 1 });
    assert.equal(ack.ok, false);
    assert.equal(ack.code, "timeout");
    ws.receive('430[{"ok":true}]'); // too late: ignored

    const reasons = [];
    socket.on("disconnect", (reason) => reasons.push(reason));
    socket.close();
    assert.equal(ws.sent.at(-1), "41", "leaves the namespace");
    assert.equal(ws.readyState, 3);
    assert.deepEqual(reasons, ["io client disconnect"]);

    const refused = new Socket("http://example.test", { reconnect: true });
    const ws2 = FakeWebSocket.last;
    const errors = [];
    refused.on("connect_error", (err) => errors.push(err.message));
    ws2.receive('0{"sid":"e2","pingInterval":25000,"pingTimeout":20000}');
    ws2.receive('44{"message":"Invalid namespace"}');
    assert.deepEqual(errors, ["Invalid namespace"]);
    assert.equal(refused.connected, false);
    refused.close();
  } finally {
    delete globalThis.WebSocket;
  }
});
