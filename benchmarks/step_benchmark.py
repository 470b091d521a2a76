"""Step benchmark: nnU-Net's raw train step vs kdbench's, and the cost of a KD step.

Times, in one run and on one device, interleaved in rounds so that drift hits every variant
alike:

- ``nnunet``  (a): nnU-Net's own ``nnUNetTrainer.train_step`` on the 4-channel network;
- ``kdbench`` (b): ``KdbenchTrainer.train_step`` with the ``multi`` strategy, same network;
- ``student``:     ``KdbenchTrainer.train_step`` with ``mono`` on one channel (the student alone);
- ``kd``      (c): ``KdbenchTrainer.train_step`` with ``kd``: the same 1-channel student plus the
  4-channel teacher's forward in inference mode;
- ``teacher``:     that teacher forward alone (inference mode, AMP on CUDA, outputs cloned).

and prints median and IQR per variant and the ratios b/a and c/student (goals on an H100 at
nnU-Net's BraTS size: b/a <= 1.05, c/student <= 1.20). No dataset is needed: the plans (nnU-Net's
BraTS 3d_fullres PlainConvUNet, or a smaller one) are written here, the trainers are nnU-Net's and
kdbench's own classes constructed and initialised as in training, and the batch is random data
with random region targets at every deep-supervision scale, made once (compute is measured, not
data loading). See benchmarks/README.md.

Run from the repository root (kdbench need not be installed; the checkout is imported)::

    python benchmarks/step_benchmark.py --size small --steps 20            # CPU
    python benchmarks/step_benchmark.py --size brats --steps 50 --json out.json   # GPU
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import importlib.util
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION = "3d_fullres"
DATASET_NAME = "Dataset999_StepBenchmark"

#: Network and batch presets: nnU-Net's BraTS 3d_fullres plans, and smaller ones for a CPU.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"patch": 16, "batch": 2, "features": (8, 16, 32)},
    "small": {"patch": 32, "batch": 2, "features": (16, 32, 64, 128)},
    "brats": {"patch": 128, "batch": 2, "features": (32, 64, 128, 256, 320, 320)},
}

#: Goals (H100, ``brats`` size): ratio name -> upper bound.
GOALS = {"kdbench_over_nnunet": 1.05, "kd_over_student": 1.20}

#: Reference numbers on an H100 (BraTS 3d_fullres network, 128³, batch 2, AMP fp16), in ms.
H100_REFERENCE_MS = {"train_step_eager": 73.9, "train_step_compiled": 49.5, "kd_step_eager": 96.1}

VARIANTS = ("nnunet", "kdbench", "student", "kd", "teacher")
LABELS = {
    "nnunet": "(a) nnU-Net train_step, 4 ch",
    "kdbench": "(b) kdbench train_step, multi, 4 ch",
    "student": "    kdbench train_step, mono, 1 ch",
    "kd": "(c) kdbench train_step, kd, 1 ch",
    "teacher": "    teacher forward (in c), 4 ch",
}


# -- plans --------------------------------------------------------------------------------------

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

def _nnunet_environment(folder: Path, compile_networks: bool) -> None:
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


def _import_checkout() -> None:
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

def _stats(times_s: list[float]) -> dict[str, Any]:
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


def _paired_ratio(num: list[float], den: list[float]) -> float:
    """Median of the per-round ratios (each round runs every variant once, back to back)."""
    return statistics.median(n / d for n, d in zip(num, den, strict=True))


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
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
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "nnunetv2_version": _version("nnunetv2"),
        "dynamic_network_architectures_version": _version("dynamic_network_architectures"),
        "device_type": device.type,
        "device_name": _cpu_name(),
    }
    if device.type == "cuda":
        info.update({
            "device_name": torch.cuda.get_device_name(device),
            "cuda_version": torch.version.cuda,
            "cudnn_version": torch.backends.cudnn.version(),
        })
    return info


def commit_info() -> dict[str, Any]:
    status = _git("status", "--porcelain")
    return {
        "id": _git("rev-parse", "HEAD"),
        "branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
        "time": _git("log", "-1", "--format=%cI"),
        "dirty": None if status is None else bool(status),
    }


# -- the benchmark --------------------------------------------------------------------------------

def _parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    preset = SIZES[args.size]
    patch = args.patch_size or preset["patch"]
    batch = args.batch_size or preset["batch"]
    plans = make_plans(preset["features"], patch, batch)
    _nnunet_environment(workdir, args.compile)
    _import_checkout()
    try:
        import torch
        from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import (
            DownsampleSegForDSTransform,
        )
        from batchgeneratorsv2.transforms.utils.seg_to_regions import (
            ConvertSegmentationToRegionsTransform,
        )
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        from torch import autocast

        from kdbench.components.strategy import ModalityPlan
        from kdbench.modalities import MODALITIES, normalize
        from kdbench_plugins.kd import KnowledgeDistillation
        from kdbench_plugins.mono import Mono
        from kdbench_plugins.multi import Multi
        from kdbench_plugins.nnunet_backbone.raw_dataset import (
            CHANNEL_NAMES,
            REGION_LABELS,
            REGIONS_CLASS_ORDER,
        )
        from kdbench_plugins.nnunet_backbone.trainer import KdbenchTrainer, TrainerSettings
    except ModuleNotFoundError as error:
        raise SystemExit(
            f"step_benchmark: module {error.name!r} is missing. It needs torch, nnunetv2 and "
            "kdbench's import-time dependencies (pluggy, pydantic); see benchmarks/README.md"
        ) from error

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        # nnU-Net's training entry point (nnunetv2.run.run_training) sets these
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    student_modalities = normalize(args.student)
    dataset_json = {
        "channel_names": {str(k): v for k, v in CHANNEL_NAMES.items()},
        "labels": {k: list(v) if isinstance(v, tuple) else v for k, v in REGION_LABELS.items()},
        "regions_class_order": list(REGIONS_CLASS_ORDER),
        "numTraining": 1,
        "file_ending": ".nii.gz",
    }

    quiet = contextlib.redirect_stdout(io.StringIO())

    def raw_trainer() -> Any:
        with quiet:
            trainer = nnUNetTrainer({**copy.deepcopy(plans), "continue_training": False},
                                    CONFIGURATION, 0, dataset_json, device)
            torch.manual_seed(args.seed)
            trainer.initialize()
        return trainer

    def kdbench_trainer(strategy: Any, teacher: Any = None) -> Any:
        with quiet:
            trainer = KdbenchTrainer({**copy.deepcopy(plans), "continue_training": False},
                                     CONFIGURATION, 0, dataset_json, device)
            trainer.configure(TrainerSettings(
                strategy=strategy, train_cases=(), val_cases=(), epochs=1,
                iterations_per_epoch=1, val_iterations=1, compile=args.compile,
                teacher=teacher,
                teacher_modalities=MODALITIES if teacher is not None else (),
                training_modalities=strategy.plan.training,
            ))
            torch.manual_seed(args.seed)  # the same initial weights for the same network
            trainer.initialize()
        return trainer

    started = time.perf_counter()
    raw = raw_trainer()
    pm, cm, lm = raw.plans_manager, raw.configuration_manager, raw.label_manager
    multi = kdbench_trainer(Multi(Multi.resolve_hparams(), Multi.teacher_plan(MODALITIES)))
    student_plan = ModalityPlan(student_modalities, (student_modalities,))
    mono = kdbench_trainer(Mono(Mono.resolve_hparams(), student_plan))
    # the teacher as kdbench's engine loads it: the plans' network, eval mode, frozen
    torch.manual_seed(args.seed + 1)
    teacher = nnUNetTrainer.build_network_architecture(
        pm, cm, len(MODALITIES), lm.num_segmentation_heads, True).to(device).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    teacher_parameters = _parameters(teacher)
    if args.compile_teacher and device.type == "cuda":
        teacher = torch.compile(teacher)
    kd = kdbench_trainer(
        KnowledgeDistillation(KnowledgeDistillation.resolve_hparams(),
                              ModalityPlan(MODALITIES, (student_modalities,))),
        teacher=teacher)
    setup_s = time.perf_counter() - started

    # one batch, made once, on the device: nnU-Net's region targets at every DS scale
    generator = torch.Generator().manual_seed(args.seed)
    data = torch.randn((batch, len(MODALITIES), *[patch] * 3), generator=generator)
    regions = ConvertSegmentationToRegionsTransform(regions=lm.foreground_regions,
                                                    channel_in_seg=0)
    downsample = DownsampleSegForDSTransform(ds_scales=raw._get_deep_supervision_scales())
    samples = []
    for _ in range(batch):
        seg = torch.randint(0, 4, (1, *[patch] * 3), generator=generator, dtype=torch.int16)
        samples.append(downsample(segmentation=regions(segmentation=seg)["segmentation"])
                       ["segmentation"])
    target = [torch.stack(scale).to(device) for scale in zip(*samples, strict=True)]
    step_batch = {"data": data.to(device), "target": target}

    def teacher_forward() -> None:
        # what kd.training_loss does for the teacher, under the train step's AMP
        amp = (autocast(device.type, enabled=True) if device.type == "cuda"
               else contextlib.nullcontext())
        with amp:
            with torch.inference_mode():
                out = teacher(step_batch["data"])
            _ = [t.clone() for t in (out if isinstance(out, list | tuple) else [out])]

    steps: dict[str, Callable[[], Any]] = {
        "nnunet": lambda: raw.train_step(step_batch),
        "kdbench": lambda: multi.train_step(step_batch),
        "student": lambda: mono.train_step(step_batch),
        "kd": lambda: kd.train_step(step_batch),
        "teacher": teacher_forward,
    }
    cuda = device.type == "cuda"

    def timed(step: Callable[[], Any]) -> float:
        if cuda:
            torch.cuda.synchronize(device)
        begin = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - begin

    first: dict[str, float] = {}
    peak: dict[str, float] = {}
    for round_ in range(max(args.warmup, 1)):
        for name, step in steps.items():
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            elapsed = timed(step)
            if round_ == 0:
                first[name] = elapsed
            if cuda:
                peak[name] = max(peak.get(name, 0.0),
                                 torch.cuda.max_memory_allocated(device) / 2**20)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.steps):
        for name, step in steps.items():
            times[name].append(timed(step))

    parameters = {
        "nnunet": _parameters(raw.network), "kdbench": _parameters(multi.network),
        "student": _parameters(mono.network), "kd": _parameters(kd.network),
        "teacher": teacher_parameters,
    }
    results = {}
    for name in steps:
        results[name] = {
            "label": LABELS[name].strip(),
            "parameters": parameters[name],
            "first_step_s": first[name],
            "peak_memory_mib": peak.get(name),
            **_stats(times[name]),
        }
    median = {name: results[name]["median_ms"] for name in steps}
    ratios = {
        "kdbench_over_nnunet": median["kdbench"] / median["nnunet"],
        "kd_over_student": median["kd"] / median["student"],
        "teacher_share_of_kd": median["teacher"] / median["kd"],
        "student_over_nnunet": median["student"] / median["nnunet"],
        "paired": {
            "kdbench_over_nnunet": _paired_ratio(times["kdbench"], times["nnunet"]),
            "kd_over_student": _paired_ratio(times["kd"], times["student"]),
            "teacher_share_of_kd": _paired_ratio(times["teacher"], times["kd"]),
        },
    }
    on_goal_setup = device.type == "cuda" and args.size == "brats"
    return {
        "benchmark": "step_benchmark",
        "datetime": dt.datetime.now(dt.UTC).isoformat(),
        "machine_info": machine_info(device),
        "commit_info": commit_info(),
        "config": {
            "size": args.size,
            "patch_size": [patch] * 3,
            "batch_size": batch,
            "features_per_stage": list(preset["features"]),
            "n_stages": len(preset["features"]),
            "input_channels": len(MODALITIES),
            "student_modalities": list(student_modalities),
            "outputs": lm.num_segmentation_heads,
            "deep_supervision_scales": len(target),
            "device": str(device),
            "amp": "fp16 autocast + GradScaler" if cuda else "none (fp32)",
            "compile": bool(args.compile and cuda),
            "compile_teacher": bool(args.compile_teacher and cuda),
            "cudnn_benchmark": bool(cuda and not args.no_cudnn_benchmark),
            "steps": args.steps,
            "warmup": max(args.warmup, 1),
            "order": list(steps),
            "seed": args.seed,
            "setup_s": setup_s,
        },
        "results": results,
        "ratios": ratios,
        "goals": {
            **GOALS,
            "applies_to": "brats size on an H100 (CUDA)",
            "evaluated": on_goal_setup,
            "met": ({k: ratios[k] <= v for k, v in GOALS.items()} if on_goal_setup else None),
        },
        "h100_reference_ms": H100_REFERENCE_MS,
    }


def print_report(report: dict[str, Any]) -> None:
    config, info = report["config"], report["machine_info"]
    patch = "×".join(str(p) for p in config["patch_size"])
    print(f"step benchmark: {config['size']} (patch {patch}, batch {config['batch_size']}, "
          f"{config['n_stages']} stages {config['features_per_stage']}), "
          f"{config['device']} ({info['device_name']}), AMP {config['amp']}, "
          f"{'compiled' if config['compile'] else 'eager'}, "
          f"{config['steps']} steps after {config['warmup']} warm-up")
    print(f"{'variant':38} {'median ms':>10} {'IQR ms':>9} {'first s':>8} {'params':>11}")
    for name, result in report["results"].items():
        print(f"{LABELS[name]:38} {result['median_ms']:10.2f} {result['iqr_ms']:9.2f} "
              f"{result['first_step_s']:8.2f} {result['parameters']:11,d}")
    ratios, goals = report["ratios"], report["goals"]
    note = "" if goals["evaluated"] else "  (goals apply to brats on an H100)"
    print(f"b/a = kdbench / nnunet     = {ratios['kdbench_over_nnunet']:.3f} "
          f"(paired {ratios['paired']['kdbench_over_nnunet']:.3f}; "
          f"goal <= {GOALS['kdbench_over_nnunet']}){note}")
    print(f"c/student = kd / student   = {ratios['kd_over_student']:.3f} "
          f"(paired {ratios['paired']['kd_over_student']:.3f}; "
          f"goal <= {GOALS['kd_over_student']})")
    print(f"teacher forward share of c = {ratios['teacher_share_of_kd']:.3f}")
    if goals["met"] is not None:
        print("goals met: " + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                        for k, v in goals["met"].items()))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small",
                        help="network and batch preset: brats = nnU-Net's BraTS 3d_fullres "
                             "(128³, batch 2, 6 stages); small/tiny for a CPU (default small)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps per variant")
    parser.add_argument("--device", help="cpu, cuda (default: cuda when available)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the trained networks (and nnU-Net's Dice loss) as "
                             "nnU-Net and kdbench do; CUDA only. The first step's time "
                             "(first s) then includes compilation")
    parser.add_argument("--compile-teacher", action="store_true",
                        help="also torch.compile the KD teacher (kdbench does not); CUDA only")
    parser.add_argument("--no-cudnn-benchmark", action="store_true",
                        help="leave cudnn.benchmark off (nnU-Net's entry point turns it on)")
    parser.add_argument("--student", nargs="+", default=["t1ce"],
                        help="the KD student's modalities (default t1ce)")
    parser.add_argument("--patch-size", type=int, help="override the preset's patch edge")
    parser.add_argument("--batch-size", type=int, help="override the preset's batch size")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kdbench_step_benchmark_") as workdir:
        report = run(args, Path(workdir))
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
