//! The Lua scripts that change shared rooms. Each runs atomically in Redis, so two instances
//! can never both make a host or lose a member; each room script ends by publishing the
//! room's resulting *fact* (see [`super::rooms::Fact`]) in the same step, so every instance
//! receives a room's changes in the order Redis applied them.
//!
//! Room keys (`{p}` is the prefix, `{k}` the room key):
//! - `{p}room:{k}` hash: `id` (JSON), `host`, `since` (ms the host has held the role since),
//!   `track` (JSON), `playing` (0/1), `time` (JSON number), `upd` (the server instant, Unix
//!   ms, at which `time` is the position: a start may be scheduled ahead), `rate` (playback
//!   speed, JSON number), `created` (ms), `v` (version);
//! - `{p}room:{k}:m` sorted set: member → join sequence (the lowest is the longest present);
//! - `{p}room:{k}:o` hash: member → owning instance id;
//! - `{p}rooms` set of room keys; `{p}seq` the last version / join sequence handed out.
//!
//! The play-state rules of `CONTROL` mirror `rooms::model::Room::control`; the cluster
//! integration tests run the same scenarios on both.

use std::sync::LazyLock;

use redis::Script;

/// Shared by the room scripts. KEYS: room hash, members, owners, rooms set, sequence.
/// `fact` builds the published JSON from the stored state (every stored field is already
/// JSON text or a number), bumping the version unless told not to.
const PRELUDE: &str = r#"
local room, members, owners, rooms, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
-- Versions and join sequence numbers: strictly increasing, and never below Redis's clock in
-- microseconds, so they keep increasing even if Redis restarts without its data.
local function next_version()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local v = string.format('%.0f', math.max(tonumber(redis.call('GET', seq) or '0') + 1, now))
  redis.call('SET', seq, v)
  return v
end
local function fact(origin, key_json, event, sender, bump)
  local f = redis.call('HMGET', room, 'id', 'host', 'track', 'playing', 'time', 'upd', 'created', 'v', 'since', 'rate')
  local v = f[8]
  if bump then
    v = next_version()
    redis.call('HSET', room, 'v', v)
  end
  return '{"o":"' .. origin .. '","r":' .. key_json .. ',"id":' .. f[1] .. ',"v":' .. v ..
    ',"c":' .. redis.call('ZCARD', members) .. ',"h":"' .. f[2] .. '","hs":' .. f[9] ..
    ',"e":"' .. event ..
    '","x":"' .. sender .. '","tr":' .. f[3] .. ',"p":' .. f[4] .. ',"t":' .. f[5] ..
    ',"u":' .. f[6] .. ',"cr":' .. f[7] .. ',"rt":' .. (f[10] or '1') .. '}'
end
local function deleted(origin, key_json, key)
  redis.call('DEL', room, members, owners)
  redis.call('SREM', rooms, key)
  return '{"o":"' .. origin .. '","r":' .. key_json .. ',"e":"deleted","v":0}'
end
"#;

fn room_script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// ARGV: origin, key JSON, key, member, instance, id JSON, track JSON, time, now, channel.
/// Returns `{"exists"}` or `{"ok", fact}`.
pub static CREATE: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
local origin, key_json, key, sid, inst, id_json, track, time, now, channel =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
if redis.call('EXISTS', room) == 1 then return {'exists'} end
redis.call('HSET', room, 'id', id_json, 'host', sid, 'since', now, 'track', track,
  'playing', '1', 'time', time, 'upd', now, 'rate', '1', 'created', now, 'v', 0)
redis.call('ZADD', members, next_version(), sid)
redis.call('HSET', owners, sid, inst)
redis.call('SADD', rooms, key)
local f = fact(origin, key_json, 'room_users', sid, true)
redis.call('PUBLISH', channel, f)
return {'ok', f}
"#,
    )
});

/// ARGV: origin, key JSON, member, instance, channel.
/// Returns `{"not_found"}`, `{"already", fact}` or `{"ok", fact}`.
pub static JOIN: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
local origin, key_json, sid, inst, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', room) == 0 then return {'not_found'} end
redis.call('HSET', owners, sid, inst)
if redis.call('ZSCORE', members, sid) then
  return {'already', fact(origin, key_json, 'room_users', sid, false)}
end
redis.call('ZADD', members, next_version(), sid)
local f = fact(origin, key_json, 'room_users', sid, true)
redis.call('PUBLISH', channel, f)
return {'ok', f}
"#,
    )
});

/// ARGV: origin, key JSON, key, member, expected owner ("" = any), now, channel.
/// Removes the member; hands the host role to the longest-present member; deletes the room
/// when it empties. Returns `{"not_member"}`, `{"deleted", fact}` or `{"ok", fact}`.
pub static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
local origin, key_json, key, sid, expected, now, channel =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if expected ~= '' and redis.call('HGET', owners, sid) ~= expected then return {'not_member'} end
redis.call('HDEL', owners, sid)
if redis.call('ZREM', members, sid) == 0 then return {'not_member'} end
if redis.call('ZCARD', members) == 0 then
  local f = deleted(origin, key_json, key)
  redis.call('PUBLISH', channel, f)
  return {'deleted', f}
