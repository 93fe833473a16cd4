"""The two-tower model on planted structure: small, seeded, fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from offline.bundle import Bundle, user_from_features
from offline.two_tower import (
    ItemTower,
    TwoTowerConfig,
    TwoTowerResult,
    UserTower,
    WarmStart,
    recall_at_k,
    train_two_tower,
    warm_init,
)

N_USERS, N_ITEMS, GROUPS = 120, 60, 4


def planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Users of group g like items of group g; one popular item everyone clicks a little;
    each item's feature is its group."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(1, N_USERS + 1):
        g = u % GROUPS
        liked = [j for j in range(N_ITEMS) if j % GROUPS == g]
        for j in rng.choice(liked, 8, replace=False):
            users.append(u)
            items.append(int(j))
        if rng.random() < 0.5:
            users.append(u)
            items.append(0)  # the popular item (group 0)
    return np.array(users), np.array(items), [[j % GROUPS] for j in range(N_ITEMS)]


def test_learns_planted_groups_better_than_popularity() -> None:
    users, items, feats = planted()
    result = train_two_tower(users, items, N_USERS, feats, GROUPS, TwoTowerConfig(epochs=20, dim=16, batch_size=64))
    assert result.user_emb.shape == (N_USERS, 16) and result.item_emb.shape == (N_ITEMS, 16)
    np.testing.assert_allclose(np.linalg.norm(result.item_emb, axis=1), 1.0, rtol=1e-5)
    relevant = [{j for j in range(N_ITEMS) if j % GROUPS == u % GROUPS} for u in range(1, N_USERS + 1)]
    seen: list[set[int]] = [set() for _ in range(N_USERS)]
    model = recall_at_k(np.asarray(result.user_emb @ result.item_emb.T, dtype=np.float64), relevant, seen, (10,))[10]
    popularity = np.bincount(items, minlength=N_ITEMS).astype(float)
    pop = recall_at_k(np.tile(popularity, (N_USERS, 1)), relevant, seen, (10,))[10]
    # 15 relevant items per user, so Recall@10 cannot exceed 10/15.
    assert model > 0.95 * 10 / 15 and model > 2 * pop


def test_a_fresh_item_is_placed_by_its_content() -> None:
    users, items, feats = planted(1)
    fresh = N_ITEMS - 1  # group 3; hide all its interactions
    keep = items != fresh
    trained = np.bincount(items[keep], minlength=N_ITEMS) > 0
    result = train_two_tower(
        users[keep], items[keep], N_USERS, feats, GROUPS, TwoTowerConfig(epochs=20, dim=16, batch_size=64), trained
    )
    group_users = result.user_emb[[u - 1 for u in range(1, N_USERS + 1) if u % GROUPS == fresh % GROUPS]]
    other_users = result.user_emb[[u - 1 for u in range(1, N_USERS + 1) if u % GROUPS != fresh % GROUPS]]
    v = result.item_emb[fresh]
    assert (group_users @ v).mean() > (other_users @ v).mean() + 0.2


def test_logq_correction_demotes_the_popular_item() -> None:
    users, items, feats = planted(2)
    cfg = {"epochs": 20, "dim": 16, "batch_size": 64}
    with_q = train_two_tower(users, items, N_USERS, feats, GROUPS, TwoTowerConfig(logq=True, **cfg))
    without = train_two_tower(users, items, N_USERS, feats, GROUPS, TwoTowerConfig(logq=False, **cfg))

    def rank_of_popular(r: object) -> float:
        scores = r.user_emb @ r.item_emb.T  # type: ignore[attr-defined]  # a TwoTowerResult
        return float((scores > scores[:, [0]]).sum(1).mean())

    # Without the correction the popular item is over-penalised as an in-batch negative.
    assert rank_of_popular(with_q) < rank_of_popular(without)


def test_a_cold_user_is_placed_by_her_features() -> None:
    users, items, feats = planted(3)
    user_feats: list[list[int]] = [[]] + [[u % GROUPS] for u in range(1, N_USERS + 1)]  # row 0: the unknown user
    result = train_two_tower(
        users, items, N_USERS, feats, GROUPS, TwoTowerConfig(epochs=20, dim=16, batch_size=64),
        user_features=user_feats, n_user_features=GROUPS,
    )  # fmt: skip
    arrays = {
        "user_feature_vocab": np.array([f"group={g}" for g in range(GROUPS)]),
        "user_feature_emb": result.state["user.features"],
        "user_out_w": result.state["user.out.w"],
        "user_out_b": result.state["user.out.b"],
    }
    bundle = Bundle(Path("in-memory"), {}, arrays)
    for g in range(GROUPS):
        u = user_from_features(bundle, {"group": float(g)})  # a number reads as its CSV text
        assert u is not None and abs(float(np.linalg.norm(u)) - 1.0) < 1e-6
        scores = result.item_emb @ u
        own = scores[[j for j in range(N_ITEMS) if j % GROUPS == g]].mean()
        other = scores[[j for j in range(N_ITEMS) if j % GROUPS != g]].mean()
        assert own > other + 0.2, g
    assert user_from_features(bundle, {"group": "unknown"}) is None  # the caller falls back to the default


def _warm(result: TwoTowerResult, item_keys: list[str], user_keys: list[str]) -> WarmStart:
    return WarmStart("v-prev", result.state, item_keys, user_keys, [f"g{g}" for g in range(GROUPS)], [])


def test_warm_start_copies_rows_by_key_not_by_position() -> None:
    users, items, feats = planted(4)
    first = train_two_tower(users, items, N_USERS, feats, GROUPS, TwoTowerConfig(epochs=2, dim=16, batch_size=64))
    old_items = [f"i{j}" for j in range(N_ITEMS)]
    old_users = [f"u{u}" for u in range(1, N_USERS + 1)]
    # The next catalogue lists the items in reverse and adds one; the users lose the first.
    new_items = ["brand-new", *reversed(old_items)]
    new_users = old_users[1:]
    user_tower, item_tower = UserTower(len(new_users), 0, 16), ItemTower(len(new_items), GROUPS, 16)
    copied = warm_init(
        user_tower, item_tower, _warm(first, old_items, old_users),
        (new_items, new_users, [f"g{g}" for g in reversed(range(GROUPS))], []),
    )  # fmt: skip
    assert copied == {"item.ids": N_ITEMS, "user.ids": N_USERS - 1, "item.features": GROUPS, "user.features": 0}
    ids = item_tower.ids.weight.detach().numpy()
    np.testing.assert_array_equal(ids[1:], first.state["item.ids"][::-1])
    np.testing.assert_array_equal(user_tower.ids.weight.detach().numpy()[1:], first.state["user.ids"][2:])
    np.testing.assert_array_equal(item_tower.features.weight.detach().numpy()[1:], first.state["item.features"][::-1])
    np.testing.assert_array_equal(item_tower.out.weight.detach().numpy().T, first.state["item.out.w"])


def test_a_warm_start_begins_where_the_previous_model_ended() -> None:
    users, items, feats = planted(5)
    cfg = TwoTowerConfig(epochs=20, dim=16, batch_size=64)
    previous = train_two_tower(users, items, N_USERS, feats, GROUPS, cfg)
    keys = ([f"i{j}" for j in range(N_ITEMS)], [f"u{u}" for u in range(1, N_USERS + 1)])
    one = TwoTowerConfig(epochs=1, dim=16, batch_size=64)
    cold = train_two_tower(users, items, N_USERS, feats, GROUPS, one)
    warm = train_two_tower(
        users, items, N_USERS, feats, GROUPS, one,
        warm=(_warm(previous, *keys), (*keys, [f"g{g}" for g in range(GROUPS)], [])),
    )  # fmt: skip
    assert warm.warm_rows["item.ids"] == N_ITEMS and cold.warm_rows == {}
    # One epoch from the previous parameters is already near where 20 epochs ended.
    assert warm.epoch_losses[0] < cold.epoch_losses[0] - 0.5
    assert warm.epoch_losses[0] < previous.epoch_losses[-1] + 0.3
