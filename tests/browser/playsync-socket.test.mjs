// web/playsync.js's Socket, Clock and Room against a running playsync, in Node (its
// WebSocket is behind --experimental-websocket in Node 20), through a TCP proxy the test can
// cut or freeze:
//
//   node --experimental-websocket --test tests/browser/playsync-socket.test.mjs   # PLAYSYNC_BASE=URL
//
// The server should ping often (tests/it/web_client.rs starts it with a 200 ms ping interval
// and a 300 ms timeout), so the heartbeat and the client's own ping watchdog are exercised
// in about a second. Every wait is bounded.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";

import { Clock, Room, Socket } from "../../web/playsync.js";

const BASE = process.env.PLAYSYNC_BASE;
assert.ok(BASE && typeof WebSocket === "function", "set PLAYSYNC_BASE and run node with --experimental-websocket");
const upstream = new URL(BASE);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the event's arguments, or fails after `ms`. */
function next(emitter, event, ms = 5_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    const off = emitter.on(event, (...args) => {
      clearTimeout(timer);
      off();
      resolve(args);
    });
  });
}

/** A TCP proxy to the server: "pass", "freeze" (every byte dropped, and a close from the
 * other side held back: a silent link), or cut(). */
function startProxy() {
  const sockets = new Set();
  const proxy = { mode: "pass" };
  const server = net.createServer((client) => {
    const up = net.connect(Number(upstream.port), upstream.hostname);
    for (const [from, to] of [
      [client, up],
      [up, client],
    ]) {
      sockets.add(from);
      from.on("data", (chunk) => {
        if (proxy.mode === "pass") to.write(chunk);
      });
      from.on("error", () => {});
      from.on("close", () => {
        sockets.delete(from);
        if (proxy.mode === "pass") to.destroy();
      });
    }
  });
  proxy.cut = () => {
    for (const s of sockets) s.destroy();
  };
  proxy.close = () => {
    proxy.cut();
    server.close();
  };
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(Object.assign(proxy, { url: `http://127.0.0.1:${server.address().port}` }))));
}

const proxy = await startProxy();
const opened = [];
const open = (options = {}) => {
  const s = new Socket(proxy.url, { reconnectDelay: 50, reconnectDelayMax: 200, ...options });
  opened.push(s);
  return s;
};
after(() => {
  for (const s of opened) s.close();
  proxy.close();
});

test("connects, is greeted, and gets acknowledgements", async () => {
  const socket = open({ autoConnect: false });
  const greeted = next(socket, "connected");
  socket.open();
  await next(socket, "connect");
  assert.match(socket.id, /^\S+$/);
  const [hello] = await greeted;
  assert.equal(typeof hello.server_time, "number");
  const room = `sock-${process.pid}-a`;
  const ack = await socket.request("create_room", { room_id: room, track: { title: "t" } });
  assert.equal(ack.ok, true);
  assert.equal(ack.room_id, room);
  assert.equal(ack.host_id, socket.id, "the host id is the socket's id");
  const nack = await socket.request("no_such_event", {});
  assert.equal(nack.ok, false);
});

test("answers the server's pings (200 ms apart) and stays connected", async () => {
  const socket = open();
  await next(socket, "connect");
  let pings = 0;
  socket.on("ping", () => pings++);
  const dropped = [];
  socket.on("disconnect", (reason) => dropped.push(reason));
  await sleep(1_500);
  assert.ok(pings >= 4, `only ${pings} pings in 1.5 s`);
  assert.deepEqual(dropped, []);
  assert.equal(socket.connected, true);
});

test("a silent connection: acknowledgements time out, the ping watchdog reconnects", async () => {
  const socket = open({ ackTimeout: 150 });
  await next(socket, "connect");
  const firstId = socket.id;
  proxy.mode = "freeze";
  try {
    const dropped = next(socket, "disconnect", 3_000);
    const retried = next(socket, "reconnect_attempt", 3_000); // fired right after the disconnect
    const ack = await socket.request("get_room_state", { room_id: "x" });
    assert.equal(ack.code, "timeout");
    const [reason] = await dropped;
    assert.equal(reason, "ping timeout");
    const [attempt] = await retried;
    assert.ok(attempt.attempt >= 1 && attempt.delay <= 300, JSON.stringify(attempt));
  } finally {
    proxy.mode = "pass";
  }
  await next(socket, "connect", 5_000);
  assert.notEqual(socket.id, firstId);
});

