-- Counts an attempt in a fixed window and refuses it over the limit.
-- Returns 0 when the attempt may proceed, or the milliseconds until the
-- window ends.
--
-- KEYS[1]  the counter
-- ARGV[1]  attempts per window
-- ARGV[2]  window, ms
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if n > tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl <= 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return ttl
end
return 0
