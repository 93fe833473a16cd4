"""The consumer's pure logic: credit rules, joins, dead letters, redelivery."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.consumer import apply_partitions, build_deltas
from streaming.events import FeedbackEvent, RequestContext
from streaming.stores import MemoryStore

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


def test_reward_uses_its_value_within_the_served_surface_bounds() -> None:
    wide = dataclasses.replace(CTX, rewards=(0.0, 5.0))
    got = cells(build_deltas([(0, ev("impression")), (1, ev("reward", value=3.0))], {"r1": wide}, {}, {}))
    assert got[5] == pytest.approx((0.04, 0.2 * (3.0 - 0.25)))
    # Beyond the bounds (accepted while the store was down, unchecked at the edge): clipped.
    got = cells(build_deltas([(0, ev("impression")), (1, ev("reward", value=1e12))], {"r1": CTX}, {}, {}))
    assert got[5] == pytest.approx((0.04, 0.2 * (1.0 - 0.25)))


@pytest.mark.parametrize("order", [("click", "reward"), ("reward", "click")])
def test_a_served_item_has_one_outcome(order: tuple[str, str]) -> None:
    """A click and a reward on one served item teach one outcome, the first."""
    events = [(0, ev("impression")), (1, ev(order[0], value=0.5, eid="x")), (2, ev(order[1], value=0.5, eid="y"))]
    work = build_deltas(events, {"r1": CTX}, {}, {})
    first = 1.0 if order[0] == "click" else 0.5
    assert cells(work)[2] == pytest.approx((0.64, 0.8 * (first - 0.25)))
    assert work.counts["duplicate"] == 1


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


POSITIONED = RequestContext(
    "r2", "home", "v1", [2, 9], [0.8, 1.0], {"a": (0.2, False)}, 0.0,
    positions={"a": 3}, exam={"a": 0.5}, raw={"a": 0.5},
)  # fmt: skip


def test_updates_are_weighted_by_the_examination_of_the_slot() -> None:
    # E[r] = e·(p + θ): w2 += (w·e)², b += w·e·(r − e·p), with e fixed when the slate was served.
    work = build_deltas(
        [(0, ev("impression", request="r2")), (1, ev("click", request="r2"))], {"r2": POSITIONED}, {}, {}
    )
    got = cells(work)
    assert got[2] == pytest.approx(((0.8 * 0.5) ** 2, 0.8 * 0.5 * (1.0 - 0.5 * 0.2)))
    assert got[9] == pytest.approx((0.25, 0.5 * (1.0 - 0.5 * 0.2)))  # the pool coordinate, weight 1


def test_impressions_and_clicks_teach_the_calibration_exactly_once() -> None:
    from bandits.calibration import bin_of
    from streaming.events import calibration_item

    events = [(0, ev("impression", request="r2")), (1, ev("click", request="r2")), (2, ev("click", request="r2"))]
    work = build_deltas(events, {"r2": POSITIONED}, {}, {})
    (cal,) = [d for d in work.deltas["v1"] if d.item == calibration_item("home")]
    assert cal.coords.tolist() == [int(bin_of([0.5])[0])]
    assert cal.w2.tolist() == [0.5] and cal.b.tolist() == [1.0]  # exposure e, one click (the second is a duplicate)
    assert (cal.min_offset, cal.offset) == (0, 1)  # the offsets that taught it
    # Redelivered at or below its watermark, it teaches nothing again.
    again = build_deltas(events, {"r2": POSITIONED}, {("v1", calibration_item("home")): 1}, {})
    assert not [d for d in again.deltas["v1"] if d.item == calibration_item("home")]


def test_before_calibration_is_trusted_feedback_teaches_no_residual() -> None:
    from dataclasses import replace

    from streaming.events import calibration_item

    untrusted = replace(POSITIONED, learn=False)
    work = build_deltas([(0, ev("click", request="r2"))], {"r2": untrusted}, {}, {})
    # No residual is learnt; the impression counts as seen at its prior (so bonuses still shrink).
    assert {c: b for c, (_, b) in cells(work).items()} == {2: 0.0, 9: 0.0}
    assert cells(work)[2][0] == pytest.approx((0.8 * 0.5) ** 2)
    assert work.deltas["v1"][0].credits == {"r2": "ci"}
    assert any(d.item == calibration_item("home") and d.b.sum() == 1.0 for d in work.deltas["v1"])


def test_a_click_naming_its_position_is_weighed_by_where_it_was_shown() -> None:
    # The client moved the item from slot 3 (e = 0.5) to the top: the stored curve says e = 1.
    from dataclasses import replace

    reordered = replace(POSITIONED, curve=[1.0, 0.8, 0.6, 0.5])
    click = FeedbackEvent("c", "r2", "a", "click", 1.0, 0.0, position=0)
    got = cells(build_deltas([(0, click)], {"r2": reordered}, {}, {}))
    assert got[2] == pytest.approx((0.8**2, 0.8 * (1.0 - 0.2)))
    assert FeedbackEvent.decode(click.encode()) == click


def test_a_bad_position_is_refused() -> None:
    from streaming.events import EventError

    with pytest.raises(EventError, match="position"):
        FeedbackEvent.parse({"event_id": "e", "request_id": "r", "item_id": "a", "type": "click", "position": -1})


def test_the_calibration_is_taught_in_the_served_items_popularity_group() -> None:
    import dataclasses

    from bandits.calibration import BINS, GROUPS, bin_of
    from streaming.events import calibration_item

    popular = dataclasses.replace(POSITIONED, groups={"a": GROUPS - 1})
    assert RequestContext.decode(popular.encode()) == popular  # the group travels with the context
    work = build_deltas([(0, ev("impression", request="r2"))], {"r2": popular}, {}, {})
    (cal,) = [d for d in work.deltas["v1"] if d.item == calibration_item("home")]
    assert cal.coords.tolist() == [(GROUPS - 1) * BINS + int(bin_of([0.5])[0])]


EVENT = st.tuples(
    st.sampled_from(["impression", "click", "reward"]),
    st.floats(-1e12, 1e12, allow_nan=False),
    st.sampled_from(["a", "b"]),
    st.one_of(st.none(), st.integers(0, 20)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENT, max_size=30), st.floats(-2.0, 2.0), st.floats(0.01, 3.0))
def test_no_feedback_on_one_request_moves_an_item_more_than_one_outcome(
    seq: list[tuple[str, float, str, int | None]], lo: float, width: float
) -> None:
    """The principle of hostile input: whatever a caller sends about one request (any mix,
    order and repetition of impressions, clicks and rewards, any values, any claimed positions),
    each item learns at most one impression and one outcome at the surface's top reward: what
    one real click would teach on a surface whose top reward is a click."""
    hi = lo + width
    ctx = dataclasses.replace(POSITIONED, rewards=(lo, hi), curve=[1.0, 0.7, 0.6, 0.5])
    events = [
        (n, FeedbackEvent(f"e{n}", ctx.request_id, item, kind, value, 0.0, position))  # type: ignore[arg-type]  # kind is one of the literals
        for n, (kind, value, item, position) in enumerate(seq)
    ]
    work = build_deltas(events, {ctx.request_id: ctx}, {}, {})
    for delta in work.deltas.get(ctx.version, []):
        if delta.item not in ctx.items:
            continue  # the calibration's and examination's pseudo-items
        prior = ctx.items[delta.item][0]
        for coord, w2, b in zip(delta.coords.tolist(), delta.w2.tolist(), delta.b.tolist(), strict=True):
            w = ctx.weights[ctx.indices.index(coord)]
            # The examination weight of any slot is at most 1 (the top slot's).
            assert w2 <= w * w + 1e-12
            # b = w·e·r − w·e²·p with one r in [lo, hi] at most and e in (0, 1].
            assert b <= w * max(hi, 0.0) + 1e-9
            assert b >= w * (min(lo, 0.0) - prior) - 1e-9


def test_each_newly_credited_click_joins_its_users_recent_clicks() -> None:
    ctx = dataclasses.replace(CTX, user_id="u7", ts=50.0)
    events = [(0, ev("impression")), (1, ev("click")), (2, ev("click")), (3, ev("click", item="b"))]
    work = build_deltas(events, {"r1": ctx}, {}, {})
    assert work.clicks == [("u7", "a", 50.0), ("u7", "b", 50.0)]  # the repeated click is a duplicate
    assert build_deltas([(4, ev("click"))], {"r1": ctx}, {}, {("v1", "a", "r1"): "ic"}).clicks == []
    assert build_deltas([(0, ev("click"))], {"r1": CTX}, {}, {}).clicks == []  # no user recorded
    braces = dataclasses.replace(CTX, user_id="{u}")
    assert build_deltas([(0, ev("click"))], {"r1": braces}, {}, {}).clicks == []


def test_an_experiment_arms_feedback_goes_to_its_namespace_and_is_counted_twice() -> None:
    """An arm learns apart (its own namespace, app/experiments.py) and its counters go both to
    its surface and to the arm's counter surface."""
    arm = dataclasses.replace(CTX, arm="x-1a2b3c/control", ages={"a": 60.0})
    work = build_deltas([(0, ev("impression")), (1, ev("click"))], {"r1": arm}, {}, {})
    assert set(work.deltas) == {"v1@x-1a2b3c/control"}
    (delta,) = work.deltas["v1@x-1a2b3c/control"]
    assert delta.item == "a" and delta.credits == {"r1": "ic"}
    # Fresh impressions count per bundle version, for the surface's "reaching 50".
    assert dict(work.fresh_impressions) == {("home", "v1", "a"): 1}
    for surface in ("home", "home@x-1a2b3c/control"):
        assert work.ops[(surface, "imp_exploited")] == 1 and work.ops[(surface, "clk_exploited")] == 1
        assert work.ops[(surface, "imp_fresh")] == 1 and work.ops[(surface, "clk_fresh")] == 1
    # Credits already given in the arm's namespace are honoured there, not in the bundle's.
    again = build_deltas([(2, ev("click"))], {"r1": arm}, {}, {("v1@x-1a2b3c/control", "a", "r1"): "ic"})
    assert again.counts["duplicate"] == 1
    plain = build_deltas([(2, ev("click"))], {"r1": arm}, {}, {("v1", "a", "r1"): "ic"})
    assert plain.counts["credited_click"] == 1


