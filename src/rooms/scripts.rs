//! The Lua scripts that change shared rooms. Each runs atomically in Redis, so two instances
//! can never both make a host or lose a member; each room script ends by publishing the
//! room's resulting *fact* (see [`super::shared::Fact`]) in the same step, so every instance
//! receives a room's changes in the order Redis applied them.
//!
//! Room keys (`{p}` is the prefix, `{k}` the room key):
//! - `{p}room:{k}` hash: `id` (JSON), `host`, `since` (ms the host has held the role since),
//!   `track` (JSON), `playing` (0/1), `time` (JSON number), `upd` (the server instant, Unix
//!   ms, at which `time` is the position: a start may be scheduled ahead), `rate` (playback
//!   speed, JSON number), `created` (ms), `v` (version), `ctl` (`host`/`everyone`), `wfr`
//!   (wait for ready, 0/1), `pw` (the password's salted hash, or empty), `lists` (1 when the
//!   room uses the group features: its facts list the members), `wait` (JSON
//!   `{"for": [member ids], "dl": deadline ms}` while a start waits for members, or empty);
//! - `{p}room:{k}:m` sorted set: member → join sequence (the lowest is the longest present);
//! - `{p}room:{k}:o` hash: member → owning instance id;
//! - `{p}room:{k}:i` hash: member → JSON `{n: name, r: "cohost"|"member", a: away since
//!   (ms, 0 when present), y: ready (0/1), c: client key or ""}`;
//! - `{p}client:{key}` string: JSON `{r: room key, m: member id}` for members that sent a
//!   `client_id`, so a client resumes its member on any instance;
//! - `{p}rooms` set of room keys; `{p}seq` the last version / join sequence handed out.
//!
//! Every script takes KEYS room, members, owners, rooms, seq, infos and ARGV origin (the
//! instance), the room key as JSON, the operation's arguments as one JSON object, and the
//! channel to publish on. The rules mirror the pure model (`rooms::model::PlayState::after`,
//! `rooms::roster::Roster::successor`, `rooms::room::Room`); the cluster integration tests
//! run the same scenarios on both.

use std::sync::LazyLock;

use redis::Script;

/// Shared by the room scripts. `fact` builds the published JSON from the stored state
/// (every stored field is already JSON text or a number), bumping the version unless told
/// not to, with the roster when asked (rooms of up to 100 members).
const PRELUDE: &str = r#"
local room, members, owners, rooms, seq, infos = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local origin, key_json, a, channel = ARGV[1], ARGV[2], cjson.decode(ARGV[3]), ARGV[4]
-- JSON nulls are absent arguments.
for k, v in pairs(a) do if v == cjson.null then a[k] = nil end end
local ROSTER_MAX = 100
-- Versions and join sequence numbers: strictly increasing, and never below Redis's clock in
-- microseconds, so they keep increasing even if Redis restarts without its data.
local function next_version()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local v = string.format('%.0f', math.max(tonumber(redis.call('GET', seq) or '0') + 1, now))
  redis.call('SET', seq, v)
  return v
end
local function ms(n) return string.format('%.0f', n) end
local function info(id)
  local raw = redis.call('HGET', infos, id)
  if raw then return cjson.decode(raw) end
  return {r = 'member', a = 0, y = 0, c = ''}
end
local function put_info(id, t) redis.call('HSET', infos, id, cjson.encode(t)) end
local function is_member(id) return redis.call('ZSCORE', members, id) ~= false end
local function roster_json()
  local ids = redis.call('ZRANGE', members, 0, -1)
  if #ids > ROSTER_MAX then return nil end
  local host = redis.call('HGET', room, 'host')
  local parts = {}
  for i, id in ipairs(ids) do
    local t = info(id)
    local role = t.r or 'member'
    if id == host then role = 'host' end
    local name = 'null'
    if t.n and t.n ~= '' then name = cjson.encode(t.n) end
    parts[i] = '{"member_id":' .. cjson.encode(id) .. ',"name":' .. name .. ',"role":"' .. role ..
      '","away":' .. tostring((t.a or 0) > 0) .. ',"ready":' .. tostring((t.y or 0) == 1) .. '}'
  end
  return '[' .. table.concat(parts, ',') .. ']'
