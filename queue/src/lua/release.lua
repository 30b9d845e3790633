-- Give back leased jobs that were fetched but never started (graceful shutdown). The
-- attempt is not consumed and the jobs go to the consuming end of the ready list.
-- KEYS: inflight, ready, signal      ARGV: members...
local now = now_ms()
local n = 0
for i = #ARGV, 1, -1 do
  local m = ARGV[i]
  if redis.call('ZREM', KEYS[1], m) == 1 then
    local id, attempt = split3(m)
    redis.call('RPUSH', KEYS[2], now .. '|' .. id .. '|' .. (tonumber(attempt) - 1))
    n = n + 1
  end
end
if n > 0 then signal(KEYS[3]) end
return n
