"""What one job keeps in Redis, and the Lua scripts that change it atomically.

The pending queue is scrapy-redis's own key (``SCHEDULER_QUEUE_KEY``, a ZSET
for its PriorityQueue, a list for FifoQueue/LifoQueue) holding scrapy-redis's
own payloads, and the seen fingerprints are its dupefilter SET: a job started
with plain scrapy-redis continues with the leased queue, and back. Next to them,
under the queue key as a prefix:

* ``Q:workers`` ZSET: worker id -> the server time (ms) its leases expire at.
  A live worker pushes it forward (``RENEW``); one that stops is reclaimed.
  One deadline per worker, not per request: renewing costs one command.
* ``Q:lease:<worker>`` HASH: lease id -> ``score \\n crashes \\n payload``.
  A request taken by the worker stays here until it is done (``HDEL``, the
  ack); a retry waiting for its backoff is here too (ids starting with ``h``).
* ``Q:crashes`` HASH: sha1(payload) -> how many workers died with it leased,
  carried into the request's meta when it is taken again.
* ``Q:dead`` HASH: worker id -> requests reclaimed from it; ``Q:seq`` the
  lease id counter; ``Q:abort`` the shared abort decision (the first of a run stands, ``ABORT``).
* ``Q:pauses`` HASH: download slot -> ``until-ms TAB worker``, the end of the
  latest pause a site asked of the job (``Retry-After``, see ``pauses``).

Times come from the server (``TIME``) so that the workers' clocks never
matter. Scripts name keys built from the prefix, as scrapy-redis's keys are:
a single Redis server (or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class JobKeys:
    """The Redis keys of one job (one spider's queue)."""

    queue: str
    dupefilter: str

    @property
    def workers(self) -> str:
        return self.queue + ":workers"

    @property
    def lease_prefix(self) -> str:
        return self.queue + ":lease:"

    def leases(self, worker: str) -> str:
        return self.lease_prefix + worker

    @property
    def crashes(self) -> str:
        return self.queue + ":crashes"

    @property
    def dead(self) -> str:
        return self.queue + ":dead"

    @property
    def seq(self) -> str:
        return self.queue + ":seq"

    @property
    def abort(self) -> str:
        return self.queue + ":abort"

    @property
    def pauses(self) -> str:
        return self.queue + ":pauses"

    def all_fixed(self) -> list[str]:
        """Every key of the job but the per-worker lease hashes."""
        return [self.queue, self.dupefilter, self.workers, self.crashes, self.dead, self.seq, self.abort, self.pauses]


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Put a lease hash's requests back in the queue (their crash count + ARGV[3])
# and delete it. KEYS: queue, crashes; ARGV[1] mode.
_PUT_BACK = """
local function put_back(key, add_crash)
  local entries = redis.call('HGETALL', key)
  for i = 1, #entries, 2 do
    local v = entries[i + 1]
    local a = string.find(v, '\\n', 1, true)
    local b = string.find(v, '\\n', a + 1, true)
    local score = string.sub(v, 1, a - 1)
    local crashes = tonumber(string.sub(v, a + 1, b - 1)) + add_crash
    local payload = string.sub(v, b + 1)
    if crashes > 0 then redis.call('HSET', KEYS[2], redis.sha1hex(payload), crashes) end
    if ARGV[1] == 'zset' then redis.call('ZADD', KEYS[1], score, payload)
    elseif ARGV[1] == 'fifo' then redis.call('RPUSH', KEYS[1], payload)
    else redis.call('LPUSH', KEYS[1], payload) end
  end
  redis.call('DEL', key)
  return #entries / 2
end
"""

# KEYS: queue, dupefilter. ARGV: mode, then (fingerprint or '', score, payload)
# triples. The fingerprint is added in the same step as the request, so a
# request is never "seen" without being queued. Returns how many were queued.
PUSH = """
local added = 0
for i = 2, #ARGV, 3 do
  if ARGV[i] == '' or redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    if ARGV[1] == 'zset' then redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i + 2])
    else redis.call('LPUSH', KEYS[1], ARGV[i + 2]) end
    added = added + 1
  end
end
return added
"""

# KEYS: queue, workers, my leases, seq, crashes. ARGV: mode, worker, count,
# lease timeout (ms). Renews the worker and leases up to count requests.
# Returns (id, crashes, payload) triples, flat.
LEASE = _NOW + """
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[2])
local items = {}
if ARGV[1] == 'zset' then
  local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[3]))
  for i = 1, #popped, 2 do items[#items + 1] = {popped[i], popped[i + 1]} end
else
  for _ = 1, tonumber(ARGV[3]) do
    local v
    if ARGV[1] == 'fifo' then v = redis.call('RPOP', KEYS[1]) else v = redis.call('LPOP', KEYS[1]) end
    if not v then break end
    items[#items + 1] = {v, '0'}
  end
end
local out = {}
for _, item in ipairs(items) do
  local digest = redis.sha1hex(item[1])
  local crashes = redis.call('HGET', KEYS[5], digest) or '0'
  if crashes ~= '0' then redis.call('HDEL', KEYS[5], digest) end
  local id = tostring(redis.call('INCR', KEYS[4]))
  redis.call('HSET', KEYS[3], id, item[2] .. '\\n' .. crashes .. '\\n' .. item[1])
  out[#out + 1] = id
  out[#out + 1] = crashes
  out[#out + 1] = item[1]
end
return out
"""

# KEYS: workers. ARGV: worker, lease timeout (ms). Returns the server time (ms).
RENEW = _NOW + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return now
"""

# KEYS: queue, crashes, workers, dead. ARGV: mode, lease prefix. Every worker
# whose deadline passed has its requests put back, each one crash more.
# Returns how many requests were put back.
RECLAIM = _NOW + _PUT_BACK + """
local total = 0
for _, w in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  local n = put_back(ARGV[2] .. w, 1)
  redis.call('ZREM', KEYS[3], w)
  redis.call('HINCRBY', KEYS[4], w, n)
  total = total + n
end
return total
"""

# KEYS: queue, crashes, workers, my leases. ARGV: mode, worker. A worker that
# stops cleanly puts back what it did not finish, without counting a crash.
RELEASE = _PUT_BACK + """
local n = put_back(KEYS[4], 0)
redis.call('ZREM', KEYS[3], ARGV[2])
return n
"""

# KEYS: abort. ARGV: reason, worker, since (ms). Records the job's abort as
# ``now TAB reason TAB worker`` unless a decision taken since ``since`` (the
# worker's start) is recorded already: the first decision of a run stands, an
# earlier run's is replaced. Returns the record in force.
ABORT = _NOW + """
local old = redis.call('GET', KEYS[1])
if old and tonumber(string.match(old, '^%d+')) >= tonumber(ARGV[3]) then return old end
local record = string.format('%d', now) .. '\t' .. ARGV[1] .. '\t' .. ARGV[2]
redis.call('SET', KEYS[1], record)
return record
"""

# The end (ms) of a pause record ``until TAB worker``.
_PAUSE_END = """
local function pause_end(v) return tonumber(string.sub(v, 1, string.find(v, '\t', 1, true) - 1)) end
"""

# KEYS: queue, workers, abort, pauses. ARGV: mode, lease prefix. Returns
# (pending, leased by every worker, the abort record or '', server time ms,
# the pauses still in force as slot, record pairs, flat).
STATUS = _NOW + _PAUSE_END + """
local pending
if ARGV[1] == 'zset' then pending = redis.call('ZCARD', KEYS[1]) else pending = redis.call('LLEN', KEYS[1]) end
local leased = 0
for _, w in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do leased = leased + redis.call('HLEN', ARGV[2] .. w) end
local pauses = {}
local all = redis.call('HGETALL', KEYS[4])
for i = 1, #all, 2 do
  if pause_end(all[i + 1]) > now then pauses[#pauses + 1] = all[i]; pauses[#pauses + 1] = all[i + 1] end
end
return {pending, leased, redis.call('GET', KEYS[3]) or '', now, pauses}
"""

# KEYS: pauses. ARGV: slot, seconds (ms), worker. Pauses the slot for the job
# until now + seconds unless a pause that ends later is recorded; forgets the
# pauses that are over. Returns 1 if the record was written.
PAUSE = _NOW + _PAUSE_END + """
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if pause_end(all[i + 1]) <= now then redis.call('HDEL', KEYS[1], all[i]) end
end
local till = now + tonumber(ARGV[2])
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and pause_end(old) >= till then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', till) .. '\t' .. ARGV[3])
return 1
"""


def lease_value(score: str, crashes: int, payload: bytes) -> bytes:
    """A lease hash value as the scripts write it."""
    return score.encode() + b"\n" + str(crashes).encode() + b"\n" + payload


def parse_lease_value(value: bytes) -> tuple[str, int, bytes]:
    """``(score, crashes, payload)`` of a lease hash value."""
    score, crashes, payload = value.split(b"\n", 2)
    return score.decode(), int(crashes), payload


def as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
