// End-to-end browser test: a seed-style page (seed-page.html, socket.io-client 4.x browser
// bundle in a <script> tag, `io(SERVER_URL)` with default transports) works unchanged against
// playsync, in Debian's chromium driven by playwright-core.
//
//   node tests/browser/seed-page.test.mjs http://127.0.0.1:3000
//
// The page and the bundle are served by a static server on another loopback port, so the page
// is cross-origin to playsync and the long-polling requests go through CORS. Two browser
// contexts are two users: A creates a room with a track, B joins, A pauses and seeks, A closes
// its page and B becomes host. Exits 0 and prints "ok" on success; exits 1 with the failed step,
// its reason and both pages' received events otherwise. The whole run is bounded (50 s).
//
// Environment: PLAYSYNC_CHROMIUM overrides the browser binary (default /usr/bin/chromium).

import { createServer } from "node:http";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";

const started = Date.now();
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
];
const TOTAL_TIMEOUT_MS = 50_000;
const STEP_TIMEOUT_MS = 10_000;
const ROOM = "browser-room";
const TRACK = {
  title: "Gymnopédie No. 1",
  artist: "Erik Satie",
  url: "/audio/gymnopedie-1.mp3",
  duration: 185.4,
  tags: ["piano", "calm"],
};

let browser = null;
let staticServer = null;
const pages = {}; // who -> Page, kept for the failure dump
const lastEvents = {}; // who -> last events read, in case the page is gone
const observed = { polling: [], pageErrors: [], consoleErrors: [] }; // what the browser reported

function fail(message) {
  const err = new Error(message);
  err.isTestFailure = true;
  throw err;
}

async function cleanup() {
  try {
    if (browser) await browser.close();
  } catch {
    // already gone
  }
  staticServer?.closeAllConnections?.();
  staticServer?.close();
}

async function dumpEvents() {
  const lines = [];
  for (const [who, page] of Object.entries(pages)) {
    let events = lastEvents[who];
    try {
      if (!page.isClosed()) events = await page.evaluate(() => window.__events);
    } catch {
      // keep the last events read
    }
    lines.push(`events received by page ${who}:`);
    for (const e of events || []) lines.push(`  [${e.transport}] ${e.name} ${JSON.stringify(e.data)}`);
  }
  for (const line of observed.pageErrors.concat(observed.consoleErrors).slice(0, 10)) lines.push(`browser: ${line}`);
  return lines.join("\n");
}

async function bail(message) {
  let dump = "";
  try {
    dump = await Promise.race([dumpEvents(), new Promise((r) => setTimeout(() => r("(no dump: timed out)"), 2000))]);
  } catch {
    // best effort
  }
  console.error(`FAIL: ${message}`);
  if (dump) console.error(dump);
  await Promise.race([cleanup(), new Promise((r) => setTimeout(r, 3000))]);
  process.exit(1);
}

const watchdog = setTimeout(() => {
  bail(`the whole test took longer than ${TOTAL_TIMEOUT_MS / 1000} s`);
}, TOTAL_TIMEOUT_MS);
watchdog.unref();

// ---------------------------------------------------------------------------------------------

