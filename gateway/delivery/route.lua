-- route.lua: writes a device's presence route (internal/inbox: Presence).
--
-- KEYS[1]  the user's presence hash
-- ARGV[1]  the device (hash field)
-- ARGV[2]  this gateway's id
-- ARGV[3]  the encoded route ("<gateway> <deadline ms>")
-- ARGV[4]  the hash's TTL, milliseconds
-- ARGV[5]  now, Unix milliseconds (the gateway's clock, as in the deadlines)
-- ARGV[6]  "a" on attach (the route is taken whoever held it), "r" on a
--          heartbeat (a live route of another gateway is left alone: the
--          device reconnected there)
--
-- Other devices' dead routes (deadline reached) are removed on the way.
-- Result of "r": 1 if the route was written over this gateway's live route,
-- 2 if it was written where there was none or a dead one (the caller
-- announces it: announce.lua), 0 if another gateway holds it.
-- Result of "a": the id of the gateway whose live route of the device was
-- taken over ("" if none), so that it can be told to let the device go.

local function deadline(v)
  return tonumber(string.match(v, " (%d+)$")) or 0
end

local key, device, gateway = KEYS[1], ARGV[1], ARGV[2]
local now = tonumber(ARGV[5])
local cur = redis.call("HGET", key, device)
local elsewhere = cur and string.sub(cur, 1, #gateway + 1) ~= gateway .. " " and deadline(cur) > now
if ARGV[6] == "r" and elsewhere then
  return 0
end
local revived = not cur or deadline(cur) <= now or string.sub(cur, 1, #gateway + 1) ~= gateway .. " "
redis.call("HSET", key, device, ARGV[3])
local all = redis.call("HGETALL", key)
for i = 1, #all, 2 do
  if all[i] ~= device and deadline(all[i + 1]) <= now then
    redis.call("HDEL", key, all[i])
  end
end
redis.call("PEXPIRE", key, ARGV[4])
if ARGV[6] == "a" then
  if elsewhere then return string.match(cur, "^(%S+) ") or "" end
  return ""
end
if revived then return 2 end
return 1
