"""The two-tower model on planted structure: small, seeded, fast."""

from __future__ import annotations

import numpy as np

from offline.two_tower import TwoTowerConfig, recall_at_k, train_two_tower

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
