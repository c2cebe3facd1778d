-- append.lua: atomically applies a batch of independent append transactions
-- to ONE partition. Every key shares the partition's hash tag, so the script
-- is valid on Redis Cluster. Group commit sends many transactions in one call;
-- each transaction succeeds or fails on its own, in order.
--
-- KEYS[1]  the partition log stream
-- KEYS[2]  the partition's heads hash: field <agg>, value "v" or "v:s"
-- ARGV[1]  idempotency TTL in seconds
-- ARGV[2]  number of transactions
-- ARGV[3]  number of head fields H, then H x aggregate: every aggregate the
--          transactions name (guards and streams), read in one HMGET
-- then, per transaction (keys consumed from KEYS in the same order):
--   idem flag "1"/"0"                              [KEYS: idempotency key if "1"]
--   guard count G, then G x (aggregate, expected version)
--   stream count S, then per stream:
--     expected kind ("a" any, "n" no stream, "e" exact), expected version,
--     keep ("1": also append to the aggregate's own stream), event count N,
--     aggregate                                    [KEYS: history if keep, cells]
--     then N x (event id, sequenced "1"/"0", data, cell mode, cell args):
--       cell mode "-": no cell; "s": 1 arg, the value stored at this event's seq;
--       "x": 3 args (seq, expected value, new value), a compare-and-set.
--
-- Result: one string per transaction:
--   "O;" .. version:seq:position for each event, joined by ";" (the caller
--          knows the event ids)
--   "D;" .. id:version:seq:position for each event of the first execution
--          (idempotent retry: the stored record)
--   "V;" .. stream index .. ";" .. actual version   (version conflict)
--   "G;" .. guard index .. ";" .. actual version    (guard conflict)
--   "C;" .. stream index .. ";" .. event index      (cell conflict)
--
-- Heads are read in one HMGET per call and written in one HSET at the end:
-- per event the script calls XADD, HSET of a cell if any, and GET and SET
-- of the idempotency record if the transaction has a key.

-- Locals: globals are slow to reach from a script.
local argv, keys, call, num, find, sub = ARGV, KEYS, redis.call, tonumber, string.find, string.sub
local log, heads = keys[1], keys[2]
local ttl = argv[1]
local ntx = num(argv[2])
local nheads = num(argv[3])
local hv, hs, dirty = {}, {}, {}

-- Redis' Lua takes at most a few thousand arguments per call: chunk.
local chunk = 500
for i = 4, 3 + nheads, chunk do
  local last = math.min(i + chunk - 1, 3 + nheads)
  local r = call("HMGET", heads, unpack(argv, i, last))
  for j = i, last do
    local raw, agg = r[j - i + 1], argv[j]
    if raw then
      local c = find(raw, ":", 1, true)
      if c then
        hv[agg], hs[agg] = num(sub(raw, 1, c - 1)), num(sub(raw, c + 1))
      else
        hv[agg], hs[agg] = num(raw), 0
      end
    else
      hv[agg], hs[agg] = 0, 0
    end
  end
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
      local have = hv[argv[a]]
      if have ~= num(argv[a + 1]) then failure = "G;" .. g .. ";" .. have end
    end
    a = a + 2
  end
  local ns = num(argv[a]); a = a + 1
  for s = 1, ns do
    local kind, keep, ne = argv[a], argv[a + 2] == "1", num(argv[a + 3])
    if not failure and kind ~= "a" then
      local have = hv[argv[a + 4]]
      if (kind == "n" and have ~= 0) or (kind == "e" and have ~= num(argv[a + 1])) then
        failure = "V;" .. s .. ";" .. have
      end
    end
    a = a + 5
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
  local res, rec = {}, nil
  local idemKey
  if argv[a] == "1" then idemKey = keys[k]; k = k + 1; rec = {} end
  a = a + 1
  local ng = num(argv[a]); a = a + 1 + 2 * ng
  local ns = num(argv[a]); a = a + 1
  for _ = 1, ns do
    local keep, ne, agg = argv[a + 2] == "1", num(argv[a + 3]), argv[a + 4]
    a = a + 5
    local hist
    if keep then hist = keys[k]; k = k + 1 end
    local cells = keys[k]; k = k + 1
    local v, seq = hv[agg], hs[agg]
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
      local part = v .. ":" .. es .. ":" .. pos
      res[#res + 1] = part
      if rec then rec[#rec + 1] = id .. ":" .. part end
    end
    hv[agg], hs[agg] = v, seq
    dirty[agg] = true
  end
  if idemKey then call("SET", idemKey, table.concat(rec, ";"), "EX", ttl) end
  return "O;" .. table.concat(res, ";")
end

local out = {}
local a, k = 4 + nheads, 3
for t = 1, ntx do
  local failure, na, nk = check(a, k)
  if failure then out[t] = failure else out[t] = apply(a, k) end
  a, k = na, nk
end
local hset = {}
for agg in pairs(dirty) do
  hset[#hset + 1] = agg
  if hs[agg] == 0 then hset[#hset + 1] = hv[agg] else hset[#hset + 1] = hv[agg] .. ":" .. hs[agg] end
  if #hset >= 2 * chunk then call("HSET", heads, unpack(hset)); hset = {} end
end
if #hset > 0 then call("HSET", heads, unpack(hset)) end
return out
