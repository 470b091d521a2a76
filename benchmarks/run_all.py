"""The benchmark suite: every ratio of issue 12 measured in one run, printed as one table.

- P1 ``step_benchmark.py``: kdbench train step / nnU-Net's (goal <= 1.05);
- P2 ``step_benchmark.py``: KD step / student step (<= 1.20);
- P3 ``e2e_benchmark.py``: end-to-end it/s with data loading / GPU only (>= 0.9), and kdbench
  e2e / nnU-Net's own trainer e2e (>= 2);
- P4 ``grid_benchmark.py``: GPU-hours of the BraTS learning curve / its naive grid (<= 0.4);
- P5 ``scoring_benchmark.py``: MedPy-style scoring time / kdbench's, per case (>= 20 on a GPU,
  >= 3 on a CPU).

Each benchmark runs in this process through its ``main(argv)`` with ``--json`` and the report
is read back (``ratios``, ``goals``). ``--size tiny`` takes about a minute on a CPU (it only
shows that everything runs), ``small`` a few minutes, ``brats`` is the goals' size (on a GPU).
At ``brats`` size P4 takes its step figures from this run's step benchmark; otherwise from
the shipped H100 reference calibration.

Run from the repository root (``make bench`` runs ``--size small``)::

    python benchmarks/run_all.py --size small --json bench.json
    python benchmarks/run_all.py --size brats --json bench_gpu.json      # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import io
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: siblings beside

from bench_setup import commit_info, cpu_name, package_version  # noqa: E402

#: Steps and warm-up of the step benchmark per size.
STEPS = {"tiny": (2, 1), "small": (20, 3), "brats": (50, 10)}
#: Data-loader workers of the e2e benchmark per size (None: its default, the CPU count).
WORKERS = {"tiny": 1, "small": 2, "brats": None}
#: (benchmark, ratio) -> (P, direction of its goal: "<=" must not exceed, ">=" must reach),
#: in the order of the table. Other ratios of the reports stay in the JSON.
SHOWN = {
    ("step_benchmark", "kdbench_over_nnunet"): ("P1", "<="),
    ("step_benchmark", "kd_over_student"): ("P2", "<="),
    ("e2e_benchmark", "e2e_over_gpu_only"): ("P3", ">="),
    ("e2e_benchmark", "kdbench_over_nnunet"): ("P3", ">="),
    ("grid_benchmark", "kdbench_over_naive"): ("P4", "<="),
    ("scoring_benchmark", "baseline_over_kdbench"): ("P5", ">="),
}

def _module(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name == name:
            return None
        raise


def _run(name: str, argv: list[str], folder: Path, quiet: bool) -> dict[str, Any]:
    """``name.main(argv + --json)``; the report, or ``{"error": ...}``."""
    module = _module(name)
    if module is None:
        return {"benchmark": name, "error": f"benchmarks/{name}.py is not there (yet)"}
    out = folder / f"{name}.json"
    began = time.perf_counter()
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
            code = module.main([*argv, "--json", str(out)])
    except (Exception, SystemExit) as error:  # one failing benchmark does not stop the suite
        return {"benchmark": name, "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(), "output": sink.getvalue()[-4000:]}
    if code not in (0, None) or not out.exists():
        return {"benchmark": name, "error": f"main returned {code} without a report",
                "output": sink.getvalue()[-4000:]}
    report = json.loads(out.read_text())
    report["wall_s"] = time.perf_counter() - began
    return report


def _device(report: dict[str, Any]) -> str:
    config, info = report.get("config", {}), report.get("machine_info", {})
    device = str(config.get("device", ""))
    name = info.get("device_name")
    return f"{device} ({name})" if name and name not in device else device or "-"


def rows(reports: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per ratio: P, benchmark, ratio, value, goal, met, device."""
    out = []
    for (name, ratio), (p, direction) in SHOWN.items():
        report = reports.get(name)
        if report is None:
            continue
        if "error" in report:
            if not any(r["benchmark"] == name for r in out):
                out.append({"p": p, "benchmark": name, "ratio": "-", "value": None,
                             "goal": "-", "met": "not run", "device": report["error"]})
            continue
        goals = report.get("goals") or {}
        met = goals.get("met") or {}
        value, goal = report.get("ratios", {}).get(ratio), goals.get(ratio)
        if ratio in met:
            verdict = "yes" if met[ratio] else "NO"
        elif isinstance(value, int | float) and isinstance(goal, int | float):
            holds = value <= goal if direction == "<=" else value >= goal
            verdict = f"({'yes' if holds else 'no'})"  # not on the goal's setup
        else:
            verdict = "-"
        out.append({"p": p, "benchmark": name, "ratio": ratio, "value": value,
                    "goal": f"{direction} {goal}" if goal is not None else "-",
                    "met": verdict, "device": _device(report)})
    return out

