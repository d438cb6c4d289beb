-- Reads up to COUNT events after a position. A reader whose position lies before what compaction folded
-- gets the session's snapshot first (the state up to the last folded event), then the kept events; where
-- history was trimmed without a snapshot (the lifecycle feed), it is told what it missed instead.
-- KEYS: 1 events stream, 2 snapshot hash, 3 snapshot content, 4 snapshot reasoning, 5 metadata hash
-- ARGV: 1 exclusive start ("-" for the beginning, else "(<id>"), 2 count, 3 requested position ("" for none),
--       4 "1" to read no further than the session's confirmed position (REDIS_WAIT_REPLICAS: what the
--       replicas hold; none yet: nothing), "0" or absent to read to the end
-- Returns: {gapOldest or false, events, createdAt or false, beyond or false}: gapOldest is the oldest kept id (or "" when
-- nothing is kept) when events after the requested position were trimmed; events is one text, a line per
-- event, `id \t type \t data`, as in an append notice (one bulk reply is far cheaper to parse than nested
-- arrays); createdAt is the session's creation stamp, read in the same step: which incarnation of the id
-- the events belong to (false when there is no session); beyond is the session's last position when the
-- confirmed position (ARGV 4) held back events after it, else false.
local events, snap, snapContent, snapReasoning = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local start, requested = ARGV[1], ARGV[3]
local createdAt = redis.call('HGET', KEYS[5], 'createdAt') or false
local function before(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end

local lines = {}
local snapLast = redis.call('HGET', snap, 'last')
if snapLast and (requested == '' or before(requested, snapLast)) then
  local fields = redis.call('HGETALL', snap)
  local usage, tools, refusal, folded = 'null', '[]', '', {}
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    if name == 'usage' then usage = value
    elseif name == 'tools' then tools = value
    elseif name == 'refusal' then refusal = value
    elseif string.sub(name, 1, 2) == 'f:' then
      folded[#folded + 1] = cjson.encode(string.sub(name, 3)) .. ':' .. value
    end
  end
  lines[1] = snapLast .. '\tsnapshot\t{"content":"' .. (redis.call('GET', snapContent) or '')
    .. '","reasoning":"' .. (redis.call('GET', snapReasoning) or '') .. '","refusal":"' .. refusal
    .. '","tool_calls":' .. tools .. ',"usage":' .. usage .. ',"folded":{' .. table.concat(folded, ',') .. '}}'
  start = '(' .. snapLast
end

local stop, beyond = '+', false
if ARGV[4] == '1' then
  stop = redis.call('HGET', KEYS[5], 'conf') or '0-0'
  local last = redis.call('HGET', KEYS[5], 'last')
  if last and before(stop, last) then beyond = last end
end
local entries = redis.call('XRANGE', events, start, stop, 'COUNT', ARGV[2])
for i = 1, #entries do
  local fields, eventType, data = entries[i][2], '', '{}'
  for j = 1, #fields, 2 do
    if fields[j] == 't' then eventType = fields[j + 1] elseif fields[j] == 'd' then data = fields[j + 1] end
  end
  lines[#lines + 1] = entries[i][1] .. '\t' .. eventType .. '\t' .. data
end
local text = table.concat(lines, '\n')
if snapLast or requested == '' or redis.call('EXISTS', events) == 0 then return {false, text, createdAt, beyond} end
local info = redis.call('XINFO', 'STREAM', events)
local maxDeleted, first = nil, nil
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then maxDeleted = info[i + 1] end
  if info[i] == 'first-entry' then first = info[i + 1] end
end
if maxDeleted and maxDeleted ~= '0-0' and before(requested, maxDeleted) then
  local oldest = ''
  if first and type(first) == 'table' then oldest = first[1] end
  return {oldest, text, createdAt, beyond}
end
return {false, text, createdAt, beyond}
