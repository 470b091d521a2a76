"""The distillation loss against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit, rel_entr

from kdbench.components.strategy import BuildContext, StepBatch, TrainingStep
from kdbench.modalities import MODALITIES
from kdbench.types import ModalityUse
from kdbench_plugins.kd import KnowledgeDistillation, binary_kl


@pytest.mark.parametrize("temperature", [1.0, 4.0, 10.0])
def test_binary_kl_matches_scipy(temperature):
    rng = np.random.default_rng(0)
    s, t = rng.normal(0, 5, (2, 3, 4, 4, 4)), rng.normal(0, 5, (2, 3, 4, 4, 4))
    p, q = expit(t / temperature), expit(s / temperature)
    expected = (rel_entr(p, q) + rel_entr(1 - p, 1 - q)).mean() * temperature**2
    got = binary_kl(torch.tensor(s), torch.tensor(t), temperature)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # and torch's own Bernoulli KL agrees too
    dist = torch.distributions
    ref = dist.kl_divergence(dist.Bernoulli(logits=torch.tensor(t) / temperature),
                             dist.Bernoulli(logits=torch.tensor(s) / temperature))
    assert float(got) == pytest.approx(float(ref.mean()) * temperature**2, rel=1e-5)


def test_binary_kl_is_zero_on_agreement_and_finite_on_saturation():
    x = torch.tensor([-60.0, 0.0, 60.0])
    assert float(binary_kl(x, x, 1.0)) == pytest.approx(0.0, abs=1e-9)
    assert torch.isfinite(binary_kl(-x, x, 1.0))


class Teacher(torch.nn.Module):
    """Returns fixed logits at two scales; records what it was given."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.seen = None

    def forward(self, x):
        self.seen = x
        return [lg * self.weight for lg in self.logits]


def test_training_loss_combines_the_terms_and_spares_the_teacher():
    torch.manual_seed(0)
    student = [torch.randn(2, 3, 8, 8, 8, requires_grad=True),
               torch.randn(2, 3, 4, 4, 4, requires_grad=True)]
    teacher_logits = [torch.randn(2, 3, 8, 8, 8), torch.randn(2, 3, 4, 4, 4)]
    teacher = Teacher(teacher_logits)
    privileged = torch.randn(2, 4, 8, 8, 8)
    context = BuildContext(network=None, supervised_loss=lambda o, t: torch.tensor(0.7),
                           num_outputs=3, device="cpu", teacher=teacher,
                           teacher_modalities=MODALITIES, deep_supervision_weights=(0.8, 0.2))
    kd = KnowledgeDistillation({"kd_weight": 2.0, "temperature": 4.0, "latent_weight": 0.0,
                                "latent_loss": "mse"},
                               ModalityUse(MODALITIES, (("t1ce",),)))
    batch = StepBatch(privileged[:, [1]], privileged, None, MODALITIES)
    terms = kd.training_loss(TrainingStep(None, student, batch, context))
    expected = 0.8 * binary_kl(student[0], teacher_logits[0], 4.0) + 0.2 * binary_kl(
        student[1], teacher_logits[1], 4.0)
    value = {k: float(v.detach()) for k, v in terms.items()}
    assert value["distillation"] == pytest.approx(float(expected.detach()), rel=1e-6)
    assert value["loss"] == pytest.approx(0.7 + 2.0 * float(expected.detach()), rel=1e-6)
    assert torch.equal(teacher.seen, privileged)  # the teacher reads every modality
    terms["loss"].backward()
    assert student[0].grad is not None and student[0].grad.abs().sum() > 0
    assert teacher.weight.grad is None  # never updated
    assert kd.input_modalities() == ("t1ce",)


def test_binary_kl_hand_computed_2x2x2():
    """A 2×2×2 volume, one region: four voxels where teacher and student agree (logit -3),
    four where the teacher says 2 and the student 0.

    KL(Bernoulli(p) || Bernoulli(q)) = p ln(p/q) + (1-p) ln((1-p)/(1-q)). With T = 2 the
    tempered logits are 1 and 0: p = σ(1) = 0.7310586, q = 0.5, KL = 0.1109441 per
    disagreeing voxel, mean over 8 voxels 0.0554720, times T² = 4: 0.2218881. With T = 1:
    p = σ(2) = 0.8807971, KL = 0.3278133, mean 0.1639067, times 1.
    """
    teacher = torch.full((1, 1, 2, 2, 2), -3.0)
    student = torch.full((1, 1, 2, 2, 2), -3.0)
    teacher[..., 0, :, :] = 2.0
    student[..., 0, :, :] = 0.0
    assert float(binary_kl(student, teacher, 2.0)) == pytest.approx(0.2218881, abs=1e-6)
    assert float(binary_kl(student, teacher, 1.0)) == pytest.approx(0.1639067, abs=1e-6)
    # the T² factor: without it the T = 2 value would be a quarter
    assert float(binary_kl(student, teacher, 2.0)) / 4 == pytest.approx(0.0554720, abs=1e-6)


