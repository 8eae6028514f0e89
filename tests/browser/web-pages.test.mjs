// The web client's pages in Debian's chromium, as users meet them:
//
//   node tests/browser/web-pages.test.mjs http://127.0.0.1:3000 [--screenshots DIR]
//
// Chromium runs with its autoplay policy requiring a user activation, as a browser does for a
// site a user never interacted with (and the test never evaluates in the listener's page
// before it is blocked: Playwright's evaluations count as user gestures):
//   - the host creates a room from /app/ (the click allows its page to play) with a track;
//   - a listener opens /app/?room=ID: it joins, but the browser holds the sound back, so the
//     page shows its banner; one click on "Start listening" plays, in step with the room;
//   - the host changes the track and pauses through the page's controls; the listener follows;
//   - the host plays a file from its device: the listener is told it is not shared;
//   - /app/?room=missing says the room does not exist and offers to create it;
//   - /app/positions in two tabs: a form PUT in one, and a PUT from outside, show up live in
//     both (SSE).
// Exits 0 and prints "ok", or prints the failed step and exits 1. Bounded: 60 s.
// --screenshots DIR saves PNGs of each view (they are not part of the repository).

import { createServer } from "node:http";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = (p) => fileURLToPath(new URL(p, import.meta.url));
const CHROMIUM = process.env.PLAYSYNC_CHROMIUM || "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--autoplay-policy=document-user-activation-required",
];
const TOTAL_TIMEOUT_MS = 60_000;
const STEP_TIMEOUT_MS = 10_000;

