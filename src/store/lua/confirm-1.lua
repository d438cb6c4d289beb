-- Durable acknowledgements (REDIS_WAIT_REPLICAS): called once the replicas confirmed a batch. Raises the
-- session's confirmed position (readers read no further: nothing a failover can lose is ever shown) and
-- only then announces the batch, so live readers never see it earlier either. Safe to repeat: the
-- position only rises, and a notice heard twice delivers nothing the second time.
-- KEYS: 1 metadata hash
-- ARGV: 1 the batch's newest id, 2 notice channel, 3 the notice ("" for none: a reader's repair of the
--       position, see redis-store.ts), 4 the publish command (PUBLISH, SPUBLISH)
-- Returns: 1
local meta, newest = KEYS[1], ARGV[1]
local function before(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
-- A session gone meanwhile (expired) is not brought back as a hash holding only this field.
if redis.call('EXISTS', meta) == 1 then
  local confirmed = redis.call('HGET', meta, 'conf')
  if not confirmed or before(confirmed, newest) then redis.call('HSET', meta, 'conf', newest) end
end
if ARGV[3] ~= '' then redis.call(ARGV[4], ARGV[2], ARGV[3]) end
return 1
