-- Appends one entry to a user's inbox, then trims the oldest entries while
-- the inbox holds more than the window of entries or more than the quota of
-- bytes, never the entry just appended. An entry's bytes are the lengths of
-- its field names and values; the inbox's running total lives in KEYS[2].
--
-- KEYS[1]  the inbox stream
-- KEYS[2]  the inbox's byte count (string)
-- ARGV[1]  window: most entries kept
-- ARGV[2]  quota: most bytes kept
-- ARGV[3..] field, value, field, value, ... of the entry
--
-- Returns the new entry's id.
local window, quota = tonumber(ARGV[1]), tonumber(ARGV[2])
local fields, size = {}, 0
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
  size = size + #ARGV[i]
end
local id = redis.call('XADD', KEYS[1], '*', unpack(fields))
local len = redis.call('XLEN', KEYS[1])
local bytes
if len == 1 then
  -- A new (or recreated) inbox: its count starts here.
  bytes = size
  redis.call('SET', KEYS[2], bytes)
else
  bytes = redis.call('INCRBY', KEYS[2], size)
end
if len <= window and bytes <= quota then
  return id
end

local dropped, removed, last, start = 0, 0, nil, '-'
local function over()
  return len - dropped > 1 and (len - dropped > window or bytes - removed > quota)
end
while over() do
  local batch = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 32)
  if #batch == 0 then
    break
  end
  for _, e in ipairs(batch) do
    if not over() then
      break
    end
    local n = 0
    for _, v in ipairs(e[2]) do
      n = n + #v
    end
    dropped, removed, last = dropped + 1, removed + n, e[1]
    start = '(' .. e[1]
  end
end
if last then
  -- MINID keeps the entries at or above the id right after the last dropped.
  local ms, seq = string.match(last, '^(%d+)-(%d+)$')
  redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. string.format('%.0f', tonumber(seq) + 1))
  if redis.call('DECRBY', KEYS[2], removed) < 0 then
    -- Entries written before the count existed were never counted.
    redis.call('SET', KEYS[2], 0)
  end
end
return id
