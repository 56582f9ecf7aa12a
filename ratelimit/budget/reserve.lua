-- gatehouse cost budget: reserve. The twin of Memory.Reserve (memory.go);
-- the store tests hold the two to the same answers on a real redis-server.
--
-- KEYS[1]  the budget key's set of open reservations (id -> expiry ms)
-- KEYS[2]  this reservation's record
-- KEYS[3…] one counter per limit, for the window holding now
-- ARGV     now(ms) amount hold(ms) onexpiry(0 charge, 1 refund)
--          record-ttl(ms) max-reconcile record-prefix id
--          then per limit: amount counter-ttl(ms)
-- Every key shares the budget key's hash tag: the records of expired
-- reservations (record-prefix .. id) and the counters they name live in
-- the same slot.
--
-- 1. Reconcile: each expired open reservation (at most max-reconcile) is
--    charged at its estimate or refunded, by the rule it was made with.
-- 2. Reserve: every window admits the amount (used + amount <= limit, and
--    a window already spent refuses even an amount of 0) and all are
--    charged, or none is.
-- Returns {admitted(0|1), reconciled, used per limit (after reserving)}.
local now, amt, hold, onexp = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local rttl, maxrec, rprefix, id = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], ARGV[8]
local n = #KEYS - 2
local function fmt(x) return string.format('%.0f', x) end

-- apply adds delta to a record's counters that still exist (a window that
-- ended and expired is not brought back); none goes below zero.
local function apply(rk, cnt, delta)
  if delta == 0 then return end
  for i = 1, cnt do
    local k = redis.call('HGET', rk, 'k' .. i)
    if k and redis.call('EXISTS', k) == 1 then
      if redis.call('INCRBY', k, fmt(delta)) < 0 then redis.call('SET', k, 0, 'KEEPTTL') end
    end
  end
end

local reconciled = 0
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, maxrec)
for _, eid in ipairs(ids) do
  local rk = rprefix .. eid
  local r = redis.call('HMGET', rk, 'st', 'amt', 'chg', 'n', 'x')
  if r[1] == 'o' then
    local nc = tonumber(r[2])
    if r[5] == '1' then nc = 0 end
    apply(rk, tonumber(r[4]), nc - tonumber(r[3]))
    redis.call('HSET', rk, 'st', 'e', 'chg', fmt(nc))
    reconciled = reconciled + 1
  end
  redis.call('ZREM', KEYS[1], eid)
end

local used, fresh, ok = {}, {}, true
for i = 1, n do
  local g = redis.call('GET', KEYS[2 + i])
  fresh[i] = not g
  local u = tonumber(g or '0')
  local lim = tonumber(ARGV[7 + 2 * i])
  used[i] = u
  if u + amt > lim or u >= lim then ok = false end
end
if not ok then
  local out = {0, reconciled}
  for i = 1, n do out[2 + i] = used[i] end
  return out
end
-- A retried reserve with the same id must not charge twice.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('budget: reservation id in use')
end
local out = {1, reconciled}
for i = 1, n do
  local k = KEYS[2 + i]
  local v = 0
  if amt > 0 then v = redis.call('INCRBY', k, fmt(amt)) else v = used[i] end
  -- A counter is made with its time to live (and only here); one made
  -- by a reservation of 0 is not made at all.
  if fresh[i] and amt > 0 then redis.call('PEXPIRE', k, ARGV[8 + 2 * i]) end
  out[2 + i] = v
end
local rec = {'st', 'o', 'amt', fmt(amt), 'chg', fmt(amt), 'n', n, 'x', onexp}
for i = 1, n do rec[#rec + 1] = 'k' .. i; rec[#rec + 1] = KEYS[2 + i] end
redis.call('HSET', KEYS[2], unpack(rec))
redis.call('PEXPIRE', KEYS[2], rttl)
redis.call('ZADD', KEYS[1], fmt(now + hold), id)
redis.call('PEXPIRE', KEYS[1], rttl)
return out
