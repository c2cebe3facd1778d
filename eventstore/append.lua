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

-- Locals: globals are slow to reach from a script.
local argv, keys, call, num = ARGV, KEYS, redis.call, tonumber
local log = keys[1]
local ttl = argv[1]
local ntx = num(argv[2])
local hv, hs, dirty, ndirty = {}, {}, {}, 0

local function head(key)
  local v = hv[key]
  if v == nil then
    local r = call("HMGET", key, "v", "s")
    v = num(r[1]) or 0
    hv[key] = v
    hs[key] = num(r[2]) or 0
  end
  return v
end

-- check walks one transaction from (a, k) without writing; it returns the
-- failure (or nil) and the positions after the transaction.
local function check(a, k)
  local failure
  if argv[a] == "1" then
    local prev = call("GET", keys[k])
    if prev then failure = "D;" .. prev end
    k = k + 1
  end
  a = a + 1
  local ng = num(argv[a]); a = a + 1
  for g = 1, ng do
    if not failure then
      local have = head(keys[k])
      if have ~= num(argv[a]) then failure = "G;" .. g .. ";" .. have end
    end
    a = a + 1; k = k + 1
  end
  local ns = num(argv[a]); a = a + 1
  for s = 1, ns do
    local kind, keep, ne = argv[a], argv[a + 2] == "1", num(argv[a + 3])
    if not failure and kind ~= "a" then
      local have = head(keys[k])
      if (kind == "n" and have ~= 0) or (kind == "e" and have ~= num(argv[a + 1])) then
        failure = "V;" .. s .. ";" .. have
      end
    end
    a = a + 4; k = k + 1
    if keep then k = k + 1 end
    local cells = keys[k]; k = k + 1
    for e = 1, ne do
      local mode = argv[a + 3]
      a = a + 4
      if mode == "x" then
        if not failure and call("HGET", cells, argv[a]) ~= argv[a + 1] then
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
  if argv[a] == "1" then idemKey = keys[k]; k = k + 1 end
  a = a + 1
  local ng = num(argv[a]); a = a + 1 + ng; k = k + ng
  local ns = num(argv[a]); a = a + 1
  for _ = 1, ns do
    local keep, ne = argv[a + 2] == "1", num(argv[a + 3])
    a = a + 4
    local hk = keys[k]; k = k + 1
    local hist
    if keep then hist = keys[k]; k = k + 1 end
    local cells = keys[k]; k = k + 1
    local v = head(hk)
    local seq = hs[hk]
    for _ = 1, ne do
      local id, sequenced, data, mode = argv[a], argv[a + 1] == "1", argv[a + 2], argv[a + 3]
      a = a + 4
      v = v + 1
      local es = 0
      if sequenced then seq = seq + 1; es = seq end
      local pos = call("XADD", log, "*", "v", v, "s", es, "d", data)
      if hist then call("XADD", hist, "*", "v", v, "s", es, "d", data) end
      if mode == "x" then
        call("HSET", cells, argv[a], argv[a + 2]); a = a + 3
      elseif mode == "s" then
        call("HSET", cells, es, argv[a]); a = a + 1
      end
      res[#res + 1] = id .. ":" .. v .. ":" .. es .. ":" .. pos
    end
    hv[hk], hs[hk] = v, seq
    if not dirty[hk] then dirty[hk] = true; ndirty = ndirty + 1 end
  end
  local r = table.concat(res, ";")
  if idemKey then call("SET", idemKey, r, "EX", ttl) end
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
  call("HSET", key, "v", hv[key], "s", hs[key])
end
return out
