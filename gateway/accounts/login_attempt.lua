-- Reserves a login attempt as a failure before the password is checked, so
-- that parallel attempts cannot all pass the limits (a success gives the
-- reservation back). Returns 0 when the attempt may proceed, or the
-- milliseconds to wait when it is refused (nothing is counted then).
--
-- KEYS[1]  hash of the failures of one username from one address:
--          n (failures), until (ms, ARGV[7]'s clock: no attempt before it)
-- KEYS[2]  counter of the failures from one address, over all usernames
-- ARGV[1]  1 when KEYS[1] is used (the name can be a username), else 0
-- ARGV[2]  failures of a username from an address before delays start
-- ARGV[3]  failures per address within the window (0: not limited)
-- ARGV[4]  window, ms: how long failures count
-- ARGV[5]  first delay, ms; each further failure doubles it
-- ARGV[6]  longest delay, ms
-- ARGV[7]  now, Unix ms, or "" for Redis's clock (TIME): the gateways of a
--          deployment share Redis's clock; tests pass a fake one
local usePair = ARGV[1] == '1'
local pairLimit, addrLimit = tonumber(ARGV[2]), tonumber(ARGV[3])
local window, base, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now = tonumber(ARGV[7])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

if usePair then
  local untilMs = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
  if now < untilMs then
    return untilMs - now
  end
end
if addrLimit > 0 then
  local n = tonumber(redis.call('GET', KEYS[2]) or '0')
  if n >= addrLimit then
    local ttl = redis.call('PTTL', KEYS[2])
    if ttl <= 0 then ttl = 1000 end
    return ttl
  end
  if redis.call('INCR', KEYS[2]) == 1 then
    redis.call('PEXPIRE', KEYS[2], window)
  end
end
if usePair then
  local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
  local ttl = window
  if n >= pairLimit then
    local delay = cap
    local steps = n - pairLimit
    if steps < 40 then
      delay = math.min(base * math.pow(2, steps), cap)
    end
    delay = math.floor(delay)
    redis.call('HSET', KEYS[1], 'until', now + delay)
    ttl = window + delay
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 0
