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

Run from the repository root (kdbench need not be installed; the checkout is imported)::

    python benchmarks/e2e_benchmark.py --size tiny --device cpu --steps 5 --workers 1
    python benchmarks/e2e_benchmark.py --size brats --steps 40 --workers 16 --json e2e.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import io
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench_setup beside

from bench_setup import (  # noqa: E402
    CONFIGURATION,
    DATASET_NAME,
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

#: Goals (``brats`` size on a GPU): ratio name -> lower bound.
GOALS = {"e2e_over_gpu_only": 0.9, "kdbench_over_nnunet": 2.0}

VARIANTS = ("kdbench_gpu_only", "step_only", "kdbench_e2e", "nnunet_e2e")
LABELS = {
    "kdbench_gpu_only": "kdbench train_step, GPU aug, batch on device",
    "step_only": "kdbench train_step, batch already augmented",
    "kdbench_e2e": "kdbench end to end, GPU aug, W workers",
    "nnunet_e2e": "nnU-Net end to end, CPU aug, W workers",
}
MODALITY_KEYS = ("t1", "t1ce", "t2", "flair")


# -- the dataset --------------------------------------------------------------------------------

def _write_case(job: tuple[Any, ...]) -> dict[str, Any]:
    """One phantom case, upsampled, preprocessed by nnU-Net's DefaultPreprocessor and saved as
    nnU-Net saves it (blosc2, chunks and blocks for the patch size). Runs in a worker."""
    index, seed, grid, upsample, anatomy, folder, plans, dataset_json = job
    import_checkout()
    import numpy as np
    import torch
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import (
        comp_blosc2_params,
        nnUNetDatasetBlosc2,
    )
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from kdbench.cases import LABEL_MAPS
    from kdbench_plugins.phantom.build import resolve_anatomy, synthesise_case

    arrays, _, _ = synthesise_case(index, seed, tuple(grid), resolve_anatomy(anatomy))
    data = np.stack([arrays[k] for k in MODALITY_KEYS]).astype(np.float32)
    lookup = np.zeros(256, dtype=np.int16)
    for source, canonical in LABEL_MAPS["brats2021"].items():
        lookup[source] = canonical
    seg = lookup[arrays["seg"]][None]
    if upsample > 1:
        shape = [s * upsample for s in grid]
        data = torch.nn.functional.interpolate(torch.from_numpy(data)[None], shape,
                                               mode="trilinear")[0].numpy()
        seg = torch.nn.functional.interpolate(torch.from_numpy(seg.astype(np.float32))[None],
                                              shape, mode="nearest")[0].numpy().astype(np.int16)
    manager = PlansManager(plans)
    config = manager.get_configuration(CONFIGURATION)
    with contextlib.redirect_stdout(io.StringIO()):
        data, seg, properties = DefaultPreprocessor(verbose=False).run_case_npy(
            data, seg, {"spacing": [1.0, 1.0, 1.0]}, manager, config, dataset_json)
    data, seg = data.astype(np.float32), seg.astype(np.int16)
    blocks, chunks = comp_blosc2_params(data.shape, tuple(config.patch_size), data.itemsize)
    blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, tuple(config.patch_size),
                                                seg.itemsize)
    case = f"case_{index:03d}"
    nnUNetDatasetBlosc2.save_case(data, seg, properties, str(Path(folder) / case),
                                  chunks=chunks, blocks=blocks, chunks_seg=chunks_seg,
                                  blocks_seg=blocks_seg)
    return {"case": case, "shape": list(data.shape)}


