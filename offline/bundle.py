"""Model bundles: the immutable, versioned hand-over from the offline job to serving.

numpy only (serving imports this module and must never import torch).

Layout (format 1)
-----------------
::

    <root>/current                  text: the serving version's directory name (replaced atomically)
    <root>/<version>/manifest.json  see below
    <root>/<version>/<name>.npy     arrays, memory-mappable (np.load(mmap_mode="r"))

==================  ==================  =========================================================
array               shape, dtype        meaning
==================  ==================  =========================================================
item_ids            (n_items,) <U       item id strings, row order of every item array
item_emb            (n_items, dim) f4   item embedding: two-tower output (L2-normalised) or
                                        factorisation factor (not normalised; see item_tower)
item_bias           (n_items,) f4       prior logit offset per item
item_created        (n_items,) f8       creation time, epoch seconds (fresh-item pool, age buckets)
user_ids            (n_users,) <U       known users, row order of user_emb
user_emb            (n_users, dim) f4   embedding of each known user, in item_emb's space
default_user        (dim,) f4           embedding for a cold user
centroids           (C, dim) f4         user clusters: the sparse context's coordinates
graph               (C, W) i4           candidate graph: top-W item rows per cluster
fresh               (F,) i4             fresh-item pool: item rows
==================  ==================  =========================================================

The prior of DESIGN.md is ``p_j(u) = sigmoid(prior_scale · <u, v_j> + item_bias_j)`` for
``"prior": {"kind": "two_tower"}``. For ``"prior": {"kind": "mlp", "arrays": [...]}`` it is a
distilled student's main head, evaluated here in numpy (``mlp_prior``) from the optional
arrays ``prior_w1`` (3·dim, h), ``prior_b1`` (h,), ``prior_w2`` (h,), ``prior_b2`` (1,).

manifest.json: ``{"format": 1, "version", "created_at", "data_window": [start, end], "dim",
"n_items", "n_users", "n_clusters", "k_nearest", "temperature", "prior": {...},
"default_prior", "metrics": {...}, "checksums": {"<file>": "sha256:<hex>"}}``.

The user tower for cold users with features (``"user_tower": {"arrays": [...]}``, optional):
``user_feature_vocab`` (F,) <U tokens ``column=value`` (``feature_tokens``),
``user_feature_emb`` (F, dim) f4, ``user_out_w`` (dim, dim) f4, ``user_out_b`` (dim,) f4; a user
not in ``user_ids`` is ``normalise(mean(user_feature_emb[tokens]) @ user_out_w + user_out_b)``
(``user_from_features``), or ``default_user`` when none of her tokens is known; without
``normalise`` where ``"user_tower"`` says ``"normalise": false`` (a factorisation's bundle).

The item tower's content part, for items not in ``item_ids`` (``"item_tower": {"arrays": [...],
"columns": [...]}``, optional; every bundle of the offline job has it, older ones may not):

==================  ==================  =========================================================
array               shape, dtype        meaning
==================  ==================  =========================================================
item_feature_vocab  (F_i,) <U           item feature tokens ``column=value`` (``feature_tokens``)
item_feature_emb    (F_i, dim) f4       one row per token of ``item_feature_vocab``
item_out_w          (dim, dim) f4       the tower's output layer, applied as ``x @ item_out_w``
item_out_b          (dim,) f4           its bias
==================  ==================  =========================================================

``columns`` lists the items file's feature column names, sorted: a request may describe a new
item by these and no others (``Bundle.item_feature_columns``). A new item is
``normalise(mean(item_feature_emb[tokens]) @ item_out_w + item_out_b)`` with the mean over the
known tokens of all its columns together (``item_from_features``), which is how the job exported
the items without training interactions; with no known token the mean is zeros, so a
featureless item is ``normalise(item_out_b)``. F_i may be 0 (an items file without features).
``"normalise": false`` (a bundle whose embeddings come from ``offline/factorisation.py``,
``metrics.retrieval``): the same formula without ``normalise``, with ``item_out_w`` the
identity and ``item_out_b`` the mean item factor, since a factor's norm carries how much users
engage with the item; such bundles have no user tower. Absent means true.

``"factorisation": {"lam": λ, "alpha": α}`` (bundles whose embeddings come from
``offline/factorisation.py``): serving folds a user's recent clicks into her factor with
``Bundle.fold_in``, ``(YᵀY + λI)⁻¹`` over ``item_emb``.

``"popular": {"arrays": ["popular"]}`` (optional): ``popular`` (P,) i4, item rows by
recency-weighted interaction count, most popular first; retrieval adds the first
``popular_per_request`` of them to every request's candidates, so that items good for everyone
can be shown to everyone and learnt by the pooled residual.

``"warm_start": {"arrays": [...], "user_ids": ..., ...}`` lists the offline job's own arrays
(``tower_*``: the torch parameters as plain arrays, and the feature vocabularies) that the next
run starts from. Serving never loads them.

A bundle directory is never modified after ``publish``; ``current`` is written to a temporary
file and renamed over the old pointer, so a reader sees the old or the new version, never half.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

FORMAT = 1
ARRAYS = (
    "item_ids",
    "item_emb",
    "item_bias",
    "item_created",
    "user_ids",
    "user_emb",
    "default_user",
    "centroids",
    "graph",
    "fresh",
)
ITEM_TOWER = ("item_feature_vocab", "item_feature_emb", "item_out_w", "item_out_b")


class BundleError(ValueError):
    """A bundle that cannot be served; the message names the file and what is wrong."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def publish(root: Path, version: str, arrays: dict[str, NDArray[Any]], manifest: dict[str, Any]) -> Path:
    """Write ``arrays`` and the manifest as ``root/version`` and point ``current`` at it."""
    missing = [name for name in ARRAYS if name not in arrays]
    if missing:
        raise BundleError(f"{version}: missing arrays {missing}")
    extra = sorted(set(arrays) - set(ARRAYS))
    root.mkdir(parents=True, exist_ok=True)
    final = root / version
    if final.exists():
        raise BundleError(f"{final}: exists; bundles are immutable, pick a new version")
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    checksums = {}
    for name in [*ARRAYS, *extra]:
        path = staging / f"{name}.npy"
        np.save(path, arrays[name], allow_pickle=False)
        checksums[path.name] = _sha256(path)
    full = {
        "format": FORMAT,
        "version": version,
        "created_at": time.time(),
        **manifest,
        "checksums": checksums,
    }
    (staging / "manifest.json").write_text(json.dumps(full, indent=1, sort_keys=True))
    staging.rename(final)
    point_current(root, version)
    return final


