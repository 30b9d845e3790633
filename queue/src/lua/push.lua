-- Enqueue many jobs on one queue in one call, each with its own outcome (a taken
-- idempotency key or id is reported, never overwritten). Counters and the wake-up are
-- written once per call.
-- KEYS: ready, delayed, jobs, signal, stats, idem keys...
-- ARGV: idem_ttl_ms, then per job: id, envelope, due_ms, delay_ms, idem key index (0 = none)
-- Returns per job: '' when enqueued, else the id that holds the key or id.
local ttl = tonumber(ARGV[1])
local now = now_ms()
local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local head_due = tonumber(head[2])
local out, enqueued, wake = {}, 0, false
for i = 2, #ARGV, 5 do
  local id, env, due, delay, idem = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local existing = false
  if idem > 0 then existing = redis.call('GET', KEYS[idem]) end
  if not existing and redis.call('HSETNX', KEYS[3], id, env) == 0 then existing = id end
  if existing then
    out[#out + 1] = existing
  else
    if idem > 0 then redis.call('SET', KEYS[idem], id, 'PX', ttl) end
    if delay > 0 then due = now + delay end
    if due > now then
      redis.call('ZADD', KEYS[2], due, id .. '|0')
      if head_due == nil or due < head_due then wake = true; head_due = due end
    else
      redis.call('LPUSH', KEYS[1], now .. '|' .. id .. '|0')
      wake = true
    end
    enqueued = enqueued + 1
    out[#out + 1] = ''
  end
end
if enqueued > 0 then redis.call('HINCRBY', KEYS[5], 'enqueued', enqueued) end
if wake then signal(KEYS[4]) end
return out
