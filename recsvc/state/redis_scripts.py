"""Lua scripts of RedisStore's writes: each is one atomic step on the server (key layout: state/base.py).

APPEND is the durable write of `POST /v1/events`: the per-customer dedup, the stream `XADD`, the
customer's capped recent list and the erasure index are one script, so an event is either in all of
them or in none, and a tombstone checked inside the same script cannot race a late event.
Every script names keys of one hash slot in the sharded layout (state/redis_layout.py): APPEND runs
once per bucket of a batch, identifier links are ordered steps (see LINK_COMMIT).
"""

from __future__ import annotations

# KEYS[1] stream; then 4 keys per customer: tomb, events, evids, xids.
# ARGV: cap, ttl, now_ms, dedup_cap, xids_ttl, stream_maxlen (0: untrimmed), slack,
#       then per customer: n, then n triples (event_id, stream JSON, recent-list row JSON).
# Returns {accepted, duplicates, erased}.
# Per customer: one EXISTS (tombstone), the dedup (one ZADD NX for a single event; else one ZMSCORE and
# one ZADD), one XADD per new event (the durable record), one LPUSH and one RPUSH for all its new
# events, two EXPIREs; the list is trimmed once it runs `slack` past the cap, and every 64 index
# entries the index TTL is refreshed, the dedup set bounded and index ids older than the stream dropped.
APPEND = """
local stream = KEYS[1]
local cap, ttl, now, nowf = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[3])
local dcap, xttl, maxlen = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local longest = cap + tonumber(ARGV[7])
local acc, dup, gone = 0, 0, 0
local a, k = 8, 2
local first = nil
local function older(x, y)
  local xm, xs = string.match(x, '(%d+)-(%d+)')
  local ym, ys = string.match(y, '(%d+)-(%d+)')
  xm, ym = tonumber(xm), tonumber(ym)
  if xm ~= ym then return xm < ym end
  return tonumber(xs) < tonumber(ys)
end
local function xadd(js)
  if maxlen > 0 then return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'e', js) end
  return redis.call('XADD', stream, '*', 'e', js)
end
local function push(cmd, key, items)
  local len = 0
  for i = 1, #items, 500 do len = redis.call(cmd, key, unpack(items, i, math.min(i + 499, #items))) end
  return len
end
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  a = a + 1
  local tomb, events, evids, xids = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  k = k + 4
  if redis.call('EXISTS', tomb) == 1 then
    gone = gone + n
  else
    local added, len, xlen = 0, 0, 0
    if n == 1 then  -- the usual case: straight calls, no tables
      if redis.call('ZADD', evids, 'NX', now, ARGV[a]) == 1 then
        added = 1
        xlen = redis.call('RPUSH', xids, xadd(ARGV[a + 1]))
        len = redis.call('LPUSH', events, ARGV[a + 2])
      end
    else
      local eids, seen, z, rows, ids = {}, {}, {}, {}, {}
      for j = 1, n do eids[j] = ARGV[a + 3 * (j - 1)] end
      for i = 1, n, 500 do
        local s = redis.call('ZMSCORE', evids, unpack(eids, i, math.min(i + 499, n)))
        for j = 1, #s do
          if s[j] then seen[eids[i + j - 1]] = true end
        end
      end
      for j = 1, n do
        local eid = eids[j]
        if not seen[eid] then
          seen[eid] = true
          -- now_ms + j/4096: exact in a double, so the dedup set keeps a batch's newest ids first
          z[#z + 1] = string.format('%.17g', nowf + math.min(#z / 2, 4095) / 4096)
          z[#z + 1] = eid
          ids[#ids + 1] = xadd(ARGV[a + 3 * (j - 1) + 1])
          rows[#rows + 1] = ARGV[a + 3 * (j - 1) + 2]
        end
      end
      push('ZADD', evids, z)
      added = #ids
      if added > 0 then
        xlen = push('RPUSH', xids, ids)
        len = push('LPUSH', events, rows)
      end
    end
    dup = dup + n - added
    if added > 0 then
      if len > longest then redis.call('LTRIM', events, 0, cap - 1) end
      redis.call('EXPIRE', events, ttl)
      redis.call('EXPIRE', evids, ttl)
      if xlen == added or math.floor(xlen / 64) ~= math.floor((xlen - added) / 64) then
        redis.call('EXPIRE', xids, xttl)
        redis.call('ZREMRANGEBYRANK', evids, 0, -dcap - 1)
        if xlen > 256 then
          if first == nil then
            local f = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
            first = (f[1] and f[1][1]) or ''
          end
          while first ~= '' do
            local h = redis.call('LINDEX', xids, 0)
            if h and older(h, first) then redis.call('LPOP', xids) else break end
          end
        end
      end
    end
    acc = acc + added
  end
  a = a + 3 * n
end
return {acc, dup, gone}
"""

