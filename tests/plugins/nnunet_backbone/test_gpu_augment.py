"""The GPU augmentation path against nnU-Net's own pipeline (batchgeneratorsv2 on CPU).

Three levels, each against nnU-Net's objects as ``nnUNetTrainer.get_training_transforms``
builds them (the reference; its probabilities are read from those objects, not from kdbench):

1. the parameters: how often each transform applies, and the distribution of its parameters,
   over thousands of draws on each side;
2. the transforms: for the same parameters, each transform's output equals nnU-Net's (up to
   float rounding), the deep-supervision targets exactly;
3. the pipeline: the distribution of statistics of augmented patches, and training on the
   phantom to the same validation Dice.

Tolerances come from the sample sizes: a frequency within 4.5 binomial standard deviations
(two-sided p ≈ 7e-6 per comparison), two samples' distributions within the two-sample
Kolmogorov-Smirnov critical distance at α = 1e-5.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from kdbench_plugins.nnunet_backbone.gpu_augment import GpuAugmentation

PATCH = (16, 20, 12)
INITIAL = (25, 30, 22)
#: nnU-Net's rotation for a 3D patch that is not anisotropic (configure_rotation_dummyDA_...)
ROTATION = (-30.0 / 360 * 2 * np.pi, 30.0 / 360 * 2 * np.pi)
DS_SCALES = [[1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]
REGIONS = [(1, 2, 3), (2, 3), (3,)]
CHANNELS = 4
Z_BINOMIAL = 4.5
KS_C = math.sqrt(-math.log(1e-5 / 2) / 2)  # c(α) of the two-sample KS test, α = 1e-5
#: names of nnU-Net's RandomTransform-wrapped steps, in its order (after SpatialTransform)
RANDOM_STEPS = ("noise", "blur", "brightness", "contrast", "lowres", "gamma_inverted", "gamma")


def _nnunet_pipeline(patch=PATCH):
    return nnUNetTrainer.get_training_transforms(
        list(patch), ROTATION, DS_SCALES, (0, 1, 2), False, use_mask_for_norm=[True] * CHANNELS,
        is_cascaded=False, foreground_labels=[1, 2, 3], regions=REGIONS, ignore_label=None)


def _ours(patch=PATCH) -> GpuAugmentation:
    return GpuAugmentation(patch, ROTATION, DS_SCALES, (0, 1, 2), False,
                           use_mask_for_norm=[True] * CHANNELS, regions=REGIONS)


def _ks_distance(a, b) -> float:
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def assert_same_distribution(name, a, b) -> None:
    n, m = len(a), len(b)
    assert n > 50 and m > 50, f"{name}: too few samples ({n}, {m})"
    critical = KS_C * math.sqrt((n + m) / (n * m))
    distance = _ks_distance(a, b)
    assert distance <= critical, f"{name}: KS distance {distance:.3f} > {critical:.3f}"


def assert_frequency(name, successes, trials, p) -> None:
    tolerance = Z_BINOMIAL * math.sqrt(p * (1 - p) / trials)
    assert abs(successes / trials - p) <= tolerance, (
        f"{name}: {successes}/{trials} = {successes / trials:.4f}, expected {p} ± {tolerance:.4f}")


def _rotation_angle_and_scale(affine: np.ndarray) -> tuple[float, float]:
    """The isotropic scale (cube root of the determinant) and the angle of the rotation."""
    scale = float(np.cbrt(np.linalg.det(affine)))
    rotation = affine / scale
    return float(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1))), scale


def _nnunet_draws(n: int) -> dict[str, list]:
    """n draws of every parameter of nnU-Net's pipeline (its own get_parameters)."""
    np.random.seed(0)
    torch.manual_seed(0)
    steps = _nnunet_pipeline(patch=(4, 4, 4)).transforms
    image = torch.zeros(CHANNELS, 4, 4, 4)
    out: dict[str, list] = defaultdict(list)
    for _ in range(n):
        affine = steps[0].get_parameters(image=image)["affine"]
        out["moved"].append(affine is not None)
        if affine is not None:
            angle, scale = _rotation_angle_and_scale(affine)
            out["angle"].append(angle)
            out["scale"].append(scale)
        for name, step in zip(RANDOM_STEPS, steps[1:8], strict=True):
            out[name].append(step.get_parameters()["apply_transform"])
            params = step.transform.get_parameters(image=image)
            if name == "noise":
                out["noise_std"].append(float(params["sigmas"]))
            elif name == "blur":
                out["blur_channel"].extend(params["apply_to_channel"].tolist())
                out["blur_sigma"].extend(s for sigmas in params["sigmas"] for s in sigmas)
            elif name in ("brightness", "contrast"):
                out[f"{name}_factor"].extend(params["multipliers"].tolist())
            elif name == "lowres":
                out["lowres_channel"].extend([i in params["apply_to_channel"].tolist()
                                              for i in range(CHANNELS)])
                out["lowres_scale"].extend(params["scales"].view(-1, 3)[:, 0].tolist())
            else:
                out[f"{name}_value"].extend(params["gamma"].tolist())
                out[f"{name}_invert"].extend(params["invert_image"].tolist())
                out[f"{name}_retain"].extend(params["retain_stats"].tolist())
        axes = steps[8].get_parameters(image=image)["axes"]
        out["mirror"].extend(a in axes for a in range(3))
    return out