def point_current(root: Path, version: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".current.", dir=root)
    with os.fdopen(fd, "w") as fh:
        fh.write(version + "\n")
    os.replace(tmp, root / "current")


def current_version(root: Path) -> str | None:
    try:
        return (root / "current").read_text().strip() or None
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: arrays memory-mapped, lookups built once."""

    path: Path
    manifest: dict[str, Any]
    arrays: dict[str, NDArray[Any]]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def created_at(self) -> float:
        return float(self.manifest["created_at"])

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {str(item): i for i, item in enumerate(self.arrays["item_ids"].tolist())}

    @cached_property
    def item_id_list(self) -> list[str]:
        """``item_ids`` as Python strings, by row: the very objects keyed in ``item_index`` (its
        keys are in row order), so serving turns rows into ids without making new strings, and
        sets and dictionaries of them reuse the strings' cached hashes."""
        return list(self.item_index)

    @cached_property
    def fold_in(self) -> NDArray[np.float64] | None:
        """``(YᵀY + λI)⁻¹`` (dim, dim) over ``item_emb`` for a factorisation's bundle
        (``"factorisation": {"lam": λ}`` in the manifest), else None. With ``alpha = 0`` a user's
        factor is that matrix times the sum of her chosen items' factors, so a new click on item
        j adds ``fold_in @ y_j`` to it: the same ridge step the job solved, one more row.

        >>> b = Bundle(Path("in-memory"), {"factorisation": {"lam": 1.0}}, {"item_emb": np.eye(2)})
        >>> b.fold_in.tolist()
        [[0.5, 0.0], [0.0, 0.5]]
        >>> Bundle(Path("two-tower"), {}, {"item_emb": np.eye(2)}).fold_in is None
        True
        """
        spec = self.manifest.get("factorisation")
        if not isinstance(spec, dict) or "lam" not in spec:
            return None
        y = np.asarray(self.arrays["item_emb"], dtype=np.float64)
        gram = y.T @ y + float(spec["lam"]) * np.eye(y.shape[1])
        return np.asarray(np.linalg.inv(gram), dtype=np.float64)

    @cached_property
    def mean_item_bias(self) -> float:
        """The prior logit offset of an item the bundle does not have (the two-tower prior)."""
        bias = self.arrays["item_bias"]
        return float(np.mean(bias)) if len(bias) else 0.0

    @cached_property
    def user_index(self) -> dict[str, int]:
        return {str(user): i for i, user in enumerate(self.arrays["user_ids"].tolist())}

    @cached_property
    def user_feature_index(self) -> dict[str, int]:
        vocab = self.arrays.get("user_feature_vocab")
        return {} if vocab is None else {str(t): i for i, t in enumerate(vocab.tolist())}

    @cached_property
    def item_feature_index(self) -> dict[str, int]:
        vocab = self.arrays.get("item_feature_vocab")
        return {} if vocab is None else {str(t): i for i, t in enumerate(vocab.tolist())}

    @cached_property
    def item_feature_columns(self) -> frozenset[str]:
        """The items file's feature columns: the only ones a new item may be described by."""
        return frozenset(str(c) for c in self.manifest.get("item_tower", {}).get("columns", []))

    def extra(self, name: str) -> NDArray[Any]:
        """An array serving does not load (e.g. the offline job's warm-start state), checksummed."""
        return _load_listed(self.path, self.manifest, name, verify=True)

    @classmethod
    def load(cls, path: Path, verify: bool = True) -> Bundle:
        manifest_path = path / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError as exc:
            raise BundleError(f"{manifest_path}: missing") from exc
        except json.JSONDecodeError as exc:
            raise BundleError(f"{manifest_path}: not JSON ({exc})") from exc
        if manifest.get("format") != FORMAT:
            raise BundleError(f"{manifest_path}: format {manifest.get('format')!r}, this server reads {FORMAT}")
        arrays = {}
        for name in ARRAYS:
            file = path / f"{name}.npy"
            if not file.exists():
                raise BundleError(f"{file}: missing")
            if verify and manifest["checksums"].get(file.name) != _sha256(file):
                raise BundleError(f"{file}: checksum does not match manifest.json")
            # A plain ndarray view of the mapping: same pages, but indexing it skips np.memmap's
            # Python-level __array_finalize__, which cost ~5% of serving CPU.
            arrays[name] = np.asarray(np.load(file, mmap_mode="r", allow_pickle=False))
        parts = ("prior", "user_tower", "item_tower", "popular")
        listed = [name for part in parts for name in manifest.get(part, {}).get("arrays", [])]
        for name in listed:
            arrays[name] = _load_listed(path, manifest, name, verify)
        bundle = cls(path, manifest, arrays)
        bundle._check_shapes()
        return bundle

    def _check_shapes(self) -> None:
        a, m = self.arrays, self.manifest
        n, dim = a["item_emb"].shape
        checks = {
            "item_ids": a["item_ids"].shape == (n,),
            "item_bias": a["item_bias"].shape == (n,),
            "item_created": a["item_created"].shape == (n,),
            "user_emb": a["user_emb"].shape == (a["user_ids"].shape[0], dim),
            "default_user": a["default_user"].shape == (dim,),
            "centroids": a["centroids"].ndim == 2 and a["centroids"].shape[1] == dim,
            "graph": a["graph"].ndim == 2 and a["graph"].shape[0] == a["centroids"].shape[0],
            "manifest.dim": m.get("dim") == dim,
        }
        tower = [name for name in ITEM_TOWER if name in a]
        if tower:
            if len(tower) < len(ITEM_TOWER):
                raise BundleError(f"{self.path}: item_tower lists {tower}, needs all of {list(ITEM_TOWER)}")
            checks |= {
                "item_feature_vocab": a["item_feature_vocab"].ndim == 1,
                "item_feature_emb": a["item_feature_emb"].shape == (a["item_feature_vocab"].shape[0], dim),
                "item_out_w": a["item_out_w"].shape == (dim, dim),
                "item_out_b": a["item_out_b"].shape == (dim,),
            }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise BundleError(f"{self.path}: inconsistent shapes in {bad}")
        if a["graph"].size and (a["graph"].min() < 0 or a["graph"].max() >= n):
            raise BundleError(f"{self.path}/graph.npy: item rows out of range")
        if a["fresh"].size and (a["fresh"].min() < 0 or a["fresh"].max() >= n):
            raise BundleError(f"{self.path}/fresh.npy: item rows out of range")


