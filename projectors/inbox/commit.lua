-- commit.lua: moves a partition's checkpoint from After to To and applies the
-- batch's net changes to the group member sets, atomically, if the batch's
-- token is still current and the checkpoint is still After. The membership
-- the next batch reads is therefore always exactly the one at the checkpoint.
--
-- KEYS[1]     the partition's checkpoint hash (fields pos, token)
-- KEYS[2..n]  per group changed by the batch: its member set, its history hash
-- ARGV[1]     token, ARGV[2] After, ARGV[3] To
-- then per group, in KEYS order:
--   "d"                          delete the set and the hash (dissolved group)
--   "s", A, A x user, R, R x user, H, H x (field, value), D, D x field
--                                add A users, remove R users, set H fields
--                                of the hash, delete D fields
--
-- Result: {"F", stored token}, {"M", pos}, or {"O"} after the changes.
--
-- fenced comes from internal/luascript's prelude.

local call, argv, num = redis.call, ARGV, tonumber
local ckpt = KEYS[1]
local refused = fenced(ckpt, argv[1], argv[2])
if refused then return refused end

-- each sends n arguments from argv[a] on in chunks (unpack has a stack limit).
local function each(cmd, key, a, n)
  local i = a
  while i < a + n do
    local j = math.min(i + 999, a + n - 1)
    call(cmd, key, unpack(argv, i, j))
    i = j + 1
  end
end

local a = 4
for k = 2, #KEYS, 2 do
  local key, hist = KEYS[k], KEYS[k + 1]
  if argv[a] == "d" then
    call("DEL", key, hist)
    a = a + 1
  else
    local n = num(argv[a + 1])
    each("SADD", key, a + 2, n)
    a = a + 2 + n
    n = num(argv[a])
    each("SREM", key, a + 1, n)
    a = a + 1 + n
    n = num(argv[a])
    each("HSET", hist, a + 1, 2 * n)
    a = a + 1 + 2 * n
    n = num(argv[a])
    each("HDEL", hist, a + 1, n)
    a = a + 1 + n
  end
end
call("HSET", ckpt, "pos", argv[3], "token", argv[1])
return {"O"}
