"""Grid benchmark (P4): the GPU-hours of a protocol's plan vs its naive grid.

kdbench trains each distinct Job once: a teacher or generator of an (N, seed) is shared by
every student that needs it, tuning trials are pruned, and its fast paths (the GPU
augmentation and ``--compile``) keep the GPU fed. The naive grid trains every
(strategy, scenario, N, seed) cell on its own, with its own teacher and generator, runs
tuning trials in full, and trains as nnU-Net's own trainer does (CPU augmentation, compiled).
P4 is kdbench with its fast paths (``kdbench plan P --estimate --augmentation gpu --compile``);
the protocol as written (its augmentation, eager) is reported beside it. Both come from
kdbench's cost model (``kdbench/estimate.py``, the same figures as ``kdbench plan P
--estimate``) and a calibration: the shipped H100 reference by
default, a calibration file, or the step medians of a step-benchmark report (``--step-json``,
what ``run_all.py --size brats`` passes from the same run). Goal for
``protocols/brats2021_learning_curve.yaml``: kdbench / naive <= 0.4.

Run from the repository root::

    python benchmarks/grid_benchmark.py
    python benchmarks/grid_benchmark.py --calibration runs/calibration/nvidia-h100.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench_setup beside

from bench_setup import ROOT, commit_info, import_checkout, write_json_report  # noqa: E402

PROTOCOL = ROOT / "protocols" / "brats2021_learning_curve.yaml"
GOAL = 0.4  # kdbench / naive, at most


def calibration_from_step_report(report: dict[str, Any], reference: Any) -> Any:
    """A calibration whose step figures are a step-benchmark report's medians (per-case
    figures from ``reference``)."""
    from kdbench.calibration import Calibration

    median = {name: result["median_ms"] for name, result in report["results"].items()}
    config, info = report["config"], report["machine_info"]
    return Calibration(
        device=info["device_name"], reference=False,
        label=f"step benchmark of this run ({config['size']}, {config['device']}); "
              "per-case and input-pipeline figures from the reference",
        step_ms={"train": median["kdbench"], "student": median["student"], "kd": median["kd"],
                 "teacher_forward": median["teacher"], "validation": median["teacher"]},
        case_s=dict(reference.case_s), input=dict(reference.input),
        network={"patch": config["patch_size"], "batch": config["batch_size"]},
        date=report["datetime"][:10])


def run(args: argparse.Namespace) -> dict[str, Any]:
    import_checkout()
    from kdbench.calibration import load_calibration
    from kdbench.estimate import estimate
    from kdbench.plan import build_plan
    from kdbench.plugin_manager import load_plugins
    from kdbench.protocol import load_protocol

    registry = load_plugins(use_env=False)
    plan = build_plan(load_protocol(args.protocol, registry), registry)
    calibration = load_calibration(args.calibration)
    if args.step_json:
        calibration = calibration_from_step_report(json.loads(args.step_json.read_text()),
                                                   calibration)
    cost = estimate(plan, registry, calibration, augmentation="gpu",
                    compile=calibration.compiled)
    as_written = estimate(plan, registry, calibration)
    on_goal = Path(args.protocol).resolve() == PROTOCOL.resolve()
    return {
        "benchmark": "grid_benchmark",
        "datetime": dt.datetime.now(dt.UTC).isoformat(),
        "commit_info": commit_info(),
        "config": {"protocol": str(args.protocol), "jobs": len(plan.jobs),
                   "device": calibration.device, "calibration": calibration.label},
        "results": {"kdbench_gpu_hours": cost.total_h, "naive_gpu_hours": cost.naive_h,
                    "jobs": len(plan.jobs), "naive_trainings": cost.naive_trainings,
                    "pipeline": cost.pipeline.describe(),
                    "saved_gpu_hours": {"sharing": cost.sharing_saved_h,
                                        "pruning": cost.pruning_saved_h,
                                        "pipeline": cost.pipeline_saved_h},
                    "as_written": {"pipeline": as_written.pipeline.describe(),
                                   "kdbench_gpu_hours": as_written.total_h,
                                   "kdbench_over_naive": as_written.ratio}},
        "estimate": cost.to_json(),
        "ratios": {"kdbench_over_naive": cost.ratio,
                   "as_written_over_naive": as_written.ratio},
        "goals": {"kdbench_over_naive": GOAL, "applies_to": str(PROTOCOL.relative_to(ROOT)),
                  "evaluated": on_goal,
                  "met": {"kdbench_over_naive": cost.ratio <= GOAL} if on_goal else None},
    }


def print_report(report: dict[str, Any]) -> None:
    results, config = report["results"], report["config"]
    print(f"grid benchmark: {config['protocol']} ({config['jobs']} Jobs); calibration: "
          f"{config['calibration']}")
    print(f"kdbench {results['kdbench_gpu_hours']:,.1f} GPU-h, naive grid "
          f"{results['naive_gpu_hours']:,.1f} GPU-h ({results['naive_trainings']} trainings); "
          f"kdbench / naive = {report['ratios']['kdbench_over_naive']:.3f} (goal <= {GOAL}) "
          f"with {results['pipeline']}")
    saved = results["saved_gpu_hours"]
    print(f"saved: sharing {saved['sharing']:,.1f} h, pruning {saved['pruning']:,.1f} h, "
          f"pipeline {saved['pipeline']:,.1f} h; the protocol as written "
          f"({results['as_written']['pipeline']}): "
          f"{results['as_written']['kdbench_gpu_hours']:,.1f} GPU-h, "
          f"{results['as_written']['kdbench_over_naive']:.3f} of the naive grid")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", type=Path, default=PROTOCOL)
    parser.add_argument("--calibration", type=Path,
                        help="calibration JSON (default: the shipped H100 reference)")
    parser.add_argument("--step-json", type=Path,
                        help="take the step figures from this step_benchmark.py report")
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print_report(report)
    write_json_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
