"""Teacher and distilled students (Khani et al., RecSys 2024) — offline only (torch).

- The teacher is a larger MLP ranker on ``[u ⊙ v, u, v]`` (two-tower embeddings), trained on
  logged impressions with their rewards (random items as negatives when only positives exist).
- Its labels are computed **once** and written to a columnar file that every student reads.
- Each student has a main head trained on the real labels and an **auxiliary head** trained on
  the teacher's labels: distillation shapes the shared layer without becoming the student's
  objective. Serving uses the main head only, evaluated in numpy from exported arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from bandits.checks import FloatArray

F32 = NDArray[np.float32]


def ranker_features(u: F32, v: F32) -> F32:
    """``[u ⊙ v, u, v]``: (E, 3·dim) from user and item embeddings (E, dim)."""
    return np.concatenate([u * v, u, v], axis=1).astype(np.float32)


class Teacher(nn.Module):
    def __init__(self, n_in: int, hidden: tuple[int, ...] = (128, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x).squeeze(-1)
        return out


class Student(nn.Module):
    """One hidden layer shared by the main head (real labels) and the auxiliary head (teacher)."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(n_in, hidden)
        self.main = nn.Linear(hidden, 1)
        self.aux = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.hidden(x))
        return self.main(h).squeeze(-1), self.aux(h).squeeze(-1)


@dataclass(frozen=True)
class RankerConfig:
    epochs: int = 6
    batch_size: int = 512
    lr: float = 0.003
    aux_weight: float = 0.5
    student_sizes: tuple[int, ...] = (16, 64)
    seed: int = 0


def _batches(n: int, size: int, rng: np.random.Generator) -> list[NDArray[np.int64]]:
    order = rng.permutation(n)
    return [order[i : i + size] for i in range(0, n, size)]


def train_teacher(x: F32, y: FloatArray, cfg: RankerConfig) -> Teacher:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = Teacher(x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    xt, yt = torch.tensor(x), torch.tensor(y, dtype=torch.float32)
    for _ in range(cfg.epochs):
        for idx in _batches(len(x), cfg.batch_size, rng):
            loss = nn.functional.binary_cross_entropy_with_logits(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]  # torch's backward has no annotations
            opt.step()
    return model


def write_teacher_labels(model: Teacher, x: F32, path: Path) -> Path:
    """The teacher's probabilities for every training row, computed once (columnar .npy)."""
    with torch.no_grad():
        labels = torch.sigmoid(model(torch.tensor(x))).numpy().astype(np.float32)
    np.save(path, labels, allow_pickle=False)
    return path


def distillation_loss(
    main: torch.Tensor, aux: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, aux_weight: float
) -> torch.Tensor:
    """The student's loss: ``BCE(main, labels) + aux_weight · BCE(aux, teacher)``.

    ``main``, ``aux`` (B,) logits of the two heads; ``labels`` (B,) real rewards in [0, 1];
    ``teacher`` (B,) the teacher's probabilities. The main head never sees the teacher's labels
    (Khani et al. 2024: the auxiliary head keeps the teacher's bias out of the served head).

    >>> z = torch.zeros(2)
    >>> round(float(distillation_loss(z, z, torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.5]), 1.0)), 4)
    1.3863
    """
    real = nn.functional.binary_cross_entropy_with_logits(main, labels)
    return real + aux_weight * nn.functional.binary_cross_entropy_with_logits(aux, teacher)


def train_student(x: F32, y: FloatArray, teacher_labels: Path, hidden: int, cfg: RankerConfig) -> Student:
    soft = np.load(teacher_labels, allow_pickle=False)
    if soft.shape != (len(x),):
        raise ValueError(f"{teacher_labels}: {soft.shape[0]} labels for {len(x)} rows")
    torch.manual_seed(cfg.seed + hidden)
    rng = np.random.default_rng(cfg.seed + hidden)
    model = Student(x.shape[1], hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    xt, yt, st = torch.tensor(x), torch.tensor(y, dtype=torch.float32), torch.tensor(soft)
    for _ in range(cfg.epochs):
        for idx in _batches(len(x), cfg.batch_size, rng):
            main, aux = model(xt[idx])
            loss = distillation_loss(main, aux, yt[idx], st[idx], cfg.aux_weight)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]  # torch's backward has no annotations
            opt.step()
    return model


def export_student(model: Student) -> dict[str, F32]:
    """Main-head arrays for serving: ``w1`` (n_in, h), ``b1`` (h,), ``w2`` (h,), ``b2`` (1,)."""
    return {
        "prior_w1": model.hidden.weight.detach().numpy().T.copy().astype(np.float32),
        "prior_b1": model.hidden.bias.detach().numpy().astype(np.float32),
        "prior_w2": model.main.weight.detach().numpy()[0].astype(np.float32),
        "prior_b2": model.main.bias.detach().numpy().astype(np.float32),
    }


def predict_teacher(model: Teacher, x: F32) -> FloatArray:
    with torch.no_grad():
        return np.asarray(torch.sigmoid(model(torch.tensor(x))).numpy(), dtype=np.float64)


def auc(scores: FloatArray, labels: FloatArray) -> float:
    """Rank AUC (ties averaged)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    # average ranks of ties
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    pos = labels > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(p: FloatArray, labels: FloatArray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
