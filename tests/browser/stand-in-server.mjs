// A stand-in for playsync with the room protocol's precision additions, until they land in
// the Rust server. Not a product and not run by `cargo test`: it lets the web client and the
// precision test exercise the full protocol today, and it is an executable reading of it.
//
//   node tests/browser/stand-in-server.mjs [--port 0]       # prints "listening on URL"
//   node tests/browser/sync-precision.test.mjs URL          # the precision test against it
//
// Serves web/ from disk at /app/ (as src/web.rs serves it embedded; edits show on reload)
// and the Socket.IO room protocol (socket.io 4.8, default namespace) with:
//   - `time_sync {t0[, rtt]}` acknowledged with {ok: true, t0, t1, t2}: t1/t2 are the
//     receive and send instants in Unix ms with sub-ms precision, from a monotonic-anchored
//     clock. `rtt` (the client's previous probe's round trip, an optional hint) feeds the lead.
//   - on every play-state message (room_joined, sync_state, room_state, track_change, play,
//     pause, seek, sync_progress, set_rate), next to current_time and server_time: start_at
//     (the server instant at which current_time is heard), playback_rate and is_playing.
//     Position at server time T while playing: current_time + max(0, T − start_at)/1000 × rate.
//   - play, seek and track_change start at now + lead, lead = clamp(2 × the highest p95 of
//     the members' recent RTTs, 150, 1500) ms; a host command may pass `at` (server ms),
//     clamped to [now, now + 10 s].
//   - set_rate {room_id, playback_rate} (0.5–2.0), broadcast as set_rate.
//   - room_users {count, members: [{member_id, name, role, away, ready}]}; host_id and
//     member_id are the members' socket ids; the name comes from the connection's auth.
// Host commands go to the other members as events; the host gets the same fields in the
// acknowledgement. What it leaves out of playsync: Redis, long-polling limits, validation
// detail, error codes beyond the ones the client reacts to.

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { Server } from "socket.io";

const WEB = (name) => fileURLToPath(new URL(`../../web/${name}`, import.meta.url));
const PAGES = {
  "/app/": ["index.html", "text/html; charset=utf-8"],
  "/app/positions": ["positions.html", "text/html; charset=utf-8"],
  "/app/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/app/app.css": ["app.css", "text/css; charset=utf-8"],
  "/app/playsync.js": ["playsync.js", "text/javascript; charset=utf-8"],
  "/app/positions.js": ["positions.js", "text/javascript; charset=utf-8"],
};
const LEAD_MIN = 150;
const LEAD_MAX = 1_500;
const RTT_KEEP = 16; // recent RTTs kept per member

/** The server clock: Unix ms, sub-ms, monotonic (anchored once, then performance.now()). */
const serverNow = () => performance.timeOrigin + performance.now();

const rooms = new Map(); // key -> room
const rtts = new Map(); // socket id -> recent RTTs (ms)

function p95(values) {
  if (!values || values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)];
}

function leadOf(room) {
  const worst = Math.max(0, ...room.members.map((m) => p95(rtts.get(m.id))));
  return Math.min(LEAD_MAX, Math.max(LEAD_MIN, 2 * worst));
}

function positionAt(room, t) {
  if (!room.playing) return room.position;
  return room.position + (Math.max(0, t - room.startAt) / 1000) * room.rate;
}

/** The play-state fields, as of `t` for current_time (or exactly the stored anchor). */
function playState(room, t = serverNow()) {
  const future = room.startAt > t;
  return {
    current_track: room.track,
    is_playing: room.playing,
    // A start still ahead is described by its anchor; a past one is extrapolated to now.
    current_time: future ? room.position : positionAt(room, t),
    server_time: t,
    start_at: future ? room.startAt : t,
    playback_rate: room.rate,
  };
}

function view(room, asked) {
  return { room_id: asked, user_count: room.members.length, host_id: room.host, ...playState(room) };
}

function members(room) {
  return room.members.map((m) => ({ member_id: m.id, name: m.name, role: m.id === room.host ? "host" : "listener", away: false, ready: true }));
}

function announce(io, key, room) {
  io.to(key).emit("room_users", { count: room.members.length, members: members(room) });
}

function leave(io, socket) {
  const key = socket.data.room;
  if (!key) return;
  socket.data.room = null;
  socket.leave(key);
  const room = rooms.get(key);
  if (!room) return;
  room.members = room.members.filter((m) => m.id !== socket.id);
  if (room.members.length === 0) {
    rooms.delete(key);
    return;
  }
  if (room.host === socket.id) {
    room.host = room.members[0].id;
    io.to(room.host).emit("become_host", { room_id: room.id });
  }
  announce(io, key, room);
}

function refuse(ack, code, message, socket, report = true) {
  if (report) socket.emit("error", { message, code });
  ack?.({ ok: false, code, message });
}

function startAt(room, at, now) {
  if (Number.isFinite(at)) return Math.min(now + 10_000, Math.max(now, at));
  return now + leadOf(room);
}

