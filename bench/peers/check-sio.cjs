// Smoke check of a seed-1 peer: node bench/peers/check-sio.cjs URL [websocket|polling]
// Uses the socket.io-client installed in tests/js (npm ci there first). Exits 0 when all is well.
const { io } = require(require('node:path').join(__dirname, '..', '..', 'tests', 'js', 'node_modules', 'socket.io-client'));
const url = process.argv[2];
const transports = process.argv[3] ? [process.argv[3]] : ['websocket'];
const opts = { transports, reconnection: false, forceNew: true };
const wait = (s, ev, ms = 3000) => new Promise((res, rej) => {
  const t = setTimeout(() => rej(new Error('timeout waiting ' + ev)), ms);
  s.once(ev, (d) => { clearTimeout(t); res(d); });
});
const nothing = (s, ev, ms = 300) => new Promise((res, rej) => {
  const h = (d) => rej(new Error('unexpected ' + ev + ' ' + JSON.stringify(d)));
  s.once(ev, h); setTimeout(() => { s.off(ev, h); res(); }, ms);
});
(async () => {
  const room = 'r' + Date.now();
  const host = io(url, opts);
  const c1 = await wait(host, 'connected');
  console.log('host connected', JSON.stringify(c1), 'transport', host.io.engine.transport.name);
  host.emit('create_room', { room_id: room, track: { name: 'Song' }, current_time: 5 });
  console.log('room_created', JSON.stringify(await wait(host, 'room_created')));
  host.emit('create_room', { room_id: room });
  console.log('dup error', JSON.stringify(await wait(host, 'error')));
  const mem = io(url, opts);
  await wait(mem, 'connected');
  const ss = wait(mem, 'sync_state');
  const ru = wait(host, 'room_users');
  mem.emit('join_room', { room_id: room });
  console.log('room_joined', JSON.stringify(await wait(mem, 'room_joined')));
  console.log('sync_state', JSON.stringify(await ss));
  console.log('host room_users', JSON.stringify(await ru));
  // hot path
  const hostNoEcho = nothing(host, 'sync_progress');
  host.emit('sync_progress', { room_id: room, current_time: 12.5 });
  console.log('member sync_progress', JSON.stringify(await wait(mem, 'sync_progress')));
  await hostNoEcho;
  host.emit('sync_progress', { room_id: room, current_time: 0 });
  console.log('member sync_progress(0)', JSON.stringify(await wait(mem, 'sync_progress')));
  // timing: websocket = burst of 1000; polling = 200 one at a time (python-engineio refuses
  // a long-polling POST carrying more than 16 packets)
  if (transports[0] === 'websocket') {
    let n = 0; const N = 1000; const t0 = Date.now();
    await new Promise((res) => { const h = () => { if (++n === N) { mem.off('sync_progress', h); res(); } }; mem.on('sync_progress', h);
      for (let i = 0; i < N; i++) host.emit('sync_progress', { room_id: room, current_time: i }); });
    console.log(`${N} sync_progress relayed in ${Date.now() - t0} ms`);
  } else {
    const N = 200; const t0 = Date.now();
    for (let i = 0; i < N; i++) { const p = wait(mem, 'sync_progress'); host.emit('sync_progress', { room_id: room, current_time: i }); await p; }
    console.log(`${N} sequential sync_progress round trips in ${Date.now() - t0} ms`);
  }
  // non-host ignored
  const ign = nothing(host, 'play');
  mem.emit('play', { room_id: room, current_time: 3 });
  await ign; console.log('non-host play ignored');
  for (const [ev, p] of [['play', { current_time: 7 }], ['pause', { current_time: 8 }], ['seek', { current_time: 9 }], ['track_change', { track: { name: 'B' } }]]) {
    host.emit(ev, { room_id: room, ...p });
    console.log('member', ev, JSON.stringify(await wait(mem, ev)));
  }
  mem.emit('get_room_state', { room_id: room });
  console.log('room_state', JSON.stringify(await wait(mem, 'room_state')));
  mem.emit('get_room_state', { room_id: 'nope' });
  console.log('unknown room', JSON.stringify(await wait(mem, 'error')));
  const base = url.replace(/\/$/, '');
  for (const p of ['/', '/rooms', '/room/' + room, '/room/nope']) {
    const r = await fetch(base + p);
    console.log('GET', p, r.status, r.headers.get('access-control-allow-origin'), await r.text());
  }
  // handover
  const bh = wait(mem, 'become_host');
  const ru2 = wait(mem, 'room_users');
  host.disconnect();
  console.log('become_host', JSON.stringify(await bh), 'room_users', JSON.stringify(await ru2));
  mem.disconnect();
  await new Promise((r) => setTimeout(r, 300));
  const r = await fetch(base + '/rooms');
  console.log('after all left /rooms', await r.text());
  // oversized message closes the connection
  const big = io(url, opts);
  await wait(big, 'connected');
  const dc = wait(big, 'disconnect');
  big.emit('sync_progress', { room_id: room, pad: 'x'.repeat(70 * 1024) });
  console.log('oversized ->', await dc);
  console.log('ALL OK');
  process.exit(0);
})().catch((e) => { console.error('FAIL', e); process.exit(1); });
