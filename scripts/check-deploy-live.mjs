// Part of `scripts/check-deploy --live`: real clients through deploy/nginx.conf in front of two
// playsync instances sharing Redis (the shell script starts them all on loopback).
//
//   node scripts/check-deploy-live.mjs LB_MAIN_URL LB_SECOND_URL INSTANCE1_URL INSTANCE2_URL
//
// Checks, each bounded in time:
//   - /health answers 200 through both load-balancer ports; /metrics is not exposed (404);
//   - Socket.IO long-polling only (no upgrade): a room is created and joined, and a `play`
//     reaches the member: every polling request of a session reached its instance (sticky);
//   - Socket.IO WebSocket only: a client joins that room and gets the host's `seek`;
//   - a default client upgrades from polling to WebSocket through the proxy;
//   - SSE through the proxy: a stream gets the PUTs made directly on either instance within
//     2 s each (unbuffered, and shared through Redis).
// Prints one line per check; exits 1 on the first failure.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "tests", "js", "package.json"));
const { io } = require("socket.io-client");

const [lb, lbSecond, instance1, instance2] = process.argv.slice(2);
if (!instance2) {
  console.error("usage: check-deploy-live.mjs LB_MAIN_URL LB_SECOND_URL INSTANCE1_URL INSTANCE2_URL");
  process.exit(2);
}

const sockets = [];
const timeout = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref());
const within = (ms, what, promise) => Promise.race([promise, timeout(ms, what)]);

function connect(name, opts) {
  const socket = io(lb, { reconnection: false, forceNew: true, timeout: 5000, ...opts });
  sockets.push(socket);
  return within(
    8000,
    `${name} connects`,
    new Promise((resolve, reject) => {
      socket.once("connect", () => resolve(socket));
      socket.once("connect_error", (e) => reject(new Error(`${name}: ${e.message}`)));
    }),
  );
}

function emitAck(socket, event, payload) {
  return within(5000, `ack of ${event}`, socket.emitWithAck(event, payload)).then((ack) => {
    if (!ack?.ok) throw new Error(`${event} refused: ${JSON.stringify(ack)}`);
    return ack;
  });
}

function next(socket, event) {
  return within(5000, `event ${event}`, new Promise((resolve) => socket.once(event, resolve)));
}

async function check(name, body) {
  try {
    await body();
    console.log(`ok   ${name}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`);
    for (const s of sockets) s.close();
    process.exit(1);
  }
}

await check("GET /health through both load-balancer ports", async () => {
  for (const base of [lb, lbSecond]) {
    const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(5000) });
    if (res.status !== 200) throw new Error(`${base}/health: ${res.status}`);
  }
});

await check("/metrics is not exposed through the load balancer", async () => {
  const res = await fetch(`${lb}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 404) throw new Error(`/metrics: ${res.status}`);
});

const room = `lb-check-${process.pid}`;
let host;
await check("Socket.IO long-polling only: create, join, play reaches the member", async () => {
  const polling = { transports: ["polling"], upgrade: false };
  host = await connect("polling host", polling);
  await emitAck(host, "create_room", { room_id: room, track: { name: "t" } });
  const member = await connect("polling member", polling);
  await emitAck(member, "join_room", { room_id: room });
  const play = next(member, "play");
  await emitAck(host, "play", { room_id: room, current_time: 1.5 });
  const got = await play;
  if (got.current_time !== 1.5) throw new Error(`play: ${JSON.stringify(got)}`);
  // Several more round trips on polling: each is a request the proxy must route to the
  // session's instance.
  for (let i = 0; i < 5; i++) {
    const seek = next(member, "seek");
    await emitAck(host, "seek", { room_id: room, current_time: 10 + i });
    await seek;
  }
});

await check("Socket.IO WebSocket only: joins the room, gets the host's seek", async () => {
  const ws = await connect("websocket member", { transports: ["websocket"] });
  await emitAck(ws, "join_room", { room_id: room });
  const seek = next(ws, "seek");
  await emitAck(host, "seek", { room_id: room, current_time: 42 });
  const got = await seek;
  if (got.current_time !== 42) throw new Error(`seek: ${JSON.stringify(got)}`);
});

await check("Socket.IO upgrade from polling to WebSocket through the proxy", async () => {
  const s = await connect("upgrading client", {});
  await within(
    5000,
    "the upgrade",
    new Promise((resolve) => {
      if (s.io.engine.transport.name === "websocket") return resolve();
      s.io.engine.once("upgrade", resolve);
    }),
  );
  await emitAck(s, "get_room_state", { room_id: room });
});

await check("SSE through the proxy: PUTs on either instance arrive unbuffered", async () => {
  const controller = new AbortController();
  const res = await fetch(`${lb}/api/events/playback`, { signal: controller.signal });
  if (res.status !== 200) throw new Error(`SSE: ${res.status}`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const waitFor = (needle) =>
    within(
      2000,
      `SSE event ${needle}`,
      (async () => {
        while (!buffer.includes(needle)) {
          const { value, done } = await reader.read();
          if (done) throw new Error("SSE stream ended");
          buffer += decoder.decode(value, { stream: true });
        }
      })(),
    );
  for (const [i, base] of [instance1, instance2, instance1].entries()) {
    const index = 1000 + i;
    const put = await fetch(`${base}/api/playback-position`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ lastPlayedIndex: index, deviceId: "lb-check" }),
      signal: AbortSignal.timeout(5000),
    });
    if (put.status !== 200) throw new Error(`PUT on ${base}: ${put.status}`);
    await waitFor(`"lastPlayedIndex":${index}`);
  }
  controller.abort();
});

for (const s of sockets) s.close();
process.exit(0);
