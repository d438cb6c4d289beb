-- Appends a batch of events to one session's stream, atomically with its metadata.
-- It checks everything first and writes second, and reports every outcome as a value, so a refused
-- append changes nothing. It is idempotent: a batch stamped with a request id or a writer sequence
-- that was already applied answers its first reply again and writes nothing (ioredis re-sends a
-- command whose reply was lost, e.g. when Redis restarts after running it).
-- KEYS: 1 events stream, 2 metadata hash, 3 run lease, 4 publish-rate counter of the current window,
--       5 the request's record (its first reply), 6 snapshot hash, 7 snapshot content, 8 snapshot reasoning
-- ARGV: 1 max events kept, 2 ended TTL s, 3 idle TTL s ("0": never expires, for the lifecycle feed),
--       4 notice channel, 5 writer id ("" for none), 6 writer batch seq, 7 creation fields as a JSON array
--       ("" = must exist), 8 "1" to refuse while a lease is held, 9 now (ms), 10 events allowed per
--       window (0: no limit), 11 window length s, 12 request id ("" for none), 13 request record TTL s,
--       14 request fingerprint, 15 "1" to compact what is trimmed into the snapshot ("0": drop it),
--       16 the publish command ("PUBLISH", or "SPUBLISH" on a Redis Cluster: the notice channel shares
--       the session's hash tag, so it goes to the session's shard only; "" for none: the caller publishes
--       once the replicas confirmed the batch), then pairs: type, data (JSON text)
-- Returns: {"appended", created, ended, owner, prev, createdAt, replayed, id...} | {"duplicate"}
--        | {"out_of_order"} | {"missing"} | {"ended", status} | {"leased"} | {"limited"} | {"key_reused"}
local events, meta, lease, rate = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local record, snap, snapContent, snapReasoning = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local maxLen, endedTtl, idleTtl, channel = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local writer, seq, creation, requireNoLease, now = ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8], ARGV[9]
local rateLimit, rateWindow = tonumber(ARGV[10]), ARGV[11]
local requestId, recordTtl, fingerprint, compact = ARGV[12], ARGV[13], ARGV[14], ARGV[15] == '1'
local publish = ARGV[16]
local FIRST_EVENT = 17
local eventCount = (#ARGV - FIRST_EVENT + 1) / 2

-- A replayed reply writes one no-op, so that a WAIT after it (REDIS_WAIT_REPLICAS) covers the first
-- write, made perhaps on another connection or before a failover, on this primary.
local function replay(stored, touch)
  touch()
  local reply = cjson.decode(stored)
  reply[7] = 1
  return reply
end

-- Checks, in order; nothing is written before all of them passed.
if requestId ~= '' then
  local prior = redis.call('GET', record)
  if prior then
    local cut = string.find(prior, '\n', 1, true)
    if string.sub(prior, 1, cut - 1) ~= fingerprint then return {'key_reused'} end
    return replay(string.sub(prior, cut + 1), function() redis.call('SET', record, prior, 'KEEPTTL') end)
  end
end
local status, last, owner, createdAt, hasSnapshot, applied, appliedReply = unpack(redis.call(
  'HMGET', meta, 'status', 'last', 'owner', 'createdAt', 'snap', 'w:' .. writer, 'wr:' .. writer))
if writer ~= '' then
  applied = tonumber(applied or '0')
  local function touch() redis.call('HSET', meta, 'w:' .. writer, applied) end
  if seq == applied and appliedReply then return replay(appliedReply, touch) end
  if seq <= applied then
    touch()
    return {'duplicate'}
  end
end
local rateCount = 0
if rateLimit > 0 then
  rateCount = tonumber(redis.call('GET', rate) or '0')
  if rateCount + eventCount > rateLimit then return {'limited'} end
end
local created = 0
if not status then
  if creation == '' then return {'missing'} end
  created = 1
elseif status ~= 'running' then
  return {'ended', status}
end
if requireNoLease == '1' and redis.call('EXISTS', lease) == 1 then return {'leased'} end
-- Batches of one writer land strictly in order: a later batch never overtakes a lost one.
if writer ~= '' and seq ~= applied + 1 then return {'out_of_order'} end

-- Writes.
if rateLimit > 0 then
  redis.call('INCRBY', rate, eventCount)
  if rateCount == 0 then redis.call('EXPIRE', rate, rateWindow * 2) end
end
if created == 1 then
  local fields = cjson.decode(creation)
  redis.call('HSET', meta, unpack(fields))
  for i = 1, #fields, 2 do
    if fields[i] == 'createdAt' then createdAt = fields[i + 1] end
    if fields[i] == 'owner' then owner = fields[i + 1] end
  end
end
local prev = last or ''
local result = {'appended', created, 0, owner or '', prev, createdAt or '', 0}
-- The notice's first line: the previous position and the session's incarnation (its creation stamp).
local notice = {prev .. '\t' .. (createdAt or '')}
local terminal = nil
for i = FIRST_EVENT, #ARGV, 2 do
  local eventType, data = ARGV[i], ARGV[i + 1]
  local id = redis.call('XADD', events, '*', 't', eventType, 'd', data)
  result[#result + 1] = id
  notice[#notice + 1] = id .. '\t' .. eventType .. '\t' .. data
  if eventType == 'done' or eventType == 'error' or eventType == 'cancelled' then terminal = eventType end
end

-- The escaped inside of a JSON string value: appended pieces concatenate to the JSON text of the joined
-- string, exactly (a surrogate pair split over two deltas joins up again when the client decodes it).
local function jsonStringInside(value)
  local text = cjson.encode(value)
  return string.sub(text, 2, -2)
end
-- The raw text of a top-level string field in data as JSON.stringify writes it: the fallback for text
-- cjson cannot decode (a lone surrogate escape, when a delta splits a pair).
local function rawStringField(data, name)
  local open = string.find(data, '"' .. name .. '":"', 1, true)
  if not open then return nil end
  local start = open + #name + 4
  local i = start
  while i <= #data do
    local c = string.sub(data, i, i)
    if c == '\\' then i = i + 2 elseif c == '"' then return string.sub(data, start, i - 1) else i = i + 1 end
  end
  return nil
end

-- Compaction: the oldest events beyond maxLen go, in chunks (about 1% of maxLen, at most 100) so that a
-- full stream is not trimmed on every append. What they said is folded into the session's snapshot
-- (text, reasoning, refusal, tool calls, the last usage, and counts by type), so a reader that is
-- behind loses nothing. Not with XADD MAXLEN: a trim does not record the newest removed id, which the
-- read script needs; so the cut is found here and recorded with XSETID ... MAXDELETEDID.
local snapshotIsNew = false
local newest = eventCount > 0 and result[#result] or nil
local excess = newest and redis.call('XLEN', events) - maxLen or 0
if newest and excess >= math.min(100, math.max(1, math.floor(maxLen / 100))) then
  local head = redis.call('XRANGE', events, '-', '+', 'COUNT', excess + 1)
  if compact then
    local content, reasoning, counts = {}, {}, {}
    local refusal, usage, tools = nil, nil, nil
    local function toolList()
      if not tools then tools = cjson.decode(redis.call('HGET', snap, 'tools') or '[]') end
      return tools
    end
    local function toolAt(index)
      local list = toolList()
      for _, call in ipairs(list) do
        if call.index == index then return call end
      end
      local call = {index = index, arguments = ''}
      list[#list + 1] = call
      return call
    end
    for i = 1, excess do
      local fields, eventType, data = head[i][2], '', '{}'
      for j = 1, #fields, 2 do
        if fields[j] == 't' then eventType = fields[j + 1] elseif fields[j] == 'd' then data = fields[j + 1] end
      end
      counts[eventType] = (counts[eventType] or 0) + 1
      if eventType == 'usage' then
        usage = data
      elseif eventType == 'token' or eventType == 'reasoning' or eventType == 'refusal' then
        local ok, decoded = pcall(cjson.decode, data)
        local piece
        if ok and type(decoded) == 'table' and type(decoded.content) == 'string' then
          piece = jsonStringInside(decoded.content)
        elseif not ok then
          piece = rawStringField(data, 'content')
        end
        if piece then
          if eventType == 'token' then content[#content + 1] = piece
          elseif eventType == 'reasoning' then reasoning[#reasoning + 1] = piece
          else refusal = (refusal or redis.call('HGET', snap, 'refusal') or '') .. piece end
        end
      elseif eventType == 'tool_call_delta' or eventType == 'tool_call' then
        local ok, decoded = pcall(cjson.decode, data)
        if ok and type(decoded) == 'table' and type(decoded.index) == 'number' then
          local call = toolAt(decoded.index)
          if type(decoded.id) == 'string' then call.id = decoded.id end
          if type(decoded.name) == 'string' then call.name = decoded.name end
          if type(decoded.arguments) == 'string' then
            if eventType == 'tool_call' then call.arguments = decoded.arguments
            else call.arguments = call.arguments .. decoded.arguments end
          end
        end
      end
    end
    if #content > 0 then redis.call('APPEND', snapContent, table.concat(content)) end
    if #reasoning > 0 then redis.call('APPEND', snapReasoning, table.concat(reasoning)) end
    local snapFields = {'last', head[excess][1]}
    if refusal then snapFields[#snapFields + 1] = 'refusal'; snapFields[#snapFields + 1] = refusal end
    if usage then snapFields[#snapFields + 1] = 'usage'; snapFields[#snapFields + 1] = usage end
    if tools then snapFields[#snapFields + 1] = 'tools'; snapFields[#snapFields + 1] = cjson.encode(tools) end
    redis.call('HSET', snap, unpack(snapFields))
    for eventType, count in pairs(counts) do redis.call('HINCRBY', snap, 'f:' .. eventType, count) end
    if not hasSnapshot then snapshotIsNew = true end
    hasSnapshot = '1'
  end
  redis.call('XTRIM', events, 'MINID', head[excess + 1][1])
  redis.call('XSETID', events, newest, 'MAXDELETEDID', head[excess][1])
end

local metaFields = {}
if newest then
  metaFields[1] = 'last'
  metaFields[2] = newest
end
if writer ~= '' then
  metaFields[#metaFields + 1] = 'w:' .. writer
  metaFields[#metaFields + 1] = seq
end
if snapshotIsNew then
  metaFields[#metaFields + 1] = 'snap'
  metaFields[#metaFields + 1] = '1'
end
local function expireAll(seconds)
  redis.call('EXPIRE', events, seconds)
  redis.call('EXPIRE', meta, seconds)
  if hasSnapshot then
    redis.call('EXPIRE', snap, seconds)
    redis.call('EXPIRE', snapContent, seconds)
    redis.call('EXPIRE', snapReasoning, seconds)
  end
end
if terminal then
  metaFields[#metaFields + 1] = 'status'
  metaFields[#metaFields + 1] = terminal
  metaFields[#metaFields + 1] = 'terminal'
  metaFields[#metaFields + 1] = newest
  metaFields[#metaFields + 1] = 'endedAt'
  metaFields[#metaFields + 1] = now
  result[3] = 1
end
if writer ~= '' then
  metaFields[#metaFields + 1] = 'wr:' .. writer
  metaFields[#metaFields + 1] = cjson.encode(result)
end
if #metaFields > 0 then redis.call('HSET', meta, unpack(metaFields)) end
if terminal then
  redis.call('DEL', lease)
  expireAll(endedTtl)
elseif idleTtl ~= '0' then
  expireAll(idleTtl)
end
-- No publish command: the caller announces the batch once the replicas hold it (confirm-1.lua).
if eventCount > 0 and publish ~= '' then redis.call(publish, channel, table.concat(notice, '\n')) end
if requestId ~= '' then
  redis.call('SET', record, fingerprint .. '\n' .. cjson.encode(result), 'EX', recordTtl)
end
return result