# KEYS: ident, ident tomb, new profile's meta, new profile's ids.
# ARGV: new id, field (type:hash), identifier record json, ttl, then what a customer key of the
# identifier's bucket has before and after the customer id (an owner with a TTL is an anonymous profile
# made here, so its keys are in this slot: their TTL is refreshed with the identifier's).
# Returns the customer id, or nil when the identifier belongs to an erased customer.
RESOLVE_OR_CREATE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  if redis.call('TTL', KEYS[1]) > 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[4])
    redis.call('EXPIRE', ARGV[5] .. cur .. ARGV[6] .. 'meta', ARGV[4])
    redis.call('EXPIRE', ARGV[5] .. cur .. ARGV[6] .. 'ids', ARGV[4])
  end
  return cur
end
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
redis.call('HSET', KEYS[3], 'anon', '1')
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[4], ARGV[4])
return ARGV[1]
"""

# A recent-list entry is a row (JSON array, ROW_FIELDS in state/base.py: [4] ts, [9] event_id, [13] via,
# last) or, written before rows, a JSON object; these helpers read both.
_ROWS = """
local function row_ts(e) return tonumber(e[4] or e.ts) or 0 end
local function row_id(e) return e[9] or e.event_id end
local function row_via(e) return e[13] or e.via end
-- the entry as a copy of customer `c` through identifier `field` (a row: its last value replaced, the
-- rest of the text kept as written; an object: re-encoded)
local function as_copy(js, e, c, field)
  if e[1] ~= nil then return string.match(js, '^(.*),[^,]*%]$') .. ',' .. cjson.encode(field) .. ']' end
  e.customer_id = c
  e.via = field
  return cjson.encode(e)