def test_parameters_follow_nnunet_distributions():
    n = 4000
    theirs = _nnunet_draws(n)
    ours = _ours()
    draw = ours.sample(n, CHANNELS, torch.Generator().manual_seed(0))
    steps = _nnunet_pipeline().transforms
    probability = {name: step.apply_probability
                   for name, step in zip(RANDOM_STEPS, steps[1:8], strict=True)}
    spatial: SpatialTransform = steps[0]
    assert (spatial.p_elastic_deform, spatial.p_synchronize_scaling_across_axes) == (0, 1)

    # how often: every step per sample, blur and low resolution per channel, mirroring per axis
    moved = draw.rotate | draw.scale
    p_moved = 1 - (1 - spatial.p_rotation) * (1 - spatial.p_scaling)
    assert_frequency("spatial (nnU-Net)", sum(theirs["moved"]), n, p_moved)
    assert_frequency("spatial", int(moved.sum()), n, p_moved)
    assert_frequency("rotation", int(draw.rotate.sum()), n, spatial.p_rotation)
    assert_frequency("scaling", int(draw.scale.sum()), n, spatial.p_scaling)
    for name, p in probability.items():
        assert_frequency(f"{name} (nnU-Net)", sum(theirs[name]), n, p)
        assert_frequency(name, int(getattr(draw, name).sum()), n, p)
    for name, per_channel in (("blur", draw.blur_channels), ("lowres", draw.lowres_channels)):
        p = dict(zip(RANDOM_STEPS, steps[1:8], strict=True))[name].transform.p_per_channel
        assert_frequency(f"{name} channel (nnU-Net)", sum(theirs[f"{name}_channel"]),
                         n * CHANNELS, p)
        assert_frequency(f"{name} channel", int(per_channel.sum()), n * CHANNELS, p)
    assert_frequency("mirror (nnU-Net)", sum(theirs["mirror"]), 3 * n, 0.5)
    assert_frequency("mirror", int(draw.mirror.sum()), 3 * n, 0.5)
    # gamma: statistics always retained; the first gamma always inverts, the second never
    assert all(theirs["gamma_inverted_retain"]) and all(theirs["gamma_retain"])
    assert all(theirs["gamma_inverted_invert"]) and not any(theirs["gamma_invert"])

    # what: the same distributions (rotation angle and scale from the affine matrices)
    angle_scale = [_rotation_angle_and_scale(a)
                   for a in ours.affine(draw)[moved].numpy()]
    assert_same_distribution("rotation angle", [a for a, _ in angle_scale], theirs["angle"])
    assert_same_distribution("scale", [s for _, s in angle_scale], theirs["scale"])
    assert_same_distribution("noise std", draw.noise_std, theirs["noise_std"])
    assert_same_distribution("blur sigma", draw.blur_sigma.flatten(), theirs["blur_sigma"])
    for name in ("brightness", "contrast"):
        assert_same_distribution(name, getattr(draw, f"{name}_factor").flatten(),
                                 theirs[f"{name}_factor"])
    assert_same_distribution("lowres scale", draw.lowres_scale.flatten(), theirs["lowres_scale"])
    for name in ("gamma_inverted", "gamma"):
        assert_same_distribution(name, getattr(draw, f"{name}_value").flatten(),
                                 theirs[f"{name}_value"])
    # and the ranges, from the parameters nnU-Net's objects hold
    assert float(draw.angles.abs().max()) <= ROTATION[1]
    assert float(draw.angles.abs().max()) > 0.99 * ROTATION[1]
    factors = draw.scale_factor[draw.scale]
    assert spatial.scaling[0] <= float(factors.min()) < spatial.scaling[0] + 0.01
    assert spatial.scaling[1] - 0.01 < float(factors.max()) <= spatial.scaling[1]


