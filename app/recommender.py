"""The recommendation and feedback services behind the routes.

Recommend (DESIGN flow 1): user embedding → sparse context → candidates → priors → statistics
(one pipelined read) → policy scores → slots → request context stored, decision logged.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import structlog

from app.calibrations import Calibrations, ExaminationCurves
from app.catalogue import LiveCatalogue, LiveView
from app.fresh import FreshPool, fresh_key
from app.lease import Report, ServingLease
from app.metrics import Metrics
from app.settings import Settings
from app.surfaces import SurfaceConfig, Surfaces
from app.trending import Trending
from bandits import DiagStats, Slate, SparseContext, reserve_slots, select_slots
from bandits.calibration import GROUPS, bin_centres, popularity_groups
from bandits.checks import FloatArray, IntArray
from offline.bundle import (
    Bundle,
    BundleError,
    current_version,
    item_from_features,
    load_current,
    mlp_prior,
    user_from_features,
)
from streaming import stores
from streaming.bus import BusUnavailable, Message, Producer
from streaming.events import FeedbackEvent, RequestContext, arm_namespace, arm_stats_key
from streaming.opstats import LATENCY_MS, Counters, bucket
from streaming.stores import Charge, Store, StoreUnavailable

log = structlog.get_logger(__name__)


class NoBundle(RuntimeError):
    """No model bundle is loaded yet; readiness reports it."""


class BundleHolder:
    """The serving bundle, swapped atomically when ``current`` moves (in-flight requests keep theirs).

    With a ``lease`` (every serving process has one) a new version is reported to the fleet
    before it is swapped in, and request contexts are stored only while the lease is held
    (``app/lease.py``): statistics retirement relies on both.
    """

    def __init__(self, root: Path, metrics: Metrics, lease: ServingLease | None = None) -> None:
        self.root = root
        self._metrics = metrics
        self._lease = lease
        self._bundle: Bundle | None = None
        self._lock = threading.Lock()
        self.last_error: str | None = None
        # Experiment arms' namespaces (app/experiments.py) → when a request last used one, and
        # when a report of one was last tried: reported like a version while they are in use.
        self._namespaces: dict[str, float] = {}
        self._tried: dict[str, float] = {}

    @property
    def current(self) -> Bundle:
        bundle = self._bundle
        if bundle is None:
            raise NoBundle(f"no bundle loaded from {self.root}")
        return bundle

    @property
    def loaded(self) -> bool:
        return self._bundle is not None

    def reported(self, version: str) -> bool:
        """May a request context for ``version`` be stored now (its serving lease is held)?"""
        return self._lease is None or self._lease.held(version)

    def report(self, arms: Callable[[str], list[str]] | None = None) -> Report | None:
        """Renew the lease on the serving version (the heartbeat), on the namespaces ``arms``
        names for it (every arm of every running experiment: an arm idle for longer than the
        grace period must not be retired while it runs), and on every experiment arm's
        namespace a request used within the lease; None when nothing is loaded."""
        bundle = self._bundle
        if bundle is None or self._lease is None:
            return None
        report = self._lease.acquire(bundle.version)
        for namespace in arms(bundle.version) if arms is not None else []:
            self._namespaces[namespace] = time.monotonic()
        idle = time.monotonic() - stores.SERVING_LEASE_S
        for namespace, used in list(self._namespaces.items()):
            if used < idle:
                # An ended experiment's arms: nobody reports them now, so the consumers'
                # retirement pass deletes them once the grace period is over.
                self._namespaces.pop(namespace, None)
                self._tried.pop(namespace, None)
            else:
                self._lease.acquire(namespace)
        return report

    def reported_namespace(self, namespace: str) -> bool:
        """May a context for an experiment arm's namespace be stored now? A namespace is
        reported on its first use (and after a failed report, at most once a second) on the
        request path, so an arm's first requests are not degraded until the next heartbeat."""
        if self._lease is None:
            return True
        now = time.monotonic()
        self._namespaces[namespace] = now
        if self._lease.held(namespace):
            return True
        if now - self._tried.get(namespace, -np.inf) < 1.0:
            return False
        self._tried[namespace] = now
        return self._lease.acquire(namespace) is Report.GRANTED

    def reload_if_changed(self) -> bool:
        version = current_version(self.root)
        if version is None or (self._bundle is not None and self._bundle.version == version):
            return False
        with self._lock:
            try:
                bundle = load_current(self.root)
            except BundleError as exc:
                self.last_error = str(exc)
                log.error("bundle_load_failed", error=str(exc))
                return False
            report = self._lease.acquire(bundle.version) if self._lease is not None else Report.GRANTED
            if report is Report.REFUSED:
                # Its old statistics are being deleted right now; the next poll swaps to it,
                # with an empty namespace, once that is done.
                self.last_error = f"bundle {bundle.version} waits: its old statistics are being retired"
                log.warning("bundle_swap_deferred", version=bundle.version, reason="retiring")
                return False
            if report is Report.UNAVAILABLE and self._bundle is not None:
                # Serving a version nobody was told of would let its statistics be retired.
                self.last_error = f"bundle {bundle.version} waits: the statistics store did not answer its report"
                log.warning("bundle_swap_deferred", version=bundle.version, reason="store_unavailable")
                return False
            _ = bundle.fold_in  # (YᵀY + λI)⁻¹ over every item: here, not in the first request
            # With nothing loaded yet, serve priors at once; contexts wait for the lease.
            self._bundle = bundle
            self.last_error = None
        self._metrics.bundle.info({"version": bundle.version})
        self._metrics.bundle_age.set(bundle.created_at)
        log.info("bundle_loaded", version=bundle.version, items=len(bundle.item_index))
        return True


