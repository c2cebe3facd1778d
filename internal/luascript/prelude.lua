-- prelude.lua: functions shared by the projectors' scripts, put before each
-- script's own text by luascript.New. Only local functions: a script that
-- does not call one is unaffected.

-- newer reports whether fencing token a is newer than token b. Tokens are
-- decimal uint64 strings without leading zeros (redisckpt.FormatToken):
-- compared by length, then as strings (Lua numbers are doubles and lose
-- precision above 2^53).
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end

-- fenced checks a batch against its partition's checkpoint hash ckpt (fields
-- pos, token) before the batch writes: it returns {"F", stored token} when a
-- newer token than token was claimed, {"M", pos} when the checkpoint is not
-- after ("0-0" before the first batch), else nil (the batch may go on).
local function fenced(ckpt, token, after)
  local cur = redis.call("HGET", ckpt, "token")
  if cur and newer(cur, token) then return {"F", cur} end
  local pos = redis.call("HGET", ckpt, "pos") or "0-0"
  if pos ~= after then return {"M", pos} end
  return nil
end
