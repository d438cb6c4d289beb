-- Durable acknowledgements (REDIS_WAIT_REPLICAS): before a batch is confirmed again, away from the append
-- that wrote it (its WAIT failed; a reader's repair of the confirmed position), proves that this primary
-- holds it, and writes, so that a WAIT sent next on this connection covers everything this primary holds.
-- A failover may have put another primary here since the batch was written, one that never got it (it
-- was lost): then nothing is written and the batch must never be announced.
-- KEYS: 1 events stream, 2 snapshot hash, 3 metadata hash
-- ARGV: 1 the batch's newest id
-- Returns: 1 when held (and written), 0 when not
local events, snap, meta, newest = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local function before(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
if redis.call('EXISTS', meta) == 0 then return 0 end
local held = #redis.call('XRANGE', events, newest, newest) > 0
if not held then
  -- Compacted since: folded into the snapshot.
  local folded = redis.call('HGET', snap, 'last')
  held = folded ~= false and not before(folded, newest)
end
if not held then return 0 end
-- The confirmed position as it is (none yet reads as 0-0): a write the replicas receive, changing nothing.
redis.call('HSET', meta, 'conf', redis.call('HGET', meta, 'conf') or '0-0')
return 1