def test_an_item_in_two_partitions_of_one_batch_is_credited_once() -> None:
    """The batch's state is read once for all partitions (``apply_partitions``): an item whose
    events reach two partitions (the topic was repartitioned) must still see the credits the
    first partition wrote, as it did applied partition by partition. And a redelivery of the
    whole batch changes nothing."""
    store = MemoryStore()
    parsed = {0: [(3, ev("impression", eid="e1"))], 1: [(8, ev("impression", eid="e2")), (9, ev("click", eid="e3"))]}
    touched: dict[tuple[str, int], set[str]] = defaultdict(set)
    works, conflicts = apply_partitions(store, parsed, {"r1": CTX}, 60.0, touched)
    assert conflicts == 0
    assert works[0].counts["credited_impression"] == 1 and works[1].counts["duplicate"] == 1
    w2, b = store.gather("v1", ["a"], np.array([2, 5]))
    assert w2[0].tolist() == pytest.approx([0.64, 0.04])  # one impression, not two
    assert b[0].tolist() == pytest.approx([0.8 * 0.75, 0.2 * 0.75])
    again, _ = apply_partitions(store, parsed, {"r1": CTX}, 60.0, touched)
    assert again[0].counts["redelivered"] == 1 and again[1].counts["redelivered"] == 2
    assert store.gather("v1", ["a"], np.array([2, 5]))[0][0].tolist() == pytest.approx([0.64, 0.04])
