// Hosts real socket.io-client instances for the Rust integration tests.
//
// Protocol: one JSON object per line. Commands arrive on stdin, each with an `id`; the reply
// to a command is `{"id": ..., "ok": true|false, ...}` on stdout. Every event any client
// receives is written as `{"client": name, "event": name, "args": [...]}`; connection
// changes use the event names "$connect", "$disconnect" and "$connect_error".
//
// Commands:
//   {"op": "connect", "client": "a", "url": "http://127.0.0.1:PORT", "version": 4 | 2,
//    "opts": {... socket.io-client options ...}}            -> {"sid", "transport"}
//   {"op": "emit", "client": "a", "event": "play", "args": [...], "ack": true|false,
//    "timeout_ms": 5000}                                      -> {"ack": [...]} when ack
//   {"op": "transport", "client": "a"}                        -> {"transport": "websocket"}
//   {"op": "disconnect", "client": "a"}                       (socket.disconnect(): a leave)
//   {"op": "drop", "client": "a"}    (the transport closes under the socket, as when a network drops)
//   {"op": "close_all"}

import { createInterface } from "node:readline";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const ioV4 = require("socket.io-client").io;
const ioV2 = require("socket.io-client-v2");

// The server's events, for the 2.x client, which has no onAny.
const SERVER_EVENTS = [
  "connected", "room_created", "room_joined", "room_users", "track_change", "play",
  "pause", "seek", "sync_progress", "sync_state", "become_host", "room_state", "error",
  "set_rate", "waiting", "host_changed",
];

const clients = new Map();

function write(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function reply(id, ok, extra = {}) {
  write({ id, ok, ...extra });
}

function transportOf(socket, version) {
  return version === 2 ? socket.io.engine.transport.name : socket.io.engine.transport.name;
}

function connect(cmd) {
  const version = cmd.version ?? 4;
  const opts = { reconnection: false, forceNew: true, timeout: 10000, ...(cmd.opts ?? {}) };
  const socket = version === 2 ? ioV2(cmd.url, opts) : ioV4(cmd.url, opts);
  clients.set(cmd.client, { socket, version });
  let answered = false;
  const emitEvent = (event, args) => write({ client: cmd.client, event, args });

  if (version === 2) {
    for (const name of SERVER_EVENTS) {
      socket.on(name, (...args) => emitEvent(name, args));
    }
  } else {
    socket.onAny((event, ...args) => emitEvent(event, args));
  }
  socket.on("connect", () => {
    emitEvent("$connect", []);
    if (!answered) {
      answered = true;
      reply(cmd.id, true, { sid: socket.id, transport: transportOf(socket, version) });
    }
  });
  socket.on("disconnect", (reason) => emitEvent("$disconnect", [String(reason)]));
  socket.on("connect_error", (err) => {
    emitEvent("$connect_error", [String(err && err.message)]);
    if (!answered) {
      answered = true;
      reply(cmd.id, false, { error: String(err && err.message) });
    }
  });
}

function emit(cmd) {
  const entry = clients.get(cmd.client);
  if (!entry) return reply(cmd.id, false, { error: `no client ${cmd.client}` });
  // args_json: the arguments as JSON text, parsed here, so a test can send what only a
  // JavaScript string can hold (a lone surrogate, say).
  const args = cmd.args_json !== undefined ? JSON.parse(cmd.args_json) : (cmd.args ?? []);
  if (!cmd.ack) {
    entry.socket.emit(cmd.event, ...args);
    return reply(cmd.id, true);
  }
  const timeoutMs = cmd.timeout_ms ?? 5000;
  let done = false;
  const timer = setTimeout(() => {
    if (!done) {
      done = true;
      reply(cmd.id, false, { error: "ack timeout" });
    }
  }, timeoutMs);
  entry.socket.emit(cmd.event, ...args, (...ackArgs) => {
    if (!done) {
      done = true;
      clearTimeout(timer);
      reply(cmd.id, true, { ack: ackArgs });
    }
  });
}

function handle(cmd) {
  switch (cmd.op) {
    case "connect":
      return connect(cmd);
    case "emit":
      return emit(cmd);
    case "transport": {
      const entry = clients.get(cmd.client);
      if (!entry) return reply(cmd.id, false, { error: `no client ${cmd.client}` });
      return reply(cmd.id, true, { transport: transportOf(entry.socket, entry.version) });
    }
    case "disconnect": {
      const entry = clients.get(cmd.client);
      if (entry) entry.socket.disconnect();
      clients.delete(cmd.client);
      return reply(cmd.id, true);
    }
    case "drop": {
      const entry = clients.get(cmd.client);
      if (entry) entry.socket.io.engine.close();
      clients.delete(cmd.client);
      return reply(cmd.id, true);
    }
    case "close_all":
      for (const { socket } of clients.values()) socket.disconnect();
      clients.clear();
      return reply(cmd.id, true);
    default:
      return reply(cmd.id, false, { error: `unknown op ${cmd.op}` });
  }
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    return write({ id: null, ok: false, error: `bad command: ${e.message}` });
  }
  try {
    handle(cmd);
  } catch (e) {
    reply(cmd.id, false, { error: String(e && e.stack) });
  }
});
rl.on("close", () => {
  for (const { socket } of clients.values()) socket.disconnect();
  process.exit(0);
});
