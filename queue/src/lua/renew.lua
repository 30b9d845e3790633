-- Extend the leases this process still holds. A lease that is gone (reaped after a stall)
-- is not resurrected: ZADD XX only updates existing members.
-- KEYS: inflight      ARGV: lease_ms, members...
local expiry = now_ms() + tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', expiry, ARGV[i])
end
return n
