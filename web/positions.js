// The positions page at /app/positions: shows the stored playback and scroll positions live
// (one EventSource per kind: /api/events/playback and /api/events/scroll, each sending the
// current record first and then every update) and PUTs new ones. window.positionsApp exposes
// the current records and the stream states for integrations and tests.

const $ = (id) => document.getElementById(id);
const DEVICE_KEY = "playsync.deviceId";

const kinds = {
  playback: {
    path: "/api/playback-position",
    events: "/api/events/playback",
    main: (r) => (r.lastPlayedIndex < 0 ? "none yet" : `#${r.lastPlayedIndex}`),
    body: (f) => ({ lastPlayedIndex: Math.trunc(Number(f.lastPlayedIndex.value)), notePath: f.notePath.value, noteTitle: f.noteTitle.value }),
  },
  scroll: {
    path: "/api/scroll-position",
    events: "/api/events/scroll",
    main: (r) => `${Math.round(r.scrollTop)} px`,
    body: (f) => ({ scrollTop: Number(f.scrollTop.value), notePath: f.notePath.value }),
  },
};

const state = { playback: null, scroll: null, streams: { playback: "connecting", scroll: "connecting" }, received: [] };
window.positionsApp = state;

let deviceId = localStorage.getItem(DEVICE_KEY);
if (!deviceId) {
  deviceId = `web-${Math.random().toString(36).slice(2, 8)}`;
  localStorage.setItem(DEVICE_KEY, deviceId);
}
$("device").value = deviceId;
$("device").addEventListener("change", () => {
  deviceId = $("device").value.trim() || deviceId;
  localStorage.setItem(DEVICE_KEY, deviceId);
});

function field(kind, name) {
  return $(kind).querySelector(`[data-field="${name}"]`);
}

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  const when = new Date(ms).toLocaleTimeString();
  if (s < 60) return `${s} s ago (${when})`;
  if (s < 3600) return `${Math.round(s / 60)} min ago (${when})`;
  return new Date(ms).toLocaleString();
}

function show(kind, record, live) {
  state[kind] = record;
  field(kind, "main").textContent = kinds[kind].main(record);
  field(kind, "note").textContent = record.notePath || "–";
  if (kind === "playback") field(kind, "title").textContent = record.noteTitle || "–";
  field(kind, "device").textContent = record.deviceId ? `${record.deviceId}${record.deviceId === deviceId ? " (this device)" : ""}` : "–";
  field(kind, "updated").textContent = ago(record.timestamp);
  if (live) {
    const card = $(kind);
    card.classList.remove("flash");
    void card.offsetWidth; // restart the animation
    card.classList.add("flash");
  }
}

function log(kind, record) {
  state.received.push({ kind, record });
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()} ${kind} ${JSON.stringify(record)}`;
  $("log").prepend(li);
  while ($("log").children.length > 50) $("log").lastChild.remove();
}

function renderConn() {
  const states = Object.values(state.streams);
  const conn = $("conn");
  const live = states.every((s) => s === "live");
  conn.textContent = live ? "live" : states.includes("live") ? "partly live" : "reconnecting…";
  conn.className = `pill ${live ? "pill-ok" : "pill-wait"}`;
  for (const kind of Object.keys(kinds)) field(kind, "stream").textContent = state.streams[kind];
}

for (const [kind, k] of Object.entries(kinds)) {
  // The stored record (or the defaults) first, so the page is filled even before any event.
  fetch(k.path)
    .then((r) => r.json())
    .then((record) => {
      if (!state[kind] || state[kind].timestamp < record.timestamp) show(kind, record, false);
    })
    .catch(() => {});

  const source = new EventSource(k.events);
  source.addEventListener("open", () => {
    state.streams[kind] = "live";
    renderConn();
  });
  source.addEventListener("error", () => {
    state.streams[kind] = source.readyState === EventSource.CLOSED ? "closed" : "reconnecting";
    renderConn();
  });
  source.addEventListener(kind, (ev) => {
    let record;
    try {
      record = JSON.parse(ev.data);
    } catch {
      return;
    }
    log(kind, record);
    show(kind, record, true);
  });

  $(kind).querySelector("form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const result = field(kind, "result");
    result.hidden = false;
    try {
      const resp = await fetch(k.path, {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...k.body(ev.target.elements), deviceId }),
      });
      const body = await resp.json();
      result.textContent = resp.ok ? `Saved; sent to ${body.broadcastCount} open stream${body.broadcastCount === 1 ? "" : "s"}.` : `Refused (${resp.status}): ${body.error}`;
      result.className = resp.ok ? "hint" : "hint error";
    } catch (err) {
      result.textContent = `Could not reach the server: ${err.message}`;
      result.className = "hint error";
    }
  });
}

setInterval(() => {
  for (const kind of Object.keys(kinds)) if (state[kind]) field(kind, "updated").textContent = ago(state[kind].timestamp);
}, 1000);
renderConn();
