-- A fixed-window counter (runs per minute): adds `cost` when the window's total stays within `limit`.
-- Checks first: a refused call writes nothing, so the total stays as it was and what still fits is
-- accepted later.
-- Idempotent: an accepted call records its request id (KEYS[2]) for a few minutes, and the same call
-- again (ioredis resends a command whose reply was lost) is answered "accepted" without counting twice.
-- A refused call records nothing: it wrote nothing, so running it again is the same as running it
-- once, later (and a flood of refused calls does not grow Redis).
-- KEYS: 1 the window's counter, 2 the call's request record
-- ARGV: 1 cost, 2 limit, 3 counter TTL seconds, 4 request record TTL seconds
-- Returns 1 when accepted (now, or by the recorded first call), 0 when refused.
local counter, record = KEYS[1], KEYS[2]
if redis.call('EXISTS', record) == 1 then return 1 end
local cost, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local total = tonumber(redis.call('GET', counter) or '0')
if total + cost > limit then return 0 end
redis.call('INCRBY', counter, cost)
redis.call('EXPIRE', counter, ARGV[3])
redis.call('SET', record, '1', 'EX', ARGV[4])
return 1
