"""Generative KD and generator losses against hand-computed values and independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdbench import Generator, ModalityUse, Strategy
from kdbench.components.strategy import BuildContext, StepBatch, TrainingStep
from kdbench.modalities import MODALITIES
from kdbench_plugins.genkd import GenerativeKD, mc_targets
from kdbench_plugins.kd import binary_kl, binary_kl_to

T1CE = ("t1ce",)
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


def test_binary_kl_to_probabilities_equals_the_logit_form():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 4, 4, 4), torch.randn(2, 3, 4, 4, 4) * 3
    for temperature in (1.0, 4.0):
        assert float(binary_kl_to(s, torch.sigmoid(t / temperature), temperature)) == \
            pytest.approx(float(binary_kl(s, t, temperature)), rel=1e-5)


def test_binary_kl_to_weights_each_voxel_by_hand():
    """Two voxels, student 0.5 everywhere (logit 0), teacher 0.5 and 0.9, T = 1: the first
    term is 0, the second KL(0.9 || 0.5) = 0.9 ln 1.8 + 0.1 ln 0.2."""
    s = torch.zeros(2)
    p = torch.tensor([0.5, 0.9])
    kl2 = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert float(binary_kl_to(s, p, 1.0)) == pytest.approx(kl2 / 2, rel=1e-5)
    assert float(binary_kl_to(s, p, 1.0, torch.tensor([1.0, 0.0]))) == pytest.approx(0, abs=1e-6)
    assert float(binary_kl_to(s, p, 1.0, torch.tensor([0.0, 0.5]))) == pytest.approx(
        0.5 * kl2 / 2, rel=1e-5)


def test_mc_targets_by_hand():
    """Samples with logits 2 and -2 at T = 2: mean probability (σ(1) + σ(-1)) / 2 = 0.5 and
    agreement 0 (split votes); logits 2 and 4: (σ(1) + σ(2)) / 2 and agreement 1."""
    split = [[torch.tensor([2.0])], [torch.tensor([-2.0])]]
    probs, agreement = mc_targets(split, 2.0)
    assert float(probs[0]) == pytest.approx(0.5)
    assert float(agreement[0]) == 0.0
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    probs, agreement = mc_targets([[torch.tensor([2.0])], [torch.tensor([4.0])]], 2.0)
    assert float(probs[0]) == pytest.approx((sigmoid(1) + sigmoid(2)) / 2)
    assert float(agreement[0]) == 1.0
    three = [[torch.tensor([1.0]), torch.tensor([-1.0, 1.0])] for _ in range(2)] + [
        [torch.tensor([-1.0]), torch.tensor([-1.0, -1.0])]]
    _, agreement = mc_targets(three, 1.0)  # two scales, 3 samples
    assert agreement[0].tolist() == pytest.approx([1 / 3])
    assert agreement[1].tolist() == pytest.approx([1.0, 1 / 3])


# -- genkd's loss with stand-in teacher and generator --------------------------------------------


class Teacher(torch.nn.Module):
    """Logits = 3 copies of the channel sum, at full and half resolution; records its input."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.seen = []

    def forward(self, x):
        self.seen.append(x)
        full = x.sum(1, keepdim=True).repeat(1, 3, 1, 1, 1) * self.weight
        return [full, F.avg_pool3d(full, 2)]


class FixedGenerator(Strategy, Generator):
    """Synthesises 2 x the available channel; its samples are fixed offsets of that."""

    name = "fixed"
    offsets = (0.0,)

    def synthesise(self, model, inputs):
        return (2 * inputs).repeat(1, 3, 1, 1, 1)

    def sample(self, model, inputs, samples):
        assert samples == len(self.offsets)
        return [self.synthesise(model, inputs) + o for o in self.offsets]


def _setup(hparams, offsets=(0.0,)):
    torch.manual_seed(0)
    generator = FixedGenerator({}, ModalityUse(MODALITIES, (T1CE,)))
    generator.offsets = offsets
    teacher = Teacher()
    context = BuildContext(
        network=lambda c, **kw: torch.nn.Conv3d(c, 3, 1), num_outputs=3, device="cpu",
        supervised_loss=lambda o, t: torch.tensor(0.3), teacher=teacher,
        teacher_modalities=MODALITIES, deep_supervision_weights=(0.75, 0.25),
        generator=torch.nn.Identity(), dependencies={"generator": generator})
    strategy = GenerativeKD(GenerativeKD.resolve_hparams(hparams),
                            ModalityUse(MODALITIES, (T1CE,)))
    model = strategy.build(context)
    privileged = torch.randn(2, 4, 4, 4, 4)
    student = [torch.randn(2, 3, 4, 4, 4, requires_grad=True),
               torch.randn(2, 3, 2, 2, 2, requires_grad=True)]
    batch = StepBatch(privileged[:, [1]], privileged, None, MODALITIES)
    return strategy, context, teacher, generator, model, student, batch


