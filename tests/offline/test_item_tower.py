"""Items file → item tower in the bundle → an item the bundle does not know, embedded in numpy
exactly as the job embedded the items it had no interactions for."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from offline.bundle import ITEM_TOWER, Bundle, BundleError, current_version, item_from_features, publish
from offline.job import JobConfig, run_job
from offline.rankers import RankerConfig
from offline.two_tower import TwoTowerConfig

FAST = JobConfig(
    clusters=4,
    two_tower=TwoTowerConfig(epochs=3, dim=8),
    rankers=RankerConfig(epochs=2),
    search=({},),
    retrieval="two_tower",  # these tests are about the two-tower's own item tower
)
GENRES = ("Comedy", "Drama", "Horror", "Romance")
N_TRAINED, N_USERS = 30, 50
# Never in the interactions file, so exported from content alone. Their bags mix the columns
# with different counts (two genres and a decade), so that a mean per column would differ from
# the tower's one mean over the item's bag; "Western" belongs to no trained item.
Features = dict[str, str | float]
FRESH: dict[str, Features] = {
    "f0": {"genres": "Comedy|Drama", "decade": "1990"},
    "f1": {"genres": "Horror", "decade": "2000"},
    "f2": {"genres": "Romance|Western|Comedy", "decade": ""},
    "f3": {"genres": "", "decade": "1980"},
    "f4": {"genres": "", "decade": ""},  # featureless
}


@dataclass(frozen=True)
class Run:
    bundle: Bundle
    features: dict[str, Features]  # item id -> its row of the items file, as the job read it


def normalise(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.linalg.norm(x), dtype=np.float64)


def write_files(root: Path, feature_columns: bool) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    features = {
        f"m{j}": {"genres": "|".join(rng.choice(GENRES, 1 + j % 2, replace=False)), "decade": str(1980 + 10 * (j % 3))}
        for j in range(N_TRAINED)
    } | FRESH
    columns = ["genres", "decade"] if feature_columns else []
    items, interactions = root / "items.csv", root / "interactions.csv"
    with items.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item_id", "created_at", *columns])
        writer.writerows([item, "0", *(f[c] for c in columns)] for item, f in features.items())
    rows = [
        [f"u{u}", f"m{j}", float(rng.uniform(0, 1e6)), float(rng.random() < 0.5)]
        for u in range(N_USERS)
        for j in rng.choice(N_TRAINED, 10, replace=False)
    ]
    with interactions.open("w", newline="") as fh:
        csv.writer(fh).writerows([["user_id", "item_id", "timestamp", "reward"], *rows])
    return interactions, items


def train(root: Path, feature_columns: bool = True, config: JobConfig = FAST) -> Run:
    interactions, items = write_files(root, feature_columns)
    report = run_job(interactions, items, root / "bundles", config)
    assert report.published
    with items.open(newline="") as fh:
        features: dict[str, Features] = {
            row["item_id"]: {c: v for c, v in row.items() if c not in ("item_id", "created_at")}
            for row in csv.DictReader(fh)
        }
    return Run(Bundle.load(root / "bundles" / report.version), features)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return train(tmp_path_factory.mktemp("item-tower"))


@pytest.fixture(scope="module")
def factorised(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return train(tmp_path_factory.mktemp("factorised"), config=replace(FAST, retrieval="factorisation"))


def embedding(run: Run, item: str) -> np.ndarray:
    return np.asarray(run.bundle.arrays["item_emb"][run.bundle.item_index[item]], dtype=np.float64)


def test_the_bundle_carries_the_item_tower(run: Run) -> None:
    a, spec = run.bundle.arrays, run.bundle.manifest["item_tower"]
    assert spec == {"arrays": list(ITEM_TOWER), "columns": ["decade", "genres"], "normalise": True}
    assert run.bundle.item_feature_columns == frozenset({"decade", "genres"})
    vocab = set(a["item_feature_vocab"].tolist())
    assert {"genres=Western", "decade=1990", *(f"genres={g}" for g in GENRES)} <= vocab
    assert len(vocab) == len(GENRES) + 1 + 3 and run.bundle.item_feature_index.keys() == vocab
    assert a["item_feature_emb"].shape == (len(vocab), 8) and a["item_feature_emb"].dtype == np.float32
    assert a["item_out_w"].shape == (8, 8) and a["item_out_b"].shape == (8,)


@pytest.mark.parametrize("item", sorted(FRESH))
def test_an_item_without_interactions_is_embedded_as_the_job_did(run: Run, item: str) -> None:
    v = item_from_features(run.bundle, run.features[item])
    assert v is not None
    np.testing.assert_allclose(v, embedding(run, item), atol=1e-5)


@pytest.mark.parametrize("item", sorted(FRESH))
def test_a_factorisation_embeds_items_without_interactions_as_the_job_did(factorised: Run, item: str) -> None:
    # Not normalised: a factor's norm is how much users engage with the item.
    assert factorised.bundle.manifest["item_tower"]["normalise"] is False
    assert factorised.bundle.manifest["metrics"]["retrieval"] == "factorisation"
    v = item_from_features(factorised.bundle, factorised.features[item])
    assert v is not None
    np.testing.assert_allclose(v, embedding(factorised, item), atol=1e-5)


def test_a_factorisation_item_is_its_content_only_without_interactions(factorised: Run) -> None:
    for item in ("m0", "m1", "m2"):
        v = item_from_features(factorised.bundle, factorised.features[item])
        assert v is not None and np.abs(v - embedding(factorised, item)).max() > 1e-3
    featureless = item_from_features(factorised.bundle, {})
    assert featureless is not None
    np.testing.assert_allclose(featureless, factorised.bundle.arrays["item_out_b"], atol=1e-6)


def test_a_trained_item_is_more_than_its_content(run: Run) -> None:
    # The id part is in the exported rows of items with interactions: what makes the
    # equivalence above a test of the content path, not of two rows that happen to agree.
    for item in ("m0", "m1", "m2"):
        v = item_from_features(run.bundle, run.features[item])
        assert v is not None and np.abs(v - embedding(run, item)).max() > 1e-3


def test_request_values_read_as_the_items_file(run: Run) -> None:
    as_file = item_from_features(run.bundle, {"genres": "Comedy|Drama", "decade": "1990"})
    as_request = item_from_features(run.bundle, {"genres": " Comedy | Drama ", "decade": 1990.0})
    assert as_file is not None and as_request is not None
    np.testing.assert_allclose(as_request, as_file, atol=1e-12)
    np.testing.assert_allclose(as_file, embedding(run, "f0"), atol=1e-5)


def test_unknown_tokens_and_columns_are_left_out(run: Run) -> None:
    known = item_from_features(run.bundle, {"genres": "Horror", "decade": "2000"})
    noisy = item_from_features(run.bundle, {"genres": "Horror|Noir", "decade": "2000", "colour": "red"})
    assert known is not None and noisy is not None
    np.testing.assert_allclose(noisy, known, atol=1e-12)


def test_a_featureless_item_is_the_normalised_output_bias(run: Run) -> None:
    bias = normalise(run.bundle.arrays["item_out_b"])
    featureless: list[Features] = [{}, {"genres": "Noir"}, {"genres": "", "decade": ""}]
    for features in featureless:
        v = item_from_features(run.bundle, features)
        assert v is not None
        np.testing.assert_allclose(v, bias, atol=1e-12)
    np.testing.assert_allclose(bias, embedding(run, "f4"), atol=1e-5)


def test_an_items_file_without_features_still_gets_a_tower(tmp_path: Path) -> None:
    run = train(tmp_path, feature_columns=False)
    a = run.bundle.arrays
    assert run.bundle.manifest["item_tower"]["columns"] == [] and run.bundle.item_feature_columns == frozenset()
    assert a["item_feature_vocab"].shape == (0,) and a["item_feature_emb"].shape == (0, 8)
    v = item_from_features(run.bundle, {"genres": "Comedy"})
    assert v is not None
    np.testing.assert_allclose(v, normalise(a["item_out_b"]), atol=1e-12)
    for item in FRESH:
        np.testing.assert_allclose(v, embedding(run, item), atol=1e-5)


def republish(
    run: Run, root: Path, arrays: tuple[str, ...] | None, changed: dict[str, np.ndarray] | None = None
) -> Path:
    """The run's bundle again, with ``arrays`` listed as its item tower (None: no item tower) and
    the ``changed`` arrays in place of the job's."""
    kept = {k: v for k, v in run.bundle.manifest.items() if k not in {"format", "version", "created_at", "checksums"}}
    if arrays is None:
        del kept["item_tower"]
    else:
        kept["item_tower"] = {**kept["item_tower"], "arrays": list(arrays)}
    served = {k: np.asarray(v) for k, v in run.bundle.arrays.items() if k not in ITEM_TOWER or k in (arrays or ())}
    return publish(root, "v-republished", served | (changed or {}), kept)


def test_an_older_bundle_without_an_item_tower_still_loads(run: Run, tmp_path: Path) -> None:
    path = republish(run, tmp_path, None)
    assert current_version(tmp_path) == "v-republished" and "item_tower" not in json.loads(
        (path / "manifest.json").read_text()
    )
    old = Bundle.load(path)
    assert not set(ITEM_TOWER) & set(old.arrays)
    assert old.item_feature_index == {} and old.item_feature_columns == frozenset()
    assert item_from_features(old, run.features["f0"]) is None
    assert item_from_features(old, {}) is None


def test_a_partial_item_tower_is_refused(run: Run, tmp_path: Path) -> None:
    path = republish(run, tmp_path / "partial", ("item_feature_vocab", "item_out_b"))
    with pytest.raises(BundleError, match="item_tower lists"):
        Bundle.load(path)
    short = {"item_feature_emb": np.asarray(run.bundle.arrays["item_feature_emb"][:-1])}
    path = republish(run, tmp_path / "short", ITEM_TOWER, short)  # one row fewer than the vocabulary
    with pytest.raises(BundleError, match=r"inconsistent shapes in \['item_feature_emb'\]"):
        Bundle.load(path)