def _load_listed(path: Path, manifest: dict[str, Any], name: str, verify: bool) -> NDArray[Any]:
    """An optional array the manifest lists, read into memory, checksummed when ``verify``."""
    file = path / f"{name}.npy"
    if not file.exists() or (verify and manifest["checksums"].get(file.name) != _sha256(file)):
        raise BundleError(f"{file}: missing or checksum does not match manifest.json")
    return np.asarray(np.load(file, allow_pickle=False))


def load_current(root: Path, verify: bool = True) -> Bundle:
    version = current_version(root)
    if version is None:
        raise BundleError(f"{root}/current: no bundle published")
    return Bundle.load(root / version, verify=verify)


def mlp_prior(u: NDArray[Any], v: NDArray[Any], arrays: dict[str, NDArray[Any]]) -> NDArray[np.float64]:
    """A student's main head in numpy: ``sigmoid(relu([u⊙v, u, v] @ w1 + b1) @ w2 + b2)``.

    ``u`` (dim,) the user, ``v`` (N, dim) the candidates; returns (N,).

    >>> arrays = {"prior_w1": np.ones((3, 1)), "prior_b1": np.zeros(1), "prior_w2": np.ones(1), "prior_b2": np.zeros(1)}
    >>> mlp_prior(np.array([1.0]), np.array([[0.0], [1.0]]), arrays).round(3).tolist()
    [0.731, 0.953]
    """
    uu = np.broadcast_to(u, v.shape)
    return mlp_head(np.concatenate([uu * v, uu, v], axis=1), arrays)