end
if redis.call('HGET', room, 'host') == sid then
  redis.call('HSET', room, 'host', redis.call('ZRANGE', members, 0, 0)[1], 'since', now)
end
local f = fact(origin, key_json, 'room_users', sid, true)
redis.call('PUBLISH', channel, f)
return {'ok', f}
"#,
    )
});

/// ARGV: origin, key JSON, member, event, time ("" = the current position), track JSON
/// ("" = unchanged), rate ("" = unchanged), now, start (the instant it takes effect, ≥ now),
/// channel. Host only. The rules mirror `rooms::model::PlayState::after`: "the current
/// position" is where the room's timeline is at `start`, so nothing jumps.
/// Returns `{"not_found"}`, `{"not_host"}` or `{"ok", fact}`.
pub static CONTROL: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
local origin, key_json, sid, event, time, track, rate, now, start, channel =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
if redis.call('EXISTS', room) == 0 then return {'not_found'} end
local s = redis.call('HMGET', room, 'host', 'playing', 'time', 'upd', 'rate')
if s[1] ~= sid then return {'not_host'} end
local playing = s[2]
local old_rate = tonumber(s[5] or '1')
local current = tonumber(s[3])
if playing == '1' then
  current = current + math.max(0, tonumber(start) - tonumber(s[4])) / 1000 * old_rate
end
if time == '' then time = string.format('%.17g', current) end
if event == 'track_change' then
  playing = '1'
  time = '0'
  redis.call('HSET', room, 'track', track)
elseif event == 'play' then
  playing = '1'
elseif event == 'pause' then
  playing = '0'
elseif event == 'set_rate' then
  redis.call('HSET', room, 'rate', rate)
end
redis.call('HSET', room, 'playing', playing, 'time', time, 'upd', start)
local f = fact(origin, key_json, event, sid, true)
redis.call('PUBLISH', channel, f)
return {'ok', f}
"#,
    )
});

/// After an outage: merges this instance's view of a room into the shared one.
/// ARGV: origin, key JSON, key, instance, instance base (owners starting with it are this
/// process under any epoch), id JSON, created, track JSON, playing, time, upd, rate, host
/// hint, hint's host-since, now, channel, then the local members in join order.
/// Membership: this process's members that are gone are removed, present ones are added (or
/// re-owned). Play state: the newer one (by `upd`) wins. Host: of the stored host and the
/// hint, whichever is a member and has held the role longer (a host promoted only because
/// its instance was cut off does not displace one that never lost it); else the longest
/// present member. Returns `{"ok", fact}` or `{"deleted", fact}`.
pub static RECONCILE: LazyLock<Script> = LazyLock::new(|| {
    room_script(
        r#"
local origin, key_json, key, inst, base, id_json, created, track, playing, time, upd, rate,
  hint, hint_since, now, channel =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10],
  ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16]
local first_member = 17
local local_members = {}
for i = first_member, #ARGV do local_members[ARGV[i]] = true end
if redis.call('EXISTS', room) == 0 then
  redis.call('HSET', room, 'id', id_json, 'host', '', 'since', now, 'track', track,
    'playing', playing, 'time', time, 'upd', upd, 'rate', rate, 'created', created, 'v', 0)
  redis.call('SADD', rooms, key)
elseif tonumber(upd) > tonumber(redis.call('HGET', room, 'upd')) then
  redis.call('HSET', room, 'track', track, 'playing', playing, 'time', time, 'upd', upd,
    'rate', rate)
end
local owned = redis.call('HGETALL', owners)
for i = 1, #owned, 2 do
  local sid, owner = owned[i], owned[i + 1]
  if string.sub(owner, 1, #base) == base and not local_members[sid] then
    redis.call('ZREM', members, sid)
    redis.call('HDEL', owners, sid)
  end
end
for i = first_member, #ARGV do
  if not redis.call('ZSCORE', members, ARGV[i]) then
    redis.call('ZADD', members, next_version(), ARGV[i])
  end
  redis.call('HSET', owners, ARGV[i], inst)
end
if redis.call('ZCARD', members) == 0 then
  local f = deleted(origin, key_json, key)
  redis.call('PUBLISH', channel, f)
  return {'deleted', f}
end
local host = redis.call('HGET', room, 'host')
local since = tonumber(redis.call('HGET', room, 'since') or now)
local host_ok = host ~= '' and redis.call('ZSCORE', members, host)
local hint_ok = hint ~= '' and redis.call('ZSCORE', members, hint)
if hint_ok and (not host_ok or tonumber(hint_since) < since) then
  redis.call('HSET', room, 'host', hint, 'since', hint_since)
elseif not host_ok then
  redis.call('HSET', room, 'host', redis.call('ZRANGE', members, 0, 0)[1], 'since', now)
end
local f = fact(origin, key_json, 'reconcile', '', true)
redis.call('PUBLISH', channel, f)
return {'ok', f}
"#,
    )
});
