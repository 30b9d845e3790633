-- Retention: forget completed jobs older than the cutoff (bounded per call) and, when a
-- dead-letter retention is set, trim dead letters older than theirs.
-- KEYS: done, jobs, dead      ARGV: completed_cutoff_ms, limit, dead_cutoff_ms (0 = keep)
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #old > 0 then
  redis.call('HDEL', KEYS[2], unpack(old))
  redis.call('ZREM', KEYS[1], unpack(old))
end
local trimmed = 0
if tonumber(ARGV[3]) > 0 then
  trimmed = redis.call('XTRIM', KEYS[3], 'MINID', ARGV[3])
end
return { #old, trimmed }
