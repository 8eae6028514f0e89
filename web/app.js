// The listening-room page at /app/. Contract (for integrations and tests):
//   /app/?room=ID joins room ID as a member and plays the room's track; a track's `url` is
//   the audio and `title` is shown; playback goes through the one <audio id="player">; where
//   the browser allows autoplay, joining by URL plays with no click, and where it does not,
//   a banner with a "Start listening" button appears. window.playsyncApp exposes the Room
//   (room.state, room.follower.stats, room.clock.status, and the host's commands).
import { Room, localNow } from "./playsync.js";

const $ = (id) => document.getElementById(id);
const audio = $("player");
const params = new URLSearchParams(location.search);
const NAME_KEY = "playsync.name";
const LATENCY_KEY = "playsync.outputLatency";

// Local files the host plays: file id -> object URL. Only this page can play them.
const localFiles = new Map();

const room = new Room({
  media: audio,
  name: localStorage.getItem(NAME_KEY) || "",
  resolveUrl: (track) => {
    if (!track) return null;
    if (track.file_id) return localFiles.get(track.file_id) ?? null;
    return typeof track.url === "string" && track.url ? track.url : null;
  },
  follower: { outputLatency: Number(localStorage.getItem(LATENCY_KEY)) || 0 },
});
window.playsyncApp = { room, audio, localNow };

// --- entering a room ---

function enterRoomView(id) {
  $("start").hidden = true;
  $("room").hidden = false;
  $("room-id").textContent = id;
  document.title = `${id} · playsync`;
}

function showStart() {
  $("start").hidden = false;
  $("room").hidden = true;
  $("name").value = room.name;
  const suggestion = `room-${Math.random().toString(36).slice(2, 6)}`;
  $("create-form").elements.room.value ||= suggestion;
}

function urlFor(id) {
  const url = new URL(location.href);
  url.search = "";
  url.searchParams.set("room", id);
  return url;
}

async function joinFromUrl(id) {
  enterRoomView(id);
  const ack = await room.join(id);
  if (!ack.ok && ack.code !== "disconnected") showRoomError(ack);
}

function showRoomError(ack) {
  $("room-error").hidden = false;
  const missing = ack.code === "room_not_found";
  $("room-error-text").textContent = missing
    ? `There is no room “${room.state.roomId}” (it ends when its last listener leaves).`
    : `The server refused: ${ack.message || ack.code}`;
  $("create-missing").hidden = !missing;
}

$("create-missing").addEventListener("click", async () => {
  $("room-error").hidden = true;
  const ack = await room.create(room.state.roomId, null);
  if (!ack.ok) showRoomError(ack);
});

$("name").addEventListener("change", () => {
  room.name = $("name").value.trim();
  localStorage.setItem(NAME_KEY, room.name);
});

$("join-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = ev.target.elements.room.value.trim();
  if (!id) return;
  history.pushState(null, "", urlFor(id));
  joinFromUrl(id);
});

$("create-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target.elements;
  const id = form.room.value.trim();
  const url = form.url.value.trim();
  const track = url ? { url, title: form.title.value.trim() || titleFromUrl(url) } : null;
  const ack = await room.create(id, track);
  if (!ack.ok) {
    $("start-error").hidden = false;
    $("start-error").textContent = ack.code === "room_exists" ? `A room “${id}” already exists: join it, or choose another name.` : `Could not create the room: ${ack.message || ack.code}`;
    return;
  }
  $("start-error").hidden = true;
  history.pushState(null, "", urlFor(id));
  enterRoomView(id);
});

window.addEventListener("popstate", () => location.reload());

function titleFromUrl(url) {
  try {
    const last = new URL(url, location.href).pathname.split("/").filter(Boolean).pop() || url;
    return decodeURIComponent(last);
  } catch {
    return url;
  }
}

// --- host controls ---

$("toggle").addEventListener("click", async () => {
  const tl = room.state.timeline;
  const ack = tl?.playing ? await room.pause() : await room.play();
  hostResult(ack);
});

let seeking = false;
$("seek").addEventListener("input", () => {
  seeking = true;
  $("pos").textContent = clock(Number($("seek").value));
});
$("seek").addEventListener("change", async () => {
  const ack = await room.seek(Number($("seek").value));
  seeking = false;
  hostResult(ack);
});

$("rate").addEventListener("input", () => {
  $("rate-out").textContent = `${Number($("rate").value).toFixed(2)}×`;
});
$("rate").addEventListener("change", async () => {
  const ack = await room.setRate(Number($("rate").value));
  hostResult(ack, "This server cannot change the speed yet (it has no set_rate).");
});

$("track-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = ev.target.elements;
  const url = form.url.value.trim();
  const ack = await room.changeTrack({ url, title: form.title.value.trim() || titleFromUrl(url) });
  if (ack.ok) ev.target.reset();
  hostResult(ack);
});

