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
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench_setup beside

from bench_setup import (  # noqa: E402
    CONFIGURATION,
    commit_info,
    import_checkout,
    machine_info,
    make_plans,
    paired_ratio,
    parameter_count,
    region_dataset_json,
    set_nnunet_environment,
    summary_stats,
    training_device,
    write_json_report,
)

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

def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    preset = SIZES[args.size]
    patch = args.patch_size or preset["patch"]
    batch = args.batch_size or preset["batch"]
    plans = make_plans(preset["features"], patch, batch)
    set_nnunet_environment(workdir, args.compile)
    import_checkout()
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

        from kdbench.modalities import MODALITIES, normalize
        from kdbench.types import ModalityUse
        from kdbench_plugins.kd import KnowledgeDistillation
        from kdbench_plugins.mono import Mono
        from kdbench_plugins.multi import Multi
        from kdbench_plugins.nnunet_backbone.trainer import KdbenchTrainer, TrainerSettings
    except ModuleNotFoundError as error:
        raise SystemExit(
            f"step_benchmark: module {error.name!r} is missing. It needs torch, nnunetv2 and "
            "kdbench's import-time dependencies (pluggy, pydantic); see benchmarks/README.md"
        ) from error

    device = training_device(args.device, args.threads, not args.no_cudnn_benchmark)
    student_modalities = normalize(args.student)
    dataset_json = region_dataset_json(1)

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
                training_modalities=strategy.modalities.training,
            ))
            torch.manual_seed(args.seed)  # the same initial weights for the same network
            trainer.initialize()
        return trainer

    started = time.perf_counter()
    raw = raw_trainer()
    pm, cm, lm = raw.plans_manager, raw.configuration_manager, raw.label_manager
    multi = kdbench_trainer(Multi(Multi.resolve_hparams(), Multi.teacher_use(MODALITIES)))
    student_plan = ModalityUse(student_modalities, (student_modalities,))
    mono = kdbench_trainer(Mono(Mono.resolve_hparams(), student_plan))
    # the teacher as kdbench's engine loads it: the plans' network, eval mode, frozen
    torch.manual_seed(args.seed + 1)
    teacher = nnUNetTrainer.build_network_architecture(
        pm, cm, len(MODALITIES), lm.num_segmentation_heads, True).to(device).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    teacher_parameters = parameter_count(teacher)
    if args.compile_teacher and device.type == "cuda":
        teacher = torch.compile(teacher)
    kd = kdbench_trainer(
        KnowledgeDistillation(KnowledgeDistillation.resolve_hparams(),
                              ModalityUse(MODALITIES, (student_modalities,))),
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
        # what TrainingStep.teacher_outputs does (kd, genkd), under the train step's AMP
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
        "nnunet": parameter_count(raw.network), "kdbench": parameter_count(multi.network),
        "student": parameter_count(mono.network), "kd": parameter_count(kd.network),
        "teacher": teacher_parameters,
    }
    results = {}
    for name in steps:
        results[name] = {
            "label": LABELS[name].strip(),
            "parameters": parameters[name],
            "first_step_s": first[name],
            "peak_memory_mib": peak.get(name),
            **summary_stats(times[name]),
        }
    median = {name: results[name]["median_ms"] for name in steps}
    ratios = {
        "kdbench_over_nnunet": median["kdbench"] / median["nnunet"],
        "kd_over_student": median["kd"] / median["student"],
        "teacher_share_of_kd": median["teacher"] / median["kd"],
        "student_over_nnunet": median["student"] / median["nnunet"],
        "paired": {
            "kdbench_over_nnunet": paired_ratio(times["kdbench"], times["nnunet"]),
            "kd_over_student": paired_ratio(times["kd"], times["student"]),
            "teacher_share_of_kd": paired_ratio(times["teacher"], times["kd"]),
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
                        help="torch.compile the KD teacher before kdbench gets it (with "
                             "--compile kdbench's trainer compiles it itself); CUDA only")
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
    write_json_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
