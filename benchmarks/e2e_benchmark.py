"""End-to-end benchmark (P3): training iterations per second with data loading.

Times, on one device, training iterations as nnU-Net's loop runs them (``next`` on the training
loader, then ``train_step``), on synthetic BraTS-shaped cases written as an nnU-Net preprocessed
dataset in a temporary folder:

- ``kdbench_e2e``: ``KdbenchTrainer`` (``multi``, 4 channels) with ``augmentation: gpu``: W CPU
  workers load and crop, ``train_step`` augments on the device;
- ``kdbench_gpu_only``: the same trainer's ``train_step`` on one cropped batch already on the
  device (GPU augmentation included; no data loading);
- ``step_only``: that ``train_step`` on an already augmented batch (augmentation skipped): the
  cost of the augmentation is ``kdbench_gpu_only`` minus this;
- ``nnunet_e2e``: nnU-Net's own ``nnUNetTrainer``, its CPU augmentation in W workers, same data,
  same network, same W.

Ratios: (i) ``kdbench_e2e`` / ``kdbench_gpu_only`` in iterations per second (goal >= 0.9: the
loader keeps up with the GPU); (ii) ``kdbench_e2e`` / ``nnunet_e2e`` (goal >= 2). Goals apply to
``--size brats`` on a GPU. See benchmarks/README.md.

The data is ``e2e_dataset.py``, the trainers and the timing ``e2e_timing.py``, the report and
its goals ``e2e_report.py``; this script runs the variants.

Run from the repository root (kdbench need not be installed; the checkout is imported)::

    python benchmarks/e2e_benchmark.py --size tiny --device cpu --steps 5 --workers 1
    python benchmarks/e2e_benchmark.py --size brats --steps 40 --workers 16 --json e2e.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: siblings beside

from bench_setup import (  # noqa: E402
    CONFIGURATION,
    DATASET_NAME,
    import_checkout,
    make_plans,
    parameter_count,
    region_dataset_json,
    set_nnunet_environment,
    training_device,
    write_json_report,
)
from e2e_dataset import write_dataset  # noqa: E402
from e2e_report import build_report, print_report  # noqa: E402
from e2e_timing import Timings, kdbench_trainer, loaders, nnunet_trainer  # noqa: E402

#: Network, batch and case presets. ``grid`` is the phantom's grid; ``upsample`` enlarges it
#: (trilinear images, nearest labels) before nnU-Net's preprocessing crops it to the brain:
#: ``brats`` gives cases of about 4 x 140 x 170 x 140 voxels, as BraTS's after cropping.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"patch": 16, "batch": 2, "features": (8, 16, 32), "grid": (32, 36, 32),
             "upsample": 1, "cases": 4, "anatomy": "procedural"},
    "small": {"patch": 32, "batch": 2, "features": (16, 32, 64, 128), "grid": (64, 76, 64),
              "upsample": 1, "cases": 6, "anatomy": "auto"},
    "brats": {"patch": 128, "batch": 2, "features": (32, 64, 128, 256, 320, 320),
              "grid": (95, 115, 95), "upsample": 2, "cases": 8, "anatomy": "auto"},
}


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Write the dataset under ``workdir``, time the four variants, and return the report."""
    preset = dict(SIZES[args.size])
    if args.cases:
        preset["cases"] = args.cases
    patch = args.patch_size or preset["patch"]
    batch = args.batch_size or preset["batch"]
    plans = make_plans(preset["features"], patch, batch)
    set_nnunet_environment(workdir, compile_networks=False)
    folder = workdir / "nnUNet_preprocessed" / DATASET_NAME / f"nnUNetPlans_{CONFIGURATION}"
    for marker in folder.glob("*.b2nd"):  # the step benchmark's empty marker: real cases here
        marker.unlink()
    import_checkout()
    try:  # what the trainers need (e2e_timing imports them where it uses them)
        for module in ("torch", "nnunetv2.training.nnUNetTrainer.nnUNetTrainer",
                       "kdbench.modalities", "kdbench_plugins.multi",
                       "kdbench_plugins.nnunet_backbone.trainer"):
            importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise SystemExit(
            f"e2e_benchmark: module {error.name!r} is missing. It needs torch, nnunetv2 and "
            "kdbench's import-time dependencies (pluggy, pydantic); see benchmarks/README.md"
        ) from error

    device = training_device(args.device, args.threads)
    cuda = device.type == "cuda"
    dataset_json = region_dataset_json(preset["cases"])
    (folder.parent / "dataset.json").write_text(json.dumps(dataset_json))

    started = time.perf_counter()
    cases = write_dataset(folder, preset, plans, dataset_json, args.seed,
                          args.data_processes or os.cpu_count() or 1)
    data_s = time.perf_counter() - started
    ids = [c["case"] for c in cases]
    train, val = ids[:-1], ids[-1:]
    timings = Timings(device, args.warmup, args.steps)

    # (a) kdbench's step on a batch already on the device, with and without its augmentation
    ours = kdbench_trainer(plans, dataset_json, device, train, val, args.seed)
    parameters = parameter_count(ours.network)
    with loaders(ours, 0) as loader:
        raw = next(loader)
    initial_patch = list(raw["data"].shape[2:])
    on_device = {**raw, "data": raw["data"].to(device), "target": raw["target"].to(device)}
    augmented = ours._augment_on_device(on_device)
    augment = ours._gpu_augment

    def step_only() -> Any:
        ours._gpu_augment = None
        try:
            return ours.train_step(augmented)
        finally:
            ours._gpu_augment = augment

    timings.measure(("kdbench_gpu_only", "step_only"),
                    {"kdbench_gpu_only": lambda: ours.train_step(on_device),
                     "step_only": step_only})

    # (b) kdbench end to end: W workers load and crop, the device augments
    with loaders(ours, args.workers) as loader:
        timings.measure(("kdbench_e2e",), {"kdbench_e2e": lambda: ours.train_step(next(loader))})

    # (c) nnU-Net's own trainer end to end: W workers load, crop and augment
    theirs = nnunet_trainer(plans, dataset_json, device, train, val, args.seed)
    assert parameter_count(theirs.network) == parameters
    with loaders(theirs, args.workers) as loader:
        timings.measure(("nnunet_e2e",), {"nnunet_e2e": lambda: theirs.train_step(next(loader))})
    setup_s = time.perf_counter() - started

    return build_report(args, timings, {
        "size": args.size,
        "patch_size": [patch] * 3,
        "initial_patch_size": initial_patch,
        "batch_size": batch,
        "features_per_stage": list(preset["features"]),
        "n_stages": len(preset["features"]),
        "parameters": parameters,
        "cases": len(cases),
        "case_shapes": [c["shape"] for c in cases],
        "phantom_grid": list(preset["grid"]),
        "upsample": preset["upsample"],
        "anatomy": preset["anatomy"],
        "workers": args.workers,
        "device": str(device),
        "amp": "fp16 autocast + GradScaler" if cuda else "none (fp32)",
        "steps": args.steps,
        "warmup": max(args.warmup, 1),
        "seed": args.seed,
        "dataset_s": data_s,
        "total_s": setup_s,
    })


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small",
                        help="network, batch and case preset: brats = nnU-Net's BraTS "
                             "3d_fullres on BraTS-sized cases; small/tiny for a CPU")
    parser.add_argument("--steps", type=int, default=20, help="timed iterations per variant")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up iterations per variant")
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 12),
                        help="data-loader worker processes, the same for both trainers "
                             "(nnUNet_n_proc_DA; default: the CPU count, at most 12)")
    parser.add_argument("--device", help="cpu, cuda (default: cuda when available)")
    parser.add_argument("--cases", type=int, help="override the preset's number of cases")
    parser.add_argument("--patch-size", type=int, help="override the preset's patch edge")
    parser.add_argument("--batch-size", type=int, help="override the preset's batch size")
    parser.add_argument("--threads", type=int, help="torch CPU threads of the main process")
    parser.add_argument("--data-processes", type=int,
                        help="processes writing the synthetic cases (default: the CPU count)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.workers < 0:
        parser.error("--workers must be 0 or more")
    if args.cases is not None and args.cases < 2:
        parser.error("--cases must be at least 2 (one is held for the validation loader)")
    return args


def benchmark(argv: list[str] | None = None) -> dict[str, Any]:
    """The report of one run with these command-line arguments (for a suite runner)."""
    args = parse_args(argv)
    saved = {k: os.environ.get(k) for k in ("nnUNet_raw", "nnUNet_preprocessed",
                                            "nnUNet_results", "nnUNet_compile",
                                            "nnUNet_n_proc_DA")}
    try:
        with tempfile.TemporaryDirectory(prefix="kdbench_e2e_benchmark_") as workdir:
            return run(args, Path(workdir))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = benchmark(argv)
    print_report(report)
    write_json_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
