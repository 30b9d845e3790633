-- A shared rate budget (GCRA with reservations, a pause, and additive increase), for callers
-- whose writes one upstream limits per tenant across every worker process.
-- KEYS: bucket 1 .. bucket n (hashes: tat, rate, paused, dec_at, inc_at), reservations (ZSET,
--       holder -> slot ms)
-- ARGV: holder, cost, n, then per bucket: max_rate (per s), min_rate, burst, recover_ms,
--       step (per s, per s of recovery)
-- Returns {1, 0, rate*1000} granted now | {0, wait_ms, rate*1000} a slot is reserved (or held)
--
-- A caller that is not granted gets a reserved slot and the time until it: it comes back then
-- and is granted on its reservation without spending the budget again, so waiting callers are
-- spread over the budget instead of all retrying at once. A pause (an upstream's Retry-After)
-- moves every reservation behind it.
local now = now_ms()
local holder, cost, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local resv = KEYS[n + 1]
redis.call('ZREMRANGEBYSCORE', resv, '-inf', now - 3600000)
local b, paused_until = {}, 0
for i = 1, n do
  local a = 3 + (i - 1) * 5
  local maxr, minr, burst = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local recover, step = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local h = redis.call('HMGET', KEYS[i], 'tat', 'rate', 'paused', 'dec_at', 'inc_at')
  local tat, rate, paused = tonumber(h[1]) or 0, tonumber(h[2]) or maxr, tonumber(h[3]) or 0
  local dec_at, inc_at = tonumber(h[4]) or 0, tonumber(h[5]) or now
  if rate > maxr then rate = maxr end
  if rate < minr then rate = minr end
  -- additive increase: slowly back up once no throttling came for `recover` ms
  local since = math.max(inc_at, dec_at + recover)
  if rate < maxr and now > since then
    rate = math.min(maxr, rate + step * (now - since) / 1000)
  end
  if paused > paused_until then paused_until = paused end
  b[i] = { tat = tat, rate = rate, burst = burst }
end
local function save()
  for i = 1, n do
    redis.call('HSET', KEYS[i], 'tat', b[i].tat, 'rate', b[i].rate, 'inc_at', now)
    redis.call('PEXPIRE', KEYS[i], 86400000)
  end
end
local slot = redis.call('ZSCORE', resv, holder)
if slot then
  slot = tonumber(slot)
  if now >= paused_until and slot <= now + 2 then
    redis.call('ZREM', resv, holder)
    save()
    return { 1, 0, math.floor(b[1].rate * 1000) }
  end
  if now >= paused_until then
    save()
    return { 0, slot - now, math.floor(b[1].rate * 1000) }
  end
  -- a pause came after the reservation: queue up again behind it
  redis.call('ZREM', resv, holder)
end
local at = math.max(now, paused_until)
for i = 1, n do
  local t = 1000 / b[i].rate
  local allow = b[i].tat + (cost - 1) * t - (b[i].burst - 1) * t
  if allow > at then at = allow end
end
for i = 1, n do
  b[i].tat = math.max(b[i].tat, at) + cost * 1000 / b[i].rate
end
save()
if at <= now then return { 1, 0, math.floor(b[1].rate * 1000) } end
redis.call('ZADD', resv, at, holder)
redis.call('PEXPIRE', resv, 86400000)
return { 0, math.ceil(at - now), math.floor(b[1].rate * 1000) }
