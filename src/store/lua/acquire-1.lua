-- Bounded membership (concurrent runs, open connections): members carry their expiry as score, so a
-- crashed holder's entry lapses by itself. Checks first: a refused call writes nothing.
-- Idempotent by member, with no request record: the member names the holder (a run's session id, a
-- connection id) and taking a place twice is holding it once. The same call again (ioredis resends a
-- command whose reply was lost) finds the member holding its place and answers 1, writing the same
-- score (`now` is an argument; GT never moves a place's end back, should a newer renewal have landed
-- first), answering 2 (held) where the first answered 1: its caller then keeps the place until it
-- lapses rather than release it. A refused call wrote nothing, so its repeat is the same as running it
-- once, later.
-- KEYS: 1 the sorted set
-- ARGV: 1 member, 2 limit, 3 now (ms), 4 ttl (ms)
-- Returns 1 when the member took a new place, 2 when it renewed the place it held, 0 when the set is full.
local key, member = KEYS[1], ARGV[1]
local limit, now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local score = redis.call('ZSCORE', key, member)
local held = score and tonumber(score) > now
if not held and redis.call('ZCOUNT', key, '(' .. ARGV[3], '+inf') >= limit then return 0 end
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[3])
redis.call('ZADD', key, 'GT', now + ttl, member)
redis.call('PEXPIRE', key, ttl)
if held then return 2 end
return 1
