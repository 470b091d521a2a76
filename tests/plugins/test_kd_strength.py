"""kd's strength against its documented source, and deep supervision with a teacher of fewer
outputs (issue 23: calibrated KD)."""

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from kdbench import BuildContext, StepBatch, TrainingStep  # noqa: E402
from kdbench_plugins.kd import KnowledgeDistillation, binary_kl  # noqa: E402


def protokd_term(student: "torch.Tensor", teacher: "torch.Tensor", temperature: float) -> float:
    """ProtoKD's distillation term as its code computes it (SakurajimaMaiii/ProtoKD,
    code/trainer.py): 10 * mean(kl_div(log_softmax(s/T), softmax(t/T))), the mean over batch,
    classes and voxels, no T^2."""
    pointwise = F.kl_div(F.log_softmax(student / temperature, dim=1),
                         F.softmax(teacher / temperature, dim=1), reduction="none")
    return float(10 * pointwise.mean())  # torch's reduction="mean", which ProtoKD uses


@pytest.mark.parametrize("scale", [0.3, 1.0])
def test_the_default_term_is_protokds_strength_within_ten_percent(scale):
    """The same logit perturbation on ProtoKD's 4 softmax classes and on kdbench's 3 sigmoid
    regions gives the same distillation strength at the defaults (λ = 0.075, T = 10)."""
    defaults = KnowledgeDistillation.resolve_hparams({})
    lam, temperature = defaults["kd_weight"], defaults["temperature"]
    generator = torch.Generator().manual_seed(0)
    shape = (2, 4, 24, 24, 24)
    teacher = 2.0 * torch.randn(shape, generator=generator)
    student = teacher + scale * torch.randn(shape, generator=generator)
    theirs = protokd_term(student, teacher, temperature)
    ours = lam * float(binary_kl(student[:, 1:], teacher[:, 1:], temperature))  # 3 regions
    assert ours == pytest.approx(theirs, rel=0.10)
    # the earlier default (0.025, "10 / (4 T^2)") was about a third of it
    assert 0.025 * float(binary_kl(student[:, 1:], teacher[:, 1:], temperature)) < 0.4 * theirs
    # and the gradients agree in size as well
    s = student.clone().requires_grad_(True)
    (lam * binary_kl(s[:, 1:], teacher[:, 1:], temperature)).backward()
    ours_grad = s.grad[:, 1:].abs().mean()
    s2 = student.clone().requires_grad_(True)
    (10 * F.kl_div(F.log_softmax(s2 / temperature, dim=1),
                   F.softmax(teacher / temperature, dim=1), reduction="none").mean()).backward()
    assert float(ours_grad) == pytest.approx(float(s2.grad.abs().mean()), rel=0.35)


def _step(student_outputs, teacher, weights):
    context = BuildContext(network=None, num_outputs=len(student_outputs), device="cpu",
                           supervised_loss=lambda o, t: o[0].sum() * 0,
                           deep_supervision_weights=weights, teacher=teacher,
                           teacher_modalities=("t1", "t1ce", "t2", "flair"))
    batch = StepBatch(torch.zeros(1, 1, 8, 8, 8), torch.zeros(1, 4, 8, 8, 8), None,
                      ("t1", "t1ce", "t2", "flair"))
    return TrainingStep(None, student_outputs, batch, context)


def test_a_one_output_teacher_distils_at_every_scale_like_its_downsampled_outputs():
    generator = torch.Generator().manual_seed(1)
    full = torch.randn(1, 3, 8, 8, 8, generator=generator)
    student = [torch.randn(1, 3, 8, 8, 8, generator=generator),
               torch.randn(1, 3, 4, 4, 4, generator=generator),
               torch.randn(1, 3, 2, 2, 2, generator=generator)]
    weights = (4 / 7, 2 / 7, 1 / 7)
    kd = KnowledgeDistillation(KnowledgeDistillation.resolve_hparams({}), None)
    one = _step(student, lambda x: full, weights)  # a foundation-like teacher: one output
    downsampled = [full, F.interpolate(full, size=(4, 4, 4), mode="area"),
                   F.interpolate(full, size=(2, 2, 2), mode="area")]
    many = _step(student, lambda x: downsampled, weights)
    assert float(kd.training_loss(one)["distillation"]) == pytest.approx(
        float(kd.training_loss(many)["distillation"]), rel=1e-6)
    # every scale is used: not only the full-resolution term at its weight 4/7
    alone = float(binary_kl(student[0], full, 10.0))
    assert float(kd.training_loss(one)["distillation"]) != pytest.approx(4 / 7 * alone)


def test_a_sum_cut_short_is_renormalised_by_the_weights_used():
    generator = torch.Generator().manual_seed(2)
    teacher = torch.randn(1, 3, 8, 8, 8, generator=generator)
    student = torch.randn(1, 3, 8, 8, 8, generator=generator)
    step = _step([student], lambda x: teacher, (4 / 7, 2 / 7, 1 / 7))  # one student output
    term = float(binary_kl(student, teacher, 10.0))
    assert float(step.deep_supervision_sum(lambda s, t: binary_kl(s, t, 10.0),
                                           [teacher], renormalise=True)) == pytest.approx(term)
    assert float(step.deep_supervision_sum(lambda s, t: binary_kl(s, t, 10.0),
                                           [teacher])) == pytest.approx(4 / 7 * term)
