"""The consumer's pure logic: credit rules, joins, dead letters, redelivery."""

from __future__ import annotations

import pytest

from streaming.consumer import build_deltas
from streaming.events import FeedbackEvent, RequestContext

CTX = RequestContext("r1", "home", "v1", [2, 5], [0.8, 0.2], {"a": (0.25, False), "b": (0.1, True)}, 0.0)


def ev(kind: str, item: str = "a", request: str = "r1", value: float = 1.0, eid: str = "e") -> FeedbackEvent:
    return FeedbackEvent(eid, request, item, kind, value, 0.0)  # type: ignore[arg-type]  # kind is one of the literals


def cells(work: object, item: str = "a") -> dict[int, tuple[float, float]]:
    (delta,) = [d for d in work.deltas["v1"] if d.item == item]  # type: ignore[attr-defined]
    return {int(c): (float(w2), float(b)) for c, w2, b in zip(delta.coords, delta.w2, delta.b, strict=True)}


def test_impression_adds_w_squared_and_minus_prior() -> None:
    got = cells(build_deltas([(0, ev("impression"))], {"r1": CTX}, {}, {}))
    assert got[2] == pytest.approx((0.64, -0.8 * 0.25))
    assert got[5] == pytest.approx((0.04, -0.2 * 0.25))


def test_click_after_impression_adds_only_the_reward() -> None:
    got = cells(build_deltas([(0, ev("impression")), (1, ev("click"))], {"r1": CTX}, {}, {}))
    assert got[2] == pytest.approx((0.64, 0.8 * (1 - 0.25)))


def test_click_without_impression_credits_the_impression_too() -> None:
    work = build_deltas([(0, ev("click"))], {"r1": CTX}, {}, {})
    assert cells(work)[2] == pytest.approx((0.64, 0.8 * 0.75))
    assert work.deltas["v1"][0].credits == {"r1": "ci"}


def test_second_click_and_repeated_impression_change_nothing() -> None:
    once = build_deltas([(0, ev("impression")), (1, ev("click"))], {"r1": CTX}, {}, {})
    many = build_deltas(
        [(0, ev("impression")), (1, ev("click")), (2, ev("click")), (3, ev("impression"))], {"r1": CTX}, {}, {}
    )
    assert cells(many) == cells(once)
    assert many.counts["duplicate"] == 2
    assert many.deltas["v1"][0].offset == 3  # the watermark still moves past the duplicates


def test_credits_from_earlier_batches_are_honoured() -> None:
    work = build_deltas([(7, ev("click"))], {"r1": CTX}, {}, {("v1", "a", "r1"): "ic"})
    assert cells(work) == {}
    assert work.counts["duplicate"] == 1


def test_reward_uses_its_value() -> None:
    got = cells(build_deltas([(0, ev("impression")), (1, ev("reward", value=3.0))], {"r1": CTX}, {}, {}))
    assert got[5] == pytest.approx((0.04, 0.2 * (3.0 - 0.25)))


def test_events_at_or_below_the_watermark_are_skipped() -> None:
    work = build_deltas([(4, ev("impression")), (5, ev("click"))], {"r1": CTX}, {("v1", "a"): 4}, {})
    delta = work.deltas["v1"][0]
    assert (delta.min_offset, delta.offset) == (5, 5)
    assert work.counts["redelivered"] == 1


def test_unknown_request_and_unserved_item_go_to_the_dead_letter_topic() -> None:
    work = build_deltas([(0, ev("click", request="gone")), (1, ev("click", item="zzz"))], {"r1": CTX}, {}, {})
    assert [d.reason for d in work.dead] == ["unknown_request", "item_not_served"]
    assert work.deltas == {}
    assert work.counts["dead_unknown_request"] == 1 and work.counts["dead_item_not_served"] == 1


def test_statistics_go_to_the_version_of_the_decision() -> None:
    old = RequestContext("r0", "home", "v0", [1], [1.0], {"a": (0.2, False)}, 0.0)
    work = build_deltas([(0, ev("impression", request="r0")), (1, ev("impression"))], {"r1": CTX, "r0": old}, {}, {})
    assert set(work.deltas) == {"v0", "v1"}