end
-- Who takes over from `leaving`: a present co-host, else a present member, else an away
-- co-host, else an away member; the longest present of each kind.
local function successor(leaving)
  local best, best_rank
  for _, id in ipairs(redis.call('ZRANGE', members, 0, -1)) do
    if id ~= leaving then
      local t = info(id)
      local rank = 0
      if (t.a or 0) > 0 then rank = rank + 2 end
      if t.r ~= 'cohost' then rank = rank + 1 end
      if best_rank == nil or rank < best_rank then best, best_rank = id, rank end
    end
  end
  return best
end
local function wait_get()
  local w = redis.call('HGET', room, 'wait')
  if w and w ~= '' then return cjson.decode(w) end
  return nil
end
local function wait_put(w)
  if w == nil then redis.call('HSET', room, 'wait', '') return end
  redis.call('HSET', room, 'wait', '{"for":' .. (#w['for'] > 0 and cjson.encode(w['for']) or '[]') ..
    ',"dl":' .. ms(w.dl) .. '}')
end
-- Takes `id` off a waiting start; returns true when nobody is left to wait for.
local function wait_release(w, id)
  local left = {}
  for _, m in ipairs(w['for']) do if m ~= id then left[#left + 1] = m end end
  w['for'] = left
  return #left == 0
end
local function fact(event, sender, bump, with_roster)
  local f = redis.call('HMGET', room, 'id', 'host', 'track', 'playing', 'time', 'upd', 'created',
    'v', 'since', 'rate', 'ctl', 'wfr', 'pw', 'wait', 'lists')
  local v = f[8]
  if bump then
    v = next_version()
    redis.call('HSET', room, 'v', v)
  end
  local extra = ''
  if with_roster and f[15] == '1' then
    local r = roster_json()
    if r then extra = ',"m":' .. r end
  end
  if f[14] and f[14] ~= '' then extra = extra .. ',"w":' .. f[14] end
  local protected = 0
  if f[13] and f[13] ~= '' then protected = 1 end
  return '{"o":"' .. origin .. '","r":' .. key_json .. ',"id":' .. f[1] .. ',"v":' .. v ..
    ',"c":' .. redis.call('ZCARD', members) .. ',"h":' .. cjson.encode(f[2]) .. ',"hs":' .. f[9] ..
    ',"e":"' .. event .. '","x":' .. cjson.encode(sender) .. ',"tr":' .. f[3] .. ',"p":' .. f[4] ..
    ',"t":' .. f[5] .. ',"u":' .. f[6] .. ',"cr":' .. f[7] .. ',"rt":' .. (f[10] or '1') ..
    ',"ctl":"' .. (f[11] or 'host') .. '","wfr":' .. (f[12] or '0') .. ',"pr":' .. protected ..
    extra .. '}'
end
local function publish(event, sender, with_roster)
  local f = fact(event, sender, true, with_roster)
  redis.call('PUBLISH', channel, f)
  return {'ok', f}
end
local function deleted(key)
  for _, id in ipairs(redis.call('ZRANGE', members, 0, -1)) do
    local t = info(id)
    if t.c and t.c ~= '' then redis.call('DEL', a.client_prefix .. t.c) end
  end
  redis.call('DEL', room, members, owners, infos)
  redis.call('SREM', rooms, key)
  local f = '{"o":"' .. origin .. '","r":' .. key_json .. ',"e":"deleted","v":0}'
  redis.call('PUBLISH', channel, f)
  return {'deleted', f}
end
-- Adds `a.member` (with `a.name`, `a.client`) last in seniority, owned by `a.instance`.
local function add_member()
  redis.call('ZADD', members, next_version(), a.member)
  redis.call('HSET', owners, a.member, a.instance)
  put_info(a.member, {n = a.name or '', r = 'member', a = 0, y = 0, c = a.client or ''})
  if a.client and a.client ~= '' then
    redis.call('SET', a.client_prefix .. a.client, cjson.encode({r = a.key, m = a.member}))
  end
end
-- Removes `id`; hands the host role over; deletes the room when it empties.
local function remove_member(id)
  local t = info(id)
  if t.c and t.c ~= '' then redis.call('DEL', a.client_prefix .. t.c) end
  redis.call('HDEL', owners, id)
  redis.call('HDEL', infos, id)
  redis.call('ZREM', members, id)
  if redis.call('ZCARD', members) == 0 then return deleted(a.key) end
  local w = wait_get()
  if w then
    wait_release(w, id)
    wait_put(w)
  end
  if redis.call('HGET', room, 'host') == id then
    redis.call('HSET', room, 'host', successor(id), 'since', ms(a.now))
  end
  return publish('room_users', id, true)
end
"#;

fn room_script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// `a`: key, member, name, client, client_prefix, instance, id (JSON text), track (JSON
/// text), time, now, ctl, wfr, pw, max_rooms. Returns `{"exists"}`, `{"too_many_rooms"}` or
/// `{"ok", fact}`.
pub static CREATE: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
if redis.call('EXISTS', room) == 1 then return {'exists'} end
if redis.call('SCARD', rooms) >= a.max_rooms then return {'too_many_rooms'} end
redis.call('HSET', room, 'id', a.id, 'host', a.member, 'since', ms(a.now), 'track', a.track,
  'playing', '1', 'time', a.time, 'upd', ms(a.now), 'rate', '1', 'created', ms(a.now), 'v', 0,
  'ctl', a.ctl, 'wfr', a.wfr, 'pw', a.pw, 'wait', '', 'lists', a.lists and '1' or '0')
add_member()
redis.call('SADD', rooms, a.key)
return publish('room_users', a.member, true)
"#,
    )
});

