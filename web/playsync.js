/**
 * playsync.js: a small client for playsync listening rooms, with no dependencies.
 *
 * Served by playsync at /app/playsync.js as an ES module (CORS-enabled, so other sites can
 * import it). Four parts, usable on their own:
 *
 *   import { Socket, Clock, Follower, Room } from "https://your-playsync/app/playsync.js";
 *
 * Socket: Socket.IO v5 over Engine.IO 4, WebSocket only.
 *   const socket = new Socket("https://your-playsync", { auth: { name: "Ada" } });
 *   socket.on("connect", () => ...);            // also after every reconnection
 *   socket.on("disconnect", (reason) => ...);   // "transport close", "ping timeout", ...
 *   socket.on("connect_error", (err) => ...);   // refused by the server, or no connection
 *   socket.on("reconnect_attempt", ({ attempt, delay }) => ...);
 *   socket.on("ping", () => ...);               // each server ping (answered already)
 *   socket.on("play", (data) => ...);           // any server event
 *   socket.emit("join_room", { room_id: "x" }, (ack) => ...);
 *   const ack = await socket.request("join_room", { room_id: "x" }, { timeout: 5000 });
 *   socket.close();                              // clean close; no reconnection
 *   socket.connected, socket.id
 *   Options: path ("/socket.io/"), auth (object, or function returning one, sent with every
 *   connection), reconnect (true), reconnectDelay (500 ms), reconnectDelayMax (10000 ms),
 *   reconnectAttempts (Infinity), ackTimeout (10000 ms), autoConnect (true).
 *   Acknowledgements never throw: a timeout or a lost connection calls the callback with
 *   {ok: false, code: "timeout" | "disconnected", message}, the shape of the server's refusals.
 *   Emits while disconnected are not buffered (a stale play/seek is worse than none).
 *   The server pings, the client answers; no ping for pingInterval + pingTimeout closes and
 *   reconnects, with exponential backoff and jitter; the browser's "online" event retries at once.
 *
 * Clock: the server's clock, estimated from `time_sync` probes.
 *   const clock = new Clock(socket); clock.start();
 *   clock.serverNow()            // server Unix ms now, or null while unknown
 *   clock.toLocal(serverMs)      // the local instant (localNow() scale) of a server instant
 *   clock.status                 // {state, offset, drift, rtt, spread, bursts}
 *   Probes are `time_sync {t0, rtt}` (rtt: the previous probe's round trip, a hint for the
 *   server's start lead) acknowledged with {ok: true, t0, t1, t2}.
 *   clock.on("update", (status) => ...)
 *   state: "idle" | "syncing" | "synced" | "unsupported" (the server refused time_sync).
 *
 * Follower: plays a room's timeline on one <audio>/<video> element, on time.
 *   const follower = new Follower(audioElement, clock);
 *   follower.apply(timeline)     // from timelineOf(event, data, previous)
 *   follower.unlock()            // call from a click handler when autoplay was blocked
 *   follower.stats               // {phase, error, nudge, rate, correctiveSeeks, ...}
 *   follower.on("blocked" | "phase" | "mediaerror", ...)
 *
 * Room: all of the above for one room, with the host's commands.
 *   const room = new Room({ media: audioElement, name: "Ada" });
 *   await room.join("party");  or  await room.create("party", { title, url });
 *   room.play(), room.pause(), room.seek(seconds), room.changeTrack(track), room.setRate(1.25)
 *   room.on("change", (room) => render(room.state))
 *
 * Times: local instants are localNow() (performance.timeOrigin + performance.now(): monotonic,
 * sub-millisecond, never Date.now()); server instants are the server's Unix ms.
 * Thresholds and the reasons for them are documented at DEFAULTS below and in the README.
 */

export const VERSION = "1.0.0";

/** The local monotonic clock, in ms on the Unix scale (but not necessarily agreeing with it). */
export function localNow() {
  return performance.timeOrigin + performance.now();
}

/** A minimal event emitter: on() returns a function that unsubscribes. */
export class Emitter {
  constructor() {
    this._handlers = new Map();
  }