def print_table(table: list[dict[str, Any]], size: str) -> None:
    print(f"\nbenchmark suite, size {size}")
    header = f"{'P':3} {'benchmark':18} {'ratio':22} {'value':>8} {'goal':>7} {'met?':>6}  device"
    print(header)
    print("-" * len(header))
    for row in table:
        value = f"{row['value']:.3f}" if isinstance(row["value"], int | float) else "-"
        print(f"{row['p']:3} {row['benchmark']:18} {row['ratio']:22} {value:>8} "
              f"{row['goal']:>7} {row['met']:>6}  {row['device']}")
    print("met?: yes/NO on the goal's setup (brats size; P1-P3 and P5 on a GPU for their GPU "
          "goals); (yes)/(no): the same comparison at another size or device, not the goal")


def machine() -> dict[str, Any]:
    import os
    import platform

    info = {"node": platform.node(), "python_version": platform.python_version(),
            "platform": platform.platform(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            **{f"{p}_version": package_version(p) for p in
               ("torch", "nnunetv2", "monai", "scipy", "numpy", "optuna")}}
    try:
        import torch

        if torch.cuda.is_available():
            info.update(gpu=torch.cuda.get_device_name(0), cuda_version=torch.version.cuda)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


def run(size: str, device: str | None, only: list[str] | None, quiet: bool
        ) -> dict[str, Any]:
    steps, warmup = STEPS[size]
    dev = ["--device", device] if device else []
    reports: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="kdbench_bench_") as tmp:
        folder = Path(tmp)
        plan = [
            ("step_benchmark", ["--size", size, "--steps", str(steps), "--warmup", str(warmup),
                                *dev]),
            ("e2e_benchmark", ["--size", size, "--steps", str(steps), "--warmup", str(warmup),
                               *(["--workers", str(WORKERS[size])] if WORKERS[size] else []),
                               *dev]),
            ("grid_benchmark", []),
            ("scoring_benchmark", ["--size", size, *dev]),
        ]
        for name, argv in plan:
            if only and name not in only:
                continue
            if name == "grid_benchmark" and size == "brats" and \
                    "error" not in reports.get("step_benchmark", {"error": ""}):
                argv = ["--step-json", str(folder / "step_benchmark.json")]
            print(f"running {name} {' '.join(argv)} ...", flush=True)
            reports[name] = _run(name, argv, folder, quiet)
    return {
        "suite": "kdbench benchmarks (issue 12)",
        "size": size,
        "datetime": dt.datetime.now(dt.UTC).isoformat(),
        "machine_info": machine(),
        "commit_info": commit_info(),
        "table": rows(reports),
        "reports": reports,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=list(STEPS), default="small")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--only", nargs="+", help="run only these benchmarks (module names)")
    parser.add_argument("--verbose", action="store_true", help="show each benchmark's output")
    parser.add_argument("--json", type=Path, help="write every report here")
    args = parser.parse_args(argv)
    suite = run(args.size, args.device, args.only, quiet=not args.verbose)
    print_table(suite["table"], args.size)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(suite, indent=2) + "\n")
        print(f"wrote {args.json}")
    failed = [r for r in suite["reports"].values()
              if "error" in r and r["benchmark"] != "e2e_benchmark"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
