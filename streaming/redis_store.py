"""The one module that talks to Redis.

Key layout
----------
======================================  ======  =========================================  ====
key                                     type    fields                                     TTL
======================================  ======  =========================================  ====
``om:v:<version>:item:<item_id>``       HASH    ``w2:<coord>``, ``b:<coord>`` (float text)  none
                                                ``off:<partition>`` (int, last offset
                                                applied from that Kafka partition)
======================================  ======  =========================================  ====

- ``<version>`` is the bundle version: a new bundle starts an empty namespace; old namespaces
  are deleted by the retention job once no serving replica reads them.
- Keys contain no ``{...}``: Redis Cluster would read braces as a hash tag and pin every key
  of a version to one slot. Item ids with ``{`` or ``}`` are rejected for the same reason.
- Values are HINCRBYFLOAT text: Redis keeps 17 digits after the decimal point, an absolute
  precision of 1e-17, far below any statistic that moves a score.
- One hash per item keeps an item's statistics and its watermarks in one slot, so the Lua
  apply below is atomic in Redis Cluster too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import redis

from bandits.checks import FloatArray, IntArray
from streaming.stats_store import ItemDelta

# KEYS[1] = item hash; ARGV = partition, offset, then (coord, w2, b) triples.
# Applies only when offset is above the partition's watermark, then moves the watermark:
# a redelivered batch changes nothing twice.
_APPLY = """
local mark = redis.call('HGET', KEYS[1], 'off:' .. ARGV[1])
if mark and tonumber(mark) >= tonumber(ARGV[2]) then return 0 end
for i = 3, #ARGV, 3 do
  redis.call('HINCRBYFLOAT', KEYS[1], 'w2:' .. ARGV[i], ARGV[i + 1])
  redis.call('HINCRBYFLOAT', KEYS[1], 'b:' .. ARGV[i], ARGV[i + 2])
end
redis.call('HSET', KEYS[1], 'off:' .. ARGV[1], ARGV[2])
return 1
"""


def item_key(version: str, item: str) -> str:
    if "{" in item or "}" in item or "{" in version or "}" in version:
        raise ValueError(f"item_id: braces are not allowed (Redis Cluster hash tags): {item!r}")
    return f"om:v:{version}:item:{item}"


class RedisStatsStore:
    def __init__(self, client: redis.Redis) -> None:
        self._r = client
        self._apply = client.register_script(_APPLY)

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 0.25) -> RedisStatsStore:
        # Short timeouts: serving degrades to priors instead of waiting on a lost Redis.
        return cls(redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s))

    def gather(self, version: str, items: Sequence[str], coords: IntArray) -> tuple[FloatArray, FloatArray]:
        fields = [f"w2:{f}" for f in coords.tolist()] + [f"b:{f}" for f in coords.tolist()]
        pipe = self._r.pipeline(transaction=False)
        for item in items:
            pipe.hmget(item_key(version, item), fields)
        rows = pipe.execute()
        k = len(coords)
        values = np.array([[0.0 if v is None else float(v) for v in row] for row in rows]).reshape(len(items), 2 * k)
        return values[:, :k].copy(), values[:, k:].copy()

    def watermarks(self, version: str, partition: int, items: Sequence[str]) -> dict[str, int]:
        pipe = self._r.pipeline(transaction=False)
        for item in items:
            pipe.hget(item_key(version, item), f"off:{partition}")
        return {item: -1 if v is None else int(v) for item, v in zip(items, pipe.execute(), strict=True)}

    def apply(self, version: str, partition: int, deltas: Sequence[ItemDelta]) -> int:
        pipe = self._r.pipeline(transaction=False)
        for delta in deltas:
            args: list[str | int | float] = [partition, delta.offset]
            for f, w2, b in zip(delta.coords.tolist(), delta.w2.tolist(), delta.b.tolist(), strict=True):
                args += [f, repr(w2), repr(b)]
            self._apply(keys=[item_key(version, delta.item)], args=args, client=pipe)
        return int(sum(int(x) for x in pipe.execute()))

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except redis.RedisError:
            return False
