"""The operator dashboard in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from app.auth import digest
from tests.app.conftest import TOKEN, serving, settings_for
from tests.conftest import unavailable

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server(bundle_dir: Path) -> Iterator[str]:
    with serving(settings_for(bundle_dir)) as base:
        yield base


def simulate(base: str, requests: int = 160) -> None:
    httpx.put(
        f"{base}/v1/admin/surfaces/home", json={"explore_traffic": 0.5, "explore_slots": 2}, headers=AUTH
    ).raise_for_status()
    serve_users(base, "home", requests, seed=0, users=50)


def settled_stats(base: str, requests: int = 160, timeout_s: float = 30.0) -> dict[str, Any]:
    """The stats once the consumer has applied the feedback and the counters have flushed (both
    asynchronous: waiting a fixed time failed on a loaded machine): every request's top slot
    counted for the what-if dial, so the page shows the numbers read here."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats: dict[str, Any] = httpx.get(f"{base}/v1/admin/stats", headers=AUTH).json()
        home = stats["surfaces"].get("home", {}).get("series", {})
        shown = stats["surfaces"].get("home", {}).get("whatif", {}).get("realised", {}).get("requests", 0)
        counted = sum(home.get("impressions_explored", [])) > 0 and sum(home.get("impressions_exploited", [])) > 0
        if counted and shown == requests and any(v is not None for v in home.get("freshness_p99_ms", [])):
            return stats
        assert time.monotonic() < deadline, f"stats did not settle in {timeout_s} s: {home}"
        time.sleep(0.2)


def explored_scores(base: str) -> list[float]:
    rec = httpx.post(f"{base}/v1/recommend", json={"user_id": "user-1", "k": 4, "surface": "home"}).json()
    return [i["score"] for i in rec["items"] if i["explored"]]


def test_dashboard_in_a_real_browser(server: str) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("chromium not found (Debian package chromium; `make test` installs it)")
    from playwright.sync_api import sync_playwright

    simulate(server)
    stats = settled_stats(server)
    home = stats["surfaces"]["home"]["series"]
    assert sum(home["impressions_explored"]) > 0 and sum(home["impressions_exploited"]) > 0
    assert any(v is not None for v in home["freshness_p99_ms"])
    assert httpx.get(f"{server}/v1/admin/stats").status_code == 401

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server}/dashboard")
        page.fill("#token", TOKEN)
        page.click("#auth button")
        page.wait_for_selector("body[data-loaded=true]", timeout=10_000)

        canvases = page.locator("#surface-home .charts canvas")
        assert canvases.count() == 8
        # The fresh-item counter says why it reads 0 exactly when nothing fresh was shown.
        ages = home["impressions_by_age"]
        fresh_shown = sum(ages["lt_1h"]) + sum(ages["lt_1d"]) > 0
        titles = page.locator("#surface-home .charts h3").all_inner_texts()
        assert any("no item under a day old was shown" in t for t in titles) == (not fresh_shown), titles
        points = [int(canvases.nth(i).get_attribute("data-points") or 0) for i in range(canvases.count())]
        assert all(n > 0 for n in points), points

        # The what-if dial beside the settings: a point per explore_traffic of the grid (all
        # estimable at 0.5 with both coin sides seen), the realised value, and what it prices.
        curve = stats["surfaces"]["home"]["whatif"]
        assert curve["realised"]["requests"] > 0 and None not in curve["clicks_per_request"], curve
        dial = page.locator("#surface-home .dial .whatif")
        assert int(dial.locator("canvas").get_attribute("data-points") or 0) == len(curve["explore_traffic"])
        text = dial.inner_text()
        assert "immediate cost only" in text and "long-term value" in text and "control arm" in text
        assert f"over {curve['realised']['requests']} requests" in text
        page.locator('form[data-surface="home"] input[name="explore_traffic"]').fill("0.15")
        assert "at explore_traffic 0.15: " in dial.locator(".readout").inner_text()

        # An edit with the token takes effect on the next request, statistics untouched.
        form = page.locator('form[data-surface="home"]')
        form.locator('input[name="alpha"]').fill("7.5")
        form.locator('input[name="explore_traffic"]').fill("1")
        form.locator('button[type="submit"]').click()
        page.wait_for_selector('form[data-surface="home"] .msg.ok', timeout=5000)
        config = httpx.get(f"{server}/v1/admin/surfaces/home", headers=AUTH).json()
        assert config["alpha"] == 7.5 and config["explore_traffic"] == 1.0
        scores = explored_scores(server)
        assert scores and max(scores) > 2.0  # mean ≤ ~1, so only α = 7.5 puts a UCB there

        assert errors == [], errors  # nothing logged as an error while loading, drawing and editing

        # Without the right token the edit is refused and nothing changes.
        page.fill("#token", "wrong-token")
        page.click("#auth button")
        page.wait_for_selector("#status.error", timeout=5000)
        page.wait_for_timeout(300)
        form = page.locator('form[data-surface="home"]')
        form.locator('input[name="alpha"]').fill("0.5")
        form.locator('button[type="submit"]').click()
        page.wait_for_selector('form[data-surface="home"] .msg.error', timeout=5000)
        assert "refused" in form.locator(".msg").inner_text()
        assert httpx.get(f"{server}/v1/admin/surfaces/home", headers=AUTH).json()["alpha"] == 7.5

        page.fill("#token", TOKEN)
        page.click("#auth button")
        page.wait_for_selector("#status:not(.error)", timeout=10_000)
        page.wait_for_timeout(500)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        browser.close()
    # After the wrong token, the browser logs its own 401 for the refused calls; nothing else.
    assert [e for e in errors if "401" not in e] == [], errors