/// `a`: key, member, name, client, client_prefix, instance, max_members.
/// Returns `{"not_found"}`, `{"room_full"}`, `{"already", fact}` or `{"ok", fact}`.
pub static JOIN: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
if redis.call('EXISTS', room) == 0 then return {'not_found'} end
if is_member(a.member) then
  redis.call('HSET', owners, a.member, a.instance)
  return {'already', fact('room_users', a.member, false, true)}
end
if redis.call('ZCARD', members) >= a.max_members then return {'room_full'} end
if a.name or a.client then
  redis.call('HSET', room, 'lists', '1')
end
add_member()
return publish('room_users', a.member, true)
"#,
    )
});

/// `a`: key, member, owner (expected owner, "" = any), now, client_prefix, expired_before
/// (optional: only if the member is away since before this instant).
/// Returns `{"not_member"}`, `{"deleted", fact}` or `{"ok", fact}`.
pub static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
if not is_member(a.member) then return {'not_member'} end
if a.owner ~= '' and redis.call('HGET', owners, a.member) ~= a.owner then return {'not_member'} end
if a.expired_before then
  local away = info(a.member).a or 0
  if away == 0 or away >= a.expired_before then return {'not_member'} end
end
return remove_member(a.member)
"#,
    )
});

/// `a`: member, event, time (absent = the current position), track (JSON text, for
/// track_change), rate (for set_rate), now, start (when it takes effect), and for rooms that
/// wait for ready: deadline and start_waiting (the provisional start). Only members who may
/// control (the host, co-hosts, anyone in a `control: everyone` room). The play rules
/// mirror `rooms::model::PlayState::after`: "the current position" is where the room's
/// timeline is at the start, so nothing jumps.
/// Returns `{"not_found"}`, `{"not_host"}` or `{"ok", fact}`.
pub static CONTROL: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
if redis.call('EXISTS', room) == 0 then return {'not_found'} end
local s = redis.call('HMGET', room, 'host', 'playing', 'time', 'upd', 'rate', 'ctl', 'wfr')
local allowed = s[1] == a.member or (is_member(a.member) and (s[6] == 'everyone' or info(a.member).r == 'cohost'))
if not allowed then return {'not_host'} end
local start = a.start
local starts = a.event == 'track_change' or a.event == 'play' or a.event == 'seek'
if starts and s[7] == '1' then
  start = a.start_waiting
  local waiting = {}
  for _, id in ipairs(redis.call('ZRANGE', members, 0, -1)) do
    local t = info(id)
    t.y = 0
    put_info(id, t)
    if (t.a or 0) == 0 then waiting[#waiting + 1] = id end
  end
  wait_put({['for'] = waiting, dl = a.deadline})
end
local playing = s[2]
local current = tonumber(s[3])
if playing == '1' then
  current = current + math.max(0, start - tonumber(s[4])) / 1000 * tonumber(s[5] or '1')
end
local time = a.time
if time == nil then time = current end
if a.event == 'track_change' then
  playing = '1'
  time = 0
  redis.call('HSET', room, 'track', a.track)
elseif a.event == 'play' then
  playing = '1'
elseif a.event == 'pause' then
  playing = '0'
elseif a.event == 'set_rate' then
  redis.call('HSET', room, 'rate', string.format('%.17g', a.rate))
end
redis.call('HSET', room, 'playing', playing, 'time', string.format('%.17g', time), 'upd', ms(start))
return publish(a.event, a.member, false)
"#,
    )
});

