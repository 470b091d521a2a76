"""TrainingStep: what a strategy's loss receives, and its helpers."""

from __future__ import annotations

import pytest
import torch

from kdbench import BuildContext, StepBatch, Strategy, TrainingStep
from kdbench.modalities import MODALITIES
from kdbench.types import ModalityUse


class CountingTeacher(torch.nn.Module):
    """Two scales of logits; counts its calls and records grad mode and autocast."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.calls, self.seen, self.inference, self.autocast = 0, None, None, None

    def forward(self, x):
        self.calls += 1
        self.seen = x
        self.inference = torch.is_inference_mode_enabled()
        self.autocast = torch.is_autocast_enabled("cpu")
        full = x.sum(1, keepdim=True).repeat(1, 3, 1, 1, 1) * self.weight
        return [full, full[..., ::2, ::2, ::2]]


def _step(teacher=None, weights=(0.75, 0.25, 0.0), outputs=None):
    torch.manual_seed(0)
    privileged = torch.randn(2, 4, 4, 4, 4)
    if outputs is None:
        outputs = [torch.randn(2, 3, 4, 4, 4, requires_grad=True),
                   torch.randn(2, 3, 2, 2, 2, requires_grad=True),
                   torch.randn(2, 3, 1, 1, 1, requires_grad=True)]
    context = BuildContext(network=None, num_outputs=3, device="cpu",
                           supervised_loss=lambda o, t: (o[0] * t).sum(), teacher=teacher,
                           teacher_modalities=("t1", "flair"), deep_supervision_weights=weights)
    batch = StepBatch(privileged[:, [1]], privileged, torch.tensor(2.0), MODALITIES)
    return TrainingStep("the model", outputs, batch, context)


def test_teacher_outputs_run_once_in_inference_mode_on_the_teachers_channels():
    teacher = CountingTeacher()
    step = _step(teacher)
    first = step.teacher_outputs
    assert step.teacher_outputs is first and teacher.calls == 1  # once per step
    assert torch.equal(teacher.seen, step.batch.privileged[:, [0, 3]])  # t1, flair
    assert teacher.inference is True
    assert all(not t.is_inference() and not t.requires_grad for t in first)  # constants
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert len(_step(teacher).teacher_outputs) == 2
    assert teacher.autocast is True  # under the caller's autocast
    (first[0].sum() * step.outputs[0].sum()).backward()  # usable in a graph
    assert teacher.weight.grad is None


def test_teacher_outputs_without_a_teacher_is_a_clear_error():
    with pytest.raises(RuntimeError, match="requires = \\('teacher',\\)"):
        _ = _step(None).teacher_outputs


def test_supervised_and_the_deep_supervision_sum_by_hand():
    step = _step()
    s = step.outputs
    assert torch.equal(step.supervised(), (s[0] * 2.0).sum())
    assert torch.equal(step.supervised([s[1]]), (s[1] * 2.0).sum())
    got = step.deep_supervision_sum(lambda a: a.mean())
    assert torch.equal(got, 0 + 0.75 * s[0].mean() + 0.25 * s[1].mean())  # weight 0 skipped
    others = [torch.full_like(t, 3.0) for t in s]
    paired = step.deep_supervision_sum(lambda a, b, c: (a * b).mean() + c, others, [1.0, 2.0])
    assert torch.equal(paired, 0 + 0.75 * ((s[0] * 3).mean() + 1.0)
                       + 0.25 * ((s[1] * 3).mean() + 2.0))
    alone = torch.randn(2, 3, 4, 4, 4)
    assert torch.equal(step.deep_supervision_sum(lambda a: a.sum(), outputs=alone),
                       0.75 * alone.sum())  # one output: a list of one
    unweighted = _step(weights=())
    assert torch.equal(unweighted.deep_supervision_sum(lambda a: a.sum()),
                       unweighted.outputs[0].sum())  # no weights: the first output, weight 1


def test_the_default_loss_is_the_supervised_loss():
    step = _step()
    strategy = Strategy({}, ModalityUse(MODALITIES, (("t1ce",),)))
    assert torch.equal(strategy.training_loss(step)["loss"], step.supervised())
    assert strategy.validation_terms(step) is None
