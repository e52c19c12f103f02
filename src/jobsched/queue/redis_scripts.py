"""The Lua scripts of the Redis Streams queue: each state change that spans commands.

A script runs atomically, so what it decides from one reply still holds when it
acts on it: no entry is delivered or trimmed between the look and the change.
"""

from __future__ import annotations

# Read deliveries for one claim, in priority order, up to a limit.
#
# Streams and the group are created first when missing (MKSTREAM, from id 0): a
# Redis restarted empty loses both, and a group made from 0 still delivers every
# entry published before any worker came. Then, stream by stream (highest level
# first), deliveries another consumer left idle too long are taken over (XAUTOCLAIM,
# resuming from the caller's cursor so long PELs are walked over several calls)
# and new entries are read (XREADGROUP), until `limit` entries are held.
#
# KEYS: the streams, highest priority first.
# ARGV: group, consumer, limit, reclaim min idle in ms (-1: no reclaim this time),
#       then one XAUTOCLAIM cursor per stream.
# Returns {cursors, deliveries}: the next cursor per stream, and flat triples
# (1-based stream index, entry id, run id or '') in the order taken.
READ_DELIVERIES = """
local group, consumer = ARGV[1], ARGV[2]
local remaining = tonumber(ARGV[3])
local min_idle_ms = tonumber(ARGV[4])
local cursors, deliveries = {}, {}

local function run_id_of(fields)
  if not fields then return '' end
  for i = 1, #fields, 2 do
    if fields[i] == 'run_id' then return fields[i + 1] end
  end
  return ''
end

local function take(index, entries)
  for _, entry in ipairs(entries) do
    deliveries[#deliveries + 1] = index
    deliveries[#deliveries + 1] = entry[1]
    deliveries[#deliveries + 1] = run_id_of(entry[2])
    remaining = remaining - 1
  end
end

for index, key in ipairs(KEYS) do
  -- BUSYGROUP (the usual case) is expected and ignored.
  redis.pcall('XGROUP', 'CREATE', key, group, '0', 'MKSTREAM')
  local cursor = ARGV[4 + index]
  if min_idle_ms >= 0 and remaining > 0 then
    local reply = redis.call(
      'XAUTOCLAIM', key, group, consumer, min_idle_ms, cursor, 'COUNT', remaining)
    cursor = reply[1]
    take(index, reply[2])
  end
  cursors[index] = cursor
  if remaining > 0 then
    local reply = redis.call(
      'XREADGROUP', 'GROUP', group, consumer, 'COUNT', remaining, 'STREAMS', key, '>')
    if reply then take(index, reply[1][2]) end
  end
end
return {cursors, deliveries}
"""

# Maintenance of one stream: bound it, and forget consumers that are gone.
#
# Once the stream is longer than `max_length`, acknowledged entries are trimmed
# (XTRIM MINID ~): everything from the oldest pending entry of any group on, and
# everything not yet delivered to every group, is kept. Consumers (workers that
# stopped) holding no pending entry and idle longer than `consumer_idle_ms` are
# deleted; a live worker that reads again is simply re-created by XREADGROUP.
#
# KEYS[1]: the stream. ARGV: max_length, consumer_idle_ms.
# Returns {entries trimmed, consumers deleted}.
MAINTAIN_STREAM = """
local key = KEYS[1]
local max_length = tonumber(ARGV[1])
local consumer_idle_ms = tonumber(ARGV[2])
if redis.call('EXISTS', key) == 0 then return {0, 0} end

local function as_map(flat)
  local map = {}
  for i = 1, #flat, 2 do map[flat[i]] = flat[i + 1] end
  return map
end

local function older(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  a_ms, b_ms = tonumber(a_ms), tonumber(b_ms)
  if a_ms ~= b_ms then return a_ms < b_ms end
  return tonumber(a_seq) < tonumber(b_seq)
end

local groups = redis.call('XINFO', 'GROUPS', key)
if #groups == 0 then return {0, 0} end

local trimmed = 0
if redis.call('XLEN', key) > max_length then
  local keep_from = nil
  for _, flat in ipairs(groups) do
    local group = as_map(flat)
    local candidate = group['last-delivered-id']
    local pending = redis.call('XPENDING', key, group['name'])
    if pending[1] > 0 then candidate = pending[2] end
    if keep_from == nil or older(candidate, keep_from) then keep_from = candidate end
  end
  trimmed = redis.call('XTRIM', key, 'MINID', '~', keep_from)
end

local deleted = 0
for _, flat in ipairs(groups) do
  local group_name = as_map(flat)['name']
  for _, consumer_flat in ipairs(redis.call('XINFO', 'CONSUMERS', key, group_name)) do
    local consumer = as_map(consumer_flat)
    if consumer['pending'] == 0 and consumer['idle'] >= consumer_idle_ms then
      redis.call('XGROUP', 'DELCONSUMER', key, group_name, consumer['name'])
      deleted = deleted + 1
    end
  end
end
return {trimmed, deleted}
"""
