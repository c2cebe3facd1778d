-- claim.lua: records a new owner's fencing token for one partition and
-- returns the checkpoint to resume after.
--
-- KEYS[1]  the partition's checkpoint hash (fields pos, token)
-- ARGV[1]  the claiming token, decimal
--
-- Result: {"F", stored token} when a newer token was claimed before (nothing
-- changes), else {"O", pos} ("0-0" before the first batch).
--
-- newer, the comparison of tokens, comes from internal/luascript's prelude,
-- which the scripts of the projectors that check a token together with
-- their own writes share.

local ckpt = KEYS[1]
local token = ARGV[1]
local cur = redis.call("HGET", ckpt, "token")
if cur and newer(cur, token) then return {"F", cur} end
redis.call("HSET", ckpt, "token", token)
return {"O", redis.call("HGET", ckpt, "pos") or "0-0"}
