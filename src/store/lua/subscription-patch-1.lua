-- Adds and removes sessions of a subscription set atomically, giving each added session a stable index.
-- KEYS: 1 the set's hash (session id -> index; field "#next" holds the next index)
-- ARGV: 1 max sessions, 2 TTL seconds, 3 "1" to create the set, 4 number of adds N, then N ids to add, then ids to remove
-- Returns: {"ok", added as id,index pairs flattened..., "|", removed ids...} | {"missing"} | {"too_many", size}
local key = KEYS[1]
local maxSessions, ttl, create, addCount = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
if create ~= '1' and redis.call('EXISTS', key) == 0 then return {'missing'} end
if create == '1' then redis.call('HSETNX', key, '#next', 0) end
local removed = {}
for i = 5 + addCount, #ARGV do
  if redis.call('HDEL', key, ARGV[i]) == 1 then removed[#removed + 1] = ARGV[i] end
end
local added = {}
local nextIndex = tonumber(redis.call('HGET', key, '#next'))
for i = 5, 4 + addCount do
  local id = ARGV[i]
  if redis.call('HEXISTS', key, id) == 0 then
    redis.call('HSET', key, id, nextIndex)
    added[#added + 1] = id
    added[#added + 1] = tostring(nextIndex)
    nextIndex = nextIndex + 1
  end
end
local size = redis.call('HLEN', key) - 1
if size > maxSessions then return redis.error_reply('too_many ' .. size) end
redis.call('HSET', key, '#next', nextIndex)
redis.call('EXPIRE', key, ttl)
local result = {'ok'}
for _, v in ipairs(added) do result[#result + 1] = v end
result[#result + 1] = '|'
for _, v in ipairs(removed) do result[#result + 1] = v end
return result
