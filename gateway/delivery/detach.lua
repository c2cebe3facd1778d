-- detach.lua: a device leaves this gateway.
--
-- KEYS[1]  the user's presence hash
-- KEYS[2]  the user's last-seen key
-- ARGV[1]  the device (hash field)
-- ARGV[2]  this gateway's id
-- ARGV[3]  "1": delete the device's route if it names this gateway (a clean
--          detach); "0": leave it to expire
-- ARGV[4]  last seen, Unix milliseconds; "0" writes none
-- ARGV[5]  the last-seen key's TTL, milliseconds
--
-- The last-seen time only moves forward. Result: 1 if a route was deleted.

local deleted = 0
if ARGV[3] == "1" then
  local gateway = ARGV[2]
  local cur = redis.call("HGET", KEYS[1], ARGV[1])
  if cur and string.sub(cur, 1, #gateway + 1) == gateway .. " " then
    deleted = redis.call("HDEL", KEYS[1], ARGV[1])
  end
end
local seen = tonumber(ARGV[4]) or 0
if seen > 0 then
  local cur = tonumber(redis.call("GET", KEYS[2]) or "0") or 0
  if seen > cur then
    redis.call("SET", KEYS[2], ARGV[4], "PX", ARGV[5])
  end
end
return deleted
