-- Record a failed attempt of a leased job: retry it later, or bury it in the dead letters.
-- KEYS: inflight, jobs, delayed, errors, dead, stats, signal, [alert ready, alert jobs, alert signal, alert stats]
-- ARGV: member, id, attempt, class (transient|throttled|permanent), delay_ms, max_attempts,
--       max_throttled, error_line (JSON), queue name, alert template ('' = none)
-- Returns {'retry', due_ms} | {'dead', stream_id} | {'stale'}
local member, id, attempt, class = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local delay, max_attempts, max_throttled = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('ZREM', KEYS[1], member) == 0 then return { 'stale' } end
local now = now_ms()
local errs = append_error(KEYS[4], id, ARGV[8])
local used = attempt
local exhausted = attempt >= max_attempts
if class == 'throttled' then
  used = attempt - 1 -- an upstream asking us to slow down does not consume an attempt
  local _, throttles = string.gsub(errs, '"class":"throttled"', '')
  exhausted = throttles > max_throttled
end
if class ~= 'permanent' and not exhausted then
  redis.call('ZADD', KEYS[3], now + delay, id .. '|' .. used)
  redis.call('HINCRBY', KEYS[6], class == 'throttled' and 'throttled' or 'retried', 1)
  local head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if tonumber(head[2]) >= now + delay then signal(KEYS[7]) end
  return { 'retry', now + delay }
end
local reason = 'retries exhausted'
if class == 'permanent' then reason = 'permanent failure' end
if class == 'throttled' then reason = 'throttled too often' end
local k = { dead = KEYS[5], jobs = KEYS[2], errors = KEYS[4], stats = KEYS[6],
  a_ready = KEYS[8], a_jobs = KEYS[9], a_signal = KEYS[10], a_stats = KEYS[11] }
return { 'dead', bury(k, ARGV[9], id, attempt, reason, errs, now, ARGV[10]) }
