"""The controls of distillation: label smoothing (teacher-free KD) and pseudo-labelling with a
teacher on the student's own modalities (issue 23, item 2)."""

import math

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from kdbench import BuildContext, ModalityUse, StepBatch, TrainingStep  # noqa: E402
from kdbench.modalities import MODALITIES  # noqa: E402
from kdbench_plugins.controls import (  # noqa: E402
    LabelSmoothingControl,
    PseudoLabelControl,
    smoothed_label_logits,
)

T1CE = ("t1ce",)


def _context(weights=(0.75, 0.25, 0.0), teacher=None, teacher_modalities=()):
    return BuildContext(network=lambda c, **_: torch.nn.Conv3d(c, 3, 1), num_outputs=3,
                        device="cpu", supervised_loss=lambda o, t: o[0].sum() * 0 + 0.5,
                        deep_supervision_weights=weights, teacher=teacher,
                        teacher_modalities=teacher_modalities)


def test_label_smoothing_is_kd_against_the_smoothed_labels_by_hand():
    """KL(Bernoulli(q) || Bernoulli(p_s)) x T^2 with q = sigmoid(±logit(0.9) / T), computed
    element by element with Python floats, per scale, renormalised by the weights used."""
    strategy = LabelSmoothingControl(LabelSmoothingControl.resolve_hparams(
        {"temperature": 2.0, "kd_weight": 0.5}), ModalityUse(T1CE, (T1CE,)))
    generator = torch.Generator().manual_seed(0)
    targets = [(torch.rand(1, 3, 2, 2, 2, generator=generator) > 0.5).float(),
               (torch.rand(1, 3, 1, 1, 1, generator=generator) > 0.5).float(),
               torch.zeros(1, 3, 1, 1, 1)]
    student = [torch.randn(1, 3, 2, 2, 2, generator=generator),
               torch.randn(1, 3, 1, 1, 1, generator=generator),
               torch.randn(1, 3, 1, 1, 1, generator=generator)]
    batch = StepBatch(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 1, 2, 2, 2), targets, T1CE)
    terms = strategy.training_loss(TrainingStep(None, student, batch, _context()))

    def by_hand(s_logits, labels, temperature=2.0, confidence=0.9):
        total, count = 0.0, 0
        for s, y in zip(s_logits.flatten().tolist(), labels.flatten().tolist(), strict=True):
            z = (1 if y else -1) * math.log(confidence / (1 - confidence)) / temperature
            q = 1 / (1 + math.exp(-z))
            p = 1 / (1 + math.exp(-s / temperature))
            total += q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p))
            count += 1
        return total / count * temperature ** 2

    expected = (0.75 * by_hand(student[0], targets[0]) + 0.25 * by_hand(student[1], targets[1]))
    assert float(terms["distillation"]) == pytest.approx(expected, rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(0.5 + 0.5 * expected, rel=1e-5)
    logits = smoothed_label_logits(torch.tensor([0.0, 1.0]), 0.9)
    assert torch.sigmoid(logits).tolist() == pytest.approx([0.1, 0.9])


def test_label_smoothing_pulls_a_confident_student_back_towards_the_smoothed_labels():
    strategy = LabelSmoothingControl(LabelSmoothingControl.resolve_hparams({"temperature": 1.0}),
                                     ModalityUse(T1CE, (T1CE,)))
    target = torch.ones(1, 3, 2, 2, 2)
    batch = StepBatch(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 1, 2, 2, 2), [target], T1CE)
    for logit, sign in ((8.0, 1), (0.0, -1)):  # over-confident: pushed down; unsure: up
        student = torch.full((1, 3, 2, 2, 2), logit, requires_grad=True)
        strategy.training_loss(TrainingStep(None, [student], batch, _context((1.0,))))[
            "distillation"].backward()
        assert float(student.grad.sum()) * sign > 0


class _Teacher(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(2.0))
        self.seen = []

    def forward(self, x):
        self.seen.append(x)
        return [self.weight * x.mean(1, keepdim=True).repeat(1, 3, 1, 1, 1)]


def test_pseudo_label_distils_the_unlabelled_cases_through_the_mono_teacher():
    from kdbench_plugins.kd import binary_kl

    teacher = _Teacher()
    context = _context((0.75, 0.25), teacher, T1CE)
    strategy = PseudoLabelControl(PseudoLabelControl.resolve_hparams(
        {"kd_weight": 1.0, "temperature": 2.0, "unlabelled_weight": 0.5}),
        ModalityUse(MODALITIES, (T1CE,)))
    model = strategy.build(context)
    generator = torch.Generator().manual_seed(3)
    privileged = torch.randn(2, 4, 4, 4, 4, generator=generator)
    unlabelled = torch.randn(2, 1, 4, 4, 4, generator=generator)
    student = [torch.randn(2, 3, 4, 4, 4, generator=generator),
               torch.randn(2, 3, 2, 2, 2, generator=generator)]
    batch = StepBatch(privileged[:, [1]], privileged, None, MODALITIES, unlabelled)
    terms = strategy.training_loss(TrainingStep(model, student, batch, context))
    assert torch.equal(teacher.seen[0], privileged[:, [1]])  # the student's own channel
    assert torch.equal(teacher.seen[1], unlabelled)  # no other modality of the case
    assert len(teacher.seen) == 2

    def kl(outputs, full):
        low = F.interpolate(full, size=tuple(outputs[1].shape[2:]), mode="area")
        return (0.75 * binary_kl(outputs[0], full, 2.0) + 0.25 * binary_kl(outputs[1], low, 2.0))

    labelled = kl(student, teacher(privileged[:, [1]])[0]).detach()
    # the model here has one output: the unlabelled term is its full-resolution term only
    unl = binary_kl(model(unlabelled), teacher(unlabelled)[0], 2.0).detach()
    assert float(terms["distillation"]) == pytest.approx(float(labelled), rel=1e-5)
    assert float(terms["distill_unlabelled"].detach()) == pytest.approx(float(unl), rel=1e-5)
    assert float(terms["loss"].detach()) == pytest.approx(0.5 + float(labelled) + 0.5 * float(unl),
                                                 rel=1e-5)
    terms["loss"].backward()
    assert teacher.weight.grad is None


def test_pseudo_label_refuses_a_teacher_that_reads_modalities_an_unlabelled_case_lacks():
    strategy = PseudoLabelControl(PseudoLabelControl.resolve_hparams({}),
                                  ModalityUse(MODALITIES, (T1CE,)))
    with pytest.raises(ValueError, match="teacher reads t1, t2, flair.*teacher: mono"):
        strategy.build(_context(teacher=_Teacher(), teacher_modalities=MODALITIES))
    assert strategy.unlabelled_cases(tuple("abcdefghij")) == tuple("abcd")  # the default 4
    with pytest.raises(ValueError, match="only 3 cases"):
        strategy.unlabelled_cases(("a", "b", "c"))
