"""Set-up shared by the step benchmark: in-memory nnU-Net plans, the checkout on the path,
nnU-Net's folders, statistics and provenance (machine, versions, commit)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION = "3d_fullres"
DATASET_NAME = "Dataset999_StepBenchmark"

def make_plans(features: tuple[int, ...], patch: int, batch: int) -> dict[str, Any]:
    """nnU-Net plans (3d_fullres PlainConvUNet as nnU-Net plans BraTS: 1 mm isotropic, kernels
    3³, first stride 1 then 2, InstanceNorm, LeakyReLU, 2 convolutions per stage)."""
    n = len(features)
    if patch % 2 ** (n - 1):
        raise SystemExit(f"patch size {patch} must be divisible by {2 ** (n - 1)} ({n} stages)")
    arch_kwargs = {
        "n_stages": n,
        "features_per_stage": list(features),
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3] for _ in range(n)],
        "strides": [[1, 1, 1]] + [[2, 2, 2] for _ in range(n - 1)],
        "n_conv_per_stage": [2] * n,
        "n_conv_per_stage_decoder": [2] * (n - 1),
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    config = {
        "data_identifier": f"nnUNetPlans_{CONFIGURATION}",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": batch,
        "patch_size": [patch] * 3,
        "median_image_size_in_voxels": [140.0, 171.0, 136.0],
        "spacing": [1.0, 1.0, 1.0],
        "normalization_schemes": ["ZScoreNormalization"] * 4,
        "use_mask_for_norm": [True] * 4,
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": resampling,
        "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
        "architecture": {
            "network_class_name":
                "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": arch_kwargs,
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
        # nnU-Net plans no 3d_lowres for BraTS, and then sets batch_dice False for 3d_fullres
        "batch_dice": False,
    }
    return {
        "dataset_name": DATASET_NAME,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": [140, 171, 136],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {CONFIGURATION: config},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(c): {"max": 1.0, "mean": 0.0, "median": 0.0, "min": -1.0,
                     "percentile_00_5": -1.0, "percentile_99_5": 1.0, "std": 1.0}
            for c in range(4)
        },
    }


# -- environment and imports ----------------------------------------------------------------------

def set_nnunet_environment(folder: Path, compile_networks: bool) -> None:
    """nnU-Net's folders in a temporary directory (nothing is read from them: the trainers only
    write their log file there), and its compile switch. Set before nnU-Net is imported."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[name] = str(folder / name)
        (folder / name).mkdir(parents=True, exist_ok=True)
    # nnUNetTrainer.initialize infers the dataset class from the file endings of the
    # preprocessed folder; one empty marker file answers it (no case is ever loaded).
    preprocessed = folder / "nnUNet_preprocessed" / DATASET_NAME / f"nnUNetPlans_{CONFIGURATION}"
    preprocessed.mkdir(parents=True, exist_ok=True)
    (preprocessed / "step_benchmark.b2nd").touch()
    os.environ["nnUNet_compile"] = "true" if compile_networks else "false"  # noqa: SIM112
    os.environ.pop("nnUNet_wandb_enabled", None)


def import_checkout() -> None:
    """Import kdbench and its built-in plugins from this checkout, installed or not.

    ``plugins/`` installs as the package ``kdbench_plugins``; without an install it is loaded
    under that name from the checkout.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if "kdbench_plugins" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "kdbench_plugins", ROOT / "plugins" / "__init__.py",
        submodule_search_locations=[str(ROOT / "plugins")])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kdbench_plugins"] = module
    spec.loader.exec_module(module)


# -- measurement ----------------------------------------------------------------------------------

def summary_stats(times_s: list[float]) -> dict[str, Any]:
    ms = [t * 1e3 for t in times_s]
    q1, _, q3 = statistics.quantiles(ms, n=4) if len(ms) > 1 else (ms[0], ms[0], ms[0])
    return {
        "median_ms": statistics.median(ms),
        "q1_ms": q1,
        "q3_ms": q3,
        "iqr_ms": q3 - q1,
        "mean_ms": statistics.fmean(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "rounds": len(ms),
        "data_ms": ms,
    }


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median of the per-round ratios (each round runs every variant once, back to back)."""
    return statistics.median(n / d for n, d in zip(num, den, strict=True))


def git_output(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def package_version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info(device: Any) -> dict[str, Any]:
    import torch

    info = {
        "node": platform.node(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "nnunetv2_version": package_version("nnunetv2"),
        "dynamic_network_architectures_version": package_version("dynamic_network_architectures"),
        "device_type": device.type,
        "device_name": cpu_name(),
    }
    if device.type == "cuda":
        info.update({
            "device_name": torch.cuda.get_device_name(device),
            "cuda_version": torch.version.cuda,
            "cudnn_version": torch.backends.cudnn.version(),
        })
    return info


def commit_info() -> dict[str, Any]:
    status = git_output("status", "--porcelain")
    return {
        "id": git_output("rev-parse", "HEAD"),
        "branch": git_output("rev-parse", "--abbrev-ref", "HEAD"),
        "time": git_output("log", "-1", "--format=%cI"),
        "dirty": None if status is None else bool(status),
    }


# -- the benchmark --------------------------------------------------------------------------------

def parameter_count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def write_json_report(report: dict[str, Any], path: Path | None) -> None:
    """Write a benchmark's report as JSON to ``path`` (when given) and say where."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


def training_device(name: str | None, threads: int | None, cudnn_benchmark: bool = True) -> Any:
    """The torch device to train on (CUDA when available unless ``name`` says), with torch's CPU
    threads and, on CUDA, cuDNN set as nnU-Net's training entry point sets them."""
    import torch

    device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":  # as nnunetv2.run.run_training and kdbench's engine do
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = cudnn_benchmark
    return device


def region_dataset_json(cases: int) -> dict[str, Any]:
    """nnU-Net's dataset.json of kdbench's region-based BraTS datasets (4 channels, WT/TC/ET)."""
    from kdbench_plugins.nnunet_backbone.raw_dataset import (
        CHANNEL_NAMES,
        REGION_LABELS,
        REGIONS_CLASS_ORDER,
    )

    return {
        "channel_names": {str(k): v for k, v in CHANNEL_NAMES.items()},
        "labels": {k: list(v) if isinstance(v, tuple) else v for k, v in REGION_LABELS.items()},
        "regions_class_order": list(REGIONS_CLASS_ORDER),
        "numTraining": cases,
        "file_ending": ".nii.gz",
    }