test("a cut connection reconnects with backoff", async () => {
  const socket = open();
  await next(socket, "connect");
  const lost = next(socket, "disconnect");
  proxy.cut();
  assert.deepEqual(await lost, ["transport close"]);
  await next(socket, "connect", 5_000);
  assert.equal(socket.connected, true);
});

test("close() leaves cleanly: the room sees the member go, no reconnection", async () => {
  const room = `sock-${process.pid}-b`;
  const host = open();
  const member = open();
  await Promise.all([next(host, "connect"), next(member, "connect")]);
  assert.equal((await host.request("create_room", { room_id: room })).ok, true);
  const two = next(host, "room_users");
  assert.equal((await member.request("join_room", { room_id: room })).ok, true);
  assert.equal((await two)[0].count, 2);
  const one = next(host, "room_users");
  let attempts = 0;
  member.on("reconnect_attempt", () => attempts++);
  const [reason] = await Promise.all([next(member, "disconnect").then((a) => a[0]), Promise.resolve(member.close())]);
  assert.equal(reason, "io client disconnect");
  assert.equal((await one)[0].count, 1);
  await sleep(300);
  assert.equal(attempts, 0);
  assert.deepEqual(await member.request("play", { room_id: room }), { ok: false, code: "disconnected", message: "not connected" });
});

test("the clock either syncs with time_sync or says the server lacks it", async () => {
  const socket = open();
  const clock = new Clock(socket, { spacing: 5 }).start();
  try {
    await next(socket, "connect");
    await next(clock, "update", 5_000);
    if (clock.state === "synced") {
      // Same machine: the offset is the server clock's distance to this one, a few ms at most.
      assert.ok(Math.abs(clock.offsetAt()) < 50, `offset ${clock.offsetAt()}`);
      assert.ok(clock.model.rtt >= 0);
    } else {
      assert.equal(clock.state, "unsupported");
      assert.equal(clock.serverNow(), null);
    }
  } finally {
    clock.stop();
  }
});

test("rooms: the host's commands reach the member; the host follows its acknowledgements", async () => {
  const id = `sock-${process.pid}-c`;
  const host = new Room({ url: proxy.url, name: "host" });
  const member = new Room({ url: proxy.url, name: "member" });
  try {
    await Promise.all([next(host.socket, "connect"), next(member.socket, "connect")]);
    const track = { title: "one", url: "http://127.0.0.1:9/one.wav" };
    assert.equal((await host.create(id, track)).ok, true);
    assert.equal(host.state.isHost, true);
    assert.equal((await member.join(id)).ok, true);
    assert.equal(member.state.isHost, false);
    assert.equal(member.state.hostId, host.socket.id);
    await sleep(100);
    assert.deepEqual(member.state.timeline.track, track);
    assert.equal(member.state.timeline.playing, true);

    const seen = next(member.socket, "seek");
    const ack = await host.seek(42);
    assert.equal(ack.ok, true);
    await seen;
    assert.equal(member.state.timeline.position, 42);
    assert.equal(host.state.timeline.position, 42, "the host follows its acknowledgement");
    assert.equal((await member.pause()).code, "not_host");

    const paused = next(member.socket, "pause");
    assert.equal((await host.pause(50)).ok, true);
    await paused;
    assert.equal(member.state.timeline.playing, false);
    assert.equal(host.state.timeline.playing, false);

    // The host leaves: the member becomes host.
    const promoted = next(member.socket, "become_host");
    host.close();
    await promoted;
    assert.equal(member.state.isHost, true);
  } finally {
    host.close();
    member.close();
  }
});