@dataclass(frozen=True)
class ServedItem:
    item_id: str
    score: float
    explored: bool
    prior: float


@dataclass(frozen=True)
class Recommendation:
    request_id: str
    model_version: str
    items: list[ServedItem]
    degraded: bool
    degraded_reasons: list[str] = field(default_factory=list)
    unknown_candidates: int = 0


class InvalidFeedback(ValueError):
    """Events the served request's surface does not accept; nothing of the batch was taken.
    ``errors`` are (field, message) pairs, the field dotted as in the body (``events.3.value``)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors


class RateLimited(RuntimeError):
    """Feedback over a rate limit (``Settings.feedback_user_rate`` / ``feedback_client_rate``):
    nothing of the batch was taken. ``field`` names what was limited, as in the body."""

    def __init__(self, message: str, field: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.field = field
        self.retry_after_s = retry_after_s


# How far an event's time may lie after now (client clocks run ahead), and before its request.
CLOCK_SKEW_S = 60.0


def check_events(
    events: Sequence[FeedbackEvent], contexts: dict[str, RequestContext], now: float
) -> list[FeedbackEvent]:
    """The events as accepted: a batch with a reward outside its request's surface bounds
    (``RequestContext.rewards``) is refused as a whole (``InvalidFeedback``); an event time
    before its request or after now (beyond ``CLOCK_SKEW_S``) is replaced by now. Times only
    date the event (freshness, operator counters), so a client on a simulated or skewed clock
    is corrected, not refused, while a claimed time can no longer be anything. Events of unknown
    requests pass through (the caller rejects them one by one)."""
    errors: list[tuple[str, str]] = []
    out = []
    for n, ev in enumerate(events):
        ctx = contexts.get(ev.request_id)
        if ctx is not None:
            lo, hi = ctx.rewards
            if ev.type == "reward" and not lo <= ev.value <= hi:
                errors.append((f"events.{n}.value", f"must lie within the surface's reward bounds [{lo}, {hi}]"))
            if not ctx.ts - CLOCK_SKEW_S <= ev.ts <= now + CLOCK_SKEW_S:
                ev = dataclasses.replace(ev, ts=now)
        out.append(ev)
    if errors:
        raise InvalidFeedback(errors)
    return out


@dataclass(frozen=True)
class FeedbackResult:
    accepted: int
    duplicates: int
    rejected: list[dict[str, str | int]]


def sparse_context(
    bundle: Bundle, user_id: str, features: dict[str, str | float] | None = None
) -> tuple[FloatArray, SparseContext]:
    """The user's embedding (dim,) and her K nearest clusters with softmax weights (K,).

    The embedding is the stored one for a known user, else the user tower on her features, else
    the cold-user default (DESIGN flow 1).
    """
    row = bundle.user_index.get(user_id)
    cold = user_from_features(bundle, features) if row is None and features else None
    if row is not None:
        u = np.asarray(bundle.arrays["user_emb"][row], dtype=np.float64)
    elif cold is not None:
        u = cold
    else:
        u = np.asarray(bundle.arrays["default_user"], dtype=np.float64)
    return u, clusters_of(bundle, u)


def clusters_of(bundle: Bundle, u: FloatArray) -> SparseContext:
    """The K clusters nearest the embedding ``u`` (dim,), with softmax weights (K,)."""
    # Cosine: a factorisation's user norms vary (offline/job.py), the temperature assumes unit ones.
    sims = bundle.arrays["centroids"] @ (u / max(float(np.linalg.norm(u)), 1e-12))
    k = min(int(bundle.manifest["k_nearest"]), len(sims))
    top = np.argpartition(-sims, k - 1)[:k]
    top = top[np.argsort(-sims[top], kind="stable")]
    logits = sims[top] / float(bundle.manifest["temperature"])
    w = np.exp(logits - logits.max())
    return SparseContext(top.astype(np.int64), w / w.sum())


def candidate_rows(
    bundle: Bundle,
    context: SparseContext,
    fresh_per_request: int | None = None,
    rng: np.random.Generator | None = None,
    popular_per_request: int = 0,
    trending: IntArray | None = None,
    fresh: IntArray | None = None,
) -> IntArray:
    """The candidate graph's rows for the active clusters plus the fresh pool, deduplicated.

    With ``popular_per_request``, the bundle's most popular items join too (``offline/bundle.py``);
    ``trending`` rows (``app/trending.py``) join as given.
    With ``fresh_per_request``, at most that many fresh items join, drawn at random: the pool
    can be most of a catalogue (every item with few training impressions), and scoring all of
    it made each request slow and its slate mostly items known by their features alone. The
    draw is the exploration budget; prior and bonus then decide which of them are shown.
    ``fresh`` is the pool to draw from (default: the bundle's; ``app/fresh.py`` takes out the
    items that graduated online).
    """
    graph = bundle.arrays["graph"][context.indices].ravel()
    if fresh is None:
        fresh = bundle.arrays["fresh"]
    if fresh_per_request is not None and len(fresh) > fresh_per_request:
        fresh = (rng or np.random.default_rng()).choice(fresh, size=fresh_per_request, replace=False)
    parts = [graph, fresh]
    if popular_per_request and "popular" in bundle.arrays:
        # Items good for everyone reach everyone, so the pooled residual can learn them.
        parts.append(bundle.arrays["popular"][:popular_per_request])
    if trending is not None and len(trending):
        parts.append(trending)
    return np.unique(np.concatenate(parts)).astype(np.int64)


def unknown_priors(raw: FloatArray, known: npt.NDArray[np.bool_]) -> FloatArray:
    """Priors (N,) with each unknown candidate's (``known`` False) set to what an item known by
    nothing deserves: the median of this request's known priors, and never more than the
    bundle's default (``raw`` holds it at the unknown entries).

    Round 1 gave unknown ids the bundle's ``default_prior``, which sat above most known items'
    priors, so any typo or retired id topped a cold user's slate and won the exploration slots.
    The median keeps an unknown id in the middle of what is on offer: it still has the largest
    bonus (no statistics), so explore traffic tries it, and feedback teaches it as any item.

    >>> unknown_priors(np.array([0.2, 0.01, 0.03, 0.5]), np.array([False, True, True, True])).tolist()
    [0.03, 0.01, 0.03, 0.5]
    """
    out = raw.copy()
    if known.any():
        out[~known] = np.minimum(raw[~known], float(np.median(raw[known])))
    return out


def priors(bundle: Bundle, u: FloatArray, rows: IntArray) -> FloatArray:
    """The offline prior ``p_j(u)`` for item rows (N,): the distilled student when the bundle has
    one, else ``sigmoid(prior_scale · <u, v_j> + item_bias_j)``."""
    v = np.asarray(bundle.arrays["item_emb"][rows], dtype=np.float64)
    return embedded_priors(bundle, u, v, bundle.arrays["item_bias"][rows])


def embedded_priors(bundle: Bundle, u: FloatArray, v: FloatArray, bias: FloatArray | None = None) -> FloatArray:
    """The offline prior (N,) for item embeddings ``v`` (N, dim), e.g. of items the bundle does
    not have (``app/catalogue.py``); ``bias`` (N,) defaults to the bundle's mean item bias."""
    if bundle.manifest["prior"].get("kind") == "mlp":
        return mlp_prior(u, v, bundle.arrays)
    scale = float(bundle.manifest["prior"].get("scale", 1.0))
    logit = scale * (v @ u) + (bundle.mean_item_bias if bias is None else bias)
    return np.asarray(1.0 / (1.0 + np.exp(-logit)), dtype=np.float64)