/// `a`: member (the host), to, now. Returns `{"not_found"}`, `{"not_host"}`,
/// `{"not_member"}` or `{"ok", fact}`.
pub static TRANSFER: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
if redis.call('EXISTS', room) == 0 then return {'not_found'} end
if redis.call('HGET', room, 'host') ~= a.member then return {'not_host'} end
if not is_member(a.to) then return {'not_member'} end
redis.call('HSET', room, 'host', a.to, 'since', ms(a.now))
return publish('host_changed', a.member, true)
"#,
    )
});

/// `a`: member (the host), target, role. Returns `{"not_found"}`, `{"not_host"}`,
/// `{"not_member"}` or `{"ok", fact}`.
pub static SET_ROLE: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
if redis.call('EXISTS', room) == 0 then return {'not_found'} end
if redis.call('HGET', room, 'host') ~= a.member then return {'not_host'} end
if not is_member(a.target) then return {'not_member'} end
local t = info(a.target)
t.r = a.role
put_info(a.target, t)
return publish('roster', a.member, true)
"#,
    )
});

/// `a`: member, ready (bool), start_if_all (when everyone is ready, the start is then).
/// Returns `{"not_found"}`, `{"not_member"}`, `{"noted"}` or `{"ok", fact}` (the wait
/// changed: `waiting` while members are left, `started` once nobody is).
pub static READY: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
if redis.call('EXISTS', room) == 0 then return {'not_found'} end
if not is_member(a.member) then return {'not_member'} end
local t = info(a.member)
if a.ready then t.y = 1 else t.y = 0 end
put_info(a.member, t)
local w = wait_get()
if not a.ready or w == nil then return {'noted'} end
local listed = false
for _, m in ipairs(w['for']) do if m == a.member then listed = true end end
if not listed then return {'noted'} end
if wait_release(w, a.member) then
  wait_put(nil)
  redis.call('HSET', room, 'upd', ms(a.start_if_all))
  return publish('started', a.member, false)
end
wait_put(w)
return publish('waiting', a.member, false)
"#,
    )
});

/// `a`: now. Ends a waiting start whose deadline passed (the room starts at the provisional
/// instant without the members that were not ready). Returns `{"noted"}` or `{"ok", fact}`.
pub static WAIT_END: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
local w = wait_get()
if w == nil or (a.now < w.dl and #w['for'] > 0) then return {'noted'} end
wait_put(nil)
return publish('started', '', false)
"#,
    )
});

/// `a`: member, now, start_if_all. The member's connection is gone without it leaving: it
/// stays, marked away (no one is told: the room sees no `room_users`). A start no longer
/// waits for it. Returns `{"not_member"}`, `{"noted"}` or `{"ok", fact}` (the wait changed).
pub static AWAY: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
if not is_member(a.member) then return {'not_member'} end
local t = info(a.member)
if (t.a or 0) == 0 then t.a = a.now end
put_info(a.member, t)
local w = wait_get()
if w == nil then return {'noted'} end
if wait_release(w, a.member) then
  wait_put(nil)
  redis.call('HSET', room, 'upd', ms(a.start_if_all))
  return publish('started', a.member, false)