function checkPrerequisites(base) {
  if (!base || !/^https?:\/\/[^/]+$/.test(base)) {
    fail(`usage: node seed-page.test.mjs <playsync base URL, e.g. http://127.0.0.1:3000> (got ${JSON.stringify(base)})`);
  }
  if (!existsSync(CHROMIUM)) {
    fail(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  }
  for (const dep of ["playwright-core", "socket.io-client"]) {
    if (!existsSync(HERE(`node_modules/${dep}/package.json`))) {
      fail(`tests/browser/node_modules/${dep} is missing: npm ci --prefix tests/browser (scripts/test does)`);
    }
  }
}

// The page's origin: http://127.0.0.1:<free port>, another origin than playsync's.
function startStaticServer() {
  const files = {
    "/": ["seed-page.html", "text/html; charset=utf-8"],
    "/socket.io.min.js": ["node_modules/socket.io-client/dist/socket.io.min.js", "text/javascript; charset=utf-8"],
  };
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const file = files[path];
    if (!file) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    res.writeHead(200, { "content-type": file[1], "cache-control": "no-store" }).end(readFileSync(HERE(file[0])));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

async function step(description, fn) {
  try {
    return await fn();
  } catch (err) {
    const reason = err.isTestFailure ? err.message : (err.message || String(err)).split("\n")[0];
    fail(`${description}: ${reason}`);
  }
}

async function events(who) {
  const list = await pages[who].evaluate(() => window.__events);
  lastEvents[who] = list;
  return list;
}

// Waits until page `who` has received `count` events named `name`; returns the last of them.
async function waitForEvent(who, name, count = 1) {
  await pages[who].waitForFunction(
    ([n, c]) => window.__events.filter((e) => e.name === n).length >= c,
    [name, count],
    { timeout: STEP_TIMEOUT_MS, polling: 50 },
  ).catch(() => fail(`page ${who} did not receive ${name}${count > 1 ? ` #${count}` : ""} within ${STEP_TIMEOUT_MS / 1000} s`));
  const list = (await events(who)).filter((e) => e.name === name);
  return list[count - 1].data;
}

function expectEqual(what, actual, expected) {
  if (!isDeepStrictEqual(actual, expected)) {
    fail(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

async function openPage(who, pageUrl, playsyncOrigin, cors) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  pages[who] = page;
  page.on("pageerror", (err) => cors.pageErrors.push(`${who}: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") cors.consoleErrors.push(`${who}: ${msg.text()}`);
  });
  page.on("response", async (resp) => {
    const url = new URL(resp.url());
    if (url.origin !== playsyncOrigin || !url.pathname.startsWith("/socket.io/")) return;
    if (url.searchParams.get("transport") !== "polling") return;
    const req = resp.request();
    cors.polling.push({
      who,
      method: req.method(),
      status: resp.status(),
      origin: (await req.allHeaders().catch(() => ({}))).origin,
      allowOrigin: resp.headers()["access-control-allow-origin"],
    });
  });
  await page.goto(pageUrl, { waitUntil: "load" });
  await page
    .waitForFunction(() => window.__socketState && window.__socketState().connected, null, { timeout: STEP_TIMEOUT_MS, polling: 50 })
    .catch(() => fail(`page ${who} did not connect within ${STEP_TIMEOUT_MS / 1000} s`));
  return page;
}

async function waitForWebSocket(who) {
  await pages[who]
    .waitForFunction(() => window.__socketState().transport === "websocket", null, { timeout: STEP_TIMEOUT_MS, polling: 50 })
    .catch(() => fail(`page ${who} stayed on ${"long-polling"}: no upgrade to websocket within ${STEP_TIMEOUT_MS / 1000} s`));
  return pages[who].evaluate(() => window.__socketState());
}

async function main() {
  const base = process.argv[2]?.replace(/\/+$/, "");
  checkPrerequisites(base);
  const playsyncOrigin = new URL(base).origin;

  const { chromium } = await import("playwright-core");
  staticServer = await startStaticServer();
  const pageOrigin = `http://127.0.0.1:${staticServer.address().port}`;
  if (pageOrigin === playsyncOrigin) fail("the page and playsync must be on different origins");
  const pageUrl = `${pageOrigin}/?server=${encodeURIComponent(base)}`;

  browser = await step(`launch ${CHROMIUM}`, () =>
    chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 20_000 }),
  );
  const browserVersion = browser.version();
  const cors = observed;

  // User A: opens the page and creates the room with a track.
  const pageA = await step("user A opens the page", () => openPage("A", pageUrl, playsyncOrigin, cors));
  await step("user A gets connected", async () => {
    const data = await waitForEvent("A", "connected");
    if (typeof data?.message !== "string") fail(`connected payload: ${JSON.stringify(data)}`);
  });
  await step("user A creates the room", async () => {
    await pageA.fill("#room-id", ROOM);
    await pageA.fill("#track", JSON.stringify(TRACK));
    await pageA.click("#create");
    const created = await waitForEvent("A", "room_created");
    expectEqual("room_created.room_id", created.room_id, ROOM);
    expectEqual("room_created.user_count", created.user_count, 1);
  });

  // User B: opens the page in another context and joins.
  const pageB = await step("user B opens the page", () => openPage("B", pageUrl, playsyncOrigin, cors));
  await step("user B gets connected", () => waitForEvent("B", "connected"));
  await step("user B joins the room", async () => {
    await pageB.fill("#room-id", ROOM);
    await pageB.click("#join");
    const joined = await waitForEvent("B", "room_joined");
    expectEqual("room_joined.room_id", joined.room_id, ROOM);
    expectEqual("room_joined.user_count", joined.user_count, 2);
    expectEqual("room_joined.current_track", joined.current_track, TRACK);
    expectEqual("room_joined.is_playing", joined.is_playing, true);
    const sync = await waitForEvent("B", "sync_state");
    expectEqual("sync_state.current_track", sync.current_track, TRACK);
    expectEqual("sync_state.is_playing", sync.is_playing, true);
    if (typeof sync.current_time !== "number" || sync.current_time < 0) {
      fail(`sync_state.current_time: ${JSON.stringify(sync.current_time)}`);
    }
  });
  await step("user A sees two listeners", async () => {
    await pageA.waitForFunction(
      () => window.__events.some((e) => e.name === "room_users" && e.data.count === 2),
      null,
      { timeout: STEP_TIMEOUT_MS, polling: 50 },
    ).catch(() => fail("page A got no room_users {count: 2}"));
    expectEqual("page A's listener count", await pageA.textContent("#users"), "2");
  });

  // Host commands, through A's buttons.
  await step("user A pauses at 12.5 and B follows", async () => {
    await pageA.fill("#time", "12.5");
    await pageA.click("#pause");
    const paused = await waitForEvent("B", "pause");
    expectEqual("pause.current_time", paused.current_time, 12.5);
    expectEqual("B's play state", await pageB.textContent("#play-state"), "paused");
  });
  await step("user A seeks to 0 and B follows", async () => {
    await pageA.fill("#time", "0");
    await pageA.click("#seek");
    const seeked = await waitForEvent("B", "seek");
    expectEqual("seek.current_time", seeked.current_time, 0);
    expectEqual("B's position", await pageB.textContent("#position"), "0");
  });

  // Transports: both pages started on long-polling and upgraded to WebSocket.
  const transports = {};
  for (const who of ["A", "B"]) {
    transports[who] = await step(`page ${who} upgrades to websocket`, async () => {
      const state = await waitForWebSocket(who);
      expectEqual(`page ${who}'s first transport`, state.firstTransport, "polling");
      return state;
    });
  }

  // CORS on long-polling: cross-origin requests carried the page's Origin and were allowed.
  await step("long-polling is cross-origin and allowed by CORS", async () => {
    for (const who of ["A", "B"]) {
      const mine = cors.polling.filter((p) => p.who === who);
      if (mine.length === 0) fail(`page ${who} made no long-polling request to ${playsyncOrigin}`);
      for (const p of mine) {
        if (p.status !== 200) fail(`page ${who}: ${p.method} polling answered ${p.status}`);
        expectEqual(`page ${who}: Origin header of ${p.method} polling`, p.origin, pageOrigin);
        if (p.allowOrigin !== pageOrigin && p.allowOrigin !== "*") {
          fail(`page ${who}: ${p.method} polling has Access-Control-Allow-Origin ${JSON.stringify(p.allowOrigin)}`);
        }
      }
    }
  });

  // A leaves: B becomes host.
  await step("user A closes the page and B becomes host", async () => {
    await events("A");
    await pageA.context().close();
    const host = await waitForEvent("B", "become_host");
    expectEqual("become_host.room_id", host.room_id, ROOM);
    await pageB.waitForFunction(
      () => window.__events.some((e) => e.name === "room_users" && e.data.count === 1),
      null,
      { timeout: STEP_TIMEOUT_MS, polling: 50 },
    ).catch(() => fail("page B got no room_users {count: 1}"));
    expectEqual("B's role", await pageB.textContent("#role"), "host");
  });

  await step("no errors on the pages", async () => {
    const bad = (await events("B")).concat(lastEvents.A || []).filter((e) => ["error", "connect_error"].includes(e.name));
    if (bad.length) fail(`unexpected events: ${JSON.stringify(bad)}`);
    if (cors.pageErrors.length) fail(`uncaught page errors: ${cors.pageErrors.join("; ")}`);
    if (cors.consoleErrors.length) fail(`console errors: ${cors.consoleErrors.join("; ")}`);
  });

  const pollingCount = cors.polling.length;
  await cleanup();
  clearTimeout(watchdog);
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `chromium ${browserVersion}; page origin ${pageOrigin} -> playsync ${playsyncOrigin}; ` +
      `${pollingCount} cross-origin polling requests; ` +
      `transports A: ${transports.A.firstTransport} -> ${transports.A.transport}, B: ${transports.B.firstTransport} -> ${transports.B.transport}; ` +
      `${secs} s`,
  );
  console.log("ok");
}

main().then(
  () => process.exit(0),
  (err) => bail(err.isTestFailure ? err.message : err.stack || String(err)),
);