function attach(io) {
  io.on("connection", (socket) => {
    socket.emit("connected", { message: "connected", server_time: serverNow() });
    const name = typeof socket.handshake.auth?.name === "string" ? socket.handshake.auth.name.slice(0, 40) : "";

    socket.on("time_sync", (data, ack) => {
      const t1 = serverNow();
      if (typeof ack !== "function") return;
      if (Number.isFinite(data?.rtt) && data.rtt >= 0) {
        const list = rtts.get(socket.id) || [];
        list.push(data.rtt);
        if (list.length > RTT_KEEP) list.shift();
        rtts.set(socket.id, list);
      }
      ack({ ok: true, t0: data?.t0 ?? null, t1, t2: serverNow() });
    });

    socket.on("create_room", (data, ack) => {
      const key = String(data?.room_id ?? "");
      if (!key) return refuse(ack, "invalid_room_id", "room_id is required", socket);
      if (rooms.has(key)) return refuse(ack, "room_exists", `room ${key} exists`, socket);
      leave(io, socket);
      const now = serverNow();
      const room = { id: data.room_id, host: socket.id, members: [{ id: socket.id, name }], track: data.track ?? null, playing: true, position: Number(data.current_time) || 0, startAt: now, rate: 1 };
      rooms.set(key, room);
      socket.join(key);
      socket.data.room = key;
      const reply = { room_id: data.room_id, user_count: 1, host_id: socket.id, member_id: socket.id };
      socket.emit("room_created", reply);
      announce(io, key, room);
      ack?.({ ok: true, ...reply });
    });

    socket.on("join_room", (data, ack) => {
      const key = String(data?.room_id ?? "");
      const room = rooms.get(key);
      if (!room) return refuse(ack, "room_not_found", `room ${key} does not exist`, socket);
      if (socket.data.room !== key) {
        leave(io, socket);
        room.members.push({ id: socket.id, name });
        socket.join(key);
        socket.data.room = key;
        announce(io, key, room);
      }
      const reply = { ...view(room, data.room_id), member_id: socket.id };
      socket.emit("room_joined", reply);
      if (room.track) socket.emit("sync_state", playState(room));
      ack?.({ ok: true, ...reply });
    });

    socket.on("get_room_state", (data, ack) => {
      const room = rooms.get(String(data?.room_id ?? ""));
      if (!room) return refuse(ack, "room_not_found", "no such room", socket);
      const reply = view(room, data.room_id);
      socket.emit("room_state", reply);
      ack?.({ ok: true, ...reply });
    });

    const command = (event, apply) => (data, ack) => {
      const key = String(data?.room_id ?? "");
      const room = rooms.get(key);
      if (!room) return refuse(ack, "room_not_found", "no such room", socket, false);
      if (room.host !== socket.id) return refuse(ack, "not_host", "only the host can do that", socket, false);
      const now = serverNow();
      const problem = apply(room, data, now);
      if (problem) return refuse(ack, "invalid_payload", problem, socket);
      const state = playState(room, now);
      const payload = event === "track_change" ? { track: room.track, ...state } : state;
      socket.to(key).emit(event, payload);
      ack?.({ ok: true, ...payload });
    };
    const time = (data, fallback) => (Number.isFinite(data?.current_time) && data.current_time >= 0 ? data.current_time : fallback);

    socket.on("play", command("play", (room, data, now) => {
      room.position = time(data, positionAt(room, now));
      room.playing = true;
      room.startAt = startAt(room, data?.at, now);
    }));
    socket.on("pause", command("pause", (room, data, now) => {
      room.position = time(data, positionAt(room, now));
      room.playing = false;
      room.startAt = now;
    }));
    socket.on("seek", command("seek", (room, data, now) => {
      if (!Number.isFinite(data?.current_time)) return "seek needs current_time";
      room.position = data.current_time;
      room.startAt = room.playing ? startAt(room, data?.at, now) : now;
    }));
    socket.on("track_change", command("track_change", (room, data, now) => {
      if (!data?.track || typeof data.track !== "object") return "track_change needs a track object";
      room.track = data.track;
      room.position = 0;
      room.playing = true;
      room.startAt = startAt(room, data?.at, now);
    }));
    socket.on("set_rate", command("set_rate", (room, data, now) => {
      const rate = data?.playback_rate;
      if (!Number.isFinite(rate) || rate < 0.5 || rate > 2) return "playback_rate must be 0.5–2.0";
      room.position = positionAt(room, now);
      room.startAt = now;
      room.rate = rate;
    }));
    socket.on("sync_progress", (data, ack) => ack?.({ ok: true })); // the server's clock leads

    socket.on("disconnect", () => {
      leave(io, socket);
      rtts.delete(socket.id);
    });
  });
}

async function serveFile(req, res) {
  const path = new URL(req.url, "http://x").pathname;
  if (path === "/app") {
    res.writeHead(308, { location: `/app/${new URL(req.url, "http://x").search}` }).end();
    return;
  }
  const page = PAGES[path];
  if (!page) {
    res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: "not found" }));
    return;
  }
  const body = await readFile(WEB(page[0]));
  res.writeHead(200, { "content-type": page[1], "cache-control": "no-cache" }).end(body);
}

const portArg = process.argv.indexOf("--port");
const port = portArg > 0 ? Number(process.argv[portArg + 1]) : 0;
const http = createServer((req, res) => {
  serveFile(req, res).catch((err) => res.writeHead(500).end(String(err)));
});
const io = new Server(http, { cors: { origin: "*" }, pingInterval: 25_000, pingTimeout: 20_000 });
attach(io);
http.listen(port, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${http.address().port}`);
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    io.close();
    http.close();
    process.exit(0);
  });
}