$("file").addEventListener("change", async (ev) => {
  const file = ev.target.files?.[0];
  if (!file) return;
  const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const url = URL.createObjectURL(file);
  localFiles.set(id, url);
  // Only the title, the duration and an id travel: the file itself stays on this device.
  const duration = await new Promise((resolve) => {
    const probe = new Audio();
    probe.preload = "metadata";
    probe.onloadedmetadata = () => resolve(Number.isFinite(probe.duration) ? Math.round(probe.duration * 1000) / 1000 : undefined);
    probe.onerror = () => resolve(undefined);
    probe.src = url;
  });
  const ack = await room.changeTrack({ title: file.name, file_id: id, local_file: true, duration });
  ev.target.value = "";
  hostResult(ack);
});

function hostResult(ack, unsupported) {
  const msg = $("host-message");
  if (ack.ok) {
    msg.hidden = true;
    return;
  }
  msg.hidden = false;
  msg.textContent = ack.code === "invalid_payload" && unsupported ? unsupported : `Refused: ${ack.message || ack.code}`;
}

// --- listener controls ---

$("unlock").addEventListener("click", () => room.follower.unlock());
room.follower.on("blocked", () => {
  console.info("playsync: the browser blocked playback until the user interacts with the page");
  render();
});

$("volume").addEventListener("input", () => {
  room.follower.volume = Number($("volume").value);
});

$("output-latency").value = String(room.follower.options.outputLatency);
$("output-latency").addEventListener("change", () => {
  const ms = Math.max(0, Math.min(1000, Number($("output-latency").value) || 0));
  room.follower.options.outputLatency = ms;
  localStorage.setItem(LATENCY_KEY, String(ms));
});

$("copy-link").addEventListener("click", async () => {
  const link = urlFor(room.state.roomId).href;
  try {
    await navigator.clipboard.writeText(link);
    $("copy-link").textContent = "Copied";
  } catch {
    prompt("Room link", link);
  }
  setTimeout(() => ($("copy-link").textContent = "Copy link"), 1500);
});

// --- rendering ---