def _kl(student, logits, temperature, weights=(0.75, 0.25)):
    return sum(w * binary_kl(s, t, temperature) for w, s, t in zip(weights, student, logits,
                                                                   strict=True))


def test_bridged_teacher_reads_generator_completed_input():
    strategy, context, teacher, generator, _, student, batch = _setup({"temperature": 2.0})
    terms = strategy.training_loss(TrainingStep(None, student, batch, context))
    completed = generator.complete(batch.inputs, 2 * batch.inputs.repeat(1, 3, 1, 1, 1))
    assert torch.equal(teacher.seen[-1], completed)
    assert completed[:, 1].equal(batch.inputs[:, 0])  # the real t1ce stays in its channel
    assert torch.equal(completed[:, 0], 2 * batch.inputs[:, 0])  # t1 synthesised
    expected = _kl(student, Teacher()(completed), 2.0)
    assert float(terms["distill_bridged"]) == pytest.approx(float(expected), rel=1e-5)
    assert "distill_real" not in terms
    lam = strategy.hparams["kd_weight"]  # kd's default, ProtoKD's strength
    assert lam == 0.075
    assert float(terms["loss"]) == pytest.approx(0.3 + lam * float(expected), rel=1e-5)
    terms["loss"].backward()
    assert teacher.weight.grad is None and student[0].grad.abs().sum() > 0


