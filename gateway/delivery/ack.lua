-- ack.lua: moves a device's cursor forward (internal/inbox: Cursor).
--
-- KEYS[1]  the device's cursor
-- ARGV[1]  the acknowledged inbox id ("<ms>-<seq>")
-- ARGV[2]  the cursor's TTL, milliseconds
--
-- The cursor becomes ARGV[1] only if that is later than the stored one (or
-- none, or a malformed one, is stored); the TTL is refreshed either way.
-- Result: the cursor after the call.

-- parts splits a stream id into its decimal parts.
local function parts(id)
  return string.match(id, "^(%d+)-(%d+)$")
end

-- less compares decimal strings without leading zeros as numbers.
local function less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

local key, id = KEYS[1], ARGV[1]
local cur = redis.call("GET", key)
local forward = true
if cur then
  local cm, cs = parts(cur)
  local im, is = parts(id)
  if cm then
    if cm == im then forward = less(cs, is) else forward = less(cm, im) end
  end
end
if forward then
  redis.call("SET", key, id, "PX", ARGV[2])
  return id
end
redis.call("PEXPIRE", key, ARGV[2])
return cur