def write_dataset(folder: Path, preset: dict[str, Any], plans: dict[str, Any],
                  dataset_json: dict[str, Any], seed: int, processes: int) -> list[dict]:
    """The preset's cases in nnU-Net's preprocessed layout under ``folder`` (in parallel)."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(i, seed, preset["grid"], preset["upsample"], preset["anatomy"], str(folder),
             plans, dataset_json) for i in range(preset["cases"])]
    processes = max(1, min(processes, len(jobs)))
    if processes == 1:
        return [_write_case(job) for job in jobs]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return pool.map(_write_case, jobs)


# -- the run ------------------------------------------------------------------------------------

def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
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
    try:
        import torch
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        from kdbench.modalities import MODALITIES
        from kdbench_plugins.multi import Multi
        from kdbench_plugins.nnunet_backbone.trainer import KdbenchTrainer, TrainerSettings
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
    quiet = contextlib.redirect_stdout(io.StringIO())

    def kdbench_trainer() -> Any:
        with quiet:
            trainer = KdbenchTrainer({**copy.deepcopy(plans), "continue_training": False},
                                     CONFIGURATION, 0, dataset_json, device)
            trainer.configure(TrainerSettings(
                strategy=Multi(Multi.resolve_hparams(), Multi.teacher_plan(MODALITIES)),
                train_cases=train, val_cases=val, epochs=1, iterations_per_epoch=1,
                val_iterations=1, augmentation="gpu"))
            torch.manual_seed(args.seed)
            trainer.initialize()
        return trainer

    def nnunet_trainer() -> Any:
        with quiet:
            trainer = nnUNetTrainer({**copy.deepcopy(plans), "continue_training": False},
                                    CONFIGURATION, 0, dataset_json, device)
            trainer.do_split = lambda: (list(train), list(val))
            torch.manual_seed(args.seed)
            trainer.initialize()
        return trainer

    @contextlib.contextmanager
    def loaders(trainer: Any, workers: int) -> Iterator[Any]:
        os.environ["nnUNet_n_proc_DA"] = str(workers)  # noqa: SIM112 - nnU-Net's name
        with quiet:
            train_loader, val_loader = trainer.get_dataloaders()
        trainer.network.train()
        try:
            yield train_loader
        finally:
            for loader in (train_loader, val_loader):
                finish = getattr(loader, "_finish", None)
                if finish is not None:
                    finish()

    def timed(step: Callable[[], Any]) -> float:
        if cuda:
            torch.cuda.synchronize(device)
        begin = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - begin

    times: dict[str, list[float]] = {}
    first: dict[str, float] = {}
    peak: dict[str, float | None] = {}

    def measure(names: tuple[str, ...], steps: dict[str, Callable[[], Any]]) -> None:
        """Warm-up, then the timed steps, interleaved when several variants share a loop."""
        for name in names:
            times[name] = []
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
        for round_ in range(max(args.warmup, 1)):
            for name in names:
                elapsed = timed(steps[name])
                if round_ == 0:
                    first[name] = elapsed
        for _ in range(args.steps):
            for name in names:
                times[name].append(timed(steps[name]))
        for name in names:
            peak[name] = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None

    # (a) kdbench's step on a batch already on the device, with and without its augmentation
    ours = kdbench_trainer()
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

    measure(("kdbench_gpu_only", "step_only"),
            {"kdbench_gpu_only": lambda: ours.train_step(on_device), "step_only": step_only})

    # (b) kdbench end to end: W workers load and crop, the device augments
    with loaders(ours, args.workers) as loader:
        measure(("kdbench_e2e",), {"kdbench_e2e": lambda: ours.train_step(next(loader))})

    # (c) nnU-Net's own trainer end to end: W workers load, crop and augment
    theirs = nnunet_trainer()
    assert parameter_count(theirs.network) == parameters
    with loaders(theirs, args.workers) as loader:
        measure(("nnunet_e2e",), {"nnunet_e2e": lambda: theirs.train_step(next(loader))})
    setup_s = time.perf_counter() - started

    results = {}
    for name in VARIANTS:
        stats = summary_stats(times[name])
        results[name] = {
            "label": LABELS[name],
            "iterations_per_s": len(times[name]) / sum(times[name]),
            "first_step_s": first[name],
            "peak_memory_mib": peak[name],
            **stats,
        }
    rate = {name: results[name]["iterations_per_s"] for name in VARIANTS}
    ratios = {
        "e2e_over_gpu_only": rate["kdbench_e2e"] / rate["kdbench_gpu_only"],
        "kdbench_over_nnunet": rate["kdbench_e2e"] / rate["nnunet_e2e"],
        "augmentation_share_of_gpu_only": 1 - rate["kdbench_gpu_only"] / rate["step_only"],
        "paired": {
            # per-round ratios of step times (the variants in one loop run interleaved)
            "gpu_only_over_step_only": paired_ratio(times["kdbench_gpu_only"],
                                                    times["step_only"]),
        },
    }
    on_goal_setup = cuda and args.size == "brats"
    return {
        "benchmark": "e2e_benchmark",
        "datetime": dt.datetime.now(dt.UTC).isoformat(),
        "machine_info": machine_info(device),
        "commit_info": commit_info(),
        "config": {
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
        },
        "results": results,
        "ratios": ratios,
        "goals": {
            **GOALS,
            "applies_to": "brats size on a CUDA GPU",
            "evaluated": on_goal_setup,
            "met": ({k: ratios[k] >= v for k, v in GOALS.items()} if on_goal_setup else None),
        },
    }


def print_report(report: dict[str, Any]) -> None:
    config, info = report["config"], report["machine_info"]
    patch = "×".join(str(p) for p in config["patch_size"])
    print(f"e2e benchmark: {config['size']} (patch {patch}, batch {config['batch_size']}, "
          f"{config['cases']} cases like {'×'.join(map(str, config['case_shapes'][0]))}), "
          f"{config['device']} ({info['device_name']}), {config['workers']} workers, "
          f"{config['steps']} steps after {config['warmup']} warm-up")
    print(f"{'variant':46} {'it/s':>8} {'median ms':>10} {'IQR ms':>9} {'first s':>8}")
    for result in report["results"].values():
        print(f"{result['label']:46} {result['iterations_per_s']:8.2f} "
              f"{result['median_ms']:10.1f} {result['iqr_ms']:9.1f} "
              f"{result['first_step_s']:8.2f}")
    ratios, goals = report["ratios"], report["goals"]
    note = "" if goals["evaluated"] else "  (goals apply to brats on a GPU)"
    print(f"(i)  e2e / GPU-only     = {ratios['e2e_over_gpu_only']:.3f} "
          f"(goal >= {GOALS['e2e_over_gpu_only']}){note}")
    print(f"(ii) kdbench / nnU-Net  = {ratios['kdbench_over_nnunet']:.3f} "
          f"(goal >= {GOALS['kdbench_over_nnunet']})")
    print(f"augmentation share of the GPU-only step = "
          f"{ratios['augmentation_share_of_gpu_only']:.3f}")
    if goals["met"] is not None:
        print("goals met: " + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                        for k, v in goals["met"].items()))


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
