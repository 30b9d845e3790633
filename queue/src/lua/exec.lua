-- Atomic commit: optionally acknowledges one leased job, then enqueues jobs and applies
-- writes, all or nothing. Checks (lease, guards, duplicates) run before any write.
--
-- ARGV[1] = lease member of the job being acknowledged, or '' for a plain commit
-- ARGV[2] = id of that job
-- ARGV[3] = completed-job retention in ms (0 = delete at once)
-- KEYS[1..5] = inflight, jobs, errors, stats, done of the acknowledged job's queue
--              (any key of the namespace when ARGV[1] is '')
-- ARGV[4..] = ops, each an opcode followed by its operands (key operands are KEYS indexes):
--   G keyidx op field nvals v1..vn     guard: op is 'heq' (hash field equals v1), 'hin'
--                                      (field is one of v1..vn), 'habs' (field absent),
--                                      'kabs' (key absent), 'keq' (string key equals v1)
--   J ready delayed jobs signal stats idemidx id env due_ms delay_ms idem_ttl_ms
--                                      enqueue a job (due_ms 0 and delay_ms 0: ready now)
--   W cmd keyidx nargs a1..an          write, cmd from a fixed allow-list
-- Returns {'ok', now} | {'stale'} | {'guard', n} | {'dup', id, existing_id}
local member, acked_id, retention = ARGV[1], ARGV[2], tonumber(ARGV[3])
local allowed = { HSET = 1, HSETNX = 1, HDEL = 1, HINCRBY = 1, XADD = 1, ZADD = 1, ZREM = 1,
  SADD = 1, SREM = 1, SET = 1, DEL = 1, PEXPIRE = 1, PERSIST = 1, RPUSH = 1, LPUSH = 1, INCR = 1 }

-- Phase 1: checks, no writes.
if member ~= '' and redis.call('ZSCORE', KEYS[1], member) == false then
  return { 'stale' }
end
local i, n_guard = 4, 0
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'G' then
    n_guard = n_guard + 1
    local key, gop, field, nv = KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
    local ok
    if gop == 'kabs' then
      ok = redis.call('EXISTS', key) == 0
    elseif gop == 'keq' then
      ok = redis.call('GET', key) == ARGV[i + 5]
    else
      local v = redis.call('HGET', key, field)
      if gop == 'habs' then
        ok = v == false
      elseif gop == 'heq' then
        ok = v == ARGV[i + 5]
      else -- hin
        ok = false
        for j = 1, nv do if v == ARGV[i + 4 + j] then ok = true end end
      end
    end
    if not ok then return { 'guard', n_guard } end
    i = i + 5 + nv
  elseif op == 'J' then
    -- a plain commit reports duplicates; an acknowledgement skips successors that exist
    -- already (its lease check makes that unreachable, so this is only a backstop)
    if member == '' then
      local jobs, idem, id = KEYS[tonumber(ARGV[i + 3])], tonumber(ARGV[i + 6]), ARGV[i + 7]
      if idem > 0 then
        local existing = redis.call('GET', KEYS[idem])
        if existing then return { 'dup', id, existing } end
      end
      if redis.call('HEXISTS', jobs, id) == 1 then return { 'dup', id, id } end
    end
    i = i + 12
  elseif op == 'W' then
    if not allowed[ARGV[i + 1]] then return redis.error_reply('grantline: write command not allowed: ' .. ARGV[i + 1]) end
    i = i + 4 + tonumber(ARGV[i + 3])
  else
    return redis.error_reply('grantline: bad op ' .. tostring(op))
  end
end

-- Phase 2: apply.
local now = now_ms()
if member ~= '' then
  redis.call('ZREM', KEYS[1], member)
  if retention > 0 then
    redis.call('ZADD', KEYS[5], now, acked_id)
  else
    redis.call('HDEL', KEYS[2], acked_id)
  end
  redis.call('HDEL', KEYS[3], acked_id, 'w:' .. acked_id)
  redis.call('HINCRBY', KEYS[4], 'completed', 1)
end
i = 4
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'G' then
    i = i + 5 + tonumber(ARGV[i + 4])
  elseif op == 'J' then
    local ready, delayed, jobs, sig, stats = KEYS[tonumber(ARGV[i + 1])], KEYS[tonumber(ARGV[i + 2])],
      KEYS[tonumber(ARGV[i + 3])], KEYS[tonumber(ARGV[i + 4])], KEYS[tonumber(ARGV[i + 5])]
    local idem, id, env = tonumber(ARGV[i + 6]), ARGV[i + 7], ARGV[i + 8]
    local due, delay, ttl = tonumber(ARGV[i + 9]), tonumber(ARGV[i + 10]), tonumber(ARGV[i + 11])
    if delay > 0 then due = now + delay end
    local fresh = not (idem > 0 and redis.call('EXISTS', KEYS[idem]) == 1)
    if fresh then fresh = redis.call('HSETNX', jobs, id, env) == 1 end
    if fresh then
      if idem > 0 then redis.call('SET', KEYS[idem], id, 'PX', ttl) end
      if due > now then
        local head = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
        redis.call('ZADD', delayed, due, id .. '|0')
        -- an idle consumer sleeps until the earliest due time it knew of: wake it if sooner
        if head[2] == nil or due < tonumber(head[2]) then signal(sig) end
      else
        redis.call('LPUSH', ready, now .. '|' .. id .. '|0')
        signal(sig)
      end
      redis.call('HINCRBY', stats, 'enqueued', 1)
    end
    i = i + 12
  else -- W
    local cmd, key, nargs = ARGV[i + 1], KEYS[tonumber(ARGV[i + 2])], tonumber(ARGV[i + 3])
    local args = {}
    for j = 1, nargs do args[j] = ARGV[i + 3 + j] end
    redis.call(cmd, key, unpack(args))
    i = i + 4 + nargs
  end
end
return { 'ok', now }