end
"""

# drop_via(events, evids, field, ttl, cap): remove from a customer's recent list (the `cap` entries reads
# see) the events copied through identifier `field` (undo an adoption) and forget their ids, so a later
# adoption copies them again.
_DROP_VIA = _ROWS + """
local function drop_via(events, evids, field, ttl, cap)
  local evs = redis.call('LRANGE', events, 0, cap - 1)
  local keep = {}
  for _, js in ipairs(evs) do
    local e = cjson.decode(js)
    if row_via(e) == field then redis.call('ZREM', evids, row_id(e)) else table.insert(keep, js) end
  end
  if #keep ~= #evs then
    redis.call('DEL', events)
    for i = 1, #keep, 500 do
      redis.call('RPUSH', events, unpack(keep, i, math.min(i + 499, #keep)))
    end
    if #keep > 0 then redis.call('EXPIRE', events, ttl) end
  end
end
"""

# Identifier links and unlinks touch the identifier's slot and the slots of two customers, so they are
# ordered steps, each one script on one slot (RedisStore.link_identifier): COMMIT changes the lookup key
# and writes a journal (`<ident>:op`) in the identifier's slot; RELEASE / CLAIM / GIVEBACK bring the
# customers' records in line; the journal is deleted last. Every step is idempotent, so whoever finds
# a journal (a crash between steps) completes it by running the steps again.

# KEYS: 1 ident, 2 ident tomb, 3 journal. ARGV: 1 customer, 2 expected owner ('' none), 3 journal json.
# Returns {status, owner}: 'pending' (a journal exists: complete it first), 'retry' (the owner changed
# since it was read), 'already', 'ok' (committed).
LINK_COMMIT = """
if redis.call('EXISTS', KEYS[3]) == 1 then return {'pending', ''} end
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[2] then return {'retry', cur} end
if cur == ARGV[1] then return {'already', cur} end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[3], ARGV[3])
return {'ok', cur}
"""

# The previous owner gives the identifier up; an anonymous profile not adopted yet (or adopted by this
# customer: a repeated step) is adopted and its recent events returned for copying.
# KEYS: 1 owner ids, 2 owner meta, 3 adoption hash (owner's bucket), 4 owner events.
# ARGV: 1 field (type:hash), 2 customer, 3 cap, 4 owner id. Returns {1, events...} adopted, {0} moved.
LINK_RELEASE = """
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], 'anon') == '1' then
  local by = redis.call('HGET', KEYS[2], 'adopted_by')
  if not by or by == ARGV[2] then
    redis.call('HSET', KEYS[2], 'adopted_by', ARGV[2])
    redis.call('HSET', KEYS[3], ARGV[4], ARGV[2])
    local out = {1}
    for _, js in ipairs(redis.call('LRANGE', KEYS[4], 0, tonumber(ARGV[3]) - 1)) do out[#out + 1] = js end
    return out
  end
end
return {0}
"""

# The customer takes the identifier: its record, and the adopted profile's events copied into its recent
# list (new ids only: a repeated step copies nothing twice).
# KEYS: 1 c tomb, 2 c ids, 3 c events, 4 c evids.
# ARGV: 1 customer, 2 field, 3 record json, 4 adopted profile ('' none), 5 cap, 6 ttl, 7 now_ms,
#       8.. the profile's recent-list entries (newest first). Returns copied events, -1: customer erased.
LINK_CLAIM = _ROWS + """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local rec, copied = ARGV[3], 0
if ARGV[4] ~= '' then rec = string.sub(rec, 1, -2) .. ',"adopted":' .. cjson.encode(ARGV[4]) .. '}' end
redis.call('HSET', KEYS[2], ARGV[2], rec)
if #ARGV >= 8 then
  local all = {}
  local cap = tonumber(ARGV[5])
  for _, js in ipairs(redis.call('LRANGE', KEYS[3], 0, cap - 1)) do
    table.insert(all, {row_ts(cjson.decode(js)), js})
  end
  for i = 8, #ARGV do
    local js = ARGV[i]
    local e = cjson.decode(js)
    if redis.call('ZADD', KEYS[4], 'NX', ARGV[7], row_id(e)) == 1 then
      table.insert(all, {row_ts(e), as_copy(js, e, ARGV[1], ARGV[2])})
      copied = copied + 1
    end
  end
  if copied > 0 then
    table.sort(all, function(x, y) return x[1] > y[1] end)
    redis.call('DEL', KEYS[3])
    for i = 1, math.min(#all, cap) do redis.call('RPUSH', KEYS[3], all[i][2]) end
    redis.call('EXPIRE', KEYS[3], ARGV[6])
    redis.call('EXPIRE', KEYS[4], ARGV[6])
  end
end
return copied
"""

# KEYS: 1 ident, 2 journal. ARGV: 1 customer, 2 adopted profile ('' none), 3 ttl, 4 journal json.
# The identifier goes back to the adopted profile (GIVEBACK checks that it still may) or is dropped.
# Returns 'pending' (complete the journal first), 0 not linked to this customer, 1 committed.
UNLINK_COMMIT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'pending' end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) else redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[2], ARGV[4])
return 1
"""

# The customer drops its record and the events copied through the identifier.
# KEYS: 1 c ids, 2 c events, 3 c evids. ARGV: 1 field, 2 adopted profile ('' none), 3 ttl, 4 cap.
UNLINK_RELEASE = _DROP_VIA + """
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then drop_via(KEYS[2], KEYS[3], ARGV[1], ARGV[3], tonumber(ARGV[4])) end
return 1
"""

# The adopted profile gets its identifier back, if it is still adopted by this customer.
# KEYS: 1 profile meta, 2 adoption hash (its bucket), 3 profile ids. ARGV: 1 customer, 2 field,
# 3 record json, 4 ttl, 5 profile id. Returns 1 given back (now or by an earlier run), 0 not.
UNLINK_GIVEBACK = """
local by = redis.call('HGET', KEYS[1], 'adopted_by')
if by == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'adopted_by')
  redis.call('HDEL', KEYS[2], ARGV[5])
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  return 1
end
if not by and redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then return 1 end
return 0
"""

# KEYS[1] a journal; ARGV[1] its json: delete it only if it is still that one.
DEL_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# An adopted profile was erased: its copied events leave the adopter's list, the record forgets it.
# KEYS: 1 adopter ids, 2 adopter events, 3 adopter evids. ARGV: 1 field, 2 record json, 3 ttl, 4 cap.
UNADOPT = _DROP_VIA + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
drop_via(KEYS[2], KEYS[3], ARGV[1], ARGV[3], tonumber(ARGV[4]))
return 1
"""

# KEYS[1] ident; ARGV[1] customer id: delete the identifier only while it still points at that customer.
DEL_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
