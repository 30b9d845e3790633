-- Shared helpers, prepended to every script at load time.
-- Element formats (ids never contain '|'):
--   ready list:   "<ready_ms>|<id>|<attempts_used>"
--   delayed zset: "<id>|<attempts_used>"             scored by due time (ms)
--   in-flight:    "<id>|<attempt>|<worker>"          scored by lease expiry (ms)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function split3(s)
  local a = string.find(s, '|', 1, true)
  if not a then return s, nil, nil end
  local b = string.find(s, '|', a + 1, true)
  if not b then return string.sub(s, 1, a - 1), string.sub(s, a + 1), nil end
  return string.sub(s, 1, a - 1), string.sub(s, a + 1, b - 1), string.sub(s, b + 1)
end

-- Wake one idle consumer of a queue if none is pending a wake-up already.
local function signal(key)
  if redis.call('LLEN', key) == 0 then redis.call('RPUSH', key, '1') end
end

-- Move a dead job into the dead-letter stream and, when an alert queue is configured,
-- enqueue exactly one alert job for this arrival (its id derives from the stream id).
-- k: table with dead, jobs, errors, stats, and optionally a_ready, a_jobs, a_signal
local function bury(k, queue, id, attempts, reason, errs, now, alert_tmpl)
  local env = redis.call('HGET', k.jobs, id) or ''
  local xid = redis.call('XADD', k.dead, '*', 'id', id, 'queue', queue, 'attempts', tostring(attempts),
    'reason', reason, 'errors', errs or '', 'job', env, 'at', tostring(now))
  redis.call('HDEL', k.jobs, id)
  redis.call('HDEL', k.errors, id, 'w:' .. id)
  redis.call('HINCRBY', k.stats, 'dead', 1)
  if alert_tmpl and alert_tmpl ~= '' and k.a_jobs then
    local aid = 'dl-' .. queue .. '-' .. xid
    local body = string.gsub(alert_tmpl, '__XID__', xid)
    body = string.gsub(body, '__JOB__', id)
    if redis.call('HSETNX', k.a_jobs, aid, body) == 1 then
      redis.call('LPUSH', k.a_ready, now .. '|' .. aid .. '|0')
      redis.call('HINCRBY', k.a_stats, 'enqueued', 1)
      signal(k.a_signal)
    end
  end
  return xid
end

local function append_error(errors_key, id, line)
  local prev = redis.call('HGET', errors_key, id)
  local errs = line
  if prev then errs = prev .. '\n' .. line end
  redis.call('HSET', errors_key, id, errs)
  return errs
end
