"""Hetero-modal networks on nnU-Net blocks: every subset, training and eval outputs."""

from __future__ import annotations

import pytest
import torch

from kdbench.components.strategy import BuildContext
from kdbench.modalities import MODALITIES
from kdbench.types import ModalityUse
from kdbench_plugins.hetero_modal.fusion import all_subsets
from kdbench_plugins.hetero_modal.networks import HVEDOutput
from kdbench_plugins.hetero_modal.strategies import UHVED, HeMIS

PATCH = (16, 16, 16)


def _network(in_channels, deep_supervision=True):
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    net = PlainConvUNet(in_channels, 3, (4, 8, 16), torch.nn.Conv3d, 3, (1, 2, 2), 2, 3,
                        (2, 2), True, torch.nn.InstanceNorm3d, {"eps": 1e-5, "affine": True},
                        None, None, torch.nn.LeakyReLU, {"inplace": True},
                        deep_supervision=deep_supervision)
    return net


CONTEXT = BuildContext(network=_network, supervised_loss=None, num_outputs=3, device="cpu")
ALL = ModalityUse(MODALITIES, tuple(tuple(MODALITIES[i] for i in s) for s in all_subsets(4)))


@pytest.mark.parametrize("cls", [HeMIS, UHVED])
def test_every_subset_gives_full_resolution_region_logits(cls):
    torch.manual_seed(0)
    strategy = cls({k: v.default for k, v in cls.hparams.items()}, ALL)
    assert strategy.input_modalities() == MODALITIES
    model = strategy.build(CONTEXT).eval()
    assert len(model.encoders) == 4
    x = torch.randn(2, 4, *PATCH)
    with torch.no_grad():
        for subset in strategy.modalities.evaluate:
            view = strategy.inference_model(model, subset)
            channels = [MODALITIES.index(m) for m in subset]
            out = view(x[:, channels])
            assert isinstance(out, list) and out[0].shape == (2, 3, *PATCH)
            assert [o.shape[2] for o in out] == [16, 8]  # deep supervision, as nnU-Net's


@pytest.mark.parametrize("cls", [HeMIS, UHVED])
def test_absent_modalities_do_not_reach_the_output(cls):
    torch.manual_seed(0)
    model = cls({k: v.default for k, v in cls.hparams.items()}, ALL).build(CONTEXT).eval()
    x = torch.randn(1, 2, *PATCH)
    with torch.no_grad():
        before = model(x, (1, 3))[0]
        for p in model.encoders[0].parameters():  # t1's encoder: absent here
            p.add_(1.0)
        assert torch.equal(model(x, (1, 3))[0], before)
        for p in model.encoders[1].parameters():  # t1ce's: present
            p.add_(1.0)
        assert not torch.allclose(model(x, (1, 3))[0], before)


def test_hemis_one_modality_has_zero_variance_and_order_does_not_matter():
    torch.manual_seed(0)
    model = HeMIS({}, ALL).build(CONTEXT).eval()
    x = torch.randn(1, 2, *PATCH)
    captured = []
    hook = model.decoder.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    with torch.no_grad():
        model(x[:, :1], (2,))
        c = model.encoder_channels[0]
        assert torch.count_nonzero(captured[-1][0][:, c:]) == 0  # the variance half
        ab = model(x, (0, 3))[0]
        ba = model(x.flip(1), (3, 0))[0]
    hook.remove()
    torch.testing.assert_close(ab, ba)


def test_training_mode_draws_subsets_and_uhved_returns_its_terms():
    torch.manual_seed(0)
    model = UHVED({"kl_weight": 0.1, "reconstruction_weight": 0.1}, ALL).build(CONTEXT).train()
    out = model(torch.randn(3, 4, *PATCH))
    assert isinstance(out, HVEDOutput)
    assert out.mask.shape == (4, 3) and bool(out.mask.any(0).all())
    assert out.reconstruction.shape == (3, 4, *PATCH)
    assert len(out.posteriors) == 3
    mu, logvar = out.posteriors[0]
    assert mu.shape == logvar.shape == (4, 3, 2, *PATCH)  # 4 features: 2 means, 2 log-variances
    # linear heads: means and log-variances of either sign (not a LeakyReLU's output)
    assert bool((logvar < -0.5).any()) and bool((mu < -0.5).any())
    hemis = HeMIS({}, ALL).build(CONTEXT).train()
    assert isinstance(hemis(torch.randn(2, 4, *PATCH)), list)


def test_uhved_loss_terms_and_gradients():
    from kdbench.components.strategy import StepBatch, TrainingStep

    torch.manual_seed(0)
    strategy = UHVED({"kl_weight": 0.1, "reconstruction_weight": 0.5}, ALL)
    model = strategy.build(CONTEXT).train()
    x = torch.randn(2, 4, *PATCH)
    context = BuildContext(network=_network, num_outputs=3, device="cpu",
                           supervised_loss=lambda o, t: o[0].float().pow(2).mean())
    step = TrainingStep(model, model(x), StepBatch(x, x, None, MODALITIES), context)
    terms = strategy.training_loss(step)
    value = {k: float(v.detach()) for k, v in terms.items()}
    assert value["kl_inter"] >= 0 and value["kl_prior"] >= 0
    assert value["loss"] == pytest.approx(value["supervised"] + 0.1 * (
        value["kl_inter"] + value["kl_prior"]) + 0.5 * value["reconstruction"], rel=1e-5)
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.encoders.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.reconstruction.parameters())


def test_uhved_refuses_odd_feature_counts():
    def odd(c, deep_supervision=True):
        from dynamic_network_architectures.architectures.unet import PlainConvUNet

        return PlainConvUNet(c, 2, (5, 8), torch.nn.Conv3d, 3, (1, 2), 2, 3, (2,), True,
                             torch.nn.InstanceNorm3d, {}, None, None, torch.nn.LeakyReLU, {})

    with pytest.raises(ValueError, match="must be even"):
        UHVED({"kl_weight": 0.1, "reconstruction_weight": 0.1}, ALL).build(
            BuildContext(network=odd, supervised_loss=None, num_outputs=3, device="cpu"))


@pytest.mark.parametrize("cls", [HeMIS, UHVED])
def test_as_a_teacher_it_reads_the_students_subset_through_its_encoders(cls):
    """The hetero-modal control of pseudo-labelling: the teacher Job trains on every modality
    and a student calls it on its own subset (t1ce) only."""
    from kdbench_plugins.controls import PseudoLabelControl

    use = cls.teacher_use(MODALITIES, ("t1ce",))
    assert use == ModalityUse(MODALITIES, (("t1ce",),))  # the t1ce-only scenario's Job
    torch.manual_seed(0)
    teacher = cls({k: v.default for k, v in cls.hparams.items()}, use)
    assert teacher.teacher_reads() == ("t1ce",)
    model = teacher.build(CONTEXT).eval()
    view = teacher.teacher_module(model)
    x = torch.randn(1, 1, *PATCH)
    with torch.no_grad():
        assert torch.equal(view(x)[0], model(x, (1,))[0])
    # a pseudo-labelling student accepts it (it reads nothing the unlabelled cases lack)
    student = PseudoLabelControl(PseudoLabelControl.resolve_hparams({}),
                                 ModalityUse(MODALITIES, (("t1ce",),)))
    context = BuildContext(network=_network, supervised_loss=None, num_outputs=3,
                           device="cpu", teacher=view, teacher_modalities=("t1ce",))
    assert student.build(context) is not None
