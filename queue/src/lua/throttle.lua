-- An upstream refused a call of this budget (429, or 503 with Retry-After): pause every caller
-- until the time it names, and lower the rate (at most once per pause) so the budget learns
-- what the upstream really allows.
-- KEYS: bucket (hash)
-- ARGV: retry_after_ms, min_rate, factor (0..1), max_rate
-- Returns {paused_until_ms, rate*1000}
local now = now_ms()
local after, minr, factor, maxr = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local h = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'paused', 'dec_at')
local tat, rate, paused, dec_at = tonumber(h[1]) or 0, tonumber(h[2]) or maxr, tonumber(h[3]) or 0, tonumber(h[4]) or 0
local until_ms = now + after
if until_ms > paused then paused = until_ms end
-- the calls already in flight when the first 429 came will see 429s too: one decrease each pause
if now - dec_at >= math.max(1000, after) then
  rate = math.max(minr, rate * factor)
  dec_at = now
end
if tat < paused then tat = paused end
redis.call('HSET', KEYS[1], 'tat', tat, 'rate', rate, 'paused', paused, 'dec_at', dec_at, 'inc_at', now)
redis.call('PEXPIRE', KEYS[1], 86400000)
return { paused, math.floor(rate * 1000) }
