-- Appends a batch of events to one session's stream, atomically with its metadata.
-- KEYS: 1 events stream, 2 metadata hash, 3 run lease, 4 publish-rate counter of the current window
-- ARGV: 1 max events kept (trimmed in small chunks), 2 ended TTL s, 3 idle TTL s, 4 notice channel,
--       5 writer id ("" for none), 6 writer batch seq, 7 creation fields as JSON array ("" = must exist),
--       (idle TTL "0": never expires, for the lifecycle feed)
--       8 "1" to refuse while a lease is held, 9 now (ms),
--       10 events allowed per window (0: no limit), 11 window length s, then pairs: type, data (JSON text)
-- Returns: {"appended", created, ended, owner, id...} | {"duplicate"} | {"out_of_order"} | {"missing"}
--        | {"ended", status} | {"leased"} | {"limited"}
local events, meta, lease, rate = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local maxLen, endedTtl, idleTtl, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local writer, seq, creation, requireNoLease, now = ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8], ARGV[9]
local rateLimit, rateWindow = tonumber(ARGV[10]), ARGV[11]
local FIRST_EVENT = 12

-- The publish rate is counted here, in the session's slot, so a limited append costs no extra round trip.
if rateLimit > 0 then
  local count = redis.call('INCRBY', rate, (#ARGV - FIRST_EVENT + 1) / 2)
  if count == (#ARGV - FIRST_EVENT + 1) / 2 then redis.call('EXPIRE', rate, rateWindow * 2) end
  if count > rateLimit then return {'limited'} end
end

local status = redis.call('HGET', meta, 'status')
local created = 0
if not status then
  if creation == '' then return {'missing'} end
  redis.call('HSET', meta, unpack(cjson.decode(creation)))
  status = 'running'
  created = 1
end
if status ~= 'running' then return {'ended', status} end
if requireNoLease == '1' and redis.call('EXISTS', lease) == 1 then return {'leased'} end
if writer ~= '' then
  local field = 'w:' .. writer
  local applied = tonumber(redis.call('HGET', meta, field) or '0')
  if seq <= applied then return {'duplicate'} end
  -- Batches of one writer land strictly in order: a later batch never overtakes a lost one.
  if seq ~= applied + 1 then return {'out_of_order'} end
  redis.call('HSET', meta, field, seq)
end

local function refreshIdleExpiry()
  if idleTtl ~= '0' then
    redis.call('EXPIRE', events, idleTtl)
    redis.call('EXPIRE', meta, idleTtl)
  end
end
local prev = redis.call('HGET', meta, 'last') or ''
if #ARGV < FIRST_EVENT then
  refreshIdleExpiry()
  return {'appended', created, 0, redis.call('HGET', meta, 'owner') or '', prev}
end

local result = {'appended', created, 0, redis.call('HGET', meta, 'owner') or '', prev}
local notice = {prev}
local terminal = nil
for i = FIRST_EVENT, #ARGV, 2 do
  local eventType, data = ARGV[i], ARGV[i + 1]
  local id = redis.call('XADD', events, '*', 't', eventType, 'd', data)
  result[#result + 1] = id
  notice[#notice + 1] = id .. '\t' .. eventType .. '\t' .. data
  if eventType == 'done' or eventType == 'error' or eventType == 'cancelled' then terminal = eventType end
end
local last = result[#result]
-- Trimming: the oldest events beyond maxLen go, in chunks (about 1% of maxLen, at most 100) so that a
-- full stream is not trimmed on every append. Not with XADD MAXLEN: a trim does not record the newest
-- removed id (max-deleted-entry-id), which the read script needs to tell a reader it missed events.
-- So the cut is found here and recorded with XSETID ... MAXDELETEDID.
local keep = tonumber(maxLen)
local excess = redis.call('XLEN', events) - keep
if excess >= math.min(100, math.max(1, math.floor(keep / 100))) then
  local head = redis.call('XRANGE', events, '-', '+', 'COUNT', excess + 1)
  redis.call('XTRIM', events, 'MINID', head[excess + 1][1])
  redis.call('XSETID', events, last, 'MAXDELETEDID', head[excess][1])
end
redis.call('HSET', meta, 'last', last)
if terminal then
  redis.call('HSET', meta, 'status', terminal, 'terminal', last, 'endedAt', now)
  redis.call('DEL', lease)
  redis.call('EXPIRE', events, endedTtl)
  redis.call('EXPIRE', meta, endedTtl)
  result[3] = 1
else
  refreshIdleExpiry()
end
redis.call('PUBLISH', channel, table.concat(notice, '\n'))
return result
