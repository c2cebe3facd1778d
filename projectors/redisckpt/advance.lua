-- advance.lua: checks a batch's fencing token and checkpoint and, if asked,
-- moves the checkpoint, for projectors whose effects are not in the same
-- Redis transaction as their checkpoint.
--
-- KEYS[1]  the partition's checkpoint hash (fields pos, token)
-- ARGV[1]  the batch's token, decimal
-- ARGV[2]  the batch's After position ("<ms>-<seq>")
-- ARGV[3]  the position to move to, or "" to only check
--
-- Result: {"F", stored token} when a newer token was claimed, {"M", pos} when
-- the checkpoint is not After, else {"O"}.
--
-- fenced comes from internal/luascript's prelude.

local ckpt = KEYS[1]
local refused = fenced(ckpt, ARGV[1], ARGV[2])
if refused then return refused end
if ARGV[3] ~= "" then
  redis.call("HSET", ckpt, "pos", ARGV[3], "token", ARGV[1])
end
return {"O"}