def _phantom_patch(batch: int, shape=INITIAL, seed: int = 0):
    """Smooth 4-channel images with nested spherical labels (-1 at the border)."""
    gen = torch.Generator().manual_seed(seed)
    coords = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, s) for s in shape],
                                        indexing="ij"))
    data = torch.empty(batch, CHANNELS, *shape)
    seg = torch.zeros(batch, 1, *shape, dtype=torch.int16)
    for b in range(batch):
        centre = (torch.rand(3, generator=gen) - 0.5) * 0.6
        radius = ((coords - centre.view(3, 1, 1, 1)) ** 2).sum(0).sqrt()
        seg[b, 0][radius < 0.6] = 1
        seg[b, 0][radius < 0.4] = 2
        seg[b, 0][radius < 0.2] = 3
        seg[b, 0][coords.abs().amax(0) > 0.9] = -1
        for c in range(CHANNELS):
            data[b, c] = (torch.cos((c + 1) * coords[c % 3] * 2) + seg[b, 0] * (0.3 * c + 0.5)
                          + 0.1 * torch.randn(shape, generator=gen))
    return data, seg


def test_each_transform_gives_nnunets_output_for_the_same_parameters():
    ours = _ours()
    data, seg = _phantom_patch(3)
    draw = ours.sample(3, CHANNELS, torch.Generator().manual_seed(1))
    fixed = torch.tensor([[0.3, -0.2, 0.45], [-0.5, 0.1, 0.0], [0.0, 0.0, 0.0]],
                         dtype=torch.float64)
    draw.rotate[:] = torch.tensor([True, True, False])
    draw.scale[:] = torch.tensor([True, False, False])
    draw.angles, draw.scale_factor = fixed, torch.tensor([1.3, 1.0, 1.0], dtype=torch.float64)
    image, labels = ours.spatial(data, seg, draw)
    for b in range(3):  # rotated and scaled, rotated, neither (an integer crop)
        angles, scale = fixed[b].tolist(), float(draw.scale_factor[b])
        theirs = SpatialTransform(
            list(PATCH), 0, False, p_elastic_deform=0, p_rotation=float(draw.rotate[b]),
            rotation=lambda image, dim, a=angles: a[dim], p_scaling=float(draw.scale[b]),
            scaling=lambda image, dim, s=scale: s, p_synchronize_scaling_across_axes=1,
            bg_style_seg_sampling=False, border_mode_seg="constant", padding_value_seg=-1,
        )(image=data[b].clone(), segmentation=seg[b].clone())
        torch.testing.assert_close(image[b], theirs["image"], atol=1e-4, rtol=0)
        differ = (labels[b] != theirs["segmentation"]).float().mean().item()
        assert differ <= 0.002, f"sample {b}: {differ:.2%} of the labels differ"
    assert set(torch.unique(labels).tolist()) == {-1, 0, 1, 2, 3}

    x = image.clone()
    for attr in ("blur", "blur_channels", "lowres", "lowres_channels", "brightness",
                 "contrast"):
        getattr(draw, attr)[:] = True
    blurred, coarse = ours.blur(x.clone(), draw), ours.low_resolution(x.clone(), draw)
    for b in range(3):  # nnU-Net's transforms see one sample (here one channel) at a time
        for c in range(CHANNELS):
            sigmas = draw.blur_sigma[b, c].tolist()
            ref = GaussianBlurTransform(
                blur_sigma=lambda shape, dim, s=sigmas: s[dim - 1], synchronize_channels=False,
                synchronize_axes=False, p_per_channel=1,
            )(image=x[b, c:c + 1].clone())["image"][0]
            torch.testing.assert_close(blurred[b, c], ref, atol=1e-5, rtol=0)
            ref = SimulateLowResolutionTransform(
                scale=float(draw.lowres_scale[b, c]), synchronize_channels=False,
                synchronize_axes=True, ignore_axes=None, p_per_channel=1,
            )(image=x[b, c:c + 1].clone())["image"][0]
            torch.testing.assert_close(coarse[b, c], ref, atol=1e-5, rtol=0)

    def per_channel(values):
        return lambda *args, channel=None, **kwargs: float(values[channel])

    for b in range(3):
        for name, ours_out, theirs_step in (
            ("brightness", ours.brightness(x.clone(), draw)[b], MultiplicativeBrightnessTransform(
                per_channel(draw.brightness_factor[b]), synchronize_channels=False)),
            ("contrast", ours.contrast(x.clone(), draw)[b], ContrastTransform(
                per_channel(draw.contrast_factor[b]), preserve_range=True,
                synchronize_channels=False)),
            ("gamma inverted", ours.gamma_transform(
                x.clone(), torch.ones(3, dtype=torch.bool), draw.gamma_inverted_value, True)[b],
             GammaTransform(per_channel(draw.gamma_inverted_value[b]), 1, False, 1, 1)),
            ("gamma", ours.gamma_transform(
                x.clone(), torch.ones(3, dtype=torch.bool), draw.gamma_value, False)[b],
             GammaTransform(per_channel(draw.gamma_value[b]), 0, False, 1, 1)),
        ):
            torch.testing.assert_close(ours_out, theirs_step(image=x[b].clone())["image"],
                                       atol=1e-5, rtol=1e-5, msg=name)

    # noise: one std for the sample, added to every channel
    draw.noise[:] = torch.tensor([True, False, True])
    added = ours.noise(x.clone(), draw) - x
    assert torch.equal(added[1], torch.zeros_like(added[1]))
    for b in (0, 2):
        std = added[b].flatten(1).std(1)
        n = added[b, 0].numel()
        expected = float(draw.noise_std[b])
        assert torch.all((std - expected).abs() <= 5 * expected / math.sqrt(2 * n))

    # mirroring, then nnU-Net's masking, regions and deep-supervision targets
    draw.mirror[:] = torch.tensor([[True, False, True], [False, False, False],
                                   [False, True, False]])
    flipped, flipped_seg = ours.mirror(x.clone(), labels.clone(), draw)
    targets = ours.targets(flipped, flipped_seg.clone())  # masks ``flipped`` in place
    tail = _nnunet_pipeline().transforms[9:]
    for b in range(3):
        axes = [a for a in range(3) if draw.mirror[b, a]]
        mirror = MirrorTransform(allowed_axes=(0, 1, 2))
        theirs = mirror.apply({"image": x[b].clone(), "segmentation": labels[b].clone()},
                              axes=axes)
        for step in tail:
            theirs = step(**theirs)
        assert torch.equal(flipped[b], theirs["image"])
        assert len(targets) == len(theirs["segmentation"]) == len(DS_SCALES)
        for ours_t, theirs_t in zip(targets, theirs["segmentation"], strict=True):
            assert ours_t.dtype == theirs_t.dtype == torch.bool
            assert torch.equal(ours_t[b], theirs_t)
    assert [tuple(t.shape[2:]) for t in targets] == [(16, 20, 12), (8, 10, 6), (4, 5, 3)]


