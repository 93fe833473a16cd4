"""Users file → user tower in the bundle → a cold user served from her request features."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.cli import main as cli
from app.main import create_app
from offline.bundle import Bundle, current_version
from tests.app.conftest import TOKEN, settings_for

N_ITEMS, N_USERS = 40, 80


def kind(item: int) -> str:
    return "x" if item % 2 == 0 else "y"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Team a likes kind x and passes on kind y; team b the other way round. Each user also
    engages with kind x items more often if she is in team a (two of three), so that what she
    chooses, which the factorisation models, tells the teams apart as well as what she likes."""
    root = tmp_path_factory.mktemp("teams")
    rng = np.random.default_rng(0)
    interactions, items, users = root / "interactions.csv", root / "items.csv", root / "users.csv"
    with items.open("w", newline="") as fh:
        csv.writer(fh).writerows(
            [["item_id", "created_at", "kind"], *([f"m{j}", "0", kind(j)] for j in range(N_ITEMS))]
        )
    with users.open("w", newline="") as fh:
        csv.writer(fh).writerows([["user_id", "team"], *([f"p{u}", "ab"[u % 2]] for u in range(N_USERS))])
    rows = []
    for u in range(N_USERS):
        liked = "xy"[u % 2]
        own = [j for j in range(N_ITEMS) if kind(j) == liked]
        other = [j for j in range(N_ITEMS) if kind(j) != liked]
        for j in [*rng.choice(own, 16, replace=False), *rng.choice(other, 8, replace=False)]:
            rows.append([f"p{u}", f"m{j}", float(rng.uniform(0, 1e6)), 1.0 if kind(int(j)) == liked else 0.0])
    with interactions.open("w", newline="") as fh:
        csv.writer(fh).writerows([["user_id", "item_id", "timestamp", "reward"], *rows])
    return interactions, items, users


@pytest.mark.parametrize("retrieval", ["two_tower", "factorisation"])
def test_a_cold_user_is_served_from_her_features(
    files: tuple[Path, Path, Path], tmp_path: Path, retrieval: str
) -> None:
    interactions, items, users = files
    out = tmp_path / "bundles"
    args = ["train", "--interactions", str(interactions), "--items", str(items), "--users", str(users)]
    args += ["--retrieval", retrieval]
    assert cli([*args, "--out", str(out)]) == 0
    version = current_version(out)
    assert version is not None
    bundle = Bundle.load(out / version)
    assert set(bundle.manifest["user_tower"]["arrays"]) <= set(bundle.arrays)
    assert sorted(bundle.arrays["user_feature_vocab"].tolist()) == ["team=a", "team=b"]

    candidates = [f"m{j}" for j in range(N_ITEMS)]
    with TestClient(create_app(settings_for(out))) as client:

        def prior_gap(features: dict[str, str]) -> float:
            """Mean prior of kind-x items minus kind-y items, for a user the bundle never saw."""
            body = {"user_id": "newcomer", "k": N_ITEMS, "candidates": candidates, "user_features": features}
            r = client.post("/v1/recommend", json=body)
            assert r.status_code == 200, r.text
            prior = {i["item_id"]: i["prior"] for i in r.json()["items"]}
            return float(
                np.mean([prior[f"m{j}"] for j in range(0, N_ITEMS, 2)])
                - np.mean([prior[f"m{j}"] for j in range(1, N_ITEMS, 2)])
            )

        assert prior_gap({"team": "a"}) > 0.1
        assert prior_gap({"team": "b"}) < -0.1
        assert abs(prior_gap({})) < abs(prior_gap({"team": "a"}))  # the default user leans neither way
        assert abs(prior_gap({"team": "nobody"})) < abs(prior_gap({"team": "a"}))


def test_bad_users_file_names_row_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    interactions, items, users = tmp_path / "i.csv", tmp_path / "it.csv", tmp_path / "u.csv"
    interactions.write_text("user_id,item_id,timestamp\np1,m1,1\n")
    items.write_text("item_id\nm1\n")
    users.write_text("user_id,team\np1,a\np1,b\n")
    code = cli(["train", "--interactions", str(interactions), "--items", str(items), "--users", str(users),
                "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 2
    assert f"{users}, row 3, column user_id: duplicate user id 'p1' (first at row 2)" in capsys.readouterr().err


def test_a_users_clicks_fold_into_her_embedding_within_seconds(files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Over HTTP on embedded defaults: a user the bundle never saw clicks kind-x items, and the
    priors of the kind-x items she has not clicked rise above kind y's (the factorisation's
    fold-in, app/recommender.py); a surface with ``fold_in_clicks`` 0 stays where it was."""
    interactions, items, _ = files
    out = tmp_path / "bundles"
    assert cli(["train", "--interactions", str(interactions), "--items", str(items), "--out", str(out)]) == 0
    candidates = [f"m{j}" for j in range(N_ITEMS)]
    clicked = [f"m{j}" for j in range(0, 10, 2)]  # five kind-x items
    unclicked_x, kind_y = range(10, N_ITEMS, 2), range(1, N_ITEMS, 2)
    with TestClient(create_app(settings_for(out))) as client:
        headers = {"authorization": f"Bearer {TOKEN}"}
        r = client.put("/v1/admin/surfaces/nofold", json={"fold_in_clicks": 0}, headers=headers)
        assert r.status_code == 200, r.text
        r = client.put("/v1/admin/surfaces/weightless", json={"fold_in_weight": 0.0}, headers=headers)
        assert r.status_code == 200, r.text

        def gap(surface: str) -> float:
            body = {"user_id": "newcomer", "k": N_ITEMS, "candidates": candidates, "surface": surface}
            r = client.post("/v1/recommend", json=body)
            assert r.status_code == 200, r.text
            prior = {i["item_id"]: i["prior"] for i in r.json()["items"]}
            return float(np.mean([prior[f"m{j}"] for j in unclicked_x]) - np.mean([prior[f"m{j}"] for j in kind_y]))

        before, before_off, before_weightless = gap("default"), gap("nofold"), gap("weightless")
        rec = client.post("/v1/recommend", json={"user_id": "newcomer", "k": N_ITEMS, "candidates": candidates}).json()
        events = [
            {"event_id": f"c-{item}", "request_id": rec["request_id"], "item_id": item, "type": "click", "ts": 1.0}
            for item in clicked
        ]
        assert client.post("/v1/feedback", json={"events": events}).status_code == 202
        deadline = time.monotonic() + 10
        while gap("default") < before + 0.05:  # the embedded consumer applies in the background
            assert time.monotonic() < deadline, f"the clicks never moved her priors ({gap('default')} vs {before})"
            time.sleep(0.05)
        assert gap("nofold") == pytest.approx(before_off, abs=1e-9)
        assert gap("weightless") == pytest.approx(before_weightless, abs=1e-9)
