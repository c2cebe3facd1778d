-- announce.lua: appends a route change (internal/inbox: RouteChange) to the
-- route change stream, numbered by the counter beside it, so that the inbox
-- projector's route cache follows attaches, revivals and clean detaches.
--
-- KEYS[1]  the route change stream
-- KEYS[2]  the route change counter
-- ARGV[1]  the stream's approximate length cap
-- ARGV[2..5] user, device, gateway, encoded route ("" for a deletion)
--
-- Result: the change's number.

local n = redis.call("INCR", KEYS[2])
redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[1], "*",
  "n", n, "u", ARGV[2], "d", ARGV[3], "g", ARGV[4], "r", ARGV[5])
return n