function clock(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "0:00";
  const s = Math.floor(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function ms(value, digits = 1) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return `${value >= 0 ? "+" : "−"}${Math.abs(value).toFixed(digits)} ms`;
}

function render() {
  const s = room.state;
  const conn = $("conn");
  conn.textContent = s.connected ? "connected" : "reconnecting…";
  conn.className = `pill ${s.connected ? "pill-ok" : "pill-wait"}`;
  if ($("room").hidden) return;
  if (s.joined) $("room-error").hidden = true;
  // The room itself only once joined; before that "Joining…", or the error banner.
  $("room-body").hidden = !s.joined;
  $("room-actions").hidden = !s.joined;
  $("joining").hidden = s.joined || !$("room-error").hidden;
  if (!s.joined) return;

  const f = room.follower;
  const tl = s.timeline;
  const track = tl?.track;
  $("role").textContent = s.isHost ? "You are the host" : "Listening";
  $("track-title").textContent = track ? track.title || track.url || "Untitled" : "Nothing playing yet";

  const notice = $("notice");
  const silent = track?.file_id && !room.options.resolveUrl(track);
  if (silent) {
    notice.hidden = false;
    notice.textContent = "The host is playing a file from their own device. Files are not shared, so you follow the room in silence.";
  } else if (track && !track.file_id && !track.url) {
    notice.hidden = false;
    notice.textContent = "This track has no audio URL.";
  } else if (f.phase === "error") {
    notice.hidden = false;
    notice.textContent = `The track cannot be played here (${audio.error?.message || "media error"}).`;
  } else {
    notice.hidden = true;
  }

  $("blocked").hidden = !(f.phase === "blocked" || f.phase === "held");
  if (f.phase === "held") {
    $("blocked").querySelector("strong").textContent = "Playback was paused on this device.";
    $("blocked").querySelector("span").textContent = "The room goes on; rejoin it where it is now.";
    $("unlock").textContent = "Resume";
  } else {
    $("blocked").querySelector("strong").textContent = "Your browser is holding back the sound.";
    $("blocked").querySelector("span").textContent = "It lets pages play audio only after you interact with them.";
    $("unlock").textContent = "Start listening";
  }

  const position = tl ? room.position() : 0;
  const duration = !silent && Number.isFinite(audio.duration) ? audio.duration : Number(track?.duration) || 0;
  const seek = $("seek");
  seek.max = String(duration || 0);
  seek.disabled = !s.isHost || !duration;
  if (!seeking) {
    seek.value = String(Math.min(position, duration || 0));
    $("pos").textContent = clock(position);
  }
  $("dur").textContent = duration ? clock(duration) : "–:––";

  const toggle = $("toggle");
  toggle.hidden = !s.isHost; // listeners follow the host; their only control is the volume
  toggle.disabled = !track;
  toggle.textContent = tl?.playing ? "Pause" : "Play";
  toggle.setAttribute("aria-label", toggle.textContent);
  $("play-state").textContent = !track ? "no track" : !tl.playing ? "paused by the host" : silent ? "following, without sound" : phaseText(f.phase);
  $("host-controls").hidden = !s.isHost;
  if (s.isHost && document.activeElement !== $("rate")) {
    $("rate").value = String(tl?.rate ?? 1);
    $("rate-out").textContent = `${(tl?.rate ?? 1).toFixed(2)}×`;
  }

  $("count").textContent = String(s.members ? s.members.length : s.count);
  renderMembers(s);

  renderSync(s, f, silent);
}

function phaseText(phase) {
  return {
    idle: "playing",
    waiting: "getting ready…",
    scheduled: "starting…",
    starting: "starting…",
    running: "playing",
    blocked: "waiting for you",
    held: "paused here",
    ended: "ended",
    error: "cannot play",
    paused: "paused",
  }[phase] || phase;
}

function renderMembers(s) {
  const list = $("members");
  list.replaceChildren();
  if (s.members) {
    for (const m of s.members) {
      const li = document.createElement("li");
      const me = m.member_id === s.memberId;
      li.textContent = `${m.name || "Listener"}${me ? " (you)" : ""}`;
      const tags = [];
      if (m.member_id === s.hostId || m.role === "host") tags.push("host");
      if (m.away) tags.push("away");
      if (m.ready === false) tags.push("loading");
      for (const t of tags) {
        const tag = document.createElement("span");
        tag.className = `tag tag-${t}`;
        tag.textContent = t;
        li.append(" ", tag);
      }
      list.append(li);
    }
    $("host-line").textContent = "";
  } else {
    const li = document.createElement("li");
    li.textContent = s.count <= 1 ? "Only you" : `You and ${s.count - 1} other${s.count === 2 ? "" : "s"}`;
    list.append(li);
    $("host-line").textContent = s.isHost ? "You are the host." : s.hostId ? "Another listener is the host." : "";
  }
}

function renderSync(s, f, silent) {
  const st = f.stats;
  const c = room.clock.status;
  $("s-error").textContent = st.phase === "running" && Number.isFinite(st.error) ? `${ms(st.error)} ${st.error > 0 ? "ahead" : st.error < 0 ? "behind" : ""}` : "–";
  $("s-nudge").textContent = st.phase !== "running" ? "–" : st.nudge === 0 ? "none" : `speed ${st.nudge > 0 ? "+" : "−"}${Math.abs(st.nudge * 100).toFixed(2)} %`;
  $("s-offset").textContent = c.state === "synced" ? `${ms(c.offset)} (±${(c.rtt / 2).toFixed(1)})` : c.state === "unsupported" ? "not available" : "measuring…";
  $("s-rtt").textContent = c.rtt !== null ? `${c.rtt.toFixed(1)} ms` : "–";
  $("s-drift").textContent = c.drift !== null ? `${(c.drift * 1e6).toFixed(1)} ppm` : "–";
  $("s-latency").textContent = `${st.startLatency.toFixed(0)} ms`;
  $("s-seeks").textContent = String(st.correctiveSeeks);

  const note = $("clock-note");
  if (c.state === "unsupported") {
    note.hidden = false;
    note.textContent = "This server does not answer time_sync, so the offset to its clock is unknown: positions are taken from when messages arrive, and network delay shows up as lag.";
  } else if (s.supports.startAt === false) {
    note.hidden = false;
    note.textContent = "This server sends no start_at: starts are not scheduled ahead, so each listener starts when the message reaches it.";
  } else {
    note.hidden = true;
  }

  let summary;
  if (!s.timeline?.track) summary = "Waiting for a track.";
  else if (!s.timeline.playing) summary = "Paused by the host.";
  else if (silent) summary = "Following the room without sound.";
  else if (st.phase === "blocked") summary = "Waiting for you to allow sound.";
  else if (st.phase !== "running") summary = "Getting in step…";
  else if (Math.abs(st.error) <= 5) summary = `In step: within ${Math.max(0.1, Math.abs(st.error)).toFixed(1)} ms of the room.`;
  else summary = `Catching up: ${Math.abs(st.error).toFixed(0)} ms ${st.error > 0 ? "ahead" : "behind"}.`;
  $("sync-summary").textContent = summary;
  $("sync-summary").className = `sync-summary ${st.phase === "running" && Math.abs(st.error) <= 5 ? "good" : ""}`;
}

room.on("change", (s) => {
  if (s.error && !s.joined && !$("room").hidden) showRoomError(s.error);
  render();
});
room.follower.on("phase", render);
setInterval(render, 250);

// --- start ---

const wanted = params.get("room");
if (wanted) {
  joinFromUrl(wanted);
} else {
  showStart();
}
render();
