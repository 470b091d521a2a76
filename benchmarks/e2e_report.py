"""The end-to-end benchmark's report (``e2e_benchmark.py``): iterations per second of each
variant, the two ratios against their goals, the configuration; and its printed table.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from bench_setup import commit_info, machine_info, paired_ratio, summary_stats
from e2e_timing import Timings

#: Goals (``brats`` size on a GPU): ratio name -> lower bound.
GOALS = {"e2e_over_gpu_only": 0.9, "kdbench_over_nnunet": 2.0}

VARIANTS = ("kdbench_gpu_only", "step_only", "kdbench_e2e", "nnunet_e2e")
LABELS = {
    "kdbench_gpu_only": "kdbench train_step, GPU aug, batch on device",
    "step_only": "kdbench train_step, batch already augmented",
    "kdbench_e2e": "kdbench end to end, GPU aug, W workers",
    "nnunet_e2e": "nnU-Net end to end, CPU aug, W workers",
}


def results_and_ratios(timings: Timings) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each variant's rate and step statistics, and the ratios between them."""
    times, first, peak = timings.times, timings.first, timings.peak
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
    return results, ratios


def build_report(args: argparse.Namespace, timings: Timings, config: dict[str, Any]
                 ) -> dict[str, Any]:
    """The benchmark's JSON report: ``config`` (what ran) completed with the run's settings,
    the results, the ratios and the goals (evaluated for ``--size brats`` on CUDA only)."""
    device = timings.device
    cuda = timings.cuda
    results, ratios = results_and_ratios(timings)
    on_goal_setup = cuda and args.size == "brats"
    return {
        "benchmark": "e2e_benchmark",
        "datetime": dt.datetime.now(dt.UTC).isoformat(),
        "machine_info": machine_info(device),
        "commit_info": commit_info(),
        "config": config,
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
    """The report as a table, its ratios against their goals."""
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
