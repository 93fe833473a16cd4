"""The one module that talks to Redis: ``RedisStore`` implements ``streaming.stores.Store``.

Key layout
----------
=================================================  ======  ====================================  ===========
key                                                type    value                                 TTL
=================================================  ======  ====================================  ===========
``om:v:<version>:item:{<item_id>}``                HASH    ``s:<coord>``: ``"<w2> <b>"``, two    none
                                                           doubles as ``%.17g`` text;
                                                           ``off:<partition>``: last Kafka
                                                           offset applied
``om:v:<version>:credit:{<item_id>}:<request_id>`` STRING  credited flags, subset of ``icr``     attribution
                                                                                                 window
``om:ctx:<request_id>``                            STRING  ``RequestContext`` JSON               attribution
                                                                                                 window
``om:surfaces``                                    HASH    surface name → settings JSON          none
``om:surface-changes``                             LIST    change records JSON, newest first,    none
                                                           capped at 1000
=================================================  ======  ====================================  ===========

- ``<version>`` is the bundle version: a new bundle starts an empty namespace; old namespaces
  are deleted once no serving replica reads them.
- ``{<item_id>}`` is a **deliberate** Redis Cluster hash tag: an item's statistics and its
  credits share a slot, so the Lua apply below is atomic in a cluster too. Ids containing
  braces are refused at the edge (``streaming.events.check_id``), so no other part of a key
  can become an accidental tag.
- ``w2`` and ``b`` of a coordinate share one field: a read costs one field lookup per
  coordinate (small hashes are listpacks, scanned linearly), and ``%.17g`` round-trips a
  double exactly. The apply script adds in Lua's doubles, atomically.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import ParamSpec, TypeVar

import numpy as np
import redis

from bandits.checks import FloatArray, IntArray
from streaming.events import EventError, RequestContext, check_id
from streaming.stores import SURFACE_LOG_LENGTH, Applied, ItemDelta, StoreUnavailable

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
# KEYS = per delta: its item hash, then its credit keys.
# ARGV = partition, ttl_ms, then per delta: min_offset, offset, n_credits, the n_credits flag
#        strings, and one packed string "coord w2 b coord w2 b ..." (one argument instead of
#        three per coordinate: the client encodes far fewer arguments).
# Per item: one HMGET of its coordinates and one HSET of the sums and the watermark.
# Returns one result per delta: 1 applied, 0 already applied, -1 conflict (part applied).
_APPLY = """
local partition, ttl = ARGV[1], ARGV[2]
local a, k, results = 3, 1, {}
while a <= #ARGV do
  local lo, hi, nc = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local key = KEYS[k]
  local mark = tonumber(redis.call('HGET', key, 'off:' .. partition) or '-1')
  local result = 1
  if mark >= hi then result = 0 elseif mark >= lo then result = -1 end
  if result == 1 then
    for i = 0, nc - 1 do
      local cur = redis.call('GET', KEYS[k + 1 + i]) or ''
      for ch in string.gmatch(ARGV[a + 3 + i], '.') do
        if not string.find(cur, ch, 1, true) then cur = cur .. ch end
      end
      redis.call('SET', KEYS[k + 1 + i], cur, 'PX', ttl)
    end
    local fields, w2s, bs = {}, {}, {}
    for f, w2, b in string.gmatch(ARGV[a + 3 + nc], '(%S+) (%S+) (%S+)') do
      fields[#fields + 1] = 's:' .. f
      w2s[#w2s + 1] = tonumber(w2)
      bs[#bs + 1] = tonumber(b)
    end
    local out = {'off:' .. partition, ARGV[a + 1]}
    if #fields > 0 then
      local cur = redis.call('HMGET', key, unpack(fields))
      for i = 1, #fields do
        local w2, b = w2s[i], bs[i]
        if cur[i] then
          local sp = string.find(cur[i], ' ', 1, true)
          w2 = w2 + tonumber(string.sub(cur[i], 1, sp - 1))
          b = b + tonumber(string.sub(cur[i], sp + 1))
        end
        out[#out + 1] = fields[i]
        out[#out + 1] = string.format('%.17g %.17g', w2, b)
      end
    end
    redis.call('HSET', key, unpack(out))
  end
  results[#results + 1] = result
  k = k + 1 + nc
  a = a + 4 + nc
end
return results
"""

# KEYS = item hashes; ARGV[1] = partition. The watermark of each, '-1' when none.
_WATERMARKS = """
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('HGET', KEYS[i], 'off:' .. ARGV[1]) or '-1'
end
return out
"""

# Deltas per apply call: keeps each script short, so serving reads are never held up long.
APPLY_CHUNK = 1000

# KEYS = item hashes; ARGV = field names. One space-separated string of every value in order,
# '0 0' for a missing field: one reply to parse instead of one per candidate, which is what
# made a 200-candidate read cost ~10 ms of client time as a pipeline of HMGETs.
# Redis Cluster rejects multi-slot scripts: a cluster deployment groups candidates by slot
# (or falls back to the pipeline); see README "Scaling out".
_GATHER = """
local out = {}
local n = 0
for i = 1, #KEYS do
  local values = redis.call('HMGET', KEYS[i], unpack(ARGV))
  for j = 1, #ARGV do
    n = n + 1
    out[n] = values[j] or '0 0'
  end
end
return table.concat(out, ' ')
"""


def item_key(version: str, item: str) -> str:
    check_id("item_id", item)
    check_id("version", version)
    return f"om:v:{version}:item:{{{item}}}"


def credit_key(version: str, item: str, request_id: str) -> str:
    return f"om:v:{version}:credit:{{{item}}}:{request_id}"


SURFACES_KEY = "om:surfaces"
SURFACE_CHANGES_KEY = "om:surface-changes"


def context_key(request_id: str) -> str:
    return f"om:ctx:{request_id}"


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


class RedisStore:
    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._apply = client.register_script(_APPLY)
        self._gather = client.register_script(_GATHER)
        self._watermarks = client.register_script(_WATERMARKS)

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 0.25) -> RedisStore:
        # Short timeouts: serving degrades to priors instead of waiting on a lost Redis.
        return cls(redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s))

    @_unavailable_on_redis_error
    def gather(self, version: str, items: Sequence[str], coords: IntArray) -> tuple[FloatArray, FloatArray]:
        k = len(coords)
        if not items or k == 0:
            return np.zeros((len(items), k)), np.zeros((len(items), k))
        # One C-level check instead of one per key; the HTTP edge has validated each id already.
        if "{" in (joined := "".join(items)) or "}" in joined:
            raise EventError("item_id: braces are not allowed")
        prefix = f"om:v:{check_id('version', version)}:item:"
        raw = self._gather(keys=[f"{prefix}{{{item}}}" for item in items], args=[f"s:{f}" for f in coords.tolist()])
        values = np.array(list(map(float, raw.split())), dtype=np.float64).reshape(len(items), k, 2)
        return values[:, :, 0].copy(), values[:, :, 1].copy()

    @_unavailable_on_redis_error
    def watermarks(self, version: str, partition: int, items: Sequence[str]) -> dict[str, int]:
        if not items:
            return {}
        marks = self._watermarks(keys=[item_key(version, item) for item in items], args=[partition])
        return {item: int(m) for item, m in zip(items, marks, strict=True)}

    @_unavailable_on_redis_error
    def credits(self, version: str, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        if not pairs:
            return {}
        values = self._r.mget([credit_key(version, item, rid) for item, rid in pairs])
        return {pair: _text(v) for pair, v in zip(pairs, values, strict=True)}

    @_unavailable_on_redis_error
    def apply(self, version: str, partition: int, deltas: Sequence[ItemDelta], credit_ttl_s: float) -> list[Applied]:
        ttl_ms = max(1, int(credit_ttl_s * 1000))
        results: list[Applied] = []
        for start in range(0, len(deltas), APPLY_CHUNK):
            keys: list[str] = []
            args: list[str | int | float] = [partition, ttl_ms]
            for d in deltas[start : start + APPLY_CHUNK]:
                keys.append(item_key(version, d.item))
                keys += [credit_key(version, d.item, r) for r in d.credits]
                args += [d.min_offset, d.offset, len(d.credits), *d.credits.values()]
                args.append(
                    " ".join(
                        f"{f} {w2!r} {b!r}"
                        for f, w2, b in zip(d.coords.tolist(), d.w2.tolist(), d.b.tolist(), strict=True)
                    )
                )
            results += [Applied(int(x)) for x in self._apply(keys=keys, args=args)]
        return results

    @_unavailable_on_redis_error
    def put_context(self, context: RequestContext, ttl_s: float) -> None:
        self._r.set(context_key(context.request_id), context.encode(), px=max(1, int(ttl_s * 1000)))

    @_unavailable_on_redis_error
    def get_contexts(self, request_ids: Sequence[str]) -> dict[str, RequestContext]:
        if not request_ids:
            return {}
        values = self._r.mget([context_key(r) for r in request_ids])
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
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(SURFACES_KEY, name, value)
        pipe.lpush(SURFACE_CHANGES_KEY, change)
        pipe.ltrim(SURFACE_CHANGES_KEY, 0, SURFACE_LOG_LENGTH - 1)
        pipe.execute()

    @_unavailable_on_redis_error
    def surface_changes(self, limit: int) -> list[bytes]:
        return [v if isinstance(v, bytes) else v.encode() for v in self._r.lrange(SURFACE_CHANGES_KEY, 0, limit - 1)]

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except redis.RedisError:
            return False