const watchdog = setTimeout(() => {
  console.error(`FAIL: the pages test took longer than ${TOTAL_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);
watchdog.unref();

function fail(message) {
  const err = new Error(message);
  err.isTestFailure = true;
  throw err;
}

const pages = new Map(); // who -> page, for the dump on failure

async function step(what, fn) {
  try {
    return await fn();
  } catch (err) {
    const lines = [];
    for (const [who, page] of pages) {
      const state = await Promise.race([
        page.evaluate(() => {
          const app = window.playsyncApp;
          if (!app) return null;
          const { timeline, ...room } = app.room.state;
          return { room, timeline, follower: app.room.follower.stats, trace: app.room.follower.trace.slice(0, 10), paused: app.audio.paused, src: app.audio.currentSrc };
        }),
        new Promise((r) => setTimeout(() => r("(no answer)"), 2_000)),
      ]).catch((e) => e.message);
      if (state) lines.push(`${who}: ${JSON.stringify(state)}`);
    }
    fail(`${what}: ${err.isTestFailure ? err.message : (err.message || String(err)).split("\n")[0]}${lines.length ? `\n${lines.join("\n")}` : ""}`);
  }
}

function wav(seconds, freq, rate = 8_000) {
  const n = seconds * rate;
  const buf = Buffer.alloc(44 + n * 2);
  buf.write("RIFF", 0);
  buf.writeUInt32LE(36 + n * 2, 4);
  buf.write("WAVEfmt ", 8);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write("data", 36);
  buf.writeUInt32LE(n * 2, 40);
  for (let i = 0; i < n; i++) buf.writeInt16LE(Math.round(6000 * Math.sin((2 * Math.PI * freq * i) / rate)), 44 + i * 2);
  return buf;
}

async function main() {
  const base = process.argv[2]?.replace(/\/+$/, "");
  if (!base || !/^https?:\/\/[^/]+$/.test(base)) fail("usage: node web-pages.test.mjs <playsync base URL> [--screenshots DIR]");
  const shotsAt = process.argv.indexOf("--screenshots");
  const shots = shotsAt > 0 ? process.argv[shotsAt + 1] : null;
  if (shots) mkdirSync(shots, { recursive: true });
  if (!existsSync(CHROMIUM)) fail(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  if (!existsSync(HERE("node_modules/playwright-core/package.json"))) fail("npm ci --prefix tests/browser first (scripts/test does)");

  const tracks = { "/first.wav": wav(120, 440), "/second.wav": wav(120, 660) };
  const trackServer = createServer((req, res) => {
    const body = tracks[new URL(req.url, "http://x").pathname];
    if (!body) return res.writeHead(404).end();
    const range = /bytes=(\d+)-(\d*)/.exec(req.headers.range || "");
    const start = range ? Number(range[1]) : 0;
    const end = range && range[2] ? Number(range[2]) : body.length - 1;
    res.writeHead(range ? 206 : 200, {
      "content-type": "audio/wav",
      "accept-ranges": "bytes",
      "content-length": end - start + 1,
      ...(range ? { "content-range": `bytes ${start}-${end}/${body.length}` } : {}),
    });
    res.end(body.subarray(start, end + 1));
  });
  await new Promise((r) => trackServer.listen(0, "127.0.0.1", r));
  const trackUrl = (p) => `http://127.0.0.1:${trackServer.address().port}${p}`;

  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 20_000 });
  const problems = [];
  const open = async (who, url, onConsole = null) => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 860 } });
    const page = await context.newPage();
    if (onConsole) page.on("console", onConsole);
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on("pageerror", (err) => problems.push(`${who}: ${err.message}`));
    page.on("console", (msg) => {
      if (msg.type() === "error" && !/Failed to load resource.*404/.test(msg.text())) problems.push(`${who} console: ${msg.text()}`);
    });
    pages.set(who, page);
    await page.goto(url, { waitUntil: "load" });
    return page;
  };
  const shot = async (page, name) => {
    if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  };
  const until = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: STEP_TIMEOUT_MS, polling: 50 });
  const room = `pages-${process.pid}`;

  try {
    const host = await step("the start page opens", async () => {
      const page = await open("host", `${base}/app/`);
      await until(page, () => !document.getElementById("start").hidden && document.getElementById("conn").textContent === "connected");
      return page;
    });
    await shot(host, "1-start");

    await step("the host creates a room with a track, and it plays", async () => {
      await host.fill("#create-form input[name=room]", room);
      await host.fill("#create-form input[name=url]", trackUrl("/first.wav"));
      await host.fill("#create-form input[name=title]", "First tone");
      await host.click("#create-form button[type=submit]");
      await until(host, () => window.playsyncApp.room.state.isHost && !window.playsyncApp.audio.paused);
      if ((await host.textContent("#track-title")) !== "First tone") fail("the title is not shown");
      if ((await host.textContent("#role")) !== "You are the host") fail("the page does not say who is host");
      if (!new URL(host.url()).searchParams.get("room")) fail("the address does not carry the room");
    });

    const listener = await step("a listener opens the room's link: joined, sound held back", async () => {
      // Playwright evaluates with a user gesture, which would allow the very playback this
      // step expects to be blocked: nothing is evaluated in the page until the page says so.
      let blocked;
      const said = new Promise((resolve) => (blocked = resolve));
      const page = await open("listener", `${base}/app/?room=${encodeURIComponent(room)}`, (msg) => {
        if (/blocked playback/.test(msg.text())) blocked();
      });
      await Promise.race([said, new Promise((_, reject) => setTimeout(() => reject(new Error("the page never said playback was blocked")), STEP_TIMEOUT_MS))]);
      await until(page, () => window.playsyncApp.room.state.joined && !document.getElementById("blocked").hidden);
      if (!(await page.evaluate(() => window.playsyncApp.audio.paused))) fail("audio plays without a gesture");
      if ((await page.textContent("#unlock")) !== "Start listening") fail("no Start listening button");
      if (await page.isVisible("#toggle")) fail("a listener sees the host's play button");
      return page;
    });
    await shot(listener, "3-autoplay-blocked");

    await step("one click on Start listening plays, in step with the room", async () => {
      await listener.click("#unlock");
      await until(listener, () => !window.playsyncApp.audio.paused && window.playsyncApp.room.follower.phase === "running");
      await until(listener, () => Math.abs(window.playsyncApp.room.follower.error) < 50);
      if (await listener.isVisible("#blocked")) fail("the banner stays");
      if ((await listener.textContent("#count")) !== "2") fail("the listener count is not 2");
      if ((await host.textContent("#count")) !== "2") fail("the host's listener count is not 2");
    });
    await listener.waitForTimeout(1_500); // let the error settle before the picture
    await shot(listener, "4-listener");
    await shot(host, "2-host");

    await step("the host changes the track from the form; the listener follows", async () => {
      await host.fill("#track-form input[name=url]", trackUrl("/second.wav"));
      await host.fill("#track-form input[name=title]", "Second tone");
      await host.click("#track-form button[type=submit]");
      await until(listener, (url) => window.playsyncApp.audio.currentSrc === url && !window.playsyncApp.audio.paused, trackUrl("/second.wav"));
      if ((await listener.textContent("#track-title")) !== "Second tone") fail("the listener shows the old title");
    });

    await step("the host pauses; the listener pauses", async () => {
      await host.click("#toggle");
      await until(listener, () => window.playsyncApp.audio.paused && window.playsyncApp.room.follower.phase === "paused");
      if ((await host.textContent("#toggle")) !== "Play") fail("the host's button does not offer Play");
      await host.click("#toggle");
      await until(listener, () => !window.playsyncApp.audio.paused);
    });

    await step("a file from the host's device plays for the host; the listener is told", async () => {
      await host.setInputFiles("#file", { name: "my-tone.wav", mimeType: "audio/wav", buffer: wav(30, 550) });
      await until(host, () => window.playsyncApp.audio.currentSrc.startsWith("blob:") && !window.playsyncApp.audio.paused);
      await until(listener, () => !document.getElementById("notice").hidden && window.playsyncApp.room.follower.phase === "idle");
      const notice = await listener.textContent("#notice");
      if (!/not shared/.test(notice)) fail(`notice: ${notice}`);
      if ((await listener.textContent("#track-title")) !== "my-tone.wav") fail("the file's name is not shown");
    });
    await shot(listener, "5-listener-local-file");

    await step("a missing room is explained, with an offer to create it", async () => {
      const page = await open("stranger", `${base}/app/?room=${encodeURIComponent(`${room}-missing`)}`);
      await until(page, () => !document.getElementById("room-error").hidden);
      if (!/no room/i.test(await page.textContent("#room-error-text"))) fail("no explanation");
      if (!(await page.isVisible("#create-missing"))) fail("no offer to create it");
      await shot(page, "6-missing-room");
      await page.context().close();
    });

    await step("positions: a PUT from a form and one from outside show up live in two tabs", async () => {
      const one = await open("positions-1", `${base}/app/positions`);
      const two = await open("positions-2", `${base}/app/positions`);
      for (const p of [one, two]) await until(p, () => Object.values(window.positionsApp.streams).every((s) => s === "live"));
      await one.fill("#playback input[name=lastPlayedIndex]", "7");
      await one.fill("#playback input[name=notePath]", "notes/song.md");
      await one.fill("#playback input[name=noteTitle]", "Song");
      await one.click("#playback button[type=submit]");
      for (const p of [one, two]) {
        await until(p, () => document.querySelector('#playback [data-field="main"]').textContent === "#7");
      }
      // The server counts its open streams of the kind: these two, and any it has not yet
      // seen close (a stream's end is noticed when it is next written to).
      await until(one, () => /sent to \d+ open stream/.test(document.querySelector('#playback [data-field="result"]').textContent));
      const sent = Number(/sent to (\d+)/.exec(await one.textContent('#playback [data-field="result"]'))[1]);
      if (sent < 2) fail(`the PUT reached ${sent} streams, not both tabs`);
      const put = await fetch(`${base}/api/scroll-position`, {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ scrollTop: 1234, notePath: "notes/song.md", deviceId: "phone" }),
      });
      if (!put.ok) fail(`PUT scroll-position: ${put.status}`);
      for (const p of [one, two]) {
        await until(p, () => document.querySelector('#scroll [data-field="main"]').textContent === "1234 px");
      }
      if ((await two.textContent('#scroll [data-field="device"]')) !== "phone") fail("the device is not shown");
      await shot(two, "7-positions");
    });

    if (problems.length) fail(`errors in the pages: ${problems.slice(0, 5).join("; ")}`);
    console.log(`chromium ${browser.version()}: create, join with autoplay blocked, follow, local file, missing room, positions${shots ? `; screenshots in ${shots}` : ""}`);
    console.log("ok");
  } finally {
    await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 5_000))]);
    trackServer.closeAllConnections?.();
    trackServer.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`FAIL: ${err.isTestFailure ? err.message : err.stack || String(err)}`);
    process.exit(1);
  },
);