def test_real_and_mixed_teacher_inputs():
    strategy, context, _, generator, _, student, batch = _setup(
        {"teacher_input": "mixed", "bridge_mix": 0.25, "kd_weight": 1.0})
    terms = strategy.training_loss(TrainingStep(None, student, batch, context))
    real = _kl(student, Teacher()(batch.privileged), 10.0)
    completed = generator.complete(batch.inputs, 2 * batch.inputs.repeat(1, 3, 1, 1, 1))
    bridged = _kl(student, Teacher()(completed), 10.0)
    assert float(terms["distill_real"]) == pytest.approx(float(real), rel=1e-5)
    assert float(terms["distill_bridged"]) == pytest.approx(float(bridged), rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(0.3 + 0.75 * float(real) + 0.25 * float(bridged),
                                                 rel=1e-5)
    strategy, context, _, _, _, student, batch = _setup({"teacher_input": "real"})
    terms = strategy.training_loss(TrainingStep(None, student, batch, context))
    assert "distill_bridged" not in terms
    assert float(terms["distill_real"]) == pytest.approx(
        float(_kl(student, Teacher()(batch.privileged), 10.0)), rel=1e-5)


def test_monte_carlo_targets_average_samples_and_weight_by_agreement():
    offsets = (-1.0, 0.5, 3.0)
    strategy, context, _, generator, _, student, batch = _setup(
        {"mc_samples": 3, "temperature": 1.0}, offsets)
    terms = strategy.training_loss(TrainingStep(None, student, batch, context))
    base = 2 * batch.inputs.repeat(1, 3, 1, 1, 1)
    logits = [Teacher()(generator.complete(batch.inputs, base + o)) for o in offsets]
    probs, agreement = mc_targets(logits, 1.0)
    expected = sum(w * binary_kl_to(s, p, 1.0, a) for w, s, p, a in
                   zip((0.75, 0.25), student, probs, agreement, strict=True))
    assert float(terms["distill_bridged"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(terms["agreement"]) == pytest.approx(float(agreement[0].mean()))
    assert 0 < float(terms["agreement"]) < 1
    strategy, context, *_, student, batch = _setup(
        {"mc_samples": 3, "temperature": 1.0, "agreement_weighting": False}, offsets)
    unweighted = strategy.training_loss(TrainingStep(None, student, batch, context))
    assert "agreement" not in unweighted
    assert float(unweighted["distill_bridged"]) == pytest.approx(float(sum(
        w * binary_kl_to(s, p, 1.0) for w, s, p in zip((0.75, 0.25), student, probs,
                                                        strict=True))), rel=1e-5)


def test_unlabelled_batch_is_distilled_through_the_generator():
    strategy, context, teacher, generator, model, student, batch = _setup(
        {"unlabelled_cases": 4, "unlabelled_weight": 2.0, "kd_weight": 0.5})
    unlabelled = torch.randn(2, 1, 4, 4, 4)
    batch.unlabelled = unlabelled
    terms = strategy.training_loss(TrainingStep(model, student, batch, context))
    completed = generator.complete(unlabelled, 2 * unlabelled.repeat(1, 3, 1, 1, 1))
    assert torch.equal(teacher.seen[-1], completed)  # never the unlabelled cases' real channels
    expected = 0.75 * binary_kl(model(unlabelled), Teacher()(completed)[0], 10.0)
    assert float(terms["distill_unlabelled"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(
        0.3 + 0.5 * float(terms["distill_bridged"]) + 0.5 * 2.0 * float(expected), rel=1e-5)
    assert strategy.unlabelled_cases(("a", "b", "c", "d", "e")) == ("a", "b", "c", "d")
    with pytest.raises(ValueError, match="only 3 cases lie outside"):
        strategy.unlabelled_cases(("a", "b", "c"))


def test_complete_puts_every_channel_in_channel_order():
    generator = FixedGenerator({}, ModalityUse(MODALITIES, (("t1ce", "flair"),)))
    assert generator.missing == ("t1", "t2")
    available = torch.stack([torch.full((2, 2, 2), 1.0), torch.full((2, 2, 2), 4.0)])[None]
    missing = torch.stack([torch.full((2, 2, 2), 0.0), torch.full((2, 2, 2), 2.0)])[None]
    completed = generator.complete(available, missing)
    assert [float(completed[0, c, 0, 0, 0]) for c in range(4)] == [0.0, 1.0, 2.0, 4.0]


# -- the U-Net generator on nnU-Net's planned network ---------------------------------------------


@pytest.fixture(scope="module")
def phantom_context(prepared_phantom):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from kdbench_plugins.nnunet_backbone import NnUNetOptions
    from kdbench_plugins.nnunet_backbone.engine import load_plans
    from kdbench_plugins.nnunet_backbone.networks import network_builder

    plans, dataset_json, configuration = load_plans(
        prepared_phantom, NnUNetOptions(patch_size=(16, 16, 16), features_per_stage=(8, 16, 32)))
    manager = PlansManager(plans)
    config = manager.get_configuration(configuration)

    def make(teacher=None):
        return BuildContext(network=network_builder(manager, config, 3, "cpu"),
                            supervised_loss=None, num_outputs=3, device=torch.device("cpu"),
                            teacher=teacher, teacher_modalities=MODALITIES,
                            patch_size=tuple(config.patch_size))
    return make


def _generator(hparams):
    from kdbench_plugins.generators import UNetGenerator

    return UNetGenerator(UNetGenerator.resolve_hparams(hparams),
                         UNetGenerator.generator_use(MODALITIES, T1CE))


def test_generator_shapes_sampling_and_point_estimate(phantom_context):
    torch.manual_seed(0)
    generator = _generator({"dropout": 0.3})
    model = generator.build(phantom_context())
    x = torch.randn(2, 1, 16, 16, 16)
    with torch.no_grad():
        point = generator.synthesise(model, x)
        assert point.shape == (2, 3, 16, 16, 16) and torch.isfinite(point).all()
        assert torch.equal(point, generator.synthesise(model, x))  # no dropout
        draws = generator.sample(model, x, 3)
    assert len(draws) == 3 and all(d.shape == point.shape for d in draws)
    assert not torch.equal(draws[0], draws[1])  # dropout makes the draws differ
    assert model.training  # sampling restored the mode it found
    deterministic = _generator({"dropout": 0.0})
    model = deterministic.build(phantom_context())
    with torch.no_grad():
        a, b = deterministic.sample(model, x, 2)
    assert torch.equal(a, b)


def test_generator_l1_and_ssim_terms_against_references(phantom_context):
    from skimage.metrics import structural_similarity

    from kdbench_plugins.generators import ssim_loss

    generator = _generator({"ssim_weight": 0.5, "dropout": 0.0})
    generator.build(phantom_context())
    torch.manual_seed(1)
    privileged = torch.randn(1, 4, 16, 16, 16)
    fake = torch.randn(1, 3, 16, 16, 16)
    batch = StepBatch(privileged[:, [1]], privileged, None, MODALITIES)
    terms = generator.training_loss(TrainingStep(None, fake, batch, phantom_context()))
    real = privileged[:, [0, 2, 3]]
    assert float(terms["l1"]) == pytest.approx(float((fake - real).abs().mean()), rel=1e-6)
    assert float(terms["loss"]) == pytest.approx(float(terms["l1"] + 0.5 * terms["ssim"]),
                                                 rel=1e-6)
    # 1 - SSIM against scikit-image on one volume (Gaussian window σ 1.5, valid region)
    a, b = real[0, 0].numpy().astype(np.float64), fake[0, 0].numpy().astype(np.float64)
    reference = structural_similarity(a, b, data_range=float(a.max() - a.min()),
                                      gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
    ours = 1 - float(ssim_loss(fake[:, :1], real[:, :1]))
    assert ours == pytest.approx(reference, abs=2e-3)


def test_adversarial_term_updates_only_the_discriminator_itself(phantom_context):
    from kdbench_plugins.generators.networks import patch_layers

    assert [patch_layers((p,) * 3) for p in (8, 16, 64, 128)] == [1, 2, 3, 3]
    with pytest.raises(ValueError, match="too small"):
        patch_layers((4, 4, 4))
    torch.manual_seed(2)
    generator = _generator({"adversarial_weight": 0.01, "dropout": 0.0})
    model = generator.build(phantom_context())
    before = [p.clone() for p in model.discriminator.parameters()]
    privileged = torch.randn(2, 4, 16, 16, 16)
    batch = StepBatch(privileged[:, [1]], privileged, None, MODALITIES)
    terms = generator.training_loss(
        TrainingStep(model, model(batch.inputs), batch, phantom_context()))
    assert {"l1", "adversarial", "discriminator"} <= set(terms)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.discriminator.parameters(),
                                                     strict=True))  # its Adam step
    terms["loss"].backward()
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert all(not p.requires_grad for p in model.discriminator.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net.parameters())


def test_protocol_refuses_a_generator_strategy_where_nothing_is_missing(write_protocol,
                                                                        demo_data, registry):
    from kdbench.errors import KdbenchError
    from kdbench.protocol import load_protocol

    demo_data["scenarios"] = [{"name": "every", "available": "all"}]
    demo_data["strategies"] = [{"name": "mono"}, {"name": "genkd"}]
    with pytest.raises(KdbenchError, match="nothing to synthesise"):
        load_protocol(write_protocol(demo_data), registry)


def test_validate_refuses_monte_carlo_samples_from_a_generator_that_cannot_sample(
        write_protocol, demo_data):
    from helpers import run_cli

    from kdbench.components.generator import Generator
    from kdbench_plugins.generators import UNetGenerator

    assert UNetGenerator.can_sample({"dropout": 0.1})
    assert not UNetGenerator.can_sample({"dropout": 0.0})
    assert not Generator.can_sample({})  # the base class repeats its point estimate
    demo_data["statistics"]["primary"] = None
    demo_data["strategies"] = [
        {"name": "mono"},
        {"name": "genkd", "label": "genkd_mc", "hparams": {"mc_samples": 4},
         "generator_hparams": {"dropout": 0.0}},
        # real teacher input draws no sample: no problem
        {"name": "genkd", "label": "genkd_real",
         "hparams": {"mc_samples": 4, "teacher_input": "real"},
         "generator_hparams": {"dropout": 0.0}},
        {"name": "genkd", "label": "genkd_ok", "hparams": {"mc_samples": 4}},
    ]
    result = run_cli("protocol", "validate", str(write_protocol(demo_data)))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    text = result.stdout + result.stderr
    assert "1 problem in the protocol" in text, text
    assert "strategies[1].hparams.mc_samples" in text and "cannot sample" in text
    assert "dropout" in text


def test_validate_refuses_more_unlabelled_cases_than_the_pool_with_its_arithmetic(
        write_protocol, demo_data, registry):
    from kdbench.errors import KdbenchError
    from kdbench.protocol import load_protocol

    # demo: 24 cases - 8 test - 12 in the largest subset = 4 outside every subset
    demo_data["statistics"]["primary"] = None
    demo_data["strategies"] = [{"name": "mono"}, {"name": "genkd", "label": "genkd_aug",
                                                  "hparams": {"unlabelled_cases": 5}}]
    with pytest.raises(KdbenchError) as err:
        load_protocol(write_protocol(demo_data), registry)
    text = str(err.value)
    assert "strategies[1].hparams.unlabelled_cases" in text
    assert "only 4 cases" in text and "24 cases - 8 test - 12 in the largest subset" in text
    demo_data["strategies"][1]["hparams"]["unlabelled_cases"] = 4
    load_protocol(write_protocol(demo_data), registry)
    # a fixed-N teacher of 16 cases takes 4 more out of the pool
    demo_data["strategies"][1]["teacher"] = {"n": 16}
    with pytest.raises(KdbenchError, match="only 0 cases .*16 in the largest subset"):
        load_protocol(write_protocol(demo_data), registry)