def serve_users(base: str, surface: str, requests: int, seed: int, users: int = 60) -> None:
    """Users with impressions of every slot and clicks at 0.3 per slot on ``surface``."""
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=base, timeout=10) as c:
        for n in range(requests):
            rec = c.post("/v1/recommend", json={"user_id": f"user-{n % users}", "k": 4, "surface": surface}).json()
            events: list[dict[str, Any]] = []
            for m, item in enumerate(rec["items"]):
                base_event = {"request_id": rec["request_id"], "item_id": item["item_id"], "ts": time.time()}
                events.append({**base_event, "event_id": f"{seed}-{n}-{m}-i", "type": "impression"})
                if rng.random() < 0.3:
                    events.append({**base_event, "event_id": f"{seed}-{n}-{m}-c", "type": "click"})
            c.post("/v1/feedback", json={"events": events}).raise_for_status()


def test_an_experiment_in_a_real_browser(bundle_dir: Path, tmp_path: Path) -> None:
    """Start an experiment from the page, watch both arms fill, promote one; a viewer's token
    cannot start one."""
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("chromium not found (Debian package chromium; `make test` installs it)")
    from playwright.sync_api import sync_playwright

    operators = tmp_path / "operators.json"
    operators.write_bytes(orjson.dumps({"vera": {"sha256": digest("viewer-token"), "role": "viewer"}}))
    errors: list[str] = []
    with serving(settings_for(bundle_dir, operators_file=operators)) as base, sync_playwright() as p:
        serve_users(base, "shop", 20, seed=1)  # the surface shows on the page once it has traffic
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: d.accept())

        # A viewer sees the form, but starting is refused and nothing starts.
        page.goto(f"{base}/dashboard")
        page.fill("#token", "viewer-token")
        page.click("#auth button")
        page.wait_for_selector("body[data-loaded=true]", timeout=10_000)
        form = page.locator('form[data-experiment-surface="shop"]')
        form.locator('button[type="submit"]').click()
        page.wait_for_selector('form[data-experiment-surface="shop"] .msg.error', timeout=5000)
        assert "viewer" in form.locator(".msg").inner_text()
        assert httpx.get(f"{base}/v1/admin/surfaces/shop/experiment", headers=AUTH).json()["experiment"] is None

        # An editor starts one from the same form: control α = 0 at 30% against the surface's α at 70%.
        page.fill("#token", TOKEN)
        page.click("#auth button")
        page.wait_for_timeout(500)
        form = page.locator('form[data-experiment-surface="shop"]')
        form.locator('input[name="name"]').fill("alpha0")
        form.locator('input[name="share0"]').fill("0.3")
        form.locator('input[name="share1"]').fill("0.7")
        form.locator('input[name="traffic1"]').fill("0.5")
        form.locator('button[type="submit"]').click()
        page.wait_for_selector("#surface-shop .experiment table.arms", timeout=10_000)
        started = httpx.get(f"{base}/v1/admin/surfaces/shop/experiment", headers=AUTH).json()["experiment"]
        assert started["started_by"] == "operator" and [a["name"] for a in started["arms"]] == ["control", "explore"]
        assert started["arms"][0]["config"]["alpha"] == 0.0 and started["arms"][1]["config"]["explore_traffic"] == 0.5

        # Both arms fill: the table shows each arm's requests and clicks per request.
        serve_users(base, "shop", 200, seed=2)
        deadline = time.monotonic() + 30
        while True:
            arms = httpx.get(f"{base}/v1/admin/surfaces/shop/experiment", headers=AUTH).json()["arms"]
            if sum(a["requests_shown"] for a in arms) == 200 == sum(a["requests_served"] for a in arms):
                break
            assert time.monotonic() < deadline, arms
            time.sleep(0.2)
        page.wait_for_timeout(5500)  # the page refreshes every 5 s
        for arm in arms:
            row = page.locator(f'#surface-shop tr[data-arm="{arm["name"]}"]')
            cells = row.locator("td")
            assert cells.nth(3).inner_text() == str(arm["requests_served"])
            assert cells.nth(4).inner_text().startswith(f"{arm['clicks_per_request']:.3f}")
        verdict = page.locator("#surface-shop .experiment .verdict").inner_text()
        assert verdict.startswith("explore ") and "control" in verdict
        charts = page.locator("#surface-shop .experiment canvas")
        assert charts.count() == 3 and int(charts.nth(0).get_attribute("data-points") or 0) > 0

        # Promote explore: the surface takes its settings, the experiment ends, the audit says so.
        page.locator('#surface-shop button.promote[data-arm="explore"]').click()
        page.wait_for_selector("#surface-shop .experiment form.new-experiment", timeout=10_000)
        assert "promoted explore" in page.locator("#surface-shop .experiment h3").first.inner_text()
        assert httpx.get(f"{base}/v1/admin/surfaces/shop", headers=AUTH).json()["explore_traffic"] == 0.5
        assert "experiment alpha0" in page.locator("#changes tbody").inner_text()
        browser.close()
    assert [e for e in errors if "403" not in e] == [], errors
