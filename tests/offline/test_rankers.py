from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from offline.bundle import mlp_head
from offline.rankers import (
    RankerConfig,
    auc,
    distillation_loss,
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


def test_distillation_loss_splits_real_and_teacher_labels_between_the_heads() -> None:
    rng = np.random.default_rng(1)
    main = torch.tensor(rng.normal(size=64), dtype=torch.float32, requires_grad=True)
    aux = torch.tensor(rng.normal(size=64), dtype=torch.float32, requires_grad=True)
    labels = torch.tensor(rng.random(64) < 0.3, dtype=torch.float32)
    teacher = torch.tensor(rng.uniform(0.05, 0.95, 64), dtype=torch.float32)
    loss = distillation_loss(main, aux, labels, teacher, aux_weight=0.5)
    loss.backward()  # type: ignore[no-untyped-call]  # torch's backward has no annotations
    assert main.grad is not None and aux.grad is not None
    # d/d main = (sigmoid(main) - label) / B: the main head is pulled only towards the real labels;
    # d/d aux = w · (sigmoid(aux) - teacher) / B: the aux head only towards the teacher.
    np.testing.assert_allclose(main.grad.numpy(), (torch.sigmoid(main) - labels).detach().numpy() / 64, atol=1e-7)
    expected_aux = 0.5 * (torch.sigmoid(aux) - teacher).detach().numpy() / 64
    np.testing.assert_allclose(aux.grad.numpy(), expected_aux, atol=1e-7)
    # Without the auxiliary weight it is plain log-loss on the real labels.
    plain = distillation_loss(main, aux, labels, teacher, aux_weight=0.0)
    np.testing.assert_allclose(
        float(plain.detach()), log_loss(torch.sigmoid(main).detach().numpy(), labels.numpy()), rtol=1e-5
    )
    # The teacher part is smallest where the aux head reproduces the teacher's logits.
    exact = torch.log(teacher / (1 - teacher))
    at = float(distillation_loss(main, exact, labels, teacher, 1.0).detach())
    for shift in (-0.2, 0.2):
        assert at < float(distillation_loss(main, exact + shift, labels, teacher, 1.0).detach())
