-- commit.lua: checks a batch's fencing token and checkpoint and, if asked,
-- moves the checkpoint. Run twice per batch: before the batch's writes as a
-- check (ARGV[3] empty: nothing changes) and after them to move the
-- checkpoint from After to To.
--
-- KEYS[1]  the partition's checkpoint hash (fields pos, token)
-- ARGV[1]  the batch's token, decimal
-- ARGV[2]  the batch's After position ("<ms>-<seq>")
-- ARGV[3]  the batch's To position, or "" to only check
--
-- Result: {"F", stored token} when a newer token was claimed, {"M", pos} when
-- the checkpoint is not After, else {"O"}.

-- newer compares two tokens as redisckpt's claim.lua does (see there);
-- keep the two the same.
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

local ckpt = KEYS[1]
local cur = redis.call("HGET", ckpt, "token")
if cur and newer(cur, ARGV[1]) then return {"F", cur} end
local pos = redis.call("HGET", ckpt, "pos") or "0-0"
if pos ~= ARGV[2] then return {"M", pos} end
if ARGV[3] ~= "" then
  redis.call("HSET", ckpt, "pos", ARGV[3], "token", ARGV[1])
end
return {"O"}
