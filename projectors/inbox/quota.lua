-- Brings one user's inbox back within its byte quota. The projector keeps a
-- running byte count per inbox with INCRBY beside each XADD (no script on the
-- hot path) and calls this only when the count passed the quota: it sums the
-- entries from the newest, keeps the newest ones whose bytes fit the low-water
-- mark (always at least the newest entry), trims the older ones (XTRIM MINID)
-- and sets the count to the bytes kept. The count only ever over-estimates
-- (entries the window trims are not subtracted), so a call may find nothing
-- to trim; it then just corrects the count. An entry's bytes are the lengths
-- of its field names and values.
--
-- KEYS[1]  the inbox stream
-- KEYS[2]  the inbox's byte count (string)
-- ARGV[1]  low-water mark: most bytes kept
--
-- Returns the bytes kept.
local low = tonumber(ARGV[1])
local total, keep, finish = 0, nil, '+'
while true do
  local batch = redis.call('XREVRANGE', KEYS[1], finish, '-', 'COUNT', 256)
  if #batch == 0 then
    break
  end
  for _, e in ipairs(batch) do
    local n = 0
    for _, v in ipairs(e[2]) do
      n = n + #v
    end
    if keep ~= nil and total + n > low then
      -- e and everything older go; keep is the oldest entry kept.
      redis.call('XTRIM', KEYS[1], 'MINID', keep)
      redis.call('SET', KEYS[2], total)
      return total
    end
    total, keep = total + n, e[1]
  end
  finish = '(' .. batch[#batch][1]
end
redis.call('SET', KEYS[2], total)
return total