def mlp_head(x: NDArray[Any], arrays: dict[str, NDArray[Any]]) -> NDArray[np.float64]:
    """The student's main head on ready features ``x`` (N, 3·dim) → probabilities (N,)."""
    h = np.maximum(x @ arrays["prior_w1"] + arrays["prior_b1"], 0.0)
    logit = h @ arrays["prior_w2"] + arrays["prior_b2"][0]
    return np.asarray(1.0 / (1.0 + np.exp(-logit)), dtype=np.float64)


def feature_tokens(column: str, value: str | float) -> list[str]:
    """Vocabulary tokens of one categorical feature: ``column=value``, one per ``|``-separated
    value; a whole number is written without a fraction, as it reads in a CSV file.

    >>> feature_tokens("genres", "Comedy|Drama"), feature_tokens("age", 25.0)
    (['genres=Comedy', 'genres=Drama'], ['age=25'])
    """
    if isinstance(value, int | float):
        number = float(value)
        return [f"{column}={int(number) if number.is_integer() else number!r}"]
    return [f"{column}={v.strip()}" for v in value.split("|") if v.strip()]


def user_from_features(bundle: Bundle, features: dict[str, str | float]) -> NDArray[np.float64] | None:
    """A cold user's embedding (dim,) from the bundle's user tower, or None if the bundle has no
    tower or knows none of the features' tokens.

    ``normalise(mean(user_feature_emb[tokens]) @ user_out_w + user_out_b)``: the user tower of
    ``offline/two_tower.py`` with the id part dropped, as id dropout trained it to work.
    """
    index = bundle.user_feature_index
    rows = [index[t] for column, value in features.items() for t in feature_tokens(column, value) if t in index]
    if not rows:
        return None
    a = bundle.arrays
    x = np.asarray(a["user_feature_emb"][rows], dtype=np.float64).mean(axis=0)
    out = np.asarray(x @ a["user_out_w"] + a["user_out_b"], dtype=np.float64)
    if not bundle.manifest.get("user_tower", {}).get("normalise", True):
        return out  # a factorisation's space (see item_from_features)
    return np.asarray(out / max(float(np.linalg.norm(out)), 1e-12), dtype=np.float64)


