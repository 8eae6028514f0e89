// Drives the real socket.io-client 4.x and 2.x (installed in the root package's tests/js by
// `npm ci --prefix tests/js`) against a test server of tests/node_clients.rs: default
// transports, websocket-only and polling-only. Exits non-zero on any failure.
import { createRequire } from "module";
const require = createRequire(new URL("../../../tests/js/package.json", import.meta.url));
const io4 = require("socket.io-client");
const io2 = require("socket.io-client-v2");
const SERVER = process.argv[2];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const within = (ms, p, what) =>
  Promise.race([p, sleep(ms).then(() => { throw new Error(`timed out: ${what}`); })]);

async function run(name, io, opts) {
  const socket = io(SERVER, { ...opts, forceNew: true, reconnection: false });
  await within(5000, new Promise((res, rej) => { socket.on("connect", res); socket.on("connect_error", rej); }), "connect");
  const echo = new Promise((res) => socket.once("echo", (...args) => res(args)));
  socket.emit("echo", 1, "é😀", { a: [true] }, Buffer.from([1, 2, 3]));
  const args = await within(5000, echo, "echo");
  if (JSON.stringify(args.slice(0, 3)) !== JSON.stringify([1, "é😀", { a: [true] }])) throw new Error(`echo: ${JSON.stringify(args)}`);
  if (!Buffer.from(args[3]).equals(Buffer.from([1, 2, 3]))) throw new Error("binary echo");
  const ack = await within(5000, new Promise((res) => socket.emit("ack", "x", (...a) => res(a))), "ack");
  if (ack[0] !== "x") throw new Error(`ack: ${JSON.stringify(ack)}`);
  const got = [];
  const all = new Promise((res) => socket.on("echo", (n) => { got.push(n); if (got.length === 200) res(); }));
  for (let i = 0; i < 200; i++) { socket.emit("echo", i); if (i % 50 === 0) await sleep(20); }
  await within(10000, all, "200 echoes");
  if (!got.every((n, i) => n === i)) throw new Error("echoes out of order");
  const expected = opts.transports ? opts.transports[0] : "websocket";
  for (let i = 0; i < 50 && socket.io.engine.transport.name !== expected; i++) await sleep(100);
  if (socket.io.engine.transport.name !== expected) throw new Error(`transport ${socket.io.engine.transport.name}`);
  socket.disconnect();
  await sleep(300); // lets a polling client's last POST (the DISCONNECT) go out
  console.log(`${name}: ok (${socket.io.engine ? expected : "closed"})`);
}

try {
  for (const [v, io] of [["v4", io4], ["v2", io2]]) {
    await run(`${v} default`, io, {});
    await run(`${v} websocket-only`, io, { transports: ["websocket"] });
    await run(`${v} polling-only`, io, { transports: ["polling"] });
  }
  process.exit(0);
} catch (e) {
  console.error(e);
  process.exit(1);
}
