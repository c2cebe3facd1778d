-- begin.lua: checks that a batch may be applied and reads the group
-- membership its fan-out starts from, atomically, before anything is written.
--
-- KEYS[1]     the partition's checkpoint hash (fields pos, token)
-- KEYS[2..n]  per group the batch touches: its member set, its history hash
-- ARGV[1]     the batch's token, decimal
-- ARGV[2]     the batch's After position ("<ms>-<seq>")
--
-- Result: {"F", stored token} when a newer token was claimed, {"M", pos} when
-- the checkpoint is not After, else {"O", members of KEYS[2], HGETALL of
-- KEYS[3], ...}.
--
-- fenced comes from internal/luascript's prelude.

local refused = fenced(KEYS[1], ARGV[1], ARGV[2])
if refused then return refused end
local out = {"O"}
for i = 2, #KEYS, 2 do
  out[i] = redis.call("SMEMBERS", KEYS[i])
  out[i + 1] = redis.call("HGETALL", KEYS[i + 1])
end
return out
