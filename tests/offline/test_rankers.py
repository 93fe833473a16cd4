from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from offline.bundle import mlp_head
from offline.rankers import (
    RankerConfig,
    auc,
    export_student,
    log_loss,
    predict_teacher,
    train_student,
    train_teacher,
    write_teacher_labels,
)


def test_auc_and_log_loss_on_known_cases() -> None:
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert log_loss(np.array([0.5, 0.5]), np.array([0, 1])) == np.log(2)


def test_students_learn_what_the_teacher_knows_through_the_aux_head(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 12)).astype(np.float32)
    logit = 2 * x[:, 0] * x[:, 1] + x[:, 2]  # an interaction a linear model cannot see
    y = (rng.random(4000) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    train, test = slice(0, 3000), slice(3000, None)
    cfg = RankerConfig(epochs=30, student_sizes=(16,))
    teacher = train_teacher(x[train], y[train], cfg)
    labels = write_teacher_labels(teacher, x[train], tmp_path / "teacher.npy")
    assert np.load(labels).shape == (3000,)
    teacher_auc = auc(predict_teacher(teacher, x[test]), y[test])
    student = train_student(x[train], y[train], labels, 16, cfg)
    p = mlp_head(x[test].astype(np.float64), export_student(student))  # numpy, as serving runs it
    assert teacher_auc > 0.75
    assert auc(p, y[test]) >= teacher_auc - 0.02
    # The auxiliary head, not the main one, is what was fitted to the teacher's labels.
    with torch.no_grad():
        _, aux = student(torch.tensor(x[test]))
    teacher_p = predict_teacher(teacher, x[test])
    assert np.corrcoef(torch.sigmoid(aux).numpy(), teacher_p)[0, 1] > 0.9