T = TypeVar("T")


class Breaker:
    """Skip a dependency for ``cool_s`` after it failed: ``recommend`` runs on the event loop,
    where each call to a store that hangs would hold every request for a whole timeout. While
    open, callers degrade as if the call had failed; the first call after the cool-off probes.

    >>> b = Breaker(60.0); b.open
    False
    >>> b.failed(); b.open
    True
    """

    def __init__(self, cool_s: float) -> None:
        self._cool_s = cool_s
        self._until = 0.0

    @property
    def open(self) -> bool:
        return time.monotonic() < self._until

    def failed(self) -> None:
        self._until = time.monotonic() + self._cool_s

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, or ``StoreUnavailable`` at once while open; a failure opens it."""
        if self.open:
            raise StoreUnavailable("skipped: the store failed within the cool-off")
        try:
            return fn(*args)
        except StoreUnavailable:
            self.failed()
            raise


class Recommender:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        producer: Producer,
        bundles: BundleHolder,
        surfaces: Surfaces,
        metrics: Metrics,
        counters: Counters,
    ) -> None:
        self._s = settings
        self._counters = counters
        self._store = store
        self._producer = producer
        self._bundles = bundles
        self._surfaces = surfaces
        self._metrics = metrics
        self._rng_local = threading.local()
        self._calibration = Calibrations(store)
        self._examination = ExaminationCurves(store)
        self._trending = Trending(store)
        self._catalogue = LiveCatalogue(store)
        self._fresh = FreshPool()
        self._featureless: tuple[str, FloatArray | None] | None = None
        self._popularity: tuple[str, IntArray, npt.NDArray[np.bool_]] | None = None
        self._breaker = Breaker(settings.store_cool_off_s)

    def _item_classes(self, bundle: Bundle) -> tuple[IntArray, npt.NDArray[np.bool_]]:
        """Per bundle, each item row's popularity group (``bandits.calibration.popularity_groups``)
        and whether it is **cold**: in the bundle's fresh pool, so its prior rests on its features
        and at most a handful of interactions (``offline/clusters.py``, ``fresh_pool``)."""
        cached = self._popularity
        if cached is None or cached[0] != bundle.version:
            popular = bundle.arrays.get("popular", np.empty(0, np.int64))
            cold = np.zeros(len(bundle.item_index), dtype=bool)
            cold[bundle.arrays["fresh"]] = True
            cached = (bundle.version, popularity_groups(popular, len(bundle.item_index)), cold)
            self._popularity = cached
        return cached[1], cached[2]

    @property
    def catalogue(self) -> LiveCatalogue:
        return self._catalogue

    def _retrieve(
        self,
        bundle: Bundle,
        view: LiveView,
        context: SparseContext,
        config: SurfaceConfig,
        rng: np.random.Generator,
        namespace: str,
        pool_key: str,
    ) -> tuple[list[str], IntArray]:
        """Retrieval mode's candidate ids (N,) with their bundle rows (N,), -1 for an id not in
        the bundle: the bundle's candidates (``candidate_rows``) and the live items
        that the request's clusters take or the fresh draw picks (``app/catalogue.py``)."""
        trending_rows = self._trending.rows(bundle, config.trending_per_request, namespace)
        # Half the fresh budget goes to items published since the bundle, when there are any:
        # they are the freshest of all, and the bundle's pool is mostly old items with few
        # impressions that would otherwise crowd them out.
        fresh_live = min(len(view.ids), config.fresh_per_request // 2)
        rows = candidate_rows(
            bundle,
            context,
            config.fresh_per_request - fresh_live,
            rng,
            config.popular_per_request,
            trending_rows,
            self._fresh.eligible(pool_key, bundle.arrays["fresh"]) if config.pooled else None,
        )
        # id → bundle row (-1: not in the bundle), in candidate order: the rows are known here,
        # so scoring need not look each id up again (a dictionary probe per candidate into a
        # catalogue-sized index was a sixth of a retrieval request's CPU).
        names = bundle.item_id_list
        found = {names[r]: r for r in rows.tolist()}
        if len(view.ids):
            index = bundle.item_index
            live = [view.ids[i] for i in view.candidates(context.indices, fresh_live, rng).tolist()]
            live += [i for i in self._trending.ids(namespace, config.trending_per_request) if i in view.index]
            for i in live:
                if i not in found:
                    found[i] = index.get(i, -1)
        return list(found), np.fromiter(found.values(), dtype=np.int64, count=len(found))

    def _fold_in(
        self,
        bundle: Bundle,
        fold: FloatArray,
        user_id: str,
        u: FloatArray,
        context: SparseContext,
        config: SurfaceConfig,
    ) -> tuple[FloatArray, SparseContext]:
        """``u`` plus ``weight · fold @ Σ y_j`` (``fold`` is ``bundle.fold_in``, (dim, dim)) over
        the user's ``fold_in_clicks`` latest clicked items the bundle knows, and its clusters;
        unchanged when she has none or the store cannot say."""
        try:
            clicked = self._breaker.call(self._store.recent_clicks, user_id, config.fold_in_clicks)
        except StoreUnavailable:
            self._metrics.store_errors.labels("clicks").inc()
            return u, context
        index = bundle.item_index
        rows = [index[item] for item in clicked if item in index]
        if not rows:
            return u, context
        y = np.asarray(bundle.arrays["item_emb"][rows], dtype=np.float64).sum(axis=0)
        folded = u + config.fold_in_weight * (fold @ y)
        return folded, clusters_of(bundle, folded)

    def _lam0(
        self, bundle: Bundle, config: SurfaceConfig, known: IntArray, is_live: npt.NDArray[np.bool_]
    ) -> FloatArray | None:
        """Each candidate's ridge for its pooled residual (N,): ``lam_cold`` for a cold item (the
        bundle's fresh pool, or published since the bundle), the process's ``lam`` for the rest.

        Why. ``λ`` is how many impressions' worth of evidence the prior is taken to be. An item
        the offline model saw thousands of times has a prior worth much; one it knows by its
        genre and year has a prior worth little, and its few clicks should move it at once. A
        smaller ``λ`` does both: a larger bonus (explored before items whose prior is solid) and
        a faster residual. It fades by itself, as ``λ + n_0`` soon is mostly ``n_0``."""
        if not config.pooled or config.lam_cold == self._s.lam:
            return None
        cold = is_live.copy()
        in_bundle = known >= 0
        cold[in_bundle] = self._item_classes(bundle)[1][known[in_bundle]]
        return np.where(cold, config.lam_cold, self._s.lam)

    def _graduate(self, bundle: Bundle, pool_key: str, config: SurfaceConfig, known: IntArray, w2: FloatArray) -> None:
        """Tell the fresh pool (``app/fresh.py``) the item-level evidence this request read on its
        items of the bundle's pool: the pool coordinate's ``Σ w²``, the last column of a pooled
        surface's statistics."""
        cold = self._item_classes(bundle)[1]
        at = np.flatnonzero(known >= 0)
        at = at[cold[known[at]]]
        if len(at):
            self._fresh.observe(pool_key, len(cold), known[at], w2[at, -1], config.fresh_graduate)

    def fresh_eligible(self, surface: str) -> IntArray:
        """The rows of the current bundle's fresh pool that ``surface``'s retrieval draws from."""
        bundle = self._bundles.current
        return self._fresh.eligible(fresh_key(bundle.version, surface), bundle.arrays["fresh"])

    def _unknown_prior(self, bundle: Bundle, u: FloatArray) -> float:
        """The raw prior of an id nobody knows: a featureless new item's (the item tower on no
        features), at most the bundle's default (``unknown_priors`` caps it by the known ones)."""
        default = float(bundle.manifest.get("default_prior", 0.05))
        cached = self._featureless
        if cached is None or cached[0] != bundle.version:
            cached = (bundle.version, item_from_features(bundle, {}))
            self._featureless = cached
        if cached[1] is None:
            return default
        return min(default, float(embedded_priors(bundle, u, cached[1][None, :])[0]))

    def _rng(self) -> np.random.Generator:
        rng: np.random.Generator | None = getattr(self._rng_local, "rng", None)
        if rng is None:
            rng = np.random.default_rng()
            self._rng_local.rng = rng
        return rng

    def recommend(
        self,
        user_id: str,
        surface: str,
        k: int,
        candidates: Sequence[str] | None,
        exclude: Sequence[str],
        user_features: dict[str, str | float] | None = None,
    ) -> Recommendation:
        started = time.perf_counter()
        bundle = self._bundles.current
        config = self._surfaces.get(surface)
        # An experiment arm serves this user with its own settings, in its own statistics
        # namespace (app/experiments.py); everything it learns stays in that namespace.
        namespace, arm_key, counted = bundle.version, "", [surface]
        assigned = self._surfaces.arm(surface, user_id)
        if assigned is not None:
            experiment, arm = assigned
            config, arm_key = arm.config, experiment.key(arm)
            namespace = arm_namespace(bundle.version, arm_key)
            counted.append(arm_stats_key(surface, arm_key))
        pool_key = fresh_key(namespace, surface)
        reasons: list[str] = []
        u, context = sparse_context(bundle, user_id, user_features)
        fold = bundle.fold_in
        if config.fold_in_clicks and fold is not None:
            u, context = self._fold_in(bundle, fold, user_id, u, context, config)

        rng = self._rng()
        view = self._catalogue.view(bundle)
        self._metrics.live_items.set(len(view.ids))
        known: IntArray | None = None  # each id's bundle row, when retrieval already has them
        if candidates is not None:
            ids = list(dict.fromkeys(candidates))
        else:
            ids, known = self._retrieve(bundle, view, context, config, rng, namespace, pool_key)
        drop = view.deleted | set(exclude) if exclude else view.deleted
        if drop:
            kept = [n for n, i in enumerate(ids) if i not in drop]
            if len(kept) < len(ids):
                ids = [ids[n] for n in kept]
                known = None if known is None else known[kept]

        # With pooling, the last coordinate is the item-level pool (bandits/pooled.py): one
        # past the clusters, so dense and never a cluster id.
        coords = context.indices
        if config.pooled:
            coords = np.append(coords, len(bundle.arrays["centroids"]))
        try:
            w2, b, seq = self._breaker.call(self._store.gather_live, namespace, ids, coords)
        except StoreUnavailable:
            self._metrics.store_errors.labels("gather").inc()
            reasons.append("statistics_unavailable")
            w2 = b = np.zeros((len(ids), len(coords)))
            seq = self._catalogue.seq
        if seq > self._catalogue.seq:
            # The catalogue moved since this replica last looked: catch up before serving, so a
            # take-down acknowledged anywhere holds here from this request on.
            self._catalogue.observe(seq)
            view = self._catalogue.view(bundle)
            keep = np.array([i not in view.deleted for i in ids], dtype=bool)
            if not keep.all():
                ids = [i for i, k in zip(ids, keep.tolist(), strict=True) if k]
                w2, b = w2[keep], b[keep]
                known = None if known is None else known[keep]
        if self._catalogue.stale:
            reasons.append("catalogue_stale")
        if not ids:
            return Recommendation(uuid.uuid4().hex, bundle.version, [], bool(reasons), reasons)

        if known is None:
            index = bundle.item_index
            known = np.fromiter((index.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        mask = known >= 0
        if config.pooled and "statistics_unavailable" not in reasons:  # zeros then, not evidence
            self._graduate(bundle, pool_key, config, known, w2)
        live = np.full(len(ids), -1, dtype=np.int64)
        if len(view.ids) and not mask.all():
            outside = np.flatnonzero(~mask)
            live[outside] = [view.index.get(ids[j], -1) for j in outside.tolist()]
        is_live = live >= 0
        raw = np.full(len(ids), self._unknown_prior(bundle, u))
        if mask.any():
            raw[mask] = priors(bundle, u, known[mask])
        if is_live.any():
            raw[is_live] = embedded_priors(bundle, u, view.emb[live[is_live]])
        unknown = len(ids) - int(mask.sum()) - int(is_live.sum())
        if unknown:
            raw = unknown_priors(raw, mask | is_live)
            self._metrics.unknown_candidates.labels(surface).inc(unknown)
        prior, learn = raw, True
        groups = np.zeros(len(ids), dtype=np.int64)
        if config.calibrate:
            groups[mask] = self._item_classes(bundle)[0][known[mask]]
            # A new item has no popularity yet: the last group, with the bundle's long tail.
            groups[~mask] = GROUPS - 1
            prior, learn = self._calibration.apply(namespace, surface, raw, groups)

        # The gathered (N, K) statistics are a DiagStats over local rows and columns, so every
        # serving policy scores them through its ordinary interface.
        stats = DiagStats(self._s.lam, w2, b, lam0=self._lam0(bundle, config, known, is_live))
        local = SparseContext(np.arange(len(context.indices), dtype=np.int64), context.weights)
        scores = self._surfaces.policy(config).score(stats, local, np.arange(len(ids)), prior, rng)
        explore = not reasons and rng.random() < config.explore_traffic
        slate = select_slots(scores.mean, scores.explore, k, config.explore_slots, explore)
        if config.fresh_slots and is_live.any() and not reasons:
            slate = reserve_slots(slate, scores.explore, is_live, config.fresh_slots)
        n_slots = len(slate.positions)
        # Not while degraded: with the statistics store down the context may not be stored, so a
        # random order would cost clicks and teach nothing (like exploration, above).
        randomized = (
            not reasons and config.position_aware and n_slots > 1 and rng.random() < config.position_randomization
        )
        if randomized:
            # A uniformly random order (logged): each position sees the same mix of items.
            order = rng.permutation(n_slots)
            slate = Slate(slate.positions[order], slate.explored[order])
        exam = self._examination.curve(namespace, surface, n_slots) if config.position_aware else np.ones(n_slots)

        request_id = uuid.uuid4().hex
        served = [
            ServedItem(ids[p], float(scores.explore[p] if e else scores.mean[p]), bool(e), float(prior[p]))
            for p, e in zip(slate.positions.tolist(), slate.explored.tolist(), strict=True)
        ]
        now = time.time()
        rows, live_rows = known[slate.positions], live[slate.positions]
        created = np.where(rows >= 0, bundle.arrays["item_created"][np.maximum(rows, 0)], now)
        if len(view.ids):
            created = np.where(live_rows >= 0, view.created[np.maximum(live_rows, 0)], created)
        ages = {s.item_id: now - float(t) for s, t in zip(served, created.tolist(), strict=True)}
        ctx = RequestContext(
            request_id=request_id,
            surface=surface,
            version=bundle.version,
            # Updates carry the pool coordinate with weight 1 (bandits/pooled.py).
            indices=coords.tolist(),
            weights=[*context.weights.tolist(), *([1.0] if config.pooled else [])],
            items={s.item_id: (s.prior, s.explored) for s in served},
            ts=now,
            ages=ages,
            user_id=user_id,
            positions={s.item_id: n for n, s in enumerate(served)},
            exam={s.item_id: float(e) for s, e in zip(served, exam.tolist(), strict=True)},
            raw={ids[p]: float(raw[p]) for p in slate.positions.tolist()} if config.calibrate else {},
            groups={ids[p]: int(groups[p]) for p in slate.positions.tolist() if groups[p]},
            learn=learn,
            randomized=randomized,
            curve=[round(float(x), 6) for x in exam.tolist()],
            pool=int(coords[-1]) if config.pooled else -1,
            rewards=(config.reward_min, config.reward_max),
            explore_coin=explore,
            explore_p=-1.0 if reasons else float(config.explore_traffic),
            arm=arm_key,
        )
        if not (self._bundles.reported_namespace(namespace) if arm_key else self._bundles.reported(bundle.version)):
            # Without a report that landed, feedback on this request could reach a namespace
            # that a retirement pass is deleting (streaming.stores.retirable).
            reasons.append("version_unreported")
        else:
            try:
                self._breaker.call(self._store.put_context, ctx, self._s.attribution_window_s)
            except StoreUnavailable:
                self._metrics.store_errors.labels("put_context").inc()
                reasons.append("context_not_stored")
        self._log_decision(ctx, config.count_served_as_impressions)
        n_explored = sum(s.explored for s in served)
        if n_explored:
            self._metrics.recommendations.labels(surface, "true").inc(n_explored)
        if len(served) > n_explored:
            self._metrics.recommendations.labels(surface, "false").inc(len(served) - n_explored)
        for reason in reasons:
            self._metrics.degraded.labels(reason).inc()
        log.debug("recommendation", decision_id=request_id, surface=surface, items=len(served), degraded=reasons)
        c = self._counters
        latency = bucket("lat", (time.perf_counter() - started) * 1000, LATENCY_MS)
        for name in counted:
            c.add(name, "req")
            c.add(name, "slots", len(served))
            c.add(name, "explored", n_explored)
            c.add(name, "degraded", int(bool(reasons)))
            c.add(name, latency)
        return Recommendation(request_id, bundle.version, served, bool(reasons), reasons, unknown)

    def learnt_model(self, surface: str, k: int = 10) -> dict[str, object]:
        """What the surface has learnt beside the item statistics: its examination curve (from
        randomised slates), its calibration (raw prior → top-slot click probability) and the
        version's top trending items (``app/trending.py``); the bundle's fresh pool and how many
        of it graduated on this process's reads (``app/fresh.py``)."""
        bundle = self._bundles.current
        version = bundle.version
        curve, impressions = self._examination.estimate(version, surface, k)
        calibrated, exposure = self._calibration.curve(version, surface)
        try:
            trending = self._store.trending(version, 10)
        except StoreUnavailable:
            trending = []
        return {
            "examination": [round(float(x), 4) for x in curve],
            "examination_impressions": [int(x) for x in impressions],
            "calibration_raw": [round(float(x), 5) for x in bin_centres()],
            "calibration_click_rate": [round(float(x), 5) for x in calibrated],
            "calibration_exposure": round(exposure, 1),
            "trending": trending,
            "fresh_pool": len(bundle.arrays["fresh"]),
            "fresh_graduated": self._fresh.graduated(fresh_key(version, surface)),
        }

    def _limit(self, events: Sequence[FeedbackEvent], known: dict[str, RequestContext] | None, client: str) -> None:
        """Charge the batch to its client and to each user it reports on (users from the stored
        contexts: events do not carry one, and a caller could not be trusted to say). Without
        the store the limits cannot be shared, so they are not applied: the per-item rule of one
        outcome per served item still bounds what any feedback can teach."""
        s = self._s
        charges: list[tuple[str, Charge]] = []
        if s.feedback_client_rate > 0 and client:
            charges.append(
                ("events", Charge(f"client:{client}", len(events), s.feedback_client_rate, s.feedback_client_burst))
            )
        if s.feedback_user_rate > 0 and known:
            per_user: Counter[str] = Counter()
            first: dict[str, int] = {}
            for n, ev in enumerate(events):
                ctx = known.get(ev.request_id)
                if ctx is not None and ctx.user_id:
                    per_user[ctx.user_id] += 1
                    first.setdefault(ctx.user_id, n)
            charges += [
                (f"events.{first[u]}.request_id", Charge(f"user:{u}", n, s.feedback_user_rate, s.feedback_user_burst))
                for u, n in sorted(per_user.items())
            ]
        if not charges:
            return
        try:
            waits = self._store.take([c for _, c in charges])
        except StoreUnavailable:
            self._metrics.store_errors.labels("rate_limit").inc()
            return
        refused = [(wait, f, c) for wait, (f, c) in zip(waits, charges, strict=True) if wait > 0]
        if refused:
            wait, field_name, charge = max(refused, key=lambda r: r[0])
            kind, _, who = charge.subject.partition(":")
            self._metrics.feedback.labels("any", f"rate_limited_{kind}").inc(len(events))
            raise RateLimited(
                f"{kind} {who!r}: more than {charge.rate:g} feedback events per second (burst {charge.burst:g}); "
                f"nothing of this batch was taken, retry after {int(np.ceil(wait))} s",
                field_name,
                max(1, int(np.ceil(wait))),
            )

    def _log_decision(self, ctx: RequestContext, served_as_impressions: bool) -> None:
        self._producer.send_nowait(Message(self._s.decisions_topic, ctx.request_id.encode(), ctx.encode()))
        if served_as_impressions:
            for item in ctx.items:
                event = FeedbackEvent(
                    f"{ctx.request_id}:{item}:served", ctx.request_id, item, "impression", 0.0, ctx.ts
                )
                self._producer.send_nowait(Message(self._s.feedback_topic, item.encode(), event.encode()))

    def feedback(self, events: Sequence[FeedbackEvent], client: str = "") -> FeedbackResult:
        """Send the events to the feedback topic; ``InvalidFeedback`` when any is out of bounds,
        ``RateLimited`` when the batch would take ``client`` or a served user past a limit."""
        rejected: list[dict[str, str | int]] = []
        try:
            known = self._store.get_contexts(sorted({e.request_id for e in events}))
        except StoreUnavailable:
            # Cannot check now; the consumer dead-letters what does not join, nothing is lost.
            self._metrics.store_errors.labels("get_contexts").inc()
            known = None
        self._limit(events, known, client)
        if known is not None:
            # Without the contexts (store down) the consumer still clips rewards to the bounds
            # the context recorded; what it cannot check here it cannot be fooled by there.
            events = check_events(events, known, time.time())
        unique: dict[str, FeedbackEvent] = {}
        for ev in events:
            unique.setdefault(ev.event_id, ev)
        duplicates = len(events) - len(unique)
        to_send = []
        for index, ev in enumerate(events):
            if unique.get(ev.event_id) is not ev:
                continue
            if known is not None and ev.request_id not in known:
                rejected.append({"index": index, "event_id": ev.event_id, "reason": "unknown or expired request_id"})
                self._metrics.feedback.labels(ev.type, "rejected").inc()
                continue
            to_send.append(ev)
        messages = [Message(self._s.feedback_topic, e.item_id.encode(), e.encode()) for e in to_send]
        try:
            if messages:
                self._producer.send_and_wait(messages, self._s.kafka_timeout_s)
        except BusUnavailable:
            self._metrics.bus_errors.labels("feedback").inc()
            raise
        for ev in to_send:
            self._metrics.feedback.labels(ev.type, "accepted").inc()
        return FeedbackResult(len(to_send), duplicates, rejected)