def test_latent_terms_hand_computed():
    """Bottlenecks of 1 sample, 2 channels, 2 voxels. Voxel A: student logits (0, 0), so
    q = (1/2, 1/2); teacher (ln 3, 0), so p = (3/4, 1/4). Voxel B: both (5, -5).

    KL(p || q) at A = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.1308120, 0 at B: mean over voxels
    0.0654060. MSE: one element of four differs, by ln 3: (ln 3)² / 4 = 0.3017372.
    """
    from kdbench_plugins.kd import latent_kl

    student = torch.tensor([[[0.0, 5.0], [0.0, -5.0]]]).reshape(1, 2, 1, 1, 2)
    teacher = torch.tensor([[[np.log(3.0), 5.0], [0.0, -5.0]]]).reshape(1, 2, 1, 1, 2)
    assert float(latent_kl(student, teacher)) == pytest.approx(0.0654060, abs=1e-6)
    kd = KnowledgeDistillation({"kd_weight": 0.0, "temperature": 1.0, "latent_weight": 1.0,
                                "latent_loss": "mse"}, ModalityUse(MODALITIES, (("t1ce",),)))
    assert float(kd._latent(student, teacher)) == pytest.approx(0.3017372, abs=1e-6)


class TinyUNet(torch.nn.Module):
    """An encoder (whose last output is the bottleneck) and a 1×1 head, like nnU-Net's."""

    def __init__(self, in_channels):
        super().__init__()
        self.encoder = torch.nn.Conv3d(in_channels, 2, 1)
        self.head = torch.nn.Conv3d(2, 3, 1)

    def forward(self, x):
        return self.head(self.encoder(x))


def test_latent_term_is_added_with_its_weight_from_both_bottlenecks():
    torch.manual_seed(0)
    teacher = TinyUNet(4).eval()
    context = BuildContext(network=lambda c, deep_supervision=True: TinyUNet(c),
                           supervised_loss=lambda o, t: torch.tensor(0.5), num_outputs=3,
                           device="cpu", teacher=teacher, teacher_modalities=MODALITIES)
    kd = KnowledgeDistillation({"kd_weight": 0.1, "temperature": 2.0, "latent_weight": 0.3,
                                "latent_loss": "kl"}, ModalityUse(MODALITIES, (("t1ce",),)))
    student = kd.build(context)
    x = torch.randn(2, 4, 3, 3, 3)
    terms = kd.training_loss(TrainingStep(student, student(x[:, [1]]),
                                          StepBatch(x[:, [1]], x, None, MODALITIES), context))
    with torch.no_grad():
        s_bottleneck, t_bottleneck = student.encoder(x[:, [1]]), teacher.encoder(x)
        expected_latent = latent_kl_reference(s_bottleneck, t_bottleneck)
        expected_kd = binary_kl(student(x[:, [1]]), teacher(x), 2.0)
    value = {k: float(v.detach()) for k, v in terms.items()}
    # the student's 1x1x1 adapter starts as the identity
    assert value["latent"] == pytest.approx(expected_latent, rel=1e-5)
    assert value["loss"] == pytest.approx(0.5 + 0.1 * float(expected_kd) + 0.3 * expected_latent,
                                          rel=1e-5)
    # it is the student's, trained with it and saved in its checkpoint
    terms["loss"].backward()
    assert student.kd_latent_adapter.weight.grad.abs().sum() > 0
    assert "kd_latent_adapter.weight" in student.state_dict()
    assert all(p.grad is None for p in teacher.parameters())


def test_latent_adapter_absorbs_the_arbitrary_channel_order_of_two_networks():
    """A teacher whose bottleneck is the student's with its channels swapped: without an
    adapter the MSE is large; the adapter set to the swap makes it zero."""
    torch.manual_seed(1)
    student_net = TinyUNet(1)
    teacher = TinyUNet(4)
    with torch.no_grad():  # the teacher's encoder: the student's, channels swapped, on t1ce
        teacher.encoder.weight.zero_()
        teacher.encoder.weight[:, 1] = student_net.encoder.weight[[1, 0], 0]
        teacher.encoder.bias.copy_(student_net.encoder.bias[[1, 0]])
    context = BuildContext(network=lambda c, deep_supervision=True: student_net,
                           supervised_loss=lambda o, t: torch.tensor(0.0), num_outputs=3,
                           device="cpu", teacher=teacher.eval(), teacher_modalities=MODALITIES)
    kd = KnowledgeDistillation({"kd_weight": 0.0, "temperature": 1.0, "latent_weight": 1.0,
                                "latent_loss": "mse"}, ModalityUse(MODALITIES, (("t1ce",),)))
    student = kd.build(context)
    x = torch.randn(2, 4, 3, 3, 3)

    def latent():
        step = TrainingStep(student, student(x[:, [1]]), StepBatch(x[:, [1]], x, None,
                                                                    MODALITIES), context)
        return float(kd.training_loss(step)["latent"].detach())

    assert latent() > 0.05
    with torch.no_grad():
        student.kd_latent_adapter.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]).reshape(
            2, 2, 1, 1, 1))
    assert latent() == pytest.approx(0.0, abs=1e-10)


def latent_kl_reference(student, teacher):
    """scipy's relative entropy over the channel axis, averaged over batch and voxels."""
    from scipy.special import softmax

    p = softmax(teacher.numpy().astype(np.float64), axis=1)
    q = softmax(student.numpy().astype(np.float64), axis=1)
    return float(rel_entr(p, q).sum(axis=1).mean())