end
wait_put(w)
return publish('waiting', a.member, false)
"#,
    )
});

/// `a`: member, instance. The member's client is back on `instance` (a resume or a
/// replacing connection). Returns `{"not_member"}` or `{"ok", fact, previous owner}`; the
/// fact (`replaced`) tells the previous owner to drop its connection of that member.
pub static RESUME: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
if not is_member(a.member) then return {'not_member'} end
local previous = redis.call('HGET', owners, a.member) or ''
local t = info(a.member)
t.a = 0
put_info(a.member, t)
redis.call('HSET', owners, a.member, a.instance)
local f = fact('replaced', a.member, true, false)
redis.call('PUBLISH', channel, f)
return {'ok', f, previous}
"#,
    )
});

/// After an outage: merges this instance's view of a room into the shared one.
/// `a`: key, instance, base (owners starting with it are this process under any epoch), id
/// (JSON text), created, track (JSON text), playing ("0"/"1"), time, upd, rate, host (hint),
/// host_since, now, ctl, wfr, pw, client_prefix, and `members`: the local members in
/// seniority order, each `{id, info}` with its record.
/// Membership: this process's members that are gone are removed, present ones are added (or
/// re-owned) with their records. Play state: the newer one (by `upd`) wins. Host: of the
/// stored host and the hint, whichever is a member and has held the role longer (a host
/// promoted only because its instance was cut off does not displace one that never lost
/// it); else the successor rule. Returns `{"ok", fact}` or `{"deleted", fact}`.
pub static RECONCILE: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
local local_members = {}
for _, m in ipairs(a.members) do local_members[m.id] = true end
if redis.call('EXISTS', room) == 0 then
  redis.call('HSET', room, 'id', a.id, 'host', '', 'since', ms(a.now), 'track', a.track,
    'playing', a.playing, 'time', string.format('%.17g', a.time), 'upd', ms(a.upd),
    'rate', string.format('%.17g', a.rate), 'created', ms(a.created), 'v', 0, 'ctl', a.ctl,
    'wfr', a.wfr, 'pw', a.pw, 'wait', '', 'lists', a.lists and '1' or '0')
  redis.call('SADD', rooms, a.key)
elseif a.upd > tonumber(redis.call('HGET', room, 'upd')) then
  redis.call('HSET', room, 'track', a.track, 'playing', a.playing,
    'time', string.format('%.17g', a.time), 'upd', ms(a.upd), 'rate', string.format('%.17g', a.rate))
end
local owned = redis.call('HGETALL', owners)
for i = 1, #owned, 2 do
  local id, owner = owned[i], owned[i + 1]
  if string.sub(owner, 1, #a.base) == a.base and not local_members[id] then
    local t = info(id)
    if t.c and t.c ~= '' then redis.call('DEL', a.client_prefix .. t.c) end
    redis.call('ZREM', members, id)
    redis.call('HDEL', owners, id)
    redis.call('HDEL', infos, id)
  end
end
for _, m in ipairs(a.members) do
  if not is_member(m.id) then
    redis.call('ZADD', members, next_version(), m.id)
  end
  redis.call('HSET', owners, m.id, a.instance)
  put_info(m.id, m.info)
  if m.info.c and m.info.c ~= '' then
    redis.call('SET', a.client_prefix .. m.info.c, cjson.encode({r = a.key, m = m.id}))
  end
end
if redis.call('ZCARD', members) == 0 then return deleted(a.key) end
local host = redis.call('HGET', room, 'host')
local since = tonumber(redis.call('HGET', room, 'since') or a.now)
local host_ok = host ~= '' and is_member(host)
local hint_ok = a.host ~= '' and is_member(a.host)
if hint_ok and (not host_ok or a.host_since < since) then
  redis.call('HSET', room, 'host', a.host, 'since', ms(a.host_since))
elseif not host_ok then
  redis.call('HSET', room, 'host', successor(''), 'since', ms(a.now))
end
return publish('reconcile', '', true)
"#,
    )
});