  on(name, fn) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(fn);
    return () => this.off(name, fn);
  }

  once(name, fn) {
    const off = this.on(name, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  off(name, fn) {
    this._handlers.get(name)?.delete(fn);
  }

  _fire(name, ...args) {
    for (const fn of [...(this._handlers.get(name) || [])]) {
      try {
        fn(...args);
      } catch (err) {
        console.error(`playsync: a "${name}" handler threw`, err);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Socket: Socket.IO over Engine.IO 4, WebSocket transport only.

const NOT_CONNECTED = { ok: false, code: "disconnected", message: "not connected" };

export class Socket extends Emitter {
  constructor(url = globalThis.location?.origin, options = {}) {
    super();
    this.url = url;
    this.options = {
      path: "/socket.io/",
      auth: null,
      reconnect: true,
      reconnectDelay: 500,
      reconnectDelayMax: 10_000,
      reconnectAttempts: Infinity,
      ackTimeout: 10_000,
      autoConnect: true,
      ...options,
    };
    this.id = null;
    this.connected = false;
    this._ws = null;
    this._acks = new Map(); // id -> {callback, timer}
    this._nextAck = 0;
    this._attempt = 0;
    this._closed = true;
    this._watchdog = null;
    this._retry = null;
    this._heartbeat = { interval: 25_000, timeout: 20_000 };
    this._online = () => {
      if (!this._closed && !this._ws) this._open();
    };
    if (this.options.autoConnect) this.open();
  }

  /** Opens the connection (again, after close()). */
  open() {
    if (!this._closed) return this;
    this._closed = false;
    globalThis.addEventListener?.("online", this._online);
    this._open();
    return this;
  }

  /** Closes cleanly: leaves the namespace, closes the WebSocket, stops reconnecting. */
  close() {
    this._closed = true;
    globalThis.removeEventListener?.("online", this._online);
    clearTimeout(this._retry);
    const ws = this._ws;
    if (ws) {
      if (ws.readyState === 1 && this.connected) ws.send("41");
      this._drop(ws, "io client disconnect");
      ws.close(1000);
    }
    return this;
  }

  /**
   * Sends an event. A trailing function argument asks for an acknowledgement and gets the
   * server's answer, or {ok: false, code: "timeout" | "disconnected"}.
   */
  emit(event, ...args) {
    const callback = typeof args[args.length - 1] === "function" ? args.pop() : null;
    if (!this.connected) {
      if (callback) queueMicrotask(() => callback({ ...NOT_CONNECTED }));
      return false;
    }
    let id = "";
    if (callback) {
      id = String(this._nextAck++);
      const timer = setTimeout(() => {
        if (this._acks.delete(id)) {
          callback({ ok: false, code: "timeout", message: `no acknowledgement of ${event} within ${this.options.ackTimeout} ms` });
        }
      }, this.options.ackTimeout);
      this._acks.set(id, { callback, timer });
    }
    this._send(`42${id}${JSON.stringify([event, ...args])}`);
    return true;
  }

  /** emit() with an acknowledgement, as a promise (never rejects). */
  request(event, data, { timeout } = {}) {
    return new Promise((resolve) => {
      if (timeout === undefined) {
        this.emit(event, data, resolve);
        return;
      }
      let done = false;
      const timer = setTimeout(() => finish({ ok: false, code: "timeout", message: `no acknowledgement of ${event} within ${timeout} ms` }), timeout);
      const finish = (ack) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(ack);
      };
      this.emit(event, data, finish);
    });
  }

  _endpoint() {
    const url = new URL(this.options.path, this.url);
    url.protocol = { "https:": "wss:", "http:": "ws:" }[url.protocol] || url.protocol;
    url.searchParams.set("EIO", "4");
    url.searchParams.set("transport", "websocket");
    return url.href;
  }

  _open() {
    clearTimeout(this._retry);
    let ws;
    try {
      ws = new WebSocket(this._endpoint());
    } catch (err) {
      this._fire("connect_error", err);
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    ws.onmessage = (ev) => {
      if (ws === this._ws) this._onPacket(String(ev.data));
    };
    ws.onclose = () => {
      if (ws === this._ws) this._lost(ws, "transport close");
    };
    ws.onerror = () => {
      if (ws === this._ws) this._lost(ws, "transport error");
    };
  }

  _send(text) {
    if (this._ws && this._ws.readyState === 1) this._ws.send(text);
  }

  _armWatchdog() {
    clearTimeout(this._watchdog);
    const { interval, timeout } = this._heartbeat;
    const ws = this._ws;
    this._watchdog = setTimeout(() => {
      if (ws === this._ws) {
        this._lost(ws, "ping timeout");
        ws.close();
      }
    }, interval + timeout);
  }

  _onPacket(packet) {
    switch (packet[0]) {
      case "0": {
        // Engine.IO open: the heartbeat settings; then join the default namespace.
        const open = safeJson(packet.slice(1)) || {};
        this._heartbeat = { interval: open.pingInterval ?? 25_000, timeout: open.pingTimeout ?? 20_000 };
        this._armWatchdog();
        const auth = typeof this.options.auth === "function" ? this.options.auth() : this.options.auth;
        this._send(auth ? `40${JSON.stringify(auth)}` : "40");
        break;
      }
      case "2": // the server's ping
        this._send(`3${packet.slice(1)}`);
        this._armWatchdog();
        this._fire("ping");
        break;
      case "1": // the server closes
        this._lost(this._ws, "transport close");
        break;
      case "4":
        this._onSocketIO(packet.slice(1));
        break;
      default: // "6" noop, "3" pong: nothing to do
        break;
    }
  }

  _onSocketIO(text) {
    const type = text[0];
    let rest = text.slice(1);
    if (rest.startsWith("/")) {
      const comma = rest.indexOf(",");
      const nsp = comma < 0 ? rest : rest.slice(0, comma);
      if (nsp !== "/") return; // another namespace: not ours
      rest = comma < 0 ? "" : rest.slice(comma + 1);
    }
    const digits = /^\d*/.exec(rest)[0];
    const data = rest.length > digits.length ? safeJson(rest.slice(digits.length)) : undefined;
    switch (type) {
      case "0": // connected to the namespace
        this.id = data?.sid ?? null;
        this.connected = true;
        this._attempt = 0;
        this._fire("connect");
        break;
      case "1": // the server disconnects us (e.g. it shuts down): reconnect with backoff
        this._lost(this._ws, "io server disconnect");
        break;
      case "2": {
        if (!Array.isArray(data) || typeof data[0] !== "string") return;
        const [event, ...args] = data;
        if (digits) {
          let answered = false;
          args.push((...reply) => {
            if (answered) return;
            answered = true;
            this._send(`43${digits}${JSON.stringify(reply)}`);
          });
        }
        this._fire(event, ...args);
        break;
      }
      case "3": {
        const pending = this._acks.get(digits);
        if (!pending) return;
        this._acks.delete(digits);
        clearTimeout(pending.timer);
        pending.callback(...(Array.isArray(data) ? data : [data]));
        break;
      }
      case "4": // refused by the server: no reconnection
        this._fire("connect_error", Object.assign(new Error(data?.message || "connection refused"), { data }));
        this._closed = true;
        this._drop(this._ws, "connect refused");
        break;
      default: // binary events ("5", "6"): the room protocol has none
        break;
    }
  }

  /** The connection is gone: tell everyone, then reconnect unless closed. */
  _lost(ws, reason) {
    if (!ws || ws !== this._ws) return;
    const wasConnected = this.connected;
    this._drop(ws, reason);
    try {
      ws.close();
    } catch {
      // already closed
    }
    if (!wasConnected) this._fire("connect_error", new Error(reason));
    this._scheduleReconnect();
  }

  _drop(ws, reason) {
    if (ws !== this._ws) return;
    const wasConnected = this.connected;
    this._ws = null;
    this.connected = false;
    clearTimeout(this._watchdog);
    const pending = [...this._acks.values()];
    this._acks.clear();
    for (const { callback, timer } of pending) {
      clearTimeout(timer);
      callback({ ...NOT_CONNECTED, message: `connection lost (${reason})` });
    }
    if (wasConnected) this._fire("disconnect", reason);
  }

  _scheduleReconnect() {
    if (this._closed || !this.options.reconnect || this._attempt >= this.options.reconnectAttempts) return;
    const { reconnectDelay, reconnectDelayMax } = this.options;
    const base = Math.min(reconnectDelayMax, reconnectDelay * 2 ** this._attempt);
    const delay = Math.round(base * (0.5 + Math.random()));
    this._attempt += 1;
    this._fire("reconnect_attempt", { attempt: this._attempt, delay });
    clearTimeout(this._retry);
    this._retry = setTimeout(() => {
      if (!this._closed && !this._ws) this._open();
    }, delay);
  }
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Clock: NTP-style probes over `time_sync`, offset and drift from the lowest-RTT samples.

export const CLOCK_DEFAULTS = {
  /** Probes at connection and when the page becomes visible again. */
  burst: 8,
  /** More bursts soon after connecting (ms after it): the estimate firms up quickly. */
  followUps: [2_000, 5_000],
  /** Then `refreshBurst` probes every `refreshEvery` ms. */
  refreshBurst: 6,
  refreshEvery: 10_000,
  /** Probes of a burst are pipelined this far apart (ms): a burst takes ~8 × 25 ms + one RTT. */
  spacing: 25,
  probeTimeout: 3_000,
  /** Bursts older than this (ms) no longer count. */
  window: 600_000,
  /** Until the bursts span `driftSpan` ms (and number `driftPoints`), the offset is the
   * weighted mean of the last `meanWindow` ms of bursts and drift is 0; then a line. */
  driftSpan: 120_000,
  driftPoints: 6,
  meanWindow: 60_000,
  /** Drift beyond ±500 ppm is not a crystal: it is a clock step, and is not extrapolated. */
  maxDrift: 500e-6,
  /** Two newest bursts this far (ms) from the model, on the same side: a step; start over. */
  stepThreshold: 20,
  /** A new estimate is slewed in at this rate (ms per s, 0.2 %) so the timeline does not
   * jump by the estimate's noise; a change over `slewUpTo` ms is applied at once. */
  slewRate: 2,
  slewUpTo: 50,
};

/**
 * One probe's numbers: t0 and t3 local, t1 and t2 the server's receive and send instants.
 * offset: server − local; rtt: network round trip without the server's own time.
 */
export function probeSample(t0, t1, t2, t3) {
  return {
    local: (t0 + t3) / 2,
    offset: (t1 - t0 + (t2 - t3)) / 2,
    rtt: Math.max(0, t3 - t0 - (t2 - t1)),
  };
}

function median(values) {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * A burst's estimate: the median offset of its lowest-RTT third. Samples with a low round
 * trip are the ones least delayed by queues in either direction, so their offsets are the
 * least biased; the median of several resists one that was lucky one way only.
 */
export function burstPoint(samples) {
  const byRtt = [...samples].sort((a, b) => a.rtt - b.rtt);
  const best = byRtt.slice(0, Math.max(1, Math.ceil(samples.length / 3)));
  return {
    local: median(best.map((s) => s.local)),
    offset: median(best.map((s) => s.offset)),
    rtt: best[0].rtt,
    n: samples.length,
  };
}

/**
 * The clock model from burst points: offset at `ref` (the newest point's local time) and
 * drift (ms per ms). Bursts whose offset is over max(2 ms, 4 × MAD) from the median are
 * dropped. Until the bursts span `driftSpan` the offset is the mean of the recent ones,
 * weighted 1/(1 + rtt)² (a burst slowed down by load counts less), with drift 0: a line
 * through a few noisy points extrapolates their noise. Then weighted least squares.
 */
export function fitClock(points, options = CLOCK_DEFAULTS) {
  if (points.length === 0) return null;
  const newest = points[points.length - 1];
  const ref = newest.local;
  const center = median(points.map((p) => p.offset));
  const mad = median(points.map((p) => Math.abs(p.offset - center)));
  let kept = points.filter((p) => Math.abs(p.offset - center) <= Math.max(2, 4 * mad));
  if (kept.length === 0) kept = [newest];
  const span = ref - kept[0].local;
  if (kept.length < options.driftPoints || span < options.driftSpan) {
    const recent = kept.filter((p) => p.local >= ref - options.meanWindow);
    const use = recent.length ? recent : [newest];
    let sw = 0;
    let so = 0;
    for (const p of use) {
      const w = 1 / (1 + p.rtt) ** 2;
      sw += w;
      so += w * p.offset;
    }
    const offset = so / sw;
    return { offset, drift: 0, ref, rtt: newest.rtt, spread: spreadOf(use, offset, 0, ref), points: points.length };
  }
  let { offset, drift } = weightedLine(kept, ref);
  if (!Number.isFinite(drift) || Math.abs(drift) > options.maxDrift) {
    drift = 0;
    offset = median(kept.slice(-3).map((p) => p.offset));
  }
  return { offset, drift, ref, rtt: newest.rtt, spread: spreadOf(kept, offset, drift, ref), points: points.length };
}

function weightedLine(points, ref) {
  let sw = 0;
  let sx = 0;
  let sy = 0;
  for (const p of points) {
    const w = 1 / (1 + p.rtt) ** 2;
    sw += w;
    sx += w * (p.local - ref);
    sy += w * p.offset;
  }
  const mx = sx / sw;
  const my = sy / sw;
  let sxx = 0;
  let sxy = 0;
  for (const p of points) {
    const w = 1 / (1 + p.rtt) ** 2;
    const dx = p.local - ref - mx;
    sxx += w * dx * dx;
    sxy += w * dx * (p.offset - my);
  }
  const drift = sxx > 0 ? sxy / sxx : 0;
  return { offset: my - drift * mx, drift };
}

function spreadOf(points, offset, drift, ref) {
  if (points.length < 2) return 0;
  const r = points.map((p) => p.offset - (offset + drift * (p.local - ref)));
  return Math.sqrt(r.reduce((a, v) => a + v * v, 0) / r.length);
}

export class Clock extends Emitter {
  constructor(socket, options = {}) {
    super();
    this.socket = socket;
    this.options = { ...CLOCK_DEFAULTS, ...options };
    this.state = "idle";
    this.points = [];
    this.model = null;
    this._bursting = false;
    this._interval = null;
    this._offs = [];
    this._lastRtt = null;
    this._slew = null;
    this._followUps = new Set();
  }

  start() {
    if (this._interval) return this;
    const burst = () => this.burst(this.options.burst);
    this._offs.push(this.socket.on("connect", () => {
      if (this.state === "unsupported") this.state = this.model ? "synced" : "idle"; // maybe upgraded
      burst();
      for (const after of this.options.followUps) {
        const id = setTimeout(() => this._followUps.delete(id) && burst(), after);
        this._followUps.add(id);
      }
    }));
    if (globalThis.document) {
      const visible = () => {
        if (document.visibilityState === "visible") burst();
      };
      document.addEventListener("visibilitychange", visible);
      this._offs.push(() => document.removeEventListener("visibilitychange", visible));
    }
    this._interval = setInterval(() => this.burst(this.options.refreshBurst), this.options.refreshEvery);
    if (this.socket.connected) burst();
    return this;
  }

  stop() {
    clearInterval(this._interval);
    this._interval = null;
    for (const id of this._followUps) clearTimeout(id);
    this._followUps.clear();
    for (const off of this._offs.splice(0)) off();
  }

  /** Whether server instants can be mapped (a model exists). */
  get synced() {
    return this.model !== null && this.state !== "unsupported";
  }

  /** The offset (server − local, ms) at local instant `local`, with a recent change of the
   * estimate still being slewed in. */
  offsetAt(local = localNow()) {
    const m = this.model;
    if (!m) return null;
    const offset = m.offset + m.drift * (local - m.ref);
    const slew = this._slew;
    if (!slew) return offset;
    const left = Math.max(0, Math.abs(slew.delta) - (this.options.slewRate * Math.max(0, local - slew.at)) / 1000);
    return offset + Math.sign(slew.delta) * left;
  }

  serverNow(local = localNow()) {
    const offset = this.synced ? this.offsetAt(local) : null;
    return offset === null ? null : local + offset;
  }

  toLocal(server) {
    if (!this.synced) return null;
    const guess = server - this.offsetAt(server - this.model.offset);
    return server - this.offsetAt(guess);
  }

  get status() {
    const m = this.model;
    return {
      state: this.state,
      offset: m ? this.offsetAt() : null,
      drift: m ? m.drift : null,
      rtt: m ? m.rtt : null,
      spread: m ? m.spread : null,
      bursts: this.points.length,
    };
  }

  /** Sends `n` probes, pipelined `spacing` ms apart, and refits. */
  async burst(n) {
    if (this._bursting || this.state === "unsupported" || !this.socket.connected) return;
    this._bursting = true;
    if (this.state === "idle") this.state = "syncing";
    try {
      const probes = [];
      for (let i = 0; i < n; i++) {
        probes.push(this._probe());
        if (i < n - 1) await sleep(this.options.spacing);
      }
      const results = await Promise.all(probes);
      if (results.some((r) => r && r.refused)) {
        this.state = "unsupported";
        this._fire("update", this.status);
        return;
      }
      const samples = results.filter((r) => r && !r.refused);
      if (samples.length === 0) {
        if (this.socket.connected && !this.model) {
          this.state = "unsupported"; // connected, yet not one answer: the server ignores it
          this._fire("update", this.status);
        }
        return;
      }
      this._add(burstPoint(samples));
    } finally {
      this._bursting = false;
    }
  }

  _add(point) {
    const o = this.options;
    const m = this.model;
    let stepped = false;
    if (m && this.points.length >= 2) {
      const prev = this.points[this.points.length - 1];
      const off = (p) => p.offset - (m.offset + m.drift * (p.local - m.ref));
      const a = off(prev);
      const b = off(point);
      if (Math.abs(a) > o.stepThreshold && Math.abs(b) > o.stepThreshold && Math.sign(a) === Math.sign(b)) {
        this.points = [prev]; // the clock stepped (suspend, a server move): forget the past
        stepped = true;
      }
    }
    this.points.push(point);
    const horizon = point.local - o.window;
    while (this.points.length > 1 && (this.points[0].local < horizon || this.points.length > 64)) this.points.shift();
    const before = this.model ? this.offsetAt(point.local) : null;
    this.model = fitClock(this.points, o);
    this._slew = null;
    const delta = before === null ? 0 : before - this.offsetAt(point.local);
    this._slew = !stepped && before !== null && Math.abs(delta) <= o.slewUpTo ? { delta, at: point.local } : null;
    this.state = "synced";
    this._fire("update", this.status);
  }

  async _probe() {
    const t0 = localNow();
    // `rtt`: the previous probe's round trip, a hint the server may use for the start lead.
    const payload = this._lastRtt === null ? { t0 } : { t0, rtt: Math.round(this._lastRtt * 100) / 100 };
    const ack = await this.socket.request("time_sync", payload, { timeout: this.options.probeTimeout });
    const t3 = localNow();
    if (!ack || ack.ok !== true) {
      const lost = ack && (ack.code === "timeout" || ack.code === "disconnected");
      return lost ? null : { refused: true };
    }
    const { t1, t2 } = ack;
    if (![t1, t2].every(Number.isFinite) || t2 < t1) return { refused: true };
    const sample = probeSample(t0, t1, t2, t3);
    this._lastRtt = sample.rtt;
    return sample;
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// Timelines: what a play-state message says the room is playing.

/**
 * A play-state message as a timeline: {track, playing, position (s), startAt (server ms at
 * which `position` is heard), serverTime, rate, receivedAt (local), event}. Messages of a
 * server without `start_at` use `server_time`; fields a message lacks come from `previous`.
 */
export function timelineOf(event, data, previous = null, receivedAt = localNow()) {
  const d = data || {};
  const hasTrack = "current_track" in d || "track" in d;
  const track = hasTrack ? (d.current_track ?? d.track ?? null) : (previous?.track ?? null);
  let playing = d.is_playing;
  if (typeof playing !== "boolean") {
    if (event === "play" || event === "track_change") playing = true;
    else if (event === "pause") playing = false;
    else playing = previous?.playing ?? false;
  }
  const serverTime = Number.isFinite(d.server_time) ? d.server_time : null;
  const startAt = Number.isFinite(d.start_at) ? d.start_at : serverTime;
  const rate = Number.isFinite(d.playback_rate) ? d.playback_rate : (previous?.rate ?? 1);
  return {
    event,
    track,
    playing,
    position: Number.isFinite(d.current_time) ? d.current_time : 0,
    startAt,
    serverTime,
    scheduled: Number.isFinite(d.start_at),
    rate,
    receivedAt,
  };
}

/** The timeline's position (s) at server instant `server`. */
export function positionAt(timeline, server) {
  if (!timeline.playing || timeline.startAt === null) return timeline.position;
  return timeline.position + (Math.max(0, server - timeline.startAt) / 1000) * timeline.rate;
}

// ---------------------------------------------------------------------------------------------
// Follower: keeps a media element on the room's timeline.

/**
 * Correction thresholds. Measured in headless Chromium 156 (see README "Correction"):
 * - play() and seeks take 70–95 ms to move currentTime, varying ±10 ms from one to the next,
 *   so a start on time is not enough: the phase is measured once the clock runs, and fixed;
 * - a playbackRate change takes effect after ~80 ms; currentTime is linear to ~0.2 ms while
 *   running;
 * - with preservesPitch on, any rate ≠ 1 wobbles (p95 ~5 ms) and rate changes jump up to
 *   ~25 ms; with it off the wobble stays within ~1 ms and a 0.5 % nudge moves the pitch by
 *   under 9 cents: so preservesPitch is off while the room plays at 1×;
 * - `muted` and volume 0 switch Chromium to another clock (13–47 ms jumps when sound comes
 *   back), while volume 0.001 (−60 dB) keeps the audio clock with no jump on the way back:
 *   the silent pre-roll plays at that volume, and volume 0 is played as 0.001.
 */
export const DEFAULTS = {
  /** Error samples every `tick` ms; the error is the median of the last `filter` (250 ms). */
  tick: 50,
  filter: 5,
  /** No nudge while |error| ≤ deadBand ms; once nudging, continue until |error| < release. */
  deadBand: 1.5,
  release: 0.5,
  /** With preservesPitch on (room rate ≠ 1) the wobble is ~5 ms: a wider band, no chasing. */
  pitchDeadBand: 8,
  /** A nudge removes the error over `horizon` ms: rate = room rate × (1 − error / horizon). */
  horizon: 2_000,
  maxNudge: 0.005, // 0.5 %: under 9 cents
  /** For `catchUpFor` ms after a start or seek, faster (a start that could not pre-roll). */
  catchUpFor: 3_000,
  catchUpHorizon: 600,
  catchUpMaxNudge: 0.015, // 1.5 %: ~26 cents, for well under a second
  /** Nudges are multiples of this, so the rate is not rewritten for every 0.1 ms. */
  nudgeStep: 0.0005,
  /** Seek only when |error| > seekAbove ms for seekAfter ms (nudging that would take > 10 s). */
  seekAbove: 50,
  seekAfter: 500,
  /** After a corrective seek, none for `seekCooldown` ms, doubling for each consecutive one. */
  seekCooldown: 5_000,
  seekCooldownMax: 60_000,
  /** Initial play()/seek latency guesses (ms); each start and seek measures and refines them. */
  startLatency: 80,
  seekLatency: 80,
  /** A start is planned at least this far (ms) before play(), so the pre-seek (paused, into
   * buffered audio: a few ms) completes; if it has not, the start is planned again. */
  prepare: 80,
  /**
   * Silent pre-roll: when the start is far enough ahead, play from before the start position
   * at volume `quietVolume` for up to `preroll` ms (at least `prerollMin`), measure the phase
   * once the clock runs, fix it with open-loop rate bursts (≤ ±prerollMaxNudge over
   * `prerollBurst` ms: inaudible at −60 dB), and turn the sound up at the start instant.
   */
  preroll: 600,
  prerollMin: 250,
  prerollBurst: 150,
  prerollMaxNudge: 0.1,
  prerollTick: 20,
  quietVolume: 0.001,
  /** How long a start waits for the first clock estimate (ms) before using arrival times. */
  clockWait: 2_000,
  /** Device output latency (ms), e.g. Bluetooth: the element leads the timeline by this. */
  outputLatency: 0,
};

const HAVE_METADATA = 1;
const HAVE_FUTURE_DATA = 3;

export class Follower extends Emitter {
  constructor(media, clock = null, options = {}) {
    super();
    this.media = media;
    this.clock = clock;
    this.options = { ...DEFAULTS, ...options };
    this.timeline = null;
    this.url = null; // the URL loaded in the element (the app resolves tracks to URLs)
    this.phase = "idle";
    this.startLatency = this.options.startLatency;
    this.seekLatency = this.options.seekLatency;
    this.nudge = 0;
    this.correctiveSeeks = 0;
    this.starts = 0;
    this.lastStartError = null;
    this.error = null;
    /** The last 200 decisions ({t, what, ...}), for diagnosis: starts, seeks, nudges. */
    this.trace = [];
    this._volume = media.volume;
    this._fullPreroll = false;
    this._quiet = false;
    this._errors = [];
    this._start = null; // the start under way: {kind, at (play()/seek call), from (position)}
    this._plan = null; // the planned start: {at (start instant), position, from, preroll}
    this._timers = new Set();
    this._planSince = null;
    this._catchUpUntil = 0;
    this._aboveSince = null;
    this._seekAllowedAt = 0;
    this._consecutiveSeeks = 0;
    this._lastSeekAt = -Infinity;
    this._last = null; // when currentTime was last seen to move: {t, ct}
    this._burstUntil = 0; // pre-roll: a rate burst runs until then (local ms)
    this._onMedia = (ev) => this._mediaEvent(ev);
    for (const name of MEDIA_EVENTS) media.addEventListener(name, this._onMedia);
    media.preload = "auto";
    media.preservesPitch = false;
    this._interval = setInterval(() => this._tick(), this.options.tick);
  }

  destroy() {
    clearInterval(this._interval);
    this._cancel();
    for (const name of MEDIA_EVENTS) this.media.removeEventListener(name, this._onMedia);
  }

  /** The listener's volume (0–1). Set it here, not on the element: pre-rolls lower it. */
  get volume() {
    return this._volume;
  }

  set volume(v) {
    this._volume = Math.max(0, Math.min(1, Number(v) || 0));
    this._setVolume();
  }

  get stats() {
    return {
      phase: this.phase,
      error: this.error,
      nudge: this.nudge,
      rate: this.media.playbackRate,
      startLatency: this.startLatency,
      seekLatency: this.seekLatency,
      correctiveSeeks: this.correctiveSeeks,
      starts: this.starts,
      lastStartError: this.lastStartError,
      mapping: this.clock && this.clock.synced ? "clock" : "arrival",
    };
  }

  /** The server instant of local instant `local` for timeline `tl`: by the clock, or else
   * (no clock) taking the message to be as fresh as its arrival. */
  _serverOf(tl, local) {
    if (this.clock && this.clock.synced) return this.clock.serverNow(local);
    return (tl.serverTime ?? tl.startAt ?? 0) + (local - tl.receivedAt);
  }

  _localOf(server, tl) {
    if (this.clock && this.clock.synced) return this.clock.toLocal(server);
    return tl.receivedAt + (server - (tl.serverTime ?? server));
  }

  /** Where timeline `tl` is (s) at local instant `local`, as the listener should hear it. */
  positionOf(tl, local) {
    return positionAt(tl, this._serverOf(tl, local + this.options.outputLatency));
  }

  /** Where the element should be (s) at local instant `local`. During a pre-roll, before the
   * start instant, the timeline is extended backwards (the pre-roll is not heard). */
  targetAt(local) {
    const plan = this._plan;
    if (plan && plan.preroll > 0 && local < plan.at) return plan.position - ((plan.at - local) / 1000) * this.timeline.rate;
    return this.positionOf(this.timeline, local);
  }

  /** Follow a new timeline (from timelineOf), with `url` the audio to play (null: none). */
  apply(timeline, url = timeline?.track?.url ?? null) {
    const previous = this.timeline;
    const following = ["waiting", "scheduled", "starting", "preroll", "running"].includes(this.phase);
    this.timeline = timeline;
    if (!timeline || !url) {
      this._cancel();
      if (!this.media.paused) this.media.pause();
      if (this.url) {
        this.media.removeAttribute("src");
        this.media.load();
        this.url = null;
      }
      this._setPhase("idle");
      return;
    }
    if (url !== this.url) {
      this.url = url;
      this._cancel();
      this.media.src = url;
      this._restart();
      return;
    }
    if (!timeline.playing) {
      this._cancel();
      this._pauseAt(timeline.position);
      return;
    }
    if (following && previous?.playing && this._continuous(previous, timeline)) {
      this._applyRate();
      // A new rate arrives after its instant and shows ~80 ms after it is set: catch up.
      if (previous.rate !== timeline.rate) this._catchUpUntil = localNow() + this.options.catchUpFor;
      return; // same course (e.g. sync_state after room_joined): keep the plan, correct the rest
    }
    this._restart();
  }

  /**
   * Call from a user gesture after "blocked" or "held". play() inside the gesture is what
   * the browser waits for; then the start is planned like a joiner's, with a silent pre-roll.
   */
  unlock() {
    if (!this.timeline || !this.url) return;
    this._cancel();
    this._setQuiet(true);
    const played = this.media.play();
    played.then(
      () => {
        this.media.pause();
        this._setQuiet(false);
        if (this.timeline?.playing) this._restart({ preroll: true });
        else if (this.timeline) this._pauseAt(this.timeline.position);
      },
      (err) => {
        this._setQuiet(false);
        this._note("unlock", { refused: err?.name });
      },
    );
  }

  // --- internals ---

  _setPhase(phase) {
    if (this.phase === phase) return;
    this.phase = phase;
    this._note("phase", { phase });
    this._fire("phase", phase);
  }

  _note(what, details) {
    this.trace.push({ t: Math.round(localNow() * 10) / 10, what, ...details });
    if (this.trace.length > 200) this.trace.shift();
  }

  _later(fn, ms) {
    const id = setTimeout(() => {
      this._timers.delete(id);
      fn();
    }, Math.max(0, ms));
    this._timers.add(id);
  }

  /** Runs `fn` at local instant `at`: a timer to 2 ms before, then at most 2 ms of waiting
   * (timers fire late by a few ms; a start should not). */
  _at(at, fn) {
    const wait = () => {
      const left = at - localNow();
      if (left > 2) {
        this._later(wait, left - 2);
        return;
      }
      while (localNow() < at) {
        // at most 2 ms
      }
      fn();
    };
    this._later(wait, at - localNow() - 4);
  }

  _cancel() {
    for (const id of this._timers) clearTimeout(id);
    this._timers.clear();
    this._start = null;
    this._plan = null;
    this._burstUntil = 0;
    this._setQuiet(false);
  }

  _setQuiet(quiet) {
    this._quiet = quiet;
    this._setVolume();
  }

  _setVolume() {
    // Volume 0 (and muted) would switch Chromium to another clock: −60 dB instead.
    const v = this._quiet ? this.options.quietVolume : Math.max(this.options.quietVolume, this._volume);
    if (this.media.volume !== v) this.media.volume = v;
  }

  _seekTo(position) {
    if (Math.abs(this.media.currentTime - position) > 0.0005) this.media.currentTime = position;
  }

  _pauseAt(position) {
    if (!this.media.paused) this.media.pause();
    this._resetRate();
    if (this.media.readyState >= HAVE_METADATA) this._seekTo(position);
    this._setPhase("paused");
  }

  /** Whether timeline b continues a (within 20 ms now and in 2 s, or a new rate from here). */
  _continuous(a, b) {
    const now = localNow();
    const later = now + 2_000;
    if (Math.abs(this.positionOf(a, now) - this.positionOf(b, now)) > 0.02) return false;
    // A new rate is continuous at this instant; the correction absorbs the switch.
    return a.rate !== b.rate || Math.abs(this.positionOf(a, later) - this.positionOf(b, later)) <= 0.02;
  }

  _applyRate(nudge = this.nudge) {
    const rate = this.timeline.rate;
    const pitch = rate !== 1;
    if (this.media.preservesPitch !== pitch) this.media.preservesPitch = pitch;
    const wanted = rate * (1 + nudge);
    if (this.media.playbackRate !== wanted) this.media.playbackRate = wanted;
  }

  _resetRate() {
    this.nudge = 0;
    this._errors = [];
    this.error = null;
    this._aboveSince = null;
    if (this.timeline) this._applyRate();
  }

  /** A discontinuity: stop, then plan a start on the new timeline. `preroll`: however late,
   * take the time of a full pre-roll (as a joiner does). */
  _restart({ preroll = false } = {}) {
    this._cancel();
    if (!this.media.paused) this.media.pause();
    this._resetRate();
    this._planSince = localNow();
    this._fullPreroll = preroll;
    this._setPhase("waiting");
    this._schedule();
  }

  /**
   * Plans the start: the start instant `at` (the timeline's start, or as soon as the element
   * can be ready), the pre-roll that fits before it, the pre-seek (paused), and play() at
   * at − pre-roll − the measured start latency.
   */
  _schedule() {
    const o = this.options;
    const tl = this.timeline;
    if (!tl || !this.url || !tl.playing || this.phase !== "waiting") return;
    if (this.media.readyState < HAVE_METADATA) return; // loadedmetadata schedules again
    const now = localNow();
    if (this.clock && this.clock.state === "syncing" && !this.clock.synced && now - this._planSince < o.clockWait) {
      return; // the tick schedules again once the clock is known
    }
    this._plan = null;
    const earliest = now + o.prepare + this.startLatency;
    const startLocal = this._localOf(tl.startAt, tl);
    // Late: a joiner, or a scheduled start whose message came after it: not on time anyway,
    // so take the time of a full pre-roll and start in step. (A server without start_at makes
    // every command late: those start as soon as they can.) On time: pre-roll what fits.
    const late = !(startLocal >= earliest);
    const joining = JOIN_EVENTS.includes(tl.event) || tl.scheduled || this._fullPreroll;
    let preroll = late ? (joining ? o.preroll : 0) : Math.min(o.preroll, startLocal - earliest);
    let at = late ? earliest + preroll : startLocal;
    let position = this.targetAt(at);
    preroll = Math.min(preroll, (position * 1000) / tl.rate); // not before the track's start
    if (!(preroll >= o.prerollMin)) {
      preroll = 0;
      if (late) {
        at = earliest;
        position = this.targetAt(at);
      }
    }
    if (Number.isFinite(this.media.duration) && position >= this.media.duration) {
      this._pauseAt(this.media.duration);
      this._setPhase("ended");
      return;
    }
    const from = position - (preroll / 1000) * tl.rate;
    this._plan = { at, position, from, preroll };
    this._seekTo(from);
    this._setPhase("scheduled");
    this._note("plan", { at: round2(at), position: round2(position), preroll: round2(preroll), lead: round2(at - now) });
    this._at(at - preroll - this.startLatency, () => {
      if (this.phase !== "scheduled") return;
      if (this.media.seeking || this.media.readyState < HAVE_FUTURE_DATA) {
        this._plan = null;
        this._setPhase("waiting"); // not ready in time: plan a later start
        this._planSince = localNow();
        this._later(() => this._schedule(), 50);
        return;
      }
      if (preroll > 0) this._setQuiet(true);
      this._beginStart("start", localNow(), from);
      this._play();
      if (preroll > 0) this._at(at, () => this._endPreroll());
    });
  }

  _beginStart(kind, at, from) {
    this._start = { kind, at, from };
    this._note("start", { kind, ct: round2(this.media.currentTime * 1000), from: from === null ? null : round2(from * 1000), seeking: this.media.seeking, ready: this.media.readyState });
    this._last = null;
    this._probe = [];
    this._setPhase("starting");
    if (this._plan?.preroll > 0) this._later(() => this._prerollTick(), this.options.prerollTick);
  }

  _play() {
    this.media.play().then(
      () => {},
      (err) => {
        if (err && err.name === "NotAllowedError") {
          this._cancel();
          this._setPhase("blocked");
          this._fire("blocked", err);
        }
        // AbortError: a pause() or a new source interrupted it; the new plan goes on.
      },
    );
  }

  _mediaEvent(ev) {
    switch (ev.type) {
      case "loadedmetadata":
      case "canplay":
        if (this.phase === "waiting") this._schedule();
        else if (this.phase === "paused" && this.timeline) this._seekTo(this.timeline.position);
        break;
      case "waiting":
        if (this.phase === "running") this._beginStart("stall", null, null); // buffering, not drift
        break;
      case "pause":
        if (this.media.ended) {
          this._setPhase("ended");
        } else if ((this.phase === "running" || this.phase === "preroll") && this.timeline?.playing) {
          this._cancel();
          this._setPhase("held"); // paused outside the follower (media keys, OS)
          this._fire("held");
        }
        break;
      case "error":
        this._cancel();
        this._setPhase("error");
        this._fire("mediaerror", this.media.error);
        break;
      default:
        break;
    }
  }

  _tick() {
    if (!this.timeline) return;
    if (this.phase === "waiting") {
      this._schedule();
      return;
    }
    if (this.phase !== "starting" && this.phase !== "running") return;
    if (this.phase === "starting" && this._plan?.preroll > 0) return; // the pre-roll's own tick
    const t = localNow();
    const ct = this.media.currentTime;
    if (this.phase === "starting") {
      this._detectRunning(t, ct);
      return;
    }
    // Running: a clock that stopped moving (buffering without a "waiting" event) is a stall,
    // not drift: measure again once it runs.
    if (!this._last || Math.abs(ct - this._last.ct) > 1e-4) {
      this._last = { t, ct };
    } else if (t - this._last.t > 250) {
      this._note("stall", { ct: round2(ct * 1000) });
      this._beginStart("stall", null, null);
      return;
    }
    this._correct(t, ct);
  }

  /**
   * After play() or a seek, currentTime first jumps, then stands still for 40–90 ms, then
   * runs. Running means two consecutive intervals with the expected slope; only then is the
   * error measured (so the seek's or start's own latency is never taken for drift), and the
   * latency that was actually needed is learned. Returns whether the clock runs.
   */
  _detectRunning(t, ct) {
    const probe = this._probe;
    probe.push({ t, ct });
    if (probe.length > 3) probe.shift();
    if (probe.length < 3 || this.media.paused) return false;
    const rate = this.media.playbackRate;
    const slope = (a, b) => (b.ct - a.ct) / ((b.t - a.t) / 1000);
    const ok = (s) => s > rate * 0.85 && s < rate * 1.15;
    if (!ok(slope(probe[0], probe[1])) || !ok(slope(probe[1], probe[2]))) return false;
    const start = this._start;
    if (start && start.at !== null && start.from !== null) {
      // When the clock line crossed the start position, and how long after play()/seek.
      const crossed = t - ((ct - start.from) / rate) * 1000;
      const latency = crossed - start.at;
      if (latency > 0 && latency < 400) {
        if (start.kind === "seek") this.seekLatency += 0.5 * (latency - this.seekLatency);
        else this.startLatency += 0.5 * (latency - this.startLatency);
      }
      if (start.kind === "start") this.starts += 1;
    }
    this.lastStartError = (ct - this.targetAt(t)) * 1000;
    this._note("running", { probe: probe.map((p) => [round2(p.t - (start?.at ?? p.t)), round2(p.ct * 1000)]), kind: start?.kind, error: round2(this.lastStartError), startLatency: round2(this.startLatency), seekLatency: round2(this.seekLatency) });
    this._start = null;
    this._last = { t, ct };
    this._errors = [];
    if (this._plan?.preroll > 0 && t < this._plan.at) {
      this._setPhase("preroll");
      return true;
    }
    this._catchUpUntil = t + this.options.catchUpFor;
    this._plan = null;
    this._setPhase("running");
    this._correct(t, ct);
    return true;
  }

  /**
   * The pre-roll's own fast tick: detect the running clock, then fix the phase with open-loop
   * rate bursts: rate × (1 − error / burst) for `burst` ms gains exactly `error` (a rate
   * change's ~80 ms delay shifts its start and its end alike), then measure again.
   */
  _prerollTick() {
    const o = this.options;
    const plan = this._plan;
    if (!plan || (this.phase !== "starting" && this.phase !== "preroll")) return;
    const t = localNow();
    if (t >= plan.at) return; // _endPreroll takes over
    const ct = this.media.currentTime;
    if (this.phase === "starting") {
      this._detectRunning(t, ct);
    } else if (t >= this._burstUntil) {
      if (this.nudge !== 0) {
        this.nudge = 0;
        this._applyRate();
        this._burstUntil = t + 80 + 3 * o.prerollTick; // the return to 1× shows ~80 ms later
      } else {
        this._errors.push((ct - this.targetAt(t)) * 1000);
        if (this._errors.length > 3) this._errors.shift();
        const e = median(this._errors);
        this.error = e;
        // A burst must end ≥ 90 ms before the start: its end shows ~80 ms later, unheard.
        const left = plan.at - t - 90;
        if (this._errors.length === 3 && Math.abs(e) > 0.5 && left >= 50) {
          const length = Math.min(Math.max(o.prerollBurst, Math.abs(e) / o.prerollMaxNudge), left);
          const nudge = Math.max(-o.prerollMaxNudge, Math.min(o.prerollMaxNudge, -e / length));
          this._note("burst", { error: round2(e), nudge: round2(nudge * 100) / 100, ms: Math.round(length) });
          this.nudge = nudge;
          this._applyRate();
          this._burstUntil = t + length;
          this._errors = [];
        }
      }
    }
    this._later(() => this._prerollTick(), o.prerollTick);
  }

  /** The start instant of a pre-rolled start: sound up, and follow as usual. */
  _endPreroll() {
    const plan = this._plan;
    if (!plan) return;
    this._setQuiet(false);
    this._plan = null;
    if (this.nudge !== 0) {
      this.nudge = 0;
      this._applyRate();
    }
    this._errors = [];
    this._catchUpUntil = plan.at + this.options.catchUpFor;
    if (this.phase === "preroll") {
      this._last = null;
      this._setPhase("running");
    }
    // Still "starting" (the pre-roll was too short to see the clock run): the usual start.
  }

  _correct(t, ct) {
    const o = this.options;
    const errorMs = (ct - this.targetAt(t)) * 1000;
    this._errors.push(errorMs);
    if (this._errors.length > o.filter) this._errors.shift();
    const e = median(this._errors);
    this.error = e;

    // A large error that persists: seek, compensating for the seek's own latency.
    if (Math.abs(e) > o.seekAbove && this._errors.length >= o.filter) {
      this._aboveSince ??= t;
      if (t - this._aboveSince >= o.seekAfter && t >= this._seekAllowedAt) {
        this._correctiveSeek(t);
        return;
      }
    } else {
      this._aboveSince = null;
    }

    const nudge = nudgeFor(e, this.nudge, {
      ...o,
      catchUp: t < this._catchUpUntil,
      deadBand: this.timeline.rate === 1 ? o.deadBand : o.pitchDeadBand,
    });
    if (nudge !== this.nudge) {
      this._note("nudge", { nudge, error: round2(e) });
      this.nudge = nudge;
      this._applyRate();
    }
  }

  _correctiveSeek(t) {
    const o = this.options;
    this._consecutiveSeeks = t - this._lastSeekAt < o.seekCooldownMax ? this._consecutiveSeeks + 1 : 0;
    this._lastSeekAt = t;
    this._seekAllowedAt = t + Math.min(o.seekCooldownMax, o.seekCooldown * 2 ** this._consecutiveSeeks);
    this.correctiveSeeks += 1;
    this.nudge = 0;
    this._applyRate();
    const position = this.targetAt(t + this.seekLatency);
    this._note("seek", { error: round2(this.error), position });
    this._fire("seek", { error: this.error, position });
    this.media.currentTime = position;
    this._beginStart("seek", t, position);
  }
}

const MEDIA_EVENTS = ["loadedmetadata", "canplay", "playing", "waiting", "pause", "error"];
/** Play states that describe the room to someone arriving (rather than a host's command). */
const JOIN_EVENTS = ["room_joined", "sync_state", "room_state"];

function round2(x) {
  return Math.round(x * 100) / 100;
}

/**
 * The rate nudge for a filtered error `errorMs` (positive: ahead), given the current nudge.
 * Proportional: the error is removed over the horizon, bounded, in steps of `nudgeStep`, with
 * hysteresis (start above deadBand, stop below release) so the rate is not toggled around 0.
 */
export function nudgeFor(errorMs, current, o) {
  const band = current === 0 ? o.deadBand : o.release;
  if (!Number.isFinite(errorMs) || Math.abs(errorMs) <= band) return 0;
  const horizon = o.catchUp ? o.catchUpHorizon : o.horizon;
  const max = o.catchUp ? o.catchUpMaxNudge : o.maxNudge;
  const raw = Math.max(-max, Math.min(max, -errorMs / horizon));
  const steps = Math.round(raw / o.nudgeStep) || Math.sign(raw);
  return steps * o.nudgeStep;
}

// ---------------------------------------------------------------------------------------------
// Room: one listening room, with the clock, the follower and the host's commands.

const PLAY_STATE_EVENTS = ["room_joined", "sync_state", "room_state", "track_change", "play", "pause", "seek", "sync_progress", "set_rate"];

export class Room extends Emitter {
  /**
   * options: media (the one <audio> element), url (server origin; default this page's),
   * name (shown to others, when the server lists members), resolveUrl(track) → audio URL or
   * null (default track.url), follower (Follower options), socket (Socket options).
   */
  constructor(options = {}) {
    super();
    this.options = options;
    this.socket = new Socket(options.url, {
      ...options.socket,
      auth: () => (this.name ? { name: this.name } : null),
    });
    this.name = options.name || "";
    this.clock = new Clock(this.socket, options.clock).start();
    this.follower = options.media ? new Follower(options.media, this.clock, options.follower) : null;
    this.state = {
      connected: false,
      roomId: null,
      joined: false,
      isHost: false,
      hostId: null,
      memberId: null,
      count: 0,
      members: null,
      timeline: null,
      error: null,
      supports: { timeSync: null, startAt: null },
    };
    this._wantRoom = null; // {id, create?: track}
    this._offs = [
      this.socket.on("connect", () => this._connected()),
      this.socket.on("disconnect", () => this._set({ connected: false })),
      this.socket.on("room_users", (d) => this._set({ count: d?.count ?? this.state.count, members: Array.isArray(d?.members) ? d.members : this.state.members })),
      this.socket.on("become_host", () => this._set({ isHost: true, hostId: this.state.memberId ?? this.socket.id })),
      this.socket.on("error", (d) => this._set({ error: d })),
      this.clock.on("update", (s) => this._set({ supports: { ...this.state.supports, timeSync: s.state === "unsupported" ? false : s.state === "synced" ? true : this.state.supports.timeSync } })),
    ];
    for (const event of PLAY_STATE_EVENTS) {
      this._offs.push(this.socket.on(event, (d) => this._playState(event, d)));
    }
  }

  close() {
    for (const off of this._offs.splice(0)) off();
    this.clock.stop();
    this.follower?.destroy();
    this.socket.close();
  }

  /** Joins room `id` as a member. Resolves with the server's acknowledgement. */
  async join(id) {
    this._wantRoom = { id };
    this._set({ roomId: id, error: null });
    return this._enter();
  }

  /** Creates room `id` (you become its host) playing `track` from 0. */
  async create(id, track = null) {
    this._wantRoom = { id, create: { track, position: 0 } };
    this._set({ roomId: id, error: null });
    return this._enter();
  }

  async _enter() {
    const want = this._wantRoom;
    if (!want || !this.socket.connected) return { ok: false, code: "disconnected", message: "not connected" };
    let ack;
    if (want.create) {
      const { track, position } = want.create;
      ack = await this.socket.request("create_room", { room_id: want.id, track, current_time: position, name: this.name || undefined });
      if (ack.ok) {
        want.create = null; // from now on, reconnecting means joining
        this._set({ joined: true, isHost: true, hostId: ack.host_id ?? this.socket.id, memberId: ack.member_id ?? this.socket.id, count: ack.user_count ?? 1 });
        await this.refresh(); // room_created carries no play state: ask for it
      }
    } else {
      ack = await this.socket.request("join_room", { room_id: want.id, name: this.name || undefined });
      if (ack.ok) {
        const memberId = ack.member_id ?? this.socket.id;
        this._set({ joined: true, memberId, hostId: ack.host_id ?? null, isHost: ack.host_id === memberId, count: ack.user_count ?? this.state.count });
      }
    }
    if (!ack.ok) this._set({ joined: false, error: ack });
    return ack;
  }

  /** Asks for the room's state (room_state): host, count and timeline. */
  async refresh() {
    if (!this.state.roomId) return null;
    const ack = await this.socket.request("get_room_state", { room_id: this.state.roomId });
    if (ack.ok) {
      const memberId = this.state.memberId ?? this.socket.id;
      this._set({ hostId: ack.host_id ?? this.state.hostId, isHost: ack.host_id === memberId, count: ack.user_count ?? this.state.count });
    }
    return ack;
  }

  // Host commands. Each resolves with the server's acknowledgement ({ok: false, ...} if
  // refused). The other members get the command as an event; the host follows the
  // acknowledgement, which carries the play state (or, from a server without `start_at`,
  // applies the command at once).
  play(position) {
    return this._command("play", position === undefined ? {} : { current_time: position });
  }

  pause(position) {
    return this._command("pause", position === undefined ? {} : { current_time: position });
  }

  seek(position) {
    return this._command("seek", { current_time: position });
  }

  changeTrack(track) {
    return this._command("track_change", { track });
  }

  setRate(rate) {
    return this._command("set_rate", { playback_rate: rate });
  }

  /** The room's position now (s), as this client follows it. */
  position() {
    const f = this.follower;
    if (!f || !f.timeline) return this.state.timeline?.position ?? 0;
    return f.targetAt(localNow());
  }

  async _command(event, payload) {
    const ack = await this.socket.request(event, { room_id: this.state.roomId, ...payload });
    if (!ack.ok) {
      if (ack.code === "not_host") this._set({ isHost: false });
      return ack;
    }
    // The acknowledgement as a play-state message; the track of a track_change is ours.
    const data = event === "track_change" ? { track: payload.track, ...ack } : ack;
    this._playState(event, data);
    return ack;
  }

  _playState(event, data) {
    const previous = this.state.timeline;
    const timeline = timelineOf(event, data, previous);
    const changes = { timeline };
    if (data && "host_id" in data && data.host_id !== undefined) {
      const memberId = this.state.memberId ?? this.socket.id;
      changes.hostId = data.host_id;
      changes.isHost = data.host_id === memberId;
    }
    if (data && Number.isFinite(data.user_count)) changes.count = data.user_count;
    if (timeline.scheduled) changes.supports = { ...this.state.supports, startAt: true };
    else if (data && Number.isFinite(data.server_time)) changes.supports = { ...this.state.supports, startAt: this.state.supports.startAt ?? false };
    this._set(changes);
    if (this.follower) {
      const url = this.options.resolveUrl ? this.options.resolveUrl(timeline.track) : (timeline.track?.url ?? null);
      this.follower.apply(timeline, url);
    }
  }

  async _connected() {
    this._set({ connected: true });
    if (this._wantRoom) {
      const ack = await this._enter();
      // The room ended while we were away and we were its host: bring it back as it was.
      if (!ack.ok && ack.code === "room_not_found" && this.state.isHost && this.state.timeline) {
        const tl = this.state.timeline;
        this._wantRoom = { id: this._wantRoom.id, create: { track: tl.track, position: this.position() } };
        await this._enter();
      }
    }
  }

  _set(changes) {
    Object.assign(this.state, changes);
    this._fire("change", this.state);
  }
}
