"""The dashboard's what-if curve: from minute counters (unit) and after real traffic (end to end)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from app.dashboard import WHATIF_GRID, whatif_curve
from app.surfaces import SurfaceConfig
from streaming.opstats import coin_field
from tests.app.conftest import auth


def minute_rows(explore: np.ndarray, p: float, clicks: np.ndarray, minutes: int = 3) -> list[dict[str, int]]:
    """The coin counters the consumer would write for these requests, spread over minutes."""
    rows: list[dict[str, int]] = [{} for _ in range(minutes)]
    for n, (x, c) in enumerate(zip(explore.tolist(), clicks.tolist(), strict=True)):
        row = rows[n % minutes]
        for stat, v in (("req", 1), ("clk", c), ("clk2", c * c)):
            name = coin_field(x, stat, p)
            row[name] = row.get(name, 0) + v
    return rows


def test_the_curve_covers_the_grid_and_the_current_setting() -> None:
    rng = np.random.default_rng(0)
    explore = rng.random(3000) < 0.3
    clicks = rng.binomial(4, np.where(explore, 0.3, 0.5) / 4)
    curve = whatif_curve(minute_rows(explore, 0.3, clicks), SurfaceConfig(explore_traffic=0.3))
    assert curve["explore_traffic"] == sorted({*WHATIF_GRID, 0.3}) and curve["current"] == 0.3
    assert all(v is not None for v in curve["clicks_per_request"]) and not any(curve["not_estimable"])
    assert all(lo < v < hi for lo, v, hi in zip(curve["low"], curve["clicks_per_request"], curve["high"], strict=True))
    at = curve["explore_traffic"].index(0.3)
    # At the logged setting the estimate is the realised mean: the same requests, weight 1 each.
    assert curve["realised"]["clicks_per_request"] == curve["clicks_per_request"][at] == round(clicks.mean(), 4)
    assert curve["realised"]["requests"] == 3000
    assert curve["requests"] == {"explore": int(explore.sum()), "greedy": int((~explore).sum())}
    # Explore slates click less here (0.3 against 0.5), so the curve falls with explore_traffic.
    assert curve["clicks_per_request"][0] > curve["clicks_per_request"][-1]


def test_a_window_with_explore_traffic_0_says_why_it_cannot_price_exploring() -> None:
    rng = np.random.default_rng(1)
    greedy = np.zeros(200, dtype=bool)
    rows = minute_rows(greedy, 0.0, rng.binomial(2, 0.2, 200))
    curve = whatif_curve(rows, SurfaceConfig(explore_traffic=0.0))
    assert curve["clicks_per_request"][0] is not None and curve["not_estimable"][0] is None
    assert all(v is None for v in curve["clicks_per_request"][1:])
    assert all("explore_traffic 0" in (r or "") for r in curve["not_estimable"][1:])
    # The setting moved to 0.2 a minute ago: nothing served at 0.2 yet, and 0.2 still cannot be priced.
    moved = whatif_curve(rows, SurfaceConfig(explore_traffic=0.2))
    assert moved["realised"] == {"clicks_per_request": None, "low": None, "high": None, "requests": 0}
    assert moved["settings_seen"] == [0.0]


def test_no_traffic_gives_an_empty_curve_not_zeros() -> None:
    curve = whatif_curve([{}, {"req": 3}], SurfaceConfig())
    assert all(v is None for v in curve["clicks_per_request"]) and all(curve["not_estimable"])
    assert curve["realised"]["clicks_per_request"] is None


def test_after_traffic_the_stats_carry_a_curve_and_the_realised_value_is_a_hand_count(client: TestClient) -> None:
    surface = "whatif"
    client.put(f"/v1/admin/surfaces/{surface}", json={"explore_traffic": 0.4, "explore_slots": 2}, headers=auth())
    rng = np.random.default_rng(2)
    requests, clicks = 120, 0
    for n in range(requests):
        rec = client.post("/v1/recommend", json={"user_id": f"user-{n % 40}", "k": 4, "surface": surface}).json()
        assert not rec["degraded"]
        events: list[dict[str, Any]] = []
        for m, item in enumerate(rec["items"]):
            base = {"request_id": rec["request_id"], "item_id": item["item_id"], "ts": time.time()}
            events.append({**base, "event_id": f"{n}-{m}-i", "type": "impression"})
            if rng.random() < 0.3:
                events.append({**base, "event_id": f"{n}-{m}-c", "type": "click"})
                clicks += 1
        assert client.post("/v1/feedback", json={"events": events}).status_code == 202
    deadline = time.monotonic() + 30
    while True:  # the consumer and the counter flush run in the background
        curve = client.get("/v1/admin/stats", headers=auth()).json()["surfaces"][surface]["whatif"]
        if curve["realised"]["requests"] == requests:
            break
        assert time.monotonic() < deadline, curve
        time.sleep(0.1)
    assert curve["realised"]["clicks_per_request"] == round(clicks / requests, 4)
    assert curve["requests"]["explore"] > 0 and curve["requests"]["greedy"] > 0
    assert all(v is not None for v in curve["clicks_per_request"]), curve["not_estimable"]
    at = curve["explore_traffic"].index(0.4)
    assert curve["clicks_per_request"][at] == curve["realised"]["clicks_per_request"]