def _statistics(image: torch.Tensor, target: torch.Tensor) -> tuple[float, float, float]:
    return float(image[0].mean()), float(image[2].std()), float(target[0].float().mean())


def test_augmented_patches_are_distributed_as_nnunets():
    """The whole pipeline on one patch, 300 times on each side: the distributions of the
    augmented images' statistics and of the whole-tumour share of the target agree."""
    n = 300
    data, seg = _phantom_patch(1, seed=3)
    pipeline = _nnunet_pipeline()
    np.random.seed(0)
    torch.manual_seed(0)
    theirs = []
    for _ in range(n):
        out = pipeline(image=data[0].clone(), segmentation=seg[0].clone())
        theirs.append(_statistics(out["image"], out["segmentation"][0]))
    ours = []
    generator = torch.Generator().manual_seed(0)
    augment = _ours()
    for _ in range(n // 50):
        images, targets = augment(data.expand(50, -1, -1, -1, -1).clone(),
                                  seg.expand(50, -1, -1, -1, -1).clone(), generator)
        ours.extend(_statistics(i, t) for i, t in zip(images, targets[0], strict=True))
    for k, name in enumerate(("mean of channel 0", "std of channel 2", "whole-tumour share")):
        assert_same_distribution(name, [o[k] for o in ours], [t[k] for t in theirs])


def test_deterministic_under_a_generator():
    augment = _ours()
    data, seg = _phantom_patch(4)
    runs = [augment(data.clone(), seg.clone(), torch.Generator().manual_seed(seed))
            for seed in (5, 5, 6)]
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))
    assert not torch.equal(runs[0][0], runs[2][0])


