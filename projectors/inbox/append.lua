-- append.lua: one inbox's entries of a batch, on Redis Cluster (a
-- transaction cannot span the slots of a batch's inboxes; a script per
-- inbox pipelines them, one round trip per master).
-- KEYS[1] the inbox stream, KEYS[2] its byte counter.
-- ARGV[1] the window (MAXLEN ~, 0: none), ARGV[2] the entries' bytes,
-- then per entry: its field count n, then its n field names and values.
-- Returns {prev, id..., bytes}: the inbox's last entry id before the
-- entries ("" if none), each entry's id in order, the counter after.
local out = {''}
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
	out[1] = last[1][1]
end
local i = 3
while i <= #ARGV do
	local n = tonumber(ARGV[i])
	local args = {KEYS[1]}
	if ARGV[1] ~= '0' then
		args[#args + 1] = 'MAXLEN'
		args[#args + 1] = '~'
		args[#args + 1] = ARGV[1]
	end
	args[#args + 1] = '*'
	for j = 1, n do
		args[#args + 1] = ARGV[i + j]
	end
	out[#out + 1] = redis.call('XADD', unpack(args))
	i = i + n + 1
end
out[#out + 1] = redis.call('INCRBY', KEYS[2], ARGV[2])
return out
