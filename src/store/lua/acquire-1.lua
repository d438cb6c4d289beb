-- Bounded membership (concurrent runs, open connections): members carry their expiry as score, so a
-- crashed holder's entry lapses by itself.
-- KEYS: 1 the sorted set
-- ARGV: 1 member, 2 limit, 3 now (ms), 4 ttl (ms)
-- Returns 1 when the member holds a place (new or renewed), 0 when the set is full.
local key, member = KEYS[1], ARGV[1]
local limit, now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if not redis.call('ZSCORE', key, member) and redis.call('ZCARD', key) >= limit then return 0 end
redis.call('ZADD', key, now + ttl, member)
redis.call('PEXPIRE', key, ttl)
return 1
