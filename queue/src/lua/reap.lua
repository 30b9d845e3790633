-- Return jobs whose lease expired (their worker died or stalled) to the ready list. The
-- expired attempt counts: a job that keeps killing its worker ends in the dead letters.
-- Safe to run from any number of processes at once.
-- KEYS: inflight, jobs, ready, errors, dead, stats, signal, [alert ready, alert jobs, alert signal, alert stats]
-- ARGV: max_attempts, limit, queue name, alert template ('' = none)
-- Returns { requeued, buried }
local max_attempts, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
local requeued, buried = 0, 0
local k = { dead = KEYS[5], jobs = KEYS[2], errors = KEYS[4], stats = KEYS[6],
  a_ready = KEYS[8], a_jobs = KEYS[9], a_signal = KEYS[10], a_stats = KEYS[11] }
for _, m in ipairs(expired) do
  redis.call('ZREM', KEYS[1], m)
  local id, attempt, worker = split3(m)
  attempt = tonumber(attempt)
  if redis.call('HEXISTS', KEYS[2], id) == 1 then
    local line = cjson.encode({ attempt = attempt, at = now, class = 'transient', code = 'queue.lease_expired',
      message = 'lease expired: worker ' .. tostring(worker) .. ' stopped renewing it', worker = worker })
    local errs = append_error(KEYS[4], id, line)
    if attempt >= max_attempts then
      bury(k, ARGV[3], id, attempt, 'lease expired on the last attempt', errs, now, ARGV[4])
      buried = buried + 1
    else
      -- to the consuming end: a recovered job should not wait behind the whole backlog
      redis.call('RPUSH', KEYS[3], now .. '|' .. id .. '|' .. attempt)
      requeued = requeued + 1
    end
  end
end
if requeued > 0 then
  redis.call('HINCRBY', KEYS[6], 'recovered', requeued)
  signal(KEYS[7])
end
return { requeued, buried }
