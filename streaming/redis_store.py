"""The one module that talks to Redis: ``RedisStore`` implements ``streaming.stores.Store``.

Key layout
----------
=================================================  ======  ====================================  ===========
key                                                type    value                                 TTL
=================================================  ======  ====================================  ===========
``om:v:<version>:stats:{<item_id>}``               STRING  little-endian float64 pairs           none
                                                           ``(w2, b)`` at byte offset
                                                           ``16 · coord``; a missing pair or a
                                                           short string reads as zeros
``om:v:<version>:mark:{<item_id>}``                HASH    ``<partition>`` → last Kafka offset   none
                                                           applied from that partition
``om:v:<version>:credit:{<item_id>}:<request_id>`` STRING  credited flags, subset of ``icr``     attribution
                                                                                                 window
``om:ctx:<request_id>``                            STRING  ``RequestContext`` JSON               attribution
                                                                                                 window
``om:surfaces``                                    HASH    surface name → settings JSON;         none
                                                           ``experiment:<surface>`` → its latest
                                                           experiment JSON
                                                           (``app/experiments.py``)
``om:surface-changes``                             LIST    change records JSON, newest first,    none
                                                           capped at 1000 (settings and
                                                           experiments)
``om:stats:<surface>:<minute>``                    HASH    counter name → integer, for the       2 h after
                                                           minute ``<minute>`` since the epoch;  its last
                                                           an experiment arm's counters under    write (30
                                                           ``<surface>@<experiment id>/<arm>``,  days for
                                                           its running totals at minute 0        minute 0)
``om:stats-surfaces``                              SET     surfaces that have counters           none
``om:lag:<group>``                                 HASH    partition → consumer lag (records)    1 h
``om:v:<version>:fresh-impressions``               HASH    fresh item → impressions counted      2 days
``om:v:<version>:trending``                        ZSET    item → trending score                 none
                                                           (``bandits.pooled.trending_scores``),
                                                           the ``TRENDING_KEEP`` highest only
``om:clicks:{<user_id>}``                          ZSET    item → epoch s of the user's latest   30 days
                                                           click on it, the latest              after her
                                                           ``fold_in_clicks`` only (not per     last click
                                                           version: ids outlive bundles)
``om:{items}:records``                             HASH    item → its latest catalogue record    none
                                                           (``streaming.catalogue.ItemRecord``
                                                           JSON; a take-down is a record too)
``om:{items}:ts``                                  HASH    item → ``ts`` of that record (last    none
                                                           writer wins)
``om:{items}:changes``                             ZSET    item → sequence number of its latest  none
                                                           change
``om:{items}:seq``                                 STRING  the catalogue's sequence number       none
``om:rl:{<subject>}``                              STRING  a rate limit's theoretical arrival    its debt
                                                           time, epoch µs on Redis's clock
                                                           (``streaming.stores.gcra``);
                                                           ``<subject>`` is ``user:<user_id>``
                                                           or ``client:<address>``
``om:{fleet}:versions``                            HASH    version → when its namespace was      none
                                                           first written (epoch s)
``om:{fleet}:serving``                             HASH    version → latest report (epoch s) of  none
                                                           a replica serving it
``om:{fleet}:retiring``                            HASH    version → when a retirement pass      none
                                                           marked it (until its deletion ends)
=================================================  ======  ====================================  ===========

- ``<version>`` is the bundle version: a new bundle starts an empty namespace. An experiment
  arm's namespace is a version of its own, ``<bundle version>@<experiment id>/<arm>``
  (``streaming.events.arm_namespace``), reported, served and retired exactly like one. Feedback keeps
  going to the version that served its request; a namespace is deleted (``drop_version``)
  once no replica has reported its version for the attribution window plus slack plus the
  serving lease. The policy and its reasons: ``streaming.stores.retirable``.
- The three ``om:{fleet}:*`` hashes share the hash tag ``{fleet}``, so the scripts that check
  and mark a retirement, and that refuse a report of a version being retired, are atomic in a
  Redis Cluster too. (They replaced round 1's ``om:versions`` SET and ``om:serving`` HASH;
  a store with only those keys lists nothing for retirement, so nothing is deleted.)
- The live catalogue's four keys share the hash tag ``{items}``: storing a change and taking
  its sequence number is one script, single-slot in a cluster. They are not per version: a
  take-down holds for every bundle, later ones included. Every request's ``MGET`` reads
  ``om:{items}:seq`` beside the statistics, so a replica notices a change with no extra
  round trip and catches up (``items_since``) before it serves.
- **Redis Cluster** (``RedisStore`` with a ``RedisCluster`` client). Scripts are single-slot,
  so the apply, batch-read and rate-limit scripts run once per item or subject, pipelined per node. Two
  writes span slots and lose their atomicity there: ``put_surface`` (settings and change log:
  the log is written first, so the audit never misses a change that landed) and a retirement's
  ``UNLINK`` batches (the mark is checked just before each batch, not inside it: a batch may
  remove what a replica wrote in the milliseconds after another consumer finished the
  version, which only happens if a retired version is served again at that instant).
- ``{<item_id>}`` is a **deliberate** Redis Cluster hash tag: an item's statistics, watermarks
  and credits share a slot, so the apply script is atomic per item in a cluster too. Ids with
  braces are refused at the edge (``streaming.events.check_key_part``), so no other part of a key
  can become an accidental tag.
- **Why binary.** A read of 200 candidates is one ``MGET`` and one ``np.frombuffer``: ~0.25 ms
  of Redis time against ~1.5 ms for 200 ``HMGET`` calls from a script (text fields in small
  hashes are scanned linearly), and no text parsing in Python. Doubles are stored exactly;
  the apply script adds in Lua's doubles with ``struct``.
- Coordinates must be dense, below ``MAX_COORD`` (cluster ids are): a value holds every
  coordinate up to the highest one written, ``16 · (coord + 1)`` bytes.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np
import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

from bandits.checks import FloatArray, IntArray
from streaming.events import EventError, RequestContext, check_key_part
from streaming.stores import (
    STATS_TOTAL_TTL_S,
    STATS_TTL_S,
    SURFACE_LOG_LENGTH,
    TOTAL_MINUTE,
    Applied,
    Charge,
    Increment,
    ItemDelta,
    StoreUnavailable,
)

P = ParamSpec("P")
T = TypeVar("T")


def _unavailable_on_redis_error(fn: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    return wrapper


# Applies many item deltas in one call, each with the single-item rule (atomic per item; the
# whole call is atomic too, which is stronger than needed).
# KEYS = per delta: its stats key, its mark key, then its credit keys.
# ARGV = partition, ttl_ms, then per delta: min_offset, offset, n_credits, the n_credits flag
#        strings, and one binary string of (coord int32, w2 float64, b float64) records,
#        little-endian, 20 bytes each (``DELTA_RECORD``): one argument instead of three per
#        coordinate, written by one numpy call, with no float formatted as text (``repr`` of
#        every float was 7% of the consumer's CPU in py-spy) and none parsed back in Lua.
# Returns one result per delta: 1 applied, 0 already applied, -1 conflict (part applied).
_APPLY = """
local partition, ttl = ARGV[1], ARGV[2]
local a, k, results = 3, 1, {}
while a <= #ARGV do
  local lo, hi, nc = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local stats, marks = KEYS[k], KEYS[k + 1]
  local mark = tonumber(redis.call('HGET', marks, partition) or '-1')
  local result = 1
  if mark >= hi then result = 0 elseif mark >= lo then result = -1 end
  if result == 1 then
    for i = 0, nc - 1 do
      local key = KEYS[k + 2 + i]
      local cur = redis.call('GET', key) or ''
      for ch in string.gmatch(ARGV[a + 3 + i], '.') do
        if not string.find(cur, ch, 1, true) then cur = cur .. ch end
      end
      redis.call('SET', key, cur, 'PX', ttl)
    end
    local blob, pos = ARGV[a + 3 + nc], 1
    while pos <= #blob do
      local f, w2, b
      f, w2, b, pos = struct.unpack('<i4dd', blob, pos)
      local offset = f * 16
      local cur = redis.call('GETRANGE', stats, offset, offset + 15)
      local w0, b0 = 0, 0
      if #cur == 16 then w0, b0 = struct.unpack('<d<d', cur) end
      redis.call('SETRANGE', stats, offset, struct.pack('<d<d', w0 + w2, b0 + b))
    end
    redis.call('HSET', marks, partition, ARGV[a + 1])
  end
  results[#results + 1] = result
  k = k + 2 + nc
  a = a + 4 + nc
end
return results
"""

# Deltas per apply call: keeps each script short, so serving reads are never held up long.
APPLY_CHUNK = 1000
# One coordinate of a delta as the apply script reads it (struct '<i4dd').
DELTA_RECORD = np.dtype([("coord", "<i4"), ("w2", "<f8"), ("b", "<f8")])

MAX_COORD = 4096

# A consumer batch's whole read before it applies: watermarks and credited flags in one call, so
# that a batch costs one command (not one HGET per item and partition: packing and parsing those
# was a tenth of the consumer's CPU in py-spy). Read-only: no atomicity is needed across items.
# KEYS = n mark keys, then credit keys; ARGV = n, then the partition of each mark key.
# Returns the marks (nil when none), then the flags (nil when none), in key order.
_READ_STATE = """
local n, out = tonumber(ARGV[1]), {}
for i = 1, n do out[i] = redis.call('HGET', KEYS[i], ARGV[i + 1]) end
for i = n + 1, #KEYS do out[i] = redis.call('GET', KEYS[i]) end
return out
"""
# Keys per read call on a standalone Redis: short scripts, as APPLY_CHUNK.
READ_CHUNK = 4000


def stats_key(version: str, item: str) -> str:
    check_key_part("item_id", item)
    check_key_part("version", version)
    return f"om:v:{version}:stats:{{{item}}}"


def mark_key(version: str, item: str) -> str:
    check_key_part("item_id", item)
    return f"om:v:{version}:mark:{{{item}}}"


def credit_key(version: str, item: str, request_id: str) -> str:
    return f"om:v:{version}:credit:{{{item}}}:{request_id}"


VERSIONS_KEY = "om:{fleet}:versions"
SERVING_KEY = "om:{fleet}:serving"
RETIRING_KEY = "om:{fleet}:retiring"

# A report of a version being retired is refused (0); otherwise the latest report is kept (1).
# KEYS = serving, retiring; ARGV = version, now.
_HEARTBEAT = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur or tonumber(ARGV[2]) > tonumber(cur) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""

# One step of a deletion, taken only while the version is marked retiring (0 otherwise).
# KEYS = retiring, then the n keys the step works on; ARGV = version, "HDEL" or "UNLINK", n.
# HDEL removes the version's field from each hash key; UNLINK removes the keys themselves.
_WHILE_MARKED = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local n = 0
for i = 2, 1 + tonumber(ARGV[3]) do
  if ARGV[2] == 'HDEL' then redis.call('HDEL', KEYS[i], ARGV[1]); n = n + 1
  else n = n + redis.call('UNLINK', KEYS[i]) end
end
return n
"""

# streaming.stores.retirable for one version, checked and marked in one step (1 marked, 0 not).
# KEYS = versions, serving, retiring; ARGV = version, now, grace + lease.
_BEGIN_RETIRE = """
local v, now, horizon = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('HEXISTS', KEYS[3], v) == 1 then return 1 end
local serving = redis.call('HGETALL', KEYS[2])
local live, last = false, nil
for i = 1, #serving, 2 do
  local seen = tonumber(serving[i + 1])
  if now - seen <= horizon then
    live = true
    if serving[i] == v then return 0 end
  end
  if serving[i] == v then last = seen end
end
if not live then return 0 end
local born = redis.call('HGET', KEYS[1], v)
if not last and born then last = tonumber(born) end
if not last or now - last <= horizon then return 0 end
redis.call('HSET', KEYS[3], v, ARGV[2])
return 1
"""
# The live catalogue (streaming/catalogue.py); one hash tag, so both scripts are single-slot.
ITEMS_KEY = "om:{items}:records"
ITEMS_TS_KEY = "om:{items}:ts"
ITEMS_CHANGES_KEY = "om:{items}:changes"
ITEMS_SEQ_KEY = "om:{items}:seq"

# Last writer wins on ts: store the record and take the next sequence number, or return false.
# The same record again (the follower applied it from the topic before its writer did) returns
# the sequence number it already has: both writers succeed, the catalogue moves once.
# KEYS = records, ts, changes, seq; ARGV = item, ts, record.
_PUT_ITEM = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old and tonumber(old) > tonumber(ARGV[2]) then return false end
if old and tonumber(old) == tonumber(ARGV[2]) then
  if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[3] then return false end
  return tonumber(redis.call('ZSCORE', KEYS[3], ARGV[1]))
end
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
return seq
"""

# The current sequence number, then (seq, record) of items changed after ARGV[1], at most ARGV[2].
# KEYS = records, changes, seq.
_ITEMS_SINCE = """
local out = {redis.call('GET', KEYS[3]) or '0'}
local changed = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, ARGV[2])
for i = 1, #changed, 2 do
  out[#out + 1] = changed[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[1], changed[i])
end
return out
"""
# streaming.stores.gcra on the server's clock (replicas' clocks differ), one subject per call so
# that each is single-slot in a cluster. Returns the wait in microseconds (0: taken).
# KEYS = the subject's key; ARGV = cost, rate per second, burst.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1e6 + tonumber(t[2])
local cost, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new = tat + math.min(cost, burst) / rate * 1e6
local wait = new - now - burst / rate * 1e6
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1)
return 0
"""
SURFACES_KEY = "om:surfaces"
SURFACE_CHANGES_KEY = "om:surface-changes"


def trending_key(version: str) -> str:
    return f"om:v:{check_key_part('version', version)}:trending"


def clicks_key(user_id: str) -> str:
    return f"om:clicks:{{{check_key_part('user_id', user_id)}}}"


def rate_key(subject: str) -> str:
    return f"om:rl:{{{subject}}}"


def context_key(request_id: str) -> str:
    return f"om:ctx:{request_id}"


def _pick(values: Sequence[bytes | None], coords: IntArray) -> tuple[FloatArray, FloatArray]:
    """``(w2, b)``, each (N, K): the ``coords`` (K,) of N packed statistics values (16 bytes per
    coordinate, ``<f8`` w2 then b; a value stops after its last written coordinate, and a
    missing one is all zeros). One join and a gather in numpy, not a Python step per value:
    this runs for every candidate of every request.

    >>> v = np.array([[1.0, 2.0], [3.0, 4.0]]).tobytes()
    >>> [a.tolist() for a in _pick([v, None], np.array([1, 0, 5]))]
    [[[3.0, 1.0, 0.0], [0.0, 0.0, 0.0]], [[4.0, 2.0, 0.0], [0.0, 0.0, 0.0]]]
    """
    parts = [v or b"" for v in values]
    lens = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
    flat = np.frombuffer(b"".join(parts) + bytes(16), dtype="<f8")
    starts = (np.cumsum(lens) - lens) // 8
    offsets = 2 * np.asarray(coords, dtype=np.int64)
    present = (8 * offsets + 16)[None, :] <= lens[:, None]
    # Absent coordinates read the 16 zero bytes appended at the end.
    at = np.where(present, starts[:, None] + offsets[None, :], len(flat) - 2)
    return flat[at], flat[at + 1]


def _delta_records(deltas: Sequence[ItemDelta]) -> list[bytes]:
    """Each delta's coordinates as the apply script reads them (``DELTA_RECORD``), packed for all
    deltas in one numpy pass and cut per delta: one array per delta was a tenth of an apply.

    >>> d = ItemDelta("a", 0, 0, np.array([2]), np.array([1.0]), np.array([-0.5]))
    >>> [len(b) for b in _delta_records([d, d])], np.frombuffer(_delta_records([d])[0], DELTA_RECORD)["coord"]
    ([20, 20], array([2], dtype=int32))
    """
    if not deltas:
        return []
    coords = np.concatenate([d.coords for d in deltas])
    if len(coords) and (top := int(coords.max())) >= MAX_COORD:
        raise ValueError(f"coords: {top} >= MAX_COORD ({MAX_COORD}); they must be dense")
    records = np.empty(len(coords), dtype=DELTA_RECORD)
    records["coord"] = coords
    records["w2"] = np.concatenate([d.w2 for d in deltas])
    records["b"] = np.concatenate([d.b for d in deltas])
    blob = records.tobytes()
    ends = np.cumsum([len(d.coords) for d in deltas]).tolist()
    size = DELTA_RECORD.itemsize
    return [blob[size * lo : size * hi] for lo, hi in zip([0, *ends[:-1]], ends, strict=True)]


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


class RedisStore:
    """``Store`` on a standalone Redis or a Redis Cluster.

    In a cluster, every script runs on one slot: the apply and batch-read (``read_state``) scripts
    once per item (their keys share the ``{item_id}`` tag), the rate-limit script once per
    subject; the calls are pipelined per node, so a batch costs one round trip per node, not per
    item. Multi-key reads go through
    ``mget_nonatomic`` (one ``MGET`` per slot, pipelined per node): they need no atomicity
    across items. With ``wait_replicas`` > 0, each node's apply pipeline ends in ``WAIT``, and an
    apply that fewer replicas acknowledged raises ``StoreUnavailable``: the consumer then retries
    the batch (applied items answer "already applied") before it commits its offsets, so a
    master that dies before its replica has the write loses no accepted event.
    """

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        clock: Callable[[], float] = time.time,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self._r: Any = client  # redis.Redis or RedisCluster: the same commands, differently typed
        self._cluster = isinstance(client, RedisCluster)
        self._clock = clock  # epoch seconds: dates a namespace's first write
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._apply = client.register_script(_APPLY)
        self._read_state = client.register_script(_READ_STATE)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._begin_retire = client.register_script(_BEGIN_RETIRE)
        self._while_marked = client.register_script(_WHILE_MARKED)
        self._put_item = client.register_script(_PUT_ITEM)
        self._items_since = client.register_script(_ITEMS_SINCE)
        self._take = client.register_script(_TAKE)

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 0.25, cluster: bool = False, wait_replicas: int = 0) -> RedisStore:
        # Short timeouts: serving degrades to priors instead of waiting on a lost Redis.
        kwargs = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        client: redis.Redis | RedisCluster = (
            RedisCluster.from_url(url, **kwargs) if cluster else redis.Redis.from_url(url, **kwargs)
        )
        # WAIT returns before the socket would time out, so a slow replica reads as "not acknowledged".
        return cls(client, wait_replicas=wait_replicas, wait_timeout_ms=max(1, int(timeout_s * 500)))

    def _mget(self, keys: Sequence[str]) -> list[Any]:
        return list(self._r.mget_nonatomic(keys) if self._cluster else self._r.mget(keys))

    def _by_node(self, keys: Sequence[str]) -> list[tuple[redis.Redis, list[int]]]:
        """The positions of ``keys`` grouped by the client of the node that holds each key's
        slot (one group on a standalone Redis)."""
        if not self._cluster:
            return [(self._r, list(range(len(keys))))]
        groups: dict[str, tuple[redis.Redis, list[int]]] = {}
        for i, key in enumerate(keys):
            node = self._r.get_node_from_key(key)
            groups.setdefault(node.name, (self._r.get_redis_connection(node), []))[1].append(i)
        return list(groups.values())

    def _run(self, script: Script, calls: Sequence[tuple[list[str], list[Any]]], wait: bool = False) -> list[Any]:
        """``script`` once per (keys, args) call, pipelined per node (keys of one call share a
        slot); with ``wait``, each node's pipeline ends in ``WAIT`` for ``wait_replicas``.
        Results in call order."""
        results: list[Any] = [None] * len(calls)
        waiting = wait and self._wait_replicas > 0
        try:
            for client, positions in self._by_node([keys[0] for keys, _ in calls]):
                pipe = client.pipeline(transaction=False)
                for i in positions:
                    script(keys=calls[i][0], args=calls[i][1], client=pipe)
                if waiting:
                    pipe.execute_command("WAIT", self._wait_replicas, self._wait_timeout_ms)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                out = pipe.execute()
                if waiting and int(out.pop()) < self._wait_replicas:
                    raise StoreUnavailable(
                        f"redis: applied, but fewer than {self._wait_replicas} replica(s) acknowledged "
                        f"within {self._wait_timeout_ms} ms"
                    )
                for i, r in zip(positions, out, strict=True):
                    results[i] = r
        except redis.RedisError:
            if self._cluster:
                # A failover or a moved slot: learn the new map before the caller retries.
                with contextlib.suppress(redis.RedisError):
                    self._r.nodes_manager.initialize()
            raise
        return results

    def gather(self, version: str, items: Sequence[str], coords: IntArray) -> tuple[FloatArray, FloatArray]:
        w2, b, _ = self._gather(version, items, coords, with_seq=False)
        return w2, b

    def gather_live(self, version: str, items: Sequence[str], coords: IntArray) -> tuple[FloatArray, FloatArray, int]:
        return self._gather(version, items, coords, with_seq=True)

    @_unavailable_on_redis_error
    def _gather(
        self, version: str, items: Sequence[str], coords: IntArray, with_seq: bool
    ) -> tuple[FloatArray, FloatArray, int]:
        k = len(coords)
        # One C-level check instead of one per key; the HTTP edge has validated each id already.
        if "{" in (joined := "".join(items)) or "}" in joined:
            raise EventError("item_id: braces are not allowed")
        prefix = f"om:v:{check_key_part('version', version)}:stats:"
        keys = [f"{prefix}{{{item}}}" for item in items] if k else []
        if not keys and not with_seq:
            return np.zeros((len(items), k)), np.zeros((len(items), k)), 0
        # The catalogue's sequence number rides in the same MGET: no extra round trip per request.
        values = self._mget([*keys, ITEMS_SEQ_KEY] if with_seq else keys)
        last = values.pop() if with_seq else None
        seq = 0 if last is None else int(last)
        if not keys:
            return np.zeros((len(items), k)), np.zeros((len(items), k)), seq
        return (*_pick(values, coords), seq)

    @_unavailable_on_redis_error
    def put_item(self, item_id: str, ts: float, record: bytes) -> int | None:
        keys = [ITEMS_KEY, ITEMS_TS_KEY, ITEMS_CHANGES_KEY, ITEMS_SEQ_KEY]
        seq = self._put_item(keys=keys, args=[check_key_part("item_id", item_id), repr(float(ts)), record])
        return None if seq is None else int(seq)

    @_unavailable_on_redis_error
    def items_since(self, seq: int, limit: int) -> tuple[list[tuple[int, bytes]], int]:
        out = self._items_since(keys=[ITEMS_KEY, ITEMS_CHANGES_KEY, ITEMS_SEQ_KEY], args=[int(seq), int(limit)])
        pairs = [(int(out[i]), bytes(out[i + 1])) for i in range(1, len(out), 2) if out[i + 1] is not None]
        return pairs, int(out[0])

    @_unavailable_on_redis_error
    def get_item(self, item_id: str) -> bytes | None:
        value = self._r.hget(ITEMS_KEY, check_key_part("item_id", item_id))
        if value is None:
            return None
        return value if isinstance(value, bytes) else value.encode()

    @_unavailable_on_redis_error
    def watermarks(self, version: str, partition: int, items: Sequence[str]) -> dict[str, int]:
        if not items:
            return {}
        pipe = self._r.pipeline(transaction=False)
        for item in items:
            pipe.hget(mark_key(version, item), str(partition))
        return {item: -1 if m is None else int(m) for item, m in zip(items, pipe.execute(), strict=True)}

    @_unavailable_on_redis_error
    def credits(self, version: str, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        if not pairs:
            return {}
        values = self._mget([credit_key(version, item, rid) for item, rid in pairs])
        return {pair: _text(v) for pair, v in zip(pairs, values, strict=True)}

    @_unavailable_on_redis_error
    def read_state(
        self, marks: Sequence[tuple[str, int, str]], pairs: Sequence[tuple[str, str, str]]
    ) -> tuple[list[int], list[str]]:
        if not marks and not pairs:
            return [], []
        mark_keys = [mark_key(version, item) for version, _, item in marks]
        credit_keys = [credit_key(version, item, rid) for version, item, rid in pairs]
        # Standalone: consecutive chunks. Cluster: one call per item (its mark and credit keys
        # share the ``{item}`` slot), pipelined per node.
        groups: dict[object, tuple[list[int], list[int]]] = {}
        for i, (_, _, item) in enumerate(marks):
            groups.setdefault(item if self._cluster else i // READ_CHUNK, ([], []))[0].append(i)
        for j, (_, item, _) in enumerate(pairs):
            groups.setdefault(item if self._cluster else ("c", j // READ_CHUNK), ([], []))[1].append(j)
        order = list(groups.values())
        calls = [
            ([*(mark_keys[i] for i in m), *(credit_keys[j] for j in c)], [len(m), *(marks[i][1] for i in m)])
            for m, c in order
        ]
        found_marks: list[int] = [-1] * len(marks)
        found_flags: list[str] = [""] * len(pairs)
        for (m, c), out in zip(order, self._run(self._read_state, calls), strict=True):
            for i, value in zip(m, out[: len(m)], strict=True):
                if value is not None:
                    found_marks[i] = int(value)
            for j, value in zip(c, out[len(m) :], strict=True):
                if value is not None:
                    found_flags[j] = _text(value)
        return found_marks, found_flags

    def apply(self, version: str, partition: int, deltas: Sequence[ItemDelta], credit_ttl_s: float) -> list[Applied]:
        return self.apply_many([(version, partition, deltas)], credit_ttl_s)[0]

    @_unavailable_on_redis_error
    def apply_many(
        self, batches: Sequence[tuple[str, int, Sequence[ItemDelta]]], credit_ttl_s: float
    ) -> list[list[Applied]]:
        ttl_ms = max(1, int(credit_ttl_s * 1000))
        # Listed before it is written (every call: another process may have retired it), so no
        # namespace can exist without being listed for retirement.
        listing = self._r.pipeline(transaction=False)
        for version in dict.fromkeys(version for version, _, _ in batches):
            listing.hsetnx(VERSIONS_KEY, version, repr(self._clock()))
        listing.execute()
        # Standalone: chunks of many items per call. Cluster: one call per item (a script's
        # keys must share a slot), pipelined per node. Every batch's calls go in one pipeline.
        chunk = 1 if self._cluster else APPLY_CHUNK
        calls: list[tuple[list[str], list[Any]]] = []
        owner: list[int] = []  # the batch of each call
        for n, (version, partition, deltas) in enumerate(batches):
            blobs = _delta_records(deltas)
            for start in range(0, len(deltas), chunk):
                keys: list[str] = []
                args: list[Any] = [partition, ttl_ms]
                for d, blob in zip(deltas[start : start + chunk], blobs[start : start + chunk], strict=True):
                    keys += [stats_key(version, d.item), mark_key(version, d.item)]
                    keys += [credit_key(version, d.item, r) for r in d.credits]
                    args += [d.min_offset, d.offset, len(d.credits), *d.credits.values(), blob]
                calls.append((keys, args))
                owner.append(n)
        results: list[list[Applied]] = [[] for _ in batches]
        for n, out in zip(owner, self._run(self._apply, calls, wait=True), strict=True):
            results[n] += [Applied(int(x)) for x in out]
        return results

    @_unavailable_on_redis_error
    def put_context(self, context: RequestContext, ttl_s: float) -> None:
        self._r.set(context_key(context.request_id), context.encode(), px=max(1, int(ttl_s * 1000)))

    @_unavailable_on_redis_error
    def get_contexts(self, request_ids: Sequence[str]) -> dict[str, RequestContext]:
        if not request_ids:
            return {}
        values = self._mget([context_key(r) for r in request_ids])
        return {
            rid: RequestContext.decode(v if isinstance(v, bytes) else v.encode())
            for rid, v in zip(request_ids, values, strict=True)
            if v is not None
        }

    @_unavailable_on_redis_error
    def get_surfaces(self) -> dict[str, bytes]:
        raw = self._r.hgetall(SURFACES_KEY)
        return {_text(k): v if isinstance(v, bytes) else v.encode() for k, v in raw.items()}

    @_unavailable_on_redis_error
    def put_surface(self, name: str, value: bytes, change: bytes) -> None:
        # The two keys are in different slots: a cluster cannot make this one transaction. There
        # the change is logged first, so a failure between the two leaves an audit entry for a
        # change that did not land (the editor saw the error), never a change without one.
        pipe = self._r.pipeline(transaction=not self._cluster)
        if self._cluster:
            pipe.lpush(SURFACE_CHANGES_KEY, change)
            pipe.ltrim(SURFACE_CHANGES_KEY, 0, SURFACE_LOG_LENGTH - 1)
            pipe.hset(SURFACES_KEY, name, value)
            pipe.execute()
            return
        pipe.hset(SURFACES_KEY, name, value)
        pipe.lpush(SURFACE_CHANGES_KEY, change)
        pipe.ltrim(SURFACE_CHANGES_KEY, 0, SURFACE_LOG_LENGTH - 1)
        pipe.execute()

    @_unavailable_on_redis_error
    def surface_changes(self, limit: int) -> list[bytes]:
        return [v if isinstance(v, bytes) else v.encode() for v in self._r.lrange(SURFACE_CHANGES_KEY, 0, limit - 1)]

    @_unavailable_on_redis_error
    def incr_stats(self, increments: Sequence[Increment]) -> None:
        if not increments:
            return
        pipe = self._r.pipeline(transaction=False)
        buckets = set()
        for surface, minute, name, amount in increments:
            key = f"om:stats:{surface}:{minute}"
            pipe.hincrby(key, name, amount)
            buckets.add((surface, key, minute))
        for surface, key, minute in buckets:
            pipe.expire(key, STATS_TOTAL_TTL_S if minute == TOTAL_MINUTE else STATS_TTL_S)
            pipe.sadd("om:stats-surfaces", surface)
        pipe.execute()

    @_unavailable_on_redis_error
    def read_stats(self, surface: str, minutes: Sequence[int]) -> list[dict[str, int]]:
        pipe = self._r.pipeline(transaction=False)
        for minute in minutes:
            pipe.hgetall(f"om:stats:{surface}:{minute}")
        return [{_text(k): int(v) for k, v in row.items()} for row in pipe.execute()]

    @_unavailable_on_redis_error
    def stats_surfaces(self) -> set[str]:
        return {_text(s) for s in self._r.smembers("om:stats-surfaces")}

    @_unavailable_on_redis_error
    def count_impressions(self, version: str, counts: dict[str, int]) -> dict[str, int]:
        if not counts:
            return {}
        key = f"om:v:{check_key_part('version', version)}:fresh-impressions"
        pipe = self._r.pipeline(transaction=False)
        for item, n in counts.items():
            pipe.hincrby(key, item, n)
        pipe.expire(key, 2 * 86400)
        totals = pipe.execute()[:-1]
        return {item: int(t) for item, t in zip(counts, totals, strict=True)}

    @_unavailable_on_redis_error
    def put_trending(self, version: str, scores: dict[str, float], keep: int) -> None:
        if not scores:
            return
        key = trending_key(version)
        pipe = self._r.pipeline(transaction=False)
        pipe.zadd(key, scores)
        pipe.zremrangebyrank(key, 0, -(keep + 1))
        pipe.execute()

    @_unavailable_on_redis_error
    def trending(self, version: str, n: int) -> list[str]:
        found = self._r.zrevrangebyscore(trending_key(version), "+inf", "(0", start=0, num=n)
        return [_text(item) for item in found if isinstance(item, bytes | str)]

    @_unavailable_on_redis_error
    def add_clicks(self, clicks: Sequence[tuple[str, str, float]], keep: int, ttl_s: float) -> None:
        if not clicks:
            return
        latest: dict[str, dict[str, float]] = {}
        for user, item, ts in clicks:
            table = latest.setdefault(user, {})
            table[item] = max(ts, table.get(item, ts))
        pipe = self._r.pipeline(transaction=False)
        for user, table in latest.items():
            key = clicks_key(user)
            pipe.zadd(key, table, gt=True)  # a redelivered or older click never moves it back
            pipe.zremrangebyrank(key, 0, -(keep + 1))
            pipe.expire(key, max(1, int(ttl_s)))
        pipe.execute()

    @_unavailable_on_redis_error
    def recent_clicks(self, user_id: str, n: int) -> list[str]:
        found = self._r.zrevrange(clicks_key(user_id), 0, n - 1)
        return [_text(item) for item in found if isinstance(item, bytes | str)]

    @_unavailable_on_redis_error
    def put_lag(self, group: str, lag: dict[int, int]) -> None:
        if lag:
            pipe = self._r.pipeline(transaction=not self._cluster)  # one key, but kept simple in a cluster
            pipe.hset(f"om:lag:{group}", mapping={str(p): n for p, n in lag.items()})
            pipe.expire(f"om:lag:{group}", 3600)
            pipe.execute()

    @_unavailable_on_redis_error
    def get_lag(self, group: str) -> dict[int, int]:
        return {int(_text(p)): int(n) for p, n in self._r.hgetall(f"om:lag:{group}").items()}

    @_unavailable_on_redis_error
    def heartbeat(self, version: str, now: float) -> bool:
        return bool(self._heartbeat(keys=[SERVING_KEY, RETIRING_KEY], args=[version, repr(now)]))

    @_unavailable_on_redis_error
    def serving_versions(self) -> dict[str, float]:
        return {_text(v): float(t) for v, t in self._r.hgetall(SERVING_KEY).items()}

    @_unavailable_on_redis_error
    def stats_versions(self) -> dict[str, float]:
        return {_text(v): float(t) for v, t in self._r.hgetall(VERSIONS_KEY).items()}

    @_unavailable_on_redis_error
    def retiring_versions(self) -> set[str]:
        return {_text(v) for v in self._r.hkeys(RETIRING_KEY)}

    @_unavailable_on_redis_error
    def begin_retire(self, version: str, now: float, grace_s: float, lease_s: float) -> bool:
        keys = [VERSIONS_KEY, SERVING_KEY, RETIRING_KEY]
        return bool(self._begin_retire(keys=keys, args=[version, repr(now), repr(grace_s + lease_s)]))

    @_unavailable_on_redis_error
    def drop_version(self, version: str) -> int:
        marked = [RETIRING_KEY]
        # Unlisted first: an apply racing this lists the namespace again (HSETNX), so whatever
        # it writes after the scan has passed is retired by a later pass, never orphaned.
        if not self._while_marked(keys=[*marked, VERSIONS_KEY], args=[version, "HDEL", 1]):
            return 0
        # SCAN + UNLINK in batches: never one blocking command over a whole namespace. Each
        # batch goes only while the mark stands: once another consumer has finished this
        # version (and a replica may serve it again, empty), nothing more is deleted.
        pattern = "om:v:" + "".join("\\" + c if c in "*?[]\\" else c for c in version) + ":*"
        dropped = 0
        batch: list[bytes] = []
        for key in self._r.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                dropped += self._unlink_marked(version, batch)
                batch = []
        if batch:
            dropped += self._unlink_marked(version, batch)
        self._while_marked(keys=[*marked, SERVING_KEY, RETIRING_KEY], args=[version, "HDEL", 2])
        return dropped

    def _unlink_marked(self, version: str, keys: list[bytes]) -> int:
        if not self._cluster:
            return int(self._while_marked(keys=[RETIRING_KEY, *keys], args=[version, "UNLINK", len(keys)]))
        # The mark and the namespace's keys are in different slots: checked just before each
        # batch instead of atomically with it. A batch may then delete keys that a replica
        # wrote after another consumer finished the version, in the milliseconds between.
        if not self._r.hexists(RETIRING_KEY, version):
            return 0
        return int(self._r.unlink(*keys))

    @_unavailable_on_redis_error
    def take(self, charges: Sequence[Charge]) -> list[float]:
        if not charges:
            return []
        calls = [([rate_key(c.subject)], [c.cost, c.rate, c.burst]) for c in charges]
        return [int(w) / 1e6 for w in self._run(self._take, calls)]

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except redis.RedisError:
            return False
