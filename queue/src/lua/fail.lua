-- Record a failed attempt of a leased job: retry it later, or bury it in the dead letters.
-- KEYS: inflight, jobs, delayed, errors, dead, stats, signal, [alert ready, alert jobs, alert signal, alert stats]
-- ARGV: member, id, attempt, class (transient|throttled|wait|conflict|permanent), delay_ms, max_attempts,
--       max_wait_ms, error_line (JSON), queue name, alert template ('' = none)
-- Returns {'retry', due_ms} | {'dead', stream_id} | {'stale'}
--
-- A job that waits (for a shared budget, a lock, an upstream's Retry-After: classes 'wait' and
-- 'throttled'; or to run again on fresh state after its hand-off lost a race: 'conflict') gives
-- its attempt back and adds no line to its error history; the errors hash
-- keeps 'w:<id>' = "<first wait ms>|<waits>", and only a job that has been waiting for longer
-- than max_wait_ms is buried. A conflict's delay doubles with each wait in a row (at most 5 s).
local member, id, attempt, class = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local delay, max_attempts, max_wait = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('ZREM', KEYS[1], member) == 0 then return { 'stale' } end
local now = now_ms()
local k = { dead = KEYS[5], jobs = KEYS[2], errors = KEYS[4], stats = KEYS[6],
  a_ready = KEYS[8], a_jobs = KEYS[9], a_signal = KEYS[10], a_stats = KEYS[11] }
local counters = { throttled = 'throttled', wait = 'waited', conflict = 'conflicted' }
if counters[class] then
  local wkey = 'w:' .. id
  local first, waits = now, 0
  local prev = redis.call('HGET', KEYS[4], wkey)
  if prev then
    local a, b = split3(prev)
    first, waits = tonumber(a) or now, tonumber(b) or 0
  end
  waits = waits + 1
  if class == 'conflict' then
    -- a race lost again and again backs off: doubling from the caller's jittered delay, at most 5 s
    delay = math.min(delay * 2 ^ (math.min(waits, 9) - 1), 5000)
  end
  if now - first <= max_wait then
    redis.call('HSET', KEYS[4], wkey, first .. '|' .. waits)
    redis.call('ZADD', KEYS[3], now + delay, id .. '|' .. (attempt - 1))
    redis.call('HINCRBY', KEYS[6], counters[class], 1)
    local head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    if tonumber(head[2]) >= now + delay then signal(KEYS[7]) end
    return { 'retry', now + delay }
  end
  local errs = append_error(KEYS[4], id, ARGV[8])
  return { 'dead', bury(k, ARGV[9], id, attempt - 1,
    'waited longer than ' .. math.floor(max_wait / 1000) .. ' s (' .. waits .. ' waits)', errs, now, ARGV[10]) }
end
local errs = append_error(KEYS[4], id, ARGV[8])
if class ~= 'permanent' and attempt < max_attempts then
  redis.call('ZADD', KEYS[3], now + delay, id .. '|' .. attempt)
  redis.call('HINCRBY', KEYS[6], 'retried', 1)
  local head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if tonumber(head[2]) >= now + delay then signal(KEYS[7]) end
  return { 'retry', now + delay }
end
local reason = 'retries exhausted'
if class == 'permanent' then reason = 'permanent failure' end
return { 'dead', bury(k, ARGV[9], id, attempt, reason, errs, now, ARGV[10]) }
