-- gatehouse rate limit: evaluates a list of ops, each atomically, in one
-- call. The twin of eval() in store.go and of package algo; store tests
-- hold the two to the same answers on a real redis-server.
--
-- ARGV[1] packs every number, space separated:
--   per op:    now(µs) hits mode nlimits
--              mode 0: all limits admit the hits and all count them, or
--                      none counts; 1: the hits count even when refused;
--              2: a refund, the hits are given back (never below zero)
--   per limit: kind(0 fixed, 1 sliding, 2 gcra) limit p1 p2 ttl(ms)
--              sliding: p1 = window start, p2 = window end (µs)
--              gcra:    p1 = emission interval (µs), p2 = burst
-- KEYS, in order: fixed and gcra one key; sliding the current window's key
-- then the previous window's.
-- Returns, per op: applied(0|1), then per limit the state read before the
-- op: fixed {count, 0}, sliding {prev, curr}, gcra {tat, 0}.
local a = {}
for n in string.gmatch(ARGV[1], '%S+') do a[#a + 1] = tonumber(n) end
local function fmt(n) return string.format('%.0f', n) end
local out, k, i = {}, 1, 1
while i <= #a do
  local now, hits, mode, n = a[i], a[i + 1], a[i + 2], a[i + 3]
  i = i + 4
  local ok, st, i0, k0 = true, {}, i, k
  for j = 1, n do
    local kind, lim, p1, p2 = a[i], a[i + 1], a[i + 2], a[i + 3]
    local x, y = tonumber(redis.call('GET', KEYS[k]) or 0), 0
    if kind == 1 then
      y = x
      x = tonumber(redis.call('GET', KEYS[k + 1]) or 0)
      if x * (p2 - now) / (p2 - p1) + y + hits > lim then ok = false end
      k = k + 2
    elseif kind == 2 then
      local tat = x
      if tat < now then tat = now end
      if hits > p2 or tat + hits * p1 > now + p2 * p1 then ok = false end
      k = k + 1
    else
      if x + hits > lim then ok = false end
      k = k + 1
    end
    st[2 * j - 1], st[2 * j] = x, y
    i = i + 5
  end
  local applied = ok or mode ~= 0
  if applied and hits > 0 then
    local i2, k2 = i0, k0
    for j = 1, n do
      local kind, p1, ttl = a[i2], a[i2 + 2], a[i2 + 4]
      local x, y = st[2 * j - 1], st[2 * j]
      if mode == 2 then
        if kind == 2 then
          if x > now then
            local tat = x - hits * p1
            if tat > now then
              redis.call('SET', KEYS[k2], fmt(tat), 'PX', fmt(math.ceil((tat - now) / 1000)))
            else
              redis.call('DEL', KEYS[k2])
            end
          end
        else
          -- fixed: x is the count; sliding: y the current count, x the
          -- previous window's, refunded once the current one is empty.
          local cur = x
          if kind == 1 then cur = y end
          local c = math.min(math.max(cur, 0), hits)
          if c > 0 then redis.call('DECRBY', KEYS[k2], fmt(c)) end
          if kind == 1 then
            local p = math.min(math.max(x, 0), hits - c)
            if p > 0 then redis.call('DECRBY', KEYS[k2 + 1], fmt(p)) end
          end
        end
      elseif kind == 2 then
        local tat = x
        if tat < now then tat = now end
        tat = tat + hits * p1
        redis.call('SET', KEYS[k2], fmt(tat), 'PX', fmt(math.max(1, math.ceil((tat - now) / 1000))))
      else
        if redis.call('INCRBY', KEYS[k2], fmt(hits)) == hits then
          redis.call('PEXPIRE', KEYS[k2], fmt(ttl))
        end
      end
      if kind == 1 then k2 = k2 + 2 else k2 = k2 + 1 end
      i2 = i2 + 5
    end
  end
  out[#out + 1] = applied and 1 or 0
  for j = 1, 2 * n do out[#out + 1] = st[j] end
end
return out
