-- gatehouse cost budget: settle. The twin of Memory.Settle (memory.go).
--
-- KEYS[1]  the budget key's set of open reservations
-- KEYS[2]  the reservation's record
-- ARGV     actual keep(ms) id
-- The difference between the actual cost and what the reservation holds
-- charged is added to the counters it charged (never below zero; a
-- counter whose window ended and expired is left alone), once: the record
-- then says settled, and a second settle with the id changes nothing.
-- Returns {status, reserved, delta}: status 1 settled, 2 duplicate,
-- 3 late (the reservation had expired and been reconciled), 4 unknown.
local r = redis.call('HMGET', KEYS[2], 'st', 'amt', 'chg', 'n')
if not r[1] then return {4, 0, 0} end
local amt, chg = tonumber(r[2]), tonumber(r[3])
if r[1] == 's' then return {2, amt, 0} end
local status = 1
if r[1] == 'e' then status = 3 end
local actual = tonumber(ARGV[1])
local delta = actual - chg
if delta ~= 0 then
  for i = 1, tonumber(r[4]) do
    local k = redis.call('HGET', KEYS[2], 'k' .. i)
    if k and redis.call('EXISTS', k) == 1 then
      if redis.call('INCRBY', k, string.format('%.0f', delta)) < 0 then redis.call('SET', k, 0, 'KEEPTTL') end
    end
  end
end
redis.call('HSET', KEYS[2], 'st', 's', 'chg', ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[3])
return {status, amt, delta}