def test_options_select_the_path_and_only_gpu_changes_the_job_id(registry, demo_data,
                                                                  write_protocol):
    from kdbench.plan import build_plan
    from kdbench.protocol import load_protocol
    from kdbench_plugins.nnunet_backbone import NnUNetOptions

    assert "augmentation" not in NnUNetOptions().model_dump(mode="json")
    assert NnUNetOptions(augmentation="gpu").model_dump(mode="json")["augmentation"] == "gpu"

    def ids(options):
        data = {**demo_data, "backbone": {"name": "nnunet", "options": options}}
        return [job.id for job in build_plan(load_protocol(write_protocol(data), registry),
                                             registry).jobs]

    base = demo_data.get("backbone", {}).get("options", {})
    default, explicit = ids(base), ids({**base, "augmentation": "nnunet"})
    gpu = ids({**base, "augmentation": "gpu"})
    assert default == explicit
    assert not set(default) & set(gpu) and len(gpu) == len(default)
    with pytest.raises(ValueError, match="augmentation"):
        NnUNetOptions(augmentation="cpu")


# -- the trainer -------------------------------------------------------------------------------

def _trainer(dataset, augmentation, tmp_path, features=(8, 16, 32)):
    from kdbench.modalities import MODALITIES
    from kdbench.types import ModalityUse
    from kdbench_plugins.multi import Multi
    from kdbench_plugins.nnunet_backbone import NnUNetOptions, engine
    from kdbench_plugins.nnunet_backbone.environment import NnUNetFolders, nnunet_environment
    from kdbench_plugins.nnunet_backbone.trainer import TrainerSettings

    ids = list(dataset.cases)
    options = NnUNetOptions(features_per_stage=features, augmentation=augmentation)
    summary = dataset.marker["backbone"]["summary"]
    folders = NnUNetFolders(dataset.path / dataset.marker["backbone"]["name"],
                            summary["dataset_name"])
    with nnunet_environment(folders, results=tmp_path, nnUNet_n_proc_DA="0"):
        engine.seed_everything(0)
        trainer = engine._trainer(dataset, options, "cpu", continue_training=False)
        trainer.configure(TrainerSettings(
            strategy=Multi({}, ModalityUse(MODALITIES, (MODALITIES,))),
            train_cases=tuple(ids[:8]), val_cases=tuple(ids[8:10]), epochs=1,
            iterations_per_epoch=1, val_iterations=1, augmentation=augmentation))
        trainer.initialize()
        loader, val_loader = trainer.get_dataloaders()
    return trainer, loader, val_loader


