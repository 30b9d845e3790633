-- Put a dead letter back on its queue with a fresh attempt budget.
-- KEYS: dead, jobs, ready, signal, stats      ARGV: stream id
-- Returns the job id, or false when there is no such dead letter.
local entry = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entry == 0 then return false end
local f = entry[1][2]
local fields = {}
for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
if fields['job'] == nil or fields['job'] == '' then return redis.error_reply('grantline: dead letter has no job body') end
redis.call('HSET', KEYS[2], fields['id'], fields['job'])
redis.call('LPUSH', KEYS[3], now_ms() .. '|' .. fields['id'] .. '|0')
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[5], 'redriven', 1)
signal(KEYS[4])
return fields['id']
