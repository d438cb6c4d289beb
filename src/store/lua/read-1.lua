-- Reads up to COUNT events after a position, and says whether history after that position was trimmed.
-- KEYS: 1 events stream
-- ARGV: 1 exclusive start ("-" for the beginning, else "(<id>"), 2 count, 3 requested position ("" for none)
-- Returns: {gapOldest or false, events}: gapOldest is the oldest kept id (or "" when nothing is kept)
-- when events after the requested position were trimmed; events is one text, a line per event,
-- `id \t type \t data`, as in an append notice (one bulk reply is far cheaper to parse than nested arrays).
local events = KEYS[1]
local entries = redis.call('XRANGE', events, ARGV[1], '+', 'COUNT', ARGV[2])
local lines = {}
for i = 1, #entries do
  local fields, eventType, data = entries[i][2], '', '{}'
  for j = 1, #fields, 2 do
    if fields[j] == 't' then eventType = fields[j + 1] elseif fields[j] == 'd' then data = fields[j + 1] end
  end
  lines[i] = entries[i][1] .. '\t' .. eventType .. '\t' .. data
end
local text = table.concat(lines, '\n')
local requested = ARGV[3]
if requested == '' or redis.call('EXISTS', events) == 0 then return {false, text} end
local info = redis.call('XINFO', 'STREAM', events)
local maxDeleted, first = nil, nil
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then maxDeleted = info[i + 1] end
  if info[i] == 'first-entry' then first = info[i + 1] end
end
local function before(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
if maxDeleted and maxDeleted ~= '0-0' and before(requested, maxDeleted) then
  local oldest = ''
  if first and type(first) == 'table' then oldest = first[1] end
  return {oldest, text}
end
return {false, text}