def test_trainer_crops_on_cpu_and_augments_in_train_step(prepared_phantom, tmp_path):
    """With ``gpu`` the loader's workers only crop nnU-Net's initial patch; the pipeline the
    trainer builds has nnU-Net's parameters for these plans, and a training step runs on it."""
    theirs, their_loader, _ = _trainer(prepared_phantom, "nnunet", tmp_path / "a")
    ours, our_loader, val_loader = _trainer(prepared_phantom, "gpu", tmp_path / "b")
    assert theirs._gpu_augment is None and ours._gpu_augment is not None
    reference = their_loader.data_loader
    rotation, dummy_2d, initial, mirror_axes = (
        theirs.configure_rotation_dummyDA_mirroring_and_inital_patch_size())
    augment = ours._gpu_augment
    assert augment.patch_size == tuple(theirs.configuration_manager.patch_size)
    assert augment.rotation == tuple(rotation) and augment.dummy_2d == dummy_2d
    assert augment.mirror_axes == tuple(mirror_axes)
    assert augment.deep_supervision_scales == [list(map(float, s)) for s in
                                               theirs._get_deep_supervision_scales()]
    assert augment.regions == [tuple(r) for r in theirs.label_manager.foreground_regions]

    raw = next(our_loader)  # what nnU-Net's loader crops before its transforms: no transform
    assert our_loader.data_loader.transforms is None
    assert list(raw["data"].shape[2:]) == list(initial) == list(reference.patch_size)
    assert raw["target"].dtype == torch.int16 and raw["target"].shape[1] == 1
    assert (our_loader.data_loader.oversample_foreground_percent
            == reference.oversample_foreground_percent)
    # validation is nnU-Net's in both (its validation transforms, in the loader)
    assert isinstance(next(val_loader)["target"], list)

    final = next(their_loader)
    ours.network.train()
    result = ours.train_step(raw)
    assert np.isfinite(result["loss"])
    batch = ours._augment_on_device(raw)
    assert batch["data"].shape == final["data"].shape
    assert [t.shape for t in batch["target"]] == [t.shape for t in final["target"]]
    assert [t.dtype for t in batch["target"]] == [t.dtype for t in final["target"]]
    for loader in (their_loader, our_loader, val_loader):
        finish = getattr(loader, "_finish", None)
        if finish is not None:
            finish()


#: The Dice test's budget and tolerance (see docs/augmentation.md).
DICE_EPOCHS, DICE_ITERATIONS, DICE_VAL_ITERATIONS, DICE_SEEDS = 10, 10, 10, (0, 1)
DICE_TOLERANCE = 0.1


@pytest.mark.slow
def test_gpu_path_trains_to_nnunets_validation_dice(prepared_phantom, tmp_path):
    """``multi`` on the phantom, both augmentation paths, two seeds each, on CPU: the mean
    validation pseudo-Dice of the last three epochs, averaged over the seeds, agrees within
    DICE_TOLERANCE, and both paths learn (Dice above 0.3)."""
    from kdbench.components.requests import TrainRequest
    from kdbench.modalities import MODALITIES
    from kdbench.types import Budget, ModalityUse
    from kdbench_plugins.multi import Multi
    from kdbench_plugins.nnunet_backbone import NnUNetOptions, engine

    ids = list(prepared_phantom.cases)
    dice: dict[str, list[float]] = defaultdict(list)
    for augmentation in ("nnunet", "gpu"):
        for seed in DICE_SEEDS:
            result = engine.train(TrainRequest(
                strategy=Multi({}, ModalityUse(MODALITIES, (MODALITIES,))),
                dataset=prepared_phantom, train_cases=tuple(ids[:8]),
                val_cases=tuple(ids[8:10]),
                budget=Budget(epochs=DICE_EPOCHS, iterations_per_epoch=DICE_ITERATIONS,
                              val_iterations=DICE_VAL_ITERATIONS, checkpoint_every=100),
                options=NnUNetOptions(features_per_stage=(8, 16, 32),
                                      augmentation=augmentation),
                output_dir=tmp_path / f"{augmentation}_{seed}", seed=seed, data_workers=0))
            dice[augmentation].append(float(np.mean(result.history["mean_fg_dice"][-3:])))
    means = {k: float(np.mean(v)) for k, v in dice.items()}
    print(f"\nvalidation Dice per seed: {dict(dice)}; means {means}")
    assert min(means.values()) > 0.3, means
    assert abs(means["gpu"] - means["nnunet"]) <= DICE_TOLERANCE, means