def item_from_features(bundle: Bundle, features: dict[str, str | float]) -> NDArray[np.float64] | None:
    """A new item's embedding (dim,) from the bundle's item tower, or None if the bundle has none.

    ``features`` maps a column to its value, ``|``-separated when multi-valued, as in the items
    file (``{"genres": "Comedy|Drama", "year": 1995}``). The result is
    ``normalise(mean(item_feature_emb[tokens]) @ item_out_w + item_out_b)``: the item tower of
    ``offline/two_tower.py`` with the id part dropped, exactly as the job exported the items
    without training interactions. The mean runs over the known tokens of all columns together
    (one bag per item, ``offline.data.feature_bags``); unknown tokens are left out, and with
    none known the mean is zeros (an empty bag), so the item is ``normalise(item_out_b)``.

    >>> arrays = {
    ...     "item_feature_vocab": np.array(["genres=Comedy", "genres=Drama"]),
    ...     "item_feature_emb": np.array([[2.0, 0.0], [0.0, 2.0]]),
    ...     "item_out_w": np.eye(2),
    ...     "item_out_b": np.array([0.0, 1.0]),
    ... }
    >>> bundle = Bundle(Path("in-memory"), {}, arrays)
    >>> item_from_features(bundle, {"genres": "Comedy|Western"}).round(3).tolist()
    [0.894, 0.447]
    >>> item_from_features(bundle, {"genres": "Comedy|Drama"}).round(3).tolist()
    [0.447, 0.894]
    >>> item_from_features(bundle, {}).tolist()  # a featureless item
    [0.0, 1.0]
    >>> raw = Bundle(Path("in-memory"), {"item_tower": {"normalise": False}}, arrays)
    >>> item_from_features(raw, {"genres": "Comedy"}).tolist()  # a factorisation's bundle
    [2.0, 1.0]
    >>> item_from_features(Bundle(Path("old"), {}, {}), {"genres": "Comedy"}) is None
    True
    """
    a = bundle.arrays
    if "item_out_b" not in a:
        return None
    index = bundle.item_feature_index
    rows = [index[t] for column, value in features.items() for t in feature_tokens(column, value) if t in index]
    dim = a["item_out_b"].shape[0]
    x = np.asarray(a["item_feature_emb"][rows], dtype=np.float64).mean(axis=0) if rows else np.zeros(dim)
    out = np.asarray(x @ a["item_out_w"] + a["item_out_b"], dtype=np.float64)
    if not bundle.manifest.get("item_tower", {}).get("normalise", True):
        return out  # a factorisation's space: the norm carries how much users engage (offline/job.py)
    return np.asarray(out / max(float(np.linalg.norm(out)), 1e-12), dtype=np.float64)
