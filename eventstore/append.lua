-- append.lua: atomically applies a batch of independent append transactions
-- to ONE partition. Every key shares the partition's hash tag, so the script
-- is valid on Redis Cluster. Group commit sends many transactions in one call;
-- each transaction succeeds or fails on its own, in order.
--
-- KEYS[1]  the partition log stream
-- ARGV[1]  idempotency TTL in seconds
-- ARGV[2]  number of transactions
-- then, per transaction (keys consumed from KEYS in the same order):
--   idem flag "1"/"0"                              [KEYS: idempotency key if "1"]
--   guard count G, then G x expected version       [KEYS: G head keys]
--   stream count S, then per stream:
--     expected kind ("a" any, "n" no stream, "e" exact), expected version,
--     keep ("1": also append to the aggregate's own stream), event count N
--                                                  [KEYS: head, history if keep, cells]
--     then N x (event id, sequenced "1"/"0", data, cell mode, cell args):
--       cell mode "-": no cell; "s": 1 arg, the value stored at this event's seq;
--       "x": 3 args (seq, expected value, new value), a compare-and-set.
--
-- Result: one string per transaction:
--   "O;" .. id:version:seq:position for each event, joined by ";"
--   "D;" .. the stored result of the first execution (idempotent retry)
--   "V;" .. stream index .. ";" .. actual version   (version conflict)
--   "G;" .. guard index .. ";" .. actual version    (guard conflict)
--   "C;" .. stream index .. ";" .. event index      (cell conflict)
--
-- Heads are read once per aggregate per call and written once at the end.

local log = KEYS[1]
local ttl = ARGV[1]
local ntx = tonumber(ARGV[2])
local hv, hs, dirty, ndirty = {}, {}, {}, 0

local function head(key)
  local v = hv[key]
  if v == nil then
    local r = redis.call("HMGET", key, "v", "s")
    v = tonumber(r[1]) or 0
    hv[key] = v
    hs[key] = tonumber(r[2]) or 0
  end
  return v
end

-- check walks one transaction from (a, k) without writing; it returns the
-- failure (or nil) and the positions after the transaction.
local function check(a, k)
  local failure
  if ARGV[a] == "1" then
    local prev = redis.call("GET", KEYS[k])
    if prev then failure = "D;" .. prev end
    k = k + 1
  end
  a = a + 1
  local ng = tonumber(ARGV[a]); a = a + 1
  for g = 1, ng do
    if not failure then
      local have = head(KEYS[k])
      if have ~= tonumber(ARGV[a]) then failure = "G;" .. g .. ";" .. have end
    end
    a = a + 1; k = k + 1
  end
  local ns = tonumber(ARGV[a]); a = a + 1
  for s = 1, ns do
    local kind, keep, ne = ARGV[a], ARGV[a + 2] == "1", tonumber(ARGV[a + 3])
    if not failure and kind ~= "a" then
      local have = head(KEYS[k])
      if (kind == "n" and have ~= 0) or (kind == "e" and have ~= tonumber(ARGV[a + 1])) then
        failure = "V;" .. s .. ";" .. have
      end
    end
    a = a + 4; k = k + 1
    if keep then k = k + 1 end
    local cells = KEYS[k]; k = k + 1
    for e = 1, ne do
      local mode = ARGV[a + 3]
      a = a + 4
      if mode == "x" then
        if not failure and redis.call("HGET", cells, ARGV[a]) ~= ARGV[a + 1] then
          failure = "C;" .. s .. ";" .. e
        end
        a = a + 3
      elseif mode == "s" then
        a = a + 1
      end
    end
  end
  return failure, a, k
end

-- apply walks the same transaction again and writes it.
local function apply(a, k)
  local res = {}
  local idemKey
  if ARGV[a] == "1" then idemKey = KEYS[k]; k = k + 1 end
  a = a + 1
  local ng = tonumber(ARGV[a]); a = a + 1 + ng; k = k + ng
  local ns = tonumber(ARGV[a]); a = a + 1
  for _ = 1, ns do
    local keep, ne = ARGV[a + 2] == "1", tonumber(ARGV[a + 3])
    a = a + 4
    local hk = KEYS[k]; k = k + 1
    local hist
    if keep then hist = KEYS[k]; k = k + 1 end
    local cells = KEYS[k]; k = k + 1
    local v = head(hk)
    local seq = hs[hk]
    for _ = 1, ne do
      local id, sequenced, data, mode = ARGV[a], ARGV[a + 1] == "1", ARGV[a + 2], ARGV[a + 3]
      a = a + 4
      v = v + 1
      local es = 0
      if sequenced then seq = seq + 1; es = seq end
      local pos = redis.call("XADD", log, "*", "v", v, "s", es, "d", data)
      if hist then redis.call("XADD", hist, "*", "v", v, "s", es, "d", data) end
      if mode == "x" then
        redis.call("HSET", cells, ARGV[a], ARGV[a + 2]); a = a + 3
      elseif mode == "s" then
        redis.call("HSET", cells, es, ARGV[a]); a = a + 1
      end
      res[#res + 1] = id .. ":" .. v .. ":" .. es .. ":" .. pos
    end
    hv[hk], hs[hk] = v, seq
    if not dirty[hk] then dirty[hk] = true; ndirty = ndirty + 1 end
  end
  local r = table.concat(res, ";")
  if idemKey then redis.call("SET", idemKey, r, "EX", ttl) end
  return "O;" .. r
end

local out = {}
local a, k = 3, 2
for t = 1, ntx do
  local failure, na, nk = check(a, k)
  if failure then out[t] = failure else out[t] = apply(a, k) end
  a, k = na, nk
end
for key in pairs(dirty) do
  redis.call("HSET", key, "v", hv[key], "s", hs[key])
end
return out
