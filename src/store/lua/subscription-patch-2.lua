-- Creates or changes a subscription set: adds and removes sessions, giving each added one the next
-- index (an index is never reused, even after a removal). All or nothing: the change is worked out
-- and checked against the limit before anything is written, so a refused call leaves the set as it was.
--
-- Idempotent: an accepted call records its change under its request id (KEYS[2]) for a few minutes,
-- and the same call again (ioredis resends a command whose reply was lost) returns that change without
-- writing, so connections following the set learn the same indexes. A refused or `missing` call writes
-- nothing, so running it again is the same as running it once, later; it records nothing, as a flood
-- of refused calls must not grow Redis. The members listed are always the set's current ones.
--
-- KEYS: 1 the set's hash (session id -> index; "#next" the next index, "#owner" the creating subject;
--         session ids cannot contain "#"), 2 the call's reply record
-- ARGV: 1 max sessions, 2 set TTL seconds, 3 "create" or "patch", 4 owner ("": none; kept only when the
--       call creates the set), 5 reply record TTL seconds, 6 number of adds N, then N ids to add, then
--       the ids to remove
-- Returns (every element a string):
--   {"ok", A, then A pairs id, index, R, then R removed ids, then the members in index order}
--   {"missing"} (a patch of a set that does not exist)
--   {"too_many", size} (the size the set would have had; nothing changed)
local setKey, replyKey = KEYS[1], KEYS[2]

-- The set's members, read once (a table of id -> index) and listed in index order.
local function membersOf()
  local members, nextIndex = {}, 0
  local fields = redis.call('HGETALL', setKey)
  for i = 1, #fields, 2 do
    local field = fields[i]
    if field == '#next' then
      nextIndex = tonumber(fields[i + 1])
    elseif string.sub(field, 1, 1) ~= '#' then
      members[field] = tonumber(fields[i + 1])
    end
  end
  return members, nextIndex
end

local function withMembers(reply, members)
  local ordered = {}
  for id, index in pairs(members) do ordered[#ordered + 1] = { id, index } end
  table.sort(ordered, function(a, b) return a[2] < b[2] end)
  for _, entry in ipairs(ordered) do reply[#reply + 1] = entry[1] end
  return reply
end

local recorded = redis.call('GET', replyKey)
if recorded then
  local members = membersOf()
  return withMembers(cjson.decode(recorded), members)
end

local maxSessions, ttl, mode, owner = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local replyTtl, addCount = ARGV[5], tonumber(ARGV[6])
local exists = redis.call('EXISTS', setKey) == 1
if not exists and mode ~= 'create' then return { 'missing' } end

-- Check: what the set becomes. Removals first, so that an id both removed and added comes back with a
-- new index.
local members, nextIndex = membersOf()
local size = 0
for _ in pairs(members) do size = size + 1 end
local removed = {}
for i = 7 + addCount, #ARGV do
  local id = ARGV[i]
  if members[id] then
    members[id] = nil
    size = size - 1
    removed[#removed + 1] = id
  end
end
local added = {}
for i = 7, 6 + addCount do
  local id = ARGV[i]
  if not members[id] then
    members[id] = nextIndex
    added[#added + 1] = id
    nextIndex = nextIndex + 1
    size = size + 1
  end
end
if size > maxSessions then return { 'too_many', tostring(size) } end

-- Write.
for _, id in ipairs(removed) do redis.call('HDEL', setKey, id) end
for _, id in ipairs(added) do redis.call('HSET', setKey, id, members[id]) end
redis.call('HSET', setKey, '#next', nextIndex)
if not exists and owner ~= '' then redis.call('HSET', setKey, '#owner', owner) end
redis.call('EXPIRE', setKey, ttl)

local change = { 'ok', tostring(#added) }
for _, id in ipairs(added) do
  change[#change + 1] = id
  change[#change + 1] = tostring(members[id])
end
change[#change + 1] = tostring(#removed)
for _, id in ipairs(removed) do change[#change + 1] = id end
redis.call('SET', replyKey, cjson.encode(change), 'EX', replyTtl)
return withMembers(change, members)
