"""The decision record's codec: the explore coin travels with it, and older records still decode."""

from __future__ import annotations

import orjson
import pytest

from streaming.events import RequestContext
from streaming.opstats import coin_credits


def served(coin: bool, p: float) -> RequestContext:
    return RequestContext(
        "r1", "home", "v1", [3, 7], [0.6, 0.4], {"a": (0.1, False), "b": (0.2, True)}, 12.5,
        user_id="u", positions={"a": 0, "b": 1}, explore_coin=coin, explore_p=p,
    )  # fmt: skip


@pytest.mark.parametrize(("coin", "p"), [(True, 0.25), (False, 0.25), (False, 0.0), (True, 1.0), (False, -1.0)])
def test_the_coin_and_its_probability_round_trip(coin: bool, p: float) -> None:
    ctx = served(coin, p)
    back = RequestContext.decode(ctx.encode())
    assert back == ctx
    assert (back.explore_coin, back.explore_p) == (coin, p)


def test_a_record_from_before_the_coin_decodes_as_no_coin_and_counts_nowhere() -> None:
    raw = orjson.loads(served(True, 0.25).encode())
    del raw["explore_coin"], raw["explore_p"]
    old = RequestContext.decode(orjson.dumps(raw))
    assert old.explore_p == -1.0 and old.explore_coin is False
    # Left out of the what-if estimates: no propensity is known for it.
    ops, clicks = coin_credits([("a", "r1", "ci"), ("b", "r1", "ci")], {"r1": old})
    assert not ops and not clicks


def test_merged_decision_records_decode_to_every_context_in_either_form() -> None:
    from streaming.events import decode_decisions, merge_decisions

    a, b, c = (RequestContext(f"r{n}", "home", "v1", [n], [1.0], {"x": (0.1, False)}, float(n)) for n in range(3))
    assert decode_decisions(a.encode()) == [a]  # one per record: the embedded bus, older releases
    once = merge_decisions([a.encode(), b.encode()])
    assert decode_decisions(once) == [a, b]
    # A merged record queued again for a resend may be merged once more: still flat.
    assert decode_decisions(merge_decisions([once, c.encode()])) == [a, b, c]
    with pytest.raises(ValueError, match="not JSON"):
        decode_decisions(b"d0")
