-- Promote due delayed jobs (bounded), then lease up to ARGV[1] ready jobs.
-- KEYS: ready, inflight, jobs, delayed, signal
-- ARGV: max, lease_ms, worker, promote_limit
-- Returns { now, next_due_or_-1, id1, attempt1, env1, ready_ms1, id2, ... }
local max, lease, worker, plimit = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, plimit)
if #due > 0 then
  for _, m in ipairs(due) do redis.call('LPUSH', KEYS[1], now .. '|' .. m) end
  redis.call('ZREM', KEYS[4], unpack(due))
end
local out = { now, -1 }
local popped = redis.call('RPOP', KEYS[1], max)
if popped then
  for _, e in ipairs(popped) do
    local ready_ms, id, used = split3(e)
    local env = redis.call('HGET', KEYS[3], id)
    if env then
      local attempt = tonumber(used) + 1
      redis.call('ZADD', KEYS[2], now + lease, id .. '|' .. attempt .. '|' .. worker)
      out[#out + 1] = id
      out[#out + 1] = attempt
      out[#out + 1] = env
      out[#out + 1] = ready_ms
    end
    -- an element without a job body belongs to a discarded job: dropping it is the cleanup
  end
  -- more work waiting: pass the wake-up on to another idle consumer
  if redis.call('LLEN', KEYS[1]) > 0 then signal(KEYS[5]) end
end
local head = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if head[2] ~= nil then out[2] = tonumber(head[2]) end
return out
